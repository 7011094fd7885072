//! The agent registry (SPEC §5.1) as a projection of the ledger.
//!
//! Every change to an agent is a ledger entry whose `resource` is `agent:<id>` and whose
//! `data` says what the agent's fields are afterwards:
//! - `agent_created` carries the whole new record (`data.record`);
//! - every other entry carries `data.changes`, a field-level diff
//!   `{"<field>": {"before": …, "after": …}}` (SPEC §3.1 `agent_updated`), and the fold
//!   sets each field to its `after`;
//! - a `heartbeat` carries `data.state`, the absolute values of every field a report sets,
//!   so only an agent's latest heartbeat matters to its state (see [`Registry::apply`]).
//!
//! [`Registry::apply`] is the one way the registry changes — the live service applies the
//! entries it has just appended, a rebuild applies the same entries read back — so a rebuilt
//! registry equals the live one by construction (and a test checks it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::reporting::{ReportingStatus, ReportingThresholds};
use crate::surveillance::{Level, PerformanceThresholds, ScoreRules};

/// An agent was registered.
pub const EVENT_CREATED: &str = "agent_created";
/// An agent's declared fields changed.
pub const EVENT_UPDATED: &str = "agent_updated";
/// An agent was deleted.
pub const EVENT_DELETED: &str = "agent_deleted";
/// An agent reported.
pub const EVENT_HEARTBEAT: &str = "heartbeat";
/// An agent missed one more report.
pub const EVENT_MISSED: &str = "heartbeat_missed";
/// An agent was warned for missed reports.
pub const EVENT_REPORTING_WARNING: &str = "reporting_warning";
/// An agent was suspended.
pub const EVENT_SUSPENDED: &str = "agent_suspended";
/// An agent was reinstated.
pub const EVENT_UNSUSPENDED: &str = "agent_unsuspended";
/// An agent became non-compliant.
pub const EVENT_NON_COMPLIANT: &str = "agent_non_compliant";
/// custos asked admins to reinstate an agent.
pub const EVENT_UNSUSPEND_REQUESTED: &str = "unsuspend_requested";
/// custos asked admins to delete an agent.
pub const EVENT_DELETION_REQUESTED: &str = "deletion_requested";
/// An admin denied a request.
pub const EVENT_REQUEST_DENIED: &str = "request_denied";
/// An exemption was granted.
pub const EVENT_EXEMPTION_GRANTED: &str = "exemption_granted";
/// An exemption was revoked.
pub const EVENT_EXEMPTION_REVOKED: &str = "exemption_revoked";
/// A reported metric entered its warning or critical band.
pub const EVENT_THRESHOLD_VIOLATION: &str = "threshold_violation";
/// An agent went without any report for the stale timeout.
pub const EVENT_STALE: &str = "agent_stale";
/// Behaviour far from the agent's baseline.
pub const EVENT_ROGUE: &str = "rogue_detection";
/// An agent used a tool it never declared.
pub const EVENT_CAPABILITY_VIOLATION: &str = "capability_violation";
/// A tenant's oversight settings changed.
pub const EVENT_SETTINGS: &str = "oversight_settings_changed";

/// Every event type the registry is folded from, so only custos may write them.
pub const RESERVED_EVENT_TYPES: [&str; 19] = [
    EVENT_CREATED,
    EVENT_UPDATED,
    EVENT_DELETED,
    EVENT_HEARTBEAT,
    EVENT_MISSED,
    EVENT_REPORTING_WARNING,
    EVENT_SUSPENDED,
    EVENT_UNSUSPENDED,
    EVENT_NON_COMPLIANT,
    EVENT_UNSUSPEND_REQUESTED,
    EVENT_DELETION_REQUESTED,
    EVENT_REQUEST_DENIED,
    EVENT_EXEMPTION_GRANTED,
    EVENT_EXEMPTION_REVOKED,
    EVENT_THRESHOLD_VIOLATION,
    EVENT_STALE,
    EVENT_ROGUE,
    EVENT_CAPABILITY_VIOLATION,
    EVENT_SETTINGS,
];

/// The `resource` of every entry about agent `id`.
pub fn resource(id: &str) -> String {
    format!("agent:{id}")
}

/// The `resource` of a tenant's settings entries.
pub const SETTINGS_RESOURCE: &str = "oversight:settings";

