//! The verdict on one closed window: its score, whether it is flagged, and which features
//! made it so — compact enough to be the `data` of a `rogue_detection` entry.

use std::fmt::Write as _;

use custos_core::time::format_utc_nanos;
use serde::{Serialize, Serializer};

/// Most features listed in an assessment (the score always counts all of them).
pub const MAX_LISTED_FEATURES: usize = 6;

/// Longest `detail` of a feature, in bytes.
pub const MAX_DETAIL_BYTES: usize = 200;

/// Longest `explanation` of an assessment, in bytes.
pub const MAX_EXPLANATION_BYTES: usize = 600;

/// A behavioural feature of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Actions in the window.
    ActionRate,
    /// Share of the window's actions that failed.
    ErrorRate,
    /// Median latency of the window's actions.
    LatencyMs,
    /// Tokens consumed in the window.
    Tokens,
    /// Bytes moved in the window.
    Bytes,
    /// Distinct tools used in the window.
    DistinctTools,
    /// Distinct resources accessed in the window.
    DistinctResources,
    /// Activity at an hour of day the agent does not usually work.
    HourOfDay,
    /// Tools used for the first time.
    NewTool,
    /// Resources accessed for the first time.
    NewResource,
    /// Target principals addressed for the first time.
    NewTarget,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 11] = [
        Feature::ActionRate,
        Feature::ErrorRate,
        Feature::LatencyMs,
        Feature::Tokens,
        Feature::Bytes,
        Feature::DistinctTools,
        Feature::DistinctResources,
        Feature::HourOfDay,
        Feature::NewTool,
        Feature::NewResource,
        Feature::NewTarget,
    ];

    /// The name used in JSON and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::ActionRate => "action_rate",
            Feature::ErrorRate => "error_rate",
            Feature::LatencyMs => "latency_ms",
            Feature::Tokens => "tokens",
            Feature::Bytes => "bytes",
            Feature::DistinctTools => "distinct_tools",
            Feature::DistinctResources => "distinct_resources",
            Feature::HourOfDay => "hour_of_day",
            Feature::NewTool => "new_tool",
            Feature::NewResource => "new_resource",
            Feature::NewTarget => "new_target",
        }
    }
}

/// How one feature of a window compares with the agent's baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureScore {
    /// The feature.
    pub feature: Feature,
    /// The window's value: a count, share, median or sum; for `hour_of_day` the UTC hour;
    /// for the novelty features the number of new names.
    pub value: f64,
    /// Median of the baseline windows (numeric features only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_median: Option<f64>,
    /// MAD of the baseline windows (numeric features only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_mad: Option<f64>,
    /// Robust z-score (numeric features only): `(value − median) / sigma`.
    pub z: Option<f64>,
    /// What it adds to the score, in [0, 1].
    pub contribution: f64,
    /// One line for a human.
    pub detail: String,
}

/// The assessment of one closed window of one agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    /// Start of the window (inclusive), nanoseconds since the epoch; RFC 3339 in JSON.
    #[serde(rename = "window_start", serialize_with = "rfc3339")]
    pub window_start_nanos: i128,
    /// End of the window (exclusive), nanoseconds since the epoch; RFC 3339 in JSON.
    #[serde(rename = "window_end", serialize_with = "rfc3339")]
    pub window_end_nanos: i128,
    /// Anomaly score in [0, 1], rounded to 4 decimals.
    pub score: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// `score ≥ threshold`.
    pub flagged: bool,
    /// Actions in the window.
    pub actions: u32,
    /// Windows in the baseline it was compared with.
    pub baseline_windows: u32,
    /// The contributing features, largest contribution first, at most
    /// [`MAX_LISTED_FEATURES`].
    pub features: Vec<FeatureScore>,
    /// The listed features' details joined by `; `, or `no deviation from baseline`.
    pub explanation: String,
}

impl Assessment {
    /// The feature that contributed most, if any did.
    pub fn top_feature(&self) -> Option<Feature> {
        self.features.first().map(|f| f.feature)
    }

