//! Execution verification (SPEC §4.4): every accepted shape of execution result, compared with
//! the SPEC §4 scenario plans and the real Terraform plans in
//! `../shared/testdata/terraform-plans`. Most cases go through one helper, [`check`], which
//! renders a report as lines (`deviation critical`, `extra <address> <verb> <severity>`, …) and
//! compares them with the expected lines.

use std::path::PathBuf;

use custos_gate::execution::{
    Evidence, ExecutedChanges, ExecutionError, ExecutionFormat, ExecutionReport, ExecutionStatus,
    compare, normalize_execution, normalize_execution_bytes, unapproved_execution,
};
use custos_gate::plan::{NormalizedPlan, decode_plan, normalize_bytes, normalize_value};
use custos_gate::request::Metadata;
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers

fn scenario_doc(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(format!("scenario-{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn scenario(name: &str) -> NormalizedPlan {
    normalize_value(&scenario_doc(name), &Metadata::default(), "", None)
        .unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

fn testdata(file: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/terraform-plans"
    ))
    .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn terraform_plan(file: &str) -> (Value, NormalizedPlan) {
    let bytes = testdata(file);
    let doc = decode_plan(&bytes)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .value;
    let plan = normalize_bytes(&bytes, &Metadata::default(), "", None)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    (doc, plan)
}

/// The plans of the testdata directory that are plans (the corrupted one is a state).
const TERRAFORM_PLANS: &[&str] = &[
    "after-unknown.json",
    "bad-utf16.json",
    "change-keys.json",
    "iam-policies.json",
    "large-mixed.json",
    "nested-modules.json",
    "providers.json",
    "replace-secret.json",
    "tags-variety.json",
];

fn executed(result: &Value) -> ExecutedChanges {
    normalize_execution(result).unwrap_or_else(|e| panic!("{e}\n{result:#}"))
}

/// The serde name of a report enum (`deviation`, `critical`, `no_op`).
fn name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// The report as lines: the result and severity, then one line per finding.
fn render(report: &ExecutionReport) -> String {
    let mut lines = vec![format!(
        "{} {}",
        name(&report.result),
        name(&report.severity)
    )];
    for (kind, list) in [
        ("extra", &report.extra),
        ("missing", &report.missing),
        ("failed", &report.failed),
    ] {
        for f in list {
            lines.push(format!(
                "{kind} {} {} {}",
                f.address,
                name(&f.verb),
                name(&f.severity)
            ));
        }
    }
    for m in &report.verb_mismatches {
        lines.push(format!(
            "verb {} {}->{} {}",
            m.address,
            name(&m.approved),
            name(&m.executed),
            name(&m.severity)
        ));
    }
    for c in &report.changed {
        lines.push(format!(
            "changed {} {} {}",
            c.address,
            c.attribute,
            name(&c.severity)
        ));
    }
    lines.join("\n")
}

/// Compares `result` (read with [`normalize_execution`]) with `approved` and checks the
/// rendered report.
#[track_caller]
fn check(label: &str, approved: &NormalizedPlan, result: &Value, expected: &str) {
    let report = compare(approved, &executed(result));
    let got = render(&report);
    assert_eq!(
        got,
        expected.trim(),
        "{label}\nsummary: {}\nnotes: {:#?}",
        report.summary,
        report.notes
    );
    assert_report_invariants(&report);
}

/// What every report satisfies, whatever the input.
fn assert_report_invariants(report: &ExecutionReport) {
    let findings = report.extra.len()
        + report.missing.len()
        + report.failed.len()
        + report.verb_mismatches.len()
        + report.changed.len()
        + usize::from(report.unapproved.is_some());
    let deviation = report.result == custos_gate::execution::ExecutionResult::Deviation;
    assert_eq!(deviation, findings > 0, "{}", report.summary);
    assert_eq!(
        report.severity == custos_core::entry::Severity::Info,
        !deviation,
        "{}",
        report.summary
    );
    assert!(
        report
            .summary
            .starts_with(if deviation { "deviation" } else { "matches" }),
        "{}",
        report.summary
    );
}

/// Scenario A executed exactly as approved, as a generic report.
fn scenario_a_executed() -> Value {
    json!({
        "status": "succeeded",
        "resources": [
            {"address": "aws_vpc.ml_segment", "verb": "created", "type": "aws_vpc",
             "attributes": {"cidr_block": "10.42.0.0/16", "arn": "arn:aws:ec2:…:vpc/vpc-1"}},
            {"id": "aws_subnet.ml_private", "action": "create",
             "attributes": {"cidr_block": "10.42.1.0/24", "map_public_ip_on_launch": "false"}},
            {"address": "aws_security_group.ml_segment", "verb": "created",
             "ingress": [
                {"cidr": "10.42.0.0/16", "port": "22", "protocol": "tcp"},
                {"cidr": "10.42.0.0/16", "from_port": 8888, "to_port": 8890, "protocol": "tcp"}
             ]},
            {"address": "aws_instance.gpu", "verb": "Created", "quantity": 2,
             "attributes": {"instance_type": "g4dn.xlarge", "associate_public_ip_address": false,
                            "root_block_device": [{"encrypted": true, "volume_size": "200", "iops": 3000}]}}
        ]
    })
}

/// `value` with the change at `address` replaced by `f` of it (or removed when `f` says so).
fn edit(mut value: Value, address: &str, f: impl Fn(&mut Value) -> bool) -> Value {
    if let Some(list) = value.get_mut("resources").and_then(Value::as_array_mut) {
        list.retain_mut(|r| {
            let this = r
                .get("address")
                .or_else(|| r.get("id"))
                .and_then(Value::as_str);
            this != Some(address) || f(r)
        });
    }
    value
}

fn push(mut value: Value, change: Value) -> Value {
    if let Some(list) = value.get_mut("resources").and_then(Value::as_array_mut) {
        list.push(change);
    }
    value
}

// ---------------------------------------------------------------------------------------------
// Generic reports

#[test]
fn generic_reports_against_scenario_a() {
    let approved = scenario("a");
    let base = scenario_a_executed;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("exactly as approved", base(), "matches info"),
        (
            "an extra resource",
            push(
                base(),
                json!({"address": "aws_security_group.pci_prod_firewall", "verb": "updated",
                       "type": "aws_security_group"}),
            ),
            "deviation critical\nextra aws_security_group.pci_prod_firewall update critical",
        ),
        (
            "an extra resource that failed is still an unapproved attempt",
            push(
                base(),
                json!({"address": "aws_s3_bucket.exfil", "verb": "create", "status": "failed",
                       "error": "AccessDenied"}),
            ),
            "deviation critical\nextra aws_s3_bucket.exfil create critical",
        ),
        (
            "a missing action",
            edit(base(), "aws_instance.gpu", |_| false),
            "deviation high\nmissing aws_instance.gpu create high",
        ),
        (
            "a missing action when the execution reported failure",
            {
                let mut v = edit(base(), "aws_instance.gpu", |_| false);
                v["status"] = json!("partial");
                v
            },
            "deviation medium\nmissing aws_instance.gpu create medium",
        ),
        (
            "a skipped action counts as missing",
            edit(base(), "aws_instance.gpu", |r| {
                r["status"] = json!("skipped");
                true
            }),
            "deviation high\nmissing aws_instance.gpu create high",
        ),
        (
            "a failed approved action",
            edit(base(), "aws_instance.gpu", |r| {
                r["error"] = json!("InsufficientInstanceCapacity");
                true
            }),
            "deviation medium\nfailed aws_instance.gpu create medium",
        ),
        (
            "ingress opened to the internet",
            edit(base(), "aws_security_group.ml_segment", |r| {
                r["ingress"][0]["cidr"] = json!("0.0.0.0/0");
                true
            }),
            "deviation critical\nchanged aws_security_group.ml_segment ingress critical",
        ),
        (
            "ingress opened through attributes",
            edit(base(), "aws_security_group.ml_segment", |r| {
                r["attributes"] = json!({"ingress": [
                    {"cidr_blocks": ["10.42.0.0/16"], "from_port": 22, "to_port": 22, "protocol": "tcp"},
                    {"cidr_blocks": ["0.0.0.0/0"], "from_port": 8888, "to_port": 8890, "protocol": "tcp"}
                ]});
                true
            }),
            "deviation critical\nchanged aws_security_group.ml_segment ingress critical",
        ),
        (
            "fewer ingress rules than approved are not an opening",
            edit(base(), "aws_security_group.ml_segment", |r| {
                r["ingress"] = json!([{"cidr": "10.42.0.0/16", "port": 22, "protocol": "tcp"}]);
                true
            }),
            "matches info",
        ),
        (
            "a plain attribute changed",
            edit(base(), "aws_instance.gpu", |r| {
                r["attributes"]["instance_type"] = json!("p4d.24xlarge");
                true
            }),
            "deviation high\nchanged aws_instance.gpu instance_type high",
        ),
        (
            "a security attribute changed",
            edit(base(), "aws_instance.gpu", |r| {
                r["attributes"]["associate_public_ip_address"] = json!(true);
                true
            }),
            "deviation critical\nchanged aws_instance.gpu associate_public_ip_address critical",
        ),
        (
            "encryption switched off inside a block",
            edit(base(), "aws_instance.gpu", |r| {
                r["attributes"]["root_block_device"][0]["encrypted"] = json!(false);
                true
            }),
            "deviation critical\nchanged aws_instance.gpu root_block_device critical",
        ),
        (
            "a plain member of a block changed",
            edit(base(), "aws_instance.gpu", |r| {
                r["attributes"]["root_block_device"][0]["volume_size"] = json!(50);
                true
            }),
            "deviation high\nchanged aws_instance.gpu root_block_device high",
        ),
        (
            "a different quantity",
            edit(base(), "aws_instance.gpu", |r| {
                r["quantity"] = json!(8);
                true
            }),
            "deviation high\nchanged aws_instance.gpu quantity high",
        ),
        (
            "replaced instead of created destroys something",
            edit(base(), "aws_vpc.ml_segment", |r| {
                r["verb"] = json!("replaced");
                true
            }),
            "deviation critical\nverb aws_vpc.ml_segment create->replace critical",
        ),
        (
            "read and no-op entries are not changes",
            push(
                base(),
                json!({"address": "data.aws_ami.ubuntu", "verb": "read", "type": "aws_ami"}),
            ),
            "matches info",
        ),
    ];
    for (label, result, expected) in &cases {
        check(label, &approved, result, expected);
    }
}

#[test]
fn verb_mismatches_against_scenario_d() {
    let approved = scenario("d");
    let report = |verb: &str| {
        json!({"resources": [{"address": "aws_autoscaling_group.api", "verb": verb,
                              "attributes": {"desired_capacity": 12, "max_size": "16"}}]})
    };
    let cases = [
        ("update", "matches info"),
        ("scaled", "matches info"),
        (
            "deleted",
            "deviation critical\nverb aws_autoscaling_group.api update->delete critical",
        ),
        (
            "destroyed",
            "deviation critical\nverb aws_autoscaling_group.api update->delete critical",
        ),
        (
            "recreated",
            "deviation critical\nverb aws_autoscaling_group.api update->replace critical",
        ),
        (
            "created",
            "deviation high\nverb aws_autoscaling_group.api update->create high",
        ),
    ];
    for (verb, expected) in cases {
        check(verb, &approved, &report(verb), expected);
    }
    check(
        "scaled to another capacity",
        &approved,
        &json!({"resources": [{"address": "aws_autoscaling_group.api", "verb": "update",
                               "attributes": {"desired_capacity": 40}, "quantity": 40}]}),
        "deviation high\nchanged aws_autoscaling_group.api desired_capacity high\nchanged aws_autoscaling_group.api quantity high",
    );
}

#[test]
fn scenario_b_and_c_reports() {
    check(
        "scenario B executed as approved, public firewall rule included",
        &scenario("b"),
        &push(
            scenario_a_executed(),
            json!({"address": "aws_security_group.pci_prod_firewall", "verb": "modified",
            "attributes": {"ingress": [
               {"cidr_blocks": ["0.0.0.0/0"], "from_port": 443, "to_port": 443, "protocol": "tcp"},
               {"cidr_blocks": ["10.0.0.0/8"], "from_port": "443", "to_port": 443, "protocol": "tcp"}
            ]}}),
        ),
        "matches info",
    );
    let approved = scenario("c");
    let deleted = |ids: &[&str]| {
        let list: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "verb": "deleted", "type": "aws_vpc"}))
            .collect();
        json!({"actions": list})
    };
    check(
        "all three deleted",
        &approved,
        &deleted(&["vpc-0a1b2c3d", "vpc-0e4f5a6b", "vpc-0c7d8e9f"]),
        "matches info",
    );
    check(
        "one left and one extra",
        &approved,
        &deleted(&["vpc-0a1b2c3d", "vpc-0e4f5a6b", "vpc-prod-main"]),
        "deviation critical\nextra vpc-prod-main delete critical\nmissing vpc-0c7d8e9f delete high",
    );
}

