//! One agent's behavioural baseline: a bounded ring of closed-window summaries, the hour-of-day
//! histogram over them, the names (tools, resources, targets) it has used, and the window
//! currently open. Closing a window scores it against the baseline of the windows before it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

use super::assessment::{self, Assessment, Feature, FeatureScore, WindowFacts, round_to};
use super::config::{AnomalyConfig, FeatureFloors};
use super::observation::Observation;
use super::stats::{MAD_TO_SIGMA, Robust, ramp};

/// Names longer than this are remembered by their first bytes (memory bound).
pub const MAX_NAME_BYTES: usize = 256;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// New names of one kind remembered within one window; beyond it the distinct count is a
/// lower bound (every window is bounded, whatever the agent does).
const MAX_PENDING_NAMES: usize = 512;

/// Latency samples kept per window; past it the buffer keeps every other sample and halves
/// its sampling rate, so the median stays a uniform estimate in bounded memory.
const MAX_LATENCY_SAMPLES: usize = 256;

/// Largest value of one metric of one observation that is counted (larger ones are capped):
/// sums stay finite whatever the input.
const MAX_METRIC: f64 = 1e15;

/// Smoothed share of baseline activity below which an hour starts to count as off-hours:
/// a quarter of what a uniform (round-the-clock) agent does in an hour.
const RARE_HOUR_SHARE: f64 = 0.25 / 24.0;

/// The cached baseline statistics are recomputed after `len / REFRESH_DIVISOR` new windows
/// (at least every window): medians of a long history barely move per window, so window
/// closes cost O(len / REFRESH_DIVISOR) amortised instead of O(len).
const REFRESH_DIVISOR: usize = 16;

/// Features whose contribution carries over to the next window: the numeric ones and hour
/// of day, the first variants of [`Feature`].
const CARRIED: usize = 8;

/// Most windows between two scored windows for evidence to carry over.
const MAX_PERSISTENCE_GAP: i128 = 3;

/// The numeric features, in the order of [`WindowSummary::numeric`].
const NUMERIC: [Feature; 7] = [
    Feature::ActionRate,
    Feature::ErrorRate,
    Feature::LatencyMs,
    Feature::Tokens,
    Feature::Bytes,
    Feature::DistinctTools,
    Feature::DistinctResources,
];

/// The name kinds, in the order of [`AgentProfile::names`].
const NAME_KINDS: [(Feature, &str, &str); 3] = [
    (Feature::NewTool, "tool", "tools"),
    (Feature::NewResource, "resource", "resources"),
    (Feature::NewTarget, "target", "targets"),
];

/// What the baseline keeps of one closed window (40 bytes).
#[derive(Clone, Copy, Debug)]
struct WindowSummary {
    start_secs: i64,
    actions: u32,
    failures: u32,
    /// Median latency; NaN when no action reported one.
    latency_ms: f32,
    tokens: f32,
    bytes: f32,
    distinct_tools: u16,
    distinct_resources: u16,
    hour: u8,
    /// Bit `k` set when the window introduced a name of kind `k`.
    introduced: u8,
}

impl WindowSummary {
    fn numeric(&self, index: usize) -> Option<f64> {
        let v = match index {
            0 => f64::from(self.actions),
            1 => f64::from(self.failures) / f64::from(self.actions.max(1)),
            2 => f64::from(self.latency_ms),
            3 => f64::from(self.tokens),
            4 => f64::from(self.bytes),
            5 => f64::from(self.distinct_tools),
            6 => f64::from(self.distinct_resources),
            _ => return None,
        };
        v.is_finite().then_some(v)
    }
}

/// Running totals over the windows in the baseline ring.
#[derive(Clone, Debug, Default)]
struct Totals {
    actions: u64,
    failures: u64,
    hour_actions: [u64; 24],
    introduced: [u32; 3],
}

