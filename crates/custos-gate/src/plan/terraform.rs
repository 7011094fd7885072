//! Terraform plans, as printed by `terraform show -json <planfile>`.
//!
//! One action per entry of `resource_changes`, in order, keyed by its `address` (module path
//! included: `module.net.module.vpc.aws_vpc.main[0]`; a deposed object gets
//! `… (deposed <key>)` appended, since it shares its instance's address). `change.actions`
//! maps to a verb: `["create"]`, `["update"]`, `["delete"]`, `["delete","create"]` or
//! `["create","delete"]` (replace), `["read"]`, `["no-op"]`, and `["forget"]` (removed from
//! state without being destroyed: recorded as no-op with a note). Anything else is an error,
//! and data sources (`mode = "data"`) are always reads.
//!
//! `after` leaves out values known only after apply (`after_unknown`: object keys removed,
//! list elements `null`), and values Terraform marks sensitive (`before_sensitive`,
//! `after_sensitive`) are replaced by `"(sensitive)"` so secrets do not travel on into
//! policies and the ledger. `changed` is read before that redaction.
//!
//! Facts are read from `after` (`before` for a delete); see the `facts`, `ingress` and
//! `controls` modules. The region is the resource's own (`region`, `location`, `zone`,
//! `availability_zone`) or else its provider configuration's `region`: the resource's
//! `provider_config_key` in `configuration` (walked through `module_calls`), then that key
//! without its module prefix, then the provider's local name (`aws`); a `region` given as
//! `var.x` is resolved through the plan's `variables`.
//!
//! A document with no `resource_changes` is an empty plan if it has `planned_values` (Terraform
//! leaves `resource_changes` out when nothing changes), and otherwise not a plan at all — most
//! often a state printed by `terraform show -json` without a plan file — which is an error
//! saying so.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::environment::{self, Evidence};
use super::facts::{self, AttributeFacts};
use super::json::{self, Path};
use super::{Context, Parsed, PlanError, PlanFormat, PlannedAction, Verb};
use super::{cost::Figures, generic::environment_tag_values, ingress};

/// What sensitive values are replaced by.
const REDACTED: &str = "(sensitive)";

/// Normalises a Terraform document.
pub(crate) fn normalize(doc: &Map<String, Value>, context: &Context) -> Result<Parsed, PlanError> {
    let root = Path::root();
    let mut notes = Vec::new();
    if doc.get("errored") == Some(&Value::Bool(true)) {
        notes.push(
            "Terraform reports that planning errored (`errored: true`): the plan may be incomplete"
                .to_owned(),
        );
    }
    let Some((changes_path, changes)) = json::opt_array(doc, &["resource_changes"], &root)? else {
        return no_resource_changes(doc, notes);
    };
    if changes.is_empty() {
        notes.push("the Terraform plan has no resource changes".to_owned());
    }
    let providers = Providers::read(doc);
    let mut actions = Vec::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        let (action, note) = action(change, &changes_path.index(i), &providers, context)?;
        actions.push(action);
        notes.extend(note);
    }
    Ok(Parsed {
        format: PlanFormat::Terraform,
        actions,
        figures: Figures::default(),
        notes,
    })
}

/// A document without `resource_changes`: an empty plan, or not a plan.
fn no_resource_changes(
    doc: &Map<String, Value>,
    mut notes: Vec<String>,
) -> Result<Parsed, PlanError> {
    if doc.get("planned_values").is_some_and(|v| !v.is_null()) {
        notes.push(
            "the Terraform plan has no `resource_changes` (Terraform leaves it out when nothing changes): treated as an empty plan"
                .to_owned(),
        );
        return Ok(Parsed {
            format: PlanFormat::Terraform,
            actions: Vec::new(),
            figures: Figures::default(),
            notes,
        });
    }
    let version = doc
        .get("terraform_version")
        .and_then(Value::as_str)
        .map(|v| format!(", Terraform {v}"))
        .unwrap_or_default();
    let found = match doc.get("values") {
        Some(values) if !values.is_null() => {
            let resources = values
                .pointer("/root_module/resources")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            format!("a Terraform state (`values.root_module` with {resources} resources{version})")
        }
        _ => {
            let keys: Vec<&str> = doc.keys().map(String::as_str).take(8).collect();
            format!(
                "a Terraform document with only {}{version}",
                keys.join(", ")
            )
        }
    };
    Err(PlanError::NotAPlan { found })
}

