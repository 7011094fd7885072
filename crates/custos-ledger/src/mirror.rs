//! The file mirror (SPEC §3.7): every ledger entry copied to signed JSON Lines files that a
//! SIEM (Logstash, Vector, Splunk) can ingest, and that `custos mirror verify` can check
//! without the ledger.
//!
//! # Files
//!
//! The mirror lives in one directory as `<prefix>-NNNNNN.jsonl` (six or more digits, starting at
//! `000001`), so sorting the names sorts the files. Lines are appended to the newest file; when
//! it has reached `max_file_bytes`, the writer appends a signed *seal* line to it, syncs it and
//! continues in the next file. The newest file is never sealed: it stays open for the next run.
//!
//! # Lines
//!
//! Each line is one JSON object ending in `\n`. An entry line, with its keys in this order:
//!
//! ```text
//! {"seq":N,"entry":<canonical entry>,"content_hash":"<hex>","previous_hash":"<hex>","signature":"<hex>"}
//! ```
//!
//! - `entry` is the entry's canonical (RFC 8785) bytes, verbatim;
//! - `content_hash` is the lowercase hex SHA-256 of those bytes;
//! - `previous_hash` is the `content_hash` of the entry line before it, in this file or the file
//!   before (the chain continues across files), and 64 zeros for the first entry of the mirror;
//! - `signature` is the lowercase hex HMAC-SHA256, under the mirror key, of the 128 ASCII
//!   characters `content_hash ‖ previous_hash`.
//!
//! A seal line, the last line of every file but the newest:
//!
//! ```text
//! {"seal":{"file":"<name>","last_hash":"<hex>","last_seq":S,"lines":L,"next_file":"<name>"},"signature":"<hex>"}
//! ```
//!
//! where `lines` counts the entry lines of the file, `last_seq` and `last_hash` are the seq and
//! `content_hash` of its last entry line, `next_file` names the file the chain continues in, and
//! `signature` is the HMAC-SHA256 of the seal object's JCS canonical bytes — exactly the bytes
//! between `"seal":` and `,"signature"`, since the seal is written in canonical form.
//!
//! # What verification proves
//!
//! With the key, [`verify_files`] detects any edit of a line (content hash, signature, or the
//! line differing from the exact form written here), any deleted, inserted or reordered line
//! (seq or hash chain break), a rotated file that was cut or lost its seal, a missing, extra or
//! renamed file, and a torn last line. Entries cut from the end of the newest file leave no trace
//! in the files themselves; `through` (the ledger's last seq, `--through` on the command line)
//! catches that, and [`MirrorReport::open_tail`] says when it could have happened.
//!
//! The writer trusts the record bytes it is given to be canonical entries (the store holds
//! nothing else) and checks only that each forms one line: re-canonicalising every entry would
//! halve its throughput.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use custos_core::jcs;
use custos_store::RawRecord;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The file name prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "custos-mirror";

/// The rotation size used when none is configured: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// The shortest HMAC key accepted, in bytes (the SHA-256 output size, RFC 2104 §3).
pub const MIN_KEY_BYTES: usize = 32;

/// `previous_hash` of the first entry of a mirror.
const ZERO_HASH: [u8; 64] = [b'0'; 64];

/// Longer lines are refused rather than read into memory.
const MAX_LINE_BYTES: u64 = 16 << 20;

/// Buffered lines are written out once they reach this size, bounding memory for huge batches.
const FLUSH_BYTES: usize = 1 << 20;

/// Where and how the mirror is written.
#[derive(Clone)]
pub struct MirrorConfig {
    /// Directory of the mirror files; created if missing.
    pub dir: PathBuf,
    /// File name prefix: ASCII letters, digits, `.`, `_` and `-` only.
    pub prefix: String,
    /// A file is sealed and the next one started once it holds this many bytes.
    pub max_file_bytes: u64,
    /// HMAC-SHA256 key, at least [`MIN_KEY_BYTES`] long.
    pub key: Vec<u8>,
}

impl MirrorConfig {
    /// A mirror in `dir` with the default prefix and rotation size.
    pub fn new(dir: impl Into<PathBuf>, key: Vec<u8>) -> Self {
        MirrorConfig {
            dir: dir.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            key,
        }
    }
}

impl fmt::Debug for MirrorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorConfig")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why writing or verifying the mirror failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A mirror file is not what the writer wrote: the file, the 1-based line, the seq when
    /// known, and what is wrong.
    #[error("{}: line {line}{}: {problem}", .file.display(), seq_note(*.seq))]
    Tampered {
        /// The file, as given.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The seq the line carries, or the last seq before it.
        seq: Option<u64>,
        /// What is wrong.
        problem: String,
    },
    /// Records handed to [`MirrorWriter::append`] do not continue the mirror.
    #[error("record seq {found} does not continue the mirror, which expects seq {expected}")]
    OutOfSequence {
        /// The seq the mirror expects.
        expected: u64,
        /// The seq it was given.
        found: u64,
    },
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A configuration, key or argument is unusable.
    #[error("{0}")]
    Invalid(String),
}

