//! The generic execution report (shape 1 of the module docs). Each change is rewritten into an
//! action of a generic plan and read by the generic plan normaliser, so an executed change's
//! attributes, tags and ingress are read exactly as an approved action's are; errors from it
//! are given back with paths into the report.

use serde_json::{Map, Value};

use super::{Evidence, address_type_and_name, read_status, read_status_word, relocate};
use super::{
    ExecutedChange, ExecutedChanges, ExecutionError, ExecutionFormat, ExecutionStatus, Outcome,
    StatusWord,
};
use crate::plan::read::{self as json, Path};
use crate::plan::{PlanError, Verb, normalize_value, verb_from_word};
use crate::request::Metadata;

/// Keys of the change list.
const LIST_KEYS: &[&str] = &["resources", "actions"];
/// Keys of a change's verb.
const VERB_KEYS: &[&str] = &["verb", "action", "operation"];
/// Keys of a change's address.
const ADDRESS_KEYS: &[&str] = &["address", "id"];
/// Keys of a change's resource type.
const TYPE_KEYS: &[&str] = &["resource_type", "type", "kind"];
/// Keys of a change's error message.
const ERROR_KEYS: &[&str] = &["error", "error_message"];
/// Keys read here and not passed on to the plan normaliser.
const REPORT_ONLY_KEYS: &[&str] = &[
    "verb",
    "action",
    "operation",
    "address",
    "id",
    "resource_type",
    "type",
    "kind",
    "error",
    "error_message",
    "status",
    "outcome",
];
/// Keys of a change's quantity (as in generic plans).
const QUANTITY_KEYS: &[&str] = &["quantity", "count", "instances", "instance_count"];