// ---------------------------------------------------------------------------------------------
// Terraform plans of what was applied

#[test]
fn a_terraform_plan_of_what_was_applied_matches_itself() {
    for file in TERRAFORM_PLANS {
        let (doc, approved) = terraform_plan(file);
        let result = executed(&doc);
        assert_eq!(result.format, ExecutionFormat::TerraformPlan, "{file}");
        let report = compare(&approved, &result);
        assert_eq!(
            render(&report),
            "matches info",
            "{file}: {}",
            report.summary
        );
    }
}

#[test]
fn a_terraform_plan_with_a_changed_rule() {
    let (mut doc, approved) = terraform_plan("change-keys.json");
    doc["resource_changes"][0]["change"]["after"]["cidr_blocks"] = json!(["0.0.0.0/0"]);
    doc["resource_changes"][1]["change"]["actions"] = json!(["delete", "create"]);
    check(
        "change-keys with an opened rule and a replacement",
        &approved,
        &doc,
        "deviation critical\nverb aws_security_group_rule.bar update->replace critical\nchanged aws_security_group_rule.foo cidr_blocks critical",
    );
}

// ---------------------------------------------------------------------------------------------
// `terraform apply -json` logs

fn hook(kind: &str, address: &str, action: &str) -> Value {
    let (resource_type, name) = address.split_once('.').unwrap_or((address, address));
    json!({
        "@level": if kind == "apply_errored" { "error" } else { "info" },
        "@message": format!("{address}: {kind}"),
        "@module": "terraform.ui",
        "@timestamp": "2026-01-01T00:00:00Z",
        "hook": {
            "resource": {"addr": address, "module": "", "resource": address,
                         "implied_provider": "aws", "resource_type": resource_type,
                         "resource_name": name, "resource_key": null},
            "action": action
        },
        "type": kind
    })
}

