//! `[alerts]` settings: the documented example parses and is valid, every bad setting is
//! refused with an error naming it, and secrets never show in debug output.

use std::path::{Path, PathBuf};

use custos_alerts::{AlertsConfig, SinkKind, WebhookConfig};
use custos_core::entry::Severity;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    alerts: AlertsConfig,
}

fn parse(text: &str) -> Result<AlertsConfig, String> {
    toml::from_str::<File>(text)
        .map(|f| f.alerts)
        .map_err(|e| e.to_string())
}

/// The first `toml` block of docs/alerts.md.
fn documented_example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/alerts.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("the block's end");
    doc[start..end].to_owned()
}

#[test]
fn the_documented_example_is_valid() {
    let config = parse(&documented_example()).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config.min_severity, Severity::High);
    assert_eq!(config.max_attempts_before_report, 8);
    assert_eq!(
        (config.initial_backoff_ms, config.max_backoff_ms),
        (500, 300_000)
    );
    assert_eq!(config.max_pending, 100_000);
    assert_eq!(
        config.events,
        AlertsConfig::default().events,
        "built-in list"
    );
    let kinds: Vec<(&str, SinkKind)> = config
        .webhooks
        .iter()
        .map(|w| (w.name.as_str(), w.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("siem", SinkKind::Generic),
            ("security-channel", SinkKind::Slack),
            ("oncall", SinkKind::Pagerduty),
        ]
    );
    assert_eq!(config.webhooks[1].min_severity, Some(Severity::Critical));
    assert_eq!(config.webhooks[1].tenants, Some(vec!["acme".to_owned()]));
    assert_eq!(config.webhooks[0].headers.len(), 1);
    assert!(config.webhooks[2].routing_key.is_some());
    assert_eq!(config.outbox_dir, None);
    let placed = config.with_data_dir(Path::new("/data"));
    assert_eq!(placed.outbox_dir, Some(PathBuf::from("/data/alerts")));
}

#[test]
fn defaults_and_custom_event_rules_parse() {
    let config = parse("[alerts]\n").expect("empty");
    assert_eq!(config, AlertsConfig::default());
    config.validate().expect("the defaults are valid");
    let custom = parse(
        r#"
        [alerts]
        min_severity = "critical"
        outbox_dir = "/var/lib/custos/alerts"
        events = [
          { event_type = "finding_created", min_severity = "medium" },
          { event_type = "heartbeat_missed" },
        ]
        "#,
    )
    .expect("custom rules");
    custom.validate().expect("valid");
    assert_eq!(custom.events.len(), 2);
    assert_eq!(custom.events[0].min_severity, Severity::Medium);
    assert_eq!(custom.events[1].min_severity, Severity::Info);
    let kept = custom.with_data_dir(Path::new("/data"));
    assert_eq!(
        kept.outbox_dir,
        Some(PathBuf::from("/var/lib/custos/alerts"))
    );
}

#[test]
fn malformed_settings_are_parse_errors_naming_the_key() {
    let cases = [
        ("[alerts]\nretries = 3\n", "retries"),
        (
            "[[alerts.webhooks]]\nname = \"a\"\nkind = \"teams\"\nurl = \"http://h/\"\n",
            "teams",
        ),
        ("[alerts]\nmin_severity = \"severe\"\n", "severe"),
        (
            "[[alerts.webhooks]]\nname = \"a\"\nkind = \"generic\"\nurl = \"http://h/\"\nsecret = 1\n",
            "secret",
        ),
        (
            "[[alerts.webhooks]]\nname = \"a\"\nkind = \"generic\"\n",
            "url",
        ),
    ];
    for (text, needle) in cases {
        let error = parse(text).expect_err(text);
        assert!(error.contains(needle), "{text}: {error}");
    }
}

fn valid() -> AlertsConfig {
    let mut pd = WebhookConfig::new(
        "pd",
        SinkKind::Pagerduty,
        "https://events.pagerduty.com/v2/enqueue",
    );
    pd.routing_key = Some("rk".into());
    AlertsConfig {
        webhooks: vec![
            WebhookConfig::new("json", SinkKind::Generic, "http://127.0.0.1:9000/hook"),
            WebhookConfig::new(
                "chat",
                SinkKind::Slack,
                "https://hooks.slack.com/services/T/B/X",
            ),
            pd,
        ],
        outbox_dir: Some("/tmp/outbox".into()),
        ..AlertsConfig::default()
    }
}

type Edit = fn(&mut AlertsConfig);

