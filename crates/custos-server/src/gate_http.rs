//! The plan gate over HTTP (SPEC §4): reviews, execution reports, overrides, approval tokens,
//! approver keys, and the compatibility routes `POST /verify-plan`, `POST /verify-execution`
//! and `GET /health` (SPEC §9) for orchestrators written against the documented API of the
//! system custos replaces.
//!
//! Handlers are thin: authenticate, authorise by role, call [`GateService`], map its errors to
//! problem+json. Who may call what:
//!
//! | operation | roles |
//! | --- | --- |
//! | review a plan, report an execution (and the compatibility routes) | `orchestrator`, `admin` |
//! | read and list reviews, check a token | any role |
//! | request or withdraw an override | any role but `auditor` alone |
//! | approve or deny an override | `admin`, `security`, `finance`, `manager` (the chain checks) |
//! | register an approver key | a key not bound to an agent, and not `auditor` alone |
//!
//! Every key sees only its own tenant's reviews; another tenant's review is "not found".

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use custos_gate::decision::Outcome;
use custos_gate::overrides::{ApproverSignature, OverrideError};
use custos_gate::request::ReviewRequest;
use custos_gate::service::{
    ExecutionInput, GateError, OverrideInput, OverrideStep, Principal, ReviewListItem, ReviewQuery,
    ReviewView,
};
use custos_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Caller};
use crate::http::{
    AppState, Problem, Result, authenticate, descending, page_limit, path_param, query_params,
    read_object, require, time_param, writable_health,
};
use crate::keys::{ApiKey, Role};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthenticated,
    Unavailable, Unprocessable,
};

/// Who the key is, for the gate.
fn principal(key: &ApiKey) -> Principal {
    Principal {
        tenant: key.tenant.clone(),
        actor: key.actor(),
        agent: key
            .agent
            .as_deref()
            .map(|a| a.strip_prefix("agent:").unwrap_or(a).to_owned()),
        roles: key.roles.iter().map(|r| r.as_str().to_owned()).collect(),
    }
}

fn not_only_auditor<S: Store>(state: &AppState<S>, caller: &Caller, key: &ApiKey) -> Result<()> {
    if key.roles == [Role::Auditor] {
        return Err(state.deny(caller, key, Problem::forbidden("an auditor key only reads")));
    }
    Ok(())
}

const ORCHESTRATORS: [Role; 2] = [Role::Orchestrator, Role::Admin];

