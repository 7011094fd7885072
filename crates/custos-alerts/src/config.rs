//! The `[alerts]` settings and their webhooks (`[[alerts.webhooks]]`), with validation that
//! names the bad setting.
//!
//! ```toml
//! [alerts]
//! min_severity = "high"              # any entry at least this severe is an alert
//! max_attempts_before_report = 8     # failed attempts before `alert_delivery_failed`
//! initial_backoff_ms = 500
//! max_backoff_ms = 300000
//! max_pending = 100000               # outbox bound; when full, the cursor waits
//!
//! [[alerts.webhooks]]
//! name = "oncall"
//! kind = "pagerduty"
//! url = "https://events.pagerduty.com/v2/enqueue"
//! routing_key = "R0UT1NGKEY"
//! min_severity = "critical"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use custos_core::entry::Severity;
use serde::Deserialize;

use crate::rule::{EventRule, default_events, is_dispatcher_event};

/// Failed attempts after which `alert_delivery_failed` is recorded.
pub const DEFAULT_MAX_ATTEMPTS_BEFORE_REPORT: u32 = 8;
/// Delay before the first retry, milliseconds (then doubling).
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 500;
/// Longest delay between attempts, milliseconds.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 300_000;
/// Most deliveries the outbox holds before the cursor waits.
pub const DEFAULT_MAX_PENDING: usize = 100_000;
/// How often the dispatcher looks for new entries, milliseconds.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 200;
/// Concurrent requests to one webhook (one while it is failing).
pub const DEFAULT_MAX_IN_FLIGHT_PER_SINK: usize = 4;
/// Request timeout of a webhook, milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The outbox directory under the data directory, when none is configured.
pub const OUTBOX_SUBDIR: &str = "alerts";

/// Longest webhook request timeout, milliseconds.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Longest backoff, milliseconds (one day).
const MAX_BACKOFF_LIMIT_MS: u64 = 86_400_000;
/// Headers custos sets itself on every request.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "transfer-encoding",
];

/// `[alerts]`: what is an alert, where it goes, how hard delivery tries.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The webhooks (`[[alerts.webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// An entry at least this severe is an alert, whatever its type.
    pub min_severity: Severity,
    /// Event types that are alerts from a severity of their own; replaces the built-in list
    /// ([`default_events`]) when set.
    pub events: Vec<EventRule>,
    /// Failed attempts of one delivery after which `alert_delivery_failed` is recorded
    /// (retries go on).
    pub max_attempts_before_report: u32,
    /// Delay before the first retry, milliseconds; it doubles with each failure.
    pub initial_backoff_ms: u64,
    /// Longest delay between two attempts, milliseconds.
    pub max_backoff_ms: u64,
    /// Most deliveries the outbox holds; when full the dispatcher stops reading the ledger
    /// until some are done (it may go over by fewer than the number of webhooks).
    pub max_pending: usize,
    /// How often the ledger is checked for new entries, milliseconds.
    pub poll_interval_ms: u64,
    /// Concurrent requests to one webhook; one at a time while it is failing.
    pub max_in_flight_per_sink: usize,
    /// Where a new outbox starts: `false` (default) at the ledger's current end, `true` at
    /// seq 0, delivering every alert already in the ledger. An existing outbox resumes at its
    /// cursor either way.
    pub from_start: bool,
    /// The outbox directory; the server uses `<data_dir>/alerts` when unset
    /// ([`AlertsConfig::with_data_dir`]).
    pub outbox_dir: Option<PathBuf>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhooks: Vec::new(),
            min_severity: Severity::High,
            events: default_events(),
            max_attempts_before_report: DEFAULT_MAX_ATTEMPTS_BEFORE_REPORT,
            initial_backoff_ms: DEFAULT_INITIAL_BACKOFF_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            max_pending: DEFAULT_MAX_PENDING,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            max_in_flight_per_sink: DEFAULT_MAX_IN_FLIGHT_PER_SINK,
            from_start: false,
            outbox_dir: None,
        }
    }
}

impl AlertsConfig {
    /// Sets the outbox directory to `<data_dir>/alerts` unless one is configured.
    pub fn with_data_dir(mut self, data_dir: &Path) -> Self {
        if self.outbox_dir.is_none() {
            self.outbox_dir = Some(data_dir.join(OUTBOX_SUBDIR));
        }
        self
    }

    /// Checks the settings; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts_before_report == 0 {
            return Err("max_attempts_before_report must be at least 1".into());
        }
        if self.initial_backoff_ms == 0 {
            return Err("initial_backoff_ms must be at least 1".into());
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(format!(
                "max_backoff_ms ({}) must not be less than initial_backoff_ms ({})",
                self.max_backoff_ms, self.initial_backoff_ms
            ));
        }
        if self.max_backoff_ms > MAX_BACKOFF_LIMIT_MS {
            return Err(format!(
                "max_backoff_ms ({}) must be at most {MAX_BACKOFF_LIMIT_MS} (one day)",
                self.max_backoff_ms
            ));
        }
        if self.max_pending == 0 {
            return Err("max_pending must be at least 1".into());
        }
        if !(1..=60_000).contains(&self.poll_interval_ms) {
            return Err(format!(
                "poll_interval_ms ({}) must be 1 to 60000",
                self.poll_interval_ms
            ));
        }
        if !(1..=256).contains(&self.max_in_flight_per_sink) {
            return Err(format!(
                "max_in_flight_per_sink ({}) must be 1 to 256",
                self.max_in_flight_per_sink
            ));
        }
        if let Some(dir) = &self.outbox_dir
            && dir.as_os_str().is_empty()
        {
            return Err("outbox_dir must not be empty".into());
        }
        for (i, rule) in self.events.iter().enumerate() {
            check_event_type(&rule.event_type)
                .map_err(|problem| format!("events[{i}].event_type: {problem}"))?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            hook.validate()
                .map_err(|problem| format!("webhooks[{i}] (`{}`): {problem}", hook.name))?;
            if !names.insert(hook.name.as_str()) {
                return Err(format!(
                    "webhooks[{i}] (`{}`): name: another webhook has this name",
                    hook.name
                ));
            }
        }
        Ok(())
    }
}

