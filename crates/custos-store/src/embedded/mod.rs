//! The embedded backend: a data directory, no server.
//!
//! ```text
//! <dir>/LOCK                       exclusive lock while a process writes
//! <dir>/log/seg-<first seq>.log    the entries (segments.rs); the only primary data
//! <dir>/log/offsets                u64 per seq: segment number << 40 | byte offset (derived)
//! <dir>/tree/level-NN.hashes       the Merkle tree (tree.rs, derived)
//! <dir>/tree/synced                derived files are durable up to this size
//! <dir>/checkpoints/               signed checkpoints (checkpoints.rs)
//! <dir>/index/                     fjall secondary indexes (index.rs, derived)
//! <dir>/nonces.log                 nonces of signed requests still in their window (nonces.rs)
//! <dir>/quarantine/                torn tails cut off by recovery, kept for inspection
//! ```
//!
//! Only segments and checkpoints are primary; everything else is recomputed from them. An
//! append is acknowledged after its segment bytes are fdatasynced. Derived files are synced
//! every `derived_sync_interval` and before a checkpoint is stored, and `tree/synced` records how
//! far they are durable, so recovery after a crash recomputes only what came after.

mod checkpoints;
mod index;
mod nonces;
mod segments;
mod tree;
mod writer;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_core::entry::{PreparedEntry, ZERO_HASH};
use custos_core::merkle::{self, Frontier, Hash};
use tokio::sync::mpsc;

use self::checkpoints::Checkpoints;
use self::index::Index;
use self::segments::{Damage, HEADER, Segments};
use self::tree::Levels;
use self::writer::{WriteRequest, Writer};
use crate::filter::FilterView;
use crate::{
    Appended, Clock, EntryQuery, MAX_QUERY_LIMIT, QueryPage, RawRecord, RecoveryReport, Result,
    ScanChunk, ScanCursor, Store, StoreError, StoreHealth, StoredCheckpoint, system_clock,
};
pub use nonces::{MAX_NONCES, NonceJournal};

/// Tuning of the embedded backend.
#[derive(Clone)]
pub struct EmbeddedConfig {
    /// Start a new segment once the current one reaches this size.
    pub segment_bytes: u64,
    /// Entries that may wait in the append queue; beyond it appends wait or are refused.
    pub max_queued_entries: usize,
    /// Most entries one group commit takes.
    pub max_group_entries: usize,
    /// How often derived files are made durable.
    pub derived_sync_interval: Duration,
    /// Maintain secondary indexes (queries still work without, by scanning).
    pub index: bool,
    /// Time source for `ts`.
    pub clock: Clock,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            segment_bytes: 512 * 1024 * 1024,
            max_queued_entries: 200_000,
            max_group_entries: 32_768,
            derived_sync_interval: Duration::from_secs(1),
            index: true,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for EmbeddedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedConfig")
            .field("segment_bytes", &self.segment_bytes)
            .field("max_queued_entries", &self.max_queued_entries)
            .field("max_group_entries", &self.max_group_entries)
            .field("derived_sync_interval", &self.derived_sync_interval)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Largest batch one append may carry.
pub const MAX_BATCH: usize = 10_000;

pub(crate) fn pack_offset(segment: u64, offset: u64) -> u64 {
    (segment << 40) | offset
}

fn unpack_offset(v: u64) -> (u64, u64) {
    (v >> 40, v & ((1 << 40) - 1))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(format!(
            "syncing directory {}",
            dir.display()
        )))
}

/// State shared by the writer, the indexer and readers.
pub(crate) struct Shared {
    pub(crate) log_dir: PathBuf,
    tree_dir: PathBuf,
    pub(crate) segments: Segments,
    offsets: File,
    pub(crate) levels: Levels,
    checkpoints: Checkpoints,
    pub(crate) index: Option<Index>,
    /// Durable entries (published by the writer after fsync and derived writes).
    pub(crate) size: AtomicU64,
    poison: Mutex<Option<String>>,
    sync_lock: Mutex<()>,
    indexer_thread: Mutex<Option<std::thread::Thread>>,
    writable: bool,
    /// `tree/synced` as found at open.
    synced_at_open: u64,
}

impl Shared {
    pub(crate) fn poison(&self, reason: String) {
        if let Ok(mut p) = self.poison.lock() {
            p.get_or_insert(reason);
        }
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poison.lock().ok().and_then(|p| p.clone())
    }

    pub(crate) fn wake_indexer(&self) {
        if let Ok(t) = self.indexer_thread.lock()
            && let Some(t) = t.as_ref()
        {
            t.unpark();
        }
    }

    pub(crate) fn write_offsets(&self, start_seq: u64, bytes: &[u8]) -> Result<()> {
        self.offsets
            .write_all_at(bytes, start_seq * 8)
            .map_err(StoreError::io("writing log/offsets"))
    }

