//! `custos serve` end to end: the real binary on a loopback port, spoken to only over HTTP.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use custos_core::merkle::InclusionProof;
use custos_core::note::{self, Verifier};
use serde_json::{Value, json};
use support::*;

fn ok_status(r: &Resp, want: u16) {
    assert_eq!(r.status, want, "{}", r.body);
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
    let (signed, signing_secret) =
        signed_key(&data, &["--tenant", "acme", "--role", "orchestrator"]);
    let server = start(&data);
    let a = server.addr.as_str();

    assert_eq!(http(a, "GET", "/healthz", None, None).status, 200);
    assert_eq!(http(a, "GET", "/readyz", None, None).status, 200);
    let pubkey = http(a, "GET", "/.well-known/custos/log.pub", None, None).body;
    assert_eq!(
        pubkey,
        std::fs::read_to_string(data.join("log.pub")).expect("log.pub")
    );

    // No key, a wrong key, a signed key without its signature: 401 problem+json.
    for k in [
        None,
        Some("ck_0000000000000000_nope"),
        Some(signed.as_str()),
    ] {
        let r = http(a, "POST", "/v1/entries", k, Some(&entry(None, "agent:x")));
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.headers.contains("application/problem+json"));
    }
    // A signed key with a correct signature (SPEC §4.6) is let through.
    let r = signed_http(
        a,
        "POST",
        "/v1/entries",
        &signed,
        &signing_secret,
        Some(&entry(None, "agent:planner")),
    );
    assert_eq!(r.status, 201, "{}", r.body);

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
        // Refusals are recorded (as security_event entries) in the background: count
        // only what the test appends.
        "/v1/entries?limit=1000&event_type=tool_invocation",
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
        // Refusals are recorded (as security_event entries) in the background: count
        // only what the test appends.
        "/v1/entries?limit=1000&event_type=tool_invocation",
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

    // Consistency between two signed checkpoints, both fetched by size.
    let size = proof.tree_size;
    let cp_again = http(a, "GET", &format!("/v1/checkpoints/{size}"), None, None);
    assert_eq!(cp_again.status, 200);
    assert_eq!(
        note::open_checkpoint(&cp_again.body, &verifier)
            .expect("signed")
            .root,
        cp.root
    );
    ok_status(
        &http(
            a,
            "POST",
            "/v1/entries",
            Some(&acme_admin),
            Some(&entry(None, "user:z")),
        ),
        201,
    );
    // With a key, the checkpoint covers every entry acknowledged before the call.
    let newer = note::open_checkpoint(
        &http(a, "GET", "/v1/checkpoint", Some(&acme_admin), None).body,
        &verifier,
    )
    .expect("signed");
    assert!(newer.size > size);
    let c = http(
        a,
        "GET",
        &format!("/v1/proofs/consistency?first={size}&second={}", newer.size),
        Some(&acme_auditor),
        None,
    );
    let c: custos_core::merkle::ConsistencyProof = serde_json::from_str(&c.body).expect("proof");
    c.verify(&cp.root, &newer.root).expect("consistent");
    assert_eq!(
        http(a, "GET", "/v1/checkpoints/999999", None, None).status,
        404
    );

    // Export and summary stay inside the tenant.
    let csv = http(a, "GET", "/v1/export?format=csv", Some(&acme_auditor), None);
    assert_eq!(csv.status, 200);
    // (Refusals land as security_event entries in the background, so compare one type.)
    let rows = csv
        .body
        .lines()
        .filter(|l| l.contains(",tool_invocation,"))
        .count();
    let acme_total = http(a, "GET", "/v1/summary", Some(&acme_auditor), None).json()
        ["by_event_type"]["tool_invocation"]
        .as_u64()
        .expect("total");
    assert_eq!(rows as u64, acme_total);
    assert!(!csv.body.contains("globex"));
    let jsonl = http(a, "GET", "/v1/export", Some(&globex_admin), None);
    assert!(
        jsonl
            .body
            .lines()
            .all(|l| l.contains("\"tenant\":\"globex\""))
    );
    assert_eq!(
        http(a, "GET", "/v1/export?format=xml", Some(&acme_auditor), None).status,
        400
    );

    // Verification: admins and auditors only, and the running ledger is intact.
    let report = http(a, "GET", "/v1/ledger/verify", Some(&acme_auditor), None);
    assert_eq!(report.status, 200, "{}", report.body);
    assert!(report.json()["failure"].is_null(), "{}", report.body);
    assert_eq!(
        http(a, "GET", "/v1/ledger/verify", Some(&acme_bot), None).status,
        403
    );

    // SIGTERM: drains, checkpoints, closes; the ledger then verifies.
    let mut server = server;
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_entry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "http.example/log"]));
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..2 {
        let mut server = start(&data);
        let addr = server.addr.clone();
        let k = admin.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let loader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let batch = format!(
                "[{}]",
                (0..50)
                    .map(|_| entry(None, "user:load"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(&addr) else {
                    break;
                };
                let req = format!(
                    "POST /v1/entries:batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {k}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{batch}",
                    batch.len()
                );
                if s.write_all(req.as_bytes()).is_err() {
                    break;
                }
                let mut raw = String::new();
                if s.read_to_string(&mut raw).is_err() || !raw.starts_with("HTTP/1.1 201") {
                    break;
                }
                // Only a complete 201 response is an acknowledgement.
                let Some((_, body)) = raw.split_once("\r\n\r\n") else {
                    break;
                };
                let Ok(v) = serde_json::from_str::<Value>(body) else {
                    break;
                };
                for r in v["entries"].as_array().into_iter().flatten() {
                    got.push((
                        r["seq"].as_u64().unwrap_or(u64::MAX),
                        r["id"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
            got
        });
        std::thread::sleep(std::time::Duration::from_millis(600 + 300 * round));
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let got = loader.join().expect("loader");
        assert!(
            !got.is_empty(),
            "round {round}: nothing was acknowledged; the test proved nothing"
        );
        acked.extend(got);
        // After a restart every acknowledged entry is there, with its id.
        let server = start(&data);
        let export = http(&server.addr, "GET", "/v1/export", Some(&admin), None);
        let stored: std::collections::HashMap<u64, String> = export
            .body
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("jsonl");
                (
                    v["seq"].as_u64().expect("seq"),
                    v["id"].as_str().expect("id").to_owned(),
                )
            })
            .collect();
        for (seq, id) in &acked {
            assert_eq!(
                stored.get(seq),
                Some(id),
                "acknowledged seq {seq} lost or changed"
            );
        }
        drop(server);
    }
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
}

/// A flood against a small append queue: the server pushes back with 503 + `Retry-After`
/// instead of queueing without bound or dropping, stays up, and every entry it acknowledged
/// is in the ledger, intact, after a restart.
#[test]
fn a_flood_is_pushed_back_and_every_acknowledged_entry_is_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "http.example/log"]));
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    // The smallest queue there may be: one full batch.
    let mut server = start_with(&data, &[("CUSTOS_MAX_QUEUED_ENTRIES", "10000")]);
    let batch = format!(
        "[{}]",
        (0..5000)
            .map(|_| entry(None, "user:flood"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let batch = std::sync::Arc::new(batch);
    let (mut acked, mut pushed_back, mut rounds) = (Vec::<(u64, String)>::new(), 0, 0);
    // Until the server has pushed back at least a few times (bounded).
    while pushed_back < 3 && rounds < 40 {
        rounds += 1;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (addr, k, batch) = (server.addr.clone(), admin.clone(), batch.clone());
                std::thread::spawn(move || {
                    http(&addr, "POST", "/v1/entries:batch", Some(&k), Some(&batch))
                })
            })
            .collect();
        for h in handles {
            let r = h.join().expect("client thread");
            match r.status {
                201 => {
                    let receipts = r.json()["entries"].as_array().cloned().unwrap_or_default();
                    assert_eq!(receipts.len(), 5000, "a batch is all or nothing");
                    for rc in receipts {
                        acked.push((
                            rc["seq"].as_u64().expect("seq"),
                            rc["id"].as_str().expect("id").to_owned(),
                        ));
                    }
                }
                503 => {
                    pushed_back += 1;
                    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
                    assert!(r.headers.contains("application/problem+json"));
                    assert!(
                        r.json()["type"]
                            .as_str()
                            .unwrap_or("")
                            .ends_with("/overloaded")
                    );
                }
                other => panic!("unexpected {other}: {}", r.body),
            }
        }
        ok_status(&http(&server.addr, "GET", "/healthz", None, None), 200);
    }
    assert!(
        pushed_back >= 3,
        "no push-back after {rounds} rounds of 8 × 5000"
    );
    assert!(!acked.is_empty(), "nothing was accepted");
    let acked_count = u64::try_from(acked.len()).expect("count");
    // The key entry precedes them all.
    assert!(tree_size(&server.addr) > acked_count);
    assert!(server.terminate().success());

    // After a restart every acknowledged entry is there, with the id it was acknowledged with.
    let server = start(&data);
    for (seq, id) in acked.iter().step_by(997).chain(acked.last()) {
        let r = http(
            &server.addr,
            "GET",
            &format!("/v1/entries/{seq}"),
            Some(&admin),
            None,
        );
        ok_status(&r, 200);
        assert_eq!(r.json()["id"].as_str(), Some(id.as_str()), "seq {seq}");
    }
    let mut seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), acked.len(), "no seq acknowledged twice");
    drop(server);
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
}
