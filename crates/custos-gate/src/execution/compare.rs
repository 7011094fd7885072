//! The comparison of an execution with the approved plan (rules and severities in the module
//! docs of [`super`]), and the report for an execution nobody approved.

use std::collections::{BTreeMap, BTreeSet};

use custos_core::entry::Severity;
use serde_json::Value;

use super::report::{AttributeChange, ExecutionReport, Finding, VerbMismatch};
use super::values::{
    differs_in_security_member, is_security_relevant, matches, unapproved_ingress,
};
use super::{Evidence, ExecutedChange, ExecutedChanges, ExecutionStatus, Outcome, StateResource};
use crate::plan::{Ingress, NormalizedPlan, PlannedAction, Verb};

/// How many addresses a note lists before it says "and N more".
const LISTED: usize = 10;

/// Compares what was executed with the approved plan.
pub fn compare(approved: &NormalizedPlan, executed: &ExecutedChanges) -> ExecutionReport {
    let mut report = ExecutionReport::new(Some(executed.format), executed.status);
    report.notes.extend(executed.notes.iter().cloned());
    let missing = if executed.status == ExecutionStatus::Failed {
        Severity::Medium
    } else {
        Severity::High
    };
    match &executed.evidence {
        Evidence::Changes(changes) => compare_changes(approved, changes, missing, &mut report),
        Evidence::State(resources) => compare_state(approved, resources, missing, &mut report),
    }
    let checked = approved.actions.iter().filter(|a| a.verb.changes()).count();
    report.finish(checked)
}

/// The report for executing a request that was never approved (vetoed, escalated, unknown):
/// a critical deviation whatever was executed. `reason` says why (`"the review was vetoed"`);
/// `executed`, when it could be read, lists what was changed as unapproved changes.
pub fn unapproved_execution(reason: &str, executed: Option<&ExecutedChanges>) -> ExecutionReport {
    let format = executed.map(|e| e.format);
    let status = executed.map_or(ExecutionStatus::NotReported, |e| e.status);
    let mut report = ExecutionReport::new(format, status);
    report.unapproved = Some(reason.to_owned());
    if let Some(executed) = executed {
        report.notes.extend(executed.notes.iter().cloned());
        match &executed.evidence {
            Evidence::Changes(changes) => {
                let attempted = changes
                    .iter()
                    .filter(|c| c.verb.changes() && c.outcome != Outcome::Skipped);
                for change in attempted {
                    let message = format!(
                        "{} was {} without an approved plan{}",
                        change.address,
                        past(change.verb),
                        attempt_failed(change)
                    );
                    report.extra.push(finding(change, Severity::Critical, message));
                }
            }
            Evidence::State(resources) => report.notes.push(format!(
                "the state shows {} managed resources; a state cannot tell which of them this unapproved execution changed",
                resources.len()
            )),
        }
    }
    report.finish(0)
}

/// Change mode: the generic report, the plan of what was applied, the apply log.
fn compare_changes(
    plan: &NormalizedPlan,
    changes: &[ExecutedChange],
    missing: Severity,
    report: &mut ExecutionReport,
) {
    let approved: BTreeMap<&str, &PlannedAction> = plan
        .actions
        .iter()
        .map(|a| (a.address.as_str(), a))
        .collect();
    let mut executed = BTreeSet::new();
    let mut skipped = 0usize;
    for change in changes.iter().filter(|c| c.verb.changes()) {
        if change.outcome == Outcome::Skipped {
            skipped += 1;
            continue;
        }
        executed.insert(change.address.as_str());
        match approved.get(change.address.as_str()) {
            Some(action) if action.verb.changes() => check_change(action, change, report),
            listed => {
                let why = match listed {
                    Some(action) => format!("the approved plan lists it as {}", past(action.verb)),
                    None => "the approved plan does not change it".to_owned(),
                };
                let message = format!(
                    "{} was {} but {why}{}",
                    change.address,
                    past(change.verb),
                    attempt_failed(change)
                );
                report
                    .extra
                    .push(finding(change, Severity::Critical, message));
            }
        }
    }
    if skipped > 0 {
        report.notes.push(format!(
            "{skipped} changes were reported as skipped and count as not executed"
        ));
    }
    let reason = if missing == Severity::Medium {
        " (the execution reported failure)"
    } else {
        ""
    };
    for action in plan.actions.iter().filter(|a| a.verb.changes()) {
        if !executed.contains(action.address.as_str()) {
            let message = format!(
                "the approved {} of {} was not executed{reason}",
                word(action.verb),
                action.address
            );
            report
                .missing
                .push(approved_finding(action, missing, message));
        }
    }
}