/// An agent's enforcement status (SPEC §5.1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// In good standing.
    Active,
    /// Warned (missed reports).
    Warned,
    /// Suspended: the gate refuses its reviews until an admin reinstates it.
    Suspended,
    /// Non-compliant: deletion requested, its data frozen.
    NonCompliant,
    /// Deleted.
    Deleted,
}

impl AgentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Warned => "warned",
            AgentStatus::Suspended => "suspended",
            AgentStatus::NonCompliant => "non_compliant",
            AgentStatus::Deleted => "deleted",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Every status.
    pub const ALL: [AgentStatus; 5] = [
        AgentStatus::Active,
        AgentStatus::Warned,
        AgentStatus::Suspended,
        AgentStatus::NonCompliant,
        AgentStatus::Deleted,
    ];

    /// Whether the agent's operations are halted (the gate refuses its reviews).
    pub fn halted(self) -> bool {
        matches!(
            self,
            AgentStatus::Suspended | AgentStatus::NonCompliant | AgentStatus::Deleted
        )
    }
}

/// Whether an agent has been heard from recently enough (SPEC §5.3).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Reported within the stale timeout (or registered within it).
    Healthy,
    /// No report for the stale timeout.
    Stale,
}

/// A time-limited exemption from mandatory reporting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    /// Why.
    pub reason: String,
    /// Until when (RFC 3339).
    pub expires_at: String,
    /// Who granted it.
    #[serde(default)]
    pub granted_by: String,
}

impl Exemption {
    /// Whether it still holds at `now`.
    pub fn holds_at(&self, now: i128) -> bool {
        custos_core::time::parse_rfc3339(&self.expires_at).is_ok_and(|until| now < until)
    }
}

/// What an agent last reported.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// When the agent says it reported (RFC 3339, as sent), if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The agent's own word for its state (`healthy`, `degraded`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Its numeric metrics (`cpu_usage`, `memory_usage`, `response_time_ms`, `error_rate`,
    /// `tasks_processed`, …).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// The latest anomaly flagged for an agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AnomalyNote {
    /// Its score in [0, 1].
    pub score: f64,
    /// When it was flagged (RFC 3339).
    pub at: String,
    /// Start of the flagged window (RFC 3339): a window is recorded once.
    pub window_start: String,
    /// The `rogue_detection` entry that records it (set by the fold from the entry itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// One registered agent, as the registry knows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Its id (a DID is fine).
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Display name.
    pub name: String,
    /// Who is responsible for it.
    pub owner: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The tools it declared.
    pub capabilities: BTreeSet<String>,
    /// How often it must report, seconds.
    pub reporting_interval_secs: u64,
    /// Its exemption from reporting, if any.
    pub exemption: Option<Exemption>,
    /// Enforcement status.
    pub status: AgentStatus,
    /// Reporting status.
    pub reporting_status: ReportingStatus,
    /// Security score (SPEC §5.3).
    pub security_score: u32,
    /// Missed reports as the enforcer last recorded them.
    pub missed_reports: u32,
    /// Whether it is stale.
    pub health: Health,
    /// Since when its reports are counted (RFC 3339): registration, its last report, or its
    /// reinstatement.
    pub reporting_since: String,
    /// When it last reported (RFC 3339).
    pub last_report_at: Option<String>,
    /// What it last reported.
    pub last_report: Option<Report>,
    /// Watched metrics currently in their warning or critical band.
    pub metric_levels: BTreeMap<String, Level>,
    /// Tools it was seen using without declaring them.
    pub undeclared_tools: BTreeSet<String>,
    /// The latest anomaly flagged.
    pub last_anomaly: Option<AnomalyNote>,
    /// When it was registered (RFC 3339).
    pub created_at: String,
    /// Who registered it.
    pub created_by: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// The seq of the entry that last changed it.
    pub version: u64,
}

/// A request custos files for admins (SPEC §5.4).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Reinstate a suspended agent.
    Unsuspend,
    /// Delete a non-compliant agent.
    Deletion,
}

/// Where a request stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for an admin.
    Pending,
    /// Approved.
    Approved,
    /// Denied.
    Denied,
    /// Overtaken (the agent was reinstated or deleted by another decision).
    Closed,
}

