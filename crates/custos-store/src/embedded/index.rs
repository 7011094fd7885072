//! Secondary indexes in fjall: derived, rebuildable, never fsynced.
//!
//! An indexer thread follows the log a chunk (≤ [`CHUNK`] entries) at a time. For every posting
//! (tenant; actor; event type; actor + event type; resource; target; trace; session) that
//! occurs in the chunk it writes one *block*: key `epoch (u32 BE) | FNV-1a-64(kind, tenant,
//! value…) | first seq (u64 BE)`, value the block's seqs as LEB128 deltas. With the id → seq map
//! and the "indexed up to" watermark this is one atomic batch, so after a crash the watermark
//! and postings agree. Queries read postings below the watermark and scan the log above it, so
//! results are complete whatever the indexer's lag.
//!
//! Why this shape (decision 0006): hashed fixed-size keys made memtable comparisons cheap;
//! blocks turn ~6 inserts per entry into one per distinct value per chunk; the epoch
//! (`seq >> 20`) in front keeps each million entries in its own key range, so compaction never
//! rewrites older epochs. A hash collision can only add candidates: every candidate is
//! re-checked against the query after it is read from the log, so results stay exact.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fjall::config::{FilterPolicy, PinningPolicy};
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
const FORMAT_VERSION: &[u8] = b"3";

/// Most entries indexed in one batch; a block never spans more seqs than this.
pub(crate) const CHUNK: u64 = 16 * 1024;
/// log2 of the entries per epoch.
const EPOCH_BITS: u32 = 20;
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

fn block_key(prefix: [u8; 8], first_seq: u64) -> [u8; 20] {
    key_in_epoch(first_seq >> EPOCH_BITS, prefix, first_seq)
}

