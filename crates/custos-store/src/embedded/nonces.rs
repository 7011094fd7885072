//! Nonces of signed requests (SPEC §4.6, decision 0008): remembered per key until their
//! timestamp can no longer be accepted, in memory and in a journal (`<dir>/nonces.log`, one
//! `expires key nonce` line each) that is appended and fdatasynced before a nonce counts as
//! recorded, so a crash cannot forget a nonce that let a request through. The journal is
//! rewritten with only the live nonces when opened and when it is mostly expired lines.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Result, StoreError};

/// Most nonces remembered at once; past this, recording refuses with
/// [`StoreError::Overloaded`] until old ones expire.
pub const MAX_NONCES: usize = 1_000_000;

struct Nonces {
    /// (key id, nonce) → the unix second after which it is forgotten.
    live: HashMap<(String, String), i64>,
    journal: Option<File>,
    journal_lines: usize,
    /// Lines appended since expired nonces were last dropped from memory.
    since_pruned: usize,
}

/// Nonces in memory and, when opened on a path, in a synced journal.
pub struct NonceJournal {
    path: Option<PathBuf>,
    inner: Mutex<Nonces>,
}

impl std::fmt::Debug for NonceJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl NonceJournal {
    /// In memory only: a restart forgets every nonce.
    pub fn in_memory() -> Self {
        NonceJournal {
            path: None,
            inner: Mutex::new(Nonces {
                live: HashMap::new(),
                journal: None,
                journal_lines: 0,
                since_pruned: 0,
            }),
        }
    }

    /// Opens (or creates) the journal at `path`, keeping the nonces still live at `now`.
    /// Lines that do not read as `expires key nonce` (a torn last line: a crash mid-write,
    /// never acknowledged) are dropped.
    pub fn open(path: &Path, now: i64) -> Result<Self> {
        let io = |what: &str| StoreError::io(format!("{what} {}", path.display()));
        let mut live = HashMap::new();
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(io("reading"))?;
                    let mut parts = line.split(' ');
                    if let (Some(exp), Some(key), Some(nonce), None) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                        && let Ok(exp) = exp.parse::<i64>()
                        && exp >= now
                    {
                        live.insert((key.to_owned(), nonce.to_owned()), exp);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("opening")(e)),
        }
        let journal = NonceJournal {
            path: Some(path.to_owned()),
            inner: Mutex::new(Nonces {
                live,
                journal: None,
                journal_lines: 0,
                since_pruned: 0,
            }),
        };
        {
            let mut inner = journal.lock();
            journal.rewrite(&mut inner)?;
        }
        Ok(journal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Nonces> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites the journal with only the live nonces, atomically.
    fn rewrite(&self, inner: &mut Nonces) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = StoreError::io(format!("rewriting {}", path.display()));
        let run = || -> std::io::Result<File> {
            let tmp = path.with_extension("tmp");
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut buf = Vec::with_capacity(inner.live.len() * 64);
            for ((key, nonce), exp) in &inner.live {
                writeln!(buf, "{exp} {key} {nonce}")?;
            }
            f.write_all(&buf)?;
            f.sync_data()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().append(true).open(path)
        };
        inner.journal = Some(run().map_err(io)?);
        inner.journal_lines = inner.live.len();
        Ok(())
    }

    /// See [`crate::Store::record_nonce`]. Blocking (it syncs the journal).
    pub fn record(&self, key_id: &str, nonce: &str, expires: i64, now: i64) -> Result<bool> {
        if [key_id, nonce]
            .iter()
            .any(|s| s.is_empty() || s.contains([' ', '\n', '\r']))
        {
            return Err(StoreError::Invalid(
                "a key id or nonce must be non-empty and hold no spaces or line breaks".into(),
            ));
        }
        let mut inner = self.lock();
        let k = (key_id.to_owned(), nonce.to_owned());
        if inner.live.get(&k).is_some_and(|&exp| exp >= now) {
            return Ok(false);
        }
        if inner.live.len() >= MAX_NONCES {
            inner.live.retain(|_, exp| *exp >= now);
            if inner.live.len() >= MAX_NONCES {
                return Err(StoreError::Overloaded {
                    queued: inner.live.len(),
                });
            }
        }
        if let Some(j) = inner.journal.as_mut() {
            let io = StoreError::io("appending to the nonce journal");
            j.write_all(format!("{expires} {key_id} {nonce}\n").as_bytes())
                .and_then(|()| j.sync_data())
                .map_err(io)?;
        }
        inner.live.insert(k, expires);
        inner.journal_lines += 1;
        inner.since_pruned += 1;
        // Every 4096 lines: forget what expired, and rewrite the journal once it is mostly
        // lines of forgotten nonces (amortised O(1) per nonce).
        if inner.since_pruned >= 4096 {
            inner.since_pruned = 0;
            inner.live.retain(|_, exp| *exp >= now);
            if inner.journal_lines > 2 * inner.live.len() {
                self.rewrite(&mut inner)?;
            }
        }
        Ok(true)
    }

    /// How many nonces are remembered (some may have expired since).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_refused_twice_even_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("nonces");
        let now = 1_700_000_000;
        let exp = now + 301;
        let j = NonceJournal::open(&path, now).expect("open");
        assert!(j.record("k1", "nonce-a", exp, now).expect("first use"));
        assert!(!j.record("k1", "nonce-a", exp, now + 10).expect("replay"));
        assert!(j.record("k2", "nonce-a", exp, now).expect("other key"));
        drop(j);
        // As after a crash: reopened from the journal.
        let j = NonceJournal::open(&path, now + 100).expect("reopen");
        assert_eq!(j.len(), 2);
        assert!(!j.record("k1", "nonce-a", exp, now + 100).expect("replay"));
        // Once expired, the journal forgets it.
        drop(j);
        let j = NonceJournal::open(&path, exp + 1).expect("reopen later");
        assert!(j.is_empty());
    }

    #[test]
    fn a_torn_journal_line_is_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("nonces");
        std::fs::write(&path, "1700000301 k1 nonce-a\n1700000301 k1 no").expect("write");
        let j = NonceJournal::open(&path, 1_700_000_000).expect("open");
        assert_eq!(
            j.len(),
            2,
            "a torn tail reads as a shorter nonce, which is harmless"
        );
        std::fs::write(&path, "garbage\n1700000301 k1 nonce-a\n").expect("write");
        let j = NonceJournal::open(&path, 1_700_000_000).expect("open");
        assert_eq!(j.len(), 1);
    }

    #[test]
    fn the_journal_is_compacted_when_mostly_expired() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("nonces");
        let j = NonceJournal::open(&path, 0).expect("open");
        for i in 0..5000 {
            assert!(j.record("k", &format!("n{i}"), 10, 0).expect("record"));
        }
        // Everything above has expired at 20: the lines that follow trigger a rewrite.
        for i in 0..4096 {
            assert!(j.record("k", &format!("late{i}"), 400, 20).expect("record"));
        }
        assert!(j.len() <= 4096, "{}", j.len());
        let lines = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();
        assert!(lines <= 4096, "{lines} journal lines");
        assert!(!j.record("k", "late7", 400, 21).expect("still remembered"));
    }
}