impl Totals {
    fn add(&mut self, s: &WindowSummary) {
        self.actions += u64::from(s.actions);
        self.failures += u64::from(s.failures);
        self.hour_actions[usize::from(s.hour % 24)] += u64::from(s.actions);
        for (k, n) in self.introduced.iter_mut().enumerate() {
            *n += u32::from(s.introduced >> k & 1);
        }
    }

    fn remove(&mut self, s: &WindowSummary) {
        self.actions = self.actions.saturating_sub(u64::from(s.actions));
        self.failures = self.failures.saturating_sub(u64::from(s.failures));
        let h = &mut self.hour_actions[usize::from(s.hour % 24)];
        *h = h.saturating_sub(u64::from(s.actions));
        for (k, n) in self.introduced.iter_mut().enumerate() {
            *n = n.saturating_sub(u32::from(s.introduced >> k & 1));
        }
    }
}

/// The names of one kind an agent has used, and those new in the open window.
#[derive(Clone, Debug, Default)]
struct NameBook {
    /// Known name → serial of the last window that used it.
    known: HashMap<Box<str>, u64>,
    /// Names not known yet, used in the open window (ordered: deterministic listings).
    pending: BTreeSet<Box<str>>,
    /// Known names used in the open window.
    seen_known: u32,
    /// Names that could not be learned because the book was full.
    not_learned: u64,
}

impl NameBook {
    fn note(&mut self, name: &str, window: u64) {
        let name = assessment::prefix(name, MAX_NAME_BYTES);
        if let Some(last) = self.known.get_mut(name) {
            if *last != window {
                *last = window;
                self.seen_known = self.seen_known.saturating_add(1);
            }
        } else if self.pending.len() < MAX_PENDING_NAMES && !self.pending.contains(name) {
            self.pending.insert(name.into());
        }
    }

    fn distinct(&self) -> u16 {
        let n = u64::from(self.seen_known) + self.pending.len() as u64;
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    fn is_full(&self, cap: usize) -> bool {
        self.known.len() >= cap
    }

    /// Ends the window; its new names become known when `learn` (as many as fit).
    fn end_window(&mut self, learn: bool, cap: usize, window: u64) {
        self.seen_known = 0;
        let pending = std::mem::take(&mut self.pending);
        if !learn {
            return;
        }
        for name in pending {
            if self.known.len() < cap {
                self.known.insert(name, window);
            } else {
                self.not_learned += 1;
            }
        }
    }
}

/// Latency samples of the open window, decimated past [`MAX_LATENCY_SAMPLES`].
#[derive(Clone, Debug)]
struct LatencySamples {
    values: Vec<f64>,
    /// Keep one sample in `stride`.
    stride: u32,
    skipped: u32,
}

impl Default for LatencySamples {
    fn default() -> Self {
        LatencySamples {
            values: Vec::new(),
            stride: 1,
            skipped: 0,
        }
    }
}

impl LatencySamples {
    fn push(&mut self, v: f64) {
        if self.skipped + 1 < self.stride {
            self.skipped += 1;
            return;
        }
        self.skipped = 0;
        if self.values.len() >= MAX_LATENCY_SAMPLES {
            let mut keep = false;
            self.values.retain(|_| {
                keep = !keep;
                keep
            });
            self.stride = self.stride.saturating_mul(2);
        }
        self.values.push(v);
    }

