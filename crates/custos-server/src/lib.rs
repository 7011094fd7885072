//! custos-server: the only crate that knows HTTP, wire shapes and authentication.
//!
//! It holds authentication — API keys bound to a tenant and roles, kept as ledger entries and
//! checked in constant time ([`keys`]), request signatures ([`signing`]), and the record of
//! refusals ([`auth`]) — and the HTTP API ([`http`], [`serve`]): ledger and key endpoints,
//! problem+json errors, backpressure, health.
//!
//! Several nodes may serve one shared store (PostgreSQL): each node's key registry follows the
//! ledger for the others' key entries (see [`keys`] for the bound on staleness), and nonces of
//! signed requests are remembered by the store, so a replay is refused by every node.
#![deny(missing_docs)]

pub mod auth;
pub mod gate_http;
pub mod http;
pub mod keys;
pub mod openapi;
pub mod ops;
pub mod oversight_http;
pub mod signing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use custos_ledger::Ledger;
use custos_store::Store;

/// How to serve, beyond the ledger and keys.
pub struct ServeOptions {
    /// Nonces of signed requests: for a real server, the store's
    /// ([`signing::NonceStore::in_store`]: durable, and shared by every node on the store).
    pub nonces: signing::NonceStore,
    /// Largest request body, bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// `/readyz` fails while the indexes are further behind than this many entries.
    pub max_index_lag: u64,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub drain: Duration,
    /// Keep this signed JSON Lines mirror current (SPEC §3.7), synced every second.
    pub mirror: Option<custos_ledger::mirror::MirrorConfig>,
    /// The plan gate's policies, LLM verifier and settings; `None`: the built-in policies
    /// alone, no LLM, the SPEC's defaults.
    pub gate: Option<GateSetup>,
    /// Agent oversight settings (SPEC §5).
    pub oversight: custos_oversight::service::OversightConfig,
    /// Alert webhooks (SPEC §7); no dispatcher runs when none is configured.
    pub alerts: Option<custos_alerts::AlertsConfig>,
}

/// What the plan gate runs with.
pub struct GateSetup {
    /// The compiled policies (built-in plus the operator's).
    pub policies: Arc<dyn custos_gate::policy::PolicyEngine>,
    /// The optional LLM intent verifier.
    pub llm: Option<Arc<dyn custos_gate::intent::IntentVerifier>>,
    /// Thresholds and lifetimes.
    pub config: custos_gate::service::GateConfig,
}

impl GateSetup {
    /// The built-in policies alone, no LLM, the SPEC's defaults.
    pub fn builtin() -> Result<Self, String> {
        let policies = custos_gate::policy::RegoPolicyEngine::builtin()
            .map_err(|e| format!("compiling the built-in gate policies: {e}"))?;
        Ok(GateSetup {
            policies: Arc::new(policies),
            llm: None,
            config: custos_gate::service::GateConfig::default(),
        })
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            nonces: signing::NonceStore::in_memory(),
            max_body_bytes: http::MAX_BODY_BYTES,
            max_index_lag: http::MAX_INDEX_LAG,
            tls: None,
            drain: Duration::from_secs(30),
            mirror: None,
            gate: None,
            oversight: custos_oversight::service::OversightConfig::default(),
            alerts: None,
        }
    }
}

