//! Several custos nodes on one PostgreSQL database (SPEC §3.9, issue 4).
//!
//! Three `custos serve` processes share a fresh database and the first node's `keys/` and
//! `ledger.json`. They take batch and single appends from several threads at once; one is
//! killed with SIGKILL mid-load. Then, read straight from the database: every acknowledged
//! entry is there exactly once, at the seq and with the id it was acknowledged with; seqs are
//! gap-free; `custos verify` passes on the database; every checkpoint a node handed out is a
//! stored one, and consistency proofs between checkpoints from different nodes verify offline
//! against the log's public key. Keys issued through one node authenticate on the others at
//! once, a revocation through one node is refused by the others within the documented bound
//! (`custos_server::keys::KEY_REFRESH_INTERVAL` plus one refresh), and a signed request
//! replayed to another node is refused.
//!
//! PostgreSQL comes from `CUSTOS_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); an unreachable server fails the test.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custos_core::entry::Entry;
use custos_core::merkle::{ConsistencyProof, Hash, hash_from_hex};
use custos_core::note::{self, Verifier};
use custos_store::Store;
use custos_store::postgres::testing::TestDatabase;
use custos_store::postgres::{PostgresConfig, PostgresStore};
use serde_json::{Value, json};
use support::*;

const ORIGIN: &str = "multi.example/log";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts `custos serve` on the shared database; with `bootstrap`, reads the admin key the
/// first node prints (stdout line 2). Stderr (JSON logs) goes to `log`.
fn start_node(data: &Path, url: &str, log: &Path, bootstrap: bool) -> (Server, Option<String>) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("node log file");
    let mut cmd = postgres_serve_command(data, url);
    cmd.env("CUSTOS_POSTGRES_MAX_CONNECTIONS", "4")
        .stderr(Stdio::from(stderr));
    let (server, scheme, lines) = spawn_server(cmd, usize::from(bootstrap));
    assert_eq!(scheme, "http");
    let key = bootstrap.then(|| bootstrap_key(&lines));
    (server, key)
}

/// A second node's data directory: the first one's log key, request-signing secret and
/// settings, nothing else.
fn copy_node(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("keys")).expect("keys dir");
    for f in ["keys/log.key", "keys/request.key", "ledger.json", "log.pub"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
}

fn custos_pg(data: &Path, url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("CUSTOS_STORE", "postgres")
        .env("CUSTOS_POSTGRES_URL", url)
        .env("CUSTOS_POSTGRES_MAX_CONNECTIONS", "2")
        .output()
        .expect("run custos")
}

