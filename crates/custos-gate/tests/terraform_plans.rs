//! The Terraform normaliser on real plans nobody here wrote: every file in
//! `../shared/testdata/terraform-plans` (from Checkov's test suite, see its README) is read,
//! and each has concrete facts checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use custos_gate::plan::{
    CostSource, EnvironmentSource, Ingress, NormalizedPlan, PlanError, PlanFormat, PlannedAction,
    Verb, decode_plan, normalize_bytes, normalize_value,
};
use custos_gate::request::Metadata;
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/terraform-plans"
    ))
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn try_normalize(file: &str) -> Result<NormalizedPlan, PlanError> {
    normalize_bytes(&read(file), &Metadata::default(), "", None)
}

fn normalize(file: &str) -> NormalizedPlan {
    try_normalize(file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn action<'a>(plan: &'a NormalizedPlan, address: &str) -> &'a PlannedAction {
    plan.actions
        .iter()
        .find(|a| a.address == address)
        .unwrap_or_else(|| panic!("no action {address}"))
}

fn addresses(plan: &NormalizedPlan) -> Vec<&str> {
    plan.actions.iter().map(|a| a.address.as_str()).collect()
}

fn ingress(cidr: &str, from: u16, to: u16, protocol: &str) -> Ingress {
    Ingress {
        cidr: cidr.to_owned(),
        public: custos_gate::plan::is_public(cidr),
        from_port: Some(from),
        to_port: Some(to),
        protocol: Some(protocol.to_owned()),
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every file of the directory, and the check for it. A new file fails
/// `every_file_is_checked` until it is added here.
const CHECKS: &[(&str, fn())] = &[
    ("large-mixed.json", large_mixed),
    ("replace-secret.json", replace_secret),
    ("change-keys.json", change_keys),
    ("iam-policies.json", iam_policies),
    ("nested-modules.json", nested_modules),
    ("tags-variety.json", tags_variety),
    ("after-unknown.json", after_unknown),
    ("providers.json", providers),
    ("bad-corrupted.json", bad_corrupted),
    ("bad-utf16.json", bad_utf16),
];

#[test]
fn every_file_is_checked() {
    assert!(dir().is_dir(), "test data missing: {}", dir().display());
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("{}: {e}", dir().display()))
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md" && name != "LICENSE")
        .collect();
    files.sort();
    let mut checked: Vec<String> = CHECKS.iter().map(|(f, _)| (*f).to_owned()).collect();
    checked.sort();
    assert_eq!(files, checked);
    for (file, check) in CHECKS {
        eprintln!("checking {file}");
        check();
    }
}

#[test]
fn every_plan_survives_a_json_round_trip() {
    for (file, _) in CHECKS {
        let Ok(plan) = try_normalize(file) else {
            continue;
        };
        let text = serde_json::to_string(&plan).unwrap_or_else(|e| panic!("{file}: {e}"));
        let back: NormalizedPlan =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(back, plan, "{file}");
    }
}

fn large_mixed() {
    let plan = normalize("large-mixed.json");
    assert_eq!(plan.format, PlanFormat::Terraform);
    assert_eq!(plan.actions.len(), 55);
    assert!(plan.actions.iter().all(|a| a.verb == Verb::Create));
    assert!(
        plan.actions
            .iter()
            .all(|a| a.quantity == 1 && a.changed.is_empty())
    );
    assert!(plan.actions.iter().all(|a| a.before.is_null()));
    assert_eq!(
        plan.actions.first().map(|a| a.address.as_str()),
        Some("aws_db_instance.default")
    );
    assert_eq!(
        plan.actions.last().map(|a| a.address.as_str()),
        Some("null_resource.push_image")
    );
    let count = |t: &str| plan.actions.iter().filter(|a| a.resource_type == t).count();
    assert_eq!(
        [
            count("aws_s3_bucket"),
            count("aws_iam_role"),
            count("aws_subnet"),
            count("aws_security_group")
        ],
        [6, 3, 4, 2]
    );
    assert_eq!(plan.regions, set(&["us-west-2"]));
    assert_eq!(action(&plan, "null_resource.push_image").region, None);
    assert_eq!(
        action(&plan, "aws_ebs_volume.web_host_storage")
            .region
            .as_deref(),
        Some("us-west-2")
    );
    assert_eq!(plan.cost.source, CostSource::None);
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);

    // count-indexed instances keep their index in the address.
    let neptune = action(&plan, "aws_neptune_cluster_instance.default[0]");
    assert_eq!(neptune.controls.isolation, Some(true));

    let db = action(&plan, "aws_db_instance.default");
    assert_eq!(db.name, "123456789123-acme-corp-rds");
    assert_eq!(
        db.tags,
        tags(&[
            ("Environment", "123456789123-acme-corp"),
            ("Name", "123456789123-acme-corp-rds")
        ])
    );
    // An Environment tag naming no known environment: production, under its own name.
    assert_eq!(db.environment.name, "123456789123-acme-corp");
    assert!(db.environment.production);
    assert_eq!(db.environment.source, EnvironmentSource::Tag);
    assert_eq!(db.controls.encryption, Some(false));
    assert_eq!(db.controls.isolation, Some(false));
    // Known only after apply: absent.
    assert!(db.after.get("arn").is_none() && db.after.get("endpoint").is_none());
    assert_eq!(db.after.get("engine"), Some(&json!("mysql")));

    let web = action(&plan, "aws_security_group.web-node");
    assert_eq!(
        web.ingress,
        [
            ingress("0.0.0.0/0", 22, 22, "tcp"),
            ingress("0.0.0.0/0", 80, 80, "tcp")
        ]
    );
    assert!(web.ingress.iter().all(|i| i.public));
    assert_eq!(web.controls.firewall, Some(true));
    assert_eq!(
        action(&plan, "aws_security_group_rule.ingress").ingress,
        [ingress("172.16.0.0/16", 3306, 3306, "tcp")]
    );
    assert!(
        action(&plan, "aws_security_group_rule.egress")
            .ingress
            .is_empty()
    );
    // Its ingress is known only after apply.
    assert!(
        action(&plan, "aws_security_group.default")
            .ingress
            .is_empty()
    );

    assert_eq!(
        action(&plan, "aws_s3_bucket.logs").controls.encryption,
        Some(true)
    );
    assert_eq!(
        action(&plan, "aws_s3_bucket.data").controls.isolation,
        Some(false)
    );
    assert_eq!(
        action(&plan, "aws_s3_bucket.data_science").controls.logging,
        Some(true)
    );
    let eks = action(&plan, "aws_eks_cluster.eks_cluster");
    assert_eq!(eks.controls.isolation, Some(false));

    // Untagged, unnamed resources are unknown, hence production.
    let vpc = action(&plan, "aws_vpc.web_vpc");
    assert_eq!(
        (
            vpc.environment.name.as_str(),
            vpc.environment.production,
            vpc.environment.source
        ),
        ("unknown", true, EnvironmentSource::Unknown)
    );
}

