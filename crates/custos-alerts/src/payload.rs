//! The request bodies of the three webhook kinds, built from a ledger entry. Pure: the same
//! entry always gives the same bytes, so every retry sends the same alert.
//!
//! - generic: `{"alert": {summary, severity, tenant, event_type, seq, id, ts, actor, action,
//!   outcome, resource, idempotency_key}, "entry": <the entry>}`;
//! - Slack incoming webhook: `{"text": <summary>, "blocks": [section with mrkdwn text and
//!   fields, context with entry id, seq, time and idempotency key]}`;
//! - PagerDuty Events API v2: `{"routing_key", "event_action": "trigger", "dedup_key",
//!   "payload": {summary, source, severity, timestamp, component, group, class,
//!   custom_details}}`.

use custos_core::entry::{Entry, Severity};
use serde_json::{Map, Value, json};

use crate::config::SinkKind;

/// `payload.source` of PagerDuty events.
pub const SOURCE: &str = "custos";
/// Longest summary, in characters (PagerDuty's limit for `payload.summary`).
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Longest text of one Slack section field.
const MAX_SLACK_FIELD_CHARS: usize = 2000;
/// Longest text of a Slack section.
const MAX_SLACK_SECTION_CHARS: usize = 3000;

/// The alert's idempotency key: `custos:<tenant>:<entry id>`. The entry id is assigned once,
/// at sequencing, so the key is the same on every attempt, after a restart and on every node;
/// it is visible ASCII (tenants and UUIDs are), at most 172 characters (PagerDuty allows 255).
/// Sent as the `Idempotency-Key` header and in every body (PagerDuty's `dedup_key`).
pub fn idempotency_key(entry: &Entry) -> String {
    format!("custos:{}:{}", entry.tenant, entry.id)
}

/// One line about the entry, at most [`MAX_SUMMARY_CHARS`] characters:
/// `[severity] event_type in tenant: actor action on resource (outcome): policy decision`.
pub fn summary(entry: &Entry) -> String {
    let mut s = format!(
        "[{}] {} in {}: {} {}",
        entry.severity, entry.event_type, entry.tenant, entry.actor, entry.action
    );
    if let Some(resource) = &entry.resource {
        s.push_str(" on ");
        s.push_str(resource);
    }
    s.push_str(" (");
    s.push_str(entry.outcome.as_str());
    s.push(')');
    if let Some(decision) = &entry.policy_decision {
        s.push_str(": ");
        s.push_str(decision);
    }
    truncate(&s, MAX_SUMMARY_CHARS)
}

/// PagerDuty's severity of a custos severity: critical → critical, high → error, medium →
/// warning, low and info → info.
pub fn pagerduty_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

/// The body for a webhook of `kind` (`routing_key` is used by PagerDuty only).
pub fn body(kind: SinkKind, routing_key: Option<&str>, entry: &Entry) -> Value {
    match kind {
        SinkKind::Generic => generic(entry),
        SinkKind::Slack => slack(entry),
        SinkKind::Pagerduty => pagerduty(entry, routing_key.unwrap_or_default()),
    }
}

/// The generic JSON body: a summary and the whole entry.
pub fn generic(entry: &Entry) -> Value {
    json!({
        "alert": {
            "idempotency_key": idempotency_key(entry),
            "summary": summary(entry),
            "severity": entry.severity,
            "tenant": entry.tenant,
            "event_type": entry.event_type,
            "seq": entry.seq,
            "id": entry.id,
            "ts": entry.ts,
            "actor": entry.actor,
            "action": entry.action,
            "outcome": entry.outcome,
            "resource": entry.resource,
        },
        "entry": entry_json(entry),
    })
}

/// A Slack incoming-webhook message: `text` (the notification fallback) and Block Kit
/// `blocks`.
pub fn slack(entry: &Entry) -> Value {
    let field = |label: &str, value: &str| {
        json!({
            "type": "mrkdwn",
            "text": truncate(&format!("*{label}*\n{}", mrkdwn(value)), MAX_SLACK_FIELD_CHARS),
        })
    };
    let mut fields = vec![
        field("Severity", entry.severity.as_str()),
        field("Tenant", &entry.tenant),
        field("Event type", &entry.event_type),
        field("Actor", &entry.actor),
        field("Action", &entry.action),
        field("Outcome", entry.outcome.as_str()),
    ];
    if let Some(resource) = &entry.resource {
        fields.push(field("Resource", resource));
    }
    if let Some(rule) = &entry.matched_rule {
        fields.push(field("Rule", rule));
    }
    let headline = truncate(
        &format!(
            "*custos alert: {}* ({})\n{}",
            mrkdwn(&entry.event_type),
            entry.severity,
            mrkdwn(&summary(entry))
        ),
        MAX_SLACK_SECTION_CHARS,
    );
    let context = format!(
        "entry `{}` · seq {} · {} · idempotency key `{}`",
        entry.id,
        entry.seq,
        entry.ts,
        idempotency_key(entry)
    );
    json!({
        "text": summary(entry),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": headline},
                "fields": fields,
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": context}],
            },
        ],
    })
}

