//! The deterministic intent verifier (SPEC §4.3): the four SPEC §4 scenarios, a table of
//! requests against plans, and a property test over arbitrary requests.

use std::path::PathBuf;

use custos_gate::intent::deterministic::assess;
use custos_gate::intent::{IntentAssessment, IntentInput, IntentOutcome, Match, verify};
use custos_gate::plan::{NormalizedPlan, normalize_value};
use custos_gate::request::Metadata;
use proptest::prelude::*;
use serde_json::{Value, json};

fn scenario(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(format!("scenario-{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn normalize(plan: &Value, metadata: &Metadata, request: &str) -> NormalizedPlan {
    normalize_value(plan, metadata, request, None).unwrap_or_else(|e| panic!("{plan}: {e}"))
}

fn run(request: &str, plan: &Value, metadata: &Metadata) -> IntentAssessment {
    let normalized = normalize(plan, metadata, request);
    assess(request, metadata, &normalized)
}

fn addresses(assessment: &IntentAssessment) -> Vec<&str> {
    assessment
        .extra_actions
        .iter()
        .map(|a| a.address.as_str())
        .collect()
}

const ML_REQUEST: &str = "Add a new microsegment for machine learning workloads with GPU instances";

#[test]
fn scenario_a_ml_segment_is_exact() {
    for metadata in [
        Metadata::default(),
        Metadata {
            environment: Some("nonprod-ml".to_owned()),
            ..Metadata::default()
        },
    ] {
        let got = run(ML_REQUEST, &scenario("a"), &metadata);
        assert_eq!(got.match_, Match::Exact, "{got:#?}");
        assert!(got.confidence >= 0.9, "{got:#?}");
        assert!(got.extra_actions.is_empty(), "{got:#?}");
        assert!(got.missing_actions.is_empty(), "{got:#?}");
        assert!(got.safety_concerns.is_empty(), "{got:#?}");
        assert!(got.approvable(0.9));
        assert_eq!(got.verifier.to_string(), "deterministic/1");
    }
}

#[test]
fn scenario_b_pci_firewall_is_scope_creep() {
    for metadata in [
        Metadata::default(),
        Metadata {
            environment: Some("nonprod-ml".to_owned()),
            ..Metadata::default()
        },
    ] {
        let got = run(ML_REQUEST, &scenario("b"), &metadata);
        assert!(
            matches!(got.match_, Match::Partial | Match::Mismatch),
            "{got:#?}"
        );
        assert_eq!(
            addresses(&got),
            ["aws_security_group.pci_prod_firewall"],
            "{got:#?}"
        );
        let reason = &got.extra_actions[0].reason;
        assert!(reason.contains("0.0.0.0/0"), "{reason}");
        assert!(reason.contains("pci"), "{reason}");
        assert!(
            got.safety_concerns
                .iter()
                .any(|c| c.contains("pci_prod_firewall") && c.contains("internet")),
            "{got:#?}"
        );
        assert!(got.missing_actions.is_empty(), "{got:#?}");
        assert!(got.confidence < 0.9, "{got:#?}");
        assert!(!got.approvable(0.0));
    }
}

#[test]
fn scenario_c_dev_cleanup_is_exact() {
    let got = run(
        "Clean up old dev environments",
        &scenario("c"),
        &Metadata::default(),
    );
    assert_eq!(got.match_, Match::Exact, "{got:#?}");
    assert!(got.confidence >= 0.9, "{got:#?}");
    assert!(got.safety_concerns.is_empty(), "{got:#?}");
}

#[test]
fn scenario_d_black_friday_scale_up_is_exact() {
    let got = run(
        "Scale up our production API to handle Black Friday traffic",
        &scenario("d"),
        &Metadata::default(),
    );
    assert_eq!(got.match_, Match::Exact, "{got:#?}");
    assert!(got.confidence >= 0.9, "{got:#?}");
    assert!(got.safety_concerns.is_empty(), "{got:#?}");
}

#[test]
fn assessments_serialise_to_the_spec_intent_object() {
    let got = run(ML_REQUEST, &scenario("b"), &Metadata::default());
    let value = serde_json::to_value(&got).unwrap_or_else(|e| panic!("{e}"));
    for key in [
        "match",
        "confidence",
        "extra_actions",
        "missing_actions",
        "safety_concerns",
        "verifier",
    ] {
        assert!(value.get(key).is_some(), "{key} missing in {value}");
    }
    assert_eq!(value["match"], "partial");
    assert_eq!(
        value["extra_actions"][0]["address"],
        "aws_security_group.pci_prod_firewall"
    );
    assert_eq!(value["extra_actions"][0]["verb"], "update");
    assert_eq!(
        value["verifier"],
        json!({"name": "deterministic", "version": "1"})
    );
    let back: IntentAssessment = serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, got);
}

#[tokio::test]
async fn without_an_llm_verify_is_the_deterministic_assessment() {
    let metadata = Metadata::default();
    let plan = normalize(&scenario("a"), &metadata, ML_REQUEST);
    let input = IntentInput {
        user_request: ML_REQUEST,
        metadata: &metadata,
        plan: &plan,
    };
    let outcome = verify(input, None).await;
    assert_eq!(
        outcome,
        IntentOutcome::Assessed(assess(ML_REQUEST, &metadata, &plan))
    );
    assert!(outcome.approvable(0.9));
    assert_eq!(outcome.failure(), None);
}

// ---- table ---------------------------------------------------------------------------------

/// A generic-plan action.
fn act(id: &str, verb: &str, resource_type: &str, name: &str, env: &str) -> Value {
    let mut action = json!({"id": id, "verb": verb, "resource_type": resource_type, "name": name});
    if !env.is_empty() {
        action["environment"] = json!(env);
    }
    action
}

/// `action` with `key` set to `value`.
fn with(mut action: Value, key: &str, value: Value) -> Value {
    action[key] = value;
    action
}

fn plan(actions: Vec<Value>) -> Value {
    json!({ "actions": actions })
}

/// What a case expects.
#[derive(Debug)]
struct Expect {
    match_: Match,
    /// Addresses of the extra actions, in plan order.
    extra: &'static [&'static str],
    missing: usize,
    concerns: usize,
    /// Inclusive bounds on the confidence.
    confidence: (f64, f64),
}