/// `custos verify` on the database: the report, after asserting it passed.
fn verify_database(data: &Path, url: &str) -> Value {
    let out = custos_pg(data, url, &["--json", "verify"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "verify failed: {report}");
    report
}

/// Issues a key through `addr` with the `system` admin key: (key text, full response).
fn create_key(addr: &str, admin: &str, body: Value) -> (String, Value) {
    let r = http(
        addr,
        "POST",
        "/v1/keys",
        Some(admin),
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.show());
    let v = r.json();
    let text = v["secret"].as_str().expect("key text").to_owned();
    (text, v)
}

fn entry(tag: &str) -> Value {
    json!({
        "event_type": "tool_invocation",
        "actor": "agent:load",
        "action": "call",
        "outcome": "success",
        "data": {"tag": tag}
    })
}

/// An acknowledged entry: the tag the client gave it, where the server said it went.
#[derive(Clone, Debug)]
struct Ack {
    tag: String,
    seq: u64,
    id: String,
}

/// Appends to `addr` until `stop`, in batches of 50 or one by one, recording every
/// acknowledgement. Failing to reach the node is only allowed once it was marked `dead`.
fn drive(
    addr: &str,
    key: &str,
    name: &str,
    batch: bool,
    stop: &AtomicBool,
    dead: &AtomicBool,
    acks: &Mutex<Vec<Ack>>,
) -> u64 {
    let mut sent = 0u64;
    while !stop.load(Ordering::Acquire) {
        let tags: Vec<String> = if batch {
            (0..50).map(|k| format!("{name}-{sent}-{k}")).collect()
        } else {
            vec![format!("{name}-{sent}")]
        };
        sent += 1;
        let (path, body) = if batch {
            let entries: Vec<Value> = tags.iter().map(|t| entry(t)).collect();
            ("/v1/entries:batch", json!({ "entries": entries }))
        } else {
            ("/v1/entries", entry(&tags[0]))
        };
        let body = body.to_string();
        match try_http_with(addr, "POST", path, Some(key), &[], body.as_bytes()) {
            Ok(r) if r.status == 201 => {
                let v = r.json();
                let receipts = if batch {
                    v["entries"].as_array().cloned().expect("receipts")
                } else {
                    vec![v]
                };
                assert_eq!(receipts.len(), tags.len(), "{}", r.show());
                let mut acks = acks.lock().expect("acks");
                for (tag, receipt) in tags.into_iter().zip(receipts) {
                    acks.push(Ack {
                        tag,
                        seq: receipt["seq"].as_u64().expect("seq"),
                        id: receipt["id"].as_str().expect("id").to_owned(),
                    });
                }
            }
            Ok(r) if r.status == 503 => std::thread::sleep(Duration::from_millis(20)),
            Ok(r) => panic!("{name}: unexpected answer {}", r.show()),
            Err(e) if dead.load(Ordering::Acquire) => {
                let _ = e;
                break;
            }
            Err(e) => panic!("{name}: a live node failed the request: {e}"),
        }
    }
    sent
}

/// The checkpoint `GET /v1/checkpoint` hands a caller with a key (issued now if needed).
fn checkpoint_from(addr: &str, key: &str) -> std::io::Result<String> {
    let r = try_http_with(addr, "GET", "/v1/checkpoint", Some(key), &[], &[])?;
    assert_eq!(r.status, 200, "{}", r.show());
    Ok(r.body)
}

fn open_checkpoint(note_text: &str, verifier: &Verifier) -> (u64, Hash) {
    let cp = note::open_checkpoint(note_text, verifier)
        .unwrap_or_else(|e| panic!("checkpoint does not verify ({e}):\n{note_text}"));
    assert_eq!(cp.origin, ORIGIN);
    (cp.size, cp.root)
}

/// Polls until `key` gets 401 from `addr`; how long it took.
fn refused_within(addr: &str, key: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = http(addr, "GET", "/v1/entries?limit=1", Some(key), None);
        if r.status == 401 {
            return started.elapsed();
        }
        assert_eq!(r.status, 200, "{}", r.show());
        assert!(
            started.elapsed() < limit,
            "a key revoked on another node was still accepted by {addr} after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn three_nodes_share_one_database() {
    let db = runtime().block_on(TestDatabase::create());
    let tmp = tempfile::tempdir().expect("tmp");
    let datas: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("node{i}")))
        .collect();
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("node{i}.log")))
        .collect();
    ok(&custos(&datas[0], &["init", "--origin", ORIGIN]));
    copy_node(&datas[0], &datas[1]);
    copy_node(&datas[0], &datas[2]);

    // The first node issues the bootstrap admin key; the others find it in the ledger.
    let (node0, admin) = start_node(&datas[0], &db.url, &logs[0], true);
    let admin = admin.expect("bootstrap key");
    let (node1, _) = start_node(&datas[1], &db.url, &logs[1], false);
    let (mut node2, _) = start_node(&datas[2], &db.url, &logs[2], false);
    let addrs = [node0.addr.clone(), node1.addr.clone(), node2.addr.clone()];
    for addr in &addrs {
        let r = http(addr, "GET", "/v1/keys", Some(&admin), None);
        assert_eq!(r.status, 200, "{addr}: {}", r.show());
        assert_eq!(r.json()["keys"].as_array().map(Vec::len), Some(1));
    }

    // A key issued through node 0 works on the others at once (they look up an unknown id).
    let (writer, _) = create_key(
        &addrs[0],
        &admin,
        json!({"tenant": "acme", "roles": ["admin"]}),
    );
    for addr in &addrs[1..] {
        let r = http(
            addr,
            "POST",
            "/v1/entries",
            Some(&writer),
            Some(&entry(&format!("first-{addr}")).to_string()),
        );
        assert_eq!(r.status, 201, "{addr}: {}", r.show());
    }

    // Load: a batch writer and a single-entry writer per node, and per node a reader asking
    // for a checkpoint covering everything (so nodes race to store checkpoints, besides their
    // checkpointers). Node 2 is killed with SIGKILL half-way.
    let stop = Arc::new(AtomicBool::new(false));
    let dead: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
    let acks = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for (n, addr) in addrs.iter().enumerate() {
        for batch in [true, false] {
            let (addr, key, stop, dead, acks) = (
                addr.clone(),
                writer.clone(),
                stop.clone(),
                dead.clone(),
                acks.clone(),
            );
            let name = format!("n{n}{}", if batch { "b" } else { "s" });
            writers.push(std::thread::spawn(move || {
                drive(&addr, &key, &name, batch, &stop, &dead[n], &acks)
            }));
        }
    }
    let collected: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let readers: Vec<_> = (0..3)
        .map(|node| {
            let (addr, key, stop, dead, collected) = (
                addrs[node].clone(),
                writer.clone(),
                stop.clone(),
                dead.clone(),
                collected.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match checkpoint_from(&addr, &key) {
                        Ok(note) => collected.lock().expect("collected").push((node, note)),
                        Err(e) if dead[node].load(Ordering::Acquire) => {
                            let _ = e;
                            break;
                        }
                        Err(e) => panic!("node {node}: {e}"),
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    dead[2].store(true, Ordering::Release);
    node2.child.kill().expect("SIGKILL node 2");
    node2.child.wait().expect("reap node 2");
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Release);
    let sent: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    for r in readers {
        r.join().expect("checkpoint reader");
    }
    let acks = std::mem::take(&mut *acks.lock().expect("acks"));
    let mut collected = std::mem::take(&mut *collected.lock().expect("collected"));
    // One more from each surviving node, covering everything acknowledged.
    for (n, addr) in addrs.iter().enumerate().take(2) {
        collected.push((n, checkpoint_from(addr, &writer).expect("final checkpoint")));
    }
    let from_node2 = acks.iter().filter(|a| a.tag.starts_with("n2")).count();
    eprintln!(
        "load: {sent} requests, {} entries acknowledged ({from_node2} through node 2 before \
         SIGKILL), {} checkpoints collected",
        acks.len(),
        collected.len()
    );
    assert!(
        from_node2 > 0,
        "node 2 acknowledged nothing before it was killed"
    );
    assert!(
        acks.iter().any(|a| a.tag.starts_with("n0"))
            && acks.iter().any(|a| a.tag.starts_with("n1"))
    );

    // Straight from the database: gap-free seqs, every acknowledged entry exactly once.
    let store = runtime()
        .block_on(PostgresStore::open(
            &db.url,
            PostgresConfig {
                max_connections: 2,
                ..PostgresConfig::default()
            },
        ))
        .expect("open the database");
    let size = store.size().expect("size");
    let mut by_tag: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut ids = HashMap::new();
    let mut key_entries = 0;
    let mut seq = 0u64;
    while seq < size {
        let records = store.read_range(seq, (seq + 5000).min(size)).expect("read");
        assert!(!records.is_empty(), "no records from seq {seq} on");
        for rec in records {
            assert_eq!(rec.seq, seq, "seqs are gap-free");
            let e = Entry::from_canonical(&rec.bytes).expect("canonical entry");
            assert_eq!(e.seq, seq);
            assert!(ids.insert(e.id.clone(), seq).is_none(), "id {} twice", e.id);
            if e.event_type == "api_key_created" {
                key_entries += 1;
            }
            if let Some(tag) = e.data.get("tag").and_then(Value::as_str) {
                by_tag.entry(tag.to_owned()).or_default().push((seq, e.id));
            }
            seq += 1;
        }
    }
    assert_eq!(
        key_entries, 2,
        "one bootstrap key (only the first node issued one) and the writer key"
    );
    for (tag, found) in &by_tag {
        assert_eq!(found.len(), 1, "tag {tag} is in the ledger {found:?}");
    }
    for a in &acks {
        assert_eq!(
            by_tag.get(&a.tag).map(Vec::as_slice),
            Some(&[(a.seq, a.id.clone())][..]),
            "acknowledged entry {a:?}"
        );
    }
    eprintln!(
        "database: {size} entries, {} tagged ({} never acknowledged: in flight on node 2)",
        by_tag.len(),
        // Besides the acknowledged ones, the two tagged entries written before the load.
        by_tag.len().saturating_sub(acks.len() + 2)
    );

    // Checkpoints: the stored ones grow strictly; every one a node handed out is one of them;
    // proofs between checkpoints from different nodes hold, checked offline.
    let verifier_text = http(&addrs[0], "GET", "/.well-known/custos/log.pub", None, None).body;
    assert_eq!(
        http(&addrs[1], "GET", "/.well-known/custos/log.pub", None, None).body,
        verifier_text,
        "one log key"
    );
    let verifier = Verifier::parse(verifier_text.trim()).expect("verifier key");
    let stored = store.checkpoints(0, 1_000_000).expect("stored checkpoints");
    assert!(
        stored.windows(2).all(|w| w[0].size < w[1].size),
        "checkpoint sizes strictly increase"
    );
    let stored_notes: HashMap<u64, &str> =
        stored.iter().map(|c| (c.size, c.note.as_str())).collect();
    let mut opened: Vec<(usize, u64, Hash)> = Vec::new();
    for (node, text) in &collected {
        let (size, root) = open_checkpoint(text, &verifier);
        assert_eq!(
            stored_notes.get(&size).copied(),
            Some(text.as_str()),
            "node {node} handed out a checkpoint for {size} that is not the stored one"
        );
        opened.push((*node, size, root));
    }
    opened.sort_by_key(|&(_, size, _)| size);
    opened.dedup_by_key(|&mut (node, size, _)| (node, size));
    let mut pairs = 0;
    for (i, &(node_a, first, root_a)) in opened.iter().enumerate() {
        // The next larger checkpoint from another node, and the last one (any node).
        let next = opened[i + 1..]
            .iter()
            .find(|&&(n, s, _)| n != node_a && s > first);
        for &(node_b, second, root_b) in next.into_iter().chain(opened.last()) {
            if second <= first {
                continue;
            }
            let r = http(
                &addrs[pairs % 2],
                "GET",
                &format!("/v1/proofs/consistency?first={first}&second={second}"),
                Some(&writer),
                None,
            );
            assert_eq!(r.status, 200, "{}", r.show());
            let v = r.json();
            let proof = ConsistencyProof {
                first,
                second,
                hashes: v["hashes"]
                    .as_array()
                    .expect("hashes")
                    .iter()
                    .map(|h| hash_from_hex(h.as_str().expect("hex")).expect("hash"))
                    .collect(),
            };
            proof.verify(&root_a, &root_b).unwrap_or_else(|e| {
                panic!("{first} (node {node_a}) -> {second} (node {node_b}): {e}")
            });
            pairs += 1;
        }
    }
    let nodes_seen: std::collections::HashSet<usize> = opened.iter().map(|o| o.0).collect();
    assert_eq!(nodes_seen.len(), 3, "checkpoints from every node");
    assert!(pairs >= 3, "only {pairs} consistency proofs checked");
    eprintln!(
        "checkpoints: {} stored, {} handed out by the nodes, {pairs} cross-node consistency \
         proofs verified",
        stored.len(),
        opened.len()
    );

    // `custos verify` on the database, and the same through a surviving node.
    let report = verify_database(&datas[1], &db.url);
    assert!(report["entries"].as_u64().expect("entries") >= size);
    let r = http(&addrs[1], "GET", "/v1/ledger/verify", Some(&admin), None);
    assert_eq!(r.status, 200, "{}", r.show());

    // Node 2 comes back on the same data directory and database.
    let (node2, _) = start_node(&datas[2], &db.url, &logs[2], false);
    let addrs = [addrs[0].clone(), addrs[1].clone(), node2.addr.clone()];
    let r = http(
        &addrs[2],
        "POST",
        "/v1/entries",
        Some(&writer),
        Some(&entry("after-restart").to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.show());

    // A key revoked through node 0 is refused by nodes 1 and 2 within the bound.
    let (reader_key, issued) = create_key(
        &addrs[1],
        &admin,
        json!({"tenant": "acme", "roles": ["auditor"]}),
    );
    let reader_id = issued["key"]["id"].as_str().expect("id").to_owned();
    for addr in &addrs {
        let r = http(addr, "GET", "/v1/entries?limit=1", Some(&reader_key), None);
        assert_eq!(r.status, 200, "{addr}: {}", r.show());
    }
    // Key management sees keys issued elsewhere once the registry refreshed (≤ the bound).
    let started = Instant::now();
    while !http(&addrs[0], "GET", "/v1/keys", Some(&admin), None)
        .body
        .contains(&reader_id)
    {
        assert!(started.elapsed() < Duration::from_secs(5), "not listed");
        std::thread::sleep(Duration::from_millis(25));
    }
    let r = http(
        &addrs[0],
        "DELETE",
        &format!("/v1/keys/{reader_id}"),
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.show());
    let r = http(
        &addrs[0],
        "GET",
        "/v1/entries?limit=1",
        Some(&reader_key),
        None,
    );
    assert_eq!(r.status, 401, "refused at once where it was revoked");
    // Documented bound: one refresh interval (1 s) plus one refresh; 2 s more for scheduling
    // on a busy machine.
    let bound = custos_server::keys::KEY_REFRESH_INTERVAL + Duration::from_secs(2);
    for addr in &addrs[1..] {
        let took = refused_within(addr, &reader_key, bound);
        eprintln!("revocation through node 0 took effect on {addr} after {took:?}");
    }

    // A signed request replayed to another node is refused: the nonce is in the database.
    let (signed, issued) = create_key(
        &addrs[0],
        &admin,
        json!({"tenant": "acme", "roles": ["admin"], "signed": true}),
    );
    let secret = issued["signing_secret"].as_str().expect("signing secret");
    let body = entry("signed-once").to_string();
    let headers = signature_headers(
        secret,
        "POST",
        "/v1/entries",
        body.as_bytes(),
        unix_now(),
        &fresh_nonce(),
    );
    let send = |addr: &str| {
        http_with(
            addr,
            "POST",
            "/v1/entries",
            Some(&signed),
            &header_refs(&headers),
            body.as_bytes(),
        )
    };
    let r = send(&addrs[1]);
    assert_eq!(r.status, 201, "{}", r.show());
    for addr in [&addrs[0], &addrs[2], &addrs[1]] {
        let r = send(addr);
        assert_eq!(r.status, 401, "replay to {addr}: {}", r.show());
        assert!(r.body.contains("nonce"), "{}", r.show());
    }
    let r = signed_http(
        &addrs[2],
        "POST",
        "/v1/entries",
        &signed,
        secret,
        Some(&entry("signed-fresh").to_string()),
    );
    assert_eq!(r.status, 201, "a fresh nonce passes: {}", r.show());

    // Graceful stops (each issues a final checkpoint), then verify once more.
    let mut nodes = [node0, node1, node2];
    for n in &mut nodes {
        assert!(n.terminate().success());
    }
    runtime().block_on(store.close()).expect("close");
    let report = verify_database(&datas[0], &db.url);
    eprintln!("final verify: {report}");
    for (i, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            assert!(
                !line.contains("checkpoint failed") && !line.contains("refreshing API keys"),
                "node {i}: {line}"
            );
        }
    }
}