/// Maps a gate error to its problem; refusals a security officer should see (a suspended
/// agent, a reused or foreign approval token, a role refused) are recorded as
/// `security_event`s.
fn gate_problem<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    key: &ApiKey,
    e: GateError,
) -> Problem {
    let unprocessable = |kind: &'static str, title: &'static str, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail)
    };
    let conflict = |kind: &'static str, detail: String| {
        Problem::new(StatusCode::CONFLICT, kind, "Conflict", detail)
    };
    match e {
        GateError::Invalid { field, problem } => Problem {
            field: Some(field.clone()),
            ..invalid_request(format!("`{field}`: {problem}"))
        },
        GateError::Plan(e) => Problem {
            field: Some("plan".into()),
            ..unprocessable("invalid-plan", "Plan cannot be read", e.to_string())
        },
        GateError::Execution(e) => Problem {
            field: Some("result".into()),
            ..unprocessable(
                "invalid-execution-result",
                "Execution result cannot be read",
                e.to_string(),
            )
        },
        GateError::NotFound(d) => Problem::not_found(d),
        GateError::Conflict { code, detail } => {
            if code == "token-used" {
                state
                    .failures
                    .note(auth::failure(caller, Some(key), "approval_token_reused"));
            }
            conflict(code, detail)
        }
        GateError::Forbidden(d) => state.deny(caller, key, Problem::forbidden(d)),
        GateError::Token(e) => {
            state
                .failures
                .note(auth::failure(caller, Some(key), "invalid_approval_token"));
            Problem {
                field: Some("approval_token".into()),
                ..unprocessable("invalid-token", "Approval token refused", e.to_string())
            }
        }
        GateError::Override(e) => match &e {
            OverrideError::InvalidField { field, .. } => Problem {
                field: Some((*field).to_owned()),
                ..unprocessable("invalid-override", "Invalid override step", e.to_string())
            },
            OverrideError::NoApproverRole { .. }
            | OverrideError::SeparationOfDuties { .. }
            | OverrideError::NotRequester { .. } => {
                state.deny(caller, key, Problem::forbidden(e.to_string()))
            }
            OverrideError::NotOverridable { .. }
            | OverrideError::AlreadyDecided { .. }
            | OverrideError::Expired { .. }
            | OverrideError::DuplicateApprover { .. }
            | OverrideError::BeforeRequest { .. } => conflict("override-closed", e.to_string()),
            OverrideError::PlanHashMismatch { .. } | OverrideError::ReviewMismatch { .. } => {
                conflict("plan-hash-mismatch", e.to_string())
            }
            OverrideError::SignatureRequired { .. }
            | OverrideError::UnknownKey { .. }
            | OverrideError::Signature { .. } => Problem {
                field: Some("signature".into()),
                ..unprocessable(
                    "bad-approver-signature",
                    "Approver signature refused",
                    e.to_string(),
                )
            },
            OverrideError::Config(_)
            | OverrideError::Encoding(_)
            | OverrideError::UnknownEvent(_)
            | OverrideError::Rebuild(_) => {
                tracing::error!(error = %e, "override chain failure");
                Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        },
        GateError::Ledger(e) => Problem::from(e),
        GateError::Record(e) => {
            tracing::error!(error = %e, "a review's ledger records cannot be read");
            Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        GateError::Internal(e) => {
            tracing::error!(error = %e, "gate failure");
            Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// A request body of the gate: a JSON object of shape `T`.
fn read_body<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T> {
    read_object(body, what, invalid_request)
}

/// 422 `invalid-review-request`: a gate request whose shape or values are wrong.
fn invalid_request(detail: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-review-request",
        "Invalid request",
        detail,
    )
}

/// A review request (SPEC §4.1).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ReviewRequestBody {
    /// The orchestrator's id for this request, unique in the tenant: 1 to 256 bytes, no
    /// whitespace. The same id with the same plan answers the recorded decision again; with
    /// another plan it is a conflict (409).
    #[schema(min_length = 1, max_length = 256, pattern = r"^\S+$")]
    pub request_id: String,
    /// The user's words (at most 16 KiB).
    #[schema(min_length = 1)]
    pub user_request: String,
    /// The plan: a generic plan (`{"actions": [...]}`) or `terraform show -json` output.
    #[schema(value_type = Object)]
    pub plan: Value,
    /// `user`, `timestamp`, `environment`, `change_ticket_id`, `deletion_confirmed`,
    /// `finance_approved`, and free fields (at most 16 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    /// An Infracost JSON breakdown of the plan (`totalMonthlyCost`, `diffTotalMonthlyCost`).
    #[serde(default)]
    #[schema(value_type = Object, nullable = true)]
    pub infracost: Option<Value>,
}

/// A recorded, signed decision (SPEC §4.1) and what happened to the review since.
///
/// The signature covers every member but `signature`, `approval_token`,
/// `approval_token_expires`, `approval_token_used`, `state`, `executions` and `overrides`:
/// verify it over the RFC 8785 form of the rest with the log's public key
/// (`custos decision verify`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewAnswer {
    /// The log that decided.
    pub log: String,
    /// The tenant.
    pub tenant: String,
    /// The request id.
    pub request_id: String,
    /// Ledger seq of the decision.
    pub seq: u64,
    /// When it was recorded.
    pub ts: String,
    /// Who asked.
    pub actor: String,
    /// `approved`, `vetoed` or `escalated`.
    #[schema(value_type = String)]
    pub decision: String,
    /// `[{policy, kind, severity, message, evidence, cure?}]`.
    #[schema(value_type = Vec<Object>)]
    pub violations: Vec<Value>,
    /// Soft policies and whether they were evaluated.
    #[schema(value_type = Vec<Object>)]
    pub soft_policies: Vec<Value>,
    /// Approvals that cure the escalation (`change_ticket`, `user_deletion_confirmation`,
    /// `finance`, `security`, `human`).
    pub required_approvals: Vec<String>,
    /// `{match, confidence, extra_actions, missing_actions, safety_concerns, verifier, …}`.
    #[schema(value_type = Object)]
    pub intent: Value,
    /// What the plan does, listing every resource created, changed, replaced or deleted.
    pub summary: String,
    /// Why.
    pub reasons: Vec<String>,
    /// `sha256:` of the user request.
    pub request_hash: String,
    /// `sha256:` of the RFC 8785 form of the plan.
    pub plan_hash: String,
    /// Hash of the policy bundle evaluated.
    pub policy_bundle: String,
    /// Ed25519 signature of the log key, standard base64.
    pub signature: String,
    /// While the plan is approved: the approval token (a signed note, base64url).
    #[schema(nullable = false)]
    pub approval_token: Option<String>,
    /// When the token expires.
    #[schema(nullable = false)]
    pub approval_token_expires: Option<String>,
    /// Whether an execution already used the approval.
    #[schema(nullable = false)]
    pub approval_token_used: Option<bool>,
    /// `approved`, `vetoed`, `escalated`, `overridden` or `executed`.
    pub state: String,
    /// Execution reports.
    #[schema(value_type = Vec<Object>)]
    pub executions: Vec<Value>,
    /// Override chains.
    #[schema(value_type = Vec<Object>)]
    pub overrides: Vec<Value>,
}

/// Reviews a plan (SPEC §4.1): the plan is normalised, every hard, soft and operator policy
/// evaluated, the intent verified; the decision is recorded in the ledger, signed, and — if
/// approved — comes with an approval token. 201 when decided now; 200 when the same request
/// id and plan were already decided (the recorded decision again).
#[utoipa::path(
    post,
    path = "/v1/reviews",
    tag = "gate",
    operation_id = "create_review",
    request_body(content = ReviewRequestBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Already decided: the recorded decision", body = ReviewAnswer),
        (status = 201, description = "Decided and recorded", body = ReviewAnswer),
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
pub(crate) async fn create_review<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let (view, created) = review(&state, &caller, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// Reviews the plan in `body` for an orchestrator's key: what `POST /v1/reviews` and the
/// compatibility `POST /verify-plan` share. True when this call decided it.
async fn review<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    body: &Bytes,
) -> Result<(ReviewView, bool)> {
    let key = authenticate(state, caller, body).await?;
    require(state, caller, &key, &ORCHESTRATORS, "reviewing a plan")?;
    let request: ReviewRequest = read_body(body, "a review request")?;
    state
        .gate
        .review(&principal(&key), request)
        .await
        .map_err(|e| gate_problem(state, caller, &key, e))
}

/// One review, with its signed decision and what happened since (executions, overrides).
#[utoipa::path(
    get,
    path = "/v1/reviews/{id}",
    tag = "gate",
    operation_id = "get_review",
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The review", body = ReviewAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn get_review<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let id = path_param("id", id)?;
    let view = state
        .gate
        .get(&key.tenant, &id)
        .map_err(|e| gate_problem(&state, &caller, &key, e))?;
    Ok(Json(view).into_response())
}

/// Filters of a review listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewListParams {
    /// Only this decision: `approved`, `vetoed` or `escalated`.
    #[param(nullable = false, pattern = "^(approved|vetoed|escalated)$")]
    decision: Option<String>,
    /// Only reviews asked by this actor.
    #[param(nullable = false)]
    actor: Option<String>,
    /// Only reviews that violated this policy id.
    #[param(nullable = false)]
    policy: Option<String>,
    /// Decided at or after (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    start: Option<String>,
    /// Decided before (RFC 3339).
    #[param(nullable = false, format = DateTime)]
    end: Option<String>,
    /// Cursor: the previous page's `next`.
    #[param(
        nullable = false,
        format = "uint64",
        maximum = 18446744073709551615usize
    )]
    after: Option<u64>,
    /// `asc` (default) or `desc`.
    #[param(nullable = false, pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(nullable = false, minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    /// Decisions: request id, decision, seq, ts, actor, plan hash, summary, violated
    /// policies, required approvals.
    #[schema(value_type = Vec<Object>)]
    pub reviews: Vec<ReviewListItem>,
    /// Cursor of the next page, if there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next: Option<u64>,
}

