//! Who is calling: API key, request signature for `signed` keys (SPEC §4.6), and the record of
//! every refusal as a `security_event` entry.
//!
//! Refusals are recorded in aggregate: a background task appends, once a second, one entry per
//! (tenant, key, reason, peer) that failed since the last flush, with the count and the first
//! and last times. Nothing is dropped — a flood of bad keys becomes a few entries with large
//! counts, not a ledger flood; and when more distinct sources fail than the table holds, the
//! excess is counted in one overflow entry.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri, header};
use custos_core::entry::{EntryBody, Outcome, Severity};
use custos_ledger::{Ledger, SYSTEM_TENANT};
use custos_store::Store;
use serde_json::json;

use crate::keys::ApiKey;

/// Event type of refusals.
pub const SECURITY_EVENT: &str = "security_event";
/// Distinct failure sources kept between flushes; more are counted in one overflow record.
pub const MAX_FAILURE_SOURCES: usize = 10_000;

/// The parts of a request authentication looks at.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Method.
    pub method: Method,
    /// Target (path and query), as signed.
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// The peer address, when the server knows it.
    pub peer: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        })
    }
}

impl Caller {
    /// The bearer token, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
    }

    /// A header as text.
    pub fn header(&self, name: &'static str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Path and query as the client sent them.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

/// One refusal, as recorded.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The tenant of the key presented, or `system` when none could be told.
    pub tenant: String,
    /// The key id presented, when one could be read.
    pub key_id: Option<String>,
    /// Stable code: `missing_credentials`, `invalid_key`, `bad_signature`, `forbidden`, …
    pub reason: &'static str,
    /// The peer.
    pub peer: Option<IpAddr>,
    /// Method and path of the first request of the group.
    pub request: String,
}

#[derive(Debug)]
struct Group {
    count: u64,
    first_ns: i128,
    last_ns: i128,
    request: String,
}

type GroupKey = (String, Option<String>, &'static str, Option<IpAddr>);

#[derive(Default)]
struct Pending {
    groups: HashMap<GroupKey, Group>,
    overflow: u64,
}

/// Refusals waiting to be recorded.
#[derive(Default)]
pub struct FailureLog {
    pending: Mutex<Pending>,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

impl FailureLog {
    /// Notes a refusal; it reaches the ledger at the next flush.
    pub fn note(&self, f: Failure) {
        let now = now_ns();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (f.tenant, f.key_id, f.reason, f.peer);
        if let Some(g) = p.groups.get_mut(&key) {
            g.count += 1;
            g.last_ns = now;
        } else if p.groups.len() >= MAX_FAILURE_SOURCES {
            p.overflow += 1;
        } else {
            p.groups.insert(
                key,
                Group {
                    count: 1,
                    first_ns: now,
                    last_ns: now,
                    request: f.request,
                },
            );
        }
    }

    /// Takes what is pending, as entries.
    pub fn drain(&self) -> Vec<EntryBody> {
        let (groups, overflow) = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut p.groups),
                std::mem::take(&mut p.overflow),
            )
        };
        let mut out = Vec::with_capacity(groups.len() + 1);
        for ((tenant, key_id, reason, peer), g) in groups {
            let mut b = EntryBody::new(
                tenant,
                SECURITY_EVENT,
                "system",
                "auth_failure",
                Outcome::Denied,
            );
            b.severity = match reason {
                // A valid key with a bad signature or a replay: the key may be stolen.
                "bad_signature" | "nonce_replayed" => Severity::High,
                // An approval replayed, or a token forged or carried to another review.
                "approval_token_reused" | "invalid_approval_token" => Severity::High,
                "forbidden" => Severity::Medium,
                _ => Severity::Low,
            };
            b.resource = key_id.as_ref().map(|k| format!("api_key:{k}"));
            b.data.insert("reason".into(), json!(reason));
            b.data.insert("count".into(), json!(g.count));
            b.data.insert(
                "first_at".into(),
                json!(custos_core::time::format_utc_nanos(g.first_ns)),
            );
            b.data.insert(
                "last_at".into(),
                json!(custos_core::time::format_utc_nanos(g.last_ns)),
            );
            b.data.insert("request".into(), json!(g.request));
            if let Some(ip) = peer {
                b.data.insert("peer".into(), json!(ip.to_string()));
            }
            out.push(b);
        }
        if overflow > 0 {
            let mut b = EntryBody::new(
                SYSTEM_TENANT,
                SECURITY_EVENT,
                "system",
                "auth_failure",
                Outcome::Denied,
            );
            b.severity = Severity::High;
            b.data.insert("reason".into(), json!("many_sources"));
            b.data.insert("count".into(), json!(overflow));
            out.push(b);
        }
        out
    }

    /// Appends what is pending; the entries wait for queue space rather than being dropped.
    pub async fn flush<S: Store>(&self, ledger: &Ledger<S>) {
        let bodies = self.drain();
        if bodies.is_empty() {
            return;
        }
        let n = bodies.len();
        // A refusal record that does not validate (it always should) must not block others.
        for chunk in bodies.chunks(1000) {
            if let Err(e) = ledger.append_batch(chunk.to_vec()).await {
                tracing::error!(error = %e, records = n, "recording authentication failures failed");
            }
        }
    }

    /// Flushes every second until `stop` turns true, then once more.
    pub async fn run<S: Store>(
        self: Arc<Self>,
        ledger: Arc<Ledger<S>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            self.flush(&ledger).await;
            if *stop.borrow() {
                return;
            }
        }
    }
}