    /// Makes offsets and tree files durable up to the published size and records it.
    pub(crate) fn sync_derived(&self) -> Result<()> {
        let _guard = self
            .sync_lock
            .lock()
            .map_err(|_| StoreError::Unavailable("sync lock poisoned".into()))?;
        let size = self.size.load(Ordering::Acquire);
        self.offsets
            .sync_data()
            .map_err(StoreError::io("syncing log/offsets"))?;
        self.levels.sync()?;
        write_synced(&self.tree_dir, size)
    }

    fn offset_of(&self, seq: u64) -> Result<(u64, u64)> {
        let mut b = [0u8; 8];
        self.offsets
            .read_exact_at(&mut b, seq * 8)
            .map_err(StoreError::io(format!("reading log/offsets for seq {seq}")))?;
        Ok(unpack_offset(u64::from_le_bytes(b)))
    }

    fn get(&self, seq: u64) -> Result<Option<RawRecord>> {
        if seq >= self.size.load(Ordering::Acquire) {
            return Ok(None);
        }
        let (no, off) = self.offset_of(seq)?;
        let seg = self.segments.get(no).ok_or_else(|| StoreError::Corrupt {
            seq,
            problem: format!("offsets point at missing segment #{no}"),
        })?;
        match seg.read_at(off)? {
            Ok((found, bytes)) if found == seq => Ok(Some(RawRecord { seq, bytes })),
            Ok((found, _)) => Err(StoreError::Corrupt {
                seq,
                problem: format!("offsets point at the record of seq {found}"),
            }),
            Err(d) => Err(StoreError::Corrupt {
                seq,
                problem: d.describe(),
            }),
        }
    }

    /// Entries `[from, to)`, reading each segment's span with one read.
    pub(crate) fn read_range(&self, from: u64, to: u64) -> Result<Vec<RawRecord>> {
        let to = to.min(self.size.load(Ordering::Acquire));
        if from >= to {
            return Ok(Vec::new());
        }
        let n = (to - from) as usize;
        let mut raw = vec![0u8; n * 8];
        self.offsets
            .read_exact_at(&mut raw, from * 8)
            .map_err(StoreError::io("reading log/offsets"))?;
        let offs: Vec<(u64, u64)> = raw
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                unpack_offset(u64::from_le_bytes(b))
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let (no, start) = offs[i];
            let mut j = i;
            while j + 1 < n && offs[j + 1].0 == no {
                j += 1;
            }
            let seg = self.segments.get(no).ok_or_else(|| StoreError::Corrupt {
                seq: from + i as u64,
                problem: format!("offsets point at missing segment #{no}"),
            })?;
            // The span ends after the last record; read its header for the length.
            let (last_seq, last) = match seg.read_at(offs[j].1)? {
                Ok(r) => r,
                Err(d) => {
                    return Err(StoreError::Corrupt {
                        seq: from + j as u64,
                        problem: d.describe(),
                    });
                }
            };
            let end = offs[j].1 + (HEADER + last.len()) as u64;
            let span = end.checked_sub(start).ok_or_else(|| StoreError::Corrupt {
                seq: from + i as u64,
                problem: "offsets are not increasing".into(),
            })?;
            let mut buf = vec![0u8; span as usize];
            seg.file
                .read_exact_at(&mut buf, start)
                .map_err(StoreError::io(format!("reading {}", seg.path.display())))?;
            for (k, &(_, off)) in offs.iter().enumerate().take(j + 1).skip(i) {
                let seq = from + k as u64;
                let rel = off.checked_sub(start).ok_or_else(|| StoreError::Corrupt {
                    seq,
                    problem: "offsets are not increasing".into(),
                })? as usize;
                match buf.get(rel..).map(segments::decode) {
                    Some(Ok((found, payload, _))) if found == seq => out.push(RawRecord {
                        seq,
                        bytes: buf[rel + payload.start..rel + payload.end].to_vec(),
                    }),
                    Some(Ok((found, ..))) => {
                        return Err(StoreError::Corrupt {
                            seq,
                            problem: format!("offsets point at the record of seq {found}"),
                        });
                    }
                    Some(Err(d)) => {
                        return Err(StoreError::Corrupt {
                            seq,
                            problem: d.describe(),
                        });
                    }
                    None => {
                        return Err(StoreError::Corrupt {
                            seq,
                            problem: "offset beyond the segment".into(),
                        });
                    }
                }
            }
            debug_assert_eq!(last_seq, from + j as u64);
            i = j + 1;
        }
        Ok(out)
    }

    fn ts_of(&self, seq: u64) -> Result<i128> {
        let rec = self
            .get(seq)?
            .ok_or_else(|| StoreError::Invalid(format!("no entry {seq}")))?;
        ts_from_canonical(&rec.bytes).ok_or_else(|| StoreError::Corrupt {
            seq,
            problem: "entry has no readable ts".into(),
        })
    }
}

