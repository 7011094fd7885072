# Unit tests of the soft policy required_tags (custos::policy::run_builtin_policy_tests).
package custos.test.soft.required_tags

import data.custos.soft.required_tags as policy

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

test_missing_tags if {
	some v in policy.violations with input as review([action({"tags": {"Owner": "ml-team"}})])
	v.evidence.missing_tags == ["Environment", "CostCenter"]
}

test_names_match_loosely_and_default_tags_count if {
	tagged := action({"tags": {"owner": "a", "cost_center": "42"}, "after": {"tags_all": {"Environment": "prod"}}})
	policy.evaluated with input as review([tagged])
	count(policy.violations) == 0 with input as review([tagged])
}

test_blank_value_is_missing if {
	count(policy.violations) == 1 with input as review([action({"tags": {"Owner": " ", "Environment": "p", "CostCenter": "1"}})])
}

test_empty_terraform_tags_are_described if {
	some v in policy.violations with input as review([action({"after": {"tags": null}})])
	count(v.evidence.missing_tags) == 3
}

test_not_evaluated_without_tags if {
	not policy.evaluated with input as review([action({})])
}

test_configured_tags if {
	count(policy.violations) == 0 with input as review([action({"tags": {"Team": "x"}})])
		with data.custos_config.required_tags as ["Team"]
}