    /// Whether `feature` is among the listed features.
    pub fn lists(&self, feature: Feature) -> bool {
        self.features.iter().any(|f| f.feature == feature)
    }
}

/// The window's times and counts an assessment is built from.
pub(crate) struct WindowFacts {
    pub start_nanos: i128,
    pub end_nanos: i128,
    pub actions: u32,
    pub baseline_windows: u32,
}

/// Builds the assessment: combines all contributions by noisy-OR, lists the largest.
pub(crate) fn assess(
    facts: WindowFacts,
    mut features: Vec<FeatureScore>,
    threshold: f64,
) -> Assessment {
    let score = round_to(
        super::stats::noisy_or(features.iter().map(|f| f.contribution)),
        4,
    );
    features.retain(|f| f.contribution > 0.0);
    // Stable: equal contributions keep feature order, so the listing is deterministic.
    features.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    features.truncate(MAX_LISTED_FEATURES);
    for f in &mut features {
        f.contribution = round_to(f.contribution, 3);
    }
    let mut explanation = String::new();
    for f in &features {
        if !explanation.is_empty() {
            explanation.push_str("; ");
        }
        explanation.push_str(&f.detail);
    }
    if explanation.is_empty() {
        explanation.push_str("no deviation from baseline");
    }
    truncate_in_place(&mut explanation, MAX_EXPLANATION_BYTES);
    Assessment {
        window_start_nanos: facts.start_nanos,
        window_end_nanos: facts.end_nanos,
        score,
        threshold,
        flagged: score >= threshold,
        actions: facts.actions,
        baseline_windows: facts.baseline_windows,
        features,
        explanation,
    }
}

fn rfc3339<S: Serializer>(nanos: &i128, s: S) -> Result<S::Ok, S::Error> {
    match format_utc_nanos(*nanos) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_i128(*nanos),
    }
}

/// `x` rounded to `decimals`; non-finite values become 0.
pub(crate) fn round_to(x: f64, decimals: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let scale = 10f64.powi(decimals);
    let r = (x * scale).round() / scale;
    if r.is_finite() { r } else { x }
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut with `…`.
pub(crate) fn truncate_in_place(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push('…');
}

/// The longest prefix of `s` of at most `max` bytes ending at a character boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// A number for a human: integers as integers, otherwise two or three significant digits.
pub(crate) fn number(x: f64) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    let a = x.abs();
    let mut s = if a >= 100.0 || a == a.trunc() {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// A byte count for a human (`512 B`, `1.5 MB`, decimal units).
pub(crate) fn bytes(x: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    if !x.is_finite() {
        return "?".into();
    }
    let mut v = x;
    let mut unit = 0;
    while v.abs() >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{} {}", number(v), UNITS[unit])
}

/// Appends `, a, b (+n more)` style lists of names to a detail line.
pub(crate) fn name_list<'a>(detail: &mut String, names: impl Iterator<Item = &'a str>) {
    const SHOWN: usize = 3;
    let mut more = 0usize;
    for (i, name) in names.enumerate() {
        if i < SHOWN {
            if i > 0 {
                detail.push_str(", ");
            }
            detail.push_str(prefix(name, 60));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        let _ = write!(detail, " (+{more} more)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        let cases = [
            (412.0, "412"),
            (20.0, "20"),
            (3.0, "3"),
            (61.234, "61.2"),
            (0.126, "0.13"),
            (0.5, "0.5"),
            (f64::NAN, "?"),
            (1234.56, "1235"),
        ];
        for (x, want) in cases {
            assert_eq!(number(x), want, "{x}");
        }
        assert_eq!(bytes(512_000_000.0), "512 MB");
        assert_eq!(bytes(1500.0), "1.5 kB");
    }

    #[test]
    fn truncation_respects_characters() {
        let mut s = "ééééé".to_string();
        truncate_in_place(&mut s, 6);
        assert!(s.len() <= 6 && s.ends_with('…'), "{s}");
        assert_eq!(prefix("abcé", 4), "abc");
    }
}