/// Lists the tenant's review decisions, filtered, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/reviews",
    tag = "gate",
    operation_id = "list_reviews",
    params(ReviewListParams),
    responses(
        (status = 200, description = "A page of decisions", body = ReviewPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn list_reviews<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    params: std::result::Result<Query<ReviewListParams>, QueryRejection>,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &[]).await?;
    let p = query_params(params)?;
    let decision = p
        .decision
        .as_deref()
        .map(|d| {
            Outcome::parse(d).ok_or_else(|| {
                Problem::bad_request(format!(
                    "decision: `{d}` is not approved, vetoed or escalated"
                ))
            })
        })
        .transpose()?;
    let q = ReviewQuery {
        decision,
        actor: p.actor,
        policy: p.policy,
        start: time_param("start", p.start.as_deref())?,
        end: time_param("end", p.end.as_deref())?,
        after: p.after,
        descending: descending(p.order.as_deref())?,
        limit: page_limit(p.limit)?,
    };
    let (reviews, next) = state
        .gate
        .list(&key.tenant, &q)
        .map_err(|e| gate_problem(&state, &caller, &key, e))?;
    Ok(Json(ReviewPage { reviews, next }).into_response())
}

/// An execution report (SPEC §4.4).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecutionBody {
    /// What was executed: a generic report (`{"status", "resources": [...]}`), a Terraform
    /// plan of what was applied, the post-apply state (`terraform show -json`), or the
    /// `terraform apply -json` log (a string, or an array of its messages).
    #[schema(value_type = Object)]
    pub result: Value,
    /// The approval token the plan was executed under.
    #[serde(default)]
    pub approval_token: Option<String>,
}

