//! A review as the ledger holds it: the entries the service writes, and the fold that reads
//! them back into the review's state. The ledger is the record; this state is computed from
//! it on every read, so every node sharing a ledger sees the same review.
//!
//! Every entry of a review has `resource` = `review:<request_id>` in the review's tenant:
//!
//! | `event_type` | what | written |
//! | --- | --- | --- |
//! | `review_plan` | one part of the normalised plan (its `actions`, ≤ 40 KiB a part) | with the decision, same atomic batch, before it |
//! | `review_decision` | the decision: [`Evaluation`], request id, user request, metadata, plan head | once per request id |
//! | `execution_verification` | one execution report and its comparison with the approved plan | per report |
//! | `override_*` | the override chain's records ([`crate::overrides::OverrideEvent`]) | per step |
//! | `review_refused` | a review refused before evaluation (a suspended agent) | per refusal |

use std::collections::BTreeMap;

use custos_core::entry::Entry;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{GateError, ReviewStatus};
use crate::decision::Outcome;
use crate::execution::ExecutionReport;
use crate::overrides::{self, OverrideChain, OverrideEvent, ReviewFacts, Status};
use crate::plan::{NormalizedPlan, PlannedAction};
use crate::policy::Approval;
use crate::request::Metadata;
use crate::review::Evaluation;

/// A part of the normalised plan.
pub const EVENT_PLAN: &str = "review_plan";
/// The decision.
pub const EVENT_DECISION: &str = "review_decision";
/// An execution report and its verification.
pub const EVENT_EXECUTION: &str = "execution_verification";
/// A review refused before evaluation.
pub const EVENT_REFUSED: &str = "review_refused";
/// An approver's Ed25519 public key, registered for signing override digests.
pub const EVENT_APPROVER_KEY: &str = "approver_key_registered";

/// Event types only the gate writes: a client appending one through the entries API could
/// forge a decision, an approval or a used token.
pub const RESERVED_EVENT_TYPES: [&str; 12] = [
    EVENT_PLAN,
    EVENT_DECISION,
    EVENT_EXECUTION,
    EVENT_REFUSED,
    EVENT_APPROVER_KEY,
    overrides::EVENT_REQUESTED,
    overrides::EVENT_APPROVAL,
    overrides::EVENT_DENIAL,
    overrides::EVENT_WITHDRAWN,
    overrides::EVENT_APPROVED,
    overrides::EVENT_DENIED,
    overrides::EVENT_EXPIRED,
];

/// Largest serialized `actions` of one `review_plan` entry; with the rest of the entry it
/// stays well inside the ledger's 64 KiB entry limit.
pub const PART_BYTES: usize = 40 * 1024;

/// The `resource` of every entry of the review of `request_id`.
pub fn resource(request_id: &str) -> String {
    format!("review:{request_id}")
}

/// `data` of a `review_plan` entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlanPart {
    /// The review.
    pub request_id: String,
    /// The plan's hash.
    pub plan_hash: String,
    /// This part's position, from 0.
    pub part: u32,
    /// How many parts.
    pub parts: u32,
    /// The normalised actions of this part, in plan order.
    pub actions: Vec<PlannedAction>,
}

/// `data` of a `review_decision` entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DecisionData {
    /// The orchestrator's request id.
    pub request_id: String,
    /// What the review found.
    #[serde(flatten)]
    pub evaluation: Evaluation,
    /// The user's words.
    pub user_request: String,
    /// The request's metadata, as sent (secret-looking fields redacted by the ledger).
    pub metadata: Metadata,
    /// The orchestrating agent, when its key is bound to one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    /// The normalised plan without its actions (format, cost, regions, notes).
    pub plan: Value,
    /// How many `review_plan` entries hold the actions.
    pub plan_parts: u32,
}

/// `data` of an `execution_verification` entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExecutionData {
    /// The review.
    pub request_id: String,
    /// The hash of the reviewed plan, when there is a review.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plan_hash: Option<String>,
    /// Seq of the approval this execution used (the approving decision or override), if the
    /// review was approved.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub approval_seq: Option<u64>,
    /// The approval token presented with the report, by id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_id: Option<String>,
    /// The verification.
    pub report: ExecutionReport,
}

