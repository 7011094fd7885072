//! Full verification (SPEC §3.4): stream every stored record in physical order, recompute
//! its canonical bytes and leaf hash, the `prev_hash` chain and the tree, and check every
//! signed checkpoint against the recomputed tree. O(n) time, O(log n) memory beyond fixed
//! buffers; parsing and hashing run on every core.
//!
//! It stops at the first problem and names it by seq: a damaged record, a missing, inserted
//! or reordered entry, an entry that is not canonical or whose content changed, a broken
//! chain, a tree that disagrees with the entries, a forged checkpoint, a checkpoint the log
//! no longer matches, or a log truncated below its last checkpoint.

use custos_core::canonical::check_entry;
use custos_core::entry::ZERO_HASH;
use custos_core::merkle::{self, Frontier, Hash};
use custos_core::note::{self, Verifier};
use custos_store::{RawRecord, Store, StoreError};
use serde::Serialize;

use crate::Result;

/// What kind of problem verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Bytes of a record are damaged (checksum, length).
    CorruptRecord,
    /// An entry is missing from the sequence.
    MissingEntry,
    /// An entry appears where it does not belong (inserted or duplicated).
    InsertedEntry,
    /// Entries are out of order.
    ReorderedEntries,
    /// The stored bytes are not the canonical form of an entry.
    NotCanonical,
    /// The entry's content differs from the leaf hash the tree recorded.
    ChangedEntry,
    /// `prev_hash` does not match the previous entry.
    BrokenChain,
    /// The stored tree disagrees with the entries.
    TreeMismatch,
    /// A checkpoint's signature or text does not verify.
    ForgedCheckpoint,
    /// A checkpoint's root differs from the tree recomputed from the entries.
    CheckpointMismatch,
    /// The log ends before its last checkpoint.
    Truncated,
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The kind.
    pub kind: FailureKind,
    /// The seq it concerns, where there is one.
    pub seq: Option<u64>,
    /// The checkpoint (tree size) it concerns, where there is one.
    pub checkpoint_size: Option<u64>,
    /// What is wrong, for a person.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.seq, self.checkpoint_size) {
            (Some(seq), _) => write!(f, "seq {seq}: {}", self.message),
            (None, Some(size)) => write!(f, "checkpoint for size {size}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Size of the latest checkpoint.
    pub latest_checkpoint: Option<u64>,
    /// Recomputed root over the checked entries, hex.
    pub root: String,
    /// The first problem; `None` means intact.
    pub failure: Option<Failure>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// What each record yields after the parallel step.
struct Checked {
    leaf: Hash,
    prev: Hash,
    seq_field: u64,
}

fn check_record(rec: &RawRecord) -> Result<Checked, String> {
    let head = check_entry(&rec.bytes)?;
    Ok(Checked {
        leaf: merkle::leaf_hash(&rec.bytes),
        prev: head.prev_hash,
        seq_field: head.seq,
    })
}

fn check_parallel(records: &[RawRecord]) -> Vec<Result<Checked, String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads <= 1 || records.len() < 256 {
        return records.iter().map(check_record).collect();
    }
    let per = records.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(check_record).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("verification worker panicked".to_owned())])
            })
            .collect()
    })
}

/// Checkpoints in the order issued, verified as they are read.
struct Checkpoints<'a, S: Store> {
    store: &'a S,
    verifier: &'a Verifier,
    origin: &'a str,
    buffer: std::collections::VecDeque<custos_store::StoredCheckpoint>,
    next_index: u64,
    exhausted: bool,
    last_size: Option<u64>,
    seen: u64,
    latest_at_start: Option<u64>,
}

