//! The intent assessment: the SPEC §4.1 `intent` object of a review, and who produced it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::vocabulary::Family;
use crate::plan::{PlannedAction, Verb};

/// How well the plan matches the request. Ordered from best to worst, so the worse of two is
/// their maximum.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// The plan does what was asked and nothing else.
    Exact,
    /// The plan does part of what was asked, or more than was asked, or the request is too
    /// vague to tell.
    Partial,
    /// The plan does something other than what was asked (wrong environment, wrong verb,
    /// nothing of the request).
    Mismatch,
}

impl Match {
    /// The worse of the two.
    pub fn worst(self, other: Match) -> Match {
        self.max(other)
    }
}

/// Which verifier produced an assessment: `deterministic/1`, `openai-compatible:<model>/1`,
/// `anthropic:<model>/1`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct VerifierId {
    /// The verifier (`deterministic`), or the LLM provider kind and model
    /// (`anthropic:claude-sonnet-4-5`).
    pub name: String,
    /// Version of its rules (deterministic) or of its prompt and schema (LLM).
    pub version: String,
}

impl VerifierId {
    /// A verifier id from its parts.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        VerifierId {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl fmt::Display for VerifierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// A planned action the request does not explain (scope creep), and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ActionRef {
    /// The action's address in the normalised plan.
    pub address: String,
    /// What the plan does to it.
    pub verb: Verb,
    /// Its resource type.
    pub resource_type: String,
    /// Its name.
    pub name: String,
    /// Why the request does not explain it.
    pub reason: String,
}

impl ActionRef {
    /// Names `action`, with `reason`.
    pub fn new(action: &PlannedAction, reason: impl Into<String>) -> Self {
        ActionRef {
            address: action.address.clone(),
            verb: action.verb,
            resource_type: action.resource_type.clone(),
            name: action.name.clone(),
            reason: reason.into(),
        }
    }
}

/// Something the request asks for that no planned action does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MissingAction {
    /// What is missing, in words (`delete 1 more vpc in dev: asked for 3, the plan deletes 2`).
    pub description: String,
    /// The verb asked for, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verb: Option<Verb>,
    /// The resource family asked for, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub family: Option<Family>,
}

/// The outcome of intent verification for one review: the SPEC §4.1 `intent` object
/// (`match`, `confidence`, `extra_actions`, `missing_actions`, `safety_concerns`) plus the
/// verifiers that produced it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IntentAssessment {
    /// How well the plan matches the request.
    #[serde(rename = "match")]
    pub match_: Match,
    /// How sure the verifier is that the plan is what was asked, in `[0, 1]`.
    pub confidence: f64,
    /// Planned actions the request does not explain.
    pub extra_actions: Vec<ActionRef>,
    /// What the request asks for that the plan does not do.
    pub missing_actions: Vec<MissingAction>,
    /// Risks the user would not expect (public ingress to production, a production resource
    /// in a non-production request, regulated data never mentioned, more deleted than asked).
    pub safety_concerns: Vec<String>,
    /// What the verifier had to decide and a reviewer should know (a vague request, a
    /// quantity more than asked).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
    /// The verifier that produced the assessment (for a combined one, the deterministic one).
    pub verifier: VerifierId,
    /// The LLM verifier whose answer was combined in, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub llm_verifier: Option<VerifierId>,
}

impl IntentAssessment {
    /// Whether this assessment allows approval (SPEC §4.1): match `exact`, confidence at
    /// least `min_confidence`, nothing extra or missing, no safety concern. A NaN
    /// `min_confidence` allows nothing.
    pub fn approvable(&self, min_confidence: f64) -> bool {
        self.match_ == Match::Exact
            && self.confidence >= min_confidence
            && self.extra_actions.is_empty()
            && self.missing_actions.is_empty()
            && self.safety_concerns.is_empty()
    }

    /// Restores the invariants every assessment keeps, whoever produced it: confidence is a
    /// number in `[0, 1]` (NaN becomes 0), and anything extra, missing or concerning makes
    /// the match at least `partial`.
    pub(crate) fn normalised(mut self) -> Self {
        self.confidence = if self.confidence.is_nan() {
            0.0
        } else {
            self.confidence.clamp(0.0, 1.0)
        };
        if !self.extra_actions.is_empty()
            || !self.missing_actions.is_empty()
            || !self.safety_concerns.is_empty()
        {
            self.match_ = self.match_.worst(Match::Partial);
        }
        self
    }
}
