//! The estimated monthly cost of a plan, and where it came from.
//!
//! Three sources may state it, and the first that states anything is used, whole (figures
//! from different sources are never mixed):
//! 1. an **Infracost** breakdown passed beside the plan (`infracost breakdown --format json`):
//!    `totalMonthlyCost`, `diffTotalMonthlyCost` (else `totalMonthlyCost` −
//!    `pastTotalMonthlyCost`), `currency`. It is a pricing tool's estimate rather than the
//!    orchestrator's own claim, so it comes first.
//! 2. the **plan** (generic shape only): `cost` / `estimated_monthly_cost` / `monthly_cost`,
//!    `cost_increase` / `monthly_cost_increase` / `cost_delta`, `currency`, or else the sum of
//!    the actions' own costs (deleted resources left out).
//! 3. the request's **metadata**: `estimated_monthly_cost` / `monthly_cost` / `cost`,
//!    `cost_increase` / `cost_delta` / `monthly_cost_increase`, `currency`.
//!
//! A lower source whose figures disagree with the chosen ones is named in a note, so a
//! reviewer sees the disagreement. Infracost's per-resource `monthlyCost` (its `name` is the
//! Terraform address) becomes the matching action's `monthly_cost`. Amounts may be numbers or
//! strings holding numbers (Infracost writes strings); anything else is an error naming the
//! field.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::json::{self, Path};
use super::{Cost, CostSource, PlanError, PlannedAction};
use crate::request::Metadata;

/// Monthly total and increase as one source states them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Figures {
    /// Total monthly cost after the change.
    pub monthly: Option<f64>,
    /// Increase of the monthly cost.
    pub increase: Option<f64>,
    /// Currency of the amounts.
    pub currency: Option<String>,
}

impl Figures {
    /// Whether the source states a total or an increase.
    pub(crate) fn states_anything(&self) -> bool {
        self.monthly.is_some() || self.increase.is_some()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.monthly {
            parts.push(format!("a monthly cost of {m}"));
        }
        if let Some(i) = self.increase {
            parts.push(format!("an increase of {i}"));
        }
        parts.join(" and ")
    }
}

/// Keys of a monthly total, in plans and metadata.
pub(crate) const MONTHLY_KEYS: &[&str] = &["estimated_monthly_cost", "monthly_cost", "cost"];
/// Keys of a monthly increase, in plans and metadata.
pub(crate) const INCREASE_KEYS: &[&str] = &["cost_increase", "monthly_cost_increase", "cost_delta"];

/// The figures a plan or metadata object states at its top level (at `path`).
pub(crate) fn stated(object: &Map<String, Value>, path: &Path) -> Result<Figures, PlanError> {
    Ok(Figures {
        monthly: json::opt_number(object, MONTHLY_KEYS, path)?,
        increase: json::opt_number(object, INCREASE_KEYS, path)?,
        currency: json::opt_str(object, &["currency"], path)?.map(str::to_owned),
    })
}

/// The figures the request's metadata states (its free fields).
pub(crate) fn from_metadata(metadata: &Metadata) -> Result<Figures, PlanError> {
    stated(&metadata.extra, &Path::named("metadata"))
}

/// What an Infracost breakdown says: plan figures and per-resource monthly costs.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Infracost {
    /// Plan totals.
    pub figures: Figures,
    /// Monthly cost by Terraform address.
    pub resources: BTreeMap<String, f64>,
}

/// Reads an Infracost JSON breakdown.
pub(crate) fn from_infracost(value: &Value) -> Result<Infracost, PlanError> {
    let path = Path::named("infracost");
    let Value::Object(doc) = value else {
        return Err(json::wrong_type(
            &path,
            "an object (an Infracost JSON breakdown)",
            value,
        ));
    };
    let total = json::opt_number(doc, &["totalMonthlyCost"], &path)?;
    let diff = json::opt_number(doc, &["diffTotalMonthlyCost"], &path)?;
    let past = json::opt_number(doc, &["pastTotalMonthlyCost"], &path)?;
    let increase = diff.or_else(|| Some(total? - past?));
    let mut resources = BTreeMap::new();
    if let Some((projects_path, projects)) = json::opt_array(doc, &["projects"], &path)? {
        for (i, project) in projects.iter().enumerate() {
            project_resources(project, &projects_path.index(i), &mut resources)?;
        }
    }
    Ok(Infracost {
        figures: Figures {
            monthly: total,
            increase,
            currency: json::opt_str(doc, &["currency"], &path)?.map(str::to_owned),
        },
        resources,
    })
}