impl<S: Store> Checkpoints<'_, S> {
    /// The next checkpoint as (size, root), or the failure it represents.
    fn next(&mut self) -> Result<Option<Result<(u64, Hash), Failure>>> {
        if self.buffer.is_empty() && !self.exhausted {
            let chunk = match self.store.checkpoints(self.next_index, 1024) {
                Ok(c) => c,
                Err(StoreError::Corrupt { problem, .. }) => {
                    return Ok(Some(Err(Failure {
                        kind: FailureKind::ForgedCheckpoint,
                        seq: None,
                        checkpoint_size: None,
                        message: format!("the checkpoint log is damaged: {problem}"),
                    })));
                }
                Err(e) => return Err(e.into()),
            };
            self.next_index += chunk.len() as u64;
            self.exhausted = chunk.len() < 1024;
            self.buffer.extend(chunk);
        }
        let Some(stored) = self.buffer.pop_front() else {
            return Ok(None);
        };
        // On a live store, checkpoints issued after verification began are for next time.
        if self.latest_at_start.is_none_or(|l| stored.size > l) {
            self.buffer.clear();
            self.exhausted = true;
            return Ok(None);
        }
        self.seen += 1;
        let forged = |message: String| Failure {
            kind: FailureKind::ForgedCheckpoint,
            seq: None,
            checkpoint_size: Some(stored.size),
            message,
        };
        let cp = match note::open_checkpoint(&stored.note, self.verifier) {
            Ok(cp) => cp,
            Err(e) => return Ok(Some(Err(forged(format!("signature does not verify: {e}"))))),
        };
        if cp.size != stored.size {
            return Ok(Some(Err(forged(format!(
                "stored under size {} but the signed text says {}",
                stored.size, cp.size
            )))));
        }
        if cp.origin != self.origin {
            return Ok(Some(Err(forged(format!(
                "origin `{}` is not this log's `{}`",
                cp.origin, self.origin
            )))));
        }
        if let Some(last) = self.last_size
            && cp.size <= last
        {
            return Ok(Some(Err(forged(format!(
                "size {} does not grow from the previous checkpoint's {last}",
                cp.size
            )))));
        }
        self.last_size = Some(cp.size);
        Ok(Some(Ok((cp.size, cp.root))))
    }
}

/// Records read per step.
const CHUNK: usize = 16 * 1024;

/// What the read-ahead thread hands over.
enum Item {
    Chunk {
        records: Vec<RawRecord>,
        checked: Vec<Result<Checked, String>>,
        leaves: Vec<Hash>,
    },
    Corrupt(String),
    Failed(StoreError),
}

/// Scans the store in physical order, checks each record and reads the stored leaves for it,
/// until the end, a damaged record, or the receiver hanging up.
fn read_ahead<S: Store>(store: &S, trusted: u64, tx: std::sync::mpsc::SyncSender<Item>) {
    let mut cursor = None;
    let mut pos = 0u64;
    loop {
        let chunk = match store.scan(cursor, CHUNK) {
            Ok(c) => c,
            Err(StoreError::Corrupt { problem, .. }) => {
                let _ = tx.send(Item::Corrupt(problem));
                return;
            }
            Err(e) => {
                let _ = tx.send(Item::Failed(e));
                return;
            }
        };
        if chunk.records.is_empty() && chunk.next.is_none() {
            return;
        }
        let n = chunk.records.len() as u64;
        // Stored leaves are compared only where the store vouches for its tree. A tree shorter
        // than that yields the leaves it has; the gap is reported later.
        let want = (pos + n).min(trusted.max(pos));
        let leaves = match store.leaf_hashes(pos, want) {
            Ok(l) => l,
            Err(StoreError::Corrupt { seq: stored, .. }) if stored >= pos && stored < want => {
                match store.leaf_hashes(pos, stored) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Item::Failed(e));
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Item::Failed(e));
                return;
            }
        };
        let checked = check_parallel(&chunk.records);
        pos += n;
        let item = Item::Chunk {
            records: chunk.records,
            checked,
            leaves,
        };
        if tx.send(item).is_err() || chunk.next.is_none() {
            return;
        }
        cursor = chunk.next;
    }
}