/// A request for an admin's decision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AdminRequest {
    /// Its id: the id of the ledger entry that filed it.
    pub id: String,
    /// The agent's tenant.
    pub tenant: String,
    /// The agent.
    pub agent: String,
    /// What is asked.
    pub kind: RequestKind,
    /// Why custos asks.
    pub reason: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// When it was filed (RFC 3339).
    pub filed_at: String,
    /// Who decided, when decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The decider's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A tenant's oversight settings (SPEC §5.2, §5.3); every field has the SPEC's default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Missed reports → consequences.
    pub reporting: ReportingThresholds,
    /// Performance thresholds.
    pub performance: PerformanceThresholds,
    /// Security score rules.
    pub score: ScoreRules,
    /// An agent is stale after this long without a report, seconds (SPEC: 10 min).
    pub stale_after_secs: u64,
    /// Anomaly score from which behaviour is flagged (SPEC: 0.7).
    pub anomaly_threshold: f64,
    /// Reporting interval of agents registered without one, seconds (SPEC: 5 min).
    pub default_reporting_interval_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reporting: ReportingThresholds::default(),
            performance: PerformanceThresholds::default(),
            score: ScoreRules::default(),
            stale_after_secs: 600,
            anomaly_threshold: 0.7,
            default_reporting_interval_secs: 300,
        }
    }
}

/// Shortest reporting interval, seconds.
pub const MIN_INTERVAL_SECS: u64 = 1;
/// Longest reporting interval, seconds (one week).
pub const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;

impl Settings {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.reporting
            .validate()
            .map_err(|e| format!("reporting: {e}"))?;
        self.performance
            .validate()
            .map_err(|e| format!("performance: {e}"))?;
        self.score.validate().map_err(|e| format!("score: {e}"))?;
        if self.stale_after_secs == 0 {
            return Err("stale_after_secs must be at least 1".into());
        }
        if !(self.anomaly_threshold > 0.0 && self.anomaly_threshold <= 1.0) {
            return Err("anomaly_threshold must be in (0, 1]".into());
        }
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&self.default_reporting_interval_secs)
        {
            return Err(format!(
                "default_reporting_interval_secs must be {MIN_INTERVAL_SECS} to {MAX_INTERVAL_SECS}"
            ));
        }
        Ok(())
    }
}

/// Why an entry could not be folded: the ledger holds something this version did not write.
#[derive(Debug, thiserror::Error)]
#[error("entry {seq} ({event_type}): {problem}")]
pub struct FoldError {
    /// The entry.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// What is wrong.
    pub problem: String,
}

/// What the fold needs of one ledger entry.
#[derive(Clone, Copy, Debug)]
pub struct Fact<'a> {
    /// Its seq.
    pub seq: u64,
    /// Its id.
    pub id: &'a str,
    /// Its tenant.
    pub tenant: &'a str,
    /// Its event type.
    pub event_type: &'a str,
    /// Its actor.
    pub actor: &'a str,
    /// Its data.
    pub data: &'a Map<String, Value>,
}

impl<'a> Fact<'a> {
    /// The fact of a stored entry.
    pub fn of(entry: &'a custos_core::entry::Entry) -> Self {
        Fact {
            seq: entry.seq,
            id: &entry.id,
            tenant: &entry.tenant,
            event_type: &entry.event_type,
            actor: &entry.actor,
            data: &entry.data,
        }
    }
}

/// Key of an agent: (tenant, id).
pub type AgentKey = (String, String);

/// The registry: every agent, every request, every tenant's settings.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Registry {
    /// Agents by (tenant, id).
    #[serde(serialize_with = "sorted")]
    pub agents: HashMap<AgentKey, Agent>,
    /// Requests by id.
    pub requests: BTreeMap<String, AdminRequest>,
    /// Settings changed from the defaults, by tenant.
    pub settings: BTreeMap<String, Settings>,
    /// The highest seq folded.
    pub folded_to: Option<u64>,
}

fn sorted<S: serde::Serializer>(
    agents: &HashMap<AgentKey, Agent>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let ordered: BTreeMap<String, &Agent> = agents
        .iter()
        .map(|((t, id), a)| (format!("{t}/{id}"), a))
        .collect();
    ordered.serialize(s)
}

/// A field-level diff of two JSON objects: `{"<field>": {"before": …, "after": …}}` for every
/// field whose value differs (absent reads as `null`).
pub fn diff(before: &Map<String, Value>, after: &Map<String, Value>) -> Map<String, Value> {
    let mut changes = Map::new();
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let b = before.get(key).unwrap_or(&Value::Null);
        let a = after.get(key).unwrap_or(&Value::Null);
        if b != a {
            let mut change = Map::new();
            change.insert("before".into(), b.clone());
            change.insert("after".into(), a.clone());
            changes.insert(key.clone(), Value::Object(change));
        }
    }
    changes
}

