//! The oversight service over a real embedded ledger with an injected clock: registration
//! and field-level diffs, the missed-report walk (warned → suspended → non-compliant),
//! recovery, exemptions, thresholds and the security score, admin decisions, refusals that
//! change nothing, and the registry rebuilt from the ledger alone equal to the live one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use custos_core::entry::Limits;
use custos_core::note::Signer;
use custos_ledger::{Ledger, LedgerConfig};
use custos_oversight::registry::{AgentStatus, Health, Report, RequestKind, RequestStatus};
use custos_oversight::reporting::ReportingStatus;
use custos_oversight::service::{
    AgentPatch, AgentSpec, ExemptionGrant, OversightConfig, OversightError, OversightService,
    rebuild,
};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::{Clock, EntryQuery, Store, system_clock};
use serde_json::{Value, json};

const ORIGIN: &str = "oversight.test/log";
const S: i64 = 1_000_000_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200 * S;
const ADMIN: &str = "user:admin";

struct Env {
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger<EmbeddedStore>>,
    now: Arc<AtomicI64>,
    svc: OversightService<EmbeddedStore>,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("store");
        let config = LedgerConfig {
            origin: ORIGIN.into(),
            limits: Limits::default(),
            checkpoint_interval: Duration::from_secs(3600),
        };
        let signer = Signer::from_seed(ORIGIN, [9u8; 32]).expect("signer");
        let ledger = Arc::new(
            Ledger::open(Arc::new(store), signer, config, system_clock())
                .await
                .expect("ledger"),
        );
        let now = Arc::new(AtomicI64::new(T0));
        let svc = service(&ledger, &now);
        Env {
            _dir: dir,
            ledger,
            now,
            svc,
        }
    }

    fn at(&self, secs: i64) {
        self.now.store(T0 + secs * S, Ordering::SeqCst);
    }

    async fn register(&self, id: &str, interval: u64) {
        self.svc
            .register(ADMIN, "acme", spec(id, interval))
            .await
            .expect("register");
    }

    fn status(&self, id: &str) -> (AgentStatus, ReportingStatus) {
        let v = self.svc.get("acme", id).expect("agent");
        (v.agent.status, v.agent.reporting_status)
    }

    fn types(&self, id: &str) -> Vec<String> {
        self.ledger
            .query_all(EntryQuery {
                resource: Some(format!("agent:{id}")),
                ..Default::default()
            })
            .expect("query")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    fn size(&self) -> u64 {
        self.ledger.size().expect("size")
    }

    /// Closes the store (dropping an embedded store unclosed inside the runtime can stall).
    async fn close(self) {
        self.ledger.store().close().await.expect("close");
    }
}

fn service(
    ledger: &Arc<Ledger<EmbeddedStore>>,
    now: &Arc<AtomicI64>,
) -> OversightService<EmbeddedStore> {
    let n = now.clone();
    let clock: Clock = Arc::new(move || i128::from(n.load(Ordering::SeqCst)));
    OversightService::open(ledger.clone(), OversightConfig::default(), clock).expect("service")
}

fn spec(id: &str, interval: u64) -> AgentSpec {
    AgentSpec {
        id: id.into(),
        name: Some(format!("{id} bot")),
        owner: "team-a".into(),
        description: None,
        capabilities: vec!["crm.search".into(), "mail.send".into()],
        reporting_interval_secs: Some(interval),
        exemption: None,
    }
}

