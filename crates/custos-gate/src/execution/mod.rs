//! Execution verification (SPEC §4.4): after an orchestrator has executed an approved plan, it
//! reports what was executed, and custos compares that with what was approved — resources
//! changed that were not approved, approved changes not executed, attributes set to other
//! values than approved. The answer is an [`ExecutionReport`]: `matches`, or `deviation` with a
//! severity and the findings behind it. Executing a request that was never approved (vetoed,
//! escalated, unknown) is itself a critical deviation: [`unapproved_execution`].
//!
//! Pure, like the rest of the gate: [`normalize_execution`] (or [`normalize_execution_bytes`])
//! reads an execution result into [`ExecutedChanges`], [`compare`] sets it against the approved
//! [`NormalizedPlan`](crate::plan::NormalizedPlan). The service records the report in the
//! ledger and raises the alert.
//!
//! # Accepted execution results
//!
//! Told apart by their shape; reading is lenient about names and strict about types, like the
//! plan normalisers, and every error names the path of what was wrong.
//!
//! 1. **Generic**: what an orchestrator that does not use Terraform reports.
//!    ```json
//!    {
//!      "status": "succeeded",             // optional: succeeded | failed (synonyms below)
//!      "resources": [                     // or "actions"
//!        {
//!          "address": "aws_vpc.main",     // or "id"; else the address is "type.name"
//!          "verb": "created",             // or "action", "operation"
//!          "resource_type": "aws_vpc",    // or "type", "kind"; optional when the address is
//!                                         //   Terraform-like (`module.x.aws_vpc.main[0]`)
//!          "name": "main",                // or "resource_name"; optional with an address
//!          "attributes": {"cidr_block": "10.0.0.0/16"},  // or "after", "properties"; optional
//!          "ingress": [{"cidr": "10.0.0.0/8", "port": 443}],  // optional, as in plans
//!          "quantity": 4,                 // optional, as in plans
//!          "status": "failed",            // optional, per change: succeeded | failed | skipped
//!          "error": "quota exceeded"      // optional; implies failed when status is absent
//!        }
//!      ]
//!    }
//!    ```
//!    Each change is read by the generic plan normaliser ([`crate::plan::generic`]), so verbs,
//!    attributes, tags and ingress mean exactly what they mean in a plan. Verbs are the plan
//!    verbs and their synonyms, also in the past tense (`created`, `updated`, `deleted`,
//!    `replaced`, `destroyed`, `modified`, `scaled`, …). Statuses, case-insensitive:
//!    **succeeded** (`success`, `successful`, `ok`, `complete`, `completed`, `applied`,
//!    `done`), **failed** (`failure`, `error`, `errored`, `partial`, `partially-applied`,
//!    `cancelled`, `canceled`, `aborted`, `interrupted`, `timeout`, `timed-out`), and
//!    **skipped** (`not-executed`, `not-applied`, `pending`): a skipped change counts as not
//!    executed; a skipped execution as a whole, as failed.
//! 2. **Terraform plan of what was applied**: `terraform show -json <planfile>` output (an
//!    object with `resource_changes` or `planned_values`), read by the Terraform plan
//!    normaliser ([`crate::plan::terraform`]); its creates, updates, deletes and replaces are
//!    the executed changes, with their `after` values.
//! 3. **Terraform state after apply**: `terraform show -json` without a plan file (an object
//!    with `values.root_module`, its `resources[]` and nested `child_modules[]`, each resource
//!    with `address`, `type`, `name`, `values`, `sensitive_values`). Values marked sensitive
//!    are replaced by `"(sensitive)"`; data sources are skipped. A document with only
//!    `format_version`/`terraform_version` is an empty state. What a state can show is limited
//!    — see below.
//! 4. **`terraform apply -json` output**: the JSON-lines stream, as a string (or as the bytes
//!    given to [`normalize_execution_bytes`]), or as an array of message objects. Read:
//!    `version` (a `ui` major version above 1 is refused), `apply_start`, `apply_complete`
//!    and `apply_errored` (`hook.resource.addr`, `resource_type`, `resource_name`,
//!    `hook.action`: `create`, `update`, `delete`, `replace`, `read`, `noop`, or `remove`
//!    for a resource forgotten rather than destroyed), error `diagnostic`s and
//!    `change_summary`; other messages are ignored. Terraform applies a replacement as a
//!    `delete` and a `create` of the same address, so those two make one replace. A change
//!    that errored, or that started and never finished, is a failed change; the execution
//!    failed when any did or an error diagnostic was printed, succeeded when Terraform printed
//!    its final change summary without errors, and is otherwise not reported. The log does not
//!    name deposed objects, so their destruction shows as a delete of the instance's address.
//!
//! A top-level object with `resources`/`actions` is generic; with `resource_changes` or
//! `planned_values`, a Terraform plan; with `values`, a Terraform state; with a string `type`
//! and `@message`, `@level` or `hook`, a single UI message. Both a generic list and Terraform
//! keys is refused as ambiguous. A generic report, Terraform plan or state may carry a
//! top-level `status`.
//!
//! # Comparison rules
//!
//! Addresses are matched exactly: the Terraform address, or a generic change's `address`/`id`,
//! else `type.name` — the rule the plan normaliser uses for plans. Read and no-op entries, on
//! either side, are not changes.
//!
//! | finding | when | severity |
//! | --- | --- | --- |
//! | `extra` | an executed change (even a failed attempt) of an address the approved plan does not change | critical |
//! | `verb_mismatches` | executed a delete or replace where the plan approved a create or update | critical |
//! | `verb_mismatches` | any other verb than approved (create for update, delete for replace, …) | high |
//! | `missing` | an approved change not executed | high; medium when the execution reported failure |
//! | `failed` | an approved change attempted but reported failed (or started and never finished) | medium |
//! | `changed` | an attribute whose executed value differs from the approved one | high; critical when it, or a differing member inside it, is [security-relevant](is_security_relevant) |
//!
//! A missing change is medium when the executor itself reported the execution failed: the
//! shortfall is then explained and already visible to the operator, whereas an execution that
//! claims success but left approved changes undone is misreporting. Failed changes are
//! deviations (what was approved is not what is in place) but not unapproved actions, hence
//! medium.
//!
//! Attributes are compared for addresses changed on both sides, when the executed change was
//! applied, neither side deletes, and the execution reports attributes: only the top-level
//! attributes the approved `after` lists (values known only after apply are absent from it, so
//! computed attributes are not compared), and only those the execution reports. Values
//! compare as JSON with these tolerances: a number equals a string holding the same number
//! (`"443"` and `443`; plans and reports write numbers both ways, and it is the same setting),
//! a boolean equals `"true"`/`"false"`; `"(sensitive)"` on either side equals anything; an
//! approved `null` equals an executed empty value (`null`, `""`, `false`, `[]`, `{}`, which
//! legacy Terraform providers store for unset attributes) and nothing else; inside objects only
//! the members both sides give are compared; a `null` list element in the approved value
//! (unknown at plan time) equals anything; lists must have the same length, in any order.
//! Besides attributes, the normalised ingress rules are compared (attribute `ingress`,
//! critical): executed ingress from a source, port or protocol no approved rule admits is
//! reported unless a critical attribute change of that address already shows it;
//! and a generic `quantity` the execution reports must equal the approved one (high).
//!
//! `result` is `deviation` iff there is any finding; `severity` is the highest finding's,
//! `info` when the execution matches.
//!
//! # What a post-apply state can and cannot show
//!
//! A state is a snapshot, not a record of changes, so in state mode:
//! - an approved create, update or replace whose address is not in the state is `missing`; an
//!   approved delete whose address is still in the state is `missing` (the delete did not
//!   happen); a state carries no status, so these are high;
//! - the attributes of every approved create, update, replace and no-op present in the state
//!   are compared with the approved `after` (`changed`) — an approved no-op that now differs
//!   was modified without approval;
//! - where the approved `before` and the state both give an `id`: an approved update or no-op
//!   whose `id` changed was replaced (`verb_mismatches`, critical, or `extra` for a no-op); an
//!   approved replace whose `id` did not change was not replaced (high); `id` itself is
//!   therefore not compared as an attribute;
//! - an address the approved plan lists as unchanged (no-op) but absent from the state was
//!   destroyed or removed from the state without approval (`extra`, high: the state cannot
//!   tell a destroy from a `forget` or `terraform state rm`).
//!
//! It cannot show: resources created outside the approved plan (a resource in the state that
//! the plan never mentions may simply have existed before — these are listed in `notes`, not
//! reported as deviations); resources destroyed that the plan never mentioned; failed or
//! retried actions; whether a create created or adopted an existing resource; changes to
//! values unknown at plan time or marked sensitive. Prefer the apply log or a generic report
//! when those matter.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::plan::read::{self as json, Path};
use crate::plan::{Ingress, PlanError, Verb};