fn version() -> Value {
    json!({"@level": "info", "@message": "Terraform 1.9.0", "@module": "terraform.ui",
           "terraform": "1.9.0", "type": "version", "ui": "1.2"})
}

fn summary(add: u64, change: u64, remove: u64) -> Value {
    json!({"@level": "info",
           "@message": format!("Apply complete! Resources: {add} added, {change} changed, {remove} destroyed."),
           "changes": {"add": add, "change": change, "remove": remove, "operation": "apply"},
           "type": "change_summary"})
}

fn diagnostic(summary: &str, address: Option<&str>) -> Value {
    let mut details = json!({"severity": "error", "summary": summary, "detail": ""});
    if let Some(address) = address {
        details["address"] = json!(address);
    }
    json!({"@level": "error", "@message": format!("Error: {summary}"), "type": "diagnostic",
           "diagnostic": details})
}

/// Scenario A applied: start and complete for each resource.
fn scenario_a_log() -> Vec<Value> {
    let mut log = vec![version()];
    for address in [
        "aws_vpc.ml_segment",
        "aws_subnet.ml_private",
        "aws_security_group.ml_segment",
        "aws_instance.gpu",
    ] {
        log.push(hook("apply_start", address, "create"));
        log.push(hook("apply_complete", address, "create"));
    }
    log.push(summary(4, 0, 0));
    log
}

