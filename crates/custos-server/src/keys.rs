//! API keys (SPEC §9, issue 3): bound to a tenant and roles, stored only as hashes, compared
//! in constant time. Issuing and revoking a key are ledger entries in the key's tenant, and the
//! registry is a projection rebuilt from those entries — the ledger is the system of record.
//!
//! On a store several nodes share (PostgreSQL), keys are issued and revoked through any node,
//! so each node's registry follows the ledger: every [`KEY_REFRESH_INTERVAL`] it reads the key
//! entries appended since it last looked ([`KeyRegistry::read_updates`], then
//! [`KeyRegistry::absorb`]), and a key id it does not know makes it look at once before it
//! answers "unauthenticated". The bound on staleness, for a change made through another node:
//! - an issued key authenticates at once (the look on an unknown id reads every entry
//!   committed before the request arrived);
//! - a revocation takes effect within [`KEY_REFRESH_INTERVAL`] (1 s) plus the time of one
//!   refresh — one indexed query for the key entries appended in that second — after its entry
//!   committed (while the database is unreachable nothing is refreshed, and nothing else works).
//!
//! Through the node itself, both take effect at once. Listing and revoking keys see a key
//! issued through another node once a refresh brought it in (within the same bound).
//!
//! A key reads `ck_<id>_<secret>`: `id` (16 hex digits) is public and names the key in the
//! ledger and in `keys list`; `secret` is 32 random bytes, base64url. The ledger keeps
//! SHA-256 of the whole key text. A fast hash is enough here: the secret has 256 bits of
//! entropy, so there is nothing to brute-force.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use custos_core::entry::{Entry, EntryBody, Outcome, Severity, check_principal};
use custos_ledger::{Ledger, LedgerError};
use custos_store::{EntryQuery, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::signing::SigningKeys;

/// Event type of an issued key.
pub const KEY_CREATED: &str = "api_key_created";
/// Event type of a revoked key.
pub const KEY_REVOKED: &str = "api_key_revoked";
/// How often a registry on a shared store reads the key entries other nodes appended.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

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

impl ApiKey {
    /// How the ledger names whoever holds the key as a user: `user:apikey-<id>`.
    pub fn user(&self) -> String {
        format!("user:apikey-{}", self.id)
    }

    /// How the ledger names whoever acts with the key: its agent for an agent key, else
    /// [`ApiKey::user`].
    pub fn actor(&self) -> String {
        self.agent.clone().unwrap_or_else(|| self.user())
    }
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

type Keys = BTreeMap<String, (ApiKey, [u8; 32])>;

/// Key entries read from the ledger: everything of the two key event types in
/// `[from, next)` (and possibly a little past it), in seq order.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdates {
    events: Vec<Entry>,
    next: u64,
}

impl KeyUpdates {
    /// The first seq not read.
    pub fn next(&self) -> u64 {
        self.next
    }
}

type ReadFn = dyn Fn(u64) -> Result<KeyUpdates, KeyError> + Send + Sync;

/// What a registry on a shared store needs to follow the ledger between refreshes.
struct Follow {
    read: Box<ReadFn>,
    late: Mutex<Late>,
    /// `late.revoked` is not empty (spares known keys the lock).
    late_revocations: AtomicBool,
}

/// What looks on unknown key ids found since the last refresh; folded into the registry by
/// the next [`KeyRegistry::absorb`].
#[derive(Default)]
struct Late {
    /// Keys issued after the registry's `next`.
    keys: Keys,
    /// Revocations (first seq) of keys the registry holds.
    revoked: BTreeMap<String, u64>,
    /// The first seq not read.
    next: u64,
    /// When the last look started.
    looked: Option<Instant>,
}

/// Every key, rebuilt from the ledger and kept current by [`KeyRegistry::issue`] and
/// [`KeyRegistry::revoke`] — and, on a shared store, by following the ledger
/// ([`KeyRegistry::following`]).
#[derive(Default)]
pub struct KeyRegistry {
    keys: Keys,
    signing: Option<SigningKeys>,
    /// The first seq whose key entries are not reflected in `keys`.
    next: u64,
    follow: Option<Follow>,
}

impl std::fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("keys", &self.keys.len())
            .field("next", &self.next)
            .field("following", &self.follow.is_some())
            .finish_non_exhaustive()
    }
}

