//! `custos serve` end to end, about who may do what: tenant isolation on every endpoint, role
//! rules, request signatures (SPEC §4.6), the `security_event` record of every refusal, key
//! management over HTTP, and malformed input that appends nothing. Only HTTP and the CLI.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// A fresh data directory.
fn init() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "auth.example/log"]));
    (tmp, data)
}

fn entry(actor: &str, resource: &str) -> Value {
    json!({"event_type": "tool_invocation", "actor": actor, "action": "allow",
        "outcome": "success", "resource": resource, "data": {"tool": "crm.search"}})
}

fn post(a: &str, path: &str, key: &str, body: &Value) -> Resp {
    http(a, "POST", path, Some(key), Some(&body.to_string()))
}

fn get(a: &str, path: &str, key: &str) -> Resp {
    http(a, "GET", path, Some(key), None)
}

fn expect(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.show());
}

fn expect_problem(r: &Resp, status: u16, what: &str) {
    expect(r, status, what);
    assert!(r.is_problem(), "{what}: not problem+json: {}", r.headers);
}

/// The resources of the entries of this key's tenant whose resource starts with `prefix`.
fn resources_under(a: &str, key: &str, prefix: &str) -> BTreeSet<String> {
    let r = get(
        a,
        &format!("/v1/entries?resource={prefix}&resource_prefix=true&limit=1000"),
        key,
    );
    expect(&r, 200, "query by resource prefix");
    r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"].as_str().expect("resource").to_owned())
        .collect()
}

/// Refusals recorded, summed by (tenant, data.reason, resource or "").
type Tally = BTreeMap<(String, String, String), u64>;

fn tally_key(tenant: &str, reason: &str, resource: &str) -> (String, String, String) {
    (tenant.to_owned(), reason.to_owned(), resource.to_owned())
}

/// The `security_event` entries the given keys can see, and their counts summed.
fn refusals_seen(a: &str, keys: &[&str]) -> (Tally, Vec<Value>) {
    let mut tally = Tally::new();
    let mut all = Vec::new();
    for k in keys {
        let r = get(a, "/v1/entries?event_type=security_event&limit=1000", k);
        expect(&r, 200, "query security events");
        for e in r.json()["entries"].as_array().expect("entries") {
            *tally
                .entry(tally_key(
                    e["tenant"].as_str().expect("tenant"),
                    e["data"]["reason"].as_str().expect("data.reason"),
                    e["resource"].as_str().unwrap_or(""),
                ))
                .or_default() += e["data"]["count"].as_u64().expect("data.count");
            all.push(e.clone());
        }
    }
    (tally, all)
}

