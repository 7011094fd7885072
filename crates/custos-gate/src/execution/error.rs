//! Why an execution result could not be read. Like plan errors, every message names what was
//! wrong and where (a JSON path such as `resources[2].verb`, a log line, a byte offset), so an
//! orchestrator can fix its report without reading custos's source.

use thiserror::Error;

use crate::plan::PlanError;

/// An execution result that cannot be read.
#[derive(Error, Clone, Debug, PartialEq, Eq)]
pub enum ExecutionError {
    /// The bytes are not text in an encoding custos reads.
    #[error("execution result is not readable text: {reason}")]
    Text {
        /// What is wrong, with the byte offset or the encoding.
        reason: String,
    },
    /// The text is neither a JSON document nor JSON lines.
    #[error("execution result is not valid JSON: {message}")]
    Json {
        /// serde_json's description, with line and column.
        message: String,
        /// Line of the error (1-based).
        line: usize,
        /// Column of the error (1-based).
        column: usize,
    },
    /// A line of a `terraform apply -json` log that is not a JSON object.
    #[error("line {line} of the apply log: {problem}")]
    LogLine {
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A field of the wrong type, a required field missing, an unknown verb, a duplicate
    /// address…: the plan normalisers' errors, with paths into the execution result.
    #[error("{0}")]
    Invalid(#[from] PlanError),
    /// A status custos does not know.
    #[error(
        "{path}: {found} is not a known status (expected succeeded, failed or skipped, or a synonym such as success, completed, error, partial, cancelled, not-executed)"
    )]
    UnknownStatus {
        /// Where.
        path: String,
        /// The status as given.
        found: String,
    },
    /// A Terraform UI hook action custos does not know.
    #[error(
        "{path}: {found} is not a Terraform apply action custos understands (expected create, update, delete, replace, read, noop or remove)"
    )]
    UnknownHookAction {
        /// Where.
        path: String,
        /// The action as given.
        found: String,
    },
    /// A Terraform UI stream of a major version custos does not read.
    #[error(
        "{path}: Terraform machine-readable UI version {version} is not supported (custos reads major version 0 and 1)"
    )]
    UnsupportedUiVersion {
        /// Where.
        path: String,
        /// The version as given.
        version: String,
    },
    /// Both a generic change list and Terraform keys.
    #[error(
        "ambiguous execution result: it has both `{first}` (generic report) and `{second}` (Terraform); send one or the other"
    )]
    AmbiguousFormat {
        /// The generic key.
        first: String,
        /// The Terraform key.
        second: String,
    },
    /// None of the accepted shapes.
    #[error(
        "not an execution result: expected a generic report (an object with a `resources` or `actions` array), a Terraform plan (`resource_changes`), a Terraform state (`values.root_module`), or `terraform apply -json` output; the top-level keys are {keys}"
    )]
    UnrecognisedFormat {
        /// The document's top-level keys (a few of them).
        keys: String,
    },
}

impl ExecutionError {
    /// The error for bytes the plan decoder refused, worded for an execution result.
    pub(crate) fn from_decoding(error: PlanError) -> ExecutionError {
        let reason = match error {
            PlanError::InvalidUtf8 { offset, byte } => format!(
                "not valid UTF-8: the byte at offset {offset} (0x{byte:02x}) is not part of a valid UTF-8 character"
            ),
            PlanError::TruncatedUtf8 { offset } => format!(
                "not valid UTF-8: it ends in the middle of a character starting at byte offset {offset}"
            ),
            PlanError::UnsupportedEncoding { encoding } => {
                format!("encoded as {encoding}, which custos does not read; re-encode it as UTF-8")
            }
            PlanError::InvalidUtf16 {
                encoding,
                offset,
                problem,
            } => format!(
                "looks like {encoding} but is not valid {encoding}: {problem} at byte offset {offset}"
            ),
            other => other.to_string(),
        };
        ExecutionError::Text { reason }
    }
}
