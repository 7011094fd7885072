//! The decision rule of SPEC §4.1 and the plain-language summary, as pure functions.
//!
//! `approved` only if there is no hard violation, no violation that needs an approval, the
//! intent is `exact` with enough confidence, and there is no safety concern. Otherwise:
//! - `vetoed` when a violation no approval can cure is present (a hard policy without a cure),
//!   or the intent shows scope creep — actions the user did not ask for, or a safety concern,
//!   or a plan that does not match the request at all. Only the override chain (§4.5) can
//!   lift a veto.
//! - `escalated` when everything wrong can be cured by an approval: a change ticket, the
//!   user's deletion confirmation, finance, a human accepting a soft-policy warning, or a human
//!   looking at a plan that does less than asked (missing actions) or a request too vague to
//!   verify with confidence.
//! - A component that failed (the policy engine, the LLM intent verifier) never yields
//!   `approved`: the review is `escalated` for a human (or `vetoed`, if what still worked
//!   vetoes it: a failed LLM leaves the deterministic verifier's findings in force), and the
//!   failure is in the reasons.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::intent::{IntentAssessment, IntentOutcome, Match};
use crate::plan::{NormalizedPlan, Verb};
use crate::policy::{Approval, Effect, PolicyError, PolicyOutcome};

/// Default minimum intent confidence for approval.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.9;

/// The three outcomes of a review.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The plan may run (with the approval token).
    Approved,
    /// The plan may not run; only an override chain lifts this.
    Vetoed,
    /// The plan may run once the required approvals are given.
    Escalated,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Vetoed => "vetoed",
            Outcome::Escalated => "escalated",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Outcome> {
        [Outcome::Approved, Outcome::Vetoed, Outcome::Escalated]
            .into_iter()
            .find(|o| o.as_str() == name)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rule decided and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The outcome.
    pub decision: Outcome,
    /// Approvals that would cure an escalation (empty for approved; for vetoed, those that
    /// would still be needed after an override).
    pub required_approvals: BTreeSet<Approval>,
    /// Every reason, one sentence each, in the order checked.
    pub reasons: Vec<String>,
}

/// Applies the decision rule to the policy outcome (or the policy engine's failure) and the
/// intent outcome.
pub fn decide(
    policy: Result<&PolicyOutcome, &PolicyError>,
    intent: &IntentOutcome,
    min_confidence: f64,
) -> Verdict {
    let mut reasons = Vec::new();
    let mut veto = false;
    let mut failed = false;
    let mut required = BTreeSet::new();
    match policy {
        Ok(outcome) => {
            for v in &outcome.violations {
                match v.effect() {
                    Effect::Veto => {
                        veto = true;
                        reasons.push(format!("{} (hard policy, vetoes): {}", v.policy, v.message));
                    }
                    Effect::Escalate(approval) => {
                        required.insert(approval);
                        reasons.push(format!(
                            "{} needs the approval `{}`: {}",
                            v.policy,
                            approval.as_str(),
                            v.message
                        ));
                    }
                    Effect::Inform => {
                        reasons.push(format!("{} (for information): {}", v.policy, v.message));
                    }
                }
            }
        }
        Err(e) => {
            failed = true;
            required.insert(Approval::Human);
            reasons.push(format!(
                "the policy engine failed ({e}): the plan cannot be approved without it"
            ));
        }
    }
    let assessment = intent.record();
    if let Some(reason) = intent.failure() {
        failed = true;
        required.insert(Approval::Human);
        reasons.push(format!(
            "the intent verifier failed ({reason}): the plan cannot be approved without it"
        ));
    }
    // With the LLM failed, `assessment` is the deterministic one: its findings still count
    // (a failing LLM must never soften a veto the deterministic verifier gives).
    let deterministic = match intent {
        IntentOutcome::Assessed(a) => a,
        IntentOutcome::Failed { deterministic, .. } => deterministic,
    };
    let (vetoes, escalates) = intent_findings(deterministic, min_confidence, &mut reasons);
    veto |= vetoes;
    if escalates {
        required.insert(Approval::Human);
    }
    let decision = if veto {
        Outcome::Vetoed
    } else if failed || !required.is_empty() {
        Outcome::Escalated
    } else {
        Outcome::Approved
    };
    if decision == Outcome::Approved {
        reasons.push(format!(
            "no policy violation needs an approval, and the plan matches the request exactly \
             (confidence {:.2})",
            assessment.confidence
        ));
    }
    Verdict {
        decision,
        required_approvals: required,
        reasons,
    }
}