fn seq_note(seq: Option<u64>) -> String {
    seq.map(|s| format!(" (seq {s})")).unwrap_or_default()
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> MirrorError {
    let context = context.into();
    move |source| MirrorError::Io { context, source }
}

/// Reads an HMAC key from a file holding it as hex or base64 text (surrounding whitespace is
/// ignored; text that is valid hex is read as hex). The key must be at least
/// [`MIN_KEY_BYTES`] long. Errors never quote the file's content.
pub fn load_key(path: &Path) -> Result<Vec<u8>, MirrorError> {
    let text = fs::read_to_string(path).map_err(io_error(format!(
        "reading mirror key file {}",
        path.display()
    )))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(MirrorError::Invalid(format!(
            "mirror key file {} is empty; it must hold at least {MIN_KEY_BYTES} bytes as hex or base64",
            path.display()
        )));
    }
    let key = if text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
            .ok()
    };
    let Some(key) = key else {
        return Err(MirrorError::Invalid(format!(
            "mirror key file {} holds neither hex nor base64 text",
            path.display()
        )));
    };
    check_key_length(&key).map_err(|problem| {
        MirrorError::Invalid(format!("mirror key file {}: {problem}", path.display()))
    })?;
    Ok(key)
}

fn check_key_length(key: &[u8]) -> Result<(), String> {
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes; at least {MIN_KEY_BYTES} are required (e.g. `openssl rand -hex 32`)",
            key.len()
        ));
    }
    Ok(())
}

/// The mirror key, keyed once so each line costs only the message compressions.
#[derive(Clone)]
struct LineKey(HmacSha256);

impl LineKey {
    fn new(key: &[u8]) -> Result<Self, MirrorError> {
        check_key_length(key).map_err(|p| MirrorError::Invalid(format!("mirror key: {p}")))?;
        HmacSha256::new_from_slice(key)
            .map(LineKey)
            .map_err(|e| MirrorError::Invalid(format!("mirror key: {e}")))
    }

    fn sign_entry(&self, content_hash: &[u8; 64], previous_hash: &[u8; 64]) -> [u8; 64] {
        let mut mac = self.0.clone();
        mac.update(content_hash);
        mac.update(previous_hash);
        hex64(&mac.finalize().into_bytes().into())
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut mac = self.0.clone();
        mac.update(message);
        hex64(&mac.finalize().into_bytes().into())
    }

    /// Constant-time check of a hex signature over the concatenated `parts`.
    fn verify(&self, parts: &[&[u8]], signature: &[u8; 64]) -> bool {
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(signature, &mut raw).is_err() {
            return false;
        }
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&raw).is_ok()
    }
}

/// Lowercase hex of 32 bytes.
fn hex64(bytes: &[u8; 32]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

fn content_hash(bytes: &[u8]) -> [u8; 64] {
    hex64(&Sha256::digest(bytes).into())
}

/// Appends an entry line, `\n` included, in the one form the mirror writes.
fn push_entry_line(
    seq: u64,
    entry: &[u8],
    content_hash: &[u8; 64],
    previous_hash: &[u8; 64],
    signature: &[u8; 64],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"seq\":");
    custos_core::jcs::write_u64(seq, out);
    out.extend_from_slice(b",\"entry\":");
    out.extend_from_slice(entry);
    out.extend_from_slice(b",\"content_hash\":\"");
    out.extend_from_slice(content_hash);
    out.extend_from_slice(b"\",\"previous_hash\":\"");
    out.extend_from_slice(previous_hash);
    out.extend_from_slice(b"\",\"signature\":\"");
    out.extend_from_slice(signature);
    out.extend_from_slice(b"\"}\n");
}

/// What a seal line vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seal {
    file: String,
    lines: u64,
    last_seq: u64,
    last_hash: [u8; 64],
    next_file: String,
}

impl Seal {
    /// The JCS canonical bytes of the seal object (members in code-unit order).
    fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(b"{\"file\":");
        jcs::write_string(&self.file, &mut out);
        out.extend_from_slice(b",\"last_hash\":\"");
        out.extend_from_slice(&self.last_hash);
        out.extend_from_slice(b"\",\"last_seq\":");
        custos_core::jcs::write_u64(self.last_seq, &mut out);
        out.extend_from_slice(b",\"lines\":");
        custos_core::jcs::write_u64(self.lines, &mut out);
        out.extend_from_slice(b",\"next_file\":");
        jcs::write_string(&self.next_file, &mut out);
        out.push(b'}');
        out
    }
}

