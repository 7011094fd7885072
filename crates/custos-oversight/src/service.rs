//! Oversight as a service over the ledger: registration, reports, the enforcer, admin
//! decisions. Every change is appended to the ledger first and then folded into the
//! in-memory [`Registry`] by the same [`Registry::apply`] a rebuild uses.
//!
//! Operations on one agent run one at a time (a lock per shard of agents), so a decision is
//! always made on the state the previous one left; operations on different agents run side
//! by side and share the ledger's group commit.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use custos_core::entry::{EntryBody, Outcome, Severity, redact};
use custos_core::time::{format_utc_nanos, parse_rfc3339};
use custos_ledger::{Ledger, LedgerError, Receipt};
use custos_store::{Clock, EntryQuery, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::anomaly::{AgentAssessment, AnomalyConfig, Detector, Observation};
use crate::registry::{
    self, AdminRequest, Agent, AgentKey, AgentStatus, Exemption, Fact, FoldError, Health, Registry,
    Report, RequestKind, RequestStatus, Settings,
};
use crate::reporting::{ReportingStatus, consequence, missed_reports, next_miss_at};
use crate::surveillance::{Level, Violation, assess_metrics, is_stale};

const NANOS: i128 = 1_000_000_000;
/// Shards of the per-agent locks.
const SHARDS: usize = 64;
/// Longest id, name, owner, tool name or reason, bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest description or note, bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Most declared capabilities of one agent.
pub const MAX_CAPABILITIES: usize = 1000;
/// Most metrics in one report.
pub const MAX_METRICS: usize = 64;

/// How the service runs, beyond each tenant's [`Settings`].
#[derive(Clone, Debug)]
pub struct OversightConfig {
    /// Settings of tenants that never changed theirs.
    pub defaults: Settings,
    /// How often the enforcer looks at every agent, seconds (SPEC §5.3: 60).
    pub monitor_interval_secs: u64,
    /// Most agents one tenant may register (deleted ones do not count).
    pub max_agents_per_tenant: usize,
    /// Behavioural anomaly detection.
    pub anomaly: AnomalyConfig,
    /// How many of the latest ledger entries build the baselines when the service opens.
    pub baseline_replay_entries: u64,
}

impl Default for OversightConfig {
    fn default() -> Self {
        OversightConfig {
            defaults: Settings::default(),
            monitor_interval_secs: 60,
            max_agents_per_tenant: 100_000,
            anomaly: AnomalyConfig::default(),
            baseline_replay_entries: 1_000_000,
        }
    }
}

impl OversightConfig {
    /// Checks the settings; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.defaults.validate()?;
        if self.monitor_interval_secs == 0 || self.monitor_interval_secs > 3600 {
            return Err("monitor_interval_secs must be 1 to 3600".into());
        }
        if self.max_agents_per_tenant == 0 {
            return Err("max_agents_per_tenant must be at least 1".into());
        }
        self.anomaly.validate().map_err(|e| format!("anomaly: {e}"))
    }
}

/// Why an oversight operation was refused or failed. A refusal changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum OversightError {
    /// A field of the request is wrong.
    #[error("`{field}`: {problem}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// No such agent or request in the caller's tenant.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the agent's state.
    #[error("{detail}")]
    Conflict {
        /// A stable code (`agent-exists`, `agent-deleted`, `agent-frozen`, `not-suspended`,
        /// `request-decided`, `too-many-agents`).
        code: &'static str,
        /// What conflicts.
        detail: String,
    },
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A recorded entry cannot be folded.
    #[error(transparent)]
    Fold(#[from] FoldError),
}

type Result<T, E = OversightError> = std::result::Result<T, E>;

fn invalid(field: &str, problem: impl Into<String>) -> OversightError {
    OversightError::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn unknown_agent(tenant: &str, id: &str) -> OversightError {
    OversightError::NotFound(format!("no agent `{id}` in tenant `{tenant}`"))
}

fn conflict(code: &'static str, detail: impl Into<String>) -> OversightError {
    OversightError::Conflict {
        code,
        detail: detail.into(),
    }
}

fn check_name(field: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("is longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn check_id(field: &str, value: &str) -> Result<()> {
    check_name(field, value, MAX_FIELD_BYTES)?;
    if value.chars().any(char::is_whitespace) || value.contains('/') {
        return Err(invalid(field, "must not contain whitespace or `/`"));
    }
    Ok(())
}

fn check_interval(field: &str, secs: u64) -> Result<()> {
    if !(registry::MIN_INTERVAL_SECS..=registry::MAX_INTERVAL_SECS).contains(&secs) {
        return Err(invalid(
            field,
            format!(
                "must be {} to {} seconds",
                registry::MIN_INTERVAL_SECS,
                registry::MAX_INTERVAL_SECS
            ),
        ));
    }
    Ok(())
}

fn check_capabilities(field: &str, tools: &[String]) -> Result<()> {
    if tools.len() > MAX_CAPABILITIES {
        return Err(invalid(
            field,
            format!("more than {MAX_CAPABILITIES} tools"),
        ));
    }
    for (i, t) in tools.iter().enumerate() {
        check_name(&format!("{field}[{i}]"), t, MAX_FIELD_BYTES)?;
    }
    Ok(())
}

/// Checks the declared fields an agent is registered or changed with.
fn check_declared(
    name: Option<&str>,
    owner: Option<&str>,
    description: Option<&str>,
    capabilities: Option<&[String]>,
) -> Result<()> {
    if let Some(n) = name {
        check_name("name", n, MAX_FIELD_BYTES)?;
    }
    if let Some(o) = owner {
        check_name("owner", o, MAX_FIELD_BYTES)?;
    }
    if let Some(d) = description
        && d.len() > MAX_TEXT_BYTES
    {
        return Err(invalid(
            "description",
            format!("is longer than {MAX_TEXT_BYTES} bytes"),
        ));
    }
    match capabilities {
        Some(c) => check_capabilities("capabilities", c),
        None => Ok(()),
    }
}

/// An exemption as an admin grants it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExemptionGrant {
    /// Why the agent need not report.
    pub reason: String,
    /// Until when (RFC 3339, in the future).
    pub expires_at: String,
}

/// A new agent.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Its id, unique in the tenant (a DID is fine).
    pub id: String,
    /// Display name (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Who is responsible for it.
    pub owner: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The tools it may use.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How often it must report, seconds (default: the tenant's).
    #[serde(default)]
    pub reporting_interval_secs: Option<u64>,
    /// An exemption from reporting from the start.
    #[serde(default)]
    pub exemption: Option<ExemptionGrant>,
}

/// Changes to an agent's declared fields; absent fields stay as they are.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// The new full list of tools.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// New reporting interval, seconds.
    #[serde(default)]
    pub reporting_interval_secs: Option<u64>,
}

