//! Temporal filters: `WHERE ts > now() - INTERVAL '1 hour'` in a view (Materialize's
//! `mz_now()` filters). A row passes while the wall clock is before its expiry (here
//! `ts + 1 hour`, computed by the planner as one expression), and is retracted at the first
//! barrier at or after it: barriers come every `flush_interval_ms`, so a row leaves the view
//! at most that late. Rows that pass are kept in RocksDB under
//!
//! `expiry (8 bytes, order-preserving) ‖ row` → multiplicity
//!
//! so the expired rows are one key range: read, sent on as deletes, then dropped with one range
//! delete. The state holds only rows not yet expired: its size is bounded by what arrives
//! within the filter's interval.
//!
//! Time moves only at barriers, so every row meets the same `now` until the next one: a row
//! (insert or delete) whose expiry is already past when it arrives is dropped, because its
//! insert was either retracted by the sweep or never passed.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::{decode_count, CfKind, RowCodec, StateWrite, Store};

use crate::{Barrier, EngineError, EngineResult, Op, Operator, OperatorContext, StreamChunk};

/// What the planner found in a `WHERE` conjunct that compares with `now()`.
#[derive(Clone)]
pub struct TemporalFilterSpec {
    /// The instant (a timestamp) from which a row no longer passes, evaluated on the input.
    pub expiry: Arc<dyn PhysicalExpr>,
    /// Whether the row still passes at the expiry instant itself (`>=` rather than `>`).
    pub inclusive: bool,
}

pub struct TemporalFilterOperator {
    spec: TemporalFilterSpec,
    store: Store,
    cf: Arc<str>,
    rows: RowCodec,
    /// The wall clock at the last barrier, in microseconds since the epoch: the `now()` rows
    /// are compared with until the next one.
    now_us: i64,
}

/// The wall clock in microseconds since the Unix epoch.
fn wall_clock_us() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// An expiry as a key prefix that sorts as the signed value does.
fn expiry_key(expiry_us: i64) -> [u8; 8] {
    ((expiry_us as u64) ^ (1 << 63)).to_be_bytes()
}

impl TemporalFilterOperator {
    pub fn new(spec: TemporalFilterSpec, store: Store, table: String, input_schema: SchemaRef) -> EngineResult<Self> {
        store.create_cf(&table, CfKind::Counters)?;
        let rows = RowCodec::new(input_schema)?;
        Ok(Self { spec, store, cf: Arc::from(table.as_str()), rows, now_us: wall_clock_us() })
    }

    /// Each row's expiry as the first instant it no longer passes, in microseconds; `None`
    /// where the expression is null (the comparison is null: the row never passes).
    fn expiries(&self, chunk: &StreamChunk) -> EngineResult<Vec<Option<i64>>> {
        let values = self.spec.expiry.evaluate(chunk.batch())?.into_array(chunk.num_rows())?;
        let tz = match values.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            other => return Err(EngineError::Internal(format!("a temporal filter's expiry is {other}, not a timestamp"))),
        };
        let micros = cast(&values, &DataType::Timestamp(TimeUnit::Microsecond, tz))?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        let bump = i64::from(self.spec.inclusive);
        Ok((0..micros.len()).map(|i| micros.is_valid(i).then(|| micros.value(i).saturating_add(bump))).collect())
    }

    /// Keeps the rows not yet expired, notes them in the state, and returns them.
    fn admit(&self, chunk: &StreamChunk) -> EngineResult<StreamChunk> {
        let expiries = self.expiries(chunk)?;
        let mask: BooleanArray = expiries.iter().map(|e| Some(e.is_some_and(|e| e > self.now_us))).collect();
        let passed = chunk.filter(&mask)?;
        if passed.is_empty() {
            return Ok(passed);
        }
        let encoded = self.rows.encode(passed.batch().columns())?;
        let kept = expiries.iter().flatten().filter(|e| **e > self.now_us);
        let mut write = StateWrite::default();
        for ((expiry, row), op) in kept.zip(encoded.iter()).zip(passed.ops().iter()) {
            let mut key = expiry_key(*expiry).to_vec();
            key.extend_from_slice(row.data());
            write.add_count(&self.cf, key, op.sign());
        }
        self.store.write_state(write)?;
        Ok(passed)
    }

    /// Moves `now` to the wall clock and returns the deletes of every row that expired, after
    /// dropping them from the state.
    fn sweep(&mut self) -> EngineResult<Option<StreamChunk>> {
        self.now_us = self.now_us.max(wall_clock_us());
        let end = expiry_key(self.now_us.saturating_add(1));
        let mut expired: Vec<Vec<u8>> = vec![];
        self.store.scan(&self.cf, None, |key, value| {
            if key[..8] >= end[..] {
                return false;
            }
            for _ in 0..decode_count(value).max(0) {
                expired.push(key[8..].to_vec());
            }
            true
        })?;
        self.store.delete_range(&self.cf, &[], &end)?;
        if expired.is_empty() {
            return Ok(None);
        }
        let batch = self.rows.decode(expired.iter().map(Vec::as_slice))?;
        Ok(Some(StreamChunk::new(vec![Op::Delete; batch.num_rows()], batch)))
    }
}

#[async_trait]
impl Operator for TemporalFilterOperator {
    fn name(&self) -> String {
        format!("TemporalFilter(until {})", self.spec.expiry)
    }

    fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        vec![(self.cf.clone(), CfKind::Counters)]
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, ctx: &mut OperatorContext) -> EngineResult<()> {
        let out = self.admit(&chunk)?;
        ctx.collect(out).await
    }

    /// Time moves here: the rows that expired since the last barrier leave before it.
    async fn handle_checkpoint(&mut self, _barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        let Some(deletes) = self.sweep()? else { return Ok(()) };
        let chunk_rows = ctx.config.chunk_size_rows.max(1);
        let mut start = 0;
        while start < deletes.num_rows() {
            let len = chunk_rows.min(deletes.num_rows() - start);
            ctx.collect(deletes.slice(start, len)).await?;
            start += len;
        }
        Ok(())
    }
}
