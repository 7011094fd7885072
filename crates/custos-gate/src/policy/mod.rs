//! The policy layer of the gate (SPEC §4.2): the seven hard ("constitutional") policies, the
//! soft policies, and operator policies, all written in Rego and evaluated on the normalised
//! plan; a policy bundle hash recorded with each decision; and the runner behind
//! `custos policy test`.
//!
//! Callers speak to the [`PolicyEngine`] trait; [`RegoPolicyEngine`] implements it with
//! regorus (pinned exactly, see DESIGN.md). Evaluation returns a `Result`: a
//! [`PolicyError`] (a policy that does not parse, fails to evaluate, runs out of time or
//! produces output outside the contract) has no outcome to fall back on, so the caller cannot
//! mistake it for "no violations" — SPEC §4.1 makes it fail secure (never approved).
//!
//! # What a policy sees
//! The input document is [`PolicyInput`]:
//! `{"request": {"request_id", "user_request", "metadata": {...}}, "plan": <NormalizedPlan>}`
//! — the request's metadata as sent (SPEC §4.1) and the plan in the JSON form documented in
//! [`crate::plan`]. The raw plan is not part of it: policies read the normalised view.
//!
//! # The Rego output contract
//! Every policy is a Rego v1 package exposing `violations`, a set (or array) of objects:
//!
//! | key | type | |
//! | --- | --- | --- |
//! | `message` | non-empty string | required: what is wrong, for a person |
//! | `severity` | `info` \| `low` \| `medium` \| `high` \| `critical` | required |
//! | `evidence` | any JSON | optional (`null`): the facts, e.g. addresses, CIDRs, ports |
//! | `cure` | an [`Approval`] name | operator policies only, optional |
//! | `kind` | `hard` \| `soft` | operator policies only, optional (default `hard`) |
//!
//! Any other key, a missing or mistyped field, or a `violations` that is neither a set nor an
//! array is [`PolicyError::MalformedOutput`]. Soft policies also expose `evaluated`, a
//! boolean: `false` means the plan does not describe the attribute, so the policy is
//! [`SoftPolicyStatus::NotEvaluated`] (SPEC §4.2) — and must then report no violations.
//!
//! Packages: `custos.hard.<id>` and `custos.soft.<id>` (built in), `custos.lib` (built-in
//! helpers), `custos.operator.<name>` (operators). For built-in policies the kind and the
//! cure come from custos's own table ([`BUILTIN_POLICIES`]), never from Rego, so that a
//! policy's consequence is reviewed in Rust and cannot drift with an edit of its Rego.
//! An operator policy's id is its package without the `custos.` prefix
//! (`operator.<name>`); its violations are hard unless they say `"kind": "soft"`, and carry
//! the cure they name.
//!
//! # Consequences
//! [`Violation::effect`]: hard without a cure vetoes; hard or soft with a cure escalates for
//! that approval (soft policies that need a human name [`Approval::Human`]); soft without a
//! cure is information and never blocks.
//!
//! # Hard policies cannot be disabled
//! The built-in modules are compiled into the binary (`include_str!`). Operator files may
//! only declare packages under `custos.operator.`; every other package under `custos.`
//! (and the `custos_config` data root) is reserved, and a file that declares one is refused
//! with [`PolicyError::ReservedPackage`] naming the file. Rego cannot write outside its own
//! package, so an operator policy can add violations but never remove or shadow a built-in
//! one. [`SoftPolicyConfig`] can disable soft policies; naming a hard policy there is an
//! error.
//!
//! # Bundle hash
//! See [`PolicyBundle`]: SHA-256 over a `sha256sum`-style listing of every built-in and
//! operator file and the soft-policy configuration, sorted by path.
//!
//! # Evaluation
//! Everything is parsed, checked and prepared once, when the engine is built (a policy that
//! does not compile stops startup, not a review). Each evaluation clones the prepared engine
//! (microseconds), sets the input, and evaluates each policy's rules in turn; each rule may
//! run for at most the engine's time limit (default 1 s), past which the evaluation fails.
//! regorus charges a microsecond or two per builtin or function call, so the built-in Rego
//! filters actions with plain comparisons before calling anything (see `policies/lib`).

