# SPEC §4.2 deletion_requires_confirmation: a delete, destroy, terminate or replace needs the
# user's confirmation (`metadata.deletion_confirmed: true`).
#
# The normaliser maps destroy/terminate to `delete`; a replace destroys the resource before
# creating it again, so it counts. One violation whose evidence lists every resource the
# plan would delete (address, type, name, verb, quantity), in plan order, so the user
# confirms exactly what will go.
# Cure (from custos's policy table): user_deletion_confirmation.
package custos.hard.deletion_requires_confirmation

import data.custos.lib

destroying := {"delete", "replace"}

deletions := [deletion |
	some action in input.plan.actions
	destroying[action.verb]
	deletion := {
		"address": action.address,
		"resource_type": action.resource_type,
		"name": action.name,
		"verb": action.verb,
		"quantity": object.get(action, "quantity", 1),
	}
]

violations contains violation if {
	not lib.granted(input.request.metadata.deletion_confirmed)
	count(deletions) > 0
	violation := {
		"message": sprintf(
			"%d resource(s) would be deleted without the user's confirmation (metadata.deletion_confirmed): %s",
			[count(deletions), concat(", ", [d.address | some d in deletions])],
		),
		"severity": "high",
		"evidence": {"resources": deletions},
	}
}
