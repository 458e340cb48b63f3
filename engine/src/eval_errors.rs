//! Errors as data: the rows of a view whose expression failed (a division by zero, a bad
//! cast), counted instead of failing the view, as Materialize does.
//!
//! A failed row leaves the view's data and enters its errors: an insert counts `+1`, a delete
//! `-1`, so deleting or updating the row takes its error back out. While any row fails, the
//! view cannot be read (readers get the error, as PostgreSQL's query over the same rows would
//! give it); once none does, the view reads right again, without a rebuild. A view whose
//! first, empty aggregate row divides by its zero count (Nexmark q102's `COUNT(*) / COUNT(
//! DISTINCT auction)`) thus fails only until its first rows arrive.
//!
//! Each evaluating operator keeps its counts in a column family of its own ([`ErrorTable`]),
//! created at its first failure and snapshotted with its checkpoints, so a restart restores
//! them with the rest of the view's state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use openclaw_storage::{CfKind, StateWrite, Store};

use crate::{EngineError, EngineResult, StreamChunk};

/// What a failed row reads as: its SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EvalFailure {
    /// Five characters, as PostgreSQL's SQLSTATE.
    pub code: String,
    pub message: String,
}

/// Maps an evaluation error to its failure when the data is at fault (PostgreSQL's class 22,
/// data exceptions); `None` for any other error, which still fails the view.
pub type Classify = Arc<dyn Fn(&EngineError) -> Option<EvalFailure> + Send + Sync>;

/// The failed rows of one view, by failure: written by its operators, read by its readers.
pub struct EvalErrors {
    classify: Classify,
    rows: Mutex<BTreeMap<EvalFailure, i64>>,
}

impl EvalErrors {
    pub fn new(classify: Classify) -> Arc<Self> {
        Arc::new(Self { classify, rows: Mutex::new(BTreeMap::new()) })
    }

    fn add(&self, failure: EvalFailure, rows: i64) {
        let mut all = self.rows.lock().expect("eval errors lock");
        let count = all.entry(failure.clone()).or_insert(0);
        *count += rows;
        if *count == 0 {
            all.remove(&failure);
        }
    }

    /// The first failure some row still holds, and how many rows fail in all.
    pub fn first(&self) -> Option<(EvalFailure, i64)> {
        let all = self.rows.lock().expect("eval errors lock");
        let total: i64 = all.values().filter(|&&n| n > 0).sum();
        all.iter().find(|(_, &n)| n > 0).map(|(f, _)| (f.clone(), total))
    }
}

/// Version of the key encoding of an error table: `[version][code: 5 bytes][message]`; the
/// value is the row count (a counter).
const ERROR_KEY_VERSION: u8 = 1;

fn encode_key(failure: &EvalFailure) -> Vec<u8> {
    assert_eq!(failure.code.len(), 5, "a SQLSTATE has five characters");
    let mut key = Vec::with_capacity(6 + failure.message.len());
    key.push(ERROR_KEY_VERSION);
    key.extend_from_slice(failure.code.as_bytes());
    key.extend_from_slice(failure.message.as_bytes());
    key
}

fn decode_key(key: &[u8]) -> EngineResult<EvalFailure> {
    let malformed = || EngineError::Internal(format!("malformed error-table key {key:?}"));
    if key.len() < 6 || key[0] != ERROR_KEY_VERSION {
        return Err(malformed());
    }
    let code = std::str::from_utf8(&key[1..6]).map_err(|_| malformed())?.to_string();
    let message = std::str::from_utf8(&key[6..]).map_err(|_| malformed())?.to_string();
    Ok(EvalFailure { code, message })
}

/// One operator's failed rows: counted in the view's [`EvalErrors`] and kept in column family
/// `cf`, which this operator alone writes.
pub struct ErrorTable {
    errors: Arc<EvalErrors>,
    store: Store,
    cf: Arc<str>,
    created: bool,
}

impl ErrorTable {
    /// Opens the table, adding the counts a restored checkpoint holds to `errors`.
    pub fn open(errors: Arc<EvalErrors>, store: Store, cf: String) -> EngineResult<Self> {
        let created = store.has_cf(&cf);
        if created {
            let mut held = vec![];
            store.scan(&cf, None, |key, value| {
                held.push((key.to_vec(), openclaw_storage::decode_count(value)));
                true
            })?;
            for (key, rows) in held {
                errors.add(decode_key(&key)?, rows);
            }
        }
        Ok(Self { errors, store, cf: cf.into(), created })
    }

