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

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::expressions::Column;
use openclaw_storage::{CfKind, RowCodec, StateWrite, Store};

use super::join_expiry::{derived_watermarks, expiries, time_key, DerivedWatermark, Expiry};
use crate::chunk::nullable_schema;
use crate::{internal_err, EngineResult, Message, Op, Operator, OperatorContext, StreamChunk, Watermark};

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
}

impl JoinKind {
    /// Whether rows of `side` (0 left, 1 right) without a match appear padded with NULLs.
    fn preserves(self, side: usize) -> bool {
        matches!((self, side), (JoinKind::Left | JoinKind::Full, 0) | (JoinKind::Right | JoinKind::Full, 1))
    }

    /// For semi and anti joins: whether a row of the output side with `degree` matches is in
    /// the output.
    fn filters(self, side: usize) -> Option<fn(i64) -> bool> {
        match self {
            JoinKind::Semi(s) if s == side => Some(|d| d > 0),
            JoinKind::Anti(s) if s == side => Some(|d| d == 0),
            _ => None,
        }
    }

    fn tracks_degree(self, side: usize) -> bool {
        self.preserves(side) || self.filters(side).is_some()
    }

    fn emits_joined(self) -> bool {
        !matches!(self, JoinKind::Semi(_) | JoinKind::Anti(_))
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
            JoinKind::Semi(0) | JoinKind::Anti(0) => vec![l],
            JoinKind::Semi(_) | JoinKind::Anti(_) => vec![r],
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
    cf: Arc<str>,
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
    /// Per side, the expiry time below which its rows have been deleted.
    expired_below: [i64; 2],
    /// Output columns whose watermarks the condition's time bounds give.
    derived: Vec<DerivedWatermark>,
}

/// Multiplicity and degree of one stored row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    count: i64,
    degree: i64,
}

