//! The HTTP API: ledger and key endpoints behind API-key authentication (with request
//! signatures for `signed` keys, SPEC §4.6), RFC 9457 problem+json errors, backpressure as
//! 503 + `Retry-After`, health and readiness.
//!
//! Every state-changing endpoint requires a key; a key only ever sees and writes its own
//! tenant; an agent key writes only entries whose actor is its agent. Every refusal (401, 403)
//! is recorded as a `security_event` entry (see [`crate::auth`]).
//!
//! Each handler carries its OpenAPI description (`#[utoipa::path]`): every status it can
//! answer, with its content type. [`crate::openapi`] assembles them into `/openapi.json`, and
//! a test checks that the document describes exactly the routes [`router`] serves.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use custos_core::entry::{Entry, EntryBody, Outcome, Severity};
use custos_core::time::parse_rfc3339;
use custos_ledger::{Ledger, LedgerError, Receipt};
use custos_store::{EntryQuery, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::RwLock;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Caller, FailureLog};
use crate::keys::{ApiKey, KeyError, KeyRegistry, Role};
use crate::openapi::{
    self, BadRequest, Conflict, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthenticated,
    Unavailable, Unprocessable,
};
use crate::signing::{NonceError, NonceStore, SignatureError, SignatureHeaders};
use crate::{gate_http, oversight_http};

/// Largest request body: a full batch of 10 000 entries of a few KiB each.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Event types only custos itself writes: the key registry and the refusal records are
/// projections of these entries.
pub const RESERVED_EVENT_TYPES: [&str; 3] = [
    crate::keys::KEY_CREATED,
    crate::keys::KEY_REVOKED,
    crate::auth::SECURITY_EVENT,
];

/// Every service's reserved event types: what its projections are folded from, so no client
/// may append them. A domain service adds its list here.
const RESERVED_BY_SERVICE: [&[&str]; 4] = [
    &RESERVED_EVENT_TYPES,
    &custos_gate::service::record::RESERVED_EVENT_TYPES,
    &custos_oversight::registry::RESERVED_EVENT_TYPES,
    &custos_alerts::RESERVED_EVENT_TYPES,
];

/// Whether only custos itself may write entries of `event_type`.
fn reserved(event_type: &str) -> bool {
    RESERVED_BY_SERVICE
        .iter()
        .any(|list| list.contains(&event_type))
}

/// What handlers share.
pub struct AppState<S: Store> {
    /// The ledger.
    pub ledger: Arc<Ledger<S>>,
    /// API keys.
    pub keys: RwLock<KeyRegistry>,
    /// Nonces of signed requests.
    pub nonces: Arc<NonceStore>,
    /// Refusals waiting to be recorded.
    pub failures: Arc<FailureLog>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// `/readyz` fails while the indexes are further behind the log than this.
    pub max_index_lag: u64,
    /// The plan gate (SPEC §4).
    pub gate: Arc<custos_gate::service::GateService<S>>,
    /// Agent oversight (SPEC §5).
    pub oversight: Arc<custos_oversight::service::OversightService<S>>,
}

/// Default of [`AppState::max_index_lag`]: a few seconds of appends at full speed.
pub const MAX_INDEX_LAG: u64 = 1_000_000;

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
    pub(crate) field: Option<String>,
    pub(crate) retry_after: Option<u64>,
}

impl Problem {
    pub(crate) fn new(
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

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
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

    /// 503 with `Retry-After: 1`: the server cannot serve this now (`/readyz`, `/health`).
    pub(crate) fn not_ready(detail: impl Into<String>) -> Self {
        Problem {
            retry_after: Some(1),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                detail,
            )
        }
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// The problem for an error status produced outside the handlers (axum's rejections:
    /// 405, 413, 415, …), with a stable type per status.
    pub fn from_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let (kind, title) = match status {
            StatusCode::BAD_REQUEST => ("bad-request", "Bad request"),
            StatusCode::UNAUTHORIZED => ("unauthenticated", "Authentication required"),
            StatusCode::FORBIDDEN => ("forbidden", "Not allowed"),
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "Request body too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported-media-type", "Unsupported media type")
            }
            StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable", "Unprocessable request"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "Request timeout"),
            s if s.is_server_error() => ("internal", "Internal error"),
            _ => ("bad-request", "Bad request"),
        };
        Problem::new(status, kind, title, detail)
    }
}

