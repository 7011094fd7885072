//! Configuration of the anomaly detector: windows, warm-up, memory bounds, the z ramp,
//! per-feature weights and floors.

use serde::{Deserialize, Serialize};

/// How the detector windows, remembers and scores behaviour. Every bound on memory is here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Length of a window, in seconds (1 ..= 3600). Windows are aligned to the Unix epoch.
    pub window_secs: u64,
    /// Windows of baseline an agent needs before its windows are scored (≥ 1, at most
    /// `max_baseline_windows`).
    pub min_baseline_windows: usize,
    /// Windows older than this (relative to the newest) leave the baseline, in seconds.
    pub baseline_horizon_secs: u64,
    /// Most windows one agent's baseline keeps (a ring; the oldest leaves first).
    pub max_baseline_windows: usize,
    /// Time the baseline must span before hour-of-day is scored, in seconds: until an agent
    /// has been seen across a whole day, every hour looks unusual.
    pub hour_of_day_min_span_secs: u64,
    /// Score at or above which a window is flagged (0 < threshold ≤ 1).
    pub threshold: f64,
    /// Robust z at which a feature starts to contribute.
    pub z_onset: f64,
    /// Robust z at which a feature contributes its whole weight (> `z_onset`).
    pub z_full: f64,
    /// Most distinct tools, resources and targets remembered per agent, each. When a kind is
    /// full, names of that kind not yet known are no longer treated as novel (the agent is
    /// too diverse there for novelty to mean anything) and are counted in
    /// [`AgentProfile::names_not_learned`](super::AgentProfile::names_not_learned).
    pub max_names_per_kind: usize,
    /// Most agents tracked by one [`Detector`](super::Detector); observations of further
    /// agents are refused and counted.
    pub max_agents: usize,
    /// Share (0 ≤ p < 1) of a feature's contribution in one window carried into the next
    /// when the feature deviates again (halved again per empty window between, over at most
    /// 3 windows): sustained deviations accumulate evidence.
    pub persistence: f64,
    /// The most each feature can contribute.
    pub weights: FeatureWeights,
    /// Smallest sigmas of the volume features, in their units.
    pub floors: FeatureFloors,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            window_secs: 60,
            min_baseline_windows: 20,
            baseline_horizon_secs: 7 * 86_400,
            max_baseline_windows: 2048,
            hour_of_day_min_span_secs: 86_400,
            threshold: 0.7,
            z_onset: 3.0,
            z_full: 10.0,
            max_names_per_kind: 4096,
            max_agents: 100_000,
            persistence: 0.5,
            weights: FeatureWeights::default(),
            floors: FeatureFloors::default(),
        }
    }
}

/// Largest accepted `max_baseline_windows`, `max_names_per_kind`.
const MAX_RING: usize = 1 << 20;

impl AnomalyConfig {
    /// Checks every field; the message names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.window_secs) {
            return Err(format!(
                "window_secs must be 1..=3600, not {}",
                self.window_secs
            ));
        }
        if !(1..=MAX_RING).contains(&self.max_baseline_windows) {
            return Err(format!(
                "max_baseline_windows must be 1..={MAX_RING}, not {}",
                self.max_baseline_windows
            ));
        }
        if self.min_baseline_windows == 0 || self.min_baseline_windows > self.max_baseline_windows {
            return Err(format!(
                "min_baseline_windows must be 1..=max_baseline_windows ({}), not {}",
                self.max_baseline_windows, self.min_baseline_windows
            ));
        }
        if self.baseline_horizon_secs < self.window_secs {
            return Err("baseline_horizon_secs must be at least one window".into());
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!(
                "threshold must be in (0, 1], not {}",
                self.threshold
            ));
        }
        if !(self.z_onset.is_finite() && self.z_onset >= 0.0) {
            return Err(format!(
                "z_onset must be a finite number ≥ 0, not {}",
                self.z_onset
            ));
        }
        if !(self.z_full.is_finite() && self.z_full > self.z_onset) {
            return Err(format!(
                "z_full must be finite and greater than z_onset, not {}",
                self.z_full
            ));
        }
        if !(1..=MAX_RING).contains(&self.max_names_per_kind) {
            return Err(format!(
                "max_names_per_kind must be 1..={MAX_RING}, not {}",
                self.max_names_per_kind
            ));
        }
        if self.max_agents == 0 {
            return Err("max_agents must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.persistence) {
            return Err(format!(
                "persistence must be in [0, 1), not {}",
                self.persistence
            ));
        }
        self.weights.validate()?;
        self.floors.validate()
    }
}