mod apply_log;
mod compare;
mod error;
mod generic;
mod report;
mod terraform;
mod values;

pub use compare::{compare, unapproved_execution};
pub use error::ExecutionError;
pub use report::{AttributeChange, ExecutionReport, ExecutionResult, Finding, VerbMismatch};
pub use values::is_security_relevant;

/// The shape an execution result arrived in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionFormat {
    /// custos's generic execution report.
    Generic,
    /// A Terraform plan (`terraform show -json <planfile>`) of what was applied.
    TerraformPlan,
    /// A Terraform state after apply (`terraform show -json`).
    TerraformState,
    /// The `terraform apply -json` message stream.
    TerraformApplyLog,
}

/// What the executor said about the execution as a whole.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// It completed.
    Succeeded,
    /// It failed, completely or in part (or was cancelled).
    Failed,
    /// Nothing said.
    NotReported,
}

/// How one executed change ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Applied,
    /// Attempted and failed, or started and never finished: the resource may be half-changed.
    Failed,
    /// Reported but not attempted: counts as not executed.
    Skipped,
}

/// One change an execution result reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExecutedChange {
    /// The resource's address (matched exactly against the approved plan's).
    pub address: String,
    /// What was done to it.
    pub verb: Verb,
    /// Its resource type.
    pub resource_type: String,
    /// Its name.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The error reported for it, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Attribute values after the change, as reported (`null` when not reported, and for a
    /// delete); sensitive values replaced by `"(sensitive)"`.
    pub attributes: Value,
    /// Ingress the resource allows after the change, as far as the report shows.
    pub ingress: Vec<Ingress>,
    /// How many of it, when the report says (generic `quantity` and its aliases).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quantity: Option<u64>,
}

