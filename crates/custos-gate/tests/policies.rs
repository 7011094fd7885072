//! The policy layer (SPEC §4.2): each hard policy on violating and clean plans, the
//! kind/cure mapping, soft policies and `not_evaluated`, operator policies and their limits,
//! fail-secure errors, the bundle hash, the Rego unit-test runner, and evaluation time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use custos_gate::plan::{
    Controls, Cost, CostSource, Environment, EnvironmentSource, Ingress, NormalizedPlan,
    PlanFormat, PlannedAction, Verb,
};
use custos_gate::policy::{
    Approval, BUILTIN_POLICIES, Effect, OperatorPolicies, PolicyEngine, PolicyError, PolicyInput,
    PolicyKind, PolicyOutcome, RegoPolicyEngine, Severity, SoftPolicyConfig, SoftPolicyStatus,
    TestOutcome, Violation, run_builtin_policy_tests, run_policy_tests,
};
use custos_gate::request::{Metadata, ReviewRequest};
use serde_json::{Value, json};

// ---- building plans ---------------------------------------------------------------------

fn prod() -> Environment {
    Environment {
        name: "prod".into(),
        production: true,
        source: EnvironmentSource::Tag,
    }
}

fn dev() -> Environment {
    Environment {
        name: "dev".into(),
        production: false,
        source: EnvironmentSource::Tag,
    }
}

/// A production action on an unremarkable resource in an EU region; tests change what they
/// are about.
fn action(address: &str, verb: Verb) -> PlannedAction {
    let (resource_type, name) = address.split_once('.').unwrap_or(("generic", address));
    PlannedAction {
        address: address.into(),
        verb,
        resource_type: resource_type.into(),
        name: name.into(),
        environment: prod(),
        region: Some("eu-west-1".into()),
        quantity: 1,
        tags: BTreeMap::new(),
        ingress: Vec::new(),
        data_classes: BTreeSet::new(),
        controls: Controls::default(),
        monthly_cost: None,
        before: Value::Null,
        after: Value::Null,
        changed: Vec::new(),
    }
}

fn in_dev(mut a: PlannedAction) -> PlannedAction {
    a.environment = dev();
    a
}

fn with_classes(mut a: PlannedAction, classes: &[&str]) -> PlannedAction {
    a.data_classes = classes.iter().map(|c| c.to_string()).collect();
    a
}

fn with_ingress(mut a: PlannedAction, cidr: &str, ports: (u16, u16)) -> PlannedAction {
    a.ingress.push(Ingress {
        cidr: cidr.into(),
        public: cidr == "0.0.0.0/0" || cidr == "::/0",
        from_port: Some(ports.0),
        to_port: Some(ports.1),
        protocol: Some("tcp".into()),
    });
    a
}

fn with_region(mut a: PlannedAction, region: Option<&str>) -> PlannedAction {
    a.region = region.map(String::from);
    a
}

fn with_controls(mut a: PlannedAction, controls: [Option<bool>; 4]) -> PlannedAction {
    let [encryption, logging, firewall, isolation] = controls;
    a.controls = Controls {
        encryption,
        logging,
        firewall,
        isolation,
    };
    a
}

fn plan(actions: Vec<PlannedAction>) -> NormalizedPlan {
    plan_costing(actions, None, None)
}

fn plan_costing(
    actions: Vec<PlannedAction>,
    monthly: Option<f64>,
    monthly_increase: Option<f64>,
) -> NormalizedPlan {
    let regions = actions.iter().filter_map(|a| a.region.clone()).collect();
    NormalizedPlan {
        format: PlanFormat::Generic,
        actions,
        cost: Cost {
            monthly,
            monthly_increase,
            currency: None,
            source: if monthly.is_some() || monthly_increase.is_some() {
                CostSource::Plan
            } else {
                CostSource::None
            },
        },
        regions,
        notes: Vec::new(),
    }
}

fn metadata(fields: Value) -> Metadata {
    serde_json::from_value(fields).unwrap_or_else(|e| panic!("test metadata: {e}"))
}

fn request(meta: Metadata) -> ReviewRequest {
    ReviewRequest {
        request_id: "req-1".into(),
        user_request: "test".into(),
        plan: json!({}),
        metadata: meta,
        infracost: None,
    }
}

fn builtin_engine() -> &'static RegoPolicyEngine {
    static ENGINE: OnceLock<RegoPolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| RegoPolicyEngine::builtin().unwrap_or_else(|e| panic!("{e}")))
}

fn evaluate_with(engine: &dyn PolicyEngine, plan: &NormalizedPlan, meta: Value) -> PolicyOutcome {
    let req = request(metadata(meta));
    engine
        .evaluate(&PolicyInput::new(&req, plan))
        .unwrap_or_else(|e| panic!("evaluation failed: {e}"))
}

fn evaluate(plan: &NormalizedPlan, meta: Value) -> PolicyOutcome {
    evaluate_with(builtin_engine(), plan, meta)
}