/// The signed decision: what `review_decision` recorded plus where and when. Its RFC 8785
/// form is what the log key signs (see [`crate::service::signature`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DecisionRecord {
    /// The log (the origin of its checkpoints and tokens).
    pub log: String,
    /// The tenant.
    pub tenant: String,
    /// The orchestrator's request id.
    pub request_id: String,
    /// Ledger seq of the decision entry.
    pub seq: u64,
    /// Its sequencing time.
    pub ts: String,
    /// Who asked for the review.
    pub actor: String,
    /// What the review found.
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// Where an approval was recorded: the approving decision, or an approved override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalAt {
    /// Its seq (the token's `decision`).
    pub seq: u64,
    /// Its entry id (the token's id).
    pub id: String,
    /// Its sequencing time (the token's `issued`).
    pub ts: String,
    /// The override that granted it, if one did.
    pub override_id: Option<String>,
}

/// One recorded execution report.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ExecutionRecord {
    /// Ledger seq of the report.
    pub seq: u64,
    /// When it was recorded.
    pub ts: String,
    /// Who reported it.
    pub actor: String,
    /// What was recorded.
    #[serde(flatten)]
    pub data: ExecutionData,
}

/// One override chain of the review and where it was recorded.
#[derive(Clone, Debug)]
pub struct OverrideRecord {
    /// The chain, rebuilt.
    pub chain: OverrideChain,
    /// Seqs of its records, in order.
    pub seqs: Vec<u64>,
    /// The approval, if the chain was approved.
    pub approval: Option<ApprovalAt>,
}

/// An override chain's records while folding: id, records, seqs, approval.
type Chain = (String, Vec<OverrideEvent>, Vec<u64>, Option<ApprovalAt>);

/// A review, folded from its entries.
#[derive(Clone, Debug)]
pub struct ReviewState {
    /// The decision entry.
    pub decision_entry: Entry,
    /// Its data.
    pub decision: DecisionData,
    /// The plan parts' `actions` arrays, by part number, as recorded: read only by
    /// [`ReviewState::plan`] (an execution report), not on every fold.
    parts: BTreeMap<u64, Value>,
    /// Execution reports, in order.
    pub executions: Vec<ExecutionRecord>,
    /// Override chains, in order of request.
    pub overrides: Vec<OverrideRecord>,
}

/// A ledger record of the review that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {seq} ({event_type}) of the review cannot be read: {problem}")]
pub struct RecordError {
    /// The entry.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// What is wrong.
    pub problem: String,
}

/// An entry's `data` as `T`; the entry is consumed (its data moves, nothing is copied).
fn read<T: serde::de::DeserializeOwned>(e: &Entry) -> Result<T, RecordError> {
    T::deserialize(&e.data).map_err(|err| RecordError {
        seq: e.seq,
        event_type: e.event_type.clone(),
        problem: err.to_string(),
    })
}

