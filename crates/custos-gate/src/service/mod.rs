//! The gate as a service over the ledger: reviews decided, signed and recorded; approval
//! tokens issued and checked; executions verified; overrides carried through their chain.
//!
//! The ledger is the record (DESIGN): a review's state is folded from its entries on every
//! read ([`record::ReviewState::fold`]), so a restart, a rebuild or another node sharing the
//! ledger sees exactly the same review, and nothing here keeps state that the ledger does not.
//! Operations on one review run one at a time on a node (a lock per tenant and request id).
//!
//! Fail secure: an error anywhere before the decision is recorded leaves no decision at all,
//! and nothing here ever answers `approved` without a recorded, signed approving decision.

pub mod record;
pub mod signature;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use custos_core::entry::{EntryBody, Outcome as EntryOutcome, Severity};
use custos_core::note::Verifier;
use custos_core::time::{format_utc_nanos, parse_rfc3339};
use custos_ledger::{Ledger, LedgerError};
use custos_store::{Clock, EntryQuery, MAX_QUERY_LIMIT, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::decision::Outcome;
use crate::execution::{self, ExecutionError, ExecutionReport, ExecutionResult};
use crate::intent::IntentVerifier;
use crate::overrides::{
    ApproverKeys, ApproverSignature, OverrideAction, OverrideChain, OverrideConfig, OverrideError,
    OverrideEvent, OverrideRequest, RegisteredKeys, Status,
};
use crate::plan::PlanError;
use crate::policy::{Effect, PolicyEngine};
use crate::request::ReviewRequest;
use crate::review::{Reviewer, plan_hash};
use crate::token::{self, ApprovalClaims, TokenError};
use record::{
    ApprovalAt, DecisionData, DecisionRecord, EVENT_APPROVER_KEY, EVENT_DECISION, EVENT_EXECUTION,
    EVENT_PLAN, EVENT_REFUSED, ExecutionData, ExecutionRecord, RecordError, ReviewState,
};

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// Longest `user_request`, in bytes.
pub const MAX_USER_REQUEST_BYTES: usize = 16 * 1024;
/// Largest `metadata`, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Findings of each kind an execution record keeps when the whole report does not fit in one
/// ledger entry (the counts are kept in full).
const RECORDED_FINDINGS: usize = 50;

/// How the gate decides.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// Minimum intent confidence for approval (SPEC §4.1: 0.9).
    pub min_confidence: f64,
    /// Lifetime of approval tokens, nanoseconds (SPEC §4.1: 15 minutes).
    pub token_ttl_nanos: i128,
    /// Override approval requirements (SPEC §4.5).
    pub overrides: OverrideConfig,
}

impl GateConfig {
    /// Checks the settings; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!(
                "min_confidence {} is not between 0 and 1",
                self.min_confidence
            ));
        }
        let day = 24 * 3600 * 1_000_000_000_i128;
        if self.token_ttl_nanos < 1_000_000_000 || self.token_ttl_nanos > day {
            return Err("the approval token lifetime must be 1 s to 24 h".to_owned());
        }
        self.overrides
            .validate()
            .map_err(|e| format!("overrides: {e}"))
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_confidence: crate::decision::DEFAULT_MIN_CONFIDENCE,
            token_ttl_nanos: token::DEFAULT_TTL_NANOS,
            overrides: OverrideConfig::default(),
        }
    }
}

/// Whether an agent may have its plans reviewed: the agent oversight service (SPEC §5) says
/// why not when it is suspended.
pub trait AgentStanding: Send + Sync {
    /// Why `agent` of `tenant` may not have plans reviewed now, or `None` if it may.
    fn refusal(&self, tenant: &str, agent: &str) -> Option<String>;
}

/// Who is calling, as the server authenticated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Their tenant: they see and write only its reviews.
    pub tenant: String,
    /// How the ledger names them: `agent:<id>` for a key bound to an agent, else
    /// `user:<id>`.
    pub actor: String,
    /// The agent their key is bound to, if any.
    pub agent: Option<String>,
    /// Their roles (`admin`, `security`, `finance`, `manager`, `orchestrator`, …).
    pub roles: Vec<String>,
}

/// Why a gate operation was refused or failed. Nothing is recorded for a refusal unless its
/// documentation says so.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A field of the request is wrong.
    #[error("`{field}`: {problem}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The plan cannot be read.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The execution result cannot be read.
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// No such review (in the caller's tenant).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is recorded.
    #[error("{detail}")]
    Conflict {
        /// A stable code (`request-id-reused`, `token-used`, `override-pending`, …).
        code: &'static str,
        /// What conflicts.
        detail: String,
    },
    /// The caller may not do this (recorded when it is a suspended agent's review).
    #[error("{0}")]
    Forbidden(String),
    /// The approval token is not valid for this.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The override chain refused the step.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A recorded entry of the review cannot be read: the ledger holds something this
    /// version did not write.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Something that cannot happen with valid data did (an encoding failure).
    #[error("internal: {0}")]
    Internal(String),
}

type Result<T, E = GateError> = std::result::Result<T, E>;

