//! Seeded synthetic agent traffic with labelled misbehaviour, to measure the detector
//! honestly ([`evaluate`](super::evaluate)).
//!
//! The model of normal behaviour is written from what agent traffic looks like, not from the
//! detector's constants:
//! - three rhythms: office agents (65 %: a working day of 7–10 h starting 06–10 UTC, with
//!   ±45 min daily jitter, 5 % of days with 1–3 h of overtime, 3 % of weekdays off, a quarter
//!   of weekend days worked at 40 % of the rate), round-the-clock services (20 %, diurnal
//!   ±40 %) and nightly batch jobs (15 %, 40–120 min starting 00–05 UTC);
//! - Poisson action counts per minute around a rate that rises and falls over the working day,
//!   with hour-to-hour log-normal noise (σ 0.3), so counts are over-dispersed;
//! - per agent 3–12 habitual tools and 5–40 resources with Zipf-like popularity, a quarter of
//!   agents also touching per-record resources (`/crm/records/123456`, a new name almost every
//!   time), some delegating to 1–3 peer agents, some running model executions (tokens);
//! - log-normal latencies per tool, log-normal bytes for the tools that move data;
//! - independent errors at 0.5–4 %, and on 5 % of active days a 2–6 minute flaky dependency
//!   (35 % errors);
//! - benign novelty: on a quarter of active days the agent adopts a tool it never used, on
//!   40 % a new resource, and keeps using them.
//!
//! Injected episodes (after `clean_days`, at least two hours apart, each a [`Scenario`]):
//! bursts of 10–30× the rate for 1–4 minutes; 1–4 calls to a never-seen tool (`shell.exec`,
//! `secrets.read`, …); 1–3 minutes of 3–10 calls per minute moving 50–500 MB per minute to a
//! new external resource; 15–45 minutes of ordinary-looking work at an hour at least 3 hours
//! away from any hour the agent works (not applicable to round-the-clock agents); 3–8 minutes
//! of 1–3× the rate with 60–100 % of calls failed or denied. Every injected event carries its
//! scenario, so any windowing of the traffic has per-window ground truth.

use std::f64::consts::PI;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::observation::Observation;

const NANOS_PER_MINUTE: i128 = 60_000_000_000;
const MINUTES_PER_DAY: u32 = 1440;

/// Days since the epoch of Monday 2026-01-05, the default first day.
const MONDAY_2026_01_05: i64 = 20_458;

/// A kind of injected misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// 10–30× the agent's rate for a few minutes.
    Burst,
    /// A few calls to a tool the agent never used.
    NewTool,
    /// Large volumes moved to a new external resource.
    Exfiltration,
    /// Ordinary-looking work at an hour the agent never works.
    OffHours,
    /// Most calls failing or denied, at an elevated rate.
    ErrorStorm,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 5] = [
        Scenario::Burst,
        Scenario::NewTool,
        Scenario::Exfiltration,
        Scenario::OffHours,
        Scenario::ErrorStorm,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Burst => "burst",
            Scenario::NewTool => "new_tool",
            Scenario::Exfiltration => "exfiltration",
            Scenario::OffHours => "off_hours",
            Scenario::ErrorStorm => "error_storm",
        }
    }
}

/// How much traffic to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// Agents (1 ..= 10 000).
    pub agents: usize,
    /// Days of traffic (1 ..= 366).
    pub days: u32,
    /// Days at the start without injected episodes (the baseline forms).
    pub clean_days: u32,
    /// Episodes injected per agent (fewer when the days cannot hold them).
    pub episodes_per_agent: u32,
    /// First day, in days since the Unix epoch (default Monday 2026-01-05).
    pub first_day: i64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            agents: 24,
            days: 7,
            clean_days: 2,
            episodes_per_agent: 5,
            first_day: MONDAY_2026_01_05,
        }
    }
}

impl TrafficConfig {
    /// Checks the bounds; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.agents) {
            return Err(format!("agents must be 1..=10000, not {}", self.agents));
        }
        if !(1..=366).contains(&self.days) {
            return Err(format!("days must be 1..=366, not {}", self.days));
        }
        if self.clean_days >= self.days {
            return Err("clean_days must be fewer than days".into());
        }
        if self.episodes_per_agent > 100 {
            return Err("episodes_per_agent must be at most 100".into());
        }
        if !(0..=2_900_000).contains(&self.first_day) {
            return Err("first_day must be between 1970 and 9900".into());
        }
        Ok(())
    }
}

