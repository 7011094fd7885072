//! The ledger entry of SPEC §3.1: what a client sends ([`EntryBody`]), what the ledger stores
//! ([`Entry`]), validation limits, secret redaction, and the canonical bytes that are hashed.
//!
//! Sequencing assigns four fields (`seq`, `id`, `ts`, `prev_hash`) inside the store's single
//! writer, which is the hot path. So validation, redaction and rendering of everything else
//! happen before, in parallel, into a [`PreparedEntry`]: the canonical form with four gaps.
//! [`PreparedEntry::seal_into`] then only copies bytes and fills the gaps. The result is
//! byte-for-byte the RFC 8785 canonical form of the whole entry (a property test checks it
//! against the general JCS canonicaliser).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jcs;
use crate::merkle::Hash;

/// Borrows the non-assigned fields of an [`Entry`] or an [`EntryBody`] (same field names).
macro_rules! fields_of {
    ($e:expr) => {
        Fields {
            client_ts: $e.client_ts.as_deref(),
            tenant: &$e.tenant,
            event_type: &$e.event_type,
            actor: &$e.actor,
            action: &$e.action,
            resource: $e.resource.as_deref(),
            target: $e.target.as_deref(),
            outcome: $e.outcome,
            severity: $e.severity,
            policy_decision: $e.policy_decision.as_deref(),
            matched_rule: $e.matched_rule.as_deref(),
            trace_id: $e.trace_id.as_deref(),
            session_id: $e.session_id.as_deref(),
            request: $e.request.as_ref(),
            data: &$e.data,
        }
    };
}

/// The `prev_hash` of entry 0: 64 zeros.
pub const ZERO_HASH: Hash = [0u8; 32];

/// What replaces the value of a secret-looking key in `data`.
pub const REDACTED: &str = "[REDACTED]";

/// Key suffixes that mark a value as secret (SPEC §3.1).
const SECRET_NAMES: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "private_key",
    "credentials",
    "cookie",
];

/// How bad an event is; ordered so that "at least `high`" is a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Denied,
        Outcome::Error,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The originating request of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInfo {
    /// Client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Everything a client says about an event: the entry without the fields custos assigns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntryBody {
    /// When the client says the event happened (RFC 3339, kept as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ts: Option<String>,
    /// The tenant the entry belongs to.
    pub tenant: String,
    /// What kind of event.
    pub event_type: String,
    /// Who acted: `agent:<id>`, `user:<id>` or `system`.
    pub actor: String,
    /// `allow`, `deny`, … or a verb.
    pub action: String,
    /// What was accessed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Target principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// How bad it is.
    pub severity: Severity,
    /// Human-readable policy result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_decision: Option<String>,
    /// Id of the rule that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_rule: Option<String>,
    /// Correlation id (W3C trace id accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The originating request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
    /// Arbitrary metadata.
    pub data: Map<String, Value>,
}

/// A sequenced entry as stored: every field of SPEC §3.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log.
    pub seq: u64,
    /// UUID v7.
    pub id: String,
    /// When custos sequenced it.
    pub ts: String,
    /// When the client says the event happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Target principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Severity.
    pub severity: Severity,
    /// Policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_decision: Option<String>,
    /// Matched rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_rule: Option<String>,
    /// Trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Originating request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
    /// Metadata.
    pub data: Map<String, Value>,
    /// Leaf hash of entry `seq - 1`, lowercase hex.
    pub prev_hash: String,
}

/// Size limits on entries (SPEC §3.1); configurable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest canonical form of a whole entry, in bytes.
    pub max_entry_bytes: usize,
    /// Longest string outside `data`, in bytes.
    pub max_string_bytes: usize,
    /// Deepest nesting of `data` (the `data` object itself is level 1).
    pub max_data_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 64 * 1024,
            max_string_bytes: 4 * 1024,
            max_data_depth: 16,
        }
    }
}

/// Why an entry was refused: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct EntryError {
    /// The field, as a path (`data.user.password`, `request.ip`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl EntryError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        EntryError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Fields a client may not send because custos assigns them.
const ASSIGNED_FIELDS: [&str; 4] = ["seq", "id", "ts", "prev_hash"];

impl EntryBody {
    /// A minimal body; the rest defaults (`severity` info, empty `data`).
    pub fn new(
        tenant: impl Into<String>,
        event_type: impl Into<String>,
        actor: impl Into<String>,
        action: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        EntryBody {
            client_ts: None,
            tenant: tenant.into(),
            event_type: event_type.into(),
            actor: actor.into(),
            action: action.into(),
            resource: None,
            target: None,
            outcome,
            severity: Severity::Info,
            policy_decision: None,
            matched_rule: None,
            trace_id: None,
            session_id: None,
            request: None,
            data: Map::new(),
        }
    }

