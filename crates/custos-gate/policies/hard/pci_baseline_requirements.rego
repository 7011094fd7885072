# SPEC §4.2 pci_baseline_requirements: a PCI workload must have encryption, logging,
# firewall and isolation.
#
# Looked at for every resource with data class `pci` that the plan leaves configured
# (create, update, replace; deleting a PCI resource does not make a workload non-compliant).
# A violation when
#   - a control is explicitly absent or disabled (`controls.<c> == false`), or
#   - the resource accepts ingress from the whole internet (that is neither firewalled nor
#     isolated, whatever the controls say).
# A control the plan does not describe (`null`/absent) is not a violation: silence is not
# evidence of absence, and vetoing on it would veto every PCI resource whose type has no such
# attribute (a security group has no encryption, a subnet no logging). What the plan does not
# say is left to the intent verifier and to the human reading the summary.
# One violation per resource, listing the missing controls and public CIDRs. No cure: a veto.
package custos.hard.pci_baseline_requirements

import data.custos.lib

required_controls := ["encryption", "logging", "firewall", "isolation"]

violations contains violation if {
	some action in input.plan.actions
	action.data_classes[_] == "pci"
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
	missing := [c | some c in required_controls; action.controls[c] == false]
	public := [rule.cidr | some rule in action.ingress; lib.public_ingress(rule)]
	count(missing) + count(public) > 0
	violation := {
		"message": sprintf("%s holds PCI data but %s", [action.address, problems(missing, public)]),
		"severity": "critical",
		"evidence": {
			"address": action.address,
			"resource_type": action.resource_type,
			"missing_controls": missing,
			"public_ingress": public,
		},
	}
}

problems(missing, public) := concat("; ", array.concat(
	[sprintf("lacks %s", [concat(", ", missing)]) | count(missing) > 0],
	[sprintf("is open to %s", [concat(", ", public)]) | count(public) > 0],
))