#[test]
fn large_mixed_with_metadata_and_infracost() {
    let metadata = Metadata {
        environment: Some("staging".to_owned()),
        ..Metadata::default()
    };
    let infracost = json!({
        "currency": "USD",
        "totalMonthlyCost": "152.4",
        "pastTotalMonthlyCost": "0",
        "projects": [{"breakdown": {"resources": [
            {"name": "aws_db_instance.default", "monthlyCost": "14.71"},
            {"name": "aws_neptune_cluster_instance.default[0]", "monthlyCost": 71.54}
        ]}}]
    });
    let plan = normalize_bytes(&read("large-mixed.json"), &metadata, "", Some(&infracost))
        .unwrap_or_else(|e| panic!("{e}"));
    // Tagged resources keep their tag; the others take the metadata's environment.
    assert!(
        action(&plan, "aws_db_instance.default")
            .environment
            .production
    );
    let vpc = action(&plan, "aws_vpc.web_vpc");
    assert_eq!(
        (
            vpc.environment.name.as_str(),
            vpc.environment.production,
            vpc.environment.source
        ),
        ("staging", false, EnvironmentSource::Metadata)
    );
    assert_eq!(plan.cost.source, CostSource::Infracost);
    assert_eq!(plan.cost.monthly, Some(152.4));
    assert_eq!(plan.cost.monthly_increase, Some(152.4));
    assert_eq!(plan.cost.currency.as_deref(), Some("USD"));
    assert_eq!(
        action(&plan, "aws_db_instance.default").monthly_cost,
        Some(14.71)
    );
    assert_eq!(
        action(&plan, "aws_neptune_cluster_instance.default[0]").monthly_cost,
        Some(71.54)
    );
    assert_eq!(action(&plan, "aws_vpc.web_vpc").monthly_cost, None);

    let bad = json!({"totalMonthlyCost": "n/a"});
    let err = normalize_bytes(&read("large-mixed.json"), &metadata, "", Some(&bad)).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("infracost.totalMonthlyCost: expected a number, found the string \"n/a\"")
    );
}