fn invalid(field: &str, problem: impl Into<String>) -> GateError {
    GateError::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// What a review is now: its decision, or what happened since.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Approved; no execution reported yet.
    Approved,
    /// Vetoed (an override may be pending).
    Vetoed,
    /// Escalated (an override may be pending).
    Escalated,
    /// Vetoed or escalated, then approved through an override chain; no execution reported.
    Overridden,
    /// An execution was reported under the approval.
    Executed,
}

/// One override as a review answer shows it.
#[derive(Serialize, Clone, Debug)]
pub struct OverrideView {
    /// Its id.
    pub override_id: String,
    /// `pending`, `approved`, `denied`, `expired`, `withdrawn` (at the time of reading).
    pub status: String,
    /// Who asked.
    pub requested_by: String,
    /// Why the override is needed.
    pub justification: String,
    /// What happens to the business without the override.
    pub business_impact: String,
    /// What else was considered, and why not that.
    pub alternatives_considered: String,
    /// The risk the requester accepts.
    pub risk_acceptance: String,
    /// The override digest (hex). An approver signs the bytes of
    /// `custos-override-v1:<digest>:<their principal>`.
    pub digest: String,
    /// Distinct approvers needed.
    pub min_approvers: u32,
    /// Roles some approver must hold.
    pub required_roles: Vec<String>,
    /// Who approved, with role and whether they signed.
    pub approvals: Vec<Value>,
    /// Who denied, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denial: Option<Value>,
    /// When it expires (pending) or expired.
    pub expires_at: String,
    /// Ledger seqs of its records.
    pub seqs: Vec<u64>,
    /// Seq of the approval it granted, if approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_seq: Option<u64>,
}

/// A review as the API answers it: the signed decision record, its signature, the approval
/// token while there is an approval, and what happened since.
#[derive(Serialize, Clone, Debug)]
pub struct ReviewView {
    /// The signed decision.
    #[serde(flatten)]
    pub record: DecisionRecord,
    /// Ed25519 signature of the log key over the record's RFC 8785 form, standard base64.
    pub signature: String,
    /// The approval token, when the plan is approved (by decision or override).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_token: Option<String>,
    /// When the token expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_token_expires: Option<String>,
    /// Whether an execution was already reported with the approval (tokens are single-use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_token_used: Option<bool>,
    /// The review's status now.
    pub state: ReviewStatus,
    /// Execution reports, in order.
    pub executions: Vec<ExecutionRecord>,
    /// Override chains, in order.
    pub overrides: Vec<OverrideView>,
}

/// An execution report as the API answers it.
#[derive(Serialize, Clone, Debug)]
pub struct ExecutionView {
    /// The review.
    pub request_id: String,
    /// Ledger seq of the recorded verification.
    pub seq: u64,
    /// When it was recorded.
    pub ts: String,
    /// Severity of the ledger entry (`critical` for any deviation).
    pub entry_severity: Severity,
    /// The approval this execution used, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_seq: Option<u64>,
    /// The verification.
    #[serde(flatten)]
    pub report: ExecutionReport,
}

/// An execution report to verify.
#[derive(Deserialize, Clone, Debug)]
pub struct ExecutionInput {
    /// What was executed: a generic report, a Terraform plan or state, or the `apply -json`
    /// log (as a string or an array of messages).
    pub result: Value,
    /// The approval token the executor ran the plan under.
    #[serde(default)]
    pub approval_token: Option<String>,
}

/// The texts of an override request (SPEC §4.5).
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct OverrideInput {
    /// Why the override is needed.
    pub justification: String,
    /// What happens to the business without it.
    pub business_impact: String,
    /// What else was considered.
    pub alternatives_considered: String,
    /// The risk the requester accepts.
    pub risk_acceptance: String,
}

/// An approver's step on an override.
#[derive(Clone, Debug)]
pub enum OverrideStep {
    /// Approve `plan_hash`, optionally signed.
    Approve {
        /// The plan hash approved (must be the override's).
        plan_hash: String,
        /// A comment.
        comment: String,
        /// Signature over the override digest.
        signature: Option<ApproverSignature>,
    },
    /// Deny, with a reason.
    Deny {
        /// Why.
        reason: String,
    },
    /// Withdraw (the requester), with a reason.
    Withdraw {
        /// Why.
        reason: String,
    },
}

/// The online answer about an approval token.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct TokenCheck {
    /// Signed by this log, unexpired, bound as asked, and its approval is on record.
    pub valid: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the token says (when it could be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<ApprovalClaims>,
    /// Whether an execution was already reported with it (single use).
    pub used: bool,
}

/// One line of a review listing.
#[derive(Serialize, Clone, Debug)]
pub struct ReviewListItem {
    /// The request id.
    pub request_id: String,
    /// The decision.
    pub decision: Outcome,
    /// Ledger seq of the decision.
    pub seq: u64,
    /// When.
    pub ts: String,
    /// Who asked.
    pub actor: String,
    /// The plan's hash.
    pub plan_hash: String,
    /// What the plan does.
    pub summary: String,
    /// Violated policy ids.
    pub policies: Vec<String>,
    /// Approvals required.
    pub required_approvals: Vec<String>,
}

