//! Facts about one resource read from its attribute map, shared by both plan shapes: tags,
//! names, data classes, region, quantity and which attributes change. (Ingress and security
//! controls have their own modules.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::json::{self, Path};
use super::{Controls, Ingress, PlanError, controls, ingress};

/// Attributes holding tags, read in this order (a later one wins on a repeated key): AWS's
/// `tags_all` (with provider default tags), Google's `labels`, the list-shaped `tag` blocks
/// (`aws_autoscaling_group`), then `tags`.
const TAG_FIELDS: &[&str] = &["tags_all", "labels", "tag", "tags"];

/// Attributes that name a resource more tellingly than its Terraform name, best first.
const NAME_FIELDS: &[&str] = &[
    "name",
    "bucket",
    "identifier",
    "cluster_identifier",
    "domain_name",
    "function_name",
    "cluster_name",
];

/// Tag keys (lower case, without `-`, `_` and spaces) whose values are data classes.
const CLASS_TAG_KEYS: &[&str] = &[
    "dataclassification",
    "dataclass",
    "dataclasses",
    "classification",
    "compliance",
    "datasensitivity",
    "sensitivity",
];

/// Data classes recognised as tokens of names and tag values.
const KNOWN_CLASSES: &[&str] = &["pci", "gdpr", "pii", "phi", "hipaa"];

/// Everything one attribute map says about its resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AttributeFacts {
    /// Tags, keys as written.
    pub tags: BTreeMap<String, String>,
    /// Ingress it opens.
    pub ingress: Vec<Ingress>,
    /// Security controls.
    pub controls: Controls,
    /// Region from its own attributes (`region`, `location`, `zone`, `availability_zone`).
    pub region: Option<String>,
    /// Instance count from attributes such as `desired_capacity`.
    pub quantity: Option<u64>,
    /// Name-like attribute values (`name`, `bucket`, …), best first.
    pub names: Vec<String>,
}

/// Reads the facts of a resource of `resource_type` from `attributes` (at `path`).
pub(crate) fn read(
    resource_type: &str,
    attributes: &Map<String, Value>,
    path: &Path,
) -> Result<AttributeFacts, PlanError> {
    Ok(AttributeFacts {
        tags: tags(attributes, path)?,
        ingress: ingress::from_attributes(resource_type, attributes, path)?,
        controls: controls::from_attributes(resource_type, attributes),
        region: region(attributes),
        quantity: quantity(resource_type, attributes),
        names: NAME_FIELDS
            .iter()
            .filter_map(|k| attributes.get(*k).and_then(Value::as_str))
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Tags from every tag attribute of `attributes`.
pub(crate) fn tags(
    attributes: &Map<String, Value>,
    path: &Path,
) -> Result<BTreeMap<String, String>, PlanError> {
    let mut out = BTreeMap::new();
    for key in TAG_FIELDS {
        if let Some(value) = attributes.get(*key) {
            collect_tags(value, &path.key(key), &mut out)?;
        }
    }
    Ok(out)
}

/// Adds the tags of one tag attribute: a map of scalars, or a list of `{key, value}` blocks
/// (`propagate_at_launch` and other fields ignored) or of bare strings (Google network tags,
/// kept with an empty value).
pub(crate) fn collect_tags(
    value: &Value,
    path: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), PlanError> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for (key, value) in map {
                if value.is_null() {
                    continue;
                }
                let text = json::scalar_text(value)
                    .ok_or_else(|| json::wrong_type(&path.key(key), "a string", value))?;
                out.insert(key.clone(), text);
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                tag_item(item, &path.index(i), out)?;
            }
            Ok(())
        }
        other => Err(json::wrong_type(
            path,
            "an object of tags or an array of {key, value} tags",
            other,
        )),
    }
}

