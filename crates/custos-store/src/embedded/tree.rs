//! The Merkle tree on disk: one append-only file per level, `level-LL.hashes`, holding the
//! hash of every complete aligned subtree of height LL, in order (32 bytes each).
//!
//! Level 0 is the leaf hashes. The files of levels 0, 8, 16, … cut into runs of 256 hashes are
//! exactly the C2SP tlog-tiles of tile levels 0, 1, 2, …; the levels in between are kept too,
//! so that every node a proof needs is one 32-byte read and nothing is ever rehashed.
//! Appending costs one leaf write plus, amortised, one node write: nothing rebuilds the tree.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use custos_core::merkle::{Hash, SubtreeReader};

use crate::{Result, StoreError};

/// Tree levels, one file each; opened lazily as the tree grows.
#[derive(Debug)]
pub(crate) struct Levels {
    dir: PathBuf,
    writable: bool,
    files: RwLock<Vec<File>>,
}

impl Levels {
    pub(crate) fn open(dir: &Path, writable: bool) -> Result<Self> {
        let levels = Levels {
            dir: dir.to_owned(),
            writable,
            files: RwLock::new(Vec::new()),
        };
        // Open every level file that exists.
        for level in 0..64u8 {
            let path = levels.path(level);
            if !path.exists() {
                break;
            }
            levels.file(level)?;
        }
        Ok(levels)
    }

    fn path(&self, level: u8) -> PathBuf {
        self.dir.join(format!("level-{level:02}.hashes"))
    }

    /// Number of levels with a file.
    pub(crate) fn count(&self) -> usize {
        self.files.read().map_or(0, |f| f.len())
    }

    /// Runs `f` on the file of `level`, creating it (and any below) if needed.
    fn with_file<T>(&self, level: u8, f: impl FnOnce(&File) -> Result<T>) -> Result<T> {
        {
            let files = self
                .files
                .read()
                .map_err(|_| StoreError::Unavailable("tree lock poisoned".into()))?;
            if let Some(file) = files.get(level as usize) {
                return f(file);
            }
        }
        self.file(level)?;
        let files = self
            .files
            .read()
            .map_err(|_| StoreError::Unavailable("tree lock poisoned".into()))?;
        match files.get(level as usize) {
            Some(file) => f(file),
            None => Err(StoreError::Invalid(format!(
                "tree level {level} is missing"
            ))),
        }
    }

    fn file(&self, level: u8) -> Result<()> {
        let mut files = self
            .files
            .write()
            .map_err(|_| StoreError::Unavailable("tree lock poisoned".into()))?;
        while files.len() <= level as usize {
            let l = files.len() as u8;
            let path = self.path(l);
            if !self.writable && !path.exists() {
                return Err(StoreError::Invalid(format!(
                    "tree level {l} does not exist ({})",
                    path.display()
                )));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(self.writable)
                .create(self.writable)
                .truncate(false)
                .open(&path)
                .map_err(StoreError::io(format!("opening {}", path.display())))?;
            files.push(file);
        }
        Ok(())
    }

    /// Hashes stored at `level`.
    pub(crate) fn len(&self, level: u8) -> Result<u64> {
        if level as usize >= self.count() && !self.writable {
            return Ok(0);
        }
        self.with_file(level, |file| {
            file.metadata()
                .map(|m| m.len() / 32)
                .map_err(StoreError::io(format!(
                    "reading size of tree level {level}"
                )))
        })
    }

    pub(crate) fn read(&self, level: u8, index: u64) -> Result<Hash> {
        let mut h = [0u8; 32];
        self.with_file(level, |file| {
            file.read_exact_at(&mut h, index * 32).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    StoreError::Invalid(format!("tree level {level} has no hash at index {index}"))
                } else {
                    StoreError::io(format!("reading tree level {level}"))(e)
                }
            })
        })?;
        Ok(h)
    }

    /// Reads hashes `[from, to)` of `level`.
    pub(crate) fn read_many(&self, level: u8, from: u64, to: u64) -> Result<Vec<Hash>> {
        let n = to.saturating_sub(from) as usize;
        let mut buf = vec![0u8; n * 32];
        self.with_file(level, |file| {
            file.read_exact_at(&mut buf, from * 32)
                .map_err(StoreError::io(format!("reading tree level {level}")))
        })?;
        Ok(buf
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }

    /// Writes `hashes` at `level` starting at `index`.
    pub(crate) fn write(&self, level: u8, index: u64, hashes: &[u8]) -> Result<()> {
        self.with_file(level, |file| {
            file.write_all_at(hashes, index * 32)
                .map_err(StoreError::io(format!("writing tree level {level}")))
        })
    }

    /// Cuts every level to what a tree of `size` leaves has.
    pub(crate) fn truncate_to(&self, size: u64) -> Result<()> {
        for level in 0..self.count() as u8 {
            let keep = size >> level;
            self.with_file(level, |file| {
                let len = file
                    .metadata()
                    .map_err(StoreError::io(format!("reading tree level {level}")))?
                    .len();
                if len > keep * 32 {
                    file.set_len(keep * 32)
                        .map_err(StoreError::io(format!("truncating tree level {level}")))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        let files = self
            .files
            .read()
            .map_err(|_| StoreError::Unavailable("tree lock poisoned".into()))?;
        for (level, file) in files.iter().enumerate() {
            file.sync_data()
                .map_err(StoreError::io(format!("syncing tree level {level}")))?;
        }
        Ok(())
    }
}

impl SubtreeReader for Levels {
    type Error = StoreError;

    fn subtree(&self, level: u8, index: u64) -> Result<Hash> {
        self.read(level, index)
    }
}
