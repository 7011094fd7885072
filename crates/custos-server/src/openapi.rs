//! The OpenAPI 3.1 document of the HTTP API (SPEC §9), served at `GET /openapi.json`.
//!
//! Operations come from the `#[utoipa::path]` annotations on the handlers in [`crate::http`];
//! bodies the server defines itself derive their schemas from the types it serialises.
//! custos-core and custos-ledger know nothing of OpenAPI (core stays pure), so their wire
//! shapes are described here by types that exist only for the document. The tests serialise
//! real values and check them against these schemas, so the two cannot drift apart silently.
//!
//! Request schemas are exactly as strict as the server: each pattern, length and enum below is
//! one the validator in `custos_core::entry` enforces, so a request the schema calls valid is
//! accepted and one it calls invalid is refused. `scripts/schemathesis` checks both directions
//! against the running server. What JSON Schema cannot say (byte rather than character
//! lengths, the 64 KiB canonical size, 16 levels of nesting in `data`) is said in descriptions.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Bytes;
use serde_json::json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder,
    Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use crate::{gate_http, http, oversight_http};

/// Name of the security scheme: an API key sent as a bearer token.
pub const SECURITY_SCHEME: &str = "apiKey";

/// Largest integer every IEEE-754 double up to it holds exactly: 2^53 − 1.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The document, built once.
static JSON: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(serde_json::to_vec(&document()).expect("the OpenAPI document serialises"))
});

/// The OpenAPI document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The OpenAPI document as JSON.
pub fn json() -> Bytes {
    JSON.clone()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "custos",
        description = "A tamper-evident audit ledger: append entries, query and export them, \
                       and prove inclusion and consistency against signed checkpoints. Errors are \
                       RFC 9457 problem details (`application/problem+json`) with a stable `type`."
    ),
    paths(
        http::append_one,
        http::query_entries,
        http::append_batch,
        http::get_entry,
        http::inclusion_proof,
        http::consistency_proof,
        http::checkpoint,
        http::checkpoint_for_size,
        http::export,
        http::summary,
        http::verify_ledger,
        http::create_key,
        http::list_keys,
        http::revoke_key,
        http::verifier_key,
        http::healthz,
        http::readyz,
        http::openapi_json,
        gate_http::create_review,
        gate_http::list_reviews,
        gate_http::get_review,
        gate_http::report_execution,
        gate_http::request_override,
        gate_http::approve_override,
        gate_http::deny_override,
        gate_http::withdraw_override,
        gate_http::verify_token,
        gate_http::register_approver_key,
        gate_http::verify_plan,
        gate_http::verify_execution,
        gate_http::health,
        oversight_http::register_agent,
        oversight_http::list_agents,
        oversight_http::get_agent,
        oversight_http::update_agent,
        oversight_http::delete_agent,
        oversight_http::agent_heartbeat,
        oversight_http::agent_history,
        oversight_http::agent_warnings,
        oversight_http::suspend_agent,
        oversight_http::grant_exemption,
        oversight_http::revoke_exemption,
        oversight_http::list_requests,
        oversight_http::approve_request,
        oversight_http::deny_request,
        oversight_http::get_settings,
        oversight_http::put_settings,
        oversight_http::compat_heartbeat,
    ),
    components(
        schemas(http::ProblemBody, Order, ExportFormat, EntryKey, Outcome, Severity),
        responses(
            BadRequest,
            Unauthenticated,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            Unprocessable,
            Internal,
            Unavailable,
        ),
    ),
    modifiers(&BearerKey, &KeyRequestRule, &MetricsPath),
    tags(
        (name = "ledger", description = "Entries, queries, exports and verification"),
        (name = "proofs", description = "Checkpoints, inclusion and consistency proofs"),
        (name = "keys", description = "API keys (admin keys only)"),
        (name = "service", description = "Health, readiness, metrics and this document"),
        (name = "gate", description = "The plan gate: reviews, approval tokens, execution verification, overrides (SPEC §4)"),
        (name = "oversight", description = "Agent oversight: registry, heartbeats, enforcement, admin decisions (SPEC §5)"),
        (name = "compatibility", description = "The documented routes of the system custos replaces (SPEC §9)"),
    )
)]
struct ApiDoc;