/// The `ts` of canonical entry bytes: always the last member.
fn ts_from_canonical(bytes: &[u8]) -> Option<i128> {
    let marker = b"\"ts\":\"";
    let start = bytes.windows(marker.len()).rposition(|w| w == marker)? + marker.len();
    let end = start + bytes[start..].iter().position(|&b| b == b'"')?;
    let s = std::str::from_utf8(&bytes[start..end]).ok()?;
    custos_core::time::parse_rfc3339(s).ok()
}

fn write_synced(tree_dir: &Path, size: u64) -> Result<()> {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&size.to_le_bytes());
    b[8..].copy_from_slice(&crc32c::crc32c(&size.to_le_bytes()).to_le_bytes());
    let tmp = tree_dir.join("synced.tmp");
    let path = tree_dir.join("synced");
    std::fs::write(&tmp, b).map_err(StoreError::io("writing tree/synced"))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("syncing tree/synced"))?;
    std::fs::rename(&tmp, &path).map_err(StoreError::io("renaming tree/synced"))?;
    sync_dir(tree_dir)
}

fn read_synced(tree_dir: &Path) -> u64 {
    let Ok(b) = std::fs::read(tree_dir.join("synced")) else {
        return 0;
    };
    if b.len() != 12 {
        return 0;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&b[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[8..]);
    if crc32c::crc32c(&size) == u32::from_le_bytes(crc) {
        u64::from_le_bytes(size)
    } else {
        0
    }
}

/// How the embedded store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Recover, repair a torn tail, start the writer and indexer. Takes the directory lock.
    ReadWrite,
    /// Change nothing on disk (for verification of a store that may be damaged).
    ReadOnly,
}

