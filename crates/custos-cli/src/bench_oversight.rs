//! `custos bench --oversight`: the SPEC §5 scale figure — the enforcer and surveillance keep
//! up with 10 000 registered agents heart-beating every 5 s (2 000 durable heartbeats/s) on
//! this machine. An embedded ledger in a scratch directory (real files, real fdatasync), the
//! oversight service over it, an open-loop load driver and the enforcer running side by side,
//! as the server runs them.
//!
//! The driver: agent `i` reports at `start + i·interval/agents + k·interval`, so the offered
//! rate is `agents / interval` with the phases spread uniformly. A bounded number of tokio
//! tasks claim the heartbeats in schedule order, wait for each one's time and send it; when
//! they cannot keep up, heartbeats start late, and how late is measured. The metrics jitter
//! around realistic values (cpu 20–60 %, …); a few "hot" agents now and then cross a warning
//! or critical threshold, so surveillance records violations and the security score falls.
//!
//! It reports whether the system kept up: the achieved rate against the offered one, durable
//! heartbeat latency, how late heartbeats started ("behind": more than 1 s late), the longest
//! silence of any agent, the enforcer's pass times — and, the correctness check, how many
//! agents the enforcer found missing reports (reporting status other than `compliant`): none,
//! if nothing fell behind. It asserts nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use custos_ledger::LedgerError;
use custos_oversight::registry::{AgentStatus, Health, Report};
use custos_oversight::reporting::ReportingStatus;
use custos_oversight::service::{AgentSpec, OversightConfig, OversightError, OversightService};
use custos_oversight::surveillance::PerformanceThresholds;
use custos_store::Store;
use custos_store::embedded::EmbeddedStore;
use serde::Serialize;
use tokio::time::Instant;

use crate::bench::percentile;

/// Heartbeats that start later than this after their scheduled time count as "behind".
const BEHIND_AFTER: Duration = Duration::from_secs(1);

/// Concurrent registrations while the agents are set up.
const REGISTER_TASKS: usize = 64;

/// Options of `custos bench --oversight`.
#[derive(Debug, Clone)]
pub struct OversightBenchOptions {
    /// Registered agents (SPEC §5: 10 000).
    pub agents: usize,
    /// Each agent's reporting interval, seconds (SPEC §5: 5).
    pub interval_secs: u64,
    /// How long the load runs, seconds (default 60; 15 is enough for CI: three intervals).
    pub duration_secs: u64,
    /// Tenants the agents are spread over (round robin).
    pub tenants: usize,
    /// Heartbeats in flight at most (driver tasks).
    pub concurrency: usize,
    /// Seconds between enforcer passes (the server's `monitor_interval_secs`).
    pub enforce_every_secs: u64,
    /// Share of agents, in percent, whose reports now and then cross a threshold.
    pub hot_percent: f64,
    /// Parent directory of the scratch data directory (default: the system temp directory).
    /// Must be a real disk: on tmpfs fdatasync costs nothing and the figures lie.
    pub dir: Option<PathBuf>,
    /// Keep the data directory afterwards.
    pub keep: bool,
}

impl Default for OversightBenchOptions {
    fn default() -> Self {
        OversightBenchOptions {
            agents: 10_000,
            interval_secs: 5,
            duration_secs: 60,
            tenants: 1,
            concurrency: 256,
            enforce_every_secs: 1,
            hot_percent: 1.0,
            dir: None,
            keep: false,
        }
    }
}

/// What the benchmark measured.
#[derive(Serialize, Debug, Clone, Default)]
pub struct OversightBenchReport {
    /// The scratch data directory.
    pub data_dir: String,
    /// Registered agents.
    pub agents: usize,
    /// Tenants.
    pub tenants: usize,
    /// Reporting interval, seconds.
    pub interval_secs: u64,
    /// Load duration, seconds.
    pub duration_secs: u64,
    /// Driver tasks (heartbeats in flight at most).
    pub concurrency: usize,
    /// Seconds between enforcer passes.
    pub enforce_every_secs: u64,
    /// CPUs available to the process.
    pub cores: usize,
    /// Seconds to register every agent.
    pub register_secs: f64,
    /// Registrations per second.
    pub register_per_s: f64,
    /// Agents whose reports now and then cross a threshold.
    pub hot_agents: usize,

