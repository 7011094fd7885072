//! The normalised view of a plan (SPEC §4.2): one [`PlannedAction`] per resource the plan
//! touches, with the facts policies and verifiers reason about already extracted — verb,
//! environment (production unless shown otherwise), region, CIDRs opened to ingress, data
//! classes, security controls, quantity and cost.
//!
//! Everything that reads a plan reads this view, never the raw JSON: the hard policies (Rego,
//! which receive it serialised as `input.plan`), the intent verifier, the decision summary and
//! execution verification. Its JSON form is therefore a contract: field names are stable and
//! documented here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the plan does to one resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// A new resource.
    Create,
    /// An in-place change.
    Update,
    /// The resource is destroyed.
    Delete,
    /// Destroyed and created again (Terraform `["delete","create"]` or `["create","delete"]`):
    /// destructive, so everything that applies to a delete applies to it.
    Replace,
    /// A data source read; changes nothing.
    Read,
    /// Listed but unchanged.
    NoOp,
}

impl Verb {
    /// Whether the resource is destroyed (delete or replace).
    pub fn destroys(self) -> bool {
        matches!(self, Verb::Delete | Verb::Replace)
    }

    /// Whether the action changes anything (not read, not no-op).
    pub fn changes(self) -> bool {
        !matches!(self, Verb::Read | Verb::NoOp)
    }

    /// The plan word: `create`, `update`, `delete`, `replace`, `read`, `no-op` (what a generic
    /// plan writes, and what [`generic::verb_from_word`] reads back).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Replace => "replace",
            Verb::Read => "read",
            Verb::NoOp => "no-op",
        }
    }

    /// The verb in a sentence about what a plan does (`leave` for a no-op).
    pub fn imperative(self) -> &'static str {
        match self {
            Verb::NoOp => "leave",
            other => other.as_str(),
        }
    }
}

/// Where an environment was learned from, strongest first.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentSource {
    /// The action itself names it (the generic plan's `environment`).
    Action,
    /// A resource tag (`Environment`, `env`, `stage`, any case).
    Tag,
    /// A token of the resource's name or address.
    Name,
    /// `metadata.environment` of the review request.
    Metadata,
    /// A token of the user's request.
    Request,
    /// Nothing said: treated as production (fail secure).
    Unknown,
}

/// The environment of one resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The word that decided it, lower case (`prod`, `nonprod-ml`, `dev`, …; `unknown`).
    pub name: String,
    /// Production, or treated as production because it could not be determined.
    pub production: bool,
    /// Where `name` came from.
    pub source: EnvironmentSource,
}

/// Ingress the resource allows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ingress {
    /// Source CIDR as written (`0.0.0.0/0`, `::/0`, `10.0.0.0/8`).
    pub cidr: String,
    /// Whether the CIDR is the whole internet (`0.0.0.0/0` or `::/0`).
    pub public: bool,
    /// First port, if the plan says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_port: Option<u16>,
    /// Last port, if the plan says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to_port: Option<u16>,
    /// Protocol (`tcp`, `-1`, …), if the plan says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol: Option<String>,
}

/// Security controls the plan describes for a resource: `Some(true)` present, `Some(false)`
/// explicitly absent or disabled, `None` the plan does not say.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// Encryption at rest.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption: Option<bool>,
    /// Access or audit logging.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logging: Option<bool>,
    /// Behind a firewall / security group.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub firewall: Option<bool>,
    /// Network isolation (private subnet, no public IP, dedicated segment).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub isolation: Option<bool>,
}

/// One resource the plan touches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlannedAction {
    /// Unique within the plan: the Terraform address (`module.net.aws_vpc.main`), or the
    /// generic action's id, or `type.name`.
    pub address: String,
    /// What happens to it.
    pub verb: Verb,
    /// Provider resource type (`aws_security_group`) or the generic plan's type.
    pub resource_type: String,
    /// The resource's name (Terraform `name`, or the `name`/`Name` attribute or tag when it
    /// is more telling; the generic plan's `name`).
    pub name: String,
    /// Its environment.
    pub environment: Environment,
    /// Region, when the plan or provider configuration says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub region: Option<String>,
    /// How many of it (Terraform `count`/`desired_capacity`-like attributes, generic
    /// `quantity`); 1 when the plan does not say.
    pub quantity: u64,
    /// Tags, keys as written.
    pub tags: BTreeMap<String, String>,
    /// Ingress rules it allows (security groups, firewall rules, NSGs).
    pub ingress: Vec<Ingress>,
    /// Data classes it holds, lower case (`pci`, `gdpr`, `pii`, `phi`), from tags, names and
    /// attributes.
    pub data_classes: BTreeSet<String>,
    /// Security controls the plan describes.
    pub controls: Controls,
    /// Estimated monthly cost of this resource, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub monthly_cost: Option<f64>,
    /// Attribute values before the change (`null` for a create), as the plan gives them.
    pub before: Value,
    /// Attribute values after the change (`null` for a delete); values known only after
    /// apply are absent.
    pub after: Value,
    /// Top-level attributes whose value changes (updates and replaces), sorted.
    pub changed: Vec<String>,
}

