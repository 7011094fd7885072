//! Approval tokens (SPEC §4.1): what an approved review hands the orchestrator, and what an
//! executor checks before it runs a plan.
//!
//! A token is a C2SP signed note, signed with the log's own Ed25519 key, whose text binds the
//! tenant, the request id, the SHA-256 of the approved plan's canonical form and an expiry:
//!
//! ```text
//! custos approval token v1
//! origin custos.example/log-1
//! tenant acme
//! request req-42
//! plan sha256:9f86d0…
//! decision 1234
//! id 0192f…
//! issued 2026-11-23T10:00:00.000000000Z
//! expires 2026-11-23T10:15:00.000000000Z
//!
//! — custos.example/log-1 Az3grl…
//! ```
//!
//! On the wire it is the note's bytes in unpadded base64url, one line. Anyone holding the log's
//! verifier key checks it offline ([`verify`], `custos token verify`); the server also answers
//! `POST /v1/tokens/verify`, and there it also knows whether the token was already used to report
//! an execution (single use).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custos_core::note::{self, Signer, Verifier};
use custos_core::time::{format_utc_nanos, parse_rfc3339};
use serde::{Deserialize, Serialize};

const HEADER: &str = "custos approval token v1";

/// Default lifetime of a token: 15 minutes.
pub const DEFAULT_TTL_NANOS: i128 = 15 * 60 * 1_000_000_000;

/// Clock skew tolerated for a token issued "in the future".
const SKEW_NANOS: i128 = 5 * 1_000_000_000;

/// What a token says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApprovalClaims {
    /// The log that signed it.
    pub origin: String,
    /// The tenant the review belongs to.
    pub tenant: String,
    /// The orchestrator's request id.
    pub request_id: String,
    /// `sha256:<hex>` of the JCS of the approved plan.
    pub plan_hash: String,
    /// Ledger seq of the approving decision.
    pub decision_seq: u64,
    /// Unique id of this token.
    pub token_id: String,
    /// When it was issued (RFC 3339, UTC, nanoseconds).
    pub issued: String,
    /// When it stops being valid.
    pub expires: String,
}

/// Why a token is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all.
    #[error("malformed approval token: {0}")]
    Malformed(String),
    /// The signature is not the log's.
    #[error("the approval token's signature does not verify with the log key: {0}")]
    BadSignature(String),
    /// Past its expiry.
    #[error("the approval token expired at {expires}")]
    Expired {
        /// Its expiry.
        expires: String,
    },
    /// Issued later than now (beyond a few seconds of clock skew).
    #[error("the approval token is issued in the future ({issued})")]
    NotYetValid {
        /// Its issue time.
        issued: String,
    },
    /// It approves another request or another plan.
    #[error("the approval token is for {field} `{token}`, not `{expected}`")]
    Mismatch {
        /// `request_id`, `plan_hash` or `tenant`.
        field: &'static str,
        /// What the token says.
        token: String,
        /// What was expected.
        expected: String,
    },
    /// A claim cannot be put in a token (a control character, a space where none may be).
    #[error("cannot issue an approval token: {0}")]
    Unissuable(String),
}

fn checked_value<'a>(name: &str, v: &'a str) -> Result<&'a str, TokenError> {
    if v.is_empty() || v.chars().any(|c| c.is_control()) {
        return Err(TokenError::Unissuable(format!(
            "{name} is empty or has a control character"
        )));
    }
    Ok(v)
}

