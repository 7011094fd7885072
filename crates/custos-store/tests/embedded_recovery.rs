//! Embedded-backend specifics: many small segments, and recovery from what a crash or a lost
//! derived file leaves behind.

use custos_core::merkle;
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::testsuite::{prepared, segment_files};
use custos_store::{EntryQuery, Store, StoreError};

fn small_segments() -> EmbeddedConfig {
    EmbeddedConfig {
        segment_bytes: 8 * 1024,
        ..EmbeddedConfig::default()
    }
}

async fn fresh_small() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), small_segments()).expect("open");
    (store, dir)
}

/// The whole conformance suite again, with a new segment every few entries.
mod with_small_segments {
    use super::*;
    custos_store::conformance_tests!(fresh_small());
}

async fn fill(store: &EmbeddedStore, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        let k = (from + n - i).min(23);
        store
            .append((i..i + k).map(prepared).collect())
            .await
            .expect("append");
        i += k;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_derived_files_are_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let (root_before, proof_before, page_before) = {
        let store = EmbeddedStore::open(dir.path(), small_segments()).expect("open");
        fill(&store, 0, 300).await;
        assert!(
            segment_files(dir.path()).len() > 5,
            "the test needs several segments"
        );
        store.wait_indexed().await.expect("index");
        let q = EntryQuery {
            actor: Some("agent:a3".into()),
            limit: 50,
            ..EntryQuery::default()
        };
        let page = store.query(&q).expect("query");
        let out = (
            store.root(300).expect("root"),
            store.inclusion_proof(123, 300).expect("proof"),
            page,
        );
        store.close().await.expect("close");
        out
    };
    // Everything derived goes: offsets, every tree level, the synced marker, the index.
    std::fs::remove_file(dir.path().join("log/offsets")).expect("rm offsets");
    std::fs::remove_dir_all(dir.path().join("tree")).expect("rm tree");
    std::fs::remove_dir_all(dir.path().join("index")).expect("rm index");
    let store = EmbeddedStore::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(store.recovery().rebuilt_entries, 300);
    assert_eq!(store.recovery().discarded_bytes, 0);
    assert_eq!(store.size().expect("size"), 300);
    assert_eq!(store.root(300).expect("root"), root_before);
    assert_eq!(
        store.inclusion_proof(123, 300).expect("proof"),
        proof_before
    );
    let q = EntryQuery {
        actor: Some("agent:a3".into()),
        limit: 50,
        ..EntryQuery::default()
    };
    assert_eq!(
        store.query(&q).expect("query before reindexing"),
        page_before
    );
    store.wait_indexed().await.expect("index");
    assert_eq!(
        store.query(&q).expect("query after reindexing"),
        page_before
    );
    // And it goes on appending where it left off, chain intact.
    fill(&store, 300, 10).await;
    let mut tree = merkle::MemoryTree::new();
    for leaf in store.leaf_hashes(0, 310).expect("leaves") {
        tree.push(leaf);
    }
    assert_eq!(store.root(310).expect("root"), tree.root());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_into_quarantine_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = EmbeddedStore::open(dir.path(), small_segments()).expect("open");
        fill(&store, 0, 100).await;
        store.close().await.expect("close");
    }
    let last = segment_files(dir.path()).pop().expect("segment");
    let len_before = std::fs::metadata(&last).expect("meta").len();
    // A record header promising more bytes than were written, as a crash mid-write leaves.
    let mut torn = 500u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[7u8; 40]);
    let mut bytes = std::fs::read(&last).expect("read");
    bytes.extend_from_slice(&torn);
    std::fs::write(&last, &bytes).expect("write");

    let store = EmbeddedStore::open(dir.path(), small_segments()).expect("reopen");
    let report = store.recovery();
    assert_eq!(report.size, 100);
    assert_eq!(report.discarded_bytes, torn.len() as u64);
    let kept = std::fs::read(report.quarantine.as_deref().expect("quarantine file")).expect("read");
    assert_eq!(kept, torn, "the discarded bytes are kept, not destroyed");
    assert_eq!(std::fs::metadata(&last).expect("meta").len(), len_before);
    fill(&store, 100, 5).await;
    assert_eq!(store.size().expect("size"), 105);
    assert_eq!(store.read_range(99, 105).expect("range").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_the_last_segment_is_refused_not_repaired() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = EmbeddedStore::open(dir.path(), small_segments()).expect("open");
        fill(&store, 0, 200).await;
        store.close().await.expect("close");
    }
    // Lose the synced marker so recovery rescans from the start, then damage segment 1.
    std::fs::remove_file(dir.path().join("tree/synced")).expect("rm synced");
    let segs = segment_files(dir.path());
    let mut bytes = std::fs::read(&segs[1]).expect("read");
    bytes[40] ^= 0xff;
    std::fs::write(&segs[1], &bytes).expect("write");
    let before: Vec<u64> = segs
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .collect();
    match EmbeddedStore::open(dir.path(), small_segments()) {
        Err(StoreError::Corrupt { problem, .. }) => {
            assert!(problem.contains("not in the last segment"), "{problem}")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a damaged middle segment must not be opened for writing"),
    }
    let after: Vec<u64> = segs
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .collect();
    assert_eq!(before, after, "nothing was truncated");
    // Read-only opening still works, for `custos verify` to name the damage.
    let ro = EmbeddedStore::open_read_only(dir.path()).expect("read-only");
    let err = (|| -> Result<(), StoreError> {
        let mut cursor = None;
        loop {
            let chunk = ro.scan(cursor, 1000)?;
            match chunk.next {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    })()
    .expect_err("the scan reaches the damage");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().expect("tmp");
    let _first = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open");
    match EmbeddedStore::open(dir.path(), EmbeddedConfig::default()) {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("in use"), "{msg}"),
        other => panic!("expected the lock to refuse, got {:?}", other.map(|_| ())),
    }
}
