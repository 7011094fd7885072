//! The ledger records of an override chain: one per step, each with its event type, action,
//! actor, outcome, severity and `data`. The chain is rebuilt from them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApprovalRequirements, Outcome, OverrideDigest, OverrideError, OverrideRequest, Role};
use crate::policy::Severity;

/// `override_requested`: an override request was opened.
pub const EVENT_REQUESTED: &str = "override_requested";
/// `override_approval`: one approver approved.
pub const EVENT_APPROVAL: &str = "override_approval";
/// `override_denial`: one approver denied.
pub const EVENT_DENIAL: &str = "override_denial";
/// `override_withdrawn`: the requester withdrew the request.
pub const EVENT_WITHDRAWN: &str = "override_withdrawn";
/// `override_approved`: the override is granted (the SPEC §3.1 well-known name).
pub const EVENT_APPROVED: &str = "override_approved";
/// `override_denied`: the override is refused.
pub const EVENT_DENIED: &str = "override_denied";
/// `override_expired`: the request ran out of time.
pub const EVENT_EXPIRED: &str = "override_expired";

/// `data` of `override_requested`: the request's fields (flattened; `override_id` for its id),
/// the review's decision, the digest, the requirements and the expiry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OverrideRequested {
    /// The request.
    #[serde(flatten)]
    pub request: OverrideRequest,
    /// The decision of the review it overrides.
    pub review_decision: Outcome,
    /// The override digest (hex).
    pub digest: OverrideDigest,
    /// What it needs, fixed when it was requested.
    pub requirements: ApprovalRequirements,
    /// When it expires if still pending.
    #[serde(with = "rfc3339")]
    pub expires_at: i128,
}

/// A signature as recorded: with the public key it verified against, so an auditor can check
/// it again from the record alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecordedSignature {
    /// The approver's key id.
    pub key_id: String,
    /// The registered Ed25519 public key (standard base64).
    pub public_key: String,
    /// The signature (standard base64).
    pub ed25519: String,
}

/// `data` of `override_approval`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApprovalGiven {
    /// The override.
    pub override_id: String,
    /// The review it overrides.
    pub review_request_id: String,
    /// Who approved (`user:<id>`).
    pub approver: String,
    /// The approver's roles that custos knows.
    pub roles: BTreeSet<Role>,
    /// The plan hash approved (that of the request).
    pub plan_hash: String,
    /// The approver's comment (may be empty).
    pub comment: String,
    /// The approver's signature over the digest, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<RecordedSignature>,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: i128,
}

/// `data` of `override_denial`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DenialGiven {
    /// The override.
    pub override_id: String,
    /// The review it overrides.
    pub review_request_id: String,
    /// Who denied (`user:<id>`).
    pub approver: String,
    /// The approver's roles that custos knows.
    pub roles: BTreeSet<Role>,
    /// Why.
    pub reason: String,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: i128,
}

/// `data` of `override_withdrawn`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OverrideWithdrawn {
    /// The override.
    pub override_id: String,
    /// The review it overrides.
    pub review_request_id: String,
    /// The requester.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: i128,
}

/// One approver of a granted override, as listed in `override_approved`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GrantingApprover {
    /// Who (`user:<id>`).
    pub approver: String,
    /// Their roles that custos knows.
    pub roles: BTreeSet<Role>,
    /// Their signature, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<RecordedSignature>,
}

/// `data` of `override_approved`: the final override, with every approver and signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OverrideApproved {
    /// The override.
    pub override_id: String,
    /// The review it overrides.
    pub review_request_id: String,
    /// The only plan it covers.
    pub plan_hash: String,
    /// Ledger seq of the overridden decision.
    pub decision_seq: u64,
    /// That decision.
    pub review_decision: Outcome,
    /// The override digest (hex).
    pub digest: OverrideDigest,
    /// Every approver, in order of approval.
    pub approvers: Vec<GrantingApprover>,
    /// When (the last approval's time).
    #[serde(with = "rfc3339")]
    pub at: i128,
}

