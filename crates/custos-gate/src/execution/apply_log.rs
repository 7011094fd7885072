//! The machine-readable output of `terraform apply -json` (shape 4 of the module docs): one
//! JSON message per line, documented in Terraform's "Machine-readable UI" reference. What a
//! resource went through is collected from its `apply_start`, `apply_complete` and
//! `apply_errored` hooks and merged into one executed change per address.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    Evidence, ExecutedChange, ExecutedChanges, ExecutionError, ExecutionFormat, ExecutionStatus,
    Outcome, address_type_and_name,
};
use crate::plan::Verb;
use crate::plan::read::{self as json, Path};

/// How many error diagnostics are quoted in the notes.
const QUOTED_DIAGNOSTICS: usize = 5;

/// Whether `text` looks like JSON lines: its first non-blank line is a JSON object on its own.
pub(super) fn looks_like_json_lines(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| matches!(serde_json::from_str::<Value>(l), Ok(Value::Object(_))))
}

/// Reads the log as text, one message per line (blank lines skipped).
pub(super) fn from_text(text: &str) -> Result<ExecutedChanges, ExecutionError> {
    let mut log = Log::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{FEFF}');
        if line.is_empty() {
            continue;
        }
        let message: Value = serde_json::from_str(line).map_err(|e| ExecutionError::LogLine {
            line: i + 1,
            problem: format!("not valid JSON: {e}"),
        })?;
        log.read(&message, &Path::named(&format!("line {}", i + 1)))?;
    }
    Ok(log.finish())
}

/// Reads the log as an array of message objects.
pub(super) fn from_messages(messages: &[Value]) -> Result<ExecutedChanges, ExecutionError> {
    let mut log = Log::default();
    for (i, message) in messages.iter().enumerate() {
        log.read(message, &Path::root().index(i))?;
    }
    Ok(log.finish())
}

/// Reads a log of a single message, given as the object itself.
pub(super) fn from_message(message: &Value) -> Result<ExecutedChanges, ExecutionError> {
    let mut log = Log::default();
    log.read(message, &Path::root())?;
    Ok(log.finish())
}

/// Which hook a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Start,
    Complete,
    Errored,
}

/// What the log says about one address.
#[derive(Default)]
struct Track {
    resource_type: String,
    name: String,
    started: BTreeSet<Verb>,
    completed: BTreeSet<Verb>,
    errored: BTreeSet<Verb>,
}

/// The log read so far.
#[derive(Default)]
struct Log {
    /// Addresses in the order they first appear.
    order: Vec<String>,
    tracks: BTreeMap<String, Track>,
    /// Error diagnostics: summary, and address when the diagnostic names one.
    errors: Vec<(String, Option<String>)>,
    /// Terraform's closing summary (`Apply complete! …`), if printed.
    summary: Option<String>,
    forgotten: Vec<String>,
    messages: usize,
}

impl Log {
    fn read(&mut self, message: &Value, path: &Path) -> Result<(), ExecutionError> {
        let Value::Object(object) = message else {
            return Err(
                json::wrong_type(path, "an object (one Terraform UI message)", message).into(),
            );
        };
        self.messages += 1;
        match json::req_str(object, &["type"], path)? {
            "version" => check_version(object, path),
            "apply_start" => self.hook(object, path, Hook::Start),
            "apply_complete" => self.hook(object, path, Hook::Complete),
            "apply_errored" => self.hook(object, path, Hook::Errored),
            "diagnostic" => {
                self.diagnostic(object);
                Ok(())
            }
            "change_summary" => {
                self.change_summary(object);
                Ok(())
            }
            // Plans, refreshes, provisioners, outputs, logs: not what was applied.
            _ => Ok(()),
        }
    }

