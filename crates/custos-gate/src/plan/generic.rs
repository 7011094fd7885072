//! custos's generic plan shape, for orchestrators that do not use Terraform.
//!
//! ```json
//! {
//!   "actions": [
//!     {
//!       "id": "gpu-nodes",                    // optional; the action's address (else "type.name")
//!       "verb": "create",                     // or "action", "operation"
//!       "resource_type": "aws_instance",      // or "type", "kind"
//!       "name": "ml-gpu-node",                // or "resource_name"; optional when "id" is given
//!       "environment": "nonprod-ml",          // or "env"; optional
//!       "region": "us-east-1",                // or "location"; optional
//!       "quantity": 4,                        // or "count", "instances", "instance_count"; default 1
//!       "attributes": {"instance_type": "g5.xlarge"},   // or "properties"; optional
//!       "before": {}, "after": {},            // optional; objects or null
//!       "tags": {"Owner": "ml"},              // or "labels"; a map, or [{"key", "value"}]
//!       "cost": 451.0,                        // or "monthly_cost", "estimated_monthly_cost"
//!       "ingress": [                          // or "ingress_rules"
//!         {"cidr": "0.0.0.0/0", "port": 443, "protocol": "tcp"}
//!       ],
//!       "data_classes": ["pci"],              // or "data_classification", "data_class"; string or list
//!       "controls": {"encryption": true, "logging": true, "firewall": true, "isolation": true}
//!     }
//!   ],
//!   "cost": 902,                    // or "estimated_monthly_cost", "monthly_cost", or an object
//!                                   //   {"monthly", "increase", "currency"}
//!   "cost_increase": 902,           // or "monthly_cost_increase", "cost_delta"
//!   "currency": "USD",
//!   "region": "us-east-1",          // default for actions that name none
//!   "environment": "nonprod-ml"     // default for actions that name none
//! }
//! ```
//!
//! Verbs, case-insensitive (`_` and spaces read as `-`): **create** (`add`, `new`, `provision`,
//! `launch`, `allocate`, `insert`, `+`), **update** (`modify`, `change`, `scale`, `scale-up`,
//! `scale-down`, `scale-out`, `scale-in`, `resize`, `patch`, `edit`, `upgrade`, `reconfigure`,
//! `~`), **delete** (`destroy`, `remove`, `terminate`, `deprovision`, `drop`, `decommission`,
//! `-`), **replace** (`recreate`, `delete-create`, `create-delete`, `destroy-create`, `-/+`,
//! `+/-`), **read** (`get`, `describe`, `lookup`, `data`), **no-op** (`noop`, `none`,
//! `unchanged`, `no-change`).
//!
//! Lenient about names, strict about types: an alias is as good as the name, `null` is the
//! same as absent, and numbers may be strings holding numbers; but a field of the wrong type,
//! an unknown verb, or two aliases given different values is an error naming the path. An
//! empty `actions` array is a valid, empty plan.
//!
//! Facts are read from the action's own fields, its `attributes`, and its `after` (`before`
//! for a delete), the latter two exactly as for a Terraform resource of the same type (so an
//! `aws_security_group` with `ingress` blocks in `after` opens that ingress). `after` defaults
//! to `attributes` (`before` does, for a delete). Explicit `controls` override what attributes
//! suggest.

use serde_json::{Map, Value};

use super::cost::{self, Figures};
use super::environment::{self, Evidence};
use super::facts::{self, AttributeFacts};
use super::json::{self, Path};
use super::{Context, Controls, Parsed, PlanError, PlanFormat, PlannedAction, Verb};
use super::{controls, ingress};

/// A keyword as the synonym tables spell it: trimmed, lower case, `_` and spaces as `-`.
pub(crate) fn keyword(word: &str) -> String {
    word.trim()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The verb a word names, with the synonyms listed in the module docs.
pub fn verb_from_word(word: &str) -> Option<Verb> {
    let word = keyword(word);
    let verb = match word.as_str() {
        "create" | "add" | "new" | "provision" | "launch" | "allocate" | "insert" | "+" => {
            Verb::Create
        }
        "update" | "modify" | "change" | "scale" | "scale-up" | "scale-down" | "scale-out"
        | "scale-in" | "resize" | "patch" | "edit" | "upgrade" | "reconfigure" | "~" => {
            Verb::Update
        }
        "delete" | "destroy" | "remove" | "terminate" | "deprovision" | "drop" | "decommission"
        | "-" => Verb::Delete,
        "replace" | "recreate" | "delete-create" | "create-delete" | "destroy-create" | "-/+"
        | "+/-" => Verb::Replace,
        "read" | "get" | "describe" | "lookup" | "data" => Verb::Read,
        "no-op" | "noop" | "none" | "unchanged" | "no-change" => Verb::NoOp,
        _ => return None,
    };
    Some(verb)
}

/// Plan-wide defaults for its actions.
struct Defaults<'a> {
    region: Option<&'a str>,
    environment: Option<&'a str>,
}