/// `data` of `override_denied`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OverrideDenied {
    /// The override.
    pub override_id: String,
    /// The review it overrides.
    pub review_request_id: String,
    /// Who denied.
    pub denied_by: String,
    /// Their reason.
    pub reason: String,
    /// When (the denial's time).
    #[serde(with = "rfc3339")]
    pub at: i128,
}

/// `data` of `override_expired`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OverrideExpired {
    /// The override.
    pub override_id: String,
    /// The review it overrides.
    pub review_request_id: String,
    /// When it expired.
    #[serde(with = "rfc3339")]
    pub expires_at: i128,
    /// Who had approved by then.
    pub approvers: Vec<String>,
    /// When the expiry was recorded.
    #[serde(with = "rfc3339")]
    pub at: i128,
}

/// One step of an override chain, as the ledger records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverrideEvent {
    /// `override_requested`.
    Requested(OverrideRequested),
    /// `override_approval`.
    Approval(ApprovalGiven),
    /// `override_denial`.
    Denial(DenialGiven),
    /// `override_withdrawn`.
    Withdrawn(OverrideWithdrawn),
    /// `override_approved`.
    Approved(OverrideApproved),
    /// `override_denied`.
    Denied(OverrideDenied),
    /// `override_expired`.
    Expired(OverrideExpired),
}

/// The ledger fields of one override record; the service adds tenant, ids and times.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerEvent {
    /// `event_type`.
    pub event_type: &'static str,
    /// `action`.
    pub action: &'static str,
    /// `actor`: the requester or approver, `system` for outcomes.
    pub actor: String,
    /// `outcome`: `denied` for a denial, else `success`.
    pub outcome: &'static str,
    /// `severity`.
    pub severity: Severity,
    /// `data`: the record's JSON object.
    pub data: Value,
}

