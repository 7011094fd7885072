//! The database itself refuses to change or delete ledger rows (issue 4, item 2), and a row
//! changed anyway (by a superuser who switched the triggers off) no longer matches the tree.
#![cfg(feature = "postgres")]

use custos_core::merkle;
use custos_core::note::{self, Checkpoint, Signer};
use custos_store::postgres::testing::TestDatabase;
use custos_store::postgres::{PostgresConfig, PostgresStore};
use custos_store::testsuite::prepared;
use custos_store::{Store, StoredCheckpoint};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

async fn filled(n: u64) -> (PostgresStore, TestDatabase) {
    let db = TestDatabase::create().await;
    let store = PostgresStore::open(&db.url, PostgresConfig::default())
        .await
        .expect("open");
    store
        .append((0..n).map(prepared).collect())
        .await
        .expect("append");
    let signer = Signer::from_seed("test.example/log", [7u8; 32]).expect("signer");
    let cp = Checkpoint {
        origin: "test.example/log".into(),
        size: n,
        root: store.root(n).expect("root"),
        extensions: Vec::new(),
    };
    store
        .add_checkpoint(&StoredCheckpoint {
            size: n,
            issued_nanos: 1,
            note: note::sign_checkpoint(&signer, &cp).expect("sign"),
        })
        .expect("checkpoint");
    (store, db)
}

async fn refused(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(done) => panic!(
            "`{sql}` was allowed ({} rows): the ledger must be append-only",
            done.rows_affected()
        ),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_delete_and_truncate_are_refused_by_the_database() {
    let (store, db) = filled(20).await;
    let before = store.read_range(0, 20).expect("range");
    let root = store.root(20).expect("root");
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    for sql in [
        "UPDATE ledger_entries SET canonical = 'x'::bytea WHERE seq = 3",
        "UPDATE ledger_entries SET actor = 'agent:mallory'",
        "DELETE FROM ledger_entries WHERE seq = 19",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
        "UPDATE ledger_checkpoints SET note = 'forged'",
        "DELETE FROM ledger_checkpoints",
        "TRUNCATE ledger_checkpoints",
        "TRUNCATE ledger_entries, ledger_checkpoints, ledger_state",
    ] {
        let e = refused(&mut conn, sql).await;
        assert!(e.contains("append-only"), "`{sql}`: {e}");
    }
    // The state row may not go back, nor disappear.
    let e = refused(&mut conn, "UPDATE ledger_state SET size = 5").await;
    assert!(e.contains("may not go back"), "{e}");
    let e = refused(&mut conn, "DELETE FROM ledger_state").await;
    assert!(e.contains("append-only"), "{e}");
    // Nothing changed.
    assert_eq!(store.read_range(0, 20).expect("range"), before);
    assert_eq!(store.root(20).expect("root"), root);
    assert_eq!(store.size().expect("size"), 20);
    assert_eq!(store.checkpoints(0, 10).expect("checkpoints").len(), 1);
    // And appends go on.
    store
        .append(vec![prepared(20)])
        .await
        .expect("append after the refusals");
    assert_eq!(store.size().expect("size"), 21);
    let _ = conn.close().await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_with_the_triggers_off_no_longer_matches_its_leaf() {
    let (store, db) = filled(10).await;
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    // A superuser can switch triggers off for the session; the tree still gives it away.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .expect("superuser");
    sqlx::query(
        "UPDATE ledger_entries SET canonical = \
         convert_to(replace(convert_from(canonical, 'UTF8'), 'agent:a4', 'agent:a0'), 'UTF8') \
         WHERE seq = 4",
    )
    .execute(&mut conn)
    .await
    .expect("tamper");
    let _ = conn.close().await;
    let rec = store.get(4).expect("get").expect("entry 4");
    let stored_leaf = store.leaf_hashes(4, 5).expect("leaf")[0];
    assert_ne!(
        merkle::leaf_hash(&rec.bytes),
        stored_leaf,
        "the changed bytes must not hash to the recorded leaf"
    );
    // The untouched neighbours still match.
    for seq in [3u64, 5] {
        let rec = store.get(seq).expect("get").expect("entry");
        assert_eq!(
            merkle::leaf_hash(&rec.bytes),
            store.leaf_hashes(seq, seq + 1).expect("leaf")[0]
        );
    }
    store.close().await.expect("close");
}
