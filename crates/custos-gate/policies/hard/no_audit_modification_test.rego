# Unit tests of no_audit_modification (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.no_audit_modification

import data.custos.hard.no_audit_modification as policy

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

test_updating_cloudtrail if {
	trail := action({"address": "aws_cloudtrail.main", "resource_type": "aws_cloudtrail", "name": "main"})
	violations := policy.violations with input as review([trail], {})
	count(violations) == 1
	some v in violations
	v.severity == "critical"
	v.evidence.address == "aws_cloudtrail.main"
}

test_deleting_an_audit_bucket if {
	bucket := action({"verb": "delete", "address": "aws_s3_bucket.logs", "resource_type": "aws_s3_bucket", "name": "org-audit-logs"})
	count(policy.violations) == 1 with input as review([bucket], {})
}

test_tagged_audit_log_group if {
	group := action({"resource_type": "aws_cloudwatch_log_group", "name": "x", "tags": {"Purpose": "Audit logs"}})
	count(policy.violations) == 1 with input as review([group], {})
}

test_governance_tags_are_not_audit_infrastructure if {
	db := action({"resource_type": "aws_db_instance", "name": "orders", "tags": {"Compliance": "audit-required", "GovernedBy": "custos"}})
	count(policy.violations) == 0 with input as review([db], {})
}

test_gcp_sink_replace if {
	sink := action({"verb": "replace", "resource_type": "google_logging_project_sink", "name": "export"})
	count(policy.violations) == 1 with input as review([sink], {})
}

test_creating_new_logging_is_fine if {
	actions := [
		action({"verb": "create", "resource_type": "aws_cloudwatch_log_group", "name": "app-audit"}),
		action({"verb": "create", "resource_type": "aws_flow_log", "name": "vpc"}),
	]
	count(policy.violations) == 0 with input as review(actions, {})
}

test_creating_anything_of_custos if {
	count(policy.violations) == 1 with input as review([action({"verb": "create", "name": "custos-sidecar"})], {})
}

test_creating_a_log_exclusion if {
	exclusion := action({"verb": "create", "resource_type": "google_logging_project_exclusion", "name": "quiet"})
	count(policy.violations) == 1 with input as review([exclusion], {})
}

test_lifecycle_on_existing_trail_bucket if {
	lifecycle := action({
		"verb": "create",
		"address": "aws_s3_bucket_lifecycle_configuration.trail",
		"resource_type": "aws_s3_bucket_lifecycle_configuration",
		"name": "trail",
		"after": {"bucket": "org-cloudtrail-logs"},
	})
	count(policy.violations) == 1 with input as review([lifecycle], {})
}

test_sub_resources_of_a_new_audit_bucket_are_fine if {
	actions := [
		action({"verb": "create", "resource_type": "aws_s3_bucket", "name": "audit", "after": {"bucket": "new-audit-logs"}}),
		action({"verb": "create", "resource_type": "aws_s3_bucket_versioning", "name": "audit", "after": {"bucket": "new-audit-logs"}}),
		action({"verb": "create", "resource_type": "aws_s3_bucket_policy", "name": "audit", "after": {}}),
	]
	count(policy.violations) == 0 with input as review(actions, {})
}

test_unrelated_changes_are_fine if {
	count(policy.violations) == 0 with input as review([action({}), action({"verb": "delete", "name": "cache"})], {})
}
