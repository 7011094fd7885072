//! custos-gate: the plan gate of SPEC §4. An orchestrating agent may not execute a plan until
//! custos approves it; custos decides, signs and records, and afterwards checks that what was
//! executed is what was approved.
//!
//! Decision logic here is pure (plain data in, plain data out); the service around it appends
//! to the ledger. Pieces:
//! - [`plan`]: the normalised view of a plan every policy and verifier reads, and the
//!   normalisers that build it from a generic JSON plan or a Terraform plan
//!   (`terraform show -json`), with cost from the plan, the metadata or an Infracost breakdown.
//! - [`request`]: what an orchestrator sends for review.
//! - [`intent`]: intent verification — the deterministic verifier, the optional LLM verifier, and the fail-secure rule combining them.
//! - [`policy`]: the hard, soft and operator policies (Rego on regorus), the bundle hash, `policy test`.
//! - [`token`]: approval tokens — signed notes binding request, plan hash and expiry.
//! - [`execution`]: execution verification (SPEC §4.4) — reading what was executed (generic report, Terraform plan, post-apply state or `apply -json` log) and comparing it with the approved plan.
//! - [`overrides`]: the human override chain (SPEC §4.5) — request, approval requirements, signed approvals, ledger records, rebuild.
//! - [`decision`]: the SPEC §4.1 decision rule and the plain-language summary (pure).
//! - [`review`]: one review from request to verdict (normalise, policies, intent, decide).
//! - [`service`]: the gate over the ledger — reviews recorded and signed, tokens, execution
//!   reports, overrides; every review's state folded from its ledger entries.
#![deny(missing_docs)]

pub mod decision;
pub mod execution;
pub mod intent;
pub mod overrides;
pub mod plan;
pub mod policy;
pub mod request;
pub mod review;
pub mod service;
pub mod token;
