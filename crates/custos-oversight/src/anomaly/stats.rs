//! Robust statistics of one feature over a baseline of windows: median, MAD, the 95th
//! percentile, the robust z-score with its floor, the ramp from z to a contribution and the
//! noisy-OR that combines contributions.
//!
//! Every function ignores non-finite inputs and never returns NaN.

use serde::Serialize;

/// Multiplies a MAD into a standard deviation (exact for normally distributed data).
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// The upper quantile whose distance from the median is the baseline's tail spread.
pub const UPPER_QUANTILE: f64 = 0.95;

/// Standard normal quantile of [`UPPER_QUANTILE`]: divides the tail spread into a sigma.
const UPPER_QUANTILE_Z: f64 = 1.644_853_6;

/// The smallest sigma ever used, so that a bad floor cannot divide by zero.
const MIN_SIGMA: f64 = 1e-9;

/// Median, MAD and 95th percentile of a feature's finite baseline values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Robust {
    /// The median.
    pub median: f64,
    /// The median absolute deviation from the median (unscaled).
    pub mad: f64,
    /// The 95th percentile (linear interpolation between closest ranks).
    pub upper: f64,
    /// How many finite values were summarised.
    pub n: usize,
}

impl Robust {
    /// Summarises the finite values; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Robust> {
        let mut buf: Vec<f64> = values.into_iter().collect();
        Robust::of_buffer(&mut buf)
    }

    /// Summarises the finite values of `buf`, reusing it as scratch space (it is left
    /// reordered and may be shortened).
    pub(crate) fn of_buffer(buf: &mut Vec<f64>) -> Option<Robust> {
        buf.retain(|v| v.is_finite());
        let median = quantile(buf, 0.5)?;
        let upper = quantile(buf, UPPER_QUANTILE)?;
        for v in buf.iter_mut() {
            *v = (*v - median).abs();
        }
        let mad = quantile(buf, 0.5)?;
        Some(Robust {
            median,
            mad,
            upper,
            n: buf.len(),
        })
    }

    /// The robust sigma: the larger of `1.4826·MAD`, the tail spread
    /// `(p95 − median) / 1.645` and `floor`.
    ///
    /// For normal data the first two agree. For zero-inflated features (most windows move
    /// no bytes, have no errors) the MAD is 0 and would make every ordinary transfer look
    /// extreme; the tail spread says what this agent's bigger windows usually look like.
    /// The floor covers a constant baseline and sampling noise (see the callers).
    pub fn sigma(&self, floor: f64) -> f64 {
        let floor = if floor.is_finite() {
            floor.max(MIN_SIGMA)
        } else {
            MIN_SIGMA
        };
        let spread = (MAD_TO_SIGMA * self.mad).max((self.upper - self.median) / UPPER_QUANTILE_Z);
        if spread.is_finite() {
            spread.max(floor)
        } else {
            floor
        }
    }

    /// The signed robust z-score of `x`: `(x − median) / sigma(floor)`; `None` when `x` is
    /// not finite or the result would not be.
    pub fn z(&self, x: f64, floor: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        let z = (x - self.median) / self.sigma(floor);
        z.is_finite().then_some(z)
    }
}

/// The median of the finite values; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    Robust::of(values.iter().copied()).map(|r| r.median)
}

/// The median absolute deviation of the finite values (unscaled); `None` when there are none.
pub fn mad(values: &[f64]) -> Option<f64> {
    Robust::of(values.iter().copied()).map(|r| r.mad)
}

/// The `q` quantile (0 ≤ q ≤ 1) of finite values, interpolating linearly between the
/// closest ranks (so the median of an even count is the mean of the middle two); `None` when
/// empty. Reorders `values` (selection, O(n), no sort).
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    let last = values.len().checked_sub(1)?;
    let q = if q.is_finite() {
        q.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let pos = q * last as f64;
    let lo = (pos.floor() as usize).min(last);
    let (_, a, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    let frac = pos - lo as f64;
    if frac <= 0.0 {
        return Some(a);
    }
    let b = above.iter().copied().fold(f64::INFINITY, f64::min);
    Some(if b.is_finite() { a + (b - a) * frac } else { a })
}

/// Maps a z-score to a share of a feature's weight: 0 up to `onset`, rising linearly to 1 at
/// `full`. Downward deviations (negative z) give 0; a NaN gives 0.
pub fn ramp(z: f64, onset: f64, full: f64) -> f64 {
    if z.is_nan() || z <= onset {
        return 0.0;
    }
    let width = full - onset;
    if width.is_nan() || width <= 0.0 || z >= full {
        return 1.0;
    }
    ((z - onset) / width).clamp(0.0, 1.0)
}

/// Combines contributions in [0, 1] as independent evidence: `1 − Π(1 − cᵢ)`. Values
/// outside [0, 1] are clamped, NaNs ignored; the result is in [0, 1].
pub fn noisy_or(contributions: impl IntoIterator<Item = f64>) -> f64 {
    let clear = contributions
        .into_iter()
        .filter(|c| !c.is_nan())
        .fold(1.0, |acc, c| acc * (1.0 - c.clamp(0.0, 1.0)));
    (1.0 - clear).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let cases: [(&[f64], f64, Option<f64>); 6] = [
            (&[], 0.5, None),
            (&[3.0], 0.95, Some(3.0)),
            (&[4.0, 2.0, 3.0, 1.0], 0.5, Some(2.5)),
            (&[10.0, 0.0], 0.95, Some(9.5)),
            (&[10.0, 0.0], f64::NAN, Some(5.0)),
            (&[5.0, 1.0, 4.0, 2.0, 3.0], 1.0, Some(5.0)),
        ];
        for (values, q, want) in cases {
            let mut v = values.to_vec();
            assert_eq!(quantile(&mut v, q), want, "{values:?} q {q}");
        }
    }

    #[test]
    fn sigma_takes_the_largest_of_mad_tail_and_floor() {
        let r = Robust {
            median: 10.0,
            mad: 2.0,
            upper: 12.0,
            n: 50,
        };
        assert!((r.sigma(0.0) - 2.0 * MAD_TO_SIGMA).abs() < 1e-12);
        assert_eq!(r.sigma(5.0), 5.0);
        assert!(r.sigma(f64::NAN) > 0.0);
        let zero_inflated = Robust {
            median: 0.0,
            mad: 0.0,
            upper: 1.644_853_6,
            n: 50,
        };
        assert!((zero_inflated.sigma(0.1) - 1.0).abs() < 1e-9);
    }
}