/// The verb a word names: a plan verb or synonym ([`verb_from_word`]), or its past tense
/// (`created`, `destroyed`, `modified`, `dropped`).
pub(crate) fn executed_verb(word: &str) -> Option<Verb> {
    if let Some(verb) = verb_from_word(word) {
        return Some(verb);
    }
    let word = word.trim().to_lowercase();
    let stem = word.strip_suffix("ed")?;
    let candidates = [
        format!("{stem}e"),
        stem.to_owned(),
        stem.strip_suffix('i')
            .map(|s| format!("{s}y"))
            .unwrap_or_default(),
        doubled_consonant(stem).unwrap_or_default(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .find_map(|c| verb_from_word(c))
}

/// `dropp` → `drop`.
fn doubled_consonant(stem: &str) -> Option<String> {
    let mut chars = stem.chars().rev();
    let (last, before) = (chars.next()?, chars.next()?);
    (last == before && !"aeiou".contains(last))
        .then(|| stem.get(..stem.len() - last.len_utf8()).map(str::to_owned))
        .flatten()
}

/// What the report says about one change beyond what a plan action holds.
struct Reported {
    outcome: Outcome,
    error: Option<String>,
    quantity_given: bool,
}

/// Reads a generic execution report.
pub(super) fn normalize(doc: &Map<String, Value>) -> Result<ExecutedChanges, ExecutionError> {
    let root = Path::root();
    let status = read_status(doc)?;
    let (list_key, list) =
        json::aliased(doc, LIST_KEYS, &root)?.ok_or_else(|| json::missing(LIST_KEYS, &root))?;
    let list_path = root.key(list_key);
    let Value::Array(items) = list else {
        return Err(json::wrong_type(&list_path, "an array", list).into());
    };
    let mut actions = Vec::with_capacity(items.len());
    let mut reported = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (action, report) = rewrite(item, &list_path.index(i))?;
        actions.push(action);
        reported.push(report);
    }
    let plan_doc = Value::Object(Map::from_iter([(
        "actions".to_owned(),
        Value::Array(actions),
    )]));
    let plan = normalize_value(&plan_doc, &Metadata::default(), "", None).map_err(|e| {
        relocate(e, |path| match path.strip_prefix("actions") {
            Some(rest) => format!("{list_key}{rest}"),
            None => path.to_owned(),
        })
    })?;

    let mut notes = Vec::new();
    if items.is_empty() {
        notes.push("the execution report lists no changes".to_owned());
    }
    let mut changes = Vec::with_capacity(items.len());
    let mut unchanged = 0usize;
    for (action, report) in plan.actions.into_iter().zip(reported) {
        if !action.verb.changes() {
            unchanged += 1;
            continue;
        }
        let attributes = if action.verb == Verb::Delete {
            Value::Null
        } else {
            action.after
        };
        changes.push(ExecutedChange {
            address: action.address,
            verb: action.verb,
            resource_type: action.resource_type,
            name: action.name,
            outcome: report.outcome,
            error: report.error,
            attributes,
            ingress: action.ingress,
            quantity: report.quantity_given.then_some(action.quantity),
        });
    }
    if unchanged > 0 {
        notes.push(format!(
            "{unchanged} read or no-op entries of the report are not changes and were ignored"
        ));
    }
    let any_failed = changes.iter().any(|c| c.outcome == Outcome::Failed);
    let status = match status {
        ExecutionStatus::Succeeded if any_failed => {
            notes.push(
                "the report says the execution succeeded, but some changes failed: treated as failed"
                    .to_owned(),
            );
            ExecutionStatus::Failed
        }
        ExecutionStatus::NotReported if any_failed => ExecutionStatus::Failed,
        other => other,
    };
    Ok(ExecutedChanges {
        format: ExecutionFormat::Generic,
        status,
        evidence: Evidence::Changes(changes),
        notes,
    })
}

/// One reported change as a generic plan action (its verb made canonical, its address as
/// `id`, its type derived from the address when not given), and what it says beyond that.
fn rewrite(item: &Value, path: &Path) -> Result<(Value, Reported), ExecutionError> {
    let Value::Object(object) = item else {
        return Err(json::wrong_type(path, "an object (one executed change)", item).into());
    };
    let (verb_key, verb_value) =
        json::aliased(object, VERB_KEYS, path)?.ok_or_else(|| json::missing(VERB_KEYS, path))?;
    let verb_text = verb_value
        .as_str()
        .ok_or_else(|| json::wrong_type(&path.key(verb_key), "a string", verb_value))?;
    let verb = executed_verb(verb_text).ok_or_else(|| PlanError::UnknownVerb {
        path: path.key(verb_key).to_string(),
        found: json::describe(verb_value),
    })?;
    let address = match json::aliased(object, ADDRESS_KEYS, path)? {
        None => None,
        Some((_, Value::String(s))) => Some(s.clone()),
        Some((_, Value::Number(n))) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        Some((key, other)) => {
            return Err(json::wrong_type(&path.key(key), "a string", other).into());
        }
    };
    let resource_type = match json::opt_str(object, TYPE_KEYS, path)? {
        Some(t) => t.to_owned(),
        None => address
            .as_deref()
            .and_then(address_type_and_name)
            .map(|(t, _)| t)
            .ok_or_else(|| json::missing(TYPE_KEYS, path))?,
    };
    let word = read_status_word(object, path)?;
    let error = json::opt_str(object, ERROR_KEYS, path)?.map(str::to_owned);
    let outcome = match (word, &error) {
        (Some(StatusWord::Skipped), _) => Outcome::Skipped,
        (Some(StatusWord::Failed), _) | (None, Some(_)) => Outcome::Failed,
        (Some(StatusWord::Succeeded), _) | (None, None) => Outcome::Applied,
    };
    let quantity_given = QUANTITY_KEYS
        .iter()
        .any(|k| object.get(*k).is_some_and(|v| !v.is_null()));

    let mut action: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !REPORT_ONLY_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    action.insert("verb".to_owned(), Value::from(verb.as_str()));
    action.insert("resource_type".to_owned(), Value::from(resource_type));
    if let Some(address) = address {
        action.insert("id".to_owned(), Value::from(address));
    }
    Ok((
        Value::Object(action),
        Reported {
            outcome,
            error,
            quantity_given,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_tense_verbs() {
        let cases: &[(&str, Option<Verb>)] = &[
            ("create", Some(Verb::Create)),
            ("created", Some(Verb::Create)),
            ("Updated", Some(Verb::Update)),
            ("deleted", Some(Verb::Delete)),
            ("replaced", Some(Verb::Replace)),
            ("destroyed", Some(Verb::Delete)),
            ("added", Some(Verb::Create)),
            ("modified", Some(Verb::Update)),
            ("dropped", Some(Verb::Delete)),
            ("provisioned", Some(Verb::Create)),
            ("scaled", Some(Verb::Update)),
            ("recreated", Some(Verb::Replace)),
            ("unchanged", Some(Verb::NoOp)),
            ("exploded", None),
            ("ed", None),
            ("", None),
        ];
        for (word, expected) in cases {
            assert_eq!(executed_verb(word), *expected, "{word}");
        }
    }
}
