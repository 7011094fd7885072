//! `serve` in process: readiness and `custos_up` follow the store — a store that stops
//! accepting appends makes the server not ready, while it keeps answering.

use std::sync::Arc;
use std::time::Duration;

use custos_core::entry::Limits;
use custos_core::note::Signer;
use custos_ledger::{Ledger, LedgerConfig};
use custos_server::keys::KeyRegistry;
use custos_store::Store;
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::system_clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open");
    let config = LedgerConfig {
        origin: "serve.test/log".into(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(60),
    };
    let signer = Signer::from_seed("serve.test/log", [5u8; 32]).expect("signer");
    let ledger = Arc::new(
        Ledger::open(Arc::new(store), signer, config, system_clock())
            .await
            .expect("ledger"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(custos_server::serve(
        ledger.clone(),
        KeyRegistry::default(),
        listener,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(metrics.contains("custos_up 1"), "{metrics}");

    // The store stops accepting appends (as after a write error, or once closed).
    ledger.store().close().await.expect("close");
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("application/problem+json"), "{body}");
    assert!(body.contains("does not accept appends"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("retry-after: 1"),
        "{body}"
    );
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(metrics.contains("custos_up 0"), "{metrics}");
    // Liveness is another question: the process still answers.
    assert_eq!(get(addr, "/healthz").await.0, 200);

    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
