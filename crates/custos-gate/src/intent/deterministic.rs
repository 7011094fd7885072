//! The built-in deterministic intent verifier (SPEC §4.3): a pure function from the user's
//! request, the review metadata and the normalised plan to an [`IntentAssessment`].
//!
//! # Algorithm
//! The request is read into intents ([`read_request`]): verb, resource kinds (with
//! quantities), names, environment. Only the plan's *changing* actions are compared (read
//! and no-op actions are ignored).
//!
//! **Every action must be explained.** First the safety rules, which no intent explains
//! implicitly (an action they flag is extra, with a safety concern):
//! - it opens ingress from the whole internet (`ingress[].public`) on a production resource
//!   (production includes "could not be determined"), and the request never mentions public
//!   or internet access;
//! - it holds regulated data (`pci`, `phi`, `hipaa`) the request never mentions ("payments",
//!   "cardholder", "patients", … count as mentions);
//! - the request (and the metadata) name no environment, and the plan's own evidence puts
//!   some actions in production and others not: the production ones are not explained.
//!
//! Otherwise an action is explained by the first intent for which all of these hold:
//! - **verb**: create explains creates; update explains updates and creates (scaling out
//!   adds resources); delete explains deletes; replace explains any change. A replace is
//!   destructive and is never explained by an update. Adding or removing a *part* (a
//!   firewall rule or port, an IAM permission or policy: a firewall or IAM kind without a
//!   countable unit) also explains an update of its family, since rules and permissions are
//!   often attributes of an existing resource; and adding to or removing from something the
//!   request names as context ("add a rule *to the API security group*") explains an update
//!   of that context's family, as a companion.
//! - **kind**: the action's family ([`resource_kind`]) is one the intent's kinds are
//!   [`realised_by`] (a *primary* match: "API" is realised by its autoscaling group), or a
//!   [`companions`] family of one of them (a new segment brings its firewall rules). An
//!   intent with a verb and no kind ("scale it up") explains any family, but makes the
//!   request vague. When the intent names resources (`dev-vpc-1`), actions of the named
//!   unit must carry one of the names (in name, address or a tag value).
//! - **environment**: the intent's environment (its own words, else the request's, else
//!   `metadata.environment`) agrees with the action's: both production or both not, and
//!   two specific non-production environments (dev, staging, test, sandbox) must be the
//!   same. Actions whose environment was itself taken from the request are not checked
//!   against it. A disagreement is a *wrong environment*, and when the action is production
//!   also a safety concern.
//!
//! With no verb anywhere in the request, an action whose family the request names is
//! *plausible* (not extra, half weight); others are extra.
//!
//! **Every intent must be matched**: each named kind by at least one primary action, each
//! name by a changing action with a compatible verb, each quantity by the sum of the
//! `quantity` of the primary actions of the kind's unit (`three VPCs` counts `vpc` units).
//! Fewer than asked is a missing action; more is a quantity problem (and a safety concern
//! for deletes and replaces).
//!
//! # Match
//! - `mismatch`: a wrong environment; or the plan changes something and nothing of it is
//!   explained; or the request asks for something and nothing of it is matched (an empty
//!   plan, a delete where a create was asked).
//! - `exact`: nothing extra, nothing missing, no safety concern, no quantity problem, and
//!   the request is clear (it has a verb, and every intent names a kind or a resource).
//! - `partial`: everything else.
//!
//! # Confidence
//! `confidence = E × C × clarity × penalties`, clamped to `[0, 1]` and rounded to 4 places:
//! - `E` (explained): the mean weight of the changing actions — 1 for a primary match
//!   (including an action covered by a whole-environment request such as "clean up the dev
//!   environments"),
//!   0.95 for a companion or an intent without a kind, 0.5 for a plausible action (request
//!   without a verb), 0 for an extra action; 1 when the plan changes nothing.
//! - `C` (covered): matched requirements (kinds, names, quantities of intents with a verb)
//!   over all of them; 1 when there are none.
//! - `clarity`: 0.3 when the request has no verb; otherwise 0.6 when an intent names no
//!   kind or resource; otherwise 1.
//! - `penalties`: × 0.5 for a wrong environment, × 0.8 for a quantity problem, × 0.75 when
//!   there is any safety concern.
//!
//! So an exact match scores at least 0.95 (all companions) and usually 1.

