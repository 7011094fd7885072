//! Every signed checkpoint ever issued, in an append-only log
//! (`len: u32 | crc32c: u32 | size: u64 | issued nanos: i128 | note`) with a fixed-width index
//! (`size: u64 | offset: u64` per checkpoint) so that "the checkpoint for size N" is a binary
//! search. Tree sizes of successive checkpoints strictly increase: a checkpoint for a size the
//! latest already covers is not kept (the latest is returned instead).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Result, StoreError, StoredCheckpoint};

const HEADER: usize = 32;
const MAX_NOTE: usize = 64 * 1024;

fn crc(size: u64, issued: i128, note: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&size.to_le_bytes());
    c = crc32c::crc32c_append(c, &issued.to_le_bytes());
    crc32c::crc32c_append(c, note)
}

#[derive(Debug)]
struct State {
    log_len: u64,
    count: u64,
    latest: Option<StoredCheckpoint>,
    /// Read-only: index entries found past the index file (not written back).
    unindexed: Vec<(u64, u64)>,
    /// Read-only: the log ends in bytes that are not a valid record.
    tail_damage: Option<String>,
}

/// The checkpoint log and its index.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    log: File,
    index: File,
    log_path: PathBuf,
    state: Mutex<State>,
    discarded: std::sync::atomic::AtomicU64,
}