/// An agent's daily rhythm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rhythm {
    /// A working day, weekends mostly off.
    Office,
    /// Around the clock with a diurnal swing.
    RoundTheClock,
    /// A nightly batch job.
    Nightly,
}

/// One injected episode.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Episode {
    /// What it is.
    pub scenario: Scenario,
    /// Start, nanoseconds since the epoch.
    pub start_nanos: i128,
    /// End (exclusive), nanoseconds since the epoch.
    pub end_nanos: i128,
}

/// One generated action, with its label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyntheticEvent {
    /// The action.
    pub obs: Observation,
    /// The scenario that injected it; `None` for normal behaviour.
    pub injected: Option<Scenario>,
}

/// One agent's generated traffic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentTraffic {
    /// Agent id (`agent-0007`).
    pub agent: String,
    /// Its rhythm.
    pub rhythm: Rhythm,
    /// Its actions in time order.
    pub events: Vec<SyntheticEvent>,
    /// Its injected episodes.
    pub episodes: Vec<Episode>,
    /// End of the traffic (exclusive), nanoseconds since the epoch.
    pub end_nanos: i128,
}

/// The traffic of every agent; see [`agent_traffic`].
pub fn generate(seed: u64, cfg: &TrafficConfig) -> Vec<AgentTraffic> {
    (0..cfg.agents)
        .map(|agent| agent_traffic(seed, cfg, agent))
        .collect()
}

/// The traffic of agent number `agent`: a function of `(seed, cfg, agent)` only, so agents can
/// be generated one at a time in bounded memory.
pub fn agent_traffic(seed: u64, cfg: &TrafficConfig, agent: usize) -> AgentTraffic {
    let mut rng = StdRng::seed_from_u64(splitmix64(seed ^ splitmix64(agent as u64 + 1)));
    let mut persona = Persona::new(&mut rng);
    let plans: Vec<DayPlan> = (0..cfg.days)
        .map(|day| DayPlan::new(&mut rng, &persona, cfg.first_day + i64::from(day)))
        .collect();
    let first_minute = i128::from(cfg.first_day) * i128::from(MINUTES_PER_DAY);
    let episodes = plan_episodes(&mut rng, &persona, &plans, cfg, agent, first_minute);
    let mut events = Vec::new();
    let mut minute_events: Vec<SyntheticEvent> = Vec::new();
    for (day, plan) in plans.iter().enumerate() {
        for m in 0..MINUTES_PER_DAY {
            if plan.adopt_tool == Some(m) {
                persona.adopt_tool(&mut rng);
            }
            if plan.adopt_resource == Some(m) {
                persona.adopt_resource(&mut rng);
            }
            let minute = first_minute + day as i128 * i128::from(MINUTES_PER_DAY) + i128::from(m);
            let from = minute * NANOS_PER_MINUTE;
            let to = from + NANOS_PER_MINUTE;
            let rate = plan.rate(&persona, m);
            let error = if plan.flaky.is_some_and(|(a, b)| (a..b).contains(&m)) {
                0.35
            } else {
                persona.error_rate
            };
            for _ in 0..poisson(&mut rng, rate) {
                let ts = uniform_ts(&mut rng, from, to);
                let obs = persona.action(&mut rng, ts, error);
                minute_events.push(SyntheticEvent {
                    obs,
                    injected: None,
                });
            }
            for ep in &episodes {
                let (a, b) = (
                    ep.episode.start_nanos.max(from),
                    ep.episode.end_nanos.min(to),
                );
                if a < b {
                    let share = (b - a) as f64 / NANOS_PER_MINUTE as f64;
                    ep.inject(
                        &mut rng,
                        &persona,
                        (rate, share),
                        (a, b),
                        &mut minute_events,
                    );
                }
            }
            minute_events.sort_by_key(|e| e.obs.ts_nanos);
            events.append(&mut minute_events);
        }
    }
    AgentTraffic {
        agent: format!("agent-{agent:04}"),
        rhythm: persona.rhythm,
        events,
        episodes: episodes.into_iter().map(|e| e.episode).collect(),
        end_nanos: (first_minute + i128::from(cfg.days) * i128::from(MINUTES_PER_DAY))
            * NANOS_PER_MINUTE,
    }
}