fn tag_item(
    item: &Value,
    path: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), PlanError> {
    match item {
        Value::Null => {}
        Value::String(key) => {
            out.insert(key.clone(), String::new());
        }
        Value::Object(block) => {
            let key = json::req_str(block, &["key", "Key"], path)?;
            let value = match json::aliased(block, &["value", "Value"], path)? {
                None => String::new(),
                Some((name, value)) => json::scalar_text(value)
                    .ok_or_else(|| json::wrong_type(&path.key(name), "a string", value))?,
            };
            out.insert(key.to_owned(), value);
        }
        other => {
            return Err(json::wrong_type(
                path,
                "a tag ({key, value} or a string)",
                other,
            ));
        }
    }
    Ok(())
}

/// The `Name` tag (any case), if any.
pub(crate) fn name_tag(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("name") && !v.trim().is_empty())
        .map(|(_, v)| v.as_str())
}

/// Lower-cased tokens of `text` (split on anything not a letter or digit).
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// A data class as recorded: lower case, `pci` for every PCI DSS spelling.
fn canonical_class(class: &str) -> Option<String> {
    let class = class.trim().to_lowercase();
    if class.is_empty() {
        None
    } else if class.contains("pci") {
        Some("pci".to_owned())
    } else {
        Some(class)
    }
}

/// A known data class a single token names (`pci`, `pcidss`, `gdpr`, …).
fn token_class(token: &str) -> Option<String> {
    let stem = token.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem == "pcidss" {
        return Some("pci".to_owned());
    }
    KNOWN_CLASSES.contains(&stem).then(|| stem.to_owned())
}

/// Whether a tag value is a "no" (`false`, `no`, `0`, `none`, empty).
fn is_negative(value: &str) -> bool {
    matches!(
        value.trim().to_lowercase().as_str(),
        "" | "false" | "no" | "0" | "none" | "n/a"
    )
}

/// Data classes of a resource: the values of classification tags (`DataClassification`,
/// `Compliance`, …, split on `,` `;` `|` `/`), declared classes, and the known classes (`pci`,
/// `gdpr`, `pii`, `phi`, `hipaa`) appearing as tokens of its names, of any tag value, or of a
/// tag key whose value is not a "no" (`PCI = true`).
pub(crate) fn data_classes(
    tags: &BTreeMap<String, String>,
    names: &[&str],
    declared: &[&str],
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (key, value) in tags {
        let normalised: String = key
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        if CLASS_TAG_KEYS.contains(&normalised.as_str()) {
            out.extend(
                value
                    .split([',', ';', '|', '/'])
                    .filter_map(canonical_class),
            );
        }
        out.extend(tokens(value).filter_map(|t| token_class(&t)));
        if !is_negative(value) {
            out.extend(tokens(key).filter_map(|t| token_class(&t)));
        }
    }
    for name in names {
        out.extend(tokens(name).filter_map(|t| token_class(&t)));
    }
    out.extend(declared.iter().filter_map(|c| canonical_class(c)));
    out
}

/// `us-west-2a` → `us-west-2`, `europe-west1-b` → `europe-west1`; other text unchanged.
pub(crate) fn zone_region(zone: &str) -> String {
    let bytes = zone.as_bytes();
    match bytes {
        [.., digit, b'-', letter] if digit.is_ascii_digit() && letter.is_ascii_lowercase() => {
            zone.get(..zone.len() - 2).unwrap_or(zone).to_owned()
        }
        [.., digit, letter] if digit.is_ascii_digit() && letter.is_ascii_lowercase() => {
            zone.get(..zone.len() - 1).unwrap_or(zone).to_owned()
        }
        _ => zone.to_owned(),
    }
}

/// A region written in any of the usual ways, as custos records it: lower case, without
/// spaces (Azure's `West Europe` → `westeurope`).
pub(crate) fn normalise_region(region: &str) -> Option<String> {
    let region: String = region
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    (!region.is_empty()).then_some(region)
}

/// The region a resource's own attributes name: `region`, then `location` (Azure, Google),
/// then the region of its `zone` or `availability_zone`.
fn region(attributes: &Map<String, Value>) -> Option<String> {
    let text = |key: &str| attributes.get(key).and_then(Value::as_str);
    text("region")
        .and_then(normalise_region)
        .or_else(|| {
            text("location")
                .and_then(normalise_region)
                .map(|l| zone_region(&l))
        })
        .or_else(|| {
            text("zone")
                .or_else(|| text("availability_zone"))
                .and_then(normalise_region)
                .map(|z| zone_region(&z))
        })
}

