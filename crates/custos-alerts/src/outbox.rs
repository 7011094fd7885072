//! The persistent outbox: how far the ledger has been examined (the cursor) and every
//! delivery not yet done, kept durably in one directory so a restart loses no alert.
//!
//! # Layout
//!
//! `<dir>/journal.jsonl` is an append-only journal of JSON lines, each ending in `\n`:
//!
//! ```text
//! {"op":"header","format":"custos-alerts-outbox","version":1}    first line, always
//! {"op":"cursor","next_seq":N}                                    entries below N examined
//! {"op":"pending","sink":"oncall","seq":7,"entry_id":"…","tenant":"acme","attempts":2,"next_attempt_ms":…,"reported":false}
//! {"op":"done","sink":"oncall","seq":7}                           delivered and recorded
//! ```
//!
//! A `pending` line sets the whole state of one delivery (sink, entry seq); a later one
//! replaces it; `done` removes it. Payloads are not stored: they are rebuilt from the ledger
//! entry (the system of record) at each attempt, so the outbox stays small — about 200 bytes
//! per delivery — whatever the entry's size.
//!
//! `<dir>/lock` is held (an OS file lock) while a dispatcher uses the outbox, so two
//! processes cannot interleave their lines.
//!
//! # Durability and order
//!
//! [`Journal::append`] writes the changes of one step and makes them durable (fdatasync)
//! before it returns; within a step, new `pending` lines are made durable *before* the cursor
//! line that passes their entries is written, so no crash can leave a cursor beyond an alert
//! whose delivery is not recorded. The journal is compacted (rewritten to
//! `journal.jsonl.tmp`, synced, renamed over the journal, directory synced) on open, on a
//! clean stop and when it has grown to several times its live content.
//!
//! # Damage
//!
//! A torn last line (no final `\n`: the process died mid-write) is ignored with a warning —
//! the step it belonged to was never acknowledged. Any other damage is an
//! [`AlertError::Corrupt`] naming the file and the line: the outbox is not guessed at.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AlertError;

/// The journal's file name in the outbox directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// Where a compaction writes before renaming over the journal.
pub const COMPACTING_FILE: &str = "journal.jsonl.tmp";
/// The lock file's name in the outbox directory.
pub const LOCK_FILE: &str = "lock";
/// `format` of the header line.
const FORMAT: &str = "custos-alerts-outbox";
/// `version` of the header line.
const VERSION: u32 = 1;
/// The journal is not compacted below this many lines.
const COMPACT_MIN_LINES: u64 = 10_000;

/// One delivery of one alert entry to one webhook, not yet done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The webhook's name.
    pub sink: String,
    /// The alert entry's seq.
    pub seq: u64,
    /// The alert entry's id (checked against the ledger before each attempt).
    pub entry_id: String,
    /// The alert entry's tenant (for the dispatcher's records, even if the entry is
    /// unreadable).
    pub tenant: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time, milliseconds since the Unix epoch.
    pub next_attempt_ms: u64,
    /// Whether `alert_delivery_failed` was recorded for it.
    pub reported: bool,
}

impl Delivery {
    /// A new delivery, due at once.
    pub fn new(sink: &str, seq: u64, entry_id: &str, tenant: &str) -> Self {
        Delivery {
            sink: sink.to_owned(),
            seq,
            entry_id: entry_id.to_owned(),
            tenant: tenant.to_owned(),
            attempts: 0,
            next_attempt_ms: 0,
            reported: false,
        }
    }
}

/// One change to the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Every entry below this seq has been examined.
    Cursor(u64),
    /// A delivery is added or its state replaced.
    Pending(Delivery),
    /// A delivery is done (delivered, and its `alert_delivered` recorded).
    Done {
        /// The webhook.
        sink: String,
        /// The alert entry's seq.
        seq: u64,
    },
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Header { format: String, version: u32 },
    Cursor { next_seq: u64 },
    Pending(Delivery),
    Done { sink: String, seq: u64 },
}

