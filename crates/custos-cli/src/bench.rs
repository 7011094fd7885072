//! `custos bench`: the SPEC §10 figures for the embedded store, in-process, on a fresh data
//! directory (real files, real fdatasync). Prints what it measured; asserts nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use custos_core::entry::{EntryBody, Limits, Outcome, PreparedEntry, Severity};
use custos_ledger::{Ledger, LedgerConfig, verify};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::{EntryQuery, Store, system_clock};
use serde::Serialize;
use serde_json::json;

/// Options of `custos bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Entries in the main (batch 1000) run; proofs, queries and verification run at this size.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Parent directory for the fresh data directory (default: the system temp directory).
    /// Must be a real disk: on tmpfs fdatasync costs nothing and the figures lie.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure the PostgreSQL store in this (empty) database instead of the embedded store.
    #[arg(long, value_name = "URL", conflicts_with = "http")]
    pub postgres: Option<String>,
    /// Keep the data directory afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Measure the HTTP API instead: a server on a loopback port, driven by keep-alive clients.
    #[arg(long)]
    pub http: bool,
    /// With --http: drive the running `custos serve` at this host:port instead of starting one
    /// (several nodes: comma-separated; connections are spread over them).
    #[arg(long, requires = "http")]
    pub url: Option<String>,
    /// Measure plan-gate review latency instead (no LLM): the four documented scenarios, plus
    /// each --plan file (e.g. ../shared/testdata/terraform-plans/large-mixed.json).
    #[arg(long, conflicts_with_all = ["http", "postgres"])]
    pub gate: bool,
    /// With --gate: another plan to review (generic or Terraform JSON); repeatable.
    #[arg(long = "plan", requires = "gate")]
    pub plans: Vec<PathBuf>,
    /// With --gate: reviews per plan.
    #[arg(long, default_value_t = 2000, requires = "gate")]
    pub rounds: usize,
    /// Measure agent oversight at scale instead: registered agents heart-beating on schedule,
    /// the enforcer passing every second (SPEC §5; the target is 10 000 agents every 5 s).
    #[arg(long, conflicts_with_all = ["http", "postgres", "gate", "anomaly"])]
    pub oversight: bool,
    /// With --oversight: registered agents.
    #[arg(long, default_value_t = 10_000, requires = "oversight")]
    pub agents: usize,
    /// With --oversight: each agent's reporting interval, seconds.
    #[arg(long, default_value_t = 5, requires = "oversight")]
    pub interval: u64,
    /// With --oversight: how long to drive the load, seconds.
    #[arg(long, default_value_t = 60, requires = "oversight")]
    pub duration: u64,
    /// With --oversight: tenants the agents are spread over.
    #[arg(long, default_value_t = 1, requires = "oversight")]
    pub tenants: usize,
    /// Evaluate behavioural anomaly detection instead: precision and recall on seeded
    /// synthetic agent traffic with injected misbehaviour (SPEC §5.3).
    #[arg(long, conflicts_with_all = ["http", "postgres", "gate"])]
    pub anomaly: bool,
    /// With --anomaly: the generator's seed.
    #[arg(long, default_value_t = 1, requires = "anomaly")]
    pub seed: u64,
    /// With --url: an API key of that server that may append.
    #[arg(long, env = "CUSTOS_BENCH_KEY", requires = "url")]
    pub key: Option<String>,
}

const ACTORS: u64 = 1000;
const TYPES: [&str; 10] = [
    "tool_invocation",
    "tool_blocked",
    "policy_evaluation",
    "agent_invocation",
    "agent_executed",
    "review_decision",
    "heartbeat_missed",
    "security_event",
    "auth_login",
    "settings_changed",
];

