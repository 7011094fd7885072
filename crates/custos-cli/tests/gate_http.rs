//! The plan gate end to end over HTTP (SPEC §4): the real `custos serve`, orchestrator keys
//! that sign their requests, the four documented scenarios with their exact outcomes, signed
//! decisions checked offline, approval tokens (offline, online, single use), execution
//! verification, the override chain, tenant isolation, and the review's state rebuilt from the
//! ledger after a restart.

mod support;

use custos_core::note::{Signer, Verifier};
use custos_gate::service::signature;
use serde_json::{Value, json};
use support::*;

const ML: &str = "Add a new microsegment for machine learning workloads with GPU instances";
const CLEANUP: &str = "Clean up old dev environments";
const SCALE: &str = "Scale up our production API to handle Black Friday traffic";

fn plan(name: &str) -> Value {
    let path = format!(
        "{}/../custos-gate/tests/plans/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read plan")).expect("plan JSON")
}

fn review_body(id: &str, user_request: &str, plan: &Value, metadata: Value) -> String {
    json!({"request_id": id, "user_request": user_request, "plan": plan, "metadata": metadata})
        .to_string()
}

fn alice() -> Value {
    json!({"user": "alice@example.com", "timestamp": "2026-11-23T10:00:00Z"})
}

/// A server with a signed orchestrator key of tenant `acme`.
struct Gate {
    server: Server,
    orchestrator: (String, String),
    verifier: Verifier,
}

impl Gate {
    fn start(data: &std::path::Path) -> Gate {
        if !data.join("ledger.json").exists() {
            ok(&custos(data, &["init"]));
        }
        let orchestrator = signed_key(data, &["--tenant", "acme", "--role", "orchestrator"]);
        let server = start(data);
        let text = http(
            &server.addr,
            "GET",
            "/.well-known/custos/log.pub",
            None,
            None,
        )
        .body;
        let verifier = Verifier::parse(text.trim()).expect("the log's verifier key");
        Gate {
            server,
            orchestrator,
            verifier,
        }
    }

    /// A signed POST as the orchestrator.
    fn post(&self, path: &str, body: &str) -> Resp {
        signed_http(
            &self.server.addr,
            "POST",
            path,
            &self.orchestrator.0,
            &self.orchestrator.1,
            Some(body),
        )
    }

    fn get(&self, path: &str) -> Resp {
        signed_http(
            &self.server.addr,
            "GET",
            path,
            &self.orchestrator.0,
            &self.orchestrator.1,
            None,
        )
    }

    fn review(&self, id: &str, user_request: &str, plan: &Value, metadata: Value) -> Resp {
        self.post(
            "/v1/reviews",
            &review_body(id, user_request, plan, metadata),
        )
    }
}

/// A POST with an unsigned key (approvers, other tenants, other roles).
fn post_as(addr: &str, key: &str, path: &str, body: &Value) -> Resp {
    http(addr, "POST", path, Some(key), Some(&body.to_string()))
}