/// Waits (up to ~6 s: refusals are recorded about once a second) until the recorded refusals
/// are exactly `want`; returns the entries.
fn await_refusals(a: &str, keys: &[&str], want: &Tally) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (got, entries) = refusals_seen(a, keys);
        if got == *want {
            return entries;
        }
        if Instant::now() > deadline {
            assert_eq!(
                got, *want,
                "recorded refusals (tenant, reason, resource) → count"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// a. Tenant isolation, one row per endpoint.

/// What a 200 body lists, to check every item belongs to the caller's tenant.
#[derive(Clone, Copy, Debug)]
enum Listing {
    /// Nothing tenant-shaped.
    Nothing,
    /// `{"entries": [entry…]}`.
    Entries,
    /// A JSON array of entries.
    JsonArray,
    /// JSON Lines of entries.
    Jsonl,
    /// CSV with a `tenant` column.
    Csv,
    /// A JSON array of CloudEvents whose `data` is the entry.
    CloudEvents,
    /// `{"keys": [key…]}`.
    Keys,
}

fn tenants_listed(listing: Listing, body: &str) -> Vec<String> {
    let tenant = |v: &Value| v["tenant"].as_str().unwrap_or("?").to_owned();
    let parse = || serde_json::from_str::<Value>(body).expect("JSON listing");
    match listing {
        Listing::Nothing => Vec::new(),
        Listing::Entries => parse()["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(tenant)
            .collect(),
        Listing::Keys => parse()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(tenant)
            .collect(),
        Listing::JsonArray => parse()
            .as_array()
            .expect("array")
            .iter()
            .map(tenant)
            .collect(),
        Listing::CloudEvents => parse()
            .as_array()
            .expect("array")
            .iter()
            .map(|e| tenant(&e["data"]))
            .collect(),
        Listing::Jsonl => body
            .lines()
            .map(|l| tenant(&serde_json::from_str(l).expect("JSON line")))
            .collect(),
        Listing::Csv => {
            let mut lines = body.lines();
            let header: Vec<&str> = lines.next().expect("CSV header").split(',').collect();
            let col = header
                .iter()
                .position(|c| *c == "tenant")
                .expect("a tenant column");
            lines
                .map(|l| l.split(',').nth(col).expect("tenant cell").to_owned())
                .collect()
        }
    }
}

/// One request of the isolation table, made with the globex admin key (or no key when the
/// endpoint is public).
struct Row {
    /// The route as the router spells it: (method, path template).
    route: (&'static str, &'static str),
    path: String,
    body: Option<String>,
    public: bool,
    want: u16,
    listing: Listing,
}

fn row(route: (&'static str, &'static str), path: impl Into<String>, want: u16) -> Row {
    Row {
        route,
        path: path.into(),
        body: None,
        public: false,
        want,
        listing: Listing::Nothing,
    }
}

impl Row {
    fn body(mut self, body: &Value) -> Row {
        self.body = Some(body.to_string());
        self
    }

    fn public(mut self) -> Row {
        self.public = true;
        self
    }

    fn lists(mut self, listing: Listing) -> Row {
        self.listing = listing;
        self
    }
}

/// Every (METHOD, path template) the server routes, as its OpenAPI document lists them (the
/// server checks that document against its router), so that a new route without a row in the
/// isolation table fails the test.
fn routes_in_openapi(a: &str) -> BTreeSet<(String, String)> {
    let r = http(a, "GET", "/openapi.json", None, None);
    expect(&r, 200, "GET /openapi.json");
    let doc = r.json();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        routes.contains(&("POST".to_owned(), "/v1/entries".to_owned())),
        "the OpenAPI document lists no routes: {routes:?}"
    );
    routes
}

#[test]
fn tenant_isolation_holds_on_every_endpoint() {
    let (_tmp, data) = init();
    let acme_admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let acme_auditor = key(&data, &["--tenant", "acme", "--role", "auditor"]);
    let globex_admin = key(&data, &["--tenant", "globex", "--role", "admin"]);
    let system_admin = key(&data, &["--tenant", "system", "--role", "admin"]);
    let server = start(&data);
    let a = server.addr.as_str();
    let g = globex_admin.as_str();

    // Twins: one entry per tenant matching every filter below; acme's carries a marker.
    let shared = |note: &str| {
        json!({"event_type": "policy_violation", "actor": "agent:shared-bot", "action": "deny",
            "outcome": "denied", "severity": "critical", "resource": "/shared/vault",
            "target": "agent:shared-helper", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "session_id": "sess-shared-1", "data": {"note": note}})
    };
    let mut acme_ids = Vec::new();
    let mut acme_seqs = Vec::new();
    for body in [
        shared("ACME-PRIVATE-7f3a"),
        json!({"event_type": "tool_invocation", "actor": "agent:acme-bot", "action": "allow",
            "outcome": "success", "resource": "/acme-only/vault", "data": {"note": "ACME-PRIVATE-7f3a"}}),
    ] {
        let r = post(a, "/v1/entries", &acme_admin, &body);
        expect(&r, 201, "acme append");
        acme_ids.push(r.json()["id"].as_str().expect("id").to_owned());
        acme_seqs.push(r.json()["seq"].as_u64().expect("seq"));
    }
    let r = post(a, "/v1/entries", g, &shared("globex"));
    expect(&r, 201, "globex append");
    let globex_seq = r.json()["seq"].as_u64().expect("seq");
    // An approved review of acme's, with its token.
    let plan: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../custos-gate/tests/plans/scenario-a.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("read plan"),
    )
    .expect("plan");
    let review = |id: &str, note: &str| {
        json!({"request_id": id, "plan": plan, "metadata": {"note": note},
            "user_request": "Add a new microsegment for machine learning workloads with GPU instances"})
    };
    let r = post(
        a,
        "/v1/reviews",
        &acme_admin,
        &review("req-iso-acme", "ACME-PRIVATE-7f3a"),
    );
    expect(&r, 201, "acme review");
    let acme_token = r.json()["approval_token"]
        .as_str()
        .expect("token")
        .to_owned();
    // An agent of acme's, suspended so that a request for admins exists.
    let r = post(
        a,
        "/v1/agents",
        &acme_admin,
        &json!({"id": "acme-bot", "owner": "ACME-PRIVATE-owner", "capabilities": ["crm.search"]}),
    );
    expect(&r, 201, "acme agent");
    let r = post(
        a,
        "/v1/agents/acme-bot/suspension",
        &acme_admin,
        &json!({"reason": "ACME-PRIVATE-investigation"}),
    );
    expect(&r, 200, "acme suspension");
    let r = http(a, "GET", "/v1/oversight/requests", Some(&acme_admin), None);
    expect(&r, 200, "acme requests");
    let acme_request = r.json()["items"][0]["id"]
        .as_str()
        .expect("request id")
        .to_owned();
    let size = tree_size(a);
    let acme_seq = acme_seqs[0];
    let acme_id = &acme_ids[0];
    let acme_admin_id = key_id(&acme_admin);

    // Anything that would betray acme's data to globex.
    let mut needles: Vec<String> = [
        "ACME-PRIVATE",
        "agent:acme-bot",
        "/acme-only/",
        "\"tenant\":\"acme\"",
        ",acme,",
        "\"acme\"",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    needles.extend(acme_ids.iter().cloned());
    needles.push(acme_admin_id.clone());
    needles.push(acme_request.clone());
    needles.push(key_id(&acme_auditor));

    let filters = [
        "actor=agent:shared-bot",
        "event_type=policy_violation",
        "action=deny",
        "outcome=denied",
        "severity=high",
        "resource=/shared/vault",
        "resource=/shared/&resource_prefix=true",
        "target=agent:shared-helper",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "session_id=sess-shared-1",
        "start=2000-01-01T00:00:00Z",
        "end=2100-01-01T00:00:00Z",
        "after=0",
        "order=desc",
        "order=desc&after=999999",
        "limit=1000",
        "actor=agent:shared-bot&event_type=policy_violation&action=deny&outcome=denied\
         &severity=critical&resource=/shared/vault&target=agent:shared-helper\
         &trace_id=4bf92f3577b34da6a3ce929d0e0e4736&session_id=sess-shared-1\
         &start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z&order=asc&limit=5",
    ];
    let write_acme = json!({"tenant": "acme", "event_type": "tool_invocation",
        "actor": "user:mallory", "action": "allow", "outcome": "success",
        "resource": "/probe/iso/single"});
    let mut globex_part = entry("user:mallory", "/probe/iso/batch-globex");
    globex_part["tenant"] = json!("globex");
    let mut acme_part = write_acme.clone();
    acme_part["resource"] = json!("/probe/iso/batch-acme");

    let mut rows = vec![
        row(
            ("GET", "/v1/entries/{id}"),
            format!("/v1/entries/{acme_seq}"),
            404,
        ),
        row(
            ("GET", "/v1/entries/{id}"),
            format!("/v1/entries/{}", acme_seqs[1]),
            404,
        ),
        row(
            ("GET", "/v1/entries/{id}"),
            format!("/v1/entries/{acme_id}"),
            404,
        ),
        row(
            ("GET", "/v1/entries/{id}"),
            format!("/v1/entries/{globex_seq}"),
            200,
        ),
        row(
            ("GET", "/v1/proofs/inclusion/{seq}"),
            format!("/v1/proofs/inclusion/{acme_seq}"),
            404,
        ),
        row(
            ("GET", "/v1/proofs/inclusion/{seq}"),
            format!("/v1/proofs/inclusion/{acme_seq}?tree_size={size}"),
            404,
        ),
        row(
            ("GET", "/v1/proofs/inclusion/{seq}"),
            format!("/v1/proofs/inclusion/{globex_seq}"),
            200,
        ),
        row(
            ("GET", "/v1/proofs/consistency"),
            format!("/v1/proofs/consistency?first=1&second={size}"),
            200,
        ),
        row(("GET", "/v1/export"), "/v1/export", 200).lists(Listing::Jsonl),
        row(("GET", "/v1/export"), "/v1/export?format=jsonl", 200).lists(Listing::Jsonl),
        row(("GET", "/v1/export"), "/v1/export?format=json", 200).lists(Listing::JsonArray),
        row(("GET", "/v1/export"), "/v1/export?format=csv", 200).lists(Listing::Csv),
        row(("GET", "/v1/export"), "/v1/export?format=cloudevents", 200)
            .lists(Listing::CloudEvents),
        row(
            ("GET", "/v1/export"),
            "/v1/export?format=json&start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
            200,
        )
        .lists(Listing::JsonArray),
        row(("GET", "/v1/summary"), "/v1/summary", 200),
        row(
            ("GET", "/v1/summary"),
            "/v1/summary?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
            200,
        ),
        row(("GET", "/v1/ledger/verify"), "/v1/ledger/verify", 200),
        row(("POST", "/v1/entries"), "/v1/entries", 403).body(&write_acme),
        row(("POST", "/v1/entries:batch"), "/v1/entries:batch", 403)
            .body(&json!([globex_part, acme_part])),
        row(("POST", "/v1/entries:batch"), "/v1/entries:batch", 403)
            .body(&json!({"entries": [acme_part]})),
        row(("GET", "/v1/keys"), "/v1/keys", 200).lists(Listing::Keys),
        row(("POST", "/v1/keys"), "/v1/keys", 403)
            .body(&json!({"tenant": "acme", "roles": ["admin"]})),
        row(
            ("DELETE", "/v1/keys/{id}"),
            format!("/v1/keys/{acme_admin_id}"),
            404,
        ),
        row(("GET", "/v1/checkpoint"), "/v1/checkpoint", 200).public(),
        row(
            ("GET", "/v1/checkpoints/{size}"),
            format!("/v1/checkpoints/{size}"),
            200,
        )
        .public(),
        row(
            ("GET", "/.well-known/custos/log.pub"),
            "/.well-known/custos/log.pub",
            200,
        )
        .public(),
        row(("GET", "/healthz"), "/healthz", 200).public(),
        row(("GET", "/readyz"), "/readyz", 200).public(),
        row(("GET", "/metrics"), "/metrics", 200).public(),
        row(("GET", "/openapi.json"), "/openapi.json", 200).public(),
        row(("GET", "/health"), "/health", 200).public(),
        // The gate: acme's review does not exist for globex; the same calls on globex's own
        // reviews work and show nothing of acme's.
        row(("GET", "/v1/reviews/{id}"), "/v1/reviews/req-iso-acme", 404),
        row(("GET", "/v1/reviews"), "/v1/reviews", 200),
        row(("GET", "/v1/reviews"), "/v1/reviews?decision=approved&order=desc", 200),
        row(("POST", "/v1/reviews"), "/v1/reviews", 201)
            .body(&review("req-iso-globex", "globex")),
        row(("POST", "/verify-plan"), "/verify-plan", 200)
            .body(&review("req-iso-globex", "globex")),
        row(
            ("POST", "/v1/reviews/{id}/override-requests"),
            "/v1/reviews/req-iso-acme/override-requests",
            404,
        )
        .body(&json!({"justification": "j", "business_impact": "b",
            "alternatives_considered": "a", "risk_acceptance": "r"})),
        row(
            ("POST", "/v1/reviews/{id}/override-requests/{override_id}/approvals"),
            "/v1/reviews/req-iso-acme/override-requests/x/approvals",
            404,
        )
        .body(&json!({"plan_hash": "sha256:00"})),
        row(
            ("POST", "/v1/reviews/{id}/override-requests/{override_id}/denials"),
            "/v1/reviews/req-iso-acme/override-requests/x/denials",
            404,
        )
        .body(&json!({"reason": "r"})),
        row(
            ("POST", "/v1/reviews/{id}/override-requests/{override_id}/withdrawal"),
            "/v1/reviews/req-iso-acme/override-requests/x/withdrawal",
            404,
        )
        .body(&json!({"reason": "r"})),
        // acme's token is not globex's: refused without its claims.
        row(("POST", "/v1/tokens/verify"), "/v1/tokens/verify", 200)
            .body(&json!({"token": acme_token})),
        row(("POST", "/v1/approver-keys"), "/v1/approver-keys", 201).body(
            &json!({"key_id": "iso-1", "public_key": "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="}),
        ),
        // Reporting an execution of acme's request from globex: for globex it is an unknown
        // request (a critical deviation in globex's own ledger), nothing of acme's.
        row(
            ("POST", "/v1/reviews/{id}/execution"),
            "/v1/reviews/req-iso-acme/execution",
            201,
        )
        .body(&json!({"result": plan, "approval_token": Value::Null})),
        row(("POST", "/verify-execution"), "/verify-execution", 201)
            .body(&json!({"request_id": "req-iso-acme", "result": plan})),
        // Oversight: acme's agent and its request do not exist for globex; globex's own
        // registry shows nothing of acme's.
        row(("GET", "/v1/agents/{id}"), "/v1/agents/acme-bot", 404),
        row(("GET", "/v1/agents"), "/v1/agents", 200),
        row(("GET", "/v1/agents"), "/v1/agents?status=suspended", 200),
        row(("POST", "/v1/agents"), "/v1/agents", 201)
            .body(&json!({"id": "globex-bot", "owner": "globex"})),
        row(("PATCH", "/v1/agents/{id}"), "/v1/agents/acme-bot", 404)
            .body(&json!({"owner": "mallory"})),
        row(("DELETE", "/v1/agents/{id}"), "/v1/agents/acme-bot", 404),
        row(
            ("POST", "/v1/agents/{id}/heartbeat"),
            "/v1/agents/acme-bot/heartbeat",
            404,
        )
        .body(&json!({"status": "healthy"})),
        row(
            ("POST", "/agents/{id}/heartbeat"),
            "/agents/acme-bot/heartbeat",
            404,
        )
        .body(&json!({"status": "healthy"})),
        row(
            ("GET", "/v1/agents/{id}/history"),
            "/v1/agents/acme-bot/history",
            404,
        ),
        row(
            ("GET", "/v1/agents/{id}/warnings"),
            "/v1/agents/acme-bot/warnings",
            404,
        ),
        row(
            ("POST", "/v1/agents/{id}/suspension"),
            "/v1/agents/acme-bot/suspension",
            404,
        )
        .body(&json!({"reason": "r"})),
        row(
            ("PUT", "/v1/agents/{id}/exemption"),
            "/v1/agents/acme-bot/exemption",
            404,
        )
        .body(&json!({"reason": "r", "expires_at": "2100-01-01T00:00:00Z"})),
        row(
            ("DELETE", "/v1/agents/{id}/exemption"),
            "/v1/agents/acme-bot/exemption",
            404,
        ),
        row(("GET", "/v1/oversight/requests"), "/v1/oversight/requests", 200),
        row(
            ("POST", "/v1/oversight/requests/{id}/approval"),
            format!("/v1/oversight/requests/{acme_request}/approval"),
            404,
        ),
        row(
            ("POST", "/v1/oversight/requests/{id}/denial"),
            format!("/v1/oversight/requests/{acme_request}/denial"),
            404,
        ),
        row(("GET", "/v1/oversight/settings"), "/v1/oversight/settings", 200),
        row(("PUT", "/v1/oversight/settings"), "/v1/oversight/settings", 200)
            .body(&json!({"stale_after_secs": 900})),
    ];
    for f in filters {
        rows.push(
            row(("GET", "/v1/entries"), format!("/v1/entries?{f}"), 200).lists(Listing::Entries),
        );
    }

    // Every route of the server has a row.
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.route.0.to_owned(), r.route.1.to_owned()))
        .collect();
    for route in routes_in_openapi(a) {
        assert!(
            covered.contains(&route),
            "route {} {} has no row in the isolation table of tests/http_auth.rs",
            route.0,
            route.1
        );
    }

    let mut forbidden = 0;
    let mut unauthenticated = 0;
    for r in &rows {
        let what = format!("{} {}", r.route.0, r.path);
        let key = (!r.public).then_some(g);
        let resp = http(a, r.route.0, &r.path, key, r.body.as_deref());
        assert_eq!(
            resp.status,
            r.want,
            "{what} with the globex key: {}",
            resp.show()
        );
        if r.want >= 400 {
            assert!(resp.is_problem(), "{what}: not problem+json");
        }
        if r.want == 403 {
            forbidden += 1;
        }
        let asked = format!("{}{}", r.path, r.body.as_deref().unwrap_or(""));
        for n in needles.iter().filter(|n| !asked.contains(n.as_str())) {
            assert!(
                !resp.body.contains(n.as_str()),
                "{what}: the globex key sees `{n}`: {}",
                resp.show()
            );
        }
        let tenants = tenants_listed(r.listing, &resp.body);
        assert!(
            tenants.iter().all(|t| t == "globex"),
            "{what}: lists tenants {tenants:?}"
        );
        if !matches!(r.listing, Listing::Nothing) {
            assert!(!tenants.is_empty(), "{what}: the globex twin is missing");
        }
        // And nothing keyed answers without a key.
        if !r.public {
            let anon = http(a, r.route.0, &r.path, None, r.body.as_deref());
            expect_problem(&anon, 401, &format!("{what} without a key"));
            unauthenticated += 1;
        }
    }

    // The refused writes appended nothing, in either tenant, not even the batch's globex part.
    assert!(resources_under(a, &acme_admin, "/probe/").is_empty());
    assert!(resources_under(a, g, "/probe/").is_empty());
    // The DELETE of acme's key by globex revoked nothing.
    expect(
        &get(a, "/v1/summary", &acme_admin),
        200,
        "acme admin after globex's DELETE",
    );
    // What globex could not read, acme can.
    expect(
        &get(a, &format!("/v1/entries/{acme_id}"), &acme_auditor),
        200,
        "acme reads acme",
    );

    // Each refusal is on record: globex's 403s under globex, the keyless 401s under system.
    let want = Tally::from([
        (
            tally_key("globex", "forbidden", &format!("api_key:{}", key_id(g))),
            forbidden,
        ),
        (
            tally_key("system", "missing_credentials", ""),
            unauthenticated,
        ),
    ]);
    let events = await_refusals(a, &[g, &system_admin], &want);
    for e in &events {
        assert_eq!(
            (
                e["actor"].as_str(),
                e["action"].as_str(),
                e["outcome"].as_str()
            ),
            (Some("system"), Some("auth_failure"), Some("denied")),
            "{e}"
        );
        assert_eq!(e["data"]["peer"], "127.0.0.1", "{e}");
    }
    // acme was refused nothing.
    assert!(refusals_seen(a, &[&acme_admin]).0.is_empty());
}