/// A key of `epoch`'s range; `seq` may be the first seq of the next epoch, as an end bound.
fn key_in_epoch(epoch: u64, prefix: [u8; 8], first_seq: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&(epoch as u32).to_be_bytes());
    k[4..12].copy_from_slice(&prefix);
    k[12..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

/// LEB128 deltas after the first seq (which is in the key).
fn encode_block(seqs: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(seqs.len());
    for w in seqs.windows(2) {
        let mut d = w[1] - w[0];
        loop {
            let byte = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

fn decode_block(first: u64, bytes: &[u8], out: &mut Vec<u64>) -> Result<()> {
    out.clear();
    out.push(first);
    let mut cur = first;
    let mut d = 0u64;
    let mut shift = 0u32;
    for &b in bytes {
        if shift > 63 {
            return Err(StoreError::Index(
                "posting block has an overlong delta".into(),
            ));
        }
        d |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            cur = cur
                .checked_add(d)
                .ok_or_else(|| StoreError::Index("posting block overflows".into()))?;
            out.push(cur);
            d = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    Ok(())
}

impl Index {
    /// Opens the index; if it claims more than the log holds (the log was cut), it is wiped.
    pub(crate) fn open(dir: &Path, log_size: u64) -> Result<Self> {
        let db = Database::builder(dir)
            .cache_size(32 * 1024 * 1024)
            .manual_journal_persist(true)
            // One background worker: flushes and compactions of a derived index should not
            // take a core from the appends that matter.
            .worker_threads(1)
            .open()
            .map_err(index_err)?;
        // Memory must not grow with the log: small memtables, and no filter or index blocks
        // pinned in memory (they go through the bounded block cache instead). Postings are
        // only ever range-scanned, so they need no Bloom filters at all.
        let postings = db
            .keyspace("postings", || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(16 * 1024 * 1024)
                    .filter_policy(FilterPolicy::disabled())
                    .filter_block_pinning_policy(PinningPolicy::all(false))
                    .index_block_pinning_policy(PinningPolicy::all(false))
            })
            .map_err(index_err)?;
        let ids = db
            .keyspace("ids", || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(8 * 1024 * 1024)
                    .expect_point_read_hits(true)
                    .filter_block_pinning_policy(PinningPolicy::all(false))
                    .index_block_pinning_policy(PinningPolicy::all(false))
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

    /// Flushes memtables so the journals can go and the next open does not replay them.
    pub(crate) fn flush(&self) -> Result<()> {
        for ks in [&self.postings, &self.ids, &self.meta] {
            ks.rotate_memtable_and_wait().map_err(index_err)?;
        }
        Ok(())
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
        let mut blocks: std::collections::HashMap<(u64, [u8; 8]), Vec<u64>> =
            std::collections::HashMap::new();
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
            let epoch = seq >> EPOCH_BITS;
            let mut put = |key: [u8; 8]| blocks.entry((epoch, key)).or_default().push(seq);
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
        for ((_, key), seqs) in &blocks {
            batch.insert(&self.postings, block_key(*key, seqs[0]), encode_block(seqs));
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
        // The meta keyspace gets a few bytes per batch and would never fill its memtable, so
        // it would pin every journal: flush it about once per million entries.
        if from / (1 << 20) != to / (1 << 20) {
            self.meta.rotate_memtable().map_err(index_err)?;
        }
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
        // Nothing is indexed past the watermark; this also bounds the epochs visited.
        let hi = hi.min(self.watermark.load(Ordering::Acquire));
        if lo >= hi {
            return Ok(());
        }
        let (first_epoch, last_epoch) = (lo >> EPOCH_BITS, (hi - 1) >> EPOCH_BITS);
        let mut seqs = Vec::new();
        // One range per epoch; a block that starts before `lo` can still hold seqs ≥ `lo`, but
        // never one that starts more than a chunk earlier.
        let mut epoch_scan = |epoch: u64| -> Result<bool> {
            let epoch_start = epoch << EPOCH_BITS;
            let start = key_in_epoch(epoch, prefix, lo.saturating_sub(CHUNK - 1).max(epoch_start));
            let end = key_in_epoch(epoch, prefix, hi.min((epoch + 1) << EPOCH_BITS));
            let mut block = |guard: fjall::Guard| -> Result<bool> {
                let (key, value) = guard.into_inner().map_err(index_err)?;
                let mut first = [0u8; 8];
                first.copy_from_slice(&key[12..20]);
                decode_block(u64::from_be_bytes(first), &value, &mut seqs)?;
                let wanted = seqs.iter().copied().filter(|s| (lo..hi).contains(s));
                in_order(wanted, descending, &mut visit)
            };
            in_order(self.postings.range(start..end), descending, &mut block)
        };
        in_order(first_epoch..=last_epoch, descending, &mut epoch_scan)?;
        Ok(())
    }
}

/// Feeds `items` to `f` forwards or backwards until `f` says stop; returns whether it ran out.
fn in_order<T>(
    items: impl DoubleEndedIterator<Item = T>,
    descending: bool,
    f: &mut impl FnMut(T) -> Result<bool>,
) -> Result<bool> {
    let mut step = |item| f(item);
    if descending {
        for item in items.rev() {
            if !step(item)? {
                return Ok(false);
            }
        }
    } else {
        for item in items {
            if !step(item)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
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
    loop {
        if index.stop.load(Ordering::Acquire) {
            if let Err(e) = index.flush() {
                tracing::warn!(error = %e, "flushing the index on shutdown failed; it will be replayed");
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawRecord;
    use custos_core::entry::{EntryBody, Limits, Outcome, PreparedEntry};

    fn record(seq: u64) -> RawRecord {
        let mut b = EntryBody::new(
            "acme",
            if seq.is_multiple_of(3) { "a" } else { "b" },
            format!("agent:x{}", seq % 2),
            "allow",
            Outcome::Success,
        );
        b.resource = Some(format!("/r/{}", seq % 5));
        let id = format!("01a20851-ac24-7686-976a-{seq:012x}");
        let p = PreparedEntry::new(b, &Limits::default()).expect("valid");
        let (bytes, _) = p.seal(seq, &id, "2026-11-23T12:00:00.000000000Z", &[0; 32]);
        RawRecord { seq, bytes }
    }

    /// Blocks across chunk and epoch boundaries come back complete, in order, both ways.
    #[test]
    fn postings_span_chunks_and_epochs() {
        let dir = tempfile::tempdir().expect("tmp");
        let start = (1u64 << EPOCH_BITS) - 700;
        let index = Index::open(dir.path(), u64::MAX).expect("open");
        index.watermark.store(start, Ordering::Release);
        // Three batches: the middle one crosses the epoch boundary.
        for (from, n) in [(start, 500u64), (start + 500, 400), (start + 900, 300)] {
            let recs: Vec<RawRecord> = (from..from + n).map(record).collect();
            index.index_batch(from, &recs).expect("index");
        }
        let end = start + 1200;
        let actor = prefix(kind::ACTOR, "acme", &["agent:x1"]);
        let both = prefix(kind::ACTOR_TYPE, "acme", &["agent:x0", "a"]);
        for (key, pred) in [
            (
                actor,
                Box::new(|s: u64| s % 2 == 1) as Box<dyn Fn(u64) -> bool>,
            ),
            (
                both,
                Box::new(|s: u64| s.is_multiple_of(2) && s.is_multiple_of(3)),
            ),
        ] {
            for (lo, hi) in [
                (start, end),
                (start + 450, start + 950),
                (start + 699, start + 701),
                (0, u64::MAX >> 1),
            ] {
                let want: Vec<u64> = (lo.max(start)..hi.min(end)).filter(|s| pred(*s)).collect();
                let mut got = Vec::new();
                index
                    .postings(key, lo, hi, false, |s| {
                        got.push(s);
                        Ok(true)
                    })
                    .expect("asc");
                assert!(
                    got == want,
                    "ascending [{lo}, {hi}): {} results, want {}",
                    got.len(),
                    want.len()
                );
                let mut got = Vec::new();
                index
                    .postings(key, lo, hi, true, |s| {
                        got.push(s);
                        Ok(true)
                    })
                    .expect("desc");
                let mut rev = want.clone();
                rev.reverse();
                assert!(
                    got == rev,
                    "descending [{lo}, {hi}): {} results, want {}",
                    got.len(),
                    rev.len()
                );
            }
        }
        // Stopping early stops.
        let mut got = Vec::new();
        index
            .postings(actor, start, end, true, |s| {
                got.push(s);
                Ok(got.len() < 3)
            })
            .expect("desc");
        assert_eq!(got, vec![end - 1, end - 3, end - 5]);
    }

    #[test]
    fn blocks_round_trip_and_reject_garbage() {
        let seqs = vec![5u64, 6, 200, 70_000, 70_001, 1 << 40];
        let mut out = Vec::new();
        decode_block(5, &encode_block(&seqs), &mut out).expect("decode");
        assert_eq!(out, seqs);
        assert!(decode_block(0, &[0xff; 11], &mut out).is_err());
        assert!(decode_block(u64::MAX, &[1], &mut out).is_err());
    }
}
