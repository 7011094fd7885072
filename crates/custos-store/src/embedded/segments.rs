//! Segment files: the log itself. Each record is
//! `len: u32 LE | crc32c(seq LE ‖ payload): u32 LE | seq: u64 LE | payload (canonical entry)`.
//! Segments are named by the seq of their first record and only ever appended to.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::{RawRecord, Result, ScanChunk, ScanCursor, StoreError};

/// Bytes before each payload.
pub(crate) const HEADER: usize = 16;
/// No record is larger than this; a larger length field is damage.
pub(crate) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// How much a physical scan reads at once.
const SCAN_CHUNK: usize = 4 * 1024 * 1024;
/// A scan returns at most this many payload bytes, whatever the record count asked for, so
/// callers' memory stays bounded with large entries.
const SCAN_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Checksum of a record.
pub(crate) fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// Why bytes at a position are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer bytes than a header or the length promises (a torn write at the end).
    Short,
    /// A length field beyond any record.
    BadLength(u32),
    /// Checksum mismatch.
    BadChecksum,
}

impl Damage {
    pub(crate) fn describe(&self) -> String {
        match self {
            Damage::Short => "record cut short".to_owned(),
            Damage::BadLength(n) => format!("impossible record length {n}"),
            Damage::BadChecksum => "CRC32C mismatch".to_owned(),
        }
    }
}

/// Decodes the record at the start of `buf`: `(seq, payload range, total length)`.
pub(crate) fn decode(buf: &[u8]) -> Result<(u64, std::ops::Range<usize>, usize), Damage> {
    if buf.len() < HEADER {
        return Err(Damage::Short);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len as usize > MAX_PAYLOAD {
        return Err(Damage::BadLength(len));
    }
    let total = HEADER + len as usize;
    if buf.len() < total {
        return Err(Damage::Short);
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&buf[8..16]);
    let seq = u64::from_le_bytes(seq_bytes);
    let payload = HEADER..total;
    if record_crc(seq, &buf[payload.clone()]) != crc {
        return Err(Damage::BadChecksum);
    }
    Ok((seq, payload, total))
}

/// One segment file, opened for positioned reads.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The seq its file name says its first record has.
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

impl Segment {
    pub(crate) fn file_name(first_seq: u64) -> String {
        format!("seg-{first_seq:020}.log")
    }

    pub(crate) fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(StoreError::io(format!(
                "reading size of {}",
                self.path.display()
            )))
    }

    /// Reads the record at `offset`.
    pub(crate) fn read_at(&self, offset: u64) -> Result<Result<(u64, Vec<u8>), Damage>> {
        let mut header = [0u8; HEADER];
        match self.file.read_exact_at(&mut header, offset) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(Err(Damage::Short));
            }
            Err(e) => {
                return Err(StoreError::io(format!("reading {}", self.path.display()))(
                    e,
                ));
            }
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if len as usize > MAX_PAYLOAD {
            return Ok(Err(Damage::BadLength(len)));
        }
        let mut buf = vec![0u8; HEADER + len as usize];
        buf[..HEADER].copy_from_slice(&header);
        match self
            .file
            .read_exact_at(&mut buf[HEADER..], offset + HEADER as u64)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(Err(Damage::Short));
            }
            Err(e) => {
                return Err(StoreError::io(format!("reading {}", self.path.display()))(
                    e,
                ));
            }
        }
        Ok(decode(&buf).map(|(seq, payload, _)| {
            buf.truncate(payload.end);
            buf.drain(..HEADER);
            (seq, buf)
        }))
    }
}

/// The list of segments, oldest first; the last one is being appended to.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    list: RwLock<Vec<Arc<Segment>>>,
}