    /// The median, emptying the buffer for the next window.
    fn take_median(&mut self) -> Option<f64> {
        let median = Robust::of_buffer(&mut self.values).map(|r| r.median);
        self.values.clear();
        self.stride = 1;
        self.skipped = 0;
        median
    }
}

/// The window currently accumulating.
#[derive(Clone, Debug)]
struct OpenWindow {
    start_nanos: i128,
    end_nanos: i128,
    serial: u64,
    actions: u32,
    failures: u32,
    tokens: f64,
    bytes: f64,
}

/// One agent's behavioural baseline and open window.
///
/// Memory is bounded by the configuration: at most `max_baseline_windows` summaries of
/// 40 bytes, at most `max_names_per_kind` names of at most [`MAX_NAME_BYTES`] per kind, and
/// per window at most 512 new names per kind and 256 latency samples.
///
/// Feed it one agent's observations in time order with [`observe`](Self::observe), and call
/// [`close_until`](Self::close_until) periodically so an idle agent's last window is scored.
/// Always pass the same configuration.
#[derive(Clone, Debug, Default)]
pub struct AgentProfile {
    history: VecDeque<WindowSummary>,
    totals: Totals,
    /// Cached statistics of [`NUMERIC`] over `history`.
    baseline: Option<[Option<Robust>; 7]>,
    windows_since_refresh: usize,
    open: Option<OpenWindow>,
    latency: LatencySamples,
    /// Tools, resources, targets.
    names: [NameBook; 3],
    next_serial: u64,
    /// Contributions of the numeric and hour-of-day features in the last scored window.
    carry: [f64; CARRIED],
    /// End of the last scored window.
    carry_end_nanos: i128,
}

impl AgentProfile {
    /// An agent not seen yet.
    pub fn new() -> Self {
        AgentProfile::default()
    }

    /// Counts `obs` in its window. An observation at or past the open window's end first
    /// closes that window, and the assessment of the closed window is returned (`None`
    /// while the baseline is still warming up). An observation older than the open window
    /// (out of order) is counted in the open window.
    pub fn observe(&mut self, obs: &Observation, cfg: &AnomalyConfig) -> Option<Assessment> {
        let mut closed = None;
        let starts_window = match &self.open {
            Some(w) => obs.ts_nanos >= w.end_nanos,
            None => true,
        };
        if starts_window {
            closed = self.close(cfg);
            self.open_window(obs.ts_nanos, cfg);
        }
        self.record(obs);
        closed
    }

    /// Closes the open window if it ended at or before `now_nanos` (a periodic tick), and
    /// returns its assessment as [`observe`](Self::observe) would.
    pub fn close_until(&mut self, now_nanos: i128, cfg: &AnomalyConfig) -> Option<Assessment> {
        match &self.open {
            Some(w) if now_nanos >= w.end_nanos => self.close(cfg),
            _ => None,
        }
    }

    /// Windows in the baseline now.
    pub fn baseline_windows(&self) -> usize {
        self.history.len()
    }

    /// Whether `tool` is one this agent is known to use (learned from an unflagged window).
    pub fn knows_tool(&self, tool: &str) -> bool {
        self.names[0]
            .known
            .contains_key(assessment::prefix(tool, MAX_NAME_BYTES))
    }

    /// Names (of any kind) that could not be learned because `max_names_per_kind` was
    /// reached.
    pub fn names_not_learned(&self) -> u64 {
        self.names.iter().map(|b| b.not_learned).sum()
    }

    fn open_window(&mut self, ts_nanos: i128, cfg: &AnomalyConfig) {
        let width = i128::from(cfg.window_secs.max(1)) * NANOS_PER_SEC;
        let start_nanos = ts_nanos.saturating_sub(ts_nanos.rem_euclid(width));
        self.open = Some(OpenWindow {
            start_nanos,
            end_nanos: start_nanos.saturating_add(width),
            serial: self.next_serial,
            actions: 0,
            failures: 0,
            tokens: 0.0,
            bytes: 0.0,
        });
        self.next_serial += 1;
    }

    fn record(&mut self, obs: &Observation) {
        let Some(w) = self.open.as_mut() else {
            return;
        };
        w.actions = w.actions.saturating_add(1);
        if obs.failed {
            w.failures = w.failures.saturating_add(1);
        }
        if let Some(v) = metric(obs.latency_ms) {
            self.latency.push(v);
        }
        if let Some(v) = metric(obs.tokens) {
            w.tokens += v;
        }
        if let Some(v) = metric(obs.bytes) {
            w.bytes += v;
        }
        let serial = w.serial;
        let names = [&obs.tool, &obs.resource, &obs.target];
        for (book, name) in self.names.iter_mut().zip(names) {
            if let Some(name) = name {
                book.note(name, serial);
            }
        }
    }

