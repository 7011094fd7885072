# SPEC §4.2 gdpr_data_residency: EU personal data must stay in EU regions.
#
# Looked at for every resource with data class `gdpr` (or `eu_personal_data`, `eu_pii`) that
# the plan leaves configured (create, update, replace). Its region must be on the allow-list
# below: EU/EEA regions of AWS, GCP and Azure, spelled out one by one so that a region nobody
# has vetted is a violation (fail secure). London and Zurich are not EU even where their provider names start
# with `eu-`/`europe-` (AWS eu-west-2, eu-central-2; GCP europe-west2, europe-west6), nor are
# Azure's UK and Switzerland regions. Norway is EEA, where the GDPR applies, and is allowed.
# Availability zones (`eu-west-1a`, `europe-west1-b`) count as their region; Azure display
# names (`West Europe`) as their short names. A resource without a region is a violation:
# residency that cannot be shown is not assumed.
# One violation per resource. No cure: a veto.
package custos.hard.gdpr_data_residency

gdpr_classes := {"gdpr", "eu_personal_data", "eu-personal-data", "eu_pii"}

eu_regions := {
	# AWS
	"eu-west-1", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2",
	"eusc-de-east-1",
	# GCP (and its EU multi-region)
	"europe-central2", "europe-north1", "europe-north2", "europe-southwest1", "europe-west1",
	"europe-west3", "europe-west4", "europe-west8", "europe-west9", "europe-west10",
	"europe-west12", "eu", "europe",
	# Azure
	"northeurope", "westeurope", "francecentral", "francesouth", "germanywestcentral",
	"germanynorth", "swedencentral", "swedensouth", "italynorth", "polandcentral",
	"spaincentral", "austriaeast", "belgiumcentral", "denmarkeast", "finlandcentral",
	"greececentral", "norwayeast", "norwaywest",
}

# The region as a short lower-case name: `West Europe` is `westeurope`.
short_name(region) := replace(lower(trim_space(region)), " ", "")

eu_region(region) if {
	is_string(region)
	eu_regions[short_name(region)]
}

# An availability zone of an EU region: `eu-west-1a`, `europe-west1-b`.
eu_region(region) if {
	is_string(region)
	eu_regions[trim_right(short_name(region), "abcdefghijklmnopqrstuvwxyz-")]
}

violations contains violation if {
	some action in input.plan.actions
	gdpr_classes[action.data_classes[_]]
	action.verb != "delete"
	action.verb != "read"
	action.verb != "no_op"
	region := object.get(action, "region", null)
	not eu_region(region)
	violation := {
		"message": residency_message(action.address, region),
		"severity": "high",
		"evidence": {
			"address": action.address,
			"resource_type": action.resource_type,
			"region": region,
			"data_classes": action.data_classes,
		},
	}
}

residency_message(address, region) := sprintf(
	"%s holds EU personal data but its region is unknown; it must be shown to be an EU region",
	[address],
) if {
	region == null
} else := sprintf("%s holds EU personal data but is in %v, which is not an EU region", [address, region])
