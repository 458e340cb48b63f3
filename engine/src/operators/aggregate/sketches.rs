//! The sketch strategies of the aggregate operator: the `values` table holds a sketch's
//! counters (a bucket's or a cell's count) instead of the group's values, and a group's value
//! is read off them ([`crate::sketch`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use openclaw_storage::RowCodec;

use super::AggregateOperator;
use crate::sketch::count_min::CountMin;
use crate::sketch::LogBuckets;
use crate::{internal_err, EngineResult};

impl AggregateOperator {
    /// The quantile of a group's bucket counts (NULL and NaN values have no bucket).
    pub(super) fn sketch_quantile(&self, codec: &RowCodec, prefix: &[u8], fraction: f64, buckets: LogBuckets) -> EngineResult<ScalarValue> {
        let (rows, counts): (Vec<&[u8]>, Vec<i64>) = self.values.members(prefix).filter(|(_, c)| c.0 > 0).map(|(v, c)| (v, c.0)).unzip();
        if rows.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        let keys = codec.decode(rows)?;
        let keys = keys.column(0).as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let occupied: Vec<(i32, i64)> = keys.iter().zip(counts).filter_map(|(k, c)| Some((k?, c))).collect();
        Ok(ScalarValue::Float64(buckets.quantile(occupied, fraction)))
    }

    /// The group's Count-Min sketch, from its counters.
    pub(super) fn count_min(&self, codec: &RowCodec, prefix: &[u8], shape: CountMin) -> EngineResult<ScalarValue> {
        let mut counters = vec![0i64; shape.cells()];
        let (rows, counts): (Vec<&[u8]>, Vec<i64>) = self.values.members(prefix).filter(|(_, c)| c.0 != 0).map(|(v, c)| (v, c.0)).unzip();
        if !rows.is_empty() {
            let cells = codec.decode(rows)?;
            let cells = cells.column(0).as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
            for (cell, count) in cells.iter().zip(counts) {
                match cell.and_then(|c| counters.get_mut(c as usize)) {
                    Some(counter) => *counter = count,
                    None => internal_err!("a count_min_sketch cell out of its {} cells", shape.cells()),
                }
            }
        }
        Ok(ScalarValue::Binary(Some(shape.encode(&counters))))
    }
}

/// Each value's cell in each row of a Count-Min sketch: one column per sketch row, NULL for a
/// NULL value. Values are hashed by their text form, as `count_min_sketch` ad hoc does.
pub(super) fn count_min_cells(values: &ArrayRef, shape: CountMin) -> EngineResult<Vec<ArrayRef>> {
    let text = datafusion::arrow::compute::cast(values, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut rows: Vec<Vec<Option<u32>>> = vec![Vec::with_capacity(text.len()); shape.depth as usize];
    for value in text.iter() {
        match value {
            Some(v) => shape.cells_of(v.as_bytes()).zip(rows.iter_mut()).for_each(|(cell, row)| row.push(Some(cell))),
            None => rows.iter_mut().for_each(|row| row.push(None)),
        }
    }
    Ok(rows.into_iter().map(|r| Arc::new(UInt32Array::from(r)) as ArrayRef).collect())
}
