//! Agent oversight end to end over HTTP (SPEC §5, §9), against the real `custos serve` with a
//! one-second enforcer and one-second anomaly windows. Three agents of one tenant:
//!
//! - `healthy` reports every second through the compatibility route `POST /agents/{id}/heartbeat`
//!   from a background thread and stays active, compliant, with a score of 100;
//! - `silent` never reports: it walks through warned → suspended → non-compliant, the gate
//!   refuses its reviews (403, `review_refused`), and an admin's approval of the unsuspend
//!   request custos filed reinstates it, after which its reviews are accepted again;
//! - `rogue` builds a steady baseline of tool calls and then bursts, using a tool it never
//!   declared on new resources: `capability_violation` and `rogue_detection`, score down.
//!
//! Everything is checked through HTTP and the ledger: tenant isolation, agent keys bound to
//! their agent, a malformed report that changes nothing, the history in order, `/metrics`, and
//! a restart that rebuilds the same registry from the ledger.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::*;

/// Reporting interval of `healthy` and `silent`, seconds.
const INTERVAL: u64 = 1;
/// Windows of steady traffic `rogue` sends before its burst (the detector needs 5).
const BASELINE_WINDOWS: usize = 8;
/// Tool calls in each baseline window.
const STEADY_CALLS: usize = 3;
/// Tool calls in the burst window.
const BURST_CALLS: usize = 200;

const ML: &str = "Add a new microsegment for machine learning workloads with GPU instances";

/// The oversight part of the configuration file: one-second anomaly windows and a short
/// warm-up, so a baseline forms within seconds.
const CONFIG: &str = "\
[oversight]
monitor_interval_secs = 1

[oversight.anomaly]
window_secs = 1
min_baseline_windows = 5
";

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

fn rfc3339_now() -> String {
    custos_core::time::format_utc_nanos(now_nanos()).expect("a representable time")
}

fn nanos(ts: &Value) -> i128 {
    custos_core::time::parse_rfc3339(ts.as_str().expect("a timestamp string")).expect("RFC 3339")
}

/// The documented heartbeat body, with healthy metrics.
fn heartbeat_body() -> String {
    json!({
        "timestamp": rfc3339_now(),
        "status": "healthy",
        "metrics": {"cpu_usage": 20, "memory_usage": 30, "response_time_ms": 100,
                    "error_rate": 0.5, "tasks_processed": 10}
    })
    .to_string()
}

fn plan_a() -> Value {
    let path = format!(
        "{}/../custos-gate/tests/plans/scenario-a.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read plan")).expect("plan JSON")
}

fn review(addr: &str, key: &str, request_id: &str) -> Resp {
    let body = json!({
        "request_id": request_id,
        "user_request": ML,
        "plan": plan_a(),
        "metadata": {"user": "alice@example.com"},
    })
    .to_string();
    http(addr, "POST", "/v1/reviews", Some(key), Some(&body))
}

fn send(addr: &str, method: &str, path: &str, key: &str, body: &Value) -> Resp {
    http(addr, method, path, Some(key), Some(&body.to_string()))
}

/// A GET that must answer 200 with JSON.
fn get(addr: &str, key: &str, path: &str) -> Value {
    let r = http(addr, "GET", path, Some(key), None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.show());
    r.json()
}

fn agent(addr: &str, key: &str, id: &str) -> Value {
    get(addr, key, &format!("/v1/agents/{id}"))
}

/// The entries `GET /v1/entries?QUERY` answers (one page of up to 1000).
fn entries(addr: &str, key: &str, query: &str) -> Vec<Value> {
    get(addr, key, &format!("/v1/entries?{query}&limit=1000"))["entries"]
        .as_array()
        .expect("entries")
        .clone()
}

/// An agent's history, oldest first (one page of up to 1000).
fn history(addr: &str, key: &str, id: &str, query: &str) -> Vec<Value> {
    get(
        addr,
        key,
        &format!("/v1/agents/{id}/history?limit=1000{query}"),
    )["items"]
        .as_array()
        .expect("items")
        .clone()
}

fn types(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|e| e["event_type"].as_str().expect("event_type"))
        .collect()
}

/// Polls `probe` every 100 ms until it answers `Ok`; after `within`, its last `Err` (what
/// was seen instead).
fn poll<T>(within: Duration, mut probe: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// [`poll`], failing the test after `within`.
fn wait_for<T>(what: &str, within: Duration, probe: impl FnMut() -> Result<T, String>) -> T {
    poll(within, probe)
        .unwrap_or_else(|seen| panic!("{what}: not within {within:?}; last seen: {seen}"))
}

/// Waits until `GET /v1/entries?QUERY` lists at least `n` entries (the query index may trail
/// the appends briefly).
fn wait_entries(addr: &str, key: &str, query: &str, n: usize, within: Duration) -> Vec<Value> {
    wait_for(&format!("{n} entries for {query}"), within, || {
        let found = entries(addr, key, query);
        if found.len() >= n {
            Ok(found)
        } else {
            Err(format!("{found:?}"))
        }
    })
}

/// The value of the sample `name{labels}` in an exposition text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn metrics(addr: &str) -> String {
    let r = http(addr, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200, "{}", r.show());
    r.body
}

