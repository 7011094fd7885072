//! The override request and the review it overrides, with the field checks shared by the
//! approver actions.

use crate::decision::Outcome;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::OverrideError;
use crate::policy::{Approval, Violation};

/// Longest free text (justification, reasons, comments), in UTF-8 bytes. Four such texts in
/// one record stay well inside the ledger's 64 KiB entry limit even fully escaped.
pub const MAX_TEXT_BYTES: usize = 4000;

/// Longest id, principal, key id or plan hash, in UTF-8 bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The largest integer JSON carries exactly (RFC 8785 refuses larger ones).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A request to override a vetoed or escalated review (SPEC §4.5). Ids and times are
/// assigned by the caller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OverrideRequest {
    /// Unique id of this override (assigned by custos; `override_id` in records).
    #[serde(rename = "override_id")]
    pub id: String,
    /// The orchestrator's request id of the review being overridden.
    pub review_request_id: String,
    /// `sha256:<64 lowercase hex>` of the reviewed plan: the only plan the override covers.
    pub plan_hash: String,
    /// Ledger seq of the review's decision.
    pub decision_seq: u64,
    /// Who asks: `user:<id>`.
    pub requested_by: String,
    /// Why the override is needed.
    pub justification: String,
    /// What happens to the business without it.
    pub business_impact: String,
    /// What else was considered, and why not that.
    pub alternatives_considered: String,
    /// The risk the requester accepts.
    pub risk_acceptance: String,
    /// When it was requested (nanoseconds since the Unix epoch; RFC 3339 in records).
    #[serde(with = "super::events::rfc3339")]
    pub requested_at: i128,
}

impl OverrideRequest {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), OverrideError> {
        check_id("override_id", &self.id)?;
        check_id("review_request_id", &self.review_request_id)?;
        check_plan_hash("plan_hash", &self.plan_hash)?;
        if self.decision_seq > MAX_SAFE_INTEGER {
            return Err(invalid(
                "decision_seq",
                format!("must be at most {MAX_SAFE_INTEGER}"),
            ));
        }
        check_user("requested_by", &self.requested_by)?;
        check_text("justification", &self.justification, true)?;
        check_text("business_impact", &self.business_impact, true)?;
        check_text(
            "alternatives_considered",
            &self.alternatives_considered,
            true,
        )?;
        check_text("risk_acceptance", &self.risk_acceptance, true)?;
        check_time("requested_at", self.requested_at)
    }
}

/// What the override chain needs to know of the review it overrides (from its decision
/// record).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReviewFacts {
    /// The orchestrator's request id.
    pub request_id: String,
    /// `sha256:<hex>` of the reviewed plan.
    pub plan_hash: String,
    /// Ledger seq of the decision.
    pub decision_seq: u64,
    /// The decision.
    pub decision: Outcome,
    /// The review's violations.
    pub violations: Vec<Violation>,
    /// The review's `required_approvals`.
    pub required_approvals: BTreeSet<Approval>,
}

impl ReviewFacts {
    /// Whether `request` may override this review: it must be vetoed or escalated, and the
    /// request must name its request id, plan hash and decision seq.
    pub fn check_overridable(&self, request: &OverrideRequest) -> Result<(), OverrideError> {
        if self.decision == Outcome::Approved {
            return Err(OverrideError::NotOverridable {
                decision: self.decision,
            });
        }
        let mismatch = |field, request: String, review: String| {
            Err(OverrideError::ReviewMismatch {
                field,
                request,
                review,
            })
        };
        if request.review_request_id != self.request_id {
            return mismatch(
                "review_request_id",
                request.review_request_id.clone(),
                self.request_id.clone(),
            );
        }
        if request.plan_hash != self.plan_hash {
            return mismatch(
                "plan_hash",
                request.plan_hash.clone(),
                self.plan_hash.clone(),
            );
        }
        if request.decision_seq != self.decision_seq {
            return mismatch(
                "decision_seq",
                request.decision_seq.to_string(),
                self.decision_seq.to_string(),
            );
        }
        Ok(())
    }
}

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> OverrideError {
    OverrideError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// An id: non-blank, at most [`MAX_ID_BYTES`], no control character.
pub(super) fn check_id(field: &'static str, value: &str) -> Result<(), OverrideError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "is required"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(invalid(
            field,
            format!("is longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains a control character"));
    }
    Ok(())
}

/// A user principal: `user:<id>`, the id non-empty, without whitespace or control characters.
pub(super) fn check_user(field: &'static str, value: &str) -> Result<(), OverrideError> {
    check_id(field, value)?;
    match value.strip_prefix("user:") {
        Some(id) if !id.is_empty() && !id.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(invalid(
            field,
            format!("must be a user principal `user:<id>` (without spaces), not `{value}`"),
        )),
    }
}

/// `sha256:` followed by 64 lowercase hex digits.
pub(super) fn check_plan_hash(field: &'static str, value: &str) -> Result<(), OverrideError> {
    let ok = value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be `sha256:` followed by 64 lowercase hex digits",
        ))
    }
}

/// Free text: at most [`MAX_TEXT_BYTES`], no control character except newline and tab;
/// when `required`, not blank.
pub(super) fn check_text(
    field: &'static str,
    value: &str,
    required: bool,
) -> Result<(), OverrideError> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "is required (a non-blank text)"));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(
            field,
            format!(
                "is {} bytes long; at most {MAX_TEXT_BYTES} are allowed",
                value.len()
            ),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(
            field,
            "contains a control character (only newline and tab are allowed)",
        ));
    }
    Ok(())
}

/// A time RFC 3339 can express (years 0000–9999).
pub(super) fn check_time(field: &'static str, nanos: i128) -> Result<(), OverrideError> {
    if custos_core::time::format_utc_nanos(nanos).is_some() {
        Ok(())
    } else {
        Err(invalid(field, "is outside the years 0000–9999"))
    }
}