/// The verb of a `change.actions` list, and a note when it needs one.
fn verb(actions: &[&str], address: &str, path: &Path) -> Result<(Verb, Option<String>), PlanError> {
    let verb = match actions {
        ["create"] => Verb::Create,
        ["update"] => Verb::Update,
        ["delete"] => Verb::Delete,
        ["delete", "create"] | ["create", "delete"] => Verb::Replace,
        ["read"] => Verb::Read,
        ["no-op"] => Verb::NoOp,
        ["forget"] => {
            let note = format!(
                "{address} is removed from Terraform state without being destroyed (`forget`): recorded as no-op"
            );
            return Ok((Verb::NoOp, Some(note)));
        }
        _ => {
            return Err(PlanError::UnknownTerraformActions {
                path: path.to_string(),
                found: serde_json::to_string(actions).unwrap_or_default(),
            });
        }
    };
    Ok((verb, None))
}

/// The identifying fields of one resource change.
struct Header<'a> {
    address: &'a str,
    resource_type: &'a str,
    name: &'a str,
    mode: Option<&'a str>,
    module_address: Option<&'a str>,
    provider_name: Option<&'a str>,
    deposed: Option<&'a str>,
    /// A `for_each` key.
    key: Option<&'a str>,
}

impl<'a> Header<'a> {
    fn read(object: &'a Map<String, Value>, path: &Path) -> Result<Header<'a>, PlanError> {
        Ok(Header {
            address: json::req_str(object, &["address"], path)?,
            resource_type: json::req_str(object, &["type"], path)?,
            name: json::req_str(object, &["name"], path)?,
            mode: json::opt_str(object, &["mode"], path)?,
            module_address: json::opt_str(object, &["module_address"], path)?,
            provider_name: json::opt_str(object, &["provider_name"], path)?,
            deposed: json::opt_str(object, &["deposed"], path)?,
            key: object.get("index").and_then(Value::as_str),
        })
    }

    /// The action's address: a deposed object's gets its key, as it shares its instance's.
    fn action_address(&self) -> String {
        match self.deposed {
            Some(key) => format!("{} (deposed {key})", self.address),
            None => self.address.to_owned(),
        }
    }
}

/// The verb of `change.actions` (a data source always reads), and a note if it needs one.
fn verb_of(
    change: &Map<String, Value>,
    change_path: &Path,
    header: &Header,
) -> Result<(Verb, Option<String>), PlanError> {
    let (path, list) = json::opt_array(change, &["actions"], change_path)?
        .ok_or_else(|| json::missing(&["actions"], change_path))?;
    let words = list
        .iter()
        .enumerate()
        .map(|(i, word)| {
            word.as_str()
                .ok_or_else(|| json::wrong_type(&path.index(i), "a string", word))
        })
        .collect::<Result<Vec<&str>, PlanError>>()?;
    let (verb, note) = verb(&words, header.address, &path)?;
    Ok(match header.mode {
        Some("data") => (Verb::Read, note),
        _ => (verb, note),
    })
}

/// `change.before` and `change.after`, the latter without values known only after apply.
struct States {
    before: Value,
    after: Value,
    unknown: Value,
}

impl States {
    fn read(change: &Map<String, Value>) -> States {
        let field = |key: &str| change.get(key).cloned().unwrap_or(Value::Null);
        let unknown = field("after_unknown");
        let mut after = field("after");
        apply_marks(&mut after, &unknown, Mark::Unknown);
        States {
            before: field("before"),
            after,
            unknown,
        }
    }

    /// The attributes facts are read from (`before` for a delete), and their key.
    fn current(&self, verb: Verb) -> (&'static str, Option<&Map<String, Value>>) {
        if verb == Verb::Delete {
            ("before", self.before.as_object())
        } else {
            ("after", self.after.as_object())
        }
    }