#[test]
fn every_bad_setting_is_named() {
    valid().validate().expect("the base is valid");
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "ftp url",
            |c| c.webhooks[0].url = "ftp://host/x".into(),
            "webhooks[0] (`json`): url: scheme `ftp` is not http or https",
        ),
        (
            "not a url",
            |c| c.webhooks[0].url = "hooks/custos".into(),
            "webhooks[0] (`json`): url: not a URL",
        ),
        (
            "no routing key",
            |c| c.webhooks[2].routing_key = None,
            "webhooks[2] (`pd`): routing_key: is required for kind `pagerduty`",
        ),
        (
            "blank routing key",
            |c| c.webhooks[2].routing_key = Some(" ".into()),
            "webhooks[2] (`pd`): routing_key: must not be empty",
        ),
        (
            "routing key on slack",
            |c| c.webhooks[1].routing_key = Some("rk".into()),
            "webhooks[1] (`chat`): routing_key: only kind `pagerduty` takes one, not `slack`",
        ),
        (
            "duplicate name",
            |c| c.webhooks[1].name = "json".into(),
            "webhooks[1] (`json`): name: another webhook has this name",
        ),
        (
            "empty name",
            |c| c.webhooks[0].name = String::new(),
            "webhooks[0] (``): name: must be 1 to 64 characters",
        ),
        (
            "spaced name",
            |c| c.webhooks[0].name = "my hook".into(),
            "name: only ASCII letters, digits",
        ),
        (
            "zero timeout",
            |c| c.webhooks[0].timeout_ms = 0,
            "webhooks[0] (`json`): timeout_ms (0) must be 1 to 600000",
        ),
        (
            "huge timeout",
            |c| c.webhooks[0].timeout_ms = 3_600_000,
            "timeout_ms (3600000) must be 1 to 600000",
        ),
        (
            "no event types",
            |c| c.webhooks[0].event_types = Some(vec![]),
            "event_types: an empty list would receive nothing",
        ),
        (
            "alert_ event type",
            |c| c.webhooks[0].event_types = Some(vec!["alert_delivered".into()]),
            "event_types[0]: `alert_delivered`: event types starting with `alert_` are never alerts",
        ),
        (
            "bad event type",
            |c| c.webhooks[0].event_types = Some(vec!["a b".into()]),
            "event_types[0]: `a b` is not a valid event type",
        ),
        (
            "no tenants",
            |c| c.webhooks[0].tenants = Some(vec![]),
            "tenants: an empty list would receive nothing",
        ),
        (
            "blank tenant",
            |c| c.webhooks[0].tenants = Some(vec!["acme".into(), String::new()]),
            "tenants[1]: must not be empty",
        ),
        (
            "bad header name",
            |c| {
                c.webhooks[0]
                    .headers
                    .insert("Bad Header".into(), "x".into());
            },
            "headers: `Bad Header` is not a valid header name",
        ),
        (
            "reserved header",
            |c| {
                c.webhooks[0]
                    .headers
                    .insert("Idempotency-Key".into(), "x".into());
            },
            "headers: `Idempotency-Key` is set by custos",
        ),
        (
            "bad header value",
            |c| {
                c.webhooks[0]
                    .headers
                    .insert("Authorization".into(), "Bearer\nsecret".into());
            },
            "headers: the value of `Authorization` is not a valid header value",
        ),
        (
            "zero attempts",
            |c| c.max_attempts_before_report = 0,
            "max_attempts_before_report must be at least 1",
        ),
        (
            "zero backoff",
            |c| c.initial_backoff_ms = 0,
            "initial_backoff_ms must be at least 1",
        ),
        (
            "backoff cap below start",
            |c| c.max_backoff_ms = 100,
            "max_backoff_ms (100) must not be less than initial_backoff_ms (500)",
        ),
        (
            "backoff cap too long",
            |c| c.max_backoff_ms = 100_000_000,
            "max_backoff_ms (100000000) must be at most 86400000",
        ),
        (
            "zero pending",
            |c| c.max_pending = 0,
            "max_pending must be at least 1",
        ),
        (
            "zero poll",
            |c| c.poll_interval_ms = 0,
            "poll_interval_ms (0) must be 1 to 60000",
        ),
        (
            "zero in flight",
            |c| c.max_in_flight_per_sink = 0,
            "max_in_flight_per_sink (0) must be 1 to 256",
        ),
        (
            "empty outbox dir",
            |c| c.outbox_dir = Some(PathBuf::new()),
            "outbox_dir must not be empty",
        ),
        (
            "empty event rule",
            |c| c.events[0].event_type = String::new(),
            "events[0].event_type: must be 1 to 128 characters",
        ),
        (
            "alert_ event rule",
            |c| c.events[1].event_type = "alert_x".into(),
            "events[1].event_type: `alert_x`: event types starting with `alert_`",
        ),
    ];
    for (case, edit, expected) in cases {
        let mut config = valid();
        edit(&mut config);
        let error = config.validate().expect_err(case);
        assert!(error.contains(expected), "{case}: got `{error}`");
        assert!(!error.contains("secret"), "{case}: a secret in `{error}`");
    }
}

#[test]
fn debug_output_shows_no_secret() {
    let mut config = valid();
    config.webhooks[0]
        .headers
        .insert("Authorization".into(), "Bearer tok3n".into());
    config.webhooks[2].routing_key = Some("R0UT1NGKEY".into());
    let shown = format!("{config:?}");
    for secret in ["tok3n", "R0UT1NGKEY", "/services/T/B/X", "9000/hook"] {
        assert!(!shown.contains(secret), "`{secret}` in {shown}");
    }
    assert!(shown.contains("Authorization"), "header names are shown");
    assert!(shown.contains("hooks.slack.com"), "hosts are shown");
}
