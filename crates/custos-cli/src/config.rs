//! Configuration: a TOML file, then `CUSTOS_*` environment variables over it, then
//! command-line flags over both. Every setting has a default, so no file is needed.
//!
//! ```toml
//! listen = "127.0.0.1:8080"        # CUSTOS_LISTEN
//! data_dir = "./custos-data"       # CUSTOS_DATA (with postgres: the node's keys and settings)
//! store = "embedded"               # CUSTOS_STORE: embedded or postgres
//! checkpoint_interval_secs = 1     # CUSTOS_CHECKPOINT_INTERVAL_SECS
//! drain_secs = 30                  # CUSTOS_DRAIN_SECS: shutdown waits this long for requests
//!
//! [limits]
//! max_body_bytes = 33554432        # CUSTOS_MAX_BODY_BYTES: larger bodies get 413
//! max_queued_entries = 200000      # CUSTOS_MAX_QUEUED_ENTRIES: beyond it, 503 + Retry-After
//! max_entry_bytes = 65536          # CUSTOS_MAX_ENTRY_BYTES: canonical size of one entry
//! ready_max_index_lag = 1000000    # CUSTOS_READY_MAX_INDEX_LAG: /readyz fails beyond it
//!
//! [log]
//! level = "info"                   # CUSTOS_LOG: a level or a tracing filter
//! format = "json"                  # CUSTOS_LOG_FORMAT: json or text
//!
//! [postgres]                       # with store = "postgres"
//! url = "postgres://custos@127.0.0.1:5432/custos"  # CUSTOS_POSTGRES_URL
//! max_connections = 8              # CUSTOS_POSTGRES_MAX_CONNECTIONS
//! migrate = true                   # CUSTOS_POSTGRES_MIGRATE: false for an append-only role
//!
//! [tls]                            # optional; serves HTTPS when present
//! cert = "/etc/custos/tls.crt"     # CUSTOS_TLS_CERT (PEM chain)
//! key = "/etc/custos/tls.key"      # CUSTOS_TLS_KEY (PEM: PKCS#8, PKCS#1 or SEC1)
//!
//! [oversight]                      # agent oversight (SPEC §5)
//! monitor_interval_secs = 60       # CUSTOS_MONITOR_INTERVAL_SECS: enforcer pass period
//! [oversight.defaults]             # tenants' defaults; each tenant may change its own
//! stale_after_secs = 600
//! anomaly_threshold = 0.7
//! default_reporting_interval_secs = 300
//! [oversight.defaults.reporting]
//! warn_after = 3
//! suspend_after = 5
//! non_compliant_after = 10
//! grace_intervals = 2
//!
//! [alerts]                         # webhooks (docs/alerts.md); none: no dispatcher runs
//! [[alerts.webhooks]]
//! name = "oncall"
//! kind = "pagerduty"               # generic, slack or pagerduty
//! url = "https://events.pagerduty.com/v2/enqueue"
//! routing_key = "…"
//!
//! [mirror]                         # optional; keeps the signed JSON Lines mirror current
//! dir = "/var/lib/custos/mirror"   # CUSTOS_MIRROR_DIR
//! key_file = "/etc/custos/mirror.key" # CUSTOS_MIRROR_KEY_FILE
//! max_file_bytes = 67108864        # CUSTOS_MIRROR_MAX_FILE_BYTES
//! ```
//!
//! Environment values go through the same typed parse as the file: one path, one set of
//! errors, each naming the variable or key that was wrong.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::Deserialize;

/// Everything `custos serve` can be told.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where the ledger lives.
    pub store: StoreKind,
    /// `[postgres]`, for `store = "postgres"`.
    pub postgres: Option<Postgres>,
    /// Seconds between checkpoints while entries arrive.
    pub checkpoint_interval_secs: u64,
    /// Seconds shutdown waits for in-flight requests.
    pub drain_secs: u64,
    /// Limits.
    pub limits: Limits,
    /// Logging.
    pub log: Log,
    /// HTTPS.
    pub tls: Option<Tls>,
    /// The signed JSON Lines mirror.
    pub mirror: Option<Mirror>,
    /// The plan gate.
    pub gate: Gate,
    /// Agent oversight.
    pub oversight: Oversight,
    /// Alert webhooks.
    pub alerts: custos_alerts::AlertsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./custos-data"),
            store: StoreKind::Embedded,
            postgres: None,
            checkpoint_interval_secs: 1,
            drain_secs: 30,
            limits: Limits::default(),
            log: Log::default(),
            tls: None,
            mirror: None,
            gate: Gate::default(),
            oversight: Oversight::default(),
            alerts: custos_alerts::AlertsConfig::default(),
        }
    }
}

