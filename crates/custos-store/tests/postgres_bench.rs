//! Throughput and latency figures of the PostgreSQL backend (ignored: prints, asserts nothing
//! about time). Run with
//! `cargo test --release -p custos-store --test postgres_bench -- --ignored --nocapture`;
//! `CUSTOS_BENCH_ENTRIES` sets how many entries (default 200 000); `CUSTOS_BENCH_KEEP_DB=1`
//! keeps the database for a look with `psql`.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_core::entry::PreparedEntry;
use custos_store::postgres::testing::TestDatabase;
use custos_store::postgres::{PostgresConfig, PostgresStore};
use custos_store::testsuite::prepared;
use custos_store::{EntryQuery, Store};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what}: p50 {:?}, p99 {:?} ({} samples)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn appends_per_second_and_read_latency() {
    let total: u64 = std::env::var("CUSTOS_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    const CALLERS: u64 = 4;
    const BATCH: u64 = 1000;
    let db = TestDatabase::create().await;
    let store = Arc::new(
        PostgresStore::open(&db.url, PostgresConfig::default())
            .await
            .expect("open"),
    );
    // Prepared off the clock, as the ledger prepares before appending.
    let batches: Vec<Vec<PreparedEntry>> = (0..total / BATCH)
        .map(|b| (b * BATCH..(b + 1) * BATCH).map(prepared).collect())
        .collect();
    let per_caller = batches.len() as u64 / CALLERS;
    let mut queues: Vec<Vec<Vec<PreparedEntry>>> = (0..CALLERS).map(|_| Vec::new()).collect();
    for (i, b) in batches.into_iter().enumerate() {
        queues[i % CALLERS as usize].push(b);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for queue in queues {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for batch in queue {
                store.append(batch).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = started.elapsed();
    let n = store.size().expect("size");
    println!(
        "appends: {n} entries, {CALLERS} callers x batches of {BATCH} ({per_caller} each): \
         {:.0} appends/s ({elapsed:?})",
        n as f64 / elapsed.as_secs_f64()
    );

    let mut incl = Vec::new();
    let mut cons = Vec::new();
    let mut gets = Vec::new();
    for k in 0..500u64 {
        let index = (k * 7919) % n;
        let t = Instant::now();
        store.inclusion_proof(index, n).expect("inclusion");
        incl.push(t.elapsed());
        let t = Instant::now();
        store
            .consistency_proof(index.max(1), n)
            .expect("consistency");
        cons.push(t.elapsed());
        let t = Instant::now();
        store.get(index).expect("get");
        gets.push(t.elapsed());
    }
    report("inclusion proof", incl);
    report("consistency proof", cons);
    report("get by seq", gets);
    let queries = [
        EntryQuery {
            tenant: Some("acme".into()),
            limit: 100,
            descending: true,
            ..EntryQuery::default()
        },
        EntryQuery {
            tenant: Some("globex".into()),
            actor: Some("agent:a3".into()),
            limit: 100,
            ..EntryQuery::default()
        },
        EntryQuery {
            tenant: Some("acme".into()),
            resource: Some("/crm/".into()),
            resource_prefix: true,
            limit: 100,
            descending: true,
            ..EntryQuery::default()
        },
        EntryQuery {
            tenant: Some("globex".into()),
            trace_id: Some("trace-1".into()),
            after: Some(n / 2),
            limit: 100,
            ..EntryQuery::default()
        },
    ];
    // Autovacuum analyses a growing table on its own; right after a bulk load the planner may
    // not have statistics yet, so give it them (as a production database would have).
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("ANALYZE ledger_entries")
        .execute(&mut conn)
        .await
        .expect("analyze");
    let _ = conn.close().await;
    for q in &queries {
        let mut times = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let page = store.query(q).expect("query");
            times.push(t.elapsed());
            assert!(!page.records.is_empty());
        }
        report(&format!("query {q:?}"), times);
    }
    store.close().await.expect("close");
    if std::env::var_os("CUSTOS_BENCH_KEEP_DB").is_some() {
        println!("kept database {}", db.name);
        std::mem::forget(db);
    }
}