/// A listing query.
#[derive(Clone, Debug, Default)]
pub struct ReviewQuery {
    /// Only this decision.
    pub decision: Option<Outcome>,
    /// Only reviews asked by this actor.
    pub actor: Option<String>,
    /// Decided at or after (nanoseconds).
    pub start: Option<i128>,
    /// Decided before.
    pub end: Option<i128>,
    /// Only reviews that violated this policy (filters the page).
    pub policy: Option<String>,
    /// Cursor (a decision seq from a previous page).
    pub after: Option<u64>,
    /// Newest first.
    pub descending: bool,
    /// Page size, 1..=1000.
    pub limit: usize,
}

/// Locks by key, dropped when nobody holds or waits for them.
type LockMap = HashMap<(String, String), Weak<tokio::sync::Mutex<()>>>;

#[derive(Default)]
struct KeyedLocks(Mutex<LockMap>);

impl KeyedLocks {
    async fn lock(&self, tenant: &str, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, w| w.strong_count() > 0);
            let key = (tenant.to_owned(), id.to_owned());
            match map.get(&key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key, Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

/// The gate service.
pub struct GateService<S: Store> {
    ledger: Arc<Ledger<S>>,
    /// The log's verifier key and its name (the origin of tokens and decisions).
    verifier: Verifier,
    log: String,
    policies: Arc<dyn PolicyEngine>,
    llm: Option<Arc<dyn IntentVerifier>>,
    config: GateConfig,
    clock: Clock,
    standing: std::sync::RwLock<Option<Arc<dyn AgentStanding>>>,
    locks: KeyedLocks,
}

/// Checks a request id: 1 to 256 bytes, no whitespace or control character.
pub fn check_request_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_BYTES {
        return Err(invalid(
            "request_id",
            format!(
                "must be 1 to {MAX_REQUEST_ID_BYTES} bytes, not {}",
                id.len()
            ),
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "request_id",
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> GateError {
    GateError::Internal(e.to_string())
}

impl<S: Store> GateService<S> {
    /// A gate over `ledger`, with `policies`, an optional LLM verifier, `config` and `clock`.
    pub fn new(
        ledger: Arc<Ledger<S>>,
        policies: Arc<dyn PolicyEngine>,
        llm: Option<Arc<dyn IntentVerifier>>,
        config: GateConfig,
        clock: Clock,
    ) -> Self {
        let verifier = ledger.verifier();
        GateService {
            log: verifier.name().to_owned(),
            verifier,
            ledger,
            policies,
            llm,
            config,
            clock,
            standing: std::sync::RwLock::new(None),
            locks: KeyedLocks::default(),
        }
    }

    /// Sets who says whether an agent is suspended (the oversight service).
    pub fn set_agent_standing(&self, standing: Arc<dyn AgentStanding>) {
        *self.standing.write().unwrap_or_else(|e| e.into_inner()) = Some(standing);
    }

    /// The policy bundle's hash.
    pub fn policy_bundle(&self) -> &str {
        self.policies.bundle_hash()
    }

    fn body(
        &self,
        p: &Principal,
        resource: String,
        (event_type, action, outcome, severity): (&str, &str, EntryOutcome, Severity),
        data: Map<String, Value>,
    ) -> EntryBody {
        EntryBody {
            client_ts: None,
            tenant: p.tenant.clone(),
            event_type: event_type.to_owned(),
            actor: p.actor.clone(),
            action: action.to_owned(),
            resource: Some(resource),
            target: None,
            outcome,
            severity,
            policy_decision: None,
            matched_rule: None,
            trace_id: None,
            session_id: None,
            request: None,
            data,
        }
    }

    /// Every entry of the review of `request_id` in `tenant`, in seq order.
    fn state(&self, tenant: &str, request_id: &str) -> Result<Option<ReviewState>> {
        let entries = self.ledger.query_all(EntryQuery {
            tenant: Some(tenant.to_owned()),
            resource: Some(record::resource(request_id)),
            ..EntryQuery::default()
        })?;
        Ok(ReviewState::fold(entries)?)
    }

    fn token_for(&self, state: &ReviewState, approval: &ApprovalAt) -> Result<(String, String)> {
        let issued = parse_rfc3339(&approval.ts).map_err(internal)?;
        let claims = token::claims(
            &self.log,
            &state.decision_entry.tenant,
            &state.decision.request_id,
            &state.decision.evaluation.plan_hash,
            approval.seq,
            &approval.id,
            issued,
            self.config.token_ttl_nanos,
        )?;
        let text = token::issue(self.ledger.signer(), &claims)?;
        Ok((text, claims.expires))
    }

    /// The review as the API answers it, at `now`.
    fn view(&self, state: &ReviewState, now: i128) -> Result<ReviewView> {
        let record = state.record(&self.log);
        let signature = signature::sign(&record, self.ledger.signer()).map_err(internal)?;
        let approval = state.approval();
        let (approval_token, approval_token_expires, approval_token_used) = match &approval {
            Some(a) => {
                let (t, e) = self.token_for(state, a)?;
                (Some(t), Some(e), Some(state.used(a.seq).is_some()))
            }
            None => (None, None, None),
        };
        let overrides = state
            .overrides
            .iter()
            .map(|o| override_view(o, now))
            .collect();
        Ok(ReviewView {
            record,
            signature,
            approval_token,
            approval_token_expires,
            approval_token_used,
            state: state.status(),
            executions: state.executions.clone(),
            overrides,
        })
    }

    /// Reviews a plan (SPEC §4.1), records the decision and answers it signed, with an
    /// approval token if approved. Returns the answer and whether this call decided it (a
    /// request id already decided with the same plan answers the recorded decision; with
    /// another plan it is a conflict).
    ///
    /// A suspended agent's review is refused (403) and the refusal recorded.
    pub async fn review(
        &self,
        p: &Principal,
        request: ReviewRequest,
    ) -> Result<(ReviewView, bool)> {
        check_request_id(&request.request_id)?;
        if request.user_request.trim().is_empty() {
            return Err(invalid("user_request", "must not be empty"));
        }
        if request.user_request.len() > MAX_USER_REQUEST_BYTES {
            return Err(invalid(
                "user_request",
                format!(
                    "is {} bytes; at most {MAX_USER_REQUEST_BYTES}",
                    request.user_request.len()
                ),
            ));
        }
        let metadata_bytes = serde_json::to_vec(&request.metadata)
            .map_err(internal)?
            .len();
        if metadata_bytes > MAX_METADATA_BYTES {
            return Err(invalid(
                "metadata",
                format!("is {metadata_bytes} bytes; at most {MAX_METADATA_BYTES}"),
            ));
        }
        let hash = plan_hash(&request.plan)?;
        let standing = self
            .standing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(standing), Some(agent)) = (standing, &p.agent)
            && let Some(why) = standing.refusal(&p.tenant, agent)
        {
            let data = record::entry_data(&json!({
                "request_id": request.request_id,
                "agent": agent,
                "reason": why,
                "plan_hash": hash,
            }))
            .map_err(internal)?;
            let body = self.body(
                p,
                record::resource(&request.request_id),
                (
                    EVENT_REFUSED,
                    "refuse",
                    EntryOutcome::Denied,
                    Severity::High,
                ),
                data,
            );
            self.ledger.append(body).await?;
            return Err(GateError::Forbidden(format!(
                "agent {agent} may not have plans reviewed: {why}"
            )));
        }
        let _guard = self.locks.lock(&p.tenant, &request.request_id).await;
        let now = (self.clock)();
        if let Some(state) = self.state(&p.tenant, &request.request_id)? {
            let recorded = &state.decision.evaluation.plan_hash;
            if *recorded != hash {
                return Err(GateError::Conflict {
                    code: "request-id-reused",
                    detail: format!(
                        "request {} was already reviewed (ledger entry {}) for plan {recorded}; \
                         this plan is {hash}: use a new request id for a new plan",
                        request.request_id, state.decision_entry.seq
                    ),
                });
            }
            return Ok((self.view(&state, now)?, false));
        }
        let reviewer = Reviewer {
            policies: self.policies.as_ref(),
            llm: self.llm.as_deref(),
            min_confidence: self.config.min_confidence,
        };
        let (evaluation, plan) = reviewer.evaluate_hashed(&request, hash.clone()).await?;
        let (head, parts) = record::split_plan(&request.request_id, &hash, &plan)
            .map_err(|e| invalid("plan", e))?;
        let decision = evaluation.decision;
        let data = DecisionData {
            request_id: request.request_id.clone(),
            plan_parts: u32::try_from(parts.len()).map_err(internal)?,
            evaluation,
            user_request: request.user_request.clone(),
            metadata: request.metadata.clone(),
            agent: p.agent.clone(),
            plan: head,
        };
        let mut bodies = Vec::with_capacity(parts.len() + 1);
        for part in &parts {
            bodies.push(self.body(
                p,
                record::resource(&request.request_id),
                (EVENT_PLAN, "record", EntryOutcome::Success, Severity::Info),
                record::entry_data(part).map_err(internal)?,
            ));
        }
        let data_map = record::entry_data(&data).map_err(internal)?;
        let (outcome, severity) = match decision {
            Outcome::Approved => (EntryOutcome::Success, Severity::Info),
            Outcome::Escalated => (EntryOutcome::Denied, Severity::Medium),
            Outcome::Vetoed => (EntryOutcome::Denied, Severity::High),
        };
        let mut body = self.body(
            p,
            record::resource(&request.request_id),
            (EVENT_DECISION, decision.as_str(), outcome, severity),
            data_map,
        );
        body.policy_decision = Some(decision.as_str().to_owned());
        // The rule that decided: the first vetoing violation, else the first escalating one.
        let violations = &data.evaluation.violations;
        body.matched_rule = violations
            .iter()
            .find(|v| v.effect() == Effect::Veto)
            .or_else(|| {
                violations
                    .iter()
                    .find(|v| matches!(v.effect(), Effect::Escalate(_)))
            })
            .map(|v| v.policy.clone());
        bodies.push(body);
        let receipts = self.ledger.append_batch(bodies).await?;
        // Answer from what the ledger holds: the decision entry, read back by seq (no index
        // involved). The plan parts beside it are for execution reports, not the answer.
        let seq = receipts
            .last()
            .map(|r| r.seq)
            .ok_or_else(|| internal("an append returned no receipt"))?;
        let state = ReviewState::fold(vec![self.ledger.get(seq)?])?
            .ok_or_else(|| internal("the decision just recorded is not in the ledger"))?;
        Ok((self.view(&state, now)?, true))
    }

    /// The review of `request_id` in the caller's tenant.
    pub fn get(&self, tenant: &str, request_id: &str) -> Result<ReviewView> {
        check_request_id(request_id)?;
        let state = self
            .state(tenant, request_id)?
            .ok_or_else(|| not_found(request_id))?;
        self.view(&state, (self.clock)())
    }

    /// Lists decisions of `tenant`, newest or oldest first, a page at a time; returns the
    /// page and the cursor of the next one.
    pub fn list(
        &self,
        tenant: &str,
        q: &ReviewQuery,
    ) -> Result<(Vec<ReviewListItem>, Option<u64>)> {
        let query = EntryQuery {
            tenant: Some(tenant.to_owned()),
            event_type: Some(EVENT_DECISION.to_owned()),
            action: q.decision.map(|d| d.as_str().to_owned()),
            actor: q.actor.clone(),
            start: q.start,
            end: q.end,
            after: q.after,
            descending: q.descending,
            limit: q.limit.clamp(1, MAX_QUERY_LIMIT),
            ..EntryQuery::default()
        };
        let (entries, next) = self.ledger.query(&query)?;
        let mut items = Vec::with_capacity(entries.len());
        for e in &entries {
            let d: DecisionData = DecisionData::deserialize(Value::Object(e.data.clone()))
                .map_err(|err| RecordError {
                    seq: e.seq,
                    event_type: e.event_type.clone(),
                    problem: err.to_string(),
                })?;
            let policies: Vec<String> = d
                .evaluation
                .violations
                .iter()
                .map(|v| v.policy.clone())
                .collect();
            if let Some(want) = &q.policy
                && !policies.contains(want)
            {
                continue;
            }
            items.push(ReviewListItem {
                request_id: d.request_id,
                decision: d.evaluation.decision,
                seq: e.seq,
                ts: e.ts.clone(),
                actor: e.actor.clone(),
                plan_hash: d.evaluation.plan_hash,
                summary: d.evaluation.summary,
                policies,
                required_approvals: d.evaluation.required_approvals,
            });
        }
        Ok((items, next))
    }

    /// Verifies and records an execution (SPEC §4.4). Executing a vetoed, escalated or
    /// unknown request is recorded as a critical deviation. The approval is single-use: a
    /// second report under it is refused (409) and nothing is recorded; a token, when
    /// presented, must be this log's, for this tenant, request, plan and approval.
    pub async fn report_execution(
        &self,
        p: &Principal,
        request_id: &str,
        input: ExecutionInput,
    ) -> Result<ExecutionView> {
        check_request_id(request_id)?;
        // A missing `result` deserialises as null: nothing was reported, so nothing is recorded.
        if input.result.is_null() {
            return Err(invalid("result", "is required: what was executed"));
        }
        let _guard = self.locks.lock(&p.tenant, request_id).await;
        let now = (self.clock)();
        let state = self.state(&p.tenant, request_id)?;
        let read = execution::normalize_execution(&input.result);
        let token_id = match &input.approval_token {
            Some(t) => Some(token::open(t, &self.verifier)?),
            None => None,
        };
        let unapproved = |why: String| -> ExecutionReport {
            let mut report = execution::unapproved_execution(&why, read.as_ref().ok());
            if let Err(e) = &read {
                report
                    .notes
                    .push(format!("the execution result could not be read: {e}"));
            }
            report
        };
        let (report, approval_seq, plan_hash) = match &state {
            None => (
                unapproved(format!("no review of request {request_id} exists")),
                None,
                None,
            ),
            Some(state) => match state.approval() {
                None => (
                    unapproved(format!(
                        "the review was {} (ledger entry {}) and no override approved it",
                        state.outcome(),
                        state.decision_entry.seq
                    )),
                    None,
                    Some(state.decision.evaluation.plan_hash.clone()),
                ),
                Some(approval) => {
                    let executed = read.map_err(GateError::Execution)?;
                    if let Some(claims) = &token_id {
                        check_token_for(claims, &self.log, state, &approval)?;
                    }
                    if let Some(used) = state.used(approval.seq) {
                        return Err(GateError::Conflict {
                            code: "token-used",
                            detail: format!(
                                "the approval of request {request_id} (ledger entry {}) was \
                                 already used by the execution recorded in ledger entry {}; \
                                 an approval covers one execution",
                                approval.seq, used.seq
                            ),
                        });
                    }
                    let mut report = execution::compare(&state.plan()?, &executed);
                    let expires = parse_rfc3339(&approval.ts)
                        .map_err(internal)?
                        .saturating_add(self.config.token_ttl_nanos);
                    if now >= expires {
                        report.notes.push(format!(
                            "reported after the approval expired ({})",
                            format_utc_nanos(expires).unwrap_or_default()
                        ));
                    }
                    (
                        report,
                        Some(approval.seq),
                        Some(state.decision.evaluation.plan_hash.clone()),
                    )
                }
            },
        };
        let mut data = ExecutionData {
            request_id: request_id.to_owned(),
            plan_hash,
            approval_seq,
            token_id: token_id.map(|c| c.token_id),
            report,
        };
        let deviation = data.report.result == ExecutionResult::Deviation;
        let (outcome, severity) = if deviation {
            (EntryOutcome::Failure, Severity::Critical)
        } else {
            (EntryOutcome::Success, Severity::Info)
        };
        let body = |data: Map<String, Value>| -> EntryBody {
            let mut body = self.body(
                p,
                record::resource(request_id),
                (EVENT_EXECUTION, "verify", outcome, severity),
                data,
            );
            body.policy_decision = Some(if deviation { "deviation" } else { "matches" }.into());
            body
        };
        // What the ledger will hold: the report with secret-looking values redacted.
        let mut recorded = record::entry_data(&data).map_err(internal)?;
        let prepared = match self.ledger.prepare(body(recorded.clone())) {
            Ok(prepared) => prepared,
            Err(LedgerError::InvalidEntry { .. }) => {
                // Too large for one entry: keep the first findings of each kind and the counts.
                shrink(&mut data.report);
                recorded = record::entry_data(&data).map_err(internal)?;
                self.ledger.prepare(body(recorded.clone()))?
            }
            Err(e) => return Err(e.into()),
        };
        let receipt = self
            .ledger
            .append_prepared(vec![prepared])
            .await?
            .pop()
            .ok_or_else(|| internal("an append returned no receipt"))?;
        let recorded = ExecutionData::deserialize(Value::Object(recorded)).map_err(internal)?;
        Ok(ExecutionView {
            request_id: request_id.to_owned(),
            seq: receipt.seq,
            ts: receipt.ts,
            entry_severity: severity,
            approval_seq,
            report: recorded.report,
        })
    }

    /// Checks an approval token online: this log's signature, unexpired at now, the tenant,
    /// the binding asked for, and an approval on record at its seq; and says whether an
    /// execution already used it.
    pub fn verify_token(
        &self,
        tenant: &str,
        text: &str,
        request_id: Option<&str>,
        plan_hash: Option<&str>,
    ) -> Result<TokenCheck> {
        let refused = |reason: String, claims: Option<ApprovalClaims>| TokenCheck {
            valid: false,
            reason: Some(reason),
            claims,
            used: false,
        };
        let claims = match token::verify(text, &self.verifier, &self.log, (self.clock)()) {
            Ok(c) => c,
            Err(e) => return Ok(refused(e.to_string(), None)),
        };
        if claims.tenant != tenant {
            return Ok(refused("the token is not for this tenant".to_owned(), None));
        }
        if let Err(e) = token::check_binding(&claims, request_id, plan_hash) {
            return Ok(refused(e.to_string(), Some(claims)));
        }
        let state = self.state(tenant, &claims.request_id)?;
        let approval = state.as_ref().and_then(ReviewState::approval);
        let (Some(state), Some(approval)) = (state, approval) else {
            return Ok(refused(
                format!("no approval of request {} is on record", claims.request_id),
                Some(claims),
            ));
        };
        if let Err(e) = check_token_for(&claims, &self.log, &state, &approval) {
            return Ok(refused(e.to_string(), Some(claims)));
        }
        let used = state.used(approval.seq).is_some();
        Ok(TokenCheck {
            valid: true,
            reason: None,
            claims: Some(claims),
            used,
        })
    }

    /// Opens an override chain on a vetoed or escalated review (SPEC §4.5), recorded as
    /// `override_requested`. One chain at a time: another while one is pending, or after
    /// one was approved, is a conflict.
    pub async fn request_override(
        &self,
        p: &Principal,
        request_id: &str,
        input: OverrideInput,
    ) -> Result<OverrideView> {
        check_request_id(request_id)?;
        let _guard = self.locks.lock(&p.tenant, request_id).await;
        let now = (self.clock)();
        let state = self
            .state(&p.tenant, request_id)?
            .ok_or_else(|| not_found(request_id))?;
        state.admits_override(now)?;
        let facts = state.facts();
        let request = OverrideRequest {
            id: uuid::Uuid::now_v7().to_string(),
            review_request_id: request_id.to_owned(),
            plan_hash: facts.plan_hash.clone(),
            decision_seq: facts.decision_seq,
            requested_by: p.actor.clone(),
            justification: input.justification,
            business_impact: input.business_impact,
            alternatives_considered: input.alternatives_considered,
            risk_acceptance: input.risk_acceptance,
            requested_at: now,
        };
        let (chain, event) = OverrideChain::open(request, &facts, &self.config.overrides)?;
        let seqs = self.append_override(p, request_id, &[event]).await?;
        let record = record::OverrideRecord {
            chain,
            seqs: seqs.iter().map(|r| r.0).collect(),
            approval: None,
        };
        Ok(override_view(&record, now))
    }

    /// An approver's or the requester's step on override `override_id` of the review. Each
    /// step, and the outcome it brings about, is recorded; an approved override issues the
    /// approval token (see [`GateService::get`]). A chain found expired is recorded as such
    /// and the step refused.
    pub async fn override_step(
        &self,
        p: &Principal,
        request_id: &str,
        override_id: &str,
        step: OverrideStep,
    ) -> Result<OverrideView> {
        check_request_id(request_id)?;
        let _guard = self.locks.lock(&p.tenant, request_id).await;
        let now = (self.clock)();
        let state = self
            .state(&p.tenant, request_id)?
            .ok_or_else(|| not_found(request_id))?;
        let Some(found) = state
            .overrides
            .iter()
            .find(|o| o.chain.request().id == override_id)
        else {
            return Err(GateError::NotFound(format!(
                "review {request_id} has no override {override_id}"
            )));
        };
        let mut chain = found.chain.clone();
        let mut seqs = found.seqs.clone();
        if let Some(expired) = chain.expire(now) {
            seqs.extend(
                self.append_override(p, request_id, &[expired])
                    .await?
                    .iter()
                    .map(|r| r.0),
            );
            return Err(OverrideError::Expired {
                override_id: override_id.to_owned(),
                expires_at: format_utc_nanos(chain.expires_at()).unwrap_or_default(),
            }
            .into());
        }
        let action = match step {
            OverrideStep::Approve {
                plan_hash,
                comment,
                signature,
            } => OverrideAction::Approve {
                approver: p.actor.clone(),
                roles: p.roles.clone(),
                plan_hash,
                comment,
                signature,
                at: now,
            },
            OverrideStep::Deny { reason } => OverrideAction::Deny {
                approver: p.actor.clone(),
                roles: p.roles.clone(),
                reason,
                at: now,
            },
            OverrideStep::Withdraw { reason } => OverrideAction::Withdraw {
                by: p.actor.clone(),
                reason,
                at: now,
            },
        };
        let keys = self.approver_keys(&p.tenant, &p.actor)?;
        let transition = chain.apply(action, &keys)?;
        let appended = self
            .append_override(p, request_id, &transition.events)
            .await?;
        seqs.extend(appended.iter().map(|r| r.0));
        let approval = (transition.status == Status::Approved)
            .then(|| appended.last().cloned())
            .flatten()
            .map(|(seq, id, ts)| ApprovalAt {
                seq,
                id,
                ts,
                override_id: Some(override_id.to_owned()),
            });
        Ok(override_view(
            &record::OverrideRecord {
                chain,
                seqs,
                approval,
            },
            now,
        ))
    }

    /// Records override events in one batch; returns (seq, id, ts) of each.
    async fn append_override(
        &self,
        p: &Principal,
        request_id: &str,
        events: &[OverrideEvent],
    ) -> Result<Vec<(u64, String, String)>> {
        let mut bodies = Vec::with_capacity(events.len());
        for event in events {
            let e = event.ledger_event()?;
            let Value::Object(data) = e.data else {
                return Err(internal("an override record is not an object"));
            };
            let outcome = if e.outcome == "denied" {
                EntryOutcome::Denied
            } else {
                EntryOutcome::Success
            };
            let mut body = self.body(
                p,
                record::resource(request_id),
                (e.event_type, e.action, outcome, e.severity),
                data,
            );
            body.actor = e.actor;
            bodies.push(body);
        }
        let receipts = self.ledger.append_batch(bodies).await?;
        Ok(receipts.into_iter().map(|r| (r.seq, r.id, r.ts)).collect())
    }

    /// Registers the caller's Ed25519 public key (32 bytes, standard base64) under `key_id`
    /// for signing override digests. Registering the same key again changes nothing;
    /// another key under a registered id is a conflict. Returns the entry's seq, or `None`
    /// when it was already registered.
    pub async fn register_approver_key(
        &self,
        p: &Principal,
        key_id: &str,
        public_key: &str,
    ) -> Result<Option<u64>> {
        if !p.actor.starts_with("user:") {
            return Err(GateError::Forbidden(format!(
                "approver keys are for users; {} is not one",
                p.actor
            )));
        }
        if key_id.is_empty()
            || key_id.len() > 128
            || key_id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "key_id",
                "must be 1 to 128 bytes without whitespace or control characters",
            ));
        }
        use base64::Engine;
        let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("public_key", "must be 32 bytes in standard base64"))?;
        if custos_core::note::Verifier::from_public_key("approver", bytes).is_err() {
            return Err(invalid("public_key", "is not an Ed25519 public key"));
        }
        let _guard = self
            .locks
            .lock(&p.tenant, &format!("approver {}", p.actor))
            .await;
        if let Some(k) = self
            .approver_keys(&p.tenant, &p.actor)?
            .public_key(&p.actor, key_id)
        {
            if k == bytes {
                return Ok(None);
            }
            return Err(GateError::Conflict {
                code: "key-id-taken",
                detail: format!(
                    "{} already registered another key as `{key_id}`; register a new key under a new id",
                    p.actor
                ),
            });
        }
        let data = record::entry_data(&json!({
            "approver": p.actor,
            "key_id": key_id,
            "public_key": public_key,
        }))
        .map_err(internal)?;
        let body = self.body(
            p,
            format!("approver:{}", p.actor),
            (
                EVENT_APPROVER_KEY,
                "register",
                EntryOutcome::Success,
                Severity::Medium,
            ),
            data,
        );
        Ok(Some(self.ledger.append(body).await?.seq))
    }

