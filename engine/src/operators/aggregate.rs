//! `GROUP BY` over a changelog. Every input row adds to or retracts from its group; every
//! group whose output changed emits `U-`/`U+` (or `-`, `+`). The state lives in RocksDB:
//!
//! - `groups` (plain): group key → the group's row count, the state of its retractable
//!   accumulators (count, sum, avg: DataFusion's sliding accumulators, which `retract_batch`),
//!   and its last output row (to retract it without recomputing).
//! - `values` (counters): group key ‖ call ‖ argument row → multiplicity, for the aggregates
//!   that cannot retract: `min`/`max` read the first or last live key of the group (the row
//!   encoding sorts like the values), and every other aggregate (`count(DISTINCT)`,
//!   `string_agg`, `array_agg`, `approx_count_distinct`, …) is recomputed from the group's
//!   values with a fresh DataFusion accumulator.
//!
//! With `EMIT ON WINDOW CLOSE` the group key starts with the window column. Nothing is emitted
//! per chunk; when the window column's watermark passes a group, its final row is emitted once
//! (append-only) and its state is deleted by a range delete. Rows behind the watermark are
//! dropped and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::{decode_count, CfKind, RowCodec, StateWrite, Store};

use crate::chunk::nullable_schema;
use crate::{internal_err, EngineError, EngineResult, Message, Op, Operator, OperatorContext, StreamChunk, Watermark};

/// One aggregate call of the query, with its `FILTER (WHERE …)` clause.
#[derive(Clone)]
pub struct AggCall {
    pub expr: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// How the state of one call is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// A sliding DataFusion accumulator whose `state()` is stored in the group's row.
    Retract,
    Min,
    Max,
    /// `min`/`max` over an append-only input: the extreme so far, in the group's row (no
    /// values are kept, since none is ever retracted).
    MinAppend,
    MaxAppend,
    /// Recomputed from the group's stored values.
    Recompute,
}

impl Strategy {
    fn of(call: &AggCall, append_only: bool) -> EngineResult<Self> {
        if !call.expr.order_bys().is_empty() {
            return Err(EngineError::NotSupported(format!(
                "aggregate {}(... ORDER BY ...) is not supported in materialized views yet",
                call.expr.fun().name()
            )));
        }
        let name = call.expr.fun().name();
        Ok(match name {
            "min" if call.expr.expressions().len() == 1 && append_only => Strategy::MinAppend,
            "max" if call.expr.expressions().len() == 1 && append_only => Strategy::MaxAppend,
            "min" if call.expr.expressions().len() == 1 => Strategy::Min,
            "max" if call.expr.expressions().len() == 1 => Strategy::Max,
            "count" | "sum" | "avg" if !call.expr.is_distinct() => {
                let probe = call.expr.create_sliding_accumulator()?;
                if probe.supports_retract_batch() { Strategy::Retract } else { Strategy::Recompute }
            }
            _ => Strategy::Recompute,
        })
    }
}

/// What the plan says about an aggregation.
#[derive(Clone)]
pub struct AggregateSpec {
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub calls: Vec<AggCall>,
    /// Group columns, then one column per call.
    pub schema: SchemaRef,
    /// `EMIT ON WINDOW CLOSE`: the group column whose watermark closes groups.
    pub emit_on_close: Option<usize>,
    /// A group column that carries a watermark (a window's start or end, or any event-time
    /// column grouped on): groups below its watermark get no more rows, so their state is
    /// freed and rows that arrive for them anyway are dropped and counted as late.
    pub clean_by: Option<usize>,
}

impl AggregateSpec {
    /// The group column whose watermark closes groups and frees their state.
    pub fn window_column(&self) -> Option<usize> {
        self.emit_on_close.or(self.clean_by)
    }
}

/// Names of the column families that hold the aggregation's state.
pub struct AggregateTables {
    pub groups: String,
    pub values: String,
}

struct Prepared {
    strategy: Strategy,
    /// Encodes the call's argument rows (for the `values` table).
    arg_codec: Option<RowCodec>,
}