fn lines(messages: &[Value]) -> String {
    messages
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_logs() {
    let approved = scenario("a");
    let errored = {
        let mut log = scenario_a_log();
        log.retain(|m| {
            !(m["type"] == "apply_complete" && m["hook"]["resource"]["addr"] == "aws_instance.gpu")
        });
        log.pop();
        log.push(hook("apply_errored", "aws_instance.gpu", "create"));
        log.push(diagnostic(
            "creating EC2 Instance: InsufficientInstanceCapacity",
            Some("aws_instance.gpu"),
        ));
        log
    };
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("as approved", scenario_a_log(), "matches info"),
        (
            "one create errored",
            errored,
            "deviation medium\nfailed aws_instance.gpu create medium",
        ),
        (
            "started and never finished",
            {
                let mut log = scenario_a_log();
                log.retain(|m| {
                    !(m["type"] == "apply_complete"
                        && m["hook"]["resource"]["addr"] == "aws_vpc.ml_segment")
                });
                log
            },
            "deviation medium\nfailed aws_vpc.ml_segment create medium",
        ),
        (
            "never started: missing, and the run failed",
            {
                let mut log = scenario_a_log();
                log.retain(|m| m["hook"]["resource"]["addr"] != "aws_instance.gpu");
                log.pop();
                log.push(diagnostic(
                    "Provider produced inconsistent final plan",
                    None,
                ));
                log
            },
            "deviation medium\nmissing aws_instance.gpu create medium",
        ),
        (
            "an unapproved destroy in the same run",
            {
                let mut log = scenario_a_log();
                log.insert(
                    1,
                    hook(
                        "apply_start",
                        "aws_security_group.pci_prod_firewall",
                        "delete",
                    ),
                );
                log.insert(
                    2,
                    hook(
                        "apply_complete",
                        "aws_security_group.pci_prod_firewall",
                        "delete",
                    ),
                );
                log
            },
            "deviation critical\nextra aws_security_group.pci_prod_firewall delete critical",
        ),
        (
            "a replacement of an approved create",
            {
                let mut log = scenario_a_log();
                log.insert(1, hook("apply_complete", "aws_vpc.ml_segment", "delete"));
                log
            },
            "deviation critical\nverb aws_vpc.ml_segment create->replace critical",
        ),
        (
            "refreshes, reads, no-ops and outputs are not changes",
            {
                let mut log = scenario_a_log();
                log.insert(1, json!({"type": "refresh_start", "hook": {"resource": {"addr": "aws_iam_role.x"}}}));
                log.insert(1, hook("apply_complete", "data.aws_ami.ubuntu", "read"));
                log.insert(1, hook("apply_complete", "aws_iam_role.x", "noop"));
                log.push(json!({"type": "outputs", "outputs": {}}));
                log
            },
            "matches info",
        ),
    ];
    for (label, log, expected) in &cases {
        check(
            &format!("{label} (array)"),
            &approved,
            &Value::Array(log.clone()),
            expected,
        );
        check(
            &format!("{label} (string)"),
            &approved,
            &Value::String(lines(log)),
            expected,
        );
        let bytes = lines(log).into_bytes();
        let report = compare(
            &approved,
            &normalize_execution_bytes(&bytes).unwrap_or_else(|e| panic!("{label}: {e}")),
        );
        assert_eq!(render(&report), expected.trim(), "{label} (bytes)");
    }
}

#[test]
fn apply_log_status_and_notes() {
    let ok = executed(&Value::Array(scenario_a_log()));
    assert_eq!(ok.status, ExecutionStatus::Succeeded);
    assert!(
        ok.notes.iter().any(|n| n
            == "Terraform reported: Apply complete! Resources: 4 added, 0 changed, 0 destroyed."),
        "{:?}",
        ok.notes
    );
    let mut truncated = scenario_a_log();
    truncated.pop();
    let truncated = executed(&Value::Array(truncated));
    assert_eq!(truncated.status, ExecutionStatus::NotReported);
    assert!(
        truncated
            .notes
            .iter()
            .any(|n| n.contains("may be incomplete"))
    );

    let mut failed = scenario_a_log();
    failed.push(hook("apply_errored", "aws_s3_bucket.logs", "update"));
    failed.push(diagnostic(
        "updating S3 bucket: AccessDenied",
        Some("aws_s3_bucket.logs"),
    ));
    let failed = executed(&Value::Array(failed));
    assert_eq!(failed.status, ExecutionStatus::Failed);
    let Evidence::Changes(changes) = &failed.evidence else {
        panic!("an apply log shows changes");
    };
    let bucket = changes.iter().find(|c| c.address == "aws_s3_bucket.logs");
    assert_eq!(
        bucket.and_then(|c| c.error.as_deref()),
        Some("Terraform reported `update` errored; updating S3 bucket: AccessDenied")
    );
    assert!(
        failed
            .notes
            .iter()
            .any(|n| n == "Terraform error (aws_s3_bucket.logs): updating S3 bucket: AccessDenied")
    );
}

#[test]
fn apply_log_of_a_replacement() {
    // Terraform applies a replacement as a destroy and a create of the same address.
    let (_, approved) = terraform_plan("replace-secret.json");
    let address = "aws_secretsmanager_secret.default";
    let mut log = vec![version()];
    for (kind, action) in [
        ("apply_start", "delete"),
        ("apply_complete", "delete"),
        ("apply_start", "create"),
        ("apply_complete", "create"),
    ] {
        log.push(hook(kind, address, action));
    }
    log.push(summary(1, 0, 1));
    check(
        "replaced",
        &approved,
        &Value::Array(log.clone()),
        "matches info",
    );
    let destroyed_only = log.get(..4).map(<[Value]>::to_vec).unwrap_or_default();
    check(
        "destroyed, then the create never finished",
        &approved,
        &Value::Array(destroyed_only),
        "deviation medium\nfailed aws_secretsmanager_secret.default replace medium",
    );
    let deleted = vec![hook("apply_complete", address, "delete"), summary(0, 0, 1)];
    check(
        "only destroyed",
        &approved,
        &Value::Array(deleted),
        "deviation high\nverb aws_secretsmanager_secret.default replace->delete high",
    );
}