    fn hook(
        &mut self,
        object: &Map<String, Value>,
        path: &Path,
        hook: Hook,
    ) -> Result<(), ExecutionError> {
        let (hook_path, fields) = json::opt_object(object, &["hook"], path)?
            .ok_or_else(|| json::missing(&["hook"], path))?;
        let (resource_path, resource) = json::opt_object(fields, &["resource"], &hook_path)?
            .ok_or_else(|| json::missing(&["resource"], &hook_path))?;
        let address = json::req_str(resource, &["addr"], &resource_path)?;
        let implied = address_type_and_name(address);
        let resource_type = json::opt_str(resource, &["resource_type"], &resource_path)?
            .map(str::to_owned)
            .or_else(|| implied.as_ref().map(|(t, _)| t.clone()))
            .unwrap_or_default();
        let name = json::opt_str(resource, &["resource_name"], &resource_path)?
            .map(str::to_owned)
            .or_else(|| implied.map(|(_, n)| n))
            .unwrap_or_else(|| address.to_owned());
        let (action_key, action) = json::aliased(fields, &["action"], &hook_path)?
            .ok_or_else(|| json::missing(&["action"], &hook_path))?;
        let action_path = hook_path.key(action_key);
        let word = action
            .as_str()
            .ok_or_else(|| json::wrong_type(&action_path, "a string", action))?;
        let verb = match word {
            "create" => Verb::Create,
            "update" => Verb::Update,
            "delete" => Verb::Delete,
            "replace" => Verb::Replace,
            "read" => Verb::Read,
            "noop" | "no-op" => Verb::NoOp,
            "remove" | "forget" => {
                if hook == Hook::Complete {
                    self.forgotten.push(address.to_owned());
                }
                Verb::NoOp
            }
            _ => {
                return Err(ExecutionError::UnknownHookAction {
                    path: action_path.to_string(),
                    found: json::describe(action),
                });
            }
        };
        if !self.tracks.contains_key(address) {
            self.order.push(address.to_owned());
        }
        let track = self.tracks.entry(address.to_owned()).or_default();
        if track.resource_type.is_empty() {
            track.resource_type = resource_type;
            track.name = name;
        }
        let set = match hook {
            Hook::Start => &mut track.started,
            Hook::Complete => &mut track.completed,
            Hook::Errored => &mut track.errored,
        };
        set.insert(verb);
        Ok(())
    }