pub struct AggregateOperator {
    spec: AggregateSpec,
    calls: Vec<Prepared>,
    store: Store,
    groups_cf: Arc<str>,
    values_cf: Arc<str>,
    /// Group columns in key order (the window column first under emit-on-close).
    key_order: Vec<usize>,
    key_codec: Option<RowCodec>,
    /// Row count and retractable accumulator states.
    state_codec: RowCodec,
    output_codec: RowCodec,
    /// Under emit-on-close: the window column's watermark and the rows dropped behind it.
    closed_below_us: Option<i64>,
    late_rows: Arc<AtomicU64>,
}

impl AggregateOperator {
    /// `append_only`: whether the input only ever inserts ([`crate::plan::StreamNode::append_only`]).
    pub fn new(spec: AggregateSpec, store: Store, tables: AggregateTables, input: &Schema, append_only: bool, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
        let calls = spec
            .calls
            .iter()
            .map(|c| {
                let strategy = Strategy::of(c, append_only)?;
                let arg_codec = match strategy {
                    Strategy::Retract | Strategy::MinAppend | Strategy::MaxAppend => None,
                    _ => {
                        let fields: Vec<Field> = c
                            .expr
                            .expressions()
                            .iter()
                            .enumerate()
                            .map(|(i, e)| Ok(Field::new(format!("a{i}"), e.data_type(input)?, true)))
                            .collect::<EngineResult<_>>()?;
                        Some(RowCodec::new(Arc::new(Schema::new(fields)))?)
                    }
                };
                Ok(Prepared { strategy, arg_codec })
            })
            .collect::<EngineResult<Vec<_>>>()?;
        let n_groups = spec.group_exprs.len();
        let mut key_order: Vec<usize> = (0..n_groups).collect();
        if let Some(w) = spec.window_column() {
            key_order.retain(|&i| i != w);
            key_order.insert(0, w);
        }
        let key_codec = if n_groups == 0 {
            None
        } else {
            let fields: Vec<Field> = key_order.iter().map(|&i| spec.schema.field(i).clone().with_nullable(true)).collect();
            Some(RowCodec::new(Arc::new(Schema::new(fields)))?)
        };
        let mut state_fields = vec![Field::new("rows", DataType::Int64, false)];
        for (i, (c, p)) in spec.calls.iter().zip(&calls).enumerate() {
            match p.strategy {
                Strategy::Retract => {
                    for (j, v) in c.expr.create_sliding_accumulator()?.state()?.iter().enumerate() {
                        state_fields.push(Field::new(format!("s{i}_{j}"), v.data_type(), true));
                    }
                }
                Strategy::MinAppend | Strategy::MaxAppend => state_fields.push(Field::new(format!("s{i}_0"), c.expr.field().data_type().clone(), true)),
                _ => {}
            }
        }

        store.create_cf(&tables.groups, CfKind::Plain)?;
        store.create_cf(&tables.values, CfKind::Counters)?;
        Ok(Self {
            state_codec: RowCodec::new(Arc::new(Schema::new(state_fields)))?,
            output_codec: RowCodec::new(nullable_schema(&spec.schema))?,
            spec,
            calls,
            store,
            groups_cf: Arc::from(tables.groups.as_str()),
            values_cf: Arc::from(tables.values.as_str()),
            key_order,
            key_codec,
            closed_below_us: None,
            late_rows,
        })
    }

    fn is_global(&self) -> bool {
        self.spec.group_exprs.is_empty()
    }

    /// Drops rows of groups that the watermark closed, counting them.
    fn drop_late(&self, chunk: StreamChunk, group_cols: &[ArrayRef]) -> EngineResult<(StreamChunk, Vec<ArrayRef>)> {
        let (Some(w), Some(closed)) = (self.spec.window_column(), self.closed_below_us) else {
            return Ok((chunk, group_cols.to_vec()));
        };
        let keep = crate::watermark::not_passed(&group_cols[w], closed)?;
        let late = keep.len() - keep.true_count();
        if late == 0 {
            return Ok((chunk, group_cols.to_vec()));
        }
        self.late_rows.fetch_add(late as u64, Ordering::Relaxed);
        let cols = group_cols.iter().map(|c| datafusion::arrow::compute::filter(c, &keep)).collect::<Result<_, _>>()?;
        Ok((chunk.filter(&keep)?, cols))
    }

