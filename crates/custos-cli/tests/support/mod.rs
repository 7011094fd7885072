//! Shared helpers: run the real `custos` binary, read/write segment records on disk, and
//! speak HTTP to `custos serve` with a tiny hand-written client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

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

// ---------------------------------------------------------------------------------------
// `custos serve` and a minimal HTTP/1.1 client.

/// A running `custos serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Sends SIGTERM (graceful shutdown) and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.child.wait().expect("wait for custos serve")
    }
}

/// Starts `custos --data DATA serve` on a free loopback port and waits for its listen line.
pub fn start(data: &Path) -> Server {
    start_with(data, &[])
}

/// [`start`] with extra environment variables (e.g. `CUSTOS_MAX_QUEUED_ENTRIES`).
pub fn start_with(data: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stderr(Stdio::null());
    let (server, scheme, _) = spawn_server(cmd, 0);
    assert_eq!(scheme, "http");
    server
}

/// Spawns a prepared `custos … serve` command and reads its listen line (`listening on
/// SCHEME://ADDR`) and then `more` further stdout lines. Returns the server, the scheme and
/// those lines. Stderr is left as the command set it.
pub fn spawn_server(mut cmd: Command, more: usize) -> (Server, String, Vec<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn custos serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the listen line");
    let (scheme, addr) = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|r| r.split_once("://"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    let (scheme, addr) = (scheme.to_owned(), addr.to_owned());
    let lines = (0..more)
        .map(|_| {
            let mut l = String::new();
            out.read_line(&mut l).expect("read a stdout line");
            l.trim_end().to_owned()
        })
        .collect();
    (Server { child, addr }, scheme, lines)
}

/// `custos --data DATA serve` on a free loopback port with the ledger on PostgreSQL at `url`
/// (stderr discarded; set another with `.stderr(…)`). Spawn it with [`spawn_server`].
pub fn postgres_serve_command(data: &Path, url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CUSTOS_STORE", "postgres")
        .env("CUSTOS_POSTGRES_URL", url)
        .stderr(Stdio::null());
    cmd
}

/// The bootstrap admin key `serve` prints on the line after its listen line (`…: ck_…`).
pub fn bootstrap_key(lines: &[String]) -> String {
    lines
        .first()
        .and_then(|l| l.rsplit_once(": "))
        .map(|(_, k)| k.to_owned())
        .filter(|k| k.starts_with("ck_"))
        .unwrap_or_else(|| panic!("no bootstrap key: {lines:?}"))
}

/// A response: status, the head lower-cased, and the (de-chunked) body.
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                self.body.chars().take(2000).collect::<String>()
            )
        })
    }

    /// A header's value (name in any case), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim() == name).then(|| v.trim().to_owned())
        })
    }

    /// Whether the content type is `application/problem+json`.
    pub fn is_problem(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json"))
    }

    /// The `type` of a problem+json body (empty when the body is not one).
    pub fn problem_type(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// A short description for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "{} {}",
            self.status,
            self.body.chars().take(1000).collect::<String>()
        )
    }
}

/// A minimal HTTP/1.1 client: one request per connection, optional bearer key, JSON body.
pub fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Resp {
    http_with(
        addr,
        method,
        path,
        key,
        &[],
        body.map(str::as_bytes).unwrap_or_default(),
    )
}

/// [`http`] with extra headers and a body of arbitrary bytes. The body is written from a
/// second thread while the response is read, so a server that answers before reading all of
/// it (413) is heard; write errors after that are ignored.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    let mut w = s.try_clone().expect("clone the socket");
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let mut raw = Vec::new();
    // A reset after the response (the server did not read the whole body) is not an error
    // here: what was read so far is kept.
    let _ = s.read_to_end(&mut raw);
    let _ = writer.join();
    parse_response(&raw)
}

/// Parses a raw HTTP/1.1 response (de-chunking the body).
pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let rest = &raw[split + 4..];
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = rest;
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size = std::str::from_utf8(&rest[..eol]).expect("chunk size");
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .expect("hex size");
            if n == 0 {
                break;
            }
            let after = &rest[eol + 2..];
            out.extend_from_slice(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers: head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `custos keys create ARGS`: the key text (first stdout line).
pub fn key(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    ok(&custos(data, &all))
        .lines()
        .next()
        .expect("a key line")
        .trim()
        .to_owned()
}

/// `custos keys create --signed ARGS`: (key text, signing secret).
pub fn signed_key(data: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["keys", "create", "--signed"];
    all.extend_from_slice(args);
    let out = ok(&custos(data, &all));
    let mut lines = out.lines();
    let key = lines.next().expect("key line").trim().to_owned();
    let secret = lines.next().expect("signing secret line").trim().to_owned();
    assert!(key.starts_with("ck_"), "{out}");
    assert!(secret.starts_with("cks_"), "{out}");
    (key, secret)
}

/// The public id of a key text `ck_<id>_<secret>`.
pub fn key_id(key: &str) -> String {
    key.strip_prefix("ck_")
        .and_then(|r| r.split_once('_'))
        .map(|(id, _)| id.to_owned())
        .expect("a ck_<id>_<secret> key")
}

/// The tree size: durable entries, as `/metrics` reports them.
pub fn tree_size(addr: &str) -> u64 {
    // The live size, from /metrics (a checkpoint may be up to a second behind).
    let r = http(addr, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find_map(|l| l.strip_prefix("custos_ledger_entries "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no custos_ledger_entries in {}", r.body))
}

/// The server's clock, unix seconds (same machine).
pub fn unix_now() -> i64 {
    custos_server::signing::unix_now()
}

/// A nonce never used before in this process.
pub fn fresh_nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "nonce-{}-{}-{:08}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The three signature headers (SPEC §4.6) of a request, as a client computes them.
pub fn signature_headers(
    secret: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> [(&'static str, String); 3] {
    let ts = timestamp.to_string();
    let sig = custos_server::signing::sign(
        secret,
        &custos_server::signing::string_to_sign(method, path_and_query, &ts, nonce, body),
    );
    [
        ("X-Custos-Timestamp", ts),
        ("X-Custos-Nonce", nonce.to_owned()),
        ("X-Custos-Signature", sig),
    ]
}

/// Borrows owned header pairs for [`http_with`].
pub fn header_refs<'a>(h: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    h.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// A correctly signed request, now, with a fresh nonce.
pub fn signed_http(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    secret: &str,
    body: Option<&str>,
) -> Resp {
    let body = body.unwrap_or("").as_bytes();
    let h = signature_headers(secret, method, path, body, unix_now(), &fresh_nonce());
    http_with(addr, method, path, Some(key), &header_refs(&h), body)
}

/// Like [`http_with`], but a connection that fails, is cut, or ends before a whole response
/// (a server killed mid-request) is an error instead of a panic. The request is written whole
/// before the response is read (keep bodies small).
pub fn try_http_with(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let incomplete = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "partial response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(incomplete)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let complete = if head.contains("transfer-encoding: chunked") {
        raw.ends_with(b"0\r\n\r\n")
    } else {
        head.lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .is_none_or(|n| raw.len() - split - 4 >= n)
    };
    if !complete {
        return Err(incomplete());
    }
    Ok(parse_response(&raw))
}
