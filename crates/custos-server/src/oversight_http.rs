//! Agent oversight over HTTP (SPEC §5): the registry, heartbeats, status and history, the
//! warnings an agent pulls, exemptions, suspensions, admin decisions on the requests custos
//! files, tenant settings, and the compatibility route `POST /agents/{id}/heartbeat` (SPEC §9).
//!
//! Who may call what:
//!
//! | operation | keys |
//! | --- | --- |
//! | register, change, delete, exempt, suspend; decide requests; change settings | `admin` |
//! | report a heartbeat | the agent's own key (bound to `agent:<id>`), or `admin` |
//! | read an agent, its history and warnings | the agent's own key, or any key of the tenant not bound to another agent |
//! | list agents and requests, read settings | any key of the tenant not bound to an agent |
//!
//! Every key sees only its own tenant's agents; another tenant's agent is "not found".

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use custos_oversight::registry::{self, AgentStatus, Report, RequestStatus, Settings};
use custos_oversight::service::{AgentPatch, AgentSpec, ExemptionGrant, OversightError};
use custos_store::{EntryQuery, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::http::{
    AppState, Problem, Result, authenticate, page_limit, path_param, query_params, read_object,
    require, writable_health,
};
use crate::keys::{ApiKey, Role};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthenticated,
    Unavailable, Unprocessable,
};

fn require_admin<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    key: &ApiKey,
    what: &str,
) -> Result<()> {
    require(state, caller, key, &[Role::Admin], what)
}

/// A key bound to an agent reads only that agent; any other key reads its tenant.
fn may_read<S: Store>(state: &AppState<S>, caller: &Caller, key: &ApiKey, id: &str) -> Result<()> {
    match &key.agent {
        Some(a) if a.strip_prefix("agent:") != Some(id) && !key.roles.contains(&Role::Admin) => {
            Err(state.deny(
                caller,
                key,
                Problem::forbidden(format!("this agent key reads only {a}")),
            ))
        }
        _ => Ok(()),
    }
}

fn not_an_agent<S: Store>(state: &AppState<S>, caller: &Caller, key: &ApiKey) -> Result<()> {
    if key.agent.is_some() && !key.roles.contains(&Role::Admin) {
        return Err(state.deny(
            caller,
            key,
            Problem::forbidden("an agent key reads only its own agent"),
        ));
    }
    Ok(())
}

/// Maps an oversight error to its problem.
fn problem(e: OversightError) -> Problem {
    match e {
        OversightError::Invalid { field, problem } => Problem {
            field: Some(field.clone()),
            ..invalid(format!("`{field}`: {problem}"))
        },
        OversightError::NotFound(d) => Problem::not_found(d),
        OversightError::Conflict { code, detail } => {
            Problem::new(StatusCode::CONFLICT, code, "Conflict", detail)
        }
        OversightError::Ledger(e) => Problem::from(e),
        OversightError::Fold(e) => {
            tracing::error!(error = %e, "an oversight entry cannot be folded");
            Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// 422 `invalid-oversight-request`.
fn invalid(detail: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-oversight-request",
        "Invalid request",
        detail,
    )
}

/// A request body of oversight: a JSON object of shape `T`.
fn read_body<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T> {
    read_object(body, what, invalid)
}

/// A new agent (SPEC §5.1).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentBody {
    /// Its id, unique in the tenant: 1 to 256 bytes, no whitespace or `/` (a DID is fine).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\s/]+$")]
    pub id: String,
    /// Display name (default: the id).
    #[schema(nullable = true)]
    pub name: Option<String>,
    /// Who is responsible for it.
    #[schema(min_length = 1, max_length = 256)]
    pub owner: String,
    /// What it is for.
    #[schema(nullable = true)]
    pub description: Option<String>,
    /// The tools it may use (anything else it uses is a capability violation).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How often it must report, seconds (1 s to 7 d; default the tenant's, 300).
    #[schema(nullable = true, minimum = 1, maximum = 604800)]
    pub reporting_interval_secs: Option<u64>,
    /// An exemption from reporting from the start.
    #[schema(nullable = true)]
    pub exemption: Option<ExemptionBody>,
}

/// Changes to an agent; absent fields stay.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentPatchBody {
    /// New display name.
    #[schema(nullable = true)]
    pub name: Option<String>,
    /// New owner.
    #[schema(nullable = true)]
    pub owner: Option<String>,
    /// New description.
    #[schema(nullable = true)]
    pub description: Option<String>,
    /// The new full list of tools.
    #[schema(nullable = true)]
    pub capabilities: Option<Vec<String>>,
    /// New reporting interval, seconds.
    #[schema(nullable = true, minimum = 1, maximum = 604800)]
    pub reporting_interval_secs: Option<u64>,
}

