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
