//! The backend-neutral conformance suite, run against PostgreSQL: each test on a database of
//! its own (`CUSTOS_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! An unreachable server fails the tests; it never skips them.
#![cfg(feature = "postgres")]

use custos_store::postgres::testing::TestDatabase;
use custos_store::postgres::{PostgresConfig, PostgresStore};

async fn fresh() -> (PostgresStore, TestDatabase) {
    let db = TestDatabase::create().await;
    let store = PostgresStore::open(&db.url, PostgresConfig::default())
        .await
        .expect("open the PostgreSQL store");
    (store, db)
}

custos_store::conformance_tests!(fresh());