impl Line {
    fn of(change: &Change) -> Line {
        match change {
            Change::Cursor(next_seq) => Line::Cursor {
                next_seq: *next_seq,
            },
            Change::Pending(d) => Line::Pending(d.clone()),
            Change::Done { sink, seq } => Line::Done {
                sink: sink.clone(),
                seq: *seq,
            },
        }
    }

    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self).map_err(io::Error::other)?;
        out.push(b'\n');
        Ok(())
    }
}

/// What the outbox holds: the cursor and the pending deliveries, in (seq, sink) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxState {
    cursor: u64,
    pending: BTreeMap<(u64, String), Delivery>,
}

impl OutboxState {
    /// Every entry below this seq has been examined.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Pending deliveries, by entry seq then sink.
    pub fn pending(&self) -> impl Iterator<Item = &Delivery> {
        self.pending.values()
    }

    /// How many deliveries are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending delivery of entry `seq` to `sink`.
    pub fn get(&self, sink: &str, seq: u64) -> Option<&Delivery> {
        self.pending.get(&(seq, sink.to_owned()))
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Cursor(next) => self.cursor = next,
            Change::Pending(d) => {
                self.pending.insert((d.seq, d.sink.clone()), d);
            }
            Change::Done { sink, seq } => {
                self.pending.remove(&(seq, sink));
            }
        }
    }
}

/// The journal file of an outbox directory, locked for this process.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    lines: u64,
    _lock: File,
}

impl Journal {
    /// Appends the changes of one step and makes them durable: first every delivery change,
    /// synced, then the last cursor change, synced — so a pending delivery is durable before
    /// the cursor passes its entry. After an error the journal's tail is unknown: reopen the
    /// outbox (a torn tail is then discarded) rather than appending again.
    pub fn append(&mut self, changes: &[Change]) -> Result<(), AlertError> {
        let mut deliveries = Vec::new();
        let mut count = 0;
        let mut cursor = None;
        for change in changes {
            match change {
                Change::Cursor(_) => cursor = Some(change),
                other => {
                    Line::of(other)
                        .write(&mut deliveries)
                        .map_err(self.error("encoding a journal line"))?;
                    count += 1;
                }
            }
        }
        if count > 0 {
            self.write_synced(&deliveries, count)?;
        }
        if let Some(change) = cursor {
            let mut line = Vec::new();
            Line::of(change)
                .write(&mut line)
                .map_err(self.error("encoding a journal line"))?;
            self.write_synced(&line, 1)?;
        }
        Ok(())
    }

    fn write_synced(&mut self, bytes: &[u8], lines: u64) -> Result<(), AlertError> {
        self.file
            .write_all(bytes)
            .map_err(self.error("appending to"))?;
        self.file.sync_data().map_err(self.error("syncing"))?;
        self.lines += lines;
        Ok(())
    }

    /// Whether the journal has grown enough beyond `live` deliveries to be worth compacting.
    pub fn wants_compaction(&self, live: usize) -> bool {
        wants_compaction(self.lines, live)
    }

    /// Lines in the journal file.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Replaces the journal with `state`: written to a temporary file, synced, renamed over
    /// the journal, directory synced. A crash at any point leaves the old or the new journal.
    pub fn rewrite(&mut self, state: &OutboxState) -> Result<(), AlertError> {
        self.file = write_journal(&self.dir, state)?;
        self.lines = 2 + state.len() as u64;
        Ok(())
    }

    fn error(&self, what: &str) -> impl FnOnce(io::Error) -> AlertError + use<> {
        AlertError::io(format!("{what} {}", self.path.display()))
    }
}

/// An opened outbox: its state and its journal.
#[derive(Debug)]
pub struct Outbox {
    state: OutboxState,
    journal: Journal,
    created: bool,
    torn_bytes: u64,
}