const DOMAINS: [&str; 12] = [
    "crm", "email", "calendar", "docs", "sql", "storage", "chat", "tickets", "code", "billing",
    "hr", "search",
];
const VERBS: [&str; 5] = ["read", "write", "list", "query", "update"];
const COLLECTIONS: [&str; 12] = [
    "contacts",
    "accounts",
    "invoices",
    "reports",
    "tickets",
    "repos",
    "calendars",
    "threads",
    "files",
    "orders",
    "employees",
    "logs",
];
const SUSPICIOUS_TOOLS: [&str; 8] = [
    "shell.exec",
    "iam.create_user",
    "secrets.read",
    "network.scan",
    "db.dump",
    "kms.decrypt",
    "vault.list",
    "email.bulk_send",
];

#[derive(Clone, Debug)]
struct Tool {
    name: String,
    latency_ms: f64,
    bytes: Option<f64>,
}

/// An agent's habits.
struct Persona {
    rhythm: Rhythm,
    /// Usual start (minute of day) and length of the working span (office, nightly).
    start_min: u32,
    len_min: u32,
    peak: f64,
    tools: Vec<Tool>,
    tool_weights: Vec<f64>,
    resources: Vec<String>,
    resource_weights: Vec<f64>,
    per_record: Option<(String, f64)>,
    peers: Vec<String>,
    exec_share: f64,
    delegate_share: f64,
    tokens: f64,
    exec_latency_ms: f64,
    error_rate: f64,
}

impl Persona {
    fn new(rng: &mut StdRng) -> Persona {
        let u: f64 = rng.r#gen();
        let rhythm = if u < 0.65 {
            Rhythm::Office
        } else if u < 0.85 {
            Rhythm::RoundTheClock
        } else {
            Rhythm::Nightly
        };
        let (start_min, len_min, peak) = match rhythm {
            Rhythm::Office => (
                rng.gen_range(360..600),
                rng.gen_range(420..600),
                log_uniform(rng, 2.0, 40.0),
            ),
            Rhythm::RoundTheClock => (0, MINUTES_PER_DAY, log_uniform(rng, 1.0, 15.0)),
            Rhythm::Nightly => (
                rng.gen_range(0..300),
                rng.gen_range(40..120),
                log_uniform(rng, 10.0, 60.0),
            ),
        };
        let all_tools: Vec<String> = DOMAINS
            .iter()
            .flat_map(|d| VERBS.iter().map(move |v| format!("{d}.{v}")))
            .collect();
        let n_tools = rng.gen_range(3..=12);
        let tools: Vec<Tool> = pick_distinct(rng, &all_tools, n_tools)
            .into_iter()
            .map(|name| Tool::new(rng, name))
            .collect();
        let all_resources: Vec<String> = DOMAINS
            .iter()
            .flat_map(|d| COLLECTIONS.iter().map(move |c| format!("/{d}/{c}")))
            .collect();
        let n_resources = rng.gen_range(5..=40);
        let resources = pick_distinct(rng, &all_resources, n_resources);
        let per_record = rng.gen_bool(0.25).then(|| {
            let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
            (format!("/{domain}/records"), rng.gen_range(0.2..0.6))
        });
        let delegates = rng.gen_bool(0.3);
        let peers = if delegates {
            (0..rng.gen_range(1..=3))
                .map(|_| format!("agent:peer-{:03}", rng.gen_range(0..1000)))
                .collect()
        } else {
            Vec::new()
        };
        Persona {
            rhythm,
            start_min,
            len_min,
            peak,
            tool_weights: zipf(tools.len()),
            tools,
            resource_weights: zipf(resources.len()),
            resources,
            per_record,
            peers,
            exec_share: rng.gen_range(0.0..0.25),
            delegate_share: if delegates {
                rng.gen_range(0.02..0.08)
            } else {
                0.0
            },
            tokens: log_uniform(rng, 300.0, 3000.0),
            exec_latency_ms: log_uniform(rng, 500.0, 4000.0),
            error_rate: rng.gen_range(0.005..0.04),
        }
    }

