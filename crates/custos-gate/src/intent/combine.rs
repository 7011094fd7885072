//! Combining the deterministic assessment with an LLM verifier's.
//!
//! The rule is fail-secure: **the LLM may only make the outcome stricter, never looser.**
//! - `match`: the worse of the two (`exact` < `partial` < `mismatch`);
//! - `confidence`: the lower of the two;
//! - `extra_actions`: the union (by address; the deterministic reason kept, the LLM's added
//!   when it names an action the deterministic verifier did not);
//! - `missing_actions`, `safety_concerns`, `notes`: the union, in order, without repeats;
//! - then the invariant that anything extra, missing or concerning makes the match at least
//!   `partial`.
//!
//! Every field is monotone, so whatever the LLM answers (including an answer planted in the
//! user's request or the plan by prompt injection), the combined assessment approves no
//! more than the deterministic one does.

use std::collections::BTreeSet;

use super::model::IntentAssessment;

/// The combination of `deterministic` and `llm` (see the module docs). The result's
/// `verifier` is the deterministic one's and `llm_verifier` the LLM's.
pub fn combine(deterministic: &IntentAssessment, llm: &IntentAssessment) -> IntentAssessment {
    let mut combined = deterministic.clone();
    combined.match_ = deterministic.match_.worst(llm.match_);
    combined.confidence = if llm.confidence.is_nan() {
        0.0
    } else {
        deterministic.confidence.min(llm.confidence)
    };
    let known: BTreeSet<String> = combined
        .extra_actions
        .iter()
        .map(|a| a.address.clone())
        .collect();
    combined.extra_actions.extend(
        llm.extra_actions
            .iter()
            .filter(|a| !known.contains(&a.address))
            .cloned(),
    );
    for missing in &llm.missing_actions {
        if !combined.missing_actions.contains(missing) {
            combined.missing_actions.push(missing.clone());
        }
    }
    union(&mut combined.safety_concerns, &llm.safety_concerns);
    union(&mut combined.notes, &llm.notes);
    combined.llm_verifier = Some(llm.verifier.clone());
    combined.normalised()
}

fn union(into: &mut Vec<String>, from: &[String]) {
    for item in from {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}
