//! What the alert tests share: a real embedded ledger in a temporary directory, a real HTTP
//! receiver on a loopback port that records every request (and can be told to fail), and a
//! dispatcher running in its own task.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use custos_alerts::{AlertError, AlertsConfig, Dispatcher, DispatcherStats, WebhookConfig};
use custos_core::entry::{Entry, EntryBody, Limits, Outcome, Severity};
use custos_core::note::Signer;
use custos_ledger::{Ledger, LedgerConfig};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::{EntryQuery, Store, system_clock};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub type TestLedger = Arc<Ledger<EmbeddedStore>>;

const ORIGIN: &str = "alerts.test/log";

/// Opens (or reopens) the embedded ledger in `dir`.
pub async fn ledger(dir: &Path) -> TestLedger {
    let store = EmbeddedStore::open(dir, EmbeddedConfig::default()).expect("open store");
    let config = LedgerConfig {
        origin: ORIGIN.into(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(3600),
    };
    let signer = Signer::from_seed(ORIGIN, [9u8; 32]).expect("signer");
    Arc::new(
        Ledger::open(Arc::new(store), signer, config, system_clock())
            .await
            .expect("open ledger"),
    )
}

/// Closes the ledger's store.
pub async fn close(ledger: &TestLedger) {
    ledger.store().close().await.expect("close");
}

/// An entry body of this tenant, type and severity.
pub fn event(tenant: &str, event_type: &str, severity: Severity) -> EntryBody {
    let mut body = EntryBody::new(tenant, event_type, "agent:a1", "deny", Outcome::Denied);
    body.severity = severity;
    body.resource = Some("/crm/contacts".into());
    body
}

/// Appends `body`; returns its seq and id.
pub async fn append(ledger: &TestLedger, body: EntryBody) -> (u64, String) {
    let receipt = ledger.append(body).await.expect("append");
    (receipt.seq, receipt.id)
}

/// Every entry of `event_type`.
pub fn entries_of(ledger: &TestLedger, event_type: &str) -> Vec<Entry> {
    ledger
        .query_all(EntryQuery {
            event_type: Some(event_type.into()),
            ..EntryQuery::default()
        })
        .expect("query")
}

/// Settings for fast tests: 10 ms first backoff, 200 ms at most, 10 ms polls.
pub fn fast_config(outbox: &Path, webhooks: Vec<WebhookConfig>) -> AlertsConfig {
    AlertsConfig {
        webhooks,
        initial_backoff_ms: 10,
        max_backoff_ms: 200,
        poll_interval_ms: 10,
        outbox_dir: Some(outbox.to_owned()),
        ..AlertsConfig::default()
    }
}

/// Polls `f` until it returns something, for at most 15 s.
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A dispatcher running in its own task.
pub struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<(), AlertError>>,
    pub stats: Arc<DispatcherStats>,
}

impl Running {
    pub fn start(ledger: &TestLedger, config: AlertsConfig) -> Running {
        let dispatcher = Dispatcher::open(ledger.clone(), config)
            .expect("open dispatcher")
            .with_rng_seed(7);
        let stats = dispatcher.stats();
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(dispatcher.run(stopped));
        Running {
            stop,
            handle,
            stats,
        }
    }

    /// Stops it cleanly and returns what `run` returned.
    pub async fn stop(self) -> Result<(), AlertError> {
        let _ = self.stop.send(true);
        self.handle.await.expect("the dispatcher task")
    }

    /// Kills it: the task is dropped wherever it is, as in a crash of the process.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: Instant,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Received>>>,
    fail_next: Arc<AtomicUsize>,
    fail_status: Arc<AtomicU16>,
}

/// A webhook receiver on a loopback port: answers 202, or `fail_status` to the next
/// `fail_next` requests.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Receiver {
    /// On a free port.
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// On `addr` (a port reserved earlier: the webhook was "down" until now).
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Shared {
            log: Arc::default(),
            fail_next: Arc::new(AtomicUsize::new(0)),
            fail_status: Arc::new(AtomicU16::new(503)),
        };
        let app = Router::new().fallback(record).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next `n` requests get `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.fail_status.store(status, Ordering::SeqCst);
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Requests to `path` answered 2xx.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn record(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let failing = s
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing {
        StatusCode::from_u16(s.fail_status.load(Ordering::SeqCst)).expect("status")
    } else {
        StatusCode::ACCEPTED
    };
    s.log.lock().expect("log").push(Received {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
        status: status.as_u16(),
    });
    status
}
