//! The ledger entries the dispatcher writes about its own work. Their event types start with
//! `alert_`, so they are never alerts themselves. Pure: each function builds an entry body.
//!
//! | event type | tenant | severity | outcome | when |
//! | --- | --- | --- | --- | --- |
//! | `alert_delivered` | the alert's | info | success | every successful delivery |
//! | `alert_delivery_failed` | the alert's | high | failure | once per delivery, after `max_attempts_before_report` failures or the first rejection |
//! | `alert_outbox_full` | `system` | high | failure | the outbox reached `max_pending` (once per episode) |
//! | `alert_sink_removed` | `system` | medium | success | pending deliveries of a webhook no longer configured were discarded at start |
//!
//! All have actor `system`; the first two have action `deliver` and resource `alert:<sink>`
//! and data `{sink, entry_seq, entry_id, attempts}` (`last_error` too when failed: a status
//! or transport error, never a URL, key or header value).

use custos_core::entry::{EntryBody, Outcome, Severity};
use custos_ledger::SYSTEM_TENANT;
use serde_json::{Map, Value};

use crate::payload::truncate;

/// A delivery went out.
pub const EVENT_DELIVERED: &str = "alert_delivered";
/// A delivery keeps failing (it is still retried).
pub const EVENT_DELIVERY_FAILED: &str = "alert_delivery_failed";
/// The outbox is full: new alerts wait in the ledger.
pub const EVENT_OUTBOX_FULL: &str = "alert_outbox_full";
/// Deliveries to a webhook no longer configured were discarded.
pub const EVENT_SINK_REMOVED: &str = "alert_sink_removed";

/// Event types only the dispatcher writes; the server should refuse them from clients (a
/// forged `alert_delivered` would fake the proof that an alert went out). Every `alert_*`
/// type is reserved in spirit: [`crate::rule::DISPATCHER_EVENT_PREFIX`].
pub const RESERVED_EVENT_TYPES: [&str; 4] = [
    EVENT_DELIVERED,
    EVENT_DELIVERY_FAILED,
    EVENT_OUTBOX_FULL,
    EVENT_SINK_REMOVED,
];

/// Longest `last_error` recorded.
const MAX_ERROR_CHARS: usize = 512;

/// Which delivery an entry is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryFacts<'a> {
    /// The webhook's name.
    pub sink: &'a str,
    /// The alert entry's tenant.
    pub tenant: &'a str,
    /// The alert entry's seq.
    pub entry_seq: u64,
    /// The alert entry's id.
    pub entry_id: &'a str,
    /// Attempts made so far, this one included.
    pub attempts: u32,
}

impl DeliveryFacts<'_> {
    fn body(&self, event_type: &str, outcome: Outcome, severity: Severity) -> EntryBody {
        let mut body = EntryBody::new(self.tenant, event_type, "system", "deliver", outcome);
        body.severity = severity;
        body.resource = Some(format!("alert:{}", self.sink));
        let mut data = Map::new();
        data.insert("sink".into(), self.sink.into());
        data.insert("entry_seq".into(), self.entry_seq.into());
        data.insert("entry_id".into(), self.entry_id.into());
        data.insert("attempts".into(), self.attempts.into());
        body.data = data;
        body
    }
}

/// `alert_delivered`.
pub fn delivered(facts: &DeliveryFacts<'_>) -> EntryBody {
    facts.body(EVENT_DELIVERED, Outcome::Success, Severity::Info)
}

/// `alert_delivery_failed`, with the last error (already free of secrets; bounded here).
pub fn delivery_failed(facts: &DeliveryFacts<'_>, last_error: &str) -> EntryBody {
    let mut body = facts.body(EVENT_DELIVERY_FAILED, Outcome::Failure, Severity::High);
    body.data.insert(
        "last_error".into(),
        truncate(last_error, MAX_ERROR_CHARS).into(),
    );
    body
}

