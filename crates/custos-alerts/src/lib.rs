//! custos-alerts: delivery of alerts to webhooks (SPEC §7).
//!
//! The ledger is the system of record: every alert-worthy event is already a ledger entry. So
//! alerting is a follower of the log, like the file mirror: a [`Dispatcher`] reads entries in
//! `seq` order, selects the alerts with an [`AlertRule`] (event types and a minimum severity;
//! each webhook may narrow it), and delivers each to every webhook that wants it — generic
//! JSON, Slack incoming webhook or PagerDuty Events API v2 ([`payload`]).
//!
//! # Guarantees
//!
//! - **No alert is lost, across restarts.** A persistent outbox ([`outbox`]) in a local
//!   directory records how far the log has been examined (the cursor) and every delivery not
//!   yet done. A pending delivery is durable (fdatasync) before the cursor passes its entry;
//!   a restart resumes the pending deliveries and re-examines the entries after the cursor.
//! - **At least once.** A delivery that succeeded but was not yet marked done when the process
//!   died is sent again after the restart. Every payload carries an idempotency key
//!   ([`payload::idempotency_key`], also the `Idempotency-Key` header and PagerDuty's
//!   `dedup_key`) that is the same on every attempt, on every restart and on every node, so
//!   receivers can de-duplicate.
//! - **Failed deliveries are kept and retried, never dropped**, with exponential backoff and
//!   jitter ([`backoff::backoff`]). After `max_attempts_before_report` failed attempts — or at
//!   once when the webhook rejects the request with a 4xx that retrying will not fix — the
//!   dispatcher records one `alert_delivery_failed` entry; every success is recorded as
//!   `alert_delivered`, the audit proof that the alert went out ([`record`]).
//! - **Bounded.** The outbox holds at most `max_pending` deliveries; when full, the cursor stops
//!   (backpressure: the alerts wait in the ledger, nothing is dropped) and an
//!   `alert_outbox_full` entry says so.
//! - Entries whose `event_type` starts with `alert_` are never alerts, so the dispatcher's own
//!   records cannot loop.
//!
//! Secrets: webhook URLs (a Slack webhook URL is a credential), routing keys and header values
//! are never logged, never written to the ledger and never shown by `Debug`.
#![deny(missing_docs)]

pub mod backoff;
pub mod config;
mod deliver;
mod dispatcher;
pub mod outbox;
pub mod payload;
pub mod record;
pub mod rule;

use std::path::PathBuf;

pub use config::{AlertsConfig, SinkKind, WebhookConfig};
pub use dispatcher::{Dispatcher, DispatcherStats, StatsSnapshot, run_dispatcher};
pub use record::RESERVED_EVENT_TYPES;
pub use rule::{AlertRule, EventRule};

/// Why the dispatcher could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The configuration is unusable; the message names the setting.
    #[error("alerts configuration: {0}")]
    Config(String),
    /// An outbox journal line is damaged (other than a torn last line, which is tolerated).
    #[error("{}: line {line}: {problem}", .file.display())]
    Corrupt {
        /// The journal file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The outbox cannot be used as it is (in use by another dispatcher, from another ledger).
    #[error("alert outbox {}: {problem}", .dir.display())]
    Outbox {
        /// The outbox directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Reading or writing the outbox failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] custos_ledger::LedgerError),
}

impl AlertError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AlertError {
        let context = context.into();
        move |source| AlertError::Io { context, source }
    }
}
