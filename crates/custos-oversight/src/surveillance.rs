//! Surveillance (SPEC §5.3): performance thresholds on reported metrics, staleness and the
//! security score. Pure functions over plain data.
//!
//! A violation is an *episode*: a metric that enters its warning band (≥ 80 % of its
//! threshold) or its critical band (≥ the threshold) costs the security score once, when it
//! enters it or gets worse — not again on every heartbeat while it stays there (an agent
//! reporting 90 % CPU every 5 s would otherwise be suspended within half a minute for one
//! busy period). Once the metric is back under the warning band, a later episode counts again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How far a metric is into its threshold.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Under the warning band.
    Normal,
    /// At or over the warning fraction of the threshold.
    Warning,
    /// At or over the threshold.
    Critical,
}

/// Performance thresholds (SPEC §5.3 defaults: cpu 85 %, memory 85 %, response time
/// 1000 ms, error rate 5 %; warning at 80 % of a threshold).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceThresholds {
    /// CPU usage, percent.
    pub cpu_usage: f64,
    /// Memory usage, percent.
    pub memory_usage: f64,
    /// Response time, milliseconds.
    pub response_time_ms: f64,
    /// Error rate, percent.
    pub error_rate: f64,
    /// The fraction of a threshold from which a warning is raised.
    pub warning_fraction: f64,
}

impl Default for PerformanceThresholds {
    fn default() -> Self {
        PerformanceThresholds {
            cpu_usage: 85.0,
            memory_usage: 85.0,
            response_time_ms: 1000.0,
            error_rate: 5.0,
            warning_fraction: 0.8,
        }
    }
}

/// The metrics thresholds apply to, by wire name.
pub const WATCHED_METRICS: [&str; 4] = [
    "cpu_usage",
    "memory_usage",
    "response_time_ms",
    "error_rate",
];

impl PerformanceThresholds {
    /// Checks every threshold is a positive number and the warning fraction in (0, 1].
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in self.each() {
            if !value.is_finite() || value <= 0.0 {
                return Err(format!("{name} threshold must be a positive number"));
            }
        }
        if !(self.warning_fraction > 0.0 && self.warning_fraction <= 1.0) {
            return Err("warning_fraction must be in (0, 1]".into());
        }
        Ok(())
    }

    /// Every metric with its threshold.
    pub fn each(&self) -> [(&'static str, f64); 4] {
        [
            ("cpu_usage", self.cpu_usage),
            ("memory_usage", self.memory_usage),
            ("response_time_ms", self.response_time_ms),
            ("error_rate", self.error_rate),
        ]
    }

    /// The level of `value` against `threshold`.
    pub fn level(&self, value: f64, threshold: f64) -> Level {
        if !value.is_finite() {
            Level::Normal
        } else if value >= threshold {
            Level::Critical
        } else if value >= threshold * self.warning_fraction {
            Level::Warning
        } else {
            Level::Normal
        }
    }
}

/// The security score's rules (SPEC §5.3: start 100, −30 per critical violation, −15 per
/// warning, floor 0, suspension at 0).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreRules {
    /// A new agent's score.
    pub initial: u32,
    /// Cost of a critical violation.
    pub critical_penalty: u32,
    /// Cost of a warning.
    pub warning_penalty: u32,
}

impl Default for ScoreRules {
    fn default() -> Self {
        ScoreRules {
            initial: 100,
            critical_penalty: 30,
            warning_penalty: 15,
        }
    }
}

impl ScoreRules {
    /// Checks the initial score is positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial == 0 || self.initial > 1000 {
            return Err("initial score must be 1 to 1000".into());
        }
        Ok(())
    }

    /// The penalty of a violation of `level`.
    pub fn penalty(&self, level: Level) -> u32 {
        match level {
            Level::Normal => 0,
            Level::Warning => self.warning_penalty,
            Level::Critical => self.critical_penalty,
        }
    }

    /// The score after a violation of `level` (floor 0).
    pub fn after(&self, score: u32, level: Level) -> u32 {
        score.saturating_sub(self.penalty(level))
    }
}

/// One metric crossing into a worse band.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Violation {
    /// The metric.
    pub metric: String,
    /// The reported value.
    pub value: f64,
    /// Its threshold.
    pub threshold: f64,
    /// The band it entered.
    pub level: Level,
}

