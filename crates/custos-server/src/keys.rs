//! API keys (SPEC §9, issue 3): bound to a tenant and roles, stored only as hashes, compared
//! in constant time. Issuing and revoking a key are ledger entries in the key's tenant, and the
//! registry is a projection rebuilt from those entries — the ledger is the system of record.
//!
//! A key reads `ck_<id>_<secret>`: `id` (16 hex digits) is public and names the key in the
//! ledger and in `keys list`; `secret` is 32 random bytes, base64url. The ledger keeps
//! SHA-256 of the whole key text. A fast hash is enough here: the secret has 256 bits of
//! entropy, so there is nothing to brute-force.

use std::collections::BTreeMap;

use base64::Engine;
use custos_core::entry::{EntryBody, Outcome, Severity, check_principal};
use custos_ledger::{Ledger, LedgerError};
use custos_store::{EntryQuery, MAX_QUERY_LIMIT, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::signing::SigningKeys;

/// Event type of an issued key.
pub const KEY_CREATED: &str = "api_key_created";
/// Event type of a revoked key.
pub const KEY_REVOKED: &str = "api_key_revoked";

/// What a key may do (SPEC §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in its tenant.
    Admin,
    /// Read, verify, export.
    Auditor,
    /// Security approvals.
    Security,
    /// Cost approvals.
    Finance,
    /// Approvals.
    Manager,
    /// Submits plans (signed requests).
    Orchestrator,
    /// Writes entries as itself only.
    Agent,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Auditor,
        Role::Security,
        Role::Finance,
        Role::Manager,
        Role::Orchestrator,
        Role::Agent,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Security => "security",
            Role::Finance => "finance",
            Role::Manager => "manager",
            Role::Orchestrator => "orchestrator",
            Role::Agent => "agent",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A key as the registry knows it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Public id.
    pub id: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// For agent keys: the only actor it may write as (`agent:<id>`).
    pub agent: Option<String>,
    /// Requests must carry the HMAC request signature (SPEC §4.6).
    pub signed: bool,
    /// Who issued it.
    pub issued_by: String,
    /// Ledger seq of the issuing entry.
    pub created_seq: u64,
    /// Ledger seq of the revoking entry, once revoked.
    pub revoked_seq: Option<u64>,
}

/// A newly issued key: the only time its text exists outside the caller.
#[derive(Debug)]
pub struct IssuedKey {
    /// The key.
    pub key: ApiKey,
    /// `ck_<id>_<secret>`, to hand to its holder once.
    pub text: String,
    /// For a `signed` key: the HMAC secret its requests are signed with (`cks_…`).
    pub signing_secret: Option<String>,
}