fn effect_text(v: &Violation) -> String {
    match v.effect() {
        Effect::Veto => "veto".into(),
        Effect::Escalate(approval) => format!("escalate:{}", approval.as_str()),
        Effect::Inform => "inform".into(),
    }
}

/// The hard violations of `plan` under `meta`, as sorted `policy=effect` lines, compared
/// with `expect`.
fn check(name: &str, plan: NormalizedPlan, meta: Value, expect: &[&str]) {
    let outcome = evaluate(&plan, meta);
    let got: BTreeSet<String> = outcome
        .violations
        .iter()
        .filter(|v| v.kind == PolicyKind::Hard)
        .map(|v| format!("{}={}", v.policy, effect_text(v)))
        .collect();
    let want: BTreeSet<String> = expect.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "case {name}: {:#?}", outcome.violations);
}

fn only(outcome: &PolicyOutcome, policy: &str) -> Vec<Violation> {
    outcome
        .violations
        .iter()
        .filter(|v| v.policy == policy)
        .cloned()
        .collect()
}

// ---- the seven hard policies --------------------------------------------------------------

#[test]
fn hard_policies_table() {
    let ticket = json!({"change_ticket_id": "CHG-42"});
    let cases: Vec<(&str, NormalizedPlan, Value, &[&str])> = vec![
        // production_change_requires_ticket
        (
            "prod update without ticket",
            plan(vec![action("aws_instance.web", Verb::Update)]),
            json!({}),
            &["production_change_requires_ticket=escalate:change_ticket"],
        ),
        (
            "prod update with ticket",
            plan(vec![action("aws_instance.web", Verb::Update)]),
            ticket.clone(),
            &[],
        ),
        (
            "blank ticket is no ticket",
            plan(vec![action("aws_instance.web", Verb::Create)]),
            json!({"change_ticket_id": " "}),
            &["production_change_requires_ticket=escalate:change_ticket"],
        ),
        (
            "prod read and no-op change nothing",
            plan(vec![
                action("aws_vpc.main", Verb::Read),
                action("aws_instance.web", Verb::NoOp),
            ]),
            json!({}),
            &[],
        ),
        (
            "dev change needs no ticket",
            plan(vec![in_dev(action("aws_instance.web", Verb::Update))]),
            json!({}),
            &[],
        ),
        // deletion_requires_confirmation
        (
            "dev delete without confirmation",
            plan(vec![in_dev(action("aws_instance.old", Verb::Delete))]),
            json!({}),
            &["deletion_requires_confirmation=escalate:user_deletion_confirmation"],
        ),
        (
            "dev replace without confirmation",
            plan(vec![in_dev(action("aws_instance.old", Verb::Replace))]),
            json!({}),
            &["deletion_requires_confirmation=escalate:user_deletion_confirmation"],
        ),
        (
            "dev delete confirmed",
            plan(vec![in_dev(action("aws_instance.old", Verb::Delete))]),
            json!({"deletion_confirmed": true}),
            &[],
        ),
        (
            "prod delete: ticket and confirmation both",
            plan(vec![action("aws_instance.old", Verb::Delete)]),
            json!({}),
            &[
                "deletion_requires_confirmation=escalate:user_deletion_confirmation",
                "production_change_requires_ticket=escalate:change_ticket",
            ],
        ),
        // no_public_production_access
        (
            "prod security group open to the world",
            plan(vec![with_ingress(
                action("aws_security_group.web", Verb::Create),
                "0.0.0.0/0",
                (22, 22),
            )]),
            ticket.clone(),
            &["no_public_production_access=veto"],
        ),
        (
            "prod security group open to ::/0",
            plan(vec![with_ingress(
                action("aws_security_group.web", Verb::Update),
                "::/0",
                (443, 443),
            )]),
            ticket.clone(),
            &["no_public_production_access=veto"],
        ),
        (
            "prod security group from the VPN",
            plan(vec![with_ingress(
                action("aws_security_group.web", Verb::Create),
                "10.8.0.0/16",
                (22, 22),
            )]),
            ticket.clone(),
            &[],
        ),
        (
            "dev security group open to the world",
            plan(vec![with_ingress(
                in_dev(action("aws_security_group.web", Verb::Create)),
                "0.0.0.0/0",
                (80, 80),
            )]),
            json!({}),
            &[],
        ),
        // cost_threshold_approval
        (
            "increase above 1000",
            plan_costing(
                vec![in_dev(action("aws_instance.gpu", Verb::Create))],
                Some(4000.0),
                Some(2500.0),
            ),
            json!({}),
            &["cost_threshold_approval=escalate:finance"],
        ),
        (
            "increase above 1000, finance approved",
            plan_costing(
                vec![in_dev(action("aws_instance.gpu", Verb::Create))],
                Some(4000.0),
                Some(2500.0),
            ),
            json!({"finance_approved": true}),
            &[],
        ),
        (
            "small increase on a big bill",
            plan_costing(
                vec![in_dev(action("aws_instance.gpu", Verb::Create))],
                Some(4000.0),
                Some(50.0),
            ),
            json!({}),
            &[],
        ),
        (
            "total above 1000 when no increase is known",
            plan_costing(
                vec![in_dev(action("aws_instance.gpu", Verb::Create))],
                Some(1000.01),
                None,
            ),
            json!({}),
            &["cost_threshold_approval=escalate:finance"],
        ),
        // no_audit_modification
        (
            "update CloudTrail",
            plan(vec![in_dev(action("aws_cloudtrail.org", Verb::Update))]),
            json!({}),
            &["no_audit_modification=veto"],
        ),
        (
            "delete GuardDuty",
            plan(vec![in_dev(action(
                "aws_guardduty_detector.main",
                Verb::Delete,
            ))]),
            json!({"deletion_confirmed": true}),
            &["no_audit_modification=veto"],
        ),
        (
            "replace the audit log bucket",
            plan(vec![in_dev(action(
                "aws_s3_bucket.audit_logs",
                Verb::Replace,
            ))]),
            json!({"deletion_confirmed": true}),
            &["no_audit_modification=veto"],
        ),
        (
            "create a new log group",
            plan(vec![in_dev(action(
                "aws_cloudwatch_log_group.audit_app",
                Verb::Create,
            ))]),
            json!({}),
            &[],
        ),
        (
            "create something of custos",
            plan(vec![in_dev(action(
                "aws_instance.custos_helper",
                Verb::Create,
            ))]),
            json!({}),
            &["no_audit_modification=veto"],
        ),
        // pci_baseline_requirements
        (
            "pci database without encryption",
            plan(vec![with_controls(
                with_classes(
                    in_dev(action("aws_db_instance.cards", Verb::Create)),
                    &["pci"],
                ),
                [Some(false), Some(true), Some(true), Some(true)],
            )]),
            json!({}),
            &["pci_baseline_requirements=veto"],
        ),
        (
            "pci database with every control",
            plan(vec![with_controls(
                with_classes(
                    in_dev(action("aws_db_instance.cards", Verb::Create)),
                    &["pci"],
                ),
                [Some(true), Some(true), Some(true), Some(true)],
            )]),
            json!({}),
            &[],
        ),
        (
            "pci database, controls not described",
            plan(vec![with_classes(
                in_dev(action("aws_db_instance.cards", Verb::Create)),
                &["pci"],
            )]),
            json!({}),
            &[],
        ),
        (
            "pci firewall opened to the internet (dev)",
            plan(vec![with_ingress(
                with_classes(
                    in_dev(action("aws_security_group.pci", Verb::Update)),
                    &["pci"],
                ),
                "0.0.0.0/0",
                (443, 443),
            )]),
            json!({}),
            &["pci_baseline_requirements=veto"],
        ),
        // gdpr_data_residency
        (
            "gdpr data in us-east-1",
            plan(vec![with_region(
                with_classes(
                    in_dev(action("aws_db_instance.users", Verb::Create)),
                    &["gdpr"],
                ),
                Some("us-east-1"),
            )]),
            json!({}),
            &["gdpr_data_residency=veto"],
        ),
        (
            "gdpr data, region unknown",
            plan(vec![with_region(
                with_classes(
                    in_dev(action("aws_db_instance.users", Verb::Create)),
                    &["gdpr"],
                ),
                None,
            )]),
            json!({}),
            &["gdpr_data_residency=veto"],
        ),
        (
            "gdpr data in London",
            plan(vec![with_region(
                with_classes(
                    in_dev(action("aws_db_instance.users", Verb::Create)),
                    &["gdpr"],
                ),
                Some("eu-west-2"),
            )]),
            json!({}),
            &["gdpr_data_residency=veto"],
        ),
        (
            "gdpr data in Frankfurt",
            plan(vec![with_region(
                with_classes(
                    in_dev(action("aws_db_instance.users", Verb::Create)),
                    &["gdpr"],
                ),
                Some("eu-central-1"),
            )]),
            json!({}),
            &[],
        ),
        (
            "gdpr data in West Europe",
            plan(vec![with_region(
                with_classes(
                    in_dev(action("azurerm_mssql_database.users", Verb::Update)),
                    &["gdpr"],
                ),
                Some("westeurope"),
            )]),
            json!({}),
            &[],
        ),
        // SPEC §4.3's example: an ML segment, and the production PCI firewall opened.
        (
            "scope creep: ML segment plus public PCI firewall",
            plan(vec![
                in_dev(action("aws_subnet.nonprod_ml", Verb::Create)),
                with_ingress(
                    with_classes(
                        action("aws_security_group.pci_prod", Verb::Update),
                        &["pci"],
                    ),
                    "0.0.0.0/0",
                    (0, 65535),
                ),
            ]),
            json!({}),
            &[
                "no_public_production_access=veto",
                "pci_baseline_requirements=veto",
                "production_change_requires_ticket=escalate:change_ticket",
            ],
        ),
    ];
    for (name, plan, meta, expect) in cases {
        check(name, plan, meta, expect);
    }
}