    fn group_keys(&self, group_cols: &[ArrayRef], n: usize) -> EngineResult<Vec<Vec<u8>>> {
        let Some(codec) = &self.key_codec else { return Ok(vec![vec![]; n]) };
        let ordered: Vec<ArrayRef> = self.key_order.iter().map(|&i| group_cols[i].clone()).collect();
        let rows = codec.encode(&ordered)?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    fn values_prefix(group: &[u8], call: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(group.len() + 1);
        p.extend_from_slice(group);
        p.push(u8::try_from(call).expect("at most 255 aggregate calls"));
        p
    }

    /// The first (or last) value with a positive count under `prefix`, skipping NULLs.
    fn extreme(&self, codec: &RowCodec, prefix: &[u8], last: bool) -> EngineResult<ScalarValue> {
        let mut found: Option<ScalarValue> = None;
        let mut error = None;
        self.store.scan_prefix(&self.values_cf, prefix, last, |key, value| {
            if decode_count(value) <= 0 {
                return true;
            }
            match codec.decode([&key[prefix.len()..]]).map_err(EngineError::from).and_then(|b| Ok(ScalarValue::try_from_array(b.column(0), 0)?)) {
                Ok(v) if v.is_null() => true,
                Ok(v) => {
                    found = Some(v);
                    false
                }
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = error {
            return Err(e);
        }
        Ok(found.unwrap_or(ScalarValue::try_from(codec.schema().field(0).data_type())?))
    }

    /// Recomputes a call from every stored value of its group.
    fn recompute(&self, call: &AggCall, codec: &RowCodec, prefix: &[u8]) -> EngineResult<ScalarValue> {
        let mut rows: Vec<Vec<u8>> = vec![];
        let mut counts: Vec<i64> = vec![];
        self.store.scan_prefix(&self.values_cf, prefix, false, |key, value| {
            let count = decode_count(value);
            if count > 0 {
                rows.push(key[prefix.len()..].to_vec());
                counts.push(count);
            }
            true
        })?;
        let mut acc = call.expr.create_accumulator()?;
        if !rows.is_empty() {
            let batch = codec.decode(rows.iter().map(|r| r.as_slice()))?;
            let repeat: UInt32Array =
                counts.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c as usize)).collect();
            let cols = batch.columns().iter().map(|c| take(c, &repeat, None)).collect::<Result<Vec<_>, _>>()?;
            acc.update_batch(&cols)?;
        }
        Ok(acc.evaluate()?)
    }

    /// Applies a chunk and returns the changed output rows.
    fn apply(&mut self, chunk: StreamChunk) -> EngineResult<StreamChunk> {
        let n = chunk.num_rows();
        let group_cols = self
            .spec
            .group_exprs
            .iter()
            .map(|e| e.evaluate(chunk.batch())?.into_array(n))
            .collect::<Result<Vec<_>, _>>()?;
        let (chunk, group_cols) = self.drop_late(chunk, &group_cols)?;
        let n = chunk.num_rows();
        let keys = self.group_keys(&group_cols, n)?;
        // Dirty groups, in order of first appearance, with their rows.
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let mut groups: Vec<DirtyGroup> = vec![];
        for (row, key) in keys.iter().enumerate() {
            let g = *index.entry(key.as_slice()).or_insert_with(|| {
                groups.push(DirtyGroup { key: key.clone(), first_row: row as u32, rows: vec![], delta: 0 });
                groups.len() - 1
            });
            groups[g].rows.push(row as u32);
            groups[g].delta += chunk.ops()[row].sign();
        }
        let appends_only = self.calls.iter().any(|c| matches!(c.strategy, Strategy::MinAppend | Strategy::MaxAppend));
        if appends_only && chunk.ops().iter().any(|op| op.sign() < 0) {
            internal_err!("aggregate \"{}\" keeps min/max of an append-only input, which retracted a row", self.groups_cf);
        }
        let inputs = self.call_inputs(&chunk)?;
        self.write_values(&groups, &inputs, &chunk)?;
        let old = self.read_groups(&groups)?;
        let mut write = StateWrite::default();
        let mut new_states: Vec<Vec<ScalarValue>> = vec![];
        let mut new_values: Vec<Vec<ScalarValue>> = vec![];
        let mut new_exists = vec![];
        for (g, group) in groups.iter().enumerate() {
            let (states, values) = self.update_group(group, old.get(g), &inputs, chunk.ops())?;
            let rows = old.row_count(g) + group.delta;
            if rows < 0 {
                internal_err!("group of aggregate \"{}\" has a negative row count {rows}", self.groups_cf);
            }
            new_exists.push(rows > 0 || self.is_global());
            let mut state = vec![ScalarValue::Int64(Some(rows))];
            state.extend(states);
            new_states.push(state);
            new_values.push(values);
        }
        let new_out = self.output_batch(&groups, &group_cols, &new_values)?;
        let state_rows = self.state_codec.encode(&columns_of(&new_states, self.state_codec.schema())?)?;
        let out_rows = self.output_codec.encode(new_out.columns())?;
        let mut changes: Vec<(usize, usize, Op)> = vec![];
        for (g, group) in groups.iter().enumerate() {
            if new_exists[g] {
                let state = state_rows.row(g);
                write.put(&self.groups_cf, group.key.clone(), encode_state(state.as_ref(), out_rows.row(g).as_ref()));
            } else {
                write.delete(&self.groups_cf, group.key.clone());
            }
            let old_out = old.output(g);
            if self.spec.emit_on_close.is_some() {
                continue;
            }
            match (old_out, new_exists[g]) {
                (Some(o), true) if o == out_rows.row(g).as_ref() => {}
                (Some(_), true) => {
                    changes.push((0, old.output_index(g), Op::UpdateDelete));
                    changes.push((1, g, Op::UpdateInsert));
                }
                (Some(_), false) => changes.push((0, old.output_index(g), Op::Delete)),
                (None, true) => changes.push((1, g, Op::Insert)),
                (None, false) => {}
            }
        }
        self.store.write_state(write)?;
        let old_out = old.decode_outputs(&self.output_codec)?;
        changelog(&old_out, &new_out, &changes, &self.spec.schema)
    }

    fn call_inputs(&self, chunk: &StreamChunk) -> EngineResult<Vec<CallInput>> {
        let n = chunk.num_rows();
        self.spec
            .calls
            .iter()
            .map(|c| {
                let args = c.expr.expressions().iter().map(|e| e.evaluate(chunk.batch())?.into_array(n)).collect::<Result<Vec<_>, _>>()?;
                let mask = match &c.filter {
                    Some(f) => Some(f.evaluate(chunk.batch())?.into_array(n)?.as_boolean().clone()),
                    None => None,
                };
                Ok(CallInput { args, mask })
            })
            .collect()
    }

    /// Adds the chunk's argument rows of the non-retractable calls to the `values` table.
    fn write_values(&self, groups: &[DirtyGroup], inputs: &[CallInput], chunk: &StreamChunk) -> EngineResult<()> {
        let mut write = StateWrite::default();
        for (ci, (p, input)) in self.calls.iter().zip(inputs).enumerate() {
            let Some(codec) = &p.arg_codec else { continue };
            let rows = codec.encode(&input.args)?;
            for group in groups {
                let prefix = Self::values_prefix(&group.key, ci);
                let mut deltas: HashMap<&[u8], i64> = HashMap::new();
                for &r in &group.rows {
                    if input.passes(r as usize) {
                        *deltas.entry(rows.row(r as usize).data()).or_default() += chunk.ops()[r as usize].sign();
                    }
                }
                for (arg, delta) in deltas {
                    if delta != 0 {
                        let mut key = prefix.clone();
                        key.extend_from_slice(arg);
                        write.add_count(&self.values_cf, key, delta);
                    }
                }
            }
        }
        self.store.write_state(write)?;
        Ok(())
    }

    fn read_groups(&self, groups: &[DirtyGroup]) -> EngineResult<OldGroups> {
        let keys: Vec<&[u8]> = groups.iter().map(|g| g.key.as_slice()).collect();
        let values = self.store.multi_get(&self.groups_cf, &keys)?;
        OldGroups::decode(values, &self.state_codec)
    }

    /// The new accumulator states (retractable calls) and output values of one group.
    fn update_group(&self, group: &DirtyGroup, old_state: Option<Vec<ArrayRef>>, inputs: &[CallInput], ops: &[Op]) -> EngineResult<(Vec<ScalarValue>, Vec<ScalarValue>)> {
        let mut states = vec![];
        let mut values = vec![];
        let mut state_col = 1; // after the row count
        for (ci, (call, p)) in self.spec.calls.iter().zip(&self.calls).enumerate() {
            let prefix = Self::values_prefix(&group.key, ci);
            let value = match p.strategy {
                Strategy::Retract => {
                    let mut acc = call.expr.create_sliding_accumulator()?;
                    let width = acc.state()?.len();
                    if let Some(old) = &old_state {
                        acc.merge_batch(&old[state_col..state_col + width])?;
                    }
                    state_col += width;
                    retract_rows(acc.as_mut(), group, &inputs[ci], ops)?;
                    states.extend(acc.state()?);
                    acc.evaluate()?
                }
                Strategy::MinAppend | Strategy::MaxAppend => {
                    let mut acc = call.expr.create_accumulator()?;
                    if let Some(old) = &old_state {
                        acc.update_batch(&[old[state_col].clone()])?;
                    }
                    state_col += 1;
                    // No argument columns: the empty group of a global aggregate at start.
                    if let Some(arg) = inputs[ci].args.first() {
                        let rows = UInt32Array::from_iter_values(group.rows.iter().copied().filter(|&r| inputs[ci].passes(r as usize)));
                        acc.update_batch(&[take(arg, &rows, None)?])?;
                    }
                    let value = acc.evaluate()?;
                    states.push(value.clone());
                    value
                }
                Strategy::Min => self.extreme(p.arg_codec.as_ref().expect("min keeps values"), &prefix, false)?,
                Strategy::Max => self.extreme(p.arg_codec.as_ref().expect("max keeps values"), &prefix, true)?,
                Strategy::Recompute => self.recompute(call, p.arg_codec.as_ref().expect("kept values"), &prefix)?,
            };
            values.push(value);
        }
        Ok((states, values))
    }

    fn output_batch(&self, groups: &[DirtyGroup], group_cols: &[ArrayRef], values: &[Vec<ScalarValue>]) -> EngineResult<RecordBatch> {
        let firsts = UInt32Array::from_iter_values(groups.iter().map(|g| g.first_row));
        debug_assert!(group_cols.is_empty() || groups.len() == values.len());
        let mut columns: Vec<ArrayRef> = group_cols.iter().map(|c| take(c, &firsts, None)).collect::<Result<_, _>>()?;
        let n_groups = group_cols.len();
        for ci in 0..self.spec.calls.len() {
            let field = self.spec.schema.field(n_groups + ci);
            let col = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values.iter().map(|v| v[ci].clone()))?
            };
            columns.push(cast_to(col, field.data_type())?);
        }
        Ok(RecordBatch::try_new(self.output_codec.schema().clone(), columns)?)
    }