    /// The Ed25519 keys `approver` registered in `tenant`.
    fn approver_keys(&self, tenant: &str, approver: &str) -> Result<RegisteredKeys> {
        use base64::Engine;
        let entries = self.ledger.query_all(EntryQuery {
            tenant: Some(tenant.to_owned()),
            event_type: Some(EVENT_APPROVER_KEY.to_owned()),
            actor: Some(approver.to_owned()),
            ..EntryQuery::default()
        })?;
        let mut keys = RegisteredKeys::new();
        for e in &entries {
            let field = |name: &str| e.data.get(name).and_then(Value::as_str);
            let key: Option<[u8; 32]> = field("public_key")
                .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
                .and_then(|b| b.try_into().ok());
            match (field("key_id"), key) {
                (Some(id), Some(key)) => keys.insert(approver, id, key),
                _ => {
                    return Err(RecordError {
                        seq: e.seq,
                        event_type: e.event_type.clone(),
                        problem: "no key_id, or a public_key that is not 32 bytes of base64"
                            .to_owned(),
                    }
                    .into());
                }
            }
        }
        Ok(keys)
    }
}

fn not_found(request_id: &str) -> GateError {
    GateError::NotFound(format!("no review of request {request_id} in this tenant"))
}

/// A token presented for `approval` of `state`: this log's, this tenant's, this request's and
/// plan's, and issued for this approval.
fn check_token_for(
    claims: &ApprovalClaims,
    log: &str,
    state: &ReviewState,
    approval: &ApprovalAt,
) -> Result<(), TokenError> {
    let expected = [
        ("origin", claims.origin.as_str(), log.to_owned()),
        (
            "tenant",
            claims.tenant.as_str(),
            state.decision_entry.tenant.clone(),
        ),
        (
            "request_id",
            claims.request_id.as_str(),
            state.decision.request_id.clone(),
        ),
        (
            "plan_hash",
            claims.plan_hash.as_str(),
            state.decision.evaluation.plan_hash.clone(),
        ),
        (
            "decision",
            &claims.decision_seq.to_string(),
            approval.seq.to_string(),
        ),
        ("id", claims.token_id.as_str(), approval.id.clone()),
    ];
    for (field, token, want) in expected {
        if token != want {
            return Err(TokenError::Mismatch {
                field,
                token: token.to_owned(),
                expected: want,
            });
        }
    }
    Ok(())
}