/// Declares the bearer API key scheme the operations' `security` refers to.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, doc: &mut Document) {
        let scheme = SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("ck_<id>_<secret>")
                .description(Some(
                    "An API key: `Authorization: Bearer ck_<id>_<secret>`. A key acts in one \
                     tenant with its roles. Keys issued as `signed` must also sign every request \
                     (headers `X-Custos-Timestamp`, `X-Custos-Nonce`, `X-Custos-Signature`; SPEC \
                     §4.6).",
                ))
                .build(),
        );
        match &mut doc.components {
            Some(c) => {
                c.security_schemes
                    .insert(SECURITY_SCHEME.to_owned(), scheme);
            }
            None => {
                doc.components = Some(
                    ComponentsBuilder::new()
                        .security_scheme(SECURITY_SCHEME, scheme)
                        .build(),
                );
            }
        }
    }
}

/// Describes `GET /metrics`, which [`crate::ops`] serves beside the API's own routes.
struct MetricsPath;

impl Modify for MetricsPath {
    fn modify(&self, doc: &mut Document) {
        let text = ContentBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        let operation = OperationBuilder::new()
            .tag("service")
            .operation_id(Some("metrics"))
            .summary(Some(
                "Prometheus metrics (SPEC §7), in OpenMetrics text format.",
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The metrics")
                    .content("application/openmetrics-text", text),
            )
            .response("500", Ref::from_response_name("Internal"));
        doc.paths.paths.insert(
            "/metrics".to_owned(),
            PathItem::new(HttpMethod::Get, operation),
        );
    }
}

/// Adds the rule tying `agent` to the `agent` role to the key request schema. It needs the
/// JSON Schema keyword `contains`, which utoipa has no builder for; its extension map
/// serialises any keyword, so the rule goes in through it.
struct KeyRequestRule;

impl Modify for KeyRequestRule {
    fn modify(&self, doc: &mut Document) {
        let Some(RefOr::T(Schema::Object(new_key))) = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("NewKey"))
        else {
            return;
        };
        let other_roles: Vec<&str> = crate::keys::Role::ALL
            .iter()
            .map(|r| r.as_str())
            .filter(|r| *r != "agent")
            .collect();
        let rule = json!([
            {
                "description": "An agent key names the agent it writes as.",
                "required": ["agent"],
                "properties": {
                    "roles": { "contains": { "const": "agent" } },
                    "agent": { "type": "string" }
                }
            },
            {
                "description": "Other keys name no agent.",
                "properties": {
                    "roles": { "items": { "enum": other_roles } },
                    "agent": { "type": "null" }
                }
            }
        ]);
        new_key
            .extensions
            .get_or_insert_with(Extensions::default)
            .insert("anyOf".to_owned(), rule);
    }
}

/// How the event ended.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It failed.
    Failure,
    /// It was refused.
    Denied,
    /// It broke.
    Error,
}

/// How bad an event is, lowest first.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational (the default).
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// What an API key may do (SPEC §9).
#[derive(ToSchema)]
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

/// An IPv4 or IPv6 address.
pub struct IpAddress;

impl PartialSchema for IpAddress {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv4))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv6))),
            )
            .description(Some("An IPv4 or IPv6 address (no zone index)."))
            .into()
    }
}

impl ToSchema for IpAddress {}

/// Any JSON value with an RFC 8785 canonical form.
pub struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        let value = || Ref::from_schema_name("JsonValue");
        let number = || ObjectBuilder::new().schema_type(Type::Number);
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(
                number()
                    .minimum(Some(-MAX_SAFE_INTEGER))
                    .maximum(Some(MAX_SAFE_INTEGER)),
            )
            .item(number().minimum(Some(1e21)))
            .item(number().maximum(Some(-1e21)))
            .item(ArrayBuilder::new().items(value()))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(value())),
            )
            .description(Some(
                "Any JSON value with an RFC 8785 canonical form: a number must be exact as an \
                 IEEE-754 double, so integers lie within ±(2^53 − 1) and larger magnitudes \
                 start at 1e21 (send other large numbers as strings).",
            ))
            .into()
    }
}