    fn close(&mut self, cfg: &AnomalyConfig) -> Option<Assessment> {
        let w = self.open.take()?;
        let cap = cfg.max_names_per_kind;
        let mut introduced = 0u8;
        for (k, book) in self.names.iter().enumerate() {
            if !book.pending.is_empty() && !book.is_full(cap) {
                introduced |= 1 << k;
            }
        }
        let start_secs = secs(w.start_nanos);
        let summary = WindowSummary {
            start_secs,
            actions: w.actions,
            failures: w.failures,
            latency_ms: self.latency.take_median().map_or(f32::NAN, |m| m as f32),
            tokens: w.tokens as f32,
            bytes: w.bytes as f32,
            distinct_tools: self.names[0].distinct(),
            distinct_resources: self.names[1].distinct(),
            hour: (start_secs.rem_euclid(SECS_PER_DAY) / 3600) as u8,
            introduced,
        };
        let assessment =
            (self.history.len() >= cfg.min_baseline_windows).then(|| self.score(&w, &summary, cfg));
        // Poisoning resistance: a flagged window teaches the baseline nothing — neither its
        // volumes, its hour nor its new names — so misbehaviour that keeps going keeps
        // being flagged instead of becoming the norm.
        let learn = !assessment.as_ref().is_some_and(|a| a.flagged);
        for book in &mut self.names {
            book.end_window(learn, cap, w.serial);
        }
        if learn {
            self.push(summary, cfg);
        }
        assessment
    }

    fn push(&mut self, summary: WindowSummary, cfg: &AnomalyConfig) {
        self.totals.add(&summary);
        self.history.push_back(summary);
        let horizon = i64::try_from(cfg.baseline_horizon_secs).unwrap_or(i64::MAX);
        let oldest_kept = summary.start_secs.saturating_sub(horizon);
        while let Some(front) = self.history.front().copied() {
            if self.history.len() <= cfg.max_baseline_windows && front.start_secs >= oldest_kept {
                break;
            }
            self.history.pop_front();
            self.totals.remove(&front);
        }
        self.windows_since_refresh += 1;
    }

    fn baseline(&mut self) -> [Option<Robust>; 7] {
        let due = (self.history.len() / REFRESH_DIVISOR).max(1);
        match self.baseline {
            Some(stats) if self.windows_since_refresh < due => stats,
            _ => {
                let mut buf = Vec::with_capacity(self.history.len());
                let mut stats = [None; 7];
                for (i, slot) in stats.iter_mut().enumerate() {
                    buf.clear();
                    buf.extend(self.history.iter().filter_map(|s| s.numeric(i)));
                    *slot = Robust::of_buffer(&mut buf);
                }
                self.baseline = Some(stats);
                self.windows_since_refresh = 0;
                stats
            }
        }
    }