/// The body of an RFC 9457 problem (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A URI naming the kind of problem; stable, so clients may match on it.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The offending field or parameter, as a path (`actor`, `entries[3].data.x`), when one
    /// is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
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
        let body = ProblemBody {
            kind: format!("https://custos.dev/problems/{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            field: self.field,
        };
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

pub(crate) type Result<T, E = Problem> = std::result::Result<T, E>;

pub(crate) async fn authenticate<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    body: &[u8],
) -> Result<ApiKey> {
    let refuse = |key: Option<&ApiKey>, reason: &'static str, problem: Problem| {
        state.failures.note(auth::failure(caller, key, reason));
        problem
    };
    let Some(text) = caller.bearer() else {
        return Err(refuse(
            None,
            "missing_credentials",
            Problem::unauthenticated(),
        ));
    };
    let keys = state.keys.read().await;
    let key = match keys.authenticate(text) {
        Ok(k) => k.clone(),
        Err(_) => {
            return Err(refuse(
                keys.claimed(text),
                "invalid_key",
                Problem::unauthenticated(),
            ));
        }
    };
    if !key.signed {
        return Ok(key);
    }
    let Some(secret) = keys.signing_secret(&key) else {
        tracing::error!(key = %key.id, "a signed key arrived but the server has no signing secret");
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signing-unavailable",
            "Request signing unavailable",
            "this server cannot check request signatures",
        ));
    };
    drop(keys);
    let bad_signature = |e: SignatureError| {
        refuse(
            Some(&key),
            e.code(),
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "bad-signature",
                "Bad request signature",
                e.to_string(),
            ),
        )
    };
    let headers = SignatureHeaders::read(|name| caller.header(name)).map_err(bad_signature)?;
    let now = crate::signing::unix_now();
    headers
        .verify(
            &secret,
            caller.method.as_str(),
            caller.path_and_query(),
            body,
            now,
        )
        .map_err(bad_signature)?;
    let nonces = state.nonces.clone();
    let (id, nonce, ts) = (key.id.clone(), headers.nonce.to_owned(), headers.timestamp);
    let recorded = tokio::task::spawn_blocking(move || nonces.record(&id, &nonce, ts, now))
        .await
        .map_err(|e| NonceError::Io(std::io::Error::other(e.to_string())))
        .and_then(|r| r);
    match recorded {
        Ok(()) => Ok(key),
        Err(NonceError::Replayed) => Err(bad_signature(SignatureError::Replayed)),
        Err(e) => {
            tracing::error!(error = %e, "recording a nonce failed");
            Err(Problem {
                retry_after: Some(1),
                ..Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Overloaded",
                    "signed requests cannot be accepted right now; retry later",
                )
            })
        }
    }
}

impl<S: Store> AppState<S> {
    /// Records a 403 as a refusal before returning it.
    pub(crate) fn deny(&self, caller: &Caller, key: &ApiKey, p: Problem) -> Problem {
        if p.status == StatusCode::FORBIDDEN {
            self.failures
                .note(auth::failure(caller, Some(key), "forbidden"));
        }
        p
    }
}

/// Refuses (and records the refusal of) a key with none of `roles` for `what`.
pub(crate) fn require<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    key: &ApiKey,
    roles: &[Role],
    what: &str,
) -> Result<()> {
    if key.roles.iter().any(|r| roles.contains(r)) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(state.deny(
        caller,
        key,
        Problem::forbidden(format!(
            "{what} needs one of the roles {}",
            names.join(", ")
        )),
    ))
}

/// A request body that must be a JSON object (serde would also take an array for a struct) of
/// shape `T`; `invalid` makes the caller's 422 problem of what is wrong.
pub(crate) fn read_object<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    what: &str,
    invalid: fn(String) -> Problem,
) -> Result<T> {
    let value = parse_json(body)?;
    if !value.is_object() {
        return Err(invalid(format!(
            "the body is not {what}: expected a JSON object"
        )));
    }
    serde_json::from_value(value).map_err(|e| invalid(format!("the body is not {what}: {e}")))
}

pub(crate) fn parse_json(body: &Bytes) -> Result<Value> {
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
    // Entries custos's own projections are built from (keys, refusal records) come from custos
    // alone: a client writing one could, say, mint itself an API key.
    if let Some(t) = obj.get("event_type").and_then(Value::as_str)
        && reserved(t)
    {
        return Err(Problem::forbidden(format!(
            "event type `{t}` is written by custos itself, not by clients"
        )));
    }
    match obj.get("tenant") {
        None => {
            obj.insert("tenant".into(), Value::String(key.tenant.clone()));
        }
        Some(Value::String(t)) if *t == key.tenant => {}
        Some(Value::String(_)) => {
            return Err(Problem::forbidden("a key writes only to its own tenant"));
        }
        // Not a tenant at all: malformed input (validation names it), not an attempt on
        // another tenant.
        Some(_) => {}
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

/// Appends one entry.
///
/// The entry is validated (the whole of it, naming the field at fault), secrets in `data` are
/// redacted, and the answer comes once it is durable. An agent key writes only entries whose
/// actor is its agent; every key writes only to its own tenant.
#[utoipa::path(
    post,
    path = "/v1/entries",
    tag = "ledger",
    operation_id = "append_entry",
    request_body(content = openapi::NewEntry, content_type = "application/json"),
    responses(
        (status = 201, description = "Appended and durable", body = openapi::Receipt),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn append_one<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let mut value = parse_json(&body)?;
    authorise_write(&key, &mut value).map_err(|p| state.deny(&caller, &key, p))?;
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

/// The receipts of a batch, in the order of its entries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipts {
    /// One receipt per entry.
    #[schema(value_type = Vec<openapi::Receipt>)]
    pub entries: Vec<Receipt>,
}

/// Appends a batch of entries: all of them or none.
///
/// The body is a JSON array of entries or `{"entries": [...]}`, 1 to 10 000 of them. One
/// refused entry refuses the batch, naming its position (`entries[3].actor`).
#[utoipa::path(
    post,
    path = "/v1/entries:batch",
    tag = "ledger",
    operation_id = "append_batch",
    request_body(content = openapi::NewBatch, content_type = "application/json"),
    responses(
        (status = 201, description = "Every entry appended and durable", body = Receipts),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn append_batch<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let value = parse_json(&body)?;
    let expected = || Problem::bad_request("expected {\"entries\": [...]} or a JSON array");
    let mut items = match value {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("entries") {
            // Anything beside `entries` is a mistake the client should hear about.
            Some(Value::Array(items)) if o.is_empty() => items,
            _ => return Err(expected()),
        },
        _ => return Err(expected()),
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
            state.deny(&caller, &key, p)
        })?;
        bodies.push(body_of(item, Some(i))?);
    }
    let entries = state.ledger.try_append_batch(bodies).await?;
    Ok((StatusCode::CREATED, Json(Receipts { entries })).into_response())
}