    /// The column family, once a row has failed.
    pub fn state_tables(&self) -> Vec<(Arc<str>, CfKind)> {
        match self.created {
            true => vec![(self.cf.clone(), CfKind::Counters)],
            false => vec![],
        }
    }

    /// Evaluates `eval` over `chunk`. When it fails on data, the rows that fail are found (by
    /// halving, so `k` failures of `n` rows cost `O(k log n)` evaluations) and counted, and
    /// the rest are evaluated again; returns the rows kept and their result. Any other error
    /// is returned.
    pub fn evaluate<T>(&mut self, chunk: StreamChunk, eval: impl Fn(&RecordBatch) -> EngineResult<T>) -> EngineResult<(StreamChunk, T)> {
        let first = match eval(chunk.batch()) {
            Ok(out) => return Ok((chunk, out)),
            Err(e) => e,
        };
        if (self.errors.classify)(&first).is_none() {
            return Err(first);
        }
        let mut failed = vec![];
        self.find_failures(chunk.batch(), 0, chunk.num_rows(), &eval, &mut failed)?;
        let mut keep = vec![true; chunk.num_rows()];
        let mut deltas: BTreeMap<EvalFailure, i64> = BTreeMap::new();
        for (row, failure) in failed {
            keep[row] = false;
            *deltas.entry(failure).or_insert(0) += chunk.ops()[row].sign();
        }
        self.record(deltas)?;
        let kept = chunk.filter(&BooleanArray::from(keep))?;
        let out = eval(kept.batch())?;
        Ok((kept, out))
    }

    fn find_failures<T>(
        &self,
        batch: &RecordBatch,
        offset: usize,
        len: usize,
        eval: &impl Fn(&RecordBatch) -> EngineResult<T>,
        failed: &mut Vec<(usize, EvalFailure)>,
    ) -> EngineResult<()> {
        let Err(e) = eval(&batch.slice(offset, len)) else { return Ok(()) };
        if len == 1 {
            let Some(failure) = (self.errors.classify)(&e) else { return Err(e) };
            failed.push((offset, failure));
            return Ok(());
        }
        let half = len / 2;
        self.find_failures(batch, offset, half, eval, failed)?;
        self.find_failures(batch, offset + half, len - half, eval, failed)
    }

    fn record(&mut self, deltas: BTreeMap<EvalFailure, i64>) -> EngineResult<()> {
        if !self.created {
            self.store.create_cf(&self.cf, CfKind::Counters)?;
            self.created = true;
        }
        let mut write = StateWrite::default();
        for (failure, rows) in &deltas {
            write.add_count(&self.cf, encode_key(failure), *rows);
        }
        self.store.write_state(write)?;
        for (failure, rows) in deltas {
            // New failures make the view unreadable, which its owner must hear of; failed rows
            // leaving it are routine.
            match rows > 0 {
                true => tracing::warn!(table = %self.cf, code = %failure.code, error = %failure.message, rows, "rows of a materialized view failed to evaluate"),
                false => tracing::debug!(table = %self.cf, code = %failure.code, error = %failure.message, rows, "failed rows of a materialized view retracted"),
            }
            self.errors.add(failure, rows);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;

    fn signs(ops: &[Op]) -> i64 {
        ops.iter().map(|o| o.sign()).sum()
    }

    #[test]
    fn key_encoding_is_stable() {
        let failure = EvalFailure { code: "22012".into(), message: "division by zero".into() };
        let key = encode_key(&failure);
        assert_eq!(key, b"\x0122012division by zero".to_vec());
        assert_eq!(decode_key(&key).unwrap(), failure);
        assert!(decode_key(b"\x0222012x").is_err());
        assert!(decode_key(b"\x01220").is_err());
    }

    #[test]
    fn counts_net_out() {
        let errors = EvalErrors::new(Arc::new(|_| None));
        let f = EvalFailure { code: "22012".into(), message: "division by zero".into() };
        errors.add(f.clone(), signs(&[Op::Insert, Op::Insert]));
        assert_eq!(errors.first(), Some((f.clone(), 2)));
        errors.add(f, signs(&[Op::Delete, Op::UpdateDelete]));
        assert_eq!(errors.first(), None);
    }
}
