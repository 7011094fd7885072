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
#![deny(missing_docs)]

pub mod plan;
pub mod request;