/// Reads a path parameter, or says which one is wrong.
pub(crate) fn path_param<T>(
    name: &str,
    p: std::result::Result<Path<T>, PathRejection>,
) -> Result<T> {
    p.map(|Path(v)| v).map_err(|e| Problem {
        field: Some(name.to_owned()),
        ..Problem::bad_request(format!("{name}: {}", e.body_text()))
    })
}

/// A time parameter (RFC 3339) in nanoseconds, or a 400 naming it.
pub(crate) fn time_param(name: &str, value: Option<&str>) -> Result<Option<i128>> {
    value
        .map(|s| parse_rfc3339(s).map_err(|e| Problem::bad_request(format!("{name}: {e}"))))
        .transpose()
}

/// `order`: `asc` (the default) or `desc`; true for descending.
pub(crate) fn descending(order: Option<&str>) -> Result<bool> {
    match order {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(o) => Err(Problem::bad_request(format!(
            "order: `{o}` is not asc or desc"
        ))),
    }
}

/// `limit`: a page size from 1 to [`custos_store::MAX_QUERY_LIMIT`], 100 by default.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize> {
    match limit.unwrap_or(100) {
        n @ 1..=custos_store::MAX_QUERY_LIMIT => Ok(n),
        n => Err(Problem::bad_request(format!(
            "limit: {n} is not between 1 and {}",
            custos_store::MAX_QUERY_LIMIT
        ))),
    }
}

/// The store's health when it accepts appends; otherwise 503 (with `Retry-After`) saying
/// why — what `/readyz` and the compatibility `/health` answer.
pub(crate) fn writable_health<S: Store>(state: &AppState<S>) -> Result<custos_store::StoreHealth> {
    let not_ready = Problem::not_ready;
    let health = state
        .ledger
        .store()
        .health()
        .map_err(|e| not_ready(format!("the store is not readable: {e}")))?;
    if let Some(why) = &health.unwritable {
        return Err(not_ready(format!(
            "the store does not accept appends: {why}"
        )));
    }
    Ok(health)
}

/// Reads the query string, or says what is wrong with it.
pub(crate) fn query_params<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(v)| v)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

/// Fetches one entry by `seq` or by `id`.
#[utoipa::path(
    get,
    path = "/v1/entries/{id}",
    tag = "ledger",
    operation_id = "get_entry",
    params(("id" = openapi::EntryKey, Path, description = "The entry's `seq` or its `id` (UUID)")),
    responses(
        (status = 200, description = "The entry", body = openapi::Entry),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn get_entry<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let id = path_param("id", id)?;
    // Another tenant's entry does not exist, as far as this key can tell.
    let entry = state.ledger.get_in_tenant(&id, &key.tenant)?;
    Ok(Json(entry).into_response())
}

