//! A durable subscription's retained changelog (`CREATE SUBSCRIPTION s FROM v WITH
//! (retention = ...)`): every epoch's consolidated changes of view `v`, keyed by the epoch (the
//! subscription's token), kept for the retention period, so that a client that went away (or
//! outlived a crash) reads on from its last token.
//!
//! The view's [`super::MaterializeOperator`] writes it at each barrier, from the same
//! consolidated batches it hands its live subscribers, in the same order; it is operator state
//! like the view's rows (written without the WAL, exported with each checkpoint), so a restart
//! rolls it back to the checkpoint together with the view and the sources' positions. That is
//! why readers are given only tokens up to the newest durable checkpoint: a token after it
//! may be made again, with other changes, after a crash.
//!
//! Layout of the column family (`mv_<view>_sub_<subscription>`), format [`LOG_FORMAT`]:
//! - `b'c' ‖ token (u64 BE) ‖ seq (u32 BE)` → one batch of the epoch's changes:
//!   `format (u8) ‖ written_at_ms (u64 LE) ‖ rows (u32 LE) ‖ rows × diff (i64 LE) ‖ rows ×
//!   (length (u32 LE) ‖ the row in `storage::RowCodec`'s encoding)`;
//! - `b'm'` → `format (u8) ‖ oldest (u64 LE)`: every change after token `oldest` is held.
//!
//! Cleanup: entries older than the retention are deleted at barriers (at most once per
//! [`TRIM_INTERVAL_MS`]), and `oldest` moves up to the last token deleted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use openclaw_storage::{CfKind, RowCodec, StateWrite, Store};

use crate::{internal_err, EngineResult};

/// Version of the log's encoding (entries and meta).
pub const LOG_FORMAT: u8 = 1;
/// How often a log looks for entries past their retention.
pub const TRIM_INTERVAL_MS: u64 = 1_000;
const CHANGES: u8 = b'c';
const META: &[u8] = b"m";

/// The logs a view keeps, shared between the view's operator (which writes them at each
/// barrier) and the catalog (which adds and removes them).
pub type ChangeLogs = Arc<Mutex<Vec<Arc<ChangeLog>>>>;

/// One entry read back: the changes of `token`, in the order they were written.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub token: u64,
    pub seq: u32,
    pub rows: RecordBatch,
    pub diffs: Int64Array,
}

/// One durable subscription's log.
pub struct ChangeLog {
    pub cf: Arc<str>,
    store: Store,
    codec: RowCodec,
    pub retention_ms: u64,
    /// Cached `oldest` (0 until the view adopted the log).
    oldest: AtomicU64,
    /// Set once the view's operator has written the meta (it then logs every epoch).
    adopted: AtomicBool,
    next_trim_ms: AtomicU64,
}

impl ChangeLog {
    /// Opens (creating it if needed) the log in column family `cf` for rows of `codec`'s schema.
    pub fn open(store: Store, cf: &str, codec: RowCodec, retention_ms: u64) -> EngineResult<Arc<Self>> {
        store.create_cf(cf, CfKind::Plain)?;
        let log = Self { cf: Arc::from(cf), store, codec, retention_ms, oldest: AtomicU64::new(0), adopted: AtomicBool::new(false), next_trim_ms: AtomicU64::new(0) };
        if let Some(oldest) = log.read_meta()? {
            log.oldest.store(oldest, Ordering::Release);
            log.adopted.store(true, Ordering::Release);
        }
        Ok(Arc::new(log))
    }

    fn read_meta(&self) -> EngineResult<Option<u64>> {
        let Some(bytes) = self.store.multi_get(&self.cf, &[META])?.pop().flatten() else { return Ok(None) };
        match bytes.as_slice() {
            [LOG_FORMAT, rest @ ..] if rest.len() == 8 => Ok(Some(u64::from_le_bytes(rest.try_into().expect("8 bytes")))),
            _ => internal_err!("the changelog \"{}\" has meta of an unknown format", self.cf),
        }
    }

    fn meta_value(oldest: u64) -> Vec<u8> {
        let mut value = vec![LOG_FORMAT];
        value.extend_from_slice(&oldest.to_le_bytes());
        value
    }

    /// Every change after this token is held.
    pub fn oldest(&self) -> u64 {
        self.oldest.load(Ordering::Acquire)
    }

    /// Whether the view logs into it yet.
    pub fn is_adopted(&self) -> bool {
        self.adopted.load(Ordering::Acquire)
    }