/// Appends a seal line, `\n` included.
fn push_seal_line(canonical_seal: &[u8], signature: &[u8; 64], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"seal\":");
    out.extend_from_slice(canonical_seal);
    out.extend_from_slice(b",\"signature\":\"");
    out.extend_from_slice(signature);
    out.extend_from_slice(b"\"}\n");
}

/// One line that passed every check that needs no other line.
#[derive(Debug)]
enum Line {
    Entry {
        seq: u64,
        content_hash: [u8; 64],
        previous_hash: [u8; 64],
    },
    Seal(Seal),
}

/// Why one line is bad on its own.
#[derive(Debug)]
struct LineProblem {
    /// The line is not JSON at all: what an interrupted write leaves.
    unparsable: bool,
    seq: Option<u64>,
    problem: String,
}

impl LineProblem {
    fn new(seq: Option<u64>, problem: impl Into<String>) -> Self {
        LineProblem {
            unparsable: false,
            seq,
            problem: problem.into(),
        }
    }

    fn at(self, file: &Path, line: u64) -> MirrorError {
        MirrorError::Tampered {
            file: file.to_owned(),
            line,
            seq: self.seq,
            problem: self.problem,
        }
    }
}

/// Checks one line (without its `\n`): JSON shape, content hash, signature, and that it is
/// byte for byte the form the writer produces, so no field, duplicate key or whitespace can be
/// added that a SIEM would read but the hashes do not cover.
fn parse_line(raw: &[u8], key: &LineKey, scratch: &mut Vec<u8>) -> Result<Line, LineProblem> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| LineProblem {
        unparsable: true,
        seq: None,
        problem: format!("not a JSON line ({e})"),
    })?;
    let Value::Object(fields) = value else {
        return Err(LineProblem::new(None, "not a JSON object"));
    };
    if fields.contains_key("seal") {
        parse_seal_line(raw, &fields, key, scratch)
    } else {
        parse_entry_line(raw, &fields, key, scratch)
    }
}

fn hex_field(fields: &Map<String, Value>, name: &str) -> Result<[u8; 64], String> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .and_then(|s| <[u8; 64]>::try_from(s.as_bytes()).ok())
        .filter(|h| h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| format!("field `{name}` is missing or not 64 lowercase hex digits"))
}

const NOT_AS_WRITTEN: &str = "the line is not in the exact form the mirror writes \
     (a field, a repeated key or whitespace was added, or the key order changed)";

fn parse_entry_line(
    raw: &[u8],
    fields: &Map<String, Value>,
    key: &LineKey,
    scratch: &mut Vec<u8>,
) -> Result<Line, LineProblem> {
    let seq = fields.get("seq").and_then(Value::as_u64).ok_or_else(|| {
        LineProblem::new(None, "field `seq` is missing or not an unsigned integer")
    })?;
    let problem = |p: &str| LineProblem::new(Some(seq), p);
    let entry = fields
        .get("entry")
        .filter(|e| e.is_object())
        .ok_or_else(|| problem("field `entry` is missing or not an object"))?;
    let content = hex_field(fields, "content_hash").map_err(|p| problem(&p))?;
    let previous = hex_field(fields, "previous_hash").map_err(|p| problem(&p))?;
    let signature = hex_field(fields, "signature").map_err(|p| problem(&p))?;
    let canonical = jcs::to_canonical(entry)
        .map_err(|e| problem(&format!("the entry has no canonical form: {e}")))?;
    if content_hash(&canonical) != content {
        return Err(problem(
            "the entry does not match its content_hash: the entry was edited",
        ));
    }
    if entry.get("seq").and_then(Value::as_u64) != Some(seq) {
        return Err(problem(
            "the entry's own seq differs from the line's seq: the line was edited",
        ));
    }
    if !key.verify(&[&content, &previous], &signature) {
        return Err(problem(
            "the signature does not verify: content_hash, previous_hash or signature was edited, \
             or the key is wrong",
        ));
    }
    scratch.clear();
    push_entry_line(seq, &canonical, &content, &previous, &signature, scratch);
    if scratch.strip_suffix(b"\n") != Some(raw) {
        return Err(problem(NOT_AS_WRITTEN));
    }
    Ok(Line::Entry {
        seq,
        content_hash: content,
        previous_hash: previous,
    })
}