/// An executed change of an address the plan approved a change of.
fn check_change(action: &PlannedAction, change: &ExecutedChange, report: &mut ExecutionReport) {
    if change.verb != action.verb {
        let destroyed = change.verb.destroys() && !action.verb.destroys();
        let mut message = format!(
            "{} was approved for {} but was {}",
            action.address,
            word(action.verb),
            past(change.verb)
        );
        if destroyed {
            message.push_str(": it was destroyed, which the plan did not approve");
        }
        report
            .verb_mismatches
            .push(mismatch(action, change.verb, destroyed, message));
    }
    if change.outcome == Outcome::Failed {
        let message = format!(
            "the approved {} of {} failed: {}",
            word(action.verb),
            action.address,
            change.error.as_deref().unwrap_or("no error given")
        );
        report
            .failed
            .push(finding(change, Severity::Medium, message));
        return;
    }
    if action.verb != Verb::Delete && change.verb != Verb::Delete {
        compare_attributes(
            action,
            &change.attributes,
            &change.ingress,
            change.quantity,
            &[],
            report,
        );
    }
}

/// State mode: see "What a post-apply state can and cannot show" in the module docs.
fn compare_state(
    plan: &NormalizedPlan,
    resources: &[StateResource],
    missing: Severity,
    report: &mut ExecutionReport,
) {
    let state: BTreeMap<&str, &StateResource> =
        resources.iter().map(|r| (r.address.as_str(), r)).collect();
    for action in &plan.actions {
        let address = action.address.as_str();
        match (action.verb, state.get(address)) {
            (Verb::Read, _) | (Verb::Delete, None) => {}
            (Verb::Create | Verb::Update | Verb::Replace, None) => {
                let message = format!(
                    "the approved {} of {address} is not reflected in the state: {address} is not in it",
                    word(action.verb)
                );
                report
                    .missing
                    .push(approved_finding(action, missing, message));
            }
            (Verb::Delete, Some(_)) => {
                let message = format!(
                    "the approved delete of {address} was not executed: it is still in the state"
                );
                report
                    .missing
                    .push(approved_finding(action, missing, message));
            }
            (Verb::NoOp, None) => {
                let message = format!(
                    "the approved plan lists {address} as unchanged, but it is absent from the state: destroyed, or removed from the state, without approval"
                );
                report.extra.push(Finding {
                    address: action.address.clone(),
                    resource_type: action.resource_type.clone(),
                    verb: Verb::Delete,
                    severity: Severity::High,
                    message,
                });
            }
            (verb, Some(resource)) => {
                // The identity check covers `id`: a changed one is a replacement, not an attribute.
                check_identity(action, verb, resource, report);
                compare_attributes(
                    action,
                    &resource.values,
                    &resource.ingress,
                    None,
                    &["id"],
                    report,
                );
            }
        }
    }
    let planned: BTreeSet<&str> = plan.actions.iter().map(|a| a.address.as_str()).collect();
    let unmentioned: Vec<&str> = resources
        .iter()
        .map(|r| r.address.as_str())
        .filter(|a| !planned.contains(a))
        .collect();
    if !unmentioned.is_empty() {
        report.notes.push(format!(
            "{} managed resources in the state are not in the approved plan; a state cannot show whether they existed before, so they are not deviations: {}",
            unmentioned.len(),
            listed(&unmentioned)
        ));
    }
    report.notes.push(
        "checked against a post-apply state: resources created or destroyed outside the approved plan, and failed actions, cannot be detected from a state alone".to_owned(),
    );
}

/// Whether a resource present in the state was replaced, from its `id` before (in the plan)
/// and now (in the state), where both are known.
fn check_identity(
    action: &PlannedAction,
    verb: Verb,
    resource: &StateResource,
    report: &mut ExecutionReport,
) {
    let (Some(before), Some(now)) = (known_id(&action.before), known_id(&resource.values)) else {
        return;
    };
    let address = &action.address;
    match verb {
        Verb::Update if before != now => {
            let message = format!(
                "{address} was approved for an in-place update but its id changed ({before} → {now}): it was replaced, which the plan did not approve"
            );
            report
                .verb_mismatches
                .push(mismatch(action, Verb::Replace, true, message));
        }
        Verb::NoOp if before != now => report.extra.push(Finding {
            address: address.clone(),
            resource_type: action.resource_type.clone(),
            verb: Verb::Replace,
            severity: Severity::Critical,
            message: format!(
                "the approved plan lists {address} as unchanged, but its id changed ({before} → {now}): it was replaced without approval"
            ),
        }),
        Verb::Replace if before == now => {
            let message =
                format!("{address} was approved for replacement but still has its id {before}: it was not replaced");
            report
                .verb_mismatches
                .push(mismatch(action, Verb::Update, false, message));
        }
        _ => {}
    }
}