/// A TLS configuration from PEM files: a certificate chain and its private key (PKCS#8,
/// PKCS#1 or SEC1). Errors name the file and what is wrong with it.
pub fn tls_from_pem(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE block found",
            cert.display()
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            format!(
                "TLS key {} does not fit the certificate: {e}",
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the API on `listener` until `shutdown` resolves, with a checkpointer and the
/// refusal recorder alongside; then drains in-flight requests, records pending refusals,
/// issues a final checkpoint and closes the store.
pub async fn serve<S: Store>(
    ledger: Arc<Ledger<S>>,
    keys: keys::KeyRegistry,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Two stop signals: the recorder stops first, so the final checkpoint covers its entries.
    let (stop_recorder, recorder_stopped) = tokio::sync::watch::channel(false);
    let (stop_checkpointer, checkpointer_stopped) = tokio::sync::watch::channel(false);
    let (stop_mirror, mirror_stopped) = tokio::sync::watch::channel(false);
    let mirror = options.mirror.map(|config| {
        tokio::spawn(custos_ledger::mirror::run_mirror(
            ledger.store().clone(),
            config,
            Duration::from_secs(1),
            mirror_stopped,
        ))
    });
    let checkpointer = tokio::spawn(ledger.clone().run_checkpointer(checkpointer_stopped));
    let failures = Arc::new(auth::FailureLog::default());
    let follower_stopped = recorder_stopped.clone();
    let recorder = tokio::spawn(failures.clone().run(ledger.clone(), recorder_stopped));
    // Other nodes on the same store issue and revoke keys too: follow the ledger for them.
    let shared = ledger.store().shared();
    let keys = if shared {
        keys.following(ledger.clone())
    } else {
        keys
    };
    let gate = match options.gate {
        Some(g) => g,
        None => GateSetup::builtin().map_err(std::io::Error::other)?,
    };
    let gate = Arc::new(custos_gate::service::GateService::new(
        ledger.clone(),
        gate.policies,
        gate.llm,
        gate.config,
        custos_store::system_clock(),
    ));
    let oversight = {
        let ledger = ledger.clone();
        let config = options.oversight;
        tokio::task::spawn_blocking(move || {
            custos_oversight::service::OversightService::open(
                ledger,
                config,
                custos_store::system_clock(),
            )
        })
        .await
        .map_err(std::io::Error::other)?
        .map_err(|e| std::io::Error::other(format!("opening agent oversight: {e}")))?
    };
    let oversight = Arc::new(oversight);
    gate.set_agent_standing(Arc::new(Standing(Arc::downgrade(&oversight))));
    let (stop_oversight, oversight_stopped) = tokio::sync::watch::channel(false);
    let enforcer = tokio::spawn(oversight.clone().run_enforcer(oversight_stopped.clone()));
    let watcher = tokio::spawn(oversight.clone().run_watcher(oversight_stopped.clone()));
    let dispatcher = match options.alerts {
        Some(config) if !config.webhooks.is_empty() => {
            let d = custos_alerts::Dispatcher::open(ledger.clone(), config)
                .map_err(|e| std::io::Error::other(format!("opening the alert outbox: {e}")))?;
            Some(tokio::spawn(d.run(oversight_stopped)))
        }
        _ => None,
    };
    let state = Arc::new(http::AppState {
        oversight: oversight.clone(),
        gate,
        ledger: ledger.clone(),
        keys: tokio::sync::RwLock::new(keys),
        nonces: Arc::new(options.nonces),
        failures,
        max_body_bytes: options.max_body_bytes,
        max_index_lag: options.max_index_lag,
    });
    let follower = shared.then(|| tokio::spawn(follow_keys(state.clone(), follower_stopped)));
    let counted = Arc::downgrade(&oversight);
    let ops = Arc::new(
        ops::Ops::new(ledger.clone()).with_agent_counts(Box::new(move || {
            let Some(o) = counted.upgrade() else {
                return (Vec::new(), Vec::new());
            };
            let (a, r) = o.counts();
            (
                a.into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), n))
                    .collect(),
                r.into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), n))
                    .collect(),
            )
        })),
    );
    let app = ops::instrument(http::router(state), ops)
        .into_make_service_with_connect_info::<SocketAddr>();
    // Stop accepting on `shutdown`, then give in-flight requests `drain` to finish.
    let handle = axum_server::Handle::new();
    let drain = options.drain;
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(Some(drain));
    });
    let listener = listener.into_std()?;
    let result = match options.tls {
        Some(tls) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
            axum_server::from_tcp(listener)?
                .acceptor(
                    axum_server::tls_rustls::RustlsAcceptor::new(tls)
                        .acceptor(axum_server::accept::NoDelayAcceptor::new()),
                )
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            // Small responses go out at once (no Nagle delay against delayed ACKs).
            axum_server::from_tcp(listener)?
                .acceptor(axum_server::accept::NoDelayAcceptor::new())
                .handle(handle)
                .serve(app)
                .await
        }
    };
    let _ = stop_recorder.send(true);
    if let Err(e) = recorder.await {
        tracing::error!(error = %e, "the refusal recorder failed");
    }
    if let Some(f) = follower
        && let Err(e) = f.await
    {
        tracing::error!(error = %e, "the key follower failed");
    }
    let _ = stop_oversight.send(true);
    for (name, task) in [("enforcer", enforcer), ("watcher", watcher)] {
        if let Err(e) = task.await {
            tracing::error!(error = %e, task = name, "an oversight task failed");
        }
    }
    if let Some(d) = dispatcher {
        match d.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the alert dispatcher failed"),
            Err(e) => tracing::error!(error = %e, "the alert dispatcher task failed"),
        }
    }
    let _ = stop_checkpointer.send(true);
    if let Err(e) = checkpointer.await {
        tracing::error!(error = %e, "the checkpointer failed");
    }
    // The mirror last: it then holds every entry, up to the final checkpoint.
    let _ = stop_mirror.send(true);
    if let Some(m) = mirror
        && let Err(e) = m.await
    {
        tracing::error!(error = %e, "the mirror failed");
    }
    if let Err(e) = ledger.store().close().await {
        tracing::error!(error = %e, "closing the store failed");
    }
    result
}

/// The gate asks oversight whether an agent may have plans reviewed (SPEC §5.2: a suspended
/// agent's operations are halted).
struct Standing<S: Store>(std::sync::Weak<custos_oversight::service::OversightService<S>>);

impl<S: Store> custos_gate::service::AgentStanding for Standing<S> {
    fn refusal(&self, tenant: &str, agent: &str) -> Option<String> {
        self.0.upgrade()?.halted(tenant, agent)
    }
}

/// Keeps the key registry of a node on a shared store current: every
/// [`keys::KEY_REFRESH_INTERVAL`] it reads the key entries appended since the last time (other
/// nodes' issues and revocations) and applies them, until `stop`.
async fn follow_keys<S: Store>(
    state: Arc<http::AppState<S>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(keys::KEY_REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let from = state.keys.read().await.next();
        // Read without holding the registry; apply under its write lock (briefly).
        let read = {
            let ledger = state.ledger.clone();
            tokio::task::spawn_blocking(move || keys::KeyRegistry::read_updates(&ledger, from))
                .await
        };
        let applied = match read {
            Ok(Ok(updates)) => state.keys.write().await.absorb(updates),
            Ok(Err(e)) => Err(e),
            Err(e) => {
                tracing::error!(error = %e, "the key refresh task failed");
                continue;
            }
        };
        if let Err(e) = applied {
            tracing::warn!(error = %e, "refreshing API keys from the ledger failed");
        }
    }
}