fn parse_seal_line(
    raw: &[u8],
    fields: &Map<String, Value>,
    key: &LineKey,
    scratch: &mut Vec<u8>,
) -> Result<Line, LineProblem> {
    let malformed = |what: &str| LineProblem::new(None, format!("seal line: {what}"));
    let seal = fields
        .get("seal")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("`seal` is not an object"))?;
    let text = |name: &str| {
        seal.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| malformed(&format!("`{name}` is missing or not a string")))
    };
    let number = |name: &str| {
        seal.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed(&format!("`{name}` is missing or not an unsigned integer")))
    };
    let seal = Seal {
        file: text("file")?,
        lines: number("lines")?,
        last_seq: number("last_seq")?,
        last_hash: hex_field(seal, "last_hash").map_err(|p| malformed(&p))?,
        next_file: text("next_file")?,
    };
    let problem = |p: &str| LineProblem::new(Some(seal.last_seq), p);
    let signature = hex_field(fields, "signature").map_err(|p| problem(&p))?;
    let canonical = seal.canonical();
    if !key.verify(&[&canonical], &signature) {
        return Err(problem(
            "the seal's signature does not verify: the seal was edited, or the key is wrong",
        ));
    }
    scratch.clear();
    push_seal_line(&canonical, &signature, scratch);
    if scratch.strip_suffix(b"\n") != Some(raw) {
        return Err(problem(NOT_AS_WRITTEN));
    }
    Ok(Line::Seal(seal))
}

/// Name of the mirror file with this index.
fn file_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:06}.jsonl")
}

/// The index of a mirror file name, if it is one.
fn file_index(prefix: &str, name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn check_prefix(prefix: &str) -> Result<(), MirrorError> {
    let ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(MirrorError::Invalid(format!(
            "mirror file prefix `{prefix}` must be non-empty and use only ASCII letters, digits, `.`, `_` and `-`"
        )))
    }
}

/// Indexes of the mirror files in `dir`, ascending.
fn list_indexes(dir: &Path, prefix: &str) -> Result<Vec<u64>, MirrorError> {
    let context = || format!("listing mirror directory {}", dir.display());
    let mut indexes = Vec::new();
    for item in fs::read_dir(dir).map_err(io_error(context()))? {
        let item = item.map_err(io_error(context()))?;
        if let Some(index) = item
            .file_name()
            .to_str()
            .and_then(|n| file_index(prefix, n))
        {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    Ok(indexes)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), MirrorError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("syncing directory {}", dir.display())))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), MirrorError> {
    Ok(())
}

/// The last complete line of a file and what precedes it.
struct FileTail {
    /// Length of the file up to and including the last complete line.
    len: u64,
    /// Complete lines up to `len`.
    lines: u64,
    last: Option<Line>,
}

/// Reads the end of a mirror file. With `repair`, an interrupted append is cut off: bytes after
/// the last `\n`, and then one last line that is not JSON at all. Anything else wrong with the
/// last line is an error: it was written whole, so cutting it would destroy evidence.
fn read_tail(
    file: &mut File,
    path: &Path,
    key: &LineKey,
    repair: bool,
) -> Result<FileTail, MirrorError> {
    let context = || format!("reading mirror file {}", path.display());
    let mut lines = 0u64;
    let mut end = 0u64;
    let mut size = 0u64;
    let mut chunk = vec![0u8; 256 * 1024];
    file.seek(SeekFrom::Start(0)).map_err(io_error(context()))?;
    loop {
        let n = file.read(&mut chunk).map_err(io_error(context()))?;
        if n == 0 {
            break;
        }
        let read = &chunk[..n];
        lines += read.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(i) = read.iter().rposition(|b| *b == b'\n') {
            end = size + i as u64 + 1;
        }
        size += n as u64;
    }
    if end < size {
        if !repair {
            return Err(MirrorError::Tampered {
                file: path.to_owned(),
                line: lines + 1,
                seq: None,
                problem: "the line has no trailing newline: the file was cut".into(),
            });
        }
        truncate(file, path, size - end, end)?;
    }
    let mut cut_one = false;
    let mut scratch = Vec::new();
    while end > 0 {
        let start = newline_before(file, path, end - 1)?.map_or(0, |nl| nl + 1);
        let line_len = end - 1 - start;
        if line_len > MAX_LINE_BYTES {
            return Err(MirrorError::Tampered {
                file: path.to_owned(),
                line: lines,
                seq: None,
                problem: format!("the line is longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        let mut raw = vec![0u8; line_len as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(io_error(context()))?;
        match parse_line(&raw, key, &mut scratch) {
            Ok(line) => {
                return Ok(FileTail {
                    len: end,
                    lines,
                    last: Some(line),
                });
            }
            Err(p) if p.unparsable && repair && !cut_one => {
                truncate(file, path, end - start, start)?;
                cut_one = true;
                end = start;
                lines -= 1;
            }
            Err(p) => return Err(p.at(path, lines)),
        }
    }
    Ok(FileTail {
        len: 0,
        lines: 0,
        last: None,
    })
}

/// Offset of the last `\n` before `pos`, reading backwards.
fn newline_before(file: &mut File, path: &Path, pos: u64) -> Result<Option<u64>, MirrorError> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut to = pos;
    while to > 0 {
        let from = to.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(to - from) as usize];
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_exact(buf))
            .map_err(io_error(format!("reading mirror file {}", path.display())))?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(from + i as u64));
        }
        to = from;
    }
    Ok(None)
}