// ---------------------------------------------------------------------------------------------
// Post-apply states

/// The state a plan leaves, built from its `planned_values` (which nest `child_modules`).
fn state_from(doc: &Value) -> Value {
    json!({
        "format_version": "1.0",
        "terraform_version": "1.9.0",
        "values": doc.get("planned_values").cloned().unwrap_or(Value::Null)
    })
}

/// The state a plan leaves, built from the `after` values of its `resource_changes`: every
/// managed resource but the deleted ones, with its `after_sensitive` marks. (Some test plans'
/// `planned_values` disagree with their `resource_changes`, which are what is approved.)
fn state_from_changes(doc: &Value) -> Value {
    let empty = Vec::new();
    let changes = doc
        .get("resource_changes")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let resources: Vec<Value> = changes
        .iter()
        .filter(|rc| rc["mode"] != "data" && rc["change"]["actions"] != json!(["delete"]))
        .map(|rc| {
            json!({
                "address": rc["address"], "mode": "managed", "type": rc["type"], "name": rc["name"],
                "values": rc["change"]["after"], "sensitive_values": rc["change"]["after_sensitive"]
            })
        })
        .collect();
    json!({"format_version": "1.0", "values": {"root_module": {"resources": resources}}})
}

#[test]
fn the_state_a_plan_leaves_matches_it() {
    for file in TERRAFORM_PLANS {
        let (doc, approved) = terraform_plan(file);
        let state = executed(&state_from_changes(&doc));
        assert_eq!(state.format, ExecutionFormat::TerraformState, "{file}");
        let report = compare(&approved, &state);
        assert_eq!(
            render(&report),
            "matches info",
            "{file}: {}\n{:#?}",
            report.summary,
            report.changed
        );
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with("checked against a post-apply state")),
            "{file}"
        );
    }
}

/// The resources of a state built from `change-keys.json`, for editing.
fn change_keys_state() -> (Value, NormalizedPlan) {
    let (doc, approved) = terraform_plan("change-keys.json");
    (state_from_changes(&doc), approved)
}

#[test]
fn altered_states() {
    let (state, approved) = change_keys_state();
    let resources = "/values/root_module/resources";
    let with = |f: &dyn Fn(&mut Value)| {
        let mut s = state.clone();
        f(&mut s);
        s
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unaltered", state.clone(), "matches info"),
        (
            "a port other than approved",
            with(&|s| {
                if let Some(v) = s.pointer_mut(&format!("{resources}/0/values/to_port")) {
                    *v = json!(5499);
                }
            }),
            "deviation critical\nchanged aws_security_group_rule.foo to_port high\nchanged aws_security_group_rule.foo ingress critical",
        ),
        (
            "a rule opened to the internet",
            with(&|s| {
                if let Some(v) = s.pointer_mut(&format!("{resources}/1/values/cidr_blocks")) {
                    *v = json!(["0.0.0.0/0"]);
                }
            }),
            "deviation critical\nchanged aws_security_group_rule.bar cidr_blocks critical",
        ),
        (
            "an approved update missing from the state",
            with(&|s| {
                if let Some(list) = s.pointer_mut(resources).and_then(Value::as_array_mut) {
                    list.remove(0);
                }
            }),
            "deviation high\nmissing aws_security_group_rule.foo update high",
        ),
        (
            "an approved update replaced (new id)",
            with(&|s| {
                if let Some(v) = s.pointer_mut(&format!("{resources}/1/values/id")) {
                    *v = json!("sgrule-99999999");
                }
            }),
            "deviation critical\nverb aws_security_group_rule.bar update->replace critical",
        ),
        (
            "a resource the plan never mentioned is only a note",
            with(&|s| {
                if let Some(list) = s.pointer_mut(resources).and_then(Value::as_array_mut) {
                    list.push(json!({"address": "aws_s3_bucket.other", "mode": "managed",
                                     "type": "aws_s3_bucket", "name": "other",
                                     "values": {"bucket": "other"}}));
                }
            }),
            "matches info",
        ),
    ];
    for (label, state, expected) in &cases {
        check(label, &approved, state, expected);
    }
}