/// Normalises a generic plan document.
pub(crate) fn normalize(doc: &Map<String, Value>, context: &Context) -> Result<Parsed, PlanError> {
    let root = Path::root();
    let (actions_path, items) = json::opt_array(doc, &["actions"], &root)?
        .ok_or_else(|| json::missing(&["actions"], &root))?;
    let defaults = Defaults {
        region: json::opt_str(doc, &["region", "location"], &root)?,
        environment: json::opt_str(doc, &["environment", "env"], &root)?,
    };
    let mut actions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        actions.push(action(item, &actions_path.index(i), &defaults, context)?);
    }
    let figures = plan_figures(doc, &root, &actions)?;
    let notes = if actions.is_empty() {
        vec!["the plan has no actions".to_owned()]
    } else {
        Vec::new()
    };
    Ok(Parsed {
        format: PlanFormat::Generic,
        actions,
        figures,
        notes,
    })
}

/// The plan's stated cost: top-level figures (plain or as a `cost` object), else the sum of
/// the costs of the actions that do not delete.
fn plan_figures(
    doc: &Map<String, Value>,
    root: &Path,
    actions: &[PlannedAction],
) -> Result<Figures, PlanError> {
    let mut figures = match json::aliased(doc, cost::MONTHLY_KEYS, root)? {
        Some((key, Value::Object(object))) => cost_object(object, &root.key(key))?,
        Some((key, value)) => Figures {
            monthly: Some(json::number(value, &root.key(key))?),
            ..Figures::default()
        },
        None => Figures::default(),
    };
    let increase = json::opt_number(doc, cost::INCREASE_KEYS, root)?;
    figures.increase = merge_figure(
        figures.increase,
        increase,
        root,
        "cost.increase",
        "cost_increase",
    )?;
    let currency = json::opt_str(doc, &["currency"], root)?.map(str::to_owned);
    figures.currency = figures.currency.or(currency);
    if figures.monthly.is_none() {
        let costs: Vec<f64> = actions
            .iter()
            .filter(|a| a.verb != Verb::Delete)
            .filter_map(|a| a.monthly_cost)
            .collect();
        if !costs.is_empty() {
            figures.monthly = Some(costs.iter().sum());
        }
    }
    Ok(figures)
}

/// `{"monthly", "increase", "currency"}` (with the usual aliases) under `cost`.
fn cost_object(object: &Map<String, Value>, path: &Path) -> Result<Figures, PlanError> {
    Ok(Figures {
        monthly: json::opt_number(object, &["monthly", "total", "monthly_cost"], path)?,
        increase: json::opt_number(object, &["increase", "monthly_increase", "delta"], path)?,
        currency: json::opt_str(object, &["currency"], path)?.map(str::to_owned),
    })
}

/// One figure stated in two places: they must agree.
fn merge_figure(
    a: Option<f64>,
    b: Option<f64>,
    path: &Path,
    first: &str,
    second: &str,
) -> Result<Option<f64>, PlanError> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(PlanError::ConflictingAliases {
            path: path.to_string(),
            first: first.to_owned(),
            second: second.to_owned(),
        }),
        (x, y) => Ok(x.or(y)),
    }
}

/// An action's identifier: a string, or a whole number written as text.
fn id(object: &Map<String, Value>, path: &Path) -> Result<Option<String>, PlanError> {
    match json::aliased(object, &["id"], path)? {
        None => Ok(None),
        Some((_, Value::String(s))) => Ok(Some(s.clone())),
        Some((_, Value::Number(n))) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some((key, other)) => Err(json::wrong_type(&path.key(key), "a string", other)),
    }
}

