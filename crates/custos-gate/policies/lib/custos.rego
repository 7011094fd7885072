# Helpers shared by custos's built-in policies (package custos.lib). Operator policies may
# import them (`import data.custos.lib`); they cannot change them: every package under
# `custos.` other than `custos.operator.` is reserved for the built-in bundle.
#
# Speed: in regorus a builtin or function call costs a microsecond or two, and so does a
# look-up in another package's rule, while a plain comparison costs a fraction of that. A
# plan may have hundreds of actions and every policy walks them all, so the built-in
# policies filter actions with plain comparisons first (`action.verb != "read"`,
# `action.data_classes[_] == "pci"`, `some rule in action.ingress`) and call these helpers
# only on the few actions that remain.
#
# Verbs: `read` and `no_op` change nothing; `create`, `update` and `replace` leave a
# resource configured by the plan; `delete` and `replace` destroy one.
package custos.lib

# Production unless the normaliser showed otherwise: a missing or malformed environment is
# production (SPEC §4.2: an environment that cannot be determined is treated as production).
production(action) if not action.environment.production == false

# The environment word for evidence; "unknown" when the action does not carry one.
environment_name(action) := name if {
	name := action.environment.name
	is_string(name)
} else := "unknown"

# A metadata value that is a string with content: a blank ticket id is no ticket.
present(value) if {
	is_string(value)
	trim_space(value) != ""
}

# Only JSON `true` confirms or approves; "yes", 1 or a missing field do not.
granted(value) if value == true

# Ingress from the whole internet: what the normaliser marked public, any prefix of length
# 0 (`0.0.0.0/0`, `::/0`, `::0/0`), and the provider words for "any source" (Azure `*`,
# `Internet`, `Any`).
public_ingress(rule) if rule.public == true

public_ingress(rule) if {
	is_string(rule.cidr)
	endswith(trim_space(rule.cidr), "/0")
}

public_ingress(rule) if {
	is_string(rule.cidr)
	lower(trim_space(rule.cidr)) in {"*", "internet", "any"}
}

# Ports of an ingress rule as text: "22", "80-443", or "all" when the plan names none.
ports(rule) := port_text(object.get(rule, "from_port", null), object.get(rule, "to_port", null))

port_text(from, to) := "all" if {
	from == null
	to == null
} else := sprintf("%v", [to]) if {
	from == null
} else := sprintf("%v", [from]) if {
	to == null
} else := sprintf("%v", [from]) if {
	from == to
} else := sprintf("%v-%v", [from, to])
