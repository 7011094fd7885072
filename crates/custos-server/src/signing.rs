//! Request signatures (SPEC §4.6): keys marked `signed` must sign every request with
//! HMAC-SHA256, within ±300 s of the server's clock, with a nonce that is never accepted twice.
//!
//! ```text
//! X-Custos-Timestamp: <unix seconds>
//! X-Custos-Nonce:     <16–128 of A-Z a-z 0-9 - _>
//! X-Custos-Signature: hex(HMAC-SHA256(signing secret, string to sign))
//!
//! string to sign = METHOD "\n" PATH-AND-QUERY "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA-256(body))
//! ```
//!
//! The HMAC key is the signing secret's text (`cks_…`, as printed once when the key is issued).
//! The server does not store it: it derives it from a server secret that never leaves the data
//! directory, `HMAC-SHA256(server secret, "custos request signing v1\n" ‖ key id)`. The ledger
//! holds only the API key's hash, so nothing in the ledger — which auditors read — lets anyone
//! sign as a key.
//!
//! Nonces are remembered, per key, for as long as their timestamp could still be accepted, by
//! the ledger's store ([`custos_store::Store::record_nonce`]) before the request is let through:
//! in a synced journal beside the embedded store, so a replay is refused even after a crash and
//! restart; in a table on PostgreSQL, so a replay is refused by every node sharing the database.

use std::sync::Arc;

use base64::Engine;
use custos_store::Store;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the request time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-custos-timestamp";
/// Header carrying the nonce.
pub const NONCE_HEADER: &str = "x-custos-nonce";
/// Header carrying the signature, lowercase hex.
pub const SIGNATURE_HEADER: &str = "x-custos-signature";
/// How far a timestamp may be from the server's clock, seconds.
pub const WINDOW_SECS: i64 = 300;
/// Most nonces the embedded store remembers at once; past this, signed requests get 503 until
/// old ones expire.
pub use custos_store::embedded::MAX_NONCES;

/// The server's clock, unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Derives signing secrets from the server secret.
#[derive(Clone)]
pub struct SigningKeys {
    master: [u8; 32],
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(..)")
    }
}

impl SigningKeys {
    /// Over a 32-byte server secret.
    pub fn new(master: [u8; 32]) -> Self {
        SigningKeys { master }
    }

    /// The signing secret of key `key_id`, as its holder uses it.
    pub fn secret_for(&self, key_id: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.master).expect("HMAC takes any key length");
        mac.update(b"custos request signing v1\n");
        mac.update(key_id.as_bytes());
        format!(
            "cks_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }
}

/// The text a request signature covers.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

/// Signs a request, as a client does: the `X-Custos-Signature` value.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Why a signed request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A header is absent.
    #[error("this key requires signed requests: header {0} is missing")]
    Missing(&'static str),
    /// A header is malformed.
    #[error("header {header}: {problem}")]
    Malformed {
        /// Which.
        header: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Outside ±300 s.
    #[error("the request timestamp is {0} s away from the server's clock (at most 300 s)")]
    Stale(i64),
    /// The HMAC does not match.
    #[error("the request signature does not match")]
    BadSignature,
    /// The nonce was used before.
    #[error("this nonce was already used with this key")]
    Replayed,
}

impl SignatureError {
    /// A short stable code, for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "signature_missing",
            SignatureError::Malformed { .. } => "signature_malformed",
            SignatureError::Stale(_) => "timestamp_out_of_window",
            SignatureError::BadSignature => "bad_signature",
            SignatureError::Replayed => "nonce_replayed",
        }
    }
}

/// The signature headers of a request, checked for form only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders<'a> {
    /// As sent (it is part of the signed text).
    pub timestamp_text: &'a str,
    /// Parsed.
    pub timestamp: i64,
    /// The nonce.
    pub nonce: &'a str,
    /// The signature, 32 bytes.
    pub signature: [u8; 32],
}

