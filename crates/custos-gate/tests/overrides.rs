//! The override chain (SPEC §4.5): request validation, approval requirements, the approver
//! state machine (distinct approvers, separation of duties, roles, plan binding, signatures,
//! denial, expiry, withdrawal), the override digest, ledger records and rebuilding the chain
//! from them — as tables of cases through one `check` helper, and a property test over random
//! action sequences.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custos_core::note::Signer;
use custos_gate::decision::Outcome;
use custos_gate::overrides::{
    ApprovalRequirements, ApproverSignature, EVENT_APPROVAL, EVENT_APPROVED, EVENT_DENIAL,
    EVENT_DENIED, EVENT_EXPIRED, EVENT_REQUESTED, EVENT_WITHDRAWN, MAX_TEXT_BYTES, OverrideAction,
    OverrideChain, OverrideConfig, OverrideDigest, OverrideError, OverrideEvent, OverrideRequest,
    RegisteredKeys, ReviewFacts, Role, SignatureError, Status, sign_digest,
    verify_approver_signature,
};
use custos_gate::policy::{Approval, BUILTIN_POLICIES, PolicyKind, Severity, Violation};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const T0: i128 = 1_795_000_000_000_000_000;
const MINUTE: i128 = 60 * 1_000_000_000;
const HOUR: i128 = 60 * MINUTE;
const REQUESTER: &str = "user:rita";

fn plan() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

fn other_plan() -> String {
    format!("sha256:{}", "cd".repeat(32))
}

// ---- building reviews, requests and actions ---------------------------------------------

/// A violation of `policy`: a built-in one with its own kind and cure, or an operator policy
/// (hard, no cure: vetoes).
fn violation(policy: &str) -> Violation {
    let (kind, cure) = BUILTIN_POLICIES
        .iter()
        .find(|p| p.id == policy)
        .map_or((PolicyKind::Hard, None), |p| (p.kind, p.cure));
    Violation {
        policy: policy.into(),
        kind,
        severity: Severity::High,
        message: format!("{policy} violated"),
        evidence: Value::Null,
        cure,
    }
}

/// A review of the plan, decided by its violations as SPEC §4.1 does (any veto → vetoed,
/// else escalated), unless `decision` says otherwise.
fn review_with(decision: Option<Outcome>, policies: &[&str]) -> ReviewFacts {
    let violations: Vec<Violation> = policies.iter().map(|p| violation(p)).collect();
    let required_approvals: BTreeSet<Approval> = violations.iter().filter_map(|v| v.cure).collect();
    let vetoed = violations
        .iter()
        .any(|v| v.kind == PolicyKind::Hard && v.cure.is_none());
    ReviewFacts {
        request_id: "req-42".into(),
        plan_hash: plan(),
        decision_seq: 1234,
        decision: decision.unwrap_or(if vetoed {
            Outcome::Vetoed
        } else {
            Outcome::Escalated
        }),
        violations,
        required_approvals,
    }
}

fn review(policies: &[&str]) -> ReviewFacts {
    review_with(None, policies)
}

fn request() -> OverrideRequest {
    OverrideRequest {
        id: "ovr-1".into(),
        review_request_id: "req-42".into(),
        plan_hash: plan(),
        decision_seq: 1234,
        requested_by: REQUESTER.into(),
        justification: "Quarterly close needs the payment gateway reachable from the partner."
            .into(),
        business_impact: "Settlement fails for 3 000 merchants tonight.".into(),
        alternatives_considered: "VPN peering: 2 weeks lead time.\n\tPrivate link: not offered."
            .into(),
        risk_acceptance: "Exposure limited to 4 hours; CISO informed.".into(),
        requested_at: T0,
    }
}

fn signer(name: &str) -> Signer {
    let seed = Sha256::digest(name.as_bytes()).into();
    Signer::from_seed(name, seed).expect("a valid key name")
}

/// Every test approver has one registered key, `k1`.
fn keys() -> RegisteredKeys {
    let mut keys = RegisteredKeys::new();
    for name in ["alice", "bob", "carol", "dave", "erin"] {
        keys.insert(
            &format!("user:{name}"),
            "k1",
            signer(name).verifier().public_key(),
        );
    }
    keys
}

fn digest() -> OverrideDigest {
    OverrideDigest::of(&request()).expect("digest")
}

/// A valid signature by `name`'s registered key.
fn signed(name: &str) -> Option<ApproverSignature> {
    Some(sign_digest(
        &digest(),
        &format!("user:{name}"),
        &signer(name),
        "k1",
    ))
}