/// Adds `projects[i].breakdown.resources[]` costs (the first project naming an address wins).
fn project_resources(
    project: &Value,
    path: &Path,
    out: &mut BTreeMap<String, f64>,
) -> Result<(), PlanError> {
    let Value::Object(project) = project else {
        return Err(json::wrong_type(path, "an object", project));
    };
    let Some((breakdown_path, breakdown)) = json::opt_object(project, &["breakdown"], path)? else {
        return Ok(());
    };
    let Some((resources_path, resources)) =
        json::opt_array(breakdown, &["resources"], &breakdown_path)?
    else {
        return Ok(());
    };
    for (i, resource) in resources.iter().enumerate() {
        let resource_path = resources_path.index(i);
        let Value::Object(resource) = resource else {
            return Err(json::wrong_type(&resource_path, "an object", resource));
        };
        let name = json::req_str(resource, &["name"], &resource_path)?;
        if let Some(cost) = json::opt_number(resource, &["monthlyCost"], &resource_path)? {
            out.entry(name.to_owned()).or_insert(cost);
        }
    }
    Ok(())
}

/// The plan's cost from the figures of each source (module docs), with notes on figures set
/// aside.
pub(crate) fn decide(
    infracost: Option<&Figures>,
    plan: &Figures,
    metadata: &Figures,
) -> (Cost, Vec<String>) {
    let sources = [
        (CostSource::Infracost, infracost, "the Infracost breakdown"),
        (CostSource::Plan, Some(plan), "the plan"),
        (CostSource::Metadata, Some(metadata), "the request metadata"),
    ];
    let chosen = sources.iter().find_map(|(source, figures, name)| {
        figures
            .filter(|f| f.states_anything())
            .map(|f| (*source, f, *name))
    });
    let Some((source, figures, chosen_name)) = chosen else {
        let cost = Cost {
            monthly: None,
            monthly_increase: None,
            currency: None,
            source: CostSource::None,
        };
        return (cost, Vec::new());
    };
    let notes = sources
        .iter()
        .filter(|(other, _, _)| *other != source)
        .filter_map(|(_, figures_of, name)| {
            figures_of
                .filter(|f| f.states_anything() && disagrees(f, figures))
                .map(|f| {
                    format!(
                        "{name} gives {}, set aside: {chosen_name} takes precedence",
                        f.describe()
                    )
                })
        })
        .collect();
    let cost = Cost {
        monthly: figures.monthly,
        monthly_increase: figures.increase,
        currency: figures.currency.clone(),
        source,
    };
    (cost, notes)
}

/// Whether `other` states a figure differently from `chosen`.
fn disagrees(other: &Figures, chosen: &Figures) -> bool {
    let differs = |a: Option<f64>, b: Option<f64>| a.is_some() && a != b;
    differs(other.monthly, chosen.monthly) || differs(other.increase, chosen.increase)
}