fn policies(review: &Value) -> Vec<String> {
    review["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| v["policy"].as_str().expect("policy").to_owned())
        .collect()
}

#[test]
fn the_four_scenarios_over_http_with_signed_decisions_and_tokens() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let g = Gate::start(&data);

    // (a) approved, with a token bound to the request and plan.
    let a = g.review("req-a", ML, &plan("scenario-a"), alice());
    assert_eq!(a.status, 201, "{}", a.show());
    let a = a.json();
    assert_eq!(a["decision"], "approved", "{a:#}");
    assert_eq!(a["state"], "approved");
    assert_eq!(a["required_approvals"], json!([]));
    assert_eq!(a["intent"]["match"], "exact");
    assert!(a["seq"].as_u64().is_some());
    let record = signature::verify(&a, &g.verifier).expect("the decision's signature verifies");
    // The same check from the command line, as an auditor would run it.
    let answer = tmp.path().join("a.json");
    std::fs::write(&answer, a.to_string()).expect("write answer");
    let key_text = g.verifier.to_string();
    ok(&custos(
        &data,
        &[
            "decision",
            "verify",
            answer.to_str().expect("utf-8"),
            "--key",
            &key_text,
        ],
    ));
    let mut tampered = a.clone();
    tampered["summary"] = json!("This plan changes nothing.");
    std::fs::write(&answer, tampered.to_string()).expect("write answer");
    let refused = custos(
        &data,
        &[
            "decision",
            "verify",
            answer.to_str().expect("utf-8"),
            "--key",
            &key_text,
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(record.request_id, "req-a");
    assert_eq!(record.tenant, "acme");
    // Any change to a signed member breaks the signature.
    let mut forged = a.clone();
    forged["decision"] = json!("vetoed");
    assert!(signature::verify(&forged, &g.verifier).is_err());
    let token = a["approval_token"].as_str().expect("approved: a token");
    let claims = custos_gate::token::verify(
        token,
        &g.verifier,
        g.verifier.name(),
        custos_core::time::parse_rfc3339(a["ts"].as_str().expect("ts")).expect("ts"),
    )
    .expect("the token verifies offline");
    assert_eq!(claims.request_id, "req-a");
    assert_eq!(claims.plan_hash, a["plan_hash"].as_str().expect("hash"));
    assert_eq!(claims.decision_seq, a["seq"].as_u64().expect("seq"));

    // The same request id and plan: the recorded decision again, byte for byte.
    let again = g.review("req-a", ML, &plan("scenario-a"), alice());
    assert_eq!(again.status, 200, "{}", again.show());
    assert_eq!(again.json(), a);
    // The same request id with another plan: a conflict, nothing recorded.
    let size = tree_size(&g.server.addr);
    let other = g.review("req-a", ML, &plan("scenario-b"), alice());
    assert_eq!(other.status, 409, "{}", other.show());
    assert_eq!(
        other.problem_type(),
        "https://custos.dev/problems/request-id-reused"
    );
    assert_eq!(tree_size(&g.server.addr), size);

    // (b) vetoed: the PCI firewall opened to the internet is scope creep and a hard violation.
    let b = g.review("req-b", ML, &plan("scenario-b"), alice());
    assert_eq!(b.status, 201, "{}", b.show());
    let b = b.json();
    assert_eq!(b["decision"], "vetoed", "{b:#}");
    assert!(policies(&b).contains(&"no_public_production_access".to_owned()));
    let extra = b["intent"]["extra_actions"].to_string();
    assert!(
        extra.contains("pci"),
        "the firewall change is named: {extra}"
    );
    assert!(
        b["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.starts_with("scope creep"))),
        "{b:#}"
    );
    assert!(b.get("approval_token").is_none(), "no token for a veto");
    signature::verify(&b, &g.verifier).expect("signed");

    // (c) escalated for the user's deletion confirmation, every VPC listed.
    let c = g.review("req-c", CLEANUP, &plan("scenario-c"), alice());
    let c = c.json();
    assert_eq!(c["decision"], "escalated", "{c:#}");
    assert_eq!(
        c["required_approvals"],
        json!(["user_deletion_confirmation"])
    );
    let summary = c["summary"].as_str().expect("summary");
    let deleted = summary.split("DELETE: ").nth(1).unwrap_or("");
    assert_eq!(deleted.matches("(aws_vpc)").count(), 3, "{summary}");
    let evidence = c["violations"].to_string();
    for vpc in deleted
        .split(", ")
        .map(|d| d.split(" (").next().unwrap_or(""))
    {
        assert!(
            evidence.contains(vpc),
            "{vpc} is listed in the violation: {evidence}"
        );
    }
    let confirmed = g.review(
        "req-c-confirmed",
        CLEANUP,
        &plan("scenario-c"),
        json!({"user": "alice@example.com", "deletion_confirmed": true}),
    );
    assert_eq!(confirmed.json()["decision"], "approved");

    // (d) escalated for finance, and for the change ticket it lacks.
    let d = g
        .review("req-d", SCALE, &plan("scenario-d"), alice())
        .json();
    assert_eq!(d["decision"], "escalated", "{d:#}");
    assert_eq!(d["required_approvals"], json!(["change_ticket", "finance"]));
    let d2 = g
        .review(
            "req-d-ticket",
            SCALE,
            &plan("scenario-d"),
            json!({"user": "alice@example.com", "change_ticket_id": "CHG-1234"}),
        )
        .json();
    assert_eq!(d2["required_approvals"], json!(["finance"]));

    // Listing and search.
    let vetoed = g.get("/v1/reviews?decision=vetoed").json();
    let ids: Vec<&str> = vetoed["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids, ["req-b"]);
    let by_policy = g
        .get("/v1/reviews?policy=cost_threshold_approval&order=desc")
        .json();
    let ids: Vec<&str> = by_policy["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids, ["req-d-ticket", "req-d"]);

    // The compatibility route answers the same review with an `approved` flag.
    let compat = g.post(
        "/verify-plan",
        &review_body("req-a", ML, &plan("scenario-a"), alice()),
    );
    assert_eq!(compat.status, 200, "{}", compat.show());
    let compat = compat.json();
    assert_eq!(compat["approved"], true);
    assert_eq!(compat["signature"], a["signature"]);
    let health = http(&g.server.addr, "GET", "/health", None, None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "healthy");

    // Every decision is a ledger entry: six reviews, six decisions.
    let decisions = g
        .get("/v1/entries?event_type=review_decision&limit=100")
        .json();
    assert_eq!(decisions["entries"].as_array().map(Vec::len), Some(6));
}

#[test]
fn executions_are_verified_once_per_approval_and_unapproved_ones_are_critical() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let g = Gate::start(&data);
    let a = g.review("req-a", ML, &plan("scenario-a"), alice()).json();
    let token = a["approval_token"].as_str().expect("token").to_owned();

    // What was executed is what was approved: matches.
    let body = json!({"result": plan("scenario-a"), "approval_token": token}).to_string();
    let done = g.post("/v1/reviews/req-a/execution", &body);
    assert_eq!(done.status, 201, "{}", done.show());
    let done = done.json();
    assert_eq!(done["result"], "matches", "{done:#}");
    assert_eq!(done["entry_severity"], "info");
    assert_eq!(done["approval_seq"], a["seq"]);

    // The approval is used up: a second report is refused and recorded as a security event.
    let size = tree_size(&g.server.addr);
    let again = g.post("/v1/reviews/req-a/execution", &body);
    assert_eq!(again.status, 409, "{}", again.show());
    assert_eq!(
        again.problem_type(),
        "https://custos.dev/problems/token-used"
    );
    let check = g
        .post(
            "/v1/tokens/verify",
            &json!({"token": token, "request_id": "req-a", "plan_hash": a["plan_hash"]})
                .to_string(),
        )
        .json();
    assert_eq!(check["valid"], true, "{check:#}");
    assert_eq!(check["used"], true);
    let wrong_plan = g
        .post(
            "/v1/tokens/verify",
            &json!({"token": token, "plan_hash": format!("sha256:{}", "0".repeat(64))}).to_string(),
        )
        .json();
    assert_eq!(wrong_plan["valid"], false);
    let review = g.get("/v1/reviews/req-a").json();
    assert_eq!(review["state"], "executed");
    assert_eq!(review["approval_token_used"], true);
    assert_eq!(review["executions"].as_array().map(Vec::len), Some(1));
    // The refusal itself is recorded (refusals are written about once a second), and no
    // execution with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    loop {
        let refusals = g
            .get("/v1/entries?event_type=security_event&limit=100")
            .json()
            .to_string();
        if refusals.contains("approval_token_reused") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{refusals}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(tree_size(&g.server.addr) > size);

    // An approved plan executed with an extra resource: a critical deviation naming it.
    let c = g
        .review(
            "req-c",
            CLEANUP,
            &plan("scenario-c"),
            json!({"deletion_confirmed": true}),
        )
        .json();
    assert_eq!(c["decision"], "approved", "{c:#}");
    let mut executed = plan("scenario-c");
    executed["actions"]
        .as_array_mut()
        .expect("actions")
        .push(json!({"id": "aws_vpc.prod_main", "verb": "delete", "resource_type": "aws_vpc", "name": "prod-main"}));
    let dev = g
        .post(
            "/v1/reviews/req-c/execution",
            &json!({"result": executed}).to_string(),
        )
        .json();
    assert_eq!(dev["result"], "deviation", "{dev:#}");
    assert_eq!(dev["entry_severity"], "critical");
    assert!(
        dev["extra"].to_string().contains("aws_vpc.prod_main"),
        "{dev:#}"
    );

    // Executing a vetoed request, or one never reviewed: critical deviations, recorded.
    g.review("req-b", ML, &plan("scenario-b"), alice());
    for id in ["req-b", "req-unknown"] {
        let x = g.post(
            &format!("/v1/reviews/{id}/execution"),
            &json!({"result": plan("scenario-b")}).to_string(),
        );
        assert_eq!(x.status, 201, "{}", x.show());
        let x = x.json();
        assert_eq!(x["result"], "deviation");
        assert_eq!(x["severity"], "critical");
        assert!(x["unapproved"].is_string(), "{x:#}");
    }
    let critical = g
        .get("/v1/entries?event_type=execution_verification&severity=critical")
        .json();
    assert_eq!(critical["entries"].as_array().map(Vec::len), Some(3));

    // A token of another review does not pass for this one.
    let other = g.post(
        "/v1/reviews/req-c/execution",
        &json!({"result": plan("scenario-c"), "approval_token": token}).to_string(),
    );
    assert_eq!(other.status, 422, "{}", other.show());
    assert_eq!(
        other.problem_type(),
        "https://custos.dev/problems/invalid-token"
    );
    // An unreadable result of an approved review is refused, nothing recorded.
    let d = g
        .review(
            "req-d",
            SCALE,
            &plan("scenario-d"),
            json!({"change_ticket_id": "CHG-1", "finance_approved": true}),
        )
        .json();
    assert_eq!(d["decision"], "approved", "{d:#}");
    let garbage = g.post(
        "/v1/reviews/req-d/execution",
        &json!({"result": {"resources": "nope"}}).to_string(),
    );
    assert_eq!(garbage.status, 422, "{}", garbage.show());
    let size = tree_size(&g.server.addr);
    for body in [json!({}), json!({"result": null}), json!([null, null])] {
        let nothing = g.post("/v1/reviews/req-unknown-2/execution", &body.to_string());
        assert_eq!(nothing.status, 422, "{body}: {}", nothing.show());
    }
    assert_eq!(tree_size(&g.server.addr), size, "nothing recorded");
    assert_eq!(
        garbage.problem_type(),
        "https://custos.dev/problems/invalid-execution-result"
    );
    // The compatibility route, with the documented body.
    let compat = g.post(
        "/verify-execution",
        &json!({"request_id": "req-d", "execution_result": plan("scenario-d")}).to_string(),
    );
    assert_eq!(compat.status, 201, "{}", compat.show());
    assert_eq!(compat.json()["result"], "matches");
}

#[test]
fn an_override_needs_distinct_approvers_with_the_right_roles_and_then_carries_a_token() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    custos(&data, &["init"]);
    let security = key(&data, &["--tenant", "acme", "--role", "security"]);
    let manager = key(&data, &["--tenant", "acme", "--role", "manager"]);
    let auditor = key(&data, &["--tenant", "acme", "--role", "auditor"]);
    let g = Gate::start(&data);
    let addr = g.server.addr.clone();
    let b = g.review("req-b", ML, &plan("scenario-b"), alice()).json();
    assert_eq!(b["decision"], "vetoed");
    let plan_hash = b["plan_hash"].as_str().expect("hash").to_owned();

    let request = json!({
        "justification": "The partner integration must go live today",
        "business_impact": "Contract penalty of 50k",
        "alternatives_considered": "A VPN: not ready for weeks",
        "risk_acceptance": "Security accepts 48 hours of exposure on 443",
    })
    .to_string();
    let opened = g.post("/v1/reviews/req-b/override-requests", &request);
    assert_eq!(opened.status, 201, "{}", opened.show());
    let opened = opened.json();
    assert_eq!(opened["status"], "pending");
    assert!(
        opened["required_roles"]
            .as_array()
            .expect("roles")
            .contains(&json!("security")),
        "{opened:#}"
    );
    let oid = opened["override_id"].as_str().expect("id").to_owned();
    let approvals = format!("/v1/reviews/req-b/override-requests/{oid}/approvals");
    // A second request while one is pending: conflict.
    let second = g.post("/v1/reviews/req-b/override-requests", &request);
    assert_eq!(second.status, 409, "{}", second.show());
    // The requester may not approve; an auditor may not either.
    let own = g.post(&approvals, &json!({"plan_hash": plan_hash}).to_string());
    assert_eq!(own.status, 403, "{}", own.show());
    let aud = post_as(
        &addr,
        &auditor,
        &approvals,
        &json!({"plan_hash": plan_hash}),
    );
    assert_eq!(aud.status, 403, "{}", aud.show());
    // An approval of another plan is refused.
    let other = post_as(
        &addr,
        &manager,
        &approvals,
        &json!({"plan_hash": format!("sha256:{}", "a".repeat(64))}),
    );
    assert_eq!(other.status, 409, "{}", other.show());

    // The security approver signs the digest with a registered key.
    let signer = Signer::from_seed("approver", [7; 32]).expect("signer");
    let public = {
        use base64::Engine;
        let text = signer.verifier().to_string();
        let b64 = text.rsplit('+').next().expect("key part");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        base64::engine::general_purpose::STANDARD.encode(&raw[1..])
    };
    let reg = post_as(
        &addr,
        &security,
        "/v1/approver-keys",
        &json!({"key_id": "sec-1", "public_key": public}),
    );
    assert_eq!(reg.status, 201, "{}", reg.show());
    let message = format!(
        "custos-override-v1:{}:user:apikey-{}",
        opened["digest"].as_str().expect("digest"),
        key_id(&security)
    );
    let sig = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(signer.sign_bytes(message.as_bytes()))
    };
    let first = post_as(
        &addr,
        &security,
        &approvals,
        &json!({"plan_hash": plan_hash, "comment": "accepted for 48h",
                    "signature": {"key_id": "sec-1", "ed25519": sig}}),
    );
    assert_eq!(first.status, 201, "{}", first.show());
    assert_eq!(first.json()["status"], "pending");
    // The manager registers the security approver's public key as their own and replays the
    // signature: refused, because the signed message names the approver.
    let stolen = post_as(
        &addr,
        &manager,
        "/v1/approver-keys",
        &json!({"key_id": "mgr-1", "public_key": public}),
    );
    assert_eq!(stolen.status, 201, "{}", stolen.show());
    let replay = post_as(
        &addr,
        &manager,
        &approvals,
        &json!({"plan_hash": plan_hash, "signature": {"key_id": "mgr-1", "ed25519": sig}}),
    );
    assert_eq!(replay.status, 422, "{}", replay.show());
    assert_eq!(
        replay.problem_type(),
        "https://custos.dev/problems/bad-approver-signature"
    );
    // The same approver twice does not count twice.
    let twice = post_as(
        &addr,
        &security,
        &approvals,
        &json!({"plan_hash": plan_hash}),
    );
    assert_eq!(twice.status, 409, "{}", twice.show());
    let done = post_as(
        &addr,
        &manager,
        &approvals,
        &json!({"plan_hash": plan_hash}),
    );
    assert_eq!(done.status, 201, "{}", done.show());
    let done = done.json();
    assert_eq!(done["status"], "approved", "{done:#}");
    let approval_seq = done["approval_seq"].as_u64().expect("approval seq");

    // The review now carries a token for the override's approval.
    let review = g.get("/v1/reviews/req-b").json();
    assert_eq!(
        review["decision"], "vetoed",
        "the decision itself never changes"
    );
    assert_eq!(review["state"], "overridden");
    let token = review["approval_token"].as_str().expect("token");
    let check = g
        .post("/v1/tokens/verify", &json!({"token": token}).to_string())
        .json();
    assert_eq!(check["valid"], true, "{check:#}");
    assert_eq!(check["claims"]["decision_seq"], approval_seq);
    // Every step is in the ledger.
    for t in [
        "override_requested",
        "override_approval",
        "override_approved",
        "approver_key_registered",
    ] {
        let found = g.get(&format!("/v1/entries?event_type={t}")).json();
        assert!(
            !found["entries"].as_array().expect("entries").is_empty(),
            "{t}"
        );
    }

    // A denial blocks another override for good.
    let d = g
        .review("req-d", SCALE, &plan("scenario-d"), alice())
        .json();
    assert_eq!(d["decision"], "escalated");
    let opened = g
        .post("/v1/reviews/req-d/override-requests", &request)
        .json();
    let oid = opened["override_id"].as_str().expect("id");
    let denied = post_as(
        &addr,
        &manager,
        &format!("/v1/reviews/req-d/override-requests/{oid}/denials"),
        &json!({"reason": "no budget"}),
    );
    assert_eq!(denied.status, 201, "{}", denied.show());
    assert_eq!(denied.json()["status"], "denied");
    let late = post_as(
        &addr,
        &security,
        &format!("/v1/reviews/req-d/override-requests/{oid}/approvals"),
        &json!({"plan_hash": d["plan_hash"]}),
    );
    assert_eq!(late.status, 409, "{}", late.show());
    assert!(
        g.get("/v1/reviews/req-d")
            .json()
            .get("approval_token")
            .is_none()
    );
    // A denial blocks for good: asking again is refused.
    let again = g.post("/v1/reviews/req-d/override-requests", &request);
    assert_eq!(again.status, 409, "{}", again.show());
    assert_eq!(
        again.problem_type(),
        "https://custos.dev/problems/override-denied"
    );
}

#[test]
fn reviews_are_isolated_by_tenant_role_and_survive_a_restart_unchanged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    custos(&data, &["init"]);
    let other = key(&data, &["--tenant", "globex", "--role", "orchestrator"]);
    let auditor = key(&data, &["--tenant", "acme", "--role", "auditor"]);
    let agent = key(
        &data,
        &[
            "--tenant",
            "acme",
            "--role",
            "agent",
            "--agent",
            "agent:bot",
        ],
    );
    let mut g = Gate::start(&data);
    let addr = g.server.addr.clone();
    let a = g.review("req-a", ML, &plan("scenario-a"), alice()).json();

    // Another tenant sees nothing and cannot report an execution of it.
    let seen = http(&addr, "GET", "/v1/reviews/req-a", Some(&other), None);
    assert_eq!(seen.status, 404, "{}", seen.show());
    let listed = http(&addr, "GET", "/v1/reviews", Some(&other), None).json();
    assert_eq!(listed["reviews"], json!([]));
    // An auditor reads but does not review; an agent key does not review.
    assert_eq!(
        http(&addr, "GET", "/v1/reviews/req-a", Some(&auditor), None).status,
        200
    );
    let body = review_body("req-x", ML, &plan("scenario-a"), alice());
    for k in [&auditor, &agent] {
        let r = http(&addr, "POST", "/v1/reviews", Some(k), Some(&body));
        assert_eq!(r.status, 403, "{}", r.show());
    }
    // No key: 401; the signed orchestrator key unsigned: 401.
    assert_eq!(
        http(&addr, "POST", "/v1/reviews", None, Some(&body)).status,
        401
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            "/v1/reviews",
            Some(&g.orchestrator.0),
            Some(&body)
        )
        .status,
        401
    );
    // Nobody writes the gate's records through the entries API.
    let forged = json!({"event_type": "review_decision", "actor": "user:mallory",
                        "action": "approved", "outcome": "success", "severity": "info",
                        "resource": "review:req-x", "data": {}})
    .to_string();
    let r = g.post("/v1/entries", &forged);
    assert_eq!(r.status, 403, "{}", r.show());
    // Bad input: clear errors naming the field, nothing recorded.
    let size = tree_size(&addr);
    for (body, field) in [
        (
            review_body("has space", ML, &plan("scenario-a"), alice()),
            "request_id",
        ),
        (
            review_body("req-y", " ", &plan("scenario-a"), alice()),
            "user_request",
        ),
        (
            review_body("req-y", ML, &json!("not a plan"), alice()),
            "plan",
        ),
    ] {
        let r = g.post("/v1/reviews", &body);
        assert_eq!(r.status, 422, "{}", r.show());
        assert_eq!(r.json()["field"], field, "{}", r.show());
    }
    assert_eq!(g.post("/v1/reviews", "{not json").status, 400);
    assert_eq!(tree_size(&addr), size);

    // Restart: the review is folded from the ledger again, identical.
    assert!(g.server.terminate().success());
    g.server = start(&data);
    let after = g.get("/v1/reviews/req-a").json();
    assert_eq!(after, a);
}