    /// Emits and deletes every group whose window column is below `closed_us`.
    fn close_windows(&mut self, closed_us: i64) -> EngineResult<Option<StreamChunk>> {
        let w = self.spec.emit_on_close.expect("only under emit-on-close");
        let bound = self.window_bound(w, closed_us)?;
        let mut outputs: Vec<Vec<u8>> = vec![];
        self.store.scan_from(&self.groups_cf, None, None, |key, value| {
            if key >= bound.as_slice() {
                return false;
            }
            outputs.push(split_state(value).1.to_vec());
            true
        })?;
        self.store.delete_range(&self.groups_cf, &[], &bound)?;
        self.store.delete_range(&self.values_cf, &[], &bound)?;
        if outputs.is_empty() {
            return Ok(None);
        }
        let batch = self.output_codec.decode(outputs.iter().map(|o| o.as_slice()))?;
        let batch = RecordBatch::try_new(self.spec.schema.clone(), batch.columns().to_vec())?;
        Ok(Some(StreamChunk::inserts(batch)))
    }

    /// Frees the state of the groups below `closed_us` without emitting anything: their rows
    /// stay in the view; only the state that would update them goes. Only when there is such
    /// a group, so that watermarks without closed groups leave no range tombstones behind.
    fn free_windows(&self, w: usize, closed_us: i64) -> EngineResult<()> {
        let bound = self.window_bound(w, closed_us)?;
        let mut below = false;
        self.store.scan_from(&self.groups_cf, None, None, |key, _| {
            below = key < bound.as_slice();
            false
        })?;
        if below {
            self.store.delete_range(&self.groups_cf, &[], &bound)?;
            self.store.delete_range(&self.values_cf, &[], &bound)?;
        }
        Ok(())
    }