    /// A normal action at `ts`, failing with probability `error`.
    fn action(&self, rng: &mut StdRng, ts: i128, error: f64) -> Observation {
        let u: f64 = rng.r#gen();
        let mut obs = Observation {
            ts_nanos: ts,
            kind: "tool_invocation".into(),
            tool: None,
            resource: None,
            target: None,
            failed: rng.gen_bool(error.clamp(0.0, 1.0)),
            latency_ms: None,
            tokens: None,
            bytes: None,
        };
        if u < self.exec_share {
            obs.kind = "agent_executed".into();
            obs.tokens = Some(log_normal(rng, self.tokens, 0.6).round());
            obs.latency_ms = Some(log_normal(rng, self.exec_latency_ms, 0.5));
        } else if u < self.exec_share + self.delegate_share && !self.peers.is_empty() {
            obs.kind = "agent_invocation".into();
            obs.target = Some(self.peers[rng.gen_range(0..self.peers.len())].clone());
            obs.latency_ms = Some(log_normal(rng, 200.0, 0.5));
        } else {
            let tool = &self.tools[weighted(rng, &self.tool_weights)];
            obs.tool = Some(tool.name.clone());
            obs.latency_ms = Some(log_normal(rng, tool.latency_ms, 0.5));
            obs.bytes = tool.bytes.map(|b| log_normal(rng, b, 1.2).round());
            obs.resource = Some(match &self.per_record {
                Some((prefix, share)) if rng.gen_bool(*share) => {
                    format!("{prefix}/{}", rng.gen_range(0..1_000_000))
                }
                _ => self.resources[weighted(rng, &self.resource_weights)].clone(),
            });
        }
        obs
    }

    /// Starts using a tool it never used (benign novelty).
    fn adopt_tool(&mut self, rng: &mut StdRng) {
        let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
        let verb = VERBS[rng.gen_range(0..VERBS.len())];
        let name = format!("{domain}.{verb}");
        if self.tools.iter().any(|t| t.name == name) {
            return;
        }
        let weight = median_weight(&self.tool_weights);
        self.tools.push(Tool::new(rng, name));
        self.tool_weights.push(weight);
    }

    /// Starts using a resource it never used (benign novelty).
    fn adopt_resource(&mut self, rng: &mut StdRng) {
        let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
        let name = format!("/{domain}/shared-{}", rng.gen_range(0..10_000));
        let weight = median_weight(&self.resource_weights);
        self.resources.push(name);
        self.resource_weights.push(weight);
    }

    /// Hours of day (UTC) at least 3 hours away from any hour this agent may work, allowing
    /// for jitter and overtime.
    fn far_hours(&self) -> Vec<u32> {
        if self.rhythm == Rhythm::RoundTheClock {
            return Vec::new();
        }
        let late = if self.rhythm == Rhythm::Office {
            240
        } else {
            60
        };
        let from = i64::from(self.start_min) - 60;
        let to = i64::from(self.start_min + self.len_min) + late;
        (0..24)
            .filter(|h| {
                let (a, b) = (i64::from(*h) * 60, i64::from(*h) * 60 + 60);
                // Circular distance of [a, b) from [from, to), in minutes, over a day.
                (-1..=1).all(|k| {
                    let (f, t) = (from + k * 1440, to + k * 1440);
                    b + 180 <= f || a >= t + 180
                })
            })
            .collect()
    }
}

impl Tool {
    fn new(rng: &mut StdRng, name: String) -> Tool {
        Tool {
            name,
            latency_ms: log_uniform(rng, 20.0, 1500.0),
            bytes: rng
                .gen_bool(0.35)
                .then(|| log_uniform(rng, 1_000.0, 200_000.0)),
        }
    }
}

