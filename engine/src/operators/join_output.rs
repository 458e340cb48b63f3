//! A join's output for one chunk ([`super::join::JoinOperator`]): the candidate pairs a
//! probe finds ([`Pairs`]) and the output rows as positions into them, the input chunk or
//! NULLs ([`OutputRows`]), gathered into a chunk with one `interleave` (or `take`) per
//! column.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave, prep_null_mask_filter, take};
use datafusion::arrow::datatypes::SchemaRef;

use super::join::{JoinKind, JoinSpec};
use crate::{EngineResult, Op, StreamChunk};

/// The candidate pairs of one chunk ([`super::join::JoinOperator`]'s probe).
pub(super) struct Pairs {
    /// The probing row of each pair, ascending.
    pub(super) probe_rows: Vec<u32>,
    /// The stored multiplicity of each pair's other row.
    pub(super) counts: Vec<i64>,
    /// Each pair's other row, encoded; only when the other side tracks degrees.
    pub(super) members: Vec<Box<[u8]>>,
    /// Each pair's other row, decoded (the other side's columns).
    pub(super) others: RecordBatch,
    /// Each pair joined: left columns, then right columns.
    pub(super) joined: RecordBatch,
    /// Whether the pair satisfies the extra condition.
    pub(super) passed: Vec<bool>,
}

/// The output of one chunk, as positions in the arrays it is assembled from: per output row,
/// where the probing side's columns and the other side's columns come from.
#[derive(Default)]
pub(super) struct OutputRows {
    ops: Vec<Op>,
    /// (source, row) of the probing side's columns: 0 a pair, 1 NULL, 2 the input chunk.
    this: Vec<(usize, usize)>,
    /// (source, row) of the other side's columns: 0 a pair, 1 NULL.
    other: Vec<(usize, usize)>,
    /// For a mark join: each output row's mark.
    marks: Vec<bool>,
}

const FROM_PAIR: usize = 0;
const FROM_NULL: usize = 1;
const FROM_INPUT: usize = 2;

impl OutputRows {
    fn push(&mut self, this: (usize, usize), other: (usize, usize), count: i64, sign: i64) {
        let op = if sign > 0 { Op::Insert } else { Op::Delete };
        for _ in 0..count {
            self.ops.push(op);
            self.this.push(this);
            self.other.push(other);
            self.marks.push(false);
        }
    }

    pub(super) fn push_joined(&mut self, pair: usize, count: i64, sign: i64) {
        self.push((FROM_PAIR, pair), (FROM_PAIR, pair), count, sign);
    }

    /// Pair `pair`'s other row with the probing side's columns NULL.
    pub(super) fn push_other_padded(&mut self, pair: usize, count: i64, sign: i64) {
        self.push((FROM_NULL, 0), (FROM_PAIR, pair), count, sign);
    }

    /// Input row `row` with the other side's columns NULL.
    pub(super) fn push_this_padded(&mut self, row: usize, count: i64, sign: i64) {
        self.push((FROM_INPUT, row), (FROM_NULL, 0), count, sign);
    }

    /// For semi and anti joins, whose output is one side's columns: `at` is a pair when the
    /// output side is the other side, else an input row.
    pub(super) fn push_plain(&mut self, at: usize, count: i64, sign: i64) {
        self.push((FROM_INPUT, at), (FROM_PAIR, at), count, sign);
    }

    /// For a mark join: as [`Self::push_plain`], with the row's mark.
    pub(super) fn push_marked(&mut self, at: usize, count: i64, sign: i64, mark: bool) {
        self.push_plain(at, count, sign);
        let n = self.marks.len();
        self.marks[n - count as usize..].fill(mark);
    }

    pub(super) fn assemble(self, side: usize, spec: &JoinSpec, input: &RecordBatch, pairs: &Pairs) -> EngineResult<StreamChunk> {
        if self.ops.is_empty() {
            return Ok(StreamChunk::new(vec![], RecordBatch::new_empty(spec.schema.clone())));
        }
        let columns: Vec<ArrayRef> = if spec.kind.emits_joined() {
            let left_width = spec.input_schemas[0].fields().len();
            let this_range = if side == 0 { 0..left_width } else { left_width..pairs.joined.num_columns() };
            (0..pairs.joined.num_columns())
                .map(|c| {
                    let joined = pairs.joined.column(c);
                    let null = new_null_array(joined.data_type(), 1);
                    if this_range.contains(&c) {
                        let own = input.column(c - this_range.start);
                        Ok(interleave(&[joined.as_ref(), null.as_ref(), own.as_ref()], &self.this)?)
                    } else {
                        Ok(interleave(&[joined.as_ref(), null.as_ref()], &self.other)?)
                    }
                })
                .collect::<EngineResult<_>>()?
        } else {
            // Semi, anti or mark: only one source is ever used.
            let (source, rows): (&RecordBatch, Vec<u32>) = if spec.kind.filters(side).is_some() || spec.kind.marks(side) {
                (input, self.this.iter().map(|&(_, r)| r as u32).collect())
            } else {
                (&pairs.others, self.other.iter().map(|&(_, r)| r as u32).collect())
            };
            let mut columns = take_rows(source, &UInt32Array::from(rows))?.columns().to_vec();
            if matches!(spec.kind, JoinKind::Mark(_)) {
                columns.push(Arc::new(BooleanArray::from(self.marks)));
            }
            columns
        };
        Ok(StreamChunk::new(self.ops, RecordBatch::try_new(spec.schema.clone(), columns)?))
    }
}

/// A condition's result with NULL taken as false.
pub(super) fn null_is_false(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 { mask.clone() } else { prep_null_mask_filter(mask) }
}

pub(super) fn take_rows(batch: &RecordBatch, idx: &UInt32Array) -> EngineResult<RecordBatch> {
    let cols = batch.columns().iter().map(|c| take(c, idx, None)).collect::<Result<Vec<_>, _>>()?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(idx.len()));
    Ok(RecordBatch::try_new_with_options(batch.schema(), cols, &options)?)
}

pub(super) fn concat_columns(l: &RecordBatch, r: &RecordBatch, schema: &SchemaRef) -> EngineResult<RecordBatch> {
    let mut cols = l.columns().to_vec();
    cols.extend(r.columns().iter().cloned());
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(l.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), cols, &options)?)
}