/// The verification of an execution: `matches`, or `deviation` with its findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionAnswer {
    /// The review.
    pub request_id: String,
    /// Ledger seq of the recorded verification.
    pub seq: u64,
    /// When.
    pub ts: String,
    /// Severity of the ledger entry: `critical` for any deviation.
    pub entry_severity: String,
    /// The approval the execution used.
    #[schema(nullable = false)]
    pub approval_seq: Option<u64>,
    /// `matches` or `deviation`.
    pub result: String,
    /// The highest finding's severity.
    pub severity: String,
    /// One sentence.
    pub summary: String,
    /// The shape the result arrived in.
    #[schema(nullable = false)]
    pub format: Option<String>,
    /// What the executor said of the execution.
    pub status: String,
    /// Why the execution was not approved at all (vetoed, escalated, unknown).
    #[schema(nullable = false)]
    pub unapproved: Option<String>,
    /// Resources changed without approval.
    #[schema(value_type = Vec<Object>)]
    pub extra: Vec<Value>,
    /// Approved changes not executed.
    #[schema(value_type = Vec<Object>)]
    pub missing: Vec<Value>,
    /// Approved changes that failed.
    #[schema(value_type = Vec<Object>)]
    pub failed: Vec<Value>,
    /// Approved resources changed with another verb.
    #[schema(value_type = Vec<Object>)]
    pub verb_mismatches: Vec<Value>,
    /// Attributes executed with other values than approved.
    #[schema(value_type = Vec<Object>)]
    pub changed: Vec<Value>,
    /// What the reader and the comparison had to decide.
    pub notes: Vec<String>,
}

/// Reports what was executed for a review; custos compares it with the approved plan and
/// records the verification (a deviation as a `critical` entry). Executing a vetoed,
/// escalated or unknown request is itself a critical deviation. An approval covers one
/// execution: a second report under it is refused (409) and recorded as a security event.
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/execution",
    tag = "gate",
    operation_id = "report_execution",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = ExecutionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Verified and recorded", body = ExecutionAnswer),
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
pub(crate) async fn report_execution<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let id = path_param("id", id)?;
    require(
        &state,
        &caller,
        &key,
        &ORCHESTRATORS,
        "reporting an execution",
    )?;
    let input: ExecutionInput = read_body(&body, "an execution report")?;
    execution(&state, &caller, &key, &id, input).await
}