/// Sets each action's monthly cost from Infracost's per-resource costs, where it has one.
pub(crate) fn apply_resource_costs(actions: &mut [PlannedAction], costs: &BTreeMap<String, f64>) {
    for action in actions {
        if let Some(cost) = costs.get(&action.address) {
            action.monthly_cost = Some(*cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn figures(monthly: Option<f64>, increase: Option<f64>) -> Figures {
        Figures {
            monthly,
            increase,
            currency: None,
        }
    }

    /// Figures of each source as `(monthly, increase)`, and the expected outcome.
    type Stated = (Option<f64>, Option<f64>);

    fn check(
        infracost: Option<Stated>,
        plan: Stated,
        metadata: Stated,
        expected: (Option<f64>, Option<f64>, CostSource),
        notes: usize,
    ) {
        let infracost = infracost.map(|(m, i)| figures(m, i));
        let (cost, got_notes) = decide(
            infracost.as_ref(),
            &figures(plan.0, plan.1),
            &figures(metadata.0, metadata.1),
        );
        assert_eq!(
            (cost.monthly, cost.monthly_increase, cost.source),
            expected,
            "{infracost:?} {plan:?} {metadata:?}"
        );
        assert_eq!(got_notes.len(), notes, "{got_notes:?}");
    }

    #[test]
    fn precedence_table() {
        use CostSource::{Infracost, Metadata, Plan};
        let none = (None, None);
        check(None, none, none, (None, None, CostSource::None), 0);
        check(
            None,
            none,
            (Some(5.0), None),
            (Some(5.0), None, Metadata),
            0,
        );
        check(
            None,
            (Some(902.0), None),
            (Some(5.0), None),
            (Some(902.0), None, Plan),
            1,
        );
        let increase = (None, Some(2850.0));
        check(None, increase, increase, (None, Some(2850.0), Plan), 0);
        let infracost = Some((Some(902.5), Some(902.5)));
        let expected = (Some(902.5), Some(902.5), Infracost);
        check(infracost, (Some(902.0), None), none, expected, 1);
        check(
            Some(none),
            (Some(10.0), None),
            none,
            (Some(10.0), None, Plan),
            0,
        );
        let saving = Some((None, Some(-40.0)));
        check(
            saving,
            none,
            (None, Some(3.0)),
            (None, Some(-40.0), Infracost),
            1,
        );
    }

    #[test]
    fn infracost_breakdown_with_string_amounts() {
        let doc = json!({
            "version": "0.2",
            "currency": "USD",
            "projects": [{"name": "p", "breakdown": {"resources": [
                {"name": "aws_instance.gpu[0]", "monthlyCost": "451.25"},
                {"name": "aws_instance.gpu[1]", "monthlyCost": 451.25},
                {"name": "aws_s3_bucket.free", "monthlyCost": null}
            ], "totalMonthlyCost": "902.5"}}],
            "totalMonthlyCost": "902.5",
            "pastTotalMonthlyCost": "0",
            "diffTotalMonthlyCost": null
        });
        let got = from_infracost(&doc).unwrap_or_default();
        assert_eq!(got.figures.monthly, Some(902.5));
        assert_eq!(got.figures.increase, Some(902.5));
        assert_eq!(got.figures.currency.as_deref(), Some("USD"));
        assert_eq!(got.resources.get("aws_instance.gpu[0]"), Some(&451.25));
        assert_eq!(got.resources.len(), 2);
    }

    #[test]
    fn infracost_errors_name_the_field() {
        let cases = [
            (
                json!({"totalMonthlyCost": "lots"}),
                "infracost.totalMonthlyCost: expected a number, found the string \"lots\"",
            ),
            (
                json!({"diffTotalMonthlyCost": true}),
                "infracost.diffTotalMonthlyCost: expected a number, found the boolean true",
            ),
            (
                json!({"projects": {}}),
                "infracost.projects: expected an array, found an object",
            ),
            (
                json!({"projects": [{"breakdown": {"resources": [{"name": "a.b", "monthlyCost": "x1"}]}}]}),
                "infracost.projects[0].breakdown.resources[0].monthlyCost: expected a number, found the string \"x1\"",
            ),
            (
                json!([]),
                "infracost: expected an object (an Infracost JSON breakdown), found an array",
            ),
        ];
        for (doc, message) in cases {
            let err = from_infracost(&doc).err().map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(message));
        }
    }

    #[test]
    fn metadata_figures() {
        let metadata: Metadata = serde_json::from_value(
            json!({"user": "u", "cost_increase": "2850", "currency": "EUR"}),
        )
        .unwrap_or_default();
        let got = from_metadata(&metadata).unwrap_or_default();
        assert_eq!(
            got,
            Figures {
                monthly: None,
                increase: Some(2850.0),
                currency: Some("EUR".to_owned())
            }
        );
        let bad: Metadata =
            serde_json::from_value(json!({"estimated_monthly_cost": "cheap"})).unwrap_or_default();
        assert_eq!(
            from_metadata(&bad).err().map(|e| e.to_string()).as_deref(),
            Some("metadata.estimated_monthly_cost: expected a number, found the string \"cheap\"")
        );
    }
}
