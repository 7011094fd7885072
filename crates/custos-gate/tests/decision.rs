//! The SPEC §4.1 decision rule as a table: policy outcome × intent → decision and approvals.

use custos_gate::decision::{Outcome, decide};
use custos_gate::intent::{IntentAssessment, IntentOutcome, Match, MissingAction, VerifierId};
use custos_gate::policy::{Approval, PolicyError, PolicyKind, PolicyOutcome, Severity, Violation};
use serde_json::json;

fn verifier() -> VerifierId {
    VerifierId {
        name: "deterministic".into(),
        version: "1".into(),
    }
}

fn intent(m: Match, confidence: f64) -> IntentAssessment {
    IntentAssessment {
        match_: m,
        confidence,
        extra_actions: vec![],
        missing_actions: vec![],
        safety_concerns: vec![],
        notes: vec![],
        verifier: verifier(),
        llm_verifier: None,
    }
}

fn violation(kind: PolicyKind, cure: Option<Approval>) -> Violation {
    Violation {
        policy: "p".into(),
        kind,
        severity: Severity::High,
        message: "m".into(),
        evidence: json!({}),
        cure,
    }
}

fn outcome(violations: Vec<Violation>) -> PolicyOutcome {
    PolicyOutcome {
        bundle_hash: "h".into(),
        violations,
        soft_policies: vec![],
    }
}

struct Case {
    name: &'static str,
    policy: Result<PolicyOutcome, PolicyError>,
    intent: IntentOutcome,
    decision: Outcome,
    approvals: &'static [Approval],
}

fn check(c: Case) {
    let v = decide(c.policy.as_ref(), &c.intent, 0.9);
    assert_eq!(v.decision, c.decision, "{}: {:#?}", c.name, v.reasons);
    assert_eq!(
        v.required_approvals.iter().copied().collect::<Vec<_>>(),
        c.approvals,
        "{}",
        c.name
    );
    assert!(
        !v.reasons.is_empty(),
        "{}: a decision always says why",
        c.name
    );
}

#[test]
fn the_decision_rule() {
    use Approval::*;
    use PolicyKind::*;
    let exact = || IntentOutcome::Assessed(intent(Match::Exact, 0.97));
    let missing = {
        let mut a = intent(Match::Partial, 0.6);
        a.missing_actions.push(MissingAction {
            description: "create 3 instances".into(),
            verb: None,
            family: None,
        });
        IntentOutcome::Assessed(a)
    };
    let concern = {
        let mut a = intent(Match::Partial, 0.6);
        a.safety_concerns
            .push("opens production to the internet".into());
        IntentOutcome::Assessed(a)
    };
    let failed = IntentOutcome::Failed {
        verifier: verifier(),
        reason: "timed out after 10 s".into(),
        deterministic: intent(Match::Exact, 1.0),
    };
    // The LLM failed, but the deterministic verifier saw a safety concern: a failing LLM never
    // softens the deterministic verdict.
    let failed_over_concern = IntentOutcome::Failed {
        verifier: verifier(),
        reason: "timed out after 10 s".into(),
        deterministic: match &concern {
            IntentOutcome::Assessed(a) => a.clone(),
            IntentOutcome::Failed { deterministic, .. } => deterministic.clone(),
        },
    };
    for c in [
        Case {
            name: "intent verifier failed over a deterministic safety concern",
            policy: Ok(outcome(vec![])),
            intent: failed_over_concern,
            decision: Outcome::Vetoed,
            approvals: &[Human],
        },
        Case {
            name: "clean",
            policy: Ok(outcome(vec![])),
            intent: exact(),
            decision: Outcome::Approved,
            approvals: &[],
        },
        Case {
            name: "soft, informs only",
            policy: Ok(outcome(vec![violation(Soft, None)])),
            intent: exact(),
            decision: Outcome::Approved,
            approvals: &[],
        },
        Case {
            name: "hard without cure",
            policy: Ok(outcome(vec![violation(Hard, None)])),
            intent: exact(),
            decision: Outcome::Vetoed,
            approvals: &[],
        },
        Case {
            name: "hard with cure",
            policy: Ok(outcome(vec![violation(Hard, Some(Finance))])),
            intent: exact(),
            decision: Outcome::Escalated,
            approvals: &[Finance],
        },
        Case {
            name: "two cures",
            policy: Ok(outcome(vec![
                violation(Hard, Some(Finance)),
                violation(Hard, Some(ChangeTicket)),
            ])),
            intent: exact(),
            decision: Outcome::Escalated,
            approvals: &[ChangeTicket, Finance],
        },
        Case {
            name: "soft needing a human",
            policy: Ok(outcome(vec![violation(Soft, Some(Human))])),
            intent: exact(),
            decision: Outcome::Escalated,
            approvals: &[Human],
        },
        Case {
            name: "veto beats cures",
            policy: Ok(outcome(vec![
                violation(Hard, Some(Finance)),
                violation(Hard, None),
            ])),
            intent: exact(),
            decision: Outcome::Vetoed,
            approvals: &[Finance],
        },
        Case {
            name: "policy engine failed",
            policy: Err(PolicyError::Evaluation {
                policy: "p".into(),
                message: "evaluation timed out".into(),
            }),
            intent: exact(),
            decision: Outcome::Escalated,
            approvals: &[Human],
        },
        Case {
            name: "intent verifier failed",
            policy: Ok(outcome(vec![])),
            intent: failed,
            decision: Outcome::Escalated,
            approvals: &[Human],
        },
        Case {
            name: "missing actions",
            policy: Ok(outcome(vec![])),
            intent: missing,
            decision: Outcome::Escalated,
            approvals: &[Human],
        },
        Case {
            name: "safety concern",
            policy: Ok(outcome(vec![])),
            intent: concern,
            decision: Outcome::Vetoed,
            approvals: &[],
        },
        Case {
            name: "mismatch",
            policy: Ok(outcome(vec![])),
            intent: IntentOutcome::Assessed(intent(Match::Mismatch, 0.1)),
            decision: Outcome::Vetoed,
            approvals: &[],
        },
        Case {
            name: "exact but unsure",
            policy: Ok(outcome(vec![])),
            intent: IntentOutcome::Assessed(intent(Match::Exact, 0.85)),
            decision: Outcome::Escalated,
            approvals: &[Human],
        },
        Case {
            name: "partial",
            policy: Ok(outcome(vec![])),
            intent: IntentOutcome::Assessed(intent(Match::Partial, 0.95)),
            decision: Outcome::Escalated,
            approvals: &[Human],
        },
    ] {
        check(c);
    }
}