/// Query parameters of `GET /v1/entries` (SPEC §3.6); the tenant is the key's.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueryParams {
    /// Only entries by this actor.
    #[param(nullable = false)]
    actor: Option<String>,
    /// Only entries of this event type.
    #[param(nullable = false)]
    event_type: Option<String>,
    /// Only entries with this action.
    #[param(nullable = false)]
    action: Option<String>,
    /// Only entries with this outcome.
    #[param(value_type = Option<openapi::Outcome>, nullable = false)]
    outcome: Option<String>,
    /// Only entries of at least this severity.
    #[param(value_type = Option<openapi::Severity>, nullable = false)]
    severity: Option<String>,
    /// Only entries about this resource (or under it, with `resource_prefix`).
    #[param(nullable = false)]
    resource: Option<String>,
    /// Match `resource` as a prefix (default false).
    #[param(nullable = false)]
    resource_prefix: Option<bool>,
    /// Only entries aimed at this principal.
    #[param(nullable = false)]
    target: Option<String>,
    /// Only entries with this trace id.
    #[param(nullable = false)]
    trace_id: Option<String>,
    /// Only entries with this session id.
    #[param(nullable = false)]
    session_id: Option<String>,
    /// Only entries sequenced at or after this time (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    start: Option<String>,
    /// Only entries sequenced before this time (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    end: Option<String>,
    /// Cursor: only entries after this `seq` (before it, descending); pass the previous
    /// page's `next`.
    #[param(
        nullable = false,
        format = "uint64",
        maximum = 18446744073709551615usize
    )]
    after: Option<u64>,
    /// `asc` (default) or `desc` by `seq`.
    #[param(value_type = Option<openapi::Order>, nullable = false)]
    order: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(nullable = false, minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One page of a query.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPage {
    /// The matching entries, in the order asked for.
    #[schema(value_type = Vec<openapi::Entry>)]
    pub entries: Vec<Entry>,
    /// The cursor of the next page (pass it as `after`); null on the last page.
    #[schema(required = true)]
    pub next: Option<u64>,
}

/// Queries the key's tenant's entries, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/entries",
    tag = "ledger",
    operation_id = "query_entries",
    params(QueryParams),
    responses(
        (status = 200, description = "One page of matching entries", body = EntryPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn query_entries<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<QueryParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
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
        start: time_param("start", p.start.as_deref())?,
        end: time_param("end", p.end.as_deref())?,
        after: p.after,
        descending: descending(p.order.as_deref())?,
        limit: page_limit(p.limit)?,
    };
    let (entries, next) = state.ledger.query(&q)?;
    Ok(Json(EntryPage { entries, next }).into_response())
}

/// `tree_size` of a proof request.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProofParams {
    /// Prove against the checkpoint of this size (default: the latest, issuing one first
    /// if it does not cover the entry).
    #[param(
        nullable = false,
        format = "uint64",
        maximum = 18446744073709551615usize
    )]
    tree_size: Option<u64>,
}

/// Proves that an entry is in the log: the entry, its RFC 9162 inclusion proof and the signed
/// checkpoint the proof leads to — everything `custos verify-proof` needs offline.
#[utoipa::path(
    get,
    path = "/v1/proofs/inclusion/{seq}",
    tag = "proofs",
    operation_id = "inclusion_proof",
    params(
        ("seq" = u64, Path, format = "uint64", maximum = 18446744073709551615usize, description = "The entry's position in the log"),
        ProofParams,
    ),
    responses(
        (status = 200, description = "The entry with its proof and checkpoint", body = openapi::ProofBundle),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn inclusion_proof<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    seq: std::result::Result<Path<u64>, PathRejection>,
    params: std::result::Result<Query<ProofParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let seq = path_param("seq", seq)?;
    let p = query_params(params)?;
    state.ledger.get_in_tenant(&seq.to_string(), &key.tenant)?;
    // Like an entry that does not exist: no proof of it in that tree can.
    if let Some(size) = p.tree_size
        && seq >= size
    {
        return Err(Problem::not_found(format!(
            "seq {seq} is not in the tree of size {size}"
        )));
    }
    let bundle = state.ledger.prove(seq, p.tree_size).await?;
    Ok(Json(bundle).into_response())
}

/// Sizes of a consistency proof.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The old tree size, at least 1 (every tree is consistent with the empty one).
    #[param(format = "uint64", minimum = 1, maximum = 18446744073709551615usize)]
    first: u64,
    /// The new tree size: at least `first` (400 otherwise) and at most the log's size (404
    /// otherwise).
    #[param(format = "uint64", minimum = 1, maximum = 18446744073709551615usize)]
    second: u64,
}

/// Proves that the tree of size `first` is a prefix of the tree of size `second` (RFC 9162).
#[utoipa::path(
    get,
    path = "/v1/proofs/consistency",
    tag = "proofs",
    operation_id = "consistency_proof",
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The consistency proof", body = openapi::ConsistencyProof),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn consistency_proof<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Response> {
    authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
    if p.first > p.second {
        return Err(Problem::bad_request(format!(
            "first ({}) must not exceed second ({})",
            p.first, p.second
        )));
    }
    // A tree the log has not grown to yet is not there, like a checkpoint never issued.
    let size = state.ledger.size()?;
    if p.second > size {
        return Err(Problem::not_found(format!(
            "the log holds {size} entries; it has no tree of size {}",
            p.second
        )));
    }
    Ok(Json(state.ledger.consistency(p.first, p.second)?).into_response())
}