mod builtin;
mod bundle;
mod config;
mod output;
mod rego;
mod testing;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::NormalizedPlan;
use crate::request::{Metadata, ReviewRequest};

pub use builtin::{BUILTIN_POLICIES, BuiltinPolicy};
pub use bundle::{BundleFile, OperatorPolicies, PolicyBundle};
pub use config::SoftPolicyConfig;
pub use rego::RegoPolicyEngine;
pub use testing::{
    PolicyTestReport, PolicyTestResult, TestOutcome, run_builtin_policy_tests, run_policy_tests,
};

/// Evaluates the gate's policies on one review. Implementations are shared across request
/// handlers, hence `Send + Sync`.
pub trait PolicyEngine: Send + Sync {
    /// Evaluates every enabled policy. An error means no decision can rest on policy: the
    /// caller must treat it as fail secure (SPEC §4.1: never `approved`).
    #[must_use = "a policy error must fail the review secure"]
    fn evaluate(&self, input: &PolicyInput<'_>) -> Result<PolicyOutcome, PolicyError>;

    /// Hex SHA-256 of the policy bundle this engine evaluates (see [`PolicyBundle`]).
    fn bundle_hash(&self) -> &str;
}

/// The input document policies see as `input` (see the module docs).
#[derive(Serialize, Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    /// The review request, without its raw plan.
    pub request: RequestFacts<'a>,
    /// The normalised plan.
    pub plan: &'a NormalizedPlan,
}

/// What policies see of the review request (`input.request`).
#[derive(Serialize, Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// The orchestrator's id for the request.
    pub request_id: &'a str,
    /// The user's words.
    pub user_request: &'a str,
    /// The request's metadata, unknown fields included.
    pub metadata: &'a Metadata,
}

impl<'a> PolicyInput<'a> {
    /// The input for `request`, whose plan was normalised into `plan`.
    pub fn new(request: &'a ReviewRequest, plan: &'a NormalizedPlan) -> Self {
        PolicyInput {
            request: RequestFacts {
                request_id: &request.request_id,
                user_request: &request.user_request,
                metadata: &request.metadata,
            },
            plan,
        }
    }
}

/// Hard ("constitutional", cannot be disabled) or soft (a warning; configurable).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Blocks: vetoes, or escalates for its cure.
    Hard,
    /// Warns: escalates for its cure if it has one, else informs.
    Soft,
}

/// How serious a violation is: the ledger's own severity scale (SPEC §3.1).
pub use custos_core::entry::Severity;

/// An approval that cures a violation (the review's `required_approvals`, SPEC §4.1).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// A change ticket id in the metadata.
    ChangeTicket,
    /// The user confirmed the deletions.
    UserDeletionConfirmation,
    /// Finance approved the cost.
    Finance,
    /// A security approver (operator policies).
    Security,
    /// A human reviewer accepts the warning (soft policies that need approval).
    Human,
}

impl Approval {
    /// The name used on the wire and in Rego (`change_ticket`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::ChangeTicket => "change_ticket",
            Approval::UserDeletionConfirmation => "user_deletion_confirmation",
            Approval::Finance => "finance",
            Approval::Security => "security",
            Approval::Human => "human",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Approval> {
        [
            Approval::ChangeTicket,
            Approval::UserDeletionConfirmation,
            Approval::Finance,
            Approval::Security,
            Approval::Human,
        ]
        .into_iter()
        .find(|approval| approval.as_str() == name)
    }
}

/// One violation of one policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Violation {
    /// Policy id: a built-in id (`no_public_production_access`) or `operator.<name>`.
    pub policy: String,
    /// Hard or soft.
    pub kind: PolicyKind,
    /// How serious.
    pub severity: Severity,
    /// What is wrong, for a person.
    pub message: String,
    /// The facts behind it (addresses, CIDRs, amounts…), as the policy gave them.
    pub evidence: Value,
    /// The approval that cures it, if one can.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cure: Option<Approval>,
}

/// What a violation does to the decision (SPEC §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Vetoed: no approval cures it (only the override chain of SPEC §4.5).
    Veto,
    /// Escalated until the approval is given.
    Escalate(Approval),
    /// Reported; never blocks.
    Inform,
}