fn truncate(file: &mut File, path: &Path, cut_bytes: u64, to: u64) -> Result<(), MirrorError> {
    file.set_len(to)
        .and_then(|()| file.sync_all())
        .map_err(io_error(format!(
            "cutting the torn end of mirror file {}",
            path.display()
        )))?;
    tracing::warn!(
        file = %path.display(),
        cut_bytes,
        "cut an interrupted append from the end of a mirror file"
    );
    Ok(())
}

/// Appends ledger records to the mirror files: buffered, one `fdatasync` per append call.
///
/// After an I/O error the writer refuses further appends; reopening it resumes from what
/// reached the disk.
pub struct MirrorWriter {
    dir: PathBuf,
    prefix: String,
    max_file_bytes: u64,
    key: LineKey,
    file: File,
    index: u64,
    /// Bytes in the current file, buffered ones included.
    file_bytes: u64,
    /// Entry lines in the current file, buffered ones included.
    file_lines: u64,
    /// Seq of the last entry line; `None` while the mirror holds no entry (until then the
    /// first record may carry any seq).
    last_seq: Option<u64>,
    /// `content_hash` of the last entry line, or zeros.
    last_hash: [u8; 64],
    buf: Vec<u8>,
    failed: Option<String>,
}

impl fmt::Debug for MirrorWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorWriter")
            .field("dir", &self.dir)
            .field("file", &file_name(&self.prefix, self.index))
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl MirrorWriter {
    /// Opens the mirror in `config.dir`, creating it if needed, and resumes after the last
    /// complete line of the newest file. An interrupted append (a last line without its `\n`,
    /// or one that is not JSON) is cut off. Refuses a last line that does not verify with the
    /// configured key: continuing would break the chain.
    pub fn open(config: MirrorConfig) -> Result<Self, MirrorError> {
        check_prefix(&config.prefix)?;
        if config.max_file_bytes == 0 {
            return Err(MirrorError::Invalid(
                "mirror max_file_bytes must be greater than zero".into(),
            ));
        }
        let key = LineKey::new(&config.key)?;
        let dir = config.dir;
        let prefix = config.prefix;
        fs::create_dir_all(&dir).map_err(io_error(format!(
            "creating mirror directory {}",
            dir.display()
        )))?;
        let indexes = list_indexes(&dir, &prefix)?;
        let mut writer = match indexes.last() {
            None => {
                let file = create_file(&dir.join(file_name(&prefix, 1)))?;
                sync_dir(&dir)?;
                MirrorWriter::fresh(dir, prefix, config.max_file_bytes, key, file, 1)
            }
            Some(&newest) => {
                let path = dir.join(file_name(&prefix, newest));
                let mut file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_error(format!("opening mirror file {}", path.display())))?;
                let tail = read_tail(&mut file, &path, &key, true)?;
                let mut writer =
                    MirrorWriter::fresh(dir, prefix, config.max_file_bytes, key, file, newest);
                writer.file_bytes = tail.len;
                match tail.last {
                    Some(Line::Entry {
                        seq, content_hash, ..
                    }) => {
                        writer.resume_after(seq, content_hash);
                        writer.file_lines = tail.lines;
                    }
                    Some(Line::Seal(seal)) => {
                        // Interrupted between sealing this file and creating the next.
                        writer.check_seal_leads_to(&seal, &path, tail.lines, newest + 1)?;
                        writer.resume_after(seal.last_seq, seal.last_hash);
                        writer.start_file(newest + 1)?;
                    }
                    None => {
                        if let Some(&previous) = indexes.iter().rev().nth(1) {
                            writer.resume_from_sealed(previous, newest)?;
                        }
                    }
                }
                writer
            }
        };
        writer.buf.reserve(FLUSH_BYTES + 64 * 1024);
        Ok(writer)
    }

    fn fresh(
        dir: PathBuf,
        prefix: String,
        max_file_bytes: u64,
        key: LineKey,
        file: File,
        index: u64,
    ) -> Self {
        MirrorWriter {
            dir,
            prefix,
            max_file_bytes,
            key,
            file,
            index,
            file_bytes: 0,
            file_lines: 0,
            last_seq: None,
            last_hash: ZERO_HASH,
            buf: Vec::new(),
            failed: None,
        }
    }

    fn resume_after(&mut self, seq: u64, content_hash: [u8; 64]) {
        self.last_seq = Some(seq);
        self.last_hash = content_hash;
    }

    /// The newest file is empty: the chain state comes from the seal of the file before.
    fn resume_from_sealed(&mut self, previous: u64, newest: u64) -> Result<(), MirrorError> {
        let path = self.dir.join(file_name(&self.prefix, previous));
        let mut file = File::open(&path)
            .map_err(io_error(format!("opening mirror file {}", path.display())))?;
        let tail = read_tail(&mut file, &path, &self.key, false)?;
        let Some(Line::Seal(seal)) = tail.last else {
            return Err(MirrorError::Tampered {
                file: path,
                line: tail.lines + 1,
                seq: None,
                problem: format!(
                    "the file has no seal although a later file ({}) exists",
                    file_name(&self.prefix, newest)
                ),
            });
        };
        self.check_seal_leads_to(&seal, &path, tail.lines, newest)?;
        self.resume_after(seal.last_seq, seal.last_hash);
        Ok(())
    }

    fn check_seal_leads_to(
        &self,
        seal: &Seal,
        path: &Path,
        line: u64,
        next: u64,
    ) -> Result<(), MirrorError> {
        let expected = file_name(&self.prefix, next);
        if seal.next_file == expected {
            return Ok(());
        }
        Err(MirrorError::Tampered {
            file: path.to_owned(),
            line,
            seq: Some(seal.last_seq),
            problem: format!(
                "the seal names next file `{}` but the mirror continues in `{expected}`",
                seal.next_file
            ),
        })
    }

    /// The seq the next appended record must carry; 0 for a mirror without entries (whose
    /// first record may carry any seq: a mirror may start after the ledger).
    pub fn next_seq(&self) -> u64 {
        self.last_seq.map_or(0, |s| s.saturating_add(1))
    }

    /// Appends `records`, which must continue the mirror without gap or repeat, and returns
    /// once they are on disk. Nothing is written if a record is out of sequence or its bytes
    /// cannot form one line.
    pub fn append(&mut self, records: &[RawRecord]) -> Result<(), MirrorError> {
        if let Some(why) = &self.failed {
            return Err(MirrorError::Invalid(format!(
                "the mirror writer failed earlier ({why}); reopen it to resume from what is on disk"
            )));
        }
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut expected = match self.last_seq {
            Some(_) => self.next_seq(),
            None => first.seq,
        };
        for record in records {
            if record.seq != expected {
                return Err(MirrorError::OutOfSequence {
                    expected,
                    found: record.seq,
                });
            }
            check_entry_bytes(record)?;
            expected = expected.saturating_add(1);
        }
        let written = self.write_records(records);
        if let Err(e) = &written {
            self.failed = Some(e.to_string());
        }
        written
    }

    fn write_records(&mut self, records: &[RawRecord]) -> Result<(), MirrorError> {
        for record in records {
            if let Some(last_seq) = self.last_seq
                && self.file_lines > 0
                && self.file_bytes >= self.max_file_bytes
            {
                self.rotate(last_seq)?;
            }
            let before = self.buf.len();
            let content = content_hash(&record.bytes);
            let signature = self.key.sign_entry(&content, &self.last_hash);
            push_entry_line(
                record.seq,
                &record.bytes,
                &content,
                &self.last_hash,
                &signature,
                &mut self.buf,
            );
            self.file_bytes += (self.buf.len() - before) as u64;
            self.file_lines += 1;
            self.resume_after(record.seq, content);
            if self.buf.len() >= FLUSH_BYTES {
                self.write_out()?;
            }
        }
        self.write_out()?;
        self.sync()
    }

    /// Seals the current file, syncs it, and continues in the next.
    fn rotate(&mut self, last_seq: u64) -> Result<(), MirrorError> {
        let seal = Seal {
            file: file_name(&self.prefix, self.index),
            lines: self.file_lines,
            last_seq,
            last_hash: self.last_hash,
            next_file: file_name(&self.prefix, self.index + 1),
        };
        let canonical = seal.canonical();
        push_seal_line(&canonical, &self.key.sign(&canonical), &mut self.buf);
        self.write_out()?;
        self.sync()?;
        self.start_file(self.index + 1)
    }

    fn start_file(&mut self, index: u64) -> Result<(), MirrorError> {
        self.file = create_file(&self.dir.join(file_name(&self.prefix, index)))?;
        sync_dir(&self.dir)?;
        self.index = index;
        self.file_bytes = 0;
        self.file_lines = 0;
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), MirrorError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        result.map_err(io_error(format!(
            "writing mirror file {}",
            self.dir.join(file_name(&self.prefix, self.index)).display()
        )))
    }

    fn sync(&mut self) -> Result<(), MirrorError> {
        self.file.sync_data().map_err(io_error(format!(
            "syncing mirror file {}",
            self.dir.join(file_name(&self.prefix, self.index)).display()
        )))
    }

    /// Flushes and syncs the current file. It is not sealed: the next run continues in it.
    pub fn close(mut self) -> Result<(), MirrorError> {
        if self.failed.is_some() {
            return Ok(());
        }
        self.write_out()?;
        self.sync()
    }
}