    /// The view starts logging at barrier `epoch`: a new log holds every change after it.
    /// A log restored from a checkpoint keeps its own start.
    pub(crate) fn adopt(&self, epoch: u64, write: &mut StateWrite) {
        if !self.adopted.swap(true, Ordering::AcqRel) {
            write.put(&self.cf, META.to_vec(), Self::meta_value(epoch));
            self.oldest.store(epoch, Ordering::Release);
        }
    }

    fn key(token: u64, seq: u32) -> Vec<u8> {
        let mut key = Vec::with_capacity(13);
        key.push(CHANGES);
        key.extend_from_slice(&token.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Adds the changes of `token` to `write`, one entry per batch, in order.
    pub(crate) fn append(&self, token: u64, now_ms: u64, changes: &[(RecordBatch, Int64Array)], write: &mut StateWrite) -> EngineResult<()> {
        debug_assert!(self.is_adopted(), "a log is written only once adopted");
        for (seq, (rows, diffs)) in changes.iter().enumerate() {
            let encoded = self.codec.encode(rows.columns())?;
            write.put(&self.cf, Self::key(token, seq as u32), encode_entry(now_ms, diffs, (0..rows.num_rows()).map(|i| encoded.row(i).data())));
        }
        Ok(())
    }

    /// Deletes the entries past the retention (at most once per [`TRIM_INTERVAL_MS`]) and
    /// moves `oldest` to the last token deleted.
    pub(crate) fn trim(&self, now_ms: u64, write: &mut StateWrite) -> EngineResult<()> {
        if now_ms < self.next_trim_ms.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.next_trim_ms.store(now_ms + TRIM_INTERVAL_MS, Ordering::Relaxed);
        let cutoff_ms = now_ms.saturating_sub(self.retention_ms);
        let mut expired: Vec<Vec<u8>> = vec![];
        let mut last_token = None;
        let mut failure = None;
        self.store.scan_prefix(&self.cf, &[CHANGES], false, |key, value| match decode_written_at(value) {
            Some(at_ms) if at_ms < cutoff_ms => {
                last_token = key_token(key);
                expired.push(key.to_vec());
                true
            }
            Some(_) => false,
            None => {
                failure = Some(key.to_vec());
                false
            }
        })?;
        if failure.is_some() {
            internal_err!("the changelog \"{}\" holds an entry of an unknown format", self.cf);
        }
        let Some(token) = last_token else { return Ok(()) };
        expired.into_iter().for_each(|k| write.delete(&self.cf, k));
        let oldest = token.max(self.oldest());
        write.put(&self.cf, META.to_vec(), Self::meta_value(oldest));
        self.oldest.store(oldest, Ordering::Release);
        Ok(())
    }

    /// The next entry after position `(token, seq)` (`None`: from the start), if its token is
    /// at most `until`.
    pub fn next_entry(&self, after: Option<(u64, u32)>, until: u64) -> EngineResult<Option<LogEntry>> {
        let start = match after {
            Some((token, seq)) => Self::key(token, seq),
            None => vec![CHANGES],
        };
        let mut found = None;
        self.store.scan_from(&self.cf, Some(&start), None, |key, value| {
            if key.first() == Some(&CHANGES) {
                found = Some((key.to_vec(), value.to_vec()));
            }
            false
        })?;
        let Some((key, value)) = found else { return Ok(None) };
        let (Some(token), Some(seq)) = (key_token(&key), key.get(9..13).map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")))) else {
            internal_err!("the changelog \"{}\" holds a malformed key", self.cf)
        };
        if token > until {
            return Ok(None);
        }
        let Some((diffs, rows)) = decode_entry(&value) else { internal_err!("the changelog \"{}\" holds a malformed entry", self.cf) };
        let rows = self.codec.decode(rows.into_iter())?;
        Ok(Some(LogEntry { token, seq, rows, diffs }))
    }
}

/// An entry's value (the layout in the module's documentation).
fn encode_entry<'a>(written_at_ms: u64, diffs: &Int64Array, rows: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut value = vec![LOG_FORMAT];
    value.extend_from_slice(&written_at_ms.to_le_bytes());
    value.extend_from_slice(&(diffs.len() as u32).to_le_bytes());
    diffs.values().iter().for_each(|d| value.extend_from_slice(&d.to_le_bytes()));
    for row in rows {
        value.extend_from_slice(&(row.len() as u32).to_le_bytes());
        value.extend_from_slice(row);
    }
    value
}

fn decode_written_at(value: &[u8]) -> Option<u64> {
    match value {
        [LOG_FORMAT, rest @ ..] => Some(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// The diffs and encoded rows of an entry; `None` when it is malformed.
fn decode_entry(value: &[u8]) -> Option<(Int64Array, Vec<&[u8]>)> {
    decode_written_at(value)?;
    let count = u32::from_le_bytes(value.get(9..13)?.try_into().ok()?) as usize;
    let mut at = 13;
    let mut diffs = Vec::with_capacity(count);
    for _ in 0..count {
        diffs.push(i64::from_le_bytes(value.get(at..at + 8)?.try_into().ok()?));
        at += 8;
    }
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(value.get(at..at + 4)?.try_into().ok()?) as usize;
        rows.push(value.get(at + 4..at + 4 + len)?);
        at += 4 + len;
    }
    (at == value.len()).then(|| (Int64Array::from(diffs), rows))
}

fn key_token(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(codec: &RowCodec) -> RecordBatch {
        RecordBatch::try_new(
            codec.schema().clone(),
            vec![Arc::new(Int64Array::from(vec![7, 8])), Arc::new(StringArray::from(vec![Some("a"), None]))],
        )
        .unwrap()
    }

    fn codec() -> RowCodec {
        RowCodec::new(Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("s", DataType::Utf8, true)]))).unwrap()
    }

