//! Why an intent verifier gave no assessment. Every variant means the same to the gate:
//! no approval (fail secure); the variants exist so the record and the operator can tell
//! what happened.

use std::time::Duration;

/// Why an intent verifier gave no assessment.
///
/// Texts never contain the verifier's API key: everything that comes from outside (bodies,
/// transport errors) is scrubbed of it before it is put here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// The configuration cannot work (an empty model, a base URL that is not http(s)).
    #[error("intent verifier misconfigured: {0}")]
    Config(String),
    /// No answer within the configured time.
    #[error("intent verifier timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The server could not be reached (connection refused, DNS, TLS).
    #[error("intent verifier unreachable at {url}: {detail}")]
    Connect {
        /// Where it was sought.
        url: String,
        /// What the transport said.
        detail: String,
    },
    /// The exchange broke off after it started.
    #[error("intent verifier request failed: {0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("intent verifier answered HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The provider's error message, or the start of the body.
        message: String,
    },
    /// The response was larger than the limit.
    #[error("intent verifier response larger than {0} bytes")]
    TooLarge(usize),
    /// The response body is not the provider's JSON envelope.
    #[error("intent verifier response is not valid JSON: {0}")]
    InvalidResponse(String),
    /// The envelope is JSON but not of the provider's shape (no `choices`, no `content`).
    #[error("intent verifier response has an unexpected shape: {0}")]
    UnexpectedShape(String),
    /// The model declined to answer.
    #[error("intent verifier refused: {0}")]
    Refusal(String),
    /// The model's answer is empty.
    #[error("intent verifier returned an empty answer")]
    EmptyAnswer,
    /// The answer was cut off at the output limit.
    #[error("intent verifier answer truncated at the output limit ({0})")]
    Truncated(String),
    /// The answer is not a JSON object.
    #[error("intent verifier answer is not JSON: {0}")]
    AnswerNotJson(String),
    /// The answer is JSON but does not match the intent schema.
    #[error("intent verifier answer does not match the intent schema: {0}")]
    SchemaViolation(String),
}

/// Replaces every occurrence of `secret` in `text` (when there is one) with `[redacted]`,
/// and cuts the text to `limit` characters.
pub(crate) fn scrub(text: &str, secret: Option<&str>, limit: usize) -> String {
    let cleaned = match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
        _ => text.to_owned(),
    };
    let mut out: String = cleaned.chars().take(limit).collect();
    if cleaned.chars().nth(limit).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_secret_and_cuts() {
        assert_eq!(
            scrub("key sk-1 used", Some("sk-1"), 100),
            "key [redacted] used"
        );
        assert_eq!(scrub("abcdef", None, 3), "abc…");
        assert_eq!(scrub("abc", Some(""), 3), "abc");
    }
}
