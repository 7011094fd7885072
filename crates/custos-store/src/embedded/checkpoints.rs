//! Every signed checkpoint ever issued, in an append-only log
//! (`len: u32 | crc32c: u32 | size: u64 | issued nanos: i128 | note`) with a fixed-width index
//! (`size: u64 | offset: u64` per checkpoint) so that "the checkpoint for size N" is a binary
//! search. Tree sizes of successive checkpoints strictly increase.

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
}

/// The checkpoint log and its index.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    log: File,
    index: File,
    log_path: PathBuf,
    state: Mutex<State>,
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
            }),
        };
        cps.recover(writable)?;
        Ok(cps)
    }

    /// Trusts the index as far as it points at valid records, then indexes whatever valid
    /// records follow and cuts off a torn tail.
    fn recover(&self, writable: bool) -> Result<()> {
        let mut st = self.lock()?;
        let file_len = st.log_len;
        let mut count = st.count;
        let mut end = 0u64;
        while count > 0 {
            let (_, offset) = self.index_entry(count - 1)?;
            if let Ok(Some((_, len))) = self.read_record(offset, file_len) {
                end = offset + len;
                break;
            }
            count -= 1;
        }
        let mut appended = Vec::new();
        while let Ok(Some((cp, len))) = self.read_record(end, file_len) {
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
                self.log
                    .set_len(end)
                    .map_err(StoreError::io("truncating torn checkpoint log tail"))?;
                self.log
                    .sync_all()
                    .map_err(StoreError::io("syncing checkpoint log"))?;
            }
            self.index
                .sync_all()
                .map_err(StoreError::io("syncing checkpoint index"))?;
        } else {
            count += appended.len() as u64;
        }
        st.count = count;
        st.log_len = end;
        st.latest = if count > 0 {
            let (_, offset) = self.index_entry(count - 1)?;
            self.read_record(offset, end)?.map(|(cp, _)| cp)
        } else {
            None
        };
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("checkpoint lock poisoned".into()))
    }

    fn index_entry(&self, i: u64) -> Result<(u64, u64)> {
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

    /// Appends and syncs a checkpoint. An equal size is a no-op; a smaller one is refused.
    pub(crate) fn add(&self, cp: &StoredCheckpoint) -> Result<()> {
        let mut st = self.lock()?;
        if let Some(latest) = &st.latest {
            if cp.size == latest.size {
                return Ok(());
            }
            if cp.size < latest.size {
                return Err(StoreError::Invalid(format!(
                    "checkpoint for size {} is older than the latest ({})",
                    cp.size, latest.size
                )));
            }
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
        Ok(())
    }

    pub(crate) fn latest(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self.lock()?.latest.clone())
    }

    pub(crate) fn count(&self) -> Result<u64> {
        Ok(self.lock()?.count)
    }

    fn nth(&self, i: u64, log_len: u64) -> Result<StoredCheckpoint> {
        let (_, offset) = self.index_entry(i)?;
        self.read_record(offset, log_len)?
            .map(|(cp, _)| cp)
            .ok_or_else(|| StoreError::Corrupt {
                seq: i,
                problem: format!("checkpoint #{i} in the checkpoint log is damaged"),
            })
    }

    pub(crate) fn for_size(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        let (count, log_len) = {
            let st = self.lock()?;
            (st.count, st.log_len)
        };
        let (mut lo, mut hi) = (0u64, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (s, _) = self.index_entry(mid)?;
            match s.cmp(&size) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.nth(mid, log_len).map(Some),
            }
        }
        Ok(None)
    }

    pub(crate) fn list(&self, from: u64, max: usize) -> Result<Vec<StoredCheckpoint>> {
        let (count, log_len) = {
            let st = self.lock()?;
            (st.count, st.log_len)
        };
        let to = count.min(from.saturating_add(max as u64));
        (from..to).map(|i| self.nth(i, log_len)).collect()
    }
}