/// The payload shape a webhook expects.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// custos's own JSON: a summary and the whole entry.
    Generic,
    /// A Slack incoming webhook (`text` and Block Kit `blocks`).
    Slack,
    /// PagerDuty Events API v2 (`/v2/enqueue`), `event_action` = `trigger`.
    Pagerduty,
}

impl SinkKind {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Generic => "generic",
            SinkKind::Slack => "slack",
            SinkKind::Pagerduty => "pagerduty",
        }
    }
}

/// One `[[alerts.webhooks]]` table. A webhook can only narrow what is an alert, never widen it.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name: ASCII letters, digits, `.`, `_`, `-`, at most 64 (it appears in the
    /// ledger as `resource` = `alert:<name>`).
    pub name: String,
    /// Payload shape.
    pub kind: SinkKind,
    /// `http://` or `https://` URL the alerts are POSTed to. Treated as a secret (a Slack
    /// webhook URL is one): never logged.
    pub url: String,
    /// PagerDuty integration key (required for `pagerduty`, refused for the others).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Only alerts at least this severe.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Only alerts of these event types.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Only alerts of these tenants.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Extra request headers, e.g. `Authorization`; values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request timeout, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl WebhookConfig {
    /// A webhook receiving every alert, with the default timeout and no extra headers.
    pub fn new(name: impl Into<String>, kind: SinkKind, url: impl Into<String>) -> Self {
        WebhookConfig {
            name: name.into(),
            kind,
            url: url.into(),
            routing_key: None,
            min_severity: None,
            event_types: None,
            tenants: None,
            headers: BTreeMap::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }

    /// Checks this webhook; the error names the field (never its secret value).
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("name: must be 1 to 64 characters".into());
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err("name: only ASCII letters, digits, `.`, `_` and `-` are allowed".into());
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("url: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "url: scheme `{}` is not http or https",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("url: has no host".into());
        }
        match (self.kind, &self.routing_key) {
            (SinkKind::Pagerduty, None) => {
                return Err("routing_key: is required for kind `pagerduty`".into());
            }
            (SinkKind::Pagerduty, Some(key)) if key.trim().is_empty() => {
                return Err("routing_key: must not be empty".into());
            }
            (SinkKind::Generic | SinkKind::Slack, Some(_)) => {
                return Err(format!(
                    "routing_key: only kind `pagerduty` takes one, not `{}`",
                    self.kind.as_str()
                ));
            }
            _ => {}
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "timeout_ms ({}) must be 1 to {MAX_TIMEOUT_MS}",
                self.timeout_ms
            ));
        }
        if let Some(types) = &self.event_types {
            if types.is_empty() {
                return Err(
                    "event_types: an empty list would receive nothing; omit it to receive every alert"
                        .into(),
                );
            }
            for (i, t) in types.iter().enumerate() {
                check_event_type(t).map_err(|problem| format!("event_types[{i}]: {problem}"))?;
            }
        }
        if let Some(tenants) = &self.tenants {
            if tenants.is_empty() {
                return Err(
                    "tenants: an empty list would receive nothing; omit it to receive every tenant"
                        .into(),
                );
            }
            if let Some(i) = tenants.iter().position(|t| t.is_empty()) {
                return Err(format!("tenants[{i}]: must not be empty"));
            }
        }
        for (name, value) in &self.headers {
            let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: `{name}` is not a valid header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!(
                    "headers: `{name}` is set by custos and may not be configured"
                ));
            }
            reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                format!("headers: the value of `{name}` is not a valid header value")
            })?;
        }
        Ok(())
    }

    /// The URL without path, query or credentials: what may be shown.
    fn url_for_display(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(url) => {
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!(
                    "{}://{}{port}/…",
                    url.scheme(),
                    url.host_str().unwrap_or("")
                )
            }
            Err(_) => "<invalid>".into(),
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url_for_display())
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("min_severity", &self.min_severity)
            .field("event_types", &self.event_types)
            .field("tenants", &self.tenants)
            .field("headers", &headers)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// An event type a rule may name: the ledger's charset, and not one of the dispatcher's own.
fn check_event_type(event_type: &str) -> Result<(), String> {
    if event_type.is_empty() || event_type.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !event_type
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        return Err(format!("`{event_type}` is not a valid event type"));
    }
    if is_dispatcher_event(event_type) {
        return Err(format!(
            "`{event_type}`: event types starting with `alert_` are never alerts"
        ));
    }
    Ok(())
}
