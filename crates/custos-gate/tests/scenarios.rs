//! The four scenarios of the plan gate (issue 5 §5), through the whole review pipeline:
//! normalisation, the built-in policies, the deterministic intent verifier and the decision
//! rule. The HTTP end-to-end versions live in custos-cli's tests.

use custos_gate::decision::{DEFAULT_MIN_CONFIDENCE, Outcome};
use custos_gate::intent::Match;
use custos_gate::policy::RegoPolicyEngine;
use custos_gate::request::{Metadata, ReviewRequest};
use custos_gate::review::{Evaluation, Reviewer};
use serde_json::Value;

fn plan(name: &str) -> Value {
    let path = format!("{}/tests/plans/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn review(user_request: &str, plan_name: &str, metadata: Metadata) -> Evaluation {
    let engine = RegoPolicyEngine::builtin().expect("built-in policies compile");
    let reviewer = Reviewer {
        policies: &engine,
        llm: None,
        min_confidence: DEFAULT_MIN_CONFIDENCE,
    };
    let request = ReviewRequest {
        request_id: format!("req-{plan_name}"),
        user_request: user_request.to_owned(),
        plan: plan(plan_name),
        metadata,
        infracost: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(reviewer.evaluate(&request))
        .expect("reviewable")
        .0
}

fn user() -> Metadata {
    Metadata {
        user: Some("alice@example.com".into()),
        timestamp: Some("2026-11-23T10:00:00Z".into()),
        ..Metadata::default()
    }
}

fn policies(e: &Evaluation) -> Vec<&str> {
    e.violations.iter().map(|v| v.policy.as_str()).collect()
}

const ML: &str = "Add a new microsegment for machine learning workloads with GPU instances";

#[test]
fn a_ml_microsegment_is_approved() {
    let e = review(ML, "scenario-a", user());
    assert_eq!(e.decision, Outcome::Approved, "{:#?}", e.reasons);
    assert!(e.required_approvals.is_empty());
    assert_eq!(e.intent.match_, Match::Exact);
    assert!(e.intent.confidence >= 0.9);
    assert!(e.summary.contains("Create"), "{}", e.summary);
    assert!(e.plan_hash.starts_with("sha256:") && e.request_hash.starts_with("sha256:"));
    assert_eq!(e.policy_bundle.len(), 64);
}

#[test]
fn b_the_same_request_opening_the_pci_firewall_is_vetoed_as_scope_creep() {
    let e = review(ML, "scenario-b", user());
    assert_eq!(e.decision, Outcome::Vetoed, "{:#?}", e.reasons);
    assert!(
        policies(&e).contains(&"no_public_production_access"),
        "{:?}",
        policies(&e)
    );
    let extra: Vec<&str> = e
        .intent
        .extra_actions
        .iter()
        .map(|a| a.address.as_str())
        .collect();
    assert!(
        extra.iter().any(|a| a.contains("pci")),
        "the PCI firewall change is named as extra: {extra:?}"
    );
    assert!(
        e.reasons
            .iter()
            .any(|r| r.starts_with("scope creep") && r.contains("pci")),
        "{:#?}",
        e.reasons
    );
    assert!(e.summary.contains("0.0.0.0/0"), "{}", e.summary);
}

#[test]
fn c_cleaning_up_dev_environments_without_confirmation_is_escalated_listing_every_vpc() {
    let e = review("Clean up old dev environments", "scenario-c", user());
    assert_eq!(e.decision, Outcome::Escalated, "{:#?}", e.reasons);
    assert_eq!(e.required_approvals, vec!["user_deletion_confirmation"]);
    let deletion = e
        .violations
        .iter()
        .find(|v| v.policy == "deletion_requires_confirmation")
        .expect("deletion policy");
    let listed = deletion.evidence.to_string();
    // The summary and the violation each name all three VPCs.
    let deletes: Vec<&str> = e
        .summary
        .split("DELETE: ")
        .nth(1)
        .unwrap_or("")
        .split(", ")
        .map(|d| d.split(" (").next().unwrap_or(""))
        .collect();
    assert_eq!(deletes.len(), 3, "{}", e.summary);
    for address in deletes {
        assert!(address.contains("vpc"), "{address}");
        assert!(listed.contains(address), "{address} not in {listed}");
    }
    // Confirmed: approved.
    let confirmed = review(
        "Clean up old dev environments",
        "scenario-c",
        Metadata {
            deletion_confirmed: true,
            ..user()
        },
    );
    assert_eq!(
        confirmed.decision,
        Outcome::Approved,
        "{:#?}",
        confirmed.reasons
    );
}

#[test]
fn d_a_production_scale_up_costing_2850_more_is_escalated_for_finance_and_the_ticket() {
    let request = "Scale up our production API to handle Black Friday traffic";
    let e = review(request, "scenario-d", user());
    assert_eq!(e.decision, Outcome::Escalated, "{:#?}", e.reasons);
    assert_eq!(e.required_approvals, vec!["change_ticket", "finance"]);
    let with_ticket = review(
        request,
        "scenario-d",
        Metadata {
            change_ticket_id: Some("CHG-1234".into()),
            ..user()
        },
    );
    assert_eq!(with_ticket.decision, Outcome::Escalated);
    assert_eq!(with_ticket.required_approvals, vec!["finance"]);
    let approved = review(
        request,
        "scenario-d",
        Metadata {
            change_ticket_id: Some("CHG-1234".into()),
            finance_approved: true,
            ..user()
        },
    );
    assert_eq!(
        approved.decision,
        Outcome::Approved,
        "{:#?}",
        approved.reasons
    );
}