/// An exemption from reporting.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ExemptionBody {
    /// Why.
    #[schema(min_length = 1)]
    pub reason: String,
    /// Until when (RFC 3339, in the future).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A heartbeat (SPEC §5.2): the body of the documented API.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct HeartbeatBody {
    /// When the agent reported (RFC 3339).
    #[schema(nullable = true, format = DateTime)]
    pub timestamp: Option<String>,
    /// The agent's word for its state (`healthy`, `degraded`, …; at most 64 bytes).
    #[schema(nullable = true)]
    pub status: Option<String>,
    /// Numbers ≥ 0: `cpu_usage`, `memory_usage` (percent), `response_time_ms`, `error_rate`
    /// (percent), `tasks_processed`, and any other (at most 64).
    #[serde(default)]
    #[schema(value_type = Object, nullable = true)]
    pub metrics: Option<Value>,
}

/// Why, for a suspension or a deletion.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ReasonBody {
    /// Why (at most 4 KiB).
    #[schema(min_length = 1)]
    pub reason: String,
}

/// An admin's decision on a request.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DecisionBody {
    /// A note for the record.
    #[serde(default)]
    #[schema(nullable = true)]
    pub note: Option<String>,
}

fn report_of(body: HeartbeatBody) -> Result<Report> {
    let mut metrics = BTreeMap::new();
    match body.metrics {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, v) in m {
                let n = v.as_f64().ok_or_else(|| Problem {
                    field: Some(format!("metrics.{name}")),
                    ..invalid(format!("`metrics.{name}`: must be a number"))
                })?;
                metrics.insert(name, n);
            }
        }
        Some(_) => {
            return Err(Problem {
                field: Some("metrics".into()),
                ..invalid("`metrics`: must be an object of numbers".into())
            });
        }
    }
    Ok(Report {
        timestamp: body.timestamp,
        status: body.status,
        metrics,
    })
}