impl ReviewState {
    /// Folds the entries of one review (those with its `resource`, in seq order). `None`
    /// when there is no decision: entries without one are only refusals or reports of an
    /// unknown request. [`ReviewState::plan`] needs the `review_plan` entries too; a state
    /// folded from the decision alone (as the service answers a decision it just recorded)
    /// has everything else.
    pub fn fold(entries: Vec<Entry>) -> Result<Option<Self>, RecordError> {
        let Some(first) = entries.iter().find(|e| e.event_type == EVENT_DECISION) else {
            return Ok(None);
        };
        let decision_entry = first.clone();
        let first_seq = first.seq;
        let mut state = ReviewState {
            decision: read(&decision_entry)?,
            decision_entry,
            parts: BTreeMap::new(),
            executions: Vec::new(),
            overrides: Vec::new(),
        };
        let mut chains: Vec<Chain> = Vec::new();
        for mut e in entries {
            match e.event_type.as_str() {
                // Parts are written in the decision's batch, just before it. A later decision
                // for the same request id (two nodes deciding at once) is not the review: the
                // first one is.
                EVENT_PLAN if e.seq < first_seq => {
                    let ours = e.data.get("plan_hash").and_then(Value::as_str)
                        == Some(state.decision.evaluation.plan_hash.as_str());
                    let part = e.data.get("part").and_then(Value::as_u64);
                    match (ours, part, e.data.remove("actions")) {
                        (false, ..) => {}
                        (true, Some(part), Some(actions)) => {
                            state.parts.insert(part, actions);
                        }
                        _ => {
                            return Err(RecordError {
                                seq: e.seq,
                                event_type: e.event_type,
                                problem: "a plan part without `part` or `actions`".to_owned(),
                            });
                        }
                    }
                }
                EVENT_EXECUTION => state.executions.push(ExecutionRecord {
                    seq: e.seq,
                    ts: e.ts.clone(),
                    actor: e.actor.clone(),
                    data: read(&e)?,
                }),
                t if t.starts_with("override_") => {
                    let event =
                        OverrideEvent::from_ledger(t, &Value::Object(e.data)).map_err(|err| {
                            RecordError {
                                seq: e.seq,
                                event_type: e.event_type.clone(),
                                problem: err.to_string(),
                            }
                        })?;
                    let id = event.override_id().to_owned();
                    let approval =
                        matches!(event, OverrideEvent::Approved(_)).then(|| ApprovalAt {
                            seq: e.seq,
                            id: e.id.clone(),
                            ts: e.ts.clone(),
                            override_id: Some(id.clone()),
                        });
                    match chains.iter_mut().find(|(cid, ..)| *cid == id) {
                        Some((_, events, seqs, approved)) => {
                            events.push(event);
                            seqs.push(e.seq);
                            if approval.is_some() {
                                *approved = approval;
                            }
                        }
                        None => chains.push((id, vec![event], vec![e.seq], approval)),
                    }
                }
                _ => {}
            }
        }
        for (id, events, seqs, approval) in chains {
            let chain = OverrideChain::rebuild(&events).map_err(|err| RecordError {
                seq: seqs.first().copied().unwrap_or_default(),
                event_type: format!("override {id}"),
                problem: err.to_string(),
            })?;
            state.overrides.push(OverrideRecord {
                chain,
                seqs,
                approval,
            });
        }
        Ok(Some(state))
    }

    /// The decision.
    pub fn outcome(&self) -> Outcome {
        self.decision.evaluation.decision
    }

    /// The approval the plan may run under: the approving decision, or the first approved
    /// override of a vetoed or escalated one.
    pub fn approval(&self) -> Option<ApprovalAt> {
        if self.outcome() == Outcome::Approved {
            return Some(ApprovalAt {
                seq: self.decision_entry.seq,
                id: self.decision_entry.id.clone(),
                ts: self.decision_entry.ts.clone(),
                override_id: None,
            });
        }
        self.overrides.iter().find_map(|o| o.approval.clone())
    }

    /// The execution report that used the approval at `seq`, if one did.
    pub fn used(&self, seq: u64) -> Option<&ExecutionRecord> {
        self.executions
            .iter()
            .find(|x| x.data.approval_seq == Some(seq))
    }

    /// What the review is now: executed once an execution used its approval, overridden once
    /// an override approved it, else its decision.
    pub fn status(&self) -> ReviewStatus {
        match self.approval() {
            Some(a) if self.used(a.seq).is_some() => ReviewStatus::Executed,
            Some(a) if a.override_id.is_some() => ReviewStatus::Overridden,
            _ => match self.outcome() {
                Outcome::Approved => ReviewStatus::Approved,
                Outcome::Vetoed => ReviewStatus::Vetoed,
                Outcome::Escalated => ReviewStatus::Escalated,
            },
        }
    }

    /// Whether a new override may be requested at `now`: one chain at a time (none pending),
    /// never after a denial (a denial blocks for good), and not once the review is approved.
    pub fn admits_override(&self, now: i128) -> Result<(), GateError> {
        let conflict = |code, detail| Err(GateError::Conflict { code, detail });
        for o in &self.overrides {
            let id = &o.chain.request().id;
            match o.chain.status_at(now) {
                Status::Pending => {
                    return conflict(
                        "override-pending",
                        format!("override {id} of this review is still pending"),
                    );
                }
                Status::Denied => {
                    return conflict(
                        "override-denied",
                        format!(
                            "override {id} of this review was denied, and a denial blocks for \
                             good; submit a new plan under a new request id"
                        ),
                    );
                }
                _ => {}
            }
        }
        match self.approval() {
            Some(a) => conflict(
                "already-approved",
                format!(
                    "the review is already approved (ledger entry {}); there is nothing to \
                     override",
                    a.seq
                ),
            ),
            None => Ok(()),
        }
    }

