# Unit tests of cost_threshold_approval (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.cost_threshold_approval

import data.custos.hard.cost_threshold_approval as policy

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

test_increase_above_threshold if {
	violations := policy.violations with input as review_cost([], {}, {"monthly_increase": 1500, "monthly": 1600, "source": "plan"})
	count(violations) == 1
	some v in violations
	v.evidence.basis == "monthly_increase"
	v.evidence.amount == 1500
	v.evidence.threshold == 1000
}

test_increase_takes_precedence_over_total if {
	count(policy.violations) == 0 with input as review_cost([], {}, {"monthly_increase": 200, "monthly": 5000, "source": "plan"})
}

test_total_when_no_increase if {
	count(policy.violations) == 1 with input as review_cost([], {}, {"monthly": 1000.5, "source": "metadata"})
}

test_threshold_itself_is_fine if {
	count(policy.violations) == 0 with input as review_cost([], {}, {"monthly": 1000, "source": "plan"})
}

test_per_resource_costs_when_no_total if {
	actions := [action({"monthly_cost": 600}), action({"monthly_cost": 600, "address": "b"}), action({"verb": "delete", "monthly_cost": 5000})]
	some v in policy.violations with input as review_cost(actions, {}, {"source": "plan"})
	v.evidence.basis == "resources"
	v.evidence.amount == 1200
}

test_finance_approval_cures if {
	count(policy.violations) == 0 with input as review_cost([], {"finance_approved": true}, {"monthly": 9000, "source": "plan"})
}

test_unknown_cost_is_not_judged if {
	count(policy.violations) == 0 with input as review([action({})], {})
}