/// An agent as the API shows it: the registry's record and what holds at the time of reading.
#[derive(Serialize, Clone, Debug)]
pub struct AgentView {
    /// The record.
    #[serde(flatten)]
    pub agent: Agent,
    /// Reports missed at the time of reading (the record holds what was last recorded).
    pub missed_reports_now: u32,
    /// Whether an exemption holds now.
    pub exempt: bool,
    /// When the next report will count as missed (RFC 3339).
    pub next_report_due: Option<String>,
    /// Ids of requests about it waiting for an admin.
    pub pending_requests: Vec<String>,
}

/// What a heartbeat answers: the agent's standing after it.
#[derive(Serialize, Clone, Debug)]
pub struct HeartbeatAnswer {
    /// The agent.
    pub agent: String,
    /// The heartbeat's ledger entry.
    pub seq: u64,
    /// Enforcement status.
    pub status: AgentStatus,
    /// Reporting status.
    pub reporting_status: ReportingStatus,
    /// Security score.
    pub security_score: u32,
    /// When the next report will count as missed.
    pub next_report_due: Option<String>,
    /// Metrics that entered a worse band with this report.
    pub violations: Vec<Violation>,
}

/// What one enforcer pass did.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct EnforcementPass {
    /// Agents looked at.
    pub agents: usize,
    /// Agents whose state changed.
    pub changed: usize,
    /// Entries appended.
    pub entries: usize,
}

/// The agent oversight service.
pub struct OversightService<S: Store> {
    ledger: Arc<Ledger<S>>,
    clock: Clock,
    config: OversightConfig,
    registry: RwLock<Registry>,
    shards: Vec<tokio::sync::Mutex<()>>,
    detector: std::sync::Mutex<Detector>,
    /// The next seq the watcher reads.
    watched: std::sync::atomic::AtomicU64,
}

/// What one watcher pass did.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchPass {
    /// Entries read.
    pub entries: u64,
    /// Windows flagged as anomalous (`rogue_detection` entries).
    pub flagged: usize,
    /// Undeclared tools seen (`capability_violation` entries).
    pub undeclared: usize,
}

/// Entries the watcher reads at a time.
const WATCH_CHUNK: u64 = 2_000;

fn shard_of(tenant: &str, id: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tenant, id).hash(&mut h);
    // The modulo keeps it below SHARDS, which fits any usize.
    (h.finish() % SHARDS as u64) as usize
}

fn at(nanos: i128) -> String {
    format_utc_nanos(nanos).unwrap_or_else(|| "1970-01-01T00:00:00.000000000Z".to_owned())
}

fn nanos_of(rfc3339: &str) -> i128 {
    parse_rfc3339(rfc3339).unwrap_or(0)
}

/// The entries of a change to one agent, built in order, each with the diff of its step.
struct Steps {
    tenant: String,
    id: String,
    actor: String,
    at: String,
    state: Agent,
    bodies: Vec<EntryBody>,
    /// Whether a request to reinstate the agent is pending (filed before, or by these steps).
    unsuspend_pending: bool,
}

impl Steps {
    fn new(agent: &Agent, actor: &str, at: &str, registry: &Registry) -> Self {
        Steps {
            tenant: agent.tenant.clone(),
            id: agent.id.clone(),
            actor: actor.to_owned(),
            at: at.to_owned(),
            state: agent.clone(),
            bodies: Vec::new(),
            unsuspend_pending: !registry
                .pending(&agent.tenant, &agent.id, RequestKind::Unsuspend)
                .is_empty(),
        }
    }

    /// An entry about the agent with `extra` data and no change to it.
    fn note(
        &mut self,
        event_type: &str,
        action: &str,
        outcome: Outcome,
        severity: Severity,
        extra: Map<String, Value>,
    ) {
        let mut body = EntryBody::new(
            self.tenant.clone(),
            event_type,
            self.actor.clone(),
            action,
            outcome,
        );
        body.severity = severity;
        body.resource = Some(registry::resource(&self.id));
        body.target = Some(format!("agent:{}", self.id));
        let mut data = Map::new();
        data.insert("agent".into(), Value::String(self.id.clone()));
        data.insert("at".into(), Value::String(self.at.clone()));
        data.extend(extra);
        body.data = data;
        self.bodies.push(body);
    }

    /// An entry that changes the agent as `change` does, carrying the field-level diff.
    fn change(
        &mut self,
        event_type: &str,
        action: &str,
        outcome: Outcome,
        severity: Severity,
        mut extra: Map<String, Value>,
        change: impl FnOnce(&mut Agent),
    ) {
        let before = self.state.clone();
        change(&mut self.state);
        extra.insert(
            "changes".into(),
            Value::Object(registry::agent_diff(&before, &self.state)),
        );
        self.note(event_type, action, outcome, severity, extra);
    }

    /// A violation of `level` recorded as `event_type` (which also changes the agent as
    /// `also` does): the score falls, and at 0 the agent is suspended (SPEC §5.3).
    #[allow(clippy::too_many_arguments)]
    fn penalise(
        &mut self,
        settings: &Settings,
        event_type: &str,
        action: &str,
        level: Level,
        severity: Severity,
        extra: Map<String, Value>,
        also: impl FnOnce(&mut Agent),
    ) {
        let score = settings.score.after(self.state.security_score, level);
        self.change(event_type, action, Outcome::Failure, severity, extra, |a| {
            a.security_score = score;
            also(a);
        });
        if score == 0 && !self.state.status.halted() {
            self.suspend(
                "security_score",
                &format!("the security score fell to 0 ({event_type})"),
                |_| {},
            );
        }
    }

    /// Suspends the agent and files the request to reinstate it (unless one is pending).
    fn suspend(&mut self, reason: &str, why: &str, also: impl FnOnce(&mut Agent)) {
        self.change(
            registry::EVENT_SUSPENDED,
            "suspend",
            Outcome::Success,
            Severity::High,
            obj([("reason", json!(reason)), ("message", json!(why))]),
            |a| {
                if !a.status.halted() {
                    a.status = AgentStatus::Suspended;
                }
                also(a);
            },
        );
        if !self.unsuspend_pending {
            self.unsuspend_pending = true;
            self.note(
                registry::EVENT_UNSUSPEND_REQUESTED,
                "request",
                Outcome::Success,
                Severity::Medium,
                obj([("kind", json!("unsuspend")), ("reason", json!(why))]),
            );
        }
    }
}