    /// `before` and `after` as recorded: sensitive values redacted, no `after` for a delete.
    fn recorded(self, change: &Map<String, Value>, verb: Verb) -> (Value, Value) {
        let States {
            mut before,
            mut after,
            ..
        } = self;
        if let Some(sensitive) = change.get("before_sensitive") {
            apply_marks(&mut before, sensitive, Mark::Sensitive);
        }
        if let Some(sensitive) = change.get("after_sensitive") {
            apply_marks(&mut after, sensitive, Mark::Sensitive);
        }
        if verb == Verb::Delete {
            after = Value::Null;
        }
        (before, after)
    }
}

/// Names of the resource, as environment and data-class evidence: `Name` tag, name-like
/// attributes, Terraform name, module names, `for_each` key.
fn evidence_names<'a>(
    header: &Header<'a>,
    facts: &'a AttributeFacts,
    modules: &'a [String],
) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    names.extend(facts::name_tag(&facts.tags));
    names.extend(facts.names.iter().map(String::as_str));
    names.push(header.name);
    names.extend(modules.iter().map(String::as_str));
    names.extend(header.key);
    names
}

/// Normalises one entry of `resource_changes`.
fn action(
    item: &Value,
    path: &Path,
    providers: &Providers,
    context: &Context,
) -> Result<(PlannedAction, Option<String>), PlanError> {
    let Value::Object(object) = item else {
        return Err(json::wrong_type(
            path,
            "an object (one resource change)",
            item,
        ));
    };
    let header = Header::read(object, path)?;
    let (change_path, change) = json::opt_object(object, &["change"], path)?
        .ok_or_else(|| json::missing(&["change"], path))?;
    let (verb, note) = verb_of(change, &change_path, &header)?;
    let states = States::read(change);
    let (state_key, attributes) = states.current(verb);
    let empty = Map::new();
    let facts = facts::read(
        header.resource_type,
        attributes.unwrap_or(&empty),
        &change_path.key(state_key),
    )?;

    let modules = module_path(header.address, header.module_address);
    let region = facts.region.clone().or_else(|| {
        let address = config_address(&modules, header.mode, header.resource_type, header.name);
        providers.region(&address, header.provider_name)
    });
    let names = evidence_names(&header, &facts, &modules);
    let environment = environment::decide(&Evidence {
        action: None,
        tags: environment_tag_values(&facts.tags),
        names: names.clone(),
        metadata: context.metadata_environment,
        request: context.request.clone(),
    });
    let data_classes = facts::data_classes(&facts.tags, &names, &[]);
    // The name-like attribute or `Name` tag says more than Terraform's local name (`this`).
    let name = names.first().copied().unwrap_or(header.name).to_owned();
    let changed = if matches!(verb, Verb::Update | Verb::Replace) {
        facts::changed(&states.before, &states.after, &states.unknown)
    } else {
        Vec::new()
    };
    let (before, after) = states.recorded(change, verb);
    let action = PlannedAction {
        address: header.action_address(),
        verb,
        resource_type: header.resource_type.to_owned(),
        name,
        environment,
        region,
        quantity: facts.quantity.unwrap_or(1),
        tags: facts.tags,
        ingress: ingress::dedup(facts.ingress),
        data_classes,
        controls: facts.controls,
        monthly_cost: None,
        before,
        after,
        changed,
    };
    Ok((action, note))
}

/// What a value marked in a Terraform marker tree (`after_unknown`, `before_sensitive`,
/// `after_sensitive`: `true` marks a value) becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// Known only after apply: left out (object members removed, list elements `null`).
    Unknown,
    /// Sensitive: replaced by [`REDACTED`] (unless `null`).
    Sensitive,
}

/// Applies the marker tree `marks` to `value`.
fn apply_marks(value: &mut Value, marks: &Value, mark: Mark) {
    match (value, marks) {
        (value, Value::Bool(true)) => match mark {
            Mark::Unknown => *value = Value::Null,
            Mark::Sensitive if !value.is_null() => *value = Value::String(REDACTED.to_owned()),
            Mark::Sensitive => {}
        },
        (Value::Object(object), Value::Object(marks)) => {
            for (key, sub) in marks {
                if mark == Mark::Unknown && sub == &Value::Bool(true) {
                    object.remove(key);
                } else if let Some(member) = object.get_mut(key) {
                    apply_marks(member, sub, mark);
                }
            }
        }
        (Value::Array(items), Value::Array(marks)) => {
            for (item, sub) in items.iter_mut().zip(marks) {
                apply_marks(item, sub, mark);
            }
        }
        _ => {}
    }
}

