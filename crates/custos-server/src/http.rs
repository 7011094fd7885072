//! The HTTP API (first part of issue 3): ledger endpoints behind API-key authentication, RFC
//! 9457 problem+json errors, backpressure as 503 + `Retry-After`, health and readiness.
//!
//! Every state-changing endpoint requires a key; a key only ever sees and writes its own
//! tenant; an agent key writes only entries whose actor is its agent. Keys marked `signed` are
//! refused until request signatures (SPEC §4.6) are implemented, rather than accepted unchecked.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use custos_core::entry::{EntryBody, Outcome, Severity};
use custos_core::time::parse_rfc3339;
use custos_ledger::{Ledger, LedgerError};
use custos_store::{EntryQuery, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::keys::{ApiKey, KeyError, KeyRegistry, Role};

/// Largest request body: a full batch of 10 000 entries of a few KiB each.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What handlers share.
pub struct AppState<S: Store> {
    /// The ledger.
    pub ledger: Arc<Ledger<S>>,
    /// API keys.
    pub keys: RwLock<KeyRegistry>,
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl Problem {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    fn unauthenticated() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "send a valid API key as `Authorization: Bearer ck_…`",
        )
    }

    fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InvalidEntry { index, error } => Problem {
                field: Some(match index {
                    Some(i) => format!("entries[{i}].{}", error.field),
                    None => error.field.clone(),
                }),
                ..Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-entry",
                    "Invalid entry",
                    e_detail(index, &error),
                )
            },
            LedgerError::Overloaded { queued } => Problem {
                retry_after: Some(1),
                ..Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Overloaded",
                    format!("{queued} entries are queued; retry later"),
                )
            },
            LedgerError::BadRequest(m) => Problem::bad_request(m),
            LedgerError::NotFound(m) => Problem::not_found(m),
            other => {
                tracing::error!(error = %other, "request failed");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the request could not be completed",
                )
            }
        }
    }
}

fn e_detail(index: Option<usize>, error: &custos_core::entry::EntryError) -> String {
    match index {
        Some(i) => format!("entry {i}: {error}"),
        None => error.to_string(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("https://custos.dev/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(f) = &self.field {
            body["field"] = Value::String(f.clone());
        }
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

type Result<T, E = Problem> = std::result::Result<T, E>;

async fn authenticate<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<ApiKey> {
    let text = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(Problem::unauthenticated)?;
    let keys = state.keys.read().await;
    let key = keys.authenticate(text.trim()).map_err(|e| match e {
        KeyError::Unauthenticated => Problem::unauthenticated(),
        other => Problem::bad_request(other.to_string()),
    })?;
    if key.signed {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "signature-required",
            "Signed requests required",
            "this key requires HMAC-signed requests, which this server does not accept yet",
        ));
    }
    Ok(key.clone())
}

fn parse_json(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))
}

/// Checks that `key` may write `body`, filling the tenant from the key when absent.
fn authorise_write(key: &ApiKey, value: &mut Value) -> Result<()> {
    if key.roles == [Role::Auditor] {
        return Err(Problem::forbidden("an auditor key cannot write entries"));
    }
    let Some(obj) = value.as_object_mut() else {
        return Err(Problem::bad_request("an entry must be a JSON object"));
    };
    match obj.get("tenant") {
        None => {
            obj.insert("tenant".into(), Value::String(key.tenant.clone()));
        }
        Some(Value::String(t)) if *t == key.tenant => {}
        Some(_) => return Err(Problem::forbidden("a key writes only to its own tenant")),
    }
    if let Some(agent) = &key.agent
        && !key.roles.contains(&Role::Admin)
        && obj.get("actor").and_then(Value::as_str) != Some(agent.as_str())
    {
        return Err(Problem::forbidden(format!(
            "this agent key may only write entries whose actor is {agent}"
        )));
    }
    Ok(())
}

fn body_of(value: &Value, index: Option<usize>) -> Result<EntryBody> {
    EntryBody::from_json(value)
        .map_err(|error| Problem::from(LedgerError::InvalidEntry { index, error }))
}

async fn append_one<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let mut value = parse_json(&body)?;
    authorise_write(&key, &mut value)?;
    let entry = body_of(&value, None)?;
    let mut receipts = state
        .ledger
        .try_append_batch(vec![entry])
        .await
        .map_err(|e| match e {
            // One entry: name the field, not a batch position.
            LedgerError::InvalidEntry { error, .. } => {
                LedgerError::InvalidEntry { index: None, error }
            }
            other => other,
        })?;
    let receipt = receipts
        .pop()
        .ok_or_else(|| Problem::bad_request("nothing appended"))?;
    Ok((StatusCode::CREATED, Json(receipt)).into_response())
}