fn override_view(o: &record::OverrideRecord, now: i128) -> OverrideView {
    let c = &o.chain;
    let r = c.request();
    OverrideView {
        override_id: r.id.clone(),
        status: c.status_at(now).as_str().to_owned(),
        requested_by: r.requested_by.clone(),
        justification: r.justification.clone(),
        business_impact: r.business_impact.clone(),
        alternatives_considered: r.alternatives_considered.clone(),
        risk_acceptance: r.risk_acceptance.clone(),
        digest: c.digest().to_hex(),
        min_approvers: c.requirements().min_approvers,
        required_roles: c
            .requirements()
            .roles
            .keys()
            .map(|r| r.as_str().to_owned())
            .collect(),
        approvals: c
            .approvals()
            .iter()
            .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
            .collect(),
        denial: c
            .denial()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null)),
        expires_at: format_utc_nanos(c.expires_at()).unwrap_or_default(),
        seqs: o.seqs.clone(),
        approval_seq: o.approval.as_ref().map(|a| a.seq),
    }
}

/// Keeps the first findings of each kind, noting how many were left out.
fn shrink(report: &mut ExecutionReport) {
    let mut cut = 0;
    macro_rules! keep {
        ($list:expr) => {
            if $list.len() > RECORDED_FINDINGS {
                cut += $list.len() - RECORDED_FINDINGS;
                $list.truncate(RECORDED_FINDINGS);
            }
        };
    }
    keep!(report.extra);
    keep!(report.missing);
    keep!(report.failed);
    keep!(report.verb_mismatches);
    keep!(report.changed);
    keep!(report.notes);
    report.notes.push(format!(
        "{cut} findings and notes beyond the first {RECORDED_FINDINGS} of each kind are not \
         in this record (the entry would exceed the ledger's size limit)"
    ));
}