impl Violation {
    /// Hard without a cure vetoes; with a cure (hard or soft) it escalates; soft without one
    /// informs.
    pub fn effect(&self) -> Effect {
        match (self.kind, self.cure) {
            (_, Some(approval)) => Effect::Escalate(approval),
            (PolicyKind::Hard, None) => Effect::Veto,
            (PolicyKind::Soft, None) => Effect::Inform,
        }
    }
}

/// Whether a soft policy was checked (SPEC §4.2).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SoftPolicyStatus {
    /// Checked; no violation.
    Passed,
    /// Checked; violations are in [`PolicyOutcome::violations`].
    Violated,
    /// The plan does not describe the attribute: not checked, does not block.
    NotEvaluated,
    /// Switched off in [`SoftPolicyConfig`].
    Disabled,
}

/// The status of one soft policy in one evaluation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SoftPolicyResult {
    /// Soft policy id.
    pub policy: String,
    /// Its status.
    pub status: SoftPolicyStatus,
}

/// What the policies found in one review. There is deliberately no `Default`: an outcome
/// only comes from an evaluation that succeeded.
#[must_use]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PolicyOutcome {
    /// Hash of the bundle that produced this outcome (record it with the decision).
    pub bundle_hash: String,
    /// Every violation: hard policies in table order, then operator policies by id, then
    /// soft policies.
    pub violations: Vec<Violation>,
    /// Every soft policy and whether it was checked.
    pub soft_policies: Vec<SoftPolicyResult>,
}

impl PolicyOutcome {
    /// Whether any violation vetoes.
    pub fn vetoed(&self) -> bool {
        self.violations.iter().any(|v| v.effect() == Effect::Veto)
    }

    /// The approvals that would cure the escalating violations, each once.
    pub fn required_approvals(&self) -> BTreeSet<Approval> {
        self.violations
            .iter()
            .filter_map(|v| match v.effect() {
                Effect::Escalate(approval) => Some(approval),
                Effect::Veto | Effect::Inform => None,
            })
            .collect()
    }

    /// Soft policies the plan gave nothing to check (listed in the decision).
    pub fn not_evaluated(&self) -> Vec<&str> {
        self.soft_policies
            .iter()
            .filter(|s| s.status == SoftPolicyStatus::NotEvaluated)
            .map(|s| s.policy.as_str())
            .collect()
    }
}

/// Why policies could not be loaded or evaluated. Every case is fail secure for a review.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A policy file or directory could not be read.
    #[error("reading policies at {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A policy file does not parse or compile.
    #[error("policy file {path} does not compile: {message}")]
    Compile {
        /// The file (bundle path).
        path: String,
        /// The compiler's message.
        message: String,
    },
    /// An operator file declares a package reserved for custos's built-in policies.
    #[error(
        "policy file {path} declares package {package}, which is reserved for custos's built-in policies; operator policies use package custos.operator.<name> and can add policies, never replace or remove built-in ones"
    )]
    ReservedPackage {
        /// The file (bundle path).
        path: String,
        /// The package it declares.
        package: String,
    },
    /// An operator policy file declares a package outside `custos.operator.`.
    #[error(
        "policy file {path} declares package {package}; operator policies must use package custos.operator.<name> (test files end in _test.rego)"
    )]
    NotOperatorPackage {
        /// The file (bundle path).
        path: String,
        /// The package it declares.
        package: String,
    },
    /// The soft-policy configuration is invalid (e.g. it names a hard policy).
    #[error("soft policy configuration: {0}")]
    Config(String),
    /// The input document could not be built.
    #[error("building the policy input: {0}")]
    Input(String),
    /// A policy failed to evaluate (a builtin error, a conflict, the time limit).
    #[error("policy {policy} failed to evaluate: {message}")]
    Evaluation {
        /// Policy id.
        policy: String,
        /// The engine's message.
        message: String,
    },
    /// A policy produced output outside the contract (see the module docs).
    #[error("policy {policy} produced malformed output: {message}")]
    MalformedOutput {
        /// Policy id.
        policy: String,
        /// What is wrong with it.
        message: String,
    },
}