/// One managed resource of a Terraform state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StateResource {
    /// Its address (`… (deposed <key>)` for a deposed object, as in plans).
    pub address: String,
    /// Its resource type.
    pub resource_type: String,
    /// Its name.
    pub name: String,
    /// Its attribute values, sensitive ones replaced by `"(sensitive)"`.
    pub values: Value,
    /// Ingress it allows.
    pub ingress: Vec<Ingress>,
}

/// What an execution result shows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", content = "items", rename_all = "snake_case")]
pub enum Evidence {
    /// The changes made (generic report, plan of what was applied, apply log), in report
    /// order; reads and no-ops left out.
    Changes(Vec<ExecutedChange>),
    /// The managed resources present afterwards (a post-apply state).
    State(Vec<StateResource>),
}

/// An execution result, normalised.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExecutedChanges {
    /// The shape it arrived in.
    pub format: ExecutionFormat,
    /// What it says about the execution as a whole.
    pub status: ExecutionStatus,
    /// What it shows.
    pub evidence: Evidence,
    /// What reading it had to decide (a UTF-16 text decoded, entries ignored, …).
    pub notes: Vec<String>,
}

/// Reads an execution result given as JSON: one of the shapes in the module docs.
pub fn normalize_execution(result: &Value) -> Result<ExecutedChanges, ExecutionError> {
    match result {
        Value::String(text) => apply_log::from_text(text),
        Value::Array(messages) => apply_log::from_messages(messages),
        Value::Object(doc) => match detect(doc)? {
            ExecutionFormat::Generic => generic::normalize(doc),
            ExecutionFormat::TerraformPlan => terraform::from_plan(result, doc),
            ExecutionFormat::TerraformState => terraform::from_state(doc),
            ExecutionFormat::TerraformApplyLog => apply_log::from_message(result),
        },
        other => Err(json::wrong_type(
            &Path::root(),
            "an object (a generic report, a Terraform plan or state), an array of Terraform UI messages, or a string holding `terraform apply -json` output",
            other,
        )
        .into()),
    }
}