fn approve(who: &str, roles: &[&str]) -> OverrideAction {
    OverrideAction::Approve {
        approver: format!("user:{who}"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        plan_hash: plan(),
        comment: String::new(),
        signature: None,
        at: T0 + MINUTE,
    }
}

/// Changes an approval's signature, plan hash or time.
fn with(action: OverrideAction, change: impl FnOnce(&mut OverrideAction)) -> OverrideAction {
    let mut action = action;
    change(&mut action);
    action
}

fn signed_by(action: OverrideAction, signature: Option<ApproverSignature>) -> OverrideAction {
    with(action, |a| {
        if let OverrideAction::Approve { signature: s, .. } = a {
            *s = signature;
        }
    })
}

fn for_plan(action: OverrideAction, plan_hash: String) -> OverrideAction {
    with(action, |a| {
        if let OverrideAction::Approve { plan_hash: p, .. } = a {
            *p = plan_hash;
        }
    })
}

fn at(action: OverrideAction, time: i128) -> OverrideAction {
    with(action, |a| match a {
        OverrideAction::Approve { at, .. }
        | OverrideAction::Deny { at, .. }
        | OverrideAction::Withdraw { at, .. } => *at = time,
    })
}

fn deny(who: &str, roles: &[&str]) -> OverrideAction {
    OverrideAction::Deny {
        approver: format!("user:{who}"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        reason: "The exposure is not limited by any control.".into(),
        at: T0 + 2 * MINUTE,
    }
}

fn withdraw(who: &str) -> OverrideAction {
    OverrideAction::Withdraw {
        by: who.into(),
        reason: "Partner agreed to wait.".into(),
        at: T0 + 2 * MINUTE,
    }
}

// ---- the check helper -------------------------------------------------------------------

/// What one step should give: a status, or an error whose message contains the text.
#[derive(Debug)]
enum Expect {
    Ok(Status),
    Err(&'static str),
}
use Expect::{Err as Refused, Ok as Now};

/// Opens the chain for `review` under `config`, applies each action and compares with its
/// expectation. A refused action must leave the chain as it was; a decided chain must have
/// recorded its outcome; and the chain rebuilt from every record equals the live one.
fn check(
    review: &ReviewFacts,
    config: &OverrideConfig,
    steps: Vec<(OverrideAction, Expect)>,
) -> OverrideChain {
    let (mut chain, opened) = OverrideChain::open(request(), review, config).expect("opens");
    let mut records = vec![opened];
    let keys = keys();
    for (i, (action, expect)) in steps.into_iter().enumerate() {
        let before = chain.clone();
        let got = chain.apply(action.clone(), &keys);
        match (got, expect) {
            (Ok(transition), Expect::Ok(status)) => {
                assert_eq!(transition.status, status, "step {i}: {action:?}");
                assert_eq!(chain.status(), status);
                if status.is_final() {
                    assert_eq!(chain.decided_at(), Some(action_time(&action)));
                }
                records.extend(transition.events);
            }
            (Err(error), Expect::Err(text)) => {
                let message = error.to_string();
                assert!(
                    message.contains(text),
                    "step {i}: error `{message}` does not say `{text}`"
                );
                assert_eq!(
                    chain, before,
                    "step {i}: a refused action changed the chain"
                );
            }
            (got, expect) => panic!("step {i}: {action:?}: got {got:?}, expected {expect:?}"),
        }
    }
    let rebuilt = OverrideChain::rebuild(&records).expect("rebuilds");
    assert_eq!(rebuilt, chain, "the chain rebuilt from its records differs");
    for record in &records {
        let ledger = record.ledger_event().expect("encodes");
        let back = OverrideEvent::from_ledger(ledger.event_type, &ledger.data).expect("decodes");
        assert_eq!(&back, record, "{} does not round-trip", ledger.event_type);
    }
    chain
}

fn action_time(action: &OverrideAction) -> i128 {
    match action {
        OverrideAction::Approve { at, .. }
        | OverrideAction::Deny { at, .. }
        | OverrideAction::Withdraw { at, .. } => *at,
    }
}

fn default_config() -> OverrideConfig {
    OverrideConfig::default()
}

// ---- the approval chain -------------------------------------------------------------------

#[test]
fn two_distinct_approvers_approve() {
    let chain = check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (approve("bob", &["manager"]), Now(Status::Approved)),
        ],
    );
    let approvers: Vec<&str> = chain
        .approvals()
        .iter()
        .map(|a| a.approver.as_str())
        .collect();
    assert_eq!(approvers, ["user:alice", "user:bob"]);
}

#[test]
fn the_same_approver_counts_once() {
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (
                approve("alice", &["admin", "security"]),
                Refused("already approved"),
            ),
            (approve("bob", &["admin"]), Now(Status::Approved)),
        ],
    );
}

#[test]
fn the_requester_cannot_approve_or_deny_their_own_request() {
    let requester = REQUESTER.trim_start_matches("user:");
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (
                approve(requester, &["admin"]),
                Refused("separation of duties"),
            ),
            (deny(requester, &["admin"]), Refused("cannot deny")),
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (approve("bob", &["admin"]), Now(Status::Approved)),
        ],
    );
}

#[test]
fn approvers_need_a_known_role_and_a_user_principal() {
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &[]), Refused("holds none of the roles")),
            (
                approve("alice", &["viewer", "Admin"]),
                Refused("roles given: [viewer, Admin]"),
            ),
            (
                with(approve("x", &["admin"]), |a| {
                    if let OverrideAction::Approve { approver, .. } = a {
                        *approver = "agent:orchestrator".into();
                    }
                }),
                Refused("`approver` must be a user principal"),
            ),
            (approve("alice", &["viewer", "admin"]), Now(Status::Pending)),
        ],
    );
}

#[test]
fn a_security_violation_needs_a_security_approver() {
    let chain = check(
        &review(&["no_public_production_access"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (
                approve("bob", &["manager", "finance"]),
                Now(Status::Pending),
            ),
            (approve("carol", &["security"]), Now(Status::Approved)),
        ],
    );
    assert_eq!(chain.approvals().len(), 3);
}

#[test]
fn outstanding_says_what_is_missing() {
    let (mut chain, _) = OverrideChain::open(
        request(),
        &review(&["no_public_production_access", "cost_threshold_approval"]),
        &default_config(),
    )
    .expect("opens");
    let outstanding = chain.outstanding().expect("pending");
    assert_eq!(outstanding.approvers, 2);
    assert_eq!(
        outstanding.roles,
        BTreeSet::from([Role::Security, Role::Finance])
    );
    let _ = chain
        .apply(approve("alice", &["security"]), &keys())
        .expect("accepted");
    let outstanding = chain.outstanding().expect("pending");
    assert_eq!(outstanding.approvers, 1);
    assert_eq!(outstanding.roles, BTreeSet::from([Role::Finance]));
}

#[test]
fn a_cost_violation_needs_a_finance_approver() {
    check(
        &review(&["cost_threshold_approval"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (approve("bob", &["security"]), Now(Status::Pending)),
            (approve("carol", &["finance"]), Now(Status::Approved)),
        ],
    );
}

#[test]
fn one_approver_may_cover_several_roles() {
    check(
        &review(&["no_audit_modification", "cost_threshold_approval"]),
        &default_config(),
        vec![
            (
                approve("alice", &["security", "finance"]),
                Now(Status::Pending),
            ),
            (approve("bob", &["admin"]), Now(Status::Approved)),
        ],
    );
}

#[test]
fn any_denial_blocks_for_good() {
    let chain = check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (deny("bob", &["finance"]), Now(Status::Denied)),
            (approve("carol", &["admin"]), Refused("already denied")),
            (deny("dave", &["admin"]), Refused("already denied")),
            (withdraw(REQUESTER), Refused("already denied")),
        ],
    );
    assert_eq!(
        chain.denial().map(|d| d.approver.as_str()),
        Some("user:bob")
    );
}