fn create_file(path: &Path) -> Result<File, MirrorError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(format!("creating mirror file {}", path.display())))
}

/// Entry bytes must be one JSON object without a raw line break (canonical JSON has none).
fn check_entry_bytes(record: &RawRecord) -> Result<(), MirrorError> {
    let bytes = &record.bytes;
    if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') || bytes.contains(&b'\n') {
        return Err(MirrorError::Invalid(format!(
            "record seq {}: the bytes are not a canonical entry (one JSON object on one line)",
            record.seq
        )));
    }
    Ok(())
}

/// What [`verify_files`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorReport {
    /// Files checked.
    pub files: usize,
    /// Entry lines checked.
    pub entries: u64,
    /// Seq of the first entry line. Above 0 when the files do not begin the mirror (the mirror
    /// started after the ledger, or earlier files were left out); nothing before it was checked.
    pub first_seq: Option<u64>,
    /// Seq of the last entry line.
    pub last_seq: Option<u64>,
    /// The last file is not sealed, so entries cut from its end would leave no trace: only
    /// `through` rules that out. When false the files end with a seal whose `next_file` was not
    /// given: they are complete up to `last_seq`, and the mirror continues elsewhere.
    pub open_tail: bool,
}

/// The chain as verified so far.
#[derive(Default)]
struct Chain {
    /// Seq and content_hash of the last entry line.
    last: Option<(u64, [u8; 64])>,
    first_seq: Option<u64>,
    entries: u64,
}

