//! Sequencing and group commit on PostgreSQL.
//!
//! Appenders queue requests on a bounded channel. The writer task takes every request waiting
//! (up to a group limit) and appends the whole group in ONE transaction:
//!
//! 1. `SELECT … FROM ledger_state FOR UPDATE`: the row lock serialises every writer of the
//!    database, in this process or any other, and hands over the tree as it is now (size,
//!    last leaf hash, last ts and id, frontier). Nothing is carried over from an earlier
//!    transaction, so several custos processes produce one gap-free sequence and one tree.
//! 2. Seal each entry (`seq`, UUID v7 `id`, `ts` from the injected clock — never going back —
//!    and `prev_hash`), push its leaf into the frontier, and encode the row, with the subtree
//!    hashes the leaf completes, as binary COPY data.
//! 3. `COPY ledger_entries … FROM STDIN (FORMAT binary)`, then update the state row.
//! 4. `COMMIT`; only then is every caller of the group acknowledged.
//!
//! While one transaction runs, the next group gathers, so concurrency turns into batching
//! without any artificial delay.

use std::sync::Arc;

use custos_core::merkle::{Frontier, Hash, SubtreeReader};
use custos_core::time::format_utc_nanos;
use sqlx::Row;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Inner, db_err};
use crate::filter::FilterView;
use crate::{Appended, Clock, Result, StoreError};

/// One queued append.
pub(crate) use crate::queue::WriteRequest;

/// The columns COPY writes, in order.
const COPY_SQL: &str = "COPY ledger_entries (seq, id, ts, tenant, actor, event_type, action, \
     outcome, severity, resource, target, trace_id, session_id, canonical, leaf_hash, nodes) \
     FROM STDIN (FORMAT binary)";
const COPY_COLUMNS: i16 = 16;

/// The tree state as the locked row holds it.
pub(crate) struct TreeState {
    pub(crate) size: u64,
    pub(crate) last_leaf: Hash,
    pub(crate) last_ts: i64,
    pub(crate) last_id: Option<u128>,
    /// Complete subtree hashes, largest first (one per set bit of `size`).
    pub(crate) frontier: Vec<Hash>,
}

impl TreeState {
    pub(crate) fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self> {
        let size: i64 = row
            .try_get("size")
            .map_err(db_err("reading ledger_state"))?;
        let size = u64::try_from(size).map_err(|_| corrupt_state(0, "negative size"))?;
        let last_leaf: Vec<u8> = row
            .try_get("last_leaf")
            .map_err(db_err("reading ledger_state"))?;
        let last_leaf: Hash = last_leaf
            .try_into()
            .map_err(|_| corrupt_state(size, "last_leaf is not 32 bytes"))?;
        let last_ts: i64 = row
            .try_get("last_ts")
            .map_err(db_err("reading ledger_state"))?;
        let last_id: Option<Uuid> = row
            .try_get("last_id")
            .map_err(db_err("reading ledger_state"))?;
        let frontier: Vec<u8> = row
            .try_get("frontier")
            .map_err(db_err("reading ledger_state"))?;
        if !frontier.len().is_multiple_of(32) || frontier.len() / 32 != size.count_ones() as usize {
            return Err(corrupt_state(
                size,
                "the frontier does not hold one hash per set bit of the size",
            ));
        }
        let frontier = frontier
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(TreeState {
            size,
            last_leaf,
            last_ts,
            last_id: last_id.map(|u| u.as_u128()),
            frontier,
        })
    }
}

fn corrupt_state(seq: u64, problem: &str) -> StoreError {
    StoreError::Corrupt {
        seq,
        problem: format!("ledger_state: {problem}"),
    }
}

/// Serves `Frontier::from_reader` from the stored frontier (largest subtree first).
struct StoredFrontier<'a> {
    size: u64,
    hashes: &'a [Hash],
}

