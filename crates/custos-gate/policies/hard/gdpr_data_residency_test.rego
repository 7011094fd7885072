# Unit tests of gdpr_data_residency (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.gdpr_data_residency

import data.custos.hard.gdpr_data_residency as policy

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

gdpr(region) := action({"data_classes": ["gdpr", "pii"], "address": "aws_db_instance.users", "region": region})

test_us_region if {
	violations := policy.violations with input as review([gdpr("us-east-1")], {})
	count(violations) == 1
	some v in violations
	v.evidence.region == "us-east-1"
	v.severity == "high"
}

test_unknown_region_fails_secure if {
	no_region := object.remove(gdpr("x"), ["region"])
	some v in policy.violations with input as review([no_region], {})
	v.evidence.region == null
}

test_london_and_zurich_are_not_eu if {
	regions := ["eu-west-2", "eu-central-2", "europe-west2", "europe-west6", "uksouth", "switzerlandnorth"]
	actions := [gdpr(r) | some r in regions]
	count(policy.violations) == 6 with input as review(actions, {})
}

test_eu_regions if {
	regions := ["eu-west-1", "eu-central-1a", "europe-west1-b", "EU", "westeurope", "West Europe", "germanywestcentral", "norwayeast"]
	actions := [gdpr(r) | some r in regions]
	count(policy.violations) == 0 with input as review(actions, {})
}

test_other_data_anywhere if {
	count(policy.violations) == 0 with input as review([action({"region": "us-east-1", "data_classes": ["pii"]})], {})
}