/// Verifies mirror files in the order given (callers sort by name) with `key`. With
/// `through = Some(s)` the files must reach at least seq `s`. The first problem found is
/// returned, naming the file, line and seq.
pub fn verify_files(
    paths: &[PathBuf],
    key: &[u8],
    through: Option<u64>,
) -> Result<MirrorReport, MirrorError> {
    let key = LineKey::new(key)?;
    let Some(last_path) = paths.last() else {
        return Err(MirrorError::Invalid("no mirror files to verify".into()));
    };
    let mut chain = Chain::default();
    let mut last_file = FileOutcome {
        lines: 0,
        sealed: false,
    };
    for (i, path) in paths.iter().enumerate() {
        let next = match paths.get(i + 1) {
            Some(p) => Some(name_of(p)?),
            None => None,
        };
        last_file = verify_file(path, next, &key, &mut chain)?;
    }
    let last_seq = chain.last.map(|(seq, _)| seq);
    if let Some(through) = through
        && last_seq.is_none_or(|last| last < through)
    {
        let ends = last_seq.map_or("holds no entries".to_owned(), |s| {
            format!("ends at seq {s}")
        });
        return Err(MirrorError::Tampered {
            file: last_path.clone(),
            line: last_file.lines,
            seq: last_seq,
            problem: format!(
                "the mirror {ends} but must reach seq {through}: its tail was truncated"
            ),
        });
    }
    Ok(MirrorReport {
        files: paths.len(),
        entries: chain.entries,
        first_seq: chain.first_seq,
        last_seq,
        open_tail: !last_file.sealed,
    })
}

fn name_of(path: &Path) -> Result<&str, MirrorError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| MirrorError::Invalid(format!("{} has no UTF-8 file name", path.display())))
}

struct FileOutcome {
    lines: u64,
    sealed: bool,
}

/// Verifies one file, continuing `chain`; `next` is the name of the file given after it.
fn verify_file(
    path: &Path,
    next: Option<&str>,
    key: &LineKey,
    chain: &mut Chain,
) -> Result<FileOutcome, MirrorError> {
    let name = name_of(path)?;
    let file =
        File::open(path).map_err(io_error(format!("opening mirror file {}", path.display())))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut raw = Vec::new();
    let mut scratch = Vec::new();
    let mut line_no = 0u64;
    let mut file_entries = 0u64;
    let mut sealed = false;
    loop {
        raw.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut raw)
            .map_err(io_error(format!("reading mirror file {}", path.display())))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let last_seq = chain.last.map(|(s, _)| s);
        let tampered = |seq: Option<u64>, problem: String| MirrorError::Tampered {
            file: path.to_owned(),
            line: line_no,
            seq,
            problem,
        };
        if sealed {
            return Err(tampered(last_seq, "a line follows the file's seal".into()));
        }
        let Some(line) = raw.strip_suffix(b"\n") else {
            let problem = if raw.len() as u64 > MAX_LINE_BYTES {
                format!("the line is longer than {MAX_LINE_BYTES} bytes")
            } else if next.is_none() {
                "torn last line (no trailing newline): an append was interrupted or the file was \
                 cut; reopening the mirror writer cuts it"
                    .to_owned()
            } else {
                "the line has no trailing newline: the file was cut".to_owned()
            };
            return Err(tampered(last_seq, problem));
        };
        match parse_line(line, key, &mut scratch).map_err(|p| p.at(path, line_no))? {
            Line::Entry {
                seq,
                content_hash,
                previous_hash,
            } => {
                match chain.last {
                    Some((last, _)) if Some(seq) != last.checked_add(1) => {
                        return Err(tampered(
                            Some(seq),
                            format!(
                                "seq {seq} follows seq {last}: lines were deleted, inserted or reordered"
                            ),
                        ));
                    }
                    Some((_, last_hash)) if previous_hash != last_hash => {
                        return Err(tampered(
                            Some(seq),
                            "previous_hash is not the content_hash of the entry line before: \
                             lines were deleted, inserted or reordered"
                                .into(),
                        ));
                    }
                    Some(_) => {}
                    None if seq == 0 && previous_hash != ZERO_HASH => {
                        return Err(tampered(
                            Some(seq),
                            "the entry with seq 0 has a non-zero previous_hash".into(),
                        ));
                    }
                    None => chain.first_seq = Some(seq),
                }
                chain.last = Some((seq, content_hash));
                chain.entries += 1;
                file_entries += 1;
            }
            Line::Seal(seal) => {
                check_seal(&seal, name, next, file_entries, chain.last)
                    .map_err(|problem| tampered(last_seq, problem))?;
                sealed = true;
            }
        }
    }
    if next.is_some() && !sealed {
        return Err(MirrorError::Tampered {
            file: path.to_owned(),
            line: line_no + 1,
            seq: chain.last.map(|(s, _)| s),
            problem: "the file has no seal although a later file follows: it was truncated or \
                      its seal removed"
                .into(),
        });
    }
    Ok(FileOutcome {
        lines: line_no,
        sealed,
    })
}