/// Reads an execution result given as bytes: a JSON document in the encodings plans are read
/// in (UTF-8 with or without a byte order mark, UTF-16 LE/BE), or the JSON-lines output of
/// `terraform apply -json` in those encodings.
pub fn normalize_execution_bytes(bytes: &[u8]) -> Result<ExecutedChanges, ExecutionError> {
    let (text, decoded) = json::decode_text(bytes).map_err(ExecutionError::from_decoding)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut changes = match serde_json::from_str::<Value>(text) {
        Ok(value) => normalize_execution(&value)?,
        Err(_) if apply_log::looks_like_json_lines(text) => apply_log::from_text(text)?,
        Err(e) => {
            return Err(ExecutionError::Json {
                message: e.to_string(),
                line: e.line(),
                column: e.column(),
            });
        }
    };
    if let Some(note) = decoded {
        let note = note.replacen("the plan was", "the execution result was", 1);
        changes.notes.insert(0, note);
    }
    Ok(changes)
}

/// Which shape an object is (see the module docs).
fn detect(doc: &Map<String, Value>) -> Result<ExecutionFormat, ExecutionError> {
    let has = |key: &str| doc.get(key).is_some_and(|v| !v.is_null());
    let generic = ["resources", "actions"].into_iter().find(|k| has(k));
    let terraform = ["resource_changes", "planned_values", "values"]
        .into_iter()
        .find(|k| has(k));
    let message = doc.get("type").is_some_and(Value::is_string)
        && ["@message", "@level", "hook"].iter().any(|k| has(k));
    match (generic, terraform) {
        (Some(first), Some(second)) => Err(ExecutionError::AmbiguousFormat {
            first: first.to_owned(),
            second: second.to_owned(),
        }),
        (Some(_), None) => Ok(ExecutionFormat::Generic),
        (None, Some("values")) => Ok(ExecutionFormat::TerraformState),
        (None, Some(_)) => Ok(ExecutionFormat::TerraformPlan),
        (None, None) if message => Ok(ExecutionFormat::TerraformApplyLog),
        (None, None) if has("format_version") || has("terraform_version") => {
            Ok(ExecutionFormat::TerraformState)
        }
        (None, None) => {
            let keys: Vec<String> = doc.keys().take(8).map(|k| format!("`{k}`")).collect();
            let keys = if keys.is_empty() {
                "none (the object is empty)".to_owned()
            } else {
                keys.join(", ")
            };
            Err(ExecutionError::UnrecognisedFormat { keys })
        }
    }
}

/// A status word, read for a whole execution or one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusWord {
    Succeeded,
    Failed,
    Skipped,
}

/// The status a word names (see the module docs for the synonyms).
fn status_word(word: &str) -> Option<StatusWord> {
    let word = crate::plan::generic::keyword(word);
    let status = match word.as_str() {
        "succeeded" | "success" | "successful" | "ok" | "complete" | "completed" | "applied"
        | "done" => StatusWord::Succeeded,
        "failed" | "failure" | "error" | "errored" | "partial" | "partially-applied"
        | "cancelled" | "canceled" | "aborted" | "interrupted" | "timeout" | "timed-out" => {
            StatusWord::Failed
        }
        "skipped" | "not-executed" | "not-applied" | "pending" => StatusWord::Skipped,
        _ => return None,
    };
    Some(status)
}

/// An optional status field (`status`, or `outcome`) of `object`.
fn read_status_word(
    object: &Map<String, Value>,
    path: &Path,
) -> Result<Option<StatusWord>, ExecutionError> {
    let Some((key, value)) = json::aliased(object, &["status", "outcome"], path)? else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or_else(|| json::wrong_type(&path.key(key), "a string", value))?;
    status_word(text)
        .map(Some)
        .ok_or_else(|| ExecutionError::UnknownStatus {
            path: path.key(key).to_string(),
            found: json::describe(value),
        })
}

