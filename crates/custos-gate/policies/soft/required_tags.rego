# SPEC §4.2 soft policy required_tags: resources carry the required tags (by default Owner,
# Environment, CostCenter; configurable as data.custos_config.required_tags).
#
# Evaluated where the plan describes tags: some create/update/replace has tags, or its
# `after` attributes have a `tags`, `tags_all` or `labels` field (as Terraform plans of
# taggable resources do, even when empty). A generic plan without tags is not evaluated.
# Tag names match ignoring case, `_`, `-` and spaces (GCP labels are lower case: `costcenter`
# is CostCenter); a tag with a blank value is missing. Tags from `after.tags_all` (provider
# default tags) count. A violation for each resource that describes tags and lacks some.
# Cure (from custos's policy table): human approval.
package custos.soft.required_tags

default_required := ["Owner", "Environment", "CostCenter"]

required := data.custos_config.required_tags if {
	is_array(data.custos_config.required_tags)
} else := default_required

tag_fields := ["tags", "tags_all", "labels"]

# Indexes of the create/update/replace actions that describe tags.
described contains i if {
	some i, action in input.plan.actions
	action.tags[_]
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
}

described contains i if {
	some i, action in input.plan.actions
	is_object(action.after)
	some field in tag_fields
	_ = action.after[field]
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
}

# Tag names compare lower case without these.
separators := {"_": "", "-": "", " ": ""}

normal(name) := lower(strings.replace_n(separators, name))

# Each required tag with its normalised name, computed once.
wanted := {tag: normal(tag) | some tag in required}

# Provider default tags Terraform lists in `tags_all`.
default_tags(action) := action.after.tags_all if is_object(action.after.tags_all)
else := {}

# Required tags a described action lacks under their exact names, by index (only actions
# that lack some). Exact names are the common case and cost no normalising.
inexact[i] := lacking if {
	some i in described
	tags := input.plan.actions[i].tags
	absent := [tag | some tag in required; not tags[tag]]
	blank := [tag | some tag in required; value := tags[tag]; trim_space(value) == ""]
	lacking := array.concat(absent, blank)
	count(lacking) > 0
}

# Required tags an action lacks under any spelling, by index (only actions that lack some).
missing[i] := lacking if {
	some i, candidates in inexact
	action := input.plan.actions[i]
	carried := {lower(strings.replace_n(separators, key)) |
		some source in [action.tags, default_tags(action)]
		some key, value in source
		trim_space(value) != ""
	}
	lacking := [tag | some tag in candidates; not carried[wanted[tag]]]
	count(lacking) > 0
}

default evaluated := false

evaluated if count(described) > 0

violations contains violation if {
	some i, lacking in missing
	action := input.plan.actions[i]
	violation := {
		"message": sprintf("%s lacks required tag(s) %s", [action.address, concat(", ", lacking)]),
		"severity": "low",
		"evidence": {"address": action.address, "missing_tags": lacking},
	}
}
