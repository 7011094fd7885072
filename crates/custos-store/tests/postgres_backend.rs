//! PostgreSQL-backend specifics: several stores (as several custos processes would) appending
//! to one database, backpressure while the database holds the writer up, and the synchronous
//! reads from every kind of caller.
#![cfg(feature = "postgres")]

use std::collections::HashSet;
use std::sync::Arc;

use custos_core::entry::{Entry, ZERO_HASH};
use custos_core::merkle::{self, MemoryTree};
use custos_store::postgres::testing::TestDatabase;
use custos_store::postgres::{PostgresConfig, PostgresStore};
use custos_store::testsuite::prepared;
use custos_store::{Store, StoreError};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

async fn open(db: &TestDatabase, config: PostgresConfig) -> PostgresStore {
    PostgresStore::open(&db.url, config).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sharing_a_database_make_one_sequence_and_one_tree() {
    let db = TestDatabase::create().await;
    let stores: Vec<Arc<PostgresStore>> = vec![
        Arc::new(open(&db, PostgresConfig::default()).await),
        Arc::new(open(&db, PostgresConfig::default()).await),
        Arc::new(open(&db, PostgresConfig::default()).await),
    ];
    let mut tasks = Vec::new();
    for t in 0..12u64 {
        let store = stores[(t % 3) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..20u64 {
                let batch = (0..3).map(|j| prepared(t * 1000 + k * 3 + j)).collect();
                got.extend(store.append(batch).await.expect("append"));
            }
            got
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("task"));
    }
    let n = 12 * 20 * 3;
    acked.sort_by_key(|a| a.seq);
    assert_eq!(
        acked.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "one gap-free sequence"
    );
    for store in &stores {
        assert_eq!(store.size().expect("size"), n);
    }
    // One chain: prev_hash links, ids and ts never go back, whichever store sequenced it.
    let records = stores[0].read_range(0, n).expect("range");
    let mut prev = ZERO_HASH;
    let mut last_id = String::new();
    let mut last_ts = i128::MIN;
    let mut ids = HashSet::new();
    let mut mem = MemoryTree::new();
    for (rec, ack) in records.iter().zip(&acked) {
        let e = Entry::from_canonical(&rec.bytes).expect("canonical");
        let leaf = merkle::leaf_hash(&rec.bytes);
        assert_eq!(leaf, ack.leaf_hash, "seq {}", rec.seq);
        assert_eq!(
            e.prev_hash,
            merkle::hash_to_hex(&prev),
            "chain at {}",
            rec.seq
        );
        assert!(e.id > last_id, "ids sort like seqs at {}", rec.seq);
        let ts = custos_core::time::parse_rfc3339(&e.ts).expect("ts");
        assert!(ts >= last_ts, "ts went back at {}", rec.seq);
        assert!(ids.insert(e.id.clone()));
        last_id = e.id;
        last_ts = ts;
        prev = leaf;
        mem.push(leaf);
    }
    // One tree: every store gives the same roots and proofs, and they verify.
    let root = mem.root();
    for store in &stores {
        assert_eq!(store.root(n).expect("root"), root);
    }
    let old = 100;
    let mut old_tree = MemoryTree::new();
    for a in &acked[..old as usize] {
        old_tree.push(a.leaf_hash);
    }
    let proof = stores[1].consistency_proof(old, n).expect("consistency");
    merkle::verify_consistency(old, n, &old_tree.root(), &root, &proof).expect("consistent");
    for index in [0, 77, n - 1] {
        let proof = stores[2].inclusion_proof(index, n).expect("inclusion");
        merkle::verify_inclusion(&acked[index as usize].leaf_hash, index, n, &proof, &root)
            .expect("included");
    }
    for store in &stores {
        store.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_append_is_refused_while_the_queue_is_full() {
    let db = TestDatabase::create().await;
    let store = Arc::new(
        open(
            &db,
            PostgresConfig {
                max_queued_entries: 10,
                ..PostgresConfig::default()
            },
        )
        .await,
    );
    // Another session holds the sequencing lock: the writer waits inside its transaction.
    let mut blocker = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("SELECT size FROM ledger_state FOR UPDATE")
        .execute(&mut blocker)
        .await
        .expect("lock");
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.append((0..8).map(prepared).collect()).await })
    };
    // Wait until the writer waits for the lock: the 8 entries hold their queue places then.
    let mut waited = false;
    for _ in 0..1000 {
        let waiting_locks: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
                .fetch_one(&mut blocker)
                .await
                .expect("pg_locks");
        if waiting_locks > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(waited, "the writer never reached the lock");
    let err = store
        .try_append((8..11).map(prepared).collect())
        .await
        .expect_err("the queue is full");
    assert!(matches!(err, StoreError::Overloaded { queued: 8 }), "{err}");
    sqlx::query("COMMIT")
        .execute(&mut blocker)
        .await
        .expect("release");
    let acked = waiting.await.expect("task").expect("append");
    assert_eq!(acked.len(), 8);
    store
        .try_append((8..11).map(prepared).collect())
        .await
        .expect("room again");
    assert_eq!(store.size().expect("size"), 11);
    store.close().await.expect("close");
    let err = store.append(vec![prepared(11)]).await.expect_err("closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

/// A current-thread runtime (no `block_in_place`) and a plain thread can both use the
/// synchronous reads.
#[tokio::test]
async fn reads_work_from_a_current_thread_runtime_and_plain_threads() {
    let db = TestDatabase::create().await;
    let store = Arc::new(open(&db, PostgresConfig::default()).await);
    store
        .append((0..5).map(prepared).collect())
        .await
        .expect("append");
    assert_eq!(store.size().expect("size"), 5);
    assert!(store.get(4).expect("get").is_some());
    let s = store.clone();
    let from_thread = std::thread::spawn(move || (s.size(), s.root(5)))
        .join()
        .expect("thread");
    assert_eq!(from_thread.0.expect("size"), 5);
    assert_eq!(from_thread.1.expect("root"), store.root(5).expect("root"));
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_continues_the_same_ledger() {
    let db = TestDatabase::create().await;
    let first = open(&db, PostgresConfig::default()).await;
    let a = first
        .append((0..7).map(prepared).collect())
        .await
        .expect("append");
    first.close().await.expect("close");
    drop(first);
    let second = open(&db, PostgresConfig::default()).await;
    assert_eq!(second.recovery().size, 7);
    let b = second
        .append((7..9).map(prepared).collect())
        .await
        .expect("append");
    assert_eq!(b[0].seq, 7);
    let e = Entry::from_canonical(&second.get(7).expect("get").expect("entry").bytes)
        .expect("canonical");
    assert_eq!(e.prev_hash, merkle::hash_to_hex(&a[6].leaf_hash));
    second.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_error() {
    let err = PostgresStore::open(
        "postgres://postgres@127.0.0.1:1/nothing",
        PostgresConfig {
            acquire_timeout: std::time::Duration::from_secs(2),
            ..PostgresConfig::default()
        },
    )
    .await
    .expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reconnects_after_its_connections_are_killed() {
    let db = TestDatabase::create().await;
    let store = open(&db, PostgresConfig::default()).await;
    store
        .append((0..5).map(prepared).collect())
        .await
        .expect("append");
    let mut admin = PgConnection::connect(&db.url).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(!killed.is_empty(), "the store had connections to kill");
    let _ = admin.close().await;
    // The pool notices dead connections and opens new ones; nothing is lost or doubled.
    let mut acked = None;
    for _ in 0..3 {
        match store.append((5..8).map(prepared).collect()).await {
            Ok(a) => {
                acked = Some(a);
                break;
            }
            Err(e) => eprintln!("append after the kill: {e}"),
        }
    }
    let acked = acked.expect("appends work again");
    assert_eq!(acked[0].seq, 5);
    assert_eq!(store.size().expect("size"), 8);
    assert_eq!(store.health().expect("health").unwritable, None);
    store.close().await.expect("close");
}

/// `import` takes records another store sealed and keeps them byte for byte — same tree, same
/// lookups — and refuses, changing nothing, any record that does not continue the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_sealed_records_and_refuses_any_that_do_not_continue_the_log() {
    use custos_store::RawRecord;
    use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};

    let tmp = tempfile::tempdir().expect("tmp");
    let source = EmbeddedStore::open(tmp.path(), EmbeddedConfig::default()).expect("embedded");
    for b in 0..5u64 {
        let batch = (0..200).map(|i| prepared(b * 200 + i)).collect();
        source.append(batch).await.expect("append");
    }
    let n = source.size().expect("size");
    let records = source.read_range(0, n).expect("records");

    let db = TestDatabase::create().await;
    let dest = open(&db, PostgresConfig::default()).await;
    // In two chunks, as `custos copy` does.
    assert_eq!(
        dest.import(records[..300].to_vec()).await.expect("import"),
        300
    );
    assert_eq!(
        dest.import(records[300..].to_vec()).await.expect("import"),
        n
    );
    assert_eq!(dest.read_range(0, n).expect("read back"), records);
    for size in [1, 2, 299, 300, 301, 512, n] {
        assert_eq!(
            dest.root(size).expect("dest root"),
            source.root(size).expect("root")
        );
    }
    assert_eq!(
        dest.inclusion_proof(17, n).expect("proof"),
        source.inclusion_proof(17, n).expect("proof")
    );
    let view = custos_store::FilterView::parse(&records[421].bytes).expect("view");
    assert_eq!(dest.seq_of_id(&view.id).expect("id"), Some(421));

    // Appends continue the imported chain.
    let more = dest
        .append(vec![prepared(9_999)])
        .await
        .expect("append after import");
    assert_eq!(more[0].seq, n);
    let next = dest.get(n).expect("get").expect("present");
    let head = custos_core::canonical::check_entry(&next.bytes).expect("canonical");
    assert_eq!(
        head.prev_hash,
        merkle::leaf_hash(&records[(n - 1) as usize].bytes)
    );
    let size = n + 1;

    // What does not continue the log is refused and changes nothing.
    let other = tempfile::tempdir().expect("tmp");
    let stranger = EmbeddedStore::open(other.path(), EmbeddedConfig::default()).expect("open");
    for _ in 0..=size {
        stranger.append(vec![prepared(1)]).await.expect("append");
    }
    let foreign = stranger.read_range(size, size + 1).expect("foreign");
    // Not in canonical form (a space after the brace).
    let mut spaced = foreign[0].clone();
    spaced.bytes.insert(1, b' ');
    let cases: Vec<(&str, Vec<RawRecord>, &str)> = vec![
        ("another log's entry", foreign.clone(), "prev_hash"),
        ("a non-canonical entry", vec![spaced], "canonical"),
        (
            "a gap",
            vec![RawRecord {
                seq: size + 1,
                bytes: foreign[0].bytes.clone(),
            }],
            "out of order",
        ),
        ("a replay", vec![records[5].clone()], "out of order"),
        (
            "not JSON",
            vec![RawRecord {
                seq: size,
                bytes: b"{\"seq\":".to_vec(),
            }],
            "canonical",
        ),
    ];
    for (what, batch, says) in cases {
        let err = dest.import(batch).await.expect_err(what);
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Corrupt { .. } | StoreError::Invalid(_)),
            "{what}: {text}"
        );
        assert!(text.contains(says), "{what}: `{text}` should say `{says}`");
        assert_eq!(dest.size().expect("size"), size, "{what} changed the store");
    }
    dest.close().await.expect("close");
    source.close().await.expect("close");
    stranger.close().await.expect("close");
}
