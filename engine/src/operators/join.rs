//! Equi-join of two changelog streams (inner, left, right, full outer), with an optional extra
//! condition on the joined row. Each side's rows live in RocksDB, keyed by join key then row:
//!
//! `side table`: key bytes ‖ row bytes → (multiplicity: i64, degree: i64)
//!
//! The degree is how many rows of the other side the row currently joins with. An outer side
//! needs it: a preserved row whose degree falls to zero is emitted padded with NULLs, and the
//! padded row is retracted when its degree rises again.
//!
//! A change on one side looks up the other side's rows with the same key (a prefix scan),
//! evaluates the extra condition, emits the joined changes, adjusts the degrees of the matched
//! rows, and stores itself. A row with a NULL key never matches.
//!
//! An inner join whose condition bounds one side's time by the other's (an interval join,
//! `join_expiry.rs`) also keeps, per such side, an index by time:
//!
//! `side table_by_time`: time (8 bytes) ‖ key bytes ‖ row bytes → ()
//!
//! and deletes the rows the other side's watermark has passed (they can never match again).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::cmp::gt_eq;
use datafusion::arrow::compute::and;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::expressions::Column;
use openclaw_storage::{CfKind, RowCodec, Rows, StateWrite, Store};

use super::join_output::{concat_columns, null_is_false, take_rows, OutputRows, Pairs};
use super::join_expiry::{derived_watermarks, expiries, time_key, DerivedWatermark, Expiry};
use crate::chunk::nullable_schema;
use crate::state::{GroupedTable, StateValue};
use crate::{internal_err, Barrier, EngineResult, Message, Operator, OperatorContext, StreamChunk, Watermark};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    /// Rows of the given side (0 left, 1 right) that have a match, once each.
    Semi(usize),
    /// Rows of the given side that have no match.
    Anti(usize),
    /// Every row of the given side once, with a boolean column after its own: whether it has
    /// a match (the mark join that `IN` and `EXISTS` under `OR` plan to). A match arriving or
    /// leaving flips the mark: the row is retracted and inserted again.
    Mark(usize),
}

impl JoinKind {
    /// Whether rows of `side` (0 left, 1 right) without a match appear padded with NULLs.
    fn preserves(self, side: usize) -> bool {
        matches!((self, side), (JoinKind::Left | JoinKind::Full, 0) | (JoinKind::Right | JoinKind::Full, 1))
    }

    /// For semi and anti joins: whether a row of the output side with `degree` matches is in
    /// the output.
    pub(super) fn filters(self, side: usize) -> Option<fn(i64) -> bool> {
        match self {
            JoinKind::Semi(s) if s == side => Some(|d| d > 0),
            JoinKind::Anti(s) if s == side => Some(|d| d == 0),
            _ => None,
        }
    }

    /// Whether rows of `side` are output with a mark column.
    pub(super) fn marks(self, side: usize) -> bool {
        self == JoinKind::Mark(side)
    }

    fn tracks_degree(self, side: usize) -> bool {
        self.preserves(side) || self.filters(side).is_some() || self.marks(side)
    }

    pub(super) fn emits_joined(self) -> bool {
        !matches!(self, JoinKind::Semi(_) | JoinKind::Anti(_) | JoinKind::Mark(_))
    }
}

#[derive(Clone)]
pub struct JoinSpec {
    pub kind: JoinKind,
    /// Key expressions over each side's rows, pairwise equal in type.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// Extra condition over the joined row (left columns, then right columns).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Left columns, then right columns.
    pub schema: SchemaRef,
    pub input_schemas: [SchemaRef; 2],
    /// Whether a NULL in a key equals a NULL (as `EXCEPT` and `INTERSECT` compare rows);
    /// otherwise a row with a NULL key never matches and is not stored.
    pub nulls_equal: bool,
}

impl JoinSpec {
    /// Pairs of (left, right) input columns that are equi-join keys as plain columns.
    pub fn watermark_pairs(&self) -> Vec<(usize, usize)> {
        let col = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().map(|c| c.index());
        self.keys[0].iter().zip(&self.keys[1]).filter_map(|(l, r)| Some((col(l)?, col(r)?))).collect()
    }