    /// Reads a body from client JSON, strictly: unknown fields, fields custos assigns, wrong
    /// types and unknown enum values are errors naming the field. Values are checked further
    /// by [`PreparedEntry::new`].
    pub fn from_json(value: &Value) -> Result<Self, EntryError> {
        let Value::Object(obj) = value else {
            return Err(EntryError::new("(entry)", "must be a JSON object"));
        };
        for key in obj.keys() {
            if ASSIGNED_FIELDS.contains(&key.as_str()) {
                return Err(EntryError::new(
                    key.as_str(),
                    "is assigned by custos at sequencing and may not be sent",
                ));
            }
            if !BODY_FIELDS.contains(&key.as_str()) {
                return Err(EntryError::new(key.as_str(), "unknown field"));
            }
        }
        let req_str = |name: &str| -> Result<String, EntryError> {
            match obj.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(EntryError::new(name, "must be a string")),
                None => Err(EntryError::new(name, "is required")),
            }
        };
        let opt_str = |name: &str| -> Result<Option<String>, EntryError> {
            match obj.get(name) {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Null) | None => Ok(None),
                Some(_) => Err(EntryError::new(name, "must be a string")),
            }
        };
        let outcome = {
            let s = req_str("outcome")?;
            Outcome::parse(&s).ok_or_else(|| {
                EntryError::new(
                    "outcome",
                    format!("`{s}` is not one of success, failure, denied, error"),
                )
            })?
        };
        let severity = match opt_str("severity")? {
            None => Severity::Info,
            Some(s) => Severity::parse(&s).ok_or_else(|| {
                EntryError::new(
                    "severity",
                    format!("`{s}` is not one of info, low, medium, high, critical"),
                )
            })?,
        };
        let request = match obj.get("request") {
            None | Some(Value::Null) => None,
            Some(Value::Object(r)) => {
                for key in r.keys() {
                    if key != "ip" && key != "user_agent" {
                        return Err(EntryError::new(
                            format!("request.{key}"),
                            "unknown field (expected ip, user_agent)",
                        ));
                    }
                }
                let field = |name: &str| match r.get(name) {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Null) | None => Ok(None),
                    Some(_) => Err(EntryError::new(
                        format!("request.{name}"),
                        "must be a string",
                    )),
                };
                Some(RequestInfo {
                    ip: field("ip")?,
                    user_agent: field("user_agent")?,
                })
            }
            Some(_) => return Err(EntryError::new("request", "must be an object")),
        };
        let data = match obj.get("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(EntryError::new("data", "must be a JSON object")),
        };
        Ok(EntryBody {
            client_ts: opt_str("client_ts")?,
            tenant: req_str("tenant")?,
            event_type: req_str("event_type")?,
            actor: req_str("actor")?,
            action: req_str("action")?,
            resource: opt_str("resource")?,
            target: opt_str("target")?,
            outcome,
            severity,
            policy_decision: opt_str("policy_decision")?,
            matched_rule: opt_str("matched_rule")?,
            trace_id: opt_str("trace_id")?,
            session_id: opt_str("session_id")?,
            request,
            data,
        })
    }
}

/// Fields a client may send.
const BODY_FIELDS: [&str; 15] = [
    "client_ts",
    "tenant",
    "event_type",
    "actor",
    "action",
    "resource",
    "target",
    "outcome",
    "severity",
    "policy_decision",
    "matched_rule",
    "trace_id",
    "session_id",
    "request",
    "data",
];

/// Is `key` secret-looking per SPEC §3.1?
pub fn is_secret_key(key: &str) -> bool {
    let norm: String = key
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    SECRET_NAMES.iter().any(|name| {
        norm == *name
            || (norm.len() > name.len()
                && norm.ends_with(name)
                && norm.as_bytes()[norm.len() - name.len() - 1] == b'_')
    })
}

/// Replaces, at any depth, the value of every secret-looking key with [`REDACTED`].
/// Returns how many values were redacted.
pub fn redact(data: &mut Map<String, Value>) -> usize {
    let mut count = 0;
    for (key, value) in data.iter_mut() {
        if is_secret_key(key) {
            if value.as_str() != Some(REDACTED) {
                *value = Value::String(REDACTED.to_owned());
            }
            count += 1;
        } else {
            count += redact_value(value);
        }
    }
    count
}

