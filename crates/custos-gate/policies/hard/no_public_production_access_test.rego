# Unit tests of no_public_production_access (run by `custos policy test` machinery: custos::policy::run_builtin_policy_tests).
package custos.test.hard.no_public_production_access

import data.custos.hard.no_public_production_access as policy

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

ssh_world := {"cidr": "0.0.0.0/0", "public": true, "from_port": 22, "to_port": 22, "protocol": "tcp"}

test_world_ssh_to_production if {
	sg := action({"address": "aws_security_group.pci", "verb": "create", "ingress": [ssh_world]})
	violations := policy.violations with input as review([sg], {})
	count(violations) == 1
	some v in violations
	v.severity == "critical"
	v.evidence.address == "aws_security_group.pci"
	v.evidence.cidr == "0.0.0.0/0"
	v.evidence.ports == "22"
}

test_ipv6_world_even_unflagged if {
	rule := {"cidr": "::/0", "public": false, "from_port": 80, "to_port": 443}
	some v in policy.violations with input as review([action({"ingress": [rule]})], {})
	v.evidence.ports == "80-443"
}

test_azure_any_source if {
	count(policy.violations) == 1 with input as review([action({"ingress": [{"cidr": "Internet", "public": false}]})], {})
}

test_nonprod_may_be_public if {
	count(policy.violations) == 0 with input as review([action({"environment": nonprod, "ingress": [ssh_world]})], {})
}

test_private_cidr_is_fine if {
	rule := {"cidr": "10.0.0.0/8", "public": false, "from_port": 22, "to_port": 22}
	count(policy.violations) == 0 with input as review([action({"ingress": [rule]})], {})
}

test_deleting_a_public_rule_is_fine if {
	count(policy.violations) == 0 with input as review([action({"verb": "delete", "ingress": [ssh_world]})], {})
}