use std::collections::BTreeSet;

use super::model::{ActionRef, IntentAssessment, Match, MissingAction, VerifierId};
use super::reading::{Intent, KindMention, RequestReading, read_request};
use super::vocabulary::{Family, companions, realised_by, resource_kind};
use crate::plan::environment::{self, Reading};
use crate::plan::{Environment, EnvironmentSource, NormalizedPlan, PlannedAction, Verb};
use crate::request::Metadata;

/// The deterministic verifier's name.
pub const NAME: &str = "deterministic";

/// The version of its rules; recorded with every assessment. Bump it when a rule changes.
pub const VERSION: &str = "1";

/// Regulated data classes an action may not touch unless the request mentions them.
const SENSITIVE_CLASSES: &[&str] = &["pci", "phi", "hipaa"];

/// Weights of an explained action in `E`.
const PRIMARY: f64 = 1.0;
const COMPANION: f64 = 0.95;
const PLAUSIBLE: f64 = 0.5;

/// The deterministic verifier's identity, `deterministic/1`.
pub fn verifier_id() -> VerifierId {
    VerifierId::new(NAME, VERSION)
}

/// How an action is explained.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    /// By an intent's kind (intent index, kind index).
    Primary(usize, usize),
    /// By an intent with a verb and no kind.
    Unnamed(usize),
    /// As a companion of an intent's kind.
    Companion(usize),
    /// By a request without a verb that names its family.
    Plausible,
}

impl Role {
    fn weight(self) -> f64 {
        match self {
            Role::Primary(..) => PRIMARY,
            Role::Unnamed(_) | Role::Companion(_) => COMPANION,
            Role::Plausible => PLAUSIBLE,
        }
    }
}

/// How an intent could explain an action, verb and environment aside.
struct Candidate {
    role: Role,
    /// An update of it amends what was asked (adding or removing a part, or adding to or
    /// removing from the context), so create and delete intents explain the update.
    amends: bool,
    /// It is only the request's context: only an update of it is explained.
    amend_only: bool,
}

impl Candidate {
    fn new(role: Role, amends: bool) -> Self {
        Candidate {
            role,
            amends,
            amend_only: false,
        }
    }
}

/// Why an intent did not explain an action, most telling last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Miss {
    Kind,
    Name(String),
    Verb(String),
    Environment(String),
}

/// Assesses a plan against the request that asked for it. Pure: same input, same answer.
pub fn assess(user_request: &str, metadata: &Metadata, plan: &NormalizedPlan) -> IntentAssessment {
    let reading = read_request(user_request);
    let metadata_environment = metadata
        .environment
        .as_deref()
        .and_then(environment::read_label);
    Assessor {
        reading: &reading,
        metadata_environment,
    }
    .run(plan)
}

struct Assessor<'a> {
    reading: &'a RequestReading,
    metadata_environment: Option<Reading>,
}