impl ToSchema for JsonValue {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("JsonValue".to_owned(), Self::schema()));
    }
}

/// A JSON object of [`JsonValue`]s: an entry's `data`.
pub struct JsonObject;

impl PartialSchema for JsonObject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .additional_properties(Some(Ref::from_schema_name("JsonValue")))
            .description(Some(
                "Arbitrary metadata, nested at most 16 levels (the object itself is level 1). \
                 Values under secret-looking keys (`password`, `*_token`, `api_key`, …) are \
                 replaced by \"[REDACTED]\" before hashing (SPEC §3.1).",
            ))
            .into()
    }
}

impl ToSchema for JsonObject {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("JsonValue".to_owned(), JsonValue::schema()));
    }
}

/// The request that caused an event.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestInfo {
    /// Client IP address.
    #[schema(value_type = Option<IpAddress>, max_length = 4096)]
    pub ip: Option<String>,
    /// Client user agent.
    #[schema(max_length = 4096, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub user_agent: Option<String>,
}

/// An entry as a client sends it (SPEC §3.1, without the fields custos assigns: `seq`, `id`,
/// `ts`, `prev_hash`, which are refused). Strings outside `data` hold at most 4096 bytes of
/// UTF-8; the canonical form of the whole entry is at most 64 KiB. A refused entry gets a 422
/// naming the field.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "event_type": "tool_invocation",
    "actor": "agent:billing-bot",
    "action": "create",
    "resource": "/crm/contacts",
    "outcome": "success",
    "severity": "low",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "request": {"ip": "203.0.113.7", "user_agent": "billing-bot/1.2"},
    "data": {"tool": "crm.create_contact", "duration_ms": 42, "api_key": "redacted before hashing"}
}))]
pub struct NewEntry {
    /// When the client says the event happened (RFC 3339, at most nanosecond precision; a
    /// space in place of the `T` is accepted too; kept as sent).
    #[schema(format = DateTime)]
    pub client_ts: Option<String>,
    /// The tenant; defaults to the key's, and may only be the key's.
    #[schema(
        required = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9._-]+$"
    )]
    pub tenant: String,
    /// What kind of event (`tool_invocation`, `policy_violation`, … or any name).
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/-]+$")]
    pub event_type: String,
    /// Who acted. An agent key may only write as its own agent.
    #[schema(
        max_length = 4096,
        pattern = "^(system|(agent|user):[^\\x00-\\x20\\x7F-\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+)$"
    )]
    pub actor: String,
    /// `allow`, `deny`, `audit`, `quarantine`, `warning`, or a verb such as `create`.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub action: String,
    /// What was accessed (`/crm/contacts`, `aws:ec2:sg-123`).
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub resource: Option<String>,
    /// Target principal (agent-to-agent delegation).
    #[schema(
        max_length = 4096,
        pattern = "^(system|(agent|user):[^\\x00-\\x20\\x7F-\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+)$"
    )]
    pub target: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// How bad it is (default `info`).
    pub severity: Option<Severity>,
    /// Human-readable policy result.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub policy_decision: Option<String>,
    /// Id of the rule that decided.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub matched_rule: Option<String>,
    /// Correlation id (a W3C trace id is accepted).
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub trace_id: Option<String>,
    /// Session id.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub session_id: Option<String>,
    /// The originating request.
    pub request: Option<RequestInfo>,
    /// Arbitrary metadata (default `{}`).
    pub data: Option<JsonObject>,
}