    /// Heartbeats offered per second (`agents / interval`).
    pub offered_per_s: f64,
    /// Heartbeats scheduled within the duration.
    pub heartbeats_scheduled: u64,
    /// Heartbeats recorded.
    pub heartbeats_ok: u64,
    /// Heartbeats refused because the ledger was overloaded (503).
    pub heartbeats_refused: u64,
    /// Heartbeats recorded per second, from the start until the last one was answered.
    pub achieved_per_s: f64,
    /// Seconds from the first scheduled heartbeat until the last was answered.
    pub load_secs: f64,
    /// Durable heartbeat latency, milliseconds.
    pub heartbeat_ms_p50: f64,
    /// Durable heartbeat latency, milliseconds.
    pub heartbeat_ms_p99: f64,
    /// Durable heartbeat latency, milliseconds.
    pub heartbeat_ms_p999: f64,
    /// Durable heartbeat latency, milliseconds.
    pub heartbeat_ms_max: f64,
    /// How late heartbeats started after their scheduled time, milliseconds.
    pub late_ms_p50: f64,
    /// How late heartbeats started after their scheduled time, milliseconds.
    pub late_ms_p99: f64,
    /// How late heartbeats started after their scheduled time, milliseconds.
    pub late_ms_max: f64,
    /// Heartbeats that started more than 1 s late: the driver fell behind.
    pub behind: u64,
    /// The longest time between two recorded heartbeats of one agent, seconds.
    pub longest_silence_secs: f64,
    /// Silence after which the enforcer counts a report missed: interval × (1 + grace).
    pub missed_after_secs: f64,
    /// Threshold violations the heartbeats' metrics caused.
    pub violations: u64,

    /// Enforcer passes while the load ran.
    pub enforcer_passes: usize,
    /// Agents the last pass looked at.
    pub enforcer_agents: usize,
    /// Enforcer pass duration, milliseconds.
    pub enforce_ms_p50: f64,
    /// Enforcer pass duration, milliseconds.
    pub enforce_ms_p99: f64,
    /// Enforcer pass duration, milliseconds.
    pub enforce_ms_max: f64,
    /// Agents the passes changed (missed reports, staleness), summed.
    pub enforcer_changed: u64,
    /// Entries the passes wrote, summed.
    pub enforcer_entries: u64,
    /// The pass after the load stopped: milliseconds.
    pub final_pass_ms: f64,
    /// The pass after the load stopped: agents changed.
    pub final_pass_changed: usize,
    /// The pass after the load stopped: entries written.
    pub final_pass_entries: usize,

    /// Agents whose reporting status is not `compliant` at the end: the enforcer saw missed
    /// reports. 0 when nothing fell behind.
    pub not_compliant: u64,
    /// Agents with at least one missed report recorded at the end.
    pub missed_reports: u64,
    /// Agents stale at the end.
    pub stale: u64,
    /// Agents by status at the end.
    pub by_status: BTreeMap<String, u64>,
    /// Agents by reporting status at the end.
    pub by_reporting_status: BTreeMap<String, u64>,
    /// Agents whose security score fell to 0 (suspended by surveillance, not for reports).
    pub score_zero: u64,

    /// Ledger entries before the agents were registered.
    pub ledger_entries_before: u64,
    /// Ledger entries at the end.
    pub ledger_entries_after: u64,
    /// Entries appended while the load ran (heartbeats, violations, enforcer entries).
    pub ledger_entries_during_load: u64,
    /// Process CPU time over the load's wall time, percent of one core.
    pub cpu_percent: f64,
    /// RSS before the ledger was opened, MiB.
    pub rss_mib_before: f64,
    /// RSS after registration, MiB.
    pub rss_mib_after_register: f64,
    /// RSS at the end, MiB.
    pub rss_mib_after: f64,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// No heartbeat behind or refused, all scheduled ones recorded, no agent silent for long
    /// enough to miss a report, the enforcer never changed an agent, every agent compliant.
    pub kept_up: bool,
}

