//! End-to-end tests of the normalisers: the generic shape (with the SPEC's four scenario plans
//! in `tests/plans/`), Terraform features the real test plans do not show, errors, and
//! property tests that no input makes them panic.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn metadata(value: Value) -> Metadata {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("metadata: {e}"))
}

fn normalize(plan: &Value) -> NormalizedPlan {
    normalize_value(plan, &Metadata::default(), "", None).unwrap_or_else(|e| panic!("{e}"))
}

fn error(plan: &Value) -> String {
    match normalize_value(plan, &Metadata::default(), "", None) {
        Ok(plan) => panic!("accepted: {plan:?}"),
        Err(e) => e.to_string(),
    }
}

fn scenario(name: &str) -> Value {
    let text = match name {
        "a" => include_str!("../../tests/plans/scenario-a.json"),
        "b" => include_str!("../../tests/plans/scenario-b.json"),
        "c" => include_str!("../../tests/plans/scenario-c.json"),
        _ => include_str!("../../tests/plans/scenario-d.json"),
    };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

fn action<'a>(plan: &'a NormalizedPlan, address: &str) -> &'a PlannedAction {
    plan.actions
        .iter()
        .find(|a| a.address == address)
        .unwrap_or_else(|| panic!("no action {address}"))
}

fn env(action: &PlannedAction) -> (&str, bool, EnvironmentSource) {
    (
        action.environment.name.as_str(),
        action.environment.production,
        action.environment.source,
    )
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const REQUEST_A: &str = "Create an isolated ML microsegment with two GPU instances in nonprod-ml";

/// (a) An ML microsegment with GPU instances in `nonprod-ml`, cost 902.
#[test]
fn scenario_a_ml_microsegment() {
    let plan = normalize_value(&scenario("a"), &Metadata::default(), REQUEST_A, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.format, PlanFormat::Generic);
    assert_eq!(plan.actions.len(), 4);
    assert!(plan.actions.iter().all(|a| a.verb == Verb::Create));
    for a in &plan.actions {
        assert_eq!(
            env(a),
            ("nonprod-ml", false, EnvironmentSource::Action),
            "{}",
            a.address
        );
        assert!(a.data_classes.is_empty() && a.ingress.iter().all(|i| !i.public));
    }
    assert_eq!(plan.cost.monthly, Some(902.0));
    assert_eq!(plan.cost.source, CostSource::Plan);
    assert_eq!(plan.cost.currency.as_deref(), Some("USD"));
    assert_eq!(plan.regions, strings(&["us-east-1"]));
    let gpu = action(&plan, "aws_instance.gpu");
    assert_eq!((gpu.quantity, gpu.monthly_cost), (2, Some(767.04)));
    assert_eq!(gpu.after.get("instance_type"), Some(&json!("g4dn.xlarge")));
    assert_eq!(
        (gpu.controls.firewall, gpu.controls.isolation),
        (Some(true), Some(true))
    );
    let sg = action(&plan, "aws_security_group.ml_segment");
    let ports: Vec<_> = sg
        .ingress
        .iter()
        .map(|i| (i.cidr.as_str(), i.from_port, i.to_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("10.42.0.0/16", Some(22), Some(22)),
            ("10.42.0.0/16", Some(8888), Some(8890))
        ]
    );
    assert_eq!(
        action(&plan, "aws_subnet.ml_private").controls.isolation,
        Some(true)
    );
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

/// (b) Scenario (a) plus the production PCI firewall opened to the internet on 443.
#[test]
fn scenario_b_scope_creep_on_the_pci_firewall() {
    let plan = normalize_value(&scenario("b"), &Metadata::default(), REQUEST_A, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.actions.len(), 5);
    let firewall = action(&plan, "aws_security_group.pci_prod_firewall");
    assert_eq!(firewall.verb, Verb::Update);
    assert_eq!(firewall.name, "pci-prod-firewall");
    // The plan-wide `nonprod-ml` does not make a resource named `…-prod-…` non-production.
    assert_eq!(env(firewall), ("prod", true, EnvironmentSource::Name));
    assert_eq!(firewall.data_classes, strings(&["pci"]));
    assert_eq!(firewall.changed, ["ingress"]);
    let public: Vec<_> = firewall
        .ingress
        .iter()
        .filter(|i| i.public)
        .map(|i| {
            (
                i.cidr.as_str(),
                i.from_port,
                i.to_port,
                i.protocol.as_deref(),
            )
        })
        .collect();
    assert_eq!(public, [("0.0.0.0/0", Some(443), Some(443), Some("tcp"))]);
    assert_eq!(firewall.ingress.len(), 2, "{:?}", firewall.ingress);
    assert_eq!(firewall.controls.firewall, Some(true));
    assert_eq!(firewall.region.as_deref(), Some("us-east-1"));
    let ml = plan
        .actions
        .iter()
        .filter(|a| a.environment.name == "nonprod-ml")
        .count();
    assert_eq!(ml, 4);
}

/// (c) Three dev VPCs deleted.
#[test]
fn scenario_c_three_dev_vpc_deletes() {
    let plan = normalize(&scenario("c"));
    let names: Vec<&str> = plan.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["dev-vpc-1", "dev-vpc-2", "dev-vpc-3"]);
    for vpc in &plan.actions {
        assert_eq!(vpc.verb, Verb::Delete);
        assert!(vpc.verb.destroys());
        assert_eq!(vpc.resource_type, "aws_vpc");
        assert_eq!(env(vpc), ("dev", false, EnvironmentSource::Action));
        assert!(vpc.after.is_null());
        assert!(vpc.before.get("cidr_block").is_some());
        assert_eq!(vpc.tags.get("Environment").map(String::as_str), Some("dev"));
    }
    assert_eq!(action(&plan, "vpc-0e4f5a6b").name, "dev-vpc-2");
    assert_eq!(plan.cost.monthly_increase, Some(-96.0));
    assert_eq!(plan.cost.source, CostSource::Plan);
}

/// (d) The production API scaled up, cost increase 2850.
#[test]
fn scenario_d_production_scale_up() {
    let meta =
        metadata(json!({"user": "alice", "change_ticket_id": "CHG-1", "cost_increase": 2850}));
    let plan = normalize_value(
        &scenario("d"),
        &meta,
        "Scale the production API to 12 instances",
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let [api] = plan.actions.as_slice() else {
        panic!("{:?}", plan.actions);
    };
    assert_eq!(api.verb, Verb::Update);
    assert_eq!(env(api), ("production", true, EnvironmentSource::Action));
    assert_eq!(api.quantity, 12);
    assert_eq!(api.changed, ["desired_capacity", "max_size", "min_size"]);
    assert_eq!(api.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        (plan.cost.monthly, plan.cost.monthly_increase),
        (None, Some(2850.0))
    );
    assert_eq!(plan.cost.source, CostSource::Plan);
    assert!(plan.notes.is_empty(), "metadata agrees: {:?}", plan.notes);

    let disagreeing = metadata(json!({"cost_increase": "900"}));
    let plan =
        normalize_value(&scenario("d"), &disagreeing, "", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.cost.monthly_increase, Some(2850.0));
    assert_eq!(
        plan.notes,
        ["the request metadata gives an increase of 900, set aside: the plan takes precedence"]
    );
}

#[test]
fn verbs_and_synonyms() {
    let cases: &[(&str, Option<Verb>)] = &[
        ("create", Some(Verb::Create)),
        ("Add", Some(Verb::Create)),
        ("new", Some(Verb::Create)),
        ("provision", Some(Verb::Create)),
        ("modify", Some(Verb::Update)),
        ("change", Some(Verb::Update)),
        ("scale", Some(Verb::Update)),
        ("scale_up", Some(Verb::Update)),
        ("Scale Out", Some(Verb::Update)),
        ("destroy", Some(Verb::Delete)),
        ("remove", Some(Verb::Delete)),
        ("TERMINATE", Some(Verb::Delete)),
        ("recreate", Some(Verb::Replace)),
        ("-/+", Some(Verb::Replace)),
        ("read", Some(Verb::Read)),
        ("no-op", Some(Verb::NoOp)),
        ("no_op", Some(Verb::NoOp)),
        ("noop", Some(Verb::NoOp)),
        ("explode", None),
        ("", None),
    ];
    for (word, verb) in cases {
        assert_eq!(verb_from_word(word), *verb, "{word}");
    }
}

#[test]
fn empty_plans() {
    let plan = normalize(&json!({"actions": []}));
    assert!(plan.actions.is_empty());
    assert_eq!(plan.cost.source, CostSource::None);
    assert_eq!(plan.notes, ["the plan has no actions"]);
    let plan = normalize(&json!({"format_version": "1.2", "resource_changes": []}));
    assert_eq!(plan.format, PlanFormat::Terraform);
    assert_eq!(plan.notes, ["the Terraform plan has no resource changes"]);
}

#[test]
fn generic_aliases_and_defaults() {
    let plan = normalize(&json!({
        "environment": "staging",
        "region": "West Europe",
        "cost": {"monthly": "120.5", "currency": "EUR"},
        "actions": [
            {"action": "add", "type": "azurerm_storage_account", "name": "logs", "count": "3",
             "labels": [{"Key": "Environment", "Value": "Production"}, {"key": "Compliance", "value": "GDPR"}],
             "properties": {"public_network_access_enabled": false, "encryption": "Microsoft.Storage"}},
            {"verb": "destroy", "kind": "aws_instance", "id": 7, "attributes": {"tags": {"Name": "old-box"}, "availability_zone": "eu-west-1b"}},
            {"operation": "update", "resource_type": "vm", "name": "box", "env": "qa", "monthly_cost": 40,
             "data_classification": "PII", "controls": {"logging": false}}
        ]
    }));
    let [storage, box7, vm] = plan.actions.as_slice() else {
        panic!("{:?}", plan.actions);
    };
    assert_eq!(storage.address, "azurerm_storage_account.logs");
    assert_eq!((storage.verb, storage.quantity), (Verb::Create, 3));
    assert_eq!(env(storage), ("production", true, EnvironmentSource::Tag));
    assert_eq!(storage.data_classes, strings(&["gdpr"]));
    assert_eq!(storage.region.as_deref(), Some("westeurope"));
    assert_eq!(
        (storage.controls.isolation, storage.controls.encryption),
        (Some(true), Some(true))
    );
    assert_eq!(
        storage.after.get("encryption"),
        Some(&json!("Microsoft.Storage"))
    );

    assert_eq!(
        (box7.address.as_str(), box7.name.as_str(), box7.verb),
        ("7", "7", Verb::Delete)
    );
    assert_eq!(box7.region.as_deref(), Some("eu-west-1"));
    assert!(box7.after.is_null() && box7.before.get("tags").is_some());
    assert_eq!(env(box7), ("staging", false, EnvironmentSource::Action));

    assert_eq!(env(vm), ("qa", false, EnvironmentSource::Action));
    assert_eq!(vm.data_classes, strings(&["pii"]));
    assert_eq!(vm.controls.logging, Some(false));
    assert_eq!(vm.quantity, 1);

    assert_eq!(plan.cost.monthly, Some(120.5));
    assert_eq!(plan.cost.currency.as_deref(), Some("EUR"));
    assert_eq!(plan.regions, strings(&["eu-west-1", "westeurope"]));
}

#[test]
fn generic_cost_is_the_sum_of_action_costs_when_not_stated() {
    let plan = normalize(&json!({"actions": [
        {"verb": "create", "type": "vm", "name": "a", "cost": 100},
        {"verb": "update", "type": "vm", "name": "b", "cost": "50.5"},
        {"verb": "delete", "type": "vm", "name": "c", "cost": 70},
        {"verb": "create", "type": "vm", "name": "d"}
    ]}));
    assert_eq!(plan.cost.monthly, Some(150.5));
    assert_eq!(plan.cost.source, CostSource::Plan);
    let meta = metadata(json!({"estimated_monthly_cost": 99}));
    let plan =
        normalize_value(&json!({"actions": []}), &meta, "", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (plan.cost.monthly, plan.cost.source),
        (Some(99.0), CostSource::Metadata)
    );
}

#[test]
fn environment_falls_back_to_metadata_then_request() {
    let plan_json = json!({"actions": [{"verb": "create", "type": "vm", "name": "box"}]});
    let check = |meta: Value, request: &str, expected: (&str, bool, EnvironmentSource)| {
        let plan = normalize_value(&plan_json, &metadata(meta), request, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let got = plan.actions.first().map(env);
        assert_eq!(got, Some(expected), "{request}");
    };
    check(
        json!({"environment": "dev"}),
        "touch prod",
        ("dev", false, EnvironmentSource::Metadata),
    );
    check(
        json!({}),
        "add a box to the sandbox",
        ("sandbox", false, EnvironmentSource::Request),
    );
    check(
        json!({}),
        "add a box",
        ("unknown", true, EnvironmentSource::Unknown),
    );
}

#[test]
fn generic_errors_name_the_path() {
    let cases = [
        (
            json!([]),
            "(top level): expected an object (a generic plan or a Terraform plan), found an array",
        ),
        (
            json!("plan"),
            "(top level): expected an object (a generic plan or a Terraform plan), found the string \"plan\"",
        ),
        (
            json!({}),
            "not a plan: expected a generic plan (an object with an `actions` array) or a Terraform plan (`terraform show -json` output, with `resource_changes`); the top-level keys are none (the object is empty)",
        ),
        (
            json!({"steps": []}),
            "not a plan: expected a generic plan (an object with an `actions` array) or a Terraform plan (`terraform show -json` output, with `resource_changes`); the top-level keys are `steps`",
        ),
        (
            json!({"actions": [], "resource_changes": []}),
            "ambiguous plan: it has both `actions` (generic plan) and `resource_changes` (Terraform plan); send one or the other",
        ),
        (
            json!({"actions": {}}),
            "actions: expected an array, found an object",
        ),
        (
            json!({"actions": null}),
            "actions: required field is missing",
        ),
        (
            json!({"actions": [1]}),
            "actions[0]: expected an object (one action), found the number 1",
        ),
        (
            json!({"actions": [{"type": "vm", "name": "a"}]}),
            "actions[0].verb: required field is missing (also accepted as `action`, `operation`)",
        ),
        (
            json!({"actions": [{"verb": "explode", "type": "vm", "name": "a"}]}),
            "actions[0].verb: the string \"explode\" is not a known verb (expected create, update, delete, replace, read or no-op, or a synonym such as add, modify, scale, destroy, terminate, recreate)",
        ),
        (
            json!({"actions": [{"verb": 3, "type": "vm", "name": "a"}]}),
            "actions[0].verb: expected a string, found the number 3",
        ),
        (
            json!({"actions": [{"verb": "create", "action": "delete", "type": "vm", "name": "a"}]}),
            "actions[0]: `verb` and `action` are both given and disagree",
        ),
        (
            json!({"actions": [{"verb": "create", "name": "a"}]}),
            "actions[0].resource_type: required field is missing (also accepted as `type`, `kind`)",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm"}]}),
            "actions[0].name: required field is missing (also accepted as `resource_name`)",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "quantity": -1}]}),
            "actions[0].quantity: the number -1 is out of range (expected a non-negative whole number)",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "count": true}]}),
            "actions[0].count: expected a non-negative whole number, found the boolean true",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "tags": "prod"}]}),
            "actions[0].tags: expected an object of tags or an array of {key, value} tags, found the string \"prod\"",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "cost": "cheap"}]}),
            "actions[0].cost: expected a number, found the string \"cheap\"",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "environment": 5}]}),
            "actions[0].environment: expected a string, found the number 5",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "data_classes": ["pci", 1]}]}),
            "actions[0].data_classes[1]: expected a string, found the number 1",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "controls": {"encryption": "yes"}}]}),
            "actions[0].controls.encryption: expected a boolean, found the string \"yes\"",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "after": []}]}),
            "actions[0].after: expected an object, found an array",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a", "ingress": [{"cidr": "0.0.0.0/0", "port": 99999}]}]}),
            "actions[0].ingress[0].port: the number 99999 is out of range (expected a port 0-65535, a range such as 80-443, or *)",
        ),
        (
            json!({"actions": [{"verb": "create", "type": "vm", "name": "a"}, {"verb": "delete", "type": "vm", "name": "a"}]}),
            "actions[1]: address \"vm.a\" is already used by actions[0]; every action needs its own address (`id`, or `resource_type.name`)",
        ),
        (
            json!({"cost": {"increase": 5}, "cost_increase": 6, "actions": []}),
            "(top level): `cost.increase` and `cost_increase` are both given and disagree",
        ),
        (
            json!({"cost": [], "actions": []}),
            "cost: expected a number, found an array",
        ),
    ];
    for (plan, message) in cases {
        assert_eq!(error(&plan), message, "{plan}");
    }
    let bad_meta = metadata(json!({"cost_delta": {"amount": 3}}));
    let err = normalize_value(&json!({"actions": []}), &bad_meta, "", None)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("metadata.cost_delta: expected a number, found an object")
    );
}