/// A tool call of agent `id` (its own entry: actor `agent:<id>`).
fn call(id: &str, tool: &str, resource: &str) -> Value {
    json!({"event_type": "tool_invocation", "actor": format!("agent:{id}"), "action": "allow",
           "outcome": "success", "resource": resource, "data": {"tool": tool}})
}

/// Sleeps to `offset` into the next wall-clock second: one batch per one-second window.
fn pace_to_next_second(offset: Duration) {
    let into = Duration::from_nanos(
        u64::try_from(now_nanos().rem_euclid(1_000_000_000)).expect("below a second"),
    );
    std::thread::sleep(Duration::from_secs(1) - into + offset);
}

/// Agent `id`'s traffic: `BASELINE_WINDOWS` windows of `STEADY_CALLS` declared calls on three
/// known contacts, then one window of `BURST_CALLS` calls — with `exfiltrate`, ten of them an
/// undeclared upload tool on buckets never seen before. Steady batches are sent 300 ms into
/// their second, the burst `burst_at` into its second. Answers the responses that were not
/// 201.
fn traffic(addr: &str, key: &str, id: &str, exfiltrate: bool, burst_at: Duration) -> Vec<String> {
    let mut failures = Vec::new();
    for w in 0..=BASELINE_WINDOWS {
        let batch: Vec<Value> = if w < BASELINE_WINDOWS {
            (0..STEADY_CALLS)
                .map(|i| call(id, "crm.search", &format!("/crm/contacts/{i}")))
                .collect()
        } else {
            (0..BURST_CALLS)
                .map(|i| {
                    if exfiltrate && i % 20 == 0 {
                        call(id, "s3.put_object", &format!("s3://drop-zone/dump-{i}.csv"))
                    } else {
                        call(
                            id,
                            "crm.search",
                            &format!("/crm/contacts/{}", i % STEADY_CALLS),
                        )
                    }
                })
                .collect()
        };
        pace_to_next_second(if w < BASELINE_WINDOWS {
            Duration::from_millis(300)
        } else {
            burst_at
        });
        let r = send(
            addr,
            "POST",
            "/v1/entries:batch",
            key,
            &json!({ "entries": batch }),
        );
        if r.status != 201 {
            failures.push(format!("window {w}: {}", r.show()));
        }
    }
    failures
}

/// Missed-report counts before and at each consequence entry of an agent's history: each
/// consequence must be recorded exactly in the enforcer pass that crossed its threshold.
fn check_consequences_at_thresholds(items: &[Value]) {
    let (mut before, mut now) = (0u64, 0u64);
    let mut seen = Vec::new();
    for e in items {
        let t = e["event_type"].as_str().expect("event_type");
        let threshold = match t {
            "heartbeat_missed" => {
                let missed = e["data"]["missed"].as_u64().expect("data.missed");
                assert!(missed > now, "missed counts only grow: {now} then {missed}");
                (before, now) = (now, missed);
                continue;
            }
            "reporting_warning" => 3,
            "agent_suspended" => 5,
            "agent_non_compliant" => 10,
            _ => continue,
        };
        assert!(
            before < threshold && threshold <= now,
            "{t} recorded when the missed count went {before} → {now} (threshold {threshold})"
        );
        seen.push(t);
    }
    assert_eq!(
        seen,
        [
            "reporting_warning",
            "agent_suspended",
            "agent_non_compliant"
        ],
        "each consequence once, in order"
    );
}

