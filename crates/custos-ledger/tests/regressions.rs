//! Regressions from an adversarial review: recovery must never cut durable entries, and
//! verification must neither miss tampering nor cry wolf after an ordinary crash.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use custos_core::entry::{EntryBody, Limits, Outcome};
use custos_core::note::Signer;
use custos_ledger::verify::{FailureKind, Report, verify};
use custos_ledger::{Ledger, LedgerConfig};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::testsuite::segment_files;
use custos_store::{Store, StoreError, system_clock};

const ORIGIN: &str = "review.test/log";

fn signer() -> Signer {
    Signer::from_seed(ORIGIN, [7u8; 32]).expect("signer")
}

fn body(i: u64) -> EntryBody {
    let mut b = EntryBody::new(
        "acme",
        "tool_invocation",
        format!("agent:a{}", i % 3),
        "allow",
        Outcome::Success,
    );
    b.resource = Some(format!("/crm/{i}"));
    b.data.insert("i".into(), serde_json::json!(i));
    b
}

async fn ledger_in(dir: &Path, cfg: EmbeddedConfig) -> Ledger<EmbeddedStore> {
    let store = EmbeddedStore::open(dir, cfg).expect("open store");
    let config = LedgerConfig {
        origin: ORIGIN.into(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(3600),
    };
    Ledger::open(Arc::new(store), signer(), config, system_clock())
        .await
        .expect("open ledger")
}

fn verify_ro(dir: &Path) -> Report {
    let store = EmbeddedStore::open_read_only(dir).expect("read-only open");
    verify(&store, &signer().verifier(), ORIGIN, |_| {}).expect("verification runs")
}

fn flip_byte(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[b[0] ^ 0x20], at).expect("write");
}

fn write_synced(dir: &Path, size: u64) {
    let mut b = size.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32c(&size.to_le_bytes()).to_le_bytes());
    std::fs::write(dir.join("tree/synced"), b).expect("write synced");
}