    /// The output columns that carry the watermark of key pair (`l`, `r`): a column of a side
    /// that is never padded with NULLs.
    pub fn watermark_outputs(&self, l: usize, r: usize, left_width: usize) -> Vec<usize> {
        match self.kind {
            JoinKind::Semi(0) | JoinKind::Anti(0) | JoinKind::Mark(0) => vec![l],
            JoinKind::Semi(_) | JoinKind::Anti(_) | JoinKind::Mark(_) => vec![r],
            kind => {
                let mut out = vec![];
                if !kind.preserves(1) {
                    out.push(l);
                }
                if !kind.preserves(0) {
                    out.push(left_width + r);
                }
                out
            }
        }
    }
}

impl JoinSpec {
    /// For an inner join: the output columns its time bounds put above a column of each side
    /// (`join_expiry::derived_watermarks`), besides those of key pairs.
    pub fn derived_watermarks(&self) -> Vec<DerivedWatermark> {
        if self.kind != JoinKind::Inner {
            return vec![];
        }
        let left_width = self.input_schemas[0].fields().len();
        let from_pairs: Vec<usize> = self.watermark_pairs().into_iter().flat_map(|(l, r)| self.watermark_outputs(l, r, left_width)).collect();
        let mut derived = derived_watermarks(self.filter.as_ref(), left_width);
        derived.retain(|d| !from_pairs.contains(&d.output));
        derived
    }
}

/// One side's stored rows.
struct Side {
    /// Join key ‖ row → [`Entry`], held decoded in memory by join key.
    table: GroupedTable<Entry>,
    rows: RowCodec,
    /// How the side's rows expire, and the index that finds them by time.
    expiry: Option<(Expiry, Arc<str>)>,
}

pub struct JoinOperator {
    spec: JoinSpec,
    store: Store,
    sides: [Side; 2],
    key_codec: RowCodec,
    /// Left columns then right columns: what the extra condition reads.
    both_schema: SchemaRef,
    /// Per side, per input column: its latest watermark.
    watermarks: [HashMap<usize, i64>; 2],
    /// Which inputs said they are idle ([`Message::Idle`]) and have sent nothing since.
    idle: [bool; 2],
    /// Per side, the expiry time below which its rows can never match again: they no longer
    /// match (a probe skips them) and are deleted at the next barrier.
    expired_below: [i64; 2],
    /// Per side, the expiry time below which rows have been deleted from the store.
    deleted_below: [i64; 2],
    /// Per side, the rows changed since the last barrier whose expiry index entry is still to
    /// write: (expiry time, join key ‖ row) → length of the join key.
    unindexed: [BTreeMap<(i64, Box<[u8]>), usize>; 2],
    /// Bytes `unindexed` holds, counted with the cache when deciding to write back early.
    unindexed_bytes: usize,
    /// Output columns whose watermarks the condition's time bounds give.
    derived: Vec<DerivedWatermark>,
}

/// Multiplicity and degree of one stored row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    count: i64,
    degree: i64,
}

