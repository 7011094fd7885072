//! Delivery over real HTTP from a real ledger: the three payload shapes, retries with growing
//! backoff until the webhook recovers, `alert_delivery_failed` after the threshold (or at once
//! on a rejection), `alert_delivered` for every success, and only alerts go out.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Receiver, Running, append, entries_of, event, eventually, fast_config, ledger};
use custos_alerts::{SinkKind, WebhookConfig};
use custos_core::entry::{Outcome, Severity};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_gets_its_payload_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let receiver = Receiver::start().await;
    let mut pd = WebhookConfig::new("pd", SinkKind::Pagerduty, receiver.url("/pd"));
    pd.routing_key = Some("R0UT1NG".into());
    let hooks = vec![
        WebhookConfig::new("json", SinkKind::Generic, receiver.url("/generic")),
        WebhookConfig::new("chat", SinkKind::Slack, receiver.url("/slack")),
        pd,
    ];
    let running = Running::start(&ledger, fast_config(&dir.path().join("outbox"), hooks));

    // (event type, severity, PagerDuty severity): alerts by severity and by type.
    let cases = [
        ("security_event", Severity::Critical, "critical"),
        ("tool_invocation", Severity::High, "error"),
        ("override_requested", Severity::Medium, "warning"),
        ("agent_suspended", Severity::Low, "info"),
        ("execution_deviation", Severity::Info, "info"),
    ];
    let mut alerts = Vec::new();
    for (event_type, severity, pd_severity) in cases {
        let (seq, id) = append(&ledger, event("acme", event_type, severity)).await;
        alerts.push((seq, id, event_type, severity, pd_severity));
    }
    eventually("every alert at every webhook", || {
        (receiver.accepted("/generic").len() == 5
            && receiver.accepted("/slack").len() == 5
            && receiver.accepted("/pd").len() == 5)
            .then_some(())
    })
    .await;

    for (seq, id, event_type, severity, pd_severity) in &alerts {
        let key = format!("custos:acme:{id}");
        let entry = ledger.get(*seq).expect("entry");
        let find = |path: &str, pick: &dyn Fn(&Value) -> bool| {
            receiver
                .accepted(path)
                .into_iter()
                .find(|r| pick(&r.body))
                .unwrap_or_else(|| panic!("no {path} request for seq {seq}"))
        };
        for path in ["/generic", "/slack", "/pd"] {
            let r = match path {
                "/generic" => find(path, &|b| b["alert"]["seq"] == *seq),
                "/slack" => find(path, &|b| b.to_string().contains(id.as_str())),
                _ => find(path, &|b| b["dedup_key"] == key.as_str()),
            };
            assert_eq!(r.header("idempotency-key").as_deref(), Some(key.as_str()));
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/json")
            );
        }

        let generic = find("/generic", &|b| b["alert"]["seq"] == *seq).body;
        let alert = &generic["alert"];
        assert_eq!(alert["idempotency_key"], key.as_str());
        assert_eq!(alert["severity"], severity.as_str());
        assert_eq!(alert["tenant"], "acme");
        assert_eq!(alert["event_type"], *event_type);
        assert_eq!(alert["id"], id.as_str());
        assert_eq!(alert["ts"], entry.ts.as_str());
        assert_eq!(alert["actor"], "agent:a1");
        assert_eq!(alert["resource"], "/crm/contacts");
        assert!(
            alert["summary"]
                .as_str()
                .is_some_and(|s| s.contains(event_type)),
            "{alert}"
        );
        assert_eq!(
            generic["entry"],
            serde_json::to_value(&entry).expect("entry json"),
            "the whole entry"
        );

        let slack = find("/slack", &|b| b.to_string().contains(id.as_str())).body;
        assert!(
            slack["text"]
                .as_str()
                .is_some_and(|t| t.contains(event_type))
        );
        let section = &slack["blocks"][0];
        assert_eq!(section["type"], "section");
        assert_eq!(section["text"]["type"], "mrkdwn");
        let fields = section["fields"].as_array().expect("fields");
        assert!(!fields.is_empty() && fields.len() <= 10);
        assert!(fields.iter().all(|f| f["type"] == "mrkdwn"));
        assert!(
            fields
                .iter()
                .any(|f| f["text"] == format!("*Severity*\n{severity}"))
        );
        assert_eq!(slack["blocks"][1]["type"], "context");
        assert!(
            slack.to_string().contains(&key),
            "the key is in the message"
        );

        let pd = find("/pd", &|b| b["dedup_key"] == key.as_str()).body;
        assert_eq!(pd["routing_key"], "R0UT1NG");
        assert_eq!(pd["event_action"], "trigger");
        let payload = &pd["payload"];
        assert!(
            payload["summary"]
                .as_str()
                .is_some_and(|s| !s.is_empty() && s.chars().count() <= 1024)
        );
        assert_eq!(payload["source"], "custos");
        assert_eq!(payload["severity"], *pd_severity, "{event_type} {severity}");
        assert_eq!(payload["timestamp"], entry.ts.as_str());
        assert_eq!(payload["component"], "/crm/contacts");
        assert_eq!(payload["group"], "acme");
        assert_eq!(payload["class"], *event_type);
        assert_eq!(payload["custom_details"]["seq"], *seq);
        assert_eq!(payload["custom_details"]["idempotency_key"], key.as_str());
        let top: BTreeSet<&str> = pd
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            top,
            BTreeSet::from(["routing_key", "event_action", "dedup_key", "payload"]),
            "only Events API v2 fields at the top level"
        );
    }

    // Every success is recorded, once per webhook and alert.
    let delivered = eventually("15 alert_delivered entries", || {
        let d = entries_of(&ledger, "alert_delivered");
        (d.len() == 15).then_some(d)
    })
    .await;
    let mut seen = BTreeSet::new();
    for d in &delivered {
        assert_eq!(d.tenant, "acme");
        assert_eq!((d.severity, d.outcome), (Severity::Info, Outcome::Success));
        assert_eq!((d.actor.as_str(), d.action.as_str()), ("system", "deliver"));
        let sink = d.data["sink"].as_str().expect("sink").to_owned();
        assert_eq!(
            d.resource.as_deref(),
            Some(format!("alert:{sink}").as_str())
        );
        assert_eq!(d.data["attempts"], 1);
        let seq = d.data["entry_seq"].as_u64().expect("seq");
        let id = &alerts.iter().find(|a| a.0 == seq).expect("an alert").1;
        assert_eq!(d.data["entry_id"], id.as_str());
        assert!(seen.insert((sink, seq)));
    }
    assert!(entries_of(&ledger, "alert_delivery_failed").is_empty());
    running.stop().await.expect("stops cleanly");
    assert_eq!(
        receiver.received().len(),
        15,
        "the dispatcher's own entries were not delivered"
    );
    common::close(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_with_growing_backoff_and_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let receiver = Receiver::start().await;
    receiver.fail_next(5, 503);
    let mut hook = WebhookConfig::new("ops", SinkKind::Generic, receiver.url("/hook"));
    hook.headers
        .insert("Authorization".into(), "Bearer s3cr3t-t0ken".into());
    let mut config = fast_config(&dir.path().join("outbox"), vec![hook]);
    config.initial_backoff_ms = 20;
    config.max_backoff_ms = 1000;
    config.max_attempts_before_report = 3;
    let running = Running::start(&ledger, config);
    let (seq, id) = append(&ledger, event("acme", "agent_suspended", Severity::Medium)).await;

    eventually("the delivery after the webhook recovers", || {
        (!receiver.accepted("/hook").is_empty()).then_some(())
    })
    .await;
    let requests = receiver.received();
    assert_eq!(requests.len(), 6, "5 failures, then the success");
    assert!(requests[..5].iter().all(|r| r.status == 503));
    let key = format!("custos:acme:{id}");
    for r in &requests {
        assert_eq!(r.header("idempotency-key").as_deref(), Some(key.as_str()));
        assert_eq!(
            r.header("authorization").as_deref(),
            Some("Bearer s3cr3t-t0ken")
        );
        assert_eq!(
            r.body, requests[0].body,
            "every attempt sends the same alert"
        );
    }
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    // Delays are 10–20 ms, 20–40, 40–80, 80–160, 160–320 ms: loosely, they grow.
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(9)),
        "{gaps:?}"
    );
    assert!(gaps[4] > gaps[0] && gaps[3] > gaps[0], "{gaps:?}");

    let delivered = eventually("alert_delivered", || {
        entries_of(&ledger, "alert_delivered").pop()
    })
    .await;
    assert_eq!(delivered.data["attempts"], 6);
    assert_eq!(delivered.data["entry_seq"], seq);
    let failed = entries_of(&ledger, "alert_delivery_failed");
    assert_eq!(failed.len(), 1, "reported once, at the threshold");
    let f = &failed[0];
    assert_eq!(f.tenant, "acme");
    assert_eq!((f.severity, f.outcome), (Severity::High, Outcome::Failure));
    assert_eq!((f.actor.as_str(), f.action.as_str()), ("system", "deliver"));
    assert_eq!(f.resource.as_deref(), Some("alert:ops"));
    assert_eq!(f.data["sink"], "ops");
    assert_eq!(f.data["entry_seq"], seq);
    assert_eq!(f.data["entry_id"], id.as_str());
    assert_eq!(f.data["attempts"], 3);
    assert_eq!(f.data["last_error"], "HTTP 503 Service Unavailable");
    for e in [f, &delivered] {
        let text = serde_json::to_string(e).expect("json");
        assert!(
            !text.contains("s3cr3t"),
            "no header value in the ledger: {text}"
        );
        assert!(!text.contains("/hook"), "no URL in the ledger: {text}");
    }
    let stats = running.stats.snapshot();
    assert_eq!(
        (stats.delivered, stats.failed_attempts, stats.reported),
        (1, 5, 1)
    );
    running.stop().await.expect("stops cleanly");
    common::close(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejecting_webhook_is_reported_at_once_and_still_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let receiver = Receiver::start().await;
    receiver.fail_next(2, 400);
    let hook = WebhookConfig::new("ops", SinkKind::Generic, receiver.url("/hook"));
    let running = Running::start(&ledger, fast_config(&dir.path().join("outbox"), vec![hook]));
    append(&ledger, event("acme", "security_event", Severity::High)).await;

    let delivered = eventually("alert_delivered", || {
        entries_of(&ledger, "alert_delivered").pop()
    })
    .await;
    assert_eq!(delivered.data["attempts"], 3);
    let failed = entries_of(&ledger, "alert_delivery_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].data["attempts"], 1,
        "reported at the first rejection"
    );
    assert_eq!(failed[0].data["last_error"], "HTTP 400 Bad Request");
    running.stop().await.expect("stops cleanly");
    common::close(&ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_alerts_go_out_and_webhooks_narrow_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir.path().join("ledger")).await;
    let receiver = Receiver::start().await;
    let all = WebhookConfig::new("all", SinkKind::Generic, receiver.url("/all"));
    let mut narrow = WebhookConfig::new("narrow", SinkKind::Generic, receiver.url("/narrow"));
    narrow.tenants = Some(vec!["globex".into()]);
    narrow.min_severity = Some(Severity::Critical);
    let running = Running::start(
        &ledger,
        fast_config(&dir.path().join("outbox"), vec![all, narrow]),
    );

    // (tenant, event type, severity, an alert?)
    let cases = [
        ("acme", "tool_invocation", Severity::Info, false),
        ("acme", "tool_invocation", Severity::Medium, false),
        ("acme", "tool_invocation", Severity::High, true),
        ("acme", "finding_created", Severity::Medium, false),
        ("acme", "finding_created", Severity::High, true),
        ("acme", "override_denied", Severity::Low, false),
        ("acme", "alert_custom", Severity::Critical, false),
        ("acme", "alert_delivery_failed", Severity::High, false),
        ("globex", "security_event", Severity::High, true),
        ("globex", "rogue_detection", Severity::Critical, true),
        ("globex", "policy_evaluation", Severity::Info, false),
    ];
    let mut expect_all = BTreeSet::new();
    let mut expect_narrow = BTreeSet::new();
    for (tenant, event_type, severity, alert) in cases {
        let (seq, _) = append(&ledger, event(tenant, event_type, severity)).await;
        if alert {
            expect_all.insert(seq);
            if tenant == "globex" && severity == Severity::Critical {
                expect_narrow.insert(seq);
            }
        }
    }
    let (marker, _) = append(&ledger, event("acme", "store_unreachable", Severity::Info)).await;
    expect_all.insert(marker);
    let seqs = |path: &str| -> BTreeSet<u64> {
        receiver
            .accepted(path)
            .iter()
            .filter_map(|r| r.body["alert"]["seq"].as_u64())
            .collect()
    };
    eventually("the marker alert", || {
        seqs("/all").contains(&marker).then_some(())
    })
    .await;
    eventually("the dispatcher caught up", || {
        (running.stats.cursor() == ledger.size().expect("size") && running.stats.pending() == 0)
            .then_some(())
    })
    .await;
    assert_eq!(seqs("/all"), expect_all);
    assert_eq!(seqs("/narrow"), expect_narrow);
    running.stop().await.expect("stops cleanly");
    common::close(&ledger).await;
}
