# SPEC §4.2 no_public_production_access: no ingress from 0.0.0.0/0 or ::/0 to a production
# resource.
#
# Looked at for every action that leaves the resource configured (create, update, replace):
# the plan's ingress is the resource's ingress after the change, so an update that keeps a
# public rule keeps production public. "Public" is the normaliser's flag, any /0 prefix, and
# Azure's `*` / `Internet` / `Any` (see custos.lib.public_ingress). One violation per
# resource and CIDR, naming the address, CIDR and ports. No cure: a veto.
package custos.hard.no_public_production_access

import data.custos.lib

violations contains violation if {
	some action in input.plan.actions
	some rule in action.ingress
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
	not action.environment.production == false
	lib.public_ingress(rule)
	ports := lib.ports(rule)
	violation := {
		"message": sprintf(
			"%s (production) would accept ingress from %s on ports %s",
			[action.address, rule.cidr, ports],
		),
		"severity": "critical",
		"evidence": {
			"address": action.address,
			"resource_type": action.resource_type,
			"environment": lib.environment_name(action),
			"cidr": rule.cidr,
			"ports": ports,
			"from_port": object.get(rule, "from_port", null),
			"to_port": object.get(rule, "to_port", null),
			"protocol": object.get(rule, "protocol", null),
		},
	}
}