impl Segments {
    /// Opens every `seg-*.log` in `dir`, sorted by first seq.
    pub(crate) fn open(dir: &Path, writable: bool) -> Result<Self> {
        let mut found = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(StoreError::io(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(StoreError::io(format!("listing {}", dir.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(first) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((first, entry.path()));
        }
        found.sort();
        let mut list = Vec::with_capacity(found.len());
        for (first_seq, path) in found {
            let file = OpenOptions::new()
                .read(true)
                .write(writable)
                .open(&path)
                .map_err(StoreError::io(format!("opening {}", path.display())))?;
            list.push(Arc::new(Segment {
                first_seq,
                path,
                file,
            }));
        }
        Ok(Segments {
            list: RwLock::new(list),
        })
    }

    pub(crate) fn count(&self) -> u64 {
        self.list.read().map_or(0, |l| l.len() as u64)
    }

    pub(crate) fn get(&self, no: u64) -> Option<Arc<Segment>> {
        self.list.read().ok()?.get(no as usize).cloned()
    }

    pub(crate) fn last(&self) -> Option<(u64, Arc<Segment>)> {
        let list = self.list.read().ok()?;
        let seg = list.last()?.clone();
        Some((list.len() as u64 - 1, seg))
    }

    pub(crate) fn push(&self, segment: Segment) -> u64 {
        match self.list.write() {
            Ok(mut list) => {
                list.push(Arc::new(segment));
                list.len() as u64 - 1
            }
            Err(poisoned) => {
                let mut list = poisoned.into_inner();
                list.push(Arc::new(segment));
                list.len() as u64 - 1
            }
        }
    }

    /// Creates the segment that starts at `first_seq` and syncs the directory so it survives.
    pub(crate) fn create(&self, dir: &Path, first_seq: u64) -> Result<u64> {
        let path = dir.join(Segment::file_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io(format!("creating {}", path.display())))?;
        super::sync_dir(dir)?;
        Ok(self.push(Segment {
            first_seq,
            path,
            file,
        }))
    }

    /// Reads records in physical order from `cursor`, at most `max`, stopping before any
    /// record with seq ≥ `limit_seq`. Damage is reported as [`StoreError::Corrupt`] naming the
    /// seq that was expected there.
    pub(crate) fn scan(
        &self,
        cursor: Option<ScanCursor>,
        max: usize,
        limit_seq: u64,
    ) -> Result<ScanChunk> {
        let mut cursor = cursor.unwrap_or(ScanCursor {
            segment: 0,
            offset: 0,
            position: 0,
        });
        let mut records = Vec::new();
        let mut bytes_out = 0usize;
        let mut expected = cursor.position;
        loop {
            let Some(seg) = self.get(cursor.segment) else {
                return Ok(ScanChunk {
                    records,
                    next: None,
                });
            };
            let seg_len = seg.len()?;
            if cursor.offset >= seg_len {
                if cursor.segment + 1 < self.count() {
                    cursor = ScanCursor {
                        segment: cursor.segment + 1,
                        offset: 0,
                        position: expected,
                    };
                    continue;
                }
                return Ok(ScanChunk {
                    records,
                    next: None,
                });
            }
            if records.len() >= max || bytes_out >= SCAN_MAX_BYTES {
                cursor.position = expected;
                return Ok(ScanChunk {
                    records,
                    next: Some(cursor),
                });
            }
            let want = (seg_len - cursor.offset).min(SCAN_CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            seg.file
                .read_exact_at(&mut buf, cursor.offset)
                .map_err(StoreError::io(format!("reading {}", seg.path.display())))?;
            let mut pos = 0usize;
            while pos < buf.len() && records.len() < max && bytes_out < SCAN_MAX_BYTES {
                match decode(&buf[pos..]) {
                    Ok((seq, payload, total)) => {
                        if seq >= limit_seq && seq >= expected {
                            return Ok(ScanChunk {
                                records,
                                next: None,
                            });
                        }
                        bytes_out += payload.len();
                        records.push(RawRecord {
                            seq,
                            bytes: buf[pos + payload.start..pos + payload.end].to_vec(),
                        });
                        expected = seq.wrapping_add(1);
                        pos += total;
                    }
                    Err(Damage::Short) if pos > 0 => break,
                    Err(Damage::Short) if want == SCAN_CHUNK => {
                        // A record longer than the chunk: read it on its own.
                        match seg.read_at(cursor.offset)? {
                            Ok((seq, bytes)) => {
                                let total = (HEADER + bytes.len()) as u64;
                                records.push(RawRecord { seq, bytes });
                                expected = seq.wrapping_add(1);
                                cursor.offset += total;
                                pos = 0;
                                buf.clear();
                                break;
                            }
                            Err(damage) => {
                                return Err(corrupt(expected, &seg, cursor.offset, &damage));
                            }
                        }
                    }
                    // Past the published end, a half-written group is not damage: it is the end.
                    Err(_) if expected >= limit_seq => {
                        return Ok(ScanChunk {
                            records,
                            next: None,
                        });
                    }
                    Err(damage) => {
                        if !records.is_empty() {
                            // Hand back what is good; the next call reports the damage.
                            cursor.offset += pos as u64;
                            cursor.position = expected;
                            return Ok(ScanChunk {
                                records,
                                next: Some(cursor),
                            });
                        }
                        return Err(corrupt(expected, &seg, cursor.offset + pos as u64, &damage));
                    }
                }
            }
            cursor.offset += pos as u64;
        }
    }
}

fn corrupt(expected: u64, seg: &Segment, offset: u64, damage: &Damage) -> StoreError {
    StoreError::Corrupt {
        seq: expected,
        problem: format!(
            "{} in {} at byte {offset}",
            damage.describe(),
            seg.path.file_name().map_or_else(
                || seg.path.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            )
        ),
    }
}