impl SubtreeReader for StoredFrontier<'_> {
    type Error = StoreError;

    fn subtree(&self, level: u8, index: u64) -> Result<Hash> {
        // The k-th set bit from the top is the k-th stored hash.
        let start = index << level;
        let above = self.size & !((1u64 << level).wrapping_mul(2).wrapping_sub(1));
        let k = above.count_ones() as usize;
        if above != start {
            return Err(corrupt_state(self.size, "frontier read out of order"));
        }
        self.hashes
            .get(k)
            .copied()
            .ok_or_else(|| corrupt_state(self.size, "frontier too short"))
    }
}

/// The group commit writer (one per store instance).
pub(crate) struct Writer {
    inner: Arc<Inner>,
    clock: Clock,
    max_group_entries: usize,
    copy: Vec<u8>,
    sealed: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(inner: Arc<Inner>, clock: Clock, max_group_entries: usize) -> Self {
        Writer {
            inner,
            clock,
            max_group_entries,
            copy: Vec::new(),
            sealed: Vec::new(),
        }
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut group: Vec<WriteRequest> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut count = first.entries.len();
            group.push(first);
            while count < self.max_group_entries {
                match rx.try_recv() {
                    Ok(r) => {
                        count += r.entries.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&group).await {
                Ok(results) => {
                    for (req, appended) in group.drain(..).zip(results) {
                        req.answer(Ok(appended));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, entries = count, "appending to PostgreSQL failed");
                    let msg = e.to_string();
                    for req in group.drain(..) {
                        req.answer(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            }
        }
    }

    /// Appends the group in one transaction; nothing is acknowledged unless it commits.
    async fn commit(&mut self, group: &[WriteRequest]) -> Result<Vec<Vec<Appended>>> {
        let (tx, state) = lock_state(&self.inner).await?;
        let old_size = state.size;
        let results = self.seal_group(group, state)?;
        store_rows(tx, old_size, &results.state, &self.copy).await?;
        self.inner.saw_size(results.state.size);
        Ok(results.appended)
    }

    /// Seals every entry of the group on top of `state` and fills `self.copy`.
    fn seal_group(&mut self, group: &[WriteRequest], state: TreeState) -> Result<Sealed> {
        let mut rows = RowBuilder::start(state, &mut self.copy)?;
        let mut out = Vec::with_capacity(group.len());
        for req in group {
            let mut appended = Vec::with_capacity(req.entries.len());
            for entry in &req.entries {
                let now = i64::try_from((self.clock)())
                    .map_err(|_| StoreError::Unavailable("the clock is out of range".into()))?
                    .max(rows.last_ts);
                let ts = format_utc_nanos(i128::from(now))
                    .ok_or_else(|| StoreError::Unavailable("the clock is out of range".into()))?;
                let id = next_id(rows.last_id, now);
                let id_text = Uuid::from_u128(id).hyphenated().to_string();
                self.sealed.clear();
                let seq = rows.seq;
                let leaf = entry.seal_into(seq, &id_text, &ts, &rows.last_leaf, &mut self.sealed);
                let view = FilterView::parse(&self.sealed).map_err(|e| StoreError::Corrupt {
                    seq,
                    problem: format!("a sealed entry does not parse: {e}"),
                })?;
                rows.push(&mut self.copy, &self.sealed, &view, id, now, leaf)?;
                appended.push(Appended {
                    seq,
                    id: id_text,
                    ts,
                    leaf_hash: leaf,
                });
            }
            out.push(appended);
        }
        Ok(Sealed {
            appended: out,
            state: rows.finish(&mut self.copy),
        })
    }
}

/// Appends rows to a tree state: moves the frontier, collects the subtree hashes each leaf
/// completes and encodes the binary COPY data. Used by sealing (new entries) and by import
/// (entries another store sealed).
struct RowBuilder {
    frontier: Frontier,
    /// The stored frontier form: complete subtree hashes, largest first.
    stack: Vec<Hash>,
    seq: u64,
    last_leaf: Hash,
    last_ts: i64,
    last_id: Option<u128>,
    nodes: Vec<u8>,
}

impl RowBuilder {
    /// Starts on top of `state`; clears `copy` and writes the COPY header.
    fn start(state: TreeState, copy: &mut Vec<u8>) -> Result<Self> {
        let frontier = Frontier::from_reader(
            &StoredFrontier {
                size: state.size,
                hashes: &state.frontier,
            },
            state.size,
        )
        .map_err(|e| match e {
            custos_core::merkle::ProofError::Read(e) => e,
            other => corrupt_state(state.size, &other.to_string()),
        })?;
        copy.clear();
        copy_header(copy);
        Ok(RowBuilder {
            frontier,
            stack: state.frontier,
            seq: state.size,
            last_leaf: state.last_leaf,
            last_ts: state.last_ts,
            last_id: state.last_id,
            nodes: Vec::new(),
        })
    }

    /// Adds the entry `canonical` (whose filter fields are `view`) as the next row.
    fn push(
        &mut self,
        copy: &mut Vec<u8>,
        canonical: &[u8],
        view: &FilterView<'_>,
        id: u128,
        ts: i64,
        leaf: Hash,
    ) -> Result<()> {
        // The subtree hashes this leaf completes (levels 1..), and the new right edge.
        self.nodes.clear();
        let mut merged = 0usize;
        let mut top = leaf;
        let nodes = &mut self.nodes;
        self.frontier.push(leaf, |level, _index, hash| {
            if level > 0 {
                nodes.extend_from_slice(hash);
                merged += 1;
            }
            top = *hash;
        });
        self.stack.truncate(self.stack.len() - merged);
        self.stack.push(top);
        copy_row(
            copy,
            &CopyRow {
                seq: to_i64(self.seq)?,
                id,
                ts,
                view,
                canonical,
                leaf: &leaf,
                nodes: &self.nodes,
            },
        );
        self.last_leaf = leaf;
        self.last_ts = ts;
        self.last_id = Some(id);
        self.seq += 1;
        Ok(())
    }

    /// Ends the COPY data; the tree state after the rows.
    fn finish(self, copy: &mut Vec<u8>) -> TreeState {
        copy.extend_from_slice(&(-1i16).to_be_bytes());
        TreeState {
            size: self.seq,
            last_leaf: self.last_leaf,
            last_ts: self.last_ts,
            last_id: self.last_id,
            frontier: self.stack,
        }
    }
}

/// Locks the state row in a new transaction and reads the tree as it is now.
async fn lock_state(
    inner: &Inner,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, TreeState)> {
    let mut tx = inner
        .pool
        .begin()
        .await
        .map_err(db_err("starting the append transaction"))?;
    let row = sqlx::query(
        "SELECT size, last_leaf, last_ts, last_id, frontier FROM ledger_state \
         WHERE singleton FOR UPDATE",
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err("locking ledger_state"))?
    .ok_or_else(|| corrupt_state(0, "the state row is missing"))?;
    let state = TreeState::from_row(&row)?;
    Ok((tx, state))
}

/// COPYs the rows, moves the state row from `old_size` to `new` and commits.
async fn store_rows(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    old_size: u64,
    new: &TreeState,
    rows: &[u8],
) -> Result<()> {
    let mut copy = tx
        .copy_in_raw(COPY_SQL)
        .await
        .map_err(db_err("starting COPY into ledger_entries"))?;
    copy.send(rows).await.map_err(db_err("sending entries"))?;
    let stored = copy
        .finish()
        .await
        .map_err(db_err("copying entries into ledger_entries"))?;
    if stored != new.size - old_size {
        return Err(StoreError::Unavailable(format!(
            "COPY stored {stored} entries of {}",
            new.size - old_size
        )));
    }
    let frontier: Vec<u8> = new.frontier.iter().flatten().copied().collect();
    let updated = sqlx::query(
        "UPDATE ledger_state SET size = $1, last_leaf = $2, last_ts = $3, last_id = $4, \
         frontier = $5 WHERE singleton AND size = $6",
    )
    .bind(to_i64(new.size)?)
    .bind(&new.last_leaf[..])
    .bind(new.last_ts)
    .bind(new.last_id.map(Uuid::from_u128))
    .bind(frontier)
    .bind(to_i64(old_size)?)
    .execute(&mut *tx)
    .await
    .map_err(db_err("updating ledger_state"))?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Unavailable(
            "ledger_state changed under the row lock".into(),
        ));
    }
    tx.commit()
        .await
        .map_err(db_err("committing the append transaction"))
}

/// Appends records another store sealed, after checking each continues the log exactly:
/// canonical form, `seq` next, `prev_hash` the previous leaf hash, `ts` not going back, a
/// UUID `id`. All or nothing, in one transaction under the state row's lock. Returns the
/// size after.
pub(crate) async fn import(inner: &Inner, records: &[crate::RawRecord]) -> Result<u64> {
    let (tx, state) = lock_state(inner).await?;
    let old_size = state.size;
    let mut copy = Vec::new();
    let mut rows = RowBuilder::start(state, &mut copy)?;
    for rec in records {
        let seq = rows.seq;
        let bad = |problem: String| StoreError::Corrupt { seq, problem };
        if rec.seq != seq {
            return Err(StoreError::Invalid(format!(
                "import out of order: the store holds {seq} entries, the next record is seq {}",
                rec.seq
            )));
        }
        let head = custos_core::canonical::check_entry(&rec.bytes)
            .map_err(|e| bad(format!("not a canonical entry: {e}")))?;
        if head.seq != seq {
            return Err(bad(format!("the entry says seq {}", head.seq)));
        }
        if head.prev_hash != rows.last_leaf {
            return Err(bad(
                "prev_hash is not the leaf hash of the entry before".into()
            ));
        }
        let view = FilterView::parse(&rec.bytes).map_err(|e| bad(format!("unreadable: {e}")))?;
        let id = Uuid::parse_str(&view.id)
            .map_err(|e| bad(format!("id `{}` is not a UUID: {e}", view.id)))?
            .as_u128();
        let ts = custos_core::time::parse_rfc3339(&view.ts)
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .ok_or_else(|| bad(format!("ts `{}` is not a time custos can store", view.ts)))?;
        if ts < rows.last_ts {
            return Err(bad(format!("ts `{}` is before the entry before", view.ts)));
        }
        let leaf = custos_core::merkle::leaf_hash(&rec.bytes);
        rows.push(&mut copy, &rec.bytes, &view, id, ts, leaf)?;
    }
    let new = rows.finish(&mut copy);
    if new.size == old_size {
        return Ok(old_size);
    }
    store_rows(tx, old_size, &new, &copy).await?;
    inner.saw_size(new.size);
    Ok(new.size)
}

struct Sealed {
    appended: Vec<Vec<Appended>>,
    state: TreeState,
}

pub(crate) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is beyond the store's range")))
}

/// A UUID v7 for an entry sequenced at `ts_nanos` that sorts after `last`: the millisecond
/// from `ts`, random bits otherwise; within the same (or an earlier) millisecond the 74 bits
/// after the timestamp count up from `last`, so ids sort like seqs even across processes.
pub(crate) fn next_id(last: Option<u128>, ts_nanos: i64) -> u128 {
    const COUNTER_BITS: u32 = 74;
    let ms = (u64::try_from(ts_nanos.max(0)).unwrap_or(0) / 1_000_000) & 0xFFFF_FFFF_FFFF;
    let fresh = |ms: u64| {
        // Leave the top counter bit clear so increments have room.
        let counter = Uuid::new_v4().as_u128() & ((1u128 << (COUNTER_BITS - 1)) - 1);
        compose(ms, counter)
    };
    let Some(last) = last else {
        return fresh(ms);
    };
    let last_ms = (last >> 80) as u64;
    if ms > last_ms {
        return fresh(ms);
    }
    let counter = (((last >> 64) & 0xFFF) << 62) | (last & ((1u128 << 62) - 1));
    let next = counter + 1;
    if next >> COUNTER_BITS != 0 {
        fresh(last_ms + 1)
    } else {
        compose(last_ms, next)
    }
}

/// 48-bit ms | version 7 | 12 counter bits | variant 0b10 | 62 counter bits.
fn compose(ms: u64, counter: u128) -> u128 {
    (u128::from(ms) << 80)
        | (0x7u128 << 76)
        | (((counter >> 62) & 0xFFF) << 64)
        | (0b10u128 << 62)
        | (counter & ((1u128 << 62) - 1))
}

struct CopyRow<'a> {
    seq: i64,
    id: u128,
    ts: i64,
    view: &'a FilterView<'a>,
    canonical: &'a [u8],
    leaf: &'a Hash,
    nodes: &'a [u8],
}