#[test]
fn deletion_evidence_lists_every_resource() {
    let p = plan(vec![
        in_dev(action("aws_instance.a", Verb::Delete)),
        in_dev(action("aws_instance.b", Verb::Create)),
        in_dev(action("aws_ebs_volume.c", Verb::Replace)),
        in_dev(action("aws_eip.d", Verb::Delete)),
    ]);
    let outcome = evaluate(&p, json!({}));
    let v = only(&outcome, "deletion_requires_confirmation");
    assert_eq!(v.len(), 1);
    let addresses: Vec<&str> = v[0].evidence["resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["address"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        addresses,
        ["aws_instance.a", "aws_ebs_volume.c", "aws_eip.d"]
    );
    assert!(v[0].message.contains("aws_eip.d"), "{}", v[0].message);
}

#[test]
fn public_access_evidence_names_address_cidr_and_ports() {
    let p = plan(vec![with_ingress(
        action("aws_security_group.web", Verb::Create),
        "0.0.0.0/0",
        (22, 22),
    )]);
    let outcome = evaluate(&p, json!({"change_ticket_id": "CHG-1"}));
    let v = only(&outcome, "no_public_production_access");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].severity, Severity::Critical);
    assert_eq!(v[0].evidence["address"], "aws_security_group.web");
    assert_eq!(v[0].evidence["cidr"], "0.0.0.0/0");
    assert_eq!(v[0].evidence["ports"], "22");
}

