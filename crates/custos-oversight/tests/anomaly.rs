//! Behavioural anomaly detection (SPEC §5.3): robust statistics as tables, bounded NaN-safe
//! scores, the scenarios it must flag and the one it must not, warm-up, poisoning, the
//! detector's bounds, and the measured evaluation on synthetic traffic.

use custos_core::entry::{Entry, Outcome, Severity};
use custos_oversight::anomaly::stats::{Robust, mad, median, noisy_or, quantile, ramp};
use custos_oversight::anomaly::synthetic::{Scenario, TrafficConfig};
use custos_oversight::anomaly::{
    AgentProfile, AnomalyConfig, Assessment, Detector, EvalConfig, Feature, MAX_EXPLANATION_BYTES,
    MAX_LISTED_FEATURES, Observation, evaluate,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Monday 2026-01-05 09:00:00 UTC, in seconds.
const MONDAY_9AM: i64 = 1_767_603_600;
const WINDOW: i64 = 60;

fn nanos(secs: i64) -> i128 {
    i128::from(secs) * 1_000_000_000
}

/// A successful tool call at `secs`.
fn call(secs: i64, tool: &str, resource: &str) -> Observation {
    Observation {
        ts_nanos: nanos(secs),
        kind: "tool_invocation".into(),
        tool: Some(tool.into()),
        resource: Some(resource.into()),
        target: None,
        failed: false,
        latency_ms: Some(100.0),
        tokens: None,
        bytes: Some(2_000.0),
    }
}

const TOOLS: [&str; 3] = ["crm.search", "crm.update", "email.send"];
const RESOURCES: [&str; 2] = ["/crm/contacts", "/crm/accounts"];

/// The `k`-th habitual call of a window starting at `start`: 18–22 calls a window, the same
/// tools and resources, latencies around 100 ms, one failure in a hundred.
fn habitual(start: i64, window: i64, k: i64) -> Observation {
    let mut o = call(
        start + (k * 2) % WINDOW,
        TOOLS[(k % 3) as usize],
        RESOURCES[(k % 2) as usize],
    );
    o.latency_ms = Some(90.0 + ((window + k) % 7) as f64 * 3.0);
    o.failed = (window * 31 + k) % 100 == 0;
    o
}

/// Feeds `windows` habitual windows, starting with the window at `start`, and closes the
/// last; returns the assessments.
fn work(p: &mut AgentProfile, cfg: &AnomalyConfig, start: i64, windows: i64) -> Vec<Assessment> {
    let mut out = Vec::new();
    for w in 0..windows {
        let s = start + w * WINDOW;
        for k in 0..(18 + w % 5) {
            out.extend(p.observe(&habitual(s, w, k), cfg));
        }
    }
    out.extend(p.close_until(nanos(start + windows * WINDOW), cfg));
    out
}

/// Feeds `observations` as one window at `start`, then closes it.
fn window(
    p: &mut AgentProfile,
    cfg: &AnomalyConfig,
    start: i64,
    observations: impl IntoIterator<Item = Observation>,
) -> Assessment {
    for o in observations {
        assert_eq!(p.observe(&o, cfg), None, "earlier windows were closed");
    }
    p.close_until(nanos(start + WINDOW), cfg)
        .expect("a window after warm-up is assessed")
}

/// A profile with `windows` habitual windows behind it, all quiet; returns the next start.
fn stable(cfg: &AnomalyConfig, windows: i64) -> (AgentProfile, i64) {
    let mut p = AgentProfile::new();
    let quiet = work(&mut p, cfg, MONDAY_9AM, windows);
    assert!(
        quiet.iter().all(|a| !a.flagged),
        "habitual work is not flagged: {quiet:#?}"
    );
    (p, MONDAY_9AM + windows * WINDOW)
}

#[test]
fn robust_statistics_table() {
    // values → (median, MAD)
    type MedianMad = Option<(f64, f64)>;
    let cases: [(&[f64], MedianMad); 6] = [
        (&[], None),
        (&[f64::NAN, f64::INFINITY], None),
        (&[5.0], Some((5.0, 0.0))),
        (&[1.0, 2.0, 3.0, 4.0, 100.0], Some((3.0, 1.0))),
        (&[1.0, 2.0, 3.0, 4.0], Some((2.5, 1.0))),
        (&[7.0, 7.0, 7.0, f64::NAN, 7.0], Some((7.0, 0.0))),
    ];
    for (values, want) in cases {
        let got = median(values).zip(mad(values));
        assert_eq!(got, want, "{values:?}");
    }
    let mut v = vec![0.0, 10.0, 20.0, 30.0, 40.0];
    assert_eq!(quantile(&mut v, 0.95), Some(38.0));

    // baseline, x, floor → z: 1.4826·MAD, the p95 tail spread, or the floor, whichever is
    // largest; a constant baseline divides by the floor, never by zero.
    let r = |median: f64, mad: f64, upper: f64| Robust {
        median,
        mad,
        upper,
        n: 100,
    };
    let cases: [(Robust, f64, f64, Option<f64>); 6] = [
        (r(20.0, 3.0, 25.0), 412.0, 1.0, Some(392.0 / (3.0 * 1.4826))),
        (
            r(20.0, 0.0, 20.0),
            30.0,
            20f64.sqrt(),
            Some(10.0 / 20f64.sqrt()),
        ),
        (r(0.0, 0.0, 1.644_853_6), 10.0, 0.1, Some(10.0)),
        (r(20.0, 3.0, 25.0), 10.0, 1.0, Some(-10.0 / (3.0 * 1.4826))),
        (r(20.0, 0.0, 20.0), 25.0, 0.0, Some(5.0e9)),
        (r(20.0, 3.0, 25.0), f64::NAN, 1.0, None),
    ];
    for (baseline, x, floor, want) in cases {
        let got = baseline.z(x, floor);
        match (got, want) {
            (Some(g), Some(w)) => {
                assert!((g - w).abs() < 1e-6 * w.abs().max(1.0), "{x}: {g} vs {w}")
            }
            _ => assert_eq!(got, want, "{x}"),
        }
    }

    // z → share of the weight: nothing up to z 3, all of it from z 10, nothing downwards.
    for (z, want) in [
        (-50.0, 0.0),
        (2.9, 0.0),
        (3.0, 0.0),
        (6.5, 0.5),
        (10.0, 1.0),
        (1e9, 1.0),
    ] {
        assert!((ramp(z, 3.0, 10.0) - want).abs() < 1e-12, "ramp({z})");
    }
    assert_eq!(ramp(f64::NAN, 3.0, 10.0), 0.0);
    for (cs, want) in [
        (vec![], 0.0),
        (vec![0.5, 0.5], 0.75),
        (vec![0.4, f64::NAN, 2.0], 1.0),
        (vec![-1.0, 0.3], 0.3),
    ] {
        assert!((noisy_or(cs.clone()) - want).abs() < 1e-12, "{cs:?}");
    }
}

#[test]
fn warm_up_produces_no_assessments() {
    let cfg = AnomalyConfig::default();
    let mut p = AgentProfile::new();
    // Even a wild first stretch (a burst in window 5) is only learned from.
    let mut assessed = Vec::new();
    for w in 0..cfg.min_baseline_windows as i64 {
        let s = MONDAY_9AM + w * WINDOW;
        let n = if w == 5 { 400 } else { 20 };
        for k in 0..n {
            assessed.extend(p.observe(&call(s + k % 60, "crm.search", "/crm/contacts"), &cfg));
        }
    }
    let next = MONDAY_9AM + cfg.min_baseline_windows as i64 * WINDOW;
    assessed.extend(p.close_until(nanos(next), &cfg));
    assert!(assessed.is_empty(), "{assessed:#?}");
    assert_eq!(p.baseline_windows(), cfg.min_baseline_windows);
    let a = window(
        &mut p,
        &cfg,
        next,
        (0..20).map(|k| call(next + k, "crm.search", "/crm/contacts")),
    );
    assert!(!a.flagged);
}

#[test]
fn burst_is_flagged_with_action_rate_on_top() {
    let cfg = AnomalyConfig::default();
    let (mut p, next) = stable(&cfg, 200);
    let a = window(&mut p, &cfg, next, (0..400).map(|k| habitual(next, 0, k)));
    assert!(a.flagged, "{a:#?}");
    assert_eq!(a.top_feature(), Some(Feature::ActionRate), "{a:#?}");
    assert!(
        a.explanation
            .starts_with("action_rate 400/window vs median 20 (MAD 1"),
        "{}",
        a.explanation
    );
    assert_eq!(a.score, 1.0);
    assert_eq!(a.actions, 400);
}

#[test]
fn new_resource_with_huge_bytes_is_flagged_with_both_features() {
    let cfg = AnomalyConfig::default();
    let (mut p, next) = stable(&cfg, 200);
    let exfil = (0..3).map(|k| {
        let mut o = call(next + 10 * k, "crm.search", "s3://exfil-bucket");
        o.bytes = Some(200e6);
        o
    });
    let normal = (0..17).map(|k| habitual(next, 0, k));
    let a = window(&mut p, &cfg, next, exfil.chain(normal));
    assert!(a.flagged, "{a:#?}");
    assert!(
        a.lists(Feature::Bytes) && a.lists(Feature::NewResource),
        "{a:#?}"
    );
    assert!(
        a.explanation.contains("bytes 600 MB/window"),
        "{}",
        a.explanation
    );
    assert!(
        a.explanation.contains("new resource s3://exfil-bucket"),
        "{}",
        a.explanation
    );
}

#[test]
fn new_tool_alone_is_scored_but_not_flagged() {
    let cfg = AnomalyConfig::default();
    let (mut p, next) = stable(&cfg, 200);
    let normal = (0..19).map(|k| habitual(next, 0, k));
    let a = window(
        &mut p,
        &cfg,
        next,
        normal.chain([call(next + 50, "shell.exec", "/crm/contacts")]),
    );
    assert!(!a.flagged, "{a:#?}");
    assert_eq!(a.top_feature(), Some(Feature::NewTool), "{a:#?}");
    assert!(a.score > 0.3 && a.score < cfg.threshold, "{}", a.score);
    assert_eq!(a.explanation, "new tool shell.exec");
    // Learned from the unflagged window: not new again.
    assert!(p.knows_tool("shell.exec"));
    let next = next + WINDOW;
    let b = window(
        &mut p,
        &cfg,
        next,
        (0..20).map(|k| call(next + k, "shell.exec", "/crm/contacts")),
    );
    assert!(!b.lists(Feature::NewTool), "{b:#?}");
}

#[test]
fn error_storm_is_flagged_with_error_rate_on_top() {
    let cfg = AnomalyConfig::default();
    let (mut p, next) = stable(&cfg, 200);
    let storm = (0..20).map(|k| {
        let mut o = habitual(next, 0, k);
        o.failed = k % 5 != 0;
        o
    });
    let a = window(&mut p, &cfg, next, storm);
    assert!(a.flagged, "{a:#?}");
    assert_eq!(a.top_feature(), Some(Feature::ErrorRate), "{a:#?}");
    assert!(
        a.explanation.starts_with("error_rate 80% (16 of 20)"),
        "{}",
        a.explanation
    );
}

#[test]
fn off_hours_activity_is_flagged_once_a_day_is_known() {
    let cfg = AnomalyConfig::default();
    let mut p = AgentProfile::new();
    // Two working days, 09:00–17:00.
    for day in 0..2 {
        let quiet = work(&mut p, &cfg, MONDAY_9AM + day * 86_400, 8 * 60);
        assert!(quiet.iter().all(|a| !a.flagged), "{quiet:#?}");
    }
    // 03:00 on the third day, ordinary work otherwise.
    let three_am = MONDAY_9AM + 2 * 86_400 - 6 * 3600;
    let a = window(
        &mut p,
        &cfg,
        three_am,
        (0..20).map(|k| habitual(three_am, 0, k)),
    );
    assert!(a.flagged, "{a:#?}");
    assert_eq!(a.top_feature(), Some(Feature::HourOfDay));
    assert!(
        a.explanation.starts_with("activity at 03h UTC"),
        "{}",
        a.explanation
    );
    // The same work at 10:00 is ordinary.
    let ten_am = MONDAY_9AM + 2 * 86_400 + 3600;
    let b = window(
        &mut p,
        &cfg,
        ten_am,
        (0..20).map(|k| habitual(ten_am, 0, k)),
    );
    assert!(!b.flagged && !b.lists(Feature::HourOfDay), "{b:#?}");
}

#[test]
fn flagged_windows_teach_the_baseline_nothing() {
    let cfg = AnomalyConfig::default();
    let (mut p, mut next) = stable(&cfg, 200);
    let before = p.baseline_windows();
    for _ in 0..5 {
        let burst = (0..400).map(|k| {
            let mut o = habitual(next, 0, k);
            o.resource = Some("s3://exfil-bucket".into());
            o
        });
        let a = window(&mut p, &cfg, next, burst);
        assert!(a.flagged && a.lists(Feature::NewResource), "{a:#?}");
        next += WINDOW;
    }
    assert_eq!(p.baseline_windows(), before);
    let a = window(&mut p, &cfg, next, (0..20).map(|k| habitual(next, 0, k)));
    assert!(!a.flagged, "{a:#?}");
    assert_eq!(p.baseline_windows(), before + 1);
}

#[test]
fn full_name_books_stop_novelty_and_count_what_they_drop() {
    let cfg = AnomalyConfig {
        max_names_per_kind: 5,
        ..AnomalyConfig::default()
    };
    let (mut p, next) = stable(&cfg, 50);
    // Three resources are known (two habitual); two more fill the book.
    let fill = (0..20).map(|k| call(next + k, "crm.search", ["/a", "/b"][(k % 2) as usize]));
    let a = window(&mut p, &cfg, next, fill);
    assert!(a.lists(Feature::NewResource), "{a:#?}");
    let next = next + WINDOW;
    let more = (0..20).map(|k| call(next + k, "crm.search", ["/c", "/d", "/e"][(k % 3) as usize]));
    let b = window(&mut p, &cfg, next, more);
    assert!(b.lists(Feature::NewResource), "{b:#?}");
    assert_eq!(p.names_not_learned(), 2);
    let next = next + WINDOW;
    let c = window(
        &mut p,
        &cfg,
        next,
        (0..20).map(|k| call(next + k, "crm.search", "/f")),
    );
    assert!(
        !c.lists(Feature::NewResource),
        "a full book no longer calls names new: {c:#?}"
    );
}

fn entry(actor: &str, event_type: &str, ts_secs: i64) -> Entry {
    let mut data = Map::new();
    data.insert("tool".into(), json!("crm.search"));
    Entry {
        seq: 0,
        id: "0".into(),
        ts: custos_core::time::format_utc_nanos(nanos(ts_secs)).expect("in range"),
        client_ts: None,
        tenant: "acme".into(),
        event_type: event_type.into(),
        actor: actor.into(),
        action: "allow".into(),
        resource: Some("/crm/contacts".into()),
        target: None,
        outcome: Outcome::Success,
        severity: Severity::Info,
        policy_decision: None,
        matched_rule: None,
        trace_id: None,
        session_id: None,
        request: None,
        data,
        prev_hash: "0".repeat(64),
    }
}

#[test]
fn detector_reads_entries_bounds_agents_and_ticks() {
    let cfg = AnomalyConfig {
        min_baseline_windows: 2,
        max_agents: 2,
        ..AnomalyConfig::default()
    };
    let mut d = Detector::new(cfg).expect("valid");
    for w in 0..3 {
        for agent in ["agent:a", "agent:b", "agent:c"] {
            let t = MONDAY_9AM + w * WINDOW;
            assert_eq!(d.observe_entry(&entry(agent, "tool_invocation", t)), None);
            // What custos writes about agents, and what users do, is not agent behaviour.
            for (actor, event_type) in [
                (agent, "heartbeat"),
                (agent, "rogue_detection"),
                (agent, "review_decision"),
                ("user:alice", "tool_invocation"),
            ] {
                assert_eq!(d.observe_entry(&entry(actor, event_type, t)), None);
            }
        }
    }
    assert_eq!(d.tracked_agents(), 2);
    assert_eq!(
        d.refused_observations(),
        3,
        "agent c is refused, and counted"
    );
    assert!(d.profile("acme", "c").is_none());
    // Window 2 of a and b is open; a tick past its end scores it, in a stable order.
    let ticked = d.tick(nanos(MONDAY_9AM + 3 * WINDOW));
    let who: Vec<&str> = ticked.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(who, ["a", "b"]);
    assert!(
        d.tick(nanos(MONDAY_9AM + 10 * WINDOW)).is_empty(),
        "nothing left open"
    );
    assert!(d.forget("acme", "a"));
    assert!(!d.forget("acme", "a"));
    d.observe_entry(&entry(
        "agent:c",
        "tool_invocation",
        MONDAY_9AM + 20 * WINDOW,
    ));
    assert!(d.profile("acme", "c").is_some(), "forgetting frees a place");
    assert!(
        Detector::new(AnomalyConfig {
            threshold: 0.0,
            ..AnomalyConfig::default()
        })
        .is_err()
    );
}

#[test]
fn assessments_serialize_compactly() {
    let cfg = AnomalyConfig::default();
    let (mut p, next) = stable(&cfg, 100);
    let long = "x".repeat(5_000);
    let wild = (0..500).map(|k| {
        let mut o = call(
            next + k % 60,
            &format!("tool-{k}-{long}"),
            &format!("/r/{k}"),
        );
        o.bytes = Some(1e9);
        o.latency_ms = Some(1e5);
        o.failed = true;
        o.target = Some(format!("agent:{k}"));
        o.tokens = Some(1e7);
        o
    });
    let a = window(&mut p, &cfg, next, wild);
    assert!(a.flagged);
    assert_eq!(a.features.len(), MAX_LISTED_FEATURES);
    assert!(
        a.explanation.len() <= MAX_EXPLANATION_BYTES,
        "{}",
        a.explanation.len()
    );
    let json = serde_json::to_value(&a).expect("serializes");
    assert_eq!(
        json["window_start"],
        json!("2026-01-05T10:40:00.000000000Z")
    );
    assert_eq!(json["flagged"], json!(true));
    let text = json.to_string();
    assert!(text.len() < 4_096, "{} bytes: {text}", text.len());
    let features = json["features"].as_array().expect("features");
    let contributions: Vec<f64> = features
        .iter()
        .filter_map(|f| f["contribution"].as_f64())
        .collect();
    assert!(
        contributions.windows(2).all(|w| w[0] >= w[1]),
        "{contributions:?}"
    );
    assert!(
        features
            .iter()
            .all(|f| f.get("feature").is_some_and(Value::is_string))
    );
}

fn small_cfg() -> AnomalyConfig {
    AnomalyConfig {
        min_baseline_windows: 3,
        hour_of_day_min_span_secs: 600,
        ..AnomalyConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the numbers (NaN, infinities, negatives, huge), every score and contribution
    /// is finite and in [0, 1], and flagged means score ≥ threshold.
    #[test]
    fn scores_are_bounded_and_nan_safe(
        steps in prop::collection::vec(
            (0i64..300, 0usize..6, any::<bool>(),
             prop::num::f64::ANY, prop::num::f64::ANY, prop::num::f64::ANY),
            1..400,
        )
    ) {
        let cfg = small_cfg();
        let mut p = AgentProfile::new();
        let mut t = MONDAY_9AM;
        let mut assessed = Vec::new();
        for (gap, tool, failed, latency, tokens, bytes) in steps {
            t += gap;
            let o = Observation {
                ts_nanos: nanos(t),
                kind: "tool_invocation".into(),
                tool: Some(format!("tool-{tool}")),
                resource: Some(format!("/r/{}", tool % 3)),
                target: (tool == 5).then(|| "agent:peer".to_string()),
                failed,
                latency_ms: Some(latency),
                tokens: Some(tokens),
                bytes: Some(bytes),
            };
            assessed.extend(p.observe(&o, &cfg));
        }
        assessed.extend(p.close_until(nanos(t + WINDOW), &cfg));
        for a in &assessed {
            prop_assert!(a.score.is_finite() && (0.0..=1.0).contains(&a.score), "{a:?}");
            prop_assert_eq!(a.flagged, a.score >= cfg.threshold);
            for f in &a.features {
                prop_assert!((0.0..=1.0).contains(&f.contribution), "{f:?}");
                prop_assert!(f.value.is_finite(), "{f:?}");
                prop_assert!(f.z.is_none_or(f64::is_finite), "{f:?}");
            }
            prop_assert!(serde_json::to_string(a).is_ok());
        }
    }
}

#[test]
fn evaluation_is_deterministic() {
    let cfg = EvalConfig {
        traffic: TrafficConfig {
            agents: 3,
            days: 3,
            clean_days: 2,
            episodes_per_agent: 2,
            ..TrafficConfig::default()
        },
        detector: AnomalyConfig::default(),
    };
    let a = evaluate(11, &cfg).expect("valid");
    assert_eq!(a, evaluate(11, &cfg).expect("valid"));
    assert_eq!(
        a.to_string(),
        evaluate(11, &cfg).expect("valid").to_string()
    );
    assert_ne!(
        a.observations,
        evaluate(12, &cfg).expect("valid").observations
    );
    let bad = EvalConfig {
        traffic: TrafficConfig {
            clean_days: 3,
            ..cfg.traffic.clone()
        },
        ..cfg
    };
    assert!(evaluate(11, &bad).is_err());
}

/// The measured quality on synthetic traffic (12 agents, 4 days, 4 episodes each; run with
/// `--nocapture` to see the table). The floors sit below what seeds 1–8 measured, so they
/// fail on a real regression, not on noise; see the module docs for the numbers.
#[test]
fn evaluation_on_synthetic_traffic() {
    let report = evaluate(1, &EvalConfig::small()).expect("valid config");
    println!("{report}");
    let scenario = |s: Scenario| report.scenario(s).expect("every scenario is reported");
    assert!(report.windows_scored > 20_000, "{}", report.windows_scored);
    assert!(report.precision >= 0.9, "precision {}", report.precision);
    assert!(
        report.false_positive_rate <= 0.001,
        "fpr {}",
        report.false_positive_rate
    );
    assert!(
        report.recall_without_new_tool >= 0.8,
        "{}",
        report.recall_without_new_tool
    );
    assert!(report.f1 >= 0.85, "f1 {}", report.f1);
    for (s, floor) in [
        (Scenario::Burst, 0.7),
        (Scenario::Exfiltration, 0.85),
        (Scenario::OffHours, 0.9),
        (Scenario::ErrorStorm, 0.5),
    ] {
        let r = scenario(s);
        assert!(r.episodes >= 8, "{s:?}: {r:?}");
        assert!(
            r.recall >= floor,
            "{s:?} window recall {} < {floor}",
            r.recall
        );
        assert!(
            r.episodes_detected as f64 >= 0.7 * r.episodes as f64,
            "{s:?}: {r:?}"
        );
    }
    // By design a new tool alone is reported, not flagged.
    let new_tool = scenario(Scenario::NewTool);
    assert!(new_tool.episodes >= 8, "{new_tool:?}");
    assert!(new_tool.recall <= 0.2, "{new_tool:?}");
    assert!(
        new_tool.mean_score > 0.3 && new_tool.mean_score < report.threshold,
        "{new_tool:?}"
    );
}

/// The larger measurement behind the module docs' table: a week of 24 agents, seeds 1–5, and
/// the small run over seeds 1–8. Slow in debug; run it with
/// `cargo test --release -p custos-oversight --test anomaly -- --ignored --nocapture`.
#[test]
#[ignore]
fn evaluation_over_seeds() {
    for (cfg, seeds) in [(EvalConfig::small(), 1..=8), (EvalConfig::default(), 1..=5)] {
        for seed in seeds {
            let report = evaluate(seed, &cfg).expect("valid config");
            println!("{report}\n");
            assert!(report.precision >= 0.9, "seed {seed}: {}", report.precision);
            assert!(report.recall_without_new_tool >= 0.8, "seed {seed}");
        }
    }
}
