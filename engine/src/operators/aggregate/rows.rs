//! The rows an aggregate works on: the groups one chunk touches ([`ChunkGroups`]), the rows
//! stored for them before it ([`OldGroups`], `len(state) ‖ state ‖ output`), and the changelog
//! from old outputs to new.

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use openclaw_storage::RowCodec;

use super::kernels::ChunkRows;
use crate::{EngineResult, Op, StreamChunk};

/// The groups one chunk touches, in order of first appearance.
pub(super) struct ChunkGroups {
    /// Each group's encoded key.
    pub(super) keys: Vec<Vec<u8>>,
    /// Each group's first row in the chunk (where its group columns are taken from).
    pub(super) first_row: Vec<u32>,
    /// Each group's change in row count.
    pub(super) delta: Vec<i64>,
    /// Per row: its group's index.
    pub(super) group_of_row: Vec<usize>,
    /// Per row: the sign of its op.
    pub(super) signs: Vec<i64>,
}

impl ChunkGroups {
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn kernel_rows(&self) -> ChunkRows<'_> {
        ChunkRows { group_of_row: &self.group_of_row, signs: &self.signs, n_groups: self.len() }
    }

    /// Each group's rows, for the calls computed group by group.
    pub(super) fn rows_of_groups(&self) -> Vec<Vec<u32>> {
        let mut rows = vec![vec![]; self.len()];
        for (row, &g) in self.group_of_row.iter().enumerate() {
            rows[g].push(row as u32);
        }
        rows
    }
}


pub(super) struct CallInput {
    pub(super) args: Vec<ArrayRef>,
    pub(super) mask: Option<BooleanArray>,
}

impl CallInput {
    pub(super) fn passes(&self, row: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m.is_valid(row) && m.value(row))
    }
}

/// Feeds a group's `rows` that pass the call's filter to a retractable accumulator.
pub(super) fn retract_rows(acc: &mut dyn Accumulator, rows: &[u32], input: &CallInput, ops: &[Op]) -> EngineResult<()> {
    let (ins, del): (Vec<u32>, Vec<u32>) = rows.iter().copied().filter(|&r| input.passes(r as usize)).partition(|&r| ops[r as usize].sign() > 0);
    for (rows, insert) in [(ins, true), (del, false)] {
        if rows.is_empty() {
            continue;
        }
        let idx = UInt32Array::from(rows);
        let cols = input.args.iter().map(|c| take(c, &idx, None)).collect::<Result<Vec<_>, _>>()?;
        if insert { acc.update_batch(&cols)? } else { acc.retract_batch(&cols)? }
    }
    Ok(())
}

/// The stored rows of a chunk's groups that existed before the chunk.
pub(super) struct OldGroups {
    /// Per group: its index among the found ones.
    found: Vec<Option<usize>>,
    states: Option<RecordBatch>,
    outputs: Vec<Vec<u8>>,
}

impl OldGroups {
    pub(super) fn decode<'a>(values: impl Iterator<Item = Option<&'a [u8]>>, codec: &RowCodec) -> EngineResult<Self> {
        let mut found = vec![];
        let mut states: Vec<&[u8]> = vec![];
        let mut outputs = vec![];
        for v in values {
            found.push(v.map(|v| {
                let (state, output) = split_state(v);
                states.push(state);
                outputs.push(output.to_vec());
                outputs.len() - 1
            }));
        }
        let states = if states.is_empty() { None } else { Some(codec.decode(states)?) };
        Ok(Self { found, states, outputs })
    }

    /// State column `col` of every group (null for a new group); `None` when every group is new.
    pub(super) fn aligned(&self, col: usize) -> EngineResult<Option<ArrayRef>> {
        let Some(states) = &self.states else { return Ok(None) };
        let indices: UInt32Array = self.found.iter().map(|f| f.map(|i| i as u32)).collect();
        Ok(Some(take(states.column(col), &indices, None)?))
    }

    pub(super) fn get(&self, g: usize) -> Option<Vec<ArrayRef>> {
        let i = self.found[g]?;
        let states = self.states.as_ref().expect("found groups have states");
        Some(states.columns().iter().map(|c| c.slice(i, 1)).collect())
    }

    pub(super) fn output(&self, g: usize) -> Option<&[u8]> {
        self.found[g].map(|i| self.outputs[i].as_slice())
    }

    pub(super) fn output_index(&self, g: usize) -> usize {
        self.found[g].expect("an old output")
    }

    pub(super) fn decode_outputs(&self, codec: &RowCodec) -> EngineResult<RecordBatch> {
        Ok(codec.decode(self.outputs.iter().map(|o| o.as_slice()))?)
    }
}

/// `len(state) ‖ state ‖ output`: both parts are rows of fixed schemas.
pub(super) fn encode_state(state: &[u8], output: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + state.len() + output.len());
    v.extend_from_slice(&u32::try_from(state.len()).expect("state row under 4 GiB").to_le_bytes());
    v.extend_from_slice(state);
    v.extend_from_slice(output);
    v
}

pub(super) fn split_state(value: &[u8]) -> (&[u8], &[u8]) {
    let len = u32::from_le_bytes(value[..4].try_into().expect("a length prefix")) as usize;
    (&value[4..4 + len], &value[4 + len..])
}

pub(super) fn cast_to(col: ArrayRef, to: &DataType) -> EngineResult<ArrayRef> {
    if col.data_type() == to {
        return Ok(col);
    }
    Ok(datafusion::arrow::compute::cast(&col, to)?)
}

/// Builds columns from rows of scalars, typed as `schema` says.
pub(super) fn columns_of(rows: &[Vec<ScalarValue>], schema: &SchemaRef) -> EngineResult<Vec<ArrayRef>> {
    (0..schema.fields().len())
        .map(|c| {
            let dt = schema.field(c).data_type();
            if rows.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(dt));
            }
            let col = ScalarValue::iter_to_array(rows.iter().map(|r| r[c].clone()))?;
            cast_to(col, dt)
        })
        .collect()
}

/// Interleaves old rows (source 0) and new rows (source 1) into one changelog chunk.
pub(super) fn changelog(old: &RecordBatch, new: &RecordBatch, changes: &[(usize, usize, Op)], schema: &SchemaRef) -> EngineResult<StreamChunk> {
    let indices: Vec<(usize, usize)> = changes.iter().map(|&(s, i, _)| (s, i)).collect();
    let ops: Vec<Op> = changes.iter().map(|c| c.2).collect();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let sources: [&dyn Array; 2] = [old.column(c).as_ref(), new.column(c).as_ref()];
            interleave(&sources, &indices)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(StreamChunk::new(ops, batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn group_state_round_trips() {
        let schema = Arc::new(Schema::new(vec![Field::new("rows", DataType::Int64, false), Field::new("s", DataType::Float64, true)]));
        let codec = RowCodec::new(schema.clone()).unwrap();
        let rows = vec![vec![ScalarValue::Int64(Some(3)), ScalarValue::Float64(Some(1.5))], vec![ScalarValue::Int64(Some(0)), ScalarValue::Float64(None)]];
        let encoded = codec.encode(&columns_of(&rows, &schema).unwrap()).unwrap();
        let value = encode_state(encoded.row(0).as_ref(), b"output");
        let (state, output) = split_state(&value);
        assert_eq!(output, b"output");
        let back = codec.decode([state, encoded.row(1).as_ref()]).unwrap();
        assert_eq!(ScalarValue::try_from_array(back.column(0), 0).unwrap(), rows[0][0]);
        assert_eq!(ScalarValue::try_from_array(back.column(1), 1).unwrap(), rows[1][1]);
    }
}