impl StateValue for Entry {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.count.to_le_bytes().to_vec();
        v.extend_from_slice(&self.degree.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Self {
        let count = i64::from_le_bytes(v[..8].try_into().expect("16-byte join entry"));
        let degree = i64::from_le_bytes(v[8..16].try_into().expect("16-byte join entry"));
        Self { count, degree }
    }

    fn is_absent(&self) -> bool {
        self.count == 0
    }
}

/// Bytes an entry of `JoinOperator::unindexed` costs besides its key: its B-tree slot, the
/// boxed key's allocation, the time and the key length.
const UNINDEXED_OVERHEAD_BYTES: usize = 80;

/// The value of an expiry index entry: the length of the join key inside the indexed key
/// (`time ‖ join key ‖ row`), so that expiry finds the row's group in the cache. Entries
/// written before it existed are empty.
fn index_value(key_len: usize) -> Vec<u8> {
    (key_len as u32).to_le_bytes().to_vec()
}

impl JoinOperator {
    pub fn new(spec: JoinSpec, store: Store, tables: [String; 2]) -> EngineResult<Self> {
        let key_fields: Vec<Field> = spec.keys[0]
            .iter()
            .enumerate()
            .map(|(i, e)| Ok(Field::new(format!("k{i}"), e.data_type(&spec.input_schemas[0])?, true)))
            .collect::<EngineResult<_>>()?;
        let left_width = spec.input_schemas[0].fields().len();
        let expiries = match spec.kind {
            JoinKind::Inner => expiries(spec.filter.as_ref(), &spec.watermark_pairs(), &spec.input_schemas, left_width),
            _ => [None, None],
        };
        let side = |i: usize| -> EngineResult<Side> {
            store.create_cf(&tables[i], CfKind::Plain)?;
            let expiry = match expiries[i] {
                Some(e) => {
                    let index = format!("{}_by_time", tables[i]);
                    store.create_cf(&index, CfKind::Plain)?;
                    Some((e, Arc::from(index.as_str())))
                }
                None => None,
            };
            let table = GroupedTable::new(store.clone(), Arc::from(tables[i].as_str()))?;
            Ok(Side { table, rows: RowCodec::new(nullable_schema(&spec.input_schemas[i]))?, expiry })
        };
        let sides = [side(0)?, side(1)?];
        let both: Vec<Field> = spec.input_schemas.iter().flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone().with_nullable(true))).collect();
        let both_schema = Arc::new(Schema::new(both));
        Ok(Self {
            both_schema,
            key_codec: RowCodec::new(Arc::new(Schema::new(key_fields)))?,
            sides,
            derived: spec.derived_watermarks(),
            spec,
            store,
            watermarks: Default::default(),
            idle: [false; 2],
            expired_below: [i64::MIN; 2],
            deleted_below: [i64::MIN; 2],
            unindexed: Default::default(),
            unindexed_bytes: 0,
        })
    }

    /// The join key of each row, and which rows have a NULL in it (they never match).
    fn keys(&self, side: usize, batch: &RecordBatch) -> EngineResult<(Rows, Vec<bool>)> {
        let n = batch.num_rows();
        let cols = self.spec.keys[side]
            .iter()
            .zip(self.key_codec.schema().fields())
            .map(|(e, f)| {
                let c = e.evaluate(batch)?.into_array(n)?;
                Ok(if c.data_type() == f.data_type() { c } else { datafusion::arrow::compute::cast(&c, f.data_type())? })
            })
            .collect::<EngineResult<Vec<ArrayRef>>>()?;
        let nulls = cols.iter().fold(None, |acc: Option<NullBuffer>, c| NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref()));
        let has_null = match nulls {
            Some(nulls) if !self.spec.nulls_equal => nulls.iter().map(|valid| !valid).collect(),
            _ => vec![false; n],
        };
        Ok((self.key_codec.encode(&cols)?, has_null))
    }

    /// Applies one chunk of `side`: probes the other side's rows of each key (one hash lookup
    /// per row, in memory), evaluates the extra condition once over every candidate pair,
    /// then walks the rows in order for degrees and outer padding, and assembles the output
    /// with one `interleave` per column.
    fn apply(&mut self, side: usize, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let other = 1 - side;
        let batch = chunk.batch();
        let (keys, null_key) = self.keys(side, batch)?;
        let own_rows = self.sides[side].rows.encode(batch.columns())?;
        let times = self.expiry_times(side, batch)?;
        let live: Vec<&[u8]> = (0..batch.num_rows()).filter(|&i| !null_key[i]).map(|i| keys.row(i).data()).collect();
        self.sides[other].table.load(live.iter().copied())?;
        self.sides[side].table.load(live.iter().copied())?;
        let pairs = self.probe(side, &keys, &null_key, batch)?;
        let kind = self.spec.kind;
        let mut out = OutputRows::default();
        let mut p = 0;
        for i in 0..batch.num_rows() {
            let sign = chunk.ops()[i].sign();
            let mut matched_total = 0i64;
            let key = keys.row(i).data();
            while p < pairs.probe_rows.len() && pairs.probe_rows[p] as usize == i {
                if pairs.passed[p] {
                    matched_total += pairs.counts[p];
                    self.emit_match(side, key, &pairs, p, sign, &mut out);
                }
                p += 1;
            }
            if kind.preserves(side) && matched_total == 0 {
                out.push_this_padded(i, 1, sign);
            }
            if kind.filters(side).is_some_and(|shown| shown(matched_total)) {
                out.push_plain(i, 1, sign);
            }
            if kind.marks(side) {
                out.push_marked(i, 1, sign, matched_total > 0);
            }
            if null_key[i] {
                continue; // it can never match, so it is not stored
            }
            let time = times.as_ref().and_then(|t| t[i]);
            self.store_row(side, key, own_rows.row(i).data(), time, sign, matched_total)?;
        }
        out.assemble(side, &self.spec, batch, &pairs)
    }

    /// Emits what candidate pair `p` (which passed the condition) produces for a row of
    /// `side` with `sign`, and adjusts the other row's degree.
    fn emit_match(&mut self, side: usize, key: &[u8], pairs: &Pairs, p: usize, sign: i64, out: &mut OutputRows) {
        let other = 1 - side;
        let kind = self.spec.kind;
        let count = pairs.counts[p];
        if !kind.tracks_degree(other) {
            if kind.emits_joined() {
                out.push_joined(p, count, sign);
            }
            return;
        }
        let member = &pairs.members[p];
        let degree = self.sides[other].table.get(key, member).unwrap_or_default().degree;
        let next = degree + sign;
        // A padded row leaves before its first match arrives, and comes back after its last
        // match left.
        let pads = kind.preserves(other);
        if pads && degree == 0 && next > 0 {
            out.push_other_padded(p, count, -1);
        }
        if kind.emits_joined() {
            out.push_joined(p, count, sign);
        }
        if pads && degree > 0 && next == 0 {
            out.push_other_padded(p, count, 1);
        }
        if let Some(shown) = kind.filters(other) {
            match (shown(degree), shown(next)) {
                (false, true) => out.push_plain(p, count, 1),
                (true, false) => out.push_plain(p, count, -1),
                _ => {}
            }
        }
        if kind.marks(other) && (degree > 0) != (next > 0) {
            // Its first match came or its last left: the row again with the other mark.
            out.push_marked(p, count, -1, degree > 0);
            out.push_marked(p, count, 1, next > 0);
        }
        self.sides[other].table.update(key, member, |e| e.degree = next);
    }

    /// Adds `sign` to the stored multiplicity of a row of `side`, which matched
    /// `matched_total` rows of the other side.
    fn store_row(&mut self, side: usize, key: &[u8], row: &[u8], time: Option<i64>, sign: i64, matched_total: i64) -> EngineResult<()> {
        let expired = time.is_some_and(|t| t < self.expired_below[side]);
        if expired && sign > 0 {
            // The other side's watermark has passed it already (that side ran ahead): it
            // joined what is stored now and can never match a later row, so it is not kept.
            return Ok(());
        }
        let mut negative = false;
        self.sides[side].table.update(key, row, |e| {
            e.count += sign;
            e.degree = matched_total;
            if e.count < 0 {
                negative = true;
                e.count = 0;
            }
        });
        if negative && !expired {
            internal_err!("join state \"{}\" deleted a row it does not hold", self.sides[side].table.cf());
        }
        // The deletion of a row that expired (the other side's watermark passed it): late,
        // like a late row of a window, and nothing is stored for it.
        if let (Some(_), Some(t)) = (&self.sides[side].expiry, time) {
            let mut full = key.to_vec();
            full.extend_from_slice(row);
            let bytes = full.len() + UNINDEXED_OVERHEAD_BYTES;
            if self.unindexed[side].insert((t, full.into()), key.len()).is_none() {
                self.unindexed_bytes += bytes;
            }
        }
        Ok(())
    }

    /// Every (row of `side`, stored row of the other side) pair with equal keys, in row
    /// order, with the other rows decoded in one batch and the extra condition evaluated once.
    fn probe(&self, side: usize, keys: &Rows, null_key: &[bool], batch: &RecordBatch) -> EngineResult<Pairs> {
        let other = 1 - side;
        let keep_members = self.spec.kind.tracks_degree(other);
        let mut probe_rows: Vec<u32> = vec![];
        let mut counts: Vec<i64> = vec![];
        let mut members: Vec<Box<[u8]>> = vec![];
        let mut candidates: Vec<&[u8]> = vec![];
        let table = &self.sides[other].table;
        for (i, &null) in null_key.iter().enumerate() {
            if null {
                continue;
            }
            for (member, entry) in table.members(keys.row(i).data()).filter(|(_, e)| e.count > 0) {
                probe_rows.push(i as u32);
                counts.push(entry.count);
                candidates.push(member);
                if keep_members {
                    members.push(Box::from(member));
                }
            }
        }
        let decoded = self.sides[other].rows.decode(candidates)?;
        let others = RecordBatch::try_new(self.spec.input_schemas[other].clone(), decoded.columns().to_vec())?;
        let probes = take_rows(batch, &UInt32Array::from(probe_rows.clone()))?;
        let (l, r) = if side == 0 { (&probes, &others) } else { (&others, &probes) };
        let joined = concat_columns(l, r, &self.both_schema)?;
        let mut passed = match &self.spec.filter {
            None => BooleanArray::from(vec![true; joined.num_rows()]),
            Some(f) => null_is_false(f.evaluate(&joined)?.into_array(joined.num_rows())?.as_boolean()),
        };
        if let Some(live) = self.unexpired(other, &others)? {
            passed = and(&passed, &live)?;
        }
        let passed = passed.values().iter().collect();
        Ok(Pairs { probe_rows, counts, members, others, joined, passed })
    }

    /// For a side whose rows expire: which of its `rows` have not expired yet (expired rows
    /// wait in state for the next barrier, but never match).
    fn unexpired(&self, side: usize, rows: &RecordBatch) -> EngineResult<Option<BooleanArray>> {
        if self.expired_below[side] == i64::MIN {
            return Ok(None);
        }
        let Some(times) = self.expiry_column(side, rows)? else { return Ok(None) };
        let bound = TimestampMicrosecondArray::new_scalar(self.expired_below[side]);
        Ok(Some(null_is_false(&gt_eq(&times, &bound)?)))
    }
}