#[test]
fn an_approver_may_change_their_mind_and_deny() {
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (deny("alice", &["admin"]), Now(Status::Denied)),
        ],
    );
}

#[test]
fn a_denial_needs_a_reason() {
    let blank = with(deny("bob", &["admin"]), |a| {
        if let OverrideAction::Deny { reason, .. } = a {
            *reason = " \n ".into();
        }
    });
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![(blank, Refused("`reason` is required"))],
    );
}

#[test]
fn an_approval_for_another_plan_is_refused() {
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (
                for_plan(approve("alice", &["admin"]), other_plan()),
                Refused("is for plan sha256:cdcd"),
            ),
            (
                for_plan(approve("alice", &["admin"]), "sha256:abcd".into()),
                Refused("`plan_hash` must be `sha256:` followed by 64"),
            ),
            (approve("alice", &["admin"]), Now(Status::Pending)),
        ],
    );
}

#[test]
fn signatures_are_checked_against_the_registered_key() {
    let mut corrupted = signed("alice").expect("signed");
    let mut bytes = STANDARD.decode(&corrupted.ed25519).expect("base64");
    bytes[0] ^= 1;
    corrupted.ed25519 = STANDARD.encode(bytes);
    let cases = vec![
        // bob's valid signature, presented as alice's
        (
            signed_by(approve("alice", &["admin"]), signed("bob")),
            Refused("does not verify"),
        ),
        (
            signed_by(approve("alice", &["admin"]), Some(corrupted)),
            Refused("signature of user:alice"),
        ),
        (
            signed_by(
                approve("alice", &["admin"]),
                Some(ApproverSignature {
                    key_id: "k1".into(),
                    ed25519: "not base64!".into(),
                }),
            ),
            Refused("not 64 bytes"),
        ),
        (
            signed_by(
                approve("alice", &["admin"]),
                Some(ApproverSignature {
                    key_id: "k2".into(),
                    ed25519: String::new(),
                }),
            ),
            Refused("no key `k2` is registered for user:alice"),
        ),
        (
            signed_by(approve("alice", &["admin"]), signed("alice")),
            Now(Status::Pending),
        ),
        (approve("bob", &["admin"]), Now(Status::Approved)),
    ];
    let chain = check(&review(&["required_tags"]), &default_config(), cases);
    let recorded = chain.approvals()[0].signature.clone().expect("recorded");
    assert_eq!(recorded.key_id, "k1");
    assert_eq!(chain.approvals()[1].signature, None);
}

#[test]
fn required_signatures_refuse_unsigned_approvals() {
    let config = OverrideConfig {
        require_signatures: true,
        ..OverrideConfig::default()
    };
    check(
        &review(&["required_tags"]),
        &config,
        vec![
            (approve("alice", &["admin"]), Refused("is not signed")),
            (
                signed_by(approve("alice", &["admin"]), signed("alice")),
                Now(Status::Pending),
            ),
            (
                signed_by(approve("bob", &["admin"]), signed("bob")),
                Now(Status::Approved),
            ),
        ],
    );
}

#[test]
fn verify_approver_signature_cases() {
    let d = digest();
    let alice = signer("alice").verifier().public_key();
    let bob = signer("bob").verifier().public_key();
    let good = sign_digest(&d, "user:alice", &signer("alice"), "k1");
    let mut other_request = request();
    other_request.justification.push('!');
    let other_digest = OverrideDigest::of(&other_request).expect("digest");
    type Case<'a> = (
        &'a OverrideDigest,
        &'a str,
        &'a ApproverSignature,
        [u8; 32],
        Result<(), SignatureError>,
    );
    let cases: Vec<Case<'_>> = vec![
        (&d, "user:alice", &good, alice, Ok(())),
        (
            &d,
            "user:alice",
            &good,
            bob,
            Err(SignatureError::DoesNotVerify),
        ),
        (
            &other_digest,
            "user:alice",
            &good,
            alice,
            Err(SignatureError::DoesNotVerify),
        ),
        // Alice's signature, replayed by Bob who registered Alice's public key as his own.
        (
            &d,
            "user:bob",
            &good,
            alice,
            Err(SignatureError::DoesNotVerify),
        ),
    ];
    for (digest, approver, signature, key, expect) in cases {
        assert_eq!(
            verify_approver_signature(digest, approver, signature, &key),
            expect
        );
    }
    let short = ApproverSignature {
        key_id: "k1".into(),
        ed25519: "AAAA".into(),
    };
    assert_eq!(
        verify_approver_signature(&d, "user:alice", &short, &alice),
        Err(SignatureError::Malformed)
    );
}

