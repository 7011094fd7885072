//! Behavioural anomaly detection (SPEC §5.3): per-agent baselines of what an agent does per
//! time window, and an explainable anomaly score in [0, 1] for every window that closes.
//!
//! Pure logic: no I/O, no clock (time comes from the observations and from [`Detector::tick`]),
//! no randomness outside the seeded [`synthetic`] generator; the same input gives the same
//! assessments.
//!
//! # Flow
//! Ledger entries become [`Observation`]s ([`Observation::from_entry`]: only entries whose
//! actor is `agent:…`, never the ones custos writes about agents, [`OVERSIGHT_EVENT_TYPES`]).
//! Each agent's [`AgentProfile`] counts observations into epoch-aligned windows (60 s by
//! default). When a window closes — an observation arrives past its end, or the periodic
//! [`Detector::tick`] passes it — it is scored against the baseline of the windows before it
//! and becomes an [`Assessment`]; a flagged one is what the caller records as a
//! `rogue_detection` entry (its `data` is the serialized assessment) and alerts on.
//!
//! # Features
//! Per window: actions (`action_rate`), share failed (`error_rate`), median latency, tokens,
//! bytes moved, distinct tools, distinct resources; the hour of day against the agent's
//! 24-bucket activity histogram; tools, resources and targets never seen before. Only
//! windows with at least one action exist: an agent going quiet is not rogue (the reporting
//! enforcer handles silence), so empty windows are neither scored nor part of the baseline,
//! and the baseline is "what this agent does when it works" — the hour-of-day feature is
//! what says *when* it works.
//!
//! # Statistics
//! Median and MAD over a bounded ring of window summaries (at most `max_baseline_windows`,
//! default 2048, and at most `baseline_horizon_secs`, default 7 days), not an EWMA: a
//! median ignores the bursts it is meant to find, whereas a mean is dragged by every one
//! that slips through, and the ring makes "the last N windows" exact and bounded (40 bytes
//! per window). The statistics are recomputed at window close once `len / 16` windows have
//! been added since the last time (every window while the ring is short): medians of
//! thousands of windows barely move in a hundred, and a close costs O(16) amortised
//! selections instead of O(len). An observation costs O(1): three hash lookups and a few
//! additions, no allocation unless it brings a name the agent never used.
//!
//! The robust z of a value is `(x − median) / σ`, with σ the largest of
//! - `1.4826 · MAD` — the standard deviation for normal data;
//! - `(p95 − median) / 1.645` — the tail spread: for zero-inflated features (most windows
//!   move no bytes and fail nothing) the MAD is 0 and would make every ordinary transfer
//!   extreme;
//! - a floor that models noise the baseline may not have shown yet: for counts (actions,
//!   distinct tools/resources) the Poisson standard deviation `√max(median, 1)`, so a
//!   window of 30 actions against a median of 20 is z ≈ 2.2, not "MAD 0, z ∞"; for latency,
//!   tokens and bytes 25 % of the median or an absolute floor (10 ms, 500 tokens, 1 MiB) —
//!   an agent that never moves data must move megabytes, not kilobytes, to look like
//!   exfiltration.
//!
//! The error rate is the exception: the spread of past windows' shares mixes up window
//! sizes (one failure in three actions is 33 %), so the window is tested against the
//! agent's pooled error rate p: `z = (share − p) / σ` with σ the binomial deviation at this
//! window's size, never less than half a failure's worth (one failed action alone stays
//! below z 2) nor than `1.4826 · MAD` of past shares.
//!
//! Measured, not assumed: on the synthetic traffic below, dropping the tail spread for the
//! count features raised burst recall by about 0.05 but multiplied false positives on busy
//! hours several times over, so counts keep it.
//!
//! Only upward deviations count (all features): fewer actions, errors or bytes than usual
//! is never suspicious here.
//!
//! # Score
//! A feature contributes `weight · ramp(z)`, the ramp rising linearly from 0 at `z_onset`
//! (3) to 1 at `z_full` (10). Hour of day contributes `weight · rarity · (½ + ½ · volume)`:
//! rarity is 1 when the hour, smoothed with its neighbours, carries no baseline activity
//! (fading to 0 at a quarter of a uniform agent's share), volume is the window's actions
//! against half the median (one action at 3 a.m. counts half, a normal workload fully);
//! it needs a baseline spanning a day. Each new name contributes its weight, combined over
//! the window's new names of a kind and scaled by `1 − (share of baseline windows that
//! introduced a name of that kind)`, so agents that meet new names all the time
//! (per-record resources) are not alarmed by one more. Novelty is only scored after the
//! warm-up; names are learned from every unflagged window, including the warm-up.
//!
//! Evidence accumulates over consecutive windows, like a CUSUM: a numeric or hour-of-day
//! feature that also deviated in the previous scored window (k ≤ 3 windows earlier) is
//! combined with `persistence^k` (½ by default) of that window's contribution, and its
//! detail says `sustained`. A constant contribution c converges to `c / (1 − ½(1 − c))`:
//! a sparse agent's error storm or a long off-hours session at 0.6 per window reaches 0.75,
//! while an isolated deviation cannot grow. Novelty is not carried (a name is new once).
//!
//! Contributions combine by noisy-OR, `1 − Π(1 − cᵢ)`: in [0, 1] by construction, monotone,
//! a single strong feature can flag on its own when its weight reaches the threshold, and
//! weaker independent deviations add up (a new resource *and* a huge byte volume). Max
//! alone would ignore corroboration; a weighted sum would need renormalising and lets many
//! tiny deviations add linearly. Default weights: action rate 1.0, error rate 0.9, bytes
//! 0.8, hour of day 0.8, tokens 0.6, distinct resources 0.6, latency 0.5, distinct tools
//! 0.5, new tool 0.4, new resource 0.35, new target 0.35. Hence one new tool alone
//! (≤ 0.4) is reported but never flagged at the default threshold 0.7; a new resource with
//! an exfiltration-sized volume is. NaN and infinite inputs are ignored at every step; a
//! score is never NaN.
//!
//! # Poisoning
//! A flagged window teaches the baseline nothing (not its volumes, its hour or its new
//! names): misbehaviour that continues keeps being flagged rather than becoming normal. A
//! slow ramp below the threshold is absorbed, but moving a median takes half the ring. The
//! price: a legitimate lasting change (a workload that triples) keeps alerting until an
//! operator resets the agent's baseline ([`Detector::forget`]); custos never silently
//! accepts what it flagged.
//!
//! # Bounds
//! Per agent: the ring, at most `max_names_per_kind` (4096) names of at most 256 bytes per
//! kind — when a kind is full, unknown names of that kind stop being novel and are counted
//! ([`AgentProfile::names_not_learned`]) — and per window at most 512 new names per kind and
//! 256 latency samples. Per detector: at most `max_agents` (100 000) profiles; observations
//! of further agents are refused and counted ([`Detector::refused_observations`]).
//!
//! # Evaluation
//! [`evaluate`] runs the detector over seeded [`synthetic`] traffic with injected episodes
//! (burst, new tool, exfiltration, off-hours, error storm) and reports per-window precision,
//! recall, F1, per-scenario recall and the false-positive rate; its `Display` is a table.
//! A window is labelled when it holds any injected event, so an episode's partial first and
//! last windows count too. Measured with the default detector (`cargo test -p
//! custos-oversight --test anomaly evaluation_on_synthetic_traffic -- --nocapture` prints
//! the small run, seed 1):
//!
//! | run | precision | recall | burst | new tool | exfiltration | off-hours | error storm | false alerts / agent-day |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | `EvalConfig::small()`, seeds 1–8 | 0.97–1.00 | 0.89–0.94 | 0.77–0.91 | 0 | 0.92–1.00 | 0.98–0.99 | 0.59–0.87 | 0.02–0.21 |
//! | `EvalConfig::default()`, seeds 1–5 | 0.95–0.99 | 0.85–0.93 | 0.77–0.90 | 0 | 0.91–0.99 | 0.98–0.99 | 0.61–0.82 | 0.04–0.24 |
//!
//! (per-scenario figures are window recall; `cargo test --release -p custos-oversight --test
//! anomaly -- --ignored --nocapture` prints every run). In the week runs 124 of 126 bursts,
//! all 123 exfiltrations, all 99 off-hours sessions and 110 of 123 error storms had at least
//! one flagged window. Error storms are missed where the agent is sparse (two to five calls
//! a minute, of which only a few fail: weak evidence per window). New tool alone
//! scores about 0.40 and is never flagged — by design. The false positives are benign events
//! the generator models and that do look anomalous: heavy-tailed data transfers (tens of MB
//! in a minute from a tool whose median is hundreds of kB), flaky dependencies (35 % errors
//! for a few minutes), and working an hour earlier or later than ever before.

mod assessment;
mod config;
mod detector;
mod evaluation;
mod observation;
mod profile;
pub mod stats;
pub mod synthetic;

pub use assessment::{
    Assessment, Feature, FeatureScore, MAX_DETAIL_BYTES, MAX_EXPLANATION_BYTES, MAX_LISTED_FEATURES,
};
pub use config::{AnomalyConfig, FeatureFloors, FeatureWeights};
pub use detector::{AgentAssessment, Detector};
pub use evaluation::{EvalConfig, EvaluationReport, ScenarioResult, evaluate};
pub use observation::{OVERSIGHT_EVENT_TYPES, Observation, is_oversight_event};
pub use profile::{AgentProfile, MAX_NAME_BYTES};
