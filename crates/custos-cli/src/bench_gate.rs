//! `custos bench --gate`: review latency of the plan gate without an LLM (SPEC §10: p99 ≤ 10 ms)
//! — plan normalisation, the built-in Rego policies, the deterministic intent verifier, the
//! decision rule, the summary and the plan hash, per plan. Then the same reviews through the
//! gate service, recorded: each a new request id, its decision appended durably (fdatasync) to
//! an embedded ledger in a scratch directory, signed, its token issued. Prints what it
//! measured.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::bench::percentile;
use anyhow::Context;
use custos_gate::decision::DEFAULT_MIN_CONFIDENCE;
use custos_gate::policy::RegoPolicyEngine;
use custos_gate::request::{Metadata, ReviewRequest};
use custos_gate::review::Reviewer;
use custos_gate::service::{GateConfig, GateService, Principal};
use serde::Serialize;

/// The documented scenarios, built in so the bench runs anywhere.
const SCENARIOS: [(&str, &str, &str); 4] = [
    (
        "scenario-a",
        "Add a new microsegment for machine learning workloads with GPU instances",
        include_str!("../../custos-gate/tests/plans/scenario-a.json"),
    ),
    (
        "scenario-b",
        "Add a new microsegment for machine learning workloads with GPU instances",
        include_str!("../../custos-gate/tests/plans/scenario-b.json"),
    ),
    (
        "scenario-c",
        "Clean up old dev environments",
        include_str!("../../custos-gate/tests/plans/scenario-c.json"),
    ),
    (
        "scenario-d",
        "Scale up our production API to handle Black Friday traffic",
        include_str!("../../custos-gate/tests/plans/scenario-d.json"),
    ),
];

#[derive(Serialize)]
struct PlanFigures {
    plan: String,
    actions: usize,
    decision: String,
    reviews: usize,
    ms_p50: f64,
    ms_p99: f64,
    ms_max: f64,
    recorded_reviews: usize,
    recorded_ms_p50: f64,
    recorded_ms_p99: f64,
}

/// Reviews each plan `rounds` times (after a warm-up) and prints p50/p99 per plan.
pub async fn run(
    extra: &[PathBuf],
    rounds: usize,
    dir: Option<PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let engine = Arc::new(RegoPolicyEngine::builtin().context("compiling the built-in policies")?);
    let reviewer = Reviewer {
        policies: engine.as_ref(),
        llm: None,
        min_confidence: DEFAULT_MIN_CONFIDENCE,
    };
    let mut plans: Vec<(String, String, serde_json::Value)> = Vec::new();
    for (name, request, text) in SCENARIOS {
        plans.push((
            name.into(),
            request.into(),
            serde_json::from_str(text).context("a built-in scenario plan")?,
        ));
    }
    for path in extra {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let value = custos_gate::plan::decode_plan(&bytes)
            .with_context(|| format!("reading {}", path.display()))?
            .value;
        plans.push((
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            "Apply this change".into(),
            value,
        ));
    }
    // The recorded reviews: a gate service over a fresh embedded ledger.
    let dir = crate::bench::scratch_dir(dir, "custos-bench-gate")?;
    crate::datadir::init(&dir, Some("custos.bench/gate".into()))?;
    let ledger = crate::datadir::open(&dir).await?;
    let gate = GateService::new(
        ledger.clone(),
        engine.clone(),
        None,
        GateConfig::default(),
        custos_store::system_clock(),
    );
    let caller = Principal {
        tenant: "bench".into(),
        actor: "user:bench".into(),
        agent: None,
        roles: vec!["orchestrator".into()],
    };
    let recorded_rounds = (rounds / 4).max(1);
    let mut figures = Vec::new();
    for (name, user_request, plan) in plans {
        let request = ReviewRequest {
            request_id: format!("bench-{name}"),
            user_request,
            plan,
            metadata: Metadata {
                user: Some("bench@example.com".into()),
                ..Metadata::default()
            },
            infracost: None,
        };
        let mut times = Vec::with_capacity(rounds);
        let mut decision = String::new();
        let mut actions = 0;
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            let (evaluation, normalised) = reviewer
                .evaluate(&request)
                .await
                .with_context(|| format!("reviewing {name}"))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if i >= rounds / 10 {
                times.push(ms);
            }
            decision = evaluation.decision.as_str().into();
            actions = normalised.actions.len();
        }
        times.sort_by(f64::total_cmp);
        let mut recorded = Vec::with_capacity(recorded_rounds);
        for i in 0..recorded_rounds + recorded_rounds / 10 {
            let request = ReviewRequest {
                request_id: format!("bench-{name}-{i}"),
                ..request.clone()
            };
            let t = Instant::now();
            gate.review(&caller, request)
                .await
                .with_context(|| format!("reviewing {name} through the gate service"))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if i >= recorded_rounds / 10 {
                recorded.push(ms);
            }
        }
        recorded.sort_by(f64::total_cmp);
        let f = PlanFigures {
            plan: name,
            actions,
            decision,
            reviews: times.len(),
            ms_p50: percentile(&times, 0.5),
            ms_p99: percentile(&times, 0.99),
            ms_max: times.last().copied().unwrap_or(0.0),
            recorded_reviews: recorded.len(),
            recorded_ms_p50: percentile(&recorded, 0.5),
            recorded_ms_p99: percentile(&recorded, 0.99),
        };
        if !json_out {
            println!(
                "gate  {:<24} {:>3} actions  {:<9} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms ({} reviews)",
                f.plan, f.actions, f.decision, f.ms_p50, f.ms_p99, f.ms_max, f.reviews
            );
            println!(
                "      {:<24} recorded (durable, signed): p50 {:.2} ms  p99 {:.2} ms ({} reviews)",
                "", f.recorded_ms_p50, f.recorded_ms_p99, f.recorded_reviews
            );
        }
        figures.push(f);
    }
    custos_store::Store::close(ledger.store().as_ref())
        .await
        .context("closing the bench ledger")?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&figures).context("encoding figures")?
        );
    }
    Ok(())
}
