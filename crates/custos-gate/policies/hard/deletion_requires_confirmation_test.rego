# Unit tests of deletion_requires_confirmation (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.deletion_requires_confirmation

import data.custos.hard.deletion_requires_confirmation as policy

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

test_delete_without_confirmation if {
	violations := policy.violations with input as review([action({"verb": "delete"})], {})
	count(violations) == 1
}

test_evidence_lists_every_deleted_resource if {
	actions := [
		action({"verb": "delete", "address": "a.one"}),
		action({"verb": "create", "address": "a.two"}),
		action({"verb": "replace", "address": "a.three"}),
	]
	some v in policy.violations with input as review(actions, {})
	[r.address | some r in v.evidence.resources] == ["a.one", "a.three"]
}

test_replace_counts_as_delete if {
	count(policy.violations) == 1 with input as review([action({"verb": "replace"})], {})
}

test_only_true_confirms if {
	count(policy.violations) == 1 with input as review([action({"verb": "delete"})], {"deletion_confirmed": "true"})
}

test_confirmation_cures if {
	count(policy.violations) == 0 with input as review([action({"verb": "delete"})], {"deletion_confirmed": true})
}

test_no_deletion_no_violation if {
	count(policy.violations) == 0 with input as review([action({"verb": "create"})], {})
}