/// A resource's `id` attribute, when known (not redacted, not empty).
fn known_id(values: &Value) -> Option<String> {
    match values.get("id")? {
        Value::String(s) if !s.is_empty() && s != "(sensitive)" => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Compares the executed attributes (but those in `skip`), ingress and quantity of a
/// resource with the approved ones (see the module docs for what is compared).
fn compare_attributes(
    action: &PlannedAction,
    attributes: &Value,
    ingress: &[Ingress],
    quantity: Option<u64>,
    skip: &[&str],
    report: &mut ExecutionReport,
) {
    let first = report.changed.len();
    if let (Some(approved), Some(executed)) = (action.after.as_object(), attributes.as_object()) {
        for (attribute, value) in approved {
            if skip.contains(&attribute.as_str()) {
                continue;
            }
            let Some(executed_value) = executed.get(attribute) else {
                continue;
            };
            if !matches(value, executed_value) {
                report.changed.push(AttributeChange {
                    address: action.address.clone(),
                    attribute: attribute.clone(),
                    approved: value.clone(),
                    executed: executed_value.clone(),
                    severity: if is_security_relevant(attribute)
                        || differs_in_security_member(value, executed_value)
                    {
                        Severity::Critical
                    } else {
                        Severity::High
                    },
                });
            }
        }
    }
    let shown = report
        .changed
        .get(first..)
        .unwrap_or_default()
        .iter()
        .any(|c| c.severity == Severity::Critical);
    if !shown && !unapproved_ingress(&action.ingress, ingress).is_empty() {
        report.changed.push(AttributeChange {
            address: action.address.clone(),
            attribute: "ingress".to_owned(),
            approved: serde_json::to_value(&action.ingress).unwrap_or(Value::Null),
            executed: serde_json::to_value(ingress).unwrap_or(Value::Null),
            severity: Severity::Critical,
        });
    }
    if let Some(quantity) = quantity.filter(|q| *q != action.quantity) {
        report.changed.push(AttributeChange {
            address: action.address.clone(),
            attribute: "quantity".to_owned(),
            approved: Value::from(action.quantity),
            executed: Value::from(quantity),
            severity: Severity::High,
        });
    }
}

/// A finding about an executed change.
fn finding(change: &ExecutedChange, severity: Severity, message: String) -> Finding {
    Finding {
        address: change.address.clone(),
        resource_type: change.resource_type.clone(),
        verb: change.verb,
        severity,
        message,
    }
}

/// A finding about an approved action.
fn approved_finding(action: &PlannedAction, severity: Severity, message: String) -> Finding {
    Finding {
        address: action.address.clone(),
        resource_type: action.resource_type.clone(),
        verb: action.verb,
        severity,
        message,
    }
}

/// A verb mismatch: critical when the execution destroyed what was approved to survive.
fn mismatch(
    action: &PlannedAction,
    executed: Verb,
    destroyed: bool,
    message: String,
) -> VerbMismatch {
    VerbMismatch {
        address: action.address.clone(),
        resource_type: action.resource_type.clone(),
        approved: action.verb,
        executed,
        severity: if destroyed {
            Severity::Critical
        } else {
            Severity::High
        },
        message,
    }
}

/// `" (the attempt failed: …)"` for a failed change, else nothing.
fn attempt_failed(change: &ExecutedChange) -> String {
    match (change.outcome, &change.error) {
        (Outcome::Failed, Some(error)) => format!(" (the attempt failed: {error})"),
        (Outcome::Failed, None) => " (the attempt failed)".to_owned(),
        _ => String::new(),
    }
}

/// A verb as a noun (`the approved create of …`).
fn word(verb: Verb) -> &'static str {
    match verb {
        Verb::Replace => "replacement",
        other => other.as_str(),
    }
}

/// A verb in the past tense (`was created`).
fn past(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "created",
        Verb::Update => "updated",
        Verb::Delete => "deleted",
        Verb::Replace => "replaced",
        Verb::Read => "read",
        Verb::NoOp => "unchanged",
    }
}

/// The first few addresses, then how many more.
fn listed(addresses: &[&str]) -> String {
    let shown: Vec<&str> = addresses.iter().take(LISTED).copied().collect();
    let mut text = shown.join(", ");
    if addresses.len() > LISTED {
        text.push_str(&format!(" and {} more", addresses.len() - LISTED));
    }
    text
}