/// `/proc/self/status` field `field` (VmRSS:, VmHWM:), MiB; 0 where unreadable.
fn mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system) the process used so far; 0 where unreadable. `/proc` counts
/// in USER_HZ, 100 per second on Linux.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name may hold spaces: the fields follow its closing parenthesis.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// splitmix64: the bench's deterministic randomness.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Draws uniform numbers in [0, 1) from one seed.
struct Draw(u64);

impl Draw {
    fn unit(&mut self) -> f64 {
        self.0 = mix(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

fn is_hot(agent: usize, hot_percent: f64) -> bool {
    let per_million = (hot_percent.clamp(0.0, 100.0) * 10_000.0) as u64;
    mix(agent as u64 ^ 0x5EED_0FA6_E475_0000) % 1_000_000 < per_million
}

/// The metrics of report `k` of agent `agent`: jitter in the normal range; a hot agent's
/// report enters a warning band one time in ten and a critical band one in thirty.
fn report(agent: usize, k: u64, hot: bool, limits: &PerformanceThresholds) -> Report {
    let mut d = Draw(mix(((agent as u64) << 24) ^ k ^ 0xC057_0500));
    let mut metrics = BTreeMap::new();
    metrics.insert("cpu_usage".to_owned(), d.between(20.0, 60.0));
    metrics.insert("memory_usage".to_owned(), d.between(30.0, 65.0));
    metrics.insert("response_time_ms".to_owned(), d.between(80.0, 450.0));
    metrics.insert("error_rate".to_owned(), d.between(0.0, 2.0));
    metrics.insert("tasks_processed".to_owned(), d.between(0.0, 500.0).floor());
    let mut status = "healthy";
    if hot {
        let roll = d.unit();
        let factor = if roll < 1.0 / 30.0 {
            Some(d.between(1.0, 1.3))
        } else if roll < 1.0 / 30.0 + 0.1 {
            Some(d.between(0.82, 0.98))
        } else {
            None
        };
        if let Some(factor) = factor {
            let each = limits.each();
            let (metric, threshold) = each[(d.unit() * each.len() as f64) as usize % each.len()];
            metrics.insert(metric.to_owned(), threshold * factor);
            status = "degraded";
        }
    }
    Report {
        timestamp: custos_core::time::format_utc_nanos(custos_store::system_clock()()),
        status: Some(status.to_owned()),
        metrics,
    }
}

/// What one driver task saw.
#[derive(Default)]
struct DriverStats {
    latency_ms: Vec<f64>,
    late_ms: Vec<f64>,
    ok: u64,
    refused: u64,
    behind: u64,
    violations: u64,
}

/// What the enforcer task saw.
#[derive(Default)]
struct EnforcerStats {
    pass_ms: Vec<f64>,
    agents: usize,
    changed: u64,
    entries: u64,
}

/// One agent of the bench.
struct BenchAgent {
    tenant: String,
    id: String,
    actor: String,
    hot: bool,
}

fn check(opts: &OversightBenchOptions) -> anyhow::Result<()> {
    if opts.agents == 0 {
        bail!("--agents must be at least 1");
    }
    if opts.interval_secs == 0 || opts.interval_secs > 3600 {
        bail!("the reporting interval must be 1 to 3600 seconds");
    }
    if opts.duration_secs == 0 {
        bail!("the duration must be at least 1 second");
    }
    if opts.tenants == 0 || opts.tenants > opts.agents {
        bail!("--tenants must be 1 to the number of agents");
    }
    if opts.concurrency == 0 {
        bail!("the concurrency must be at least 1");
    }
    if opts.enforce_every_secs == 0 || opts.enforce_every_secs > 3600 {
        bail!("the enforcer interval must be 1 to 3600 seconds");
    }
    Ok(())
}

/// Runs the benchmark, prints the figures (a table, or JSON with `json_out`) and returns them.
pub async fn run(
    opts: &OversightBenchOptions,
    json_out: bool,
) -> anyhow::Result<OversightBenchReport> {
    check(opts)?;
    let say = |s: String| {
        if !json_out {
            eprintln!("{s}");
        }
    };
    let mut r = OversightBenchReport {
        agents: opts.agents,
        tenants: opts.tenants,
        interval_secs: opts.interval_secs,
        duration_secs: opts.duration_secs,
        concurrency: opts.concurrency,
        enforce_every_secs: opts.enforce_every_secs,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        rss_mib_before: mib("VmRSS:"),
        ..OversightBenchReport::default()
    };
    let dir = crate::bench::scratch_dir(opts.dir.clone(), "custos-bench-oversight")?;
    r.data_dir = dir.display().to_string();
    say(format!("bench: fresh data directory {}", dir.display()));
    crate::datadir::init(&dir, Some("custos.bench/oversight".into()))?;
    let ledger = crate::datadir::open(&dir).await?;
    let outcome = measure(&ledger, opts, &mut r, &say).await;
    let closed = ledger
        .store()
        .close()
        .await
        .context("closing the bench ledger");
    outcome?;
    closed?;
    if !opts.keep {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    print_report(&r, json_out)?;
    Ok(r)
}

/// Registration, the load with the enforcer alongside, the final pass and the counts.
async fn measure(
    ledger: &Arc<custos_ledger::Ledger<EmbeddedStore>>,
    opts: &OversightBenchOptions,
    r: &mut OversightBenchReport,
    say: &impl Fn(String),
) -> anyhow::Result<()> {
    let defaults = OversightConfig::default();
    let config = OversightConfig {
        monitor_interval_secs: opts.enforce_every_secs,
        max_agents_per_tenant: defaults.max_agents_per_tenant.max(opts.agents),
        ..defaults
    };
    let grace = config.defaults.reporting.grace_intervals;
    let limits = config.defaults.performance.clone();
    let svc = Arc::new(
        OversightService::open(ledger.clone(), config, custos_store::system_clock())
            .context("opening the oversight service")?,
    );
    r.ledger_entries_before = ledger.store().size().context("reading the ledger size")?;
    let agents: Arc<Vec<BenchAgent>> = Arc::new(
        (0..opts.agents)
            .map(|i| {
                let id = format!("bench-agent-{i:05}");
                BenchAgent {
                    tenant: format!("tenant-{}", i % opts.tenants),
                    actor: format!("agent:{id}"),
                    id,
                    hot: is_hot(i, opts.hot_percent),
                }
            })
            .collect(),
    );
    r.hot_agents = agents.iter().filter(|a| a.hot).count();

    // Registration, concurrently (the appends share fsyncs).
    say(format!("bench: registering {} agents", opts.agents));
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..REGISTER_TASKS.min(opts.agents) {
        let (svc, agents, next) = (svc.clone(), agents.clone(), next.clone());
        let interval = opts.interval_secs;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(a) = agents.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let spec = AgentSpec {
                    id: a.id.clone(),
                    name: None,
                    owner: format!("team-{}@example.com", i % 50),
                    description: Some("custos bench agent".into()),
                    capabilities: vec!["crm.lookup".into(), "mail.send".into(), "kb.search".into()],
                    reporting_interval_secs: Some(interval),
                    exemption: None,
                };
                svc.register("user:bench", &a.tenant, spec)
                    .await
                    .with_context(|| format!("registering {}", a.id))?;
            }
        }));
    }
    for task in tasks {
        task.await.context("registration task")??;
    }
    r.register_secs = t.elapsed().as_secs_f64();
    r.register_per_s = opts.agents as f64 / r.register_secs;
    r.rss_mib_after_register = mib("VmRSS:");
    say(format!(
        "bench: registered in {:.2} s; heartbeats for {} s, {} agents every {} s",
        r.register_secs, opts.duration_secs, opts.agents, opts.interval_secs
    ));