impl<'a> SignatureHeaders<'a> {
    /// Reads the three headers through `get`.
    pub fn read(
        get: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Result<SignatureHeaders<'a>, SignatureError> {
        let timestamp_text =
            get(TIMESTAMP_HEADER).ok_or(SignatureError::Missing(TIMESTAMP_HEADER))?;
        let nonce = get(NONCE_HEADER).ok_or(SignatureError::Missing(NONCE_HEADER))?;
        let sig = get(SIGNATURE_HEADER).ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
        let timestamp = (!timestamp_text.is_empty()
            && timestamp_text.len() <= 12
            && timestamp_text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| timestamp_text.parse::<i64>().ok())
        .flatten()
        .ok_or(SignatureError::Malformed {
            header: TIMESTAMP_HEADER,
            problem: "not unix seconds (digits only)",
        })?;
        if !(16..=128).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SignatureError::Malformed {
                header: NONCE_HEADER,
                problem: "must be 16 to 128 characters of A-Z a-z 0-9 - _",
            });
        }
        let mut signature = [0u8; 32];
        hex::decode_to_slice(sig, &mut signature).map_err(|_| SignatureError::Malformed {
            header: SIGNATURE_HEADER,
            problem: "must be 64 hex digits",
        })?;
        Ok(SignatureHeaders {
            timestamp_text,
            timestamp,
            nonce,
            signature,
        })
    }

    /// Checks time window and HMAC (not the nonce: see [`NonceStore`]).
    pub fn verify(
        &self,
        secret: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let skew = now.saturating_sub(self.timestamp);
        if skew.abs() > WINDOW_SECS {
            return Err(SignatureError::Stale(skew));
        }
        let text = string_to_sign(
            method,
            path_and_query,
            self.timestamp_text,
            self.nonce,
            body,
        );
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(text.as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| SignatureError::BadSignature)
    }
}

/// Why a nonce could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    /// Seen before.
    #[error("nonce replayed")]
    Replayed,
    /// Too many live nonces.
    #[error("too many nonces are remembered; retry later")]
    Full,
    /// The journal could not be written.
    #[error("the nonce journal failed: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not record it.
    #[error("recording the nonce failed: {0}")]
    Store(custos_store::StoreError),
}

impl From<custos_store::StoreError> for NonceError {
    fn from(e: custos_store::StoreError) -> Self {
        match e {
            custos_store::StoreError::Overloaded { .. } => NonceError::Full,
            other => NonceError::Store(other),
        }
    }
}

type RecordFn = dyn Fn(&str, &str, i64, i64) -> custos_store::Result<bool> + Send + Sync;

/// Where the nonces of signed requests are remembered: normally the ledger's store
/// ([`custos_store::Store::record_nonce`]: a synced journal beside the embedded store, a table
/// every node shares on PostgreSQL, so a replay sent to another node is refused too).
pub struct NonceStore {
    record: Box<RecordFn>,
}

impl std::fmt::Debug for NonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceStore(..)")
    }
}

impl NonceStore {
    /// In memory only (tests, or a server whose operator accepts replays after restart).
    pub fn in_memory() -> Self {
        let journal = custos_store::embedded::NonceJournal::in_memory();
        NonceStore {
            record: Box::new(move |key, nonce, exp, now| journal.record(key, nonce, exp, now)),
        }
    }

    /// In the ledger's store, durable and shared with every process on it.
    pub fn in_store<S: Store>(store: Arc<S>) -> Self {
        NonceStore {
            record: Box::new(move |key, nonce, exp, now| store.record_nonce(key, nonce, exp, now)),
        }
    }

