//! Human override of a vetoed or escalated review (SPEC §4.5), as pure logic: the override
//! request and its validation, the approvals it needs, the override digest approvers sign,
//! the approval chain as a state machine, and the ledger records every step becomes.
//!
//! Nothing here does I/O, reads a clock or draws randomness: ids and times (nanoseconds
//! since the Unix epoch) are passed in, and registered approver keys are looked up through
//! [`ApproverKeys`]. The service around it appends each [`OverrideEvent`] to the ledger, and
//! [`OverrideChain::rebuild`] turns those records back into the chain (the projection).
//!
//! # Flow
//! 1. [`OverrideChain::open`] takes an [`OverrideRequest`] (justification, business impact,
//!    alternatives considered, risk acceptance — each required, non-blank, at most
//!    [`MAX_TEXT_BYTES`], no control character but newline and tab), the [`ReviewFacts`] of
//!    the review it overrides (only `vetoed` or `escalated`; its request id, plan hash and
//!    decision seq must match) and the [`OverrideConfig`]; it derives the
//!    [`ApprovalRequirements`] and the [`OverrideDigest`], and returns the chain with its
//!    `override_requested` record.
//! 2. [`OverrideChain::apply`] takes one [`OverrideAction`] (approve, deny, withdraw) and
//!    returns the new [`Status`] and the records to append, or an [`OverrideError`] — in which
//!    case the chain is unchanged and nothing is to be appended.
//! 3. [`OverrideChain::expire`] records the expiry of a chain still pending at its
//!    `expires_at` (default 24 h after the request); [`OverrideChain::status_at`] reads the
//!    status at a given time without recording anything.
//!
//! # Who may approve
//! - Approvers (and deniers) are users: the principal is `user:<id>`, compared exactly.
//! - An approver must hold at least one of the roles custos knows — `admin`, `security`,
//!   `finance`, `manager` ([`Role`]); other role names are ignored (and not recorded).
//! - Separation of duties: the requester can neither approve nor deny their own request; they
//!   may withdraw it ([`OverrideAction::Withdraw`], requester only).
//! - Each approver counts once (a second approval is refused); an approver who approved may
//!   still deny later, which blocks.
//! - An approval names the plan hash it approves; one for any other plan is refused, so an
//!   approval cannot be carried over to another plan.
//! - A signature, when given, must verify with the key registered for that approver and key
//!   id, or the approval is refused; with `require_signatures` an unsigned approval is
//!   refused too.
//!
//! # When it is decided
//! - Any denial: `denied`, final.
//! - `approved` once the distinct approvers number at least `min_approvers` (default 2) and
//!   every required role is held by at least one of them (one approver may cover several).
//! - `expired`: still pending at `expires_at`; actions from then on are refused.
//! - `withdrawn`: the requester withdrew it.
//!
//! Decided chains refuse every further action. The role rules are in
//! [`ApprovalRequirements::derive`].
//!
//! # Override digest
//! SHA-256 over the RFC 8785 (JCS) bytes of
//! `{"custos_override": 1, "override_id", "review_request_id", "plan_hash", "decision_seq",
//! "justification", "business_impact", "alternatives_considered", "risk_acceptance",
//! "requested_by"}` (see [`OverrideDigest::preimage`]). Approvers sign, with Ed25519, the ASCII
//! bytes of `custos-override-v1:<64 lowercase hex digits of the digest>:<approver>`
//! ([`OverrideDigest::signing_message`]): the prefix keeps a signature over an override from
//! passing for a signature over any other 32-byte hash made with the same key, and the
//! approver's principal keeps one approver's signature from being replayed as another's.
//!
//! # Ledger records
//! See [`OverrideEvent`] and [`OverrideEvent::ledger_event`] for event types, actions,
//! actors, severities and data shapes.

mod chain;
mod digest;
mod events;
mod request;
mod requirements;

use serde::{Deserialize, Serialize};

pub use chain::{Outstanding, OverrideAction, OverrideChain, Transition};
pub use digest::{
    ApproverKeys, ApproverSignature, OverrideDigest, RegisteredKeys, SIGNING_PREFIX,
    SignatureError, sign_digest, verify_approver_signature,
};
pub use events::{
    ApprovalGiven, DenialGiven, EVENT_APPROVAL, EVENT_APPROVED, EVENT_DENIAL, EVENT_DENIED,
    EVENT_EXPIRED, EVENT_REQUESTED, EVENT_WITHDRAWN, GrantingApprover, LedgerEvent,
    OverrideApproved, OverrideDenied, OverrideEvent, OverrideExpired, OverrideRequested,
    OverrideWithdrawn, RecordedSignature,
};
pub use request::{MAX_ID_BYTES, MAX_TEXT_BYTES, OverrideRequest, ReviewFacts};

use crate::decision::Outcome;
pub use requirements::{
    ApprovalRequirements, BUILTIN_POLICY_ROLES, DEFAULT_MIN_APPROVERS, DEFAULT_TTL_SECONDS,
    MAX_MIN_APPROVERS, MAX_TTL_SECONDS, OverrideConfig, approval_roles,
};