    /// Records an error diagnostic (warnings are not failures).
    fn diagnostic(&mut self, object: &Map<String, Value>) {
        let details = object.get("diagnostic");
        let severity = details
            .and_then(|d| d.get("severity"))
            .and_then(Value::as_str)
            .or_else(|| object.get("@level").and_then(Value::as_str));
        if severity != Some("error") {
            return;
        }
        let summary = details
            .and_then(|d| d.get("summary"))
            .and_then(Value::as_str)
            .or_else(|| object.get("@message").and_then(Value::as_str))
            .unwrap_or("an error")
            .to_owned();
        let address = details
            .and_then(|d| d.get("address"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.errors.push((summary, address));
    }

    /// Records the closing summary of an apply (or destroy); a plan's summary is not one.
    fn change_summary(&mut self, object: &Map<String, Value>) {
        let operation = object
            .get("changes")
            .and_then(|c| c.get("operation"))
            .and_then(Value::as_str);
        if matches!(operation, Some("apply" | "destroy")) {
            let text = object
                .get("@message")
                .and_then(Value::as_str)
                .unwrap_or("Terraform printed its apply summary");
            self.summary = Some(text.to_owned());
        }
    }

    fn finish(self) -> ExecutedChanges {
        let Log {
            order,
            mut tracks,
            errors,
            summary,
            forgotten,
            messages,
        } = self;
        let mut notes = Vec::new();
        let mut changes = Vec::new();
        for address in order {
            let Some(track) = tracks.remove(&address) else {
                continue;
            };
            let diagnostics: Vec<&str> = errors
                .iter()
                .filter(|(_, a)| a.as_deref() == Some(address.as_str()))
                .map(|(s, _)| s.as_str())
                .collect();
            changes.extend(merge(address, track, &diagnostics));
        }
        let failed = changes.iter().any(|c| c.outcome == Outcome::Failed) || !errors.is_empty();
        let status = if failed {
            ExecutionStatus::Failed
        } else if summary.is_some() {
            ExecutionStatus::Succeeded
        } else {
            ExecutionStatus::NotReported
        };
        if messages == 0 {
            notes.push("the apply log is empty".to_owned());
        }
        if let Some(summary) = summary {
            notes.push(format!("Terraform reported: {summary}"));
        } else {
            notes.push(
                "the apply log has no closing change summary: it may be incomplete".to_owned(),
            );
        }
        for (summary, address) in errors.iter().take(QUOTED_DIAGNOSTICS) {
            match address {
                Some(address) => notes.push(format!("Terraform error ({address}): {summary}")),
                None => notes.push(format!("Terraform error: {summary}")),
            }
        }
        if errors.len() > QUOTED_DIAGNOSTICS {
            notes.push(format!(
                "… and {} more Terraform errors",
                errors.len() - QUOTED_DIAGNOSTICS
            ));
        }
        for address in forgotten {
            notes.push(format!(
                "{address} was removed from the Terraform state without being destroyed"
            ));
        }
        ExecutedChanges {
            format: ExecutionFormat::TerraformApplyLog,
            status,
            evidence: Evidence::Changes(changes),
            notes,
        }
    }
}

/// A `version` message: the UI schema's major version must be one custos reads (0 or 1).
fn check_version(object: &Map<String, Value>, path: &Path) -> Result<(), ExecutionError> {
    let Some(version) = json::opt_str(object, &["ui"], path)? else {
        return Ok(());
    };
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(0 | 1) => Ok(()),
        _ => Err(ExecutionError::UnsupportedUiVersion {
            path: path.key("ui").to_string(),
            version: version.to_owned(),
        }),
    }
}

/// The verb of a set of hook actions on one address: a delete and a create are a replace
/// (Terraform applies a replacement as the two); otherwise the most destructive.
fn combined(verbs: &BTreeSet<Verb>) -> Option<Verb> {
    let has = |v: Verb| verbs.contains(&v);
    if has(Verb::Replace) || (has(Verb::Delete) && has(Verb::Create)) {
        Some(Verb::Replace)
    } else {
        [Verb::Delete, Verb::Create, Verb::Update]
            .into_iter()
            .find(|v| has(*v))
    }
}

/// Words for a set of verbs in messages (`create and delete`).
fn words(verbs: &BTreeSet<Verb>) -> String {
    let words: Vec<&str> = verbs.iter().map(|v| v.as_str()).collect();
    words.join(" and ")
}

/// One address's hooks as an executed change; `None` when it only read or did nothing.
fn merge(address: String, track: Track, diagnostics: &[&str]) -> Option<ExecutedChange> {
    let changing = |set: &BTreeSet<Verb>| -> BTreeSet<Verb> {
        set.iter().copied().filter(|v| v.changes()).collect()
    };
    let completed = changing(&track.completed);
    let errored = changing(&track.errored);
    let unfinished: BTreeSet<Verb> = changing(&track.started)
        .difference(&completed)
        .copied()
        .filter(|v| !errored.contains(v))
        .collect();
    let all: BTreeSet<Verb> = completed
        .iter()
        .chain(&errored)
        .chain(&unfinished)
        .copied()
        .collect();
    let verb = combined(&all)?;
    let mut problems = Vec::new();
    if !errored.is_empty() {
        problems.push(format!("Terraform reported `{}` errored", words(&errored)));
    }
    if !unfinished.is_empty() {
        problems.push(format!(
            "`{}` started but the log shows it neither completing nor erroring",
            words(&unfinished)
        ));
    }
    if !problems.is_empty() && !completed.is_empty() {
        problems.push(format!("`{}` completed", words(&completed)));
    }
    problems.extend(diagnostics.iter().map(|d| (*d).to_owned()));
    let outcome = if errored.is_empty() && unfinished.is_empty() {
        Outcome::Applied
    } else {
        Outcome::Failed
    };
    let error = (outcome == Outcome::Failed).then(|| problems.join("; "));
    Some(ExecutedChange {
        address,
        verb,
        resource_type: track.resource_type,
        name: track.name,
        outcome,
        error,
        attributes: Value::Null,
        ingress: Vec::new(),
        quantity: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(verbs: &[Verb]) -> BTreeSet<Verb> {
        verbs.iter().copied().collect()
    }

    #[test]
    fn hooks_combine_into_one_verb() {
        let cases: &[(&[Verb], Option<Verb>)] = &[
            (&[Verb::Create], Some(Verb::Create)),
            (&[Verb::Delete, Verb::Create], Some(Verb::Replace)),
            (&[Verb::Replace], Some(Verb::Replace)),
            (&[Verb::Update, Verb::Delete], Some(Verb::Delete)),
            (&[Verb::Update], Some(Verb::Update)),
            (&[], None),
        ];
        for (verbs, expected) in cases {
            assert_eq!(combined(&set(verbs)), *expected, "{verbs:?}");
        }
    }

    #[test]
    fn a_replacement_whose_create_errored_is_a_failed_replace() {
        let track = Track {
            resource_type: "aws_instance".to_owned(),
            name: "web".to_owned(),
            started: set(&[Verb::Delete, Verb::Create]),
            completed: set(&[Verb::Delete]),
            errored: set(&[Verb::Create]),
        };
        let change = merge("aws_instance.web".to_owned(), track, &["quota exceeded"]);
        assert_eq!(change.as_ref().map(|c| c.verb), Some(Verb::Replace));
        assert_eq!(change.as_ref().map(|c| c.outcome), Some(Outcome::Failed));
        assert_eq!(
            change.and_then(|c| c.error).as_deref(),
            Some("Terraform reported `create` errored; `delete` completed; quota exceeded")
        );
    }

    #[test]
    fn ui_versions() {
        let path = Path::named("line 1");
        for (ui, ok) in [
            ("1.0", true),
            ("0.1.0", true),
            ("1.2", true),
            ("2.0", false),
            ("x", false),
        ] {
            let message = serde_json::json!({"type": "version", "ui": ui});
            let object = message.as_object().cloned().unwrap_or_default();
            assert_eq!(check_version(&object, &path).is_ok(), ok, "{ui}");
        }
    }
}