fn report(metrics: &[(&str, f64)]) -> Report {
    Report {
        timestamp: Some("2026-12-01T00:00:00Z".into()),
        status: Some("healthy".into()),
        metrics: metrics
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_updates_are_entries_with_field_level_diffs() {
    let env = Env::new().await;
    env.register("crm", 300).await;
    let created = env
        .ledger
        .query_all(EntryQuery {
            event_type: Some("agent_created".into()),
            ..Default::default()
        })
        .expect("query");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor, ADMIN);
    assert_eq!(created[0].resource.as_deref(), Some("agent:crm"));
    assert_eq!(created[0].data["record"]["owner"], "team-a");

    env.at(10);
    let patch = AgentPatch {
        owner: Some("team-b".into()),
        capabilities: Some(vec!["crm.search".into()]),
        ..Default::default()
    };
    let view = env
        .svc
        .update(ADMIN, "acme", "crm", patch.clone())
        .await
        .expect("update");
    assert_eq!(view.agent.owner, "team-b");
    let updated = env
        .ledger
        .query_all(EntryQuery {
            event_type: Some("agent_updated".into()),
            ..Default::default()
        })
        .expect("query");
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0].data["changes"],
        json!({
            "owner": {"before": "team-a", "after": "team-b"},
            "capabilities": {"before": ["crm.search", "mail.send"], "after": ["crm.search"]},
        })
    );
    // The same patch again changes nothing and records nothing.
    let size = env.size();
    env.svc
        .update(ADMIN, "acme", "crm", patch)
        .await
        .expect("no-op update");
    assert_eq!(env.size(), size);

    // A second registration of the id is a conflict; another tenant has its own namespace.
    let again = env.svc.register(ADMIN, "acme", spec("crm", 300)).await;
    assert!(matches!(
        again,
        Err(OversightError::Conflict {
            code: "agent-exists",
            ..
        })
    ));
    env.svc
        .register(ADMIN, "globex", spec("crm", 300))
        .await
        .expect("other tenant");
    assert_eq!(env.svc.list("acme", None, None, 100).len(), 1);
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_changes_nothing() {
    let env = Env::new().await;
    env.register("crm", 5).await;
    let size = env.size();
    let cases: Vec<(AgentSpec, &str)> = vec![
        (
            AgentSpec {
                id: "".into(),
                ..spec("x", 5)
            },
            "id",
        ),
        (
            AgentSpec {
                id: "a b".into(),
                ..spec("x", 5)
            },
            "id",
        ),
        (
            AgentSpec {
                owner: " ".into(),
                ..spec("x", 5)
            },
            "owner",
        ),
        (
            AgentSpec {
                reporting_interval_secs: Some(0),
                ..spec("x", 5)
            },
            "reporting_interval_secs",
        ),
        (
            AgentSpec {
                capabilities: vec!["ok".into(), "".into()],
                ..spec("x", 5)
            },
            "capabilities[1]",
        ),
        (
            AgentSpec {
                exemption: Some(ExemptionGrant {
                    reason: "maintenance".into(),
                    expires_at: "2020-01-01T00:00:00Z".into(),
                }),
                ..spec("x", 5)
            },
            "exemption.expires_at",
        ),
    ];
    for (bad, field) in cases {
        match env.svc.register(ADMIN, "acme", bad).await {
            Err(OversightError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let bad_reports = [
        (report(&[("cpu_usage", f64::NAN)]), "metrics.cpu_usage"),
        (report(&[("cpu_usage", -1.0)]), "metrics.cpu_usage"),
        (
            Report {
                timestamp: Some("yesterday".into()),
                ..report(&[])
            },
            "timestamp",
        ),
    ];
    for (bad, field) in bad_reports {
        match env.svc.heartbeat("agent:crm", "acme", "crm", bad).await {
            Err(OversightError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        env.svc
            .heartbeat("agent:nope", "acme", "nope", report(&[]))
            .await,
        Err(OversightError::NotFound(_))
    ));
    assert_eq!(env.size(), size, "nothing was appended");
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_reports_walk_warned_suspended_non_compliant_exactly() {
    let env = Env::new().await;
    env.register("quiet", 5).await;
    // (seconds after registration, status, reporting status, missed recorded)
    let walk = [
        (14, AgentStatus::Active, ReportingStatus::Compliant, 0),
        (15, AgentStatus::Active, ReportingStatus::Compliant, 1),
        (20, AgentStatus::Active, ReportingStatus::Compliant, 2),
        (25, AgentStatus::Warned, ReportingStatus::Warned, 3),
        (30, AgentStatus::Warned, ReportingStatus::Warned, 4),
        (35, AgentStatus::Suspended, ReportingStatus::Suspended, 5),
        (55, AgentStatus::Suspended, ReportingStatus::Suspended, 9),
        (
            60,
            AgentStatus::NonCompliant,
            ReportingStatus::NonCompliant,
            10,
        ),
        (
            90,
            AgentStatus::NonCompliant,
            ReportingStatus::NonCompliant,
            16,
        ),
    ];
    for (secs, status, reporting, missed) in walk {
        env.at(secs);
        env.svc.enforce().await.expect("enforce");
        let v = env.svc.get("acme", "quiet").expect("agent");
        assert_eq!(
            (
                v.agent.status,
                v.agent.reporting_status,
                v.agent.missed_reports
            ),
            (status, reporting, missed),
            "at +{secs} s"
        );
        assert!(env.svc.halted("acme", "quiet").is_some() == status.halted());
    }
    let types = env.types("quiet");
    let count = |t: &str| types.iter().filter(|x| x.as_str() == t).count();
    assert_eq!(count("reporting_warning"), 1);
    assert_eq!(count("agent_suspended"), 1);
    assert_eq!(count("unsuspend_requested"), 1);
    assert_eq!(count("agent_non_compliant"), 1);
    assert_eq!(count("security_event"), 1);
    assert_eq!(count("deletion_requested"), 1);
    assert_eq!(count("heartbeat_missed"), 8, "{types:?}");
    // In order: the warning before the suspension before non-compliance.
    let pos = |t: &str| types.iter().position(|x| x == t).expect(t);
    assert!(pos("reporting_warning") < pos("agent_suspended"));
    assert!(pos("agent_suspended") < pos("agent_non_compliant"));

    // A report now resets the reporting status, but the agent stays non-compliant.
    env.at(91);
    let answer = env
        .svc
        .heartbeat(
            "agent:quiet",
            "acme",
            "quiet",
            report(&[("cpu_usage", 10.0)]),
        )
        .await
        .expect("heartbeat");
    assert_eq!(answer.reporting_status, ReportingStatus::Compliant);
    assert_eq!(answer.status, AgentStatus::NonCompliant);
    assert!(env.svc.halted("acme", "quiet").is_some());

    // The requests custos filed wait for an admin; approving the unsuspension reinstates.
    let pending = env.svc.requests("acme", Some(RequestStatus::Pending));
    assert_eq!(pending.len(), 2);
    let unsuspend = pending
        .iter()
        .find(|r| r.kind == RequestKind::Unsuspend)
        .expect("unsuspend request");
    let deletion = pending
        .iter()
        .find(|r| r.kind == RequestKind::Deletion)
        .expect("deletion request");
    let denied = env
        .svc
        .decide(ADMIN, "acme", &deletion.id, false, Some("keep it".into()))
        .await
        .expect("deny");
    assert_eq!(denied.status, RequestStatus::Denied);
    assert_eq!(denied.decided_by.as_deref(), Some(ADMIN));
    let again = env
        .svc
        .decide(ADMIN, "acme", &deletion.id, true, None)
        .await;
    assert!(matches!(
        again,
        Err(OversightError::Conflict {
            code: "request-decided",
            ..
        })
    ));
    let approved = env
        .svc
        .decide(ADMIN, "acme", &unsuspend.id, true, None)
        .await
        .expect("approve");
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(
        env.status("quiet"),
        (AgentStatus::Active, ReportingStatus::Compliant)
    );
    assert!(env.svc.halted("acme", "quiet").is_none());
    // Another tenant cannot see or decide acme's requests.
    assert!(matches!(
        env.svc
            .decide(ADMIN, "globex", &unsuspend.id, true, None)
            .await,
        Err(OversightError::NotFound(_))
    ));
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_recovers_a_warned_agent_and_a_suspended_one_waits_for_an_admin() {
    let env = Env::new().await;
    env.register("w", 5).await;
    env.at(25);
    env.svc.enforce().await.expect("enforce");
    assert_eq!(
        env.status("w"),
        (AgentStatus::Warned, ReportingStatus::Warned)
    );
    env.svc
        .heartbeat("agent:w", "acme", "w", report(&[]))
        .await
        .expect("heartbeat");
    assert_eq!(
        env.status("w"),
        (AgentStatus::Active, ReportingStatus::Compliant)
    );
    assert_eq!(env.svc.get("acme", "w").expect("w").missed_reports_now, 0);
    // Counting starts again from the report.
    env.at(25 + 24);
    env.svc.enforce().await.expect("enforce");
    assert_eq!(
        env.status("w"),
        (AgentStatus::Active, ReportingStatus::Compliant)
    );
    env.at(25 + 35);
    env.svc.enforce().await.expect("enforce");
    assert_eq!(
        env.status("w"),
        (AgentStatus::Suspended, ReportingStatus::Suspended)
    );
    env.svc
        .heartbeat("agent:w", "acme", "w", report(&[]))
        .await
        .expect("heartbeat");
    assert_eq!(
        env.status("w"),
        (AgentStatus::Suspended, ReportingStatus::Compliant)
    );
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_agents_are_not_counted_until_the_exemption_ends() {
    let env = Env::new().await;
    env.register("maint", 5).await;
    env.svc
        .grant_exemption(
            ADMIN,
            "acme",
            "maint",
            ExemptionGrant {
                reason: "planned maintenance".into(),
                expires_at: "2026-12-01T01:00:00Z".into(),
            },
        )
        .await
        .expect("grant");
    env.at(1800);
    env.svc.enforce().await.expect("enforce");
    let v = env.svc.get("acme", "maint").expect("agent");
    assert!(v.exempt);
    assert_eq!(
        (v.agent.status, v.agent.missed_reports),
        (AgentStatus::Active, 0)
    );
    assert_eq!(v.agent.health, Health::Stale, "staleness is still observed");
    // After the exemption ends, reports are counted from its end, not from registration.
    env.at(3600 + 14);
    env.svc.enforce().await.expect("enforce");
    assert_eq!(
        env.svc
            .get("acme", "maint")
            .expect("agent")
            .agent
            .missed_reports,
        0
    );
    env.at(3600 + 25);
    env.svc.enforce().await.expect("enforce");
    assert_eq!(
        env.status("maint"),
        (AgentStatus::Warned, ReportingStatus::Warned)
    );
    // Revoking an exemption it no longer has is refused.
    let r = env.svc.revoke_exemption(ADMIN, "acme", "maint").await;
    assert!(
        r.is_ok(),
        "the expired exemption is still on record and can be revoked"
    );
    let r = env.svc.revoke_exemption(ADMIN, "acme", "maint").await;
    assert!(matches!(
        r,
        Err(OversightError::Conflict {
            code: "not-exempt",
            ..
        })
    ));
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_episodes_cost_the_score_and_zero_suspends() {
    let env = Env::new().await;
    env.register("hot", 60).await;
    type Step<'a> = (&'a [(&'a str, f64)], u32, AgentStatus);
    let steps: [Step; 7] = [
        (&[("cpu_usage", 50.0)], 100, AgentStatus::Active),
        (&[("cpu_usage", 70.0)], 85, AgentStatus::Active), // warning band: −15
        (&[("cpu_usage", 72.0)], 85, AgentStatus::Active), // same episode: nothing
        (&[("cpu_usage", 90.0)], 55, AgentStatus::Active), // critical: −30
        (
            &[("cpu_usage", 10.0), ("error_rate", 6.0)],
            25,
            AgentStatus::Active,
        ),
        (&[("response_time_ms", 850.0)], 10, AgentStatus::Active),
        (&[("memory_usage", 99.0)], 0, AgentStatus::Suspended),
    ];
    for (i, (metrics, score, status)) in steps.into_iter().enumerate() {
        env.at(i as i64 * 30);
        let a = env
            .svc
            .heartbeat("agent:hot", "acme", "hot", report(metrics))
            .await
            .expect("heartbeat");
        assert_eq!((a.security_score, a.status), (score, status), "step {i}");
    }
    let types = env.types("hot");
    assert_eq!(
        types.iter().filter(|t| *t == "threshold_violation").count(),
        5
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("unsuspend_requested")
    );
    let violations = env
        .ledger
        .query_all(EntryQuery {
            event_type: Some("threshold_violation".into()),
            ..Default::default()
        })
        .expect("query");
    assert_eq!(violations[0].data["metric"], "cpu_usage");
    assert_eq!(violations[0].data["level"], "warning");
    assert_eq!(
        violations[0].data["changes"]["security_score"],
        json!({"before": 100, "after": 85})
    );
    // Approving the unsuspension gives a zero score a new start.
    let req = env.svc.requests("acme", Some(RequestStatus::Pending));
    env.svc
        .decide(ADMIN, "acme", &req[0].id, true, None)
        .await
        .expect("approve");
    assert_eq!(
        env.svc
            .get("acme", "hot")
            .expect("hot")
            .agent
            .security_score,
        100
    );
    env.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_rebuilt_from_the_ledger_equals_the_live_one() {
    let env = Env::new().await;
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        env.register(id, 5 + i as u64).await;
    }
    for t in 0..40 {
        env.at(t * 3);
        if t % 2 == 0 {
            env.svc
                .heartbeat(
                    "agent:a",
                    "acme",
                    "a",
                    report(&[("cpu_usage", (t * 7 % 100) as f64)]),
                )
                .await
                .expect("a");
        }
        if t < 10 {
            env.svc
                .heartbeat(
                    "agent:b",
                    "acme",
                    "b",
                    report(&[("error_rate", (t % 7) as f64)]),
                )
                .await
                .expect("b");
        }
        if t == 12 {
            env.svc
                .update(
                    ADMIN,
                    "acme",
                    "c",
                    AgentPatch {
                        reporting_interval_secs: Some(9),
                        ..Default::default()
                    },
                )
                .await
                .expect("c");
        }
        if t == 2 {
            env.svc
                .suspend(ADMIN, "acme", "d", "investigation")
                .await
                .expect("d");
        }
        env.svc.enforce().await.expect("enforce");
    }
    let mut settings = env.svc.settings("acme");
    settings.reporting.warn_after = 2;
    env.svc
        .set_settings(ADMIN, "acme", settings)
        .await
        .expect("settings");
    env.svc
        .delete(ADMIN, "acme", "c", "retired")
        .await
        .expect("delete");

    let live = env.svc.snapshot();
    let rebuilt = rebuild(&env.ledger).expect("rebuild");
    assert_eq!(
        serde_json::to_value(&rebuilt).expect("json"),
        serde_json::to_value(&live).expect("json")
    );
    assert_eq!(rebuilt, live);
    // Statuses are not all alike, so the comparison covers every kind of change.
    let statuses: std::collections::BTreeSet<_> = live.agents.values().map(|a| a.status).collect();
    assert!(statuses.len() >= 3, "{statuses:?}");
    // A service opened again on the same ledger starts from the same registry.
    let reopened = service(&env.ledger, &env.now);
    assert_eq!(reopened.snapshot(), live);
    let v: Value = serde_json::to_value(reopened.get("acme", "d").expect("d")).expect("json");
    assert_eq!(
        v["status"], "non_compliant",
        "d never reported: suspended, then non-compliant"
    );
    env.close().await;
}