#[test]
fn states_show_deletes_no_ops_and_replacements() {
    let plan = json!({
        "format_version": "1.2",
        "resource_changes": [
            {"address": "aws_vpc.old", "mode": "managed", "type": "aws_vpc", "name": "old",
             "change": {"actions": ["delete"], "before": {"id": "vpc-1", "cidr_block": "10.0.0.0/16"}, "after": null}},
            {"address": "aws_vpc.keep", "mode": "managed", "type": "aws_vpc", "name": "keep",
             "change": {"actions": ["no-op"], "before": {"id": "vpc-2", "cidr_block": "10.1.0.0/16"},
                        "after": {"id": "vpc-2", "cidr_block": "10.1.0.0/16"}}},
            {"address": "aws_instance.web", "mode": "managed", "type": "aws_instance", "name": "web",
             "change": {"actions": ["delete", "create"], "before": {"id": "i-1", "ami": "ami-old"},
                        "after": {"ami": "ami-new"}, "after_unknown": {"id": true}}}
        ]
    });
    let approved =
        normalize_value(&plan, &Metadata::default(), "", None).unwrap_or_else(|e| panic!("{e}"));
    let state = |resources: Value| json!({"format_version": "1.0", "values": {"root_module": {"resources": resources}}});
    let vpc = |name: &str, id: &str, cidr: &str| {
        json!({"address": format!("aws_vpc.{name}"), "mode": "managed", "type": "aws_vpc", "name": name,
               "values": {"id": id, "cidr_block": cidr}})
    };
    let web = |id: &str| {
        json!({"address": "aws_instance.web", "mode": "managed", "type": "aws_instance", "name": "web",
               "values": {"id": id, "ami": "ami-new"}})
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "as approved",
            state(json!([vpc("keep", "vpc-2", "10.1.0.0/16"), web("i-2")])),
            "matches info",
        ),
        (
            "the delete did not happen",
            state(json!([
                vpc("old", "vpc-1", "10.0.0.0/16"),
                vpc("keep", "vpc-2", "10.1.0.0/16"),
                web("i-2")
            ])),
            "deviation high\nmissing aws_vpc.old delete high",
        ),
        (
            "an unchanged resource is gone",
            state(json!([web("i-2")])),
            "deviation high\nextra aws_vpc.keep delete high",
        ),
        (
            "an unchanged resource was modified",
            state(json!([vpc("keep", "vpc-2", "0.0.0.0/0"), web("i-2")])),
            "deviation critical\nchanged aws_vpc.keep cidr_block critical",
        ),
        (
            "an unchanged resource was replaced",
            state(json!([vpc("keep", "vpc-9", "10.1.0.0/16"), web("i-2")])),
            "deviation critical\nextra aws_vpc.keep replace critical",
        ),
        (
            "the replacement did not replace",
            state(json!([vpc("keep", "vpc-2", "10.1.0.0/16"), web("i-1")])),
            "deviation high\nverb aws_instance.web replace->update high",
        ),
    ];
    for (label, state, expected) in &cases {
        check(label, &approved, state, expected);
    }
}

#[test]
fn a_real_state_with_sensitive_values_and_modules() {
    // `bad-corrupted.json` is a real `terraform show -json` state (its `ami` is sensitive).
    let state = normalize_execution_bytes(&testdata("bad-corrupted.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.format, ExecutionFormat::TerraformState);
    let Evidence::State(resources) = &state.evidence else {
        panic!("a state shows resources");
    };
    assert_eq!(resources.len(), 1);
    assert_eq!(
        resources.first().map(|r| &r.values),
        Some(&json!({"id": "621124146446964903", "ami": "(sensitive)"}))
    );
    let plan = json!({"resource_changes": [
        {"address": "test_instance.test", "mode": "managed", "type": "test_instance", "name": "test",
         "change": {"actions": ["create"], "before": null, "after": {"ami": "abc"},
                    "after_unknown": {"id": true}, "after_sensitive": {"ami": true}}}
    ]});
    let approved =
        normalize_value(&plan, &Metadata::default(), "", None).unwrap_or_else(|e| panic!("{e}"));
    let report = compare(&approved, &state);
    assert_eq!(render(&report), "matches info");

    let (doc, approved) = terraform_plan("nested-modules.json");
    let state = executed(&state_from(&doc));
    let Evidence::State(resources) = &state.evidence else {
        panic!("a state shows resources");
    };
    assert!(
        resources.iter().any(|r| r.address.starts_with("module.")),
        "child modules are walked"
    );
    let changes = approved.actions.iter().filter(|a| a.verb.changes()).count();
    assert_eq!(
        compare(&approved, &state).summary,
        format!("matches: {changes} approved changes executed as approved")
    );
}

// ---------------------------------------------------------------------------------------------
// Unapproved executions, report JSON

#[test]
fn executing_an_unapproved_request_is_critical() {
    let result = executed(&scenario_a_executed());
    let report = unapproved_execution("the review was vetoed", Some(&result));
    assert_eq!(
        render(&report),
        "deviation critical\n\
         extra aws_vpc.ml_segment create critical\n\
         extra aws_subnet.ml_private create critical\n\
         extra aws_security_group.ml_segment create critical\n\
         extra aws_instance.gpu create critical"
    );
    assert_eq!(
        report.summary,
        "deviation (critical): executed without approval (the review was vetoed); 4 changes executed"
    );
    assert_report_invariants(&report);

    let unknown = unapproved_execution("no review with this request id", None);
    assert_eq!(render(&unknown), "deviation critical");
    assert_report_invariants(&unknown);
    let json = serde_json::to_value(&unknown).unwrap_or_default();
    assert_eq!(json["unapproved"], "no review with this request id");
    assert_eq!(json["status"], "not_reported");
    assert!(json.get("format").is_none());
}

#[test]
fn the_report_serialises_to_a_stable_json_shape() {
    let approved = scenario("a");
    let result = edit(
        scenario_a_executed(),
        "aws_security_group.ml_segment",
        |r| {
            r["ingress"][0]["cidr"] = json!("0.0.0.0/0");
            true
        },
    );
    let report = compare(&approved, &executed(&result));
    let json = serde_json::to_value(&report).unwrap_or_default();
    let keys: Vec<&str> = json
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "changed",
            "extra",
            "failed",
            "format",
            "missing",
            "notes",
            "result",
            "severity",
            "status",
            "summary",
            "verb_mismatches"
        ]
    );
    assert_eq!(json["result"], "deviation");
    assert_eq!(json["severity"], "critical");
    assert_eq!(json["format"], "generic");
    assert_eq!(json["status"], "succeeded");
    assert_eq!(
        json["changed"][0],
        json!({
            "address": "aws_security_group.ml_segment",
            "attribute": "ingress",
            "approved": [
                {"cidr": "10.42.0.0/16", "public": false, "from_port": 22, "to_port": 22, "protocol": "tcp"},
                {"cidr": "10.42.0.0/16", "public": false, "from_port": 8888, "to_port": 8890, "protocol": "tcp"}
            ],
            "executed": [
                {"cidr": "0.0.0.0/0", "public": true, "from_port": 22, "to_port": 22, "protocol": "tcp"},
                {"cidr": "10.42.0.0/16", "public": false, "from_port": 8888, "to_port": 8890, "protocol": "tcp"}
            ],
            "severity": "critical"
        })
    );
    assert_eq!(
        report.summary,
        "deviation (critical): 1 attribute with another value than approved"
    );
    let back: ExecutionReport = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, report);
}

