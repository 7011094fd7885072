//! Shared helpers: run the real `custos` binary, and read/write segment records on disk.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn custos(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run custos")
}

pub fn custos_stdin(data: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn custos");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "custos failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn entry_line(i: u64) -> String {
    serde_json::json!({
        "tenant": if i.is_multiple_of(2) { "acme" } else { "globex" },
        "event_type": "tool_invocation",
        "actor": format!("agent:a{}", i % 4),
        "action": "allow",
        "outcome": "success",
        "resource": format!("/crm/contacts/{i}"),
        "data": {"i": i, "api_key": "secret-value"}
    })
    .to_string()
}

/// A ledger with `n` entries (one append run, so one checkpoint at `n`).
pub fn ledger_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "test.example/log"]));
    let lines: String = (0..n).map(|i| entry_line(i) + "\n").collect();
    ok(&custos_stdin(&data, &["append"], &lines));
    (tmp, data)
}

/// One record of a segment file.
#[derive(Clone, Debug)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

pub fn segment_path(data: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

pub fn read_records(path: &Path) -> Vec<Record> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
        let seq = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().expect("8"));
        out.push(Record {
            seq,
            payload: bytes[pos + 16..pos + 16 + len].to_vec(),
        });
        pos += 16 + len;
    }
    out
}

pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&r.seq.to_le_bytes()), &r.payload);
        out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.payload);
    }
    out
}

pub fn write_records(path: &Path, records: &[Record]) {
    std::fs::write(path, encode(records)).expect("write segment");
}

/// `custos verify --json`: (exit code, parsed report).
pub fn verify(data: &Path) -> (i32, serde_json::Value) {
    let out = custos(data, &["--json", "verify"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}
