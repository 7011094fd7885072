//! Operations: request ids, structured access logs, Prometheus metrics (SPEC §7) and the
//! promise that every error a client sees is problem+json — including the ones axum produces
//! itself (405, 413, 415, …) before a handler runs.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use custos_ledger::Ledger;
use custos_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::http::Problem;

/// Header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The id of a request, for handlers that want to mention it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// Labels of the oversight gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// Agents by status and by reporting status, read at each scrape.
pub type AgentCounts = Box<dyn Fn() -> (Vec<(String, u64)>, Vec<(String, u64)>) + Send + Sync>;

/// Metrics of the server and its ledger.
pub struct Ops<S: Store> {
    ledger: Arc<Ledger<S>>,
    agent_counts: Option<AgentCounts>,
    agents: Family<StatusLabels, Gauge>,
    reporting: Family<StatusLabels, Gauge>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    entries: Gauge,
    indexed: Gauge,
    up: Gauge,
}

impl<S: Store> Ops<S> {
    /// Metrics over `ledger`, registered under their SPEC §7 names.
    pub fn new(ledger: Arc<Ledger<S>>) -> Self {
        let mut registry = Registry::default();
        ledger.metrics().register(&mut registry);
        let ops = Ops {
            ledger,
            agent_counts: None,
            agents: Family::default(),
            reporting: Family::default(),
            registry,
            requests: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
            entries: Gauge::default(),
            indexed: Gauge::default(),
            up: Gauge::default(),
        };
        let mut registry = ops.registry;
        registry.register(
            "custos_http_requests",
            "HTTP requests answered, by method, route and status",
            ops.requests.clone(),
        );
        registry.register(
            "custos_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head), by method and route",
            ops.seconds.clone(),
        );
        registry.register(
            "custos_http_requests_in_flight",
            "HTTP requests being answered",
            ops.in_flight.clone(),
        );
        registry.register(
            "custos_ledger_entries",
            "Durable entries in the ledger (the tree size)",
            ops.entries.clone(),
        );
        registry.register(
            "custos_ledger_indexed_entries",
            "Entries the query indexes cover",
            ops.indexed.clone(),
        );
        registry.register(
            "custos_agents",
            "Registered agents by status",
            ops.agents.clone(),
        );
        registry.register(
            "custos_reporting_status",
            "Agents (not deleted) by reporting status",
            ops.reporting.clone(),
        );
        registry.register(
            "custos_up",
            "1 while the server runs and its store accepts appends",
            ops.up.clone(),
        );
        Ops { registry, ..ops }
    }

    /// Reads agent counts from `counts` at each scrape.
    pub fn with_agent_counts(mut self, counts: AgentCounts) -> Self {
        self.agent_counts = Some(counts);
        self
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        if let Some(counts) = &self.agent_counts {
            let (by_status, by_reporting) = counts();
            for (family, values) in [(&self.agents, by_status), (&self.reporting, by_reporting)] {
                for (status, n) in values {
                    family
                        .get_or_create(&StatusLabels { status })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
        }
        match self.ledger.store().health() {
            Ok(h) => {
                self.entries.set(i64::try_from(h.size).unwrap_or(i64::MAX));
                self.indexed
                    .set(i64::try_from(h.indexed).unwrap_or(i64::MAX));
                self.up.set(i64::from(h.unwritable.is_none()));
            }
            Err(_) => {
                self.up.set(0);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics<S: Store>(State(ops): State<Arc<Ops<S>>>) -> Response {
    match ops.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| hex::encode(rand::random::<[u8; 12]>()), str::to_owned)
}

async fn track<S: Store>(State(ops): State<Arc<Ops<S>>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    ops.in_flight.inc();
    let resp = next.run(req).instrument(span.clone()).await;
    ops.in_flight.dec();
    let mut resp = as_problem(resp).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    let took = started.elapsed();
    ops.requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    ops.seconds
        .get_or_create(&RouteLabels { method, route })
        .observe(took.as_secs_f64());
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    if resp.status().is_server_error() {
        tracing::warn!(parent: &span, status, micros, "answered");
    } else {
        tracing::info!(parent: &span, status, micros, "answered");
    }
    resp
}

/// Turns an error response that is not problem+json (axum's own rejections are plain text)
/// into one, keeping its status, headers such as `Allow`, and its text as the detail.
async fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let detail = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let problem = Problem::from_status(status, detail).into_response();
    let (p_parts, p_body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &p_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, Body::new(p_body))
}

/// Adds `/metrics` and wraps every route (and the fallback) in request tracking.
pub fn instrument<S: Store>(router: Router, ops: Arc<Ops<S>>) -> Router {
    router
        .route("/metrics", get(metrics::<S>).with_state(ops.clone()))
        .layer(axum::middleware::from_fn_with_state(ops, track::<S>))
}
