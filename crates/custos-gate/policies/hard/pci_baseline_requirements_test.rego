# Unit tests of pci_baseline_requirements (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.pci_baseline_requirements

import data.custos.hard.pci_baseline_requirements as policy

# A production update of an unremarkable resource; tests override what they are about.
base_action := {
	"address": "aws_instance.web",
	"verb": "update",
	"resource_type": "aws_instance",
	"name": "web",
	"environment": {"name": "prod", "production": true, "source": "tag"},
	"region": "eu-west-1",
	"quantity": 1,
	"tags": {},
	"ingress": [],
	"data_classes": [],
	"controls": {},
	"before": {},
	"after": {},
	"changed": [],
}

action(fields) := object.union(base_action, fields)

review(actions, metadata) := review_cost(actions, metadata, {"source": "none"})

review_cost(actions, metadata, cost) := {
	"request": {"request_id": "r-1", "user_request": "test", "metadata": metadata},
	"plan": {"format": "generic", "actions": actions, "cost": cost, "regions": [], "notes": []},
}

nonprod := {"name": "dev", "production": false, "source": "tag"}

pci(fields) := action(object.union({"data_classes": ["pci"], "address": "aws_db_instance.cards"}, fields))

test_encryption_off if {
	violations := policy.violations with input as review([pci({"controls": {"encryption": false, "logging": true}})], {})
	count(violations) == 1
	some v in violations
	v.evidence.missing_controls == ["encryption"]
	v.severity == "critical"
}

test_every_missing_control_listed if {
	controls := {"encryption": false, "logging": false, "firewall": false, "isolation": false}
	some v in policy.violations with input as review([pci({"controls": controls})], {})
	v.evidence.missing_controls == ["encryption", "logging", "firewall", "isolation"]
}

test_public_ingress_on_pci if {
	some v in policy.violations with input as review([pci({"ingress": [{"cidr": "0.0.0.0/0", "public": true}]})], {})
	v.evidence.public_ingress == ["0.0.0.0/0"]
}

test_unknown_controls_are_not_a_violation if {
	count(policy.violations) == 0 with input as review([pci({})], {})
}

test_all_controls_present if {
	controls := {"encryption": true, "logging": true, "firewall": true, "isolation": true}
	count(policy.violations) == 0 with input as review([pci({"controls": controls})], {})
}

test_deleting_pci_is_not_this_policy if {
	count(policy.violations) == 0 with input as review([pci({"verb": "delete", "controls": {"encryption": false}})], {})
}

test_non_pci_is_not_this_policy if {
	count(policy.violations) == 0 with input as review([action({"controls": {"encryption": false}})], {})
}