/// Registers an agent (admin).
#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "oversight",
    operation_id = "register_agent",
    request_body(content = AgentBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered (the `agent_created` entry is appended)", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn register_agent<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    require_admin(&state, &caller, &key, "registering an agent")?;
    let spec: AgentSpec = read_body(&body, "an agent")?;
    writable_health(&state)?;
    let view = state
        .oversight
        .register(&key.actor(), &key.tenant, spec)
        .await
        .map_err(problem)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Filters of an agent listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentListParams {
    /// Only this status (`deleted` agents are listed only when asked for).
    #[param(
        nullable = false,
        pattern = "^(active|warned|suspended|non_compliant|deleted)$"
    )]
    status: Option<String>,
    /// Cursor: the previous page's `next` (an agent id).
    #[param(nullable = false)]
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(nullable = false, minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The tenant's agents in id order, with their status at the time of reading.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "oversight",
    operation_id = "list_agents",
    params(AgentListParams),
    responses(
        (status = 200, description = "`{items: [agent…], next}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn list_agents<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<AgentListParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
    not_an_agent(&state, &caller, &key)?;
    let status = match p.status.as_deref() {
        Some(s) => Some(
            AgentStatus::parse(s)
                .ok_or_else(|| Problem::bad_request(format!("`status`: no status `{s}`")))?,
        ),
        None => None,
    };
    let limit = page_limit(p.limit)?;
    let items = state
        .oversight
        .list(&key.tenant, status, p.after.as_deref(), limit);
    let next = (items.len() == limit)
        .then(|| items.last().map(|v| v.agent.id.clone()))
        .flatten();
    Ok(Json(serde_json::json!({"items": items, "next": next})).into_response())
}

/// One agent: its record, status, reporting status, security score, health, the reports it
/// has missed at the time of reading and when the next one is due.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    tag = "oversight",
    operation_id = "get_agent",
    params(("id" = String, Path, description = "The agent id")),
    responses(
        (status = 200, description = "The agent", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn get_agent<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let id = path_param("id", id)?;
    may_read(&state, &caller, &key, &id)?;
    let view = state.oversight.get(&key.tenant, &id).map_err(problem)?;
    Ok(Json(view).into_response())
}

/// Changes an agent's declared fields (admin); the `agent_updated` entry carries the
/// field-level diff. A change that changes nothing records nothing.
#[utoipa::path(
    patch,
    path = "/v1/agents/{id}",
    tag = "oversight",
    operation_id = "update_agent",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = AgentPatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent after the change", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn update_agent<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let id = path_param("id", id)?;
    require_admin(&state, &caller, &key, "changing an agent")?;
    let patch: AgentPatch = read_body(&body, "an agent change")?;
    writable_health(&state)?;
    let view = state
        .oversight
        .update(&key.actor(), &key.tenant, &id, patch)
        .await
        .map_err(problem)?;
    Ok(Json(view).into_response())
}

/// What an admin action on one agent does.
enum AgentAction {
    Delete,
    Suspend,
    Exempt,
    Unexempt,
}

async fn agent_action<S: Store>(
    state: Arc<AppState<S>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
    action: AgentAction,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let id = path_param("id", id)?;
    require_admin(&state, &caller, &key, "this action on an agent")?;
    let who = key.actor();
    let svc = &state.oversight;
    let tenant = &key.tenant;
    let view = match action {
        AgentAction::Delete => {
            let reason = if body.is_empty() {
                "deleted by an admin".to_owned()
            } else {
                read_body::<ReasonBody>(&body, "a reason")?.reason
            };
            writable_health(&state)?;
            svc.delete(&who, tenant, &id, &reason).await
        }
        AgentAction::Suspend => {
            let r: ReasonBody = read_body(&body, "a reason")?;
            writable_health(&state)?;
            svc.suspend(&who, tenant, &id, &r.reason).await
        }
        AgentAction::Exempt => {
            let g: ExemptionGrant = read_body(&body, "an exemption")?;
            writable_health(&state)?;
            svc.grant_exemption(&who, tenant, &id, g).await
        }
        AgentAction::Unexempt => {
            writable_health(&state)?;
            svc.revoke_exemption(&who, tenant, &id).await
        }
    }
    .map_err(problem)?;
    Ok(Json(view).into_response())
}

/// Deletes an agent (admin). Its history stays in the ledger; the body (`{reason}`) is
/// optional.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    tag = "oversight",
    operation_id = "delete_agent",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = Option<ReasonBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The deleted agent", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn delete_agent<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    agent_action(state, caller, id, body, AgentAction::Delete).await
}

/// Suspends an agent (admin), overriding the automatic actions: the gate refuses its
/// reviews, and custos files the request to reinstate it.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/suspension",
    tag = "oversight",
    operation_id = "suspend_agent",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The suspended agent", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn suspend_agent<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    agent_action(state, caller, id, body, AgentAction::Suspend).await
}

/// Grants an exemption from mandatory reporting until `expires_at` (admin).
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/exemption",
    tag = "oversight",
    operation_id = "grant_exemption",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = ExemptionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent with its exemption", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn grant_exemption<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    agent_action(state, caller, id, body, AgentAction::Exempt).await
}

/// Revokes an agent's exemption (admin); its reports are counted from now.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}/exemption",
    tag = "oversight",
    operation_id = "revoke_exemption",
    params(("id" = String, Path, description = "The agent id")),
    responses(
        (status = 200, description = "The agent without exemption", body = Object),
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
pub(crate) async fn revoke_exemption<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    agent_action(state, caller, id, body, AgentAction::Unexempt).await
}