impl OverrideEvent {
    /// The ledger `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            OverrideEvent::Requested(_) => EVENT_REQUESTED,
            OverrideEvent::Approval(_) => EVENT_APPROVAL,
            OverrideEvent::Denial(_) => EVENT_DENIAL,
            OverrideEvent::Withdrawn(_) => EVENT_WITHDRAWN,
            OverrideEvent::Approved(_) => EVENT_APPROVED,
            OverrideEvent::Denied(_) => EVENT_DENIED,
            OverrideEvent::Expired(_) => EVENT_EXPIRED,
        }
    }

    /// The override the record belongs to.
    pub fn override_id(&self) -> &str {
        match self {
            OverrideEvent::Requested(r) => &r.request.id,
            OverrideEvent::Approval(r) => &r.override_id,
            OverrideEvent::Denial(r) => &r.override_id,
            OverrideEvent::Withdrawn(r) => &r.override_id,
            OverrideEvent::Approved(r) => &r.override_id,
            OverrideEvent::Denied(r) => &r.override_id,
            OverrideEvent::Expired(r) => &r.override_id,
        }
    }

    /// The ledger entry fields of this record:
    ///
    /// | record | `event_type` | `action` | `actor` | `outcome` | `severity` |
    /// | --- | --- | --- | --- | --- | --- |
    /// | [`OverrideRequested`] | `override_requested` | `request` | requester | `success` | `high` |
    /// | [`ApprovalGiven`] | `override_approval` | `approve` | approver | `success` | `medium` |
    /// | [`DenialGiven`] | `override_denial` | `deny` | approver | `denied` | `medium` |
    /// | [`OverrideWithdrawn`] | `override_withdrawn` | `withdraw` | requester | `success` | `low` |
    /// | [`OverrideApproved`] | `override_approved` | `allow` | `system` | `success` | `critical` over a veto, `high` over an escalation |
    /// | [`OverrideDenied`] | `override_denied` | `deny` | `system` | `denied` | `medium` |
    /// | [`OverrideExpired`] | `override_expired` | `expire` | `system` | `success` | `low` |
    ///
    /// `data` is the record's JSON form (times in RFC 3339 UTC with nanoseconds). Fails only
    /// for a time outside the years 0000–9999, which the chain never produces.
    pub fn ledger_event(&self) -> Result<LedgerEvent, OverrideError> {
        let encode = |value: Result<Value, serde_json::Error>| {
            value.map_err(|e| OverrideError::Encoding(e.to_string()))
        };
        let system = || "system".to_owned();
        let (action, actor, outcome, severity, data) = match self {
            OverrideEvent::Requested(r) => (
                "request",
                r.request.requested_by.clone(),
                "success",
                Severity::High,
                encode(serde_json::to_value(r))?,
            ),
            OverrideEvent::Approval(r) => (
                "approve",
                r.approver.clone(),
                "success",
                Severity::Medium,
                encode(serde_json::to_value(r))?,
            ),
            OverrideEvent::Denial(r) => (
                "deny",
                r.approver.clone(),
                "denied",
                Severity::Medium,
                encode(serde_json::to_value(r))?,
            ),
            OverrideEvent::Withdrawn(r) => (
                "withdraw",
                r.by.clone(),
                "success",
                Severity::Low,
                encode(serde_json::to_value(r))?,
            ),
            OverrideEvent::Approved(r) => (
                "allow",
                system(),
                "success",
                match r.review_decision {
                    Outcome::Vetoed => Severity::Critical,
                    Outcome::Escalated | Outcome::Approved => Severity::High,
                },
                encode(serde_json::to_value(r))?,
            ),
            OverrideEvent::Denied(r) => (
                "deny",
                system(),
                "denied",
                Severity::Medium,
                encode(serde_json::to_value(r))?,
            ),
            OverrideEvent::Expired(r) => (
                "expire",
                system(),
                "success",
                Severity::Low,
                encode(serde_json::to_value(r))?,
            ),
        };
        Ok(LedgerEvent {
            event_type: self.event_type(),
            action,
            actor,
            outcome,
            severity,
            data,
        })
    }

    /// Reads a record back from a ledger entry's `event_type` and `data` (unknown fields are
    /// ignored).
    pub fn from_ledger(event_type: &str, data: &Value) -> Result<Self, OverrideError> {
        fn read<T: serde::de::DeserializeOwned>(
            event_type: &str,
            data: &Value,
        ) -> Result<T, OverrideError> {
            T::deserialize(data)
                .map_err(|e| OverrideError::Encoding(format!("{event_type} data: {e}")))
        }
        Ok(match event_type {
            EVENT_REQUESTED => OverrideEvent::Requested(read(event_type, data)?),
            EVENT_APPROVAL => OverrideEvent::Approval(read(event_type, data)?),
            EVENT_DENIAL => OverrideEvent::Denial(read(event_type, data)?),
            EVENT_WITHDRAWN => OverrideEvent::Withdrawn(read(event_type, data)?),
            EVENT_APPROVED => OverrideEvent::Approved(read(event_type, data)?),
            EVENT_DENIED => OverrideEvent::Denied(read(event_type, data)?),
            EVENT_EXPIRED => OverrideEvent::Expired(read(event_type, data)?),
            other => return Err(OverrideError::UnknownEvent(other.to_owned())),
        })
    }
}

/// Serde for times carried as nanoseconds since the Unix epoch: RFC 3339 UTC with nine
/// fraction digits on the wire.
pub(super) mod rfc3339 {
    use custos_core::time::{format_utc_nanos, parse_rfc3339};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(nanos: &i128, serializer: S) -> Result<S::Ok, S::Error> {
        match format_utc_nanos(*nanos) {
            Some(text) => serializer.serialize_str(&text),
            None => Err(serde::ser::Error::custom(format!(
                "time {nanos} ns is outside the years 0000–9999"
            ))),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<i128, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}