/// A role that lets a user approve or deny overrides.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Platform administrator: counts as an approver; covers no specific requirement.
    Admin,
    /// Security officer: needed for security violations.
    Security,
    /// Finance: needed for cost violations.
    Finance,
    /// Manager: needed for a missing change ticket or deletion confirmation.
    Manager,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Security, Role::Finance, Role::Manager];

    /// The role's name (`admin`, `security`, `finance`, `manager`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Security => "security",
            Role::Finance => "finance",
            Role::Manager => "manager",
        }
    }

    /// Parses a role name, exactly (lower case); `None` for any other name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// Where an override chain stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for approvals.
    Pending,
    /// Enough distinct approvers with the required roles: the override is granted. Final.
    Approved,
    /// An approver denied it. Final.
    Denied,
    /// Still pending when its time ran out. Final.
    Expired,
    /// The requester withdrew it. Final.
    Withdrawn,
}

impl Status {
    /// The status's name (`pending`, `approved`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Withdrawn => "withdrawn",
        }
    }

    /// Whether nothing can change it any more (anything but `pending`).
    pub fn is_final(self) -> bool {
        self != Status::Pending
    }
}

/// Why an override request, an action or a record was refused. Refusals leave the chain as
/// it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// A field of the request or the action is missing or malformed.
    #[error("`{field}` {reason}")]
    InvalidField {
        /// The field (`justification`, `approver`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("override configuration: {0}")]
    Config(String),
    /// Only a vetoed or escalated review can be overridden.
    #[error("only a vetoed or escalated review can be overridden; this review was {decision}")]
    NotOverridable {
        /// The review's decision.
        decision: Outcome,
    },
    /// The request names another review than the one given.
    #[error("the override request's {field} `{request}` is not the review's `{review}`")]
    ReviewMismatch {
        /// `review_request_id`, `plan_hash` or `decision_seq`.
        field: &'static str,
        /// What the request says.
        request: String,
        /// What the review says.
        review: String,
    },
    /// The chain is decided; nothing more can happen to it.
    #[error(
        "override {override_id} is already {status}; no further action is accepted",
        status = status.as_str()
    )]
    AlreadyDecided {
        /// The override.
        override_id: String,
        /// Its final status.
        status: Status,
    },
    /// The chain's time ran out (record it with [`OverrideChain::expire`]).
    #[error("override {override_id} expired at {expires_at}")]
    Expired {
        /// The override.
        override_id: String,
        /// When it expired (RFC 3339).
        expires_at: String,
    },
    /// An action dated before the request.
    #[error("the action at {at} is dated before the override request ({requested_at})")]
    BeforeRequest {
        /// The action's time (RFC 3339).
        at: String,
        /// The request's time (RFC 3339).
        requested_at: String,
    },
    /// The actor holds none of the roles that may approve or deny overrides.
    #[error(
        "{principal} holds none of the roles that may approve or deny overrides (admin, security, finance, manager); roles given: [{roles}]"
    )]
    NoApproverRole {
        /// The would-be approver.
        principal: String,
        /// The roles they hold, comma-separated.
        roles: String,
    },
    /// Separation of duties: the requester acted on their own request.
    #[error(
        "separation of duties: {principal} requested this override and cannot {action} it (the requester may withdraw it)"
    )]
    SeparationOfDuties {
        /// The requester.
        principal: String,
        /// `approve` or `deny`.
        action: &'static str,
    },
    /// Only the requester may withdraw the request.
    #[error("only the requester {requester} may withdraw this override, not {principal}")]
    NotRequester {
        /// Who tried.
        principal: String,
        /// Who requested it.
        requester: String,
    },
    /// Approvers must be distinct.
    #[error("{approver} already approved this override; approvers must be distinct")]
    DuplicateApprover {
        /// The approver.
        approver: String,
    },
    /// The approval is for another plan.
    #[error(
        "the approval by {approver} is for plan {approved}, but this override is for plan {requested}"
    )]
    PlanHashMismatch {
        /// The approver.
        approver: String,
        /// The plan hash the approval carries.
        approved: String,
        /// The plan hash of the override request.
        requested: String,
    },
    /// Signatures are mandatory and this approval has none.
    #[error("the approval by {approver} is not signed; this override requires signed approvals")]
    SignatureRequired {
        /// The approver.
        approver: String,
    },
    /// No key is registered for this approver under this key id.
    #[error("no key `{key_id}` is registered for {approver}")]
    UnknownKey {
        /// The approver.
        approver: String,
        /// The key id the signature names.
        key_id: String,
    },
    /// The approval's signature is malformed or does not verify with the registered key.
    #[error("the signature of {approver} with key `{key_id}` is refused: {problem}")]
    Signature {
        /// The approver.
        approver: String,
        /// The key id.
        key_id: String,
        /// What is wrong.
        problem: SignatureError,
    },
    /// A record cannot be put into (or read from) its ledger form.
    #[error("override record encoding: {0}")]
    Encoding(String),
    /// A ledger event type that is not an override record.
    #[error("`{0}` is not an override event type")]
    UnknownEvent(String),
    /// The records do not replay into a chain.
    #[error("rebuilding override chain: {0}")]
    Rebuild(String),
}

/// RFC 3339 for messages; the raw count where RFC 3339 cannot express the instant.
fn display_time(nanos: i128) -> String {
    custos_core::time::format_utc_nanos(nanos).unwrap_or_else(|| format!("{nanos} ns"))
}
