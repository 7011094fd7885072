//! One review, start to verdict, without I/O (except the optional LLM verifier): normalise the
//! plan, evaluate the policies, verify the intent, apply the decision rule, describe the plan.
//! The service around it records the result in the ledger, signs it and issues the token.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decision::{Outcome, Verdict, decide, summary};
use crate::intent::{self, IntentAssessment, IntentInput, IntentVerifier};
use crate::plan::{self, NormalizedPlan, PlanError};
use crate::policy::{PolicyEngine, PolicyInput, SoftPolicyResult, Violation};
use crate::request::ReviewRequest;

/// `sha256:<hex>` of bytes.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `plan_hash`: SHA-256 of the RFC 8785 canonical form of the plan as sent.
pub fn plan_hash(plan: &serde_json::Value) -> Result<String, PlanError> {
    let jcs = custos_core::jcs::to_canonical(plan).map_err(|e| PlanError::NotAPlan {
        found: format!("a value with no canonical JSON form ({e})"),
    })?;
    Ok(sha256_tagged(&jcs))
}

/// Everything a review found, before it is recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The outcome.
    pub decision: Outcome,
    /// Every policy violation (hard, operator, soft).
    pub violations: Vec<Violation>,
    /// Soft policies and whether they were checked (`not_evaluated` does not block).
    pub soft_policies: Vec<SoftPolicyResult>,
    /// Approvals that would cure the escalation.
    pub required_approvals: Vec<String>,
    /// The intent assessment as recorded.
    pub intent: IntentAssessment,
    /// What the plan will do, in words.
    pub summary: String,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
    /// SHA-256 of `user_request`.
    pub request_hash: String,
    /// SHA-256 of the JCS of `plan`.
    pub plan_hash: String,
    /// Hash of the policy bundle evaluated.
    pub policy_bundle: String,
}

/// The review's inputs that are not the request.
pub struct Reviewer<'a> {
    /// The policy engine.
    pub policies: &'a dyn PolicyEngine,
    /// The optional LLM intent verifier.
    pub llm: Option<&'a dyn IntentVerifier>,
    /// Minimum intent confidence for approval.
    pub min_confidence: f64,
}

impl Reviewer<'_> {
    /// Reviews `request`. A plan that cannot be normalised is an error (bad input: nothing to
    /// decide on); everything else yields an evaluation, failing secure.
    pub async fn evaluate(
        &self,
        request: &ReviewRequest,
    ) -> Result<(Evaluation, NormalizedPlan), PlanError> {
        self.evaluate_hashed(request, plan_hash(&request.plan)?)
            .await
    }

    /// [`Reviewer::evaluate`] for a caller that already has the request's [`plan_hash`] (the
    /// service computes it first, to answer a repeated request without evaluating again).
    pub async fn evaluate_hashed(
        &self,
        request: &ReviewRequest,
        plan_hash: String,
    ) -> Result<(Evaluation, NormalizedPlan), PlanError> {
        let plan = plan::normalize_request(request)?;
        let policy = self.policies.evaluate(&PolicyInput::new(request, &plan));
        let intent = intent::verify(IntentInput::new(request, &plan), self.llm).await;
        let Verdict {
            decision,
            required_approvals,
            reasons,
        } = decide(policy.as_ref(), &intent, self.min_confidence);
        let (violations, soft_policies) = match policy {
            Ok(o) => (o.violations, o.soft_policies),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let mut reasons = reasons;
        reasons.extend(plan.notes.iter().map(|n| format!("note: {n}")));
        let evaluation = Evaluation {
            decision,
            violations,
            soft_policies,
            required_approvals: required_approvals
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            intent: intent.record(),
            summary: summary(&plan),
            reasons,
            request_hash: sha256_tagged(request.user_request.as_bytes()),
            plan_hash,
            policy_bundle: self.policies.bundle_hash().to_owned(),
        };
        Ok((evaluation, plan))
    }
}
