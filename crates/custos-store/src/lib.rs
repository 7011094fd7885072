//! custos-store: the only crate that knows how ledger bytes reach disk.
//!
//! [`Store`] speaks in domain types — prepared entries in, sequenced records, leaf hashes,
//! proofs, checkpoints and query pages out — so no file layout or SQL leaks upward. Sequencing
//! (assigning `seq`, `id`, `ts` and `prev_hash`) belongs to the backend, because only the
//! backend can make it gap-free and durable in one step: the embedded backend does it in its
//! single writer thread; a database backend does it under a database lock.
//!
//! Backends:
//! - [`embedded::EmbeddedStore`]: segment files with group commit and fdatasync, the Merkle tree
//!   as per-level hash files (a superset of C2SP tlog-tiles), a checkpoint log, and rebuildable
//!   fjall indexes with an "indexed up to" watermark.
//! - `postgres::PostgresStore` (feature `postgres`): the same in tables several custos
//!   processes may share.
//!
//! The `testsuite` feature exposes [`testsuite`], the conformance tests every backend must pass.
#![deny(missing_docs)]

use std::future::Future;

use custos_core::entry::{Outcome, PreparedEntry, Severity};
use custos_core::merkle::Hash;

pub mod embedded;
mod filter;
#[cfg(feature = "postgres")]
pub mod postgres;
mod queue;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use filter::FilterView;

/// Where the time comes from: nanoseconds since the Unix epoch. Injected so tests control it.
pub type Clock = std::sync::Arc<dyn Fn() -> i128 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    })
}

/// What the store assigned to one appended entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Position in the log.
    pub seq: u64,
    /// UUID v7.
    pub id: String,
    /// Sequencing time, RFC 3339 UTC with nanoseconds.
    pub ts: String,
    /// Leaf hash of the canonical bytes.
    pub leaf_hash: Hash,
}

/// One stored entry: its position and canonical bytes, exactly as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// The seq the store filed it under.
    pub seq: u64,
    /// Canonical entry bytes.
    pub bytes: Vec<u8>,
}

/// Where a physical scan goes on; opaque to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanCursor {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    /// Records before this point (the seq expected next in an intact log).
    pub(crate) position: u64,
}

/// One chunk of a physical scan.
#[derive(Debug)]
pub struct ScanChunk {
    /// Records in storage order.
    pub records: Vec<RawRecord>,
    /// Where to continue; `None` at the end of the stored data.
    pub next: Option<ScanCursor>,
}

/// A signed checkpoint as kept by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// When it was issued, nanoseconds since the Unix epoch.
    pub issued_nanos: i128,
    /// The signed note text.
    pub note: String,
}

/// Filters of SPEC §3.6. Every filter present must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryQuery {
    /// Only this tenant (the server always sets it).
    pub tenant: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact event type.
    pub event_type: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// Exact outcome.
    pub outcome: Option<Outcome>,
    /// Severity at least this.
    pub min_severity: Option<Severity>,
    /// Resource, exact or prefix (see `resource_prefix`).
    pub resource: Option<String>,
    /// Treat `resource` as a prefix.
    pub resource_prefix: bool,
    /// Exact target.
    pub target: Option<String>,
    /// Exact trace id.
    pub trace_id: Option<String>,
    /// Exact session id.
    pub session_id: Option<String>,
    /// Sequencing time at or after this (nanoseconds since the epoch).
    pub start: Option<i128>,
    /// Sequencing time before this.
    pub end: Option<i128>,
    /// Cursor: only seqs after this one in the direction of travel.
    pub after: Option<u64>,
    /// Newest first.
    pub descending: bool,
    /// Page size, 1..=1000.
    pub limit: usize,
}

/// Largest query page.
pub const MAX_QUERY_LIMIT: usize = 1000;

/// One page of query results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryPage {
    /// Matching records in the requested order.
    pub records: Vec<RawRecord>,
    /// Cursor for the next page (`after`), if there may be more.
    pub next: Option<u64>,
}

/// What opening a store found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries in the log after recovery.
    pub size: u64,
    /// Bytes of a torn, unacknowledged tail that were discarded (moved to quarantine).
    pub discarded_bytes: u64,
    /// Where the discarded bytes were kept.
    pub quarantine: Option<String>,
    /// Entries whose derived data (offsets, tree) were recomputed from the log.
    pub rebuilt_entries: u64,
    /// Bytes of a damaged or torn tail cut off the checkpoint log (kept in a quarantine file).
    pub checkpoint_discarded_bytes: u64,
    /// Quarantined tails (this open's or an earlier one's) that no ledger entry records yet:
    /// (file name, bytes). The ledger records them, then calls
    /// [`Store::mark_recovery_recorded`].
    pub unrecorded: Vec<(String, u64)>,
}