/// The binary COPY signature, flags and header extension length.
fn copy_header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Entries are at most a few MiB; a field never exceeds i32.
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn opt_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => field(out, b),
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn copy_row(out: &mut Vec<u8>, r: &CopyRow<'_>) {
    let v = r.view;
    out.extend_from_slice(&COPY_COLUMNS.to_be_bytes());
    field(out, &r.seq.to_be_bytes());
    field(out, &r.id.to_be_bytes());
    field(out, &r.ts.to_be_bytes());
    field(out, v.tenant.as_bytes());
    field(out, v.actor.as_bytes());
    field(out, v.event_type.as_bytes());
    field(out, v.action.as_bytes());
    field(out, v.outcome.as_str().as_bytes());
    field(out, &severity_rank(v.severity).to_be_bytes());
    opt_field(out, v.resource.as_deref().map(str::as_bytes));
    opt_field(out, v.target.as_deref().map(str::as_bytes));
    opt_field(out, v.trace_id.as_deref().map(str::as_bytes));
    opt_field(out, v.session_id.as_deref().map(str::as_bytes));
    field(out, r.canonical);
    field(out, r.leaf);
    opt_field(out, (!r.nodes.is_empty()).then_some(r.nodes));
}

/// The stored rank of a severity (0 = info … 4 = critical).
pub(crate) fn severity_rank(s: custos_core::entry::Severity) -> i16 {
    custos_core::entry::Severity::ALL
        .iter()
        .position(|x| *x == s)
        .map_or(0, |p| p as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_and_are_v7() {
        let mut last = None;
        let mut prev = 0u128;
        for ts in [
            5_000_000i64,
            5_000_000,
            5_000_001,
            4_000_000,
            9_000_000,
            9_000_000,
        ] {
            let id = next_id(last, ts);
            assert!(id > prev, "ids must increase");
            let u = Uuid::from_u128(id);
            assert_eq!(u.get_version_num(), 7);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
            prev = id;
            last = Some(id);
        }
        // A counter at its end moves on to the next millisecond.
        let full = compose(5, (1u128 << 74) - 1);
        let next = next_id(Some(full), 5_000_000);
        assert!(next > full);
        assert_eq!((next >> 80) as u64, 6);
    }

    #[test]
    fn stored_frontier_reads_in_order() {
        let mut f = Frontier::new();
        let mut stack: Vec<Hash> = Vec::new();
        let mut mem = custos_core::merkle::MemoryTree::new();
        for i in 0..100u8 {
            let leaf = custos_core::merkle::leaf_hash(&[i]);
            let mut merged = 0;
            let mut top = leaf;
            f.push(leaf, |level, _, h| {
                if level > 0 {
                    merged += 1;
                }
                top = *h;
            });
            stack.truncate(stack.len() - merged);
            stack.push(top);
            mem.push(leaf);
            let size = u64::from(i) + 1;
            let rebuilt = Frontier::from_reader(
                &StoredFrontier {
                    size,
                    hashes: &stack,
                },
                size,
            )
            .expect("rebuilds");
            assert_eq!(rebuilt.root(), mem.root());
        }
    }
}
