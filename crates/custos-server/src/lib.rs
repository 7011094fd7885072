//! custos-server: the only crate that knows HTTP, wire shapes and authentication.
//!
//! It holds authentication — API keys bound to a tenant and roles, kept as ledger entries and
//! checked in constant time ([`keys`]) — and the first part of the HTTP API ([`http`],
//! [`serve`]): ledger endpoints, problem+json errors, backpressure, health.
#![deny(missing_docs)]

pub mod http;
pub mod keys;

use std::sync::Arc;

use custos_ledger::Ledger;
use custos_store::Store;

/// Serves the API on `listener` until `shutdown` resolves, with a checkpointer alongside; then
/// drains in-flight requests, issues a final checkpoint and closes the store.
pub async fn serve<S: Store>(
    ledger: Arc<Ledger<S>>,
    keys: keys::KeyRegistry,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let checkpointer = tokio::spawn(ledger.clone().run_checkpointer(stopped));
    let state = Arc::new(http::AppState {
        ledger: ledger.clone(),
        keys: tokio::sync::RwLock::new(keys),
    });
    let result = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop.send(true);
    if let Err(e) = checkpointer.await {
        tracing::error!(error = %e, "the checkpointer failed");
    }
    if let Err(e) = ledger.store().close().await {
        tracing::error!(error = %e, "closing the store failed");
    }
    result
}