/// The failure record of a refusal of `caller`, attributed to `key` when known.
pub fn failure(caller: &Caller, key: Option<&ApiKey>, reason: &'static str) -> Failure {
    Failure {
        tenant: key.map_or_else(|| SYSTEM_TENANT.to_owned(), |k| k.tenant.clone()),
        key_id: key.map(|k| k.id.clone()),
        reason,
        peer: caller.peer,
        request: format!("{} {}", caller.method, caller.uri.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(tenant: &str, key: Option<&str>, reason: &'static str, ip: [u8; 4]) -> Failure {
        Failure {
            tenant: tenant.into(),
            key_id: key.map(str::to_owned),
            reason,
            peer: Some(IpAddr::from(ip)),
            request: "GET /v1/entries".into(),
        }
    }

    #[test]
    fn refusals_are_grouped_per_source_and_counted() {
        let log = FailureLog::default();
        for _ in 0..5 {
            log.note(fail("acme", Some("k1"), "bad_signature", [10, 0, 0, 1]));
        }
        log.note(fail("acme", Some("k1"), "bad_signature", [10, 0, 0, 2]));
        log.note(fail(SYSTEM_TENANT, None, "invalid_key", [10, 0, 0, 1]));
        let mut bodies = log.drain();
        bodies.sort_by_key(|b| {
            (
                b.tenant.clone(),
                b.data.get("count").and_then(serde_json::Value::as_u64),
            )
        });
        assert_eq!(bodies.len(), 3);
        let counts: Vec<_> = bodies
            .iter()
            .map(|b| {
                (
                    b.tenant.as_str(),
                    b.data["reason"].as_str().unwrap_or(""),
                    b.data["count"].as_u64().unwrap_or(0),
                    b.severity,
                )
            })
            .collect();
        assert_eq!(
            counts,
            vec![
                ("acme", "bad_signature", 1, Severity::High),
                ("acme", "bad_signature", 5, Severity::High),
                ("system", "invalid_key", 1, Severity::Low),
            ]
        );
        assert_eq!(bodies[1].resource.as_deref(), Some("api_key:k1"));
        assert_eq!(bodies[1].data["peer"], "10.0.0.1");
        for b in &bodies {
            assert_eq!(b.event_type, SECURITY_EVENT);
            assert_eq!(b.outcome, Outcome::Denied);
            custos_core::entry::PreparedEntry::new(b.clone(), &Default::default())
                .expect("a refusal record is a valid entry");
        }
        assert!(log.drain().is_empty(), "drained once");
    }

    #[test]
    fn too_many_sources_fold_into_one_counted_overflow_record() {
        let log = FailureLog::default();
        for i in 0..(MAX_FAILURE_SOURCES as u32 + 7) {
            log.note(fail(SYSTEM_TENANT, None, "invalid_key", i.to_be_bytes()));
        }
        let bodies = log.drain();
        assert_eq!(bodies.len(), MAX_FAILURE_SOURCES + 1);
        let total: u64 = bodies
            .iter()
            .map(|b| b.data["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(total, MAX_FAILURE_SOURCES as u64 + 7, "nothing dropped");
        assert!(
            bodies
                .iter()
                .any(|b| b.data["reason"] == "many_sources" && b.data["count"] == 7)
        );
    }
}