#[async_trait]
impl Operator for JoinOperator {
    fn name(&self) -> String {
        format!("Join({:?}; state = \"{}\", \"{}\")", self.spec.kind, self.sides[0].table.cf(), self.sides[1].table.cf())
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        let indexes = self.sides.iter().filter_map(|s| s.expiry.as_ref().map(|(_, index)| (index.clone(), CfKind::Plain)));
        self.sides.iter().map(|s| (s.table.cf().clone(), CfKind::Plain)).chain(indexes).collect()
    }

    /// Writes both sides' changes since the last barrier (one batch), deletes the rows the
    /// watermarks expired, and evicts what the state cache cannot hold.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.write_back()
    }

    async fn process_batch(&mut self, input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle[input] = false;
        let out = self.apply(input, &chunk)?;
        // Changes cannot be evicted before they are written: when barriers are slow to come,
        // write them back early (still before the next barrier, so its snapshot is exact).
        let held: usize = self.sides.iter().map(|s| s.table.held_bytes()).sum::<usize>() + self.unindexed_bytes;
        if held > self.store.operator_cache().limit_bytes() {
            self.write_back()?;
        }
        ctx.collect(out).await
    }

    fn merges_input_watermarks(&self) -> bool {
        false
    }

    /// An equi-key column pair whose both sides have watermarks gets the smaller one: every
    /// future joined row includes a future row of one side, whose key is at least its side's.
    async fn handle_input_watermark(&mut self, input: usize, wm: Watermark, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle[input] = false;
        let seen = self.watermarks[input].entry(wm.column).or_insert(i64::MIN);
        *seen = (*seen).max(wm.time_us);
        let other = 1 - input;
        if let Some(expiry) = self.sides[other].expiry.as_ref().map(|(e, _)| *e).filter(|e| e.other_column == wm.column) {
            // Rows of the other side whose time plus the offset is below it never match again:
            // probes skip them now, and the next barrier deletes them.
            self.expired_below[other] = self.expired_below[other].max(wm.time_us.saturating_sub(expiry.offset_us));
        }
        self.emit_watermarks(Some((input, wm.column)), ctx).await
    }

    /// An idle side no longer holds back the pairs: they take the other side's watermark.
    async fn handle_input_idle(&mut self, input: usize, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle[input] = true;
        self.emit_watermarks(None, ctx).await
    }
}

