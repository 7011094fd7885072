//! The `custos` command end to end: init, append, get, query, export, proofs checked offline,
//! and exit codes for bad input that change nothing.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::*;

#[test]
fn init_writes_a_private_key_and_never_replaces_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let out = ok(&custos(&data, &["init", "--origin", "cli.example/log"]));
    assert!(
        out.contains("cli.example/log+"),
        "prints the verifier key: {out}"
    );
    let mode = std::fs::metadata(data.join("keys/log.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_before = std::fs::read(data.join("keys/log.key")).expect("key");
    let again = custos(&data, &["init"]);
    assert_eq!(again.status.code(), Some(5), "a second init fails");
    assert_eq!(
        std::fs::read(data.join("keys/log.key")).expect("key"),
        key_before
    );
}

#[test]
fn bad_input_gets_exit_2_and_appends_nothing() {
    let (_tmp, data) = ledger_with(3);
    for bad in [
        "not json",
        r#"{"tenant":"acme"}"#,
        r#"{"tenant":"acme","event_type":"x","actor":"robot","action":"a","outcome":"success"}"#,
        r#"{"tenant":"acme","event_type":"x","actor":"system","action":"a","outcome":"success","seq":5}"#,
    ] {
        let out = custos(&data, &["append", &entry_line(50), bad]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("argument 2"),
            "names the argument"
        );
    }
    let out = custos_stdin(
        &data,
        &["append"],
        &(entry_line(60) + "\n{\"tenant\": 1}\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin line 2"));
    let (code, report) = verify(&data);
    assert_eq!(code, 0);
    assert_eq!(report["entries"], 3, "nothing was appended");
    assert_eq!(custos(&data, &["get", "99"]).status.code(), Some(3));
    assert_eq!(
        custos(&data, &["query", "--limit", "5000"]).status.code(),
        Some(2)
    );
    assert_eq!(
        custos(&data, &["query", "--severity", "urgent"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn append_get_query_export_round_trip() {
    let (_tmp, data) = ledger_with(12);
    let out = ok(&custos(&data, &["--json", "append", &entry_line(100)]));
    let receipts: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(receipts[0]["seq"], 12);
    let id = receipts[0]["id"].as_str().expect("id").to_owned();
    let by_id: serde_json::Value =
        serde_json::from_str(&ok(&custos(&data, &["get", &id]))).expect("json");
    assert_eq!(by_id["seq"], 12);
    assert_eq!(by_id["data"]["api_key"], "[REDACTED]");
    let page: serde_json::Value = serde_json::from_str(&ok(&custos(
        &data,
        &[
            "--json", "query", "--tenant", "acme", "--actor", "agent:a2", "--desc", "--limit", "2",
        ],
    )))
    .expect("json");
    let seqs: Vec<u64> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![10, 6]);
    assert_eq!(page["next"], 6);
    let csv = ok(&custos(
        &data,
        &["export", "--format", "csv", "--tenant", "globex"],
    ));
    assert_eq!(csv.lines().count(), 1 + 6);
    let ce = ok(&custos(&data, &["export", "--format", "cloudevents"]));
    assert_eq!(ce.lines().count(), 13);
    let cp = ok(&custos(&data, &["checkpoint"]));
    assert!(cp.starts_with("test.example/log\n13\n"), "{cp}");
}

#[test]
fn a_proof_verifies_offline_and_tampering_is_caught() {
    let (tmp, data) = ledger_with(20);
    let out_dir = tmp.path().join("proof");
    ok(&custos(
        &data,
        &["proof", "7", "--out-dir", out_dir.to_str().expect("utf8")],
    ));
    let key = std::fs::read_to_string(out_dir.join("log.pub")).expect("key");
    let run = |entry: &std::path::Path, key: &str| {
        // No --data: verify-proof must not need one; point it somewhere empty to be sure.
        custos(
            &tmp.path().join("nowhere"),
            &[
                "verify-proof",
                "--entry",
                entry.to_str().expect("utf8"),
                "--proof",
                out_dir.join("proof.json").to_str().expect("utf8"),
                "--checkpoint",
                out_dir.join("checkpoint.txt").to_str().expect("utf8"),
                "--key",
                key,
            ],
        )
    };
    let good = run(&out_dir.join("entry.json"), key.trim());
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        !tmp.path().join("nowhere").exists(),
        "verify-proof opened no data directory"
    );
    // A changed entry.
    let text = std::fs::read_to_string(out_dir.join("entry.json")).expect("entry");
    let forged = out_dir.join("forged.json");
    std::fs::write(&forged, text.replace("\"allow\"", "\"deny\"")).expect("write");
    assert_eq!(run(&forged, key.trim()).status.code(), Some(1));
    // Another log's key.
    let other_dir = tmp.path().join("other");
    ok(&custos(
        &other_dir,
        &["init", "--origin", "test.example/log"],
    ));
    let other = std::fs::read_to_string(other_dir.join("log.pub")).expect("key");
    assert_eq!(
        run(&out_dir.join("entry.json"), other.trim()).status.code(),
        Some(1)
    );
    // Not a key at all: bad input.
    assert_eq!(
        run(&out_dir.join("entry.json"), "not-a-key").status.code(),
        Some(2)
    );
    // Consistency proof output shape.
    let c: serde_json::Value =
        serde_json::from_str(&ok(&custos(&data, &["consistency", "5", "20"]))).expect("json");
    assert_eq!(c["first"], 5);
    assert_eq!(c["second"], 20);
    assert!(!c["hashes"].as_array().expect("hashes").is_empty());
}

#[test]
fn keys_are_issued_once_listed_without_secrets_and_revoked() {
    let (_tmp, data) = ledger_with(2);
    let out = ok(&custos(
        &data,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "orchestrator",
            "--signed",
        ],
    ));
    let key = out.trim().to_owned();
    assert!(key.starts_with("ck_"), "{key}");
    let id = key.split('_').nth(1).expect("id").to_owned();
    let list = ok(&custos(&data, &["keys", "list"]));
    assert!(
        list.contains(&id) && list.contains("orchestrator") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&key), "the secret is never listed");
    // Issue and revocation are ledger entries; the ledger stays intact.
    ok(&custos(&data, &["keys", "revoke", &id]));
    assert!(ok(&custos(&data, &["keys", "list", "--tenant", "acme"])).contains("revoked"));
    assert_eq!(
        custos(&data, &["keys", "revoke", &id]).status.code(),
        Some(2),
        "twice is refused"
    );
    assert_eq!(
        custos(&data, &["keys", "revoke", "0000"]).status.code(),
        Some(3)
    );
    assert_eq!(
        custos(
            &data,
            &["keys", "create", "--tenant", "acme", "--role", "wizard"]
        )
        .status
        .code(),
        Some(2)
    );
    let page: serde_json::Value = serde_json::from_str(&ok(&custos(
        &data,
        &["--json", "query", "--resource", "api_key:", "--prefix"],
    )))
    .expect("json");
    let types: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, vec!["api_key_created", "api_key_revoked"]);
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
}