impl Assessor<'_> {
    /// The environment an intent asks for.
    fn environment_of(&self, intent: &Intent) -> Option<Reading> {
        intent
            .environment
            .clone()
            .or_else(|| self.reading.environment.clone())
            .or_else(|| self.metadata_environment.clone())
    }

    fn run(&self, plan: &NormalizedPlan) -> IntentAssessment {
        let intents = &self.reading.intents;
        let actionable = intents.iter().any(|i| i.verb.is_some());
        let changing: Vec<&PlannedAction> =
            plan.actions.iter().filter(|a| a.verb.changes()).collect();
        let mixed = self.mixed_environment_production(&changing);

        let mut extra = Vec::new();
        let mut concerns: Vec<String> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let mut roles: Vec<Option<Role>> = Vec::with_capacity(changing.len());
        let mut wrong_environment = false;

        for action in &changing {
            let mut flags = self.safety_flags(action);
            if mixed
                .as_ref()
                .is_some_and(|(_, prod)| prod.contains(&action.address))
            {
                let other = mixed.as_ref().map(|(word, _)| word.as_str()).unwrap_or("");
                flags.push(format!(
                    "it is in {} while the rest of the plan is in `{other}`, and the request names no environment",
                    describe_environment(&action.environment)
                ));
            }
            if !flags.is_empty() {
                extra.push(ActionRef::new(action, flags.join("; ")));
                concerns.extend(flags.iter().map(|f| format!("{}: {f}", action.address)));
                roles.push(None);
                continue;
            }
            if !actionable {
                let plausible = intents.iter().flat_map(|i| &i.kinds).any(|k| {
                    realised_by(k.family).contains(&resource_kind(&action.resource_type).family)
                });
                if plausible {
                    roles.push(Some(Role::Plausible));
                } else {
                    extra.push(ActionRef::new(
                        action,
                        "the request asks for no action on a resource of this kind",
                    ));
                    roles.push(None);
                }
                continue;
            }
            match self.explain(action) {
                Ok(role) => roles.push(Some(role)),
                Err(miss) => {
                    let reason = match &miss {
                        Miss::Kind => format!(
                            "the request does not ask for {} resources (`{}`)",
                            resource_kind(&action.resource_type).family.as_str(),
                            action.resource_type
                        ),
                        Miss::Name(reason) | Miss::Verb(reason) | Miss::Environment(reason) => {
                            reason.clone()
                        }
                    };
                    if let Miss::Environment(_) = miss {
                        wrong_environment = true;
                        if action.environment.production {
                            concerns.push(format!("{}: {reason}", action.address));
                        }
                    }
                    extra.push(ActionRef::new(action, reason));
                    roles.push(None);
                }
            }
        }

        // Coverage of each intent.
        let mut requirements = 0usize;
        let mut met = 0usize;
        let mut missing = Vec::new();
        let mut quantity_problem = false;
        let mut vague = !actionable;
        for (index, intent) in intents.iter().enumerate() {
            let Some(verb) = intent.verb else { continue };
            let place = self
                .environment_of(intent)
                .map(|e| format!(" in {}", e.word))
                .unwrap_or_default();
            if intent.kinds.is_empty() && intent.names.is_empty() {
                vague = true;
                requirements += 1;
                if roles.contains(&Some(Role::Unnamed(index))) {
                    met += 1;
                } else {
                    missing.push(MissingAction {
                        description: format!("{} (no resource named){place}", verb.imperative()),
                        verb: Some(verb),
                        family: None,
                    });
                }
                continue;
            }
            for (k, kind) in intent.kinds.iter().enumerate() {
                let primaries: Vec<&PlannedAction> = changing
                    .iter()
                    .zip(&roles)
                    .filter(|(_, role)| **role == Some(Role::Primary(index, k)))
                    .map(|(a, _)| *a)
                    .collect();
                requirements += 1;
                if primaries.is_empty() {
                    missing.push(MissingAction {
                        description: format!("{} {}{place}", verb.imperative(), kind.word),
                        verb: Some(verb),
                        family: Some(kind.family),
                    });
                    continue;
                }
                met += 1;
                if let (Some(asked), Some(unit)) = (kind.quantity, kind.unit) {
                    requirements += 1;
                    let counted: u64 = primaries
                        .iter()
                        .filter(|a| resource_kind(&a.resource_type).unit == Some(unit))
                        .map(|a| a.quantity)
                        .fold(0u64, u64::saturating_add);
                    match counted.cmp(&asked) {
                        std::cmp::Ordering::Equal => met += 1,
                        std::cmp::Ordering::Less => {
                            quantity_problem = true;
                            missing.push(MissingAction {
                                description: format!(
                                    "{} {} more {}{place}: asked for {asked}, the plan has {counted}",
                                    verb.imperative(),
                                    asked - counted,
                                    kind.word
                                ),
                                verb: Some(verb),
                                family: Some(kind.family),
                            });
                        }
                        std::cmp::Ordering::Greater => {
                            quantity_problem = true;
                            let note = format!(
                                "asked to {} {asked} {}, the plan does it to {counted}",
                                verb.imperative(),
                                kind.word
                            );
                            if verb.destroys() {
                                concerns.push(format!("more destroyed than asked: {note}"));
                            }
                            notes.push(note);
                        }
                    }
                }
            }
            for name in &intent.names {
                requirements += 1;
                let found = changing
                    .iter()
                    .any(|a| verb_explains(verb, a.verb) && carries_name(a, name));
                if found {
                    met += 1;
                } else {
                    missing.push(MissingAction {
                        description: format!(
                            "{} `{name}`: the plan changes no resource of that name",
                            verb.imperative()
                        ),
                        verb: Some(verb),
                        family: None,
                    });
                }
            }
        }
        if !actionable {
            notes.push(if intents.is_empty() {
                "the request names no action and no resource".to_owned()
            } else {
                "the request names no action verb".to_owned()
            });
        } else if vague {
            notes.push("the request names an action but not what it applies to".to_owned());
        }

        let explained_weight: f64 = roles.iter().flatten().map(|r| r.weight()).sum();
        let explained_count = roles.iter().flatten().count();
        let e = if changing.is_empty() {
            1.0
        } else {
            explained_weight / changing.len() as f64
        };
        let c = if requirements == 0 {
            1.0
        } else {
            met as f64 / requirements as f64
        };
        dedup(&mut concerns);
        dedup(&mut notes);
        let clarity = if !actionable {
            0.3
        } else if vague {
            0.6
        } else {
            1.0
        };
        let mut penalties = 1.0;
        if wrong_environment {
            penalties *= 0.5;
        }
        if quantity_problem {
            penalties *= 0.8;
        }
        if !concerns.is_empty() {
            penalties *= 0.75;
        }
        let confidence = round4((e * c * clarity * penalties).clamp(0.0, 1.0));

        let nothing_explained = !changing.is_empty() && explained_count == 0 && actionable;
        let nothing_met = actionable && requirements > 0 && met == 0;
        let match_ = if wrong_environment || nothing_explained || nothing_met {
            Match::Mismatch
        } else if extra.is_empty()
            && missing.is_empty()
            && concerns.is_empty()
            && !quantity_problem
            && !vague
        {
            Match::Exact
        } else {
            Match::Partial
        };
        IntentAssessment {
            match_,
            confidence,
            extra_actions: extra,
            missing_actions: missing,
            safety_concerns: concerns,
            notes,
            verifier: verifier_id(),
            llm_verifier: None,
        }
        .normalised()
    }

    /// Safety rules no intent explains implicitly (see the module docs).
    fn safety_flags(&self, action: &PlannedAction) -> Vec<String> {
        let mut flags = Vec::new();
        if action.environment.production && !self.reading.public_access {
            let public: Vec<String> = action
                .ingress
                .iter()
                .filter(|i| i.public)
                .map(|i| {
                    let ports = match (i.from_port, i.to_port) {
                        (Some(a), Some(b)) if a == b => format!(" port {a}"),
                        (Some(a), Some(b)) => format!(" ports {a}-{b}"),
                        (Some(a), None) | (None, Some(a)) => format!(" port {a}"),
                        (None, None) => String::new(),
                    };
                    format!("{}{ports}", i.cidr)
                })
                .collect();
            if !public.is_empty() {
                flags.push(format!(
                    "it opens {} to the internet on a resource in {}, and the request does not ask for public access",
                    public.join(", "),
                    describe_environment(&action.environment)
                ));
            }
        }
        let unmentioned: Vec<&str> = action
            .data_classes
            .iter()
            .map(String::as_str)
            .filter(|c| SENSITIVE_CLASSES.contains(c) && !self.reading.data_classes.contains(*c))
            .collect();
        if !unmentioned.is_empty() {
            flags.push(format!(
                "it holds {} data, which the request never mentions",
                unmentioned.join(", ")
            ));
        }
        flags
    }

    /// When nobody names an environment and the plan's own evidence mixes production and
    /// non-production: the first non-production word and the production addresses.
    fn mixed_environment_production(
        &self,
        changing: &[&PlannedAction],
    ) -> Option<(String, BTreeSet<String>)> {
        let stated = self.reading.environment.is_some()
            || self.metadata_environment.is_some()
            || self.reading.intents.iter().any(|i| i.environment.is_some());
        if stated {
            return None;
        }
        let own = |a: &&&PlannedAction| {
            matches!(
                a.environment.source,
                EnvironmentSource::Action | EnvironmentSource::Tag | EnvironmentSource::Name
            )
        };
        let other = changing
            .iter()
            .filter(own)
            .find(|a| !a.environment.production)?
            .environment
            .name
            .clone();
        let production: BTreeSet<String> = changing
            .iter()
            .filter(own)
            .filter(|a| a.environment.production)
            .map(|a| a.address.clone())
            .collect();
        (!production.is_empty()).then_some((other, production))
    }

    /// The first intent that explains `action`, or the most telling reason none does.
    fn explain(&self, action: &PlannedAction) -> Result<Role, Miss> {
        let kind = resource_kind(&action.resource_type);
        let mut best = Miss::Kind;
        for (index, intent) in self.reading.intents.iter().enumerate() {
            let Some(verb) = intent.verb else { continue };
            let candidate = match self.role_in(index, intent, action, kind.family, kind.unit) {
                Ok(candidate) => candidate,
                Err(miss) => {
                    best = best.max(miss);
                    continue;
                }
            };
            let role = candidate.role;
            let amending = candidate.amends
                && matches!(verb, Verb::Create | Verb::Delete | Verb::Update)
                && action.verb == Verb::Update;
            if candidate.amend_only && !amending {
                continue;
            }
            if !verb_explains(verb, action.verb) && !amending {
                best = best.max(Miss::Verb(format!(
                    "the plan {} it; the request asks to {} {}",
                    verb_past(action.verb),
                    verb.imperative(),
                    kinds_words(intent)
                )));
                continue;
            }
            if let Some(asked) = self.environment_of(intent)
                && action.environment.source != EnvironmentSource::Request
                && environments_differ(&asked, &action.environment)
            {
                best = best.max(Miss::Environment(format!(
                    "it is in {}; the request is about {}",
                    describe_environment(&action.environment),
                    asked.word
                )));
                continue;
            }
            return Ok(role);
        }
        Err(best)
    }

    /// How `intent` would explain an action of `family`/`unit`, verb and environment aside,
    /// and whether an update of it amends what was asked (a part, or the context).
    fn role_in(
        &self,
        index: usize,
        intent: &Intent,
        action: &PlannedAction,
        family: Family,
        unit: Option<&'static str>,
    ) -> Result<Candidate, Miss> {
        let in_context = intent
            .context
            .iter()
            .any(|k| k.family != Family::Any && realised_by(k.family).contains(&family));
        if intent.kinds.is_empty() {
            if intent.names.is_empty() || intent.names.iter().any(|n| carries_name(action, n)) {
                return Ok(Candidate::new(Role::Unnamed(index), in_context));
            }
            return Err(Miss::Name(format!(
                "the request names {}, not this resource",
                names_list(intent)
            )));
        }
        let mut name_miss = None;
        for (k, mention) in intent.kinds.iter().enumerate() {
            if !realised_by(mention.family).contains(&family) {
                continue;
            }
            if restricted_by_names(intent, mention, unit)
                && !intent.names.iter().any(|n| carries_name(action, n))
            {
                name_miss = Some(Miss::Name(format!(
                    "the request names {}, not this {}",
                    names_list(intent),
                    unit.unwrap_or("resource")
                )));
                continue;
            }
            return Ok(Candidate::new(
                Role::Primary(index, k),
                is_part(mention) || in_context,
            ));
        }
        if let Some(miss) = name_miss {
            return Err(miss);
        }
        if intent
            .kinds
            .iter()
            .any(|k| companions(k.family).contains(&family))
        {
            return Ok(Candidate::new(Role::Companion(index), in_context));
        }
        if in_context {
            return Ok(Candidate {
                role: Role::Companion(index),
                amends: true,
                amend_only: true,
            });
        }
        Err(Miss::Kind)
    }
}

