# SPEC §4.2 production_change_requires_ticket: a change to a production resource needs a
# change ticket (`metadata.change_ticket_id`, non-blank).
#
# A change is any verb but `read` and `no_op`; deletes count. The environment is the
# normaliser's verdict, and an action without one is production (fail secure). One violation
# lists every production change, because one ticket cures them all.
# Cure (from custos's policy table): change_ticket.
package custos.hard.production_change_requires_ticket

import data.custos.lib

production_changes := [change |
	some action in input.plan.actions
	action.verb != "read"
	action.verb != "no_op"
	not action.environment.production == false
	change := {
		"address": action.address,
		"verb": action.verb,
		"environment": lib.environment_name(action),
	}
]

violations contains violation if {
	not lib.present(input.request.metadata.change_ticket_id)
	count(production_changes) > 0
	violation := {
		"message": sprintf(
			"%d change(s) to production resources need a change ticket (metadata.change_ticket_id): %s",
			[count(production_changes), concat(", ", [c.address | some c in production_changes])],
		),
		"severity": "high",
		"evidence": {"resources": production_changes},
	}
}