/// What a report's metrics mean against the thresholds: each watched metric's level now, and
/// the violations to count — metrics that entered a worse band than `previous` held.
/// Metrics absent from a report keep their previous level.
pub fn assess_metrics(
    metrics: &BTreeMap<String, f64>,
    previous: &BTreeMap<String, Level>,
    thresholds: &PerformanceThresholds,
) -> (BTreeMap<String, Level>, Vec<Violation>) {
    let mut levels = previous.clone();
    let mut violations = Vec::new();
    for (metric, threshold) in thresholds.each() {
        let Some(&value) = metrics.get(metric) else {
            continue;
        };
        let level = thresholds.level(value, threshold);
        let before = previous.get(metric).copied().unwrap_or(Level::Normal);
        if level > before {
            violations.push(Violation {
                metric: metric.to_owned(),
                value,
                threshold,
                level,
            });
        }
        if level == Level::Normal {
            levels.remove(metric);
        } else {
            levels.insert(metric.to_owned(), level);
        }
    }
    (levels, violations)
}

/// Whether an agent whose last report was at `last` is stale at `now`.
pub fn is_stale(last: i128, now: i128, stale_after_nanos: i128) -> bool {
    now - last >= stale_after_nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn levels_at_80_and_100_percent() {
        let t = PerformanceThresholds::default();
        let cases = [
            (0.0, Level::Normal),
            (67.9, Level::Normal),
            (68.0, Level::Warning),
            (84.9, Level::Warning),
            (85.0, Level::Critical),
            (100.0, Level::Critical),
            (f64::NAN, Level::Normal),
            (f64::INFINITY, Level::Normal),
        ];
        for (value, level) in cases {
            assert_eq!(t.level(value, t.cpu_usage), level, "{value}");
        }
        assert_eq!(t.level(799.0, 1000.0), Level::Normal);
        assert_eq!(t.level(800.0, 1000.0), Level::Warning);
    }

    #[test]
    fn a_violation_counts_when_a_metric_enters_a_worse_band() {
        let t = PerformanceThresholds::default();
        let (levels, v) = assess_metrics(
            &metrics(&[("cpu_usage", 70.0), ("memory_usage", 10.0)]),
            &BTreeMap::new(),
            &t,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].metric.as_str(), v[0].level),
            ("cpu_usage", Level::Warning)
        );
        // Staying in the band costs nothing more; getting worse does.
        let (levels, v) = assess_metrics(&metrics(&[("cpu_usage", 75.0)]), &levels, &t);
        assert!(v.is_empty());
        let (levels, v) = assess_metrics(&metrics(&[("cpu_usage", 95.0)]), &levels, &t);
        assert_eq!(v[0].level, Level::Critical);
        // Back to normal, then a new episode counts again.
        let (levels, v) = assess_metrics(&metrics(&[("cpu_usage", 10.0)]), &levels, &t);
        assert!(v.is_empty());
        assert!(levels.is_empty());
        let (_, v) = assess_metrics(
            &metrics(&[("cpu_usage", 90.0), ("error_rate", 5.0)]),
            &levels,
            &t,
        );
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn absent_metrics_keep_their_level() {
        let t = PerformanceThresholds::default();
        let (levels, _) = assess_metrics(&metrics(&[("cpu_usage", 90.0)]), &BTreeMap::new(), &t);
        let (levels, v) = assess_metrics(&metrics(&[("memory_usage", 1.0)]), &levels, &t);
        assert!(v.is_empty());
        assert_eq!(levels.get("cpu_usage"), Some(&Level::Critical));
    }

    #[test]
    fn the_score_falls_by_the_penalties_to_zero() {
        let r = ScoreRules::default();
        let mut score = r.initial;
        let steps = [
            (Level::Warning, 85),
            (Level::Critical, 55),
            (Level::Critical, 25),
            (Level::Warning, 10),
            (Level::Warning, 0),
            (Level::Critical, 0),
        ];
        for (level, want) in steps {
            score = r.after(score, level);
            assert_eq!(score, want);
        }
    }

    #[test]
    fn staleness() {
        let ten_min = 600 * 1_000_000_000_i128;
        assert!(!is_stale(0, ten_min - 1, ten_min));
        assert!(is_stale(0, ten_min, ten_min));
    }

    #[test]
    fn bad_thresholds_are_named() {
        let t = PerformanceThresholds {
            response_time_ms: 0.0,
            ..Default::default()
        };
        assert!(
            t.validate()
                .err()
                .is_some_and(|e| e.contains("response_time_ms"))
        );
        let t = PerformanceThresholds {
            warning_fraction: 1.5,
            ..Default::default()
        };
        assert!(
            t.validate()
                .err()
                .is_some_and(|e| e.contains("warning_fraction"))
        );
    }
}
