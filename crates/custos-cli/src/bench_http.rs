//! `custos bench --http`: the SPEC §10 HTTP figures. Starts `serve` on a fresh data directory
//! on a loopback port and drives it with keep-alive HTTP/1.1 connections from client threads:
//! batch-append throughput, and single-append latency at a fixed offered rate, measured from
//! each request's scheduled start (so a slow server cannot hide queueing delay).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench::percentile;
use anyhow::{Context, anyhow, bail};
use serde::Serialize;

use crate::datadir;

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Conn {
    fn open(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true).context("TCP_NODELAY")?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone().context("cloning the socket")?),
            writer: s,
            host: addr.to_owned(),
        })
    }

    /// Sends a POST and returns the status once the whole response is read.
    fn post(&mut self, path: &str, key: &str, body: &[u8]) -> anyhow::Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.writer.write_all(head.as_bytes()).context("sending")?;
        self.writer.write_all(body).context("sending")?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .context("reading the status line")?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line `{}`", line.trim()))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .context("reading headers")?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().context("content-length")?;
            }
        }
        let mut body = vec![0u8; length];
        self.reader
            .read_exact(&mut body)
            .context("reading the body")?;
        Ok(status)
    }
}

fn entry_json(i: u64) -> String {
    serde_json::json!({
        "event_type": "tool_invocation",
        "actor": format!("agent:bench-agent-{:04}", i % 1000),
        "action": "allow",
        "outcome": "success",
        "resource": format!("/crm/customers/{}", i % 50_000),
        "data": {"tool": "crm.lookup", "tokens_in": i % 4096, "tokens_out": (i * 7) % 2048, "duration_ms": (i * 13) % 900}
    })
    .to_string()
}

#[derive(Serialize, Default)]
struct HttpFigures {
    batch_entries_per_s: f64,
    batch_entries: u64,
    single_entries_per_s: f64,
    single_offered_per_s: f64,
    single_sent: usize,
    single_ms_p50: f64,
    single_ms_p99: f64,
    single_ms_max: f64,
    single_errors: usize,
}

/// Where the benchmark sends its requests.
pub struct Target {
    /// `host:port` of a running `custos serve`; none: start one in-process on a fresh directory.
    pub url: Option<String>,
    /// An API key of that server allowed to append (admin or writer).
    pub key: Option<String>,
}