fn replace_secret() {
    let plan = normalize("replace-secret.json");
    assert_eq!(addresses(&plan), ["aws_secretsmanager_secret.default"]);
    let secret = action(&plan, "aws_secretsmanager_secret.default");
    assert_eq!(secret.verb, Verb::Replace);
    assert!(secret.verb.destroys());
    assert_eq!(secret.region.as_deref(), Some("us-west-2"));
    assert_eq!(plan.regions, set(&["us-west-2"]));
    assert_eq!(secret.name, "test");
    assert_eq!(secret.after.get("name"), Some(&json!("test")));
    assert!(secret.after.get("arn").is_none());
    assert!(secret.changed.iter().any(|c| c == "name"));
    assert!(secret.changed.windows(2).all(|w| w[0] < w[1]), "sorted");
}

fn change_keys() {
    let plan = normalize("change-keys.json");
    assert_eq!(
        addresses(&plan),
        ["aws_security_group_rule.foo", "aws_security_group_rule.bar"]
    );
    assert!(plan.actions.iter().all(|a| a.verb == Verb::Update));
    let foo_rule = action(&plan, "aws_security_group_rule.foo");
    assert_eq!(foo_rule.changed, ["security_group_rule_id", "to_port"]);
    assert_eq!(foo_rule.before.get("to_port"), Some(&json!(5432)));
    assert_eq!(foo_rule.after.get("to_port"), Some(&json!(5433)));
    assert_eq!(
        foo_rule.ingress,
        [ingress("sg-8d21ab5963b0e7917", 5432, 5433, "tcp")]
    );
    let bar_rule = action(&plan, "aws_security_group_rule.bar");
    assert_eq!(bar_rule.changed, ["protocol", "security_group_rule_id"]);
    assert_eq!(
        bar_rule.ingress,
        [ingress("sg-8d21ab5963b0e7917", 8888, 8888, "udp")]
    );
    assert!(
        plan.actions
            .iter()
            .all(|a| a.ingress.iter().all(|i| !i.public))
    );
    // The provider configuration names no region.
    assert!(plan.regions.is_empty());
}

fn iam_policies() {
    let plan = normalize("iam-policies.json");
    assert_eq!(
        addresses(&plan),
        [
            "aws_iam_group.fail_2",
            "aws_iam_group_policy.fail_2",
            "aws_iam_policy.policy_pass",
            "aws_iam_role.example",
            "aws_iam_role_policy.fail_1",
            "aws_iam_user.fail_3",
            "aws_iam_user_policy.fail_3",
        ]
    );
    assert!(
        plan.actions
            .iter()
            .all(|a| a.verb == Verb::Create && a.resource_type.starts_with("aws_iam_"))
    );
    assert!(
        plan.actions
            .iter()
            .all(|a| a.region.as_deref() == Some("us-west-2"))
    );
    let policy = action(&plan, "aws_iam_policy.policy_pass");
    assert!(policy.after.get("policy").is_some_and(Value::is_string));
}

