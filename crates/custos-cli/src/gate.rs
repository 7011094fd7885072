//! The plan gate's offline commands: `custos policy test DIR`, `custos token verify` and
//! `custos decision verify`.

use std::path::Path;

use anyhow::Context;
use custos_gate::policy::{SoftPolicyConfig, run_policy_tests};
use custos_gate::token;
use serde_json::json;

use crate::commands::{bad, integrity, print_json, read_verifier};

/// Runs the Rego unit tests (`test_*` rules in `*_test.rego`) of the operator policies in
/// `dir` against custos's built-in bundle. Exit 1 when a test fails or errs.
pub fn policy_test(dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let report =
        run_policy_tests(dir, &SoftPolicyConfig::default()).map_err(|e| bad(e.to_string()))?;
    if json_out {
        print_json(&report)?;
    } else {
        println!("{report}");
    }
    if report.tests.is_empty() {
        return Err(bad(format!(
            "{} holds no test_* rules in *_test.rego files",
            dir.display()
        )));
    }
    if !report.success() {
        return Err(integrity(format!(
            "{} policy tests failed, {} erred",
            report.failed(),
            report.errors()
        )));
    }
    Ok(())
}

/// Verifies a signed review answer offline. Exit 1 (with the reason) when it does not verify.
pub fn decision_verify(file: &Path, key: &str, json_out: bool) -> anyhow::Result<()> {
    let verifier = read_verifier(key)?;
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("{} is not JSON: {e}", file.display())))?;
    let verdict = custos_gate::service::signature::verify(&value, &verifier).map(|record| {
        let human = format!(
            "valid: request {} of tenant {} was {} (ledger entry {}, {}), signed by {}",
            record.request_id,
            record.tenant,
            record.evaluation.decision,
            record.seq,
            record.ts,
            record.log
        );
        let json = json!({"valid": true, "request_id": record.request_id,
            "decision": record.evaluation.decision, "seq": record.seq, "tenant": record.tenant});
        (json, human)
    });
    report_verdict("decision", verdict, json_out)
}

/// Prints the verdict of an offline check — `(JSON, sentence)` when valid, the reason when
/// not — and fails with exit 1 when not valid.
fn report_verdict<E: std::fmt::Display>(
    what: &str,
    verdict: Result<(serde_json::Value, String), E>,
    json_out: bool,
) -> anyhow::Result<()> {
    match verdict {
        Ok((json, human)) => {
            if json_out {
                print_json(&json)?;
            } else {
                println!("{human}");
            }
            Ok(())
        }
        Err(e) => {
            if json_out {
                print_json(&json!({"valid": false, "reason": e.to_string()}))?;
            }
            Err(integrity(format!("{what} NOT valid: {e}")))
        }
    }
}

/// What `custos token verify` checks a token against.
pub struct TokenCheck<'a> {
    /// The token (base64url).
    pub token: &'a str,
    /// The log's verifier key text, or a file holding it.
    pub key: &'a str,
    /// The log origin the token must name (default: the key name, which is the origin).
    pub origin: Option<&'a str>,
    /// The request id the executor is about to run.
    pub request_id: Option<&'a str>,
    /// The hash of the plan the executor is about to run.
    pub plan_hash: Option<&'a str>,
    /// Verify as of this time (RFC 3339) instead of now.
    pub at: Option<&'a str>,
}

/// Verifies an approval token offline. Exit 1 (with the reason) when it is not valid.
pub fn token_verify(check: TokenCheck<'_>, json_out: bool) -> anyhow::Result<()> {
    let verifier = read_verifier(check.key)?;
    let origin = check.origin.unwrap_or(verifier.name()).to_owned();
    let now = match check.at {
        Some(t) => custos_core::time::parse_rfc3339(t).map_err(|e| bad(format!("--at: {e}")))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128),
    };
    let verdict = token::verify(check.token, &verifier, &origin, now).and_then(|claims| {
        token::check_binding(&claims, check.request_id, check.plan_hash).map(|()| claims)
    });
    let verdict = verdict.map(|claims| {
        let human = format!(
            "valid: approves request {} (plan {}) of tenant {}, decision seq {}, until {}",
            claims.request_id, claims.plan_hash, claims.tenant, claims.decision_seq, claims.expires
        );
        (json!({"valid": true, "claims": claims}), human)
    });
    report_verdict("token", verdict, json_out)
}