#[test]
fn a_chain_expires_after_its_time() {
    let day = 24 * HOUR;
    let (mut chain, _) =
        OverrideChain::open(request(), &review(&["required_tags"]), &default_config())
            .expect("opens");
    assert_eq!(chain.expires_at(), T0 + day);
    assert_eq!(chain.status_at(T0 + day - 1), Status::Pending);
    assert_eq!(chain.status_at(T0 + day), Status::Expired);
    assert_eq!(chain.expire(T0 + day - 1), None, "not yet");

    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (
                at(approve("alice", &["admin"]), T0 + HOUR),
                Now(Status::Pending),
            ),
            (
                at(approve("bob", &["admin"]), T0 + day),
                Refused("expired at"),
            ),
            (
                at(approve("bob", &["admin"]), T0 - 1),
                Refused("dated before"),
            ),
        ],
    );

    let _ = chain
        .apply(at(approve("alice", &["admin"]), T0 + HOUR), &keys())
        .expect("accepted");
    let expired = chain.expire(T0 + day + 5).expect("expires");
    assert_eq!(chain.status(), Status::Expired);
    assert_eq!(chain.decided_at(), Some(T0 + day + 5));
    match &expired {
        OverrideEvent::Expired(r) => assert_eq!(r.approvers, ["user:alice"]),
        other => panic!("expected an expiry record, got {other:?}"),
    }
    assert_eq!(chain.expire(T0 + day + 6), None, "recorded once");
    let e = chain
        .apply(at(approve("bob", &["admin"]), T0 + HOUR), &keys())
        .expect_err("decided");
    assert!(matches!(
        e,
        OverrideError::AlreadyDecided {
            status: Status::Expired,
            ..
        }
    ));
}

#[test]
fn the_expiry_is_configurable() {
    let config = OverrideConfig {
        ttl_seconds: 3600,
        ..OverrideConfig::default()
    };
    check(
        &review(&["required_tags"]),
        &config,
        vec![
            (
                at(approve("alice", &["admin"]), T0 + HOUR - 1),
                Now(Status::Pending),
            ),
            (
                at(approve("bob", &["admin"]), T0 + HOUR),
                Refused("expired"),
            ),
        ],
    );
}

#[test]
fn an_approved_chain_does_not_expire() {
    let chain = check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (approve("bob", &["admin"]), Now(Status::Approved)),
        ],
    );
    assert_eq!(chain.status_at(T0 + 1000 * HOUR), Status::Approved);
}

#[test]
fn the_requester_may_withdraw() {
    check(
        &review(&["required_tags"]),
        &default_config(),
        vec![
            (approve("alice", &["admin"]), Now(Status::Pending)),
            (
                withdraw("user:alice"),
                Refused("only the requester user:rita"),
            ),
            (withdraw(REQUESTER), Now(Status::Withdrawn)),
            (approve("bob", &["admin"]), Refused("already withdrawn")),
        ],
    );
}

#[test]
fn min_approvers_is_configurable() {
    for (min, approvals_to_approve) in [(1u32, 1usize), (2, 2), (3, 3)] {
        let config = OverrideConfig {
            min_approvers: min,
            ..OverrideConfig::default()
        };
        let steps = ["alice", "bob", "carol"]
            .iter()
            .take(approvals_to_approve)
            .enumerate()
            .map(|(i, who)| {
                let expect = if i + 1 == approvals_to_approve {
                    Status::Approved
                } else {
                    Status::Pending
                };
                (approve(who, &["admin"]), Now(expect))
            })
            .collect();
        check(&review(&["required_tags"]), &config, steps);
    }
}

// ---- opening a chain ----------------------------------------------------------------------

#[test]
fn only_vetoed_or_escalated_reviews_can_be_overridden() {
    let cases: Vec<(ReviewFacts, Result<(), &str>)> = vec![
        (
            review_with(Some(Outcome::Approved), &[]),
            Err("this review was approved"),
        ),
        (review(&["no_public_production_access"]), Ok(())),
        (review(&["production_change_requires_ticket"]), Ok(())),
        (
            ReviewFacts {
                request_id: "req-other".into(),
                ..review(&["required_tags"])
            },
            Err("review_request_id `req-42` is not the review's `req-other`"),
        ),
        (
            ReviewFacts {
                plan_hash: other_plan(),
                ..review(&["required_tags"])
            },
            Err("plan_hash"),
        ),
        (
            ReviewFacts {
                decision_seq: 7,
                ..review(&["required_tags"])
            },
            Err("decision_seq `1234` is not the review's `7`"),
        ),
    ];
    for (review, expect) in cases {
        let got = OverrideChain::open(request(), &review, &default_config()).map(|_| ());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e} vs {text}"),
            (got, expect) => panic!("{review:?}: got {got:?}, expected {expect:?}"),
        }
    }
}