// ---------------------------------------------------------------------------------------------
// Malformed input

#[test]
fn malformed_results_are_refused_naming_the_path() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!(42),
            "(top level): expected an object (a generic report",
        ),
        (json!(null), "(top level): expected an object"),
        (
            json!({}),
            "not an execution result: expected a generic report",
        ),
        (json!({"foo": 1}), "the top-level keys are `foo`"),
        (
            json!({"resources": [], "resource_changes": []}),
            "ambiguous execution result: it has both `resources` (generic report) and `resource_changes`",
        ),
        (
            json!({"resources": {}}),
            "resources: expected an array, found an object",
        ),
        (
            json!({"resources": [7]}),
            "resources[0]: expected an object (one executed change), found the number 7",
        ),
        (
            json!({"resources": [{"verb": "created"}]}),
            "resources[0].resource_type: required field is missing (also accepted as `type`, `kind`)",
        ),
        (
            json!({"resources": [{"address": "aws_vpc.a"}]}),
            "resources[0].verb: required field is missing (also accepted as `action`, `operation`)",
        ),
        (
            json!({"resources": [{"address": "aws_vpc.a", "verb": "exploded"}]}),
            "resources[0].verb: the string \"exploded\" is not a known verb",
        ),
        (
            json!({"actions": [{"id": "x", "action": 3, "type": "t"}]}),
            "actions[0].action: expected a string, found the number 3",
        ),
        (
            json!({"resources": [{"address": "aws_vpc.a", "verb": "created", "attributes": []}]}),
            "resources[0].attributes: expected an object, found an array",
        ),
        (
            json!({"resources": [{"address": "aws_vpc.a", "verb": "created", "tags": 5}]}),
            "resources[0].tags: expected",
        ),
        (
            json!({"resources": [{"address": "aws_vpc.a", "verb": "created"},
                                 {"address": "aws_vpc.a", "verb": "deleted"}]}),
            "resources[1]: address \"aws_vpc.a\" is already used by resources[0]",
        ),
        (
            json!({"resources": [{"address": "a.b", "id": "c.d", "verb": "create"}]}),
            "resources[0]: `address` and `id` are both given and disagree",
        ),
        (
            json!({"resources": [], "status": "meh"}),
            "status: the string \"meh\" is not a known status",
        ),
        (
            json!({"resources": [{"address": "a.b", "verb": "create", "status": 1}]}),
            "resources[0].status: expected a string, found the number 1",
        ),
        (
            json!({"resource_changes": [{"address": "a.b"}]}),
            "resource_changes[0].type: required field is missing",
        ),
        (
            json!({"resource_changes": [{"address": "a.b", "type": "a", "name": "b", "change": {"actions": ["explode"]}}]}),
            "resource_changes[0].change.actions: [\"explode\"] is not a Terraform action list",
        ),
        (
            json!({"values": {"root_module": {"resources": [{"address": "a.b", "type": "a"}]}}}),
            "values.root_module.resources[0].name: required field is missing",
        ),
        (
            json!({"values": {"root_module": {"child_modules": [{"resources": [7]}]}}}),
            "values.root_module.child_modules[0].resources[0]: expected an object (one resource), found the number 7",
        ),
        (
            json!({"values": {"root_module": {"resources": [{"address": "a.b", "type": "a", "name": "b", "values": "x"}]}}}),
            "values.root_module.resources[0].values: expected an object, found the string \"x\"",
        ),
        (
            json!({"values": {"root_module": {"resources": [
                {"address": "aws_security_group.x", "type": "aws_security_group", "name": "x",
                 "values": {"ingress": [7]}}]}}}),
            "values.root_module.resources[0].values.ingress[0]: expected an object, found the number 7",
        ),
        (
            json!({"values": {"root_module": {"resources": [
                {"address": "a.b", "type": "a", "name": "b"}, {"address": "a.b", "type": "a", "name": "b"}]}}}),
            "values.root_module.resources[1]: address \"a.b\" is already used by values.root_module.resources[0]",
        ),
        (json!("not json"), "line 1 of the apply log: not valid JSON"),
        (
            json!("\n\n{\"type\": \"version\"}\n{oops"),
            "line 4 of the apply log: not valid JSON",
        ),
        (
            json!([7]),
            "[0]: expected an object (one Terraform UI message), found the number 7",
        ),
        (
            json!([{"@message": "x"}]),
            "[0].type: required field is missing",
        ),
        (
            json!([{"type": "apply_complete", "hook": {"resource": {}}}]),
            "[0].hook.resource.addr: required field is missing",
        ),
        (
            json!([{"type": "apply_complete"}]),
            "[0].hook: required field is missing",
        ),
        (
            json!([{"type": "apply_complete", "hook": {"resource": {"addr": "a.b"}, "action": "explode"}}]),
            "[0].hook.action: the string \"explode\" is not a Terraform apply action",
        ),
        (
            json!([{"type": "version", "ui": "2.0"}]),
            "[0].ui: Terraform machine-readable UI version 2.0 is not supported",
        ),
        (
            json!({"type": "apply_start", "@level": "info", "hook": 3}),
            "hook: expected an object, found the number 3",
        ),
    ];
    for (input, expected) in &cases {
        match normalize_execution(input) {
            Ok(result) => panic!("{input} was accepted: {result:?}"),
            Err(e) => assert!(
                e.to_string().starts_with(expected) || e.to_string().contains(expected),
                "{input}\n got: {e}\nwant: {expected}"
            ),
        }
    }
}