/// Something the watcher found about an agent.
enum Finding {
    /// A scored window (recorded if at or above the tenant's threshold), and the seq of the
    /// entry that closed it.
    Window(AgentAssessment, u64),
    /// A tool the agent never declared, and the seq of the entry that used it.
    Tool(String, u64),
}

fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl<S: Store> OversightService<S> {
    /// The service over `ledger`, its registry rebuilt from the ledger.
    pub fn open(ledger: Arc<Ledger<S>>, config: OversightConfig, clock: Clock) -> Result<Self> {
        config.validate().map_err(|e| invalid("oversight", e))?;
        let registry = rebuild(&ledger)?;
        let mut detector =
            Detector::new(config.anomaly.clone()).map_err(|e| invalid("anomaly", e))?;
        // Baselines come from the ledger: replay its latest entries without flagging (what
        // was flagged then is recorded already).
        let size = ledger.size()?;
        let mut from = size.saturating_sub(config.baseline_replay_entries);
        while from < size {
            let to = (from + WATCH_CHUNK).min(size);
            for record in ledger
                .store()
                .read_range(from, to)
                .map_err(LedgerError::from)?
            {
                let entry = custos_ledger::parse_record(record.seq, &record.bytes)?;
                let _ = detector.observe_entry(&entry);
            }
            from = to;
        }
        Ok(OversightService {
            ledger,
            clock,
            config,
            registry: RwLock::new(registry),
            shards: (0..SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            detector: std::sync::Mutex::new(detector),
            watched: std::sync::atomic::AtomicU64::new(size),
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger<S>> {
        &self.ledger
    }

    /// The configuration.
    pub fn config(&self) -> &OversightConfig {
        &self.config
    }

    /// A copy of the whole registry (for `custos rebuild` comparisons and tests).
    pub fn snapshot(&self) -> Registry {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i128 {
        (self.clock)()
    }

    /// The settings of `tenant`.
    pub fn settings(&self, tenant: &str) -> Settings {
        self.read()
            .settings_of(tenant, &self.config.defaults)
            .clone()
    }

    /// Appends `bodies` as one atomic batch and folds them. `try_only`: refuse with
    /// [`LedgerError::Overloaded`] instead of waiting when the ledger's queue is full.
    async fn record(&self, bodies: Vec<EntryBody>, try_only: bool) -> Result<Vec<Receipt>> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        // The fold sees what the ledger stores: redacted data.
        let mut kept = bodies.clone();
        for b in &mut kept {
            redact(&mut b.data);
        }
        let receipts = if try_only {
            self.ledger.try_append_batch(bodies).await?
        } else {
            self.ledger.append_batch(bodies).await?
        };
        let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
        for (body, receipt) in kept.iter().zip(&receipts) {
            registry.apply(&Fact {
                seq: receipt.seq,
                id: &receipt.id,
                tenant: &body.tenant,
                event_type: &body.event_type,
                actor: &body.actor,
                data: &body.data,
            })?;
        }
        Ok(receipts)
    }

    fn agent(&self, tenant: &str, id: &str) -> Result<Agent> {
        self.read()
            .agent(tenant, id)
            .cloned()
            .ok_or_else(|| unknown_agent(tenant, id))
    }

    fn live_agent(&self, tenant: &str, id: &str) -> Result<Agent> {
        let agent = self.agent(tenant, id)?;
        if agent.status == AgentStatus::Deleted {
            return Err(conflict(
                "agent-deleted",
                format!("agent `{id}` is deleted"),
            ));
        }
        Ok(agent)
    }

    /// The view of `agent` at `now`.
    fn view(&self, registry: &Registry, agent: &Agent, now: i128) -> AgentView {
        let settings = registry.settings_of(&agent.tenant, &self.config.defaults);
        let r = Reckoning::of(agent, settings, now);
        let pending = registry
            .requests
            .values()
            .filter(|r| {
                r.status == RequestStatus::Pending
                    && r.tenant == agent.tenant
                    && r.agent == agent.id
            })
            .map(|r| r.id.clone())
            .collect();
        AgentView {
            agent: agent.clone(),
            missed_reports_now: r.missed,
            exempt: r.exempt,
            next_report_due: r.next_miss.map(at),
            pending_requests: pending,
        }
    }

    /// The agent `id` of `tenant`, as it stands now.
    pub fn get(&self, tenant: &str, id: &str) -> Result<AgentView> {
        let now = self.now();
        let registry = self.read();
        let agent = registry
            .agent(tenant, id)
            .ok_or_else(|| unknown_agent(tenant, id))?;
        Ok(self.view(&registry, agent, now))
    }

    /// The agents of `tenant` in id order after `after`, at most `limit`, of `status` if
    /// given (deleted agents only when asked for by status).
    pub fn list(
        &self,
        tenant: &str,
        status: Option<AgentStatus>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<AgentView> {
        let now = self.now();
        let registry = self.read();
        let mut agents: Vec<&Agent> = registry
            .agents
            .values()
            .filter(|a| a.tenant == tenant)
            .filter(|a| match status {
                Some(s) => a.status == s,
                None => a.status != AgentStatus::Deleted,
            })
            .filter(|a| after.is_none_or(|after| a.id.as_str() > after))
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents
            .into_iter()
            .take(limit)
            .map(|a| self.view(&registry, a, now))
            .collect()
    }

    /// Requests of `tenant` (of `status` if given), oldest first.
    pub fn requests(&self, tenant: &str, status: Option<RequestStatus>) -> Vec<AdminRequest> {
        let mut out: Vec<AdminRequest> = self
            .read()
            .requests
            .values()
            .filter(|r| r.tenant == tenant && status.is_none_or(|s| r.status == s))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.filed_at.cmp(&b.filed_at).then(a.id.cmp(&b.id)));
        out
    }

    /// Agents by status and by reporting status, every tenant (for `/metrics`).
    pub fn counts(&self) -> (BTreeMap<AgentStatus, u64>, BTreeMap<ReportingStatus, u64>) {
        let mut by_status: BTreeMap<AgentStatus, u64> =
            AgentStatus::ALL.iter().map(|s| (*s, 0)).collect();
        let mut by_reporting: BTreeMap<ReportingStatus, u64> =
            ReportingStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for a in self.read().agents.values() {
            *by_status.entry(a.status).or_default() += 1;
            if a.status != AgentStatus::Deleted {
                *by_reporting.entry(a.reporting_status).or_default() += 1;
            }
        }
        (by_status, by_reporting)
    }

    /// Why `agent` of `tenant` may not act now (suspended, non-compliant or deleted), or
    /// `None`. Unregistered agents are not refused.
    pub fn halted(&self, tenant: &str, agent: &str) -> Option<String> {
        let registry = self.read();
        let a = registry.agent(tenant, agent)?;
        a.status.halted().then(|| {
            format!(
                "agent `{agent}` is {}: its operations are halted until an admin reinstates it",
                a.status.as_str()
            )
        })
    }

    /// Registers an agent.
    pub async fn register(&self, actor: &str, tenant: &str, spec: AgentSpec) -> Result<AgentView> {
        check_id("id", &spec.id)?;
        check_name("owner", &spec.owner, MAX_FIELD_BYTES)?;
        check_declared(
            spec.name.as_deref(),
            None,
            spec.description.as_deref(),
            Some(&spec.capabilities),
        )?;
        let settings = self.settings(tenant);
        let interval = spec
            .reporting_interval_secs
            .unwrap_or(settings.default_reporting_interval_secs);
        check_interval("reporting_interval_secs", interval)?;
        let now = self.now();
        let exemption = match &spec.exemption {
            Some(g) => Some(self.exemption(actor, g, now)?),
            None => None,
        };
        let _guard = self.shards[shard_of(tenant, &spec.id)].lock().await;
        {
            let registry = self.read();
            if let Some(a) = registry.agent(tenant, &spec.id)
                && a.status != AgentStatus::Deleted
            {
                return Err(conflict(
                    "agent-exists",
                    format!("agent `{}` is already registered", spec.id),
                ));
            }
            let count = registry
                .agents
                .values()
                .filter(|a| a.tenant == tenant && a.status != AgentStatus::Deleted)
                .count();
            if count >= self.config.max_agents_per_tenant {
                return Err(conflict(
                    "too-many-agents",
                    format!("tenant `{tenant}` already has {count} agents, the most allowed"),
                ));
            }
        }
        let stamp = at(now);
        let agent = Agent {
            id: spec.id.clone(),
            tenant: tenant.to_owned(),
            name: spec.name.clone().unwrap_or_else(|| spec.id.clone()),
            owner: spec.owner.clone(),
            description: spec.description.clone().unwrap_or_default(),
            capabilities: spec.capabilities.iter().cloned().collect(),
            reporting_interval_secs: interval,
            exemption,
            status: AgentStatus::Active,
            reporting_status: ReportingStatus::Compliant,
            security_score: settings.score.initial,
            missed_reports: 0,
            health: Health::Healthy,
            reporting_since: stamp.clone(),
            last_report_at: None,
            last_report: None,
            metric_levels: BTreeMap::new(),
            undeclared_tools: Default::default(),
            last_anomaly: None,
            created_at: stamp.clone(),
            created_by: actor.to_owned(),
            updated_at: stamp.clone(),
            version: 0,
        };
        let mut steps = Steps::new(&agent, actor, &stamp, &self.read());
        let record = serde_json::to_value(&agent).unwrap_or(Value::Null);
        steps.note(
            registry::EVENT_CREATED,
            "create",
            Outcome::Success,
            Severity::Info,
            obj([("record", record)]),
        );
        self.record(steps.bodies, false).await?;
        self.get(tenant, &spec.id)
    }

    fn exemption(&self, actor: &str, grant: &ExemptionGrant, now: i128) -> Result<Exemption> {
        check_name("exemption.reason", &grant.reason, MAX_TEXT_BYTES)?;
        let until =
            parse_rfc3339(&grant.expires_at).map_err(|e| invalid("exemption.expires_at", e))?;
        if until <= now {
            return Err(invalid("exemption.expires_at", "is not in the future"));
        }
        Ok(Exemption {
            reason: grant.reason.clone(),
            expires_at: at(until),
            granted_by: actor.to_owned(),
        })
    }

    /// Changes an agent's declared fields; a change that changes nothing records nothing.
    pub async fn update(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        patch: AgentPatch,
    ) -> Result<AgentView> {
        check_declared(
            patch.name.as_deref(),
            patch.owner.as_deref(),
            patch.description.as_deref(),
            patch.capabilities.as_deref(),
        )?;
        if let Some(i) = patch.reporting_interval_secs {
            check_interval("reporting_interval_secs", i)?;
        }
        let _guard = self.shards[shard_of(tenant, id)].lock().await;
        let agent = self.live_agent(tenant, id)?;
        if agent.status == AgentStatus::NonCompliant {
            return Err(conflict(
                "agent-frozen",
                format!(
                    "agent `{id}` is non-compliant: its record is frozen until an admin decides its deletion request"
                ),
            ));
        }
        let stamp = at(self.now());
        let mut steps = Steps::new(&agent, actor, &stamp, &self.read());
        let mut after = agent.clone();
        if let Some(n) = patch.name {
            after.name = n;
        }
        if let Some(o) = patch.owner {
            after.owner = o;
        }
        if let Some(d) = patch.description {
            after.description = d;
        }
        if let Some(c) = patch.capabilities {
            after.capabilities = c.into_iter().collect();
        }
        if let Some(i) = patch.reporting_interval_secs {
            after.reporting_interval_secs = i;
        }
        if registry::agent_diff(&agent, &after).is_empty() {
            return self.get(tenant, id);
        }
        steps.change(
            registry::EVENT_UPDATED,
            "update",
            Outcome::Success,
            Severity::Info,
            Map::new(),
            |a| *a = after,
        );
        self.record(steps.bodies, false).await?;
        self.get(tenant, id)
    }

    /// One admin change to a live agent: under the agent's lock, `build` adds the entries (or
    /// refuses); they are recorded, and the agent is answered as it stands after.
    async fn admin_change(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        build: impl FnOnce(&Agent, &mut Steps) -> Result<()>,
    ) -> Result<AgentView> {
        let _guard = self.shards[shard_of(tenant, id)].lock().await;
        let agent = self.live_agent(tenant, id)?;
        let mut steps = Steps::new(&agent, actor, &at(self.now()), &self.read());
        build(&agent, &mut steps)?;
        self.record(steps.bodies, false).await?;
        self.get(tenant, id)
    }

    /// Deletes an agent (an admin's decision; its history stays in the ledger).
    pub async fn delete(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        reason: &str,
    ) -> Result<AgentView> {
        check_name("reason", reason, MAX_TEXT_BYTES)?;
        self.admin_change(actor, tenant, id, |_, steps| {
            steps.change(
                registry::EVENT_DELETED,
                "delete",
                Outcome::Success,
                Severity::Medium,
                obj([("reason", json!(reason))]),
                |a| a.status = AgentStatus::Deleted,
            );
            Ok(())
        })
        .await
    }

    /// Records a report from agent `id` (SPEC §5.2): the missed count and reporting status
    /// reset (a suspended agent stays suspended), and the metrics are checked against the
    /// thresholds (SPEC §5.3). Refused with 503 semantics when the ledger is full.
    pub async fn heartbeat(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        report: Report,
    ) -> Result<HeartbeatAnswer> {
        if let Some(t) = &report.timestamp {
            parse_rfc3339(t).map_err(|e| invalid("timestamp", e))?;
        }
        if let Some(s) = &report.status {
            check_name("status", s, 64)?;
        }
        if report.metrics.len() > MAX_METRICS {
            return Err(invalid(
                "metrics",
                format!("more than {MAX_METRICS} metrics"),
            ));
        }
        for (name, value) in &report.metrics {
            check_name("metrics", name, 64)?;
            if !value.is_finite() || *value < 0.0 {
                return Err(invalid(
                    &format!("metrics.{name}"),
                    "must be a finite number ≥ 0",
                ));
            }
        }
        let _guard = self.shards[shard_of(tenant, id)].lock().await;
        let agent = self.live_agent(tenant, id)?;
        let settings = self.settings(tenant);
        let now = self.now();
        let stamp = at(now);
        let (levels, violations) =
            assess_metrics(&report.metrics, &agent.metric_levels, &settings.performance);
        let mut steps = Steps::new(&agent, actor, &stamp, &self.read());
        steps.change(
            registry::EVENT_HEARTBEAT,
            "report",
            Outcome::Success,
            Severity::Info,
            obj([(
                "report",
                serde_json::to_value(&report).unwrap_or(Value::Null),
            )]),
            |a| {
                a.missed_reports = 0;
                a.reporting_status = ReportingStatus::Compliant;
                a.health = Health::Healthy;
                a.reporting_since = stamp.clone();
                a.last_report_at = Some(stamp.clone());
                a.last_report = Some(report.clone());
                a.metric_levels = levels;
                if a.status == AgentStatus::Warned {
                    a.status = AgentStatus::Active;
                }
            },
        );
        // A heartbeat carries the absolute values of what a report sets (see the registry).
        if let Some(body) = steps.bodies.last_mut() {
            let state = registry::heartbeat_state(&steps.state);
            body.data.insert("state".into(), Value::Object(state));
        }
        for v in &violations {
            let severity = match v.level {
                Level::Critical => Severity::High,
                _ => Severity::Medium,
            };
            steps.penalise(
                &settings,
                registry::EVENT_THRESHOLD_VIOLATION,
                "warning",
                v.level,
                severity,
                obj([
                    ("metric", json!(v.metric)),
                    ("value", json!(v.value)),
                    ("threshold", json!(v.threshold)),
                    ("level", json!(v.level)),
                ]),
                |_| {},
            );
        }
        let receipts = self.record(steps.bodies, true).await?;
        // The answer from the folded state, under one read (no view: this is the hot path).
        let registry = self.read();
        let after = registry
            .agent(tenant, id)
            .ok_or_else(|| unknown_agent(tenant, id))?;
        let due = Reckoning::of(
            after,
            registry.settings_of(tenant, &self.config.defaults),
            now,
        )
        .next_miss
        .map(at);
        Ok(HeartbeatAnswer {
            agent: id.to_owned(),
            seq: receipts.first().map_or(0, |r| r.seq),
            status: after.status,
            reporting_status: after.reporting_status,
            security_score: after.security_score,
            next_report_due: due,
            violations,
        })
    }

    /// Grants an exemption from reporting.
    pub async fn grant_exemption(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        grant: ExemptionGrant,
    ) -> Result<AgentView> {
        let exemption = self.exemption(actor, &grant, self.now())?;
        self.admin_change(actor, tenant, id, |_, steps| {
            steps.change(
                registry::EVENT_EXEMPTION_GRANTED,
                "grant",
                Outcome::Success,
                Severity::Low,
                Map::new(),
                |a| a.exemption = Some(exemption),
            );
            Ok(())
        })
        .await
    }

    /// Revokes an agent's exemption; its reports are counted from now.
    pub async fn revoke_exemption(&self, actor: &str, tenant: &str, id: &str) -> Result<AgentView> {
        self.admin_change(actor, tenant, id, |agent, steps| {
            if agent.exemption.is_none() {
                return Err(conflict(
                    "not-exempt",
                    format!("agent `{id}` has no exemption"),
                ));
            }
            let stamp = steps.at.clone();
            steps.change(
                registry::EVENT_EXEMPTION_REVOKED,
                "revoke",
                Outcome::Success,
                Severity::Low,
                Map::new(),
                |a| {
                    a.exemption = None;
                    a.reporting_since = stamp;
                    a.missed_reports = 0;
                },
            );
            Ok(())
        })
        .await
    }

    /// Suspends an agent by an admin's decision (overriding the automatic actions); files the
    /// request to reinstate it.
    pub async fn suspend(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        reason: &str,
    ) -> Result<AgentView> {
        check_name("reason", reason, MAX_TEXT_BYTES)?;
        self.admin_change(actor, tenant, id, |agent, steps| {
            if agent.status.halted() {
                return Err(conflict(
                    "already-halted",
                    format!("agent `{id}` is already {}", agent.status.as_str()),
                ));
            }
            steps.suspend("admin", reason, |_| {});
            Ok(())
        })
        .await
    }

    /// An admin's decision on request `request_id` (SPEC §5.4): approving an unsuspend
    /// request reinstates the agent (reporting counted from now; a score of 0 starts over),
    /// approving a deletion request deletes it, denying records the denial and changes
    /// nothing else.
    pub async fn decide(
        &self,
        actor: &str,
        tenant: &str,
        request_id: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<AdminRequest> {
        if let Some(n) = &note
            && n.len() > MAX_TEXT_BYTES
        {
            return Err(invalid(
                "note",
                format!("is longer than {MAX_TEXT_BYTES} bytes"),
            ));
        }
        let found = self
            .read()
            .requests
            .get(request_id)
            .filter(|r| r.tenant == tenant)
            .cloned()
            .ok_or_else(|| OversightError::NotFound(format!("no request `{request_id}`")))?;
        let _guard = self.shards[shard_of(tenant, &found.agent)].lock().await;
        let request = self
            .read()
            .requests
            .get(request_id)
            .cloned()
            .ok_or_else(|| OversightError::NotFound(format!("no request `{request_id}`")))?;
        if request.status != RequestStatus::Pending {
            return Err(conflict(
                "request-decided",
                format!("request `{request_id}` is already {:?}", request.status).to_lowercase(),
            ));
        }
        let agent = self.live_agent(tenant, &request.agent)?;
        let settings = self.settings(tenant);
        let now = self.now();
        let stamp = at(now);
        let mut steps = Steps::new(&agent, actor, &stamp, &self.read());
        let mut extra = obj([("request", json!(request_id))]);
        if let Some(n) = &note {
            extra.insert("note".into(), json!(n));
        }
        match (approve, request.kind) {
            (false, kind) => {
                extra.insert("kind".into(), json!(kind));
                steps.note(
                    registry::EVENT_REQUEST_DENIED,
                    "deny",
                    Outcome::Success,
                    Severity::Low,
                    extra,
                );
            }
            (true, RequestKind::Unsuspend) => {
                if !matches!(
                    agent.status,
                    AgentStatus::Suspended | AgentStatus::NonCompliant
                ) {
                    return Err(conflict(
                        "not-suspended",
                        format!("agent `{}` is {}", agent.id, agent.status.as_str()),
                    ));
                }
                let initial = settings.score.initial;
                steps.change(
                    registry::EVENT_UNSUSPENDED,
                    "approve",
                    Outcome::Success,
                    Severity::Medium,
                    extra,
                    |a| {
                        a.status = AgentStatus::Active;
                        a.reporting_status = ReportingStatus::Compliant;
                        a.missed_reports = 0;
                        a.reporting_since = stamp.clone();
                        a.health = Health::Healthy;
                        if a.security_score == 0 {
                            a.security_score = initial;
                        }
                    },
                );
            }
            (true, RequestKind::Deletion) => {
                steps.change(
                    registry::EVENT_DELETED,
                    "approve",
                    Outcome::Success,
                    Severity::Medium,
                    extra,
                    |a| a.status = AgentStatus::Deleted,
                );
            }
        }
        self.record(steps.bodies, false).await?;
        self.read()
            .requests
            .get(request_id)
            .cloned()
            .ok_or_else(|| OversightError::NotFound(format!("no request `{request_id}`")))
    }

    /// Changes `tenant`'s settings (recorded with the diff).
    pub async fn set_settings(
        &self,
        actor: &str,
        tenant: &str,
        settings: Settings,
    ) -> Result<Settings> {
        settings.validate().map_err(|e| invalid("settings", e))?;
        let before = self.settings(tenant);
        let changes = registry::diff(
            &registry::object_of(&before),
            &registry::object_of(&settings),
        );
        if changes.is_empty() {
            return Ok(before);
        }
        let mut body = EntryBody::new(
            tenant,
            registry::EVENT_SETTINGS,
            actor,
            "update",
            Outcome::Success,
        );
        body.severity = Severity::Medium;
        body.resource = Some(registry::SETTINGS_RESOURCE.to_owned());
        body.data = obj([
            ("at", json!(at(self.now()))),
            (
                "settings",
                serde_json::to_value(&settings).unwrap_or(Value::Null),
            ),
            ("changes", Value::Object(changes)),
        ]);
        self.record(vec![body], false).await?;
        Ok(self.settings(tenant))
    }

    /// One pass of the enforcer at the clock's now: stale agents and missed reports, with
    /// their consequences (SPEC §5.2, §5.3). Entries are appended in one batch.
    pub async fn enforce(&self) -> Result<EnforcementPass> {
        let now = self.now();
        let stamp = at(now);
        // Find the agents with something to record, then lock their shards (in order) and
        // decide again on their current state.
        let (candidates, agents) = {
            let registry = self.read();
            let candidates: Vec<AgentKey> = registry
                .agents
                .values()
                .filter(|a| {
                    let settings = registry.settings_of(&a.tenant, &self.config.defaults);
                    Reckoning::of(a, settings, now).due(a)
                })
                .map(|a| (a.tenant.clone(), a.id.clone()))
                .collect();
            (candidates, registry.agents.len())
        };
        if candidates.is_empty() {
            return Ok(EnforcementPass {
                agents,
                ..Default::default()
            });
        }
        let mut shards: Vec<usize> = candidates.iter().map(|(t, i)| shard_of(t, i)).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut guards = Vec::with_capacity(shards.len());
        for s in shards {
            guards.push(self.shards[s].lock().await);
        }
        let mut bodies = Vec::new();
        let mut changed = 0;
        {
            let registry = self.read();
            for (tenant, id) in &candidates {
                let Some(agent) = registry.agent(tenant, id) else {
                    continue;
                };
                let settings = registry.settings_of(tenant, &self.config.defaults);
                let steps = enforcement(agent, settings, &registry, now, &stamp);
                if !steps.bodies.is_empty() {
                    changed += 1;
                    bodies.extend(steps.bodies);
                }
            }
        }
        let entries = bodies.len();
        // One atomic batch per bounded chunk (a ledger batch holds at most 10 000 entries).
        for chunk in chunked(bodies, 5_000) {
            self.record(chunk, false).await?;
        }
        drop(guards);
        Ok(EnforcementPass {
            agents,
            changed,
            entries,
        })
    }

    /// One pass of the watcher: reads the entries appended since the last pass, feeds agents'
    /// own entries to the anomaly detector, and records what it finds about registered agents
    /// (SPEC §5.3): a window scoring at or above the tenant's threshold as `rogue_detection`
    /// (a critical violation of the security score), the first use of a tool the agent never
    /// declared as `capability_violation` (a warning). Unregistered agents build baselines
    /// but have no record to change.
    pub async fn watch(&self) -> Result<WatchPass> {
        use std::sync::atomic::Ordering;
        let size = self.ledger.size()?;
        let mut pass = WatchPass::default();
        let mut from = self.watched.load(Ordering::SeqCst);
        while from < size {
            let to = (from + WATCH_CHUNK).min(size);
            let records = self
                .ledger
                .store()
                .read_range(from, to)
                .map_err(LedgerError::from)?;
            let mut findings: Vec<(String, String, Finding)> = Vec::new();
            {
                let mut detector = self.detector.lock().unwrap_or_else(|e| e.into_inner());
                for record in records {
                    let entry = custos_ledger::parse_record(record.seq, &record.bytes)?;
                    pass.entries += 1;
                    if let Some((tenant, agent, obs)) = Observation::from_entry(&entry)
                        && let Some(tool) = &obs.tool
                        && self.undeclared(&tenant, &agent, tool)
                        && !findings.iter().any(|(t, a, f)| {
                            t == &tenant
                                && a == &agent
                                && matches!(f, Finding::Tool(x, _) if x == tool)
                        })
                    {
                        findings.push((tenant, agent, Finding::Tool(tool.clone(), entry.seq)));
                    }
                    if let Some(found) = detector.observe_entry(&entry) {
                        findings.push((
                            found.tenant.clone(),
                            found.agent.clone(),
                            Finding::Window(found, entry.seq),
                        ));
                    }
                }
            }
            for (tenant, agent, finding) in findings {
                match self.record_finding(&tenant, &agent, finding).await? {
                    Some(true) => pass.flagged += 1,
                    Some(false) => pass.undeclared += 1,
                    None => {}
                }
            }
            from = to;
            self.watched.store(from, Ordering::SeqCst);
        }
        // Windows of agents that went quiet close on the clock, not on a next entry.
        let closed = {
            let mut detector = self.detector.lock().unwrap_or_else(|e| e.into_inner());
            detector.tick(self.now())
        };
        for found in closed {
            let (tenant, agent) = (found.tenant.clone(), found.agent.clone());
            let last = from.saturating_sub(1);
            if self
                .record_finding(&tenant, &agent, Finding::Window(found, last))
                .await?
                .is_some()
            {
                pass.flagged += 1;
            }
        }
        Ok(pass)
    }

    /// Whether `tool` is one registered agent `agent` never declared and was not seen using.
    fn undeclared(&self, tenant: &str, agent: &str, tool: &str) -> bool {
        self.read().agent(tenant, agent).is_some_and(|a| {
            a.status != AgentStatus::Deleted
                && !a.capabilities.contains(tool)
                && !a.undeclared_tools.contains(tool)
        })
    }

    /// Records one finding about a registered agent: `Some(true)` a flagged window,
    /// `Some(false)` an undeclared tool, `None` nothing to record.
    async fn record_finding(
        &self,
        tenant: &str,
        id: &str,
        finding: Finding,
    ) -> Result<Option<bool>> {
        let _guard = self.shards[shard_of(tenant, id)].lock().await;
        let Some(agent) = self.read().agent(tenant, id).cloned() else {
            return Ok(None);
        };
        if agent.status == AgentStatus::Deleted {
            return Ok(None);
        }
        let settings = self.settings(tenant);
        let stamp = at(self.now());
        let mut steps = Steps::new(&agent, "system", &stamp, &self.read());
        let flagged = match finding {
            Finding::Window(found, seq) => {
                let a = found.assessment;
                if a.score < settings.anomaly_threshold {
                    return Ok(None);
                }
                let severity = if a.score >= 0.9 {
                    Severity::Critical
                } else {
                    Severity::High
                };
                let window_start = at(a.window_start_nanos);
                // A window is recorded once: after a restart the baselines are replayed and
                // the last open window may close again.
                if agent
                    .last_anomaly
                    .as_ref()
                    .is_some_and(|n| n.window_start == window_start)
                {
                    return Ok(None);
                }
                let note = registry::AnomalyNote {
                    score: a.score,
                    at: stamp.clone(),
                    window_start,
                    seq: None,
                };
                steps.penalise(
                    &settings,
                    registry::EVENT_ROGUE,
                    "quarantine",
                    Level::Critical,
                    severity,
                    obj([
                        (
                            "assessment",
                            serde_json::to_value(&a).unwrap_or(Value::Null),
                        ),
                        ("explanation", json!(a.explanation)),
                        ("score", json!(a.score)),
                        ("window_closed_by_seq", json!(seq)),
                    ]),
                    |x| x.last_anomaly = Some(note),
                );
                true
            }
            Finding::Tool(tool, seq) => {
                if agent.capabilities.contains(&tool) || agent.undeclared_tools.contains(&tool) {
                    return Ok(None);
                }
                steps.penalise(
                    &settings,
                    registry::EVENT_CAPABILITY_VIOLATION,
                    "warning",
                    Level::Warning,
                    Severity::High,
                    obj([
                        ("tool", json!(tool)),
                        ("entry_seq", json!(seq)),
                        ("declared", json!(agent.capabilities)),
                    ]),
                    |x| {
                        x.undeclared_tools.insert(tool.clone());
                    },
                );
                false
            }
        };
        self.record(steps.bodies, false).await?;
        Ok(Some(flagged))
    }

    /// Runs the watcher every second until `stop`.
    pub async fn run_watcher(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.watch().await {
                Ok(pass) if pass.flagged + pass.undeclared > 0 => {
                    tracing::warn!(
                        flagged = pass.flagged,
                        undeclared = pass.undeclared,
                        "oversight watcher findings"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "oversight watcher pass failed"),
            }
        }
    }

    /// Runs the enforcer every `monitor_interval_secs` until `stop`.
    pub async fn run_enforcer(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let every = std::time::Duration::from_secs(self.config.monitor_interval_secs);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.enforce().await {
                Ok(pass) if pass.entries > 0 => {
                    tracing::info!(
                        changed = pass.changed,
                        entries = pass.entries,
                        "oversight enforcer pass"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "oversight enforcer pass failed"),
            }
        }
    }
}

fn chunked(mut bodies: Vec<EntryBody>, size: usize) -> Vec<Vec<EntryBody>> {
    let mut out = Vec::new();
    while bodies.len() > size {
        let rest = bodies.split_off(size);
        out.push(std::mem::replace(&mut bodies, rest));
    }
    if !bodies.is_empty() {
        out.push(bodies);
    }
    out
}

/// Since when an agent's reports are counted at `now`: its last report, registration or
/// reinstatement — or the end of an exemption that ran out since.
fn counted_since(agent: &Agent, now: i128) -> i128 {
    let since = nanos_of(&agent.reporting_since);
    match &agent.exemption {
        Some(e) => match parse_rfc3339(&e.expires_at) {
            Ok(until) if until <= now => since.max(until),
            _ => since,
        },
        None => since,
    }
}

/// Where an agent stands with its reports at a moment: what the view shows, what the
/// enforcer's pre-check and pass decide on.
struct Reckoning {
    /// Silent for the stale timeout while still marked healthy: to be recorded stale.
    turns_stale: bool,
    /// An exemption holds.
    exempt: bool,
    /// Reports missed (0 when deleted or exempt).
    missed: u32,
    /// When the next report counts as missed (none when deleted or exempt).
    next_miss: Option<i128>,
}

impl Reckoning {
    fn of(agent: &Agent, settings: &Settings, now: i128) -> Self {
        let deleted = agent.status == AgentStatus::Deleted;
        let last = agent
            .last_report_at
            .as_deref()
            .map_or_else(|| nanos_of(&agent.reporting_since), nanos_of);
        let turns_stale = !deleted
            && agent.health == Health::Healthy
            && is_stale(last, now, i128::from(settings.stale_after_secs) * NANOS);
        let exempt = agent.exemption.as_ref().is_some_and(|e| e.holds_at(now));
        if deleted || exempt {
            return Reckoning {
                turns_stale,
                exempt,
                missed: 0,
                next_miss: None,
            };
        }
        let since = counted_since(agent, now);
        let interval = i128::from(agent.reporting_interval_secs) * NANOS;
        let grace = settings.reporting.grace_intervals;
        Reckoning {
            turns_stale,
            exempt,
            missed: missed_reports(since, interval, now, grace),
            next_miss: Some(next_miss_at(since, interval, now, grace)),
        }
    }

    /// Whether the enforcer has something to record (what [`enforcement`] decides, without
    /// building anything: a pass looks at every agent).
    fn due(&self, agent: &Agent) -> bool {
        self.turns_stale || self.missed > agent.missed_reports
    }
}

/// What the enforcer records for `agent` at `now`: staleness, then each missed report and
/// each consequence level crossed, in order (SPEC §5.2 table via [`consequence`]).
fn enforcement(
    agent: &Agent,
    settings: &Settings,
    registry: &Registry,
    now: i128,
    stamp: &str,
) -> Steps {
    let mut steps = Steps::new(agent, "system", stamp, registry);
    let r = Reckoning::of(agent, settings, now);
    if r.turns_stale {
        steps.change(
            registry::EVENT_STALE,
            "warning",
            Outcome::Failure,
            Severity::Medium,
            obj([("last_report_at", json!(agent.last_report_at))]),
            |a| a.health = Health::Stale,
        );
    }
    let missed = r.missed;
    if missed <= agent.missed_reports {
        return steps;
    }
    steps.change(
        registry::EVENT_MISSED,
        "warning",
        Outcome::Failure,
        Severity::Low,
        obj([
            ("missed", json!(missed)),
            ("last_report_at", json!(agent.last_report_at)),
        ]),
        |a| a.missed_reports = missed,
    );
    let target = consequence(missed, &settings.reporting);
    for level in ReportingStatus::ALL {
        if level <= steps.state.reporting_status || level > target {
            continue;
        }
        let message = format!(
            "{missed} reports missed (every {} s, grace {} intervals)",
            agent.reporting_interval_secs, settings.reporting.grace_intervals
        );
        match level {
            ReportingStatus::Compliant => {}
            ReportingStatus::Warned => steps.change(
                registry::EVENT_REPORTING_WARNING,
                "warning",
                Outcome::Failure,
                Severity::Medium,
                obj([("missed", json!(missed)), ("message", json!(message))]),
                |a| {
                    a.reporting_status = ReportingStatus::Warned;
                    if a.status == AgentStatus::Active {
                        a.status = AgentStatus::Warned;
                    }
                },
            ),
            ReportingStatus::Suspended => {
                // Halted before (by an admin, the score), the entry records the reporting
                // status reaching suspension and nothing else changes.
                steps.suspend("missed_reports", &message, |a| {
                    a.reporting_status = ReportingStatus::Suspended;
                });
            }
            ReportingStatus::NonCompliant => {
                steps.change(
                    registry::EVENT_NON_COMPLIANT,
                    "quarantine",
                    Outcome::Failure,
                    Severity::Critical,
                    obj([("missed", json!(missed)), ("message", json!(message))]),
                    |a| {
                        a.reporting_status = ReportingStatus::NonCompliant;
                        a.status = AgentStatus::NonCompliant;
                    },
                );
                steps.note(
                    "security_event",
                    "reporting_violation",
                    Outcome::Failure,
                    Severity::Critical,
                    obj([("missed", json!(missed)), ("message", json!(message))]),
                );
                steps.note(
                    registry::EVENT_DELETION_REQUESTED,
                    "request",
                    Outcome::Success,
                    Severity::High,
                    obj([("kind", json!("deletion")), ("reason", json!(message))]),
                );
            }
        }
    }
    steps
}

/// The registry rebuilt from the ledger alone: every registry entry in seq order, with only
/// each agent's latest heartbeat (see [`Registry::apply`] for why that is the same).
pub fn rebuild<S: Store>(ledger: &Ledger<S>) -> Result<Registry> {
    let mut entries = Vec::new();
    for event_type in registry::RESERVED_EVENT_TYPES {
        if event_type == registry::EVENT_HEARTBEAT {
            continue;
        }
        entries.extend(ledger.query_all(EntryQuery {
            event_type: Some(event_type.to_owned()),
            ..Default::default()
        })?);
    }
    let mut agents: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e.event_type == registry::EVENT_CREATED)
        .filter_map(|e| {
            e.data
                .get("agent")
                .and_then(Value::as_str)
                .map(|id| (e.tenant.clone(), id.to_owned()))
        })
        .collect();
    agents.sort();
    agents.dedup();
    for (tenant, id) in agents {
        let (latest, _) = ledger.query(&EntryQuery {
            tenant: Some(tenant),
            event_type: Some(registry::EVENT_HEARTBEAT.to_owned()),
            resource: Some(registry::resource(&id)),
            descending: true,
            limit: 1,
            ..Default::default()
        })?;
        entries.extend(latest);
    }
    entries.sort_by_key(|e| e.seq);
    let mut registry = Registry::default();
    for entry in &entries {
        registry.apply(&Fact::of(entry))?;
    }
    Ok(registry)
}