/// Issues a token for `claims` (their `origin` should be the signer's log).
pub fn issue(signer: &Signer, claims: &ApprovalClaims) -> Result<String, TokenError> {
    let mut text = format!("{HEADER}\n");
    for (name, value) in [
        ("origin", claims.origin.as_str()),
        ("tenant", claims.tenant.as_str()),
        ("request", claims.request_id.as_str()),
        ("plan", claims.plan_hash.as_str()),
    ] {
        text.push_str(&format!("{name} {}\n", checked_value(name, value)?));
    }
    text.push_str(&format!("decision {}\n", claims.decision_seq));
    for (name, value) in [
        ("id", claims.token_id.as_str()),
        ("issued", claims.issued.as_str()),
        ("expires", claims.expires.as_str()),
    ] {
        text.push_str(&format!("{name} {}\n", checked_value(name, value)?));
    }
    let note = signer
        .sign(&text)
        .map_err(|e| TokenError::Unissuable(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(note))
}

/// Claims for a token issued at `now_nanos`, valid for `ttl_nanos`.
#[allow(clippy::too_many_arguments)]
pub fn claims(
    origin: &str,
    tenant: &str,
    request_id: &str,
    plan_hash: &str,
    decision_seq: u64,
    token_id: &str,
    now_nanos: i128,
    ttl_nanos: i128,
) -> Result<ApprovalClaims, TokenError> {
    let time = |n: i128| {
        format_utc_nanos(n).ok_or_else(|| TokenError::Unissuable(format!("time {n} out of range")))
    };
    Ok(ApprovalClaims {
        origin: origin.to_owned(),
        tenant: tenant.to_owned(),
        request_id: request_id.to_owned(),
        plan_hash: plan_hash.to_owned(),
        decision_seq,
        token_id: token_id.to_owned(),
        issued: time(now_nanos)?,
        expires: time(now_nanos.saturating_add(ttl_nanos))?,
    })
}

/// Reads a token's claims after checking its signature with `verifier`; does not look at
/// the time (see [`verify`]).
pub fn open(token: &str, verifier: &Verifier) -> Result<ApprovalClaims, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|e| TokenError::Malformed(format!("not unpadded base64url: {e}")))?;
    let note_text = String::from_utf8(bytes)
        .map_err(|_| TokenError::Malformed("the note is not UTF-8".into()))?;
    let text = note::open(&note_text, verifier).map_err(|e| match e {
        note::NoteError::MalformedNote(m) => TokenError::Malformed(m),
        other => TokenError::BadSignature(other.to_string()),
    })?;
    parse_claims(text)
}

fn parse_claims(text: &str) -> Result<ApprovalClaims, TokenError> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(TokenError::Malformed(format!(
            "the first line is not `{HEADER}`"
        )));
    }
    let mut field = |name: &str| -> Result<String, TokenError> {
        let line = lines
            .next()
            .ok_or_else(|| TokenError::Malformed(format!("`{name}` is missing")))?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_owned)
            .ok_or_else(|| TokenError::Malformed(format!("expected `{name} …`, found `{line}`")))
    };
    let origin = field("origin")?;
    let tenant = field("tenant")?;
    let request_id = field("request")?;
    let plan_hash = field("plan")?;
    let decision_seq = field("decision")?
        .parse()
        .map_err(|e| TokenError::Malformed(format!("decision: {e}")))?;
    let token_id = field("id")?;
    let issued = field("issued")?;
    let expires = field("expires")?;
    if lines.next().is_some() {
        return Err(TokenError::Malformed("extra lines after `expires`".into()));
    }
    for (name, t) in [("issued", &issued), ("expires", &expires)] {
        parse_rfc3339(t).map_err(|e| TokenError::Malformed(format!("{name}: {e}")))?;
    }
    Ok(ApprovalClaims {
        origin,
        tenant,
        request_id,
        plan_hash,
        decision_seq,
        token_id,
        issued,
        expires,
    })
}

/// Verifies a token offline: the log's signature, the origin, and that it is valid at
/// `now_nanos`. Binding to a request and plan is [`check_binding`].
pub fn verify(
    token: &str,
    verifier: &Verifier,
    origin: &str,
    now_nanos: i128,
) -> Result<ApprovalClaims, TokenError> {
    let claims = open(token, verifier)?;
    if claims.origin != origin {
        return Err(TokenError::Mismatch {
            field: "origin",
            token: claims.origin,
            expected: origin.to_owned(),
        });
    }
    let issued = parse_rfc3339(&claims.issued).map_err(TokenError::Malformed)?;
    let expires = parse_rfc3339(&claims.expires).map_err(TokenError::Malformed)?;
    if now_nanos >= expires {
        return Err(TokenError::Expired {
            expires: claims.expires,
        });
    }
    if issued > now_nanos.saturating_add(SKEW_NANOS) {
        return Err(TokenError::NotYetValid {
            issued: claims.issued,
        });
    }
    Ok(claims)
}

