//! custos-ledger: the only writer of the ledger.
//!
//! Everything above appends through [`Ledger`]: it validates and redacts entries (all of a
//! batch or none), hands them to the store for sequencing and group commit, signs checkpoints
//! periodically and on demand, serves entries, queries and proofs, streams exports, and runs
//! full verification (SPEC §3.4). It refuses to open a store that is shorter than, or differs
//! from, its own last signed checkpoint: that is a rewritten log, not something to append to.
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use custos_core::entry::{Entry, EntryBody, EntryError, Limits, Outcome, PreparedEntry, Severity};
use custos_core::merkle::{ConsistencyProof, Hash, InclusionProof};
use custos_core::note::{self, Checkpoint, Signer, Verifier};
use custos_store::{Appended, Clock, EntryQuery, Store, StoreError, StoredCheckpoint};
use serde::Serialize;

pub mod export;
pub mod metrics;
pub mod mirror;
pub mod verify;

/// The tenant of entries custos writes about itself.
pub const SYSTEM_TENANT: &str = "system";

/// Ledger settings.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Checkpoint origin (C2SP tlog-checkpoint first line), e.g. `custos.example/log-1`.
    pub origin: String,
    /// Entry limits.
    pub limits: Limits,
    /// How often a checkpoint is issued when entries arrived.
    pub checkpoint_interval: Duration,
}

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// An entry was refused; `index` is its position in a batch.
    #[error("{}{error}", index.map(|i| format!("entry {i}: ")).unwrap_or_default())]
    InvalidEntry {
        /// Position in the batch.
        index: Option<usize>,
        /// What is wrong.
        error: EntryError,
    },
    /// Too much is queued; retry later.
    #[error("ledger is overloaded ({queued} entries queued); retry later")]
    Overloaded {
        /// Entries waiting.
        queued: usize,
    },
    /// The request cannot be served as asked.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// The stored log contradicts a signed checkpoint.
    #[error("ledger integrity: {0}")]
    Integrity(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(String),
    /// Writing an export or report to its destination failed.
    #[error("writing the output: {0}")]
    Output(std::io::Error),
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded { queued } => LedgerError::Overloaded { queued },
            StoreError::Invalid(msg) => LedgerError::BadRequest(msg),
            other => LedgerError::Store(other),
        }
    }
}

/// Result alias.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// What an append returns for each entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Position in the log.
    pub seq: u64,
    /// UUID v7.
    pub id: String,
    /// Sequencing time.
    pub ts: String,
    /// Leaf hash, hex.
    pub leaf_hash: String,
}

impl From<Appended> for Receipt {
    fn from(a: Appended) -> Self {
        Receipt {
            seq: a.seq,
            id: a.id,
            ts: a.ts,
            leaf_hash: hex::encode(a.leaf_hash),
        }
    }
}

/// An entry with everything an outsider needs to check it offline.
#[derive(Clone, Debug, Serialize)]
pub struct ProofBundle {
    /// The entry.
    pub entry: Entry,
    /// Its inclusion proof.
    pub proof: InclusionProof,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
}

/// How a caller names an entry: a seq (digits) or an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKey<'a> {
    Seq(u64),
    Id(&'a str),
}

impl<'a> EntryKey<'a> {
    fn parse(key: &'a str) -> Result<Self> {
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse::<u64>()
                .map(EntryKey::Seq)
                .map_err(|_| LedgerError::BadRequest(format!("`{key}` is not a valid seq")))
        } else {
            Ok(EntryKey::Id(key))
        }
    }

    /// The one answer for an entry that is not there.
    fn absent(self) -> LedgerError {
        match self {
            EntryKey::Seq(seq) => LedgerError::NotFound(format!("no entry with seq {seq}")),
            EntryKey::Id(id) => LedgerError::NotFound(format!("no entry with id `{id}`")),
        }
    }
}

/// The ledger service over a store.
pub struct Ledger<S: Store> {
    store: Arc<S>,
    signer: Signer,
    config: LedgerConfig,
    clock: Clock,
    checkpoint_lock: tokio::sync::Mutex<()>,
    metrics: metrics::LedgerMetrics,
}