/// Verifies the whole ledger in `store` against the log's `verifier` key and `origin`.
/// `progress` is called with the number of entries checked so far.
pub fn verify<S: Store>(
    store: &S,
    verifier: &Verifier,
    origin: &str,
    mut progress: impl FnMut(u64),
) -> Result<Report> {
    let mut cps = Checkpoints {
        store,
        verifier,
        origin,
        buffer: Default::default(),
        next_index: 0,
        exhausted: false,
        last_size: None,
        seen: 0,
        latest_at_start: store.latest_checkpoint()?.map(|c| c.size),
    };
    let mut frontier = Frontier::new();
    let mut pos = 0u64;
    let mut prev = ZERO_HASH;
    let mut pending = cps.next()?;
    let report = |frontier: &Frontier, cps: &Checkpoints<'_, S>, failure: Option<Failure>| Report {
        entries: frontier.size(),
        checkpoints: cps.seen,
        latest_checkpoint: cps.last_size,
        root: hex::encode(frontier.root()),
        failure,
    };
    let fail = |kind, seq: u64, message: String| Failure {
        kind,
        seq: Some(seq),
        checkpoint_size: None,
        message,
    };
    // Checkpoints of size 0 commit to the empty tree.
    loop {
        match &pending {
            Some(Err(f)) => return Ok(report(&frontier, &cps, Some(f.clone()))),
            Some(Ok((size, root))) if *size == pos => {
                if *root != frontier.root() {
                    return Ok(report(&frontier, &cps, Some(mismatch(*size))));
                }
                pending = cps.next()?;
            }
            _ => break,
        }
    }
    // Reading, canonical checks and leaf hashing of the next chunk run on other threads while
    // this one walks the chain and the tree through the current chunk.
    let trusted = store.tree_trusted_size()?;
    // Interior nodes completed in the current chunk, per level: (first index, hashes).
    let mut nodes: Vec<(u64, Vec<Hash>)> = vec![(0, Vec::new()); 64];
    let outcome = std::thread::scope(|scope| -> Result<Option<Failure>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Item>(2);
        scope.spawn(move || read_ahead(store, trusted, tx));
        for item in rx {
            let (records, checked, leaves) = match item {
                Item::Chunk {
                    records,
                    checked,
                    leaves,
                } => (records, checked, leaves),
                Item::Corrupt(problem) => {
                    return Ok(Some(fail(FailureKind::CorruptRecord, pos, problem)));
                }
                Item::Failed(e) => return Err(e.into()),
            };
            for (i, (rec, result)) in records.iter().zip(checked).enumerate() {
                if rec.seq != pos {
                    let f = order_failure(&records[i..], pos, rec.seq);
                    return Ok(Some(f));
                }
                let c = match result {
                    Ok(c) => c,
                    Err(e) => {
                        let f = fail(FailureKind::NotCanonical, pos, e);
                        return Ok(Some(f));
                    }
                };
                if c.seq_field != pos {
                    let f = fail(
                        FailureKind::ChangedEntry,
                        pos,
                        format!(
                            "the entry says seq {} but is stored as seq {pos}",
                            c.seq_field
                        ),
                    );
                    return Ok(Some(f));
                }
                match leaves.get(i) {
                    Some(stored) if *stored == c.leaf => {}
                    None if pos >= trusted => {}
                    Some(_) => {
                        let f = fail(
                            FailureKind::ChangedEntry,
                            pos,
                            "the entry's content differs from the leaf hash the tree recorded for it"
                                .into(),
                        );
                        return Ok(Some(f));
                    }
                    None => {
                        let f = fail(
                            FailureKind::TreeMismatch,
                            pos,
                            "the stored tree has no leaf hash for this entry".into(),
                        );
                        return Ok(Some(f));
                    }
                }
                match c.prev {
                    p if p == prev => {}
                    _ => {
                        let f = fail(
                            FailureKind::BrokenChain,
                            pos,
                            format!(
                                "prev_hash is not the leaf hash of seq {}",
                                pos.wrapping_sub(1)
                            ),
                        );
                        return Ok(Some(f));
                    }
                }
                prev = c.leaf;
                frontier.push(c.leaf, |level, index, hash| {
                    if level > 0 && (index + 1) << level <= trusted {
                        let slot = &mut nodes[level as usize];
                        if slot.1.is_empty() {
                            slot.0 = index;
                        }
                        slot.1.push(*hash);
                    }
                });
                pos += 1;
                while let Some(Ok((size, root))) = &pending {
                    if *size != pos {
                        break;
                    }
                    if *root != frontier.root() {
                        return Ok(Some(mismatch(*size)));
                    }
                    pending = cps.next()?;
                }
                if let Some(Err(f)) = &pending {
                    return Ok(Some(f.clone()));
                }
            }
            // Every interior node the entries imply must be the one the store keeps.
            for (level, (first, hashes)) in nodes.iter_mut().enumerate() {
                if hashes.is_empty() {
                    continue;
                }
                let stored = store
                    .tree_nodes(level as u8, *first, *first + hashes.len() as u64)
                    .unwrap_or_default();
                if let Some(k) = (0..hashes.len()).find(|&k| stored.get(k) != Some(&hashes[k])) {
                    let index = *first + k as u64;
                    let f = fail(
                        FailureKind::TreeMismatch,
                        index << level,
                        format!(
                            "the stored tree node at level {level}, index {index} (over seqs {}..{}) \
                             differs from the one the entries imply",
                            index << level,
                            ((index + 1) << level) - 1
                        ),
                    );
                    return Ok(Some(f));
                }
                hashes.clear();
            }
            progress(pos);
        }
        Ok(None)
    })?;
    if let Some(f) = outcome {
        return Ok(report(&frontier, &cps, Some(f)));
    }
    match &pending {
        Some(Ok((size, _))) => {
            let f = Failure {
                kind: FailureKind::Truncated,
                seq: Some(pos),
                checkpoint_size: Some(*size),
                message: format!(
                    "the log ends after {pos} entries but a checkpoint was signed for {size}: \
                     entries {pos}..{} are missing",
                    size - 1
                ),
            };
            return Ok(report(&frontier, &cps, Some(f)));
        }
        Some(Err(f)) => return Ok(report(&frontier, &cps, Some(f.clone()))),
        None => {}
    }
    // The stored interior nodes must agree with the recomputed tree.
    match store.root(pos.min(trusted)) {
        Ok(_) if pos > trusted => {}
        Ok(root) if root == frontier.root() => {}
        Ok(_) => {
            let f = Failure {
                kind: FailureKind::TreeMismatch,
                seq: None,
                checkpoint_size: None,
                message: format!(
                    "the stored tree's root for {pos} entries differs from the recomputed root"
                ),
            };
            return Ok(report(&frontier, &cps, Some(f)));
        }
        Err(e) => {
            let f = Failure {
                kind: FailureKind::TreeMismatch,
                seq: None,
                checkpoint_size: None,
                message: format!("the stored tree cannot produce its root: {e}"),
            };
            return Ok(report(&frontier, &cps, Some(f)));
        }
    }
    // Drain any checkpoints past the end (already reported above) and count the rest.
    while let Some(next) = cps.next()? {
        if let Err(f) = next {
            return Ok(report(&frontier, &cps, Some(f)));
        }
    }
    Ok(report(&frontier, &cps, None))
}

fn mismatch(size: u64) -> Failure {
    Failure {
        kind: FailureKind::CheckpointMismatch,
        seq: None,
        checkpoint_size: Some(size),
        message: format!(
            "the signed root differs from the tree recomputed from the first {size} entries: \
             an entry before seq {size} was changed together with the stored tree"
        ),
    }
}

fn order_failure(rest: &[RawRecord], expected: u64, found: u64) -> Failure {
    let (kind, message) = if found < expected {
        (
            FailureKind::InsertedEntry,
            format!(
                "a record filed as seq {found} stands where seq {expected} belongs: an entry was inserted or duplicated"
            ),
        )
    } else if rest.iter().skip(1).take(64).any(|r| r.seq == expected) {
        (
            FailureKind::ReorderedEntries,
            format!("seq {expected} is stored after seq {found}: entries were reordered"),
        )
    } else {
        (
            FailureKind::MissingEntry,
            format!("seq {expected} is missing: the next stored record is seq {found}"),
        )
    };
    Failure {
        kind,
        seq: Some(expected),
        checkpoint_size: None,
        message,
    }
}
