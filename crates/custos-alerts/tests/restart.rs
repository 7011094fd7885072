//! The outbox across stops, crashes and damage: every alert arrives after restarts while the
//! webhook was down; a torn last journal line is tolerated; a damaged middle line is a clear
//! error; a full outbox holds the cursor and loses nothing; deliveries of a removed webhook
//! are discarded only with a ledger record.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use common::{
    Receiver, Running, append, entries_of, event, eventually, fast_config, free_port, ledger,
};
use custos_alerts::outbox::JOURNAL_FILE;
use custos_alerts::{AlertError, Dispatcher, SinkKind, WebhookConfig, run_dispatcher};
use custos_core::entry::Severity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alert_is_lost_across_a_stop_a_crash_and_a_torn_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let outbox = dir.path().join("outbox");
    let down = free_port();
    let url = format!("http://{down}/hook");
    let ops = WebhookConfig::new("ops", SinkKind::Generic, url.clone());
    let old = WebhookConfig::new("old", SinkKind::Slack, url);
    let mut ids = BTreeSet::new();

    // First run: the webhook is down; alerts pile up in the outbox. A clean stop.
    let first = Running::start(&ledger, fast_config(&outbox, vec![ops.clone(), old]));
    for i in 0..5 {
        let (_, id) = append(&ledger, event("acme", "security_event", Severity::High)).await;
        ids.insert(id);
        if i == 2 {
            append(&ledger, event("acme", "tool_invocation", Severity::Info)).await;
        }
    }
    eventually("10 pending deliveries and failed attempts", || {
        let s = first.stats.snapshot();
        (s.pending == 10 && s.failed_attempts >= 2).then_some(())
    })
    .await;
    first.stop().await.expect("stops cleanly");

    // While no dispatcher runs, more alerts arrive; then the journal gets a torn last line.
    for _ in 0..3 {
        let (_, id) = append(&ledger, event("globex", "agent_suspended", Severity::Info)).await;
        ids.insert(id);
    }
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(outbox.join(JOURNAL_FILE))
        .expect("journal");
    journal
        .write_all(br#"{"op":"pending","sink":"ops","seq":99,"ent"#)
        .expect("tear");
    drop(journal);

    // Second run, without the `old` webhook; killed mid-flight, as by kill -9.
    let second = Running::start(&ledger, fast_config(&outbox, vec![ops.clone()]));
    eventually("the alerts of the stop examined", || {
        let s = second.stats.snapshot();
        (s.pending == 8 && s.failed_attempts >= 1).then_some(())
    })
    .await;
    second.kill().await;
    let removed = entries_of(&ledger, "alert_sink_removed");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].data["sink"], "old");
    assert_eq!(removed[0].data["discarded"], 5);

    // Third run, and the webhook comes up: every alert arrives.
    let third = eventually("the killed dispatcher's lock released", || {
        Dispatcher::open(ledger.clone(), fast_config(&outbox, vec![ops.clone()])).ok()
    })
    .await;
    drop(third);
    let third = Running::start(&ledger, fast_config(&outbox, vec![ops.clone()]));
    let receiver = Receiver::start_on(down).await;
    let got = eventually("every alert delivered", || {
        let got: BTreeSet<String> = receiver
            .accepted("/hook")
            .iter()
            .filter_map(|r| r.body["alert"]["id"].as_str().map(str::to_owned))
            .collect();
        (got == ids).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 8);
    eventually("every delivery recorded", || {
        let recorded: BTreeSet<String> = entries_of(&ledger, "alert_delivered")
            .iter()
            .filter_map(|e| e.data["entry_id"].as_str().map(str::to_owned))
            .collect();
        (recorded == ids).then_some(())
    })
    .await;
    eventually("the outbox emptied", || {
        (third.stats.pending() == 0).then_some(())
    })
    .await;
    third.stop().await.expect("stops cleanly");
    common::close(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_line_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let outbox = dir.path().join("outbox");
    let hook = WebhookConfig::new("ops", SinkKind::Generic, format!("http://{}/", free_port()));
    let config = fast_config(&outbox, vec![hook]);
    let running = Running::start(&ledger, config.clone());
    append(&ledger, event("acme", "security_event", Severity::High)).await;
    eventually("a pending delivery", || {
        (running.stats.pending() == 1).then_some(())
    })
    .await;
    running.stop().await.expect("stops cleanly");

    let path = outbox.join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "header, cursor, the delivery: {text}");
    lines.insert(2, "{\"op\":\"pending\",\"sink\":");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");

    let error = Dispatcher::open(ledger.clone(), config.clone()).expect_err("damaged");
    match &error {
        AlertError::Corrupt { file, line, .. } => {
            assert_eq!(file, &path);
            assert_eq!(*line, 3);
        }
        other => panic!("expected a corrupt journal, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 3"), "{message}");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let again = run_dispatcher(ledger.clone(), config, stopped).await;
    assert!(
        matches!(again, Err(AlertError::Corrupt { line: 3, .. })),
        "{again:?}"
    );
    common::close(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_holds_the_cursor_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX, 503);
    let hook = WebhookConfig::new("ops", SinkKind::Generic, receiver.url("/hook"));
    let mut config = fast_config(&dir.path().join("outbox"), vec![hook]);
    config.max_pending = 2;
    config.max_backoff_ms = 50;
    // No `alert_delivery_failed` between the alerts: the cursor check below counts seqs.
    config.max_attempts_before_report = 1_000_000;
    let running = Running::start(&ledger, config);
    let mut seqs = BTreeSet::new();
    for _ in 0..5 {
        let (seq, _) = append(&ledger, event("acme", "rogue_detection", Severity::High)).await;
        seqs.insert(seq);
    }
    eventually("the outbox full", || {
        running.stats.outbox_full().then_some(())
    })
    .await;
    let stats = running.stats.snapshot();
    assert_eq!(stats.pending, 2);
    let third = *seqs.iter().nth(2).expect("a third alert");
    assert_eq!(
        stats.cursor, third,
        "the cursor waits before the third alert"
    );
    let full = eventually("alert_outbox_full recorded", || {
        let full = entries_of(&ledger, "alert_outbox_full");
        (!full.is_empty()).then_some(full)
    })
    .await;
    assert_eq!(full.len(), 1, "recorded once");
    assert_eq!(full[0].data["max_pending"], 2);
    assert_eq!(full[0].data["cursor"], third);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        entries_of(&ledger, "alert_outbox_full").len(),
        1,
        "still once"
    );

    receiver.fail_next(0, 503);
    let got = eventually("every alert delivered", || {
        let got: BTreeSet<u64> = receiver
            .accepted("/hook")
            .iter()
            .filter_map(|r| r.body["alert"]["seq"].as_u64())
            .collect();
        (got == seqs).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 5);
    eventually("room again", || {
        (!running.stats.outbox_full()).then_some(())
    })
    .await;
    running.stop().await.expect("stops cleanly");
    common::close(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_is_used_by_one_dispatcher_and_belongs_to_one_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger_a = ledger(&dir.path().join("a")).await;
    let outbox = dir.path().join("outbox");
    let hook = WebhookConfig::new("ops", SinkKind::Generic, format!("http://{}/", free_port()));
    let config = fast_config(&outbox, vec![hook]);
    for _ in 0..3 {
        append(&ledger_a, event("acme", "tool_invocation", Severity::Info)).await;
    }
    let first = Dispatcher::open(ledger_a.clone(), config.clone()).expect("open");
    let busy = Dispatcher::open(ledger_a.clone(), config.clone()).expect_err("in use");
    assert!(busy.to_string().contains("in use"), "{busy}");
    drop(first);

    let ledger_b = ledger(&dir.path().join("b")).await;
    let other = Dispatcher::open(ledger_b.clone(), config).expect_err("another ledger");
    assert!(other.to_string().contains("another ledger"), "{other}");
    common::close(&ledger_a).await;
    common::close(&ledger_b).await;
}