/// One day of an agent: when it works and what benign surprises happen.
struct DayPlan {
    /// Active span, minutes of the day `[begin, end)`.
    active: Option<(u32, u32)>,
    factor: f64,
    hourly: [f64; 24],
    flaky: Option<(u32, u32)>,
    adopt_tool: Option<u32>,
    adopt_resource: Option<u32>,
}

impl DayPlan {
    fn new(rng: &mut StdRng, p: &Persona, day: i64) -> DayPlan {
        let weekend = (day + 3).rem_euclid(7) >= 5;
        let (active, factor) = match p.rhythm {
            Rhythm::Office => {
                let works = rng.gen_bool(if weekend { 0.25 } else { 0.97 });
                let begin = i64::from(p.start_min) + rng.gen_range(-45..=45);
                let mut len = i64::from(p.len_min) + rng.gen_range(-45..=60);
                if rng.gen_bool(0.05) {
                    len += rng.gen_range(60..=180);
                }
                let span = clamp_span(begin, begin + len);
                (works.then_some(span), if weekend { 0.4 } else { 1.0 })
            }
            Rhythm::RoundTheClock => (Some((0, MINUTES_PER_DAY)), if weekend { 0.7 } else { 1.0 }),
            Rhythm::Nightly => {
                let begin = i64::from(p.start_min) + rng.gen_range(-10..=10);
                let len = i64::from(p.len_min) + rng.gen_range(-10..=20);
                (
                    rng.gen_bool(0.98).then_some(clamp_span(begin, begin + len)),
                    1.0,
                )
            }
        };
        let mut hourly = [1.0; 24];
        for h in &mut hourly {
            *h = log_normal(rng, 1.0, 0.3);
        }
        let within = |rng: &mut StdRng, p: f64| {
            let (b, e) = active?;
            (rng.gen_bool(p) && e > b).then(|| rng.gen_range(b..e))
        };
        let flaky = within(rng, 0.05).map(|m| (m, m + rng.gen_range(2..=6)));
        let adopt_tool = within(rng, 0.25);
        let adopt_resource = within(rng, 0.4);
        DayPlan {
            active,
            factor,
            hourly,
            flaky,
            adopt_tool,
            adopt_resource,
        }
    }

    /// Expected actions in minute `m` of the day.
    fn rate(&self, p: &Persona, m: u32) -> f64 {
        let Some((b, e)) = self.active else {
            return 0.0;
        };
        if m < b || m >= e {
            return 0.0;
        }
        let hourly = self.hourly[(m / 60) as usize % 24];
        let shape = match p.rhythm {
            Rhythm::Office => 0.35 + 0.65 * (PI * f64::from(m - b) / f64::from(e - b)).sin(),
            Rhythm::RoundTheClock => {
                1.0 + 0.4 * (2.0 * PI * (f64::from(m) / 60.0 - 14.0) / 24.0).cos()
            }
            Rhythm::Nightly => 1.0,
        };
        p.peak * self.factor * hourly * shape
    }
}

/// An episode with the parameters its injection needs.
struct PlannedEpisode {
    episode: Episode,
    /// Burst multiplier, storm multiplier, or off-hours rate share.
    intensity: f64,
    /// Failure probability of storm calls; calls per minute of exfiltration.
    extra: f64,
    /// Bytes per minute of exfiltration.
    volume: f64,
    name: String,
}