    fn score(&mut self, w: &OpenWindow, s: &WindowSummary, cfg: &AnomalyConfig) -> Assessment {
        let stats = self.baseline();
        let mut features = Vec::new();
        let n = f64::from(s.actions.max(1));
        let pooled_error = if self.totals.actions > 0 {
            self.totals.failures as f64 / self.totals.actions as f64
        } else {
            0.0
        };
        for (i, feature) in NUMERIC.into_iter().enumerate() {
            let (Some(r), Some(x)) = (stats[i], s.numeric(i)) else {
                continue;
            };
            if r.n < cfg.min_baseline_windows {
                continue;
            }
            let Some((z, center)) = deviation(feature, x, &r, n, pooled_error, &cfg.floors) else {
                continue;
            };
            let contribution = weight(cfg, feature) * ramp(z, cfg.z_onset, cfg.z_full);
            if contribution > 0.0 {
                features.push(FeatureScore {
                    feature,
                    value: round_to(x, 3),
                    baseline_median: Some(round_to(r.median, 3)),
                    baseline_mad: Some(round_to(r.mad, 3)),
                    z: Some(round_to(z, 2)),
                    contribution,
                    detail: numeric_detail(feature, x, s, &r, center, z),
                });
            }
        }
        if let Some(f) = self.hour_of_day(s, stats[0].map_or(1.0, |r| r.median), cfg) {
            features.push(f);
        }
        self.persist(&mut features, w, cfg);
        let windows = self.history.len() as f64;
        for (k, (feature, one, many)) in NAME_KINDS.into_iter().enumerate() {
            let book = &self.names[k];
            let new = book.pending.len();
            if new == 0 || book.is_full(cfg.max_names_per_kind) {
                continue;
            }
            // An agent that often meets new names of this kind (per-record resources) is
            // not surprised by one more: scale by how rarely its windows introduced one.
            let habitual = (f64::from(self.totals.introduced[k]) + 1.0) / (windows + 2.0);
            let w1 = weight(cfg, feature);
            let contribution = (1.0 - (1.0 - w1).powi(new as i32)) * (1.0 - habitual);
            if contribution > 0.0 {
                let mut detail = format!("new {} ", if new == 1 { one } else { many });
                assessment::name_list(&mut detail, book.pending.iter().map(|n| &**n));
                assessment::truncate_in_place(&mut detail, assessment::MAX_DETAIL_BYTES);
                features.push(FeatureScore {
                    feature,
                    value: new as f64,
                    baseline_median: None,
                    baseline_mad: None,
                    z: None,
                    contribution,
                    detail,
                });
            }
        }
        assessment::assess(
            WindowFacts {
                start_nanos: w.start_nanos,
                end_nanos: w.end_nanos,
                actions: s.actions,
                baseline_windows: u32::try_from(self.history.len()).unwrap_or(u32::MAX),
            },
            features,
            cfg.threshold,
        )
    }

    /// Evidence accumulates over consecutive windows, like a CUSUM: a feature that also
    /// deviated in the last scored window (`k` windows ago, k ≤ 3) is combined by noisy-OR
    /// with `persistence^k` of that window's contribution. A deviation of constant
    /// contribution c converges to `c / (1 − ρ(1 − c))` (ρ = persistence): sustained
    /// moderate deviations (a sparse agent's error storm, a long off-hours session) can
    /// flag, an isolated one cannot grow. Novelty is not carried: a name is new only once.
    fn persist(&mut self, features: &mut [FeatureScore], w: &OpenWindow, cfg: &AnomalyConfig) {
        let width = w.end_nanos - w.start_nanos;
        let gap = match w.start_nanos.checked_sub(self.carry_end_nanos) {
            Some(d) if width > 0 && d >= 0 => d / width + 1,
            _ => i128::MAX,
        };
        let factor = if gap <= MAX_PERSISTENCE_GAP {
            cfg.persistence.powi(gap as i32)
        } else {
            0.0
        };
        let mut carry = [0.0; CARRIED];
        for f in features.iter_mut() {
            let slot = f.feature as usize;
            let (Some(prev), Some(next)) = (self.carry.get(slot), carry.get_mut(slot)) else {
                continue;
            };
            let prev = prev * factor;
            if prev > 0.0 && f.contribution > 0.0 {
                f.contribution = 1.0 - (1.0 - f.contribution) * (1.0 - prev);
                f.detail.push_str(", sustained");
            }
            *next = f.contribution;
        }
        self.carry = carry;
        self.carry_end_nanos = w.end_nanos;
    }