async fn execution<S: Store>(
    state: &AppState<S>,
    caller: &Caller,
    key: &ApiKey,
    id: &str,
    input: ExecutionInput,
) -> Result<Response> {
    let view = state
        .gate
        .report_execution(&principal(key), id, input)
        .await
        .map_err(|e| gate_problem(state, caller, key, e))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// An override request (SPEC §4.5).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequestBody {
    /// Why the override is needed.
    #[schema(min_length = 1)]
    pub justification: String,
    /// What happens to the business without it.
    #[schema(min_length = 1)]
    pub business_impact: String,
    /// What else was considered, and why not that.
    #[schema(min_length = 1)]
    pub alternatives_considered: String,
    /// The risk the requester accepts.
    #[schema(min_length = 1)]
    pub risk_acceptance: String,
}

/// An override chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverrideAnswer {
    /// Its id.
    pub override_id: String,
    /// `pending`, `approved`, `denied`, `expired` or `withdrawn`.
    pub status: String,
    /// Who asked.
    pub requested_by: String,
    /// Why the override is needed.
    pub justification: String,
    /// What happens to the business without the override.
    pub business_impact: String,
    /// What else was considered, and why not that.
    pub alternatives_considered: String,
    /// The risk the requester accepts.
    pub risk_acceptance: String,
    /// The override digest (hex). An approver signs, with their registered Ed25519 key, the
    /// bytes of `custos-override-v1:<digest>:<approver>`, where `<approver>` is their
    /// principal (`user:apikey-<key id>` for an API key).
    pub digest: String,
    /// Distinct approvers needed.
    pub min_approvers: u32,
    /// Roles some approver must hold.
    pub required_roles: Vec<String>,
    /// The approvals given.
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<Value>,
    /// The denial, if any.
    #[schema(value_type = Option<Object>, nullable = false)]
    pub denial: Option<Value>,
    /// When it expires.
    pub expires_at: String,
    /// Ledger seqs of its records.
    pub seqs: Vec<u64>,
    /// Seq of the approval it granted, once approved.
    #[schema(nullable = false)]
    pub approval_seq: Option<u64>,
}

/// Requests an override of a vetoed or escalated review: approvers must then approve it
/// (default two distinct ones; a `security` approver for a security violation, `finance` for
/// a cost one). Recorded as `override_requested`.
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/override-requests",
    tag = "gate",
    operation_id = "request_override",
    params(("id" = String, Path, description = "The request id")),
    request_body(content = OverrideRequestBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Requested and recorded", body = OverrideAnswer),
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
pub(crate) async fn request_override<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let id = path_param("id", id)?;
    not_only_auditor(&state, &caller, &key)?;
    let input: OverrideInput = read_body(&body, "an override request")?;
    let view = state
        .gate
        .request_override(&principal(&key), &id, input)
        .await
        .map_err(|e| gate_problem(&state, &caller, &key, e))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// An approver's signature over `custos-override-v1:<digest>:<approver>`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureBody {
    /// Which of the approver's registered keys signed.
    #[schema(min_length = 1)]
    pub key_id: String,
    /// The 64-byte Ed25519 signature, standard base64.
    #[schema(min_length = 1)]
    pub ed25519: String,
}

/// An approval of an override.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// The plan hash approved: must be the override's (an approval never carries over to
    /// another plan).
    pub plan_hash: String,
    /// A comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// A signature over the override digest with a registered key.
    #[serde(default)]
    pub signature: Option<SignatureBody>,
}

/// A denial or withdrawal: why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why.
    #[schema(min_length = 1)]
    pub reason: String,
}

#[derive(Clone, Copy)]
enum StepKind {
    Approve,
    Deny,
    Withdraw,
}