impl PlannedEpisode {
    /// Adds this episode's events within `[from, to)`, which is `share` of a minute whose
    /// normal rate is `rate`.
    fn inject(
        &self,
        rng: &mut StdRng,
        p: &Persona,
        (rate, share): (f64, f64),
        (from, to): (i128, i128),
        out: &mut Vec<SyntheticEvent>,
    ) {
        let base = rate.max(0.5 * p.peak);
        let (calls, error) = match self.episode.scenario {
            Scenario::Burst => (
                poisson(rng, base * (self.intensity - 1.0) * share),
                p.error_rate,
            ),
            Scenario::NewTool => (self.intensity.round().max(1.0) as u32, p.error_rate),
            Scenario::Exfiltration => (poisson(rng, self.extra * share).max(1), 0.0),
            Scenario::OffHours => (poisson(rng, p.peak * self.intensity * share), p.error_rate),
            Scenario::ErrorStorm => (poisson(rng, base * self.intensity * share), self.extra),
        };
        let data_tool = p
            .tools
            .iter()
            .find(|t| t.bytes.is_some())
            .or(p.tools.first());
        for _ in 0..calls {
            let ts = uniform_ts(rng, from, to);
            let mut obs = p.action(rng, ts, error);
            match self.episode.scenario {
                Scenario::NewTool => {
                    obs.kind = "tool_invocation".into();
                    obs.tool = Some(self.name.clone());
                    obs.target = None;
                    obs.tokens = None;
                    obs.latency_ms = Some(log_normal(rng, 300.0, 0.5));
                }
                Scenario::Exfiltration => {
                    obs.kind = "tool_invocation".into();
                    obs.tool = data_tool.map(|t| t.name.clone());
                    obs.resource = Some(self.name.clone());
                    obs.target = None;
                    obs.tokens = None;
                    obs.bytes = Some((self.volume * share / f64::from(calls)).round());
                }
                // Refused and failing calls come back fast.
                Scenario::ErrorStorm => obs.latency_ms = obs.latency_ms.map(|l| l * 0.5),
                Scenario::Burst | Scenario::OffHours => {}
            }
            out.push(SyntheticEvent {
                obs,
                injected: Some(self.episode.scenario),
            });
        }
    }
}

fn plan_episodes(
    rng: &mut StdRng,
    p: &Persona,
    plans: &[DayPlan],
    cfg: &TrafficConfig,
    agent: usize,
    first_minute: i128,
) -> Vec<PlannedEpisode> {
    let far = p.far_hours();
    let applicable: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| *s != Scenario::OffHours || !far.is_empty())
        .collect();
    let mut out: Vec<PlannedEpisode> = Vec::new();
    let days = cfg.clean_days..cfg.days.min(plans.len() as u32);
    if days.is_empty() || applicable.is_empty() {
        return Vec::new();
    }
    for j in 0..cfg.episodes_per_agent as usize {
        let scenario = applicable[(agent + j) % applicable.len()];
        for _attempt in 0..50 {
            let day = rng.gen_range(days.clone());
            let plan = &plans[day as usize];
            let start_min = match scenario {
                Scenario::OffHours => {
                    let h = far[rng.gen_range(0..far.len())];
                    h * 60 + rng.gen_range(0..60)
                }
                _ => match plan.active {
                    Some((b, e)) if e > b + 40 => rng.gen_range(b + 10..e - 20),
                    _ => continue,
                },
            };
            let minute = first_minute
                + i128::from(day) * i128::from(MINUTES_PER_DAY)
                + i128::from(start_min);
            // A new-tool episode (30 s) stays within its minute.
            let offsets = if scenario == Scenario::NewTool {
                NANOS_PER_MINUTE / 2
            } else {
                NANOS_PER_MINUTE
            };
            let start = minute * NANOS_PER_MINUTE + rng.gen_range(0..offsets);
            if out
                .iter()
                .any(|e| (e.episode.start_nanos - start).abs() < 120 * NANOS_PER_MINUTE)
            {
                continue;
            }
            let minutes: f64 = match scenario {
                Scenario::Burst => rng.gen_range(1.0..4.0),
                Scenario::NewTool => 0.5,
                Scenario::Exfiltration => rng.gen_range(1.0..3.0),
                Scenario::OffHours => rng.gen_range(15.0..45.0),
                Scenario::ErrorStorm => rng.gen_range(3.0..8.0),
            };
            let end = start + (minutes * NANOS_PER_MINUTE as f64) as i128;
            let (intensity, extra, volume, name) = match scenario {
                Scenario::Burst => (rng.gen_range(10.0..30.0), 0.0, 0.0, String::new()),
                Scenario::NewTool => (
                    f64::from(rng.gen_range(1..=4)),
                    0.0,
                    0.0,
                    SUSPICIOUS_TOOLS[rng.gen_range(0..SUSPICIOUS_TOOLS.len())].to_owned(),
                ),
                Scenario::Exfiltration => (
                    0.0,
                    rng.gen_range(3.0..10.0),
                    log_uniform(rng, 50e6, 500e6),
                    format!("s3://external-{:08x}/dump", rng.r#gen::<u32>()),
                ),
                Scenario::OffHours => (rng.gen_range(0.5..1.0), 0.0, 0.0, String::new()),
                Scenario::ErrorStorm => (
                    rng.gen_range(1.0..3.0),
                    rng.gen_range(0.6..1.0),
                    0.0,
                    String::new(),
                ),
            };
            out.push(PlannedEpisode {
                episode: Episode {
                    scenario,
                    start_nanos: start,
                    end_nanos: end,
                },
                intensity,
                extra,
                volume,
                name,
            });
            break;
        }
    }
    out.sort_by_key(|e| e.episode.start_nanos);
    out
}

