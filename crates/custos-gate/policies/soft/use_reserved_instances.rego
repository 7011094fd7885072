# SPEC §4.2 soft policy use_reserved_instances: long-running compute should use reserved
# capacity or a savings plan. Information only: it never blocks.
#
# Evaluated where the plan creates, updates or replaces compute instances (resource types
# ending in `_instance`, `_virtual_machine`, `_vm` or `_ec2`, or the generic plan's
# `instance`, `vm`, `virtual_machine`, `ec2`: aws_instance, aws_db_instance,
# google_compute_instance, azurerm_linux_virtual_machine, …). A note for each production
# instance the plan creates that is not a spot/preemptible one.
# No cure: information.
package custos.soft.use_reserved_instances

compute_types := {"instance", "vm", "virtual_machine", "ec2"}

compute_suffixes := {"_instance", "_vm", "_virtual_machine", "_ec2"}

compute(action) if compute_types[action.resource_type]

compute(action) if strings.any_suffix_match(action.resource_type, compute_suffixes)

spot(action) if action.after.spot_price != null

spot(action) if action.after.instance_market_options != null

default evaluated := false

evaluated if {
	some action in input.plan.actions
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
	compute(action)
}

violations contains violation if {
	some action in input.plan.actions
	action.verb == "create"
	not action.environment.production == false
	compute(action)
	not spot(action)
	quantity := object.get(action, "quantity", 1)
	violation := {
		"message": sprintf(
			"%s (x%v) is long-running production compute; consider reserved capacity or a savings plan",
			[action.address, quantity],
		),
		"severity": "info",
		"evidence": {
			"address": action.address,
			"resource_type": action.resource_type,
			"quantity": quantity,
			"monthly_cost": object.get(action, "monthly_cost", null),
		},
	}
}