/// The top-level status of a document: skipped as a whole means it did not complete.
fn read_status(doc: &Map<String, Value>) -> Result<ExecutionStatus, ExecutionError> {
    Ok(match read_status_word(doc, &Path::root())? {
        None => ExecutionStatus::NotReported,
        Some(StatusWord::Succeeded) => ExecutionStatus::Succeeded,
        Some(StatusWord::Failed | StatusWord::Skipped) => ExecutionStatus::Failed,
    })
}

/// The resource type and name a Terraform-like address implies (`module.a.aws_vpc.main[0]` →
/// `aws_vpc`, `main`); `None` for an address without a `type.name` part.
fn address_type_and_name(address: &str) -> Option<(String, String)> {
    let parts = crate::plan::terraform::address_parts(address);
    let [.., resource_type, name] = parts.as_slice() else {
        return None;
    };
    let name = name.split('[').next().unwrap_or(name);
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    (plain(resource_type) && plain(name)).then(|| ((*resource_type).to_owned(), name.to_owned()))
}

/// Rewrites the paths of a plan normaliser's error, for a document custos built from the
/// execution result: `map` turns a path in the built document into one in the result.
fn relocate(error: PlanError, map: impl Fn(&str) -> String) -> PlanError {
    match error {
        PlanError::WrongType {
            path,
            expected,
            found,
        } => PlanError::WrongType {
            path: map(&path),
            expected,
            found,
        },
        PlanError::Missing { path, aliases } => PlanError::Missing {
            path: map(&path),
            aliases,
        },
        PlanError::ConflictingAliases {
            path,
            first,
            second,
        } => PlanError::ConflictingAliases {
            path: map(&path),
            first,
            second,
        },
        PlanError::UnknownVerb { path, found } => PlanError::UnknownVerb {
            path: map(&path),
            found,
        },
        PlanError::UnknownTerraformActions { path, found } => PlanError::UnknownTerraformActions {
            path: map(&path),
            found,
        },
        PlanError::NotANumber { path, found } => PlanError::NotANumber {
            path: map(&path),
            found,
        },
        PlanError::OutOfRange { path, found, range } => PlanError::OutOfRange {
            path: map(&path),
            found,
            range,
        },
        PlanError::DuplicateAddress {
            path,
            address,
            first,
        } => PlanError::DuplicateAddress {
            path: map(&path),
            address,
            first: map(&first),
        },
        PlanError::TooLarge { path, what, limit } => PlanError::TooLarge {
            path: map(&path),
            what,
            limit,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_imply_type_and_name() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("aws_vpc.main", Some(("aws_vpc", "main"))),
            (
                "module.a[\"x.y\"].aws_subnet.private[2]",
                Some(("aws_subnet", "private")),
            ),
            ("data.aws_ami.ubuntu", Some(("aws_ami", "ubuntu"))),
            (
                "aws_s3_bucket.logs[\"a.b\"]",
                Some(("aws_s3_bucket", "logs")),
            ),
            ("vpc-0a1b2c3d", None),
            ("a b.c", None),
            ("", None),
        ];
        for (address, expected) in cases {
            let got = address_type_and_name(address);
            let expected = expected.map(|(t, n)| (t.to_owned(), n.to_owned()));
            assert_eq!(got, expected, "{address}");
        }
    }

    #[test]
    fn status_words() {
        let cases: &[(&str, Option<StatusWord>)] = &[
            ("succeeded", Some(StatusWord::Succeeded)),
            ("OK", Some(StatusWord::Succeeded)),
            ("Partially Applied", Some(StatusWord::Failed)),
            ("timed_out", Some(StatusWord::Failed)),
            ("not_executed", Some(StatusWord::Skipped)),
            ("maybe", None),
        ];
        for (word, expected) in cases {
            assert_eq!(status_word(word), *expected, "{word}");
        }
    }
}