impl<S: Store> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.config.origin)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Ledger<S> {
    /// Opens the ledger: checks the store against its last checkpoint and records a torn
    /// tail the store discarded during recovery.
    pub async fn open(
        store: Arc<S>,
        signer: Signer,
        config: LedgerConfig,
        clock: Clock,
    ) -> Result<Self> {
        let ledger = Ledger {
            store,
            signer,
            config,
            clock,
            checkpoint_lock: tokio::sync::Mutex::new(()),
            metrics: metrics::LedgerMetrics::default(),
        };
        ledger.check_against_latest_checkpoint()?;
        // Every tail recovery cut off — now or in a run that died before recording it — is
        // recorded, then marked so it is recorded once.
        let recovery = ledger.store.recovery();
        if !recovery.unrecorded.is_empty() {
            let mut body = EntryBody::new(
                SYSTEM_TENANT,
                "security_event",
                "system",
                "recover",
                Outcome::Success,
            );
            body.severity = Severity::High;
            let mut data = serde_json::Map::new();
            data.insert("kind".into(), "torn_tail_discarded".into());
            data.insert("at_seq".into(), recovery.size.into());
            data.insert("discarded_bytes".into(), recovery.discarded_bytes.into());
            if recovery.checkpoint_discarded_bytes > 0 {
                data.insert(
                    "checkpoint_log_discarded_bytes".into(),
                    recovery.checkpoint_discarded_bytes.into(),
                );
            }
            let files: Vec<serde_json::Value> = recovery
                .unrecorded
                .iter()
                .map(|(name, bytes)| serde_json::json!({"file": name, "bytes": bytes}))
                .collect();
            data.insert("quarantine".into(), files.into());
            body.data = data;
            ledger.append(body).await?;
            let names: Vec<String> = recovery.unrecorded.iter().map(|(n, _)| n.clone()).collect();
            ledger.store.mark_recovery_recorded(&names)?;
        }
        Ok(ledger)
    }