/// The intent's findings as reasons; returns (vetoes, needs a human).
fn intent_findings(
    a: &IntentAssessment,
    min_confidence: f64,
    reasons: &mut Vec<String>,
) -> (bool, bool) {
    let mut veto = false;
    let mut human = false;
    for extra in &a.extra_actions {
        veto = true;
        reasons.push(format!(
            "scope creep: {} {} ({}) was not asked for — {}",
            extra.verb.imperative(),
            extra.address,
            extra.resource_type,
            extra.reason
        ));
    }
    for concern in &a.safety_concerns {
        veto = true;
        reasons.push(format!("safety concern: {concern}"));
    }
    if a.match_ == Match::Mismatch {
        veto = true;
        reasons.push("the plan does not match the request".to_owned());
    }
    for missing in &a.missing_actions {
        human = true;
        reasons.push(format!(
            "asked for but not in the plan: {}",
            missing.description
        ));
    }
    if !veto && (a.match_ != Match::Exact || a.confidence < min_confidence) {
        human = true;
        reasons.push(format!(
            "intent verification is not sure the plan is what was asked (match {}, confidence \
             {:.2}, at least {min_confidence:.2} needed)",
            match a.match_ {
                Match::Exact => "exact",
                Match::Partial => "partial",
                Match::Mismatch => "mismatch",
            },
            a.confidence
        ));
    }
    (veto, human)
}

/// A plain-language description of what the plan will do, naming every resource it creates,
/// changes, replaces or deletes (SPEC §4.1; §4.2 requires every deletion to be listed).
pub fn summary(plan: &NormalizedPlan) -> String {
    let groups = [
        (Verb::Create, "create"),
        (Verb::Update, "change"),
        (Verb::Replace, "replace (destroy and re-create)"),
        (Verb::Delete, "DELETE"),
    ];
    let changing: Vec<_> = plan.actions.iter().filter(|a| a.verb.changes()).collect();
    if changing.is_empty() {
        return "This plan changes nothing.".to_owned();
    }
    let mut out = String::new();
    let counts: Vec<String> = groups
        .iter()
        .filter_map(|(verb, word)| {
            let n = changing.iter().filter(|a| a.verb == *verb).count();
            (n > 0).then(|| format!("{word} {n}"))
        })
        .collect();
    let _ = write!(
        out,
        "This plan will {} resource{}",
        counts.join(", "),
        if changing.len() == 1 { "" } else { "s" }
    );
    let envs: BTreeSet<&str> = changing
        .iter()
        .map(|a| a.environment.name.as_str())
        .collect();
    let _ = write!(
        out,
        " in {} {}",
        if envs.len() == 1 {
            "environment"
        } else {
            "environments"
        },
        envs.into_iter().collect::<Vec<_>>().join(", ")
    );
    if !plan.regions.is_empty() {
        let _ = write!(
            out,
            " ({})",
            plan.regions.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    out.push('.');
    for (verb, word) in groups {
        let listed: Vec<String> = changing
            .iter()
            .filter(|a| a.verb == verb)
            .map(|a| {
                let mut s = format!("{} ({})", a.address, a.resource_type);
                if a.quantity > 1 {
                    let _ = write!(s, " ×{}", a.quantity);
                }
                if a.environment.production {
                    s.push_str(" [production]");
                }
                if let Some(public) = a.ingress.iter().find(|i| i.public) {
                    let _ = write!(s, " [opens {} to the internet]", public.cidr);
                }
                s
            })
            .collect();
        if !listed.is_empty() {
            let mut w = word.to_owned();
            if let Some(first) = w.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            let _ = write!(out, " {w}: {}.", listed.join(", "));
        }
    }
    match (plan.cost.monthly, plan.cost.monthly_increase) {
        (_, Some(inc)) => {
            let _ = write!(out, " Monthly cost changes by {inc:+.2}");
        }
        (Some(m), None) => {
            let _ = write!(out, " Estimated monthly cost {m:.2}");
        }
        (None, None) => out.push_str(" No cost estimate"),
    }
    if let Some(c) = &plan.cost.currency {
        let _ = write!(out, " {c}");
    }
    out.push('.');
    out
}
