//! When to try again, and what a webhook's answer means. Pure.

use std::time::Duration;

/// The delay after the `attempt`-th failed attempt (1-based): `initial × 2^(attempt-1)`,
/// capped at `max`, then scaled into its upper half by `jitter_unit` ∈ [0, 1) ("equal
/// jitter": `base × (0.5 + 0.5 × jitter_unit)`). So, below the cap, a delay is never shorter
/// than the one before whatever the jitter, and at the cap retries of many deliveries still
/// spread over `[max/2, max]` instead of arriving together. A `jitter_unit` outside [0, 1] is
/// clamped; NaN reads as 1.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, jitter_unit: f64) -> Duration {
    let doublings = attempt.max(1) - 1;
    let base = 2u32
        .checked_pow(doublings)
        .and_then(|factor| initial.checked_mul(factor))
        .map_or(max, |d| d.min(max));
    let jitter = if jitter_unit.is_nan() {
        1.0
    } else {
        jitter_unit.clamp(0.0, 1.0)
    };
    base.mul_f64(0.5 + 0.5 * jitter)
}

/// What a webhook's HTTP status means for the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the alert is delivered.
    Delivered,
    /// 408, 425, 429, 5xx (and network errors, timeouts): try again later.
    Retry,
    /// Any other status (3xx, other 4xx): the webhook refuses this request, most likely
    /// misconfigured. Still retried — the alert must not be eaten — but reported at once.
    Rejected,
}

/// The verdict of an HTTP status.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Rejected,
    }
}

/// Whether a delivery that has now failed `attempts` times must be reported as
/// `alert_delivery_failed`: once, at the threshold or at the first rejection.
pub fn should_report(attempts: u32, threshold: u32, rejected: bool, reported: bool) -> bool {
    !reported && (rejected || attempts >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        // (attempt, initial, max, jitter, expected)
        let table = [
            (1, 500, 300_000, 1.0, 500),
            (1, 500, 300_000, 0.0, 250),
            (1, 500, 300_000, 0.5, 375),
            (2, 500, 300_000, 1.0, 1_000),
            (3, 500, 300_000, 1.0, 2_000),
            (3, 500, 300_000, 0.0, 1_000),
            (10, 500, 300_000, 1.0, 256_000),
            (11, 500, 300_000, 1.0, 300_000),
            (11, 500, 300_000, 0.0, 150_000),
            (40, 500, 300_000, 1.0, 300_000),
            (u32::MAX, 500, 300_000, 1.0, 300_000),
            (0, 10, 1_000, 1.0, 10),
            (1, 10, 1_000, 7.0, 10),
            (1, 10, 1_000, -3.0, 5),
            (1, 10, 1_000, f64::NAN, 10),
        ];
        for (attempt, initial, max, jitter, expect) in table {
            assert_eq!(
                backoff(attempt, ms(initial), ms(max), jitter),
                ms(expect),
                "attempt {attempt}, initial {initial}, max {max}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn below_the_cap_backoff_never_shrinks_whatever_the_jitter() {
        let (initial, max) = (ms(10), ms(60_000));
        for attempt in 1..30u32 {
            if initial * 2u32.pow(attempt) > max {
                break;
            }
            let longest_now = backoff(attempt, initial, max, 1.0);
            let shortest_next = backoff(attempt + 1, initial, max, 0.0);
            assert!(
                shortest_next >= longest_now,
                "attempt {attempt}: {shortest_next:?} < {longest_now:?}"
            );
        }
    }

    #[test]
    fn statuses_have_verdicts() {
        let table = [
            (200, Verdict::Delivered),
            (202, Verdict::Delivered),
            (204, Verdict::Delivered),
            (301, Verdict::Rejected),
            (400, Verdict::Rejected),
            (401, Verdict::Rejected),
            (404, Verdict::Rejected),
            (408, Verdict::Retry),
            (413, Verdict::Rejected),
            (425, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (599, Verdict::Retry),
            (100, Verdict::Rejected),
        ];
        for (status, expect) in table {
            assert_eq!(verdict(status), expect, "{status}");
        }
    }

    #[test]
    fn a_delivery_is_reported_once() {
        // (attempts, threshold, rejected, reported, expected)
        let table = [
            (1, 8, false, false, false),
            (7, 8, false, false, false),
            (8, 8, false, false, true),
            (9, 8, false, false, true),
            (9, 8, false, true, false),
            (1, 8, true, false, true),
            (2, 8, true, true, false),
        ];
        for (attempts, threshold, rejected, reported, expect) in table {
            assert_eq!(
                should_report(attempts, threshold, rejected, reported),
                expect,
                "{attempts}/{threshold} rejected={rejected} reported={reported}"
            );
        }
    }
}
