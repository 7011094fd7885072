# SPEC §4.2 no_audit_modification: the plan may not modify custos itself, audit logs,
# CloudTrail, GuardDuty or other logging infrastructure.
#
# A resource is audit infrastructure when
#   - its type is one (CloudTrail, GuardDuty, AWS Config, Security Hub, Detective, VPC flow
#     logs; Azure Monitor diagnostic settings, activity log, log profiles, Security Center,
#     Sentinel; GCP logging sinks/buckets/exclusions, IAM audit configs, Security Command
#     Center), or
#   - its type, address, name or the bucket it configures (`before`/`after` `bucket`)
#     contains an audit word (`audit`, `cloudtrail`, `guardduty`, `custos`, `flowlog`,
#     `flow_log`, `flow-log`), any case: audit S3 buckets, CloudWatch log groups and metric
#     filters for audit, custos's own resources; or
#   - a tag key or value says audit logs (`cloudtrail`, `guardduty`, `flow log(s)`,
#     `audit log(s)`, `audit trail`). Tags need the stronger words because organisations tag
#     ordinary resources `Compliance: audit-required` or `GovernedBy: custos`.
# Then:
#   - update, delete or replace of audit infrastructure: veto (it exists and the plan would
#     change or remove it);
#   - creating new logging infrastructure is allowed (more logging is not less audit), except
#     - anything named custos (address or name): agents custos governs do not deploy into
#       custos;
#     - a resource that configures existing audit infrastructure and can suppress or destroy
#       records: log exclusions (`*_exclusion`), GuardDuty filters and trusted IP sets,
#       Security Hub automation rules, and S3 bucket sub-resources (`aws_s3_bucket_*`:
#       policy, lifecycle, ACL, versioning, object lock, …) unless they configure a bucket
#       this plan creates (their `bucket` is unknown until apply, or names a bucket the plan
#       creates).
# One violation per resource. No cure: a veto.
package custos.hard.no_audit_modification

# Resource types (prefixes) that are audit or security-logging infrastructure whatever they
# are named.
audit_type_prefixes := {
	"aws_cloudtrail",
	"aws_guardduty_",
	"aws_config_",
	"aws_securityhub_",
	"aws_detective_",
	"aws_flow_log",
	"azurerm_monitor_diagnostic_setting",
	"azurerm_monitor_aad_diagnostic_setting",
	"azurerm_monitor_activity_log",
	"azurerm_monitor_log_profile",
	"azurerm_security_center_",
	"azurerm_sentinel_",
	"google_logging_",
	"google_project_iam_audit_config",
	"google_folder_iam_audit_config",
	"google_organization_iam_audit_config",
	"google_scc_",
}

# Words that make a resource audit infrastructure when its type, address, name or bucket
# contains them (for the evidence: which ones it mentions).
audit_words := ["audit", "cloudtrail", "guardduty", "custos", "flowlog", "flow_log", "flow-log"]

name_words := "audit|cloudtrail|guardduty|custos|flow[-_]?log"

# What a tag must say.
tag_words := "cloudtrail|guardduty|flow[-_ ]?logs?|audit[-_ ]?logs?|audit[-_ ]?trail"

# A resource's text (see `text`) matches when it starts with an audit type, its first line
# has an audit word, or a tag (second line) says audit logs: one regex match per resource.
audit_pattern := sprintf("^(?i-u:%s)|^[^\n]*(?i-u:%s)|\n.*(?i-u:%s)", [
	concat("|", [p | some p in audit_type_prefixes]),
	name_words,
	tag_words,
])

# Types that configure an existing resource and can suppress or destroy its records.
suppressing_types := {
	"aws_guardduty_filter",
	"aws_guardduty_ipset",
	"aws_securityhub_automation_rule",
}

# What a resource is known by: type (first), address (which holds a Terraform resource's
# type and name), name and the bucket it configures on the first line; tag keys and values
# on the second.
text(action) := sprintf("%s %s %s %v\n%v", [
	action.resource_type, action.address, action.name,
	[b | some state in ["before", "after"]; b := action[state].bucket],
	[t | some k, v in action.tags; some t in [k, v]],
])

# Why each changing action is audit infrastructure, by index. Only the few that match the
# pattern get the detailed look.
audit_reasons[i] := audit_reason(action, lower(known)) if {
	some i, action in input.plan.actions
	action.verb != "read"
	action.verb != "no_op"
	known := text(action)
	regex.match(audit_pattern, known)
}

audit_reason(action, known) := sprintf("resource type %s is audit infrastructure", [action.resource_type]) if {
	strings.any_prefix_match(lower(action.resource_type), audit_type_prefixes)
} else := sprintf("it is named or tagged %s", [concat(", ", found)]) if {
	found := [w | some w in audit_words; contains(known, w)]
	count(found) > 0
} else := "it is tagged as audit logs"

named_custos(action) if contains(lower(sprintf("%s %s", [action.address, action.name])), "custos")

suppressing(action) if lower(action.resource_type) in suppressing_types

suppressing(action) if endswith(lower(action.resource_type), "_exclusion")

suppressing(action) if {
	startswith(lower(action.resource_type), "aws_s3_bucket_")
	not configures_new_bucket(action)
}

# Unknown until apply: the bucket is one this plan creates.
configures_new_bucket(action) if not action.after.bucket

configures_new_bucket(action) if {
	some other in input.plan.actions
	other.verb == "create"
	other.resource_type == "aws_s3_bucket"
	other.after.bucket == action.after.bucket
}

create_reason(action) := "custos's own resources may not be changed by the agents it governs" if {
	named_custos(action)
} else := "it would configure existing audit infrastructure in a way that can suppress or destroy records" if {
	suppressing(action)
}

violations contains violation if {
	some i, reason in audit_reasons
	action := input.plan.actions[i]
	action.verb != "create"
	violation := audit_violation(action, reason, "existing audit infrastructure may not be modified")
}

violations contains violation if {
	some i, reason in audit_reasons
	action := input.plan.actions[i]
	action.verb == "create"
	why := create_reason(action)
	violation := audit_violation(action, reason, why)
}

audit_violation(action, reason, why) := {
	"message": sprintf("%s %s: %s (%s)", [action.verb, action.address, why, reason]),
	"severity": "critical",
	"evidence": {
		"address": action.address,
		"resource_type": action.resource_type,
		"name": action.name,
		"verb": action.verb,
		"reason": reason,
	},
}