fn crc32c(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn expect_refused(dir: &Path, cfg: EmbeddedConfig) {
    match EmbeddedStore::open(dir, cfg) {
        Err(StoreError::Corrupt { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(s) => panic!("opened for writing with recovery {:?}", s.recovery()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_before_intact_records_is_refused_not_cut() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        for i in 0..10 {
            ledger.append(body(i)).await.expect("append");
        }
        ledger.store().close().await.expect("close");
    }
    let seg = &segment_files(dir.path())[0];
    let rec3 = {
        let store = EmbeddedStore::open_read_only(dir.path()).expect("ro");
        store.get(3).expect("get").expect("entry 3")
    };
    let all = std::fs::read(seg).expect("read");
    let pos = all
        .windows(rec3.bytes.len())
        .position(|w| w == rec3.bytes.as_slice())
        .expect("found")
        + 20;
    flip_byte(seg, pos as u64);
    // As after a crash within a second of the appends: nothing marked synced, no checkpoint.
    std::fs::remove_file(dir.path().join("tree/synced")).expect("rm synced");
    let before = std::fs::read(seg).expect("read");
    expect_refused(dir.path(), EmbeddedConfig::default());
    assert_eq!(std::fs::read(seg).expect("read"), before, "nothing was cut");
    let report = verify_ro(dir.path());
    let f = report.failure.expect("damage is reported");
    assert_eq!((f.kind, f.seq), (FailureKind::CorruptRecord, Some(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_segment_is_refused_and_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = EmbeddedConfig {
        segment_bytes: 1500,
        ..EmbeddedConfig::default()
    };
    {
        let ledger = ledger_in(dir.path(), cfg.clone()).await;
        for i in 0..30 {
            ledger.append(body(i)).await.expect("append");
        }
        ledger.store().close().await.expect("close");
    }
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3);
    let last = segs.last().expect("last").clone();
    let last_len = std::fs::metadata(&last).expect("meta").len();
    std::fs::remove_file(&segs[segs.len() - 2]).expect("rm segment");
    std::fs::remove_file(dir.path().join("tree/synced")).expect("rm synced");
    expect_refused(dir.path(), cfg);
    assert_eq!(
        std::fs::metadata(&last).expect("meta").len(),
        last_len,
        "nothing was cut"
    );
    let f = verify_ro(dir.path()).failure.expect("reported");
    assert_eq!(f.kind, FailureKind::MissingEntry, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_interior_tree_node_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        ledger
            .append_batch((0..8).map(body).collect())
            .await
            .expect("append");
        ledger.checkpoint().await.expect("checkpoint");
        ledger.store().close().await.expect("close");
    }
    assert!(verify_ro(dir.path()).ok());
    flip_byte(&dir.path().join("tree/level-01.hashes"), 32 + 5);
    let f = verify_ro(dir.path()).failure.expect("reported");
    assert_eq!((f.kind, f.seq), (FailureKind::TreeMismatch, Some(2)), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_checkpoint_index_entry_is_dropped_not_trusted() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        for i in 0..4 {
            ledger.append(body(i)).await.expect("append");
            ledger.checkpoint().await.expect("checkpoint");
        }
        ledger.store().close().await.expect("close");
    }
    // Power loss: the index grew, its last 16 bytes never arrived.
    let idx = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("checkpoints/checkpoints.idx"))
        .expect("idx");
    idx.write_all_at(&[0u8; 16], 3 * 16).expect("zero");
    drop(idx);
    let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
    let sizes: Vec<u64> = ledger
        .store()
        .checkpoints(0, 100)
        .expect("list")
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(sizes, vec![1, 2, 3, 4]);
    ledger.store().close().await.expect("close");
    drop(ledger);
    assert!(verify_ro(dir.path()).ok());
}

async fn three_checkpoints(dir: &Path) -> Vec<u64> {
    let ledger = ledger_in(dir, EmbeddedConfig::default()).await;
    for i in 0..3 {
        ledger.append(body(i)).await.expect("append");
        ledger.checkpoint().await.expect("checkpoint");
    }
    ledger.store().close().await.expect("close");
    let idx = std::fs::read(dir.join("checkpoints/checkpoints.idx")).expect("idx");
    idx.chunks(16)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[8..16]);
            u64::from_le_bytes(b)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_the_latest_checkpoint_is_reported_then_quarantined_and_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let offsets = three_checkpoints(dir.path()).await;
    flip_byte(
        &dir.path().join("checkpoints/checkpoints.log"),
        offsets[2] + 40,
    );
    let f = verify_ro(dir.path()).failure.expect("reported");
    assert_eq!(f.kind, FailureKind::ForgedCheckpoint, "{f}");
    // Opening for writing cuts it into quarantine and records that it did.
    let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
    assert!(ledger.store().recovery().checkpoint_discarded_bytes > 0);
    let last = ledger.get(ledger.size().expect("size") - 1).expect("entry");
    assert_eq!(last.event_type, "security_event");
    assert!(
        last.data["checkpoint_log_discarded_bytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    ledger.store().close().await.expect("close");
    drop(ledger);
    assert!(verify_ro(dir.path()).ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_an_earlier_checkpoint_is_a_failure_not_an_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let offsets = three_checkpoints(dir.path()).await;
    flip_byte(
        &dir.path().join("checkpoints/checkpoints.log"),
        offsets[1] + 40,
    );
    let f = verify_ro(dir.path()).failure.expect("reported");
    assert_eq!(f.kind, FailureKind::ForgedCheckpoint, "{f}");
}

async fn crashed_after_unsynced_appends(dir: &Path) {
    let ledger = ledger_in(dir, EmbeddedConfig::default()).await;
    ledger
        .append_batch((0..10).map(body).collect())
        .await
        .expect("append");
    ledger.checkpoint().await.expect("checkpoint");
    ledger
        .append_batch((10..20).map(body).collect())
        .await
        .expect("append");
    ledger.store().close().await.expect("close");
    // What a power loss leaves: derived files durable only up to the checkpoint.
    write_synced(dir, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_after_a_crash_does_not_cry_wolf_about_lost_tree_hashes() {
    let dir = tempfile::tempdir().expect("tmp");
    crashed_after_unsynced_appends(dir.path()).await;
    let l0 = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("tree/level-00.hashes"))
        .expect("level 0");
    l0.set_len(10 * 32).expect("cut");
    drop(l0);
    let report = verify_ro(dir.path());
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.entries, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_after_a_crash_does_not_cry_wolf_about_zeroed_tree_hashes() {
    let dir = tempfile::tempdir().expect("tmp");
    crashed_after_unsynced_appends(dir.path()).await;
    let l0 = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("tree/level-00.hashes"))
        .expect("level 0");
    l0.write_all_at(&[0u8; 32 * 10], 10 * 32).expect("zero");
    drop(l0);
    let report = verify_ro(dir.path());
    assert!(report.ok(), "{:?}", report.failure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tail_is_recorded_exactly_once_even_if_the_cutting_run_died() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        ledger
            .append_batch((0..5).map(body).collect())
            .await
            .expect("append");
        ledger.store().close().await.expect("close");
    }
    // A run cut a tail into quarantine and died before the ledger recorded it.
    std::fs::create_dir_all(dir.path().join("quarantine")).expect("mkdir");
    std::fs::write(
        dir.path()
            .join("quarantine/seg-00000000000000000000-at-999-seq-5.bin"),
        [1u8; 9],
    )
    .expect("write");
    for round in 0..2 {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        let size = ledger.size().expect("size");
        assert_eq!(
            size, 6,
            "round {round}: recorded once, by the first open only"
        );
        let e = ledger.get(5).expect("entry");
        assert_eq!(e.data["kind"], "torn_tail_discarded");
        assert_eq!(e.data["quarantine"][0]["bytes"], 9);
        ledger.store().close().await.expect("close");
    }
}