async fn heartbeat<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: &Bytes,
) -> Result<Response> {
    let key = authenticate(state, caller, body).await?;
    let id = path_param("id", id)?;
    let own = key.agent.as_deref().and_then(|a| a.strip_prefix("agent:")) == Some(id.as_str());
    if !own && !key.roles.contains(&Role::Admin) {
        return Err(state.deny(
            caller,
            &key,
            Problem::forbidden(format!(
                "only agent:{id}'s own key (or an admin) reports for it"
            )),
        ));
    }
    let report = report_of(read_body(body, "a heartbeat")?)?;
    writable_health(state)?;
    let answer = state
        .oversight
        .heartbeat(&key.actor(), &key.tenant, &id, report)
        .await
        .map_err(problem)?;
    Ok(Json(answer).into_response())
}

/// Reports a heartbeat (SPEC §5.2) with the agent's own key: the missed count and reporting
/// status reset (a suspended agent stays suspended until an admin reinstates it), and the
/// metrics are checked against the thresholds. 503 with `Retry-After` when the ledger is full.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/heartbeat",
    tag = "oversight",
    operation_id = "agent_heartbeat",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = HeartbeatBody, content_type = "application/json"),
    responses(
        (status = 200, description = "`{agent, seq, status, reporting_status, security_score, next_report_due, violations}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn agent_heartbeat<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    heartbeat(&state, &caller, id, &body).await
}

/// The documented heartbeat route of the system custos replaces (SPEC §9): body
/// `{timestamp, status, metrics: {cpu_usage, memory_usage, tasks_processed, …}}` with the
/// agent's bearer key; the same as `POST /v1/agents/{id}/heartbeat`.
#[utoipa::path(
    post,
    path = "/agents/{id}/heartbeat",
    tag = "compatibility",
    operation_id = "compat_heartbeat",
    params(("id" = String, Path, description = "The agent id")),
    request_body(content = HeartbeatBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent's standing after the report", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn compat_heartbeat<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    heartbeat(&state, &caller, id, &body).await
}

/// A page of an agent's ledger entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentEntriesParams {
    /// Only this event type.
    #[param(nullable = false, rename = "type")]
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// Cursor: the previous page's `next` (a seq).
    #[param(
        nullable = false,
        format = "uint64",
        maximum = 18446744073709551615usize
    )]
    after: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(nullable = false, minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

async fn agent_entries<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    params: std::result::Result<Query<AgentEntriesParams>, QueryRejection>,
    warnings: bool,
) -> Result<Response> {
    let key = authenticate(state, caller, &[]).await?;
    let id = path_param("id", id)?;
    let p = query_params(params)?;
    may_read(state, caller, &key, &id)?;
    state.oversight.get(&key.tenant, &id).map_err(problem)?;
    let query = EntryQuery {
        tenant: Some(key.tenant.clone()),
        resource: Some(registry::resource(&id)),
        event_type: p.event_type,
        min_severity: warnings.then_some(custos_core::entry::Severity::Medium),
        after: p.after,
        limit: page_limit(p.limit)?,
        ..Default::default()
    };
    let (items, next) = state.ledger.query(&query).map_err(Problem::from)?;
    Ok(Json(serde_json::json!({"items": items, "next": next})).into_response())
}

