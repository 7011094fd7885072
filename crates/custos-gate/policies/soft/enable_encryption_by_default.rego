# SPEC §4.2 soft policy enable_encryption_by_default: resources should be encrypted at rest.
#
# Evaluated where the plan describes encryption: some create/update/replace carries
# `controls.encryption` as true or false. Where no action does, the policy is not evaluated
# (and does not block). A violation for each such resource with encryption explicitly off.
# Cure (from custos's policy table): human approval.
package custos.soft.enable_encryption_by_default

default evaluated := false

evaluated if {
	some action in input.plan.actions
	is_boolean(action.controls.encryption)
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
}

violations contains violation if {
	some action in input.plan.actions
	action.controls.encryption == false
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
	violation := {
		"message": sprintf("%s would not be encrypted at rest", [action.address]),
		"severity": "medium",
		"evidence": {"address": action.address, "resource_type": action.resource_type},
	}
}