async fn append_batch<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let value = parse_json(&body)?;
    let mut items = match value {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("entries") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(Problem::bad_request(
                    "expected {\"entries\": [...]} or a JSON array",
                ));
            }
        },
        _ => {
            return Err(Problem::bad_request(
                "expected {\"entries\": [...]} or a JSON array",
            ));
        }
    };
    if items.is_empty() || items.len() > custos_store::embedded::MAX_BATCH {
        return Err(Problem::bad_request(format!(
            "a batch holds 1 to {} entries, not {}",
            custos_store::embedded::MAX_BATCH,
            items.len()
        )));
    }
    let mut bodies = Vec::with_capacity(items.len());
    for (i, item) in items.iter_mut().enumerate() {
        authorise_write(&key, item).map_err(|mut p| {
            p.detail = format!("entry {i}: {}", p.detail);
            p
        })?;
        bodies.push(body_of(item, Some(i))?);
    }
    let receipts = state.ledger.try_append_batch(bodies).await?;
    Ok((StatusCode::CREATED, Json(json!({ "entries": receipts }))).into_response())
}

async fn get_entry<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let entry = state.ledger.get_by_key(&id)?;
    // Another tenant's entry does not exist, as far as this key can tell.
    if entry.tenant != key.tenant {
        return Err(Problem::not_found(format!("no entry `{id}`")));
    }
    Ok(Json(entry).into_response())
}

/// Query parameters of `GET /v1/entries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    actor: Option<String>,
    event_type: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    severity: Option<String>,
    resource: Option<String>,
    resource_prefix: Option<bool>,
    target: Option<String>,
    trace_id: Option<String>,
    session_id: Option<String>,
    start: Option<String>,
    end: Option<String>,
    after: Option<u64>,
    order: Option<String>,
    limit: Option<usize>,
}

async fn query_entries<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    params: std::result::Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse_rfc3339(s).map_err(|e| Problem::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    let q = EntryQuery {
        tenant: Some(key.tenant.clone()),
        actor: p.actor,
        event_type: p.event_type,
        action: p.action,
        outcome: p
            .outcome
            .as_deref()
            .map(|o| {
                Outcome::parse(o).ok_or_else(|| {
                    Problem::bad_request(format!(
                        "outcome: `{o}` is not one of success, failure, denied, error"
                    ))
                })
            })
            .transpose()?,
        min_severity: p
            .severity
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    Problem::bad_request(format!(
                        "severity: `{s}` is not one of info, low, medium, high, critical"
                    ))
                })
            })
            .transpose()?,
        resource: p.resource,
        resource_prefix: p.resource_prefix.unwrap_or(false),
        target: p.target,
        trace_id: p.trace_id,
        session_id: p.session_id,
        start: time("start", &p.start)?,
        end: time("end", &p.end)?,
        after: p.after,
        descending: match p.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(o) => {
                return Err(Problem::bad_request(format!(
                    "order: `{o}` is not asc or desc"
                )));
            }
        },
        limit: match p.limit.unwrap_or(100) {
            n @ 1..=custos_store::MAX_QUERY_LIMIT => n,
            n => {
                return Err(Problem::bad_request(format!(
                    "limit: {n} is not between 1 and 1000"
                )));
            }
        },
    };
    let (entries, next) = state.ledger.query(&q)?;
    Ok(Json(json!({ "entries": entries, "next": next })).into_response())
}

/// `tree_size` of a proof request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    tree_size: Option<u64>,
}

async fn inclusion_proof<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
    params: std::result::Result<Query<ProofParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let entry = state.ledger.get(seq)?;
    if entry.tenant != key.tenant {
        return Err(Problem::not_found(format!("no entry `{seq}`")));
    }
    let bundle = state.ledger.prove(seq, p.tree_size).await?;
    Ok(Json(bundle).into_response())
}

/// Sizes of a consistency proof.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    first: u64,
    second: u64,
}

async fn consistency_proof<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    params: std::result::Result<Query<ConsistencyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    authenticate(&state, &headers).await?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    Ok(Json(state.ledger.consistency(p.first, p.second)?).into_response())
}