fn nested_modules() {
    let plan = normalize("nested-modules.json");
    assert_eq!(
        addresses(&plan),
        [
            "module.child_0.module.child_1_a.aws_eks_cluster.cluster",
            "module.child_0.module.child_1_b.aws_eks_cluster.cluster",
            "module.child_0.module.child_1_c.aws_eks_cluster.cluster",
        ]
    );
    for cluster in &plan.actions {
        assert_eq!(cluster.verb, Verb::Create);
        assert_eq!(cluster.resource_type, "aws_eks_cluster");
        assert_eq!(cluster.name, "test");
        assert_eq!(cluster.controls.logging, Some(true));
        assert_eq!(cluster.controls.isolation, Some(false));
        assert_eq!(cluster.region, None);
    }
}

fn tags_variety() {
    let plan = normalize("tags-variety.json");
    let expected = tags(&[("tag1", "test"), ("tag2", "test")]);
    // `tags` as a list of {key, value, propagate_at_launch} maps.
    let example = action(&plan, "aws_autoscaling_group.example");
    assert_eq!(example.tags, expected);
    // `tag` blocks.
    let example2 = action(&plan, "aws_autoscaling_group.example2");
    assert_eq!(example2.tags, expected);
    // A plain map (`tags` and `tags_all`).
    let table = action(&plan, "aws_dynamodb_table.basic-dynamodb-table");
    assert_eq!(table.tags, expected);
    assert_eq!(table.controls.encryption, Some(true));
    // desired_capacity is known only after apply: min_size.
    assert_eq!(example.quantity, 1);
    assert!(example.after.get("desired_capacity").is_none());
}

fn after_unknown() {
    let plan = normalize("after-unknown.json");
    let cdn = action(&plan, "aws_cloudfront_distribution.cloudfront");
    assert_eq!(cdn.verb, Verb::Create);
    assert!(cdn.after.is_null());
    assert_eq!(cdn.controls.logging, None);
}

fn providers() {
    let plan = normalize("providers.json");
    assert_eq!(plan.format, PlanFormat::Terraform);
    assert!(plan.actions.is_empty() && plan.regions.is_empty());
    assert_eq!(plan.cost.source, CostSource::None);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("no `resource_changes`") && n.contains("empty plan")),
        "{:?}",
        plan.notes
    );
}

/// A state, not a plan: refused, saying what it is.
fn bad_corrupted() {
    let err = try_normalize("bad-corrupted.json").err();
    assert!(matches!(err, Some(PlanError::NotAPlan { .. })), "{err:?}");
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("Terraform state"), "{message}");
    assert!(message.contains("no `resource_changes`"), "{message}");
    assert!(
        message.contains("terraform show -json <planfile>"),
        "{message}"
    );
}

/// UTF-16 LE with a byte order mark (as PowerShell writes it): decoded, and said so.
fn bad_utf16() {
    let bytes = read("bad-utf16.json");
    assert_eq!(bytes.get(..2), Some(&[0xFF, 0xFE][..]));
    let plan = normalize("bad-utf16.json");
    assert_eq!(
        plan.notes.first().map(String::as_str),
        Some("the plan was UTF-16 LE text (with a byte order mark) and was decoded")
    );
    assert_eq!(
        addresses(&plan),
        [
            "aws_iam_role_policy.fail_1",
            "aws_s3_bucket.s3-bucket",
            "null_resource.name"
        ]
    );
    assert_eq!(plan.regions, set(&["us-east-1"]));
    let decoded = decode_plan(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let from_value = normalize_value(&decoded.value, &Metadata::default(), "", None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_value.actions, plan.actions);
}