/// How many instances a group-like resource runs (`None` for everything else).
fn quantity(resource_type: &str, attributes: &Map<String, Value>) -> Option<u64> {
    let number = |key: &str| attributes.get(key).and_then(Value::as_u64);
    match resource_type {
        "aws_autoscaling_group" => number("desired_capacity").or_else(|| number("min_size")),
        "aws_eks_node_group" => attributes
            .get("scaling_config")?
            .as_array()?
            .first()?
            .get("desired_size")?
            .as_u64(),
        "aws_ecs_service" => number("desired_count"),
        "google_compute_instance_group_manager"
        | "google_compute_region_instance_group_manager" => number("target_size"),
        "google_container_node_pool" => {
            number("node_count").or_else(|| number("initial_node_count"))
        }
        "azurerm_kubernetes_cluster_node_pool" => number("node_count"),
        "azurerm_linux_virtual_machine_scale_set"
        | "azurerm_windows_virtual_machine_scale_set"
        | "azurerm_orchestrated_virtual_machine_scale_set" => number("instances"),
        _ => None,
    }
}

/// Whether `unknown` (a Terraform `after_unknown` value) marks anything as unknown.
pub(crate) fn has_unknown(unknown: &Value) -> bool {
    match unknown {
        Value::Bool(b) => *b,
        Value::Array(items) => items.iter().any(has_unknown),
        Value::Object(map) => map.values().any(has_unknown),
        _ => false,
    }
}