    /// What an override chain needs to know of this review.
    pub fn facts(&self) -> ReviewFacts {
        let evaluation = &self.decision.evaluation;
        ReviewFacts {
            request_id: self.decision.request_id.clone(),
            plan_hash: evaluation.plan_hash.clone(),
            decision_seq: self.decision_entry.seq,
            decision: evaluation.decision,
            violations: evaluation.violations.clone(),
            required_approvals: evaluation
                .required_approvals
                .iter()
                .filter_map(|a| Approval::parse(a))
                .collect(),
        }
    }

    /// The normalised plan as recorded (secret-looking attributes redacted by the ledger).
    pub fn plan(&self) -> Result<NormalizedPlan, RecordError> {
        let bad = |problem: String| RecordError {
            seq: self.decision_entry.seq,
            event_type: EVENT_DECISION.to_owned(),
            problem,
        };
        let parts = u64::from(self.decision.plan_parts);
        if self.parts.len() as u64 != parts || self.parts.keys().any(|&k| k >= parts) {
            return Err(bad(format!(
                "the decision names {parts} plan parts; the ledger holds {:?}",
                self.parts.keys().collect::<Vec<_>>()
            )));
        }
        let mut plan = match &self.decision.plan {
            Value::Object(head) => head.clone(),
            _ => return Err(bad("`plan` is not an object".to_owned())),
        };
        let mut actions = Vec::new();
        for part in self.parts.values() {
            match part {
                Value::Array(items) => actions.extend(items.iter().cloned()),
                _ => return Err(bad("a plan part's `actions` is not an array".to_owned())),
            }
        }
        plan.insert("actions".to_owned(), Value::Array(actions));
        NormalizedPlan::deserialize(Value::Object(plan)).map_err(|e| bad(e.to_string()))
    }

    /// The signed decision.
    pub fn record(&self, log: &str) -> DecisionRecord {
        DecisionRecord {
            log: log.to_owned(),
            tenant: self.decision_entry.tenant.clone(),
            request_id: self.decision.request_id.clone(),
            seq: self.decision_entry.seq,
            ts: self.decision_entry.ts.clone(),
            actor: self.decision_entry.actor.clone(),
            evaluation: self.decision.evaluation.clone(),
        }
    }
}

/// Splits the normalised plan into the decision's plan head and the `review_plan` parts.
/// Fails only if the plan cannot be serialized, or one action alone is larger than a part.
pub fn split_plan(
    request_id: &str,
    plan_hash: &str,
    plan: &NormalizedPlan,
) -> Result<(Value, Vec<PlanPart>), String> {
    let mut head = match serde_json::to_value(plan) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("a normalised plan is not an object".to_owned()),
        Err(e) => return Err(e.to_string()),
    };
    head.remove("actions");
    let mut parts: Vec<Vec<PlannedAction>> = Vec::new();
    let mut current: Vec<PlannedAction> = Vec::new();
    let mut size = 0;
    for action in &plan.actions {
        let bytes = serde_json::to_vec(action).map_err(|e| e.to_string())?.len() + 1;
        if bytes > PART_BYTES {
            return Err(format!(
                "action {} is {bytes} bytes normalised, more than one ledger entry holds \
                 ({PART_BYTES})",
                action.address
            ));
        }
        if size + bytes > PART_BYTES && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            size = 0;
        }
        size += bytes;
        current.push(action.clone());
    }
    // An empty plan still has one (empty) part, so the decision always names its parts.
    parts.push(current);
    let count = u32::try_from(parts.len()).map_err(|_| "too many plan parts".to_owned())?;
    let parts = parts
        .into_iter()
        .enumerate()
        .map(|(i, actions)| PlanPart {
            request_id: request_id.to_owned(),
            plan_hash: plan_hash.to_owned(),
            part: i as u32,
            parts: count,
            actions,
        })
        .collect();
    Ok((Value::Object(head), parts))
}

/// `data` as a JSON object, redacted the way the ledger will redact it — so what the service
/// answers is exactly what the ledger holds.
pub fn entry_data<T: Serialize>(value: &T) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(mut m)) => {
            custos_core::entry::redact(&mut m);
            Ok(m)
        }
        Ok(_) => Err("entry data is not an object".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