fn terraform(changes: Value) -> Value {
    json!({"format_version": "1.2", "terraform_version": "1.9.0", "resource_changes": changes})
}

fn change(address: &str, actions: Value, before: Value, after: Value) -> Value {
    let parts: Vec<&str> = address.rsplitn(3, '.').collect();
    let (name, resource_type) = (
        parts.first().copied().unwrap_or(""),
        parts.get(1).copied().unwrap_or(""),
    );
    json!({"address": address, "mode": "managed", "type": resource_type, "name": name,
           "provider_name": "registry.terraform.io/hashicorp/aws",
           "change": {"actions": actions, "before": before, "after": after, "after_unknown": {}}})
}

#[test]
fn terraform_errors_name_the_path() {
    let cases = [
        (
            terraform(json!({})),
            "resource_changes: expected an array, found an object",
        ),
        (
            terraform(json!([7])),
            "resource_changes[0]: expected an object (one resource change), found the number 7",
        ),
        (
            terraform(json!([{"address": "a.b", "type": "a", "name": "b"}])),
            "resource_changes[0].change: required field is missing",
        ),
        (
            terraform(json!([{"type": "a", "name": "b", "change": {"actions": ["create"]}}])),
            "resource_changes[0].address: required field is missing",
        ),
        (
            terraform(json!([change(
                "aws_vpc.a",
                json!(["explode"]),
                Value::Null,
                json!({})
            )])),
            "resource_changes[0].change.actions: [\"explode\"] is not a Terraform action list custos understands (expected [\"create\"], [\"update\"], [\"delete\"], [\"delete\",\"create\"], [\"create\",\"delete\"], [\"read\"], [\"no-op\"] or [\"forget\"])",
        ),
        (
            terraform(json!([change(
                "aws_vpc.a",
                json!([1]),
                Value::Null,
                json!({})
            )])),
            "resource_changes[0].change.actions[0]: expected a string, found the number 1",
        ),
        (
            terraform(json!([change(
                "aws_vpc.a",
                json!("create"),
                Value::Null,
                json!({})
            )])),
            "resource_changes[0].change.actions: expected an array, found the string \"create\"",
        ),
        (
            terraform(json!([change(
                "aws_security_group.a",
                json!(["create"]),
                Value::Null,
                json!({"ingress": [{"cidr_blocks": "x", "from_port": 1}, {"cidr_blocks": [5]}]})
            )])),
            "resource_changes[0].change.after.ingress[1].cidr_blocks[0]: expected a string, found the number 5",
        ),
        (
            json!({"format_version": "1.0", "values": {"root_module": {"resources": [{}, {}]}}}),
            "not a Terraform plan: the document is a Terraform state (`values.root_module` with 2 resources) and has no `resource_changes` or `planned_values`; print a plan with `terraform show -json <planfile>`",
        ),
        (
            json!({"terraform_version": "1.5.0", "configuration": {}}),
            "not a Terraform plan: the document is a Terraform document with only configuration, terraform_version, Terraform 1.5.0 and has no `resource_changes` or `planned_values`; print a plan with `terraform show -json <planfile>`",
        ),
    ];
    for (plan, message) in cases {
        assert_eq!(error(&plan), message, "{plan}");
    }
}

