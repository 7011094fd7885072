//! The single writer: sequencing and group commit.
//!
//! Appenders queue requests on a bounded channel. The writer takes every request waiting (up
//! to a group limit), assigns `seq`, `ts`, `id` and `prev_hash`, writes all records with one
//! write, fdatasyncs once, then writes the derived offsets and tree hashes, publishes the new
//! size and acknowledges every request of the group. While one fsync runs, the next group
//! gathers, so concurrency turns into batching without any artificial delay.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use custos_core::merkle::{Frontier, Hash};
use custos_core::time::format_utc_nanos;
use tokio::sync::mpsc;
use uuid::{ContextV7, Timestamp, Uuid};

use super::segments::{HEADER, Segment, record_crc};
use super::{EmbeddedConfig, Shared, pack_offset};
use crate::{Appended, Result, StoreError};

/// One queued append.
pub(crate) use crate::queue::WriteRequest;

/// The writer's private state: everything needed to append without reading back.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: EmbeddedConfig,
    pub(crate) seg_no: u64,
    pub(crate) seg: Arc<Segment>,
    pub(crate) seg_len: u64,
    pub(crate) next_seq: u64,
    pub(crate) prev: Hash,
    pub(crate) last_ts: i128,
    pub(crate) frontier: Frontier,
    pub(crate) uuid_ctx: ContextV7,
    buf: Vec<u8>,
    offsets: Vec<u8>,
    levels: Vec<(u64, Vec<u8>)>,
    last_derived_sync: Instant,
    dirty: bool,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: EmbeddedConfig,
        seg_no: u64,
        seg: Arc<Segment>,
        seg_len: u64,
        next_seq: u64,
        prev: Hash,
        last_ts: i128,
        frontier: Frontier,
    ) -> Self {
        Writer {
            shared,
            config,
            seg_no,
            seg,
            seg_len,
            next_seq,
            prev,
            last_ts,
            frontier,
            uuid_ctx: ContextV7::new(),
            buf: Vec::new(),
            offsets: Vec::new(),
            levels: Vec::new(),
            last_derived_sync: Instant::now(),
            dirty: false,
        }
    }

    /// Runs until every sender is gone, then flushes derived state.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut group: Vec<WriteRequest> = Vec::new();
        loop {
            let first = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Idle: a good moment to make derived files durable.
                    if self.dirty
                        && self.last_derived_sync.elapsed() >= self.config.derived_sync_interval
                    {
                        self.sync_derived();
                    }
                    match rx.blocking_recv() {
                        Some(r) => r,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            let mut count = first.entries.len();
            group.push(first);
            while count < self.config.max_group_entries {
                match rx.try_recv() {
                    Ok(r) => {
                        count += r.entries.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
            if self.last_derived_sync.elapsed() >= self.config.derived_sync_interval {
                self.sync_derived();
            }
        }
        if self.dirty {
            self.sync_derived();
        }
    }

    fn sync_derived(&mut self) {
        if let Err(e) = self.shared.sync_derived() {
            tracing::error!(error = %e, "syncing derived tree files failed");
            self.shared.poison(format!("syncing derived files: {e}"));
        }
        self.last_derived_sync = Instant::now();
        self.dirty = false;
    }

    fn fail_all(group: &mut Vec<WriteRequest>, msg: &str) {
        for req in group.drain(..) {
            req.answer(Err(StoreError::Unavailable(msg.to_owned())));
        }
    }

    fn commit(&mut self, group: &mut Vec<WriteRequest>) {
        if let Some(reason) = self.shared.poisoned() {
            Self::fail_all(group, &reason);
            return;
        }
        if self.seg_len >= self.config.segment_bytes
            && let Err(e) = self.rotate()
        {
            let msg = format!("starting a new segment: {e}");
            self.shared.poison(msg.clone());
            Self::fail_all(group, &msg);
            return;
        }
        let start_seq = self.next_seq;
        let start_prev = self.prev;
        let start_frontier = self.frontier.clone();
        self.buf.clear();
        self.offsets.clear();
        self.levels.clear();
        let mut results: Vec<Vec<Appended>> = Vec::with_capacity(group.len());
        for req in group.iter() {
            let mut appended = Vec::with_capacity(req.entries.len());
            for entry in &req.entries {
                let now = (self.config.clock)().max(self.last_ts);
                self.last_ts = now;
                let ts = format_utc_nanos(now).unwrap_or_default();
                let secs = now.div_euclid(1_000_000_000);
                let nanos = now.rem_euclid(1_000_000_000);
                let id = Uuid::new_v7(Timestamp::from_unix(
                    &self.uuid_ctx,
                    u64::try_from(secs).unwrap_or(0),
                    u32::try_from(nanos).unwrap_or(0),
                ))
                .hyphenated()
                .to_string();
                let seq = self.next_seq;
                let rec_start = self.buf.len();
                self.buf.extend_from_slice(&[0u8; HEADER]);
                let leaf = entry.seal_into(seq, &id, &ts, &self.prev, &mut self.buf);
                let payload = &self.buf[rec_start + HEADER..];
                let len = payload.len() as u32;
                let crc = record_crc(seq, payload);
                self.buf[rec_start..rec_start + 4].copy_from_slice(&len.to_le_bytes());
                self.buf[rec_start + 4..rec_start + 8].copy_from_slice(&crc.to_le_bytes());
                self.buf[rec_start + 8..rec_start + 16].copy_from_slice(&seq.to_le_bytes());
                self.offsets.extend_from_slice(
                    &pack_offset(self.seg_no, self.seg_len + rec_start as u64).to_le_bytes(),
                );
                let levels = &mut self.levels;
                self.frontier.push(leaf, |level, index, hash| {
                    let level = level as usize;
                    if levels.len() <= level {
                        levels.resize_with(level + 1, || (u64::MAX, Vec::new()));
                    }
                    let slot = &mut levels[level];
                    if slot.0 == u64::MAX {
                        slot.0 = index;
                    }
                    slot.1.extend_from_slice(hash);
                });
                self.prev = leaf;
                self.next_seq += 1;
                appended.push(Appended {
                    seq,
                    id,
                    ts,
                    leaf_hash: leaf,
                });
            }
            results.push(appended);
        }
        // The durable write: one write, one fdatasync.
        let durable = self
            .seg
            .file
            .write_all_at(&self.buf, self.seg_len)
            .and_then(|()| self.seg.file.sync_data());
        if let Err(e) = durable {
            let msg = format!("writing {}: {e}", self.seg.path.display());
            tracing::error!(error = %e, "segment write failed; store stops accepting appends");
            self.shared.poison(msg.clone());
            self.next_seq = start_seq;
            self.prev = start_prev;
            self.frontier = start_frontier;
            Self::fail_all(group, &msg);
            return;
        }
        self.seg_len += self.buf.len() as u64;
        // Derived data: in the page cache now, made durable by `sync_derived`.
        if let Err(e) = self.write_derived(start_seq) {
            // The entries are durable; recovery rebuilds derived data from them.
            tracing::error!(error = %e, "writing derived tree data failed");
            self.shared.poison(format!("writing derived data: {e}"));
        }
        self.dirty = true;
        self.shared.size.store(self.next_seq, Ordering::Release);
        self.shared.wake_indexer();
        for (req, appended) in group.drain(..).zip(results) {
            req.answer(Ok(appended));
        }
    }

    fn write_derived(&self, start_seq: u64) -> Result<()> {
        self.shared.write_offsets(start_seq, &self.offsets)?;
        for (level, (index, bytes)) in self.levels.iter().enumerate() {
            if !bytes.is_empty() {
                self.shared.levels.write(level as u8, *index, bytes)?;
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        self.seg.file.sync_all().map_err(StoreError::io(format!(
            "syncing {}",
            self.seg.path.display()
        )))?;
        let no = self
            .shared
            .segments
            .create(&self.shared.log_dir, self.next_seq)?;
        let seg = self
            .shared
            .segments
            .get(no)
            .ok_or_else(|| StoreError::Unavailable("new segment vanished".into()))?;
        self.seg_no = no;
        self.seg = seg;
        self.seg_len = 0;
        Ok(())
    }
}
