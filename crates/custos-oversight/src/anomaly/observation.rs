//! What one ledger entry says about an agent's behaviour, and which entries say nothing
//! (those custos itself writes about the agent).

use custos_core::entry::{Entry, Outcome};
use custos_core::time::parse_rfc3339;
use serde::Serialize;
use serde_json::Value;

/// Event types custos writes *about* an agent (reporting, enforcement, registry changes, its
/// own detections, reviews, overrides, alerts): they are custos' behaviour, not the agent's,
/// and feeding them back would make every detection feed the next. An item ending in `_`
/// is a prefix (`review_` covers `review_plan`, `review_decision`, …); the others match
/// exactly. See [`is_oversight_event`].
pub const OVERSIGHT_EVENT_TYPES: [&str; 21] = [
    "heartbeat",
    "heartbeat_missed",
    "reporting_warning",
    "agent_suspended",
    "agent_unsuspended",
    "agent_non_compliant",
    "agent_created",
    "agent_updated",
    "agent_deleted",
    "rogue_detection",
    "security_event",
    "threshold_violation",
    "capability_violation",
    "agent_stale",
    "review_",
    "override_",
    "alert_",
    "execution_",
    "unsuspend_",
    "deletion_",
    "exemption_",
];

/// Whether `event_type` is one custos writes about agents ([`OVERSIGHT_EVENT_TYPES`]).
pub fn is_oversight_event(event_type: &str) -> bool {
    OVERSIGHT_EVENT_TYPES.iter().any(|t| {
        if t.ends_with('_') {
            event_type.starts_with(t)
        } else {
            event_type == *t
        }
    })
}

/// The prefix of an agent principal.
const AGENT_PREFIX: &str = "agent:";

/// One action of an agent, as the detector sees it. Build it with
/// [`Observation::from_entry`] or directly (synthetic traffic, tests).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Observation {
    /// When it happened, in nanoseconds since the Unix epoch (the entry's `ts`).
    pub ts_nanos: i128,
    /// The entry's `event_type`.
    pub kind: String,
    /// The tool used (`data.tool`), exactly as recorded, so callers can check it against the
    /// agent's declared capabilities.
    pub tool: Option<String>,
    /// What was accessed.
    pub resource: Option<String>,
    /// The target principal (delegation).
    pub target: Option<String>,
    /// Whether it failed: outcome failure, error or denied, or `data.success == false`.
    pub failed: bool,
    /// `data.duration_ms`, else `data.latency_ms`.
    pub latency_ms: Option<f64>,
    /// `data.tokens_in + data.tokens_out` (either alone if only one is present).
    pub tokens: Option<f64>,
    /// `data.bytes`: volume of data moved.
    pub bytes: Option<f64>,
}

impl Observation {
    /// The tenant, the agent id (without `agent:`) and the observation of `entry`, or `None`
    /// when the entry is not an agent's own behaviour: its actor is not an agent, it is one
    /// of [`OVERSIGHT_EVENT_TYPES`], or its `ts` does not parse. Non-numeric and non-finite
    /// metrics are read as absent.
    pub fn from_entry(entry: &Entry) -> Option<(String, String, Observation)> {
        let agent = agent_of(entry)?;
        let observation = Observation::of_agent_entry(entry)?;
        Some((entry.tenant.clone(), agent.to_owned(), observation))
    }

