//! Why a plan could not be normalised. Every message names what was wrong and where (a JSON
//! path such as `resource_changes[3].change.actions`, a byte offset, an encoding), so an
//! orchestrator can fix its plan without reading custos's source.

use thiserror::Error;

/// A plan (or the Infracost breakdown or metadata beside it) that cannot be normalised.
#[derive(Error, Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The bytes are not UTF-8 (and not a UTF-16 or UTF-8-with-BOM text either).
    #[error(
        "plan is not valid UTF-8: the byte at offset {offset} (0x{byte:02x}) is not part of a valid UTF-8 character"
    )]
    InvalidUtf8 {
        /// Offset of the first bad byte in the input.
        offset: usize,
        /// That byte.
        byte: u8,
    },
    /// The text ends in the middle of a UTF-8 character.
    #[error(
        "plan is not valid UTF-8: it ends in the middle of a character starting at byte offset {offset}"
    )]
    TruncatedUtf8 {
        /// Offset of the incomplete character.
        offset: usize,
    },
    /// An encoding custos recognises but does not read.
    #[error("plan is encoded as {encoding}, which custos does not read; re-encode it as UTF-8")]
    UnsupportedEncoding {
        /// The encoding, e.g. `UTF-32 LE`.
        encoding: &'static str,
    },
    /// A UTF-16 text that is not valid UTF-16.
    #[error(
        "plan looks like {encoding} but is not valid {encoding}: {problem} at byte offset {offset}"
    )]
    InvalidUtf16 {
        /// `UTF-16 LE` or `UTF-16 BE`.
        encoding: &'static str,
        /// Offset of the problem in the input.
        offset: usize,
        /// What is wrong (`an unpaired surrogate`, `an odd number of bytes`).
        problem: &'static str,
    },
    /// The text is not JSON.
    #[error("plan is not valid JSON: {message}")]
    Json {
        /// serde_json's description, with line and column.
        message: String,
        /// Line of the error (1-based).
        line: usize,
        /// Column of the error (1-based).
        column: usize,
    },
    /// A value of the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Where.
        path: String,
        /// What was expected (`an array`, `a string`, …).
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// A required field is absent.
    #[error("{path}: required field is missing{}", aliases_hint(.aliases))]
    Missing {
        /// Where the field should be.
        path: String,
        /// Other names the field is accepted under.
        aliases: Vec<String>,
    },
    /// Two names for the same field are both present, with different values.
    #[error("{path}: `{first}` and `{second}` are both given and disagree")]
    ConflictingAliases {
        /// The object holding them.
        path: String,
        /// The first name.
        first: String,
        /// The second name.
        second: String,
    },
    /// A generic action's verb is not one custos knows.
    #[error(
        "{path}: {found} is not a known verb (expected create, update, delete, replace, read or no-op, or a synonym such as add, modify, scale, destroy, terminate, recreate)"
    )]
    UnknownVerb {
        /// Where.
        path: String,
        /// The verb as given.
        found: String,
    },
    /// A Terraform `change.actions` list custos does not understand.
    #[error(
        "{path}: {found} is not a Terraform action list custos understands (expected [\"create\"], [\"update\"], [\"delete\"], [\"delete\",\"create\"], [\"create\",\"delete\"], [\"read\"], [\"no-op\"] or [\"forget\"])"
    )]
    UnknownTerraformActions {
        /// Where.
        path: String,
        /// The list as given.
        found: String,
    },
    /// A string that should hold a number does not.
    #[error("{path}: expected a number, found {found}")]
    NotANumber {
        /// Where.
        path: String,
        /// What was there.
        found: String,
    },
    /// A number outside the range the field allows.
    #[error("{path}: {found} is out of range (expected {range})")]
    OutOfRange {
        /// Where.
        path: String,
        /// What was there.
        found: String,
        /// The allowed range.
        range: &'static str,
    },
    /// Two actions claim the same address.
    #[error(
        "{path}: address {address:?} is already used by {first}; every action needs its own address (`id`, or `resource_type.name`)"
    )]
    DuplicateAddress {
        /// The second action.
        path: String,
        /// The address.
        address: String,
        /// Path of the first action with it.
        first: String,
    },
    /// A plan that expands to more than custos will hold.
    #[error("{path}: the plan is too large: more than {limit} {what}")]
    TooLarge {
        /// Where.
        path: String,
        /// What there is too much of.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A Terraform document that is not a plan (a state, a bare configuration).
    #[error(
        "not a Terraform plan: the document is {found} and has no `resource_changes` or `planned_values`; print a plan with `terraform show -json <planfile>`"
    )]
    NotAPlan {
        /// What the document looks like instead.
        found: String,
    },
    /// Neither a generic plan nor a Terraform plan.
    #[error(
        "not a plan: expected a generic plan (an object with an `actions` array) or a Terraform plan (`terraform show -json` output, with `resource_changes`); the top-level keys are {keys}"
    )]
    UnrecognisedFormat {
        /// The document's top-level keys (a few of them).
        keys: String,
    },
    /// A document with both a generic `actions` array and Terraform `resource_changes`.
    #[error(
        "ambiguous plan: it has both `actions` (generic plan) and `resource_changes` (Terraform plan); send one or the other"
    )]
    AmbiguousFormat,
}

/// `" (also accepted as `a`, `b`)"`, or nothing.
fn aliases_hint(aliases: &[String]) -> String {
    if aliases.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = aliases.iter().map(|a| format!("`{a}`")).collect();
        format!(" (also accepted as {})", names.join(", "))
    }
}