/// Applies one key entry to `keys`; a revocation of a key not there goes to `orphans` (when
/// given) if `known` holds it in the same tenant.
fn apply(
    keys: &mut Keys,
    known: Option<(&Keys, &mut BTreeMap<String, u64>)>,
    e: &Entry,
) -> Result<(), KeyError> {
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
        // The first issue of an id counts (a key this node issued is already there).
        keys.entry(id).or_insert((key, hash));
    } else if e.event_type == KEY_REVOKED {
        if let Some((key, _)) = keys.get_mut(&id) {
            if key.tenant == e.tenant {
                key.revoked_seq.get_or_insert(e.seq);
            }
        } else if let Some((known, orphans)) = known
            && known.get(&id).is_some_and(|(k, _)| k.tenant == e.tenant)
        {
            orphans.entry(id).or_insert(e.seq);
        }
    }
    Ok(())
}

/// Runs `f`, which may block on a lock or the database, without stalling a multi-threaded
/// runtime's worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Whether `id` has the form of a key id (16 lowercase hex digits).
fn is_key_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl KeyRegistry {
    /// Lets the registry issue `signed` keys and check their signatures.
    pub fn with_signing(mut self, signing: SigningKeys) -> Self {
        self.signing = Some(signing);
        self
    }

    /// Makes the registry follow `ledger` for keys issued and revoked by other processes on
    /// the same store: an unknown key id is looked up before it is refused, and
    /// [`KeyRegistry::read_updates`] / [`KeyRegistry::absorb`] (every
    /// [`KEY_REFRESH_INTERVAL`], in `serve`) bring in the rest.
    pub fn following<S: Store>(mut self, ledger: Arc<Ledger<S>>) -> Self {
        self.follow = Some(Follow {
            read: Box::new(move |from| Self::read_updates(&ledger, from)),
            late: Mutex::new(Late {
                next: self.next,
                ..Late::default()
            }),
            late_revocations: AtomicBool::new(false),
        });
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
        reg.absorb(Self::read_updates(ledger, 0)?)?;
        Ok(reg)
    }

    /// The first seq whose key entries the registry has not read.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Reads the key entries from seq `from` on (both kinds, merged in seq order, so a
    /// revocation always follows its issue). Runs no lock of the registry: call it, then
    /// [`KeyRegistry::absorb`] the result.
    pub fn read_updates<S: Store>(ledger: &Ledger<S>, from: u64) -> Result<KeyUpdates, KeyError> {
        // Every entry below `size` is committed now, so the queries below see them all.
        let size = ledger.size()?;
        let mut events = Vec::new();
        for event_type in [KEY_CREATED, KEY_REVOKED] {
            events.extend(ledger.query_all(EntryQuery {
                event_type: Some(event_type.into()),
                after: from.checked_sub(1),
                ..EntryQuery::default()
            })?);
        }
        events.sort_by_key(|e| e.seq);
        // The two queries may each have seen entries past `size` (committed meanwhile) but
        // not the same ones: trust only what both covered.
        events.retain(|e| e.seq < size);
        Ok(KeyUpdates {
            events,
            next: size.max(from),
        })
    }

    /// Applies key entries read by [`KeyRegistry::read_updates`]; applying what is already
    /// reflected changes nothing. Also folds in what looks on unknown key ids found.
    pub fn absorb(&mut self, updates: KeyUpdates) -> Result<(), KeyError> {
        for e in &updates.events {
            apply(&mut self.keys, None, e)?;
        }
        self.next = self.next.max(updates.next);
        if let Some(follow) = &mut self.follow {
            let late = std::mem::take(follow.late.get_mut().unwrap_or_else(|p| p.into_inner()));
            for (id, (key, hash)) in late.keys {
                let (have, _) = self.keys.entry(id).or_insert((key.clone(), hash));
                if let Some(seq) = key.revoked_seq {
                    have.revoked_seq.get_or_insert(seq);
                }
            }
            for (id, seq) in late.revoked {
                if let Some((key, _)) = self.keys.get_mut(&id) {
                    key.revoked_seq.get_or_insert(seq);
                }
            }
            self.next = self.next.max(late.next);
            let late = follow.late.get_mut().unwrap_or_else(|p| p.into_inner());
            late.next = self.next;
            late.looked = None;
            follow.late_revocations.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Reads and applies the key entries appended since the last refresh.
    pub fn refresh<S: Store>(&mut self, ledger: &Ledger<S>) -> Result<(), KeyError> {
        let updates = Self::read_updates(ledger, self.next)?;
        self.absorb(updates)
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
        self.absorb(KeyUpdates::default())?;
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
        self.absorb(KeyUpdates::default())?;
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
    /// by hash in constant time; every failure is the same answer. On a shared store, a key id
    /// the registry does not know is first looked up in the entries appended since the last
    /// refresh (one look at a time; a look that started after this call began serves it).
    pub fn authenticate(&self, presented: &str) -> Result<ApiKey, KeyError> {
        let id = presented
            .strip_prefix("ck_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(KeyError::Unauthenticated)?;
        let check = |key: &ApiKey, hash: &[u8; 32], revoked_late: bool| {
            let ok: bool = key_hash(presented).ct_eq(hash).into();
            if ok && key.revoked_seq.is_none() && !revoked_late {
                Ok(key.clone())
            } else {
                Err(KeyError::Unauthenticated)
            }
        };
        if let Some((key, hash)) = self.keys.get(id) {
            let revoked_late = self.follow.as_ref().is_some_and(|f| {
                f.late_revocations.load(Ordering::Acquire)
                    && blocking(|| f.late.lock().unwrap_or_else(|p| p.into_inner()))
                        .revoked
                        .contains_key(id)
            });
            return check(key, hash, revoked_late);
        }
        let Some(follow) = &self.follow else {
            return Err(KeyError::Unauthenticated);
        };
        if !is_key_id(id) {
            return Err(KeyError::Unauthenticated);
        }
        let arrived = Instant::now();
        blocking(|| {
            let mut late = follow.late.lock().unwrap_or_else(|p| p.into_inner());
            if !late.keys.contains_key(id) && late.looked.is_none_or(|t| t < arrived) {
                late.looked = Some(Instant::now());
                let from = late.next.max(self.next);
                match (follow.read)(from) {
                    Ok(updates) => {
                        let Late { keys, revoked, .. } = &mut *late;
                        for e in &updates.events {
                            apply(keys, Some((&self.keys, revoked)), e)?;
                        }
                        late.next = late.next.max(updates.next);
                        if !late.revoked.is_empty() {
                            follow.late_revocations.store(true, Ordering::Release);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "looking up an unknown API key id failed");
                    }
                }
            }
            let (key, hash) = late.keys.get(id).ok_or(KeyError::Unauthenticated)?;
            check(key, hash, false)
        })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use custos_core::entry::Limits;
    use custos_core::note::Signer;
    use custos_ledger::{Ledger, LedgerConfig};
    use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};

    use super::*;

    /// Two ledgers over one store: as two nodes on one database, each with its registry.
    async fn two_nodes(dir: &std::path::Path) -> [Arc<Ledger<EmbeddedStore>>; 2] {
        let store = Arc::new(EmbeddedStore::open(dir, EmbeddedConfig::default()).expect("open"));
        let mut out = Vec::new();
        for _ in 0..2 {
            let config = LedgerConfig {
                origin: "keys.test/log".into(),
                limits: Limits::default(),
                checkpoint_interval: Duration::from_secs(60),
            };
            let signer = Signer::from_seed("keys.test/log", [3u8; 32]).expect("signer");
            out.push(Arc::new(
                Ledger::open(store.clone(), signer, config, custos_store::system_clock())
                    .await
                    .expect("ledger"),
            ));
        }
        [out[0].clone(), out[1].clone()]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registry_follows_keys_issued_and_revoked_elsewhere() {
        let dir = tempfile::tempdir().expect("tmp");
        let [a, b] = two_nodes(dir.path()).await;
        let mut reg_a = KeyRegistry::load(&a).expect("load");
        let first = reg_a
            .issue(&a, "acme", &[Role::Admin], None, false, "user:root")
            .await
            .expect("issue");
        let mut reg_b = KeyRegistry::load(&b).expect("load").following(b.clone());
        assert_eq!(reg_b.next(), b.size().expect("size"));

        // Issued through A after B loaded: B looks it up at once instead of refusing it.
        let second = reg_a
            .issue(&a, "acme", &[Role::Auditor], None, false, "user:root")
            .await
            .expect("issue");
        assert_eq!(
            reg_b
                .authenticate(&second.text)
                .expect("found by a look")
                .id,
            second.key.id
        );
        // A wrong secret for an id found that way is refused like any other.
        let mut wrong = second.text.clone();
        wrong.pop();
        wrong.push(if second.text.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            reg_b.authenticate(&wrong),
            Err(KeyError::Unauthenticated)
        ));
        // Ids that are not key ids, or that no entry issued, are refused.
        for bad in [
            "ck_nothex_x",
            "ck_0011223344556677_x",
            "ck_ABCDEF0011223344_x",
        ] {
            assert!(matches!(
                reg_b.authenticate(bad),
                Err(KeyError::Unauthenticated)
            ));
        }

        // Revoked through A: B refuses it once it refreshed.
        reg_a
            .revoke(&a, &first.key.id, "user:root")
            .await
            .expect("revoke");
        assert!(reg_b.authenticate(&first.text).is_ok(), "not yet refreshed");
        reg_b.refresh(&b).expect("refresh");
        assert!(matches!(
            reg_b.authenticate(&first.text),
            Err(KeyError::Unauthenticated)
        ));
        assert!(reg_b.authenticate(&second.text).is_ok());

        // B's registry now equals one rebuilt from the ledger, and refreshing again (or
        // absorbing what it already has) changes nothing.
        reg_b.refresh(&b).expect("refresh again");
        reg_b
            .absorb(KeyRegistry::read_updates(&b, 0).expect("read all"))
            .expect("absorb all");
        let rebuilt = KeyRegistry::load(&b).expect("rebuild");
        assert_eq!(reg_b.list(None), rebuilt.list(None));
        assert_eq!(reg_b.next(), b.size().expect("size"));

        // B can revoke a key issued through A once it knows it; A follows.
        let mut reg_a = reg_a.following(a.clone());
        reg_b
            .revoke(&b, &second.key.id, "user:root")
            .await
            .expect("revoke through B");
        reg_a.refresh(&a).expect("refresh");
        assert!(matches!(
            reg_a.authenticate(&second.text),
            Err(KeyError::Unauthenticated)
        ));
        assert_eq!(
            reg_a.list(None),
            KeyRegistry::load(&a).expect("load").list(None)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_look_for_an_unknown_key_also_brings_in_revocations() {
        let dir = tempfile::tempdir().expect("tmp");
        let [a, b] = two_nodes(dir.path()).await;
        let mut reg_a = KeyRegistry::load(&a).expect("load");
        let old = reg_a
            .issue(&a, "acme", &[Role::Admin], None, false, "user:root")
            .await
            .expect("issue");
        let reg_b = KeyRegistry::load(&b).expect("load").following(b.clone());
        assert!(reg_b.authenticate(&old.text).is_ok());
        reg_a
            .revoke(&a, &old.key.id, "user:root")
            .await
            .expect("revoke");
        let new = reg_a
            .issue(&a, "acme", &[Role::Admin], None, false, "user:root")
            .await
            .expect("issue");
        // Looking up the new key reads the revocation too, which takes effect at once.
        assert!(reg_b.authenticate(&new.text).is_ok());
        assert!(matches!(
            reg_b.authenticate(&old.text),
            Err(KeyError::Unauthenticated)
        ));
        // A key issued and revoked between refreshes is refused too.
        let brief = reg_a
            .issue(&a, "acme", &[Role::Admin], None, false, "user:root")
            .await
            .expect("issue");
        reg_a
            .revoke(&a, &brief.key.id, "user:root")
            .await
            .expect("revoke");
        assert!(matches!(
            reg_b.authenticate(&brief.text),
            Err(KeyError::Unauthenticated)
        ));
    }

    #[test]
    fn key_ids_are_sixteen_lowercase_hex_digits() {
        assert!(is_key_id("0123456789abcdef"));
        for bad in [
            "",
            "0123456789abcde",
            "0123456789ABCDEF",
            "0123456789abcdeg",
        ] {
            assert!(!is_key_id(bad), "{bad}");
        }
    }
}