    /// The observation of an entry already known to be an agent's own ([`agent_of`]).
    pub(crate) fn of_agent_entry(entry: &Entry) -> Option<Observation> {
        let ts_nanos = parse_rfc3339(&entry.ts).ok()?;
        let data = &entry.data;
        let number = |key: &str| {
            data.get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
        };
        let tokens = match (number("tokens_in"), number("tokens_out")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        Some(Observation {
            ts_nanos,
            kind: entry.event_type.clone(),
            tool: data.get("tool").and_then(Value::as_str).map(str::to_owned),
            resource: entry.resource.clone(),
            target: entry.target.clone(),
            failed: entry.outcome != Outcome::Success
                || data.get("success").and_then(Value::as_bool) == Some(false),
            latency_ms: number("duration_ms").or_else(|| number("latency_ms")),
            tokens,
            bytes: number("bytes"),
        })
    }
}

/// The agent id of an entry that is an agent's own behaviour, or `None`.
pub(crate) fn agent_of(entry: &Entry) -> Option<&str> {
    let agent = entry.actor.strip_prefix(AGENT_PREFIX)?;
    (!agent.is_empty() && !is_oversight_event(&entry.event_type)).then_some(agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_core::entry::Severity;
    use serde_json::{Map, json};

    fn entry(event_type: &str, actor: &str, outcome: Outcome, data: Value) -> Entry {
        let data: Map<String, Value> = match data {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Entry {
            seq: 0,
            id: "0".into(),
            ts: "2026-01-05T09:00:00.000000001Z".into(),
            client_ts: None,
            tenant: "acme".into(),
            event_type: event_type.into(),
            actor: actor.into(),
            action: "allow".into(),
            resource: Some("/crm/contacts".into()),
            target: None,
            outcome,
            severity: Severity::Info,
            policy_decision: None,
            matched_rule: None,
            trace_id: None,
            session_id: None,
            request: None,
            data,
            prev_hash: "0".repeat(64),
        }
    }

    #[test]
    fn oversight_events_match_exactly_or_by_prefix() {
        let cases = [
            ("heartbeat", true),
            ("heartbeat_missed", true),
            ("review_decision", true),
            ("execution_verification", true),
            ("exemption_granted", true),
            ("rogue_detection", true),
            ("tool_invocation", false),
            ("agent_executed", false),
            ("heartbeats", false),
            ("review", false),
        ];
        for (event_type, want) in cases {
            assert_eq!(is_oversight_event(event_type), want, "{event_type}");
        }
    }

    #[test]
    fn entries_become_observations_of_their_agent() {
        let e = entry(
            "tool_invocation",
            "agent:a1",
            Outcome::Success,
            json!({"tool": "crm.search", "latency_ms": 12.5, "bytes": 2048}),
        );
        let (tenant, agent, obs) = Observation::from_entry(&e).expect("agent entry");
        assert_eq!((tenant.as_str(), agent.as_str()), ("acme", "a1"));
        assert_eq!(obs.ts_nanos, 1_767_603_600_000_000_001);
        assert_eq!(obs.tool.as_deref(), Some("crm.search"));
        assert_eq!(obs.resource.as_deref(), Some("/crm/contacts"));
        assert_eq!(
            (obs.latency_ms, obs.bytes, obs.tokens),
            (Some(12.5), Some(2048.0), None)
        );
        assert!(!obs.failed);

        let e = entry(
            "agent_executed",
            "agent:a1",
            Outcome::Success,
            json!({"tokens_in": 100, "tokens_out": 20, "duration_ms": 900, "success": false, "bytes": "lots"}),
        );
        let (_, _, obs) = Observation::from_entry(&e).expect("agent entry");
        assert_eq!(
            (obs.tokens, obs.latency_ms, obs.bytes),
            (Some(120.0), Some(900.0), None)
        );
        assert!(obs.failed);

        for outcome in [Outcome::Failure, Outcome::Denied, Outcome::Error] {
            let e = entry("tool_invocation", "agent:a1", outcome, json!({}));
            assert!(Observation::from_entry(&e).expect("agent entry").2.failed);
        }
    }

    #[test]
    fn other_entries_are_not_observations() {
        let cases = [
            entry("tool_invocation", "user:bob", Outcome::Success, json!({})),
            entry("tool_invocation", "system", Outcome::Success, json!({})),
            entry("tool_invocation", "agent:", Outcome::Success, json!({})),
            entry("heartbeat", "agent:a1", Outcome::Success, json!({})),
            entry("review_decision", "agent:a1", Outcome::Success, json!({})),
            Entry {
                ts: "yesterday".into(),
                ..entry("tool_invocation", "agent:a1", Outcome::Success, json!({}))
            },
        ];
        for e in cases {
            assert_eq!(
                Observation::from_entry(&e),
                None,
                "{} {}",
                e.actor,
                e.event_type
            );
        }
    }
}
