//! Terraform documents of what was executed: a plan of what was applied (shape 2 of the module
//! docs) and a state after apply (shape 3). Both go through the Terraform plan normaliser — a
//! state's resources as creates of their current values — so addresses, sensitive-value
//! redaction and ingress are read exactly as for the approved plan.

use serde_json::{Map, Value};

use super::{
    Evidence, ExecutedChange, ExecutedChanges, ExecutionError, ExecutionFormat, Outcome,
    StateResource, read_status, relocate,
};
use crate::plan::read::{self as json, Path};
use crate::plan::{PlanError, Verb, normalize_value};
use crate::request::Metadata;

/// How deeply `child_modules` may nest (Terraform itself has no limit; real configurations stay
/// far below this).
const MAX_MODULE_DEPTH: usize = 100;

/// Reads a Terraform plan of what was applied: its changing actions are the executed changes.
pub(super) fn from_plan(
    value: &Value,
    doc: &Map<String, Value>,
) -> Result<ExecutedChanges, ExecutionError> {
    let status = read_status(doc)?;
    let plan = normalize_value(value, &Metadata::default(), "", None)?;
    let changes = plan
        .actions
        .into_iter()
        .filter(|a| a.verb.changes())
        .map(|a| ExecutedChange {
            attributes: if a.verb == Verb::Delete {
                Value::Null
            } else {
                a.after
            },
            address: a.address,
            verb: a.verb,
            resource_type: a.resource_type,
            name: a.name,
            outcome: Outcome::Applied,
            error: None,
            ingress: a.ingress,
            quantity: None,
        })
        .collect();
    Ok(ExecutedChanges {
        format: ExecutionFormat::TerraformPlan,
        status,
        evidence: Evidence::Changes(changes),
        notes: plan.notes,
    })
}

/// One managed resource found in a state, before normalisation.
struct Found<'a> {
    path: Path,
    address: &'a str,
    resource_type: &'a str,
    name: &'a str,
    deposed: Option<&'a str>,
    provider_name: Option<&'a str>,
    values: Value,
    sensitive: Value,
}

impl Found<'_> {
    /// The resource as a Terraform plan's create of its current values.
    fn as_resource_change(&self) -> Value {
        let mut change = Map::new();
        change.insert("actions".to_owned(), Value::from(vec!["create"]));
        change.insert("before".to_owned(), Value::Null);
        change.insert("after".to_owned(), self.values.clone());
        change.insert("after_sensitive".to_owned(), self.sensitive.clone());
        let mut resource = Map::new();
        resource.insert("address".to_owned(), Value::from(self.address));
        resource.insert("mode".to_owned(), Value::from("managed"));
        resource.insert("type".to_owned(), Value::from(self.resource_type));
        resource.insert("name".to_owned(), Value::from(self.name));
        if let Some(key) = self.deposed {
            resource.insert("deposed".to_owned(), Value::from(key));
        }
        if let Some(provider) = self.provider_name {
            resource.insert("provider_name".to_owned(), Value::from(provider));
        }
        resource.insert("change".to_owned(), Value::Object(change));
        Value::Object(resource)
    }
}

/// Reads a Terraform state after apply: its managed resources.
pub(super) fn from_state(doc: &Map<String, Value>) -> Result<ExecutedChanges, ExecutionError> {
    let status = read_status(doc)?;
    let root = Path::root();
    let mut found = Vec::new();
    let mut data_sources = 0usize;
    let mut notes = Vec::new();
    let module = match json::opt_object(doc, &["values"], &root)? {
        None => None,
        Some((values_path, values)) => json::opt_object(values, &["root_module"], &values_path)?,
    };
    match module {
        None => notes.push("the Terraform state holds no resources".to_owned()),
        Some((path, module)) => walk(module, &path, 0, &mut found, &mut data_sources)?,
    }
    if data_sources > 0 {
        notes.push(format!(
            "{data_sources} data sources in the state are not managed resources and were ignored"
        ));
    }

    let changes: Vec<Value> = found.iter().map(Found::as_resource_change).collect();
    let plan_doc = Value::Object(Map::from_iter([(
        "resource_changes".to_owned(),
        Value::Array(changes),
    )]));
    let paths: Vec<&Path> = found.iter().map(|f| &f.path).collect();
    let plan = normalize_value(&plan_doc, &Metadata::default(), "", None)
        .map_err(|e| relocate(e, |p| state_path(p, &paths)))?;
    let resources = plan
        .actions
        .into_iter()
        .zip(&found)
        .map(|(action, f)| StateResource {
            address: action.address,
            resource_type: f.resource_type.to_owned(),
            name: f.name.to_owned(),
            values: action.after,
            ingress: action.ingress,
        })
        .collect();
    Ok(ExecutedChanges {
        format: ExecutionFormat::TerraformState,
        status,
        evidence: Evidence::State(resources),
        notes,
    })
}

