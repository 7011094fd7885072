//! The `custos` binary on PostgreSQL: `migrate`, `serve` with `store = "postgres"`, and
//! `verify` on the database — which also catches a row a superuser changed behind the
//! append-only triggers' back.

mod support;

use std::process::{Command, Output};

use custos_store::postgres::testing::TestDatabase;
use serde_json::{Value, json};
use support::*;

fn database() -> TestDatabase {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(TestDatabase::create())
}

fn custos_pg(data: &std::path::Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("CUSTOS_STORE", "postgres")
        .env("CUSTOS_POSTGRES_URL", url)
        .output()
        .expect("run custos")
}

/// `custos serve` on PostgreSQL for the ledger of `data`, and the bootstrap admin key it prints
/// (the ledger must hold no keys yet).
fn serve_postgres(data: &std::path::Path, url: &str) -> (Server, String) {
    let (server, _, lines) = spawn_server(postgres_serve_command(data, url), 1);
    (server, bootstrap_key(&lines))
}

fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .expect("run psql (the PostgreSQL client)")
}

#[test]
fn serve_and_verify_on_postgres_and_catch_a_superusers_edit() {
    let db = database();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("node");
    ok(&custos(&data, &["init", "--origin", "pg.example/log"]));
    let migrated = ok(&custos_pg(&data, &db.url, &["migrate"]));
    assert!(migrated.contains("current"), "{migrated}");

    let (mut server, admin) = serve_postgres(&data, &db.url);
    let batch: Vec<Value> = (0..200)
        .map(|i| {
            json!({"tenant": "system", "event_type": "tool_invocation", "actor": format!("agent:a{}", i % 3),
                   "action": "allow", "outcome": "success", "data": {"i": i, "password": "hunter2"}})
        })
        .collect();
    let r = http(
        &server.addr,
        "POST",
        "/v1/entries:batch",
        Some(&admin),
        Some(&json!({ "entries": batch }).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(
        &server.addr,
        "GET",
        "/v1/entries?actor=agent:a1&limit=1000",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["entries"].as_array().map(Vec::len), Some(67));
    let r = http(
        &server.addr,
        "GET",
        "/v1/proofs/inclusion/17",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(server.terminate().success());

    let out = custos_pg(&data, &db.url, &["--json", "verify"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert!(out.status.success(), "{report}");
    assert_eq!(report["entries"], 201, "the key entry and the batch");

    // The database refuses to rewrite history, even for the owner.
    let refused = psql(
        &db.url,
        "UPDATE ledger_entries SET actor = 'agent:x' WHERE seq = 42",
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("append-only"),
        "{refused:?}"
    );
    let refused = psql(&db.url, "DELETE FROM ledger_entries WHERE seq = 200");
    assert!(!refused.status.success(), "{refused:?}");

    // A superuser can switch triggers off; verification still names the changed entry.
    let edited = psql(
        &db.url,
        "SET session_replication_role = replica; \
         UPDATE ledger_entries SET canonical = replace(convert_from(canonical, 'UTF8'), \
         '\"outcome\":\"success\"', '\"outcome\":\"failure\"')::bytea WHERE seq = 42",
    );
    assert!(edited.status.success(), "{edited:?}");
    let out = custos_pg(&data, &db.url, &["--json", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["failure"]["seq"], 42, "{report}");
}

/// A role that may only append (docs/postgres.md): `serve` runs on it with migrations off, and
/// the database refuses it any rewrite outright — by privilege, before any trigger.
struct Role {
    name: String,
    db_url: String,
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = psql(&self.db_url, &format!("DROP OWNED BY {}", self.name));
        let _ = psql(&self.db_url, &format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

fn url_as(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host}")
}

#[test]
fn an_append_only_role_serves_and_cannot_rewrite() {
    let db = database();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("node");
    ok(&custos(&data, &["init", "--origin", "pg-role.example/log"]));
    // The owner migrates.
    ok(&custos_pg(&data, &db.url, &["migrate"]));
    let role = Role {
        name: format!("custos_app_{}", &db.name["custos_test_".len()..][..12]),
        db_url: db.url.clone(),
    };
    let grants = format!(
        "CREATE ROLE {r} LOGIN; GRANT CONNECT ON DATABASE \"{d}\" TO {r}; \
         GRANT USAGE ON SCHEMA public TO {r}; \
         GRANT SELECT, INSERT ON ledger_entries, ledger_checkpoints TO {r}; \
         GRANT SELECT, UPDATE ON ledger_state TO {r}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON request_nonces TO {r}; \
         GRANT SELECT ON _sqlx_migrations TO {r};",
        r = role.name,
        d = db.name
    );
    let granted = psql(&db.url, &grants);
    assert!(granted.status.success(), "{granted:?}");
    let app_url = url_as(&db.url, &role.name);

    // With migrations on, the role cannot even start (no CREATE on the schema) ...
    let refused = custos_pg(&data, &app_url, &["migrate"]);
    assert!(!refused.status.success(), "{refused:?}");
    // ... with them off it serves, after checking the schema is current.
    let mut cmd = postgres_serve_command(&data, &app_url);
    cmd.env("CUSTOS_POSTGRES_MIGRATE", "false");
    let (mut server, _, lines) = spawn_server(cmd, 1);
    let admin = bootstrap_key(&lines);
    let r = http(
        &server.addr,
        "POST",
        "/v1/entries",
        Some(&admin),
        Some(
            r#"{"event_type":"tool_invocation","actor":"agent:a","action":"allow","outcome":"success"}"#,
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(&server.addr, "GET", "/v1/checkpoint", Some(&admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(server.terminate().success());

    for sql in [
        "UPDATE ledger_entries SET actor = 'agent:x' WHERE seq = 1",
        "DELETE FROM ledger_entries WHERE seq = 1",
        "TRUNCATE ledger_entries",
        "DELETE FROM ledger_checkpoints",
    ] {
        let out = psql(&app_url, sql);
        assert!(!out.status.success(), "{sql}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{sql}: {out:?}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("--data")
        .arg(&data)
        .args(["--json", "verify"])
        .env("CUSTOS_STORE", "postgres")
        .env("CUSTOS_POSTGRES_URL", &app_url)
        .output()
        .expect("verify");
    assert!(out.status.success(), "{out:?}");
}

/// `custos copy --from embedded --to postgres` moves a ledger byte for byte — the same
/// checkpoints verify against it — verifies it on arrival, resumes and catches up when run
/// again, refuses a database holding another ledger, and the copy serves on.
#[test]
fn copy_moves_an_embedded_ledger_into_postgres_and_verifies_it_on_arrival() {
    let db = database();
    // More than one chunk (10 000) and several checkpoints.
    let (_tmp, data) = ledger_with(12_000);
    let more: String = (12_000..25_000).map(|i| entry_line(i) + "\n").collect();
    ok(&custos_stdin(&data, &["append"], &more));
    let source_latest = ok(&custos(&data, &["checkpoint"]));

    let copy = ["copy", "--from", "embedded", "--to", "postgres"];
    let out = ok(&custos_pg(&data, &db.url, &copy));
    assert!(
        out.contains("copied 25000 entries (0 were there already)"),
        "{out}"
    );
    assert!(out.contains("ledger intact: 25000 entries"), "{out}");
    let out = custos_pg(&data, &db.url, &["--json", "verify"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert!(out.status.success(), "{report}");
    assert_eq!(report["entries"], 25_000);
    let source_report = verify(&data).1;
    assert_eq!(report["root"], source_report["root"], "one tree");
    assert_eq!(report["checkpoints"], source_report["checkpoints"]);
    let dest_latest = psql(
        &db.url,
        "SELECT note FROM ledger_checkpoints ORDER BY no DESC LIMIT 1",
    );
    assert_eq!(
        String::from_utf8_lossy(&dest_latest.stdout).trim_end(),
        source_latest.trim_end(),
        "the source's signed checkpoint, unchanged"
    );
    let row = psql(
        &db.url,
        "SELECT convert_from(canonical, 'UTF8') FROM ledger_entries WHERE seq = 4242",
    );
    let source_entry: Value =
        serde_json::from_str(&ok(&custos(&data, &["get", "4242"]))).expect("entry");
    let dest_entry: Value =
        serde_json::from_slice(&row.stdout).expect("the stored canonical entry");
    assert_eq!(dest_entry, source_entry, "same bytes, same id and ts");

    // Again: nothing to do. After more appends: only the new entries and checkpoint.
    let out = ok(&custos_pg(&data, &db.url, &copy));
    assert!(
        out.contains("copied 0 entries (25000 were there already) and 0 checkpoints"),
        "{out}"
    );
    let tail: String = (25_000..25_100).map(|i| entry_line(i) + "\n").collect();
    ok(&custos_stdin(&data, &["append"], &tail));
    let out = ok(&custos_pg(&data, &db.url, &copy));
    assert!(
        out.contains("copied 100 entries (25000 were there already) and 1 checkpoints"),
        "{out}"
    );

    // A database holding another ledger is refused and left as it was.
    let other_db = database();
    let (_other_tmp, other) = ledger_with(30);
    ok(&custos_pg(&other, &other_db.url, &copy));
    let out = custos_pg(&data, &other_db.url, &copy);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another ledger"),
        "{out:?}"
    );
    let count = psql(&other_db.url, "SELECT count(*) FROM ledger_entries");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "30");
    // Copying into the embedded store is not a thing; say so.
    let out = custos_pg(
        &data,
        &db.url,
        &["copy", "--from", "postgres", "--to", "embedded"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--to must be postgres"));

    // The copy serves on: appends continue its chain, and it still verifies.
    let (mut server, admin) = serve_postgres(&data, &db.url);
    let r = http(
        &server.addr,
        "POST",
        "/v1/entries",
        Some(&admin),
        Some(
            &json!({"tenant": "system", "event_type": "settings_changed", "actor": "user:ops",
                    "action": "moved", "outcome": "success"})
            .to_string(),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["seq"], 25_101, "after the copy and the key entry");
    assert!(server.terminate().success());
    let out = custos_pg(&data, &db.url, &["--json", "verify"]);
    assert!(out.status.success(), "{out:?}");
}
