//! `count_min_sketch(x [, epsilon, confidence])`, an aggregate whose value is a Count-Min
//! sketch of `x` ([`openclaw_engine::sketch::count_min`], as `bytea`), and
//! `count_min_estimate(sketch, value)`, the estimated count of `value` in it (never below the
//! true count; above it by at most `epsilon` times the total, with probability `confidence`).
//! A view keeps the sketch under deletes and updates in bounded state (its counters), and
//! gives the same bytes as the query ad hoc.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility};
use openclaw_engine::sketch::count_min::{CountMin, MAX_CELLS};

use crate::error::{SqlError, SqlState};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CountMinSketch {
    signature: Signature,
}

impl CountMinSketch {
    pub fn new() -> Self {
        Self { signature: Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(3)], Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for CountMinSketch {
    fn name(&self) -> &str {
        CountMin::FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, "sketch"), DataType::Binary, true))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return Err(SqlError::new(SqlState::FeatureNotSupported, "count_min_sketch(DISTINCT ...) is not supported").into_datafusion());
        }
        let Some(bounds) = CountMin::call_bounds(args.exprs) else {
            return Err(SqlError::new(SqlState::FeatureNotSupported, "count_min_sketch takes a constant epsilon and confidence").into_datafusion());
        };
        let Some(shape) = CountMin::for_bounds(bounds.0, bounds.1) else {
            return Err(SqlError::new(SqlState::InvalidParameterValue,
                format!("count_min_sketch needs epsilon and confidence between 0 and 1, for at most {MAX_CELLS} counters (epsilon {}, confidence {})", bounds.0, bounds.1),
            ).into_datafusion());
        };
        Ok(Box::new(SketchAccumulator { shape, counters: vec![0; shape.cells()] }))
    }
}

#[derive(Debug)]
struct SketchAccumulator {
    shape: CountMin,
    counters: Vec<i64>,
}

impl SketchAccumulator {
    fn add(&mut self, values: &ArrayRef, sign: i64) -> Result<()> {
        let text = cast(values, &DataType::Utf8)?;
        for value in text.as_string::<i32>().iter().flatten() {
            for cell in self.shape.cells_of(value.as_bytes()) {
                self.counters[cell as usize] += sign;
            }
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let states: &BinaryArray = states[0].as_binary();
        for bytes in states.iter().flatten() {
            let Some((shape, counters)) = CountMin::decode(bytes) else {
                return Err(DataFusionError::Internal("a partial count_min_sketch did not decode".into()));
            };
            if shape != self.shape {
                return Err(DataFusionError::Internal("partial count_min_sketches of different shapes".into()));
            }
            self.counters.iter_mut().zip(counters).for_each(|(c, d)| *c += d);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.shape.encode(&self.counters))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counters.len() * 8
    }
}

/// `count_min_estimate(sketch bytea, value) -> bigint`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CountMinEstimate {
    signature: Signature,
}

impl CountMinEstimate {
    pub fn new() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for CountMinEstimate {
    fn name(&self) -> &str {
        "count_min_estimate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let sketches = cast(&args.args[0].to_array(n)?, &DataType::Binary)?;
        let values = cast(&args.args[1].to_array(n)?, &DataType::Utf8)?;
        let (sketches, values) = (sketches.as_binary::<i32>(), values.as_string::<i32>());
        // Consecutive rows mostly read one sketch (a group's): decoded once per run.
        let mut decoded: Option<(&[u8], CountMin, Vec<i64>)> = None;
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            if sketches.is_null(row) || values.is_null(row) {
                out.push(None);
                continue;
            }
            let bytes = sketches.value(row);
            if decoded.as_ref().is_none_or(|(b, _, _)| *b != bytes) {
                let Some((shape, counters)) = CountMin::decode(bytes) else {
                    return Err(SqlError::new(SqlState::InvalidParameterValue, "count_min_estimate's first argument is not a count_min_sketch").into_datafusion());
                };
                decoded = Some((bytes, shape, counters));
            }
            let (_, shape, counters) = decoded.as_ref().expect("decoded");
            out.push(Some(shape.estimate(counters, values.value(row).as_bytes())));
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}