fn redact_value(value: &mut Value) -> usize {
    match value {
        Value::Object(m) => redact(m),
        Value::Array(items) => items.iter_mut().map(redact_value).sum(),
        _ => 0,
    }
}

/// A validated, redacted entry rendered in canonical form except for the four fields custos
/// assigns at sequencing. Cheap to seal; built off the hot path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedEntry {
    /// Canonical bytes with gaps before `id`, `prev_hash`, `seq` and `ts`.
    buf: Vec<u8>,
    /// Where each gap is.
    cuts: [usize; 3],
    /// Byte range of the tenant's value (without quotes) in `buf`.
    tenant_at: (usize, usize),
}

/// Upper bound of what the four assigned fields add:
/// `"id":"<36>",` `"prev_hash":"<64>",` `"seq":<20>,` `"ts":"<30>"}`.
const ASSIGNED_MAX_BYTES: usize = 7 + 36 + 1 + 14 + 64 + 1 + 6 + 20 + 1 + 7 + 30 + 1;

impl PreparedEntry {
    /// Validates `body` against `limits`, redacts secrets in `data` and renders it.
    pub fn new(mut body: EntryBody, limits: &Limits) -> Result<Self, EntryError> {
        validate(&body, limits)?;
        redact(&mut body.data);
        let prepared = render(&body.as_fields()).map_err(|e| EntryError::new("data", e))?;
        if prepared.buf.len() + ASSIGNED_MAX_BYTES > limits.max_entry_bytes {
            return Err(EntryError::new(
                "(entry)",
                format!(
                    "canonical form is about {} bytes, over the limit of {} bytes",
                    prepared.buf.len() + ASSIGNED_MAX_BYTES,
                    limits.max_entry_bytes
                ),
            ));
        }
        Ok(prepared)
    }

    /// The tenant this entry belongs to (tenant names need no JSON escaping).
    pub fn tenant(&self) -> &str {
        std::str::from_utf8(&self.buf[self.tenant_at.0..self.tenant_at.1]).unwrap_or("")
    }

    /// Appends the canonical bytes of the sequenced entry to `out` and returns its leaf hash.
    pub fn seal_into(
        &self,
        seq: u64,
        id: &str,
        ts: &str,
        prev_hash: &Hash,
        out: &mut Vec<u8>,
    ) -> Hash {
        let start = out.len();
        let [c0, c1, c2] = self.cuts;
        out.extend_from_slice(&self.buf[..c0]);
        out.extend_from_slice(b"\"id\":");
        jcs::write_string(id, out);
        out.push(b',');
        out.extend_from_slice(&self.buf[c0..c1]);
        out.extend_from_slice(b"\"prev_hash\":\"");
        let mut hex_buf = [0u8; 64];
        // Hex encoding into a fixed buffer cannot fail for 32 input bytes.
        if hex::encode_to_slice(prev_hash, &mut hex_buf).is_ok() {
            out.extend_from_slice(&hex_buf);
        }
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&self.buf[c1..c2]);
        out.extend_from_slice(b"\"seq\":");
        jcs::write_u64(seq, out);
        out.push(b',');
        out.extend_from_slice(&self.buf[c2..]);
        out.extend_from_slice(b"\"ts\":");
        jcs::write_string(ts, out);
        out.push(b'}');
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&out[start..]);
        h.finalize().into()
    }

    /// The canonical bytes and leaf hash of the sequenced entry.
    pub fn seal(&self, seq: u64, id: &str, ts: &str, prev_hash: &Hash) -> (Vec<u8>, Hash) {
        let mut out = Vec::with_capacity(self.buf.len() + ASSIGNED_MAX_BYTES);
        let leaf = self.seal_into(seq, id, ts, prev_hash, &mut out);
        (out, leaf)
    }
}

