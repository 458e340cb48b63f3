//! `GROUP BY` over a changelog. Every input row adds to or retracts from its group; every
//! group whose output changed emits `U-`/`U+` (or `-`, `+`). The state is two column
//! families, each held decoded in memory in front of RocksDB ([`crate::state`]) and written
//! back once per barrier:
//!
//! - `groups` (plain, a [`KeyedTable`]): group key → the group's row count, the state of its
//!   retractable accumulators (count, sum, avg: the states of DataFusion's sliding
//!   accumulators), and its last output row (to retract it without recomputing).
//! - `values` (counters, a [`GroupedTable`]): group key ‖ call ‖ argument row →
//!   multiplicity, for the aggregates that cannot retract: `min`/`max` read the first or last
//!   live value of the group (the row encoding sorts like the values), and every other
//!   aggregate (`count(DISTINCT)`, `string_agg`, `array_agg`, `approx_count_distinct`, …) is
//!   recomputed from the group's values with a fresh DataFusion accumulator; the quantile
//!   sketch (`approx_percentile`) and `count_min_sketch` keep their counters (bucket or cell ‖
//!   count) instead of values ([`sketches`]).
//!
//! A chunk is applied to all its groups at once: `count`, `sum` and append-only `min`/`max`
//! by the vectorized [`kernels`]; the other calls group by group.
//!
//! With `EMIT ON WINDOW CLOSE` the group key starts with the window column. Nothing is emitted
//! per chunk; when the window column's watermark passes a group, its final row is emitted once
//! (append-only) and its state is deleted by a range delete. Rows behind the watermark are
//! dropped and counted.

mod kernels;
mod rows;
mod sketches;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::{CfKind, RowCodec, StateWrite, Store};

use crate::chunk::nullable_schema;
use crate::sketch::count_min::CountMin;
use crate::sketch::{LogBuckets, SketchCall};
use sketches::count_min_cells;
use crate::state::{Count, GroupedTable, KeyedTable};
use kernels::Kernel;
use rows::{changelog, columns_of, encode_state, retract_rows, split_state, cast_to, CallInput, ChunkGroups, OldGroups};
use crate::{internal_err, Barrier, EngineError, EngineResult, Message, Op, Operator, OperatorContext, StreamChunk, Watermark};

/// One aggregate call of the query, with its `FILTER (WHERE …)` clause.
#[derive(Clone)]
pub struct AggCall {
    pub expr: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// How the state of one call is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// `approx_percentile`: the group's values counted by bucket ([`crate::sketch`]) in the
    /// `values` table, so that its state per group is bounded by the buckets, not the rows.
    Sketch { fraction: f64, buckets: LogBuckets },
    /// `count_min_sketch`: the sketch's counters (cell → count) in the `values` table,
    /// bounded by its cells whatever the distinct values.
    CountMin(CountMin),
}

