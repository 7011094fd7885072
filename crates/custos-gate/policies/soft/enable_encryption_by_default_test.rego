# Unit tests of the soft policy enable_encryption_by_default (custos::policy::run_builtin_policy_tests).
package custos.test.soft.enable_encryption_by_default

import data.custos.soft.enable_encryption_by_default as policy

base_action := {
	"address": "aws_instance.web",
	"verb": "create",
	"resource_type": "aws_instance",
	"name": "web",
	"environment": {"name": "prod", "production": true, "source": "tag"},
	"quantity": 1,
	"tags": {},
	"ingress": [],
	"data_classes": [],
	"controls": {},
	"before": null,
	"after": {},
	"changed": [],
}

action(fields) := object.union(base_action, fields)

review(actions) := {
	"request": {"request_id": "r-1", "user_request": "test", "metadata": {}},
	"plan": {"format": "terraform", "actions": actions, "cost": {"source": "none"}, "regions": [], "notes": []},
}

test_not_evaluated_without_encryption_facts if {
	not policy.evaluated with input as review([action({})])
	count(policy.violations) == 0 with input as review([action({})])
}

test_unencrypted_resource if {
	actions := [action({"controls": {"encryption": false}}), action({"address": "b", "controls": {"encryption": true}})]
	policy.evaluated with input as review(actions)
	count(policy.violations) == 1 with input as review(actions)
}

test_encrypted_passes if {
	policy.evaluated with input as review([action({"controls": {"encryption": true}})])
	count(policy.violations) == 0 with input as review([action({"controls": {"encryption": true}})])
}