    /// The bytes of an entry, pinned: a log written by this version must read back in the next.
    #[test]
    fn entry_encoding_is_pinned() {
        let value = encode_entry(0x0102, &Int64Array::from(vec![1, -2]), [&b"ab"[..], &b"c"[..]].into_iter());
        let golden: Vec<u8> = [
            &[1u8][..],                               // format
            &[0x02, 0x01, 0, 0, 0, 0, 0, 0],          // written_at_ms
            &[2, 0, 0, 0],                            // rows
            &[1, 0, 0, 0, 0, 0, 0, 0],                // diff +1
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // diff -2
            &[2, 0, 0, 0, b'a', b'b'],
            &[1, 0, 0, 0, b'c'],
        ]
        .concat();
        assert_eq!(value, golden);
        let (diffs, rows) = decode_entry(&golden).unwrap();
        assert_eq!(diffs.values().to_vec(), vec![1, -2]);
        assert_eq!(rows, vec![&b"ab"[..], &b"c"[..]]);
        assert!(decode_entry(&golden[..golden.len() - 1]).is_none(), "a truncated entry is refused");
        assert_eq!(ChangeLog::key(5, 1), vec![b'c', 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1]);
        assert_eq!(ChangeLog::meta_value(9), vec![1, 9, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn entries_read_back_in_order_and_expire() {
        let dir = std::env::temp_dir().join(format!("openclaw-change-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let log = ChangeLog::open(store.clone(), "log", codec(), 1_000).unwrap();
        let mut write = StateWrite::default();
        log.adopt(10, &mut write);
        let rows = batch(&codec());
        let diffs = Int64Array::from(vec![1, -1]);
        log.append(11, 5_000, &[(rows.clone(), diffs.clone()), (rows.clone(), diffs.clone())], &mut write).unwrap();
        log.append(12, 9_000, &[(rows.clone(), diffs.clone())], &mut write).unwrap();
        store.write_state(write).unwrap();
        let first = log.next_entry(None, u64::MAX).unwrap().unwrap();
        assert_eq!((first.token, first.seq, first.rows.clone()), (11, 0, rows.clone()));
        let second = log.next_entry(Some((11, 0)), u64::MAX).unwrap().unwrap();
        assert_eq!((second.token, second.seq), (11, 1));
        assert!(log.next_entry(Some((11, 1)), 11).unwrap().is_none(), "entries after `until` are not read");
        // Reopened (a restart), the log keeps its start.
        let reopened = ChangeLog::open(store.clone(), "log", codec(), 1_000).unwrap();
        assert_eq!((reopened.oldest(), reopened.is_adopted()), (10, true));
        // At 7 s, token 11 (written at 5 s) is past a retention of 1 s; token 12 is not.
        let mut write = StateWrite::default();
        log.trim(7_000, &mut write).unwrap();
        store.write_state(write).unwrap();
        assert_eq!(log.oldest(), 11);
        assert_eq!(log.next_entry(None, u64::MAX).unwrap().unwrap().token, 12);
        assert_eq!(store.count_keys("log").unwrap(), 2, "the meta and token 12's entry are left");
        drop((log, reopened, store));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