/// The JSON object of a serializable value (empty if it is not an object).
pub fn object_of<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The diff between two states of an agent.
pub fn agent_diff(before: &Agent, after: &Agent) -> Map<String, Value> {
    let mut changes = diff(&object_of(before), &object_of(after));
    // Bookkeeping of the fold itself, not a change anyone made.
    changes.remove("version");
    changes.remove("updated_at");
    changes
}

/// Fields a heartbeat sets; its `data.state` holds all of them.
pub const HEARTBEAT_FIELDS: [&str; 8] = [
    "status",
    "reporting_status",
    "missed_reports",
    "health",
    "reporting_since",
    "last_report_at",
    "last_report",
    "metric_levels",
];

/// The absolute values of [`HEARTBEAT_FIELDS`] of `agent`.
pub fn heartbeat_state(agent: &Agent) -> Map<String, Value> {
    let all = object_of(agent);
    HEARTBEAT_FIELDS
        .iter()
        .filter_map(|f| all.get(*f).map(|v| ((*f).to_owned(), v.clone())))
        .collect()
}

impl Registry {
    /// The agent `id` of `tenant`, deleted or not.
    pub fn agent(&self, tenant: &str, id: &str) -> Option<&Agent> {
        self.agents.get(&(tenant.to_owned(), id.to_owned()))
    }

    /// The settings of `tenant`, or `defaults` if it never changed them.
    pub fn settings_of<'a>(&'a self, tenant: &str, defaults: &'a Settings) -> &'a Settings {
        self.settings.get(tenant).unwrap_or(defaults)
    }

    /// Folds one entry into the registry. Entries that are not the registry's are ignored.
    ///
    /// Heartbeats set absolute values ([`HEARTBEAT_FIELDS`]), and every other entry sets the
    /// `after` of the fields it changes; so folding only an agent's *latest* heartbeat, in
    /// seq order among its other entries, gives the same state as folding every heartbeat —
    /// which is what lets a rebuild skip all but one heartbeat per agent.
    pub fn apply(&mut self, fact: &Fact<'_>) -> Result<(), FoldError> {
        let fail = |problem: String| FoldError {
            seq: fact.seq,
            event_type: fact.event_type.to_owned(),
            problem,
        };
        if !RESERVED_EVENT_TYPES.contains(&fact.event_type) {
            return Ok(());
        }
        self.folded_to = Some(self.folded_to.map_or(fact.seq, |s| s.max(fact.seq)));
        let at = fact
            .data
            .get("at")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no `data.at`".into()))?
            .to_owned();
        if fact.event_type == EVENT_SETTINGS {
            let settings = fact
                .data
                .get("settings")
                .cloned()
                .ok_or_else(|| fail("no `data.settings`".into()))?;
            let settings: Settings =
                serde_json::from_value(settings).map_err(|e| fail(format!("settings: {e}")))?;
            self.settings.insert(fact.tenant.to_owned(), settings);
            return Ok(());
        }
        let id = fact
            .data
            .get("agent")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no `data.agent`".into()))?
            .to_owned();
        let key = (fact.tenant.to_owned(), id.clone());
        if fact.event_type == EVENT_CREATED {
            let record = fact
                .data
                .get("record")
                .cloned()
                .ok_or_else(|| fail("no `data.record`".into()))?;
            let mut agent: Agent =
                serde_json::from_value(record).map_err(|e| fail(format!("record: {e}")))?;
            if agent.id != id || agent.tenant != fact.tenant {
                return Err(fail("the record names another agent".into()));
            }
            agent.version = fact.seq;
            agent.updated_at = at;
            self.agents.insert(key, agent);
            return Ok(());
        }
        let agent = self
            .agents
            .get_mut(&key)
            .ok_or_else(|| fail(format!("agent `{id}` is not registered")))?;
        let field_values = if fact.event_type == EVENT_HEARTBEAT {
            fact.data.get("state")
        } else {
            fact.data.get("changes")
        };
        if let Some(values) = field_values {
            let values = values
                .as_object()
                .ok_or_else(|| fail("`changes`/`state` is not an object".into()))?;
            let mut fields = object_of(&*agent);
            for (field, value) in values {
                if matches!(field.as_str(), "id" | "tenant" | "version")
                    || !fields.contains_key(field)
                {
                    return Err(fail(format!("`{field}` is not a field of an agent")));
                }
                let after = if fact.event_type == EVENT_HEARTBEAT {
                    value.clone()
                } else {
                    value
                        .get("after")
                        .cloned()
                        .ok_or_else(|| fail(format!("change of `{field}` has no `after`")))?
                };
                fields.insert(field.clone(), after);
            }
            *agent = serde_json::from_value(Value::Object(fields))
                .map_err(|e| fail(format!("the changed agent: {e}")))?;
        }
        agent.version = fact.seq;
        agent.updated_at = at.clone();
        if fact.event_type == EVENT_ROGUE
            && let Some(note) = agent.last_anomaly.as_mut()
        {
            note.seq = Some(fact.seq);
        }
        self.apply_request(fact, &id, &at).map_err(fail)
    }