    let interval_nanos = u128::from(opts.interval_secs) * 1_000_000_000;
    let duration_nanos = u128::from(opts.duration_secs) * 1_000_000_000;
    let n = opts.agents as u128;
    // Heartbeat `j` is agent `j % n`'s report `j / n`, scheduled `j · interval / n` in.
    let offset = move |j: u64| -> Option<Duration> {
        let nanos = u128::from(j) * interval_nanos / n;
        (nanos < duration_nanos).then(|| Duration::from_nanos(nanos as u64))
    };
    r.offered_per_s = opts.agents as f64 / opts.interval_secs as f64;
    r.missed_after_secs = opts.interval_secs as f64 * (1.0 + f64::from(grace));
    if r.register_secs + opts.interval_secs as f64 >= r.missed_after_secs {
        say(format!(
            "bench: note: registration took {:.1} s, so the first agents are silent for over \
             {:.0} s before their first heartbeat and the enforcer may count missed reports",
            r.register_secs, r.missed_after_secs
        ));
    }
    let entries_at_start = ledger.store().size().context("reading the ledger size")?;
    let cpu_at_start = cpu_secs();
    let start = Instant::now();

    // The enforcer, every `enforce_every_secs`, as the server runs it.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let enforcer = {
        let svc = svc.clone();
        let every = Duration::from_secs(opts.enforce_every_secs);
        tokio::spawn(async move {
            let mut stats = EnforcerStats::default();
            let mut tick = tokio::time::interval_at(start + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => return Ok::<_, anyhow::Error>(stats),
                }
                let t = Instant::now();
                let pass = svc.enforce().await.context("an enforcer pass")?;
                stats.pass_ms.push(t.elapsed().as_secs_f64() * 1e3);
                stats.agents = pass.agents;
                stats.changed += pass.changed as u64;
                stats.entries += pass.entries as u64;
            }
        })
    };

    // The driver: tasks claim heartbeats in schedule order, wait for their time, send them.
    let next = Arc::new(AtomicU64::new(0));
    // Per agent: nanoseconds since `start` of its last recorded heartbeat, plus one (0: none).
    let last_seen: Arc<Vec<AtomicU64>> =
        Arc::new((0..opts.agents).map(|_| AtomicU64::new(0)).collect());
    let longest_silence = Arc::new(AtomicU64::new(0));
    let mut drivers = Vec::new();
    for _ in 0..opts.concurrency {
        let (svc, agents, next) = (svc.clone(), agents.clone(), next.clone());
        let (last_seen, longest_silence) = (last_seen.clone(), longest_silence.clone());
        let limits = limits.clone();
        drivers.push(tokio::spawn(async move {
            let mut stats = DriverStats::default();
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(due) = offset(j) else {
                    return Ok::<_, anyhow::Error>(stats);
                };
                let i = (j % n as u64) as usize;
                let a = &agents[i];
                let at = start + due;
                if at > Instant::now() {
                    tokio::time::sleep_until(at).await;
                }
                let began = Instant::now();
                let late = began.saturating_duration_since(at);
                stats.late_ms.push(late.as_secs_f64() * 1e3);
                if late > BEHIND_AFTER {
                    stats.behind += 1;
                }
                let beat = report(i, j / n as u64, a.hot, &limits);
                match svc.heartbeat(&a.actor, &a.tenant, &a.id, beat).await {
                    Ok(answer) => {
                        let done = Instant::now();
                        stats.latency_ms.push((done - began).as_secs_f64() * 1e3);
                        stats.ok += 1;
                        stats.violations += answer.violations.len() as u64;
                        let now = (done - start).as_nanos() as u64 + 1;
                        let before = last_seen[i].swap(now, Ordering::Relaxed);
                        if before != 0 {
                            longest_silence
                                .fetch_max(now.saturating_sub(before), Ordering::Relaxed);
                        }
                    }
                    Err(OversightError::Ledger(LedgerError::Overloaded { .. })) => {
                        stats.refused += 1;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e))
                            .with_context(|| format!("a heartbeat of {}", a.id));
                    }
                }
            }
        }));
    }
    let mut driven = DriverStats::default();
    let mut failure = None;
    for task in drivers {
        match task.await.context("driver task") {
            Ok(Ok(s)) => {
                driven.latency_ms.extend(s.latency_ms);
                driven.late_ms.extend(s.late_ms);
                driven.ok += s.ok;
                driven.refused += s.refused;
                driven.behind += s.behind;
                driven.violations += s.violations;
            }
            Ok(Err(e)) | Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    r.load_secs = start.elapsed().as_secs_f64();
    let cpu_used = cpu_secs() - cpu_at_start;
    // The receiver may be gone if the enforcer failed; its result says why.
    let _ = stop_tx.send(true);
    let enforced = enforcer.await.context("enforcer task")?;
    if let Some(e) = failure {
        return Err(e);
    }
    let enforced = enforced?;

    // Heartbeat `j` is scheduled within the duration while `j · interval < duration · n`.
    r.heartbeats_scheduled = (duration_nanos * n).div_ceil(interval_nanos) as u64;
    r.heartbeats_ok = driven.ok;
    r.heartbeats_refused = driven.refused;
    r.achieved_per_s = driven.ok as f64 / r.load_secs;
    driven.latency_ms.sort_by(f64::total_cmp);
    driven.late_ms.sort_by(f64::total_cmp);
    r.heartbeat_ms_p50 = percentile(&driven.latency_ms, 0.5);
    r.heartbeat_ms_p99 = percentile(&driven.latency_ms, 0.99);
    r.heartbeat_ms_p999 = percentile(&driven.latency_ms, 0.999);
    r.heartbeat_ms_max = driven.latency_ms.last().copied().unwrap_or(0.0);
    r.late_ms_p50 = percentile(&driven.late_ms, 0.5);
    r.late_ms_p99 = percentile(&driven.late_ms, 0.99);
    r.late_ms_max = driven.late_ms.last().copied().unwrap_or(0.0);
    r.behind = driven.behind;
    r.violations = driven.violations;
    r.longest_silence_secs = longest_silence.load(Ordering::Relaxed) as f64 / 1e9;
    r.cpu_percent = 100.0 * cpu_used / r.load_secs;

    let mut passes = enforced.pass_ms;
    passes.sort_by(f64::total_cmp);
    r.enforcer_passes = passes.len();
    r.enforcer_agents = enforced.agents;
    r.enforce_ms_p50 = percentile(&passes, 0.5);
    r.enforce_ms_p99 = percentile(&passes, 0.99);
    r.enforce_ms_max = passes.last().copied().unwrap_or(0.0);
    r.enforcer_changed = enforced.changed;
    r.enforcer_entries = enforced.entries;
    r.ledger_entries_during_load =
        ledger.store().size().context("reading the ledger size")? - entries_at_start;

    // One more pass with the load stopped, then what the registry says.
    let t = Instant::now();
    let pass = svc.enforce().await.context("the final enforcer pass")?;
    r.final_pass_ms = t.elapsed().as_secs_f64() * 1e3;
    r.final_pass_changed = pass.changed;
    r.final_pass_entries = pass.entries;
    let (by_status, by_reporting) = svc.counts();
    r.by_status = by_status
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), *n))
        .collect();
    r.by_reporting_status = by_reporting
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), *n))
        .collect();
    r.not_compliant = by_reporting
        .iter()
        .filter(|(s, _)| **s != ReportingStatus::Compliant)
        .map(|(_, n)| n)
        .sum();
    {
        let registry = svc.snapshot();
        for a in registry.agents.values() {
            if a.status == AgentStatus::Deleted {
                continue;
            }
            r.missed_reports += u64::from(a.missed_reports > 0);
            r.stale += u64::from(a.health == Health::Stale);
            r.score_zero += u64::from(a.security_score == 0);
        }
    }
    r.ledger_entries_after = ledger.store().size().context("reading the ledger size")?;
    r.rss_mib_after = mib("VmRSS:");
    r.peak_rss_mib = mib("VmHWM:");
    r.kept_up = r.behind == 0
        && r.heartbeats_refused == 0
        && r.not_compliant == 0
        && r.missed_reports == 0
        && r.enforcer_changed == 0
        && r.heartbeats_ok >= r.heartbeats_scheduled
        && r.longest_silence_secs < r.missed_after_secs;
    drop(svc);
    Ok(())
}