// ---- kind, cure, effect ---------------------------------------------------------------------

#[test]
fn builtin_table_fixes_kind_and_cure() {
    let expect: &[(&str, PolicyKind, Option<Approval>)] = &[
        (
            "production_change_requires_ticket",
            PolicyKind::Hard,
            Some(Approval::ChangeTicket),
        ),
        (
            "deletion_requires_confirmation",
            PolicyKind::Hard,
            Some(Approval::UserDeletionConfirmation),
        ),
        ("no_public_production_access", PolicyKind::Hard, None),
        (
            "cost_threshold_approval",
            PolicyKind::Hard,
            Some(Approval::Finance),
        ),
        ("no_audit_modification", PolicyKind::Hard, None),
        ("pci_baseline_requirements", PolicyKind::Hard, None),
        ("gdpr_data_residency", PolicyKind::Hard, None),
        (
            "enable_encryption_by_default",
            PolicyKind::Soft,
            Some(Approval::Human),
        ),
        ("use_reserved_instances", PolicyKind::Soft, None),
        ("required_tags", PolicyKind::Soft, Some(Approval::Human)),
    ];
    let table: Vec<(&str, PolicyKind, Option<Approval>)> = BUILTIN_POLICIES
        .iter()
        .map(|p| (p.id, p.kind, p.cure))
        .collect();
    assert_eq!(table, expect);
}

#[test]
fn effect_of_kind_and_cure() {
    let cases = [
        (PolicyKind::Hard, None, Effect::Veto),
        (
            PolicyKind::Hard,
            Some(Approval::Finance),
            Effect::Escalate(Approval::Finance),
        ),
        (
            PolicyKind::Soft,
            Some(Approval::Human),
            Effect::Escalate(Approval::Human),
        ),
        (PolicyKind::Soft, None, Effect::Inform),
    ];
    for (kind, cure, effect) in cases {
        let v = Violation {
            policy: "p".into(),
            kind,
            severity: Severity::Low,
            message: "m".into(),
            evidence: Value::Null,
            cure,
        };
        assert_eq!(v.effect(), effect, "{kind:?} {cure:?}");
    }
}

#[test]
fn outcome_summarises_vetoes_and_approvals() {
    let p = plan_costing(
        vec![
            action("aws_instance.old", Verb::Delete),
            with_ingress(
                action("aws_security_group.web", Verb::Update),
                "0.0.0.0/0",
                (80, 80),
            ),
        ],
        None,
        Some(5000.0),
    );
    let outcome = evaluate(&p, json!({}));
    assert!(outcome.vetoed());
    assert_eq!(
        outcome.required_approvals(),
        BTreeSet::from([
            Approval::ChangeTicket,
            Approval::UserDeletionConfirmation,
            Approval::Finance
        ])
    );
    assert_eq!(outcome.bundle_hash, builtin_engine().bundle_hash());

    let wire = serde_json::to_value(&outcome.violations[0]).unwrap_or_default();
    for key in ["policy", "kind", "severity", "message", "evidence"] {
        assert!(wire.get(key).is_some(), "{key} missing from {wire}");
    }
    assert_eq!(
        serde_json::to_value(Approval::UserDeletionConfirmation).unwrap_or_default(),
        "user_deletion_confirmation"
    );
}