/// An optional `before`/`after` state: an object, or `null`.
fn state<'a>(
    object: &'a Map<String, Value>,
    key: &'static str,
    path: &Path,
) -> Result<Option<&'a Map<String, Value>>, PlanError> {
    Ok(json::opt_object(object, &[key], path)?.map(|(_, o)| o))
}

/// Explicit `controls`: booleans only.
fn explicit_controls(object: &Map<String, Value>, path: &Path) -> Result<Controls, PlanError> {
    let Some((path, fields)) = json::opt_object(object, &["controls"], path)? else {
        return Ok(Controls::default());
    };
    let flag = |key: &'static str| -> Result<Option<bool>, PlanError> {
        match json::aliased(fields, &[key], &path)? {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(*b)),
            Some((_, other)) => Err(json::wrong_type(&path.key(key), "a boolean", other)),
        }
    };
    Ok(Controls {
        encryption: flag("encryption")?,
        logging: flag("logging")?,
        firewall: flag("firewall")?,
        isolation: flag("isolation")?,
    })
}

/// The facts of every attribute map the action carries, merged: tags (later wins), ingress,
/// controls (any `false` wins), the first region, quantity and names found.
fn attribute_facts(
    resource_type: &str,
    maps: &[json::ObjectAt<'_>],
) -> Result<AttributeFacts, PlanError> {
    let mut merged = AttributeFacts::default();
    for (path, map) in maps {
        let facts = facts::read(resource_type, map, path)?;
        merged.tags.extend(facts.tags);
        merged.ingress.extend(facts.ingress);
        merged.controls = controls::merge(&merged.controls, &facts.controls);
        merged.region = merged.region.or(facts.region);
        merged.quantity = merged.quantity.or(facts.quantity);
        merged.names.extend(facts.names);
    }
    Ok(merged)
}

/// The action's verb (`verb`, `action` or `operation`).
fn verb_of(object: &Map<String, Value>, path: &Path) -> Result<Verb, PlanError> {
    const KEYS: &[&str] = &["verb", "action", "operation"];
    let (key, value) =
        json::aliased(object, KEYS, path)?.ok_or_else(|| json::missing(KEYS, path))?;
    let text = value
        .as_str()
        .ok_or_else(|| json::wrong_type(&path.key(key), "a string", value))?;
    verb_from_word(text).ok_or_else(|| PlanError::UnknownVerb {
        path: path.key(key).to_string(),
        found: json::describe(value),
    })
}

/// How an action is known: its address, name and id.
struct Identity {
    address: String,
    name: String,
    id: Option<String>,
}

fn identity(
    object: &Map<String, Value>,
    resource_type: &str,
    path: &Path,
) -> Result<Identity, PlanError> {
    let id = id(object, path)?;
    let name = match (
        json::opt_str(object, &["name", "resource_name"], path)?,
        &id,
    ) {
        (Some(name), _) => name.to_owned(),
        (None, Some(id)) => id.clone(),
        (None, None) => return Err(json::missing(&["name", "resource_name"], path)),
    };
    let address = id
        .clone()
        .unwrap_or_else(|| format!("{resource_type}.{name}"));
    Ok(Identity { address, name, id })
}

/// The attribute maps an action carries: `attributes`, and `after` (`before` for a delete).
struct States<'a> {
    attributes: Option<json::ObjectAt<'a>>,
    before: Option<&'a Map<String, Value>>,
    after: Option<&'a Map<String, Value>>,
}

impl<'a> States<'a> {
    fn read(object: &'a Map<String, Value>, path: &Path) -> Result<States<'a>, PlanError> {
        Ok(States {
            attributes: json::opt_object(object, &["attributes", "properties"], path)?,
            before: state(object, "before", path)?,
            after: state(object, "after", path)?,
        })
    }

    /// The maps facts are read from, with their paths.
    fn fact_sources(&self, verb: Verb, path: &Path) -> Vec<json::ObjectAt<'a>> {
        let mut maps: Vec<json::ObjectAt<'a>> = self.attributes.iter().cloned().collect();
        let current = if verb == Verb::Delete {
            ("before", self.before)
        } else {
            ("after", self.after)
        };
        if let (key, Some(map)) = current {
            maps.push((path.key(key), map));
        }
        maps
    }