impl Entry {
    fn encode(self) -> Vec<u8> {
        let mut v = self.count.to_le_bytes().to_vec();
        v.extend_from_slice(&self.degree.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Self {
        let count = i64::from_le_bytes(v[..8].try_into().expect("16-byte join entry"));
        let degree = i64::from_le_bytes(v[8..16].try_into().expect("16-byte join entry"));
        Self { count, degree }
    }
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
            Ok(Side { cf: Arc::from(tables[i].as_str()), rows: RowCodec::new(nullable_schema(&spec.input_schemas[i]))?, expiry })
        };
        let sides = [side(0)?, side(1)?];
        let both: Vec<Field> = spec.input_schemas.iter().flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone().with_nullable(true))).collect();
        let both_schema = Arc::new(Schema::new(both));
        Ok(Self { both_schema, key_codec: RowCodec::new(Arc::new(Schema::new(key_fields)))?, sides, derived: spec.derived_watermarks(), spec, store, watermarks: Default::default(), idle: [false; 2], expired_below: [i64::MIN; 2] })
    }

    fn keys(&self, side: usize, batch: &RecordBatch) -> EngineResult<(Vec<Vec<u8>>, Vec<bool>)> {
        let n = batch.num_rows();
        let cols = self.spec.keys[side]
            .iter()
            .zip(self.key_codec.schema().fields())
            .map(|(e, f)| {
                let c = e.evaluate(batch)?.into_array(n)?;
                Ok(if c.data_type() == f.data_type() { c } else { datafusion::arrow::compute::cast(&c, f.data_type())? })
            })
            .collect::<EngineResult<Vec<ArrayRef>>>()?;
        let has_null: Vec<bool> = (0..n).map(|i| cols.iter().any(|c| c.is_null(i))).collect();
        let rows = self.key_codec.encode(&cols)?;
        Ok((rows.iter().map(|r| r.as_ref().to_vec()).collect(), has_null))
    }

    /// The other side's rows under `key`, with pending changes of this chunk applied.
    fn lookup(&self, side: usize, key: &[u8], overlay: &Overlay) -> EngineResult<Vec<(Vec<u8>, Entry)>> {
        let mut found: Vec<(Vec<u8>, Entry)> = vec![];
        self.store.scan_prefix(&self.sides[side].cf, key, false, |k, v| {
            found.push((k.to_vec(), Entry::decode(v)));
            true
        })?;
        if let Some(pending) = overlay.get(&(side, key.to_vec())) {
            for (full, entry) in found.iter_mut() {
                if let Some(e) = pending.get(full) {
                    *entry = *e;
                }
            }
            // Rows inserted earlier in this chunk are only in the overlay.
            for (full, e) in pending {
                if !found.iter().any(|(f, _)| f == full) {
                    found.push((full.clone(), *e));
                }
            }
        }
        found.retain(|(_, e)| e.count > 0);
        Ok(found)
    }

    fn apply(&mut self, side: usize, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let other = 1 - side;
        let batch = chunk.batch();
        let (keys, null_key) = self.keys(side, batch)?;
        let own_rows = self.sides[side].rows.encode(batch.columns())?;
        let times = self.expiry_times(side, batch)?;
        // This chunk's stored rows of `side` with their time, for the expiry index.
        let mut indexed: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut overlay: Overlay = HashMap::new();
        let mut out = Output::default();
        for i in 0..chunk.num_rows() {
            let sign = chunk.ops()[i].sign();
            let this = batch.slice(i, 1);
            let mut matched_total = 0i64;
            if !null_key[i] {
                let candidates = self.lookup(other, &keys[i], &overlay)?;
                let matched = self.matching(side, &this, &candidates, keys[i].len())?;
                let kind = self.spec.kind;
                for (full, entry, other_row) in matched {
                    matched_total += entry.count;
                    let degree = entry.degree + sign;
                    // A padded row leaves before its first match arrives, and comes back
                    // after its last match left.
                    let pads = kind.preserves(other);
                    if pads && entry.degree == 0 && degree > 0 {
                        out.push_padded(other, &other_row, entry.count, -1, &self.spec);
                    }
                    if kind.emits_joined() {
                        out.push_joined(side, &this, &other_row, entry.count, sign);
                    }
                    if pads && entry.degree > 0 && degree == 0 {
                        out.push_padded(other, &other_row, entry.count, 1, &self.spec);
                    }
                    if let Some(shown) = kind.filters(other) {
                        match (shown(entry.degree), shown(degree)) {
                            (false, true) => out.push(other_row.clone(), entry.count, 1),
                            (true, false) => out.push(other_row.clone(), entry.count, -1),
                            _ => {}
                        }
                    }
                    if kind.tracks_degree(other) {
                        overlay.entry((other, keys[i].clone())).or_default().insert(full, Entry { count: entry.count, degree });
                    }
                }
            }
            if self.spec.kind.preserves(side) && matched_total == 0 {
                out.push_padded(side, &this, 1, sign, &self.spec);
            }
            if self.spec.kind.filters(side).is_some_and(|shown| shown(matched_total)) {
                out.push(this.clone(), 1, sign);
            }
            if null_key[i] {
                continue; // it can never match, so it is not stored
            }
            let expired = times.as_ref().and_then(|t| t[i]).is_some_and(|t| t < self.expired_below[side]);
            if expired && sign > 0 {
                // The other side's watermark has passed it already (that side ran ahead): it
                // joined what is stored now and can never match a later row, so it is not kept.
                continue;
            }
            let mut full = keys[i].clone();
            full.extend_from_slice(own_rows.row(i).as_ref());
            let pending = overlay.get(&(side, keys[i].clone())).and_then(|p| p.get(&full));
            let current = match pending {
                Some(e) => *e,
                None => self.store.multi_get(&self.sides[side].cf, &[&full])?[0].as_deref().map(Entry::decode).unwrap_or_default(),
            };
            let mut next = Entry { count: current.count + sign, degree: matched_total };
            if next.count < 0 {
                // The deletion of a row that expired (the other side's watermark passed it):
                // late, like a late row of a window, and nothing is stored for it.
                if !expired {
                    internal_err!("join state \"{}\" deleted a row it does not hold", self.sides[side].cf);
                }
                next.count = 0;
            }
            if let Some(t) = times.as_ref().and_then(|t| t[i]) {
                indexed.insert(full.clone(), t);
            }
            overlay.entry((side, keys[i].clone())).or_default().insert(full, next);
        }
        let mut write = StateWrite::default();
        for ((s, _), pending) in overlay {
            for (full, e) in pending {
                if let (Some((_, index)), Some(&t)) = (&self.sides[s].expiry, indexed.get(&full)) {
                    let mut key = time_key(t).to_vec();
                    key.extend_from_slice(&full);
                    if e.count == 0 {
                        write.delete(index, key);
                    } else {
                        write.put(index, key, vec![]);
                    }
                }
                if e.count == 0 {
                    write.delete(&self.sides[s].cf, full);
                } else {
                    write.put(&self.sides[s].cf, full, e.encode());
                }
            }
        }
        self.store.write_state(write)?;
        out.finish(&self.spec.schema)
    }

    /// The candidates that satisfy the extra condition, decoded.
    fn matching(&self, side: usize, this: &RecordBatch, candidates: &[(Vec<u8>, Entry)], key_len: usize) -> EngineResult<Vec<(Vec<u8>, Entry, RecordBatch)>> {
        if candidates.is_empty() {
            return Ok(vec![]);
        }
        let other = 1 - side;
        let rows = self.sides[other].rows.decode(candidates.iter().map(|(full, _)| &full[key_len..]))?;
        let rows = RecordBatch::try_new(self.spec.input_schemas[other].clone(), rows.columns().to_vec())?;
        let mask = match &self.spec.filter {
            None => None,
            Some(f) => {
                let repeated = take_rows(this, &UInt32Array::from(vec![0u32; rows.num_rows()]))?;
                let joined = if side == 0 { concat_columns(&repeated, &rows, &self.both_schema)? } else { concat_columns(&rows, &repeated, &self.both_schema)? };
                Some(f.evaluate(&joined)?.into_array(rows.num_rows())?.as_boolean().clone())
            }
        };
        Ok(candidates
            .iter()
            .enumerate()
            .filter(|(j, _)| mask.as_ref().is_none_or(|m| m.is_valid(*j) && m.value(*j)))
            .map(|(j, (full, e))| (full.clone(), *e, rows.slice(j, 1)))
            .collect())
    }

}

