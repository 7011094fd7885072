//! What the ledger counts (SPEC §7): entries appended by event type and severity, security
//! events by kind, and how long durable appends take. Counters run from process start, as
//! Prometheus counters do; the ledger itself is the lasting record.
//!
//! Event types are chosen by callers, so their number is unbounded; past
//! [`MAX_EVENT_TYPES`] distinct values, new ones are counted under `event_type="other"` to keep
//! the exposition bounded.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use custos_core::entry::{EntryBody, Severity};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Distinct event types counted by name.
pub const MAX_EVENT_TYPES: usize = 256;

/// Labels of event counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The entry's event type (for security events: their action, e.g. `auth_failure`).
    pub event_type: String,
    /// The entry's severity.
    pub severity: String,
}

/// The ledger's metrics.
pub struct LedgerMetrics {
    events: Family<EventLabels, Counter>,
    security_events: Family<EventLabels, Counter>,
    append_seconds: Histogram,
    known_types: Mutex<HashSet<String>>,
}

impl Default for LedgerMetrics {
    fn default() -> Self {
        LedgerMetrics {
            events: Family::default(),
            security_events: Family::default(),
            // 50 µs … ~1.6 s.
            append_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            known_types: Mutex::new(HashSet::new()),
        }
    }
}

/// Counts of a batch, taken before it is appended and recorded once it is durable.
#[derive(Debug, Default)]
pub struct Tally {
    /// (event type, severity) → entries. Batches hold few kinds, so a short list searched by
    /// reference beats a map keyed by owned strings: no allocation per entry on the hot path.
    events: Vec<((String, Severity), u64)>,
    security: Vec<((String, Severity), u64)>,
    entries: u64,
}

fn count(into: &mut Vec<((String, Severity), u64)>, name: &str, severity: Severity) {
    match into
        .iter_mut()
        .find(|((n, s), _)| n == name && *s == severity)
    {
        Some((_, c)) => *c += 1,
        None => into.push(((name.to_owned(), severity), 1)),
    }
}

/// The event type of security events.
pub const SECURITY_EVENT: &str = "security_event";

/// Other event types counted as security events, by their event type: what agent oversight
/// finds (SPEC §5.3).
pub const SECURITY_EVENT_TYPES: [&str; 3] = [
    "rogue_detection",
    "capability_violation",
    "threshold_violation",
];

impl Tally {
    /// Counts `bodies`.
    pub fn of(bodies: &[EntryBody]) -> Tally {
        let mut t = Tally::default();
        for b in bodies {
            t.entries += 1;
            count(&mut t.events, &b.event_type, b.severity);
            if b.event_type == SECURITY_EVENT {
                count(&mut t.security, &b.action, b.severity);
            } else if SECURITY_EVENT_TYPES.contains(&b.event_type.as_str()) {
                count(&mut t.security, &b.event_type, b.severity);
            }
        }
        t
    }
}

impl LedgerMetrics {
    /// Registers the metrics in `registry` under their SPEC §7 names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "custos_audit_events",
            "Entries appended since start, by event type and severity",
            self.events.clone(),
        );
        registry.register(
            "custos_security_events",
            "Security events appended since start, by kind and severity",
            self.security_events.clone(),
        );
        registry.register(
            "custos_ledger_append_seconds",
            "Time from handing a batch to the store to its being durable",
            self.append_seconds.clone(),
        );
    }

    fn label(&self, event_type: &str) -> String {
        let mut known = self.known_types.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(event_type) {
            return event_type.to_owned();
        }
        if known.len() < MAX_EVENT_TYPES {
            known.insert(event_type.to_owned());
            return event_type.to_owned();
        }
        "other".to_owned()
    }

    /// Records a durable batch.
    pub fn record(&self, tally: Tally, took: Duration) {
        if tally.entries == 0 {
            return;
        }
        self.append_seconds.observe(took.as_secs_f64());
        for ((event_type, severity), n) in tally.events {
            let labels = EventLabels {
                event_type: self.label(&event_type),
                severity: severity.as_str().to_owned(),
            };
            self.events.get_or_create(&labels).inc_by(n);
        }
        for ((kind, severity), n) in tally.security {
            let labels = EventLabels {
                event_type: self.label(&kind),
                severity: severity.as_str().to_owned(),
            };
            self.security_events.get_or_create(&labels).inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_core::entry::Outcome;

    fn text(m: &LedgerMetrics) -> String {
        let mut r = Registry::default();
        m.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("encode");
        out
    }

    #[test]
    fn batches_are_counted_by_type_and_severity_and_security_kind() {
        let m = LedgerMetrics::default();
        let mut a = EntryBody::new("t", "tool_call", "system", "run", Outcome::Success);
        a.severity = Severity::Low;
        let mut s = EntryBody::new(
            "t",
            SECURITY_EVENT,
            "system",
            "auth_failure",
            Outcome::Denied,
        );
        s.severity = Severity::High;
        m.record(Tally::of(&[a.clone(), a, s]), Duration::from_millis(2));
        let t = text(&m);
        assert!(
            t.contains(r#"custos_audit_events_total{event_type="tool_call",severity="low"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"custos_audit_events_total{event_type="security_event",severity="high"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(
                r#"custos_security_events_total{event_type="auth_failure",severity="high"} 1"#
            ),
            "{t}"
        );
        assert!(t.contains("custos_ledger_append_seconds_count 1"), "{t}");
    }

    #[test]
    fn event_type_labels_are_bounded() {
        let m = LedgerMetrics::default();
        let bodies: Vec<_> = (0..MAX_EVENT_TYPES + 10)
            .map(|i| EntryBody::new("t", format!("type_{i}"), "system", "x", Outcome::Success))
            .collect();
        m.record(Tally::of(&bodies), Duration::from_millis(1));
        let t = text(&m);
        assert_eq!(
            t.matches("custos_audit_events_total{").count(),
            MAX_EVENT_TYPES + 1
        );
        assert!(
            t.contains(r#"custos_audit_events_total{event_type="other",severity="info"} 10"#),
            "{t}"
        );
    }
}
