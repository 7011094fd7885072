//! Secondary indexes in fjall: derived, rebuildable, never fsynced.
//!
//! An indexer thread follows the log and writes, per entry, posting keys
//! `FNV-1a-64(kind, tenant, value…) (8 bytes BE) | seq (u64 BE)` with empty values, the
//! id → seq map, and the "indexed up to" watermark — all in one atomic batch, so after a crash
//! the watermark and postings agree. Queries read postings below the watermark and scan the
//! log above it, so results are complete whatever the indexer's lag.
//!
//! Keys are hashed to a fixed 16 bytes because comparing long keys in the memtable was most of
//! the indexing cost. A hash collision can only add candidates: every candidate is re-checked
//! against the query after it is read from the log, so results stay exact.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use crate::filter::FilterView;
use crate::{EntryQuery, Result, StoreError};

/// Posting kinds.
pub(crate) mod kind {
    pub(crate) const TENANT: u8 = b'T';
    pub(crate) const ACTOR: u8 = b'A';
    pub(crate) const EVENT_TYPE: u8 = b'E';
    pub(crate) const ACTOR_TYPE: u8 = b'X';
    pub(crate) const RESOURCE: u8 = b'R';
    pub(crate) const TARGET: u8 = b'G';
    pub(crate) const TRACE: u8 = b'C';
    pub(crate) const SESSION: u8 = b'S';
}

const WATERMARK: &[u8] = b"indexed_upto";
const FORMAT: &[u8] = b"format";
/// Bump when the key layout changes: an index of another format is rebuilt.
const FORMAT_VERSION: &[u8] = b"2";
const TENANT_PREFIX: &[u8] = b"tenant/";

fn index_err(e: fjall::Error) -> StoreError {
    StoreError::Index(e.to_string())
}

/// The index database.
pub(crate) struct Index {
    db: Database,
    postings: Keyspace,
    ids: Keyspace,
    meta: Keyspace,
    /// Entries below this seq are indexed.
    pub(crate) watermark: AtomicU64,
    pub(crate) stop: AtomicBool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

/// The posting key prefix for `kind`, `tenant` and `parts`: a 64-bit FNV-1a hash, with 0xFF
/// (never a byte of UTF-8) between fields so that field boundaries cannot be shifted.
pub(crate) fn prefix(kind: u8, tenant: &str, parts: &[&str]) -> [u8; 8] {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
        h = (h ^ 0xff).wrapping_mul(PRIME);
    };
    eat(&[kind]);
    eat(tenant.as_bytes());
    for p in parts {
        eat(p.as_bytes());
    }
    h.to_be_bytes()
}