    /// Activity at an hour that carries (almost) none of the baseline's activity, once the
    /// baseline spans a day. The hour's share is smoothed with its neighbours (an hour early
    /// or late is ordinary) and the contribution grows with the window's volume: a single
    /// action at 3 a.m. counts half, a normal workload at 3 a.m. counts fully.
    fn hour_of_day(
        &self,
        s: &WindowSummary,
        median_actions: f64,
        cfg: &AnomalyConfig,
    ) -> Option<FeatureScore> {
        let (first, last) = (self.history.front()?, self.history.back()?);
        let span = last.start_secs.saturating_sub(first.start_secs) as f64 + cfg.window_secs as f64;
        if span < cfg.hour_of_day_min_span_secs as f64 || self.totals.actions == 0 {
            return None;
        }
        let total = self.totals.actions as f64;
        let h = usize::from(s.hour % 24);
        let share = |k: usize| self.totals.hour_actions[k % 24] as f64 / total;
        let smoothed = 0.5 * share(h) + 0.25 * (share(h + 23) + share(h + 1));
        let rarity = (1.0 - smoothed / RARE_HOUR_SHARE).clamp(0.0, 1.0);
        let volume = (f64::from(s.actions) / (0.5 * median_actions).max(1.0)).min(1.0);
        let contribution = weight(cfg, Feature::HourOfDay) * rarity * (0.5 + 0.5 * volume);
        (contribution > 0.0).then(|| FeatureScore {
            feature: Feature::HourOfDay,
            value: f64::from(s.hour),
            baseline_median: None,
            baseline_mad: None,
            z: None,
            contribution,
            detail: format!(
                "activity at {:02}h UTC, an hour with {}% of baseline activity",
                s.hour,
                assessment::number(100.0 * share(h))
            ),
        })
    }
}

fn weight(cfg: &AnomalyConfig, feature: Feature) -> f64 {
    let w = &cfg.weights;
    let v = match feature {
        Feature::ActionRate => w.action_rate,
        Feature::ErrorRate => w.error_rate,
        Feature::LatencyMs => w.latency_ms,
        Feature::Tokens => w.tokens,
        Feature::Bytes => w.bytes,
        Feature::DistinctTools => w.distinct_tools,
        Feature::DistinctResources => w.distinct_resources,
        Feature::HourOfDay => w.hour_of_day,
        Feature::NewTool => w.new_tool,
        Feature::NewResource => w.new_resource,
        Feature::NewTarget => w.new_target,
    };
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A usable metric of one observation: finite, non-negative, capped.
fn metric(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.min(MAX_METRIC))
}

fn secs(nanos: i128) -> i64 {
    let s = nanos.div_euclid(NANOS_PER_SEC);
    i64::try_from(s).unwrap_or(if s < 0 { i64::MIN } else { i64::MAX })
}

/// The robust z of a numeric feature's value `x` and the baseline value it is measured from,
/// for a window of `n` actions.
fn deviation(
    feature: Feature,
    x: f64,
    r: &Robust,
    n: f64,
    pooled_error: f64,
    floors: &FeatureFloors,
) -> Option<(f64, f64)> {
    let floor = match feature {
        // Poisson noise: the standard deviation of a count with this median.
        Feature::ActionRate | Feature::DistinctTools | Feature::DistinctResources => {
            r.median.max(1.0).sqrt()
        }
        // A share's noise depends on the window's size, which the spread of past windows'
        // shares mixes up (one failure in three actions is 33 %): test the window against the
        // agent's pooled error rate with the binomial deviation at this size, never less than
        // half a failure's worth (one failed action alone stays below z 2) nor than the
        // spread (MAD) of past windows.
        Feature::ErrorRate => {
            let p = pooled_error.max(r.median).clamp(0.001, 0.5);
            let sigma = ((p * (1.0 - p) * n).sqrt().max(0.5) / n).max(MAD_TO_SIGMA * r.mad);
            let z = (x - p) / sigma;
            return z.is_finite().then_some((z, p));
        }
        Feature::LatencyMs => (floors.relative * r.median).max(floors.latency_ms),
        Feature::Tokens => (floors.relative * r.median).max(floors.tokens),
        _ => (floors.relative * r.median).max(floors.bytes),
    };
    Some((r.z(x, floor)?, r.median))
}

fn numeric_detail(
    feature: Feature,
    x: f64,
    s: &WindowSummary,
    r: &Robust,
    center: f64,
    z: f64,
) -> String {
    let name = feature.as_str();
    let z = assessment::number(z);
    let mut d = String::new();
    let _ = match feature {
        Feature::ErrorRate => write!(
            d,
            "{name} {}% ({} of {}) vs baseline {}% (median {}%, z {z})",
            assessment::number(100.0 * x),
            s.failures,
            s.actions,
            assessment::number(100.0 * center),
            assessment::number(100.0 * r.median),
        ),
        Feature::LatencyMs => write!(
            d,
            "{name} {} ms vs median {} ms (MAD {}, z {z})",
            assessment::number(x),
            assessment::number(r.median),
            assessment::number(r.mad),
        ),
        Feature::Bytes => write!(
            d,
            "{name} {}/window vs median {} (MAD {}, z {z})",
            assessment::bytes(x),
            assessment::bytes(r.median),
            assessment::bytes(r.mad),
        ),
        _ => write!(
            d,
            "{name} {}/window vs median {} (MAD {}, z {z})",
            assessment::number(x),
            assessment::number(r.median),
            assessment::number(r.mad),
        ),
    };
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_window_costs_40_bytes() {
        assert_eq!(std::mem::size_of::<WindowSummary>(), 40);
    }

    #[test]
    fn latency_samples_stay_bounded_and_keep_the_median() {
        let mut s = LatencySamples::default();
        for v in 0..10_001 {
            s.push(f64::from(v));
            assert!(s.values.len() <= MAX_LATENCY_SAMPLES);
        }
        let median = s.take_median().expect("samples");
        assert!((median - 5_000.0).abs() < 100.0, "{median}");
        assert_eq!(s.take_median(), None, "emptied for the next window");
    }

    #[test]
    fn extreme_times_and_metrics_do_not_overflow() {
        let cases = [
            (0, 0),
            (-1, -1),
            (1_999_999_999, 1),
            (i128::MAX, i64::MAX),
            (i128::MIN, i64::MIN),
        ];
        for (nanos, want) in cases {
            assert_eq!(secs(nanos), want, "{nanos}");
        }
        let metrics = [
            (None, None),
            (Some(f64::NAN), None),
            (Some(-1.0), None),
            (Some(f64::INFINITY), None),
            (Some(1e300), Some(MAX_METRIC)),
            (Some(12.5), Some(12.5)),
        ];
        for (v, want) in metrics {
            assert_eq!(metric(v), want, "{v:?}");
        }
        let cfg = AnomalyConfig::default();
        let mut p = AgentProfile::new();
        for ts in [i128::MIN, i128::MAX, 0, i128::MIN] {
            let obs = Observation {
                ts_nanos: ts,
                kind: "tool_invocation".into(),
                tool: None,
                resource: None,
                target: None,
                failed: false,
                latency_ms: None,
                tokens: None,
                bytes: None,
            };
            assert_eq!(p.observe(&obs, &cfg), None);
        }
        assert_eq!(p.close_until(i128::MAX, &cfg), None);
    }

    #[test]
    fn name_books_dedupe_within_a_window() {
        let mut book = NameBook::default();
        for name in ["a", "b", "a", "b", "c"] {
            book.note(name, 0);
        }
        assert_eq!(book.distinct(), 3);
        book.end_window(true, 2, 0);
        assert_eq!((book.known.len(), book.not_learned), (2, 1));
        for name in ["a", "b", "a", "z"] {
            book.note(name, 1);
        }
        assert_eq!(book.distinct(), 3);
        assert_eq!(book.pending.len(), 1);
    }
}