    /// The encoding of a group key prefix holding only the window column at `closed_us`: every
    /// key of a closed group sorts below it.
    fn window_bound(&self, w: usize, closed_us: i64) -> EngineResult<Vec<u8>> {
        if closed_us == i64::MAX {
            // The end of the input: above every encoded key (valid values start with 0x01).
            return Ok(vec![0xFF]);
        }
        let field = self.spec.schema.field(w).clone().with_nullable(true);
        let codec = RowCodec::new(Arc::new(Schema::new(vec![field.clone()])))?;
        let micros = ScalarValue::TimestampMicrosecond(Some(closed_us), None).to_array()?;
        let value = datafusion::arrow::compute::cast(&micros, field.data_type())?;
        let rows = codec.encode(&[value])?;
        Ok(rows.row(0).as_ref().to_vec())
    }
}

struct DirtyGroup {
    key: Vec<u8>,
    first_row: u32,
    rows: Vec<u32>,
    delta: i64,
}

struct CallInput {
    args: Vec<ArrayRef>,
    mask: Option<BooleanArray>,
}

impl CallInput {
    fn passes(&self, row: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m.is_valid(row) && m.value(row))
    }
}

/// Feeds the rows of `group` that pass the call's filter to a retractable accumulator.
fn retract_rows(acc: &mut dyn Accumulator, group: &DirtyGroup, input: &CallInput, ops: &[Op]) -> EngineResult<()> {
    let (ins, del): (Vec<u32>, Vec<u32>) = group
        .rows
        .iter()
        .copied()
        .filter(|&r| input.passes(r as usize))
        .partition(|&r| ops[r as usize].sign() > 0);
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

/// The stored rows of the dirty groups that existed before the chunk.
struct OldGroups {
    /// Per dirty group: its index among the found ones.
    found: Vec<Option<usize>>,
    states: Option<RecordBatch>,
    outputs: Vec<Vec<u8>>,
}

impl OldGroups {
    fn decode(values: Vec<Option<Vec<u8>>>, codec: &RowCodec) -> EngineResult<Self> {
        let mut found = vec![];
        let mut states: Vec<Vec<u8>> = vec![];
        let mut outputs = vec![];
        for v in &values {
            found.push(v.as_ref().map(|v| {
                let (state, output) = split_state(v);
                states.push(state.to_vec());
                outputs.push(output.to_vec());
                outputs.len() - 1
            }));
        }
        let states = if states.is_empty() { None } else { Some(codec.decode(states.iter().map(|s| s.as_slice()))?) };
        Ok(Self { found, states, outputs })
    }

    fn get(&self, g: usize) -> Option<Vec<ArrayRef>> {
        let i = self.found[g]?;
        let states = self.states.as_ref().expect("found groups have states");
        Some(states.columns().iter().map(|c| c.slice(i, 1)).collect())
    }

    fn row_count(&self, g: usize) -> i64 {
        self.get(g).map_or(0, |s| s[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0))
    }

    fn output(&self, g: usize) -> Option<&[u8]> {
        self.found[g].map(|i| self.outputs[i].as_slice())
    }

    fn output_index(&self, g: usize) -> usize {
        self.found[g].expect("an old output")
    }

    fn decode_outputs(&self, codec: &RowCodec) -> EngineResult<RecordBatch> {
        Ok(codec.decode(self.outputs.iter().map(|o| o.as_slice()))?)
    }
}

/// `len(state) ‖ state ‖ output`: both parts are rows of fixed schemas.
fn encode_state(state: &[u8], output: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + state.len() + output.len());
    v.extend_from_slice(&u32::try_from(state.len()).expect("state row under 4 GiB").to_le_bytes());
    v.extend_from_slice(state);
    v.extend_from_slice(output);
    v
}