/// Changes of the current chunk not yet written: (side, join key) → full key → entry.
type Overlay = HashMap<(usize, Vec<u8>), HashMap<Vec<u8>, Entry>>;

/// Joined output rows, gathered as small batches with one op each.
#[derive(Default)]
struct Output {
    batches: Vec<RecordBatch>,
    ops: Vec<Op>,
}

impl Output {
    fn push(&mut self, batch: RecordBatch, count: i64, sign: i64) {
        let op = if sign > 0 { Op::Insert } else { Op::Delete };
        for _ in 0..count {
            self.ops.push(op);
            self.batches.push(batch.clone());
        }
    }

    fn push_joined(&mut self, side: usize, this: &RecordBatch, other: &RecordBatch, count: i64, sign: i64) {
        let (l, r) = if side == 0 { (this, other) } else { (other, this) };
        let mut cols = l.columns().to_vec();
        cols.extend(r.columns().iter().cloned());
        self.push(RecordBatch::try_new(joined_schema(l, r), cols).expect("joined row"), count, sign);
    }

    /// `row` of `side` with the other side's columns NULL.
    fn push_padded(&mut self, side: usize, row: &RecordBatch, count: i64, sign: i64, spec: &JoinSpec) {
        let other = &spec.input_schemas[1 - side];
        let nulls: Vec<ArrayRef> = other.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect();
        let mut cols = vec![];
        if side == 0 {
            cols.extend(row.columns().iter().cloned());
            cols.extend(nulls);
        } else {
            cols.extend(nulls);
            cols.extend(row.columns().iter().cloned());
        }
        let schema = Arc::new(Schema::new(cols.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true)).collect::<Vec<_>>()));
        self.push(RecordBatch::try_new(schema, cols).expect("padded row"), count, sign);
    }

    fn finish(self, schema: &SchemaRef) -> EngineResult<StreamChunk> {
        let batches: Vec<RecordBatch> = self
            .batches
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<Result<_, _>>()?;
        let batch = concat_batches(schema, &batches)?;
        Ok(StreamChunk::new(self.ops, batch))
    }
}

fn joined_schema(l: &RecordBatch, r: &RecordBatch) -> SchemaRef {
    let fields: Vec<Field> = l
        .schema()
        .fields()
        .iter()
        .chain(r.schema().fields().iter())
        .enumerate()
        .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn take_rows(batch: &RecordBatch, idx: &UInt32Array) -> EngineResult<RecordBatch> {
    let cols = batch.columns().iter().map(|c| take(c, idx, None)).collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

fn concat_columns(l: &RecordBatch, r: &RecordBatch, schema: &SchemaRef) -> EngineResult<RecordBatch> {
    let mut cols = l.columns().to_vec();
    cols.extend(r.columns().iter().cloned());
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[async_trait]
impl Operator for JoinOperator {
    fn name(&self) -> String {
        format!("Join({:?}; state = \"{}\", \"{}\")", self.spec.kind, self.sides[0].cf, self.sides[1].cf)
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        let indexes = self.sides.iter().filter_map(|s| s.expiry.as_ref().map(|(_, index)| (index.clone(), CfKind::Plain)));
        self.sides.iter().map(|s| (s.cf.clone(), CfKind::Plain)).chain(indexes).collect()
    }

    async fn process_batch(&mut self, input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        self.idle[input] = false;
        let out = self.apply(input, &chunk)?;
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
            // Rows of the other side whose time plus the offset is below it never match again.
            self.expire(other, wm.time_us.saturating_sub(expiry.offset_us))?;
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
        let Some((expiry, _)) = &self.sides[side].expiry else { return Ok(None) };
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let times = datafusion::arrow::compute::cast(batch.column(expiry.column), &micros)?;
        let times = times.as_primitive::<TimestampMicrosecondType>();
        Ok(Some(times.iter().collect()))
    }

    /// Deletes the stored rows of `side` whose expiry time is below `below_us`.
    fn expire(&mut self, side: usize, below_us: i64) -> EngineResult<()> {
        let Some((_, index)) = &self.sides[side].expiry else { return Ok(()) };
        self.expired_below[side] = self.expired_below[side].max(below_us);
        let bound = time_key(below_us);
        let mut write = StateWrite::default();
        self.store.scan_from(index, None, None, |key, _| {
            if key >= bound.as_slice() {
                return false;
            }
            write.delete(&self.sides[side].cf, key[8..].to_vec());
            true
        })?;
        if !write.is_empty() {
            self.store.write_state(write)?;
            self.store.delete_range(index, &[], &bound)?;
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

    #[test]
    fn side_entry_round_trips() {
        for e in [Entry { count: 1, degree: 0 }, Entry { count: 7, degree: 123_456_789_000 }] {
            assert_eq!(Entry::decode(&e.encode()), e);
        }
    }
}