#[test]
fn validation_errors_name_the_field() {
    type Change = fn(&mut OverrideRequest);
    let cases: Vec<(Change, &str, &str)> = vec![
        (
            |r| r.justification = String::new(),
            "justification",
            "is required",
        ),
        (
            |r| r.business_impact = "  \n\t ".into(),
            "business_impact",
            "is required",
        ),
        (
            |r| r.alternatives_considered.clear(),
            "alternatives_considered",
            "is required",
        ),
        (
            |r| r.risk_acceptance = " ".into(),
            "risk_acceptance",
            "is required",
        ),
        (
            |r| r.justification = "x".repeat(MAX_TEXT_BYTES + 1),
            "justification",
            "at most 4000",
        ),
        (
            |r| r.risk_acceptance = "ok\u{7}".into(),
            "risk_acceptance",
            "control character",
        ),
        (
            |r| r.business_impact = "a\r\nb".into(),
            "business_impact",
            "control character",
        ),
        (
            |r| r.justification = "a\u{85}b".into(),
            "justification",
            "control character",
        ),
        (
            |r| r.requested_by = "alice".into(),
            "requested_by",
            "user principal",
        ),
        (
            |r| r.requested_by = "user:".into(),
            "requested_by",
            "user principal",
        ),
        (
            |r| r.requested_by = "user:al ice".into(),
            "requested_by",
            "user principal",
        ),
        (
            |r| r.requested_by = "agent:bot".into(),
            "requested_by",
            "user principal",
        ),
        (|r| r.id = String::new(), "override_id", "is required"),
        (
            |r| r.review_request_id = "a\nb".into(),
            "review_request_id",
            "control",
        ),
        (|r| r.plan_hash = "ab".repeat(32), "plan_hash", "sha256:"),
        (
            |r| r.plan_hash = format!("sha256:{}", "AB".repeat(32)),
            "plan_hash",
            "lowercase",
        ),
        (|r| r.decision_seq = 1 << 53, "decision_seq", "at most"),
        (|r| r.requested_at = i128::MAX, "requested_at", "years"),
    ];
    for (change, field, reason) in cases {
        let mut r = request();
        change(&mut r);
        match r.validate() {
            Err(OverrideError::InvalidField {
                field: f,
                reason: why,
            }) => {
                assert_eq!(f, field, "{why}");
                assert!(why.contains(reason), "`{field}` {why} vs {reason}");
            }
            other => panic!("{field}: expected an invalid field, got {other:?}"),
        }
        let opened = OverrideChain::open(r, &review(&["required_tags"]), &default_config());
        assert!(
            matches!(opened, Err(OverrideError::InvalidField { field: f, .. }) if f == field),
            "open must refuse a bad {field}"
        );
    }
    let mut fine = request();
    fine.justification = "é".repeat(MAX_TEXT_BYTES / 2);
    assert_eq!(fine.validate(), Ok(()));
}

// ---- requirements -----------------------------------------------------------------------