/// A sequenced entry as stored (SPEC §3.1); optional fields that were not sent are absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, 0-based, gap-free.
    pub seq: u64,
    /// UUID v7 assigned by custos.
    #[schema(format = "uuid")]
    pub id: String,
    /// When custos sequenced it (RFC 3339 UTC, nanoseconds).
    #[schema(format = DateTime)]
    pub ts: String,
    /// When the client says the event happened, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub client_ts: Option<String>,
    /// Tenant.
    pub tenant: String,
    /// Event type.
    pub event_type: String,
    /// Actor principal.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Resource.
    #[schema(nullable = false)]
    pub resource: Option<String>,
    /// Target principal.
    #[schema(nullable = false)]
    pub target: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Severity.
    pub severity: Severity,
    /// Policy decision.
    #[schema(nullable = false)]
    pub policy_decision: Option<String>,
    /// Matched rule.
    #[schema(nullable = false)]
    pub matched_rule: Option<String>,
    /// Trace id.
    #[schema(nullable = false)]
    pub trace_id: Option<String>,
    /// Session id.
    #[schema(nullable = false)]
    pub session_id: Option<String>,
    /// Originating request.
    #[schema(nullable = false)]
    pub request: Option<RequestInfo>,
    /// Metadata, secrets redacted.
    pub data: JsonObject,
    /// Leaf hash of entry `seq - 1` (64 zeros for entry 0), lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prev_hash: String,
}

/// What an append returns for each entry, once it is durable.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Position in the log.
    pub seq: u64,
    /// UUID v7.
    #[schema(format = "uuid")]
    pub id: String,
    /// Sequencing time (RFC 3339 UTC).
    #[schema(format = DateTime)]
    pub ts: String,
    /// RFC 9162 leaf hash of the entry's canonical bytes, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub leaf_hash: String,
}

/// RFC 9162 inclusion proof (SPEC §3.3).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The 0-based index of the proven leaf.
    pub leaf_index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The inclusion path, from the leaf upwards, lowercase hex.
    #[schema(value_type = Vec<String>, pattern = "^[0-9a-f]{64}$")]
    pub hashes: Vec<String>,
}

/// RFC 9162 consistency proof between two tree sizes (SPEC §3.3).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The old tree size.
    pub first: u64,
    /// The new tree size.
    pub second: u64,
    /// The consistency path, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hashes: Vec<String>,
}

/// An entry with everything needed to check it offline: the entry, its inclusion proof and
/// the signed checkpoint the proof leads to.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// The entry.
    pub entry: Entry,
    /// Its inclusion proof.
    pub proof: InclusionProof,
    /// The checkpoint: a C2SP signed note over a `tlog-checkpoint` body.
    pub checkpoint: String,
}

/// Counts for a period (SPEC §3.6).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Entries in the period.
    pub total: u64,
    /// Entries of severity high or critical.
    pub high_severity: u64,
    /// By event type.
    pub by_event_type: BTreeMap<String, u64>,
    /// By severity.
    pub by_severity: BTreeMap<String, u64>,
    /// By actor.
    pub by_actor: BTreeMap<String, u64>,
    /// By resource (entries without one are not counted here).
    pub by_resource: BTreeMap<String, u64>,
    /// By outcome.
    pub by_outcome: BTreeMap<String, u64>,
}

/// What kind of problem verification found.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Bytes of a record are damaged.
    CorruptRecord,
    /// An entry is missing from the sequence.
    MissingEntry,
    /// An entry appears where it does not belong.
    InsertedEntry,
    /// Entries are out of order.
    ReorderedEntries,
    /// The stored bytes are not the canonical form of an entry.
    NotCanonical,
    /// The entry's content differs from the leaf hash the tree recorded.
    ChangedEntry,
    /// `prev_hash` does not match the previous entry.
    BrokenChain,
    /// The stored tree disagrees with the entries.
    TreeMismatch,
    /// A checkpoint's signature or text does not verify.
    ForgedCheckpoint,
    /// A checkpoint's root differs from the recomputed tree.
    CheckpointMismatch,
    /// The log ends before its last checkpoint.
    Truncated,
}

/// The first problem verification found.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationFailure {
    /// The kind.
    pub kind: FailureKind,
    /// The seq it concerns, where there is one.
    #[schema(required = true)]
    pub seq: Option<u64>,
    /// The checkpoint (tree size) it concerns, where there is one.
    #[schema(required = true)]
    pub checkpoint_size: Option<u64>,
    /// What is wrong, for a person.
    pub message: String,
}