#[test]
fn terraform_data_sources_deposed_objects_and_forget() {
    let mut data = change(
        "data.aws_ami.ubuntu",
        json!(["read"]),
        Value::Null,
        json!({"most_recent": true}),
    );
    if let Some(object) = data.as_object_mut() {
        object.insert("mode".into(), json!("data"));
        object.insert("type".into(), json!("aws_ami"));
        object.insert("name".into(), json!("ubuntu"));
    }
    let mut deposed = change(
        "aws_instance.web",
        json!(["delete"]),
        json!({"instance_type": "t3.micro"}),
        Value::Null,
    );
    if let Some(object) = deposed.as_object_mut() {
        object.insert("deposed".into(), json!("00000001"));
    }
    let current = change(
        "aws_instance.web",
        json!(["create"]),
        Value::Null,
        json!({"instance_type": "t3.large"}),
    );
    let forget = change(
        "aws_s3_bucket.old",
        json!(["forget"]),
        json!({"bucket": "old"}),
        Value::Null,
    );
    let plan = normalize(&terraform(json!([data, deposed, current, forget])));
    let verbs: Vec<(&str, Verb)> = plan
        .actions
        .iter()
        .map(|a| (a.address.as_str(), a.verb))
        .collect();
    assert_eq!(
        verbs,
        [
            ("data.aws_ami.ubuntu", Verb::Read),
            ("aws_instance.web (deposed 00000001)", Verb::Delete),
            ("aws_instance.web", Verb::Create),
            ("aws_s3_bucket.old", Verb::NoOp),
        ]
    );
    assert_eq!(
        plan.notes,
        [
            "aws_s3_bucket.old is removed from Terraform state without being destroyed (`forget`): recorded as no-op"
        ]
    );
    let deleted = action(&plan, "aws_instance.web (deposed 00000001)");
    assert!(deleted.after.is_null());
    assert_eq!(
        deleted.before.get("instance_type"),
        Some(&json!("t3.micro"))
    );
}