    /// `before` and `after` as recorded: `attributes` stands in for the state the verb leaves
    /// (`before` for a delete, `after` otherwise) when that is not given.
    fn values(&self, verb: Verb) -> (Value, Value) {
        let attributes = self.attributes.as_ref().map(|(_, m)| *m);
        let (before_default, after_default) = if verb == Verb::Delete {
            (attributes, None)
        } else {
            (None, attributes)
        };
        let as_value =
            |m: Option<&Map<String, Value>>| m.map_or(Value::Null, |m| Value::Object(m.clone()));
        (
            as_value(self.before.or(before_default)),
            as_value(self.after.or(after_default)),
        )
    }
}

/// The facts of an action: those of its attribute maps, plus its own `tags`, `ingress` and
/// `controls`.
fn resource_facts(
    object: &Map<String, Value>,
    resource_type: &str,
    sources: &[json::ObjectAt<'_>],
    path: &Path,
) -> Result<AttributeFacts, PlanError> {
    let mut facts = attribute_facts(resource_type, sources)?;
    if let Some((key, value)) = json::aliased(object, &["tags", "labels"], path)? {
        facts::collect_tags(value, &path.key(key), &mut facts.tags)?;
    }
    if let Some((rules_path, rules)) = json::opt_array(object, &["ingress", "ingress_rules"], path)?
    {
        facts
            .ingress
            .extend(ingress::from_rules(rules, &rules_path)?);
    }
    facts.ingress = ingress::dedup(std::mem::take(&mut facts.ingress));
    facts.controls = controls::overlay(facts.controls, &explicit_controls(object, path)?);
    Ok(facts)
}

/// Normalises one generic action.
fn action(
    item: &Value,
    path: &Path,
    defaults: &Defaults,
    context: &Context,
) -> Result<PlannedAction, PlanError> {
    let Value::Object(object) = item else {
        return Err(json::wrong_type(path, "an object (one action)", item));
    };
    let verb = verb_of(object, path)?;
    let resource_type = json::req_str(object, &["resource_type", "type", "kind"], path)?;
    let Identity { address, name, id } = identity(object, resource_type, path)?;
    let states = States::read(object, path)?;
    let facts = resource_facts(
        object,
        resource_type,
        &states.fact_sources(verb, path),
        path,
    )?;

    let declared = match json::aliased(
        object,
        &["data_classes", "data_classification", "data_class"],
        path,
    )? {
        Some((key, value)) => json::strings(value, &path.key(key))?,
        None => Vec::new(),
    };
    let quantity = match json::aliased(
        object,
        &["quantity", "count", "instances", "instance_count"],
        path,
    )? {
        Some((key, value)) => Some(json::count(value, &path.key(key))?),
        None => facts.quantity,
    };
    let region = json::opt_str(object, &["region", "location"], path)?
        .and_then(facts::normalise_region)
        .or(facts.region.clone())
        .or_else(|| defaults.region.and_then(facts::normalise_region));
    let monthly_cost = json::opt_number(
        object,
        &["monthly_cost", "cost", "estimated_monthly_cost"],
        path,
    )?;

    let mut names: Vec<&str> = vec![name.as_str()];
    names.extend(id.as_deref());
    names.extend(facts::name_tag(&facts.tags));
    names.extend(facts.names.iter().map(String::as_str));
    let environment = environment::decide(&Evidence {
        action: json::opt_str(object, &["environment", "env"], path)?.or(defaults.environment),
        tags: environment_tag_values(&facts.tags),
        names: names.clone(),
        metadata: context.metadata_environment,
        request: context.request.clone(),
    });
    let data_classes = facts::data_classes(&facts.tags, &names, &declared);

    let (before, after) = states.values(verb);
    let changed = if matches!(verb, Verb::Update | Verb::Replace) && states.before.is_some() {
        facts::changed(&before, &after, &Value::Null)
    } else {
        Vec::new()
    };
    Ok(PlannedAction {
        address,
        verb,
        resource_type: resource_type.to_owned(),
        name,
        environment,
        region,
        quantity: quantity.unwrap_or(1),
        tags: facts.tags,
        ingress: facts.ingress,
        data_classes,
        controls: facts.controls,
        monthly_cost,
        before,
        after,
        changed,
    })
}

/// Values of the environment tags (`Environment`, `env`, `stage`, any case).
pub(crate) fn environment_tag_values(
    tags: &std::collections::BTreeMap<String, String>,
) -> Vec<&str> {
    tags.iter()
        .filter(|(k, _)| environment::is_environment_tag(k))
        .map(|(_, v)| v.as_str())
        .collect()
}
