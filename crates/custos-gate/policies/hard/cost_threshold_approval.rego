# SPEC §4.2 cost_threshold_approval: an estimated monthly cost (or increase) above the
# threshold needs finance's approval (`metadata.finance_approved: true`).
#
# The figure judged is the plan's monthly increase when known, else its monthly total, else
# the sum of the per-resource monthly costs of what remains after the plan (every action
# but delete and read). A plan with no cost figure at all is not judged (there is nothing to
# compare). The threshold is part of this constitutional policy, not configuration:
# operators can read it (data.custos.hard.cost_threshold_approval.threshold) but not lower
# or raise it. Amounts are in the plan's currency.
# Cure (from custos's policy table): finance.
package custos.hard.cost_threshold_approval

import data.custos.lib

threshold := 1000

cost := object.get(input.plan, "cost", {})

action_costs := [c |
	some action in input.plan.actions
	not action.verb in {"delete", "read"}
	c := action.monthly_cost
	is_number(c)
]

judged := {"basis": "monthly_increase", "amount": cost.monthly_increase} if {
	is_number(cost.monthly_increase)
} else := {"basis": "monthly", "amount": cost.monthly} if {
	is_number(cost.monthly)
} else := {"basis": "resources", "amount": sum(action_costs)} if {
	count(action_costs) > 0
}

violations contains violation if {
	judged.amount > threshold
	not lib.granted(input.request.metadata.finance_approved)
	violation := {
		"message": sprintf(
			"estimated %s of %v exceeds %v and needs finance approval (metadata.finance_approved)",
			[replace(judged.basis, "_", " "), judged.amount, threshold],
		),
		"severity": "medium",
		"evidence": {
			"basis": judged.basis,
			"amount": judged.amount,
			"threshold": threshold,
			"currency": object.get(cost, "currency", null),
		},
	}
}
