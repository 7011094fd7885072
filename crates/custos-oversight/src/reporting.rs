//! Mandatory reporting (SPEC §5.2): how many reports an agent has missed, and what that
//! leads to. Both are pure functions of plain numbers, so the table of consequences is tested
//! exhaustively and the enforcer needs nothing but a clock.

use serde::{Deserialize, Serialize};

/// An agent's standing with respect to its reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ReportingStatus {
    /// Reporting as required (or within the allowance).
    Compliant,
    /// Missed enough reports to be warned.
    Warned,
    /// Missed enough reports to be suspended.
    Suspended,
    /// Missed so many reports that deletion is requested.
    NonCompliant,
}

impl ReportingStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportingStatus::Compliant => "compliant",
            ReportingStatus::Warned => "warned",
            ReportingStatus::Suspended => "suspended",
            ReportingStatus::NonCompliant => "non_compliant",
        }
    }

    /// Every status, in order of gravity.
    pub const ALL: [ReportingStatus; 4] = [
        ReportingStatus::Compliant,
        ReportingStatus::Warned,
        ReportingStatus::Suspended,
        ReportingStatus::NonCompliant,
    ];
}

/// How many missed reports lead to each consequence (SPEC §5.2: 3, 5, 10).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportingThresholds {
    /// Missed reports from which the agent is warned.
    pub warn_after: u32,
    /// Missed reports from which the agent is suspended.
    pub suspend_after: u32,
    /// Missed reports from which the agent is non-compliant and its deletion requested.
    pub non_compliant_after: u32,
    /// Grace before a due report counts as missed, in reporting intervals (SPEC: 2).
    pub grace_intervals: u32,
}

impl Default for ReportingThresholds {
    fn default() -> Self {
        ReportingThresholds {
            warn_after: 3,
            suspend_after: 5,
            non_compliant_after: 10,
            grace_intervals: 2,
        }
    }
}

impl ReportingThresholds {
    /// Checks the thresholds rise strictly; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.warn_after == 0 {
            return Err("warn_after must be at least 1".into());
        }
        if self.suspend_after <= self.warn_after {
            return Err(format!(
                "suspend_after ({}) must be greater than warn_after ({})",
                self.suspend_after, self.warn_after
            ));
        }
        if self.non_compliant_after <= self.suspend_after {
            return Err(format!(
                "non_compliant_after ({}) must be greater than suspend_after ({})",
                self.non_compliant_after, self.suspend_after
            ));
        }
        if self.grace_intervals > 100 {
            return Err("grace_intervals must be at most 100".into());
        }
        Ok(())
    }
}

/// What `missed` missed reports lead to (SPEC §5.2): with the defaults, 0–2 nothing, 3–4
/// warned, 5–9 suspended, 10 and more non-compliant.
pub fn consequence(missed: u32, thresholds: &ReportingThresholds) -> ReportingStatus {
    if missed >= thresholds.non_compliant_after {
        ReportingStatus::NonCompliant
    } else if missed >= thresholds.suspend_after {
        ReportingStatus::Suspended
    } else if missed >= thresholds.warn_after {
        ReportingStatus::Warned
    } else {
        ReportingStatus::Compliant
    }
}

/// How many reports are missed at `now` by an agent that last reported (or was registered,
/// or reinstated) at `since`, every `interval` nanoseconds.
///
/// The report due at `since + k·interval` counts as missed once the grace (`grace_intervals`
/// intervals) after it has passed too: the first is missed at `since + (1 + grace)·interval`,
/// and one more every interval after that. A clock that went backwards misses nothing.
pub fn missed_reports(since: i128, interval: i128, now: i128, grace_intervals: u32) -> u32 {
    if interval <= 0 || now <= since {
        return 0;
    }
    let silent = now - since;
    let grace = interval * i128::from(grace_intervals);
    if silent < interval + grace {
        return 0;
    }
    let missed = (silent - grace) / interval;
    u32::try_from(missed).unwrap_or(u32::MAX)
}

/// When the next report will count as missed (the moment [`missed_reports`] next grows).
pub fn next_miss_at(since: i128, interval: i128, now: i128, grace_intervals: u32) -> i128 {
    let missed = i128::from(missed_reports(since, interval, now, grace_intervals));
    since + interval * (i128::from(grace_intervals) + missed + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn the_consequence_table_of_the_spec() {
        use ReportingStatus::*;
        let t = ReportingThresholds::default();
        let expected = [
            (0, Compliant),
            (1, Compliant),
            (2, Compliant),
            (3, Warned),
            (4, Warned),
            (5, Suspended),
            (6, Suspended),
            (9, Suspended),
            (10, NonCompliant),
            (11, NonCompliant),
            (1000, NonCompliant),
            (u32::MAX, NonCompliant),
        ];
        for (missed, status) in expected {
            assert_eq!(consequence(missed, &t), status, "{missed} missed");
        }
    }

    #[test]
    fn configured_thresholds_move_the_boundaries() {
        use ReportingStatus::*;
        let t = ReportingThresholds {
            warn_after: 1,
            suspend_after: 2,
            non_compliant_after: 4,
            grace_intervals: 0,
        };
        let got: Vec<_> = (0..6).map(|m| consequence(m, &t)).collect();
        assert_eq!(
            got,
            [
                Compliant,
                Warned,
                Suspended,
                Suspended,
                NonCompliant,
                NonCompliant
            ]
        );
    }

    #[test]
    fn thresholds_must_rise() {
        let cases = [
            ((0, 5, 10), Some("warn_after")),
            ((3, 3, 10), Some("suspend_after (3)")),
            ((3, 5, 5), Some("non_compliant_after (5)")),
            ((3, 5, 10), None),
        ];
        for ((w, s, n), err) in cases {
            let t = ReportingThresholds {
                warn_after: w,
                suspend_after: s,
                non_compliant_after: n,
                grace_intervals: 2,
            };
            match (t.validate(), err) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.contains(want), "{e}"),
                (got, want) => panic!("{w},{s},{n}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn missed_reports_count_after_the_grace() {
        // Interval 5 s, grace 2 intervals: the first report is due at 5 s and counts as
        // missed at 15 s; one more every 5 s after that.
        let cases = [
            (0, 0),
            (4 * S, 0),
            (5 * S, 0),
            (14 * S, 0),
            (15 * S - 1, 0),
            (15 * S, 1),
            (19 * S, 1),
            (20 * S, 2),
            (25 * S, 3),
            (35 * S, 5),
            (60 * S, 10),
        ];
        for (now, missed) in cases {
            assert_eq!(missed_reports(0, 5 * S, now, 2), missed, "at {now}");
        }
        assert_eq!(missed_reports(10 * S, 5 * S, 0, 2), 0, "clock went back");
        assert_eq!(missed_reports(0, 0, 100 * S, 2), 0, "no interval");
        assert_eq!(missed_reports(0, S, 3 * S, 0), 3, "no grace");
        assert_eq!(missed_reports(0, 1, i128::MAX, 0), u32::MAX, "saturates");
    }

    #[test]
    fn the_next_miss_is_when_the_count_grows() {
        for now in [0, 3 * S, 15 * S, 17 * S, 44 * S] {
            let next = next_miss_at(0, 5 * S, now, 2);
            assert!(next > now);
            assert_eq!(
                missed_reports(0, 5 * S, next, 2),
                missed_reports(0, 5 * S, now, 2) + 1,
                "from {now}"
            );
            assert_eq!(
                missed_reports(0, 5 * S, next - 1, 2),
                missed_reports(0, 5 * S, now, 2)
            );
        }
    }
}