impl Strategy {
    fn of(call: &AggCall, append_only: bool) -> EngineResult<Self> {
        let name = call.expr.fun().name();
        if name == SketchCall::FUNCTION {
            // The accumulator checks the arguments, with the errors a query gets.
            call.expr.create_accumulator()?;
            let descending = call.expr.order_bys().first().is_some_and(|s| s.options.descending);
            let sketch = SketchCall::of(&call.expr.expressions(), descending);
            let Some((fraction, Some(buckets))) = sketch.map(|s| (s.fraction, LogBuckets::new(s.relative_accuracy))) else {
                internal_err!("approx_percentile's arguments passed its accumulator's checks but are not constants");
            };
            return Ok(Strategy::Sketch { fraction, buckets });
        }
        if name == CountMin::FUNCTION {
            call.expr.create_accumulator()?;
            let Some(shape) = CountMin::call_bounds(&call.expr.expressions()).and_then(|(e, c)| CountMin::for_bounds(e, c)) else {
                internal_err!("count_min_sketch's arguments passed its accumulator's checks but give no sketch");
            };
            return Ok(Strategy::CountMin(shape));
        }
        // An ordered-set aggregate's WITHIN GROUP ordering is its accumulator's to apply,
        // which recomputing from the values does.
        let ordered_set = call.expr.fun().inner().supports_within_group_clause();
        if !call.expr.order_bys().is_empty() && !ordered_set {
            return Err(EngineError::NotSupported(format!(
                "aggregate {}(... ORDER BY ...) is not supported in materialized views yet",
                call.expr.fun().name()
            )));
        }
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
    /// The vectorized kernel that computes the call over all groups of a chunk, if any.
    kernel: Option<Kernel>,
    /// Encodes the call's argument rows (for the `values` table).
    arg_codec: Option<RowCodec>,
    /// `count(DISTINCT x)`: the encoding of a NULL `x` (which is not counted), when the call
    /// is one; its groups' counts are kept in [`AggregateOperator::distinct_counts`].
    distinct_null: Option<Vec<u8>>,
}

pub struct AggregateOperator {
    spec: AggregateSpec,
    calls: Vec<Prepared>,
    store: Store,
    groups: KeyedTable,
    values: GroupedTable<Count>,
    /// Group columns in key order (the window column first under emit-on-close).
    key_order: Vec<usize>,
    key_codec: Option<RowCodec>,
    /// Row count and retractable accumulator states.
    state_codec: RowCodec,
    output_codec: RowCodec,
    /// Under emit-on-close: the window column's watermark and the rows dropped behind it.
    closed_below_us: Option<i64>,
    late_rows: Arc<AtomicU64>,
    /// Per `values` group (group key ‖ call) of a `count(DISTINCT x)` call: how many distinct
    /// non-null values it holds. Counted from the group's values once, when first needed, then
    /// kept up to date as values come and go, so that a chunk never rescans a group. Derived
    /// state only (never written): cleared when the `values` table evicts, rebuilt on demand.
    distinct_counts: HashMap<Box<[u8]>, i64>,
}

impl AggregateOperator {
    /// `append_only`: whether the input only ever inserts ([`crate::plan::StreamNode::append_only`]).
    pub fn new(spec: AggregateSpec, store: Store, tables: AggregateTables, input: &Schema, append_only: bool, late_rows: Arc<AtomicU64>) -> EngineResult<Self> {
        let calls = spec
            .calls
            .iter()
            .map(|c| {
                let strategy = Strategy::of(c, append_only)?;
                let kernel = match strategy {
                    Strategy::Retract => Kernel::for_retract(&c.expr),
                    Strategy::MinAppend | Strategy::MaxAppend => Kernel::for_append_extreme(&c.expr),
                    _ => None,
                };
                let arg_codec = match strategy {
                    Strategy::Retract | Strategy::MinAppend | Strategy::MaxAppend => None,
                    Strategy::Sketch { .. } => Some(RowCodec::new(Arc::new(Schema::new(vec![Field::new("bucket", DataType::Int32, true)])))?),
                    Strategy::CountMin(_) => Some(RowCodec::new(Arc::new(Schema::new(vec![Field::new("cell", DataType::UInt32, true)])))?),
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
                let distinct_null = match (&arg_codec, c.expr.fun().name(), c.expr.is_distinct()) {
                    (Some(codec), "count", true) if c.expr.expressions().len() == 1 => {
                        let null = datafusion::arrow::array::new_null_array(codec.schema().field(0).data_type(), 1);
                        Some(codec.encode(&[null])?.row(0).data().to_vec())
                    }
                    _ => None,
                };
                Ok(Prepared { strategy, kernel, arg_codec, distinct_null })
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
            groups: KeyedTable::new(store.clone(), Arc::from(tables.groups.as_str()))?,
            values: GroupedTable::new(store.clone(), Arc::from(tables.values.as_str()))?,
            store,
            key_order,
            key_codec,
            closed_below_us: None,
            late_rows,
            distinct_counts: HashMap::new(),
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

    /// The chunk's groups: one hash lookup per row, on its encoded group key.
    fn chunk_groups(&self, group_cols: &[ArrayRef], chunk: &StreamChunk) -> EngineResult<ChunkGroups> {
        let n = chunk.num_rows();
        let signs: Vec<i64> = chunk.ops().iter().map(|op| op.sign()).collect();
        let Some(codec) = &self.key_codec else {
            return Ok(ChunkGroups { keys: vec![vec![]], first_row: vec![0], delta: vec![signs.iter().sum()], group_of_row: vec![0; n], signs });
        };
        let ordered: Vec<ArrayRef> = self.key_order.iter().map(|&i| group_cols[i].clone()).collect();
        let rows = codec.encode(&ordered)?;
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(n);
        let (mut first_row, mut delta, mut group_of_row) = (vec![], vec![], Vec::with_capacity(n));
        let mut keys: Vec<&[u8]> = vec![];
        for (row, key) in rows.iter().enumerate() {
            let key = key.data();
            let g = *index.entry(key).or_insert_with(|| {
                keys.push(key);
                first_row.push(row as u32);
                delta.push(0);
                keys.len() - 1
            });
            delta[g] += signs[row];
            group_of_row.push(g);
        }
        let keys = keys.into_iter().map(<[u8]>::to_vec).collect();
        Ok(ChunkGroups { keys, first_row, delta, group_of_row, signs })
    }

    fn values_prefix(group: &[u8], call: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(group.len() + 1);
        p.extend_from_slice(group);
        p.push(u8::try_from(call).expect("at most 255 aggregate calls"));
        p
    }

    /// The first (or last) value with a positive count of a group's call, skipping NULLs.
    fn extreme(&self, codec: &RowCodec, prefix: &[u8], last: bool) -> EngineResult<ScalarValue> {
        let live = self.values.members(prefix).filter(|(_, c)| c.0 > 0);
        let candidates: Box<dyn Iterator<Item = (&[u8], &Count)>> = if last { Box::new(live.rev()) } else { Box::new(live) };
        for (value, _) in candidates {
            let v = ScalarValue::try_from_array(codec.decode([value])?.column(0), 0)?;
            if !v.is_null() {
                return Ok(v);
            }
        }
        Ok(ScalarValue::try_from(codec.schema().field(0).data_type())?)
    }

    /// Recomputes a call from every stored value of its group.
    fn recompute(&self, call: &AggCall, codec: &RowCodec, prefix: &[u8]) -> EngineResult<ScalarValue> {
        let (rows, counts): (Vec<&[u8]>, Vec<i64>) = self.values.members(prefix).filter(|(_, c)| c.0 > 0).map(|(v, c)| (v, c.0)).unzip();
        let mut acc = call.expr.create_accumulator()?;
        if !rows.is_empty() {
            let batch = codec.decode(rows)?;
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
        let groups = self.chunk_groups(&group_cols, &chunk)?;
        if groups.len() == 0 {
            return Ok(StreamChunk::inserts(RecordBatch::new_empty(self.spec.schema.clone())));
        }
        let appends_only = self.calls.iter().any(|c| matches!(c.strategy, Strategy::MinAppend | Strategy::MaxAppend));
        if appends_only && groups.signs.iter().any(|&s| s < 0) {
            internal_err!("aggregate \"{}\" keeps min/max of an append-only input, which retracted a row", self.groups.cf());
        }
        let inputs = self.call_inputs(&chunk)?;
        self.update_values(&groups, &inputs)?;
        let keys: Vec<&[u8]> = groups.keys.iter().map(Vec::as_slice).collect();
        self.groups.load(&keys)?;
        let old = OldGroups::decode(keys.iter().map(|k| self.groups.get(k)), &self.state_codec)?;
        let old_rows = old.aligned(0)?;
        // A new group's entry is null (its slot's value is arbitrary): it starts at 0 rows.
        let rows: Vec<i64> = match &old_rows {
            Some(c) => c.as_primitive::<datafusion::arrow::datatypes::Int64Type>().iter().zip(&groups.delta).map(|(old, d)| old.unwrap_or(0) + d).collect(),
            None => groups.delta.clone(),
        };
        if let Some(r) = rows.iter().find(|&&r| r < 0) {
            internal_err!("group of aggregate \"{}\" has a negative row count {r}", self.groups.cf());
        }
        let new_exists: Vec<bool> = rows.iter().map(|&r| r > 0 || self.is_global()).collect();
        let (states, values) = self.compute_calls(&groups, &old, &inputs, chunk.ops())?;
        let mut state_cols: Vec<ArrayRef> = vec![Arc::new(datafusion::arrow::array::Int64Array::from(rows))];
        state_cols.extend(states);
        let state_cols = state_cols
            .into_iter()
            .zip(self.state_codec.schema().fields())
            .map(|(c, f)| cast_to(c, f.data_type()))
            .collect::<EngineResult<Vec<_>>>()?;
        let new_out = self.output_batch(&groups, &group_cols, values)?;
        let state_rows = self.state_codec.encode(&state_cols)?;
        let out_rows = self.output_codec.encode(new_out.columns())?;
        let mut changes: Vec<(usize, usize, Op)> = vec![];
        for (g, key) in groups.keys.iter().enumerate() {
            let value = new_exists[g].then(|| encode_state(state_rows.row(g).as_ref(), out_rows.row(g).as_ref()));
            self.groups.put(key, value);
            if self.spec.emit_on_close.is_some() {
                continue;
            }
            match (old.output(g), new_exists[g]) {
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
        let old_out = old.decode_outputs(&self.output_codec)?;
        changelog(&old_out, &new_out, &changes, &self.spec.schema)
    }

    fn call_inputs(&self, chunk: &StreamChunk) -> EngineResult<Vec<CallInput>> {
        let n = chunk.num_rows();
        self.spec
            .calls
            .iter()
            .zip(&self.calls)
            .map(|(c, p)| {
                let mut args = c.expr.expressions().iter().map(|e| e.evaluate(chunk.batch())?.into_array(n)).collect::<Result<Vec<_>, _>>()?;
                if let Strategy::Sketch { buckets, .. } = p.strategy {
                    // The sketch keeps buckets, not values: the argument becomes its bucket.
                    let values = datafusion::arrow::compute::cast(&args[0], &DataType::Float64)?;
                    args = vec![Arc::new(buckets.keys(values.as_primitive()))];
                }
                if let Strategy::CountMin(shape) = p.strategy {
                    // The sketch keeps counters: the argument becomes its cell in each row.
                    args = count_min_cells(&args[0], shape)?;
                }
                let mask = match &c.filter {
                    Some(f) => Some(f.evaluate(chunk.batch())?.into_array(n)?.as_boolean().clone()),
                    None => None,
                };
                Ok(CallInput { args, mask })
            })
            .collect()
    }

    /// Adds the chunk's argument rows of the calls that keep their values to the `values`
    /// table (in memory; written back at the next barrier), and keeps the distinct counts of
    /// `count(DISTINCT x)` calls up to date.
    fn update_values(&mut self, groups: &ChunkGroups, inputs: &[CallInput]) -> EngineResult<()> {
        for (ci, (p, input)) in self.calls.iter().zip(inputs).enumerate() {
            let Some(codec) = &p.arg_codec else { continue };
            let prefixes: Vec<Vec<u8>> = groups.keys.iter().map(|k| Self::values_prefix(k, ci)).collect();
            self.values.load(prefixes.iter().map(Vec::as_slice))?;
            if let Strategy::CountMin(_) = p.strategy {
                // One cell per sketch row: each column is a row's cells.
                for cells in &input.args {
                    let rows = codec.encode(std::slice::from_ref(cells))?;
                    for (row, &g) in groups.group_of_row.iter().enumerate() {
                        if input.passes(row) && cells.is_valid(row) {
                            self.values.update(&prefixes[g], rows.row(row).data(), |c| c.0 += groups.signs[row]);
                        }
                    }
                }
                continue;
            }
            let rows = codec.encode(&input.args)?;
            // Per group: the change in its number of distinct non-null values.
            let mut distinct_delta = vec![0i64; groups.len()];
            for (row, &g) in groups.group_of_row.iter().enumerate() {
                if !input.passes(row) {
                    continue;
                }
                let sign = groups.signs[row];
                let (mut before, mut after) = (0, 0);
                self.values.update(&prefixes[g], rows.row(row).data(), |c| {
                    before = c.0;
                    c.0 += sign;
                    after = c.0;
                });
                if p.distinct_null.is_some() && !input.args[0].is_null(row) {
                    distinct_delta[g] += i64::from(after > 0) - i64::from(before > 0);
                }
            }
            let Some(null) = &p.distinct_null else { continue };
            for (prefix, delta) in prefixes.iter().zip(distinct_delta) {
                match self.distinct_counts.get_mut(prefix.as_slice()) {
                    Some(count) => *count += delta,
                    None => {
                        let count = self.values.members(prefix).filter(|(v, c)| c.0 > 0 && *v != null.as_slice()).count();
                        self.distinct_counts.insert(Box::from(prefix.as_slice()), count as i64);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every call's new state columns (the retractable and append-only calls', in order) and
    /// value column, over all the chunk's groups.
    fn compute_calls(&self, groups: &ChunkGroups, old: &OldGroups, inputs: &[CallInput], ops: &[Op]) -> EngineResult<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let mut states: Vec<ArrayRef> = vec![];
        let mut values: Vec<ArrayRef> = vec![];
        let mut rows_of_groups: Option<Vec<Vec<u32>>> = None;
        let mut state_col = 1; // after the row count
        for (ci, (call, p)) in self.spec.calls.iter().zip(&self.calls).enumerate() {
            let width = match p.strategy {
                Strategy::Retract => call.expr.create_sliding_accumulator()?.state()?.len(),
                Strategy::MinAppend | Strategy::MaxAppend => 1,
                _ => 0,
            };
            let old_states = (state_col..state_col + width).map(|c| old.aligned(c)).collect::<EngineResult<Option<Vec<_>>>>()?;
            if let Some(kernel) = &p.kernel {
                let input = &inputs[ci];
                let result = kernels::compute(kernel, &call.expr, &groups.kernel_rows(), &input.args, input.mask.as_ref(), old_states.as_deref())?;
                states.extend(result.states);
                values.push(result.value);
            } else {
                let rows_of_groups = rows_of_groups.get_or_insert_with(|| groups.rows_of_groups());
                let mut group_states: Vec<Vec<ScalarValue>> = vec![];
                let mut group_values = vec![];
                for (g, key) in groups.keys.iter().enumerate() {
                    let old_state = old.get(g).map(|s| s[state_col..state_col + width].to_vec());
                    let (state, value) = self.update_group(ci, key, &rows_of_groups[g], old_state, &inputs[ci], ops)?;
                    group_states.push(state);
                    group_values.push(value);
                }
                for j in 0..width {
                    states.push(ScalarValue::iter_to_array(group_states.iter().map(|s| s[j].clone()))?);
                }
                values.push(ScalarValue::iter_to_array(group_values)?);
            }
            state_col += width;
        }
        Ok((states, values))
    }

    /// The new state (retractable and append-only calls) and value of call `ci` in one group.
    fn update_group(&self, ci: usize, key: &[u8], rows: &[u32], old_state: Option<Vec<ArrayRef>>, input: &CallInput, ops: &[Op]) -> EngineResult<(Vec<ScalarValue>, ScalarValue)> {
        let call = &self.spec.calls[ci];
        let p = &self.calls[ci];
        let prefix = Self::values_prefix(key, ci);
        Ok(match p.strategy {
            Strategy::Retract => {
                let mut acc = call.expr.create_sliding_accumulator()?;
                if let Some(old) = &old_state {
                    acc.merge_batch(old)?;
                }
                retract_rows(acc.as_mut(), rows, input, ops)?;
                (acc.state()?, acc.evaluate()?)
            }
            Strategy::MinAppend | Strategy::MaxAppend => {
                let mut acc = call.expr.create_accumulator()?;
                if let Some(old) = &old_state {
                    acc.update_batch(&old[..1])?;
                }
                // No argument columns: the empty group of a global aggregate at start.
                if let Some(arg) = input.args.first() {
                    let rows = UInt32Array::from_iter_values(rows.iter().copied().filter(|&r| input.passes(r as usize)));
                    acc.update_batch(&[take(arg, &rows, None)?])?;
                }
                let value = acc.evaluate()?;
                (vec![value.clone()], value)
            }
            Strategy::Min => (vec![], self.extreme(p.arg_codec.as_ref().expect("min keeps values"), &prefix, false)?),
            Strategy::Max => (vec![], self.extreme(p.arg_codec.as_ref().expect("max keeps values"), &prefix, true)?),
            Strategy::Recompute if p.distinct_null.is_some() => (vec![], ScalarValue::Int64(Some(self.distinct_counts.get(prefix.as_slice()).copied().unwrap_or(0)))),
            Strategy::Recompute => (vec![], self.recompute(call, p.arg_codec.as_ref().expect("kept values"), &prefix)?),
            Strategy::Sketch { fraction, buckets } => (vec![], self.sketch_quantile(p.arg_codec.as_ref().expect("kept buckets"), &prefix, fraction, buckets)?),
            Strategy::CountMin(shape) => (vec![], self.count_min(p.arg_codec.as_ref().expect("kept cells"), &prefix, shape)?),
        })
    }

    fn output_batch(&self, groups: &ChunkGroups, group_cols: &[ArrayRef], values: Vec<ArrayRef>) -> EngineResult<RecordBatch> {
        let firsts = UInt32Array::from_iter_values(groups.first_row.iter().copied());
        let mut columns: Vec<ArrayRef> = group_cols.iter().map(|c| take(c, &firsts, None)).collect::<Result<_, _>>()?;
        let n_groups = group_cols.len();
        for (ci, col) in values.into_iter().enumerate() {
            columns.push(cast_to(col, self.spec.schema.field(n_groups + ci).data_type())?);
        }
        Ok(RecordBatch::try_new(self.output_codec.schema().clone(), columns)?)
    }

    /// Writes both tables' changes since the last write-back as one batch, then evicts what
    /// the state cache cannot hold.
    fn write_back(&mut self) -> EngineResult<()> {
        let mut write = StateWrite::default();
        self.groups.flush(&mut write);
        self.values.flush(&mut write);
        if !write.is_empty() {
            self.store.write_state(write)?;
        }
        self.groups.evict_to_budget();
        let held = self.values.held_bytes();
        self.values.evict_to_budget();
        if self.values.held_bytes() < held {
            // Counts are kept for loaded groups only; they are recounted when next needed.
            self.distinct_counts.clear();
        }
        Ok(())
    }

    /// Forgets the state of every group below `bound` (an encoded window-column prefix), in
    /// memory and in the store.
    fn forget_below(&mut self, bound: &[u8]) -> EngineResult<()> {
        if self.groups.forget_below(bound) && self.store_holds_below(self.groups.cf().clone(), bound)? {
            self.store.delete_range(self.groups.cf(), &[], bound)?;
        }
        if self.values.forget_below(bound) && self.store_holds_below(self.values.cf().clone(), bound)? {
            self.store.delete_range(self.values.cf(), &[], bound)?;
        }
        if !self.distinct_counts.is_empty() {
            self.distinct_counts.retain(|prefix, _| prefix.as_ref() >= bound);
        }
        Ok(())
    }

    /// Whether column family `cf` holds a key below `bound`: a range delete is written only
    /// then, so that watermarks without closed groups leave no range tombstones behind.
    fn store_holds_below(&self, cf: Arc<str>, bound: &[u8]) -> EngineResult<bool> {
        let mut below = false;
        self.store.scan_from(&cf, None, None, |key, _| {
            below = key < bound;
            false
        })?;
        Ok(below)
    }

    /// Emits and deletes every group whose window column is below `closed_us`.
    fn close_windows(&mut self, closed_us: i64) -> EngineResult<Option<StreamChunk>> {
        let w = self.spec.emit_on_close.expect("only under emit-on-close");
        let bound = self.window_bound(w, closed_us)?;
        let mut outputs: Vec<Vec<u8>> = vec![];
        if self.groups.is_complete() {
            outputs.extend(self.groups.values_below(&bound).map(|(_, v)| split_state(v).1.to_vec()));
        } else {
            // Some groups are only in the store: write the changed ones there and read them all.
            self.write_back()?;
            self.store.scan_from(self.groups.cf(), None, None, |key, value| {
                if key >= bound.as_slice() {
                    return false;
                }
                outputs.push(split_state(value).1.to_vec());
                true
            })?;
        }
        self.forget_below(&bound)?;
        if outputs.is_empty() {
            return Ok(None);
        }
        let batch = self.output_codec.decode(outputs.iter().map(|o| o.as_slice()))?;
        let batch = RecordBatch::try_new(self.spec.schema.clone(), batch.columns().to_vec())?;
        Ok(Some(StreamChunk::inserts(batch)))
    }

    /// Frees the state of the groups below `closed_us` without emitting anything: their rows
    /// stay in the view; only the state that would update them goes.
    fn free_windows(&mut self, w: usize, closed_us: i64) -> EngineResult<()> {
        let bound = self.window_bound(w, closed_us)?;
        self.forget_below(&bound)
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

#[async_trait]
impl Operator for AggregateOperator {
    fn name(&self) -> String {
        let calls: Vec<String> = self.spec.calls.iter().map(|c| c.expr.name().to_string()).collect();
        format!("Aggregate({}; state = \"{}\", \"{}\")", calls.join(", "), self.groups.cf(), self.values.cf())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![(self.groups.cf().clone(), CfKind::Plain), (self.values.cf().clone(), CfKind::Counters)]
    }

    async fn on_start(&mut self, ctx: &mut OperatorContext) -> EngineResult<()> {
        // A global aggregate has one row even over no input, as in SQL.
        if !self.is_global() {
            return Ok(());
        }
        self.groups.load(&[&[]])?;
        if self.groups.get(&[]).is_some() {
            return Ok(());
        }
        let mut state = vec![ScalarValue::Int64(Some(0))];
        let mut values = vec![];
        for ci in 0..self.calls.len() {
            let input = CallInput { args: vec![], mask: None };
            let (s, v) = self.update_group(ci, &[], &[], None, &input, &[])?;
            state.extend(s);
            values.push(v.to_array()?);
        }
        let groups = ChunkGroups { keys: vec![vec![]], first_row: vec![0], delta: vec![0], group_of_row: vec![], signs: vec![] };
        let out = self.output_batch(&groups, &[], values)?;
        let state_rows = self.state_codec.encode(&columns_of(&[state], self.state_codec.schema())?)?;
        let out_rows = self.output_codec.encode(out.columns())?;
        self.groups.put(&[], Some(encode_state(state_rows.row(0).as_ref(), out_rows.row(0).as_ref())));
        let batch = RecordBatch::try_new(self.spec.schema.clone(), out.columns().to_vec())?;
        ctx.collect(StreamChunk::inserts(batch)).await
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let out = self.apply(chunk)?;
        // Changes cannot be evicted before they are written: when barriers are slow to come,
        // write them back early (still before the next barrier, so its snapshot is exact).
        if self.groups.held_bytes() + self.values.held_bytes() > self.store.operator_cache().limit_bytes() {
            self.write_back()?;
        }
        ctx.collect(out).await
    }

    /// Writes the changes since the last barrier (one batch) and evicts what the state cache
    /// cannot hold.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.write_back()
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

