//! The plan gate's offline commands: `custos policy test DIR` and `custos token verify`.

use std::path::Path;

use anyhow::Context;
use custos_gate::policy::{SoftPolicyConfig, run_policy_tests};
use custos_gate::token;
use serde_json::json;

use crate::commands::{bad, integrity, read_verifier};

/// Runs the Rego unit tests (`test_*` rules in `*_test.rego`) of the operator policies in
/// `dir` against custos's built-in bundle. Exit 1 when a test fails or errs.
pub fn policy_test(dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let report =
        run_policy_tests(dir, &SoftPolicyConfig::default()).map_err(|e| bad(e.to_string()))?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
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
    match verdict {
        Ok(claims) => {
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"valid": true, "claims": claims}))
                        .context("encoding")?
                );
            } else {
                println!(
                    "valid: approves request {} (plan {}) of tenant {}, decision seq {}, until {}",
                    claims.request_id,
                    claims.plan_hash,
                    claims.tenant,
                    claims.decision_seq,
                    claims.expires
                );
            }
            Ok(())
        }
        Err(e) => {
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"valid": false, "reason": e.to_string()}))
                        .context("encoding")?
                );
            }
            Err(integrity(format!("token NOT valid: {e}")))
        }
    }
}