fn split_state(value: &[u8]) -> (&[u8], &[u8]) {
    let len = u32::from_le_bytes(value[..4].try_into().expect("a length prefix")) as usize;
    (&value[4..4 + len], &value[4 + len..])
}

fn cast_to(col: ArrayRef, to: &DataType) -> EngineResult<ArrayRef> {
    if col.data_type() == to {
        return Ok(col);
    }
    Ok(datafusion::arrow::compute::cast(&col, to)?)
}

/// Builds columns from rows of scalars, typed as `schema` says.
fn columns_of(rows: &[Vec<ScalarValue>], schema: &SchemaRef) -> EngineResult<Vec<ArrayRef>> {
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
fn changelog(old: &RecordBatch, new: &RecordBatch, changes: &[(usize, usize, Op)], schema: &SchemaRef) -> EngineResult<StreamChunk> {
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

#[async_trait]
impl Operator for AggregateOperator {
    fn name(&self) -> String {
        let calls: Vec<String> = self.spec.calls.iter().map(|c| c.expr.name().to_string()).collect();
        format!("Aggregate({}; state = \"{}\", \"{}\")", calls.join(", "), self.groups_cf, self.values_cf)
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![(self.groups_cf.clone(), CfKind::Plain), (self.values_cf.clone(), CfKind::Counters)]
    }

    async fn on_start(&mut self, ctx: &mut OperatorContext) -> EngineResult<()> {
        // A global aggregate has one row even over no input, as in SQL.
        if self.is_global() && self.store.multi_get(&self.groups_cf, &[&[]])?[0].is_none() {
            let group = DirtyGroup { key: vec![], first_row: 0, rows: vec![], delta: 0 };
            let inputs: Vec<CallInput> = self.spec.calls.iter().map(|_| CallInput { args: vec![], mask: None }).collect();
            let (states, values) = self.update_group(&group, None, &inputs, &[])?;
            let mut state = vec![ScalarValue::Int64(Some(0))];
            state.extend(states);
            let out = self.output_batch(&[], &[], &[values])?;
            let state_rows = self.state_codec.encode(&columns_of(&[state], self.state_codec.schema())?)?;
            let out_rows = self.output_codec.encode(out.columns())?;
            let mut write = StateWrite::default();
            write.put(&self.groups_cf, vec![], encode_state(state_rows.row(0).as_ref(), out_rows.row(0).as_ref()));
            self.store.write_state(write)?;
            let batch = RecordBatch::try_new(self.spec.schema.clone(), out.columns().to_vec())?;
            ctx.collect(StreamChunk::inserts(batch)).await?;
        }
        Ok(())
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let out = self.apply(chunk)?;
        ctx.collect(out).await
    }

    async fn handle_watermark(&mut self, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        // A watermark passes through only on a group column that is a plain input column.
        let Some(out_col) = self.spec.group_exprs.iter().position(|e| {
            e.downcast_ref::<datafusion::physical_plan::expressions::Column>().is_some_and(|c| c.index() == wm.column)
        }) else {
            return Ok(());
        };
        if self.spec.window_column() == Some(out_col) {
            self.closed_below_us = Some(self.closed_below_us.map_or(wm.time_us, |c| c.max(wm.time_us)));
            if self.spec.emit_on_close.is_some() {
                if let Some(chunk) = self.close_windows(wm.time_us)? {
                    ctx.collect(chunk).await?;
                }
            } else {
                self.free_windows(out_col, wm.time_us)?;
            }
        }
        ctx.outputs.send(Message::Watermark(Watermark { column: out_col, time_us: wm.time_us })).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