    fn check_against_latest_checkpoint(&self) -> Result<()> {
        let Some(latest) = self.store.latest_checkpoint()? else {
            return Ok(());
        };
        let cp = note::open_checkpoint(&latest.note, &self.signer.verifier()).map_err(|e| {
            LedgerError::Integrity(format!(
                "the latest stored checkpoint (size {}) does not verify with this log's key: {e}",
                latest.size
            ))
        })?;
        let size = self.store.size()?;
        if cp.size > size {
            return Err(LedgerError::Integrity(format!(
                "the log holds {size} entries but checkpoint {} was signed for {}: \
                 entries from seq {size} are missing (truncated); refusing to append — run `custos verify`",
                cp.size, cp.size
            )));
        }
        let root = self.store.root(cp.size)?;
        if root != cp.root {
            return Err(LedgerError::Integrity(format!(
                "the tree of the first {} entries differs from the signed checkpoint: \
                 the log was rewritten; refusing to append — run `custos verify`",
                cp.size
            )));
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    /// The log's signing key, for services that sign on the log's behalf what they record in
    /// it (gate decisions and approval tokens, SPEC §4.1).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Validates and prepares one body.
    pub fn prepare(&self, body: EntryBody) -> Result<PreparedEntry> {
        PreparedEntry::new(body, &self.config.limits)
            .map_err(|error| LedgerError::InvalidEntry { index: None, error })
    }

    /// Validates and prepares a batch: all or nothing.
    pub fn prepare_batch(&self, bodies: Vec<EntryBody>) -> Result<Vec<PreparedEntry>> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                PreparedEntry::new(b, &self.config.limits).map_err(|error| {
                    LedgerError::InvalidEntry {
                        index: Some(i),
                        error,
                    }
                })
            })
            .collect()
    }

    /// Appends one entry; returns once it is durable.
    pub async fn append(&self, body: EntryBody) -> Result<Receipt> {
        let mut out = self.append_batch(vec![body]).await.map_err(|e| match e {
            // One entry: name the field, not a batch position.
            LedgerError::InvalidEntry { error, .. } => {
                LedgerError::InvalidEntry { index: None, error }
            }
            other => other,
        })?;
        out.pop().ok_or_else(|| {
            LedgerError::Store(StoreError::Unavailable("empty append result".into()))
        })
    }

    /// Appends a batch (all validated first; nothing is appended if one is invalid), waiting
    /// for queue space.
    pub async fn append_batch(&self, bodies: Vec<EntryBody>) -> Result<Vec<Receipt>> {
        self.append_with(bodies, false).await
    }

    /// Appends prepared entries, waiting for queue space. (Not counted in the event metrics:
    /// prepared entries no longer carry their bodies.)
    pub async fn append_prepared(&self, prepared: Vec<PreparedEntry>) -> Result<Vec<Receipt>> {
        Ok(self
            .store
            .append(prepared)
            .await?
            .into_iter()
            .map(Receipt::from)
            .collect())
    }

    /// Like [`Ledger::append_batch`] but refuses with [`LedgerError::Overloaded`] when the queue
    /// is full instead of waiting (the server maps it to 429/503 with Retry-After).
    pub async fn try_append_batch(&self, bodies: Vec<EntryBody>) -> Result<Vec<Receipt>> {
        self.append_with(bodies, true).await
    }

    async fn append_with(&self, bodies: Vec<EntryBody>, try_only: bool) -> Result<Vec<Receipt>> {
        let tally = metrics::Tally::of(&bodies);
        let prepared = self.prepare_batch(bodies)?;
        let started = std::time::Instant::now();
        let appended = if try_only {
            self.store.try_append(prepared).await?
        } else {
            self.store.append(prepared).await?
        };
        self.metrics.record(tally, started.elapsed());
        Ok(appended.into_iter().map(Receipt::from).collect())
    }

    /// The ledger's metrics (SPEC §7), for the server's `/metrics`.
    pub fn metrics(&self) -> &metrics::LedgerMetrics {
        &self.metrics
    }

    /// Issues a checkpoint for the current size unless the latest already covers it, and
    /// returns the latest.
    ///
    /// Several nodes may share the store, each with its own checkpointer and the same log key
    /// and origin. Another node may then store a checkpoint for the same or a larger size
    /// first: that is not an error — it is as valid as ours (same key, and the root of a size
    /// never changes) — and it is returned instead, once it checks out against this log's key.
    /// The store keeps checkpoints in strictly increasing size, so none goes back.
    pub async fn checkpoint(&self) -> Result<StoredCheckpoint> {
        let _guard = self.checkpoint_lock.lock().await;
        let size = self.store.size()?;
        if let Some(latest) = self.store.latest_checkpoint()?
            && latest.size >= size
        {
            return Ok(latest);
        }
        let root = self.store.root(size)?;
        let cp = Checkpoint {
            origin: self.config.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = note::sign_checkpoint(&self.signer, &cp)
            .map_err(|e| LedgerError::Signing(e.to_string()))?;
        let stored = StoredCheckpoint {
            size,
            issued_nanos: (self.clock)(),
            note,
        };
        let kept = self.store.add_checkpoint(&stored)?;
        if kept != stored {
            self.check_foreign_checkpoint(&kept, &cp)?;
        }
        Ok(kept)
    }

    /// A checkpoint another writer stored in place of ours must be this log's: signed with
    /// this key, for this origin, over the tree's root at its size.
    fn check_foreign_checkpoint(&self, kept: &StoredCheckpoint, ours: &Checkpoint) -> Result<()> {
        let opened = note::open_checkpoint(&kept.note, &self.signer.verifier()).map_err(|e| {
            LedgerError::Integrity(format!(
                "the checkpoint stored for size {} by another writer does not verify with this \
                 log's key ({e}): do all nodes share keys/log.key?",
                kept.size
            ))
        })?;
        if opened.origin != ours.origin || opened.size != kept.size {
            return Err(LedgerError::Integrity(format!(
                "the checkpoint stored for size {} by another writer is for `{}` size {}, \
                 not `{}`: do all nodes share ledger.json?",
                kept.size, opened.origin, opened.size, ours.origin
            )));
        }
        let root = if opened.size == ours.size {
            ours.root
        } else {
            self.store.root(opened.size)?
        };
        if opened.root != root {
            return Err(LedgerError::Integrity(format!(
                "the checkpoint stored for size {} by another writer has another root than \
                 the tree: run `custos verify`",
                kept.size
            )));
        }
        Ok(())
    }

    /// The latest checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.store.latest_checkpoint()?)
    }

    /// The checkpoint issued for exactly `size`.
    pub fn checkpoint_for_size(&self, size: u64) -> Result<StoredCheckpoint> {
        self.store.checkpoint_for_size(size)?.ok_or_else(|| {
            LedgerError::NotFound(format!("no checkpoint was issued for tree size {size}"))
        })
    }

    /// Runs until `shutdown` resolves: a checkpoint every interval when entries arrived, and
    /// a final one on the way out.
    pub async fn run_checkpointer(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.checkpoint().await {
                tracing::error!(error = %e, "issuing a checkpoint failed");
            }
        }
        if let Err(e) = self.checkpoint().await {
            tracing::error!(error = %e, "issuing the final checkpoint failed");
        }
    }

    /// Entries in the log.
    pub fn size(&self) -> Result<u64> {
        Ok(self.store.size()?)
    }

    /// The entry at `seq`.
    pub fn get(&self, seq: u64) -> Result<Entry> {
        let rec = self
            .store
            .get(seq)?
            .ok_or_else(|| EntryKey::Seq(seq).absent())?;
        parse_record(rec.seq, &rec.bytes)
    }

    /// The entry with this seq (digits) or UUID.
    pub fn get_by_key(&self, key: &str) -> Result<Entry> {
        match EntryKey::parse(key)? {
            EntryKey::Seq(seq) => self.get(seq),
            EntryKey::Id(id) => {
                let seq = self
                    .store
                    .seq_of_id(id)?
                    .ok_or_else(|| EntryKey::Id(id).absent())?;
                self.get(seq)
            }
        }
    }

    /// The entry with this seq or UUID as `tenant` may see it: another tenant's entry gets
    /// exactly the answer an absent one gets, so its existence does not leak.
    pub fn get_in_tenant(&self, key: &str, tenant: &str) -> Result<Entry> {
        let entry = self.get_by_key(key)?;
        if entry.tenant == tenant {
            Ok(entry)
        } else {
            Err(EntryKey::parse(key)?.absent())
        }
    }

    /// Every entry matching `query`, page after page from its `after` cursor, in its order
    /// (its `limit` is ignored). For small result sets: the records of one review, the key
    /// entries since a seq.
    pub fn query_all(&self, mut query: EntryQuery) -> Result<Vec<Entry>> {
        query.limit = custos_store::MAX_QUERY_LIMIT;
        let mut out = Vec::new();
        loop {
            let (page, next) = self.query(&query)?;
            out.extend(page);
            match next {
                Some(n) => query.after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// One page of entries matching `query`, with the cursor of the next page.
    pub fn query(&self, query: &EntryQuery) -> Result<(Vec<Entry>, Option<u64>)> {
        let page = self.store.query(query)?;
        let entries = page
            .records
            .iter()
            .map(|r| parse_record(r.seq, &r.bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok((entries, page.next))
    }

    /// Inclusion proof of `seq` in the tree of `tree_size` entries (default: the latest
    /// checkpoint, issuing one first if it does not cover `seq`), with the entry and the
    /// signed checkpoint of that size.
    pub async fn prove(&self, seq: u64, tree_size: Option<u64>) -> Result<ProofBundle> {
        let entry = self.get(seq)?;
        let checkpoint = match tree_size {
            Some(size) => self.checkpoint_for_size(size)?,
            None => match self.store.latest_checkpoint()? {
                Some(cp) if cp.size > seq => cp,
                _ => self.checkpoint().await?,
            },
        };
        if seq >= checkpoint.size {
            return Err(LedgerError::BadRequest(format!(
                "seq {seq} is not in the tree of size {}",
                checkpoint.size
            )));
        }
        let hashes = self.store.inclusion_proof(seq, checkpoint.size)?;
        Ok(ProofBundle {
            entry,
            proof: InclusionProof {
                leaf_index: seq,
                tree_size: checkpoint.size,
                hashes,
            },
            checkpoint: checkpoint.note,
        })
    }

    /// Consistency proof between two tree sizes.
    pub fn consistency(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        if first > second {
            return Err(LedgerError::BadRequest(format!(
                "the first size ({first}) must not exceed the second ({second})"
            )));
        }
        let hashes = self.store.consistency_proof(first, second)?;
        Ok(ConsistencyProof {
            first,
            second,
            hashes,
        })
    }

    /// Merkle root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash> {
        Ok(self.store.root(size)?)
    }
}

/// Parses stored canonical bytes into an entry.
pub fn parse_record(seq: u64, bytes: &[u8]) -> Result<Entry> {
    Entry::from_canonical(bytes).map_err(|e| {
        LedgerError::Store(StoreError::Corrupt {
            seq,
            problem: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_store::postgres::testing::TestDatabase;
    use custos_store::postgres::{PostgresConfig, PostgresStore};

    async fn node(url: &str, seed: [u8; 32]) -> Arc<Ledger<PostgresStore>> {
        let store = PostgresStore::open(url, PostgresConfig::default())
            .await
            .expect("open");
        let config = LedgerConfig {
            origin: "nodes.test/log".into(),
            limits: Limits::default(),
            checkpoint_interval: Duration::from_secs(60),
        };
        let signer = Signer::from_seed("nodes.test/log", seed).expect("signer");
        Arc::new(
            Ledger::open(
                Arc::new(store),
                signer,
                config,
                custos_store::system_clock(),
            )
            .await
            .expect("ledger"),
        )
    }

    fn body(i: u64) -> EntryBody {
        EntryBody::new(
            "acme",
            "tool_invocation",
            format!("agent:a{i}"),
            "call",
            Outcome::Success,
        )
    }

    /// Nodes sharing a database race to checkpoint while entries arrive: no call fails, each
    /// returns a checkpoint of this log covering what was there when it began, and the stored
    /// checkpoints grow strictly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_on_one_database_checkpoint_concurrently() {
        let db = TestDatabase::create().await;
        let nodes = [node(&db.url, [4; 32]).await, node(&db.url, [4; 32]).await];
        let writer = {
            let ledger = nodes[0].clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    ledger.append(body(i)).await.expect("append");
                }
            })
        };
        let tasks: Vec<_> = (0..6)
            .map(|t| {
                let ledger = nodes[t % 2].clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let before = ledger.size().expect("size");
                        let cp = ledger.checkpoint().await.expect("checkpoint never fails");
                        assert!(cp.size >= before, "{} < {before}", cp.size);
                        let opened =
                            note::open_checkpoint(&cp.note, &ledger.verifier()).expect("opens");
                        assert_eq!(opened.root, ledger.root(cp.size).expect("root"));
                    }
                })
            })
            .collect();
        writer.await.expect("writer");
        for t in tasks {
            t.await.expect("checkpointing task");
        }
        let stored = nodes[1].store().checkpoints(0, 10_000).expect("list");
        assert!(stored.windows(2).all(|w| w[0].size < w[1].size));
        for n in &nodes {
            n.store().close().await.expect("close");
        }
    }

    /// A node signing with another key than the log's is told so when its checkpoint loses
    /// a race to the log's own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_stored_by_a_node_with_another_key_is_refused() {
        let db = TestDatabase::create().await;
        let good = node(&db.url, [4; 32]).await;
        let stranger = node(&db.url, [5; 32]).await;
        good.append(body(0)).await.expect("append");
        good.checkpoint().await.expect("checkpoint");
        // As if the stranger read the size before the good node's checkpoint was stored.
        let size = stranger.size().expect("size");
        let cp = Checkpoint {
            origin: stranger.config.origin.clone(),
            size,
            root: stranger.root(size).expect("root"),
            extensions: Vec::new(),
        };
        let kept = stranger
            .store()
            .add_checkpoint(&StoredCheckpoint {
                size,
                issued_nanos: 0,
                note: note::sign_checkpoint(&stranger.signer, &cp).expect("sign"),
            })
            .expect("add");
        assert!(matches!(
            stranger.check_foreign_checkpoint(&kept, &cp),
            Err(LedgerError::Integrity(_))
        ));
        good.check_foreign_checkpoint(&kept, &cp)
            .expect("the good node accepts its own log's checkpoint");
        for n in [good, stranger] {
            n.store().close().await.expect("close");
        }
    }
}
