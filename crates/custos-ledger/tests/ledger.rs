//! The ledger service over the embedded store: all-or-nothing batches, checkpoints, proofs
//! an outsider can check, exports, summaries, backpressure, and recovery being recorded.

use std::sync::Arc;
use std::time::Duration;

use custos_core::entry::{EntryBody, Limits, Outcome, Severity};
use custos_core::merkle;
use custos_core::note::{self, Signer};
use custos_ledger::export::{self, Format, Range};
use custos_ledger::{Ledger, LedgerConfig, LedgerError, verify};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::{Store, system_clock};
use serde_json::{Value, json};

const ORIGIN: &str = "ledger.test/log";

fn signer() -> Signer {
    Signer::from_seed(ORIGIN, [42u8; 32]).expect("signer")
}

fn config() -> LedgerConfig {
    LedgerConfig {
        origin: ORIGIN.into(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_millis(50),
    }
}

async fn ledger_in(dir: &std::path::Path, store_config: EmbeddedConfig) -> Ledger<EmbeddedStore> {
    let store = EmbeddedStore::open(dir, store_config).expect("open store");
    Ledger::open(Arc::new(store), signer(), config(), system_clock())
        .await
        .expect("open ledger")
}

fn body(i: u64) -> EntryBody {
    let mut b = EntryBody::new(
        if i.is_multiple_of(2) {
            "acme"
        } else {
            "globex"
        },
        if i.is_multiple_of(3) {
            "tool_invocation"
        } else {
            "policy_evaluation"
        },
        format!("agent:a{}", i % 3),
        "allow",
        if i.is_multiple_of(5) {
            Outcome::Denied
        } else {
            Outcome::Success
        },
    );
    b.severity = if i.is_multiple_of(4) {
        Severity::Critical
    } else {
        Severity::Low
    };
    b.resource = Some(format!("/crm/{i}"));
    b.data.insert("i".into(), json!(i));
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_entry_appends_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
    ledger
        .append_batch((0..5).map(body).collect())
        .await
        .expect("good batch");
    let mut bad = (0..5).map(body).collect::<Vec<_>>();
    bad[3].actor = "nobody".into();
    let err = ledger.append_batch(bad).await.expect_err("bad batch");
    match err {
        LedgerError::InvalidEntry { index, error } => {
            assert_eq!(index, Some(3));
            assert_eq!(error.field, "actor");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(
        ledger.size().expect("size"),
        5,
        "nothing of the bad batch was appended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_proofs_and_consistency_check_out_offline() {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
    ledger
        .append_batch((0..10).map(body).collect())
        .await
        .expect("append");
    let first = ledger.checkpoint().await.expect("checkpoint");
    assert_eq!(first.size, 10);
    assert_eq!(
        ledger.checkpoint().await.expect("again"),
        first,
        "no new entries, same checkpoint"
    );
    ledger
        .append_batch((10..37).map(body).collect())
        .await
        .expect("append");
    let second = ledger.checkpoint().await.expect("checkpoint");
    assert_eq!(second.size, 37);

    let verifier = ledger.verifier();
    let cp1 = note::open_checkpoint(&first.note, &verifier).expect("signed");
    let cp2 = note::open_checkpoint(&second.note, &verifier).expect("signed");
    assert_eq!(cp2.origin, ORIGIN);
    let proof = ledger.consistency(10, 37).expect("consistency");
    proof.verify(&cp1.root, &cp2.root).expect("consistent");

    // The bundle an auditor receives verifies with nothing but the verifier key.
    let bundle = ledger.prove(7, None).await.expect("prove");
    assert_eq!(bundle.proof.tree_size, 37);
    let cp = note::open_checkpoint(&bundle.checkpoint, &verifier).expect("signed");
    let leaf = bundle.entry.leaf_hash().expect("leaf");
    bundle.proof.verify(&leaf, &cp.root).expect("included");
    // …and a tampered entry does not.
    let mut forged = bundle.entry.clone();
    forged.action = "deny".into();
    assert!(
        bundle
            .proof
            .verify(&forged.leaf_hash().expect("leaf"), &cp.root)
            .is_err()
    );
    // A proof against an older checkpoint works too.
    let old = ledger.prove(3, Some(10)).await.expect("prove at 10");
    old.proof
        .verify(&old.entry.leaf_hash().expect("leaf"), &cp1.root)
        .expect("included at 10");
    assert!(matches!(
        ledger.prove(12, Some(10)).await,
        Err(LedgerError::BadRequest(_))
    ));
    assert!(matches!(
        ledger.prove(3, Some(11)).await,
        Err(LedgerError::NotFound(_))
    ));
    assert!(matches!(
        ledger.get_by_key("99"),
        Err(LedgerError::NotFound(_))
    ));
    let by_id = ledger.get_by_key(&bundle.entry.id).expect("by id");
    assert_eq!(by_id, bundle.entry);
    assert_eq!(
        merkle::hash_to_hex(&ledger.root(37).expect("root")),
        merkle::hash_to_hex(&cp2.root)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_in_every_format_and_summaries_count_right() {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
    let receipts = ledger
        .append_batch((0..30).map(body).collect())
        .await
        .expect("append");
    let store = ledger.store().as_ref();
    let all = Range::default();
    let acme = Range {
        tenant: Some("acme".into()),
        ..Range::default()
    };
    let run = |format, range: &Range| {
        let mut out = Vec::new();
        let n = export::export(store, ORIGIN, format, range, &mut out).expect("export");
        (n, String::from_utf8(out).expect("utf8"))
    };
    let (n, json_text) = run(Format::Json, &all);
    assert_eq!(n, 30);
    let arr: Vec<Value> = serde_json::from_str(&json_text).expect("a JSON array");
    assert_eq!(arr.len(), 30);
    assert_eq!(arr[5]["seq"], 5);
    let (n, lines) = run(Format::JsonLines, &acme);
    assert_eq!(n, 15);
    assert!(
        lines
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).expect("line")["tenant"] == "acme")
    );
    let (_, csv) = run(Format::Csv, &all);
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 31, "header + 30 rows");
    assert!(rows[0].starts_with("seq,id,ts,client_ts,tenant,event_type"));
    assert!(rows[1].starts_with(&format!("0,{},", receipts[0].id)));
    assert!(
        rows[1].contains(r#""{""i"":0}""#),
        "data is quoted JSON: {}",
        rows[1]
    );
    let (_, ce) = run(Format::CloudEvents, &all);
    let ev: Value = serde_json::from_str(ce.lines().nth(2).expect("line")).expect("event");
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["id"], receipts[2].id.as_str());
    assert_eq!(ev["type"], "dev.custos.policy_evaluation");
    assert_eq!(ev["source"], format!("custos://{ORIGIN}/agent:a2"));
    assert_eq!(ev["subject"], "/crm/2");
    assert_eq!(ev["time"], receipts[2].ts.as_str());
    assert_eq!(ev["data"]["seq"], 2);
    // A time range picks exactly the entries sequenced in it.
    let t = |i: usize| custos_core::time::parse_rfc3339(&receipts[i].ts).expect("ts");
    let window = Range {
        start: Some(t(10)),
        end: Some(t(20)),
        ..Range::default()
    };
    let (n, _) = run(Format::JsonLines, &window);
    let expected = receipts.iter().filter(|r| {
        let ts = custos_core::time::parse_rfc3339(&r.ts).expect("ts");
        ts >= t(10) && ts < t(20)
    });
    assert_eq!(n, expected.count() as u64);

    let s = export::summary(store, &all).expect("summary");
    assert_eq!(s.total, 30);
    assert_eq!(s.by_event_type["tool_invocation"], 10);
    assert_eq!(s.by_event_type["policy_evaluation"], 20);
    assert_eq!(s.by_severity["critical"], 8);
    assert_eq!(s.high_severity, 8);
    assert_eq!(s.by_outcome["denied"], 6);
    assert_eq!(s.by_actor["agent:a0"], 10);
    assert_eq!(s.by_resource.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let store_config = EmbeddedConfig {
        max_queued_entries: 50,
        ..EmbeddedConfig::default()
    };
    let ledger = Arc::new(ledger_in(dir.path(), store_config).await);
    // More than the whole queue can never be taken.
    let err = ledger
        .try_append_batch((0..51).map(body).collect())
        .await
        .expect_err("too big");
    assert!(matches!(err, LedgerError::Overloaded { .. }), "{err}");
    // A flood: every call either is acknowledged or told to retry, never silently dropped.
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            for k in 0..20u64 {
                match ledger
                    .try_append_batch((0..10).map(|j| body(t * 1000 + k * 10 + j)).collect())
                    .await
                {
                    Ok(r) => acked.extend(r),
                    Err(LedgerError::Overloaded { .. }) => refused += 1,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            (acked, refused)
        }));
    }
    let mut acked = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (a, r) = t.await.expect("task");
        acked.extend(a);
        refused += r;
    }
    eprintln!(
        "flood: {} acknowledged, {refused} batches told to retry",
        acked.len()
    );
    assert!(
        refused > 0,
        "the flood never filled the queue; the test proved nothing"
    );
    assert_eq!(
        ledger.size().expect("size"),
        acked.len() as u64,
        "nothing unacknowledged was kept, nothing acknowledged lost"
    );
    for r in &acked {
        assert_eq!(ledger.get(r.seq).expect("entry").id, r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_torn_tail_is_recorded_and_the_ledger_verifies() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        ledger
            .append_batch((0..12).map(body).collect())
            .await
            .expect("append");
        ledger.checkpoint().await.expect("checkpoint");
        ledger.store().close().await.expect("close");
    }
    // A write that was cut off: half a record header at the end of the segment.
    let seg = std::fs::read_dir(dir.path().join("log"))
        .expect("log")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(".log"))
        .expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0x40, 0x01, 0, 0, 0xde, 0xad]);
    std::fs::write(&seg, bytes).expect("write");

    let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
    let report = ledger.store().recovery();
    assert_eq!(report.discarded_bytes, 6);
    assert!(
        report
            .quarantine
            .as_deref()
            .is_some_and(|q| std::path::Path::new(q).exists())
    );
    assert_eq!(
        ledger.size().expect("size"),
        13,
        "12 entries and the record of the recovery"
    );
    let note = ledger.get(12).expect("recovery entry");
    assert_eq!(note.event_type, "security_event");
    assert_eq!(note.data["kind"], "torn_tail_discarded");
    assert_eq!(note.data["discarded_bytes"], 6);
    ledger.checkpoint().await.expect("checkpoint");
    let report = verify::verify(ledger.store().as_ref(), &ledger.verifier(), ORIGIN, |_| {})
        .expect("verify");
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.entries, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let ledger = ledger_in(dir.path(), EmbeddedConfig::default()).await;
        ledger
            .append_batch((0..3).map(body).collect())
            .await
            .expect("append");
        ledger.checkpoint().await.expect("checkpoint");
        ledger.store().close().await.expect("close");
    }
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open");
    let other = Signer::from_seed(ORIGIN, [1u8; 32]).expect("signer");
    let err = Ledger::open(Arc::new(store), other, config(), system_clock())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, LedgerError::Integrity(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_signs_new_entries_and_a_last_one_on_shutdown() {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = Arc::new(ledger_in(dir.path(), EmbeddedConfig::default()).await);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(ledger.clone().run_checkpointer(rx));
    ledger
        .append_batch((0..4).map(body).collect())
        .await
        .expect("append");
    let mut waited = 0;
    while ledger.latest_checkpoint().expect("latest").map(|c| c.size) != Some(4) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
        assert!(waited < 500, "no checkpoint within 5 s at a 50 ms interval");
    }
    ledger
        .append_batch((4..6).map(body).collect())
        .await
        .expect("append");
    stop.send(true).expect("stop");
    task.await.expect("checkpointer");
    assert_eq!(
        ledger.latest_checkpoint().expect("latest").map(|c| c.size),
        Some(6)
    );
    assert_eq!(ledger.store().size().expect("size"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_follows_the_ledger_and_verifies() {
    use custos_ledger::mirror::{MirrorConfig, run_mirror, verify_files};
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = ledger_in(&dir.path().join("data"), EmbeddedConfig::default()).await;
    let mut config = MirrorConfig::new(dir.path().join("mirror"), vec![7u8; 32]);
    config.max_file_bytes = 4096;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_mirror(
        ledger.store().clone(),
        config.clone(),
        Duration::from_millis(20),
        rx,
    ));
    ledger
        .append_batch((0..30).map(body).collect())
        .await
        .expect("append");
    tokio::time::sleep(Duration::from_millis(100)).await;
    ledger
        .append_batch((30..45).map(body).collect())
        .await
        .expect("append");
    stop.send(true).expect("stop");
    task.await.expect("mirror task");
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("mirror"))
        .expect("mirror dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() > 1, "rotated at 4 KiB");
    let report = verify_files(&files, &config.key, Some(44)).expect("intact and complete");
    assert_eq!(report.entries, 45);
    assert_eq!(report.last_seq, Some(44));
}