impl Entry {
    /// Parses stored canonical bytes and checks they are exactly canonical: re-rendering the
    /// parsed entry must give the same bytes. Any other byte sequence is an error.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, EntryError> {
        let entry: Entry = serde_json::from_slice(bytes)
            .map_err(|e| EntryError::new("(entry)", format!("not a valid entry: {e}")))?;
        let again = entry
            .canonical()
            .map_err(|e| EntryError::new("(entry)", format!("has no canonical form: {e}")))?;
        if again != bytes {
            return Err(EntryError::new(
                "(entry)",
                "stored bytes are not the canonical form of the entry they encode",
            ));
        }
        Ok(entry)
    }

    /// The canonical bytes (RFC 8785) of this entry.
    pub fn canonical(&self) -> Result<Vec<u8>, String> {
        let prepared = render(&self.as_fields())?;
        let prev = crate::merkle::hash_from_hex(&self.prev_hash)?;
        Ok(prepared.seal(self.seq, &self.id, &self.ts, &prev).0)
    }

    /// The leaf hash of this entry's canonical bytes.
    pub fn leaf_hash(&self) -> Result<Hash, String> {
        Ok(crate::merkle::leaf_hash(&self.canonical()?))
    }

    fn as_fields(&self) -> Fields<'_> {
        fields_of!(self)
    }

    /// The client-supplied part of this entry.
    pub fn body(&self) -> EntryBody {
        EntryBody {
            client_ts: self.client_ts.clone(),
            tenant: self.tenant.clone(),
            event_type: self.event_type.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            target: self.target.clone(),
            outcome: self.outcome,
            severity: self.severity,
            policy_decision: self.policy_decision.clone(),
            matched_rule: self.matched_rule.clone(),
            trace_id: self.trace_id.clone(),
            session_id: self.session_id.clone(),
            request: self.request.clone(),
            data: self.data.clone(),
        }
    }
}

impl EntryBody {
    fn as_fields(&self) -> Fields<'_> {
        fields_of!(self)
    }
}

/// Borrowed view of the non-assigned fields, shared by bodies and stored entries so both
/// render through one function.
struct Fields<'a> {
    client_ts: Option<&'a str>,
    tenant: &'a str,
    event_type: &'a str,
    actor: &'a str,
    action: &'a str,
    resource: Option<&'a str>,
    target: Option<&'a str>,
    outcome: Outcome,
    severity: Severity,
    policy_decision: Option<&'a str>,
    matched_rule: Option<&'a str>,
    trace_id: Option<&'a str>,
    session_id: Option<&'a str>,
    request: Option<&'a RequestInfo>,
    data: &'a Map<String, Value>,
}

/// Renders the members in RFC 8785 order (all keys are ASCII, so byte order is UTF-16 order):
/// action actor client_ts data event_type [id] matched_rule outcome policy_decision
/// [prev_hash] request resource [seq] session_id severity target tenant trace_id [ts].
/// Every member is followed by a comma; the gaps are filled by `seal_into`.
fn render(f: &Fields<'_>) -> Result<PreparedEntry, String> {
    let mut buf = Vec::with_capacity(256);
    buf.push(b'{');
    member_str(&mut buf, "action", f.action);
    member_str(&mut buf, "actor", f.actor);
    if let Some(v) = f.client_ts {
        member_str(&mut buf, "client_ts", v);
    }
    buf.extend_from_slice(b"\"data\":");
    jcs::write_object(f.data, &mut buf).map_err(|e| e.to_string())?;
    buf.push(b',');
    member_str(&mut buf, "event_type", f.event_type);
    let c0 = buf.len();
    if let Some(v) = f.matched_rule {
        member_str(&mut buf, "matched_rule", v);
    }
    member_str(&mut buf, "outcome", f.outcome.as_str());
    if let Some(v) = f.policy_decision {
        member_str(&mut buf, "policy_decision", v);
    }
    let c1 = buf.len();
    if let Some(r) = f.request {
        buf.extend_from_slice(b"\"request\":{");
        let mut first = true;
        for (k, v) in [("ip", &r.ip), ("user_agent", &r.user_agent)] {
            if let Some(v) = v {
                if !first {
                    buf.push(b',');
                }
                first = false;
                jcs::write_string(k, &mut buf);
                buf.push(b':');
                jcs::write_string(v, &mut buf);
            }
        }
        buf.extend_from_slice(b"},");
    }
    if let Some(v) = f.resource {
        member_str(&mut buf, "resource", v);
    }
    let c2 = buf.len();
    if let Some(v) = f.session_id {
        member_str(&mut buf, "session_id", v);
    }
    member_str(&mut buf, "severity", f.severity.as_str());
    if let Some(v) = f.target {
        member_str(&mut buf, "target", v);
    }
    let tenant_start = buf.len() + "\"tenant\":\"".len();
    member_str(&mut buf, "tenant", f.tenant);
    let tenant_end = buf.len() - 2;
    if let Some(v) = f.trace_id {
        member_str(&mut buf, "trace_id", v);
    }
    Ok(PreparedEntry {
        buf,
        cuts: [c0, c1, c2],
        tenant_at: (tenant_start, tenant_end),
    })
}