impl JoinOperator {
    /// The expiry times (µs) of `batch`'s rows of `side`, when that side's rows expire.
    fn expiry_times(&self, side: usize, batch: &RecordBatch) -> EngineResult<Option<Vec<Option<i64>>>> {
        let Some(times) = self.expiry_column(side, batch)? else { return Ok(None) };
        Ok(Some(times.as_primitive::<TimestampMicrosecondType>().iter().collect()))
    }

    /// `batch`'s expiry column of `side` as microseconds, when that side's rows expire.
    fn expiry_column(&self, side: usize, batch: &RecordBatch) -> EngineResult<Option<ArrayRef>> {
        let Some((expiry, _)) = &self.sides[side].expiry else { return Ok(None) };
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        Ok(Some(datafusion::arrow::compute::cast(batch.column(expiry.column), &micros)?))
    }

    /// Writes both sides' changes and the expiry indexes' as one batch, then deletes what
    /// expired and evicts the least recently used keys beyond the cache budget.
    fn write_back(&mut self) -> EngineResult<()> {
        let mut write = StateWrite::default();
        for side in 0..2 {
            self.index_changes(side, &mut write);
        }
        for side in &mut self.sides {
            side.table.flush(&mut write);
        }
        if !write.is_empty() {
            self.store.write_state(write)?;
        }
        for side in 0..2 {
            if self.expired_below[side] > self.deleted_below[side] {
                self.expire(side, self.expired_below[side])?;
            }
            self.sides[side].table.evict_to_budget();
        }
        tracing::debug!(
            left_bytes = self.sides[0].table.held_bytes(),
            right_bytes = self.sides[1].table.held_bytes(),
            expired_below = ?self.expired_below,
            "join state written back"
        );
        Ok(())
    }