/// The most each feature can contribute to a window's score, each in [0, 1]. A feature whose
/// weight is at least the threshold can flag a window on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureWeights {
    /// Actions per window.
    pub action_rate: f64,
    /// Share of failed actions.
    pub error_rate: f64,
    /// Median latency.
    pub latency_ms: f64,
    /// Tokens per window.
    pub tokens: f64,
    /// Bytes moved per window.
    pub bytes: f64,
    /// Distinct tools per window.
    pub distinct_tools: f64,
    /// Distinct resources per window.
    pub distinct_resources: f64,
    /// Activity at an hour of day the agent does not work.
    pub hour_of_day: f64,
    /// Each tool never seen before.
    pub new_tool: f64,
    /// Each resource never seen before.
    pub new_resource: f64,
    /// Each target principal never seen before.
    pub new_target: f64,
}

impl Default for FeatureWeights {
    fn default() -> Self {
        FeatureWeights {
            action_rate: 1.0,
            error_rate: 0.9,
            latency_ms: 0.5,
            tokens: 0.6,
            bytes: 0.8,
            distinct_tools: 0.5,
            distinct_resources: 0.6,
            hour_of_day: 0.8,
            new_tool: 0.4,
            new_resource: 0.35,
            new_target: 0.35,
        }
    }
}

impl FeatureWeights {
    fn validate(&self) -> Result<(), String> {
        let all = [
            ("action_rate", self.action_rate),
            ("error_rate", self.error_rate),
            ("latency_ms", self.latency_ms),
            ("tokens", self.tokens),
            ("bytes", self.bytes),
            ("distinct_tools", self.distinct_tools),
            ("distinct_resources", self.distinct_resources),
            ("hour_of_day", self.hour_of_day),
            ("new_tool", self.new_tool),
            ("new_resource", self.new_resource),
            ("new_target", self.new_target),
        ];
        for (name, w) in all {
            if !(0.0..=1.0).contains(&w) {
                return Err(format!("weights.{name} must be in [0, 1], not {w}"));
            }
        }
        Ok(())
    }
}

/// Smallest sigmas of the volume features: a baseline that never varies (or is always 0)
/// must not turn an ordinary amount into an extreme z.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureFloors {
    /// Share of the median that is always ordinary variation (latency, tokens, bytes).
    pub relative: f64,
    /// Smallest sigma of the median latency, in milliseconds.
    pub latency_ms: f64,
    /// Smallest sigma of tokens per window.
    pub tokens: f64,
    /// Smallest sigma of bytes per window.
    pub bytes: f64,
}

impl Default for FeatureFloors {
    fn default() -> Self {
        FeatureFloors {
            relative: 0.25,
            latency_ms: 10.0,
            tokens: 500.0,
            bytes: 1_048_576.0,
        }
    }
}

impl FeatureFloors {
    fn validate(&self) -> Result<(), String> {
        if !(self.relative.is_finite() && self.relative >= 0.0) {
            return Err(format!(
                "floors.relative must be finite and ≥ 0, not {}",
                self.relative
            ));
        }
        for (name, v) in [
            ("latency_ms", self.latency_ms),
            ("tokens", self.tokens),
            ("bytes", self.bytes),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("floors.{name} must be finite and > 0, not {v}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert_eq!(AnomalyConfig::default().validate(), Ok(()));
        type Spoil = fn(&mut AnomalyConfig);
        let cases: [(Spoil, &str); 8] = [
            (|c| c.window_secs = 0, "window_secs"),
            (|c| c.min_baseline_windows = 0, "min_baseline_windows"),
            (|c| c.max_baseline_windows = 0, "max_baseline_windows"),
            (|c| c.threshold = f64::NAN, "threshold"),
            (|c| c.z_full = c.z_onset, "z_full"),
            (|c| c.max_agents = 0, "max_agents"),
            (|c| c.weights.bytes = 1.5, "weights.bytes"),
            (|c| c.floors.bytes = 0.0, "floors.bytes"),
        ];
        for (spoil, field) in cases {
            let mut cfg = AnomalyConfig::default();
            spoil(&mut cfg);
            let err = cfg.validate().expect_err(field);
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn partial_config_deserializes_over_defaults() {
        let cfg: AnomalyConfig = serde_json::from_value(
            serde_json::json!({"threshold": 0.8, "weights": {"new_tool": 0.5}}),
        )
        .expect("valid config");
        assert_eq!(cfg.threshold, 0.8);
        assert_eq!(cfg.weights.new_tool, 0.5);
        assert_eq!(cfg.window_secs, 60);
    }
}