/// The outcome of a full verification (SPEC §3.4).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationReport {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Size of the latest checkpoint.
    #[schema(required = true)]
    pub latest_checkpoint: Option<u64>,
    /// Recomputed root over the checked entries, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub root: String,
    /// The first problem; null means intact.
    #[schema(required = true)]
    pub failure: Option<VerificationFailure>,
}

/// An API key as the registry knows it (never its secret).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Public id (the `<id>` of `ck_<id>_<secret>`).
    pub id: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// For agent keys, the only actor it may write as (`agent:<id>`).
    #[schema(required = true)]
    pub agent: Option<String>,
    /// Requests must be signed (SPEC §4.6).
    pub signed: bool,
    /// Who issued it.
    pub issued_by: String,
    /// Ledger seq of the issuing entry.
    pub created_seq: u64,
    /// Ledger seq of the revoking entry, once revoked.
    #[schema(required = true)]
    pub revoked_seq: Option<u64>,
}

/// Export formats.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON array of entries (`application/json`).
    Json,
    /// One entry per line (`application/x-ndjson`), the default.
    Jsonl,
    /// The same as `jsonl`.
    Ndjson,
    /// RFC 4180 CSV with a header row (`text/csv`).
    Csv,
    /// A batch of CloudEvents 1.0 (`application/cloudevents-batch+json`).
    Cloudevents,
}

/// Order of a query by `seq`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first (the default).
    Asc,
    /// Newest first.
    Desc,
}

/// An entry in CloudEvents 1.0 structured form (SPEC §3.6).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudEvent {
    /// Always `1.0`.
    #[schema(pattern = "^1\\.0$")]
    pub specversion: String,
    /// The entry's id.
    #[schema(format = "uuid")]
    pub id: String,
    /// `custos://<origin>/<actor>`.
    pub source: String,
    /// `dev.custos.<event_type>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entry's `ts`.
    #[schema(format = DateTime)]
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The entry's resource, when it has one.
    #[schema(nullable = false)]
    pub subject: Option<String>,
    /// The entry.
    pub data: Entry,
}

/// An entry's `seq` or its `id`.
pub struct EntryKey;

impl PartialSchema for EntryKey {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u64::MAX as usize)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::Custom("uuid".into()))),
            )
            .description(Some("An entry's `seq` (decimal) or its `id` (UUID v7)."))
            .into()
    }
}

impl ToSchema for EntryKey {}

/// A batch of 1 to 10 000 entries: a JSON array, or the same array as `{"entries": [...]}`.
pub struct NewBatch;

impl PartialSchema for NewBatch {
    fn schema() -> RefOr<Schema> {
        let entries = || {
            ArrayBuilder::new()
                .items(Ref::from_schema_name("NewEntry"))
                .min_items(Some(1))
                .max_items(Some(custos_store::embedded::MAX_BATCH))
        };
        OneOfBuilder::new()
            .item(entries())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("entries", entries())
                    .required("entries")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .description(Some(
                "A batch of 1 to 10 000 entries: a JSON array, or the same array as \
                 `{\"entries\": [...]}`. All are appended or none.",
            ))
            .into()
    }
}

impl ToSchema for NewBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("NewEntry".to_owned(), NewEntry::schema()));
        NewEntry::schemas(schemas);
    }
}

/// The request is malformed: not JSON, a bad parameter, or impossible as asked.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(pub http::ProblemBody);

/// No valid API key (missing, unknown, revoked), or a signed key's signature is missing,
/// wrong, stale or replayed.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unauthenticated(pub http::ProblemBody);

/// The key may not do this: wrong role, another tenant, or an agent writing as someone else.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(pub http::ProblemBody);

/// Nothing there, as far as this key can tell.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(pub http::ProblemBody);

/// The request conflicts with the current state (the key is already revoked).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Conflict(pub http::ProblemBody);

/// The body is larger than the server accepts (32 MiB by default).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PayloadTooLarge(pub http::ProblemBody);

/// Well-formed JSON that is refused: `field` names what is wrong (`actor`, `entries[3].data`).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unprocessable(pub http::ProblemBody);

