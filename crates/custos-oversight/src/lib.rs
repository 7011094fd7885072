//! custos-oversight: agent oversight (SPEC §5).
//!
//! Pure decision logic over plain data — the registry and its diffs ([`registry`]), what
//! missed reports lead to ([`reporting`]), performance thresholds and the security score
//! ([`surveillance`]), behavioural anomaly detection ([`anomaly`]) — and a thin service
//! ([`service`]) that records every change in the ledger first and keeps the registry as a
//! projection of it, rebuildable from the ledger alone.
#![deny(missing_docs)]

pub mod anomaly;
pub mod registry;
pub mod reporting;
pub mod service;
pub mod surveillance;