/// Whether an intent's names restrict which actions of `mention`'s kind it explains: only
/// when the intent names resources and the action is of the unit the mention counts.
fn restricted_by_names(intent: &Intent, mention: &KindMention, unit: Option<&str>) -> bool {
    !intent.names.is_empty() && mention.unit.is_some() && mention.unit == unit
}

/// Whether a mention names a part of a resource rather than a resource: a firewall rule or
/// port, an IAM permission or policy (no countable unit).
fn is_part(mention: &KindMention) -> bool {
    matches!(mention.family, Family::Firewall | Family::Iam) && mention.unit.is_none()
}

/// Whether an intent verb explains a planned verb.
fn verb_explains(intent: Verb, planned: Verb) -> bool {
    match intent {
        Verb::Create => planned == Verb::Create,
        Verb::Update => matches!(planned, Verb::Update | Verb::Create),
        Verb::Delete => planned == Verb::Delete,
        Verb::Replace => matches!(
            planned,
            Verb::Replace | Verb::Create | Verb::Delete | Verb::Update
        ),
        Verb::Read | Verb::NoOp => false,
    }
}

/// Whether the action carries `name` (lower case) in its name, address or a tag value.
fn carries_name(action: &PlannedAction, name: &str) -> bool {
    let has = |text: &str| text.to_lowercase().contains(name);
    has(&action.name) || has(&action.address) || action.tags.values().any(|v| has(v))
}

