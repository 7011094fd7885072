//! The override digest approvers sign, and checking their Ed25519 signatures against the keys
//! registered for them.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use custos_core::note::{Signer, Verifier};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{OverrideError, OverrideRequest};

/// What precedes the digest's hex in the message approvers sign.
pub const SIGNING_PREFIX: &str = "custos-override-v1:";

/// Key name given to the note verifier that checks approver signatures (never shown).
const VERIFIER_NAME: &str = "custos-override-approver";

/// SHA-256 over the RFC 8785 form of an override request's binding fields (see
/// [`OverrideDigest::preimage`]). Serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverrideDigest([u8; 32]);

impl OverrideDigest {
    /// The object whose canonical (JCS) bytes are hashed:
    /// `{"custos_override": 1, "override_id", "review_request_id", "plan_hash",
    /// "decision_seq", "justification", "business_impact", "alternatives_considered",
    /// "risk_acceptance", "requested_by"}` — everything an approver agrees to, and nothing
    /// that changes while the chain runs.
    pub fn preimage(request: &OverrideRequest) -> Value {
        json!({
            "custos_override": 1,
            "override_id": request.id,
            "review_request_id": request.review_request_id,
            "plan_hash": request.plan_hash,
            "decision_seq": request.decision_seq,
            "justification": request.justification,
            "business_impact": request.business_impact,
            "alternatives_considered": request.alternatives_considered,
            "risk_acceptance": request.risk_acceptance,
            "requested_by": request.requested_by,
        })
    }

    /// The digest of `request`. Fails only for a `decision_seq` beyond 2^53 − 1, which
    /// [`OverrideRequest::validate`] refuses.
    pub fn of(request: &OverrideRequest) -> Result<Self, OverrideError> {
        let bytes = custos_core::jcs::to_canonical(&Self::preimage(request))
            .map_err(|e| OverrideError::Encoding(e.to_string()))?;
        Ok(OverrideDigest(Sha256::digest(&bytes).into()))
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(OverrideDigest(bytes))
    }

    /// The message `approver` signs: the bytes of
    /// `custos-override-v1:<hex digest>:<approver>`. Naming the approver keeps one approver's
    /// signature from passing for another's (who registered the same public key).
    pub fn signing_message(&self, approver: &str) -> String {
        format!("{SIGNING_PREFIX}{}:{approver}", self.to_hex())
    }
}

impl fmt::Debug for OverrideDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OverrideDigest({})", self.to_hex())
    }
}

impl Serialize for OverrideDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for OverrideDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OverrideDigest::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("an override digest is 64 hex digits"))
    }
}

/// An approver's signature over the override digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApproverSignature {
    /// Which of the approver's registered keys signed.
    pub key_id: String,
    /// The 64-byte Ed25519 signature over [`OverrideDigest::signing_message`], in standard
    /// base64 with padding.
    pub ed25519: String,
}

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 64 bytes of standard base64.
    #[error("the signature is not 64 bytes in standard base64")]
    Malformed,
    /// The registered key is not an Ed25519 public key.
    #[error("the registered key is not an Ed25519 public key")]
    BadPublicKey,
    /// A well-formed signature, but not by this key over this digest.
    #[error("the signature does not verify for this override digest")]
    DoesNotVerify,
}

/// Checks that `signature` is the Ed25519 signature (strict verification) by `public_key`
/// over `digest`'s signing message.
pub fn verify_approver_signature(
    digest: &OverrideDigest,
    approver: &str,
    signature: &ApproverSignature,
    public_key: &[u8; 32],
) -> Result<(), SignatureError> {
    let bytes: [u8; 64] = STANDARD
        .decode(signature.ed25519.as_bytes())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    let verifier = Verifier::from_public_key(VERIFIER_NAME, *public_key)
        .map_err(|_| SignatureError::BadPublicKey)?;
    if verifier.verify_bytes(digest.signing_message(approver).as_bytes(), &bytes) {
        Ok(())
    } else {
        Err(SignatureError::DoesNotVerify)
    }
}

/// Signs `digest` with `signer` (the approver's own key, registered as `key_id`) — what an
/// approver's client does.
pub fn sign_digest(
    digest: &OverrideDigest,
    approver: &str,
    signer: &Signer,
    key_id: &str,
) -> ApproverSignature {
    ApproverSignature {
        key_id: key_id.to_owned(),
        ed25519: STANDARD.encode(signer.sign_bytes(digest.signing_message(approver).as_bytes())),
    }
}

/// The approvers' registered Ed25519 public keys, as the chain looks them up.
pub trait ApproverKeys {
    /// The raw public key registered for `approver` under `key_id`, if any.
    fn public_key(&self, approver: &str, key_id: &str) -> Option<[u8; 32]>;
}

/// An in-memory set of registered approver keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisteredKeys {
    keys: BTreeMap<(String, String), [u8; 32]>,
}

impl RegisteredKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `public_key` for `approver` as `key_id` (replacing any earlier one).
    pub fn insert(&mut self, approver: &str, key_id: &str, public_key: [u8; 32]) {
        self.keys
            .insert((approver.to_owned(), key_id.to_owned()), public_key);
    }
}

impl ApproverKeys for RegisteredKeys {
    fn public_key(&self, approver: &str, key_id: &str) -> Option<[u8; 32]> {
        self.keys
            .get(&(approver.to_owned(), key_id.to_owned()))
            .copied()
    }
}