/// Checks a (signature-verified) seal against the file it ends and the file given next.
fn check_seal(
    seal: &Seal,
    name: &str,
    next: Option<&str>,
    file_entries: u64,
    last: Option<(u64, [u8; 64])>,
) -> Result<(), String> {
    if seal.file != name {
        return Err(format!(
            "the seal belongs to file `{}`, not `{name}`: the file was renamed or copied",
            seal.file
        ));
    }
    if seal.lines != file_entries {
        return Err(format!(
            "the seal counts {} entry lines but the file has {file_entries}: lines were deleted or inserted",
            seal.lines
        ));
    }
    let Some((last_seq, last_hash)) = last else {
        return Err("a seal with no entry before it".into());
    };
    if seal.last_seq != last_seq || seal.last_hash != last_hash {
        return Err(format!(
            "the seal ends the file at seq {} but the file's last entry is seq {last_seq} \
             (or has another content_hash): entries before the seal were changed",
            seal.last_seq
        ));
    }
    if let Some(next) = next
        && seal.next_file != next
    {
        return Err(format!(
            "the seal names the next file `{}` but the next file given is `{next}`: \
             a file is missing, extra or out of order",
            seal.next_file
        ));
    }
    Ok(())
}

/// Brings `writer` up to date with the ledger in `store`: appends every entry from
/// `writer.next_seq()` to the store's current size, in chunks. Returns how many it wrote.
/// The server runs this continuously; `custos mirror sync` runs it once.
pub fn sync_from_store<S: custos_store::Store>(
    store: &S,
    writer: &mut MirrorWriter,
) -> Result<u64, MirrorError> {
    const CHUNK: u64 = 4096;
    let size = store
        .size()
        .map_err(|e| MirrorError::Invalid(format!("reading the ledger size: {e}")))?;
    let mut written = 0;
    while writer.next_seq() < size {
        let from = writer.next_seq();
        let to = size.min(from + CHUNK);
        let records = store
            .read_range(from, to)
            .map_err(|e| MirrorError::Invalid(format!("reading entries {from}..{to}: {e}")))?;
        writer.append(&records)?;
        written += records.len() as u64;
    }
    Ok(written)
}

/// Keeps a mirror up to date with the ledger until `shutdown` changes, then brings it up to
/// date once more and closes it. An I/O failure is logged and the mirror is reopened on the
/// next tick, resuming where its files end: entries stay in the ledger, so none is lost.
pub async fn run_mirror<S: custos_store::Store>(
    store: std::sync::Arc<S>,
    config: MirrorConfig,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut writer: Option<MirrorWriter> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        let store = store.clone();
        let config = config.clone();
        let current = writer.take();
        let step = tokio::task::spawn_blocking(move || {
            let mut w = match current {
                Some(w) => w,
                None => MirrorWriter::open(config)?,
            };
            let result = sync_from_store(store.as_ref(), &mut w);
            result.map(|_| w)
        })
        .await;
        match step {
            Ok(Ok(w)) => writer = Some(w),
            Ok(Err(e)) => tracing::error!(error = %e, "mirror sync failed; retrying"),
            Err(e) => tracing::error!(error = %e, "mirror task failed; retrying"),
        }
        if stop {
            break;
        }
    }
    if let Some(w) = writer
        && let Err(e) = w.close()
    {
        tracing::error!(error = %e, "closing the mirror failed");
    }
}