/// Checks that the token approves this request and exactly this plan (an executor must
/// refuse a plan whose hash differs).
pub fn check_binding(
    claims: &ApprovalClaims,
    request_id: Option<&str>,
    plan_hash: Option<&str>,
) -> Result<(), TokenError> {
    for (field, want, have) in [
        ("request_id", request_id, &claims.request_id),
        ("plan_hash", plan_hash, &claims.plan_hash),
    ] {
        if let Some(want) = want
            && want != have
        {
            return Err(TokenError::Mismatch {
                field,
                token: have.clone(),
                expected: want.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i128 = 1_795_000_000_000_000_000;

    fn signer(name: &str, seed: u8) -> Signer {
        Signer::from_seed(name, [seed; 32]).expect("signer")
    }

    fn sample() -> ApprovalClaims {
        claims(
            "custos.test/log",
            "acme",
            "req-1",
            "sha256:abcd",
            42,
            "tok-1",
            NOW,
            DEFAULT_TTL_NANOS,
        )
        .expect("claims")
    }

    #[test]
    fn issued_tokens_verify_offline_and_bind_request_and_plan() {
        let s = signer("custos.test/log", 1);
        let t = issue(&s, &sample()).expect("issue");
        assert!(!t.contains('\n') && !t.contains('='), "one line, unpadded");
        let got = verify(&t, &s.verifier(), "custos.test/log", NOW + 1).expect("valid");
        assert_eq!(got, sample());
        check_binding(&got, Some("req-1"), Some("sha256:abcd")).expect("bound");
        check_binding(&got, None, None).expect("nothing to check");
        let e = check_binding(&got, Some("req-1"), Some("sha256:ffff")).expect_err("other plan");
        assert!(e.to_string().contains("plan_hash"), "{e}");
        let e = check_binding(&got, Some("req-2"), None).expect_err("other request");
        assert!(e.to_string().contains("request_id"), "{e}");
    }

    #[test]
    fn every_way_a_token_can_be_wrong_is_named() {
        let s = signer("custos.test/log", 1);
        let t = issue(&s, &sample()).expect("issue");
        let v = s.verifier();
        let expired = verify(&t, &v, "custos.test/log", NOW + DEFAULT_TTL_NANOS).expect_err("late");
        assert!(matches!(expired, TokenError::Expired { .. }), "{expired}");
        let early = verify(&t, &v, "custos.test/log", NOW - 60_000_000_000).expect_err("early");
        assert!(matches!(early, TokenError::NotYetValid { .. }), "{early}");
        let other_log = verify(&t, &v, "custos.test/other", NOW).expect_err("origin");
        assert!(matches!(
            other_log,
            TokenError::Mismatch {
                field: "origin",
                ..
            }
        ));
        // Another key with the same name: the signature does not verify.
        let forged = issue(&signer("custos.test/log", 2), &sample()).expect("issue");
        let e = verify(&forged, &v, "custos.test/log", NOW).expect_err("forged");
        assert!(matches!(e, TokenError::BadSignature(_)), "{e}");
        // Any change of the text breaks the signature.
        let note = String::from_utf8(URL_SAFE_NO_PAD.decode(&t).expect("b64")).expect("utf8");
        let edited = URL_SAFE_NO_PAD.encode(note.replace("req-1", "req-9"));
        let e = verify(&edited, &v, "custos.test/log", NOW).expect_err("edited");
        assert!(matches!(e, TokenError::BadSignature(_)), "{e}");
        for garbage in ["", "!!!", "aGVsbG8", &URL_SAFE_NO_PAD.encode([0xff, 0xfe])] {
            assert!(
                verify(garbage, &v, "custos.test/log", NOW).is_err(),
                "{garbage}"
            );
        }
        // A signed note that is not a token.
        let other = URL_SAFE_NO_PAD.encode(s.sign("hello\n").expect("sign"));
        let e = verify(&other, &v, "custos.test/log", NOW).expect_err("not a token");
        assert!(matches!(e, TokenError::Malformed(_)), "{e}");
    }

    #[test]
    fn claims_that_would_break_the_text_are_refused() {
        let s = signer("custos.test/log", 1);
        let mut c = sample();
        c.request_id = "a\nplan sha256:evil".into();
        assert!(matches!(issue(&s, &c), Err(TokenError::Unissuable(_))));
        c.request_id = String::new();
        assert!(matches!(issue(&s, &c), Err(TokenError::Unissuable(_))));
    }
}