async fn checkpoint_for_size<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    Path(size): Path<u64>,
) -> Result<Response> {
    let cp = state.ledger.checkpoint_for_size(size)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// Range and format of an export or summary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    format: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

fn range_for(key: &ApiKey, p: &RangeParams) -> Result<custos_ledger::export::Range> {
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse_rfc3339(s).map_err(|e| Problem::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    Ok(custos_ledger::export::Range {
        tenant: Some(key.tenant.clone()),
        start: time("start", &p.start)?,
        end: time("end", &p.end)?,
    })
}

/// Hands export bytes to the HTTP body a chunk at a time (bounded: memory stays constant).
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn export<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    params: std::result::Result<Query<RangeParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let format: custos_ledger::export::Format = p
        .format
        .as_deref()
        .unwrap_or("jsonl")
        .parse()
        .map_err(Problem::bad_request)?;
    let range = range_for(&key, &p)?;
    let content_type = match format {
        custos_ledger::export::Format::Json => "application/json",
        custos_ledger::export::Format::JsonLines => "application/x-ndjson",
        custos_ledger::export::Format::Csv => "text/csv; charset=utf-8",
        custos_ledger::export::Format::CloudEvents => "application/cloudevents-batch+json",
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let ledger = state.ledger.clone();
    tokio::task::spawn_blocking(move || {
        let origin = ledger.config().origin.clone();
        let mut out = ChannelWriter(tx.clone());
        if let Err(e) = custos_ledger::export::export(
            ledger.store().as_ref(),
            &origin,
            format,
            &range,
            &mut out,
        ) {
            tracing::warn!(error = %e, "export stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn summary<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    params: std::result::Result<Query<RangeParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    let Query(p) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    if p.format.is_some() {
        return Err(Problem::bad_request("a summary has no format"));
    }
    let range = range_for(&key, &p)?;
    let ledger = state.ledger.clone();
    let s = tokio::task::spawn_blocking(move || {
        custos_ledger::export::summary(ledger.store().as_ref(), &range)
    })
    .await
    .map_err(|e| Problem::bad_request(format!("summary failed: {e}")))??;
    Ok(Json(s).into_response())
}

async fn verify_ledger<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
) -> Result<Response> {
    let key = authenticate(&state, &headers).await?;
    if !key
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor))
    {
        return Err(Problem::forbidden(
            "verification is for admin and auditor keys",
        ));
    }
    let ledger = state.ledger.clone();
    let report = tokio::task::spawn_blocking(move || {
        let origin = ledger.config().origin.clone();
        custos_ledger::verify::verify(ledger.store().as_ref(), &ledger.verifier(), &origin, |_| {})
    })
    .await
    .map_err(|e| Problem::bad_request(format!("verification failed to run: {e}")))??;
    Ok(Json(report).into_response())
}

async fn checkpoint<S: Store>(State(state): State<Arc<AppState<S>>>) -> Result<Response> {
    let cp = state.ledger.checkpoint().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

async fn verifier_key<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.ledger.verifier()),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz<S: Store>(State(state): State<Arc<AppState<S>>>) -> Result<&'static str> {
    state.ledger.size().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            "the store is not readable",
        )
    })?;
    Ok("ready\n")
}

async fn fallback() -> Problem {
    Problem::not_found("no such endpoint")
}

/// The router of the API.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    Router::new()
        .route("/v1/entries", post(append_one::<S>).get(query_entries::<S>))
        .route("/v1/entries:batch", post(append_batch::<S>))
        .route("/v1/entries/{id}", get(get_entry::<S>))
        .route("/v1/proofs/inclusion/{seq}", get(inclusion_proof::<S>))
        .route("/v1/checkpoint", get(checkpoint::<S>))
        .route("/v1/checkpoints/{size}", get(checkpoint_for_size::<S>))
        .route("/v1/proofs/consistency", get(consistency_proof::<S>))
        .route("/v1/export", get(export::<S>))
        .route("/v1/summary", get(summary::<S>))
        .route("/v1/ledger/verify", get(verify_ledger::<S>))
        .route("/.well-known/custos/log.pub", get(verifier_key::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_503_with_retry_after_and_problem_json() {
        let resp = Problem::from(LedgerError::Overloaded { queued: 7 }).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let resp = Problem::from(LedgerError::Signing("secret detail".into()));
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!resp.detail.contains("secret"));
    }
}
