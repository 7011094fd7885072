//! What an orchestrator sends for review (SPEC §4.1): the user's words, the plan, and the
//! metadata policies consult.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `metadata` of a review request. Unknown fields are kept in `extra` (policies may read them).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    /// Who asked (the human behind the request).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    /// When they asked (RFC 3339, as sent).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timestamp: Option<String>,
    /// The environment the request is about, if the orchestrator knows.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub environment: Option<String>,
    /// Change ticket covering the change (needed for production changes).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change_ticket_id: Option<String>,
    /// The user confirmed the deletions.
    #[serde(default)]
    pub deletion_confirmed: bool,
    /// Finance approved the cost.
    #[serde(default)]
    pub finance_approved: bool,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A review request as the gate reads it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReviewRequest {
    /// The orchestrator's id for this request (unique per tenant).
    pub request_id: String,
    /// The user's words.
    pub user_request: String,
    /// The plan: generic JSON or `terraform show -json` output.
    pub plan: Value,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// An Infracost JSON breakdown of the plan, if the orchestrator ran one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub infracost: Option<Value>,
}