/// A PagerDuty Events API v2 `trigger` event, de-duplicated by the idempotency key.
pub fn pagerduty(entry: &Entry, routing_key: &str) -> Value {
    let mut details = match entry_json(entry) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    details.remove("prev_hash");
    details.insert("idempotency_key".into(), idempotency_key(entry).into());
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": idempotency_key(entry),
        "payload": {
            "summary": summary(entry),
            "source": SOURCE,
            "severity": pagerduty_severity(entry.severity),
            "timestamp": entry.ts,
            "component": entry.resource.as_deref().unwrap_or(&entry.actor),
            "group": entry.tenant,
            "class": entry.event_type,
            "custom_details": details,
        },
    })
}

/// The entry as JSON (an `Entry` always serialises: string keys, no floats of its own).
fn entry_json(entry: &Entry) -> Value {
    serde_json::to_value(entry).unwrap_or(Value::Null)
}

/// Slack mrkdwn needs `&`, `<` and `>` escaped (they start links and mentions).
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, ending in `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_core::entry::Outcome;

    fn entry(severity: Severity) -> Entry {
        Entry {
            seq: 42,
            id: "0190a5b4-0000-7000-8000-000000000001".into(),
            ts: "2026-01-02T03:04:05.000000006Z".into(),
            client_ts: None,
            tenant: "acme".into(),
            event_type: "security_event".into(),
            actor: "agent:a1".into(),
            action: "deny".into(),
            resource: Some("/crm/<contacts>".into()),
            target: None,
            outcome: Outcome::Denied,
            severity,
            policy_decision: Some("blocked".into()),
            matched_rule: None,
            trace_id: None,
            session_id: None,
            request: None,
            data: Map::new(),
            prev_hash: "00".repeat(32),
        }
    }

    #[test]
    fn severities_map_to_pagerduty_severities() {
        let table = [
            (Severity::Critical, "critical"),
            (Severity::High, "error"),
            (Severity::Medium, "warning"),
            (Severity::Low, "info"),
            (Severity::Info, "info"),
        ];
        for (s, expect) in table {
            assert_eq!(pagerduty_severity(s), expect, "{s}");
            let body = pagerduty(&entry(s), "rk");
            assert_eq!(body["payload"]["severity"], expect);
        }
    }

    #[test]
    fn the_summary_names_the_event_and_is_bounded() {
        let e = entry(Severity::High);
        assert_eq!(
            summary(&e),
            "[high] security_event in acme: agent:a1 deny on /crm/<contacts> (denied): blocked"
        );
        let mut long = e.clone();
        long.policy_decision = Some("x".repeat(5000));
        let s = summary(&long);
        assert_eq!(s.chars().count(), MAX_SUMMARY_CHARS);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn the_idempotency_key_is_the_dedup_key_and_in_every_body() {
        let e = entry(Severity::Critical);
        let key = "custos:acme:0190a5b4-0000-7000-8000-000000000001";
        assert_eq!(idempotency_key(&e), key);
        assert_eq!(generic(&e)["alert"]["idempotency_key"], key);
        assert_eq!(pagerduty(&e, "rk")["dedup_key"], key);
        assert_eq!(
            pagerduty(&e, "rk")["payload"]["custom_details"]["idempotency_key"],
            key
        );
        let context = slack(&e)["blocks"][1]["elements"][0]["text"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(context.contains(key), "{context}");
    }

    #[test]
    fn slack_text_is_escaped() {
        let body = slack(&entry(Severity::High));
        let headline = body["blocks"][0]["text"]["text"].as_str().unwrap_or("");
        assert!(headline.contains("/crm/&lt;contacts&gt;"), "{headline}");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(body["blocks"][0]["fields"][0]["text"], "*Severity*\nhigh");
    }
}