/// The storage backend.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The data directory (default).
    Embedded,
    /// A PostgreSQL database, possibly shared by several nodes.
    Postgres,
}

/// `[postgres]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// Connection URL.
    pub url: String,
    /// Pool size.
    #[serde(default = "default_pg_connections")]
    pub max_connections: u32,
    /// Apply migrations on start; false for a role that may only append (then `custos
    /// migrate` must have run as the schema owner).
    #[serde(default = "default_true")]
    pub migrate: bool,
}

fn default_true() -> bool {
    true
}

fn default_pg_connections() -> u32 {
    8
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Append queue capacity, entries.
    pub max_queued_entries: usize,
    /// Largest canonical entry.
    pub max_entry_bytes: usize,
    /// `/readyz` fails while the indexes are further behind the log than this.
    pub ready_max_index_lag: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: custos_server::http::MAX_BODY_BYTES,
            max_queued_entries: custos_store::embedded::EmbeddedConfig::default()
                .max_queued_entries,
            max_entry_bytes: custos_core::entry::Limits::default().max_entry_bytes,
            ready_max_index_lag: custos_server::http::MAX_INDEX_LAG,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A level (`info`) or a tracing filter (`info,custos_server=debug`).
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// `[mirror]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Directory of the mirror files.
    pub dir: PathBuf,
    /// File holding the HMAC key.
    pub key_file: PathBuf,
    /// Rotate files at this size.
    #[serde(default = "default_mirror_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_mirror_file_bytes() -> u64 {
    64 * 1024 * 1024
}

/// `[gate]`: the plan gate (SPEC §4).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Gate {
    /// Directory of operator Rego policies (`*.rego`, package `custos.operator.<name>`);
    /// they add to the built-in policies, never replace them.
    pub policy_dir: Option<PathBuf>,
    /// Minimum intent confidence for approval.
    pub min_confidence: f64,
    /// Lifetime of approval tokens, seconds.
    pub token_ttl_secs: u64,
    /// Distinct approvers an override needs.
    pub override_min_approvers: u32,
    /// How long an override request stays open, seconds.
    pub override_ttl_secs: u64,
    /// Every override approval must be signed with the approver's registered key.
    pub require_signed_approvals: bool,
    /// The optional LLM intent verifier.
    pub llm: Option<GateLlm>,
}

impl Default for Gate {
    fn default() -> Self {
        let overrides = custos_gate::overrides::OverrideConfig::default();
        Gate {
            policy_dir: None,
            min_confidence: custos_gate::decision::DEFAULT_MIN_CONFIDENCE,
            token_ttl_secs: (custos_gate::token::DEFAULT_TTL_NANOS / 1_000_000_000) as u64,
            override_min_approvers: overrides.min_approvers,
            override_ttl_secs: overrides.ttl_seconds,
            require_signed_approvals: overrides.require_signatures,
            llm: None,
        }
    }
}

/// `[oversight]`: agent oversight (SPEC §5). `[oversight.defaults]` holds the settings of
/// tenants that never changed theirs (`reporting`, `performance`, `score`, `stale_after_secs`,
/// `anomaly_threshold`, `default_reporting_interval_secs`); `[oversight.anomaly]` the
/// detector's windows and bounds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Oversight {
    /// How often the enforcer looks at every agent, seconds (SPEC: 60).
    pub monitor_interval_secs: u64,
    /// Most agents one tenant may register.
    pub max_agents_per_tenant: usize,
    /// Latest ledger entries replayed into the anomaly baselines on start.
    pub baseline_replay_entries: u64,
    /// Tenants' default settings.
    pub defaults: custos_oversight::registry::Settings,
    /// The anomaly detector.
    pub anomaly: custos_oversight::anomaly::AnomalyConfig,
}