/// Top-level attributes that change, sorted: those whose value differs between `before` and
/// `after` (absent and `null` are the same), and those `unknown` marks as known only after
/// apply (Terraform cannot promise they stay the same).
pub(crate) fn changed(before: &Value, after: &Value, unknown: &Value) -> Vec<String> {
    let empty = Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let unknown = unknown.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = before
        .keys()
        .chain(after.keys())
        .chain(unknown.keys())
        .collect();
    keys.into_iter()
        .filter(|key| {
            let was = before.get(*key).unwrap_or(&Value::Null);
            let will = after.get(*key).unwrap_or(&Value::Null);
            was != will || unknown.get(*key).is_some_and(has_unknown)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn tags_in_every_shape() {
        let attributes = map(json!({
            "tags_all": {"Owner": "ml", "Environment": "dev"},
            "tags": {"Environment": "prod", "Count": 3, "Skip": null},
            "tag": [{"key": "tag1", "value": "test", "propagate_at_launch": true}],
            "labels": {"team": "data"}
        }));
        let got = tags(&attributes, &Path::named("after")).unwrap_or_default();
        let expected: BTreeMap<String, String> = [
            ("Owner", "ml"),
            ("Environment", "prod"),
            ("Count", "3"),
            ("tag1", "test"),
            ("team", "data"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(got, expected);
        let old_asg = map(
            json!({"tags": [{"key": "Name", "value": "web", "propagate_at_launch": "true"}, "http-server"]}),
        );
        let got = tags(&old_asg, &Path::named("after")).unwrap_or_default();
        assert_eq!(got.get("Name").map(String::as_str), Some("web"));
        assert_eq!(got.get("http-server").map(String::as_str), Some(""));
    }

    #[test]
    fn tag_errors_name_the_path() {
        let cases = [
            (
                json!({"tags": "prod"}),
                "after.tags: expected an object of tags or an array of {key, value} tags, found the string \"prod\"",
            ),
            (
                json!({"tags": {"Env": ["a"]}}),
                "after.tags.Env: expected a string, found an array",
            ),
            (
                json!({"tags": [{"value": "x"}]}),
                "after.tags[0].key: required field is missing (also accepted as `Key`)",
            ),
            (
                json!({"tags": [7]}),
                "after.tags[0]: expected a tag ({key, value} or a string), found the number 7",
            ),
        ];
        for (attributes, message) in cases {
            let err = tags(&map(attributes), &Path::named("after"))
                .err()
                .map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(message));
        }
    }

    #[test]
    fn data_classes_from_tags_and_names() {
        let check =
            |tags: &[(&str, &str)], names: &[&str], declared: &[&str], expected: &[&str]| {
                let tags: BTreeMap<String, String> = tags
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                let got = data_classes(&tags, names, declared);
                let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
                assert_eq!(got, expected, "{tags:?} {names:?} {declared:?}");
            };
        check(&[("DataClassification", "PCI")], &[], &[], &["pci"]);
        check(
            &[("data_classification", "PCI-DSS, GDPR")],
            &[],
            &[],
            &["pci", "gdpr"],
        );
        check(&[("Compliance", "HIPAA/PHI")], &[], &[], &["hipaa", "phi"]);
        check(
            &[("data-class", "Confidential")],
            &[],
            &[],
            &["confidential"],
        );
        check(&[("Workload", "gdpr-customer-data")], &[], &[], &["gdpr"]);
        check(&[("PCI", "true"), ("gdpr", "no")], &[], &[], &["pci"]);
        check(
            &[],
            &["pci-prod-firewall", "customer_pii_bucket"],
            &[],
            &["pci", "pii"],
        );
        check(&[], &["pcidss-vault", "spicy"], &["GDPR"], &["pci", "gdpr"]);
        check(
            &[("Name", "web"), ("Environment", "prod")],
            &["app"],
            &[],
            &[],
        );
    }

    #[test]
    fn regions_from_attributes() {
        let check = |attributes: Value, expected: Option<&str>| {
            assert_eq!(
                region(&map(attributes.clone())).as_deref(),
                expected,
                "{attributes}"
            );
        };
        check(
            json!({"region": "eu-west-1", "availability_zone": "us-east-1a"}),
            Some("eu-west-1"),
        );
        check(
            json!({"availability_zone": "us-west-2a"}),
            Some("us-west-2"),
        );
        check(json!({"location": "West Europe"}), Some("westeurope"));
        check(json!({"location": "europe-west1-b"}), Some("europe-west1"));
        check(json!({"location": "EU"}), Some("eu"));
        check(json!({"zone": "us-central1-c"}), Some("us-central1"));
        check(json!({"region": null, "availability_zone": ""}), None);
        check(json!({"region": 5}), None);
    }

    #[test]
    fn quantities_of_groups() {
        let check = |resource_type: &str, attributes: Value, expected: Option<u64>| {
            assert_eq!(
                quantity(resource_type, &map(attributes)),
                expected,
                "{resource_type}"
            );
        };
        check(
            "aws_autoscaling_group",
            json!({"desired_capacity": 6, "min_size": 2}),
            Some(6),
        );
        check(
            "aws_autoscaling_group",
            json!({"min_size": 1, "max_size": 1}),
            Some(1),
        );
        check(
            "aws_eks_node_group",
            json!({"scaling_config": [{"desired_size": 3}]}),
            Some(3),
        );
        check(
            "google_container_node_pool",
            json!({"initial_node_count": 2}),
            Some(2),
        );
        check(
            "azurerm_linux_virtual_machine_scale_set",
            json!({"instances": 4}),
            Some(4),
        );
        check("aws_instance", json!({"count": 9}), None);
    }

    #[test]
    fn changed_keys() {
        let before =
            json!({"to_port": 5432, "from_port": 5432, "id": "x", "gone": 1, "same": null});
        let after = json!({"to_port": 5433, "from_port": 5432, "id": "x", "new": 2});
        let unknown = json!({"arn": true, "tags": {}, "rules": [{"id": true}]});
        assert_eq!(
            changed(&before, &after, &unknown),
            ["arn", "gone", "new", "rules", "to_port"]
        );
        assert!(changed(&Value::Null, &Value::Null, &Value::Null).is_empty());
    }
}