/// Where the plan's cost came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The plan itself (generic `cost` / per-action costs).
    Plan,
    /// The review request's metadata (`estimated_monthly_cost`, `cost_increase`).
    Metadata,
    /// An Infracost JSON breakdown passed alongside the plan.
    Infracost,
    /// Nobody said.
    None,
}

/// Estimated monthly cost of the plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Cost {
    /// Total monthly cost after the change.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub monthly: Option<f64>,
    /// Increase of the monthly cost the change causes (negative: a saving).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub monthly_increase: Option<f64>,
    /// Currency, when stated (Infracost `currency`); amounts are in it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub currency: Option<String>,
    /// Where the figures came from.
    pub source: CostSource,
}

/// The shape the plan arrived in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PlanFormat {
    /// custos's generic JSON plan.
    Generic,
    /// `terraform show -json` output.
    Terraform,
}

/// A plan, normalised.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NormalizedPlan {
    /// The shape it arrived in.
    pub format: PlanFormat,
    /// Every resource it touches, in plan order (read and no-op actions included).
    pub actions: Vec<PlannedAction>,
    /// Estimated cost.
    pub cost: Cost,
    /// Every region any action names, sorted.
    pub regions: BTreeSet<String>,
    /// What the normaliser had to decide and the reviewer should know (an empty Terraform
    /// document treated as an empty plan, a UTF-16 file decoded, …).
    pub notes: Vec<String>,
}

// The normalisers: from a generic or Terraform plan (and the metadata and Infracost breakdown
// beside it) to the view above.

pub mod controls;
pub mod cost;
mod decode;
pub mod environment;
mod error;
mod facts;
pub mod generic;
pub mod ingress;
mod json;
pub mod terraform;

pub use error::PlanError;
pub use generic::verb_from_word;
pub use ingress::is_public;

use crate::request::{Metadata, ReviewRequest};
use json::Path;

/// The text decoder and JSON readers, shared with execution verification, which reads
/// execution results the way plans are read (same encodings, same path-naming errors).
pub(crate) mod read {
    pub(crate) use super::decode::decode_text;
    pub(crate) use super::json::{
        Path, aliased, describe, kind_of, missing, opt_array, opt_object, opt_str, req_str,
        wrong_type,
    };
}

/// A plan's bytes decoded to JSON, with notes on how (a UTF-16 file decoded, a byte order
/// mark dropped).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedPlan {
    /// The plan.
    pub value: Value,
    /// What decoding had to do; empty for plain UTF-8.
    pub notes: Vec<String>,
}

/// Decodes a plan file: UTF-8 (with or without a byte order mark) or UTF-16 LE/BE (with or
/// without one), then JSON. Other encodings are refused naming the encoding (UTF-32) or the
/// offset of the first byte that is not UTF-8.
pub fn decode_plan(bytes: &[u8]) -> Result<DecodedPlan, PlanError> {
    let (value, notes) = decode::decode_json(bytes)?;
    Ok(DecodedPlan { value, notes })
}

/// Normalises a plan given as bytes (see [`decode_plan`] for the encodings read), keeping
/// decoding notes in [`NormalizedPlan::notes`].
pub fn normalize_bytes(
    plan: &[u8],
    metadata: &Metadata,
    user_request: &str,
    infracost: Option<&Value>,
) -> Result<NormalizedPlan, PlanError> {
    let decoded = decode_plan(plan)?;
    let mut normalized = normalize_value(&decoded.value, metadata, user_request, infracost)?;
    let mut notes = decoded.notes;
    notes.append(&mut normalized.notes);
    normalized.notes = notes;
    Ok(normalized)
}