fn with_seq(prefix: [u8; 8], seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&prefix);
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl Index {
    /// Opens the index; if it claims more than the log holds (the log was cut), it is wiped.
    pub(crate) fn open(dir: &Path, log_size: u64) -> Result<Self> {
        let db = Database::builder(dir)
            .cache_size(32 * 1024 * 1024)
            .manual_journal_persist(true)
            .open()
            .map_err(index_err)?;
        // Small memtables keep memory bounded; the index is derived, so flushes are cheap to lose.
        let postings = db
            .keyspace("postings", || {
                KeyspaceCreateOptions::default().max_memtable_size(16 * 1024 * 1024)
            })
            .map_err(index_err)?;
        let ids = db
            .keyspace("ids", || {
                KeyspaceCreateOptions::default().max_memtable_size(8 * 1024 * 1024)
            })
            .map_err(index_err)?;
        let meta = db
            .keyspace("meta", || {
                KeyspaceCreateOptions::default().max_memtable_size(1024 * 1024)
            })
            .map_err(index_err)?;
        let format_ok = meta.get(FORMAT).map_err(index_err)?.as_deref() == Some(FORMAT_VERSION);
        let watermark = match meta.get(WATERMARK).map_err(index_err)? {
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                u64::from_be_bytes(b)
            }
            _ => 0,
        };
        let index = Index {
            db,
            postings,
            ids,
            meta,
            watermark: AtomicU64::new(watermark),
            stop: AtomicBool::new(false),
        };
        if watermark > log_size || !format_ok {
            tracing::warn!(watermark, log_size, format_ok, "rebuilding the index");
            index.clear()?;
            index
                .meta
                .insert(FORMAT, FORMAT_VERSION)
                .map_err(index_err)?;
        }
        Ok(index)
    }

    /// Drops every posting; the indexer rebuilds from seq 0.
    pub(crate) fn clear(&self) -> Result<()> {
        self.postings.clear().map_err(index_err)?;
        self.ids.clear().map_err(index_err)?;
        self.meta.clear().map_err(index_err)?;
        self.watermark.store(0, Ordering::Release);
        Ok(())
    }

    /// Indexes records `[from, from + records.len())` and moves the watermark, atomically.
    pub(crate) fn index_batch(&self, from: u64, records: &[crate::RawRecord]) -> Result<()> {
        let mut batch = self.db.batch();
        let mut tenants: Vec<String> = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            let seq = from + i as u64;
            if rec.seq != seq {
                return Err(StoreError::Corrupt {
                    seq,
                    problem: format!("log returned seq {} while indexing", rec.seq),
                });
            }
            let v = FilterView::parse(&rec.bytes).map_err(|e| StoreError::Corrupt {
                seq,
                problem: format!("entry does not parse: {e}"),
            })?;
            let t = v.tenant.as_ref();
            let mut put = |key: [u8; 8]| batch.insert(&self.postings, with_seq(key, seq), []);
            put(prefix(kind::TENANT, t, &[]));
            put(prefix(kind::ACTOR, t, &[&v.actor]));
            put(prefix(kind::EVENT_TYPE, t, &[&v.event_type]));
            put(prefix(kind::ACTOR_TYPE, t, &[&v.actor, &v.event_type]));
            if let Some(r) = &v.resource {
                put(prefix(kind::RESOURCE, t, &[r]));
            }
            if let Some(x) = &v.target {
                put(prefix(kind::TARGET, t, &[x]));
            }
            if let Some(x) = &v.trace_id {
                put(prefix(kind::TRACE, t, &[x]));
            }
            if let Some(x) = &v.session_id {
                put(prefix(kind::SESSION, t, &[x]));
            }
            if let Ok(id) = uuid::Uuid::parse_str(&v.id) {
                batch.insert(
                    &self.ids,
                    id.as_bytes().to_vec(),
                    seq.to_be_bytes().to_vec(),
                );
            }
            if !tenants.iter().any(|x| x == t) {
                tenants.push(t.to_owned());
            }
        }
        for t in tenants {
            let mut k = TENANT_PREFIX.to_vec();
            k.extend_from_slice(t.as_bytes());
            batch.insert(&self.meta, k, []);
        }
        let to = from + records.len() as u64;
        batch.insert(&self.meta, WATERMARK, to.to_be_bytes().to_vec());
        batch.commit().map_err(index_err)?;
        self.watermark.store(to, Ordering::Release);
        Ok(())
    }

    /// Every tenant seen so far.
    pub(crate) fn tenants(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for guard in self.meta.prefix(TENANT_PREFIX) {
            let key = guard.key().map_err(index_err)?;
            out.push(String::from_utf8_lossy(&key[TENANT_PREFIX.len()..]).into_owned());
        }
        Ok(out)
    }

    /// The seq of an indexed id.
    pub(crate) fn seq_of_id(&self, id: &uuid::Uuid) -> Result<Option<u64>> {
        Ok(self
            .ids
            .get(id.as_bytes())
            .map_err(index_err)?
            .and_then(|v| {
                let b: [u8; 8] = v.as_ref().try_into().ok()?;
                Some(u64::from_be_bytes(b))
            }))
    }

    /// Seqs in `[lo, hi)` under posting `prefix`, in order, handed to `visit` until it
    /// returns false.
    pub(crate) fn postings(
        &self,
        prefix: [u8; 8],
        lo: u64,
        hi: u64,
        descending: bool,
        mut visit: impl FnMut(u64) -> Result<bool>,
    ) -> Result<()> {
        let start = with_seq(prefix, lo);
        let end = with_seq(prefix, hi);
        let iter = self.postings.range(start..end);
        let mut step = |guard: fjall::Guard| -> Result<bool> {
            let key = guard.key().map_err(index_err)?;
            let Some(tail) = key.len().checked_sub(8).map(|n| &key[n..]) else {
                return Ok(true);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(tail);
            visit(u64::from_be_bytes(b))
        };
        if descending {
            for guard in iter.rev() {
                if !step(guard)? {
                    break;
                }
            }
        } else {
            for guard in iter {
                if !step(guard)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The posting that narrows `q` most for `tenant`.
pub(crate) fn best_posting(q: &EntryQuery, tenant: &str) -> [u8; 8] {
    match (
        &q.actor,
        &q.event_type,
        &q.trace_id,
        &q.session_id,
        &q.target,
        &q.resource,
    ) {
        (Some(a), Some(t), ..) => prefix(kind::ACTOR_TYPE, tenant, &[a, t]),
        (_, _, Some(x), ..) => prefix(kind::TRACE, tenant, &[x]),
        (_, _, _, Some(x), ..) => prefix(kind::SESSION, tenant, &[x]),
        (_, _, _, _, Some(x), _) => prefix(kind::TARGET, tenant, &[x]),
        (Some(a), ..) => prefix(kind::ACTOR, tenant, &[a]),
        (_, _, _, _, _, Some(r)) if !q.resource_prefix => prefix(kind::RESOURCE, tenant, &[r]),
        (_, Some(t), ..) => prefix(kind::EVENT_TYPE, tenant, &[t]),
        _ => prefix(kind::TENANT, tenant, &[]),
    }
}

/// Follows the log and indexes it until told to stop.
pub(crate) fn run_indexer(shared: Arc<super::Shared>) {
    let Some(index) = shared.index.as_ref() else {
        return;
    };
    const CHUNK: u64 = 16 * 1024;
    loop {
        if index.stop.load(Ordering::Acquire) {
            return;
        }
        let size = shared.size.load(Ordering::Acquire);
        let from = index.watermark.load(Ordering::Acquire);
        if from >= size {
            std::thread::park_timeout(std::time::Duration::from_millis(100));
            continue;
        }
        let to = size.min(from + CHUNK);
        let result = shared
            .read_range(from, to)
            .and_then(|records| index.index_batch(from, &records));
        if let Err(e) = result {
            // Queries stay complete (they scan past the watermark); retry later.
            tracing::error!(error = %e, from, "indexing failed; retrying in 1 s");
            std::thread::park_timeout(std::time::Duration::from_secs(1));
        }
    }
}