    /// The request side of an entry: filing, deciding and closing requests.
    fn apply_request(&mut self, fact: &Fact<'_>, agent: &str, at: &str) -> Result<(), String> {
        let kind = match fact.event_type {
            EVENT_UNSUSPEND_REQUESTED => Some(RequestKind::Unsuspend),
            EVENT_DELETION_REQUESTED => Some(RequestKind::Deletion),
            _ => None,
        };
        if let Some(kind) = kind {
            let reason = fact
                .data
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.requests.insert(
                fact.id.to_owned(),
                AdminRequest {
                    id: fact.id.to_owned(),
                    tenant: fact.tenant.to_owned(),
                    agent: agent.to_owned(),
                    kind,
                    reason,
                    status: RequestStatus::Pending,
                    filed_at: at.to_owned(),
                    decided_by: None,
                    decided_at: None,
                    note: None,
                },
            );
            return Ok(());
        }
        let decided = fact.data.get("request").and_then(Value::as_str);
        let note = fact
            .data
            .get("note")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let outcome = match fact.event_type {
            EVENT_REQUEST_DENIED => RequestStatus::Denied,
            EVENT_UNSUSPENDED | EVENT_DELETED => RequestStatus::Approved,
            _ => return Ok(()),
        };
        if let Some(id) = decided {
            let request = self
                .requests
                .get_mut(id)
                .ok_or_else(|| format!("request `{id}` was never filed"))?;
            request.status = outcome;
            request.decided_by = Some(fact.actor.to_owned());
            request.decided_at = Some(at.to_owned());
            request.note = note;
        }
        // A reinstatement closes every pending request to reinstate the agent; a deletion
        // closes every pending request about it.
        if outcome == RequestStatus::Approved {
            for r in self.requests.values_mut() {
                if r.status == RequestStatus::Pending
                    && r.tenant == fact.tenant
                    && r.agent == agent
                    && (fact.event_type == EVENT_DELETED || r.kind == RequestKind::Unsuspend)
                {
                    r.status = RequestStatus::Closed;
                    r.decided_by = Some(fact.actor.to_owned());
                    r.decided_at = Some(at.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Pending requests about `agent` of `tenant` of `kind`.
    pub fn pending(&self, tenant: &str, agent: &str, kind: RequestKind) -> Vec<&AdminRequest> {
        self.requests
            .values()
            .filter(|r| {
                r.status == RequestStatus::Pending
                    && r.tenant == tenant
                    && r.agent == agent
                    && r.kind == kind
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_names_every_changed_field_only() {
        let before = json!({"name": "a", "owner": "o", "capabilities": ["x"], "gone": 1});
        let after = json!({"name": "b", "owner": "o", "capabilities": ["x", "y"], "new": true});
        let (Value::Object(b), Value::Object(a)) = (before, after) else {
            unreachable!()
        };
        let d = diff(&b, &a);
        assert_eq!(
            Value::Object(d),
            json!({
                "name": {"before": "a", "after": "b"},
                "capabilities": {"before": ["x"], "after": ["x", "y"]},
                "gone": {"before": 1, "after": null},
                "new": {"before": null, "after": true},
            })
        );
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for s in AgentStatus::ALL {
            assert_eq!(AgentStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
        }
        assert_eq!(AgentStatus::parse("asleep"), None);
    }
}