    /// The expiry index entries of the rows of `side` changed since the last barrier. A row
    /// that expired meanwhile is deleted instead: when it never reached the store, nothing
    /// of it is written at all (most rows of a short interval join live less than a barrier).
    fn index_changes(&mut self, side: usize, write: &mut StateWrite) {
        let unindexed = std::mem::take(&mut self.unindexed[side]);
        self.unindexed_bytes -= unindexed.keys().map(|(_, full)| full.len() + UNINDEXED_OVERHEAD_BYTES).sum::<usize>();
        let Some((_, index)) = &self.sides[side].expiry else { return };
        let table = &mut self.sides[side].table;
        for ((time, full), key_len) in unindexed {
            let (key, row) = full.split_at(key_len);
            if time < self.expired_below[side] {
                // A stored one is deleted by the flush, its index entry by `expire`.
                table.update(key, row, |e| e.count = 0);
                continue;
            }
            let mut indexed = time_key(time).to_vec();
            indexed.extend_from_slice(&full);
            if table.get(key, row).unwrap_or_default().count > 0 {
                write.put(index, indexed, index_value(key_len));
            } else if table.is_stored(key, row) {
                write.delete(index, indexed);
            }
        }
    }

    /// Deletes the stored rows of `side` whose expiry time is below `below_us`, from the
    /// store and from the cache (which holds no unwritten change by then).
    fn expire(&mut self, side: usize, below_us: i64) -> EngineResult<()> {
        let Some((_, index)) = &self.sides[side].expiry else { return Ok(()) };
        self.deleted_below[side] = below_us;
        let bound = time_key(below_us);
        let mut write = StateWrite::default();
        let mut placed: Vec<(Vec<u8>, usize)> = vec![];
        let mut unplaced = false;
        self.store.scan_from(index, None, None, |key, value| {
            if key >= bound.as_slice() {
                return false;
            }
            let full = key[8..].to_vec();
            write.delete(self.sides[side].table.cf(), full.clone());
            match <[u8; 4]>::try_from(value) {
                Ok(len) => placed.push((full, u32::from_le_bytes(len) as usize)),
                Err(_) => unplaced = true,
            }
            true
        })?;
        if write.is_empty() {
            return Ok(());
        }
        self.store.write_state(write)?;
        self.store.delete_range(index, &[], &bound)?;
        let table = &mut self.sides[side].table;
        if unplaced {
            // Entries of an older index do not say where the key ends.
            table.forget_all();
        } else {
            for (full, key_len) in placed {
                table.forget(&full[..key_len], &full[key_len..]);
            }
        }
        Ok(())
    }