impl Outbox {
    /// Opens (creating it if needed) the outbox in `dir` and locks it. A new outbox starts
    /// with its cursor at `new_cursor`, made durable before this returns. An existing one is
    /// read back — a torn last line ignored with a warning, any other damage an error naming
    /// the file and line — and compacted.
    pub fn open(dir: &Path, new_cursor: u64) -> Result<Outbox, AlertError> {
        fs::create_dir_all(dir).map_err(AlertError::io(format!(
            "creating the alert outbox directory {}",
            dir.display()
        )))?;
        let lock = lock(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let (state, created, torn_bytes) = if path.exists() {
            let (state, torn) = read_journal(&path)?;
            if torn > 0 {
                tracing::warn!(
                    file = %path.display(),
                    bytes = torn,
                    "ignoring a torn last line of the alert outbox journal (a write cut short by a crash)"
                );
            }
            (state, false, torn)
        } else {
            let state = OutboxState {
                cursor: new_cursor,
                pending: BTreeMap::new(),
            };
            (state, true, 0)
        };
        let file = write_journal(dir, &state)?;
        let journal = Journal {
            dir: dir.to_owned(),
            path,
            file,
            lines: 2 + state.len() as u64,
            _lock: lock,
        };
        Ok(Outbox {
            state,
            journal,
            created,
            torn_bytes,
        })
    }

    /// What the outbox holds.
    pub fn state(&self) -> &OutboxState {
        &self.state
    }

    /// Whether this open created the outbox.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Bytes of a torn last line that were ignored.
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// Makes `changes` durable ([`Journal::append`]), then applies them.
    pub fn commit(&mut self, changes: Vec<Change>) -> Result<(), AlertError> {
        self.journal.append(&changes)?;
        for change in changes {
            self.state.apply(change);
        }
        Ok(())
    }

    /// Rewrites the journal to hold just the current state.
    pub fn compact(&mut self) -> Result<(), AlertError> {
        self.journal.rewrite(&self.state)
    }

    /// The state and the journal, to be used apart (the journal from blocking tasks).
    pub fn into_parts(self) -> (OutboxState, Journal) {
        (self.state, self.journal)
    }
}

/// Whether a journal of `lines` lines holding `live` deliveries is worth compacting: it has
/// grown past a minimum and to more than twice what a fresh one would hold.
pub fn wants_compaction(lines: u64, live: usize) -> bool {
    lines > COMPACT_MIN_LINES && lines > 2 * (live as u64 + 2)
}

fn lock(dir: &Path) -> Result<File, AlertError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(AlertError::io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(AlertError::Outbox {
            dir: dir.to_owned(),
            problem: format!(
                "is in use by another alert dispatcher ({} is locked)",
                path.display()
            ),
        }),
        Err(fs::TryLockError::Error(e)) => {
            Err(AlertError::io(format!("locking {}", path.display()))(e))
        }
    }
}

/// Reads a journal back: the state and the length of a torn last line (0 if none).
fn read_journal(path: &Path) -> Result<(OutboxState, u64), AlertError> {
    let file = File::open(path).map_err(AlertError::io(format!("opening {}", path.display())))?;
    let mut reader = BufReader::new(file);
    let corrupt = |line: u64, problem: String| AlertError::Corrupt {
        file: path.to_owned(),
        line,
        problem,
    };
    let mut state = OutboxState::default();
    let mut buf = Vec::new();
    let mut number = 0u64;
    let mut torn = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(AlertError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            torn = n as u64;
            break;
        }
        number += 1;
        let text = &buf[..buf.len() - 1];
        let line: Line = serde_json::from_slice(text)
            .map_err(|e| corrupt(number, format!("not an outbox journal record ({e})")))?;
        match (number, line) {
            (1, Line::Header { format, version }) => {
                if format != FORMAT {
                    return Err(corrupt(1, format!("format `{format}` is not `{FORMAT}`")));
                }
                if version != VERSION {
                    return Err(corrupt(
                        1,
                        format!("journal version {version}; this custos reads version {VERSION}"),
                    ));
                }
            }
            (1, _) => {
                return Err(corrupt(
                    1,
                    "the first line is not the outbox journal header".into(),
                ));
            }
            (_, Line::Header { .. }) => {
                return Err(corrupt(number, "a second header".into()));
            }
            (_, Line::Cursor { next_seq }) => {
                if next_seq < state.cursor {
                    return Err(corrupt(
                        number,
                        format!("the cursor goes back from {} to {next_seq}", state.cursor),
                    ));
                }
                state.apply(Change::Cursor(next_seq));
            }
            (_, Line::Pending(d)) => state.apply(Change::Pending(d)),
            (_, Line::Done { sink, seq }) => state.apply(Change::Done { sink, seq }),
        }
    }
    if number == 0 {
        return Err(corrupt(1, "the journal has no header (it is empty)".into()));
    }
    Ok((state, torn))
}