fn clamp_span(begin: i64, end: i64) -> (u32, u32) {
    let day = i64::from(MINUTES_PER_DAY);
    let b = begin.clamp(0, day - 1);
    let e = end.clamp(b + 1, day);
    (b as u32, e as u32)
}

fn uniform_ts(rng: &mut StdRng, from: i128, to: i128) -> i128 {
    if to > from {
        rng.gen_range(from..to)
    } else {
        from
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.r#gen::<f64>();
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

fn log_normal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * standard_normal(rng)).exp()
}

fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.r#gen::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// A Poisson count: Knuth's product of uniforms below 30, a rounded normal above.
fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut k = 0u32;
        let mut p = rng.r#gen::<f64>();
        while p > limit {
            k += 1;
            p *= rng.r#gen::<f64>();
        }
        return k;
    }
    (lambda + lambda.sqrt() * standard_normal(rng))
        .round()
        .max(0.0) as u32
}

/// Zipf-like popularity weights 1 / (rank + 1)^1.2.
fn zipf(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(1.2)).collect()
}

fn median_weight(weights: &[f64]) -> f64 {
    let mut w = weights.to_vec();
    w.sort_by(f64::total_cmp);
    w.get(w.len() / 2).copied().unwrap_or(1.0)
}

fn weighted(rng: &mut StdRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.r#gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

fn pick_distinct(rng: &mut StdRng, pool: &[String], n: usize) -> Vec<String> {
    let mut pool = pool.to_vec();
    let n = n.min(pool.len());
    for i in 0..n {
        let j = rng.gen_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_traffic_and_labels_are_inside_episodes() {
        let cfg = TrafficConfig {
            agents: 2,
            days: 3,
            clean_days: 1,
            episodes_per_agent: 5,
            ..TrafficConfig::default()
        };
        let a = agent_traffic(9, &cfg, 1);
        assert_eq!(a, agent_traffic(9, &cfg, 1));
        assert_ne!(a.events, agent_traffic(10, &cfg, 1).events);
        assert!(
            a.events
                .windows(2)
                .all(|w| w[0].obs.ts_nanos <= w[1].obs.ts_nanos)
        );
        assert!(!a.episodes.is_empty());
        for e in &a.events {
            if let Some(s) = e.injected {
                assert!(
                    a.episodes.iter().any(|ep| ep.scenario == s
                        && (ep.start_nanos..ep.end_nanos).contains(&e.obs.ts_nanos)),
                    "{s:?} event outside its episode"
                );
            }
        }
    }

    #[test]
    fn far_hours_keep_their_distance() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut p = Persona::new(&mut rng);
        p.rhythm = Rhythm::Office;
        p.start_min = 8 * 60;
        p.len_min = 9 * 60;
        // Works 07:00–21:00 at the extremes; 3 hours away leaves 00:00–04:00.
        assert_eq!(p.far_hours(), vec![0, 1, 2, 3]);
        p.rhythm = Rhythm::RoundTheClock;
        assert!(p.far_hours().is_empty());
    }

    #[test]
    fn poisson_mean_is_lambda() {
        let mut rng = StdRng::seed_from_u64(3);
        for lambda in [0.5, 4.0, 80.0] {
            let n = 20_000;
            let sum: u64 = (0..n).map(|_| u64::from(poisson(&mut rng, lambda))).sum();
            let mean = sum as f64 / n as f64;
            assert!(
                (mean - lambda).abs() < 0.05 * lambda + 0.05,
                "{lambda}: {mean}"
            );
        }
    }
}
