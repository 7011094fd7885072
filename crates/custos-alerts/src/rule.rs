//! What is an alert: the selection of ledger entries, and how a webhook narrows it. Pure.

use custos_core::entry::{Entry, Severity};
use serde::Deserialize;

use crate::config::{AlertsConfig, WebhookConfig};

/// Prefix of the event types the dispatcher writes; such entries are never alerts (no
/// feedback loop).
pub const DISPATCHER_EVENT_PREFIX: &str = "alert_";

/// An event type that is an alert from a severity of its own (often below the general
/// minimum).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// The event type.
    pub event_type: String,
    /// Entries of this type at least this severe are alerts (default `info`: all of them).
    #[serde(default = "lowest")]
    pub min_severity: Severity,
}

fn lowest() -> Severity {
    Severity::Info
}

impl EventRule {
    /// Every entry of `event_type` at least `min_severity` severe is an alert.
    pub fn new(event_type: impl Into<String>, min_severity: Severity) -> Self {
        EventRule {
            event_type: event_type.into(),
            min_severity,
        }
    }
}

/// The built-in alert event types (SPEC §7: gate deviations, overrides, suspensions,
/// anomalies, critical findings, ledger verification failure, store unreachable).
pub fn default_events() -> Vec<EventRule> {
    use Severity::{Critical, High, Info};
    [
        ("execution_deviation", Info),
        ("override_requested", Info),
        ("override_approved", Info),
        ("agent_suspended", Info),
        ("agent_non_compliant", Info),
        ("rogue_detection", Info),
        ("security_event", Info),
        ("finding_created", High),
        ("capability_violation", Info),
        ("threshold_violation", Critical),
        ("reporting_warning", Info),
        ("ledger_verification_failed", Info),
        ("store_unreachable", Info),
    ]
    .into_iter()
    .map(|(t, s)| EventRule::new(t, s))
    .collect()
}

/// Whether `event_type` is one the dispatcher writes about itself.
pub fn is_dispatcher_event(event_type: &str) -> bool {
    event_type.starts_with(DISPATCHER_EVENT_PREFIX)
}

/// Which entries are alerts: those at least `min_severity` severe, and those whose event type
/// has a rule they meet — except the dispatcher's own `alert_*` entries, never.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRule {
    /// Any entry at least this severe is an alert.
    pub min_severity: Severity,
    /// Per event type rules.
    pub events: Vec<EventRule>,
}

impl Default for AlertRule {
    fn default() -> Self {
        AlertRule {
            min_severity: Severity::High,
            events: default_events(),
        }
    }
}

impl AlertRule {
    /// The rule of a configuration.
    pub fn from_config(config: &AlertsConfig) -> Self {
        AlertRule {
            min_severity: config.min_severity,
            events: config.events.clone(),
        }
    }

    /// Whether an entry of this type and severity is an alert.
    pub fn selects(&self, event_type: &str, severity: Severity) -> bool {
        if is_dispatcher_event(event_type) {
            return false;
        }
        severity >= self.min_severity
            || self
                .events
                .iter()
                .any(|r| r.event_type == event_type && severity >= r.min_severity)
    }

    /// Whether `entry` is an alert.
    pub fn selects_entry(&self, entry: &Entry) -> bool {
        self.selects(&entry.event_type, entry.severity)
    }
}

impl WebhookConfig {
    /// Whether this webhook wants an alert of this tenant, type and severity (its filters
    /// only narrow what [`AlertRule`] selected).
    pub fn accepts(&self, tenant: &str, event_type: &str, severity: Severity) -> bool {
        self.min_severity.is_none_or(|min| severity >= min)
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == event_type))
            && self
                .tenants
                .as_ref()
                .is_none_or(|tenants| tenants.iter().any(|t| t == tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;
    use Severity::{Critical, High, Info, Low, Medium};

    #[test]
    fn the_default_rule_selects_the_alert_worthy_entries() {
        let rule = AlertRule::default();
        let check = |event_type: &str, severity: Severity, expect: bool| {
            assert_eq!(
                rule.selects(event_type, severity),
                expect,
                "{event_type} at {severity}"
            );
        };
        check("tool_invocation", Info, false);
        check("tool_invocation", Medium, false);
        check("tool_invocation", High, true);
        check("tool_invocation", Critical, true);
        check("execution_deviation", Info, true);
        check("override_requested", Low, true);
        check("override_approved", Info, true);
        check("override_denied", Info, false);
        check("agent_suspended", Info, true);
        check("agent_non_compliant", Info, true);
        check("rogue_detection", Info, true);
        check("security_event", Info, true);
        check("finding_created", Medium, false);
        check("finding_created", High, true);
        check("capability_violation", Info, true);
        check("threshold_violation", High, true);
        check("threshold_violation", Medium, false);
        check("reporting_warning", Info, true);
        check("ledger_verification_failed", Info, true);
        check("store_unreachable", Info, true);
        check("alert_delivery_failed", High, false);
        check("alert_delivered", Info, false);
        check("alert_anything", Critical, false);
    }

    #[test]
    fn a_type_rule_applies_below_the_general_minimum() {
        let rule = AlertRule {
            min_severity: Critical,
            events: vec![EventRule::new("finding_created", High)],
        };
        let table = [
            ("finding_created", High, true),
            ("finding_created", Medium, false),
            ("threshold_violation", High, false),
            ("threshold_violation", Critical, true),
        ];
        for (t, s, expect) in table {
            assert_eq!(rule.selects(t, s), expect, "{t} at {s}");
        }
    }

    #[test]
    fn a_webhook_narrows_by_severity_type_and_tenant() {
        let mut hook = WebhookConfig::new("w", SinkKind::Generic, "http://127.0.0.1/");
        assert!(hook.accepts("acme", "security_event", Info));
        hook.min_severity = Some(High);
        hook.event_types = Some(vec!["security_event".into(), "agent_suspended".into()]);
        hook.tenants = Some(vec!["acme".into()]);
        let table = [
            ("acme", "security_event", High, true),
            ("acme", "agent_suspended", Critical, true),
            ("acme", "security_event", Medium, false),
            ("acme", "finding_created", Critical, false),
            ("globex", "security_event", Critical, false),
        ];
        for (tenant, t, s, expect) in table {
            assert_eq!(hook.accepts(tenant, t, s), expect, "{tenant} {t} {s}");
        }
    }
}