#[test]
fn a_healthy_a_silent_and_a_rogue_agent_over_http_and_the_ledger() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init"]));
    let config = tmp.path().join("custos.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let env = [
        ("CUSTOS_CONFIG", config.as_str()),
        ("CUSTOS_MONITOR_INTERVAL_SECS", "1"),
    ];

    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let other_admin = key(&data, &["--tenant", "globex", "--role", "admin"]);
    let agent_key = |id: &str, roles: &[&str]| {
        let bound = format!("agent:{id}");
        let mut args = vec!["--tenant", "acme", "--agent", bound.as_str()];
        for r in roles {
            args.extend(["--role", r]);
        }
        key(&data, &args)
    };
    let healthy_key = agent_key("healthy", &["agent"]);
    // The silent agent is also an orchestrator: it has plans reviewed by the gate as itself.
    let silent_key = agent_key("silent", &["agent", "orchestrator"]);
    let rogue_key = agent_key("rogue", &["agent"]);

    let mut server = start_with(&data, &env);
    let addr = server.addr.clone();

    // Registration (admin only).
    let register = |id: &str, capabilities: &[&str], interval: u64| {
        let body = json!({"id": id, "owner": "ops@acme.example", "name": format!("{id} bot"),
                          "capabilities": capabilities, "reporting_interval_secs": interval});
        let r = send(&addr, "POST", "/v1/agents", &admin, &body);
        assert_eq!(r.status, 201, "{}", r.show());
        r.json()
    };
    let denied = send(
        &addr,
        "POST",
        "/v1/agents",
        &rogue_key,
        &json!({"id": "x", "owner": "o"}),
    );
    assert_eq!(denied.status, 403, "{}", denied.show());
    let silent = register("silent", &["crm.search"], INTERVAL);
    let healthy = register("healthy", &["crm.search"], INTERVAL);
    let rogue = register("rogue", &["crm.search", "crm.read"], 3600);
    for (view, id) in [
        (&silent, "silent"),
        (&healthy, "healthy"),
        (&rogue, "rogue"),
    ] {
        assert_eq!(view["id"], id, "{view:#}");
        assert_eq!(view["tenant"], "acme");
        assert_eq!(view["owner"], "ops@acme.example");
        assert_eq!(view["name"], format!("{id} bot"));
        assert_eq!(view["status"], "active");
        assert_eq!(view["reporting_status"], "compliant");
        assert_eq!(view["security_score"], 100);
        assert_eq!(view["missed_reports"], 0);
        assert_eq!(view["health"], "healthy");
        assert_eq!(view["undeclared_tools"], json!([]));
        assert_eq!(view["last_anomaly"], Value::Null);
        assert_eq!(view["pending_requests"], json!([]));
    }
    assert_eq!(silent["reporting_interval_secs"], INTERVAL);
    assert_eq!(rogue["capabilities"], json!(["crm.read", "crm.search"]));
    let registered = nanos(&silent["created_at"]);
    // Due: the first report counts as missed after the interval and the grace (2 intervals).
    assert_eq!(
        nanos(&silent["next_report_due"]) - nanos(&silent["reporting_since"]),
        3 * i128::from(INTERVAL) * 1_000_000_000,
        "{silent:#}"
    );
    let again = send(
        &addr,
        "POST",
        "/v1/agents",
        &admin,
        &json!({"id": "silent", "owner": "o"}),
    );
    assert_eq!(again.status, 409, "{}", again.show());

    // A malformed report is refused naming the field, and nothing is appended.
    let size = tree_size(&addr);
    let bad = json!({"timestamp": rfc3339_now(), "status": "healthy",
                     "metrics": {"cpu_usage": "high", "memory_usage": 30}});
    for path in ["/v1/agents/rogue/heartbeat", "/agents/rogue/heartbeat"] {
        let r = send(&addr, "POST", path, &rogue_key, &bad);
        assert_eq!(r.status, 422, "{path}: {}", r.show());
        assert!(r.is_problem(), "{}", r.show());
        assert_eq!(r.json()["field"], "metrics.cpu_usage", "{}", r.show());
        assert!(r.body.contains("cpu_usage"), "{}", r.show());
    }
    assert_eq!(tree_size(&addr), size, "a refused report appends nothing");

    // Before it falls silent, the silent agent's plans are reviewed as anyone's.
    let before = review(&addr, &silent_key, "req-silent-before");
    assert_eq!(before.status, 201, "{}", before.show());
    assert_eq!(before.json()["decision"], "approved");

    // The healthy agent reports every interval through the documented compatibility route.
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeats = {
        let (addr, key, stop) = (addr.clone(), healthy_key.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let body = heartbeat_body();
                let r = http(
                    &addr,
                    "POST",
                    "/agents/healthy/heartbeat",
                    Some(&key),
                    Some(&body),
                );
                answers.push((r.status, r.body));
                let spent = started.elapsed();
                std::thread::sleep(Duration::from_secs(INTERVAL).saturating_sub(spent));
            }
            answers
        })
    };
    // The rogue agent's tool calls, paced one batch per window.
    let traffic = {
        let (addr, key) = (addr.clone(), rogue_key.clone());
        std::thread::spawn(move || traffic(&addr, &key, "rogue", true, Duration::from_millis(300)))
    };

    // Keys and tenants: another tenant's admin sees none of these agents; an agent key
    // reports and reads only for its own agent; an agent writes entries only as itself.
    for id in ["healthy", "silent", "rogue"] {
        for (method, path) in [
            ("GET", format!("/v1/agents/{id}")),
            ("GET", format!("/v1/agents/{id}/history")),
            ("POST", format!("/v1/agents/{id}/heartbeat")),
            ("PATCH", format!("/v1/agents/{id}")),
        ] {
            let body = if method == "PATCH" {
                json!({"owner": "mallory"}).to_string()
            } else {
                heartbeat_body()
            };
            let body = (method != "GET").then_some(body.as_str());
            let r = http(&addr, method, &path, Some(&other_admin), body);
            assert_eq!(r.status, 404, "{method} {path} as globex: {}", r.show());
        }
    }
    let listed = get(&addr, &other_admin, "/v1/agents");
    assert_eq!(listed["items"], json!([]), "{listed:#}");
    let requests = get(&addr, &other_admin, "/v1/oversight/requests");
    assert_eq!(requests["items"], json!([]));
    for path in ["/v1/agents/silent/heartbeat", "/agents/silent/heartbeat"] {
        let r = http(
            &addr,
            "POST",
            path,
            Some(&healthy_key),
            Some(&heartbeat_body()),
        );
        assert_eq!(r.status, 403, "{path} with healthy's key: {}", r.show());
    }
    let r = http(&addr, "GET", "/v1/agents/silent", Some(&rogue_key), None);
    assert_eq!(r.status, 403, "{}", r.show());
    let r = http(&addr, "GET", "/v1/agents", Some(&rogue_key), None);
    assert_eq!(r.status, 403, "{}", r.show());
    let forged = json!({"event_type": "tool_invocation", "actor": "agent:healthy",
                        "action": "allow", "outcome": "success", "data": {"tool": "crm.search"}});
    let r = send(&addr, "POST", "/v1/entries", &rogue_key, &forged);
    assert_eq!(r.status, 403, "{}", r.show());
    let forged_beat = json!({"event_type": "heartbeat", "actor": "agent:rogue",
                             "action": "report", "outcome": "success", "data": {}});
    let r = send(&addr, "POST", "/v1/entries", &rogue_key, &forged_beat);
    assert_eq!(
        r.status,
        403,
        "custos alone writes heartbeats: {}",
        r.show()
    );

    // The silent agent walks through the consequences; the gate refuses it once halted.
    let mut walk: Vec<String> = vec!["active".into()];
    let mut refused = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = agent(&addr, &admin, "silent");
        let status = view["status"].as_str().expect("status").to_owned();
        if walk.last() != Some(&status) {
            walk.push(status.clone());
            if status == "suspended" || status == "non_compliant" {
                let id = format!("req-silent-{status}");
                let r = review(&addr, &silent_key, &id);
                assert_eq!(r.status, 403, "a {status} agent's review: {}", r.show());
                refused.push(id);
            }
        }
        if status == "non_compliant" {
            assert_eq!(view["reporting_status"], "non_compliant", "{view:#}");
            assert!(view["missed_reports"].as_u64() >= Some(10), "{view:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "silent is not non-compliant after 30 s: {walk:?} {view:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Polled every 100 ms, each status is seen (warned lasts 2 s, suspended 5 s), and the gate
    // refused the agent both suspended and non-compliant.
    assert_eq!(walk, ["active", "warned", "suspended", "non_compliant"]);
    assert_eq!(
        refused,
        ["req-silent-suspended", "req-silent-non_compliant"]
    );
    let at_worst = metrics(&addr);
    assert_eq!(
        sample(&at_worst, r#"custos_agents{status="non_compliant"}"#),
        Some(1.0),
        "{at_worst}"
    );
    assert_eq!(
        sample(
            &at_worst,
            r#"custos_reporting_status{status="non_compliant"}"#
        ),
        Some(1.0),
        "{at_worst}"
    );
    assert_eq!(
        sample(
            &at_worst,
            r#"custos_security_events_total{event_type="reporting_violation",severity="critical"}"#
        ),
        Some(1.0),
        "{at_worst}"
    );

    // The ledger tells the walk: each consequence in the pass that crossed its threshold,
    // in order, no earlier than the grace allows.
    let walked = wait_for(
        "silent's history up to its deletion request",
        Duration::from_secs(5),
        || {
            let items = history(&addr, &admin, "silent", "");
            if types(&items).contains(&"deletion_requested") {
                Ok(items)
            } else {
                Err(format!("{:?}", types(&items)))
            }
        },
    );
    let transitions: Vec<&str> = types(&walked)
        .into_iter()
        .filter(|t| *t != "heartbeat_missed")
        .collect();
    assert_eq!(
        transitions,
        [
            "agent_created",
            "reporting_warning",
            "agent_suspended",
            "unsuspend_requested",
            "agent_non_compliant",
            "security_event",
            "deletion_requested",
        ],
        "{walked:#?}"
    );
    let seqs: Vec<u64> = walked
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    check_consequences_at_thresholds(&walked);
    let at = |t: &str| {
        walked
            .iter()
            .find(|e| e["event_type"] == t)
            .unwrap_or_else(|| panic!("no {t}"))
            .clone()
    };
    let second = 1_000_000_000i128 * i128::from(INTERVAL);
    for (t, misses) in [
        ("reporting_warning", 3),
        ("agent_suspended", 5),
        ("agent_non_compliant", 10),
    ] {
        let e = at(t);
        // The n-th report is missed once the interval and the grace after it have passed.
        assert!(
            nanos(&e["ts"]) - registered >= (misses + 2) * second,
            "{t} too early: {e:#}"
        );
        assert_eq!(e["resource"], "agent:silent");
        assert_eq!(e["actor"], "system");
    }
    let warning = at("reporting_warning");
    assert_eq!(warning["data"]["changes"]["status"]["after"], "warned");
    assert_eq!(
        at("agent_suspended")["data"]["changes"]["status"]["after"],
        "suspended"
    );
    let violation = at("security_event");
    assert_eq!(violation["action"], "reporting_violation", "{violation:#}");
    assert_eq!(violation["severity"], "critical");
    // The same entries through the ledger's own query API.
    for t in [
        "reporting_warning",
        "agent_suspended",
        "agent_non_compliant",
        "unsuspend_requested",
        "deletion_requested",
    ] {
        let found = entries(
            &addr,
            &admin,
            &format!("resource=agent:silent&event_type={t}"),
        );
        assert_eq!(found.len(), 1, "{t}: {found:#?}");
        assert_eq!(found[0], at(t), "{t}");
    }
    let reporting_violations = entries(
        &addr,
        &admin,
        "resource=agent:silent&event_type=security_event&action=reporting_violation",
    );
    assert_eq!(reporting_violations.len(), 1);
    // The warning reached the agent's own channel.
    let warnings = get(&addr, &silent_key, "/v1/agents/silent/warnings");
    let delivered = types(warnings["items"].as_array().expect("items")).join(",");
    assert!(
        delivered.contains("reporting_warning") && delivered.contains("agent_suspended"),
        "{delivered}"
    );
    // The gate's refusals are recorded, with the agent and the reason.
    let refusals = wait_entries(
        &addr,
        &admin,
        "event_type=review_refused",
        refused.len(),
        Duration::from_secs(5),
    );
    assert_eq!(refusals.len(), refused.len(), "{refusals:#?}");
    for (e, id) in refusals.iter().zip(&refused) {
        assert_eq!(e["actor"], "agent:silent", "{e:#}");
        assert_eq!(e["resource"], format!("review:{id}"), "{e:#}");
        assert_eq!(e["outcome"], "denied");
        assert_eq!(e["data"]["agent"], "silent");
        assert!(
            e["data"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("halted")),
            "{e:#}"
        );
    }
    let decided = entries(&addr, &admin, "event_type=review_decision");
    assert_eq!(
        decided.len(),
        1,
        "refused reviews are never decided: {decided:#?}"
    );

    // The rogue agent: an undeclared tool, then a window far from its baseline.
    let failures = traffic.join().expect("the rogue traffic thread");
    assert!(failures.is_empty(), "{failures:?}");
    let rogue_findings = wait_entries(
        &addr,
        &admin,
        "resource=agent:rogue&event_type=rogue_detection",
        1,
        Duration::from_secs(10),
    );
    let capability = wait_entries(
        &addr,
        &admin,
        "resource=agent:rogue&event_type=capability_violation",
        1,
        Duration::from_secs(5),
    );
    assert_eq!(
        capability.len(),
        1,
        "one finding per undeclared tool: {capability:#?}"
    );
    let cv = &capability[0];
    assert_eq!(cv["severity"], "high", "{cv:#}");
    assert_eq!(cv["data"]["tool"], "s3.put_object", "{cv:#}");
    assert_eq!(cv["data"]["declared"], json!(["crm.read", "crm.search"]));
    let used = get(
        &addr,
        &admin,
        &format!("/v1/entries/{}", cv["data"]["entry_seq"]),
    );
    assert_eq!(
        used["actor"], "agent:rogue",
        "the finding names the call: {used:#}"
    );
    assert_eq!(used["data"]["tool"], "s3.put_object");
    let flagged = &rogue_findings[0];
    let score = flagged["data"]["score"].as_f64().expect("data.score");
    assert!((0.7..=1.0).contains(&score), "{flagged:#}");
    let explanation = flagged["data"]["explanation"]
        .as_str()
        .expect("explanation");
    assert!(
        !explanation.is_empty() && explanation != "no deviation from baseline",
        "{flagged:#}"
    );
    let assessment = &flagged["data"]["assessment"];
    assert_eq!(assessment["flagged"], true, "{flagged:#}");
    assert!(
        assessment["actions"].as_u64() >= Some(100),
        "the burst window: {flagged:#}"
    );
    assert!(
        assessment["baseline_windows"].as_u64() >= Some(5),
        "{flagged:#}"
    );
    let features = assessment["features"].as_array().expect("features");
    let action_rate = features
        .iter()
        .find(|f| f["feature"] == "action_rate")
        .unwrap_or_else(|| panic!("the action rate explains it: {flagged:#}"));
    assert!(action_rate["z"].as_f64() > Some(10.0), "{action_rate:#}");
    assert_eq!(action_rate["baseline_median"], STEADY_CALLS as f64);
    assert!(
        features.iter().any(|f| f["feature"] == "new_tool"
            && f["detail"]
                .as_str()
                .is_some_and(|d| d.contains("s3.put_object"))),
        "{flagged:#}"
    );
    assert!(
        ["high", "critical"].contains(&flagged["severity"].as_str().unwrap_or("")),
        "{flagged:#}"
    );
    let rogue_view = agent(&addr, &admin, "rogue");
    assert_eq!(rogue_view["undeclared_tools"], json!(["s3.put_object"]));
    let last = rogue_findings.last().expect("a finding");
    // `last_anomaly.seq` is "the ledger entry that records it" (registry::AnomalyNote): the
    // `rogue_detection` entry.
    let noted = get(
        &addr,
        &admin,
        &format!("/v1/entries/{}", rogue_view["last_anomaly"]["seq"]),
    );
    // (Checked like the restart below: noted now, asserted at the end, so that one defect
    // does not hide the checks after it.)
    let mut defects = Vec::new();
    if noted["seq"] != last["seq"] {
        defects.push(format!(
            "last_anomaly.seq is {}, a {} entry by {}, not the rogue_detection entry {} that \
             records the finding",
            noted["seq"],
            noted["event_type"].as_str().unwrap_or("?"),
            noted["actor"].as_str().unwrap_or("?"),
            last["seq"]
        ));
    }
    assert_eq!(rogue_view["last_anomaly"]["at"], last["data"]["at"]);
    assert_eq!(
        rogue_view["last_anomaly"]["score"].as_f64(),
        last["data"]["score"].as_f64()
    );
    // −15 for the warning, −30 for each critical finding (SPEC §5.3).
    let expected = (100 - 15 - 30 * rogue_findings.len() as i64).max(0);
    assert_eq!(
        rogue_view["security_score"].as_i64(),
        Some(expected),
        "{rogue_view:#}"
    );
    assert_eq!(rogue_view["status"], "active", "{rogue_view:#}");
    let own = get(&addr, &rogue_key, "/v1/agents/rogue/warnings");
    let own = types(own["items"].as_array().expect("items")).join(",");
    assert!(
        own.contains("capability_violation") && own.contains("rogue_detection"),
        "the agent is told: {own}"
    );

    // An admin reinstates the silent agent; the deletion request is denied.
    let pending = get(&addr, &admin, "/v1/oversight/requests?status=pending");
    let pending = pending["items"].as_array().expect("items").clone();
    let kinds: Vec<(&str, &str)> = pending
        .iter()
        .map(|r| {
            (
                r["agent"].as_str().expect("agent"),
                r["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("silent", "unsuspend"), ("silent", "deletion")],
        "{pending:#?}"
    );
    let request = |kind: &str| {
        pending
            .iter()
            .find(|r| r["kind"] == kind)
            .and_then(|r| r["id"].as_str())
            .expect("a request id")
            .to_owned()
    };
    let (unsuspend, deletion) = (request("unsuspend"), request("deletion"));
    assert_eq!(
        agent(&addr, &admin, "silent")["pending_requests"],
        json!([unsuspend, deletion])
    );
    let approval = format!("/v1/oversight/requests/{unsuspend}/approval");
    let note = json!({"note": "owner restarted the reporting sidecar"});
    let foreign = send(&addr, "POST", &approval, &other_admin, &note);
    assert_eq!(foreign.status, 404, "{}", foreign.show());
    let by_agent = send(&addr, "POST", &approval, &silent_key, &note);
    assert_eq!(by_agent.status, 403, "{}", by_agent.show());
    let approved = send(&addr, "POST", &approval, &admin, &note);
    assert_eq!(approved.status, 200, "{}", approved.show());
    let approved = approved.json();
    assert_eq!(approved["status"], "approved", "{approved:#}");
    assert_eq!(approved["kind"], "unsuspend");
    assert_eq!(approved["note"], note["note"]);
    let twice = send(&addr, "POST", &approval, &admin, &note);
    assert_eq!(twice.status, 409, "{}", twice.show());
    let reinstated = agent(&addr, &admin, "silent");
    assert_eq!(reinstated["status"], "active", "{reinstated:#}");
    assert_eq!(reinstated["reporting_status"], "compliant");
    assert_eq!(reinstated["missed_reports"], 0);
    let back = review(&addr, &silent_key, "req-silent-reinstated");
    assert_eq!(back.status, 201, "{}", back.show());
    assert_eq!(back.json()["decision"], "approved");
    let denial = send(
        &addr,
        "POST",
        &format!("/v1/oversight/requests/{deletion}/denial"),
        &admin,
        &json!({"note": "reinstated instead"}),
    );
    assert_eq!(denial.status, 200, "{}", denial.show());
    assert_eq!(denial.json()["status"], "denied");
    let left = get(&addr, &admin, "/v1/oversight/requests?status=pending");
    assert_eq!(left["items"], json!([]), "{left:#}");
    // Its own report is welcome again.
    let beat = http(
        &addr,
        "POST",
        "/v1/agents/silent/heartbeat",
        Some(&silent_key),
        Some(&heartbeat_body()),
    );
    assert_eq!(beat.status, 200, "{}", beat.show());
    let beat = beat.json();
    assert_eq!(beat["agent"], "silent");
    assert_eq!(beat["status"], "active", "{beat:#}");
    assert_eq!(beat["reporting_status"], "compliant");
    assert_eq!(beat["violations"], json!([]));

    // The healthy agent reported all along and is in perfect standing.
    stop.store(true, Ordering::SeqCst);
    let answers = heartbeats.join().expect("the heartbeat thread");
    assert!(
        answers.len() >= 10,
        "a heartbeat every second: {}",
        answers.len()
    );
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let a: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(a["agent"], "healthy", "{a:#}");
        assert_eq!(a["status"], "active", "{a:#}");
        assert_eq!(a["reporting_status"], "compliant", "{a:#}");
        assert_eq!(a["security_score"], 100, "{a:#}");
        assert_eq!(a["violations"], json!([]), "{a:#}");
    }
    let view = agent(&addr, &admin, "healthy");
    assert_eq!(view["status"], "active", "{view:#}");
    assert_eq!(view["reporting_status"], "compliant");
    assert_eq!(view["security_score"], 100);
    assert_eq!(view["missed_reports"], 0);
    assert_eq!(view["health"], "healthy");
    assert_eq!(view["last_report"]["status"], "healthy");
    assert_eq!(view["last_report"]["metrics"]["cpu_usage"], 20.0);
    let beats = wait_for(
        "every heartbeat in healthy's history",
        Duration::from_secs(5),
        || {
            let items = history(&addr, &admin, "healthy", "&type=heartbeat");
            if items.len() == answers.len() {
                Ok(items)
            } else {
                Err(format!("{} of {}", items.len(), answers.len()))
            }
        },
    );
    assert!(beats.iter().all(|e| e["actor"] == "agent:healthy"));
    let all = types(&history(&addr, &admin, "healthy", "")).join(",");
    assert!(
        !all.contains("heartbeat_missed") && !all.contains("warning"),
        "healthy never missed a report: {all}"
    );
    // The malformed reports left no heartbeat behind; the rogue agent never reported.
    let rogue_beats = history(&addr, &admin, "rogue", "&type=heartbeat");
    assert!(rogue_beats.is_empty(), "{rogue_beats:#?}");

    // Metrics by status, and the security events of oversight.
    let m = metrics(&addr);
    for (series, want) in [
        (r#"custos_agents{status="active"}"#, 3.0),
        (r#"custos_agents{status="non_compliant"}"#, 0.0),
        (r#"custos_reporting_status{status="compliant"}"#, 3.0),
        (
            r#"custos_security_events_total{event_type="capability_violation",severity="high"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, series), Some(want), "{series} in\n{m}");
    }
    let rogue_events: f64 = ["high", "critical"]
        .iter()
        .filter_map(|s| {
            sample(
                &m,
                &format!(
                    r#"custos_security_events_total{{event_type="rogue_detection",severity="{s}"}}"#
                ),
            )
        })
        .sum();
    assert_eq!(rogue_events, rogue_findings.len() as f64, "{m}");

    // Quiet the one-second agents, then restart: the registry comes back from the ledger.
    for id in ["healthy", "silent"] {
        let r = send(
            &addr,
            "PATCH",
            &format!("/v1/agents/{id}"),
            &admin,
            &json!({"reporting_interval_secs": 3600}),
        );
        assert_eq!(r.status, 200, "{}", r.show());
        assert_eq!(r.json()["reporting_interval_secs"], 3600);
    }
    let agents_before = get(&addr, &admin, "/v1/agents");
    let requests_before = get(&addr, &admin, "/v1/oversight/requests");
    assert_eq!(agents_before["items"].as_array().map(Vec::len), Some(3));
    assert!(server.terminate().success());
    server = start_with(&data, &env);
    let addr = server.addr.clone();
    assert_eq!(get(&addr, &admin, "/v1/agents"), agents_before);
    assert_eq!(
        get(&addr, &admin, "/v1/oversight/requests"),
        requests_before
    );
    // The reinstatement holds after the restart: the gate reviews the agent's plans.
    let after = review(&addr, &silent_key, "req-silent-after-restart");
    assert_eq!(after.status, 201, "{}", after.show());
    assert_eq!(after.json()["decision"], "approved");
    // And the registry stays as it was: with entries flowing again (the review's), the
    // watcher and the enforcer find nothing new — the baselines replayed from the ledger do
    // not flag the same window twice.
    let size = tree_size(&addr);
    let hold = Instant::now() + Duration::from_secs(3);
    while Instant::now() < hold {
        std::thread::sleep(Duration::from_millis(250));
        if get(&addr, &admin, "/v1/agents") != agents_before || tree_size(&addr) != size {
            let flagged: Vec<String> = entries(
                &addr,
                &admin,
                "resource=agent:rogue&event_type=rogue_detection",
            )
            .iter()
            .map(|e| {
                format!(
                    "seq {} at {} for the window from {}",
                    e["seq"],
                    e["ts"].as_str().unwrap_or("?"),
                    e["data"]["assessment"]["window_start"]
                        .as_str()
                        .unwrap_or("?")
                )
            })
            .collect();
            defects.push(format!(
                "the registry changed after the restart with no new agent activity: \
                 rogue_detection entries {flagged:?} ({} before the restart); rogue's score {} \
                 (before {})",
                rogue_findings.len(),
                agent(&addr, &admin, "rogue")["security_score"],
                expected
            ));
            break;
        }
    }
    let r = http(&addr, "GET", "/v1/agents/rogue", Some(&other_admin), None);
    assert_eq!(r.status, 404, "{}", r.show());
    assert!(defects.is_empty(), "{defects:#?}");
}

/// SPEC §5.3 on a quiet ledger: an agent that bursts (with tools it declared) and then goes
/// idle is still assessed once its window ends — the detector's tick must not wait for some
/// other entry to be appended.
#[test]
fn a_burst_followed_by_silence_is_flagged_on_a_quiet_ledger() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init"]));
    let config = tmp.path().join("custos.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let bursty = key(
        &data,
        &[
            "--tenant",
            "acme",
            "--role",
            "agent",
            "--agent",
            "agent:bursty",
        ],
    );
    let server = start_with(&data, &[("CUSTOS_CONFIG", config.as_str())]);
    let addr = server.addr.clone();
    let body = json!({"id": "bursty", "owner": "ops@acme.example", "capabilities": ["crm.search"],
                      "reporting_interval_secs": 3600});
    let r = send(&addr, "POST", "/v1/agents", &admin, &body);
    assert_eq!(r.status, 201, "{}", r.show());
    // The burst early in its second: the watcher's pass that reads it most likely runs
    // before the window ends, so only a later tick can close the window.
    let failures = traffic(&addr, &bursty, "bursty", false, Duration::from_millis(50));
    assert!(failures.is_empty(), "{failures:?}");
    // Nothing else is appended from here on: the burst's window ends within a second and the
    // watcher runs every second.
    let flagged_entry = || {
        let found = entries(
            &addr,
            &admin,
            "resource=agent:bursty&event_type=rogue_detection",
        );
        found.first().cloned().ok_or_else(|| {
            format!(
                "no rogue_detection; the agent: {}",
                agent(&addr, &admin, "bursty")
            )
        })
    };
    let flagged = match poll(Duration::from_secs(6), flagged_entry) {
        Ok(e) => e,
        Err(seen) => {
            // Tell whether the window is assessed once anything else is appended.
            let other = json!({"event_type": "config_change", "actor": "user:ops",
                               "action": "update", "outcome": "success", "data": {}});
            let r = send(&addr, "POST", "/v1/entries", &admin, &other);
            assert_eq!(r.status, 201, "{}", r.show());
            let after = poll(Duration::from_secs(4), flagged_entry);
            panic!(
                "the idle agent's burst window was not assessed within 6 s ({seen}); after an \
                 unrelated entry was appended: {}",
                match after {
                    Ok(e) => format!(
                        "flagged at once (seq {}), so the detector's tick waits \
                                      for new entries",
                        e["seq"]
                    ),
                    Err(_) => "still nothing".to_owned(),
                }
            );
        }
    };
    assert_eq!(
        flagged["data"]["assessment"]["actions"].as_u64(),
        Some(BURST_CALLS as u64),
        "{flagged:#}"
    );
    let view = agent(&addr, &admin, "bursty");
    assert_eq!(
        view["security_score"], 70,
        "−30 for the critical finding: {view:#}"
    );
    assert_eq!(view["undeclared_tools"], json!([]), "{view:#}");
}
