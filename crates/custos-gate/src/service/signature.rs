//! Signed decisions (SPEC §4.1): the log key signs, with Ed25519, the RFC 8785 form of the
//! [`DecisionRecord`] — the decision with its log, tenant, request id, seq, time and caller.
//! Ed25519 is deterministic, so the same decision always carries the same signature, however
//! often and by whichever node it is read.
//!
//! A review as the API answers it is the record's members plus the members in
//! [`UNSIGNED_FIELDS`] (the signature itself, the approval token, and the review's state since
//! the decision). To check one offline: drop those members, take the RFC 8785 form of what is
//! left, and verify `signature` (standard base64) over it with the log's public key
//! ([`verify`], `custos decision verify`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custos_core::note::{Signer, Verifier};
use serde_json::Value;

use super::record::DecisionRecord;

/// Members of a review answer that the decision signature does not cover.
pub const UNSIGNED_FIELDS: [&str; 7] = [
    "signature",
    "approval_token",
    "approval_token_expires",
    "approval_token_used",
    "state",
    "executions",
    "overrides",
];

/// Why a signed decision does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not a decision document.
    #[error("not a signed decision: {0}")]
    Malformed(String),
    /// Signed by another log.
    #[error("the decision is from log `{found}`, not `{expected}`")]
    OtherLog {
        /// Its `log`.
        found: String,
        /// The verifier's.
        expected: String,
    },
    /// The signature does not match.
    #[error(
        "the decision's signature does not verify with the log key: it was altered or signed by another key"
    )]
    Mismatch,
}

/// The signature of `record` with the log key, standard base64.
pub fn sign(record: &DecisionRecord, signer: &Signer) -> Result<String, String> {
    let value = serde_json::to_value(record).map_err(|e| e.to_string())?;
    let bytes = custos_core::jcs::to_canonical(&value).map_err(|e| e.to_string())?;
    Ok(STANDARD.encode(signer.sign_bytes(&bytes)))
}

/// Verifies a review answer (or a bare record with its `signature`) with the log's verifier
/// key; returns the signed record.
pub fn verify(answer: &Value, verifier: &Verifier) -> Result<DecisionRecord, SignatureError> {
    let Value::Object(members) = answer else {
        return Err(SignatureError::Malformed("not a JSON object".into()));
    };
    let signature = members
        .get("signature")
        .and_then(Value::as_str)
        .ok_or_else(|| SignatureError::Malformed("no `signature` string".into()))?;
    let signature: [u8; 64] = STANDARD
        .decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            SignatureError::Malformed("`signature` is not 64 bytes of standard base64".into())
        })?;
    let mut signed = members.clone();
    for field in UNSIGNED_FIELDS {
        signed.remove(field);
    }
    let signed = Value::Object(signed);
    let record: DecisionRecord = serde_json::from_value(signed.clone())
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if record.log != verifier.name() {
        return Err(SignatureError::OtherLog {
            found: record.log,
            expected: verifier.name().to_owned(),
        });
    }
    let bytes = custos_core::jcs::to_canonical(&signed)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if verifier.verify_bytes(&bytes, &signature) {
        Ok(record)
    } else {
        Err(SignatureError::Mismatch)
    }
}