async fn step<S: Store>(
    state: Arc<AppState<S>>,
    caller: Caller,
    ids: std::result::Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
    kind: StepKind,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let (id, override_id) = path_param("id", ids)?;
    not_only_auditor(&state, &caller, &key)?;
    let step = match kind {
        StepKind::Approve => {
            let b: ApprovalBody = read_body(&body, "an approval")?;
            OverrideStep::Approve {
                plan_hash: b.plan_hash,
                comment: b.comment.unwrap_or_default(),
                signature: b.signature.map(|s| ApproverSignature {
                    key_id: s.key_id,
                    ed25519: s.ed25519,
                }),
            }
        }
        StepKind::Deny => OverrideStep::Deny {
            reason: read_body::<ReasonBody>(&body, "a denial")?.reason,
        },
        StepKind::Withdraw => OverrideStep::Withdraw {
            reason: read_body::<ReasonBody>(&body, "a withdrawal")?.reason,
        },
    };
    let view = state
        .gate
        .override_step(&principal(&key), &id, &override_id, step)
        .await
        .map_err(|e| gate_problem(&state, &caller, &key, e))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Approves an override (distinct approvers; `admin`, `security`, `finance` or `manager`;
/// not the requester). The approval that completes the chain records `override_approved`,
/// and the review then carries an approval token.
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/override-requests/{override_id}/approvals",
    tag = "gate",
    operation_id = "approve_override",
    params(
        ("id" = String, Path, description = "The request id"),
        ("override_id" = String, Path, description = "The override"),
    ),
    request_body(content = ApprovalBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded; the chain as it stands", body = OverrideAnswer),
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
pub(crate) async fn approve_override<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    ids: std::result::Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    step(state, caller, ids, body, StepKind::Approve).await
}

/// Denies an override: any denial blocks it for good.
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/override-requests/{override_id}/denials",
    tag = "gate",
    operation_id = "deny_override",
    params(
        ("id" = String, Path, description = "The request id"),
        ("override_id" = String, Path, description = "The override"),
    ),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded; the chain is denied", body = OverrideAnswer),
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
pub(crate) async fn deny_override<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    ids: std::result::Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    step(state, caller, ids, body, StepKind::Deny).await
}

/// Withdraws an override (its requester only).
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/override-requests/{override_id}/withdrawal",
    tag = "gate",
    operation_id = "withdraw_override",
    params(
        ("id" = String, Path, description = "The request id"),
        ("override_id" = String, Path, description = "The override"),
    ),
    request_body(content = ReasonBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded; the chain is withdrawn", body = OverrideAnswer),
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
pub(crate) async fn withdraw_override<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    ids: std::result::Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Response> {
    step(state, caller, ids, body, StepKind::Withdraw).await
}

/// A token to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The approval token.
    #[schema(min_length = 1)]
    pub token: String,
    /// It must approve this request.
    #[serde(default)]
    pub request_id: Option<String>,
    /// It must approve exactly this plan.
    #[serde(default)]
    pub plan_hash: Option<String>,
}

/// The answer about a token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenAnswer {
    /// Valid: this log's signature, unexpired, bound as asked, its approval on record.
    pub valid: bool,
    /// Why not.
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// What it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub claims: Option<Value>,
    /// An execution already used it.
    pub used: bool,
}

/// Checks an approval token online (offline: `custos token verify`): signature, expiry,
/// tenant, binding to a request and plan, the approval on record, and whether it was used.
#[utoipa::path(
    post,
    path = "/v1/tokens/verify",
    tag = "gate",
    operation_id = "verify_token",
    request_body(content = TokenBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The verdict (valid or why not)", body = TokenAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("apiKey" = []))
)]
pub(crate) async fn verify_token<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    let b: TokenBody = read_body(&body, "a token check")?;
    if b.token.is_empty() {
        return Err(Problem {
            field: Some("token".into()),
            ..invalid_request("`token` must not be empty".into())
        });
    }
    let check = state
        .gate
        .verify_token(
            &key.tenant,
            &b.token,
            b.request_id.as_deref(),
            b.plan_hash.as_deref(),
        )
        .map_err(|e| gate_problem(&state, &caller, &key, e))?;
    Ok(Json(check).into_response())
}

/// An approver's public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproverKeyBody {
    /// The key's id, 1 to 128 bytes without whitespace.
    #[schema(min_length = 1, max_length = 128, pattern = r"^\S+$")]
    pub key_id: String,
    /// The Ed25519 public key: 32 bytes, standard base64.
    pub public_key: String,
}

/// A registered key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproverKeyAnswer {
    /// Whose.
    pub approver: String,
    /// Its id.
    pub key_id: String,
    /// Ledger seq of the registration; absent when it was already registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub seq: Option<u64>,
}