    /// Emits the watermark of every key pair (only those on `changed`, a side's column, when
    /// given): the minimum over the sides that are not idle, or over both when both are.
    async fn emit_watermarks(&mut self, changed: Option<(usize, usize)>, ctx: &mut OperatorContext) -> EngineResult<()> {
        let left_width = self.spec.input_schemas[0].fields().len();
        for (l, r) in self.spec.watermark_pairs() {
            if let Some((input, column)) = changed {
                if column != if input == 0 { l } else { r } {
                    continue;
                }
            }
            let sides = [self.watermarks[0].get(&l).copied(), self.watermarks[1].get(&r).copied()];
            let Some(time_us) = pair_watermark(sides, self.idle) else { continue };
            for column in self.spec.watermark_outputs(l, r, left_width) {
                ctx.outputs.send(Message::Watermark(Watermark { column, time_us })).await?;
            }
        }
        for d in &self.derived {
            if changed.is_some_and(|(input, column)| !d.bounds[input].iter().any(|&(c, _)| c == column)) {
                continue;
            }
            // Idle sides still count: a side quiet between two writes is the common case (a
            // table written in batches), and its next rows may join far below the other side's
            // watermark, so skipping it would drop them as late.
            let [Some(left), Some(right)] = [0, 1].map(|s| bounded_watermark(&self.watermarks[s], &d.bounds[s])) else { continue };
            let time_us = left.min(right);
            ctx.outputs.send(Message::Watermark(Watermark { column: d.output, time_us })).await?;
        }
        Ok(())
    }
}

/// What a side's watermarks say of a column above `bounds` (its columns and offsets): the
/// largest bound whose column has a watermark. The end of the input stays the end.
fn bounded_watermark(watermarks: &HashMap<usize, i64>, bounds: &[(usize, i64)]) -> Option<i64> {
    bounds
        .iter()
        .filter_map(|&(c, offset)| watermarks.get(&c).map(|&w| if w == i64::MAX { w } else { w.saturating_add(offset) }))
        .max()
}

/// The watermark of a key pair, given each side's and which sides are idle: the minimum
/// over the sides that are not idle (each must have one), or, when both are idle, over those
/// that have one. The runtime's merge of union inputs follows the same rule.
fn pair_watermark(sides: [Option<i64>; 2], idle: [bool; 2]) -> Option<i64> {
    if idle == [true, true] {
        return sides.iter().flatten().copied().min();
    }
    let mut min = i64::MAX;
    for i in (0..2).filter(|&i| !idle[i]) {
        min = min.min(sides[i]?);
    }
    Some(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_side_does_not_hold_back_the_pair() {
        assert_eq!(pair_watermark([Some(5), None], [false, false]), None);
        assert_eq!(pair_watermark([Some(5), None], [false, true]), Some(5));
        assert_eq!(pair_watermark([Some(5), Some(3)], [false, false]), Some(3));
        assert_eq!(pair_watermark([Some(5), Some(3)], [false, true]), Some(5));
        assert_eq!(pair_watermark([Some(5), Some(3)], [true, true]), Some(3));
        assert_eq!(pair_watermark([None, None], [true, true]), None);
    }

    /// What a join keeps on disk: a side's value and an expiry index entry's value.
    #[test]
    fn join_state_bytes_are_pinned() {
        assert_eq!(Entry { count: 2, degree: 1 }.encode(), [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(index_value(9), [9, 0, 0, 0], "the join key's length, u32 little-endian");
    }

    #[test]
    fn side_entry_round_trips() {
        for e in [Entry { count: 1, degree: 0 }, Entry { count: 7, degree: 123_456_789_000 }] {
            assert_eq!(Entry::decode(&e.encode()), e);
        }
    }
}