/// The signed checkpoint issued for a tree size (C2SP signed note).
#[utoipa::path(
    get,
    path = "/v1/checkpoints/{size}",
    tag = "proofs",
    operation_id = "checkpoint_for_size",
    params(("size" = u64, Path, format = "uint64", maximum = 18446744073709551615usize, description = "The tree size the checkpoint covers")),
    responses(
        (status = 200, description = "The checkpoint, a C2SP signed note", body = String, content_type = "text/plain"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    )
)]
pub(crate) async fn checkpoint_for_size<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    size: std::result::Result<Path<u64>, PathRejection>,
) -> Result<Response> {
    let size = path_param("size", size)?;
    let cp = state.ledger.checkpoint_for_size(size)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// Range and format of an export or summary.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Export format (default `jsonl`).
    #[param(value_type = Option<openapi::ExportFormat>, nullable = false)]
    format: Option<String>,
    /// From this time, inclusive (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    start: Option<String>,
    /// Until this time, exclusive (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    end: Option<String>,
}

/// Range of a summary: like an export's, without a format.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// From this time, inclusive (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    start: Option<String>,
    /// Until this time, exclusive (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    end: Option<String>,
}

fn range_for(
    key: &ApiKey,
    start: &Option<String>,
    end: &Option<String>,
) -> Result<custos_ledger::export::Range> {
    Ok(custos_ledger::export::Range {
        tenant: Some(key.tenant.clone()),
        start: time_param("start", start.as_deref())?,
        end: time_param("end", end.as_deref())?,
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

/// Turns newline-terminated JSON texts into one JSON array, as they stream through.
///
/// The ledger exports CloudEvents one event per line; over HTTP they go out as
/// `application/cloudevents-batch+json`, which is a JSON array of events (CloudEvents JSON
/// format §4). Each event is one line because JSON text never holds a raw newline.
struct LinesToArray<W> {
    inner: W,
    /// Events written so far (a separator goes before every later one).
    started: bool,
    /// A line ended; the next byte starts a new event.
    at_line_start: bool,
}

impl<W: std::io::Write> LinesToArray<W> {
    fn new(inner: W) -> Self {
        LinesToArray {
            inner,
            started: false,
            at_line_start: true,
        }
    }

    /// Closes the array; call once, after the last event.
    fn finish(mut self) -> std::io::Result<W> {
        let close: &[u8] = if self.started { b"\n]\n" } else { b"[]\n" };
        self.inner.write_all(close)?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for LinesToArray<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            if b == b'\n' {
                self.at_line_start = true;
                continue;
            }
            if self.at_line_start {
                out.extend_from_slice(if self.started { b",\n" } else { b"[\n" });
                self.started = true;
                self.at_line_start = false;
            }
            out.push(b);
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Exports the key's tenant's entries in a time range, streamed in constant memory.
///
/// Formats: `json` (one array), `jsonl` (one entry per line), `csv` (RFC 4180 with a header
/// row; `data` and `request` as JSON text), `cloudevents` (a batch of CloudEvents 1.0
/// structured events whose `data` is the entry).
#[utoipa::path(
    get,
    path = "/v1/export",
    tag = "ledger",
    operation_id = "export",
    params(RangeParams),
    responses(
        (status = 200, description = "The entries in the chosen format", content(
            (Vec<openapi::Entry> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (Vec<openapi::CloudEvent> = "application/cloudevents-batch+json"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn export<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
    let format: custos_ledger::export::Format = p
        .format
        .as_deref()
        .unwrap_or("jsonl")
        .parse()
        .map_err(|e: String| Problem {
            field: Some("format".into()),
            ..Problem::bad_request(e)
        })?;
    let range = range_for(&key, &p.start, &p.end)?;
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
        let store = ledger.store();
        let run = |out: &mut dyn std::io::Write| {
            custos_ledger::export::export(store.as_ref(), &origin, format, &range, out)
        };
        let done = match format {
            custos_ledger::export::Format::CloudEvents => {
                let mut out = LinesToArray::new(ChannelWriter(tx.clone()));
                run(&mut out).and_then(|_| {
                    out.finish()
                        .map(drop)
                        .map_err(custos_ledger::LedgerError::Output)
                })
            }
            _ => run(&mut ChannelWriter(tx.clone())).map(drop),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "export stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Counts the key's tenant's entries in a time range by event type, severity, actor,
/// resource and outcome.
#[utoipa::path(
    get,
    path = "/v1/summary",
    tag = "ledger",
    operation_id = "summary",
    params(SummaryParams),
    responses(
        (status = 200, description = "The counts", body = openapi::Summary),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn summary<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
    let range = range_for(&key, &p.start, &p.end)?;
    let ledger = state.ledger.clone();
    let s = tokio::task::spawn_blocking(move || {
        custos_ledger::export::summary(ledger.store().as_ref(), &range)
    })
    .await
    .map_err(|e| Problem::bad_request(format!("summary failed: {e}")))??;
    Ok(Json(s).into_response())
}

/// Verifies the whole ledger (SPEC §3.4): every entry's canonical form, the `prev_hash`
/// chain, the tree, and every checkpoint. For admin and auditor keys.
#[utoipa::path(
    get,
    path = "/v1/ledger/verify",
    tag = "ledger",
    operation_id = "verify_ledger",
    responses(
        (status = 200, description = "The verification report; `failure` is null when the ledger is intact", body = openapi::VerificationReport),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn verify_ledger<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    if !key
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Auditor))
    {
        return Err(state.deny(
            &caller,
            &key,
            Problem::forbidden("verification is for admin and auditor keys"),
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

/// A key to issue (`POST /v1/keys`). An agent key (role `agent`) names the agent it writes
/// as; other keys name none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"roles": ["agent"], "agent": "agent:billing-bot"}))]
pub struct NewKey {
    /// Tenant (default: the issuing key's); only an admin of the `system` tenant may name
    /// another.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._-]+$")]
    pub tenant: Option<String>,
    /// Roles, at least one.
    #[schema(value_type = Vec<openapi::Role>, min_items = 1)]
    pub roles: Vec<String>,
    /// For an agent key, the agent it writes as (`agent:<id>` or just `<id>`).
    #[schema(
        max_length = 4090,
        pattern = "^(?!agent:$)[^\\x00-\\x20\\x7F-\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+$"
    )]
    pub agent: Option<String>,
    /// Requests made with the key must be signed (SPEC §4.6); default false.
    #[serde(default)]
    pub signed: bool,
}

/// A newly issued key: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuedKey {
    /// The key as the registry knows it.
    #[schema(value_type = openapi::ApiKey)]
    pub key: ApiKey,
    /// The key text, `ck_<id>_<secret>`, to send as a bearer token; shown only now.
    pub secret: String,
    /// For a `signed` key, the secret its requests are signed with (`cks_…`); shown only now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub signing_secret: Option<String>,
}

/// API keys.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    /// The keys, revoked ones included.
    #[schema(value_type = Vec<openapi::ApiKey>)]
    pub keys: Vec<ApiKey>,
}

/// A revoked key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokedKey {
    /// The key, now with its `revoked_seq`.
    #[schema(value_type = openapi::ApiKey)]
    pub key: ApiKey,
}

impl From<KeyError> for Problem {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::BadRequest(m) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-key-request",
                "Invalid key request",
                m,
            ),
            KeyError::NotFound(_) => Problem::not_found(e.to_string()),
            KeyError::Ledger(l) => Problem::from(l),
            KeyError::Unauthenticated => Problem::unauthenticated(),
            other @ KeyError::BadRecord { .. } => Problem::from(LedgerError::BadRequest(format!(
                "the key registry is damaged: {other}"
            ))),
        }
    }
}

/// An admin key, and whether it administers every tenant (it belongs to `system`).
fn require_admin<S: Store>(state: &AppState<S>, caller: &Caller, key: &ApiKey) -> Result<bool> {
    if !key.roles.contains(&Role::Admin) {
        return Err(state.deny(
            caller,
            key,
            Problem::forbidden("managing keys is for admin keys"),
        ));
    }
    Ok(key.tenant == custos_ledger::SYSTEM_TENANT)
}

/// Issues an API key. For admin keys; an admin of the `system` tenant may issue keys in any
/// tenant, others only in their own. The issue is recorded in the ledger.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "create_key",
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key, with its secret (shown only now)", body = IssuedKey),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn create_key<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let every_tenant = require_admin(&state, &caller, &key)?;
    let req: NewKey = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the body is not a key request: {e}")))?;
    let tenant = req.tenant.unwrap_or_else(|| key.tenant.clone());
    if tenant != key.tenant && !every_tenant {
        return Err(state.deny(
            &caller,
            &key,
            Problem::forbidden("an admin key issues keys only in its own tenant"),
        ));
    }
    let roles = req
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Role::parse(r).ok_or_else(|| Problem {
                field: Some(format!("roles[{i}]")),
                ..Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-key-request",
                    "Invalid key request",
                    format!(
                        "`{r}` is not one of admin, auditor, security, finance, manager, \
                         orchestrator, agent"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let issued = state
        .keys
        .write()
        .await
        .issue(
            &state.ledger,
            &tenant,
            &roles,
            req.agent.as_deref(),
            req.signed,
            &key.user(),
        )
        .await?;
    let out = IssuedKey {
        key: issued.key,
        secret: issued.text,
        signing_secret: issued.signing_secret,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Lists API keys: the key's tenant's, or every tenant's for an admin of `system`.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "list_keys",
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn list_keys<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let every_tenant = require_admin(&state, &caller, &key)?;
    let keys = state.keys.read().await;
    let keys = keys
        .list((!every_tenant).then_some(key.tenant.as_str()))
        .into_iter()
        .cloned()
        .collect();
    Ok(Json(KeyList { keys }).into_response())
}

/// Revokes an API key; from then on it authenticates nothing. The revocation is recorded in
/// the ledger.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    operation_id = "revoke_key",
    params(("id" = String, Path, description = "The key's public id")),
    responses(
        (status = 200, description = "The revoked key", body = RevokedKey),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn revoke_key<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let id = path_param("id", id)?;
    let every_tenant = require_admin(&state, &caller, &key)?;
    let mut keys = state.keys.write().await;
    // Another tenant's key does not exist, as far as this admin can tell.
    let revoked = keys
        .list((!every_tenant).then_some(key.tenant.as_str()))
        .iter()
        .find(|k| k.id == id)
        .map(|k| k.revoked_seq)
        .ok_or_else(|| Problem::not_found(format!("no API key with id `{id}`")))?;
    if let Some(seq) = revoked {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "already-revoked",
            "Already revoked",
            format!("API key `{id}` was revoked by ledger entry {seq}"),
        ));
    }
    let key = keys.revoke(&state.ledger, &id, &key.user()).await?;
    Ok(Json(RevokedKey { key }).into_response())
}

/// The latest checkpoint: a C2SP signed note over the `tlog-checkpoint` body. Anyone may read
/// the latest one issued (the server issues one every checkpoint interval while entries
/// arrive); a caller with a key gets one covering every entry acknowledged before its call,
/// issued now if needed — issuing is a state change, so it needs a key.
#[utoipa::path(
    get,
    path = "/v1/checkpoint",
    tag = "proofs",
    operation_id = "checkpoint",
    security((), ("apiKey" = [])),
    responses(
        (status = 200, description = "The latest checkpoint, a C2SP signed note", body = String, content_type = "text/plain"),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn checkpoint<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
) -> Result<Response> {
    let cp = if caller.headers.contains_key(header::AUTHORIZATION) {
        authenticate(&state, &caller, &[]).await?;
        state.ledger.checkpoint().await?
    } else {
        state
            .ledger
            .latest_checkpoint()?
            .ok_or_else(|| Problem::not_found("no checkpoint has been issued yet"))?
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// The log's public key in C2SP note-verifier format, to check checkpoints with.
#[utoipa::path(
    get,
    path = "/.well-known/custos/log.pub",
    tag = "proofs",
    operation_id = "verifier_key",
    responses(
        (status = 200, description = "The note verifier key (`<origin>+<hash>+<base64 key>`)", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn verifier_key<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.ledger.verifier()),
    )
        .into_response()
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain"))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the store accepts appends and the indexes are not far behind the log (queries
/// stay complete either way, but scan the unindexed tail).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    operation_id = "readyz",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn readyz<S: Store>(
    State(state): State<Arc<AppState<S>>>,
) -> Result<&'static str> {
    let health = writable_health(&state)?;
    let lag = health.size.saturating_sub(health.indexed);
    if lag > state.max_index_lag {
        return Err(Problem::not_ready(format!(
            "the indexes are {lag} entries behind the log (at most {})",
            state.max_index_lag
        )));
    }
    Ok("ready\n")
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
        .into_response()
}

async fn fallback() -> Problem {
    Problem::not_found("no such endpoint")
}

/// The router being built, with the list of what it serves.
struct Routes<S: Store> {
    router: Router<Arc<AppState<S>>>,
    served: Vec<(MethodFilter, &'static str)>,
}

impl<S: Store> Routes<S> {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: MethodFilter, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState<S>>>,
        T: 'static,
    {
        self.router = self.router.route(path, on(method, handler));
        self.served.push((method, path));
        self
    }
}

/// Every route of the API. The OpenAPI document must describe exactly these; a test checks.
fn routes<S: Store>() -> Routes<S> {
    use MethodFilter as M;
    Routes::new()
        .add(M::POST, "/v1/entries", append_one::<S>)
        .add(M::GET, "/v1/entries", query_entries::<S>)
        .add(M::POST, "/v1/entries:batch", append_batch::<S>)
        .add(M::GET, "/v1/entries/{id}", get_entry::<S>)
        .add(M::GET, "/v1/proofs/inclusion/{seq}", inclusion_proof::<S>)
        .add(M::GET, "/v1/checkpoint", checkpoint::<S>)
        .add(M::GET, "/v1/checkpoints/{size}", checkpoint_for_size::<S>)
        .add(M::GET, "/v1/proofs/consistency", consistency_proof::<S>)
        .add(M::GET, "/v1/export", export::<S>)
        .add(M::GET, "/v1/summary", summary::<S>)
        .add(M::GET, "/v1/ledger/verify", verify_ledger::<S>)
        .add(M::POST, "/v1/keys", create_key::<S>)
        .add(M::GET, "/v1/keys", list_keys::<S>)
        .add(M::DELETE, "/v1/keys/{id}", revoke_key::<S>)
        .add(M::GET, "/.well-known/custos/log.pub", verifier_key::<S>)
        .add(M::GET, "/healthz", healthz)
        .add(M::GET, "/readyz", readyz::<S>)
        .add(M::GET, "/openapi.json", openapi_json)
        .add(M::POST, "/v1/reviews", gate_http::create_review::<S>)
        .add(M::GET, "/v1/reviews", gate_http::list_reviews::<S>)
        .add(M::GET, "/v1/reviews/{id}", gate_http::get_review::<S>)
        .add(
            M::POST,
            "/v1/reviews/{id}/execution",
            gate_http::report_execution::<S>,
        )
        .add(
            M::POST,
            "/v1/reviews/{id}/override-requests",
            gate_http::request_override::<S>,
        )
        .add(
            M::POST,
            "/v1/reviews/{id}/override-requests/{override_id}/approvals",
            gate_http::approve_override::<S>,
        )
        .add(
            M::POST,
            "/v1/reviews/{id}/override-requests/{override_id}/denials",
            gate_http::deny_override::<S>,
        )
        .add(
            M::POST,
            "/v1/reviews/{id}/override-requests/{override_id}/withdrawal",
            gate_http::withdraw_override::<S>,
        )
        .add(M::POST, "/v1/tokens/verify", gate_http::verify_token::<S>)
        .add(
            M::POST,
            "/v1/approver-keys",
            gate_http::register_approver_key::<S>,
        )
        .add(M::POST, "/v1/agents", oversight_http::register_agent::<S>)
        .add(M::GET, "/v1/agents", oversight_http::list_agents::<S>)
        .add(M::GET, "/v1/agents/{id}", oversight_http::get_agent::<S>)
        .add(
            M::PATCH,
            "/v1/agents/{id}",
            oversight_http::update_agent::<S>,
        )
        .add(
            M::DELETE,
            "/v1/agents/{id}",
            oversight_http::delete_agent::<S>,
        )
        .add(
            M::POST,
            "/v1/agents/{id}/heartbeat",
            oversight_http::agent_heartbeat::<S>,
        )
        .add(
            M::GET,
            "/v1/agents/{id}/history",
            oversight_http::agent_history::<S>,
        )
        .add(
            M::GET,
            "/v1/agents/{id}/warnings",
            oversight_http::agent_warnings::<S>,
        )
        .add(
            M::POST,
            "/v1/agents/{id}/suspension",
            oversight_http::suspend_agent::<S>,
        )
        .add(
            M::PUT,
            "/v1/agents/{id}/exemption",
            oversight_http::grant_exemption::<S>,
        )
        .add(
            M::DELETE,
            "/v1/agents/{id}/exemption",
            oversight_http::revoke_exemption::<S>,
        )
        .add(
            M::GET,
            "/v1/oversight/requests",
            oversight_http::list_requests::<S>,
        )
        .add(
            M::POST,
            "/v1/oversight/requests/{id}/approval",
            oversight_http::approve_request::<S>,
        )
        .add(
            M::POST,
            "/v1/oversight/requests/{id}/denial",
            oversight_http::deny_request::<S>,
        )
        .add(
            M::GET,
            "/v1/oversight/settings",
            oversight_http::get_settings::<S>,
        )
        .add(
            M::PUT,
            "/v1/oversight/settings",
            oversight_http::put_settings::<S>,
        )
        .add(
            M::POST,
            "/agents/{id}/heartbeat",
            oversight_http::compat_heartbeat::<S>,
        )
        .add(M::POST, "/verify-plan", gate_http::verify_plan::<S>)
        .add(
            M::POST,
            "/verify-execution",
            gate_http::verify_execution::<S>,
        )
        .add(M::GET, "/health", gate_http::health::<S>)
}

/// What [`router`] serves: (method, path), methods in lower case as OpenAPI names them.
#[cfg(test)]
pub(crate) fn served_routes() -> Vec<(&'static str, &'static str)> {
    let names = [
        (MethodFilter::GET, "get"),
        (MethodFilter::POST, "post"),
        (MethodFilter::PUT, "put"),
        (MethodFilter::PATCH, "patch"),
        (MethodFilter::DELETE, "delete"),
    ];
    routes::<custos_store::embedded::EmbeddedStore>()
        .served
        .into_iter()
        .map(|(filter, path)| {
            let name = names
                .iter()
                .find(|(f, _)| *f == filter)
                .map_or("unnamed", |(_, n)| n);
            (name, path)
        })
        .collect()
}

/// The router of the API.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let max_body_bytes = state.max_body_bytes;
    routes::<S>()
        .router
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(max_body_bytes))
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
    fn cloudevent_lines_become_one_json_array() {
        let check = |chunks: &[&str], want: &str| {
            let mut w = LinesToArray::new(Vec::new());
            for c in chunks {
                std::io::Write::write_all(&mut w, c.as_bytes()).expect("write to a Vec");
            }
            let out = w.finish().expect("finish into a Vec");
            assert_eq!(String::from_utf8_lossy(&out), want, "{chunks:?}");
        };
        check(&[], "[]\n");
        check(&["{\"a\":1}\n"], "[\n{\"a\":1}\n]\n");
        check(
            &["{\"a\":1}\n{\"b\"", ":2}\n", "{}\n"],
            "[\n{\"a\":1},\n{\"b\":2},\n{}\n]\n",
        );
        check(&["{\"a\":", "1}", "\n"], "[\n{\"a\":1}\n]\n");
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let resp = Problem::from(LedgerError::Signing("secret detail".into()));
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!resp.detail.contains("secret"));
    }
}
