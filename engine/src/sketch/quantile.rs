//! The quantile sketch: values counted in logarithmic buckets, so that a quantile
//! is known within a relative error (DDSketch's mapping, as RisingWave's `approx_percentile`).
//!
//! Unlike a t-digest, a bucket's count goes down as well as up, so a view keeps the sketch
//! under deletes and updates: its state per group is one counter per occupied bucket (at most
//! `ln(max / min) / ln(gamma)` of them: about 1,150 for values from 1 to 10^10 at 1%), not the
//! values. SQL's `approx_percentile` (`sql/src/functions/approx_percentile.rs`) and the
//! aggregate operator's sketch strategy share these functions, so a view and its query ad hoc
//! give the same number.
//!
//! Buckets are keyed by an `i32` that sorts like the values: `0` holds every value whose
//! magnitude is below `f64::MIN_POSITIVE` (zero), `KEY_OFFSET + i` the positive values of
//! bucket `i` (those in `(gamma^(i-1), gamma^i]`), `-(KEY_OFFSET + i)` the negative ones of
//! magnitude in that range. A bucket reads as `2 gamma^i / (gamma + 1)`, which is within the
//! relative accuracy of every value in it. NaN is not counted (as NULL).

use datafusion::arrow::array::{Float64Array, Int32Array};
use datafusion::arrow::datatypes::Int32Type;

/// The relative accuracy when none is given (1%).
pub const DEFAULT_RELATIVE_ACCURACY: f64 = 0.01;
/// The finest and coarsest accuracy taken: finer would need more buckets than keys hold.
pub const MIN_RELATIVE_ACCURACY: f64 = 1e-4;
pub const MAX_RELATIVE_ACCURACY: f64 = 0.5;
/// Bucket `i` of positive values has key `KEY_OFFSET + i`. At the finest accuracy, f64's
/// magnitudes (10^-324 to 10^308) span buckets -3.7 M to 3.6 M, well inside the offset.
const KEY_OFFSET: i32 = 1 << 23;

/// The bucket mapping for one relative accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogBuckets {
    gamma: f64,
    ln_gamma: f64,
}

impl LogBuckets {
    /// `None` unless `relative_accuracy` is within
    /// [`MIN_RELATIVE_ACCURACY`]..=[`MAX_RELATIVE_ACCURACY`].
    pub fn new(relative_accuracy: f64) -> Option<Self> {
        if !(MIN_RELATIVE_ACCURACY..=MAX_RELATIVE_ACCURACY).contains(&relative_accuracy) {
            return None;
        }
        let gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy);
        Some(Self { gamma, ln_gamma: gamma.ln() })
    }

    /// The bucket key of `x`; `None` for NaN.
    pub fn key(&self, x: f64) -> Option<i32> {
        if x.is_nan() {
            return None;
        }
        let magnitude = x.abs();
        if magnitude < f64::MIN_POSITIVE {
            return Some(0);
        }
        let bound = f64::from(KEY_OFFSET - 1);
        let index = (magnitude.ln() / self.ln_gamma).ceil().clamp(-bound, bound) as i32;
        let key = KEY_OFFSET + index;
        Some(if x < 0.0 { -key } else { key })
    }

    /// Every value's bucket key, in one pass over the array (NULL for NULL and NaN).
    pub fn keys(&self, values: &Float64Array) -> Int32Array {
        values.unary_opt::<_, Int32Type>(|x| self.key(x))
    }

    /// The value a bucket reads as.
    pub fn value(&self, key: i32) -> f64 {
        if key == 0 {
            return 0.0;
        }
        let index = key.abs() - KEY_OFFSET;
        // In logarithms: gamma^index alone overflows for the top buckets, the value does not.
        let magnitude = (f64::from(index) * self.ln_gamma + (2.0 / (self.gamma + 1.0)).ln()).exp();
        if key < 0 { -magnitude } else { magnitude }
    }

    /// The `fraction` quantile of the buckets `counts` (key and count, keys ascending, counts
    /// positive): the bucket holding the value of rank `floor(fraction * (n - 1))`; `None`
    /// when no value is counted.
    pub fn quantile(&self, counts: impl IntoIterator<Item = (i32, i64)> + Clone, fraction: f64) -> Option<f64> {
        let total: i64 = counts.clone().into_iter().map(|(_, c)| c).sum();
        if total <= 0 {
            return None;
        }
        let rank = (fraction * (total - 1) as f64).floor() as i64;
        let mut seen = 0;
        for (key, count) in counts {
            debug_assert!(count > 0, "only occupied buckets are walked");
            seen += count;
            if seen > rank {
                return Some(self.value(key));
            }
        }
        unreachable!("the rank is below the total count")
    }
}

