# Unit tests of production_change_requires_ticket (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.production_change_requires_ticket

import data.custos.hard.production_change_requires_ticket as policy

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

test_production_update_without_ticket if {
	violations := policy.violations with input as review([action({})], {})
	count(violations) == 1
	some v in violations
	v.severity == "high"
	v.evidence.resources == [{"address": "aws_instance.web", "verb": "update", "environment": "prod"}]
}

test_one_violation_lists_every_production_change if {
	actions := [action({}), action({"address": "aws_db_instance.main", "verb": "delete"})]
	some v in policy.violations with input as review(actions, {})
	count(v.evidence.resources) == 2
}

test_unknown_environment_is_production if {
	unknown := object.remove(action({}), ["environment"])
	count(policy.violations) == 1 with input as review([unknown], {})
}

test_blank_ticket_is_no_ticket if {
	count(policy.violations) == 1 with input as review([action({})], {"change_ticket_id": "  "})
}

test_ticket_cures if {
	count(policy.violations) == 0 with input as review([action({})], {"change_ticket_id": "CHG-1"})
}

test_nonprod_change_needs_no_ticket if {
	count(policy.violations) == 0 with input as review([action({"environment": nonprod})], {})
}

test_reads_and_no_ops_are_not_changes if {
	actions := [action({"verb": "read"}), action({"verb": "no_op"})]
	count(policy.violations) == 0 with input as review(actions, {})
}