impl Checkpoints {
    /// Opens (and, when writable, repairs a torn tail of) the checkpoint log in `dir`.
    pub(crate) fn open(dir: &Path, writable: bool) -> Result<Self> {
        let log_path = dir.join("checkpoints.log");
        let index_path = dir.join("checkpoints.idx");
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(writable)
                .create(writable)
                .truncate(false)
                .open(p)
                .map_err(StoreError::io(format!("opening {}", p.display())))
        };
        let log = open(&log_path)?;
        let index = open(&index_path)?;
        let log_len = log
            .metadata()
            .map_err(StoreError::io("reading checkpoint log size"))?
            .len();
        let index_len = index
            .metadata()
            .map_err(StoreError::io("reading checkpoint index size"))?
            .len();
        let cps = Checkpoints {
            log,
            index,
            log_path,
            state: Mutex::new(State {
                log_len,
                count: index_len / 16,
                latest: None,
                unindexed: Vec::new(),
                tail_damage: None,
            }),
            discarded: std::sync::atomic::AtomicU64::new(0),
        };
        cps.recover(writable)?;
        Ok(cps)
    }

    /// Bytes of a damaged or torn tail that opening cut off (kept in a quarantine file).
    pub(crate) fn discarded(&self) -> u64 {
        self.discarded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Trusts the index as far as its entries point at valid records of the sizes they claim,
    /// in increasing order; indexes whatever valid records follow; and cuts off (into a
    /// quarantine file, and reported) whatever is left, which a crash while writing leaves.
    /// Read-only, it changes nothing and reports such a tail as damage.
    fn recover(&self, writable: bool) -> Result<()> {
        let mut st = self.lock()?;
        let file_len = st.log_len;
        let mut count = st.count;
        let mut end = 0u64;
        while count > 0 {
            let (size, offset) = self.index_entry_in_file(count - 1)?;
            let grows = count == 1 || self.index_entry_in_file(count - 2)?.0 < size;
            if let Ok(Some((cp, len))) = self.read_record(offset, file_len)
                && cp.size == size
                && grows
            {
                end = offset + len;
                break;
            }
            count -= 1;
        }
        let mut appended = Vec::new();
        let mut last_size = if count > 0 {
            Some(self.index_entry_in_file(count - 1)?.0)
        } else {
            None
        };
        while let Ok(Some((cp, len))) = self.read_record(end, file_len) {
            if last_size.is_some_and(|l| cp.size <= l) {
                break;
            }
            last_size = Some(cp.size);
            appended.push((cp.size, end));
            end += len;
        }
        if writable {
            self.index
                .set_len(count * 16)
                .map_err(StoreError::io("truncating checkpoint index"))?;
            for (size, offset) in &appended {
                self.write_index(count, *size, *offset)?;
                count += 1;
            }
            if end < file_len {
                let mut tail = vec![0u8; (file_len - end) as usize];
                self.log
                    .read_exact_at(&mut tail, end)
                    .map_err(StoreError::io("reading the checkpoint log tail"))?;
                // Beside the segments' quarantine, so one listing finds every discarded tail.
                let qdir = self
                    .log_path
                    .parent()
                    .and_then(Path::parent)
                    .map(|d| d.join("quarantine"))
                    .ok_or_else(|| StoreError::Invalid("checkpoint log has no parent".into()))?;
                std::fs::create_dir_all(&qdir).map_err(StoreError::io("creating quarantine/"))?;
                let qpath = qdir.join(format!("checkpoints-log-at-{end}.bin"));
                std::fs::write(&qpath, &tail)
                    .map_err(StoreError::io("writing the checkpoint quarantine file"))?;
                File::open(&qpath)
                    .and_then(|f| f.sync_all())
                    .map_err(StoreError::io("syncing the checkpoint quarantine file"))?;
                super::sync_dir(&qdir)?;
                tracing::warn!(bytes = tail.len(), file = %qpath.display(),
                    "cut a damaged or torn tail off the checkpoint log");
                self.log
                    .set_len(end)
                    .map_err(StoreError::io("truncating torn checkpoint log tail"))?;
                self.log
                    .sync_all()
                    .map_err(StoreError::io("syncing checkpoint log"))?;
                self.discarded
                    .store(tail.len() as u64, std::sync::atomic::Ordering::Release);
            }
            self.index
                .sync_all()
                .map_err(StoreError::io("syncing checkpoint index"))?;
            if let Some(dir) = self.log_path.parent() {
                super::sync_dir(dir)?;
            }
        } else {
            count += appended.len() as u64;
            st.unindexed = appended;
            if end < file_len {
                st.tail_damage = Some(format!(
                    "the checkpoint log ends in {} bytes that are not a valid checkpoint \
                     (a crash while writing leaves this; opening the ledger for writing \
                     quarantines and records it)",
                    file_len - end
                ));
            }
        }
        st.count = count;
        st.log_len = end;
        st.latest = if count > 0 {
            let (_, offset) = self.entry(&st, count - 1)?;
            self.read_record(offset, end)?.map(|(cp, _)| cp)
        } else {
            None
        };
        Ok(())
    }

    /// Index entry `i`, from the file or (read-only) from what recovery found past it.
    fn entry(&self, st: &State, i: u64) -> Result<(u64, u64)> {
        let in_file = st.count - st.unindexed.len() as u64;
        match i.checked_sub(in_file) {
            Some(k) => st
                .unindexed
                .get(k as usize)
                .copied()
                .ok_or_else(|| StoreError::Invalid(format!("no checkpoint #{i}"))),
            None => self.index_entry_in_file(i),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("checkpoint lock poisoned".into()))
    }

    fn index_entry_in_file(&self, i: u64) -> Result<(u64, u64)> {
        let mut b = [0u8; 16];
        self.index
            .read_exact_at(&mut b, i * 16)
            .map_err(StoreError::io(format!(
                "reading checkpoint index entry {i}"
            )))?;
        let mut size = [0u8; 8];
        let mut off = [0u8; 8];
        size.copy_from_slice(&b[..8]);
        off.copy_from_slice(&b[8..]);
        Ok((u64::from_le_bytes(size), u64::from_le_bytes(off)))
    }

    fn write_index(&self, i: u64, size: u64, offset: u64) -> Result<()> {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&size.to_le_bytes());
        b[8..].copy_from_slice(&offset.to_le_bytes());
        self.index
            .write_all_at(&b, i * 16)
            .map_err(StoreError::io("writing checkpoint index"))
    }

    /// The record at `offset` and its length; `None` if the bytes there are not a valid record.
    fn read_record(&self, offset: u64, file_len: u64) -> Result<Option<(StoredCheckpoint, u64)>> {
        if offset + HEADER as u64 > file_len {
            return Ok(None);
        }
        let mut h = [0u8; HEADER];
        self.log
            .read_exact_at(&mut h, offset)
            .map_err(StoreError::io(format!(
                "reading {}",
                self.log_path.display()
            )))?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len > MAX_NOTE || offset + (HEADER + len) as u64 > file_len {
            return Ok(None);
        }
        let want_crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[8..16]);
        let size = u64::from_le_bytes(size);
        let mut issued = [0u8; 16];
        issued.copy_from_slice(&h[16..32]);
        let issued = i128::from_le_bytes(issued);
        let mut note = vec![0u8; len];
        self.log
            .read_exact_at(&mut note, offset + HEADER as u64)
            .map_err(StoreError::io(format!(
                "reading {}",
                self.log_path.display()
            )))?;
        if crc(size, issued, &note) != want_crc {
            return Ok(None);
        }
        let Ok(note) = String::from_utf8(note) else {
            return Ok(None);
        };
        Ok(Some((
            StoredCheckpoint {
                size,
                issued_nanos: issued,
                note,
            },
            (HEADER + len) as u64,
        )))
    }

    /// Appends and syncs a checkpoint unless the latest is for the same or a larger size;
    /// returns the latest after the call.
    pub(crate) fn add(&self, cp: &StoredCheckpoint) -> Result<StoredCheckpoint> {
        let mut st = self.lock()?;
        if let Some(latest) = &st.latest
            && latest.size >= cp.size
        {
            return Ok(latest.clone());
        }
        let note = cp.note.as_bytes();
        if note.len() > MAX_NOTE {
            return Err(StoreError::Invalid("checkpoint note too large".into()));
        }
        let mut rec = Vec::with_capacity(HEADER + note.len());
        rec.extend_from_slice(&(note.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc(cp.size, cp.issued_nanos, note).to_le_bytes());
        rec.extend_from_slice(&cp.size.to_le_bytes());
        rec.extend_from_slice(&cp.issued_nanos.to_le_bytes());
        rec.extend_from_slice(note);
        let offset = st.log_len;
        self.log
            .write_all_at(&rec, offset)
            .map_err(StoreError::io("writing checkpoint log"))?;
        self.log
            .sync_data()
            .map_err(StoreError::io("syncing checkpoint log"))?;
        self.write_index(st.count, cp.size, offset)?;
        self.index
            .sync_data()
            .map_err(StoreError::io("syncing checkpoint index"))?;
        st.log_len += rec.len() as u64;
        st.count += 1;
        st.latest = Some(cp.clone());
        Ok(cp.clone())
    }

    pub(crate) fn latest(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.lock()?.latest.clone())
    }

    pub(crate) fn count(&self) -> Result<u64> {
        Ok(self.lock()?.count)
    }

    fn nth(&self, st: &State, i: u64) -> Result<StoredCheckpoint> {
        let (_, offset) = self.entry(st, i)?;
        self.read_record(offset, st.log_len)?
            .map(|(cp, _)| cp)
            .ok_or_else(|| StoreError::Corrupt {
                seq: i,
                problem: format!("checkpoint #{i} in the checkpoint log is damaged"),
            })
    }

    pub(crate) fn for_size(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        let st = self.lock()?;
        let (mut lo, mut hi) = (0u64, st.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (s, _) = self.entry(&st, mid)?;
            match s.cmp(&size) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.nth(&st, mid).map(Some),
            }
        }
        Ok(None)
    }

    pub(crate) fn list(&self, from: u64, max: usize) -> Result<Vec<StoredCheckpoint>> {
        let st = self.lock()?;
        let to = st.count.min(from.saturating_add(max as u64));
        let list = (from..to)
            .map(|i| self.nth(&st, i))
            .collect::<Result<Vec<_>>>()?;
        if to == st.count
            && list.len() < max
            && let Some(problem) = &st.tail_damage
        {
            return Err(StoreError::Corrupt {
                seq: to,
                problem: problem.clone(),
            });
        }
        Ok(list)
    }
}