/// Writes `state` as a fresh journal (temporary file, sync, rename, directory sync) and
/// returns it opened for appending.
fn write_journal(dir: &Path, state: &OutboxState) -> Result<File, AlertError> {
    let path = dir.join(JOURNAL_FILE);
    let tmp = dir.join(COMPACTING_FILE);
    let context = |what: &str, p: &Path| format!("{what} {}", p.display());
    let file = File::create(&tmp).map_err(AlertError::io(context("creating", &tmp)))?;
    let mut out = BufWriter::new(file);
    let mut line = Vec::new();
    let header = Line::Header {
        format: FORMAT.into(),
        version: VERSION,
    };
    let lines = std::iter::once(header)
        .chain(std::iter::once(Line::Cursor {
            next_seq: state.cursor,
        }))
        .chain(state.pending().cloned().map(Line::Pending));
    for l in lines {
        line.clear();
        l.write(&mut line)
            .and_then(|()| out.write_all(&line))
            .map_err(AlertError::io(context("writing", &tmp)))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| AlertError::io(context("writing", &tmp))(e.into_error()))?;
    file.sync_all()
        .map_err(AlertError::io(context("syncing", &tmp)))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(AlertError::io(format!(
        "renaming {} to {}",
        tmp.display(),
        path.display()
    )))?;
    sync_dir(dir)?;
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(AlertError::io(context("opening", &path)))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), AlertError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(AlertError::io(format!(
            "syncing directory {}",
            dir.display()
        )))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), AlertError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sink: &str, seq: u64) -> Delivery {
        Delivery::new(sink, seq, &format!("id-{seq}"), "acme")
    }

    #[test]
    fn a_new_outbox_starts_at_the_cursor_given_and_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path(), 17).expect("open");
        assert!(outbox.created());
        assert_eq!(outbox.state().cursor(), 17);
        drop(outbox);
        let again = Outbox::open(dir.path(), 99).expect("reopen");
        assert!(!again.created());
        assert_eq!(again.state().cursor(), 17);
    }

    #[test]
    fn committed_changes_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 0).expect("open");
        outbox
            .commit(vec![
                Change::Pending(delivery("a", 3)),
                Change::Pending(delivery("b", 3)),
                Change::Pending(delivery("a", 5)),
                Change::Cursor(6),
            ])
            .expect("commit");
        let mut retried = delivery("a", 5);
        retried.attempts = 2;
        retried.next_attempt_ms = 1234;
        retried.reported = true;
        outbox
            .commit(vec![
                Change::Done {
                    sink: "b".into(),
                    seq: 3,
                },
                Change::Pending(retried.clone()),
            ])
            .expect("commit");
        let expected = outbox.state().clone();
        drop(outbox);
        let again = Outbox::open(dir.path(), 0).expect("reopen");
        assert_eq!(again.state(), &expected);
        assert_eq!(again.state().cursor(), 6);
        assert_eq!(again.state().len(), 2);
        assert_eq!(again.state().get("a", 5), Some(&retried));
        assert_eq!(again.state().get("b", 3), None);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 0).expect("open");
        outbox
            .commit(vec![Change::Pending(delivery("a", 1)), Change::Cursor(2)])
            .expect("commit");
        drop(outbox);
        let path = dir.path().join(JOURNAL_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        let torn = br#"{"op":"pending","sink":"a","se"#;
        file.write_all(torn).expect("write");
        drop(file);
        let again = Outbox::open(dir.path(), 0).expect("a torn line is tolerated");
        assert_eq!(again.torn_bytes(), torn.len() as u64);
        assert_eq!(again.state().cursor(), 2);
        assert_eq!(again.state().len(), 1);
        drop(again);
        let text = fs::read_to_string(&path).expect("read");
        assert!(
            text.ends_with('\n'),
            "the torn line is gone after compaction"
        );
    }

    #[test]
    fn damage_other_than_a_torn_tail_names_the_file_and_line() {
        let cases: [(&str, u64, &str); 5] = [
            ("middle", 2, "not an outbox journal record"),
            ("header", 1, "not the outbox journal header"),
            ("version", 1, "journal version 2"),
            ("backwards", 4, "the cursor goes back from 5 to 1"),
            ("empty", 1, "no header"),
        ];
        for (case, line, problem) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut outbox = Outbox::open(dir.path(), 5).expect("open");
            outbox
                .commit(vec![Change::Pending(delivery("a", 6))])
                .expect("commit");
            drop(outbox);
            let path = dir.path().join(JOURNAL_FILE);
            let text = fs::read_to_string(&path).expect("read");
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            match case {
                "middle" => lines.insert(1, "garbage".into()),
                "header" => {
                    lines.remove(0);
                }
                "version" => lines[0] = lines[0].replace("\"version\":1", "\"version\":2"),
                "backwards" => lines.push(r#"{"op":"cursor","next_seq":1}"#.into()),
                _ => lines.clear(),
            }
            let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
            fs::write(&path, body).expect("write");
            match Outbox::open(dir.path(), 0) {
                Err(AlertError::Corrupt {
                    file,
                    line: at,
                    problem: p,
                }) => {
                    assert_eq!(file, path, "{case}");
                    assert_eq!(at, line, "{case}: {p}");
                    assert!(p.contains(problem), "{case}: {p}");
                }
                other => panic!("{case}: expected a corrupt-journal error, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_outbox_in_use_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Outbox::open(dir.path(), 0).expect("open");
        match Outbox::open(dir.path(), 0) {
            Err(AlertError::Outbox { problem, .. }) => {
                assert!(problem.contains("in use"), "{problem}")
            }
            other => panic!("expected an in-use error, got {other:?}"),
        }
    }

    #[test]
    fn compaction_keeps_the_state_and_shrinks_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 0).expect("open");
        for seq in 0..50 {
            outbox
                .commit(vec![
                    Change::Pending(delivery("a", seq)),
                    Change::Cursor(seq + 1),
                ])
                .expect("commit");
            if seq % 2 == 0 {
                outbox
                    .commit(vec![Change::Done {
                        sink: "a".into(),
                        seq,
                    }])
                    .expect("commit");
            }
        }
        assert_eq!(outbox.journal.lines(), 2 + 50 * 2 + 25);
        let before = outbox.state().clone();
        outbox.compact().expect("compact");
        assert_eq!(outbox.journal.lines(), 2 + 25);
        drop(outbox);
        let again = Outbox::open(dir.path(), 0).expect("reopen");
        assert_eq!(again.state(), &before);
        let text = fs::read_to_string(dir.path().join(JOURNAL_FILE)).expect("read");
        assert_eq!(text.lines().count(), 27);
        assert!(!dir.path().join(COMPACTING_FILE).exists());
    }
}