/// Why a key was not accepted, or a key operation refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a key, unknown, wrong secret or revoked — deliberately one answer.
    #[error("invalid or revoked API key")]
    Unauthenticated,
    /// A request to issue or revoke that is wrong as asked.
    #[error("{0}")]
    BadRequest(String),
    /// No such key.
    #[error("no API key with id `{0}`")]
    NotFound(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A key entry in the ledger does not read as one.
    #[error("ledger entry {seq} is not a valid key record: {problem}")]
    BadRecord {
        /// Where.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
}

fn key_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Every key, rebuilt from the ledger and kept current by [`KeyRegistry::issue`] and
/// [`KeyRegistry::revoke`].
#[derive(Debug, Default)]
pub struct KeyRegistry {
    keys: BTreeMap<String, (ApiKey, [u8; 32])>,
    signing: Option<SigningKeys>,
}

impl KeyRegistry {
    /// Lets the registry issue `signed` keys and check their signatures.
    pub fn with_signing(mut self, signing: SigningKeys) -> Self {
        self.signing = Some(signing);
        self
    }

    /// The signing secret of a `signed` key, when the registry can derive it.
    pub fn signing_secret(&self, key: &ApiKey) -> Option<String> {
        key.signed
            .then(|| self.signing.as_ref().map(|s| s.secret_for(&key.id)))
            .flatten()
    }

    /// The key a presented text claims to be, by its public id only — to attribute a refusal,
    /// never to grant anything.
    pub fn claimed(&self, presented: &str) -> Option<&ApiKey> {
        let id = presented
            .strip_prefix("ck_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)?;
        self.keys.get(id).map(|(k, _)| k)
    }

    /// Rebuilds the registry from the key entries in the ledger, in order.
    pub fn load<S: Store>(ledger: &Ledger<S>) -> Result<Self, KeyError> {
        let mut reg = KeyRegistry::default();
        // Both kinds, merged in seq order, so a revocation always follows its issue.
        let mut events = Vec::new();
        for event_type in [KEY_CREATED, KEY_REVOKED] {
            let mut q = EntryQuery {
                event_type: Some(event_type.into()),
                limit: MAX_QUERY_LIMIT,
                ..EntryQuery::default()
            };
            loop {
                let (entries, next) = ledger.query(&q)?;
                events.extend(entries);
                match next {
                    Some(n) => q.after = Some(n),
                    None => break,
                }
            }
        }
        events.sort_by_key(|e| e.seq);
        for e in events {
            let bad = |problem: &str| KeyError::BadRecord {
                seq: e.seq,
                problem: problem.to_owned(),
            };
            let id = e
                .data
                .get("key_id")
                .unwrap_or(&serde_json::Value::Null)
                .as_str()
                .ok_or_else(|| bad("no key_id"))?
                .to_owned();
            if e.event_type == KEY_CREATED {
                let hash = e
                    .data
                    .get("key_sha256")
                    .unwrap_or(&serde_json::Value::Null)
                    .as_str()
                    .and_then(|h| custos_core::merkle::hash_from_hex(h).ok())
                    .ok_or_else(|| bad("no key_sha256"))?;
                let roles = e
                    .data
                    .get("roles")
                    .unwrap_or(&serde_json::Value::Null)
                    .as_array()
                    .ok_or_else(|| bad("no roles"))?
                    .iter()
                    .map(|r| {
                        r.as_str()
                            .and_then(Role::parse)
                            .ok_or_else(|| bad("unknown role"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let key = ApiKey {
                    id: id.clone(),
                    tenant: e.tenant.clone(),
                    roles,
                    agent: e
                        .data
                        .get("agent")
                        .unwrap_or(&serde_json::Value::Null)
                        .as_str()
                        .map(str::to_owned),
                    signed: e
                        .data
                        .get("signed")
                        .unwrap_or(&serde_json::Value::Null)
                        .as_bool()
                        .unwrap_or(false),
                    issued_by: e.actor.clone(),
                    created_seq: e.seq,
                    revoked_seq: None,
                };
                reg.keys.insert(id, (key, hash));
            } else if let Some((key, _)) = reg.keys.get_mut(&id)
                && key.tenant == e.tenant
            {
                key.revoked_seq.get_or_insert(e.seq);
            }
        }
        Ok(reg)
    }

    /// Issues a key: records it in the ledger (hash only), then returns its text once.
    pub async fn issue<S: Store>(
        &mut self,
        ledger: &Ledger<S>,
        tenant: &str,
        roles: &[Role],
        agent: Option<&str>,
        signed: bool,
        by: &str,
    ) -> Result<IssuedKey, KeyError> {
        if roles.is_empty() {
            return Err(KeyError::BadRequest("a key needs at least one role".into()));
        }
        if signed && self.signing.is_none() {
            return Err(KeyError::BadRequest(
                "this registry has no server signing secret, so it cannot issue signed keys".into(),
            ));
        }
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let agent = match (roles.contains(&Role::Agent), agent) {
            (true, Some(a)) => {
                let a = if a.starts_with("agent:") {
                    a.to_owned()
                } else {
                    format!("agent:{a}")
                };
                check_principal("agent", &a, 4096)
                    .map_err(|e| KeyError::BadRequest(e.to_string()))?;
                Some(a)
            }
            (true, None) => {
                return Err(KeyError::BadRequest(
                    "an agent key must name its agent (it may only write as itself)".into(),
                ));
            }
            (false, Some(_)) => {
                return Err(KeyError::BadRequest(
                    "only keys with the agent role name an agent".into(),
                ));
            }
            (false, None) => None,
        };
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let text = format!("ck_{id}_{secret}");
        let hash = key_hash(&text);
        let mut body = EntryBody::new(tenant, KEY_CREATED, by, "create", Outcome::Success);
        body.resource = Some(format!("api_key:{id}"));
        body.severity = Severity::Medium;
        body.data.insert("key_id".into(), id.clone().into());
        body.data.insert(
            "roles".into(),
            roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().into(),
        );
        if let Some(a) = &agent {
            body.data.insert("agent".into(), a.clone().into());
        }
        body.data.insert("signed".into(), signed.into());
        body.data
            .insert("key_sha256".into(), hex::encode(hash).into());
        let receipt = ledger.append(body).await?;
        let key = ApiKey {
            id: id.clone(),
            tenant: tenant.to_owned(),
            roles,
            agent,
            signed,
            issued_by: by.to_owned(),
            created_seq: receipt.seq,
            revoked_seq: None,
        };
        let signing_secret = self
            .signing
            .as_ref()
            .filter(|_| signed)
            .map(|s| s.secret_for(&id));
        self.keys.insert(id, (key.clone(), hash));
        Ok(IssuedKey {
            key,
            text,
            signing_secret,
        })
    }

    /// Revokes a key; recorded in the ledger. Revoking twice is refused.
    pub async fn revoke<S: Store>(
        &mut self,
        ledger: &Ledger<S>,
        id: &str,
        by: &str,
    ) -> Result<ApiKey, KeyError> {
        let (key, _) = self
            .keys
            .get(id)
            .ok_or_else(|| KeyError::NotFound(id.to_owned()))?;
        if key.revoked_seq.is_some() {
            return Err(KeyError::BadRequest(format!(
                "key `{id}` is already revoked"
            )));
        }
        let mut body = EntryBody::new(
            key.tenant.clone(),
            KEY_REVOKED,
            by,
            "revoke",
            Outcome::Success,
        );
        body.resource = Some(format!("api_key:{id}"));
        body.severity = Severity::Medium;
        body.data.insert("key_id".into(), id.into());
        let receipt = ledger.append(body).await?;
        let (key, _) = self
            .keys
            .get_mut(id)
            .ok_or_else(|| KeyError::NotFound(id.to_owned()))?;
        key.revoked_seq = Some(receipt.seq);
        Ok(key.clone())
    }

    /// The key a request presents, if it is valid and not revoked. The secret is compared
    /// by hash in constant time; every failure is the same answer.
    pub fn authenticate(&self, presented: &str) -> Result<&ApiKey, KeyError> {
        let id = presented
            .strip_prefix("ck_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(KeyError::Unauthenticated)?;
        let (key, hash) = self.keys.get(id).ok_or(KeyError::Unauthenticated)?;
        let ok: bool = key_hash(presented).ct_eq(hash).into();
        if ok && key.revoked_seq.is_none() {
            Ok(key)
        } else {
            Err(KeyError::Unauthenticated)
        }
    }

    /// Keys, optionally of one tenant, by id.
    pub fn list(&self, tenant: Option<&str>) -> Vec<&ApiKey> {
        self.keys
            .values()
            .map(|(k, _)| k)
            .filter(|k| tenant.is_none_or(|t| k.tenant == t))
            .collect()
    }
}
