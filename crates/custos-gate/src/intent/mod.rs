//! Intent verification (SPEC §4.3): does the plan do what the user asked, and only that?
//!
//! Two verifiers:
//! - the built-in [`deterministic`] verifier (default, no network, a pure function), which
//!   always runs;
//! - an optional [`llm`] verifier (OpenAI-compatible chat completions or Anthropic
//!   Messages), whose answer is [`combine`]d with the deterministic one so that it can only
//!   make the outcome stricter.
//!
//! [`verify`] runs both and returns an [`IntentOutcome`]: either an assessment, or
//! [`IntentOutcome::Failed`] when the LLM verifier failed (timeout, HTTP error, an answer
//! that is not the schema, a refusal, …). A failed outcome is never approvable; the decision
//! code must map it to `escalated` (SPEC §4.1: a required component that fails or times out
//! fails secure).
//!
//! The assessment serialises to the SPEC §4.1 `intent` object ([`IntentAssessment`]).

use std::future::Future;
use std::pin::Pin;

use crate::plan::NormalizedPlan;
use crate::request::{Metadata, ReviewRequest};

mod combine;
pub mod deterministic;
mod error;
pub mod llm;
mod model;
pub mod reading;
pub mod vocabulary;

pub use combine::combine;
pub use error::IntentError;
pub use model::{ActionRef, IntentAssessment, Match, MissingAction, VerifierId};
pub use reading::{RequestReading, read_request};
pub use vocabulary::Family;

/// A boxed, sendable future: what [`IntentVerifier::assess`] returns, so verifiers can sit
/// behind `dyn IntentVerifier`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What intent verification reads: the user's words, the review metadata and the
/// normalised plan.
#[derive(Clone, Copy, Debug)]
pub struct IntentInput<'a> {
    /// The user's request, as they wrote it.
    pub user_request: &'a str,
    /// The review's metadata (`environment` is evidence of the environment asked for).
    pub metadata: &'a Metadata,
    /// The plan, normalised.
    pub plan: &'a NormalizedPlan,
}

impl<'a> IntentInput<'a> {
    /// The input for a review request and its normalised plan.
    pub fn new(request: &'a ReviewRequest, plan: &'a NormalizedPlan) -> Self {
        IntentInput {
            user_request: &request.user_request,
            metadata: &request.metadata,
            plan,
        }
    }
}

/// An intent verifier that may need I/O (an LLM behind HTTP).
pub trait IntentVerifier: Send + Sync {
    /// Who it is; recorded with its assessments and its failures.
    fn id(&self) -> VerifierId;

    /// Assesses the plan against the request. An error means "no assessment", which the
    /// gate treats as "never approved".
    fn assess<'a>(
        &'a self,
        input: IntentInput<'a>,
    ) -> BoxFuture<'a, Result<IntentAssessment, IntentError>>;
}

/// The result of intent verification for one review.
#[derive(Clone, Debug, PartialEq)]
pub enum IntentOutcome {
    /// The verifiers assessed the plan (the deterministic one, combined with the LLM's when
    /// one is configured).
    Assessed(IntentAssessment),
    /// The LLM verifier failed. The review can never be approved; the decision must be
    /// `escalated`.
    Failed {
        /// The verifier that failed.
        verifier: VerifierId,
        /// What happened, in words (never containing credentials).
        reason: String,
        /// The deterministic assessment, kept for the record.
        deterministic: IntentAssessment,
    },
}

impl IntentOutcome {
    /// Whether intent verification allows approval: an assessment that is approvable at
    /// `min_confidence` ([`IntentAssessment::approvable`]); a failure never is.
    pub fn approvable(&self, min_confidence: f64) -> bool {
        match self {
            IntentOutcome::Assessed(assessment) => assessment.approvable(min_confidence),
            IntentOutcome::Failed { .. } => false,
        }
    }

    /// The failure's reason, if the outcome is a failure.
    pub fn failure(&self) -> Option<&str> {
        match self {
            IntentOutcome::Assessed(_) => None,
            IntentOutcome::Failed { reason, .. } => Some(reason),
        }
    }

    /// The `intent` object to record. For a failure: the deterministic assessment with
    /// confidence 0, a match of at least `partial`, the failed verifier as `llm_verifier`
    /// and a safety concern naming the failure — so that even a reader that ignores
    /// [`IntentOutcome::Failed`] cannot approve on it.
    pub fn record(&self) -> IntentAssessment {
        match self {
            IntentOutcome::Assessed(assessment) => assessment.clone(),
            IntentOutcome::Failed {
                verifier,
                reason,
                deterministic,
            } => {
                let mut record = deterministic.clone();
                record.confidence = 0.0;
                record.safety_concerns.push(format!(
                    "intent verifier {verifier} failed ({reason}); the plan cannot be approved without its assessment"
                ));
                record.llm_verifier = Some(verifier.clone());
                record.normalised()
            }
        }
    }
}

/// Runs intent verification: the deterministic verifier always, then `llm` if given, whose
/// answer is combined with the deterministic one ([`combine`]: it can only make the outcome
/// stricter). An LLM error gives [`IntentOutcome::Failed`]. The LLM verifier enforces its
/// own timeout ([`llm::LlmConfig::timeout`]).
pub async fn verify(input: IntentInput<'_>, llm: Option<&dyn IntentVerifier>) -> IntentOutcome {
    let deterministic = deterministic::assess(input.user_request, input.metadata, input.plan);
    let Some(llm) = llm else {
        return IntentOutcome::Assessed(deterministic);
    };
    match llm.assess(input).await {
        Ok(answer) => IntentOutcome::Assessed(combine(&deterministic, &answer)),
        Err(error) => IntentOutcome::Failed {
            verifier: llm.id(),
            reason: error.to_string(),
            deterministic,
        },
    }
}