/// The one error type of every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The append queue is full; the caller should retry later (HTTP 429/503).
    #[error("append queue is full ({queued} entries waiting); retry later")]
    Overloaded {
        /// Entries waiting when the append was refused.
        queued: usize,
    },
    /// The store stopped accepting writes after an I/O failure or shutdown.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data is damaged.
    #[error("corrupt store data at seq {seq}: {problem}")]
    Corrupt {
        /// The first seq affected.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
    /// The request itself is impossible (range beyond the tree, bad cursor, …).
    #[error("{0}")]
    Invalid(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The index database failed.
    #[error("index: {0}")]
    Index(String),
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What `/readyz` and `/metrics` need to know of a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHealth {
    /// Durable entries.
    pub size: u64,
    /// Entries the indexes cover (queries scan the rest, so results stay complete, only slower).
    pub indexed: u64,
    /// Why appends would fail, if they would: read-only, closed, or a write error that stopped
    /// the writer.
    pub unwritable: Option<String>,
}

/// The ledger's storage. One trait, several backends, one conformance suite.
///
/// Reads of the embedded backend are short positioned reads and run inline; appends wait on
/// the group commit without blocking the runtime.
pub trait Store: Send + Sync + 'static {
    /// Sequences `batch` and makes it durable; resolves once it is (group commit). Waits while
    /// the append queue is full.
    fn append(
        &self,
        batch: Vec<PreparedEntry>,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send;

    /// Like [`Store::append`], but refuses with [`StoreError::Overloaded`] instead of waiting
    /// when the queue is full.
    fn try_append(
        &self,
        batch: Vec<PreparedEntry>,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send;

    /// Durable entries in the log (the tree size).
    fn size(&self) -> Result<u64>;

    /// Whether appends can succeed now, and how far the indexes have got.
    fn health(&self) -> Result<StoreHealth>;

    /// Notes that the quarantined tails named (from [`RecoveryReport::unrecorded`]) are now
    /// recorded in the ledger, so later opens do not report them again.
    fn mark_recovery_recorded(&self, files: &[String]) -> Result<()>;

    /// What opening the store found and repaired (the ledger records a discarded tail).
    fn recovery(&self) -> RecoveryReport;

    /// The canonical bytes of entry `seq`.
    fn get(&self, seq: u64) -> Result<Option<RawRecord>>;

    /// The seq of the entry with this id.
    fn seq_of_id(&self, id: &str) -> Result<Option<u64>>;

    /// Entries `[from, to)`; the caller bounds the range.
    fn read_range(&self, from: u64, to: u64) -> Result<Vec<RawRecord>>;

    /// Reads stored records in physical order, trusting nothing derived (for verification).
    /// A damaged record is an error naming where it is.
    fn scan(&self, cursor: Option<ScanCursor>, max: usize) -> Result<ScanChunk>;

    /// Stored leaf hashes `[from, to)`.
    fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        self.tree_nodes(0, from, to)
    }

    /// Stored hashes of the complete subtrees `[from, to)` at `level` (level 0 = leaves).
    fn tree_nodes(&self, level: u8, from: u64, to: u64) -> Result<Vec<Hash>>;

    /// How many leading entries the stored tree is vouched for. Equal to the size, except for
    /// a store opened read-only after a crash, whose tree past this point recovery would
    /// recompute (verification recomputes it instead of comparing).
    fn tree_trusted_size(&self) -> Result<u64>;

    /// Merkle tree hash of the first `size` entries.
    fn root(&self, size: u64) -> Result<Hash>;

    /// RFC 9162 inclusion proof.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>>;

    /// RFC 9162 consistency proof.
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>>;

    /// Keeps a signed checkpoint (after making the tree it covers durable), unless the latest
    /// kept one is for the same or a larger tree size — on a store several processes share,
    /// another node may have issued it first. Returns the latest checkpoint after the call:
    /// `checkpoint` itself, or the one that made it unnecessary. Tree sizes of successive
    /// checkpoints strictly increase, so a checkpoint never goes back; one beyond the log is
    /// refused.
    fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<StoredCheckpoint>;

    /// The most recent checkpoint.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>>;

    /// The newest checkpoint for exactly this tree size.
    fn checkpoint_for_size(&self, size: u64) -> Result<Option<StoredCheckpoint>>;

    /// Checkpoints in the order issued, starting at the `from`-th.
    fn checkpoints(&self, from: u64, max: usize) -> Result<Vec<StoredCheckpoint>>;

    /// One page of entries matching `query`.
    fn query(&self, query: &EntryQuery) -> Result<QueryPage>;

    /// The first seq whose `ts` is at or after `nanos` (the size if none).
    fn seq_at_or_after(&self, nanos: i128) -> Result<u64>;

    /// Whether other processes may append to this store at the same time (a shared
    /// database): then whatever a process derives from the ledger in memory — the API key
    /// registry — must follow entries it did not write itself.
    fn shared(&self) -> bool {
        false
    }

    /// Records the nonce of a signed request (SPEC §4.6) of key `key_id`, to be remembered
    /// until the unix second `expires_unix`. Returns whether it is fresh: `false` when the same
    /// (key, nonce) is remembered and has not expired at `now_unix` (a replay). Durable before
    /// it returns, so a crash cannot forget a nonce that let a request through, and shared by
    /// every process on the store, so a replay sent to another node is refused too. Blocking:
    /// call it off the async executor. [`StoreError::Overloaded`] when too many nonces are
    /// live to remember another.
    fn record_nonce(
        &self,
        key_id: &str,
        nonce: &str,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool>;

    /// Waits until the secondary indexes cover every durable entry (for tests and benchmarks;
    /// queries are complete without it).
    fn wait_indexed(&self) -> impl Future<Output = Result<()>> + Send;

    /// Stops the writer after the queued appends and flushes derived state.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}