impl Default for Oversight {
    fn default() -> Self {
        let d = custos_oversight::service::OversightConfig::default();
        Oversight {
            monitor_interval_secs: d.monitor_interval_secs,
            max_agents_per_tenant: d.max_agents_per_tenant,
            baseline_replay_entries: d.baseline_replay_entries,
            defaults: d.defaults,
            anomaly: d.anomaly,
        }
    }
}

impl Oversight {
    /// The service's configuration.
    pub fn service_config(&self) -> custos_oversight::service::OversightConfig {
        custos_oversight::service::OversightConfig {
            defaults: self.defaults.clone(),
            monitor_interval_secs: self.monitor_interval_secs,
            max_agents_per_tenant: self.max_agents_per_tenant,
            anomaly: self.anomaly.clone(),
            baseline_replay_entries: self.baseline_replay_entries,
        }
    }
}

/// `[gate.llm]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateLlm {
    /// `openai` (any OpenAI-compatible chat completions server) or `anthropic`.
    pub provider: String,
    /// Base URL.
    pub url: String,
    /// Model name.
    pub model: String,
    /// Environment variable holding the API key (separate from the orchestrator's).
    pub api_key_env: Option<String>,
    /// Timeout, milliseconds; past it the review fails secure.
    #[serde(default = "default_llm_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_llm_timeout_ms() -> u64 {
    10_000
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Bool,
}

/// Environment variables and the key each overrides.
const ENV: &[(&str, &[&str], Kind)] = &[
    ("CUSTOS_LISTEN", &["listen"], Kind::Text),
    ("CUSTOS_DATA", &["data_dir"], Kind::Text),
    ("CUSTOS_STORE", &["store"], Kind::Text),
    ("CUSTOS_POSTGRES_URL", &["postgres", "url"], Kind::Text),
    (
        "CUSTOS_POSTGRES_MAX_CONNECTIONS",
        &["postgres", "max_connections"],
        Kind::Integer,
    ),
    (
        "CUSTOS_POSTGRES_MIGRATE",
        &["postgres", "migrate"],
        Kind::Bool,
    ),
    (
        "CUSTOS_CHECKPOINT_INTERVAL_SECS",
        &["checkpoint_interval_secs"],
        Kind::Integer,
    ),
    ("CUSTOS_DRAIN_SECS", &["drain_secs"], Kind::Integer),
    (
        "CUSTOS_MONITOR_INTERVAL_SECS",
        &["oversight", "monitor_interval_secs"],
        Kind::Integer,
    ),
    (
        "CUSTOS_MAX_BODY_BYTES",
        &["limits", "max_body_bytes"],
        Kind::Integer,
    ),
    (
        "CUSTOS_MAX_QUEUED_ENTRIES",
        &["limits", "max_queued_entries"],
        Kind::Integer,
    ),
    (
        "CUSTOS_MAX_ENTRY_BYTES",
        &["limits", "max_entry_bytes"],
        Kind::Integer,
    ),
    (
        "CUSTOS_READY_MAX_INDEX_LAG",
        &["limits", "ready_max_index_lag"],
        Kind::Integer,
    ),
    ("CUSTOS_LOG", &["log", "level"], Kind::Text),
    ("CUSTOS_LOG_FORMAT", &["log", "format"], Kind::Text),
    ("CUSTOS_TLS_CERT", &["tls", "cert"], Kind::Text),
    ("CUSTOS_TLS_KEY", &["tls", "key"], Kind::Text),
    ("CUSTOS_MIRROR_DIR", &["mirror", "dir"], Kind::Text),
    (
        "CUSTOS_MIRROR_KEY_FILE",
        &["mirror", "key_file"],
        Kind::Text,
    ),
    (
        "CUSTOS_GATE_POLICY_DIR",
        &["gate", "policy_dir"],
        Kind::Text,
    ),
    (
        "CUSTOS_GATE_TOKEN_TTL_SECS",
        &["gate", "token_ttl_secs"],
        Kind::Integer,
    ),
    (
        "CUSTOS_MIRROR_MAX_FILE_BYTES",
        &["mirror", "max_file_bytes"],
        Kind::Integer,
    ),
];