/// Registers the caller's Ed25519 public key for signing override approvals. Recorded in the
/// ledger; a key id is never rebound to another key.
#[utoipa::path(
    post,
    path = "/v1/approver-keys",
    tag = "gate",
    operation_id = "register_approver_key",
    request_body(content = ApproverKeyBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Already registered", body = ApproverKeyAnswer),
        (status = 201, description = "Registered", body = ApproverKeyAnswer),
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
pub(crate) async fn register_approver_key<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    not_only_auditor(&state, &caller, &key)?;
    let b: ApproverKeyBody = read_body(&body, "an approver key")?;
    let p = principal(&key);
    let seq = state
        .gate
        .register_approver_key(&p, &b.key_id, &b.public_key)
        .await
        .map_err(|e| gate_problem(&state, &caller, &key, e))?;
    let status = if seq.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = ApproverKeyAnswer {
        approver: p.actor,
        key_id: b.key_id,
        seq,
    };
    Ok((status, Json(answer)).into_response())
}

/// The documented `verify-plan` call: the review request of `POST /v1/reviews`; the answer is
/// the review plus `approved` (a boolean) for clients that only read that.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyPlanAnswer {
    /// Whether the plan may run.
    pub approved: bool,
    /// The review, as `POST /v1/reviews` answers it.
    #[serde(flatten)]
    #[schema(inline)]
    pub review: ReviewAnswer,
}

/// Compatibility (SPEC §9): `POST /v1/reviews` under its documented name, answering `200`
/// with an `approved` flag beside the review.
#[utoipa::path(
    post,
    path = "/verify-plan",
    tag = "compatibility",
    operation_id = "verify_plan",
    request_body(content = ReviewRequestBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The review", body = VerifyPlanAnswer),
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
pub(crate) async fn verify_plan<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let (view, _) = review(&state, &caller, &body).await?;
    let mut value = serde_json::to_value(&view)
        .map_err(|_| Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    if let Value::Object(m) = &mut value {
        m.insert(
            "approved".into(),
            Value::Bool(view.record.evaluation.decision == Outcome::Approved),
        );
    }
    Ok(Json(value).into_response())
}

/// The documented `verify-execution` call.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyExecutionBody {
    /// The request id of the review.
    #[schema(min_length = 1, max_length = 256, pattern = r"^\S+$")]
    pub request_id: String,
    /// What was executed (as `result` of `POST /v1/reviews/{id}/execution`); also accepted
    /// as `execution_result`.
    #[serde(alias = "execution_result")]
    #[schema(value_type = Object)]
    pub result: Value,
    /// The approval token.
    #[serde(default)]
    pub approval_token: Option<String>,
}

/// Compatibility (SPEC §9): `POST /v1/reviews/{id}/execution` with the request id in the
/// body.
#[utoipa::path(
    post,
    path = "/verify-execution",
    tag = "compatibility",
    operation_id = "verify_execution",
    request_body(content = VerifyExecutionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Verified and recorded", body = ExecutionAnswer),
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
pub(crate) async fn verify_execution<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let key = authenticate(&state, &caller, &body).await?;
    require(
        &state,
        &caller,
        &key,
        &ORCHESTRATORS,
        "reporting an execution",
    )?;
    let b: VerifyExecutionBody = read_body(&body, "an execution report")?;
    let input = ExecutionInput {
        result: b.result,
        approval_token: b.approval_token,
    };
    execution(&state, &caller, &key, &b.request_id, input).await
}

/// Health, as the documented API answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    /// `healthy` (a store that does not accept appends answers 503).
    pub status: String,
    /// The service.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Entries in the ledger.
    pub ledger_entries: u64,
    /// Hash of the gate's policy bundle.
    pub policy_bundle: String,
}

/// Compatibility (SPEC §9): health as JSON. `/healthz` and `/readyz` are the native probes.
#[utoipa::path(
    get,
    path = "/health",
    tag = "compatibility",
    operation_id = "health",
    responses(
        (status = 200, description = "Healthy", body = HealthAnswer),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn health<S: Store>(State(state): State<Arc<AppState<S>>>) -> Result<Response> {
    let health = writable_health(&state)?;
    let answer = HealthAnswer {
        status: "healthy".to_owned(),
        service: "custos".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ledger_entries: health.size,
        policy_bundle: state.gate.policy_bundle().to_owned(),
    };
    Ok(Json(answer).into_response())
}
