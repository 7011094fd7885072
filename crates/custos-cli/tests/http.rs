//! `custos serve` end to end: the real binary on a loopback port, spoken to only over HTTP.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use custos_core::merkle::InclusionProof;
use custos_core::note::{self, Verifier};
use serde_json::{Value, json};
use support::*;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn custos serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listen line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Server { child, addr }
}

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("receive");
    let text = String::from_utf8(raw).expect("utf8 response");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body,
    }
}

fn key(data: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    ok(&custos(data, &all)).trim().to_owned()
}

fn entry(tenant: Option<&str>, actor: &str) -> String {
    let mut e = json!({"event_type": "tool_invocation", "actor": actor, "action": "allow", "outcome": "success",
        "resource": "/crm/contacts", "data": {"tool": "crm.search", "access_token": "sk-live"}});
    if let Some(t) = tenant {
        e["tenant"] = json!(t);
    }
    e.to_string()
}

#[test]
fn the_api_authenticates_isolates_tenants_and_proves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "http.example/log"]));
    let acme_admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let acme_auditor = key(&data, &["--tenant", "acme", "--role", "auditor"]);
    let acme_bot = key(
        &data,
        &["--tenant", "acme", "--role", "agent", "--agent", "crm-bot"],
    );
    let globex_admin = key(&data, &["--tenant", "globex", "--role", "admin"]);
    let signed = key(
        &data,
        &["--tenant", "acme", "--role", "orchestrator", "--signed"],
    );
    let server = start(&data);
    let a = server.addr.as_str();

    assert_eq!(http(a, "GET", "/healthz", None, None).status, 200);
    assert_eq!(http(a, "GET", "/readyz", None, None).status, 200);
    let pubkey = http(a, "GET", "/.well-known/custos/log.pub", None, None).body;
    assert_eq!(
        pubkey,
        std::fs::read_to_string(data.join("log.pub")).expect("log.pub")
    );

    // No key, a wrong key, a signed key: 401 problem+json, nothing appended.
    for k in [
        None,
        Some("ck_0000000000000000_nope"),
        Some(signed.as_str()),
    ] {
        let r = http(a, "POST", "/v1/entries", k, Some(&entry(None, "agent:x")));
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.headers.contains("application/problem+json"));
    }

    // Appends: the tenant comes from the key.
    let r = http(
        a,
        "POST",
        "/v1/entries",
        Some(&acme_admin),
        Some(&entry(None, "user:alice")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let seq = r.json()["seq"].as_u64().expect("seq");
    let r = http(
        a,
        "POST",
        "/v1/entries",
        Some(&acme_bot),
        Some(&entry(Some("acme"), "agent:crm-bot")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // An agent writes only as itself; nobody writes into another tenant; auditors do not write.
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/entries",
            Some(&acme_bot),
            Some(&entry(None, "agent:other"))
        )
        .status,
        403
    );
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/entries",
            Some(&globex_admin),
            Some(&entry(Some("acme"), "user:x"))
        )
        .status,
        403
    );
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/entries",
            Some(&acme_auditor),
            Some(&entry(None, "user:x"))
        )
        .status,
        403
    );

    // Bad input: a clear 4xx naming the field, and nothing appended.
    let before = http(
        a,
        "GET",
        "/v1/entries?limit=1000",
        Some(&acme_auditor),
        None,
    )
    .json()["entries"]
        .as_array()
        .expect("entries")
        .len();
    let r = http(
        a,
        "POST",
        "/v1/entries",
        Some(&acme_admin),
        Some("{not json"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/entries",
        Some(&acme_admin),
        Some(&entry(None, "robot")),
    );
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (422, json!("actor")),
        "{}",
        r.body
    );
    let mut extra: Value = serde_json::from_str(&entry(None, "user:x")).expect("json");
    extra["colour"] = json!("red");
    let r = http(
        a,
        "POST",
        "/v1/entries",
        Some(&acme_admin),
        Some(&extra.to_string()),
    );
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (422, json!("colour"))
    );
    let batch = format!(
        "{{\"entries\": [{}, {}, {}]}}",
        entry(None, "user:a"),
        entry(None, "nobody"),
        entry(None, "user:c")
    );
    let r = http(
        a,
        "POST",
        "/v1/entries:batch",
        Some(&acme_admin),
        Some(&batch),
    );
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (422, json!("entries[1].actor")),
        "{}",
        r.body
    );
    let after = http(
        a,
        "GET",
        "/v1/entries?limit=1000",
        Some(&acme_auditor),
        None,
    )
    .json()["entries"]
        .as_array()
        .expect("entries")
        .len();
    assert_eq!(before, after, "no bad request appended anything");
    let good = format!("[{}, {}]", entry(None, "user:a"), entry(None, "user:b"));
    let r = http(
        a,
        "POST",
        "/v1/entries:batch",
        Some(&acme_admin),
        Some(&good),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["entries"].as_array().expect("receipts").len(), 2);

    // Reads are per tenant: globex cannot see acme's entries at all.
    let got = http(
        a,
        "GET",
        &format!("/v1/entries/{seq}"),
        Some(&acme_auditor),
        None,
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"]["access_token"], "[REDACTED]");
    assert_eq!(
        http(
            a,
            "GET",
            &format!("/v1/entries/{seq}"),
            Some(&globex_admin),
            None
        )
        .status,
        404
    );
    let theirs = http(
        a,
        "GET",
        "/v1/entries?order=desc",
        Some(&globex_admin),
        None,
    )
    .json();
    assert!(
        theirs["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["tenant"] == "globex")
    );
    let ours = http(
        a,
        "GET",
        "/v1/entries?actor=agent:crm-bot",
        Some(&acme_auditor),
        None,
    )
    .json();
    assert_eq!(ours["entries"].as_array().expect("entries").len(), 1);
    assert_eq!(
        http(a, "GET", "/v1/entries?limit=0", Some(&acme_auditor), None).status,
        400
    );
    assert_eq!(
        http(a, "GET", "/v1/entries?bogus=1", Some(&acme_auditor), None).status,
        400
    );

    // A proof from the server checks out offline with the published key.
    let bundle = http(
        a,
        "GET",
        &format!("/v1/proofs/inclusion/{seq}"),
        Some(&acme_auditor),
        None,
    )
    .json();
    let verifier = Verifier::parse(pubkey.trim()).expect("key");
    let cp = note::open_checkpoint(bundle["checkpoint"].as_str().expect("note"), &verifier)
        .expect("signed");
    let proof: InclusionProof = serde_json::from_value(bundle["proof"].clone()).expect("proof");
    let leaf = serde_json::from_value::<custos_core::entry::Entry>(bundle["entry"].clone())
        .expect("entry")
        .leaf_hash()
        .expect("leaf");
    proof.verify(&leaf, &cp.root).expect("included");
    assert_eq!(
        http(
            a,
            "GET",
            &format!("/v1/proofs/inclusion/{seq}"),
            Some(&globex_admin),
            None
        )
        .status,
        404
    );
    assert_eq!(http(a, "GET", "/v1/nothing", None, None).status, 404);

    // SIGTERM: drains, checkpoints, closes; the ledger then verifies.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut server = server;
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
}