#[test]
fn terraform_sensitive_values_are_redacted_and_changes_still_seen() {
    let mut db = change(
        "aws_db_instance.main",
        json!(["update"]),
        json!({"password": "old-secret", "instance_class": "db.t3.micro", "tags": {"env": "prod"}}),
        json!({"password": "new-secret", "instance_class": "db.t3.large", "tags": {"env": "prod"}}),
    );
    if let Some(change) = db.get_mut("change").and_then(Value::as_object_mut) {
        change.insert("before_sensitive".into(), json!({"password": true}));
        change.insert("after_sensitive".into(), json!({"password": true}));
        change.insert("after_unknown".into(), json!({"arn": true}));
    }
    let plan = normalize(&terraform(json!([db])));
    let db = action(&plan, "aws_db_instance.main");
    assert_eq!(db.changed, ["arn", "instance_class", "password"]);
    assert_eq!(db.before.get("password"), Some(&json!("(sensitive)")));
    assert_eq!(db.after.get("password"), Some(&json!("(sensitive)")));
    assert!(
        !serde_json::to_string(&plan)
            .unwrap_or_default()
            .contains("secret")
    );
    assert_eq!(env(db), ("prod", true, EnvironmentSource::Tag));
}

#[test]
fn terraform_other_clouds() {
    let nsg = json!({"address": "module.prod_net.azurerm_network_security_group.web", "module_address": "module.prod_net",
        "mode": "managed", "type": "azurerm_network_security_group", "name": "web",
        "change": {"actions": ["create"], "before": null, "after": {"location": "North Europe", "name": "web-nsg",
            "security_rule": [{"direction": "Inbound", "access": "Allow", "protocol": "Tcp", "source_address_prefix": "Internet", "destination_port_range": "3389"}],
            "tags": {"DataClassification": "GDPR"}}, "after_unknown": {}}});
    let firewall = json!({"address": "google_compute_firewall.ssh[\"dev\"]", "index": "dev", "mode": "managed",
        "type": "google_compute_firewall", "name": "ssh",
        "change": {"actions": ["create"], "before": null, "after": {"name": "allow-ssh", "network": "default",
            "source_ranges": ["0.0.0.0/0"], "allow": [{"protocol": "tcp", "ports": ["22"]}], "labels": {"team": "infra"}}, "after_unknown": {}}});
    let bucket = json!({"address": "google_storage_bucket.b", "mode": "managed", "type": "google_storage_bucket", "name": "b",
        "change": {"actions": ["create"], "before": null, "after": {"name": "b", "location": "EU"}, "after_unknown": {}}});
    let plan = normalize(&terraform(json!([nsg, firewall, bucket])));
    let nsg = action(&plan, "module.prod_net.azurerm_network_security_group.web");
    assert_eq!(nsg.region.as_deref(), Some("northeurope"));
    assert_eq!(env(nsg), ("prod", true, EnvironmentSource::Name));
    assert_eq!(nsg.data_classes, strings(&["gdpr"]));
    assert_eq!(
        nsg.ingress
            .first()
            .map(|i| (i.cidr.as_str(), i.public, i.from_port)),
        Some(("Internet", true, Some(3389)))
    );
    let ssh = action(&plan, "google_compute_firewall.ssh[\"dev\"]");
    assert_eq!(ssh.name, "allow-ssh");
    assert_eq!(env(ssh), ("dev", false, EnvironmentSource::Name));
    assert_eq!(ssh.tags.get("team").map(String::as_str), Some("infra"));
    assert_eq!(
        ssh.ingress.first().map(|i| (i.public, i.from_port)),
        Some((true, Some(22)))
    );
    assert_eq!(
        action(&plan, "google_storage_bucket.b").region.as_deref(),
        Some("eu")
    );
}