fn body(i: u64) -> EntryBody {
    let actor = format!("agent:bench-agent-{:04}", i % ACTORS);
    let event_type = TYPES[((i / ACTORS) % TYPES.len() as u64) as usize];
    let mut b = EntryBody::new("bench", event_type, actor, "allow", Outcome::Success);
    b.resource = Some(format!("/crm/customers/{}", i % 50_000));
    if i.is_multiple_of(4) {
        b.trace_id = Some(format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    }
    b.severity = if i.is_multiple_of(97) {
        Severity::High
    } else {
        Severity::Info
    };
    b.data.insert("tool".into(), json!("crm.lookup"));
    b.data.insert("tokens_in".into(), json!(i % 4096));
    b.data.insert("tokens_out".into(), json!((i * 7) % 2048));
    b.data.insert("duration_ms".into(), json!((i * 13) % 900));
    b
}

fn prepare(i: u64) -> anyhow::Result<PreparedEntry> {
    PreparedEntry::new(body(i), &Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A fresh scratch directory `<parent or the temp dir>/<name>-<pid>` (cleared if a previous
/// run left it) for a benchmark's data.
pub(crate) fn scratch_dir(parent: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let dir = parent
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    Ok(dir)
}

/// The `p`-quantile (0..=1) of sorted figures; 0 for none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[derive(Serialize, Default)]
struct Figures {
    data_dir: String,
    entry_bytes_avg: f64,
    append_batch1_sequential_per_s: f64,
    append_batch1_concurrent64_per_s: f64,
    append_batch100_per_s: f64,
    append_batch1000_per_s: f64,
    entries_total: u64,
    index_catch_up_s: f64,
    verify_entries_per_s: f64,
    proof_us_mean: f64,
    proof_us_p50: f64,
    proof_us_p99: f64,
    proof_cold_us_mean: f64,
    proof_cold_us_p50: f64,
    proof_cold_us_p99: f64,
    query_ms_mean: f64,
    query_ms_p50: f64,
    query_ms_p99: f64,
    query_results: usize,
    rss_mib_after_appends: f64,
    rss_mib_end: f64,
    peak_rss_mib: f64,
}

/// Appends with `tasks` concurrent submitters, batches of `batch`, until `total` entries
/// (or `max_time`), numbering entries from `next`. Returns entries appended and seconds.
async fn drive<S: Store>(
    store: &Arc<S>,
    next: &Arc<AtomicU64>,
    tasks: usize,
    batch: u64,
    total: u64,
    max_time: Duration,
) -> anyhow::Result<(u64, f64)> {
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        let next = next.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let claimed = done.fetch_add(batch, Ordering::Relaxed);
                if claimed >= total || start.elapsed() > max_time {
                    done.fetch_sub(batch, Ordering::Relaxed);
                    return Ok::<(), anyhow::Error>(());
                }
                let first = next.fetch_add(batch, Ordering::Relaxed);
                let entries = (first..first + batch)
                    .map(prepare)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                store.append(entries).await.context("append")?;
            }
        }));
    }
    for h in handles {
        h.await.context("bench task")??;
    }
    Ok((done.load(Ordering::Relaxed), start.elapsed().as_secs_f64()))
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: BenchArgs, json_out: bool) -> anyhow::Result<()> {
    if args.oversight {
        let opts = crate::bench_oversight::OversightBenchOptions {
            agents: args.agents,
            interval_secs: args.interval,
            duration_secs: args.duration,
            tenants: args.tenants,
            dir: args.dir,
            keep: args.keep,
            ..Default::default()
        };
        return crate::bench_oversight::run(&opts, json_out)
            .await
            .map(|_| ());
    }
    if args.anomaly {
        let config = custos_oversight::anomaly::EvalConfig::default();
        let report = tokio::task::spawn_blocking(move || {
            custos_oversight::anomaly::evaluate(args.seed, &config)
        })
        .await
        .context("the evaluation task")?
        .map_err(|e| anyhow::anyhow!("anomaly evaluation: {e}"))?;
        if json_out {
            crate::commands::print_json(&report)?;
        } else {
            println!("{report}");
        }
        return Ok(());
    }
    if args.gate {
        return crate::bench_gate::run(&args.plans, args.rounds.max(1), args.dir, json_out).await;
    }
    if args.http {
        let target = crate::bench_http::Target {
            url: args.url,
            key: args.key,
        };
        return crate::bench_http::run(target, args.entries, args.dir, args.keep, json_out).await;
    }
    let dir = scratch_dir(args.dir.clone(), "custos-bench")?;
    let say = |s: String| {
        if !json_out {
            eprintln!("{s}");
        }
    };
    say(format!("bench: fresh data directory {}", dir.display()));
    // A complete data directory, so `--keep` leaves a ledger the other commands can open.
    let (settings, signer) = crate::datadir::init(&dir, Some("custos.bench/log".into()))?;
    let f = match &args.postgres {
        Some(url) => {
            say(format!("bench: PostgreSQL store at {}", redact_url(url)));
            let store = Arc::new(
                custos_store::postgres::PostgresStore::open(url, Default::default())
                    .await
                    .context("opening the PostgreSQL store")?,
            );
            if store.size()? != 0 {
                anyhow::bail!("--postgres must name an empty database (it holds a ledger)");
            }
            measure(store, &settings, &signer, &dir, &args, json_out).await?
        }
        None => {
            let store = Arc::new(EmbeddedStore::open(&dir, EmbeddedConfig::default())?);
            measure(store, &settings, &signer, &dir, &args, json_out).await?
        }
    };
    if !args.keep {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    print_figures(&f, json_out)
}

/// `url` without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &url[scheme + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The measurements, on any store.
async fn measure<S: Store>(
    store: Arc<S>,
    settings: &crate::datadir::Settings,
    signer: &custos_core::note::Signer,
    dir: &std::path::Path,
    args: &BenchArgs,
    json_out: bool,
) -> anyhow::Result<Figures> {
    let say = |s: String| {
        if !json_out {
            eprintln!("{s}");
        }
    };
    let mut f = Figures {
        data_dir: dir.display().to_string(),
        ..Figures::default()
    };
    let sample = prepare(0)?
        .seal(
            0,
            "01234567-89ab-7def-8123-456789abcdef",
            "2026-11-23T12:00:00.000000000Z",
            &[0; 32],
        )
        .0;
    f.entry_bytes_avg = sample.len() as f64;
    let next = Arc::new(AtomicU64::new(0));

    // Batch 1, one caller: one fdatasync per entry.
    let (n, secs) = drive(&store, &next, 1, 1, 20_000, Duration::from_secs(2)).await?;
    f.append_batch1_sequential_per_s = n as f64 / secs;
    say(format!(
        "  batch 1, 1 caller:      {:>10.0} appends/s",
        f.append_batch1_sequential_per_s
    ));
    // Batch 1, 64 callers: group commit shares each fdatasync.
    let (n, secs) = drive(&store, &next, 64, 1, 200_000, Duration::from_secs(3)).await?;
    f.append_batch1_concurrent64_per_s = n as f64 / secs;
    say(format!(
        "  batch 1, 64 callers:    {:>10.0} appends/s",
        f.append_batch1_concurrent64_per_s
    ));
    let (n, secs) = drive(&store, &next, 4, 100, 300_000, Duration::from_secs(5)).await?;
    f.append_batch100_per_s = n as f64 / secs;
    say(format!(
        "  batch 100, 4 callers:   {:>10.0} appends/s",
        f.append_batch100_per_s
    ));
    let (n, secs) = drive(
        &store,
        &next,
        4,
        1000,
        args.entries,
        Duration::from_secs(3600),
    )
    .await?;
    f.append_batch1000_per_s = n as f64 / secs;
    say(format!(
        "  batch 1000, 4 callers:  {:>10.0} appends/s ({n} entries in {secs:.2} s)",
        f.append_batch1000_per_s
    ));
    f.rss_mib_after_appends = rss_kib("VmRSS:") as f64 / 1024.0;

    let size = store.size()?;
    f.entries_total = size;
    let t = Instant::now();
    store.wait_indexed().await?;
    f.index_catch_up_s = t.elapsed().as_secs_f64();
    say(format!(
        "  indexes caught up {:.2} s after the last append",
        f.index_catch_up_s
    ));

    // A checkpoint, so verification checks a signature too.
    let config = LedgerConfig {
        origin: settings.origin.clone(),
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(1),
    };
    let ledger = Ledger::open(store.clone(), signer.clone(), config, system_clock()).await?;
    ledger.checkpoint().await?;
    let t = Instant::now();
    let report = verify::verify(store.as_ref(), &signer.verifier(), &settings.origin, |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(failure) = &report.failure {
        anyhow::bail!("verification failed on the benchmark's own data: {failure}");
    }
    f.verify_entries_per_s = report.entries as f64 / secs;
    say(format!(
        "  verify:                 {:>10.0} entries/s ({} entries)",
        f.verify_entries_per_s, report.entries
    ));

    // Inclusion proofs at the full size, random leaves.
    let mut rng_state = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    // Cold: the first touch of each proof path may read the tree from disk. Warm: the same
    // leaves again, with the tree in the page cache (as for recently written entries).
    let leaves: Vec<u64> = (0..10_000).map(|_| rand() % size).collect();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut times = Vec::with_capacity(leaves.len());
        for &leaf in &leaves {
            let t = Instant::now();
            let proof = store.inclusion_proof(leaf, size)?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(proof);
        }
        times.sort_by(f64::total_cmp);
        runs.push((
            times.iter().sum::<f64>() / times.len() as f64,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
        ));
    }
    (
        f.proof_cold_us_mean,
        f.proof_cold_us_p50,
        f.proof_cold_us_p99,
    ) = runs[0];
    (f.proof_us_mean, f.proof_us_p50, f.proof_us_p99) = runs[1];
    say(format!(
        "  inclusion proof at {size}: warm mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs; \
         cold mean {:.1} µs, p99 {:.1} µs",
        f.proof_us_mean, f.proof_us_p50, f.proof_us_p99, f.proof_cold_us_mean, f.proof_cold_us_p99
    ));

    // Query: actor + type, 100 results.
    let mut times = Vec::with_capacity(200);
    let mut results = usize::MAX;
    for _ in 0..200 {
        let i = rand() % ACTORS;
        let t_idx = (rand() % TYPES.len() as u64) as usize;
        let q = EntryQuery {
            tenant: Some("bench".into()),
            actor: Some(format!("agent:bench-agent-{i:04}")),
            event_type: Some(TYPES[t_idx].into()),
            limit: 100,
            descending: true,
            ..EntryQuery::default()
        };
        let t = Instant::now();
        let page = store.query(&q)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        results = results.min(page.records.len());
    }
    times.sort_by(f64::total_cmp);
    f.query_ms_mean = times.iter().sum::<f64>() / times.len() as f64;
    f.query_ms_p50 = percentile(&times, 0.5);
    f.query_ms_p99 = percentile(&times, 0.99);
    f.query_results = results;
    say(format!(
        "  query actor+type (100 newest): mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms (min results {results})",
        f.query_ms_mean, f.query_ms_p50, f.query_ms_p99
    ));
    f.rss_mib_end = rss_kib("VmRSS:") as f64 / 1024.0;
    f.peak_rss_mib = rss_kib("VmHWM:") as f64 / 1024.0;
    say(format!(
        "  memory: RSS {:.0} MiB after appends, {:.0} MiB at the end, peak {:.0} MiB",
        f.rss_mib_after_appends, f.rss_mib_end, f.peak_rss_mib
    ));
    store.close().await?;
    drop(ledger);
    drop(store);
    Ok(f)
}

fn print_figures(f: &Figures, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&f).context("encoding figures")?
        );
    } else {
        println!(
            "entries {}  entry {:.0} B",
            f.entries_total, f.entry_bytes_avg
        );
        println!(
            "append/s  batch1 {:.0} (1 caller) {:.0} (64 callers)  batch100 {:.0}  batch1000 {:.0}",
            f.append_batch1_sequential_per_s,
            f.append_batch1_concurrent64_per_s,
            f.append_batch100_per_s,
            f.append_batch1000_per_s
        );
        println!("verify/s  {:.0}", f.verify_entries_per_s);
        println!(
            "proof µs  warm mean {:.1} p99 {:.1}, cold mean {:.1} p99 {:.1}",
            f.proof_us_mean, f.proof_us_p99, f.proof_cold_us_mean, f.proof_cold_us_p99
        );
        println!(
            "query ms  mean {:.2} p99 {:.2}",
            f.query_ms_mean, f.query_ms_p99
        );
        println!("peak RSS  {:.0} MiB", f.peak_rss_mib);
    }
    Ok(())
}