/// The server failed; details are in its log, not here.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Internal(pub http::ProblemBody);

/// Overloaded, or not ready: retry later (after `Retry-After` seconds, when given).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct Unavailable(pub http::ProblemBody);

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_slice(&json()).expect("the document is JSON")
    }

    /// Routes served beside [`http::router`]'s: [`crate::ops::instrument`] adds `/metrics`.
    const OPS_ROUTES: [(&str, &str); 1] = [("get", "/metrics")];

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// Every (method, path, operation) in the document.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    out.push((method.to_owned(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn document_is_openapi_3_1_named_custos() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "custos");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let scheme = &doc["components"]["securitySchemes"][SECURITY_SCHEME];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        let rule = &doc["components"]["schemas"]["NewKey"]["anyOf"];
        assert_eq!(rule.as_array().map(Vec::len), Some(2), "{rule}");
    }

    #[test]
    fn document_describes_exactly_the_routes_served() {
        let mut documented: Vec<(String, String)> = operations(&doc())
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let mut served: Vec<(String, String)> = http::served_routes()
            .into_iter()
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .chain(
                OPS_ROUTES
                    .iter()
                    .map(|(m, p)| (m.to_string(), p.to_string())),
            )
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    /// Every `$ref` anywhere in `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let target = r
                .strip_prefix('#')
                .and_then(|pointer| doc.pointer(pointer))
                .unwrap_or_else(|| panic!("{r} does not resolve"));
            assert!(target.is_object(), "{r} is not an object");
        }
    }

    #[test]
    fn operations_answering_401_require_the_key_and_no_others_do() {
        for (method, path, op) in operations(&doc()) {
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get(SECURITY_SCHEME).is_some()));
            let answers_401 = op["responses"].get("401").is_some();
            assert_eq!(secured, answers_401, "{method} {path}");
        }
    }

    #[test]
    fn every_error_is_problem_json() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            for (status, resp) in op["responses"].as_object().expect("responses") {
                if status.as_str() < "400" {
                    continue;
                }
                let resp = match resp["$ref"].as_str() {
                    Some(r) => {
                        let name = r.trim_start_matches("#/components/responses/");
                        &doc["components"]["responses"][name]
                    }
                    None => resp,
                };
                let types: Vec<&String> = resp["content"]
                    .as_object()
                    .map(|c| c.keys().collect())
                    .unwrap_or_default();
                assert_eq!(
                    types,
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
            }
        }
    }

    /// Checks `value` against the component schema `name` as far as object shapes go: every
    /// member is a declared property, every required property is there, and nested `$ref`s
    /// (directly or as array items) hold too.
    fn check(doc: &Value, name: &str, value: &Value) {
        let schema = &doc["components"]["schemas"][name];
        let props = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties"));
        let obj = value
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {value} is not an object"));
        for (k, v) in obj {
            let prop = props
                .get(k)
                .unwrap_or_else(|| panic!("{name}: `{k}` is not in the schema"));
            let target = prop["$ref"]
                .as_str()
                .or_else(|| prop["items"]["$ref"].as_str());
            let nested = prop["oneOf"]
                .as_array()
                .and_then(|alts| alts.iter().find_map(|a| a["$ref"].as_str()));
            if let Some(r) = target.or(nested) {
                let inner = r.trim_start_matches("#/components/schemas/");
                if doc["components"]["schemas"][inner]["properties"].is_object() {
                    match v {
                        Value::Array(items) => items.iter().for_each(|i| check(doc, inner, i)),
                        Value::Object(_) => check(doc, inner, v),
                        _ => {}
                    }
                }
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().expect("required names are strings");
            assert!(obj.contains_key(r), "{name}: required `{r}` is missing");
        }
    }

    fn enum_values(doc: &Value, name: &str) -> Vec<String> {
        doc["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not an enum"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    fn entry(full: bool) -> custos_core::entry::Entry {
        let some = |s: &str| full.then(|| s.to_owned());
        custos_core::entry::Entry {
            seq: 7,
            id: "0190f0a0-0000-7000-8000-000000000000".into(),
            ts: "2026-11-23T11:49:39.000000001Z".into(),
            client_ts: some("2026-11-23T11:49:38Z"),
            tenant: "acme".into(),
            event_type: "tool_invocation".into(),
            actor: "agent:a1".into(),
            action: "create".into(),
            resource: some("/crm/contacts"),
            target: some("agent:a2"),
            outcome: custos_core::entry::Outcome::Success,
            severity: custos_core::entry::Severity::High,
            policy_decision: some("allowed"),
            matched_rule: some("r1"),
            trace_id: some("4bf92f3577b34da6a3ce929d0e0e4736"),
            session_id: some("s1"),
            request: full.then(|| custos_core::entry::RequestInfo {
                ip: Some("10.0.0.1".into()),
                user_agent: Some("curl".into()),
            }),
            data: serde_json::Map::new(),
            prev_hash: "0".repeat(64),
        }
    }

    fn api_key(agent: bool) -> crate::keys::ApiKey {
        crate::keys::ApiKey {
            id: "0011223344556677".into(),
            tenant: "acme".into(),
            roles: vec![crate::keys::Role::Agent],
            agent: agent.then(|| "agent:a1".to_owned()),
            signed: false,
            issued_by: "system".into(),
            created_seq: 3,
            revoked_seq: agent.then_some(9),
        }
    }

    #[test]
    fn mirror_schemas_describe_the_real_values() {
        let doc = doc();
        let v = |x: &dyn erased::Ser| x.value();
        let proof = custos_core::merkle::InclusionProof {
            leaf_index: 7,
            tree_size: 9,
            hashes: vec![[1; 32]],
        };
        let failure = custos_ledger::verify::Failure {
            kind: custos_ledger::verify::FailureKind::ChangedEntry,
            seq: Some(7),
            checkpoint_size: None,
            message: "changed".into(),
        };
        let cases: Vec<(&str, Value)> = vec![
            ("Entry", v(&entry(true))),
            ("Entry", v(&entry(false))),
            (
                "Receipt",
                v(&custos_ledger::Receipt {
                    seq: 7,
                    id: "0190f0a0-0000-7000-8000-000000000000".into(),
                    ts: "2026-11-23T11:49:39Z".into(),
                    leaf_hash: "0".repeat(64),
                }),
            ),
            ("InclusionProof", v(&proof)),
            (
                "ConsistencyProof",
                v(&custos_core::merkle::ConsistencyProof {
                    first: 3,
                    second: 9,
                    hashes: vec![[2; 32]],
                }),
            ),
            (
                "ProofBundle",
                v(&custos_ledger::ProofBundle {
                    entry: entry(true),
                    proof,
                    checkpoint: "custos.example/log\n9\nAAAA\n\n— sig\n".into(),
                }),
            ),
            ("Summary", v(&custos_ledger::export::Summary::default())),
            ("VerificationFailure", v(&failure)),
            (
                "VerificationReport",
                v(&custos_ledger::verify::Report {
                    entries: 9,
                    checkpoints: 2,
                    latest_checkpoint: Some(9),
                    root: "0".repeat(64),
                    failure: Some(failure.clone()),
                }),
            ),
            ("ApiKey", v(&api_key(true))),
            ("ApiKey", v(&api_key(false))),
        ];
        for (name, value) in cases {
            check(&doc, name, &value);
        }
        for (name, values) in [
            (
                "Outcome",
                custos_core::entry::Outcome::ALL
                    .map(|o| o.as_str())
                    .to_vec(),
            ),
            (
                "Severity",
                custos_core::entry::Severity::ALL
                    .map(|s| s.as_str())
                    .to_vec(),
            ),
            ("Role", crate::keys::Role::ALL.map(|r| r.as_str()).to_vec()),
        ] {
            assert_eq!(enum_values(&doc, name), values, "{name}");
        }
    }

    /// Serialises any value for the table above.
    mod erased {
        pub trait Ser {
            fn value(&self) -> serde_json::Value;
        }

        impl<T: serde::Serialize> Ser for T {
            fn value(&self) -> serde_json::Value {
                serde_json::to_value(self).expect("serialises")
            }
        }
    }
}