/// Collects the resources of a state module and its `child_modules`, counting data sources.
fn walk<'a>(
    module: &'a Map<String, Value>,
    path: &Path,
    depth: usize,
    out: &mut Vec<Found<'a>>,
    data_sources: &mut usize,
) -> Result<(), ExecutionError> {
    if depth > MAX_MODULE_DEPTH {
        return Err(PlanError::TooLarge {
            path: path.to_string(),
            what: "levels of nested `child_modules`",
            limit: MAX_MODULE_DEPTH,
        }
        .into());
    }
    if let Some((list, resources)) = json::opt_array(module, &["resources"], path)? {
        for (i, item) in resources.iter().enumerate() {
            let path = list.index(i);
            let Value::Object(object) = item else {
                return Err(json::wrong_type(&path, "an object (one resource)", item).into());
            };
            let mode = json::opt_str(object, &["mode"], &path)?;
            let address = json::req_str(object, &["address"], &path)?;
            let resource_type = json::req_str(object, &["type"], &path)?;
            let name = json::req_str(object, &["name"], &path)?;
            let deposed = json::opt_str(object, &["deposed_key"], &path)?;
            let provider_name = json::opt_str(object, &["provider_name"], &path)?;
            if mode == Some("data") {
                *data_sources += 1;
                continue;
            }
            let values = match json::opt_object(object, &["values"], &path)? {
                Some((_, values)) => Value::Object(values.clone()),
                None => Value::Object(Map::new()),
            };
            let sensitive = object
                .get("sensitive_values")
                .cloned()
                .unwrap_or(Value::Null);
            out.push(Found {
                path,
                address,
                resource_type,
                name,
                deposed,
                provider_name,
                values,
                sensitive,
            });
        }
    }
    if let Some((list, children)) = json::opt_array(module, &["child_modules"], path)? {
        for (i, child) in children.iter().enumerate() {
            let path = list.index(i);
            let Value::Object(child) = child else {
                return Err(json::wrong_type(&path, "an object (one child module)", child).into());
            };
            walk(child, &path, depth + 1, out, data_sources)?;
        }
    }
    Ok(())
}

/// A path in the plan built from a state (`resource_changes[3].change.after.ingress`) as a
/// path in the state (`values.root_module.resources[3].values.ingress`).
fn state_path(path: &str, resources: &[&Path]) -> String {
    let located = path
        .strip_prefix("resource_changes[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, rest)| {
            let base = resources.get(index.parse::<usize>().ok()?)?;
            let rest = match rest.strip_prefix(".change.after") {
                Some(tail) if tail.is_empty() || tail.starts_with(['.', '[']) => {
                    format!(".values{tail}")
                }
                _ => rest.to_owned(),
            };
            Some(format!("{base}{rest}"))
        });
    located.unwrap_or_else(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_built_plan_map_back_to_the_state() {
        let a = Path::root()
            .key("values")
            .key("root_module")
            .key("resources")
            .index(0);
        let b = Path::root()
            .key("values")
            .key("root_module")
            .key("child_modules")
            .index(1)
            .key("resources")
            .index(4);
        let paths = [&a, &b];
        let cases = [
            (
                "resource_changes[0].change.after.ingress[2].from_port",
                "values.root_module.resources[0].values.ingress[2].from_port",
            ),
            (
                "resource_changes[1].change.after",
                "values.root_module.child_modules[1].resources[4].values",
            ),
            (
                "resource_changes[1]",
                "values.root_module.child_modules[1].resources[4]",
            ),
            (
                "resource_changes[0].change.after_sensitive",
                "values.root_module.resources[0].change.after_sensitive",
            ),
            ("resource_changes[7].x", "resource_changes[7].x"),
            ("elsewhere", "elsewhere"),
        ];
        for (built, expected) in cases {
            assert_eq!(state_path(built, &paths), expected, "{built}");
        }
    }
}