/// Whether `fraction` is a quantile (PostgreSQL refuses others with 22003).
pub fn valid_fraction(fraction: f64) -> bool {
    (0.0..=1.0).contains(&fraction)
}

/// What a call of `approx_percentile(fraction [, accuracy]) WITHIN GROUP (ORDER BY x)` asks
/// for: its arguments are `x, fraction [, accuracy]` (the ordered value first), each after `x`
/// a constant. `None` when they are not constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchCall {
    /// The quantile, already flipped for a descending order (as given, unchecked).
    pub fraction: f64,
    /// The relative accuracy (as given, unchecked).
    pub relative_accuracy: f64,
}

impl SketchCall {
    /// The SQL name of the sketch's aggregate function.
    pub const FUNCTION: &'static str = "approx_percentile";

    pub fn of(args: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>], descending: bool) -> Option<Self> {
        let constant = |i: usize| super::constant_f64(args.get(i)?);
        let fraction = constant(1)?;
        let relative_accuracy = if args.len() > 2 { constant(2)? } else { DEFAULT_RELATIVE_ACCURACY };
        Some(Self { fraction: if descending { 1.0 - fraction } else { fraction }, relative_accuracy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_values_and_read_within_the_accuracy() {
        let b = LogBuckets::new(0.01).unwrap();
        let xs = [-1e300, -12345.6, -1.0, -1e-300, 0.0, 1e-310, 1e-300, 0.5, 1.0, 2.0, 99.5, 1e6, 1e308, f64::INFINITY];
        let keys: Vec<i32> = xs.iter().map(|&x| b.key(x).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        for &x in &xs {
            if x.is_finite() && x.abs() >= f64::MIN_POSITIVE {
                let v = b.value(b.key(x).unwrap());
                assert!(((v - x) / x).abs() <= 0.01 + 1e-12, "{x} read as {v}");
            }
        }
        assert_eq!(b.key(0.0), Some(0));
        assert_eq!(b.key(f64::NAN), None);
        // Pinned: the mapping is part of what a view stores.
        assert_eq!(b.key(1.0), Some(KEY_OFFSET));
        assert_eq!(b.key(100.0), Some(KEY_OFFSET + 231));
        assert_eq!(b.key(-100.0), Some(-(KEY_OFFSET + 231)));
    }

    #[test]
    fn quantiles_walk_the_buckets() {
        let b = LogBuckets::new(0.01).unwrap();
        let counts = |xs: &[f64]| {
            let mut m = std::collections::BTreeMap::new();
            for &x in xs {
                *m.entry(b.key(x).unwrap()).or_insert(0i64) += 1;
            }
            m.into_iter().collect::<Vec<_>>()
        };
        let c = counts(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        let close = |got: Option<f64>, want: f64| assert!((got.unwrap() - want).abs() <= want.abs() * 0.01 + 1e-12, "{got:?} != {want}");
        close(b.quantile(c.iter().copied(), 0.5), 3.0);
        close(b.quantile(c.iter().copied(), 0.0), 1.0);
        close(b.quantile(c.iter().copied(), 1.0), 100.0);
        close(b.quantile(counts(&[-5.0, 0.0, 7.0]).into_iter(), 0.5), 0.0);
        assert_eq!(b.quantile(Vec::<(i32, i64)>::new(), 0.5), None);
        assert!(LogBuckets::new(0.0).is_none() && LogBuckets::new(0.9).is_none());
    }
}