/// The embedded store.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    queue: crate::queue::Admission,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    recovery: RecoveryReport,
    /// `<dir>/nonces.log`, opened on first use (only when writable).
    nonces: std::sync::OnceLock<NonceJournal>,
    nonce_open: Mutex<()>,
    nonce_path: PathBuf,
    _lock: Option<File>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("size", &self.shared.size)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` for reading and writing.
    pub fn open(dir: impl AsRef<Path>, config: EmbeddedConfig) -> Result<Self> {
        Self::open_mode(dir.as_ref(), config, Mode::ReadWrite)
    }

    /// Opens an existing store without changing anything on disk.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_mode(dir.as_ref(), EmbeddedConfig::default(), Mode::ReadOnly)
    }

    fn open_mode(dir: &Path, config: EmbeddedConfig, mode: Mode) -> Result<Self> {
        let writable = mode == Mode::ReadWrite;
        let log_dir = dir.join("log");
        let tree_dir = dir.join("tree");
        let cp_dir = dir.join("checkpoints");
        if writable {
            for d in [dir, &log_dir, &tree_dir, &cp_dir] {
                std::fs::create_dir_all(d)
                    .map_err(StoreError::io(format!("creating {}", d.display())))?;
            }
            sync_dir(dir)?;
        } else if !log_dir.is_dir() {
            return Err(StoreError::Invalid(format!(
                "{} holds no custos store (no log/ directory)",
                dir.display()
            )));
        }
        let lock = if writable {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join("LOCK"))
                .map_err(StoreError::io("opening LOCK"))?;
            f.try_lock().map_err(|_| {
                StoreError::Unavailable(format!(
                    "{} is in use by another custos process",
                    dir.display()
                ))
            })?;
            Some(f)
        } else {
            None
        };
        let segments = Segments::open(&log_dir, writable)?;
        if segments.count() == 0 {
            if !writable {
                return Err(StoreError::Invalid(format!(
                    "{} holds no segments",
                    log_dir.display()
                )));
            }
            segments.create(&log_dir, 0)?;
        }
        let offsets = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(writable)
            .truncate(false)
            .open(log_dir.join("offsets"))
            .map_err(StoreError::io("opening log/offsets"))?;
        let levels = Levels::open(&tree_dir, writable)?;
        let checkpoints = Checkpoints::open(&cp_dir, writable)?;
        let shared = Shared {
            log_dir: log_dir.clone(),
            tree_dir: tree_dir.clone(),
            segments,
            offsets,
            levels,
            checkpoints,
            index: None,
            size: AtomicU64::new(0),
            poison: Mutex::new(None),
            sync_lock: Mutex::new(()),
            indexer_thread: Mutex::new(None),
            writable,
            synced_at_open: read_synced(&tree_dir),
        };
        let (mut recovery, tail) = recover(&shared, dir, writable)?;
        recovery.checkpoint_discarded_bytes = shared.checkpoints.discarded();
        if writable {
            recovery.unrecorded = unrecorded_quarantine(&dir.join("quarantine"))?;
        }
        shared.size.store(recovery.size, Ordering::Release);
        let mut shared = shared;
        if writable && config.index {
            shared.index = Some(Index::open(&dir.join("index"), recovery.size)?);
        }
        let shared = Arc::new(shared);
        let queue = crate::queue::Admission::new(config.max_queued_entries);
        let (tx, writer, indexer) = if writable {
            let (tx, rx) = mpsc::channel(4096);
            let (seg_no, seg) = shared
                .segments
                .last()
                .ok_or_else(|| StoreError::Unavailable("no segment to append to".into()))?;
            let seg_len = seg.len()?;
            let frontier = tail.frontier.unwrap_or_default();
            let writer = Writer::new(
                shared.clone(),
                config.clone(),
                seg_no,
                seg,
                seg_len,
                recovery.size,
                tail.prev,
                tail.last_ts,
                frontier,
            );
            let writer = std::thread::Builder::new()
                .name("custos-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(StoreError::io("starting the writer thread"))?;
            let indexer = if shared.index.is_some() {
                let s = shared.clone();
                let h = std::thread::Builder::new()
                    .name("custos-indexer".into())
                    .spawn(move || index::run_indexer(s))
                    .map_err(StoreError::io("starting the indexer thread"))?;
                if let Ok(mut t) = shared.indexer_thread.lock() {
                    *t = Some(h.thread().clone());
                }
                Some(h)
            } else {
                None
            };
            (Some(tx), Some(writer), indexer)
        } else {
            (None, None, None)
        };
        Ok(EmbeddedStore {
            shared,
            tx: Mutex::new(tx),
            queue,
            writer: Mutex::new(writer),
            indexer: Mutex::new(indexer),
            recovery,
            nonces: std::sync::OnceLock::new(),
            nonce_open: Mutex::new(()),
            nonce_path: dir.join("nonces.log"),
            _lock: lock,
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<WriteRequest>> {
        if !self.shared.writable {
            return Err(StoreError::Unavailable("store is open read-only".into()));
        }
        if let Some(reason) = self.shared.poisoned() {
            return Err(StoreError::Unavailable(reason));
        }
        crate::queue::sender(&self.tx)
    }

    async fn submit(
        &self,
        batch: Vec<PreparedEntry>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Vec<Appended>> {
        crate::queue::submit(self.sender()?, batch, permit).await
    }

    fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
        if let Some(index) = &self.shared.index {
            index.stop.store(true, Ordering::Release);
            self.shared.wake_indexer();
        }
        if let Some(h) = self.indexer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }

    fn tenant_candidates(&self, q: &EntryQuery, lo: u64, hi: u64) -> Result<Vec<RawRecord>> {
        let Some(index) = &self.shared.index else {
            return Ok(Vec::new());
        };
        let tenants = match &q.tenant {
            Some(t) => vec![t.clone()],
            None => index.tenants()?,
        };
        let mut out = Vec::new();
        for tenant in tenants {
            let posting = index::best_posting(q, &tenant);
            // Hashed postings of two tenants may collide: each scan keeps only its tenant.
            let per_tenant = EntryQuery {
                tenant: Some(tenant.clone()),
                ..q.clone()
            };
            let q = &per_tenant;
            let mut found = 0usize;
            index.postings(posting, lo, hi, q.descending, |seq| {
                if let Some(rec) = self.shared.get(seq)?
                    && matches(q, &rec)?
                {
                    out.push(rec);
                    found += 1;
                }
                Ok(found < q.limit)
            })?;
        }
        Ok(out)
    }

    fn scan_range(&self, q: &EntryQuery, lo: u64, hi: u64, out: &mut Vec<RawRecord>) -> Result<()> {
        const CHUNK: u64 = 1024;
        if q.descending {
            let mut top = hi;
            while top > lo && out.len() < q.limit {
                let bottom = top.saturating_sub(CHUNK).max(lo);
                let recs = self.shared.read_range(bottom, top)?;
                for rec in recs.into_iter().rev() {
                    if out.len() >= q.limit {
                        break;
                    }
                    if matches(q, &rec)? {
                        out.push(rec);
                    }
                }
                top = bottom;
            }
        } else {
            let mut from = lo;
            while from < hi && out.len() < q.limit {
                let to = (from + CHUNK).min(hi);
                for rec in self.shared.read_range(from, to)? {
                    if out.len() >= q.limit {
                        break;
                    }
                    if matches(q, &rec)? {
                        out.push(rec);
                    }
                }
                from = to;
            }
        }
        Ok(())
    }
}

fn matches(q: &EntryQuery, rec: &RawRecord) -> Result<bool> {
    let view = FilterView::parse(&rec.bytes).map_err(|e| StoreError::Corrupt {
        seq: rec.seq,
        problem: format!("entry does not parse: {e}"),
    })?;
    Ok(view.matches(q))
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What recovery leaves for the writer.
struct Tail {
    prev: Hash,
    last_ts: i128,
    frontier: Option<Frontier>,
}

/// Finds the durable end of the log, cuts a torn tail (kept in quarantine), and recomputes
/// derived data past the last synced point. Read-only: finds the end, changes nothing.
fn recover(shared: &Shared, dir: &Path, writable: bool) -> Result<(RecoveryReport, Tail)> {
    let mut synced = read_synced(&shared.tree_dir);
    // Entries below this are known durable (acknowledged): derived files were synced for them,
    // or a checkpoint covers them. Recovery never cuts below it.
    let durable_floor = synced.max(shared.checkpoints.latest()?.map_or(0, |cp| cp.size));
    let offsets_len = shared
        .offsets
        .metadata()
        .map_err(StoreError::io("reading log/offsets size"))?
        .len()
        / 8;
    if offsets_len < synced || shared.levels.len(0).unwrap_or(0) < synced {
        synced = 0;
    }
    // Where the record of seq `synced` starts.
    let mut cursor = ScanCursor {
        segment: 0,
        offset: 0,
        position: 0,
    };
    if synced > 0 {
        let trusted = shared.offset_of(synced - 1).ok().and_then(|(no, off)| {
            let seg = shared.segments.get(no)?;
            match seg.read_at(off).ok()? {
                Ok((seq, bytes)) if seq == synced - 1 => Some(ScanCursor {
                    segment: no,
                    offset: off + (HEADER + bytes.len()) as u64,
                    position: synced,
                }),
                _ => None,
            }
        });
        match trusted {
            Some(c) => cursor = c,
            None => {
                tracing::warn!(
                    synced,
                    "derived files disagree with the log; recomputing all"
                );
                synced = 0;
            }
        }
    }
    let mut expected = synced;
    let mut found: Vec<(u64, Hash)> = Vec::new();
    let mut last_payload_ts: Option<i128> = None;
    // (segment, offset, what, could a crash mid-write have left it?)
    let mut damage: Option<(u64, u64, String, bool)> = None;
    'segments: loop {
        let Some(seg) = shared.segments.get(cursor.segment) else {
            break;
        };
        if cursor.offset == 0 && seg.first_seq != expected {
            damage = Some((
                cursor.segment,
                0,
                format!(
                    "segment {} is named for seq {} but the log before it ends at seq {expected}: \
                     a segment is missing or misnamed",
                    seg.path.display(),
                    seg.first_seq
                ),
                false,
            ));
            break;
        }
        let seg_len = seg.len()?;
        while cursor.offset < seg_len {
            match seg.read_at(cursor.offset)? {
                Ok((seq, bytes)) if seq == expected => {
                    found.push((
                        pack_offset(cursor.segment, cursor.offset),
                        merkle::leaf_hash(&bytes),
                    ));
                    last_payload_ts = ts_from_canonical(&bytes);
                    cursor.offset += (HEADER + bytes.len()) as u64;
                    expected += 1;
                }
                // The checksum covers the seq, so a torn write cannot produce this.
                Ok((seq, _)) => {
                    damage = Some((
                        cursor.segment,
                        cursor.offset,
                        format!("found seq {seq} where seq {expected} belongs"),
                        false,
                    ));
                    break 'segments;
                }
                Err(d) => {
                    let why = match d {
                        Damage::Short => "torn record".to_owned(),
                        other => other.describe(),
                    };
                    damage = Some((cursor.segment, cursor.offset, why, true));
                    break 'segments;
                }
            }
        }
        if cursor.segment + 1 >= shared.segments.count() {
            break;
        }
        cursor = ScanCursor {
            segment: cursor.segment + 1,
            offset: 0,
            position: expected,
        };
    }
    let size = expected;
    let mut report = RecoveryReport {
        size,
        rebuilt_entries: found.len() as u64,
        ..RecoveryReport::default()
    };
    if let Some((no, off, why, may_be_torn)) = &damage {
        let last = shared.segments.count() - 1;
        // Only the unacknowledged end of the last segment can be a torn write; anything else is
        // damage for `custos verify` to name, and is never cut. Read-only opens anyway.
        let refusal = if !may_be_torn {
            Some("this is not what a crash leaves")
        } else if *no != last {
            Some("it is not in the last segment")
        } else if size < durable_floor {
            Some("entries there were already durable (synced or checkpointed)")
        } else if writable && valid_record_follows(shared, *no, *off, size)? {
            Some("intact records follow it")
        } else {
            None
        };
        if let (Some(reason), true) = (refusal, writable) {
            return Err(StoreError::Corrupt {
                seq: size,
                problem: format!(
                    "{why} in segment #{no} at byte {off}; {reason}, so it is damage, \
                     not a torn write: refusing to open for writing — run `custos verify`"
                ),
            });
        }
        if writable {
            let seg = shared
                .segments
                .get(*no)
                .ok_or_else(|| StoreError::Unavailable("segment vanished".into()))?;
            let seg_len = seg.len()?;
            let mut tail = vec![0u8; (seg_len - off) as usize];
            seg.file
                .read_exact_at(&mut tail, *off)
                .map_err(StoreError::io("reading torn tail"))?;
            let qdir = dir.join("quarantine");
            std::fs::create_dir_all(&qdir).map_err(StoreError::io("creating quarantine/"))?;
            let qpath = qdir.join(format!(
                "{}-at-{off}-seq-{size}.bin",
                seg.path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
            ));
            std::fs::write(&qpath, &tail).map_err(StoreError::io("writing quarantine file"))?;
            File::open(&qpath)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io("syncing quarantine file"))?;
            sync_dir(&qdir)?;
            seg.file
                .set_len(*off)
                .map_err(StoreError::io("truncating torn tail"))?;
            seg.file
                .sync_all()
                .map_err(StoreError::io("syncing truncated segment"))?;
            tracing::warn!(seq = size, bytes = tail.len(), reason = %why, file = %qpath.display(),
                "discarded an unacknowledged torn tail");
            report.discarded_bytes = tail.len() as u64;
            report.quarantine = Some(qpath.display().to_string());
        }
    }
    if !writable {
        let prev = if size > 0 {
            shared.levels.read(0, size - 1).unwrap_or(ZERO_HASH)
        } else {
            ZERO_HASH
        };
        return Ok((
            report,
            Tail {
                prev,
                last_ts: 0,
                frontier: None,
            },
        ));
    }
    // Rebuild derived data past `synced`.
    shared
        .offsets
        .set_len(synced * 8)
        .map_err(StoreError::io("truncating log/offsets"))?;
    let offs: Vec<u8> = found.iter().flat_map(|(o, _)| o.to_le_bytes()).collect();
    shared.write_offsets(synced, &offs)?;
    shared.levels.truncate_to(synced)?;
    let mut frontier = Frontier::from_reader(&shared.levels, synced).map_err(|e| match e {
        merkle::ProofError::Read(e) => e,
        other => StoreError::Corrupt {
            seq: synced,
            problem: other.to_string(),
        },
    })?;
    let mut level_bufs: Vec<(u64, Vec<u8>)> = Vec::new();
    for (_, leaf) in &found {
        frontier.push(*leaf, |level, index, hash| {
            let level = level as usize;
            if level_bufs.len() <= level {
                level_bufs.resize_with(level + 1, || (u64::MAX, Vec::new()));
            }
            if level_bufs[level].0 == u64::MAX {
                level_bufs[level].0 = index;
            }
            level_bufs[level].1.extend_from_slice(hash);
        });
    }
    for (level, (index, bytes)) in level_bufs.iter().enumerate() {
        if !bytes.is_empty() {
            shared.levels.write(level as u8, *index, bytes)?;
        }
    }
    shared.size.store(size, Ordering::Release);
    shared.sync_derived()?;
    let prev = if size > 0 {
        shared.levels.read(0, size - 1)?
    } else {
        ZERO_HASH
    };
    let last_ts = match last_payload_ts {
        Some(ts) => ts,
        None if size > 0 => shared.ts_of(size - 1)?,
        None => 0,
    };
    Ok((
        report,
        Tail {
            prev,
            last_ts,
            frontier: Some(frontier),
        },
    ))
}

/// Quarantine files with no `.recorded` marker beside them: (name, bytes).
fn unrecorded_quarantine(qdir: &Path) -> Result<Vec<(String, u64)>> {
    let Ok(entries) = std::fs::read_dir(qdir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io("listing quarantine/"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".bin") || qdir.join(format!("{name}.recorded")).exists() {
            continue;
        }
        let bytes = entry
            .metadata()
            .map_err(StoreError::io("reading a quarantine file"))?
            .len();
        out.push((name, bytes));
    }
    out.sort();
    Ok(out)
}

/// Does a valid record of a later seq stand anywhere after `offset` in segment `no`? Then the
/// bad bytes at `offset` are damage, not the torn end of the last write. Looks at most 64 MiB
/// ahead; a longer tail counts as followed (refusing is the safe side).
fn valid_record_follows(shared: &Shared, no: u64, offset: u64, expected: u64) -> Result<bool> {
    const LOOK: u64 = 64 * 1024 * 1024;
    let Some(seg) = shared.segments.get(no) else {
        return Ok(false);
    };
    let len = seg.len()?;
    let start = offset + 1;
    if len <= start {
        return Ok(false);
    }
    if len - start > LOOK {
        return Ok(true);
    }
    let mut buf = vec![0u8; (len - start) as usize];
    seg.file
        .read_exact_at(&mut buf, start)
        .map_err(StoreError::io("reading the damaged tail"))?;
    for p in 0..buf.len().saturating_sub(HEADER - 1) {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&buf[p + 8..p + 16]);
        let seq = u64::from_le_bytes(seq);
        // Only a plausible seq is worth a checksum.
        if seq >= expected && seq - expected < 1 << 24 && segments::decode(&buf[p..]).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn proof_err(e: merkle::ProofError<StoreError>) -> StoreError {
    match e {
        merkle::ProofError::Read(e) => e,
        other => StoreError::Invalid(other.to_string()),
    }
}

impl Store for EmbeddedStore {
    async fn append(&self, batch: Vec<PreparedEntry>) -> Result<Vec<Appended>> {
        let permit = self.queue.admit(&batch).await?;
        self.submit(batch, permit).await
    }

    async fn try_append(&self, batch: Vec<PreparedEntry>) -> Result<Vec<Appended>> {
        let permit = self.queue.try_admit(&batch)?;
        self.submit(batch, permit).await
    }

    fn size(&self) -> Result<u64> {
        Ok(self.shared.size.load(Ordering::Acquire))
    }

    fn health(&self) -> Result<StoreHealth> {
        let size = self.shared.size.load(Ordering::Acquire);
        Ok(StoreHealth {
            size,
            indexed: self
                .shared
                .index
                .as_ref()
                .map_or(0, |i| i.watermark.load(Ordering::Acquire))
                .min(size),
            unwritable: self.sender().err().map(|e| e.to_string()),
        })
    }

    fn recovery(&self) -> RecoveryReport {
        self.recovery.clone()
    }

    fn mark_recovery_recorded(&self, files: &[String]) -> Result<()> {
        let qdir = self.shared.log_dir.with_file_name("quarantine");
        for name in files {
            if name.contains('/') || name.starts_with('.') {
                return Err(StoreError::Invalid(format!(
                    "`{name}` is not a quarantine file"
                )));
            }
            let marker = qdir.join(format!("{name}.recorded"));
            File::create(&marker)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io(format!("writing {}", marker.display())))?;
        }
        sync_dir(&qdir)
    }

    fn get(&self, seq: u64) -> Result<Option<RawRecord>> {
        self.shared.get(seq)
    }

    fn seq_of_id(&self, id: &str) -> Result<Option<u64>> {
        let Ok(uuid) = uuid::Uuid::parse_str(id) else {
            return Ok(None);
        };
        let canonical = uuid.hyphenated().to_string();
        let mut from = 0;
        if let Some(index) = &self.shared.index {
            // The watermark first: an id indexed after this load is then still in the tail.
            let watermark = index.watermark.load(Ordering::Acquire);
            if let Some(seq) = index.seq_of_id(&uuid)? {
                return Ok(Some(seq));
            }
            from = watermark;
        }
        // Not indexed (yet): look in the unindexed tail.
        let size = self.size()?;
        let mut at = from;
        while at < size {
            let to = (at + 1024).min(size);
            for rec in self.shared.read_range(at, to)? {
                let view = FilterView::parse(&rec.bytes).map_err(|e| StoreError::Corrupt {
                    seq: rec.seq,
                    problem: format!("entry does not parse: {e}"),
                })?;
                if view.id == canonical {
                    return Ok(Some(rec.seq));
                }
            }
            at = to;
        }
        Ok(None)
    }

    fn read_range(&self, from: u64, to: u64) -> Result<Vec<RawRecord>> {
        self.shared.read_range(from, to)
    }

    fn scan(&self, cursor: Option<ScanCursor>, max: usize) -> Result<ScanChunk> {
        let limit = if self.shared.writable {
            self.size()?
        } else {
            u64::MAX
        };
        self.shared.segments.scan(cursor, max, limit)
    }

    fn tree_nodes(&self, level: u8, from: u64, to: u64) -> Result<Vec<Hash>> {
        let stored = self.shared.levels.len(level)?;
        if to > stored {
            return Err(StoreError::Corrupt {
                seq: stored << level,
                problem: format!("tree level {level} holds {stored} hashes, fewer than {to}"),
            });
        }
        self.shared.levels.read_many(level, from, to)
    }

    fn tree_trusted_size(&self) -> Result<u64> {
        let size = self.size()?;
        Ok(if self.shared.writable {
            size
        } else {
            self.shared.synced_at_open.min(size)
        })
    }

    fn root(&self, size: u64) -> Result<Hash> {
        if size > self.size()? {
            return Err(StoreError::Invalid(format!(
                "tree size {size} is beyond the log's {}",
                self.size()?
            )));
        }
        merkle::root(&self.shared.levels, size).map_err(proof_err)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        let have = self.size()?;
        if size > have {
            return Err(StoreError::Invalid(format!(
                "tree size {size} is beyond the log's {have}"
            )));
        }
        merkle::inclusion_proof(&self.shared.levels, index, size).map_err(proof_err)
    }

    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        let have = self.size()?;
        if new > have {
            return Err(StoreError::Invalid(format!(
                "tree size {new} is beyond the log's {have}"
            )));
        }
        merkle::consistency_proof(&self.shared.levels, old, new).map_err(proof_err)
    }

    fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<StoredCheckpoint> {
        if let Some(latest) = self.shared.checkpoints.latest()?
            && latest.size >= checkpoint.size
        {
            return Ok(latest);
        }
        if checkpoint.size > self.size()? {
            return Err(StoreError::Invalid(format!(
                "checkpoint for size {} is beyond the log's {}",
                checkpoint.size,
                self.size()?
            )));
        }
        // A checkpoint must never cover a tree that recovery would have to recompute.
        self.shared.sync_derived()?;
        self.shared.checkpoints.add(checkpoint)
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.shared.checkpoints.latest()
    }

    fn record_nonce(
        &self,
        key_id: &str,
        nonce: &str,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool> {
        if !self.shared.writable {
            return Err(StoreError::Unavailable("store is open read-only".into()));
        }
        // The directory lock makes this process the journal's only writer; opening it (which
        // rewrites the file) happens once.
        let journal = match self.nonces.get() {
            Some(j) => j,
            None => {
                let _once = self
                    .nonce_open
                    .lock()
                    .map_err(|_| StoreError::Unavailable("nonce lock poisoned".into()))?;
                match self.nonces.get() {
                    Some(j) => j,
                    None => {
                        let opened = NonceJournal::open(&self.nonce_path, now_unix)?;
                        self.nonces.get_or_init(|| opened)
                    }
                }
            }
        };
        journal.record(key_id, nonce, expires_unix, now_unix)
    }

    fn checkpoint_for_size(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        self.shared.checkpoints.for_size(size)
    }

    fn checkpoints(&self, from: u64, max: usize) -> Result<Vec<StoredCheckpoint>> {
        let _ = self.shared.checkpoints.count()?;
        self.shared.checkpoints.list(from, max)
    }

    fn query(&self, q: &EntryQuery) -> Result<QueryPage> {
        if q.limit == 0 || q.limit > MAX_QUERY_LIMIT {
            return Err(StoreError::Invalid(format!(
                "limit must be between 1 and {MAX_QUERY_LIMIT}"
            )));
        }
        let size = self.size()?;
        let mut lo = 0u64;
        let mut hi = size;
        if let Some(s) = q.start {
            lo = lo.max(self.seq_at_or_after(s)?);
        }
        if let Some(e) = q.end {
            hi = hi.min(self.seq_at_or_after(e)?);
        }
        if let Some(c) = q.after {
            if q.descending {
                hi = hi.min(c);
            } else {
                lo = lo.max(c.saturating_add(1));
            }
        }
        if lo >= hi {
            return Ok(QueryPage::default());
        }
        let watermark = self
            .shared
            .index
            .as_ref()
            .map_or(0, |i| i.watermark.load(Ordering::Acquire))
            .clamp(lo, hi);
        let mut records = Vec::new();
        if q.descending {
            self.scan_range(q, watermark, hi, &mut records)?;
            if records.len() < q.limit && lo < watermark {
                let mut more = self.tenant_candidates(q, lo, watermark)?;
                more.sort_by_key(|r| std::cmp::Reverse(r.seq));
                records.extend(more);
            }
        } else {
            if lo < watermark {
                records = self.tenant_candidates(q, lo, watermark)?;
                records.sort_by_key(|r| r.seq);
            }
            if records.len() < q.limit {
                self.scan_range(q, watermark, hi, &mut records)?;
            }
        }
        records.truncate(q.limit);
        let next = if records.len() == q.limit {
            records.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(QueryPage { records, next })
    }

    fn seq_at_or_after(&self, nanos: i128) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, self.size()?);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.shared.ts_of(mid)? < nanos {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    async fn wait_indexed(&self) -> Result<()> {
        let Some(index) = &self.shared.index else {
            return Ok(());
        };
        let target = self.size()?;
        loop {
            if index.watermark.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if let Some(reason) = self.shared.poisoned() {
                return Err(StoreError::Unavailable(reason));
            }
            self.shared.wake_indexer();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn close(&self) -> Result<()> {
        self.shutdown();
        match self.shared.poisoned() {
            Some(reason) => Err(StoreError::Unavailable(reason)),
            None => Ok(()),
        }
    }
}