#[test]
fn clean_plan_has_no_violations() {
    let p = plan(vec![in_dev(action("aws_subnet.ml", Verb::Create))]);
    let outcome = evaluate(&p, json!({}));
    assert!(outcome.violations.is_empty(), "{:#?}", outcome.violations);
    assert!(!outcome.vetoed());
    assert!(outcome.required_approvals().is_empty());
}

// ---- soft policies ----------------------------------------------------------------------

fn soft_status(outcome: &PolicyOutcome) -> Vec<(String, SoftPolicyStatus)> {
    outcome
        .soft_policies
        .iter()
        .map(|s| (s.policy.clone(), s.status))
        .collect()
}

#[test]
fn soft_policies_not_evaluated_on_a_bare_generic_plan() {
    let p = plan(vec![in_dev(action("generic.thing", Verb::Create))]);
    let outcome = evaluate(&p, json!({}));
    assert_eq!(
        outcome.not_evaluated(),
        [
            "enable_encryption_by_default",
            "use_reserved_instances",
            "required_tags"
        ]
    );
    assert!(outcome.violations.is_empty());
}

#[test]
fn soft_policies_evaluated_where_described() {
    let mut bucket = with_controls(
        in_dev(action("aws_s3_bucket.data", Verb::Create)),
        [Some(false), None, None, None],
    );
    bucket.tags.insert("Owner".into(), "ml".into());
    let vm = action("aws_instance.web", Verb::Create);
    let p = plan(vec![bucket, vm]);
    let outcome = evaluate(&p, json!({"change_ticket_id": "CHG-7"}));
    assert_eq!(
        soft_status(&outcome),
        [
            (
                "enable_encryption_by_default".to_string(),
                SoftPolicyStatus::Violated
            ),
            (
                "use_reserved_instances".to_string(),
                SoftPolicyStatus::Violated
            ),
            ("required_tags".to_string(), SoftPolicyStatus::Violated),
        ]
    );
    let effects: BTreeSet<String> = outcome
        .violations
        .iter()
        .map(|v| format!("{}={}", v.policy, effect_text(v)))
        .collect();
    assert_eq!(
        effects,
        BTreeSet::from([
            "enable_encryption_by_default=escalate:human".to_string(),
            "use_reserved_instances=inform".to_string(),
            "required_tags=escalate:human".to_string(),
        ])
    );
    let tags = only(&outcome, "required_tags");
    assert_eq!(
        tags[0].evidence["missing_tags"],
        json!(["Environment", "CostCenter"])
    );
    assert!(!outcome.vetoed());
}

#[test]
fn soft_policies_are_configurable_hard_ones_are_not() {
    let config = SoftPolicyConfig {
        disabled: BTreeSet::from(["use_reserved_instances".to_string()]),
        required_tags: vec!["Team".into()],
    };
    let engine =
        RegoPolicyEngine::new(&OperatorPolicies::none(), config).unwrap_or_else(|e| panic!("{e}"));
    let mut vm = action("aws_instance.web", Verb::Create);
    vm.tags.insert("team".into(), "ml".into());
    let outcome = evaluate_with(&engine, &plan(vec![vm]), json!({"change_ticket_id": "C"}));
    assert_eq!(
        soft_status(&outcome)[1..],
        [
            (
                "use_reserved_instances".to_string(),
                SoftPolicyStatus::Disabled
            ),
            ("required_tags".to_string(), SoftPolicyStatus::Passed),
        ]
    );
    assert_ne!(engine.bundle_hash(), builtin_engine().bundle_hash());

    for (id, fragment) in [
        ("no_public_production_access", "cannot be disabled"),
        ("no_such_policy", "is not a soft policy"),
    ] {
        let config = SoftPolicyConfig {
            disabled: BTreeSet::from([id.to_string()]),
            ..SoftPolicyConfig::default()
        };
        match RegoPolicyEngine::new(&OperatorPolicies::none(), config) {
            Err(PolicyError::Config(message)) => assert!(message.contains(fragment), "{message}"),
            other => panic!("{id}: expected a config error, got {other:?}"),
        }
    }
}

// ---- operator policies -------------------------------------------------------------------

fn operator_engine(files: &[(&str, &str)]) -> Result<RegoPolicyEngine, PolicyError> {
    let operator = OperatorPolicies::from_sources(files.iter().copied())?;
    RegoPolicyEngine::new(&operator, SoftPolicyConfig::default())
}

const NO_GPU: &str = r#"
package custos.operator.no_gpu

violations contains v if {
	some a in input.plan.actions
	startswith(a.name, "gpu")
	v := {"message": sprintf("%s is a GPU box", [a.address]), "severity": "high", "cure": "security", "evidence": {"address": a.address}}
}
"#;