#[test]
fn terraform_errored_plans_are_noted() {
    let mut plan = terraform(json!([]));
    if let Some(object) = plan.as_object_mut() {
        object.insert("errored".into(), json!(true));
    }
    let plan = normalize(&plan);
    assert!(
        plan.notes.iter().any(|n| n.contains("errored")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn bytes_are_decoded_before_normalising() {
    let text = serde_json::to_string(&scenario("c")).unwrap_or_default();
    let mut utf16: Vec<u8> = vec![0xFE, 0xFF];
    utf16.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    let plan =
        normalize_bytes(&utf16, &Metadata::default(), "", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.actions.len(), 3);
    assert_eq!(
        plan.notes,
        ["the plan was UTF-16 BE text (with a byte order mark) and was decoded"]
    );
    let err = normalize_bytes(b"{\"actions\": [\xff]}", &Metadata::default(), "", None).err();
    assert_eq!(
        err,
        Some(PlanError::InvalidUtf8 {
            offset: 13,
            byte: 0xff
        })
    );
}

#[test]
fn review_requests_are_normalised_whole() {
    let request: ReviewRequest = serde_json::from_value(json!({
        "request_id": "r1",
        "user_request": "delete the three dev VPCs",
        "plan": scenario("c"),
        "metadata": {"user": "bob", "deletion_confirmed": true},
        "infracost": {"totalMonthlyCost": "0", "pastTotalMonthlyCost": "96", "currency": "USD"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let plan = normalize_request(&request).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.actions.len(), 3);
    assert_eq!(
        (plan.cost.monthly, plan.cost.monthly_increase),
        (Some(0.0), Some(-96.0))
    );
    assert_eq!(plan.cost.source, CostSource::Infracost);
    assert!(
        plan.notes.is_empty(),
        "the plan's -96 agrees: {:?}",
        plan.notes
    );
}

/// Keys the normalisers read, so random documents reach deep into them.
const KEYS: &[&str] = &[
    "actions",
    "resource_changes",
    "verb",
    "action",
    "type",
    "resource_type",
    "name",
    "id",
    "tags",
    "tags_all",
    "labels",
    "tag",
    "key",
    "value",
    "ingress",
    "cidr",
    "cidr_blocks",
    "source",
    "port",
    "ports",
    "from_port",
    "to_port",
    "protocol",
    "change",
    "before",
    "after",
    "after_unknown",
    "after_sensitive",
    "address",
    "mode",
    "environment",
    "quantity",
    "count",
    "cost",
    "cost_increase",
    "planned_values",
    "values",
    "region",
    "location",
    "availability_zone",
    "security_rule",
    "direction",
    "access",
    "allow",
    "source_ranges",
    "desired_capacity",
    "format_version",
    "configuration",
    "provider_config",
    "expressions",
    "constant_value",
    "module_address",
    "index",
    "deposed",
    "data_classes",
    "controls",
    "encryption",
    "attributes",
    "monthly",
    "self",
    "root_module",
    "module_calls",
];

/// Strings the normalisers react to.
const WORDS: &[&str] = &[
    "create",
    "update",
    "delete",
    "read",
    "no-op",
    "forget",
    "replace",
    "0.0.0.0/0",
    "::/0",
    "prod",
    "nonprod-ml",
    "non-prod",
    "dev",
    "aws_security_group",
    "aws_security_group_rule",
    "google_compute_firewall",
    "azurerm_network_security_group",
    "aws_autoscaling_group",
    "ingress",
    "-1",
    "443",
    "80-90",
    "*",
    "Inbound",
    "Allow",
    "data",
    "902.5",
    "us-west-2a",
    "module.a.module.b",
    "var.region",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z0-9_./*:\\[\\]\"-]{0,10}".prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|s| json!(s)),
    ];
    let key = prop_oneof![
        prop::sample::select(KEYS).prop_map(str::to_owned),
        "[a-z_]{1,6}",
    ];
    leaf.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A generic plan whose actions are half well-formed, half random.
fn arb_generic() -> impl Strategy<Value = Value> {
    let action = (
        prop::sample::select(WORDS),
        prop::sample::select(WORDS),
        arb_json(),
        arb_json(),
    )
        .prop_map(|(verb, kind, extra, attributes)| {
            let mut action =
                json!({"verb": verb, "type": kind, "name": "n", "attributes": attributes});
            if let (Some(target), Value::Object(extra)) = (action.as_object_mut(), extra) {
                target.extend(extra);
            }
            action
        });
    prop::collection::vec(action, 0..4).prop_map(|actions| json!({"actions": actions}))
}

/// A Terraform plan whose changes are half well-formed, half random.
fn arb_terraform() -> impl Strategy<Value = Value> {
    let change = (
        prop::sample::select(WORDS),
        prop::collection::vec(prop::sample::select(WORDS), 0..3),
        arb_json(),
        arb_json(),
        arb_json(),
    )
        .prop_map(|(kind, actions, before, after, unknown)| {
            json!({"address": format!("{kind}.x"), "type": kind, "name": "x",
                   "change": {"actions": actions, "before": before, "after": after, "after_unknown": unknown,
                              "after_sensitive": unknown}})
        });
    (prop::collection::vec(change, 0..4), arb_json())
        .prop_map(|(changes, configuration)| json!({"format_version": "1.2", "resource_changes": changes, "configuration": configuration}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalize_value_never_panics(
        plan in prop_oneof![arb_json(), arb_generic(), arb_terraform()],
        meta in arb_json(),
        infracost in prop::option::of(arb_json()),
        request in "[a-z -]{0,30}",
    ) {
        let meta: Metadata = serde_json::from_value(meta).unwrap_or_default();
        if let Ok(plan) = normalize_value(&plan, &meta, &request, infracost.as_ref()) {
            // Whatever is accepted serialises (finite numbers only) and round-trips.
            let text = serde_json::to_string(&plan);
            prop_assert!(text.is_ok());
            let back: Result<NormalizedPlan, _> = serde_json::from_str(&text.unwrap_or_default());
            prop_assert_eq!(back.ok(), Some(plan));
        }
    }

    #[test]
    fn normalize_bytes_never_panics(
        prefix in prop::sample::select(vec![vec![], vec![0xEF, 0xBB, 0xBF], vec![0xFF, 0xFE], vec![0xFE, 0xFF], vec![0, 0, 0xFE, 0xFF]]),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = prefix;
        bytes.extend(body);
        let _ = normalize_bytes(&bytes, &Metadata::default(), "", None);
    }

    #[test]
    fn utf16_text_decodes_like_utf8(plan in arb_generic()) {
        let text = plan.to_string();
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let from_utf8 = normalize_bytes(text.as_bytes(), &Metadata::default(), "", None);
        let from_utf16 = normalize_bytes(&le, &Metadata::default(), "", None);
        prop_assert_eq!(from_utf8.map(|p| p.actions), from_utf16.map(|p| p.actions));
    }
}
