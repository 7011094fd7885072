//! The plan gate's offline commands: `custos policy test DIR` and `custos token verify`.

mod support;

use std::process::Command;

use custos_core::note::Signer;
use custos_gate::token;
use support::*;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .output()
        .expect("run custos")
}

#[test]
fn policy_test_runs_operator_rego_tests_and_fails_on_a_failing_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    std::fs::write(
        dir.join("no_friday.rego"),
        "package custos.operator.no_friday\n\nviolations contains v if {\n    input.request.metadata.day == \"friday\"\n    v := {\"message\": \"no changes on Fridays\", \"severity\": \"medium\"}\n}\n",
    )
    .expect("write policy");
    std::fs::write(
        dir.join("no_friday_test.rego"),
        "package custos.operator.no_friday_test\n\nimport data.custos.operator.no_friday\n\ntest_friday_is_refused if {\n    count(no_friday.violations) == 1 with input as {\"request\": {\"metadata\": {\"day\": \"friday\"}}, \"plan\": {\"actions\": []}}\n}\n\ntest_monday_is_fine if {\n    count(no_friday.violations) == 0 with input as {\"request\": {\"metadata\": {\"day\": \"monday\"}}, \"plan\": {\"actions\": []}}\n}\n",
    )
    .expect("write test");
    let out = run(&["policy", "test", dir.to_str().expect("utf-8 path")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 passed, 0 failed, 0 errors"), "{text}");

    // A test that fails: exit 1, named.
    std::fs::write(
        dir.join("wrong_test.rego"),
        "package custos.operator.wrong_test\n\nimport data.custos.operator.no_friday\n\ntest_monday_is_refused if {\n    count(no_friday.violations) == 1 with input as {\"request\": {\"metadata\": {\"day\": \"monday\"}}, \"plan\": {\"actions\": []}}\n}\n",
    )
    .expect("write failing test");
    let out = run(&["policy", "test", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL") && text.contains("test_monday_is_refused"),
        "{text}"
    );

    // An operator file may not replace a built-in policy: bad input (exit 2), named.
    std::fs::write(
        dir.join("sneaky.rego"),
        "package custos.hard.no_public_production_access\n\nviolations := []\n",
    )
    .expect("write sneaky policy");
    let out = run(&["policy", "test", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sneaky.rego"),
        "{out:?}"
    );
}

#[test]
fn token_verify_checks_signature_expiry_and_binding_offline() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "gate.example/log"]));
    let key_text = std::fs::read_to_string(data.join("keys/log.key")).expect("log key");
    let signer = Signer::parse(key_text.trim()).expect("signer");
    let now = 1_795_000_000_000_000_000i128;
    let claims = token::claims(
        "gate.example/log",
        "acme",
        "req-7",
        "sha256:0011",
        12,
        "tok-7",
        now,
        token::DEFAULT_TTL_NANOS,
    )
    .expect("claims");
    let t = token::issue(&signer, &claims).expect("issue");
    let pubkey = data.join("log.pub");
    let key = pubkey.to_str().expect("utf-8 path");
    let at = custos_core::time::format_utc_nanos(now + 60_000_000_000).expect("time");
    let out = run(&[
        "token",
        "verify",
        &t,
        "--key",
        key,
        "--at",
        &at,
        "--request-id",
        "req-7",
        "--plan-hash",
        "sha256:0011",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("approves request req-7"), "{text}");

    for (args, says) in [
        (vec!["--plan-hash", "sha256:ffff"], "plan_hash"),
        (vec!["--request-id", "req-8"], "request_id"),
    ] {
        let mut all = vec![
            "token",
            "verify",
            t.as_str(),
            "--key",
            key,
            "--at",
            at.as_str(),
        ];
        all.extend(args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{out:?}"
        );
    }
    let late = custos_core::time::format_utc_nanos(now + token::DEFAULT_TTL_NANOS).expect("time");
    let out = run(&["token", "verify", &t, "--key", key, "--at", &late]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired"),
        "{out:?}"
    );
    // Another log's key: the signature does not verify.
    let other = tmp.path().join("other");
    ok(&custos(&other, &["init", "--origin", "gate.example/log"]));
    let other_key = other.join("log.pub");
    let out = run(&[
        "token",
        "verify",
        &t,
        "--key",
        other_key.to_str().expect("utf-8"),
        "--at",
        &at,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{out:?}"
    );
    let out = run(&["token", "verify", "not-a-token!", "--key", key]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn bench_gate_reports_pure_and_recorded_review_latency_per_plan() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = run(&[
        "--json",
        "bench",
        "--gate",
        "--rounds",
        "8",
        "--dir",
        tmp.path().to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let figures: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the figures as JSON");
    let plans = figures.as_array().expect("one row per plan");
    let decisions: Vec<&str> = plans
        .iter()
        .map(|p| p["decision"].as_str().expect("decision"))
        .collect();
    assert_eq!(decisions, ["approved", "vetoed", "escalated", "escalated"]);
    for p in plans {
        assert_eq!(p["reviews"], 8, "{p}");
        assert_eq!(p["recorded_reviews"], 2, "{p}");
        let (pure, recorded) = (&p["ms_p50"], &p["recorded_ms_p50"]);
        assert!(pure.as_f64().is_some_and(|ms| ms > 0.0), "{p}");
        assert!(recorded.as_f64().is_some_and(|ms| ms > 0.0), "{p}");
    }
    // The scratch ledger is removed afterwards.
    assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
}