#[test]
fn operator_policy_is_added_and_evaluated() {
    let engine = operator_engine(&[
        ("team/no_gpu.rego", NO_GPU),
        (
            "lib/helpers.rego",
            "package custos.operator.helpers\n\nis_big(n) if n > 10\n",
        ),
        (
            "team/notes.rego",
            r#"package custos.operator.notes
violations contains {"message": "note", "severity": "info", "kind": "soft"} if count(input.plan.actions) > 0
"#,
        ),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine.operator_policy_ids(),
        ["operator.no_gpu", "operator.notes"]
    );
    let p = plan(vec![in_dev(action(
        "aws_instance.gpu_trainer",
        Verb::Create,
    ))]);
    let outcome = evaluate_with(&engine, &p, json!({}));
    let gpu = only(&outcome, "operator.no_gpu");
    assert_eq!(gpu.len(), 1);
    assert_eq!(gpu[0].kind, PolicyKind::Hard);
    assert_eq!(gpu[0].effect(), Effect::Escalate(Approval::Security));
    assert_eq!(gpu[0].evidence["address"], "aws_instance.gpu_trainer");
    let notes = only(&outcome, "operator.notes");
    assert_eq!(notes[0].effect(), Effect::Inform);
    assert_eq!(
        outcome.required_approvals(),
        BTreeSet::from([Approval::Security])
    );

    // Built-in policies still apply next to operator ones.
    let outcome = evaluate_with(
        &engine,
        &plan(vec![action("aws_instance.gpu_x", Verb::Delete)]),
        json!({}),
    );
    assert_eq!(only(&outcome, "deletion_requires_confirmation").len(), 1);
}

#[test]
fn operator_cannot_declare_reserved_packages() {
    let cases = [
        (
            "evil.rego",
            "package custos.hard.no_public_production_access\n\nviolations := set()\n",
            "reserved",
        ),
        ("x/evil.rego", "package custos.hard.x\n", "reserved"),
        (
            "soft.rego",
            "package custos.soft.required_tags\n",
            "reserved",
        ),
        (
            "lib.rego",
            "package custos.lib\n\nproduction(a) := false\n",
            "reserved",
        ),
        (
            "cfg.rego",
            "package custos_config\n\nrequired_tags := []\n",
            "reserved",
        ),
        ("top.rego", "package custos\n", "reserved"),
        ("other.rego", "package acme.policies\n", "operator"),
        ("bare.rego", "package custos.operator\n", "operator"),
    ];
    for (file, rego, kind) in cases {
        let result = operator_engine(&[(file, rego)]);
        let path = format!("operator/{file}");
        match (kind, result) {
            ("reserved", Err(e @ PolicyError::ReservedPackage { .. })) => {
                assert!(e.to_string().contains(&path), "{e}");
            }
            ("operator", Err(e @ PolicyError::NotOperatorPackage { .. })) => {
                assert!(e.to_string().contains(&path), "{e}");
            }
            (_, other) => panic!("{file}: expected a {kind} refusal, got {other:?}"),
        }
    }
}

#[test]
fn malformed_rego_is_an_error_naming_the_file() {
    for rego in [
        "package custos.operator.broken\n\nviolations contains v if {\n",
        // Rego v0 syntax: v1 needs `if`.
        "package custos.operator.old\n\ndeny[msg] { msg := \"x\" }\n",
        // Unsafe variable: found by analysis when the engine is built, not at the first review.
        "package custos.operator.unsafe\n\nviolations contains v if { x > 1 }\n",
    ] {
        match operator_engine(&[("broken.rego", rego)]) {
            Err(PolicyError::Compile { path, message }) => {
                assert!(
                    path == "operator/broken.rego" || message.contains("broken.rego"),
                    "{path}: {message}"
                );
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
    }
}

#[test]
fn malformed_output_fails_secure() {
    let cases = [
        ("not a set", r#"violations := "oops""#),
        (
            "no message",
            r#"violations contains {"severity": "high"} if true"#,
        ),
        (
            "bad severity",
            r#"violations contains {"message": "m", "severity": "urgent"} if true"#,
        ),
        (
            "bad cure",
            r#"violations contains {"message": "m", "severity": "low", "cure": "ceo"} if true"#,
        ),
        (
            "unknown key",
            r#"violations contains {"message": "m", "severity": "low", "mesage": "typo"} if true"#,
        ),
        (
            "not an object",
            r#"violations contains "just text" if true"#,
        ),
    ];
    for (name, body) in cases {
        let rego = format!("package custos.operator.bad\n\n{body}\n");
        let engine =
            operator_engine(&[("bad.rego", &rego)]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = plan(vec![in_dev(action("aws_subnet.a", Verb::Create))]);
        let req = request(Metadata::default());
        match engine.evaluate(&PolicyInput::new(&req, &p)) {
            Err(PolicyError::MalformedOutput { policy, .. }) => assert_eq!(policy, "operator.bad"),
            other => panic!("{name}: expected malformed output, got {other:?}"),
        }
    }
}

#[test]
fn evaluation_errors_and_time_limit_fail_secure() {
    let engine = operator_engine(&[(
        "err.rego",
        "package custos.operator.err\n\nviolations contains {\"message\": \"m\", \"severity\": \"low\"} if to_number(input.request.user_request) > 1\n",
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let p = plan(vec![]);
    let req = request(Metadata::default());
    match engine.evaluate(&PolicyInput::new(&req, &p)) {
        Err(PolicyError::Evaluation { policy, .. }) => assert_eq!(policy, "operator.err"),
        other => panic!("expected an evaluation error, got {other:?}"),
    }

    let slow = operator_engine(&[(
        "slow.rego",
        "package custos.operator.slow\n\nviolations contains {\"message\": \"m\", \"severity\": \"low\"} if count([x | some x in numbers.range(1, 200000); x % 7 == 0]) < 0\n",
    )])
    .unwrap_or_else(|e| panic!("{e}"))
    .with_time_limit(Duration::ZERO);
    assert!(matches!(
        slow.evaluate(&PolicyInput::new(&req, &p)),
        Err(PolicyError::Evaluation { .. })
    ));
}

// ---- bundle hash --------------------------------------------------------------------------

#[test]
fn bundle_hash_is_stable_and_tracks_operator_policies() {
    let again = RegoPolicyEngine::builtin().unwrap_or_else(|e| panic!("{e}"));
    let base = builtin_engine().bundle_hash();
    assert_eq!(again.bundle_hash(), base);
    assert_eq!(base.len(), 64);
    assert!(base.chars().all(|c| c.is_ascii_hexdigit()));

    let listing = builtin_engine().bundle().listing();
    assert!(
        listing.contains("  builtin/hard/no_audit_modification.rego\n"),
        "{listing}"
    );
    assert!(
        listing.contains("  config/soft_policies.json\n"),
        "{listing}"
    );
    assert!(!listing.contains("_test.rego"), "{listing}");

    let with_gpu = operator_engine(&[("no_gpu.rego", NO_GPU)]).unwrap_or_else(|e| panic!("{e}"));
    let with_gpu_again =
        operator_engine(&[("no_gpu.rego", NO_GPU)]).unwrap_or_else(|e| panic!("{e}"));
    let edited = NO_GPU.replace("\"high\"", "\"critical\"");
    let with_edit =
        operator_engine(&[("no_gpu.rego", edited.as_str())]).unwrap_or_else(|e| panic!("{e}"));
    let renamed = operator_engine(&[("gpu/no_gpu.rego", NO_GPU)]).unwrap_or_else(|e| panic!("{e}"));
    let with_test = operator_engine(&[
        ("no_gpu.rego", NO_GPU),
        (
            "no_gpu_test.rego",
            "package custos.operator.no_gpu_test\n\ntest_x if true\n",
        ),
    ])
    .unwrap_or_else(|e| panic!("{e}"));

    assert_ne!(with_gpu.bundle_hash(), base);
    assert_eq!(with_gpu.bundle_hash(), with_gpu_again.bundle_hash());
    assert_ne!(with_edit.bundle_hash(), with_gpu.bundle_hash());
    assert_ne!(renamed.bundle_hash(), with_gpu.bundle_hash());
    assert_eq!(
        with_test.bundle_hash(),
        with_gpu.bundle_hash(),
        "tests do not change decisions"
    );
}

// ---- policy unit tests --------------------------------------------------------------------

#[test]
fn builtin_rego_unit_tests_pass() {
    let report = run_builtin_policy_tests().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.success(), "{report}");
    for policy in BUILTIN_POLICIES {
        let tests: Vec<_> = report
            .tests
            .iter()
            .filter(|t| t.file == policy.test_path())
            .collect();
        assert!(tests.len() >= 2, "{} has {} tests", policy.id, tests.len());
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(files: &[(&str, &str)]) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("custos-policy-test-{}-{n}", std::process::id()));
        for (name, content) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&path, content).unwrap_or_else(|e| panic!("{e}"));
        }
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn policy_test_runs_a_directory() {
    let dir = TempDir::new(&[
        ("no_gpu.rego", NO_GPU),
        (
            "tests/no_gpu_test.rego",
            r#"# test_in_a_comment is not a test
package custos.operator.no_gpu_test

import data.custos.operator.no_gpu

gpu := {"plan": {"actions": [{"address": "a.gpu1", "name": "gpu1"}]}}

test_gpu_denied if count(no_gpu.violations) == 1 with input as gpu

test_cpu_allowed if count(no_gpu.violations) == 0 with input as {"plan": {"actions": [{"address": "a.cpu", "name": "cpu"}]}}

test_wrong_expectation if count(no_gpu.violations) == 0 with input as gpu

test_breaks if to_number("x") == 1

test_builtin_visible if data.custos.hard.cost_threshold_approval.threshold == 1000
"#,
        ),
        (".hidden/ignored.rego", "this is not rego"),
        ("README.md", "not a policy"),
    ]);
    let report =
        run_policy_tests(&dir.0, &SoftPolicyConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let outcomes: Vec<(&str, &TestOutcome)> = report
        .tests
        .iter()
        .map(|t| (t.name.as_str(), &t.outcome))
        .collect();
    assert_eq!(outcomes.len(), 5, "{report}");
    assert_eq!(outcomes[0], ("test_gpu_denied", &TestOutcome::Passed));
    assert_eq!(outcomes[1], ("test_cpu_allowed", &TestOutcome::Passed));
    assert_eq!(
        outcomes[2],
        ("test_wrong_expectation", &TestOutcome::Failed)
    );
    assert!(matches!(
        outcomes[3],
        ("test_breaks", TestOutcome::Error(_))
    ));
    assert_eq!(outcomes[4], ("test_builtin_visible", &TestOutcome::Passed));
    assert_eq!(
        (report.passed(), report.failed(), report.errors()),
        (3, 1, 1)
    );
    assert!(!report.success());
    assert!(report.to_string().ends_with("3 passed, 1 failed, 1 errors"));
    assert_eq!(report.tests[0].file, "operator/tests/no_gpu_test.rego");
    assert_eq!(report.tests[0].package, "custos.operator.no_gpu_test");
}

#[test]
fn policy_test_refuses_reserved_packages_and_missing_dirs() {
    let dir = TempDir::new(&[(
        "sneaky_test.rego",
        "package custos.hard.no_public_production_access\n\ntest_x if true\n",
    )]);
    assert!(matches!(
        run_policy_tests(&dir.0, &SoftPolicyConfig::default()),
        Err(PolicyError::ReservedPackage { path, .. }) if path == "operator/sneaky_test.rego"
    ));
    assert!(matches!(
        run_policy_tests(&dir.0.join("missing"), &SoftPolicyConfig::default()),
        Err(PolicyError::Io { .. })
    ));
}

// ---- input and speed --------------------------------------------------------------------

#[test]
fn input_document_shape() {
    let p = plan(vec![action("aws_instance.web", Verb::Update)]);
    let req = request(metadata(json!({"change_ticket_id": "CHG-1", "team": "ml"})));
    let input = serde_json::to_value(PolicyInput::new(&req, &p)).unwrap_or_default();
    assert_eq!(input["request"]["request_id"], "req-1");
    assert_eq!(input["request"]["metadata"]["change_ticket_id"], "CHG-1");
    assert_eq!(input["request"]["metadata"]["team"], "ml");
    assert_eq!(input["plan"]["actions"][0]["verb"], "update");
    assert!(input["request"].get("plan").is_none());
}

#[test]
fn engine_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<RegoPolicyEngine>();
    let engine = builtin_engine();
    let p = plan(vec![action("aws_instance.old", Verb::Delete)]);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let outcome = evaluate_with(engine, &p, json!({}));
                assert_eq!(only(&outcome, "deletion_requires_confirmation").len(), 1);
            });
        }
    });
}

/// A 55-resource plan like a mid-sized Terraform change; prints the evaluation time
/// (`cargo test --release -p custos-gate --test policies -- --nocapture evaluation_time`).
#[test]
fn evaluation_time_on_a_55_action_plan() {
    let mut actions = Vec::new();
    for i in 0..55 {
        let mut a = match i % 5 {
            0 => with_ingress(
                action(&format!("aws_security_group.sg{i}"), Verb::Update),
                "10.0.0.0/8",
                (443, 443),
            ),
            1 => with_classes(
                action(&format!("aws_db_instance.db{i}"), Verb::Create),
                &["pci", "gdpr"],
            ),
            2 => action(&format!("aws_instance.vm{i}"), Verb::Create),
            3 => in_dev(action(&format!("aws_s3_bucket.b{i}"), Verb::Delete)),
            _ => action(&format!("aws_cloudwatch_log_group.g{i}"), Verb::NoOp),
        };
        a.tags.insert("Owner".into(), "team".into());
        a.monthly_cost = Some(20.0);
        a.controls.encryption = Some(i % 7 != 0);
        actions.push(a);
    }
    let p = plan_costing(actions, Some(1100.0), Some(300.0));
    let engine = builtin_engine();
    let req = request(metadata(json!({"change_ticket_id": "CHG-9"})));
    let input = PolicyInput::new(&req, &p);
    let mut times = Vec::new();
    let mut violations = 0;
    for _ in 0..200 {
        let start = Instant::now();
        let outcome = engine.evaluate(&input).unwrap_or_else(|e| panic!("{e}"));
        times.push(start.elapsed());
        violations = outcome.violations.len();
    }
    times.sort();
    let pct = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    println!(
        "policy evaluation, 55 actions, {violations} violations: min {:?}, p50 {:?}, p99 {:?}, max {:?}",
        pct(0.0),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    assert!(violations > 0);
}