fn print_report(r: &OversightBenchReport, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(r).context("encoding figures")?
        );
        return Ok(());
    }
    let counts = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "oversight   {} agents in {} tenant(s), reporting every {} s, for {} s; {} in flight; \
         enforcer every {} s; {} cores",
        r.agents,
        r.tenants,
        r.interval_secs,
        r.duration_secs,
        r.concurrency,
        r.enforce_every_secs,
        r.cores
    );
    println!(
        "register    {} agents in {:.2} s ({:.0}/s)",
        r.agents, r.register_secs, r.register_per_s
    );
    println!(
        "heartbeats  offered {:.0}/s  achieved {:.1}/s  ({} of {} scheduled recorded, {} refused)",
        r.offered_per_s,
        r.achieved_per_s,
        r.heartbeats_ok,
        r.heartbeats_scheduled,
        r.heartbeats_refused
    );
    println!(
        "            latency (durable) p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        r.heartbeat_ms_p50, r.heartbeat_ms_p99, r.heartbeat_ms_p999, r.heartbeat_ms_max
    );
    println!(
        "            started late p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms; behind (> 1 s late): {}",
        r.late_ms_p50, r.late_ms_p99, r.late_ms_max, r.behind
    );
    println!(
        "            longest silence of one agent {:.2} s (a report is missed after {:.0} s)",
        r.longest_silence_secs, r.missed_after_secs
    );
    println!(
        "            threshold violations {} (from {} hot agents)",
        r.violations, r.hot_agents
    );
    println!(
        "enforcer    {} passes over {} agents: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms; \
         {} agents changed, {} entries",
        r.enforcer_passes,
        r.enforcer_agents,
        r.enforce_ms_p50,
        r.enforce_ms_p99,
        r.enforce_ms_max,
        r.enforcer_changed,
        r.enforcer_entries
    );
    println!(
        "            final pass {:.2} ms: {} agents changed, {} entries",
        r.final_pass_ms, r.final_pass_changed, r.final_pass_entries
    );
    println!(
        "end         not compliant {}  (with missed reports {}, stale {}, score 0 {})",
        r.not_compliant, r.missed_reports, r.stale, r.score_zero
    );
    println!("            status: {}", counts(&r.by_status));
    println!("            reporting: {}", counts(&r.by_reporting_status));
    println!(
        "ledger      {} entries during the load, {} in all",
        r.ledger_entries_during_load, r.ledger_entries_after
    );
    println!(
        "cpu         {:.0} % of one core during the load",
        r.cpu_percent
    );
    println!(
        "memory      RSS {:.0} MiB before, {:.0} MiB after registration, {:.0} MiB at the end, \
         peak {:.0} MiB",
        r.rss_mib_before, r.rss_mib_after_register, r.rss_mib_after, r.peak_rss_mib
    );
    println!(
        "verdict     {}",
        if r.kept_up {
            "kept up"
        } else {
            "FELL BEHIND (see the figures above)"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_agents_never_cross_a_warning_band() {
        let limits = PerformanceThresholds::default();
        for agent in 0..200 {
            for k in 0..50 {
                let r = report(agent, k, false, &limits);
                for (metric, threshold) in limits.each() {
                    let v = r.metrics.get(metric).copied().unwrap_or(0.0);
                    assert!(v < 0.8 * threshold, "{metric} {v}");
                }
            }
        }
    }

    #[test]
    fn hot_agents_sometimes_cross_and_are_rare() {
        let limits = PerformanceThresholds::default();
        let crossed = (0..1000)
            .filter(|&k| {
                let r = report(7, k, true, &limits);
                limits
                    .each()
                    .iter()
                    .any(|(m, t)| r.metrics.get(*m).copied().unwrap_or(0.0) >= 0.8 * t)
            })
            .count();
        assert!((50..250).contains(&crossed), "{crossed}");
        let hot = (0..10_000).filter(|&i| is_hot(i, 1.0)).count();
        assert!((50..150).contains(&hot), "{hot}");
    }
}
