//! `custos rebuild` and `custos agents` read the registry from the data directory's ledger
//! alone: after a server registered agents, took heartbeats and suspended one, the offline
//! rebuild shows exactly what the server answered over HTTP.

mod support;

use serde_json::{Value, json};
use support::{custos, http, key, ok, start};

#[test]
fn the_offline_rebuild_shows_what_the_server_answered() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    custos(&data, &["init"]);
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let bot = key(
        &data,
        &[
            "--tenant",
            "acme",
            "--role",
            "agent",
            "--agent",
            "agent:crm-bot",
        ],
    );
    let mut server = start(&data);
    let a = server.addr.clone();
    for (id, tools) in [("crm-bot", json!(["crm.search"])), ("mail-bot", json!([]))] {
        let body = json!({"id": id, "owner": "sales", "capabilities": tools,
            "reporting_interval_secs": 3600})
        .to_string();
        let r = http(&a, "POST", "/v1/agents", Some(&admin), Some(&body));
        assert_eq!(r.status, 201, "{}", r.show());
    }
    let beat = json!({"timestamp": "2026-12-04T10:00:00Z", "status": "healthy",
        "metrics": {"cpu_usage": 70.0, "memory_usage": 20.0, "tasks_processed": 3}})
    .to_string();
    let r = http(
        &a,
        "POST",
        "/agents/crm-bot/heartbeat",
        Some(&bot),
        Some(&beat),
    );
    assert_eq!(r.status, 200, "{}", r.show());
    assert_eq!(
        r.json()["security_score"],
        85,
        "cpu in its warning band: −15"
    );
    let r = http(
        &a,
        "POST",
        "/v1/agents/mail-bot/suspension",
        Some(&admin),
        Some(r#"{"reason":"investigation"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.show());
    let live: Vec<Value> = ["crm-bot", "mail-bot"]
        .iter()
        .map(|id| {
            let r = http(&a, "GET", &format!("/v1/agents/{id}"), Some(&admin), None);
            assert_eq!(r.status, 200, "{}", r.show());
            r.json()
        })
        .collect();
    assert!(server.terminate().success());

    let rebuilt: Value =
        serde_json::from_str(&ok(&custos(&data, &["--json", "rebuild"]))).expect("json");
    for view in &live {
        let id = view["id"].as_str().expect("id");
        let record = &rebuilt["agents"][format!("acme/{id}")];
        assert!(record.is_object(), "{id} missing from {rebuilt}");
        // Every field of the record is the same; the view adds only what holds at reading.
        for (field, value) in record.as_object().expect("object") {
            assert_eq!(&view[field], value, "{id}.{field}");
        }
    }
    assert_eq!(rebuilt["agents"]["acme/mail-bot"]["status"], "suspended");
    let pending: Vec<&Value> = rebuilt["requests"]
        .as_object()
        .expect("requests")
        .values()
        .filter(|r| r["status"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["agent"], "mail-bot");

    let list = ok(&custos(&data, &["agents", "list", "--tenant", "acme"]));
    assert!(
        list.contains("crm-bot") && list.contains("mail-bot"),
        "{list}"
    );
    assert!(list.contains("suspended"), "{list}");
    let shown: Value = serde_json::from_str(&ok(&custos(
        &data,
        &["agents", "show", "--tenant", "acme", "crm-bot"],
    )))
    .expect("json");
    assert_eq!(shown["security_score"], 85);
    assert_eq!(shown["metric_levels"]["cpu_usage"], "warning");
    let missing = custos(&data, &["agents", "show", "--tenant", "globex", "crm-bot"]);
    assert_eq!(missing.status.code(), Some(3), "not found");
}