/// Another tenant's entry must look exactly like an absent one: same status, same problem
/// (apart from the id echoed back), so a key cannot probe which ids exist elsewhere. (Ids
/// matter most: which seqs exist is public anyway, through the checkpoint's tree size.)
#[test]
fn another_tenants_entry_is_indistinguishable_from_an_absent_one() {
    let (_tmp, data) = init();
    let acme = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let globex = key(&data, &["--tenant", "globex", "--role", "admin"]);
    let server = start(&data);
    let a = server.addr.as_str();
    let r = post(a, "/v1/entries", &acme, &entry("user:a", "/x"));
    expect(&r, 201, "append");
    let (seq, id) = (
        r.json()["seq"].as_u64().expect("seq"),
        r.json()["id"].as_str().expect("id").to_owned(),
    );
    // A well-formed UUID v7 no entry has.
    let absent_id = format!("{}0000-7000-8000-000000000000", &id[..9]);
    let absent_seq = 1_000_000;
    let shape = |path: &str, echoed: &str| {
        let r = get(a, path, &globex);
        let mut v = r.json();
        v["detail"] = json!(v["detail"].as_str().unwrap_or("").replace(echoed, "X"));
        (r.status, v)
    };
    for (theirs, absent, t, x) in [
        (
            format!("/v1/entries/{id}"),
            format!("/v1/entries/{absent_id}"),
            id.clone(),
            absent_id.clone(),
        ),
        (
            format!("/v1/entries/{seq}"),
            format!("/v1/entries/{absent_seq}"),
            seq.to_string(),
            absent_seq.to_string(),
        ),
        (
            format!("/v1/proofs/inclusion/{seq}"),
            format!("/v1/proofs/inclusion/{absent_seq}"),
            seq.to_string(),
            absent_seq.to_string(),
        ),
    ] {
        assert_eq!(
            shape(&theirs, &t),
            shape(&absent, &x),
            "{theirs} vs {absent}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// b. Roles.

#[test]
fn roles_limit_what_a_key_may_do() {
    let (_tmp, data) = init();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let auditor = key(&data, &["--tenant", "acme", "--role", "auditor"]);
    let bot = key(
        &data,
        &["--tenant", "acme", "--role", "agent", "--agent", "crm-bot"],
    );
    let others: Vec<(&str, String)> = ["security", "finance", "manager", "orchestrator"]
        .into_iter()
        .map(|r| (r, key(&data, &["--tenant", "acme", "--role", r])))
        .collect();
    let server = start(&data);
    let a = server.addr.as_str();

    // Auditors read and verify but never write.
    let r = post(
        a,
        "/v1/entries",
        &auditor,
        &entry("user:aud", "/probe/roles/aud"),
    );
    expect_problem(&r, 403, "auditor appends");
    let r = post(
        a,
        "/v1/entries:batch",
        &auditor,
        &json!([entry("user:aud", "/probe/roles/aud-batch")]),
    );
    expect_problem(&r, 403, "auditor appends a batch");
    let r = get(a, "/v1/ledger/verify", &auditor);
    expect(&r, 200, "auditor verifies");
    assert!(r.json()["failure"].is_null(), "{}", r.body);
    expect(&get(a, "/v1/entries", &auditor), 200, "auditor queries");
    expect(&get(a, "/v1/export", &auditor), 200, "auditor exports");
    expect(&get(a, "/v1/summary", &auditor), 200, "auditor summarises");

    // An agent key writes as itself only, alone or in a batch.
    let r = post(
        a,
        "/v1/entries",
        &bot,
        &entry("agent:crm-bot", "/probe/roles/self"),
    );
    expect(&r, 201, "agent writes as itself");
    assert_eq!(
        get(a, &format!("/v1/entries/{}", r.json()["seq"]), &admin).json()["tenant"],
        "acme",
        "the tenant comes from the key"
    );
    let mut no_actor = entry("agent:crm-bot", "/probe/roles/no-actor");
    no_actor.as_object_mut().expect("object").remove("actor");
    for (body, what) in [
        (
            entry("agent:other-bot", "/probe/roles/other"),
            "as another agent",
        ),
        (entry("user:alice", "/probe/roles/user"), "as a user"),
        (entry("system", "/probe/roles/system"), "as system"),
        (
            entry("agent:crm-bot-2", "/probe/roles/prefix"),
            "as a longer agent id",
        ),
        (no_actor, "without an actor"),
    ] {
        expect_problem(
            &post(a, "/v1/entries", &bot, &body),
            403,
            &format!("agent writes {what}"),
        );
    }
    let r = post(
        a,
        "/v1/entries:batch",
        &bot,
        &json!([
            entry("agent:crm-bot", "/probe/roles/batch-self"),
            entry("agent:other-bot", "/probe/roles/batch-other"),
        ]),
    );
    expect_problem(&r, 403, "agent batch with one foreign actor");
    let r = post(
        a,
        "/v1/entries:batch",
        &bot,
        &json!({"entries": [entry("agent:crm-bot", "/probe/roles/batch-ok-1"),
            entry("agent:crm-bot", "/probe/roles/batch-ok-2")]}),
    );
    expect(&r, 201, "agent batch as itself");
    assert_eq!(
        resources_under(a, &admin, "/probe/roles/"),
        BTreeSet::from([
            "/probe/roles/self".to_owned(),
            "/probe/roles/batch-ok-1".to_owned(),
            "/probe/roles/batch-ok-2".to_owned(),
        ]),
        "a refused batch appends none of its entries"
    );
    // An admin writes as anyone in its tenant.
    expect(
        &post(
            a,
            "/v1/entries",
            &admin,
            &entry("agent:other-bot", "/probe/roles/admin"),
        ),
        201,
        "admin writes as an agent",
    );

    // Verification is for admins and auditors; key management for admins only.
    let mut non_admins: Vec<(&str, &str)> =
        vec![("auditor", auditor.as_str()), ("agent", bot.as_str())];
    non_admins.extend(others.iter().map(|(r, k)| (*r, k.as_str())));
    for (role, k) in &non_admins {
        if *role != "auditor" {
            expect_problem(
                &get(a, "/v1/ledger/verify", k),
                403,
                &format!("{role} verifies"),
            );
        }
        expect_problem(&get(a, "/v1/keys", k), 403, &format!("{role} lists keys"));
        expect_problem(
            &post(a, "/v1/keys", k, &json!({"roles": ["admin"]})),
            403,
            &format!("{role} issues a key"),
        );
        expect_problem(
            &http(
                a,
                "DELETE",
                &format!("/v1/keys/{}", key_id(&admin)),
                Some(k),
                None,
            ),
            403,
            &format!("{role} revokes a key"),
        );
    }
    // None of that revoked or issued anything.
    let keys = get(a, "/v1/keys", &admin).json();
    let keys = keys["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3 + others.len());
    assert!(keys.iter().all(|k| k["revoked_seq"].is_null()));
}

// ---------------------------------------------------------------------------------------
// c. Signed requests.

/// Unique probe entries, so what got appended can be told apart.
struct Probes(u64);

impl Probes {
    fn next(&mut self) -> (String, String) {
        self.0 += 1;
        let resource = format!("/probe/sig/{}", self.0);
        let body = entry("agent:planner", &resource).to_string();
        (resource, body)
    }
}

fn expect_bad_signature(r: &Resp, what: &str) {
    expect_problem(r, 401, what);
    assert!(
        r.problem_type().ends_with("bad-signature"),
        "{what}: type {}",
        r.problem_type()
    );
}

fn with(h: &[(&'static str, String)], name: &str, value: &str) -> Vec<(&'static str, String)> {
    h.iter()
        .map(|(n, v)| {
            let v = if n.eq_ignore_ascii_case(name) {
                value.to_owned()
            } else {
                v.clone()
            };
            (*n, v)
        })
        .collect()
}

fn without(h: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    h.iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .cloned()
        .collect()
}

#[test]
fn signed_keys_need_a_fresh_valid_signature_on_every_request() {
    const TS: &str = "X-Custos-Timestamp";
    const NONCE: &str = "X-Custos-Nonce";
    const SIG: &str = "X-Custos-Signature";
    let (_tmp, data) = init();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let (sk, secret) = signed_key(&data, &["--tenant", "acme", "--role", "orchestrator"]);
    let (other, other_secret) = signed_key(&data, &["--tenant", "acme", "--role", "orchestrator"]);
    assert_ne!(secret, other_secret);
    let server = start(&data);
    let a = server.addr.as_str();
    let size0 = tree_size(a);
    let sk_res = format!("api_key:{}", key_id(&sk));
    let other_res = format!("api_key:{}", key_id(&other));

    let mut probes = Probes(0);
    let mut appended = BTreeSet::new();
    let mut appended_entries = 0u64;
    let mut refused = Tally::new();
    let mut refuse = |resource: &str, reason: &str| {
        *refused
            .entry(tally_key("acme", reason, resource))
            .or_default() += 1;
    };
    let send = |key: &str, method: &str, path: &str, h: &[(&'static str, String)], body: &str| {
        let refs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        http_with(a, method, path, Some(key), &refs, body.as_bytes())
    };
    let sign = |secret: &str, method: &str, path: &str, body: &str, ts: i64| {
        signature_headers(secret, method, path, body.as_bytes(), ts, &fresh_nonce()).to_vec()
    };

    // A correct signature, also at the edges of the ±300 s window.
    for skew in [0, -299, 299] {
        let (res, body) = probes.next();
        let h = sign(&secret, "POST", "/v1/entries", &body, unix_now() + skew);
        let r = send(&sk, "POST", "/v1/entries", &h, &body);
        expect(&r, 201, &format!("correctly signed, {skew} s off"));
        appended.insert(res);
        appended_entries += 1;
    }

    // Missing headers.
    let (_, body) = probes.next();
    let good = sign(&secret, "POST", "/v1/entries", &body, unix_now());
    for h in [
        Vec::new(),
        without(&good, TS),
        without(&good, NONCE),
        without(&good, SIG),
    ] {
        let r = send(&sk, "POST", "/v1/entries", &h, &body);
        expect_bad_signature(&r, &format!("missing headers, sent {h:?}"));
        refuse(&sk_res, "signature_missing");
    }
    // Malformed headers.
    let long_nonce = "n".repeat(129);
    for (name, value) in [
        (TS, "abc"),
        (TS, ""),
        (TS, "-5"),
        (TS, "1.7e9"),
        (TS, "1700000000000"),
        (NONCE, "short-nonce"),
        (NONCE, long_nonce.as_str()),
        (NONCE, "nonce with spaces 123"),
        (NONCE, "nonce/with/slashes/123"),
        (SIG, "zz"),
        (SIG, &"ab".repeat(31)),
        (SIG, &"ab".repeat(33)),
        (SIG, &"zz".repeat(32)),
    ] {
        let r = send(&sk, "POST", "/v1/entries", &with(&good, name, value), &body);
        expect_bad_signature(&r, &format!("{name}: {value:?}"));
        refuse(&sk_res, "signature_malformed");
    }
    // A signature over something else than what is sent.
    let (_, other_body) = probes.next();
    for (what, h, method, path) in [
        (
            "another body",
            sign(&secret, "POST", "/v1/entries", &other_body, unix_now()),
            "POST",
            "/v1/entries",
        ),
        (
            "another path",
            sign(&secret, "POST", "/v1/entries:batch", &body, unix_now()),
            "POST",
            "/v1/entries",
        ),
        (
            "another query",
            sign(&secret, "POST", "/v1/entries", &body, unix_now()),
            "POST",
            "/v1/entries?x=1",
        ),
        (
            "another method",
            sign(&secret, "PUT", "/v1/entries", &body, unix_now()),
            "POST",
            "/v1/entries",
        ),
        (
            "another key's secret",
            sign(&other_secret, "POST", "/v1/entries", &body, unix_now()),
            "POST",
            "/v1/entries",
        ),
        (
            "a made-up secret",
            sign("cks_made-up", "POST", "/v1/entries", &body, unix_now()),
            "POST",
            "/v1/entries",
        ),
        (
            "the key text as secret",
            sign(&sk, "POST", "/v1/entries", &body, unix_now()),
            "POST",
            "/v1/entries",
        ),
    ] {
        let r = send(&sk, method, path, &h, &body);
        expect_bad_signature(&r, what);
        refuse(&sk_res, "bad_signature");
    }
    // This key's signature presented with another signed key.
    let r = send(&other, "POST", "/v1/entries", &good, &body);
    expect_bad_signature(&r, "signed with another key's secret");
    refuse(&other_res, "bad_signature");
    // Outside the window, both ways, and far off. (+302, not +301: the server's clock may
    // tick once between signing and checking, which brings +301 back to +300.)
    for skew in [-301, 302, -100_000, 100_000] {
        let h = sign(&secret, "POST", "/v1/entries", &body, unix_now() + skew);
        let r = send(&sk, "POST", "/v1/entries", &h, &body);
        expect_bad_signature(&r, &format!("timestamp {skew} s off"));
        refuse(&sk_res, "timestamp_out_of_window");
    }
    // A replay: the very same request twice, then the nonce again with a new signature.
    let (res, body) = probes.next();
    let h = sign(&secret, "POST", "/v1/entries", &body, unix_now());
    expect(
        &send(&sk, "POST", "/v1/entries", &h, &body),
        201,
        "first use of a nonce",
    );
    appended.insert(res);
    appended_entries += 1;
    expect_bad_signature(&send(&sk, "POST", "/v1/entries", &h, &body), "replay");
    refuse(&sk_res, "nonce_replayed");
    let (res2, body2) = probes.next();
    let nonce = h
        .iter()
        .find(|(n, _)| *n == NONCE)
        .expect("nonce")
        .1
        .clone();
    let h2 = signature_headers(
        &secret,
        "POST",
        "/v1/entries",
        body2.as_bytes(),
        unix_now(),
        &nonce,
    );
    expect_bad_signature(
        &send(&sk, "POST", "/v1/entries", &h2, &body2),
        "a used nonce with a new body",
    );
    refuse(&sk_res, "nonce_replayed");
    // A nonce used by one key is free for another.
    let h3 = signature_headers(
        &other_secret,
        "POST",
        "/v1/entries",
        body2.as_bytes(),
        unix_now(),
        &nonce,
    );
    expect(
        &send(&other, "POST", "/v1/entries", &h3, &body2),
        201,
        "same nonce, other key",
    );
    appended.insert(res2);
    appended_entries += 1;

    // A signed batch, and signed reads.
    let (r1, b1) = probes.next();
    let (r2, b2) = probes.next();
    let batch = format!("[{b1},{b2}]");
    let h = sign(&secret, "POST", "/v1/entries:batch", &batch, unix_now());
    expect(
        &send(&sk, "POST", "/v1/entries:batch", &h, &batch),
        201,
        "signed batch",
    );
    appended.extend([r1, r2]);
    appended_entries += 2;
    let q = "/v1/entries?resource=/probe/sig/&resource_prefix=true&limit=1000";
    let r = send(&sk, "GET", q, &sign(&secret, "GET", q, "", unix_now()), "");
    expect(&r, 200, "signed GET");
    let seen: BTreeSet<String> = r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"].as_str().expect("resource").to_owned())
        .collect();
    assert_eq!(
        seen, appended,
        "exactly the accepted requests appended entries"
    );
    let first_seq = r.json()["entries"][0]["seq"].as_u64().expect("seq");
    let one = format!("/v1/entries/{first_seq}");
    expect(
        &send(
            &sk,
            "GET",
            &one,
            &sign(&secret, "GET", &one, "", unix_now()),
            "",
        ),
        200,
        "signed GET of one entry",
    );
    let h = sign(&secret, "GET", "/v1/entries?limit=5", "", unix_now());
    expect_bad_signature(
        &send(&sk, "GET", "/v1/entries?limit=6", &h, ""),
        "GET, other query",
    );
    refuse(&sk_res, "bad_signature");
    expect_bad_signature(
        &http(a, "GET", "/v1/summary", Some(&sk), None),
        "unsigned GET",
    );
    refuse(&sk_res, "signature_missing");

    // Every refusal is on record, and they are the only entries besides the accepted ones.
    let events = await_refusals(a, &[&admin], &refused);
    for e in &events {
        let want = match e["data"]["reason"].as_str() {
            Some("bad_signature" | "nonce_replayed") => "high",
            _ => "low",
        };
        assert_eq!(e["severity"], want, "{e}");
    }
    assert_eq!(
        resources_under(a, &admin, "/probe/"),
        appended,
        "refused requests appended nothing"
    );
    assert_eq!(
        tree_size(a),
        size0 + appended_entries + events.len() as u64,
        "the tree grew by the accepted entries and the refusal records only"
    );
}

// ---------------------------------------------------------------------------------------
// d. Every refusal is a security_event; SIGTERM flushes; the ledger verifies.

#[test]
fn every_refusal_is_recorded_as_a_security_event_and_survives_sigterm() {
    let (_tmp, data) = init();
    let system = key(&data, &["--tenant", "system", "--role", "admin"]);
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let auditor = key(&data, &["--tenant", "acme", "--role", "auditor"]);
    let (sk, secret) = signed_key(&data, &["--tenant", "acme", "--role", "orchestrator"]);
    let gone = key(&data, &["--tenant", "acme", "--role", "admin"]);
    ok(&custos(&data, &["keys", "revoke", &key_id(&gone)]));
    let server = start(&data);
    let a = server.addr.as_str();
    let body = entry("user:x", "/probe/refusal").to_string();
    let res = |k: &str| format!("api_key:{}", key_id(k));
    let wrong = format!("ck_{}_wrongsecretvalue", key_id(&admin));

    let mut want = Tally::new();
    let mut count = |tenant: &str, reason: &str, resource: &str, n: u64| {
        *want.entry(tally_key(tenant, reason, resource)).or_default() += n;
    };
    let now = unix_now();
    let stale = signature_headers(
        &secret,
        "POST",
        "/v1/entries",
        body.as_bytes(),
        now - 400,
        &fresh_nonce(),
    );
    let forged = signature_headers(
        &"x".repeat(40),
        "POST",
        "/v1/entries",
        body.as_bytes(),
        now,
        &fresh_nonce(),
    );
    let malformed = [
        ("X-Custos-Timestamp", "soon"),
        ("X-Custos-Nonce", "0123456789abcdef"),
        ("X-Custos-Signature", "00"),
    ];
    // Sends `n` times; each answer must be a `status` problem.
    let refuse = |k: Option<&str>,
                  headers: &[(&str, &str)],
                  method: &str,
                  path: &str,
                  status: u16,
                  n: u32| {
        let b = if method == "POST" {
            body.as_bytes()
        } else {
            b""
        };
        for _ in 0..n {
            let r = http_with(a, method, path, k, headers, b);
            expect_problem(
                &r,
                status,
                &format!("{method} {path} with {k:?} {headers:?}"),
            );
        }
    };
    refuse(None, &[], "GET", "/v1/summary", 401, 2);
    let basic = [("Authorization", "Basic dXNlcjpwYXNz")];
    refuse(None, &basic, "GET", "/v1/summary", 401, 1);
    refuse(
        Some("ck_00000000deadbeef_nope"),
        &[],
        "GET",
        "/v1/export",
        401,
        3,
    );
    refuse(Some("not-a-key"), &[], "GET", "/v1/export", 401, 1);
    refuse(Some(&wrong), &[], "GET", "/v1/keys", 401, 2);
    refuse(Some(&gone), &[], "GET", "/v1/keys", 401, 1);
    refuse(Some(&sk), &[], "POST", "/v1/entries", 401, 1);
    refuse(Some(&sk), &malformed, "POST", "/v1/entries", 401, 1);
    refuse(
        Some(&sk),
        &header_refs(&stale),
        "POST",
        "/v1/entries",
        401,
        1,
    );
    refuse(
        Some(&sk),
        &header_refs(&forged),
        "POST",
        "/v1/entries",
        401,
        2,
    );
    refuse(Some(&auditor), &[], "POST", "/v1/entries", 403, 2);
    count("system", "missing_credentials", "", 3);
    count("system", "invalid_key", "", 4);
    count("acme", "invalid_key", &res(&admin), 2);
    count("acme", "invalid_key", &res(&gone), 1);
    count("acme", "signature_missing", &res(&sk), 1);
    count("acme", "signature_malformed", &res(&sk), 1);
    count("acme", "timestamp_out_of_window", &res(&sk), 1);
    count("acme", "bad_signature", &res(&sk), 2);
    count("acme", "forbidden", &res(&auditor), 2);
    // A replay.
    let h = signature_headers(
        &secret,
        "POST",
        "/v1/entries",
        body.as_bytes(),
        unix_now(),
        &fresh_nonce(),
    );
    let r = http_with(
        a,
        "POST",
        "/v1/entries",
        Some(&sk),
        &header_refs(&h),
        body.as_bytes(),
    );
    expect(&r, 201, "signed append");
    let r = http_with(
        a,
        "POST",
        "/v1/entries",
        Some(&sk),
        &header_refs(&h),
        body.as_bytes(),
    );
    expect_problem(&r, 401, "replay");
    count("acme", "nonce_replayed", &res(&sk), 1);

    let events = await_refusals(a, &[&system, &admin], &want);
    for e in &events {
        let reason = e["data"]["reason"].as_str().expect("reason");
        assert_eq!(
            (
                e["event_type"].as_str(),
                e["actor"].as_str(),
                e["action"].as_str(),
                e["outcome"].as_str()
            ),
            (
                Some("security_event"),
                Some("system"),
                Some("auth_failure"),
                Some("denied")
            ),
            "{e}"
        );
        let severity = match reason {
            "bad_signature" | "nonce_replayed" => "high",
            "forbidden" => "medium",
            _ => "low",
        };
        assert_eq!(e["severity"], severity, "{e}");
        assert_eq!(e["data"]["peer"], "127.0.0.1", "{e}");
        let request = match (reason, e["tenant"].as_str(), e["resource"].as_str()) {
            ("missing_credentials", ..) => "GET /v1/summary",
            ("invalid_key", Some("system"), _) => "GET /v1/export",
            ("invalid_key", ..) => "GET /v1/keys",
            _ => "POST /v1/entries",
        };
        assert_eq!(e["data"]["request"], request, "{e}");
        for t in ["first_at", "last_at"] {
            assert!(e["data"][t].is_string(), "{e}: data.{t}");
        }
    }
    // acme's refusals are acme's: the system admin does not see them in its tenant, nor acme
    // the keyless ones.
    assert!(refusals_seen(a, &[&admin]).0.keys().all(|k| k.0 == "acme"));
    assert!(
        refusals_seen(a, &[&system])
            .0
            .keys()
            .all(|k| k.0 == "system")
    );

    // A refusal just before SIGTERM is flushed on the way out.
    expect_problem(
        &http(
            a,
            "GET",
            "/v1/ledger/verify",
            Some("ck_1111111111111111_late"),
            None,
        ),
        401,
        "late refusal",
    );
    let mut server = server;
    let status = server.terminate();
    assert!(status.success(), "custos serve exited with {status:?}");
    let export = ok(&custos(&data, &["export"]));
    let late = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|e| e["event_type"] == "security_event")
        .filter(|e| e["data"]["request"] == "GET /v1/ledger/verify")
        .collect::<Vec<_>>();
    assert_eq!(late.len(), 1, "the late refusal was recorded at shutdown");
    assert_eq!(
        (
            late[0]["tenant"].as_str(),
            late[0]["data"]["reason"].as_str()
        ),
        (Some("system"), Some("invalid_key"))
    );
    // No secret reached the ledger: not the keys, not the signing secret, not a wrong secret.
    for secret_text in [
        system.as_str(),
        admin.as_str(),
        auditor.as_str(),
        sk.as_str(),
        secret.as_str(),
        "wrongsecretvalue",
        "cks_",
        "dXNlcjpwYXNz",
    ] {
        assert!(
            !export.contains(secret_text),
            "`{secret_text}` is in the ledger"
        );
    }
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
}

// ---------------------------------------------------------------------------------------
// e. Key management over HTTP.

#[test]
fn admins_manage_keys_over_http() {
    let (_tmp, data) = init();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let globex = key(&data, &["--tenant", "globex", "--role", "admin"]);
    let system = key(&data, &["--tenant", "system", "--role", "admin"]);
    let mut server = start(&data);
    let a = server.addr.clone();
    let a = a.as_str();

    // Issue an agent key: it works at once, as itself.
    let r = post(
        a,
        "/v1/keys",
        &admin,
        &json!({"roles": ["agent"], "agent": "new-bot"}),
    );
    expect(&r, 201, "issue an agent key");
    let issued = r.json();
    let bot = issued["secret"].as_str().expect("secret").to_owned();
    let bot_id = issued["key"]["id"].as_str().expect("id").to_owned();
    assert!(bot.starts_with(&format!("ck_{bot_id}_")), "{issued}");
    assert_eq!(issued["key"]["tenant"], "acme");
    assert_eq!(issued["key"]["roles"], json!(["agent"]));
    assert_eq!(issued["key"]["agent"], "agent:new-bot");
    assert!(issued.get("signing_secret").is_none(), "{issued}");
    expect(
        &post(
            a,
            "/v1/entries",
            &bot,
            &entry("agent:new-bot", "/probe/keys/1"),
        ),
        201,
        "the new key appends",
    );
    expect(
        &post(
            a,
            "/v1/entries",
            &bot,
            &entry("agent:someone", "/probe/keys/2"),
        ),
        403,
        "the new key is an agent key",
    );

    // Listed, without any secret.
    let list = get(a, "/v1/keys", &admin);
    expect(&list, 200, "list keys");
    let keys = list.json()["keys"].as_array().expect("keys").clone();
    let listed = keys
        .iter()
        .find(|k| k["id"] == bot_id.as_str())
        .expect("listed");
    assert_eq!(listed["revoked_seq"], Value::Null);
    assert!(keys.iter().all(|k| k["tenant"] == "acme"), "{}", list.body);
    assert!(!list.body.contains(&bot) && !list.body.contains(&admin));
    assert!(!list.body.contains("ck_") && !list.body.contains("cks_"));
    for k in &keys {
        for field in k.as_object().expect("object").keys() {
            assert!(
                !["secret", "signing_secret", "hash", "key_sha256", "text"]
                    .contains(&field.as_str()),
                "a listed key has `{field}`: {k}"
            );
        }
    }
    // Its issue is a ledger entry of the tenant, by the admin key, holding no secret.
    let created = get(
        a,
        "/v1/entries?event_type=api_key_created&limit=1000",
        &admin,
    );
    let created = created.json()["entries"]
        .as_array()
        .expect("entries")
        .clone();
    let rec = created
        .iter()
        .find(|e| e["data"]["key_id"] == bot_id.as_str())
        .expect("issue recorded");
    assert_eq!(rec["actor"], format!("user:apikey-{}", key_id(&admin)));
    assert!(!rec.to_string().contains(&bot));

    // Revoked: refused at once; revoking twice is refused.
    let r = http(
        a,
        "DELETE",
        &format!("/v1/keys/{bot_id}"),
        Some(&admin),
        None,
    );
    expect(&r, 200, "revoke");
    assert!(r.json()["key"]["revoked_seq"].is_u64(), "{}", r.body);
    expect_problem(
        &post(
            a,
            "/v1/entries",
            &bot,
            &entry("agent:new-bot", "/probe/keys/3"),
        ),
        401,
        "a revoked key",
    );
    expect_problem(&get(a, "/v1/summary", &bot), 401, "a revoked key reads");
    let r = http(
        a,
        "DELETE",
        &format!("/v1/keys/{bot_id}"),
        Some(&admin),
        None,
    );
    assert!(
        (400..500).contains(&r.status) && r.is_problem(),
        "revoke twice: {}",
        r.show()
    );
    expect_problem(
        &http(a, "DELETE", "/v1/keys/0123456789abcdef", Some(&admin), None),
        404,
        "revoke an unknown key",
    );

    // Bad requests name the field.
    for (body, status, field) in [
        (json!({"roles": ["wizard"]}), 422, Some("roles[0]")),
        (json!({"roles": ["admin", "root"]}), 422, Some("roles[1]")),
        (json!({"roles": []}), 422, None),
        (json!({"roles": ["agent"]}), 422, None),
        (json!({"roles": ["auditor"], "agent": "x"}), 422, None),
        (json!({"roles": ["admin"], "colour": "red"}), 400, None),
        (json!({"roles": "admin"}), 400, None),
        (json!({}), 400, None),
    ] {
        let r = post(a, "/v1/keys", &admin, &body);
        expect_problem(&r, status, &format!("issue {body}"));
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f, "{}", r.body);
        }
    }
    expect_problem(
        &http(a, "POST", "/v1/keys", Some(&admin), Some("{roles")),
        400,
        "issue with malformed JSON",
    );

    // A signed key issued over HTTP gets its signing secret, and needs it.
    let r = post(
        a,
        "/v1/keys",
        &admin,
        &json!({"roles": ["orchestrator"], "signed": true}),
    );
    expect(&r, 201, "issue a signed key");
    let v = r.json();
    let sk = v["secret"].as_str().expect("secret").to_owned();
    let secret = v["signing_secret"]
        .as_str()
        .expect("signing_secret")
        .to_owned();
    assert!(secret.starts_with("cks_"), "{v}");
    assert_eq!(v["key"]["signed"], true);
    let body = entry("agent:planner", "/probe/keys/signed").to_string();
    expect_bad_signature(
        &http(a, "POST", "/v1/entries", Some(&sk), Some(&body)),
        "unsigned request of a signed key",
    );
    expect(
        &signed_http(a, "POST", "/v1/entries", &sk, &secret, Some(&body)),
        201,
        "signed request of a key issued over HTTP",
    );

    // Tenants: an acme admin issues only for acme; a system admin for anyone.
    expect_problem(
        &post(
            a,
            "/v1/keys",
            &admin,
            &json!({"tenant": "globex", "roles": ["admin"]}),
        ),
        403,
        "acme issues for globex",
    );
    expect_problem(
        &post(
            a,
            "/v1/keys",
            &admin,
            &json!({"tenant": "system", "roles": ["admin"]}),
        ),
        403,
        "acme issues for system",
    );
    let r = post(
        a,
        "/v1/keys",
        &system,
        &json!({"tenant": "globex", "roles": ["auditor"]}),
    );
    expect(&r, 201, "system issues for globex");
    let globex_auditor = r.json()["secret"].as_str().expect("secret").to_owned();
    assert_eq!(r.json()["key"]["tenant"], "globex");
    expect(
        &get(a, "/v1/summary", &globex_auditor),
        200,
        "the globex key reads globex",
    );
    let all = get(a, "/v1/keys", &system).json();
    let tenants: BTreeSet<&str> = all["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["tenant"].as_str().expect("tenant"))
        .collect();
    assert_eq!(tenants, BTreeSet::from(["acme", "globex", "system"]));
    let globex_list = get(a, "/v1/keys", &globex).json();
    assert!(
        globex_list["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["tenant"] == "globex")
    );
    expect_problem(
        &http(
            a,
            "DELETE",
            &format!("/v1/keys/{}", key_id(&sk)),
            Some(&globex),
            None,
        ),
        404,
        "globex revokes an acme key",
    );
    expect(
        &http(
            a,
            "DELETE",
            &format!("/v1/keys/{}", key_id(&globex_auditor)),
            Some(&system),
            None,
        ),
        200,
        "system revokes a globex key",
    );
    expect_problem(
        &get(a, "/v1/summary", &globex_auditor),
        401,
        "revoked by system",
    );

    // After a restart the registry, rebuilt from the ledger, agrees.
    assert!(server.terminate().success());
    drop(server);
    let server = start(&data);
    let a = server.addr.as_str();
    expect_problem(&get(a, "/v1/summary", &bot), 401, "revoked, after restart");
    expect_problem(
        &get(a, "/v1/summary", &globex_auditor),
        401,
        "revoked, after restart",
    );
    let body = entry("agent:planner", "/probe/keys/signed-2").to_string();
    expect(
        &signed_http(a, "POST", "/v1/entries", &sk, &secret, Some(&body)),
        201,
        "the HTTP-issued signed key, after restart",
    );
}

// ---------------------------------------------------------------------------------------
// f. Malformed input appends nothing.

/// Bodies that must be refused by both append endpoints (wrapped in a batch for the second):
/// (what, body, status, field).
fn bad_entries() -> Vec<(&'static str, Vec<u8>, u16, Option<&'static str>)> {
    let good = || entry("user:x", "/probe/bad");
    let with = |k: &str, v: Value| {
        let mut e = good();
        e[k] = v;
        e.to_string().into_bytes()
    };
    let without = |k: &str| {
        let mut e = good();
        e.as_object_mut().expect("object").remove(k);
        e.to_string().into_bytes()
    };
    let mut deep = json!("bottom");
    for _ in 0..20 {
        deep = json!({ "d": deep });
    }
    vec![
        (
            "wrong type: event_type",
            with("event_type", json!(5)),
            422,
            Some("event_type"),
        ),
        (
            "wrong type: actor",
            with("actor", json!(["user:x"])),
            422,
            Some("actor"),
        ),
        (
            "wrong type: data",
            with("data", json!("text")),
            422,
            Some("data"),
        ),
        (
            "wrong type: severity",
            with("severity", json!(3)),
            422,
            Some("severity"),
        ),
        (
            "wrong type: request",
            with("request", json!("1.2.3.4")),
            422,
            Some("request"),
        ),
        (
            "wrong type: client_ts",
            with("client_ts", json!(17)),
            422,
            Some("client_ts"),
        ),
        (
            "unknown outcome",
            with("outcome", json!("maybe")),
            422,
            Some("outcome"),
        ),
        (
            "unknown severity",
            with("severity", json!("extreme")),
            422,
            Some("severity"),
        ),
        (
            "bad client_ts",
            with("client_ts", json!("yesterday")),
            422,
            Some("client_ts"),
        ),
        (
            "bad actor",
            with("actor", json!("robot")),
            422,
            Some("actor"),
        ),
        (
            "unknown field",
            with("colour", json!("red")),
            422,
            Some("colour"),
        ),
        ("assigned field", with("seq", json!(1)), 422, Some("seq")),
        (
            "missing event_type",
            without("event_type"),
            422,
            Some("event_type"),
        ),
        ("missing actor", without("actor"), 422, Some("actor")),
        ("missing action", without("action"), 422, Some("action")),
        ("missing outcome", without("outcome"), 422, Some("outcome")),
        (
            "oversized field",
            with("resource", json!("r".repeat(5000))),
            422,
            Some("resource"),
        ),
        (
            "oversized entry",
            with("data", json!({"blob": "b".repeat(70 * 1024)})),
            422,
            None,
        ),
        ("too deep data", with("data", deep), 422, None),
    ]
}

#[test]
fn malformed_input_is_refused_and_appends_nothing() {
    let (_tmp, data) = init();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let server = start(&data);
    let a = server.addr.as_str();
    let size0 = tree_size(a);
    let send = |path: &str, body: &[u8]| http_with(a, "POST", path, Some(&admin), &[], body);

    let mut bad_utf8 = br#"{"event_type":"tool_invocation","actor":"user:x","action":"allow","outcome":"success","resource":"/probe/"#.to_vec();
    bad_utf8.extend_from_slice(b"\xff\xfe\x80");
    bad_utf8.extend_from_slice(br#""}"#);
    let not_json: [(&str, &[u8]); 7] = [
        ("malformed JSON", b"{not json"),
        ("truncated JSON", br#"{"event_type": "x""#),
        ("empty body", b""),
        ("trailing garbage", br#"{"event_type":"x"} x"#),
        ("bad UTF-8", &bad_utf8),
        ("bad UTF-8 only", b"\xff\xff"),
        ("NUL bytes", b"\0\0\0"),
    ];
    for path in ["/v1/entries", "/v1/entries:batch"] {
        for (what, body) in not_json {
            expect_problem(&send(path, body), 400, &format!("{path}: {what}"));
        }
    }
    for (what, body) in [
        ("a string", &b"\"entry\""[..]),
        ("a number", b"42"),
        ("null", b"null"),
        ("an array", b"[]"),
    ] {
        let r = send("/v1/entries", body);
        assert!(
            (400..500).contains(&r.status) && r.is_problem(),
            "/v1/entries: {what}: {}",
            r.show()
        );
    }
    for (what, body, status, field) in bad_entries() {
        let r = send("/v1/entries", &body);
        expect_problem(&r, status, &format!("/v1/entries: {what}"));
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f, "{what}: {}", r.body);
        }
        // In the middle of a batch: the whole batch is refused and the field located.
        let one = String::from_utf8(body).expect("utf8");
        let ok1 = entry("user:x", "/probe/bad-batch-1");
        let ok2 = entry("user:x", "/probe/bad-batch-2");
        let batch = format!("{{\"entries\": [{ok1}, {one}, {ok2}]}}");
        let r = send("/v1/entries:batch", batch.as_bytes());
        expect_problem(&r, status, &format!("/v1/entries:batch: {what}"));
        if let Some(f) = field {
            assert_eq!(
                r.json()["field"],
                format!("entries[1].{f}"),
                "{what}: {}",
                r.body
            );
        }
    }
    // Batch shapes.
    let e = entry("user:x", "/probe/batch-shape");
    let big: Vec<Value> = (0..10_001).map(|_| e.clone()).collect();
    for (what, body) in [
        ("empty array", json!([])),
        ("empty entries", json!({"entries": []})),
        ("entries not an array", json!({"entries": e})),
        ("another key", json!({"items": [e]})),
        ("a single entry", e.clone()),
        ("a string", json!("entries")),
        ("10 001 entries", json!(big)),
        ("10 001 entries, wrapped", json!({"entries": big})),
        ("an entry that is not an object", json!([e, 5])),
    ] {
        let r = send("/v1/entries:batch", body.to_string().as_bytes());
        assert!(
            (400..500).contains(&r.status) && r.is_problem(),
            "batch of {what}: {}",
            r.show()
        );
    }
    // A body over the 32 MiB limit: refused (413) before anything is parsed.
    let huge = vec![b' '; 33 * 1024 * 1024];
    for path in ["/v1/entries", "/v1/entries:batch"] {
        let r = send(path, &huge);
        assert_eq!(r.status, 413, "{path}: 33 MiB body: {}", r.show());
    }

    assert_eq!(tree_size(a), size0, "the tree did not move");
    assert!(resources_under(a, &admin, "/probe/").is_empty());
    // None of that was an authentication failure either: nothing on record.
    assert!(refusals_seen(a, &[&admin]).0.is_empty());
    // The server is fine afterwards.
    expect(
        &post(a, "/v1/entries", &admin, &entry("user:x", "/after")),
        201,
        "append after the abuse",
    );
    assert_eq!(tree_size(a), size0 + 1);
}

#[test]
fn an_oversized_body_is_problem_json() {
    let (_tmp, data) = init();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let server = start(&data);
    let a = server.addr.as_str();
    let huge = vec![b' '; 33 * 1024 * 1024];
    for path in ["/v1/entries", "/v1/entries:batch", "/v1/keys"] {
        let r = http_with(a, "POST", path, Some(&admin), &[], &huge);
        expect_problem(&r, 413, &format!("{path}: 33 MiB body"));
        assert!(
            r.problem_type().ends_with("body-too-large"),
            "{path}: {}",
            r.show()
        );
    }
}

/// A mistyped `tenant` is a malformed entry (422 naming the field), not an attempt to write
/// into another tenant: it must not be a 403 nor land in the ledger as a `security_event`.
#[test]
fn a_mistyped_tenant_is_a_422_naming_the_field() {
    let (_tmp, data) = init();
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let server = start(&data);
    let a = server.addr.as_str();
    let size0 = tree_size(a);
    for v in [json!(5), json!(null), json!(["acme"])] {
        let mut e = entry("user:x", "/probe/tenant-type");
        e["tenant"] = v.clone();
        let r = post(a, "/v1/entries", &admin, &e);
        expect_problem(&r, 422, &format!("tenant {v}"));
        assert_eq!(r.json()["field"], "tenant", "{}", r.body);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        tree_size(a),
        size0,
        "nothing appended, not even a refusal record"
    );
}

/// Clients cannot write the entries custos's own projections are built from: a forged
/// `api_key_created` would otherwise mint a working key (found by a review).
#[test]
fn clients_cannot_forge_key_or_refusal_records() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "forge.example/log"]));
    let admin = key(&data, &["--tenant", "acme", "--role", "admin"]);
    let agent = key(
        &data,
        &["--tenant", "acme", "--role", "agent", "--agent", "bot"],
    );
    let server = start(&data);
    let a = &server.addr;
    let forged_text = "ck_00112233aabbccdd_forgedforgedforgedforgedforgedforgedforg";
    let forged_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(forged_text.as_bytes()))
    };
    let size0 = tree_size(a);
    for (k, actor) in [(&agent, "agent:bot"), (&admin, "user:root")] {
        for event_type in ["api_key_created", "api_key_revoked", "security_event"] {
            let forged = json!({
                "event_type": event_type, "actor": actor, "action": "create",
                "outcome": "success", "resource": "api_key:00112233aabbccdd",
                "data": {"key_id": "00112233aabbccdd", "roles": ["admin"], "signed": false,
                         "key_sha256": forged_hash}
            });
            let r = http(a, "POST", "/v1/entries", Some(k), Some(&forged.to_string()));
            assert_eq!(r.status, 403, "{event_type}: {}", r.body);
            assert!(r.body.contains("written by custos itself"), "{}", r.body);
            let batch = json!({"entries": [
                {"event_type": "tool_invocation", "actor": actor, "action": "a", "outcome": "success"},
                forged
            ]});
            let r = http(
                a,
                "POST",
                "/v1/entries:batch",
                Some(k),
                Some(&batch.to_string()),
            );
            assert_eq!(r.status, 403, "{event_type} in a batch: {}", r.body);
        }
    }
    let r = http(a, "GET", "/v1/keys", Some(forged_text), None);
    assert_eq!(r.status, 401, "the forged key does not work");
    // Nothing but refusal records (written by custos) was appended.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = http(
        a,
        "GET",
        "/v1/entries?event_type=api_key_created&limit=1000",
        Some(&admin),
        None,
    );
    assert_eq!(
        r.json()["entries"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.body
    );
    let appended = tree_size(a) - size0;
    let refusals = http(
        a,
        "GET",
        "/v1/entries?event_type=security_event&limit=1000",
        Some(&admin),
        None,
    )
    .json()["entries"]
        .as_array()
        .map_or(0, Vec::len) as u64;
    // acme's `forbidden` records (one per key) plus the `invalid_key` record of the forged key,
    // which goes to tenant `system` (its id is unknown).
    assert_eq!(refusals, 2);
    assert_eq!(appended, refusals + 1, "only refusal records were appended");
}