/// Derives the requirements and compares the required roles (with their sources).
fn check_requirements(review: &ReviewFacts, config: &OverrideConfig, expect: &[(Role, &[&str])]) {
    let got = ApprovalRequirements::derive(review, config).expect("derives");
    let expect: BTreeMap<Role, BTreeSet<String>> = expect
        .iter()
        .map(|(role, sources)| (*role, sources.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
    assert_eq!(got.roles, expect, "{:?}", review.violations);
    assert_eq!(got.min_approvers, config.min_approvers);
}

#[test]
fn required_roles_follow_the_violations() {
    let config = default_config();
    let security: &[(Role, &[&str])] = &[];
    check_requirements(&review(&["required_tags"]), &config, security);
    for policy in [
        "no_public_production_access",
        "no_audit_modification",
        "pci_baseline_requirements",
        "gdpr_data_residency",
    ] {
        let source = format!("policy:{policy}");
        check_requirements(&review(&[policy]), &config, &[(Role::Security, &[&source])]);
    }
    check_requirements(
        &review(&["cost_threshold_approval"]),
        &config,
        &[(
            Role::Finance,
            &["policy:cost_threshold_approval", "approval:finance"],
        )],
    );
    check_requirements(
        &review(&[
            "production_change_requires_ticket",
            "deletion_requires_confirmation",
        ]),
        &config,
        &[(
            Role::Manager,
            &[
                "policy:production_change_requires_ticket",
                "policy:deletion_requires_confirmation",
                "approval:change_ticket",
                "approval:user_deletion_confirmation",
            ],
        )],
    );
    check_requirements(
        &review(&["enable_encryption_by_default"]),
        &config,
        &[(Role::Security, &["policy:enable_encryption_by_default"])],
    );
    // informational violations do not block, so they require nothing
    check_requirements(&review(&["use_reserved_instances"]), &config, &[]);
    // operator policies default to security; unknown ids too (fail secure)
    check_requirements(
        &review(&["operator.no_friday_deploys", "mystery_policy"]),
        &config,
        &[(
            Role::Security,
            &["policy:operator.no_friday_deploys", "policy:mystery_policy"],
        )],
    );
}

#[test]
fn required_approvals_and_unexplained_vetoes_add_roles() {
    let config = default_config();
    let mut escalated = review(&[]);
    escalated.decision = Outcome::Escalated;
    escalated.required_approvals = BTreeSet::from([Approval::Finance, Approval::Security]);
    check_requirements(
        &escalated,
        &config,
        &[
            (Role::Security, &["approval:security"]),
            (Role::Finance, &["approval:finance"]),
        ],
    );
    // vetoed for the intent (scope creep) or a failed component: no violation explains it
    let mut vetoed = review(&["required_tags"]);
    vetoed.decision = Outcome::Vetoed;
    check_requirements(
        &vetoed,
        &config,
        &[(Role::Security, &["review:unexplained_veto"])],
    );
    // an operator violation with a cure needs its cure's role as well
    let mut cured = review(&[]);
    let mut v = violation("operator.big_spend");
    v.cure = Some(Approval::Finance);
    cured.violations = vec![v];
    cured.decision = Outcome::Escalated;
    check_requirements(
        &cured,
        &config,
        &[
            (Role::Security, &["policy:operator.big_spend"]),
            (Role::Finance, &["policy:operator.big_spend"]),
        ],
    );
}

#[test]
fn configuration_adds_roles_to_builtin_policies_and_sets_operator_ones() {
    let config = OverrideConfig {
        policy_roles: BTreeMap::from([
            (
                "no_public_production_access".to_owned(),
                BTreeSet::from([Role::Manager]),
            ),
            (
                "operator.tagging".to_owned(),
                BTreeSet::from([Role::Manager]),
            ),
            ("operator.anyone".to_owned(), BTreeSet::new()),
        ]),
        ..OverrideConfig::default()
    };
    check_requirements(
        &review(&["no_public_production_access"]),
        &config,
        &[
            (Role::Security, &["policy:no_public_production_access"]),
            (Role::Manager, &["config:no_public_production_access"]),
        ],
    );
    check_requirements(
        &review(&["operator.tagging"]),
        &config,
        &[(Role::Manager, &["config:operator.tagging"])],
    );
    check_requirements(&review(&["operator.anyone"]), &config, &[]);
    // an empty entry cannot relax a built-in policy
    let relaxed = OverrideConfig {
        policy_roles: BTreeMap::from([("cost_threshold_approval".to_owned(), BTreeSet::new())]),
        ..OverrideConfig::default()
    };
    check_requirements(
        &review(&["cost_threshold_approval"]),
        &relaxed,
        &[(
            Role::Finance,
            &["policy:cost_threshold_approval", "approval:finance"],
        )],
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let cases: Vec<(OverrideConfig, &str)> = vec![
        (
            OverrideConfig {
                min_approvers: 0,
                ..OverrideConfig::default()
            },
            "min_approvers",
        ),
        (
            OverrideConfig {
                min_approvers: 17,
                ..OverrideConfig::default()
            },
            "min_approvers",
        ),
        (
            OverrideConfig {
                ttl_seconds: 0,
                ..OverrideConfig::default()
            },
            "ttl_seconds",
        ),
        (
            OverrideConfig {
                policy_roles: BTreeMap::from([("no_such_policy".to_owned(), BTreeSet::new())]),
                ..OverrideConfig::default()
            },
            "`no_such_policy`",
        ),
        (
            OverrideConfig {
                policy_roles: BTreeMap::from([("operator.".to_owned(), BTreeSet::new())]),
                ..OverrideConfig::default()
            },
            "`operator.`",
        ),
    ];
    for (config, text) in cases {
        let e = config.validate().expect_err(text);
        assert!(e.to_string().contains(text), "{e}");
        let opened = OverrideChain::open(request(), &review(&["required_tags"]), &config);
        assert!(matches!(opened, Err(OverrideError::Config(_))));
    }
    let parsed: OverrideConfig = serde_json::from_value(json!({
        "min_approvers": 3,
        "require_signatures": true,
        "policy_roles": {"operator.tagging": ["manager"]}
    }))
    .expect("parses");
    assert_eq!(parsed.ttl_seconds, 24 * 3600);
    assert_eq!(parsed.validate(), Ok(()));
}

// ---- digest and records -------------------------------------------------------------------

#[test]
fn the_digest_is_sha256_of_the_documented_canonical_object() {
    let r = request();
    // JCS by hand: keys sorted, no whitespace, "\n" and "\t" escaped
    let canonical = format!(
        concat!(
            r#"{{"alternatives_considered":"VPN peering: 2 weeks lead time.\n\tPrivate link: not offered.","#,
            r#""business_impact":"{}","custos_override":1,"decision_seq":1234,"justification":"{}","#,
            r#""override_id":"ovr-1","plan_hash":"{}","requested_by":"user:rita","#,
            r#""review_request_id":"req-42","risk_acceptance":"{}"}}"#
        ),
        r.business_impact, r.justification, r.plan_hash, r.risk_acceptance
    );
    let expected = hex::encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(digest().to_hex(), expected);
    assert_eq!(
        digest().signing_message("user:ann"),
        format!("custos-override-v1:{expected}:user:ann")
    );
    assert_eq!(OverrideDigest::from_hex(&expected), Some(digest()));

    // every bound field changes it; the time does not
    type Change = fn(&mut OverrideRequest);
    let changes: Vec<Change> = vec![
        |r| r.id.push('x'),
        |r| r.review_request_id.push('x'),
        |r| r.plan_hash = other_plan(),
        |r| r.decision_seq += 1,
        |r| r.justification.push('x'),
        |r| r.business_impact.push('x'),
        |r| r.alternatives_considered.push('x'),
        |r| r.risk_acceptance.push('x'),
        |r| r.requested_by.push('x'),
    ];
    for change in changes {
        let mut r = request();
        change(&mut r);
        assert_ne!(OverrideDigest::of(&r).expect("digest"), digest());
    }
    let mut later = request();
    later.requested_at += HOUR;
    assert_eq!(OverrideDigest::of(&later).expect("digest"), digest());
}

#[test]
fn ledger_records_have_the_documented_shapes() {
    let (mut chain, opened) = OverrideChain::open(
        request(),
        &review(&["no_public_production_access"]),
        &default_config(),
    )
    .expect("opens");
    let keys = keys();
    let mut records = vec![opened];
    for action in [
        signed_by(approve("alice", &["security", "viewer"]), signed("alice")),
        approve("bob", &["admin"]),
    ] {
        records.extend(chain.apply(action, &keys).expect("accepted").events);
    }
    let ledger: Vec<_> = records
        .iter()
        .map(|r| r.ledger_event().expect("encodes"))
        .collect();
    let shapes: Vec<(&str, &str, &str, &str, Severity)> = ledger
        .iter()
        .map(|l| {
            (
                l.event_type,
                l.action,
                l.actor.as_str(),
                l.outcome,
                l.severity,
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (
                EVENT_REQUESTED,
                "request",
                REQUESTER,
                "success",
                Severity::High
            ),
            (
                EVENT_APPROVAL,
                "approve",
                "user:alice",
                "success",
                Severity::Medium
            ),
            (
                EVENT_APPROVAL,
                "approve",
                "user:bob",
                "success",
                Severity::Medium
            ),
            (
                EVENT_APPROVED,
                "allow",
                "system",
                "success",
                Severity::Critical
            ),
        ]
    );
    assert_eq!(EVENT_APPROVED, "override_approved");

    let requested = &ledger[0].data;
    for key in [
        "override_id",
        "review_request_id",
        "plan_hash",
        "decision_seq",
        "requested_by",
        "justification",
        "business_impact",
        "alternatives_considered",
        "risk_acceptance",
        "requested_at",
        "review_decision",
        "digest",
        "requirements",
        "expires_at",
    ] {
        assert!(
            requested.get(key).is_some(),
            "override_requested lacks {key}"
        );
    }
    assert_eq!(requested["requested_at"], "2026-11-18T11:06:40.000000000Z");
    assert_eq!(requested["expires_at"], "2026-11-19T11:06:40.000000000Z");
    assert_eq!(requested["digest"], digest().to_hex());
    assert_eq!(
        requested["requirements"],
        json!({
            "min_approvers": 2,
            "roles": {"security": ["policy:no_public_production_access"]},
            "require_signatures": false
        })
    );
    let approval = &ledger[1].data;
    assert_eq!(
        approval["roles"],
        json!(["security"]),
        "unknown roles are not recorded"
    );
    assert_eq!(approval["signature"]["key_id"], "k1");
    assert!(approval["signature"]["public_key"].is_string());
    assert!(ledger[2].data.get("signature").is_none());
    let granted = &ledger[3].data;
    assert_eq!(granted["approvers"][0]["approver"], "user:alice");
    assert_eq!(granted["approvers"][1]["approver"], "user:bob");
    assert_eq!(granted["plan_hash"], plan());
    assert_eq!(granted["decision_seq"], 1234);
    assert_eq!(granted["review_decision"], "vetoed");

    // denial, withdrawal and expiry records
    let outcomes = |action: Option<OverrideAction>| {
        let (mut chain, _) =
            OverrideChain::open(request(), &review(&["required_tags"]), &default_config())
                .expect("opens");
        match action {
            Some(a) => chain.apply(a, &keys).expect("accepted").events,
            None => chain.expire(T0 + 48 * HOUR).into_iter().collect(),
        }
        .iter()
        .map(|r| {
            let l = r.ledger_event().expect("encodes");
            (l.event_type, l.action, l.actor, l.outcome, l.severity)
        })
        .collect::<Vec<_>>()
    };
    assert_eq!(
        outcomes(Some(deny("bob", &["security"]))),
        [
            (
                EVENT_DENIAL,
                "deny",
                "user:bob".to_owned(),
                "denied",
                Severity::Medium
            ),
            (
                EVENT_DENIED,
                "deny",
                "system".to_owned(),
                "denied",
                Severity::Medium
            ),
        ]
    );
    assert_eq!(
        outcomes(Some(withdraw(REQUESTER))),
        [(
            EVENT_WITHDRAWN,
            "withdraw",
            REQUESTER.to_owned(),
            "success",
            Severity::Low
        )]
    );
    assert_eq!(
        outcomes(None),
        [(
            EVENT_EXPIRED,
            "expire",
            "system".to_owned(),
            "success",
            Severity::Low
        )]
    );

    assert!(matches!(
        OverrideEvent::from_ledger("review_decision", &json!({})),
        Err(OverrideError::UnknownEvent(_))
    ));
    assert!(matches!(
        OverrideEvent::from_ledger(EVENT_APPROVAL, &json!({"override_id": "x"})),
        Err(OverrideError::Encoding(_))
    ));
}

#[test]
fn rebuild_refuses_records_that_do_not_replay() {
    let (mut chain, opened) =
        OverrideChain::open(request(), &review(&["required_tags"]), &default_config())
            .expect("opens");
    let keys = keys();
    let mut records = vec![opened.clone()];
    for action in [
        signed_by(approve("alice", &["admin"]), signed("alice")),
        approve("bob", &["admin"]),
    ] {
        records.extend(chain.apply(action, &keys).expect("accepted").events);
    }
    assert_eq!(OverrideChain::rebuild(&records).expect("rebuilds"), chain);
    // the trailing outcome may be missing (it follows from the approvals)
    assert_eq!(
        OverrideChain::rebuild(&records[..3]).expect("rebuilds"),
        chain
    );

    type Tamper = fn(&mut Vec<OverrideEvent>);
    let cases: Vec<(Tamper, &str)> = vec![
        (|r| r.clear(), "no records"),
        (
            |r| {
                r.remove(0);
            },
            "first record is override_approval",
        ),
        (
            |r| {
                let forged = signed("bob").map(|s| s.ed25519).unwrap_or_default();
                if let OverrideEvent::Approval(a) = &mut r[1]
                    && let Some(s) = a.signature.as_mut()
                {
                    s.ed25519 = forged;
                }
            },
            "does not verify",
        ),
        (
            |r| {
                if let OverrideEvent::Approval(a) = &mut r[2] {
                    a.approver = "user:alice".into();
                }
            },
            "already approved",
        ),
        (
            |r| {
                if let OverrideEvent::Approved(g) = &mut r[3] {
                    g.approvers.pop();
                }
            },
            "expected the override_approved record",
        ),
        (
            |r| {
                if let OverrideEvent::Requested(q) = &mut r[0] {
                    q.request.justification.push('!');
                }
            },
            "recorded digest",
        ),
        (
            |r| {
                if let OverrideEvent::Approval(a) = &mut r[2] {
                    a.override_id = "ovr-2".into();
                }
            },
            "of override ovr-2",
        ),
        (
            |r| {
                let again = r[0].clone();
                r.insert(1, again);
            },
            "unexpected override_requested",
        ),
    ];
    for (tamper, text) in cases {
        let mut tampered = records.clone();
        tamper(&mut tampered);
        let e = OverrideChain::rebuild(&tampered).expect_err(text);
        assert!(e.to_string().contains(text), "{e} vs {text}");
    }
}

// ---- property: random action sequences ------------------------------------------------------

const PEOPLE: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "rita"];

#[derive(Clone, Debug)]
enum Op {
    Approve {
        who: usize,
        roles: u8,
        right_plan: bool,
        signature: u8,
        dt: i128,
    },
    Deny {
        who: usize,
        roles: u8,
        dt: i128,
    },
    Withdraw {
        who: usize,
        dt: i128,
    },
    Expire {
        dt: i128,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PEOPLE.len();
    let dt = -MINUTE..30 * HOUR;
    prop_oneof![
        6 => (who.clone(), any::<u8>(), prop::bool::weighted(0.9), 0u8..4, dt.clone())
            .prop_map(|(who, roles, right_plan, signature, dt)| Op::Approve {
                who, roles, right_plan, signature, dt
            }),
        1 => (who.clone(), any::<u8>(), dt.clone())
            .prop_map(|(who, roles, dt)| Op::Deny { who, roles, dt }),
        1 => (who, dt.clone()).prop_map(|(who, dt)| Op::Withdraw { who, dt }),
        1 => dt.prop_map(|dt| Op::Expire { dt }),
    ]
}

/// Role names from a bit mask (bit 4: an unknown role).
fn role_names(mask: u8) -> Vec<String> {
    ["admin", "security", "finance", "manager", "auditor"]
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| (*r).to_owned())
        .collect()
}

fn signature_for(who: &str, choice: u8) -> Option<ApproverSignature> {
    match choice {
        0 => None,
        1 => signed(who),
        2 => signed(if who == "alice" { "bob" } else { "alice" }).map(|mut s| {
            s.key_id = "k1".into();
            s
        }),
        _ => Some(ApproverSignature {
            key_id: "k9".into(),
            ed25519: "AAAA".into(),
        }),
    }
}

fn to_action(op: &Op) -> Option<OverrideAction> {
    Some(match op {
        Op::Approve {
            who,
            roles,
            right_plan,
            signature,
            dt,
        } => OverrideAction::Approve {
            approver: format!("user:{}", PEOPLE[*who]),
            roles: role_names(*roles),
            plan_hash: if *right_plan { plan() } else { other_plan() },
            comment: "ok".into(),
            signature: signature_for(PEOPLE[*who], *signature),
            at: T0 + dt,
        },
        Op::Deny { who, roles, dt } => OverrideAction::Deny {
            approver: format!("user:{}", PEOPLE[*who]),
            roles: role_names(*roles),
            reason: "no".into(),
            at: T0 + dt,
        },
        Op::Withdraw { who, dt } => OverrideAction::Withdraw {
            by: format!("user:{}", PEOPLE[*who]),
            reason: "not needed".into(),
            at: T0 + dt,
        },
        Op::Expire { .. } => return None,
    })
}

/// The policies the property picks its review from.
const POLICIES: [&str; 6] = [
    "no_public_production_access",
    "cost_threshold_approval",
    "production_change_requires_ticket",
    "required_tags",
    "operator.custom",
    "gdpr_data_residency",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_actions_never_approve_without_the_requirements(
        policies in prop::sample::subsequence(POLICIES.to_vec(), 0..=3),
        min_approvers in 1u32..=4,
        require_signatures in any::<bool>(),
        ops in prop::collection::vec(op(), 0..24),
    ) {
        let config = OverrideConfig {
            min_approvers,
            require_signatures,
            ..OverrideConfig::default()
        };
        let review = review_with(Some(Outcome::Vetoed), &policies);
        let (mut chain, opened) = OverrideChain::open(request(), &review, &config).expect("opens");
        let required: BTreeSet<Role> = chain.requirements().roles.keys().copied().collect();
        let keys = keys();
        let mut records = vec![opened];
        for op in &ops {
            let before = chain.clone();
            let result = match (to_action(op), op) {
                (Some(action), _) => chain.apply(action, &keys).map(|t| t.events),
                (None, Op::Expire { dt }) => Ok(chain.expire(T0 + dt).into_iter().collect()),
                (None, _) => Ok(Vec::new()),
            };
            match result {
                Ok(events) => records.extend(events),
                Err(_) => prop_assert_eq!(&chain, &before, "a refused action changed the chain"),
            }
            if before.status().is_final() {
                prop_assert_eq!(&chain, &before, "a decided chain changed");
            }
            // whatever happened, approval only with the requirements met
            let approvers: BTreeSet<&str> =
                chain.approvals().iter().map(|a| a.approver.as_str()).collect();
            prop_assert_eq!(approvers.len(), chain.approvals().len(), "approvers are distinct");
            prop_assert!(!approvers.contains(REQUESTER));
            for a in chain.approvals() {
                prop_assert_eq!(&a.plan_hash, &plan());
                prop_assert!(!a.roles.is_empty());
                prop_assert!(!require_signatures || a.signature.is_some());
            }
            if chain.status() == Status::Approved {
                let held: BTreeSet<Role> =
                    chain.approvals().iter().flat_map(|a| a.roles.iter().copied()).collect();
                prop_assert!(approvers.len() >= min_approvers as usize);
                prop_assert!(required.is_subset(&held), "required {:?}, held {:?}", required, held);
                prop_assert!(chain.denial().is_none());
            }
        }
        prop_assert_eq!(OverrideChain::rebuild(&records).expect("rebuilds"), chain);
    }
}