/// The canonical class of a specific non-production environment word.
fn environment_class(word: &str) -> Option<&'static str> {
    let stem = word.trim_end_matches(|c: char| c.is_ascii_digit());
    Some(match stem {
        "dev" | "devel" | "develop" | "development" => "dev",
        "staging" | "stage" | "stg" => "staging",
        "test" | "testing" | "qa" | "uat" => "test",
        "sandbox" | "sbx" => "sandbox",
        _ => return None,
    })
}

/// Whether the environment asked for and the action's disagree.
fn environments_differ(asked: &Reading, actual: &Environment) -> bool {
    if asked.production != actual.production {
        return true;
    }
    if asked.production {
        return false;
    }
    matches!(
        (environment_class(&asked.word), environment_class(&actual.name)),
        (Some(a), Some(b)) if a != b
    )
}

fn describe_environment(environment: &Environment) -> String {
    if environment.source == EnvironmentSource::Unknown {
        "an environment that cannot be determined (treated as production)".to_owned()
    } else if environment.production {
        format!("production (`{}`)", environment.name)
    } else {
        format!("`{}`", environment.name)
    }
}

fn verb_past(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "creates",
        Verb::Update => "updates",
        Verb::Delete => "deletes",
        Verb::Replace => "replaces (destroys and recreates)",
        Verb::Read => "reads",
        Verb::NoOp => "leaves",
    }
}

fn kinds_words(intent: &Intent) -> String {
    if intent.kinds.is_empty() {
        return names_list(intent);
    }
    let words: Vec<&str> = intent.kinds.iter().map(|k| k.word.as_str()).collect();
    words.join(", ")
}

fn names_list(intent: &Intent) -> String {
    let names: Vec<String> = intent.names.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