const EXACT: Expect = Expect {
    match_: Match::Exact,
    extra: &[],
    missing: 0,
    concerns: 0,
    confidence: (0.95, 1.0),
};

fn check(request: &str, metadata: &Metadata, plan: &Value, expect: &Expect) {
    let got = run(request, plan, metadata);
    let summary = format!("request {request:?}\nexpected {expect:?}\ngot {got:#?}");
    assert_eq!(got.match_, expect.match_, "{summary}");
    assert_eq!(addresses(&got), expect.extra, "{summary}");
    assert_eq!(got.missing_actions.len(), expect.missing, "{summary}");
    assert_eq!(got.safety_concerns.len(), expect.concerns, "{summary}");
    let (low, high) = expect.confidence;
    assert!(
        (low..=high).contains(&got.confidence),
        "confidence out of [{low}, {high}]\n{summary}"
    );
    // Invariants of every assessment.
    if got.match_ == Match::Exact {
        assert!(got.extra_actions.is_empty() && got.missing_actions.is_empty());
        assert!(got.safety_concerns.is_empty());
    }
}

#[test]
fn requests_against_plans() {
    let none = Metadata::default();
    let dev_metadata = Metadata {
        environment: Some("dev".to_owned()),
        ..Metadata::default()
    };
    let instance = |id: &str, env: &str, quantity: u64| {
        with(
            act(id, "create", "aws_instance", id, env),
            "quantity",
            json!(quantity),
        )
    };
    let vpc_delete = |name: &str, env: &str| act(name, "delete", "aws_vpc", name, env);
    let public_sg = |id: &str, verb: &str, env: &str| {
        with(
            act(id, verb, "aws_security_group", id, env),
            "ingress",
            json!([{"cidr": "0.0.0.0/0", "port": 443, "protocol": "tcp"}]),
        )
    };
    let pci_db = with(
        act(
            "orders-db",
            "update",
            "aws_db_instance",
            "orders-db",
            "production",
        ),
        "data_classes",
        json!(["pci"]),
    );
    let cases: Vec<(&str, &Metadata, Value, Expect)> = vec![
        // 1. What was asked, in the environment asked.
        (
            "Add two GPU instances in dev",
            &none,
            plan(vec![instance("gpu", "dev", 2)]),
            EXACT,
        ),
        // 2. Extra action of a kind nobody asked for.
        (
            "Add two GPU instances in dev",
            &none,
            plan(vec![
                instance("gpu", "dev", 2),
                act("admin-role", "create", "aws_iam_role", "admin-role", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["admin-role"],
                confidence: (0.4, 0.6),
                ..EXACT
            },
        ),
        // 3. Missing action.
        (
            "Create a bucket and a database in staging",
            &none,
            plan(vec![act(
                "b",
                "create",
                "aws_s3_bucket",
                "assets",
                "staging",
            )]),
            Expect {
                match_: Match::Partial,
                missing: 1,
                confidence: (0.4, 0.6),
                ..EXACT
            },
        ),
        // 4. Wrong environment, and production: a safety concern.
        (
            "Delete the old dev VPCs",
            &none,
            plan(vec![vpc_delete("core-vpc", "production")]),
            Expect {
                match_: Match::Mismatch,
                extra: &["core-vpc"],
                missing: 1,
                concerns: 1,
                confidence: (0.0, 0.0),
            },
        ),
        // 5. Wrong non-production environment: mismatch, no production concern.
        (
            "Delete the staging database",
            &none,
            plan(vec![act(
                "db",
                "delete",
                "aws_db_instance",
                "orders",
                "dev",
            )]),
            Expect {
                match_: Match::Mismatch,
                extra: &["db"],
                missing: 1,
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 6. Fewer than asked.
        (
            "Delete three dev VPCs",
            &none,
            plan(vec![
                vpc_delete("dev-vpc-1", "dev"),
                vpc_delete("dev-vpc-2", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                missing: 1,
                confidence: (0.4, 0.6),
                ..EXACT
            },
        ),
        // 7. More deleted than asked: a safety concern.
        (
            "Delete two dev VPCs",
            &none,
            plan(vec![
                vpc_delete("dev-vpc-1", "dev"),
                vpc_delete("dev-vpc-2", "dev"),
                vpc_delete("dev-vpc-3", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                concerns: 1,
                confidence: (0.3, 0.5),
                ..EXACT
            },
        ),
        // 8. More created than asked: partial, no concern.
        (
            "Add 2 instances in dev",
            &none,
            plan(vec![instance("web", "dev", 4)]),
            Expect {
                match_: Match::Partial,
                confidence: (0.3, 0.5),
                ..EXACT
            },
        ),
        // 9. An unrelated resource kind.
        (
            "Create a bucket in dev",
            &none,
            plan(vec![act(
                "db",
                "create",
                "aws_db_instance",
                "orders",
                "dev",
            )]),
            Expect {
                match_: Match::Mismatch,
                extra: &["db"],
                missing: 1,
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 10. Delete where a create was asked.
        (
            "Create two dev VPCs",
            &none,
            plan(vec![
                vpc_delete("dev-vpc-1", "dev"),
                vpc_delete("dev-vpc-2", "dev"),
            ]),
            Expect {
                match_: Match::Mismatch,
                extra: &["dev-vpc-1", "dev-vpc-2"],
                missing: 1,
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 11. An empty plan for a real request.
        (
            "Add a bucket in dev",
            &none,
            plan(vec![]),
            Expect {
                match_: Match::Mismatch,
                missing: 1,
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 12. No actionable verb: plausible, but low confidence and partial.
        (
            "GPU instances for the ML team",
            &none,
            plan(vec![instance("gpu", "dev", 1)]),
            Expect {
                match_: Match::Partial,
                confidence: (0.1, 0.3),
                ..EXACT
            },
        ),
        // 13. A request that says nothing.
        (
            "hello",
            &none,
            plan(vec![instance("gpu", "dev", 1)]),
            Expect {
                match_: Match::Partial,
                extra: &["gpu"],
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 14. Nothing asked, nothing planned: still not exact.
        (
            "",
            &none,
            plan(vec![]),
            Expect {
                match_: Match::Partial,
                confidence: (0.3, 0.3),
                ..EXACT
            },
        ),
        // 15. Public ingress on production nobody asked for.
        (
            "Add a web server in production",
            &none,
            plan(vec![
                instance("web", "production", 1),
                public_sg("web-sg", "create", "production"),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["web-sg"],
                concerns: 1,
                confidence: (0.3, 0.45),
                ..EXACT
            },
        ),
        // 16. Public ingress asked for in so many words (policy, not intent, decides).
        (
            "Open port 443 on the production API firewall to the internet",
            &none,
            plan(vec![public_sg("api-sg", "update", "production")]),
            EXACT,
        ),
        // 17. PCI data the request never mentions.
        (
            "Scale up the production database",
            &none,
            plan(vec![pci_db.clone()]),
            Expect {
                match_: Match::Mismatch,
                extra: &["orders-db"],
                missing: 1,
                concerns: 1,
                confidence: (0.0, 0.0),
            },
        ),
        // 18. The same, mentioned.
        (
            "Scale up the production payments database",
            &none,
            plan(vec![pci_db]),
            EXACT,
        ),
        // 19. A named resource: only it.
        (
            "Delete dev-vpc-1",
            &none,
            plan(vec![
                vpc_delete("dev-vpc-1", "dev"),
                vpc_delete("dev-vpc-2", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["dev-vpc-2"],
                confidence: (0.45, 0.55),
                ..EXACT
            },
        ),
        // 20. A named resource the plan does not touch.
        (
            "Delete dev-vpc-4",
            &none,
            plan(vec![vpc_delete("dev-vpc-1", "dev")]),
            Expect {
                match_: Match::Mismatch,
                extra: &["dev-vpc-1"],
                missing: 2,
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 21. A replace is destructive: an update does not explain it.
        (
            "Resize the dev database",
            &none,
            plan(vec![act(
                "db",
                "replace",
                "aws_db_instance",
                "orders",
                "dev",
            )]),
            Expect {
                match_: Match::Mismatch,
                extra: &["db"],
                missing: 1,
                confidence: (0.0, 0.0),
                ..EXACT
            },
        ),
        // 22. ... but a rotation does.
        (
            "Rotate the dev API key",
            &none,
            plan(vec![act(
                "key",
                "replace",
                "aws_iam_access_key",
                "ci",
                "dev",
            )]),
            EXACT,
        ),
        // 23. A cluster brings its node groups, roles and security groups.
        (
            "Create an EKS cluster in dev",
            &none,
            plan(vec![
                act("eks", "create", "aws_eks_cluster", "ml", "dev"),
                act("nodes", "create", "aws_eks_node_group", "ml-nodes", "dev"),
                act("role", "create", "aws_iam_role", "ml-eks", "dev"),
                act("sg", "create", "aws_security_group", "ml-eks", "dev"),
            ]),
            Expect {
                confidence: (0.95, 0.99),
                ..EXACT
            },
        ),
        // 24. Tearing down an environment never covers its audit trail.
        (
            "Tear down the dev environment",
            &none,
            plan(vec![
                vpc_delete("dev-vpc-1", "dev"),
                act("trail", "delete", "aws_cloudtrail", "dev-trail", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["trail"],
                confidence: (0.45, 0.5),
                ..EXACT
            },
        ),
        // 25. A verb without an object: vague.
        (
            "Scale it up for Black Friday",
            &none,
            plan(vec![act(
                "asg",
                "update",
                "aws_autoscaling_group",
                "api",
                "production",
            )]),
            Expect {
                match_: Match::Partial,
                confidence: (0.5, 0.6),
                ..EXACT
            },
        ),
        // 26. The metadata's environment when the words name none.
        (
            "Add two GPU instances",
            &dev_metadata,
            plan(vec![instance("gpu", "production", 2)]),
            Expect {
                match_: Match::Mismatch,
                extra: &["gpu"],
                missing: 1,
                concerns: 1,
                confidence: (0.0, 0.0),
            },
        ),
        // 27. Two intents, both done.
        (
            "Create a bucket and delete the old database in dev",
            &none,
            plan(vec![
                act("b", "create", "aws_s3_bucket", "assets", "dev"),
                act("db", "delete", "aws_db_instance", "legacy", "dev"),
            ]),
            EXACT,
        ),
        // 28. Reads and no-ops are not changes.
        (
            "Add a bucket in dev",
            &none,
            plan(vec![
                act("b", "create", "aws_s3_bucket", "assets", "dev"),
                act("ami", "read", "aws_ami", "ubuntu", "production"),
                act("vpc", "no-op", "aws_vpc", "core", "production"),
            ]),
            EXACT,
        ),
        // 29. No environment named, but the plan mixes production into a dev change.
        (
            "Add GPU instances",
            &none,
            plan(vec![
                instance("gpu", "dev", 1),
                instance("gpu-prod", "production", 1),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["gpu-prod"],
                concerns: 1,
                confidence: (0.3, 0.4),
                ..EXACT
            },
        ),
        // 30. The companion rule does not stretch to another family's update.
        (
            "Add a subnet in dev",
            &none,
            plan(vec![
                act("subnet", "create", "aws_subnet", "ml", "dev"),
                act("sg", "update", "aws_security_group", "shared", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["sg"],
                confidence: (0.45, 0.55),
                ..EXACT
            },
        ),
        // 31. Adding a rule amends an existing firewall: its update is what was asked.
        (
            "Add a rule to the dev API security group for port 8443",
            &none,
            plan(vec![with(
                act("api-sg", "update", "aws_security_group", "api", "dev"),
                "ingress",
                json!([{"cidr": "10.0.0.0/8", "port": 8443, "protocol": "tcp"}]),
            )]),
            EXACT,
        ),
        // 32. Adding to a segment may update it (its route table) as a companion.
        (
            "Add two instances to the dev ML segment",
            &none,
            plan(vec![
                instance("gpu", "dev", 2),
                act("rt", "update", "aws_route_table", "ml", "dev"),
            ]),
            Expect {
                confidence: (0.97, 0.98),
                ..EXACT
            },
        ),
        // 33. ... but the context does not explain creating another of it.
        (
            "Add two instances to the dev ML segment",
            &none,
            plan(vec![
                instance("gpu", "dev", 2),
                act("vpc", "create", "aws_vpc", "ml-2", "dev"),
            ]),
            Expect {
                match_: Match::Partial,
                extra: &["vpc"],
                confidence: (0.45, 0.55),
                ..EXACT
            },
        ),
        // 34. Removing a rule updates the firewall that holds it.
        (
            "Remove the SSH rule from the dev bastion security group",
            &none,
            plan(vec![act(
                "bastion-sg",
                "update",
                "aws_security_group",
                "bastion",
                "dev",
            )]),
            EXACT,
        ),
    ];
    assert!(cases.len() >= 20);
    for (request, metadata, plan, expect) in &cases {
        check(request, metadata, plan, expect);
    }
}

#[test]
fn terraform_plans_are_read_the_same_way() {
    let plan = json!({
        "format_version": "1.2",
        "resource_changes": [{
            "address": "aws_security_group.web",
            "mode": "managed",
            "type": "aws_security_group",
            "name": "web",
            "change": {
                "actions": ["create"],
                "before": null,
                "after": {"name": "dev-web", "tags": {"Environment": "dev"}, "ingress": []}
            }
        }]
    });
    check(
        "Add a security group for the dev web servers",
        &Metadata::default(),
        &plan,
        &EXACT,
    );
}

// ---- properties ----------------------------------------------------------------------------

/// Words the verifier reacts to, to build requests that exercise it.
const WORDS: &[&str] = &[
    "add",
    "delete",
    "scale",
    "up",
    "tear",
    "down",
    "rotate",
    "three",
    "2",
    "a",
    "the",
    "to",
    "in",
    "with",
    "and",
    ",",
    ".",
    "dev",
    "prod",
    "nonprod-ml",
    "vpc",
    "vpcs",
    "instances",
    "gpu",
    "security",
    "group",
    "api",
    "environment",
    "dev-vpc-1",
    "`x`",
    "public",
    "pci",
    "for",
    "of",
    "couple",
    "machine",
    "learning",
    "0.0.0.0/0",
    "🙂",
    "\n",
];

fn check_bounds(request: &str, plan: &NormalizedPlan) {
    let got = assess(request, &Metadata::default(), plan);
    assert!(
        got.confidence.is_finite() && (0.0..=1.0).contains(&got.confidence),
        "{request:?}: {}",
        got.confidence
    );
    if got.match_ == Match::Exact {
        assert!(got.extra_actions.is_empty() && got.missing_actions.is_empty());
        assert!(got.safety_concerns.is_empty());
    }
}

proptest! {
    #[test]
    fn arbitrary_requests_never_panic(request in any::<String>()) {
        for name in ["a", "b", "c", "d"] {
            let plan = normalize(&scenario(name), &Metadata::default(), "");
            check_bounds(&request, &plan);
        }
    }

    #[test]
    fn word_soup_requests_never_panic(words in prop::collection::vec(prop::sample::select(WORDS), 0..16)) {
        let request = words.join(" ");
        for name in ["a", "b", "c", "d"] {
            let plan = normalize(&scenario(name), &Metadata::default(), &request);
            check_bounds(&request, &plan);
        }
    }
}