/// An agent's history: every ledger entry about it (registration, changes, heartbeats,
/// missed reports, consequences, findings, decisions), oldest first, by seq cursor.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/history",
    tag = "oversight",
    operation_id = "agent_history",
    params(("id" = String, Path, description = "The agent id"), AgentEntriesParams),
    responses(
        (status = 200, description = "`{items: [entry…], next}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn agent_history<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    params: std::result::Result<Query<AgentEntriesParams>, QueryRejection>,
) -> Result<Response> {
    agent_entries(&state, &caller, id, params, false).await
}

/// The warnings delivered to an agent (SPEC §5.2), for it to pull with its own key: every
/// entry about it of severity medium or more (reporting warnings, threshold violations,
/// suspensions, anomalies, undeclared tools), oldest first; poll with `after` = the last
/// seq seen.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/warnings",
    tag = "oversight",
    operation_id = "agent_warnings",
    params(("id" = String, Path, description = "The agent id"), AgentEntriesParams),
    responses(
        (status = 200, description = "`{items: [entry…], next}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn agent_warnings<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    params: std::result::Result<Query<AgentEntriesParams>, QueryRejection>,
) -> Result<Response> {
    agent_entries(&state, &caller, id, params, true).await
}

/// Filters of a request listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestListParams {
    /// Only this status.
    #[param(nullable = false, pattern = "^(pending|approved|denied|closed)$")]
    status: Option<String>,
}

/// The requests custos filed for admins (reinstate a suspended agent, delete a
/// non-compliant one), oldest first.
#[utoipa::path(
    get,
    path = "/v1/oversight/requests",
    tag = "oversight",
    operation_id = "list_oversight_requests",
    params(RequestListParams),
    responses(
        (status = 200, description = "`{items: [request…]}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn list_requests<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<RequestListParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
    not_an_agent(&state, &caller, &key)?;
    let status = match p.status.as_deref() {
        Some(s) => Some(
            serde_json::from_value::<RequestStatus>(Value::String(s.to_owned()))
                .map_err(|_| Problem::bad_request(format!("`status`: no status `{s}`")))?,
        ),
        None => None,
    };
    let items = state.oversight.requests(&key.tenant, status);
    Ok(Json(serde_json::json!({"items": items})).into_response())
}

async fn decide<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: &Bytes,
    approve: bool,
) -> Result<Response> {
    let key = authenticate(state, caller, body).await?;
    let id = path_param("id", id)?;
    require_admin(state, caller, &key, "deciding a request")?;
    let decision: DecisionBody = if body.is_empty() {
        DecisionBody { note: None }
    } else {
        read_body(body, "a decision")?
    };
    writable_health(state)?;
    let request = state
        .oversight
        .decide(&key.actor(), &key.tenant, &id, approve, decision.note)
        .await
        .map_err(problem)?;
    Ok(Json(request).into_response())
}

/// Approves a request (admin): an unsuspend request reinstates the agent (its reports are
/// counted from now), a deletion request deletes it.
#[utoipa::path(
    post,
    path = "/v1/oversight/requests/{id}/approval",
    tag = "oversight",
    operation_id = "approve_oversight_request",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = Option<DecisionBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The decided request", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn approve_request<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    decide(&state, &caller, id, &body, true).await
}

/// Denies a request (admin); the agent stays as it is.
#[utoipa::path(
    post,
    path = "/v1/oversight/requests/{id}/denial",
    tag = "oversight",
    operation_id = "deny_oversight_request",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = Option<DecisionBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The decided request", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn deny_request<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    decide(&state, &caller, id, &body, false).await
}

/// The tenant's oversight settings: missed-report thresholds, performance thresholds, score
/// rules, stale timeout, anomaly threshold, default interval.
#[utoipa::path(
    get,
    path = "/v1/oversight/settings",
    tag = "oversight",
    operation_id = "get_oversight_settings",
    responses(
        (status = 200, description = "The settings", body = Object),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn get_settings<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    not_an_agent(&state, &caller, &key)?;
    Ok(Json(state.oversight.settings(&key.tenant)).into_response())
}

/// Replaces the tenant's oversight settings (admin); the `oversight_settings_changed` entry carries
/// the diff. Absent members take the SPEC's defaults.
#[utoipa::path(
    put,
    path = "/v1/oversight/settings",
    tag = "oversight",
    operation_id = "put_oversight_settings",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings now", body = Object),
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
pub(crate) async fn put_settings<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    require_admin(&state, &caller, &key, "changing oversight settings")?;
    let settings: Settings = read_body(&body, "oversight settings")?;
    writable_health(&state)?;
    let now = state
        .oversight
        .set_settings(&key.actor(), &key.tenant, settings)
        .await
        .map_err(problem)?;
    Ok(Json(now).into_response())
}
