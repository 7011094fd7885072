//! The answer of execution verification: what goes into the ledger entry and the HTTP
//! response. Its JSON form is a contract: every list is always present (empty when nothing was
//! found), severities are the ledger's (`info` … `critical`).

use custos_core::entry::Severity;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ExecutionFormat, ExecutionStatus};
use crate::plan::Verb;

/// Whether what was executed is what was approved.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionResult {
    /// Everything executed was approved and everything approved was executed as approved.
    Matches,
    /// At least one finding.
    Deviation,
}

/// A resource changed without approval, or an approved change not (or not successfully)
/// executed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The resource's address.
    pub address: String,
    /// Its resource type (empty when the execution result does not say).
    pub resource_type: String,
    /// The verb concerned: the executed one for an unapproved change, the approved one for a
    /// missing change, the attempted one for a failed change.
    pub verb: Verb,
    /// How bad it is.
    pub severity: Severity,
    /// What happened, in a sentence.
    pub message: String,
}

/// An approved resource changed with another verb than approved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VerbMismatch {
    /// The resource's address.
    pub address: String,
    /// Its resource type.
    pub resource_type: String,
    /// The approved verb.
    pub approved: Verb,
    /// The executed verb.
    pub executed: Verb,
    /// Critical when the execution destroyed what was approved to survive; high otherwise.
    pub severity: Severity,
    /// What happened, in a sentence.
    pub message: String,
}

/// An attribute executed with another value than approved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AttributeChange {
    /// The resource's address.
    pub address: String,
    /// The top-level attribute; `ingress` for the normalised ingress rules
    /// ([`Ingress`](crate::plan::Ingress) lists on both sides) and `quantity` for a generic
    /// quantity, when those differ.
    pub attribute: String,
    /// The approved value.
    pub approved: Value,
    /// The executed value.
    pub executed: Value,
    /// Critical for a [security-relevant](super::is_security_relevant) attribute (or one
    /// differing in a security-relevant member, like `root_block_device[0].encrypted`), high
    /// otherwise.
    pub severity: Severity,
}

/// The outcome of execution verification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExecutionReport {
    /// `matches` or `deviation`.
    pub result: ExecutionResult,
    /// The highest severity of the findings; `info` when the execution matches.
    pub severity: Severity,
    /// One plain-language sentence.
    pub summary: String,
    /// The shape the execution result arrived in, when one was read.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format: Option<ExecutionFormat>,
    /// What the executor said about the execution as a whole.
    pub status: ExecutionStatus,
    /// Why the execution was not approved at all (a vetoed, escalated or unknown request);
    /// absent for an approved one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unapproved: Option<String>,
    /// Resources changed that the approved plan does not change.
    pub extra: Vec<Finding>,
    /// Approved changes not executed.
    pub missing: Vec<Finding>,
    /// Approved changes attempted and failed.
    pub failed: Vec<Finding>,
    /// Approved resources changed with another verb.
    pub verb_mismatches: Vec<VerbMismatch>,
    /// Attributes executed with other values than approved.
    pub changed: Vec<AttributeChange>,
    /// What the reader and the comparison had to decide, and what the evidence cannot show.
    pub notes: Vec<String>,
}

impl ExecutionReport {
    /// An empty report for an execution result of `format` and `status`.
    pub(super) fn new(format: Option<ExecutionFormat>, status: ExecutionStatus) -> Self {
        ExecutionReport {
            result: ExecutionResult::Matches,
            severity: Severity::Info,
            summary: String::new(),
            format,
            status,
            unapproved: None,
            extra: Vec::new(),
            missing: Vec::new(),
            failed: Vec::new(),
            verb_mismatches: Vec::new(),
            changed: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Every finding's severity.
    fn severities(&self) -> impl Iterator<Item = Severity> + '_ {
        let findings = self
            .extra
            .iter()
            .chain(&self.missing)
            .chain(&self.failed)
            .map(|f| f.severity);
        let unapproved = self.unapproved.iter().map(|_| Severity::Critical);
        findings
            .chain(self.verb_mismatches.iter().map(|m| m.severity))
            .chain(self.changed.iter().map(|c| c.severity))
            .chain(unapproved)
    }

    /// Sets `result`, `severity` and `summary` from the findings; `checked` is how many
    /// approved changes were compared.
    pub(super) fn finish(mut self, checked: usize) -> Self {
        let highest = self.severities().max();
        self.result = match highest {
            Some(_) => ExecutionResult::Deviation,
            None => ExecutionResult::Matches,
        };
        self.severity = highest.unwrap_or(Severity::Info);
        self.summary = self.summarise(checked);
        self
    }

    fn summarise(&self, checked: usize) -> String {
        if let Some(reason) = &self.unapproved {
            let count = self.extra.len();
            return format!(
                "deviation (critical): executed without approval ({reason}); {count} {} executed",
                plural(count, "change", "changes")
            );
        }
        if self.result == ExecutionResult::Matches {
            return format!(
                "matches: {checked} approved {} executed as approved",
                plural(checked, "change", "changes")
            );
        }
        let counts = [
            (self.extra.len(), "unapproved change", "unapproved changes"),
            (
                self.missing.len(),
                "approved change not executed",
                "approved changes not executed",
            ),
            (
                self.failed.len(),
                "approved change failed",
                "approved changes failed",
            ),
            (
                self.verb_mismatches.len(),
                "change with another verb than approved",
                "changes with another verb than approved",
            ),
            (
                self.changed.len(),
                "attribute with another value than approved",
                "attributes with other values than approved",
            ),
        ];
        let parts: Vec<String> = counts
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, one, many)| format!("{n} {}", plural(*n, one, many)))
            .collect();
        format!(
            "deviation ({}): {}",
            self.severity.as_str(),
            parts.join(", ")
        )
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
