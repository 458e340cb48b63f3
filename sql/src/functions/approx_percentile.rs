//! `approx_percentile(fraction [, relative_accuracy]) WITHIN GROUP (ORDER BY x)`, RisingWave's
//! approximate quantile: a log-bucket sketch ([`openclaw_engine::sketch`]) whose answer is
//! within `relative_accuracy` (default 0.01) of the exact quantile's value, and which a view
//! keeps under deletes and updates in bounded state (bucket counts, not values). Ad hoc it is
//! this aggregate function; in a view the aggregate operator counts the same buckets, so both
//! give the same number.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::types::{logical_float64, NativeType};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Coercion, Signature, TypeSignature, TypeSignatureClass, Volatility};
use openclaw_engine::sketch::{valid_fraction, LogBuckets, SketchCall, MAX_RELATIVE_ACCURACY, MIN_RELATIVE_ACCURACY};

use crate::error::{SqlError, SqlState};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxPercentile {
    signature: Signature,
}

impl ApproxPercentile {
    pub fn new() -> Self {
        let value = || Coercion::new_implicit(TypeSignatureClass::Float, vec![TypeSignatureClass::Numeric], NativeType::Float64);
        let float = || Coercion::new_implicit(TypeSignatureClass::Native(logical_float64()), vec![TypeSignatureClass::Numeric], NativeType::Float64);
        let signature = Signature::one_of(
            vec![TypeSignature::Coercible(vec![value(), float()]), TypeSignature::Coercible(vec![value(), float(), float()])],
            Volatility::Immutable,
        );
        Self { signature }
    }
}

/// The call's quantile and bucket mapping, or PostgreSQL's error for arguments it refuses.
pub(crate) fn checked(args: &AccumulatorArgs) -> Result<(f64, LogBuckets)> {
    let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
    let Some(call) = SketchCall::of(args.exprs, descending) else {
        return Err(SqlError::new(SqlState::FeatureNotSupported, "approx_percentile takes a constant fraction and accuracy").into_datafusion());
    };
    let given = if descending { 1.0 - call.fraction } else { call.fraction };
    if !valid_fraction(given) {
        return Err(SqlError::new(SqlState::NumericValueOutOfRange, format!("percentile value {given} is not between 0 and 1")).into_datafusion());
    }
    let Some(buckets) = LogBuckets::new(call.relative_accuracy) else {
        return Err(SqlError::new(SqlState::InvalidParameterValue,
            format!("relative accuracy {} is not between {MIN_RELATIVE_ACCURACY} and {MAX_RELATIVE_ACCURACY}", call.relative_accuracy),
        ).into_datafusion());
    };
    Ok((call.fraction, buckets))
}

impl AggregateUDFImpl for ApproxPercentile {
    fn name(&self) -> &str {
        SketchCall::FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, "buckets"), DataType::Binary, true))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return Err(SqlError::new(SqlState::FeatureNotSupported, "approx_percentile(DISTINCT ...) is not supported").into_datafusion());
        }
        let (fraction, buckets) = checked(&args)?;
        Ok(Box::new(SketchAccumulator { fraction, buckets, counts: BTreeMap::new() }))
    }
}

/// The bucket counts of one group. Its state, exchanged between partial and final
/// aggregation within one query (never stored), is `(key: i32 LE, count: i64 LE)*`.
#[derive(Debug)]
struct SketchAccumulator {
    fraction: f64,
    buckets: LogBuckets,
    counts: BTreeMap<i32, i64>,
}

impl SketchAccumulator {
    fn add(&mut self, values: &ArrayRef, sign: i64) {
        let keys = self.buckets.keys(values.as_primitive::<Float64Type>());
        for key in keys.iter().flatten() {
            let count = self.counts.entry(key).or_insert(0);
            *count += sign;
            if *count == 0 {
                self.counts.remove(&key);
            }
        }
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], 1);
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], -1);
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let states: &BinaryArray = states[0].as_binary();
        for bytes in states.iter().flatten() {
            for entry in bytes.chunks_exact(12) {
                let key = i32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
                let count = i64::from_le_bytes(entry[4..].try_into().expect("8 bytes"));
                *self.counts.entry(key).or_insert(0) += count;
            }
        }
        self.counts.retain(|_, c| *c != 0);
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut bytes = Vec::with_capacity(self.counts.len() * 12);
        for (key, count) in &self.counts {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        Ok(vec![ScalarValue::Binary(Some(bytes))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let occupied = self.counts.iter().filter(|(_, &c)| c > 0).map(|(&k, &c)| (k, c));
        Ok(ScalarValue::Float64(self.buckets.quantile(occupied, self.fraction)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.len() * 40
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    #[test]
    fn retracting_values_undoes_them() {
        let buckets = LogBuckets::new(0.01).unwrap();
        let mut acc = SketchAccumulator { fraction: 0.5, buckets, counts: BTreeMap::new() };
        let all: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), Some(10.0), None, Some(100.0), Some(f64::NAN)]));
        acc.update_batch(&[all]).unwrap();
        let ScalarValue::Float64(Some(median)) = acc.evaluate().unwrap() else { panic!() };
        assert!((median - 10.0).abs() < 0.1, "{median}");
        let gone: ArrayRef = Arc::new(Float64Array::from(vec![10.0, 100.0]));
        acc.retract_batch(&[gone]).unwrap();
        let ScalarValue::Float64(Some(left)) = acc.evaluate().unwrap() else { panic!() };
        assert!((left - 1.0).abs() < 0.01, "{left}");
        let mut other = SketchAccumulator { fraction: 0.5, buckets, counts: BTreeMap::new() };
        other.merge_batch(&[ScalarValue::iter_to_array(acc.state().unwrap()).unwrap()]).unwrap();
        assert_eq!(other.counts, acc.counts);
    }
}