/// `alert_outbox_full`: `pending` deliveries wait, the limit is `max_pending`, entries from
/// `cursor` on are not examined yet.
pub fn outbox_full(pending: usize, max_pending: usize, cursor: u64) -> EntryBody {
    let mut body = EntryBody::new(
        SYSTEM_TENANT,
        EVENT_OUTBOX_FULL,
        "system",
        "enqueue",
        Outcome::Failure,
    );
    body.severity = Severity::High;
    body.resource = Some("alert:outbox".into());
    let mut data = Map::new();
    data.insert("pending".into(), pending.into());
    data.insert("max_pending".into(), max_pending.into());
    data.insert("cursor".into(), cursor.into());
    body.data = data;
    body
}

/// `alert_sink_removed`: `seqs` are the alert entries whose delivery to `sink` was discarded.
pub fn sink_removed(sink: &str, seqs: &[u64]) -> EntryBody {
    let mut body = EntryBody::new(
        SYSTEM_TENANT,
        EVENT_SINK_REMOVED,
        "system",
        "discard",
        Outcome::Success,
    );
    body.severity = Severity::Medium;
    body.resource = Some(format!("alert:{sink}"));
    let mut data = Map::new();
    data.insert("sink".into(), sink.into());
    data.insert("discarded".into(), seqs.len().into());
    data.insert(
        "first_seq".into(),
        seqs.iter().min().map_or(Value::Null, |s| (*s).into()),
    );
    data.insert(
        "last_seq".into(),
        seqs.iter().max().map_or(Value::Null, |s| (*s).into()),
    );
    body.data = data;
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::AlertRule;
    use custos_core::entry::{Limits, PreparedEntry};
    use serde_json::json;

    fn facts() -> DeliveryFacts<'static> {
        DeliveryFacts {
            sink: "oncall",
            tenant: "acme",
            entry_seq: 7,
            entry_id: "0190a5b4-0000-7000-8000-000000000001",
            attempts: 3,
        }
    }

    #[test]
    fn delivery_records_name_the_sink_and_the_alert() {
        let ok = delivered(&facts());
        assert_eq!(
            (
                ok.event_type.as_str(),
                ok.tenant.as_str(),
                ok.actor.as_str()
            ),
            ("alert_delivered", "acme", "system")
        );
        assert_eq!(
            (ok.severity, ok.outcome),
            (Severity::Info, Outcome::Success)
        );
        assert_eq!(ok.resource.as_deref(), Some("alert:oncall"));
        assert_eq!(
            Value::Object(ok.data.clone()),
            json!({"sink": "oncall", "entry_seq": 7, "entry_id": "0190a5b4-0000-7000-8000-000000000001", "attempts": 3})
        );
        let failed = delivery_failed(&facts(), &"e".repeat(2000));
        assert_eq!(failed.event_type, "alert_delivery_failed");
        assert_eq!(
            (failed.severity, failed.outcome),
            (Severity::High, Outcome::Failure)
        );
        assert_eq!(failed.action, "deliver");
        let error = failed.data["last_error"].as_str().unwrap_or("");
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS);
    }

    #[test]
    fn every_record_is_a_valid_entry_and_never_an_alert() {
        let rule = AlertRule::default();
        for body in [
            delivered(&facts()),
            delivery_failed(&facts(), "HTTP 503 Service Unavailable"),
            outbox_full(10, 10, 99),
            sink_removed("old", &[4, 2, 9]),
            sink_removed("old", &[]),
        ] {
            assert!(RESERVED_EVENT_TYPES.contains(&body.event_type.as_str()));
            assert!(!rule.selects(&body.event_type, body.severity));
            PreparedEntry::new(body.clone(), &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", body.event_type));
        }
        let removed = sink_removed("old", &[4, 2, 9]);
        assert_eq!(removed.data["first_seq"], 2);
        assert_eq!(removed.data["last_seq"], 9);
        assert_eq!(removed.data["discarded"], 3);
    }
}