fn member_str(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    jcs::write_string(value, buf);
    buf.push(b',');
}

fn validate(b: &EntryBody, limits: &Limits) -> Result<(), EntryError> {
    let max = limits.max_string_bytes;
    check_name("tenant", &b.tenant, 128, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })?;
    check_name("event_type", &b.event_type, 128, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')
    })?;
    check_principal("actor", &b.actor, max)?;
    check_text("action", &b.action, max)?;
    if b.action.is_empty() {
        return Err(EntryError::new("action", "must not be empty"));
    }
    if let Some(t) = &b.target {
        check_principal("target", t, max)?;
    }
    for (name, value) in [
        ("resource", &b.resource),
        ("policy_decision", &b.policy_decision),
        ("matched_rule", &b.matched_rule),
        ("trace_id", &b.trace_id),
        ("session_id", &b.session_id),
    ] {
        if let Some(v) = value {
            check_text(name, v, max)?;
            if v.is_empty() {
                return Err(EntryError::new(name, "must not be empty when present"));
            }
        }
    }
    if let Some(ts) = &b.client_ts {
        check_text("client_ts", ts, max)?;
        crate::time::parse_rfc3339(ts).map_err(|e| EntryError::new("client_ts", e))?;
    }
    if let Some(r) = &b.request {
        if let Some(ip) = &r.ip {
            check_text("request.ip", ip, max)?;
            ip.parse::<std::net::IpAddr>().map_err(|_| {
                EntryError::new(
                    "request.ip",
                    format!("`{ip}` is not an IPv4 or IPv6 address"),
                )
            })?;
        }
        if let Some(ua) = &r.user_agent {
            check_text("request.user_agent", ua, max)?;
        }
    }
    // Verification's canonical check nests at most this deep: no configuration may write
    // entries it could not read back.
    check_depth(
        "data",
        &b.data,
        1,
        limits.max_data_depth.min(crate::canonical::MAX_DEPTH),
    )
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), EntryError> {
    if value.len() > max {
        return Err(EntryError::new(
            field,
            format!("is {} bytes, over the limit of {max}", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(EntryError::new(
            field,
            format!("contains the control character U+{:04X}", u32::from(c)),
        ));
    }
    Ok(())
}

fn check_name(
    field: &str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), EntryError> {
    if value.is_empty() {
        return Err(EntryError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(EntryError::new(
            field,
            format!("is {} bytes, over the limit of {max}", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(EntryError::new(
            field,
            format!(
                "contains `{}`, which is not allowed here",
                c.escape_default()
            ),
        ));
    }
    Ok(())
}

/// `agent:<id>`, `user:<id>` or `system`; ids may be DIDs, so anything but whitespace and
/// control characters is allowed after the prefix.
pub fn check_principal(field: &str, value: &str, max: usize) -> Result<(), EntryError> {
    check_text(field, value, max)?;
    if value == "system" {
        return Ok(());
    }
    let id = value
        .strip_prefix("agent:")
        .or_else(|| value.strip_prefix("user:"))
        .ok_or_else(|| {
            EntryError::new(
                field,
                format!("`{value}` is not a principal (agent:<id>, user:<id> or system)"),
            )
        })?;
    if id.is_empty() {
        return Err(EntryError::new(field, "principal id must not be empty"));
    }
    if id.chars().any(char::is_whitespace) {
        return Err(EntryError::new(
            field,
            "principal id must not contain whitespace",
        ));
    }
    Ok(())
}

fn check_depth(
    path: &str,
    map: &Map<String, Value>,
    depth: usize,
    max: usize,
) -> Result<(), EntryError> {
    if depth > max {
        return Err(EntryError::new(
            path,
            format!("nesting is deeper than {max} levels"),
        ));
    }
    for (k, v) in map {
        check_value_depth(&format!("{path}.{k}"), v, depth, max)?;
    }
    Ok(())
}

fn check_value_depth(path: &str, v: &Value, depth: usize, max: usize) -> Result<(), EntryError> {
    match v {
        Value::Object(m) => check_depth(path, m, depth + 1, max),
        Value::Array(items) => {
            if depth + 1 > max {
                return Err(EntryError::new(
                    path,
                    format!("nesting is deeper than {max} levels"),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                check_value_depth(&format!("{path}[{i}]"), item, depth + 1, max)?;
            }
            Ok(())
        }
        Value::Number(n) => {
            let mut scratch = Vec::new();
            jcs::write_number(n, &mut scratch).map_err(|e| EntryError::new(path, e.to_string()))
        }
        _ => Ok(()),
    }
}
