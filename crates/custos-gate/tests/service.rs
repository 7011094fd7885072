//! The gate service over a real embedded ledger: a suspended agent's review is refused before
//! evaluation and the refusal recorded (SPEC §4.1, §5.4), while other agents and users are
//! reviewed as usual, and the same agent is reviewed again once its standing allows it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_core::entry::{Limits, Outcome as EntryOutcome, Severity};
use custos_core::note::Signer;
use custos_gate::decision::Outcome;
use custos_gate::policy::RegoPolicyEngine;
use custos_gate::request::{Metadata, ReviewRequest};
use custos_gate::service::{
    AgentStanding, GateConfig, GateError, GateService, Principal, signature,
};
use custos_ledger::{Ledger, LedgerConfig};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::{EntryQuery, Store, system_clock};
use serde_json::Value;

const ORIGIN: &str = "gate.test/log";
const ML: &str = "Add a new microsegment for machine learning workloads with GPU instances";

/// The oversight service's answer, settable by the test: the agents named are suspended.
#[derive(Default)]
struct Suspended(Mutex<HashSet<(String, String)>>);

impl Suspended {
    fn set(&self, tenant: &str, agent: &str, suspended: bool) {
        let mut s = self.0.lock().expect("lock");
        let key = (tenant.to_owned(), agent.to_owned());
        if suspended {
            s.insert(key);
        } else {
            s.remove(&key);
        }
    }
}

impl AgentStanding for Suspended {
    fn refusal(&self, tenant: &str, agent: &str) -> Option<String> {
        self.0
            .lock()
            .expect("lock")
            .contains(&(tenant.to_owned(), agent.to_owned()))
            .then(|| "suspended after 5 missed reports".to_owned())
    }
}

fn plan(name: &str) -> Value {
    let path = format!("{}/tests/plans/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn request(id: &str) -> ReviewRequest {
    ReviewRequest {
        request_id: id.into(),
        user_request: ML.into(),
        plan: plan("scenario-a"),
        metadata: Metadata {
            user: Some("alice@example.com".into()),
            ..Metadata::default()
        },
        infracost: None,
    }
}

fn agent(tenant: &str, id: &str) -> Principal {
    Principal {
        tenant: tenant.into(),
        actor: format!("agent:{id}"),
        agent: Some(id.into()),
        roles: vec!["orchestrator".into()],
    }
}

async fn gate(dir: &std::path::Path) -> (Arc<Ledger<EmbeddedStore>>, GateService<EmbeddedStore>) {
    let store = EmbeddedStore::open(dir, EmbeddedConfig::default()).expect("open store");
    let config = LedgerConfig {
        origin: ORIGIN.into(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(3600),
    };
    let signer = Signer::from_seed(ORIGIN, [7u8; 32]).expect("signer");
    let ledger = Arc::new(
        Ledger::open(Arc::new(store), signer, config, system_clock())
            .await
            .expect("open ledger"),
    );
    let engine = Arc::new(RegoPolicyEngine::builtin().expect("built-in policies compile"));
    let gate = GateService::new(
        ledger.clone(),
        engine,
        None,
        GateConfig::default(),
        system_clock(),
    );
    (ledger, gate)
}

fn records(
    ledger: &Ledger<EmbeddedStore>,
    tenant: &str,
    request_id: &str,
) -> Vec<(String, Severity, EntryOutcome, Value)> {
    ledger
        .query_all(EntryQuery {
            tenant: Some(tenant.into()),
            resource: Some(format!("review:{request_id}")),
            ..EntryQuery::default()
        })
        .expect("query")
        .into_iter()
        .map(|e| (e.event_type, e.severity, e.outcome, Value::Object(e.data)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_agents_review_is_refused_recorded_and_never_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, gate) = gate(dir.path()).await;
    let standing = Arc::new(Suspended::default());
    gate.set_agent_standing(standing.clone());
    standing.set("acme", "rogue", true);

    let before = ledger.size().expect("size");
    let err = gate
        .review(&agent("acme", "rogue"), request("req-rogue"))
        .await
        .expect_err("a suspended agent is refused");
    let GateError::Forbidden(why) = &err else {
        panic!("expected Forbidden, got {err:?}");
    };
    assert!(
        why.contains("rogue") && why.contains("5 missed reports"),
        "{why}"
    );

    // Exactly one record: the refusal, high, denied, naming agent, reason and plan hash.
    assert_eq!(ledger.size().expect("size"), before + 1);
    let recs = records(&ledger, "acme", "req-rogue");
    assert_eq!(recs.len(), 1, "{recs:?}");
    let (event, severity, outcome, data) = &recs[0];
    assert_eq!(event, "review_refused");
    assert_eq!(*severity, Severity::High);
    assert_eq!(*outcome, EntryOutcome::Denied);
    assert_eq!(data["agent"], "rogue");
    assert_eq!(data["reason"], "suspended after 5 missed reports");
    assert!(
        data["plan_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:")),
        "{data}"
    );
    // No decision exists for it.
    assert!(matches!(
        gate.get("acme", "req-rogue"),
        Err(GateError::NotFound(_))
    ));

    // The same agent name in another tenant, another agent, and a user key are reviewed.
    for (who, id) in [
        (agent("other", "rogue"), "req-other-tenant"),
        (agent("acme", "healthy"), "req-healthy"),
        (
            Principal {
                tenant: "acme".into(),
                actor: "user:apikey-0123456789abcdef".into(),
                agent: None,
                roles: vec!["orchestrator".into()],
            },
            "req-user",
        ),
    ] {
        let (view, decided_now) = gate.review(&who, request(id)).await.expect("reviewed");
        assert!(decided_now);
        assert_eq!(view.record.evaluation.decision, Outcome::Approved, "{id}");
        let answer = serde_json::to_value(&view).expect("json");
        signature::verify(&answer, &ledger.verifier()).expect("signed decision");
    }

    // Once the oversight service lifts the suspension, the agent's plans are reviewed again.
    standing.set("acme", "rogue", false);
    let (view, _) = gate
        .review(&agent("acme", "rogue"), request("req-rogue"))
        .await
        .expect("reviewed once reinstated");
    assert_eq!(view.record.evaluation.decision, Outcome::Approved);
    let events: Vec<String> = records(&ledger, "acme", "req-rogue")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        events,
        ["review_refused", "review_plan", "review_decision"],
        "the refusal stays on record before the decision"
    );
    ledger.store().close().await.expect("close");
}