#[test]
fn bytes_in_every_encoding() {
    let utf16 = |text: &str| -> Vec<u8> {
        let mut out = vec![0xFF, 0xFE];
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    };
    let approved = scenario("a");
    let log = lines(&scenario_a_log());
    let doc = scenario_a_executed().to_string();
    for (label, bytes) in [
        ("UTF-16 log", utf16(&log)),
        ("UTF-16 document", utf16(&doc)),
        (
            "UTF-8 log with BOM",
            [&[0xEF, 0xBB, 0xBF][..], log.as_bytes()].concat(),
        ),
        (
            "UTF-8 log with CRLF",
            log.replace('\n', "\r\n").into_bytes(),
        ),
    ] {
        let result = normalize_execution_bytes(&bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            render(&compare(&approved, &result)),
            "matches info",
            "{label}"
        );
        if label.starts_with("UTF-16") {
            assert_eq!(
                result.notes.first().map(String::as_str),
                Some(
                    "the execution result was UTF-16 LE text (with a byte order mark) and was decoded"
                ),
                "{label}"
            );
        }
    }
    let refused: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![0xFF, 0xFE, 0, 0, b'{', 0, 0, 0],
            "execution result is not readable text: encoded as UTF-32 LE",
        ),
        (
            b"{\"resources\": [".to_vec(),
            "execution result is not valid JSON: EOF while parsing",
        ),
        (
            b"{\"a\": \"caf\xe9\"}".to_vec(),
            "execution result is not readable text: not valid UTF-8: the byte at offset 10 (0xe9)",
        ),
        (
            b"{\"type\": \"version\"}\nnot json".to_vec(),
            "line 2 of the apply log: not valid JSON",
        ),
        (Vec::new(), "execution result is not valid JSON"),
    ];
    for (bytes, expected) in refused {
        let err = normalize_execution_bytes(&bytes).err();
        let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            message.starts_with(expected),
            "{bytes:?}\n got: {message}\nwant: {expected}"
        );
    }
    assert!(matches!(
        normalize_execution_bytes(b"[1, 2").err(),
        Some(ExecutionError::Json { line: 1, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Nothing panics

/// Keys that steer the readers into their branches.
const KEYS: &[&str] = &[
    "resources",
    "actions",
    "resource_changes",
    "planned_values",
    "values",
    "root_module",
    "child_modules",
    "address",
    "id",
    "verb",
    "action",
    "type",
    "name",
    "attributes",
    "after",
    "before",
    "change",
    "status",
    "error",
    "hook",
    "resource",
    "addr",
    "ingress",
    "cidr",
    "from_port",
    "quantity",
    "mode",
    "deposed_key",
    "sensitive_values",
    "ui",
    "@message",
    "format_version",
    "tags",
];

/// Strings that are meaningful somewhere.
const WORDS: &[&str] = &[
    "create",
    "created",
    "update",
    "deleted",
    "replace",
    "no-op",
    "read",
    "apply_complete",
    "apply_errored",
    "apply_start",
    "version",
    "diagnostic",
    "change_summary",
    "failed",
    "succeeded",
    "skipped",
    "aws_vpc.a",
    "aws_security_group.x",
    "aws_security_group",
    "0.0.0.0/0",
    "443",
    "managed",
    "data",
    "2.0",
    "(sensitive)",
    "",
];

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn compare_everywhere(result: &ExecutedChanges) {
    for name in ["a", "b", "c", "d"] {
        let report = compare(&scenario(name), result);
        assert_report_invariants(&report);
        assert!(serde_json::to_string(&report).is_ok());
    }
    assert_report_invariants(&unapproved_execution("vetoed", Some(result)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        if let Ok(result) = normalize_execution(&value) {
            compare_everywhere(&result);
        }
        let wrapped = json!({"resources": [value.clone()]});
        if let Ok(result) = normalize_execution(&wrapped) {
            compare_everywhere(&result);
        }
        let state = json!({"values": {"root_module": {"resources": [value.clone()], "child_modules": [value]}}});
        if let Ok(result) = normalize_execution(&state) {
            compare_everywhere(&result);
        }
    }

    #[test]
    fn arbitrary_log_lines_never_panic(messages in prop::collection::vec(arbitrary_json(), 0..8)) {
        let text = messages.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        if let Ok(result) = normalize_execution(&Value::String(text)) {
            compare_everywhere(&result);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(result) = normalize_execution_bytes(&bytes) {
            compare_everywhere(&result);
        }
    }

    #[test]
    fn arbitrary_approved_attributes_never_panic(
        approved in arbitrary_json(),
        executed in arbitrary_json(),
    ) {
        let plan = json!({"actions": [{"id": "aws_vpc.a", "verb": "update", "type": "aws_vpc",
                                        "after": {"x": approved}}]});
        let result = json!({"resources": [{"address": "aws_vpc.a", "verb": "update",
                                           "attributes": {"x": executed}}]});
        if let (Ok(plan), Ok(result)) = (
            normalize_value(&plan, &Metadata::default(), "", None),
            normalize_execution(&result),
        ) {
            assert_report_invariants(&compare(&plan, &result));
        }
    }
}