impl Config {
    /// Reads `file` (if given), then applies the variables `env` returns.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .map_err(|e| anyhow!("config file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (var, keys, kind) in ENV {
            let Some(raw) = env(var) else { continue };
            let value = match kind {
                Kind::Text => toml::Value::String(raw),
                Kind::Integer => raw
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(toml::Value::Integer)
                    .ok_or_else(|| anyhow!("{var}: `{raw}` is not a non-negative integer"))?,
                Kind::Bool => match raw.trim() {
                    "true" | "1" | "yes" => toml::Value::Boolean(true),
                    "false" | "0" | "no" => toml::Value::Boolean(false),
                    _ => return Err(anyhow!("{var}: `{raw}` is not true or false")),
                },
            };
            let (last, parents) = keys.split_last().ok_or_else(|| anyhow!("{var}: no key"))?;
            let mut at = &mut table;
            for k in parents {
                at = at
                    .entry(k.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| anyhow!("{var}: `{k}` in the config file is not a table"))?;
            }
            at.insert(last.to_string(), value);
        }
        let config: Config = toml::Value::Table(table).try_into().map_err(|e| {
            anyhow!(
                "configuration{}: {e}",
                file.map_or(String::new(), |f| format!(" ({})", f.display()))
            )
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        self.oversight
            .service_config()
            .validate()
            .map_err(|e| anyhow!("[oversight]: {e}"))?;
        self.alerts
            .validate()
            .map_err(|e| anyhow!("[alerts]: {e}"))?;
        if self.store == StoreKind::Postgres && self.postgres.is_none() {
            return Err(anyhow!(
                "store = \"postgres\" needs [postgres] url (or CUSTOS_POSTGRES_URL)"
            ));
        }
        if self.checkpoint_interval_secs == 0 {
            return Err(anyhow!("checkpoint_interval_secs must be at least 1"));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(anyhow!("limits.max_body_bytes must be at least 1024"));
        }
        if self.limits.max_queued_entries < custos_store::embedded::MAX_BATCH {
            return Err(anyhow!(
                "limits.max_queued_entries must hold at least one full batch ({})",
                custos_store::embedded::MAX_BATCH
            ));
        }
        if self.limits.max_entry_bytes < 1024 {
            return Err(anyhow!("limits.max_entry_bytes must be at least 1024"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("custos.toml");
        std::fs::write(&path, file).expect("write");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&path), |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, |_| None).expect("defaults");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let c = load(
            "listen = \"0.0.0.0:9000\"\ndrain_secs = 5\n[limits]\nmax_body_bytes = 4096\n\
             [log]\nformat = \"text\"\n[tls]\ncert = \"a.pem\"\nkey = \"b.pem\"\n",
            &[
                ("CUSTOS_LISTEN", "127.0.0.1:1"),
                ("CUSTOS_MAX_BODY_BYTES", "8192"),
                ("CUSTOS_TLS_KEY", "c.pem"),
                ("CUSTOS_MIRROR_DIR", "/m"),
                ("CUSTOS_MIRROR_KEY_FILE", "/k"),
            ],
        )
        .expect("config");
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.drain_secs, 5);
        assert_eq!(c.limits.max_body_bytes, 8192);
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(
            c.tls,
            Some(Tls {
                cert: "a.pem".into(),
                key: "c.pem".into()
            })
        );
        let m = c.mirror.expect("mirror from the environment alone");
        assert_eq!((m.dir, m.max_file_bytes), ("/m".into(), 64 * 1024 * 1024));
    }

    #[test]
    fn mistakes_are_named() {
        for (file, env, want) in [
            ("lisen = \"x\"", vec![], "unknown field `lisen`"),
            (
                "[limits]\nmax_body_bytes = \"big\"",
                vec![],
                "max_body_bytes",
            ),
            ("", vec![("CUSTOS_DRAIN_SECS", "soon")], "CUSTOS_DRAIN_SECS"),
            (
                "",
                vec![("CUSTOS_LOG_FORMAT", "xml")],
                "unknown variant `xml`",
            ),
            ("[tls]\ncert = \"a\"", vec![], "missing field `key`"),
            (
                "checkpoint_interval_secs = 0",
                vec![],
                "checkpoint_interval_secs",
            ),
            ("listen = ", vec![], "config file"),
            ("store = \"sqlite\"", vec![], "unknown variant `sqlite`"),
            (
                "",
                vec![("CUSTOS_STORE", "postgres")],
                "needs [postgres] url",
            ),
        ] {
            let err = load(file, &env).expect_err(file);
            assert!(format!("{err:#}").contains(want), "{file:?}: {err:#}");
        }
    }
}