/// Normalises the plan of a review request.
pub fn normalize_request(request: &ReviewRequest) -> Result<NormalizedPlan, PlanError> {
    normalize_value(
        &request.plan,
        &request.metadata,
        &request.user_request,
        request.infracost.as_ref(),
    )
}

/// Normalises a plan: a generic plan (an object with `actions`, shape in [`generic`]) or a
/// Terraform plan (`terraform show -json` output, see [`terraform`]), told apart by their keys.
/// `metadata.environment` and `user_request` are evidence of each resource's environment when
/// the resource itself says nothing ([`environment`]); cost comes from the Infracost
/// breakdown, else the plan, else the metadata ([`cost`]). What is read for ingress and
/// security controls: [`ingress`], [`controls`].
pub fn normalize_value(
    plan: &Value,
    metadata: &Metadata,
    user_request: &str,
    infracost: Option<&Value>,
) -> Result<NormalizedPlan, PlanError> {
    let Value::Object(doc) = plan else {
        return Err(json::wrong_type(
            &Path::root(),
            "an object (a generic plan or a Terraform plan)",
            plan,
        ));
    };
    let context = Context {
        metadata_environment: metadata.environment.as_deref(),
        request: environment::read_text(user_request),
    };
    let parsed = match detect(doc)? {
        PlanFormat::Generic => generic::normalize(doc, &context)?,
        PlanFormat::Terraform => terraform::normalize(doc, &context)?,
    };
    let list = match parsed.format {
        PlanFormat::Generic => "actions",
        PlanFormat::Terraform => "resource_changes",
    };
    check_unique(&parsed.actions, list)?;
    let infracost = infracost.map(cost::from_infracost).transpose()?;
    let metadata_figures = cost::from_metadata(metadata)?;
    let mut actions = parsed.actions;
    if let Some(breakdown) = &infracost {
        cost::apply_resource_costs(&mut actions, &breakdown.resources);
    }
    let (cost, cost_notes) = cost::decide(
        infracost.as_ref().map(|i| &i.figures),
        &parsed.figures,
        &metadata_figures,
    );
    let regions = actions.iter().filter_map(|a| a.region.clone()).collect();
    let mut notes = parsed.notes;
    notes.extend(cost_notes);
    Ok(NormalizedPlan {
        format: parsed.format,
        actions,
        cost,
        regions,
        notes,
    })
}

/// What normalising each action needs from outside the plan.
pub(crate) struct Context<'a> {
    /// `metadata.environment`.
    pub metadata_environment: Option<&'a str>,
    /// What the user's request says about the environment (read once per plan).
    pub request: Option<environment::Reading>,
}

/// A plan as one normaliser read it, before cost is decided.
pub(crate) struct Parsed {
    pub format: PlanFormat,
    pub actions: Vec<PlannedAction>,
    /// Cost figures the plan itself states.
    pub figures: cost::Figures,
    pub notes: Vec<String>,
}

/// Which shape `doc` is: `actions` makes it generic; `resource_changes`, `format_version`,
/// `terraform_version`, `planned_values`, `configuration`, `prior_state` or `values` make it
/// Terraform.
fn detect(doc: &serde_json::Map<String, Value>) -> Result<PlanFormat, PlanError> {
    const TERRAFORM_KEYS: &[&str] = &[
        "resource_changes",
        "format_version",
        "terraform_version",
        "planned_values",
        "configuration",
        "prior_state",
        "values",
    ];
    let has = |key: &str| doc.get(key).is_some_and(|v| !v.is_null());
    match (doc.contains_key("actions"), has("resource_changes")) {
        (true, true) => Err(PlanError::AmbiguousFormat),
        (true, false) => Ok(PlanFormat::Generic),
        (false, _) if TERRAFORM_KEYS.iter().any(|k| has(k)) => Ok(PlanFormat::Terraform),
        (false, _) => {
            let keys: Vec<String> = doc.keys().take(8).map(|k| format!("`{k}`")).collect();
            let keys = if keys.is_empty() {
                "none (the object is empty)".to_owned()
            } else {
                keys.join(", ")
            };
            Err(PlanError::UnrecognisedFormat { keys })
        }
    }
}

/// Every action has its own address.
fn check_unique(actions: &[PlannedAction], list: &str) -> Result<(), PlanError> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, action) in actions.iter().enumerate() {
        if let Some(first) = seen.insert(&action.address, i) {
            return Err(PlanError::DuplicateAddress {
                path: Path::named(list).index(i).to_string(),
                address: action.address.clone(),
                first: Path::named(list).index(first).to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