/// Splits an address into its `.`-separated parts, ignoring dots inside `[...]` keys.
pub(crate) fn address_parts(address: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, c) in address.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            '.' if !quoted && depth == 0 => {
                parts.push(address.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(address.get(start..).unwrap_or_default());
    parts
}

/// `name["key"]` → `name`.
fn without_key(part: &str) -> &str {
    part.split('[').next().unwrap_or(part)
}

/// The names of the module calls on a resource's path (`module.a["x"].module.b` → `a`, `b`),
/// from `module_address` or else from its address.
fn module_path(address: &str, module_address: Option<&str>) -> Vec<String> {
    let parts = address_parts(module_address.unwrap_or(address));
    parts
        .chunks(2)
        .take_while(|pair| matches!(pair, ["module", _]))
        .filter_map(|pair| pair.get(1))
        .map(|name| without_key(name).to_owned())
        .collect()
}

/// The resource's address in `configuration` (module keys and instance keys dropped).
fn config_address(
    modules: &[String],
    mode: Option<&str>,
    resource_type: &str,
    name: &str,
) -> String {
    let mut address: String = modules.iter().map(|m| format!("module.{m}.")).collect();
    if mode == Some("data") {
        address.push_str("data.");
    }
    address.push_str(resource_type);
    address.push('.');
    address.push_str(name);
    address
}

/// What `configuration` says about providers: each resource's provider configuration key, and
/// each configuration's region.
#[derive(Debug, Default)]
struct Providers {
    keys: HashMap<String, String>,
    regions: HashMap<String, String>,
}

impl Providers {
    /// Reads `configuration`; anything malformed there only means fewer regions are known.
    fn read(doc: &Map<String, Value>) -> Providers {
        let mut providers = Providers::default();
        let Some(configuration) = doc.get("configuration") else {
            return providers;
        };
        if let Some(configs) = configuration
            .get("provider_config")
            .and_then(Value::as_object)
        {
            for (key, config) in configs {
                if let Some(region) = config_region(config, doc.get("variables")) {
                    providers.regions.insert(key.clone(), region);
                }
            }
        }
        if let Some(root) = configuration.get("root_module") {
            providers.walk(root, "");
        }
        providers
    }

    /// Records the provider keys of a configuration module and its calls.
    fn walk(&mut self, module: &Value, prefix: &str) {
        let resources = module.get("resources").and_then(Value::as_array);
        for resource in resources.into_iter().flatten() {
            let address = resource.get("address").and_then(Value::as_str);
            let key = resource.get("provider_config_key").and_then(Value::as_str);
            if let (Some(address), Some(key)) = (address, key) {
                self.keys
                    .insert(format!("{prefix}{address}"), key.to_owned());
            }
        }
        let calls = module.get("module_calls").and_then(Value::as_object);
        for (name, call) in calls.into_iter().flatten() {
            if let Some(child) = call.get("module") {
                self.walk(child, &format!("{prefix}module.{name}."));
            }
        }
    }

    /// The region of the provider configuration a resource uses.
    fn region(&self, config_address: &str, provider_name: Option<&str>) -> Option<String> {
        let key = self.keys.get(config_address).map(String::as_str);
        let unqualified = key.and_then(|k| k.rsplit_once(':')).map(|(_, k)| k);
        let local_name = provider_name.and_then(|p| p.rsplit('/').next());
        [key, unqualified, local_name]
            .into_iter()
            .flatten()
            .find_map(|k| self.regions.get(k).cloned())
    }
}

/// A provider configuration's `region`: a constant, or a root variable it references.
fn config_region(config: &Value, variables: Option<&Value>) -> Option<String> {
    let region = config.get("expressions")?.get("region")?;
    if let Some(constant) = region.get("constant_value").and_then(Value::as_str) {
        return facts::normalise_region(constant);
    }
    if config.get("module_address").is_some() {
        return None;
    }
    let references = region.get("references")?.as_array()?;
    references
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|r| r.strip_prefix("var."))
        .find_map(|name| variables?.get(name)?.get("value")?.as_str())
        .and_then(facts::normalise_region)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn action_lists() {
        let path = Path::named("resource_changes")
            .index(0)
            .key("change")
            .key("actions");
        let ok: &[(&[&str], Verb)] = &[
            (&["create"], Verb::Create),
            (&["update"], Verb::Update),
            (&["delete"], Verb::Delete),
            (&["delete", "create"], Verb::Replace),
            (&["create", "delete"], Verb::Replace),
            (&["read"], Verb::Read),
            (&["no-op"], Verb::NoOp),
            (&["forget"], Verb::NoOp),
        ];
        for (actions, expected) in ok {
            assert_eq!(
                verb(actions, "a.b", &path).map(|(v, _)| v).ok(),
                Some(*expected),
                "{actions:?}"
            );
        }
        for bad in [
            &[][..],
            &["create", "create"],
            &["destroy"],
            &["update", "delete"],
        ] {
            let err = verb(bad, "a.b", &path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with("resource_changes[0].change.actions: "),
                "{err}"
            );
        }
    }

    #[test]
    fn addresses_and_modules() {
        assert_eq!(
            address_parts("module.a[\"x.y\"].module.b.aws_s3_bucket.logs[0]"),
            [
                "module",
                "a[\"x.y\"]",
                "module",
                "b",
                "aws_s3_bucket",
                "logs[0]"
            ]
        );
        let modules = module_path("module.a[\"x.y\"].module.b.aws_s3_bucket.logs[0]", None);
        assert_eq!(modules, ["a", "b"]);
        assert_eq!(
            config_address(&modules, None, "aws_s3_bucket", "logs"),
            "module.a.module.b.aws_s3_bucket.logs"
        );
        assert_eq!(
            config_address(&[], Some("data"), "aws_ami", "ubuntu"),
            "data.aws_ami.ubuntu"
        );
        assert!(module_path("aws_vpc.main", None).is_empty());
    }

    #[test]
    fn unknown_and_sensitive_values() {
        let mut after = json!({"a": 1, "arn": null, "rules": [{"id": "x", "cidr": "c"}, {"id": "y"}], "tags": {"k": "v"}});
        let unknown = json!({"arn": true, "id": true, "rules": [{"id": true}, true], "tags": {}});
        apply_marks(&mut after, &unknown, Mark::Unknown);
        assert_eq!(
            after,
            json!({"a": 1, "rules": [{"cidr": "c"}, null], "tags": {"k": "v"}})
        );
        let mut whole = json!({"a": 1});
        apply_marks(&mut whole, &json!(true), Mark::Unknown);
        assert_eq!(whole, Value::Null);
        let mut before =
            json!({"password": "hunter2", "user": "admin", "token": null, "keys": ["k1", "k2"]});
        let sensitive = json!({"password": true, "token": true, "keys": [false, true]});
        apply_marks(&mut before, &sensitive, Mark::Sensitive);
        assert_eq!(
            before,
            json!({"password": "(sensitive)", "user": "admin", "token": null, "keys": ["k1", "(sensitive)"]})
        );
    }

    #[test]
    fn provider_regions_follow_keys_modules_and_variables() {
        let doc = json!({
            "variables": {"region": {"value": "eu-central-1"}},
            "configuration": {
                "provider_config": {
                    "aws": {"name": "aws", "expressions": {"region": {"references": ["var.region"]}}},
                    "aws.west": {"name": "aws", "alias": "west", "expressions": {"region": {"constant_value": "us-west-2"}}},
                    "module.net:aws": {"name": "aws", "module_address": "module.net", "expressions": {"region": {"constant_value": "ap-south-1"}}}
                },
                "root_module": {
                    "resources": [
                        {"address": "aws_vpc.main", "provider_config_key": "aws"},
                        {"address": "aws_vpc.west", "provider_config_key": "aws.west"}
                    ],
                    "module_calls": {"net": {"module": {"resources": [
                        {"address": "aws_subnet.a", "provider_config_key": "module.net:aws"}
                    ], "module_calls": {"inner": {"module": {"resources": [
                        {"address": "aws_subnet.b", "provider_config_key": "inner:aws.west"}
                    ]}}}}}}
                }
            }
        });
        let providers = Providers::read(doc.as_object().unwrap_or(&Map::new()));
        let aws = Some("registry.terraform.io/hashicorp/aws");
        assert_eq!(
            providers.region("aws_vpc.main", aws).as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(
            providers.region("aws_vpc.west", aws).as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            providers.region("module.net.aws_subnet.a", aws).as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(
            providers
                .region("module.net.module.inner.aws_subnet.b", aws)
                .as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            providers
                .region("aws_instance.unlisted", Some("aws"))
                .as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(
            providers.region("google_x.y", Some("registry.terraform.io/hashicorp/google")),
            None
        );
    }
}