    /// Records `nonce` of `key_id` with timestamp `timestamp`, durably, unless it was seen
    /// before and its timestamp could still pass at `now`. It is remembered until the
    /// timestamp falls out of the window (plus a second of slack); a nonce reused after that
    /// is refused by the timestamp check instead. Blocking: call it off the async executor.
    pub fn record(
        &self,
        key_id: &str,
        nonce: &str,
        timestamp: i64,
        now: i64,
    ) -> Result<(), NonceError> {
        let exp = timestamp.saturating_add(WINDOW_SECS + 1);
        if (self.record)(key_id, nonce, exp, now)? {
            Ok(())
        } else {
            Err(NonceError::Replayed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(ts: &'a str, nonce: &'a str, sig: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders::read(|h| match h {
            TIMESTAMP_HEADER => Some(ts),
            NONCE_HEADER => Some(nonce),
            SIGNATURE_HEADER => Some(sig),
            _ => None,
        })
        .expect("well-formed")
    }

    #[test]
    fn a_correct_signature_verifies_and_any_change_does_not() {
        let keys = SigningKeys::new([7; 32]);
        let secret = keys.secret_for("00aa11bb22cc33dd");
        assert!(secret.starts_with("cks_"));
        assert_ne!(secret, keys.secret_for("00aa11bb22cc33de"));
        let nonce = "n0nce-0123456789abcdef";
        let body = br#"{"a":1}"#;
        let sig = sign(
            &secret,
            &string_to_sign("POST", "/v1/entries?x=1", "1700000000", nonce, body),
        );
        let h = headers("1700000000", nonce, &sig);
        assert_eq!(
            h.verify(&secret, "POST", "/v1/entries?x=1", body, 1_700_000_100),
            Ok(())
        );
        for (method, path, body, now, want) in [
            (
                "GET",
                "/v1/entries?x=1",
                &body[..],
                1_700_000_000,
                SignatureError::BadSignature,
            ),
            (
                "POST",
                "/v1/entries?x=2",
                &body[..],
                1_700_000_000,
                SignatureError::BadSignature,
            ),
            (
                "POST",
                "/v1/entries?x=1",
                b"{\"a\":2}",
                1_700_000_000,
                SignatureError::BadSignature,
            ),
            (
                "POST",
                "/v1/entries?x=1",
                &body[..],
                1_700_000_301,
                SignatureError::Stale(301),
            ),
            (
                "POST",
                "/v1/entries?x=1",
                &body[..],
                1_699_999_699,
                SignatureError::Stale(-301),
            ),
        ] {
            assert_eq!(h.verify(&secret, method, path, body, now), Err(want));
        }
        assert_eq!(
            h.verify(
                &keys.secret_for("other"),
                "POST",
                "/v1/entries?x=1",
                body,
                1_700_000_000
            ),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn malformed_headers_name_the_header() {
        let ok_sig = "00".repeat(32);
        for (ts, nonce, sig, header) in [
            ("", "0123456789abcdef", ok_sig.as_str(), TIMESTAMP_HEADER),
            ("-5", "0123456789abcdef", ok_sig.as_str(), TIMESTAMP_HEADER),
            (
                "17e8",
                "0123456789abcdef",
                ok_sig.as_str(),
                TIMESTAMP_HEADER,
            ),
            ("1700000000", "short", ok_sig.as_str(), NONCE_HEADER),
            (
                "1700000000",
                "0123456789abcdef 1",
                ok_sig.as_str(),
                NONCE_HEADER,
            ),
            ("1700000000", "0123456789abcdef", "zz", SIGNATURE_HEADER),
        ] {
            let err = SignatureHeaders::read(|h| match h {
                TIMESTAMP_HEADER => Some(ts),
                NONCE_HEADER => Some(nonce),
                SIGNATURE_HEADER => Some(sig),
                _ => None,
            })
            .expect_err("malformed");
            assert!(
                matches!(err, SignatureError::Malformed { header: h, .. } if h == header),
                "{ts:?} {nonce:?} {sig:?}: {err:?}"
            );
        }
        assert_eq!(
            SignatureHeaders::read(|_| None),
            Err(SignatureError::Missing(TIMESTAMP_HEADER))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nonces_are_refused_twice_even_after_a_restart() {
        use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
        let dir = tempfile::tempdir().expect("tmp");
        let open =
            || Arc::new(EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open"));
        let now = 1_700_000_000;
        let store = open();
        let nonces = NonceStore::in_store(store.clone());
        nonces.record("k1", "nonce-a", now, now).expect("first use");
        assert!(matches!(
            nonces.record("k1", "nonce-a", now, now + 10),
            Err(NonceError::Replayed)
        ));
        nonces.record("k2", "nonce-a", now, now).expect("other key");
        drop(nonces);
        store.close().await.expect("close");
        drop(store);
        // As after a crash: the journal beside the store remembers.
        let store = open();
        let nonces = NonceStore::in_store(store.clone());
        assert!(matches!(
            nonces.record("k1", "nonce-a", now, now + 100),
            Err(NonceError::Replayed)
        ));
        assert!(matches!(
            nonces.record("k2", "nonce-a", now, now + WINDOW_SECS),
            Err(NonceError::Replayed)
        ));
        // Once the timestamp is out of the window, the nonce is forgotten (and the timestamp
        // check refuses such a request).
        nonces
            .record(
                "k1",
                "nonce-a",
                now + WINDOW_SECS + 2,
                now + WINDOW_SECS + 2,
            )
            .expect("forgotten after the window");
        store.close().await.expect("close");
    }

    #[test]
    fn in_memory_nonces_are_refused_twice() {
        let nonces = NonceStore::in_memory();
        nonces.record("k1", "nonce-a", 100, 100).expect("first use");
        assert!(matches!(
            nonces.record("k1", "nonce-a", 100, 101),
            Err(NonceError::Replayed)
        ));
        nonces
            .record("k1", "nonce-b", 100, 101)
            .expect("other nonce");
    }
}