/// Runs the HTTP benchmark.
pub async fn run(
    target: Target,
    entries: u64,
    parent: Option<std::path::PathBuf>,
    keep: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    if let Some(url) = target.url {
        // One or more nodes (comma-separated): connections are spread over them in turn.
        let addr = url
            .split(',')
            .map(|u| u.trim().trim_start_matches("http://").trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(",");
        let key = target.key.ok_or_else(|| {
            anyhow!("--url needs --key (or CUSTOS_BENCH_KEY): a key that may append")
        })?;
        if !json_out {
            eprintln!("bench --http: driving the server at {addr}");
        }
        let f = tokio::task::spawn_blocking(move || drive(&addr, &key, entries, json_out))
            .await
            .context("client threads")??;
        return report(&f, json_out);
    }
    let dir = crate::bench::scratch_dir(parent, "custos-bench-http")?;
    datadir::init(&dir, Some("custos.bench/http".into()))?;
    let ledger = datadir::open(&dir).await?;
    let mut keys = custos_server::keys::KeyRegistry::load(&ledger)?;
    let key = keys
        .issue(
            &ledger,
            "bench",
            &[custos_server::keys::Role::Admin],
            None,
            false,
            "user:bench",
        )
        .await?
        .text;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding")?;
    let addr = listener.local_addr().context("address")?.to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(custos_server::serve(
        ledger,
        keys,
        listener,
        Default::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    if !json_out {
        eprintln!("bench --http: server on {addr}, data in {}", dir.display());
    }
    // The clients block: keep them off the runtime's workers, which serve.
    let f = tokio::task::spawn_blocking(move || drive(&addr, &key, entries, json_out))
        .await
        .context("client threads")??;
    let _ = stop_tx.send(());
    server.await.context("server task")?.context("server")?;
    if !keep {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    report(&f, json_out)
}

fn report(f: &HttpFigures, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(f).context("encoding figures")?
        );
    } else {
        println!(
            "http  batch {:.0} entries/s   single {:.0} entries/s   single@{:.0}/s p50 {:.2} ms p99 {:.2} ms",
            f.batch_entries_per_s,
            f.single_entries_per_s,
            f.single_offered_per_s,
            f.single_ms_p50,
            f.single_ms_p99
        );
    }
    Ok(())
}

/// The three phases, from client threads: batch throughput, single-append throughput, and
/// single-append latency at a fixed offered rate.
fn drive(addr: &str, key: &str, entries: u64, json_out: bool) -> anyhow::Result<HttpFigures> {
    let nodes: Arc<Vec<String>> = Arc::new(addr.split(',').map(str::to_owned).collect());
    // Connection `c` goes to node `c mod n`.
    let node = move |c: usize| nodes[c % nodes.len()].clone();
    let mut f = HttpFigures::default();
    let key = Arc::new(key.to_owned());

    // Batch throughput: 4 keep-alive connections, batches of 1000.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..8u64)
            .map(|b| {
                format!(
                    "[{}]",
                    (0..1000)
                        .map(|i| entry_json(b * 1000 + i))
                        .collect::<Vec<_>>()
                        .join(",")
                )
                .into_bytes()
            })
            .collect(),
    );
    let per_conn = entries.div_ceil(4 * 1000);
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..4usize {
        let (addr, key, bodies) = (node(c), key.clone(), bodies.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut conn = Conn::open(&addr)?;
            let mut sent = 0;
            for i in 0..per_conn {
                let body = &bodies[(c + i as usize) % bodies.len()];
                match conn.post("/v1/entries:batch", &key, body)? {
                    201 => sent += 1000,
                    503 => std::thread::sleep(Duration::from_millis(5)),
                    s => bail!("batch append answered {s}"),
                }
            }
            Ok(sent)
        }));
    }
    for h in handles {
        f.batch_entries += h.join().map_err(|_| anyhow!("client thread panicked"))??;
    }
    f.batch_entries_per_s = f.batch_entries as f64 / start.elapsed().as_secs_f64();
    if !json_out {
        eprintln!(
            "  batch append (4 connections, 1000/batch): {:>10.0} entries/s",
            f.batch_entries_per_s
        );
    }

    // Single-append throughput: 64 keep-alive connections, one entry per request, closed loop.
    let conns = 64usize;
    let secs = 5.0;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for c in 0..conns {
        let (addr, key) = (node(c), key.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut conn = Conn::open(&addr)?;
            let body = entry_json(c as u64).into_bytes();
            let mut sent = 0;
            while Instant::now() < until {
                match conn.post("/v1/entries", &key, &body)? {
                    201 => sent += 1,
                    503 => std::thread::sleep(Duration::from_millis(5)),
                    s => bail!("single append answered {s}"),
                }
            }
            Ok(sent)
        }));
    }
    let mut single = 0;
    for h in handles {
        single += h.join().map_err(|_| anyhow!("client thread panicked"))??;
    }
    f.single_entries_per_s = single as f64 / start.elapsed().as_secs_f64();
    if !json_out {
        eprintln!(
            "  single append ({conns} connections, closed loop): {:>10.0} entries/s",
            f.single_entries_per_s
        );
    }

    // Single appends at a fixed offered rate, open loop over 16 connections.
    let rate = 5000.0;
    let secs = 5.0;
    let conns = 16usize;
    f.single_offered_per_s = rate;
    let t0 = Instant::now() + Duration::from_millis(200);
    let mut handles = Vec::new();
    for c in 0..conns {
        let (addr, key) = (node(c), key.clone());
        handles.push(std::thread::spawn(
            move || -> anyhow::Result<(Vec<f64>, usize)> {
                let mut conn = Conn::open(&addr)?;
                let body = entry_json(c as u64).into_bytes();
                let mut lat = Vec::new();
                let mut errors = 0;
                let total = (rate * secs) as usize;
                for k in (c..total).step_by(conns) {
                    let due = t0 + Duration::from_secs_f64(k as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match conn.post("/v1/entries", &key, &body) {
                        Ok(201) => lat.push(due.elapsed().as_secs_f64() * 1e3),
                        _ => errors += 1,
                    }
                }
                Ok((lat, errors))
            },
        ));
    }
    let mut lat = Vec::new();
    for h in handles {
        let (l, e) = h.join().map_err(|_| anyhow!("client thread panicked"))??;
        lat.extend(l);
        f.single_errors += e;
    }
    lat.sort_by(f64::total_cmp);
    f.single_sent = lat.len();
    f.single_ms_p50 = percentile(&lat, 0.5);
    f.single_ms_p99 = percentile(&lat, 0.99);
    f.single_ms_max = lat.last().copied().unwrap_or(0.0);
    if !json_out {
        eprintln!(
            "  single append at {rate:.0}/s offered (16 connections): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            f.single_ms_p50, f.single_ms_p99, f.single_ms_max, f.single_errors
        );
    }
    Ok(f)
}
