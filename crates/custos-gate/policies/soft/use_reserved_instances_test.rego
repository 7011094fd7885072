# Unit tests of the soft policy use_reserved_instances (custos::policy::run_builtin_policy_tests).
package custos.test.soft.use_reserved_instances

import data.custos.soft.use_reserved_instances as policy

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

test_production_instance_gets_a_note if {
	some v in policy.violations with input as review([action({"quantity": 3})])
	v.severity == "info"
	v.evidence.quantity == 3
}

test_spot_and_nonprod_get_none if {
	actions := [
		action({"after": {"spot_price": "0.1"}}),
		action({"environment": {"name": "dev", "production": false, "source": "tag"}}),
	]
	policy.evaluated with input as review(actions)
	count(policy.violations) == 0 with input as review(actions)
}

test_not_evaluated_without_compute if {
	not policy.evaluated with input as review([action({"resource_type": "aws_s3_bucket"})])
}
