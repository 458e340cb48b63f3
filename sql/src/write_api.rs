//! Rows written through the API (`POST /v1/ingest/<table>` today): a body decoded into the
//! table's columns and committed as one atomic, durable write, through the same writer as
//! `INSERT` (upserts by primary key). A record that does not decode (a line of NDJSON or CSV,
//! an element of a JSON array) goes to the dead-letter table `<table>_dlq` (created on first
//! use: request, line, error, payload, received_at; keyed by request and line) in the same
//! write as the good rows. A body that cannot be read at all, an Arrow stream whose columns do
//! not fit, or a NULL in a NOT NULL column refuse the whole request, and nothing of it is
//! applied.
//!
//! **Idempotency keys.** A write that carries a key stores the key with its receipt in the
//! same synced RocksDB write as its rows (column family [`WRITE_KEYS_CF`], which lives across
//! rollbacks as tables do). A retry with the key gets the first receipt back and writes
//! nothing, also after a crash that lost the first response. Keys are kept for
//! [`WRITE_KEY_TTL_MS`] and at most [`MAX_WRITE_KEYS`] of them (the oldest go first); two
//! requests with one key at once: the second is refused with 40001.
//!
//! Layout of `write_keys`, format [`WRITE_KEY_FORMAT`]: `'k' ‖ key` → `format (u8) ‖
//! created_ms (u64 LE) ‖ receipt (JSON)`; `'t' ‖ created_ms (u64 BE) ‖ key` → empty, the
//! keys in age order for trimming.

use std::collections::HashSet;
use std::io::Cursor;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use openclaw_engine::table::Change;
use openclaw_storage::{CfKind, StateWrite, Store};
use serde_json::{json, Value};

use crate::database::Database;
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::transaction::TableWrites;

/// The column family of idempotency keys.
pub const WRITE_KEYS_CF: &str = "write_keys";
/// Version of a stored key's value.
pub const WRITE_KEY_FORMAT: u8 = 1;
/// How long a key is remembered (24 hours).
pub const WRITE_KEY_TTL_MS: u64 = 86_400_000;
/// Most keys remembered at once.
pub const MAX_WRITE_KEYS: usize = 1_000_000;
/// Longest idempotency key.
pub const MAX_WRITE_KEY_BYTES: usize = 256;
/// Most rows one request may carry.
pub const MAX_INGEST_ROWS: usize = 1_000_000;

/// How a request's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object per line (`application/x-ndjson`).
    NdJson,
    /// A JSON array of objects (`application/json`).
    JsonArray,
    /// CSV, with a header line naming the columns unless `header` is false (`text/csv`).
    Csv { header: bool },
    /// An Arrow IPC stream (`application/vnd.apache.arrow.stream`).
    ArrowStream,
    /// One JSON object, or an array of them: what a webhook sends. A body that is neither is
    /// one record for the dead-letter table.
    JsonDocument,
    /// The whole body, as one row of the table's only (text) column (`webhook.body = 'text'`).
    Text,
    /// CSV without a header whose NULLs are `\N` (an empty field is an empty string): what
    /// `COPY ... FROM STDIN` makes of its data (`copy.rs`).
    CsvMarkedNulls,
}

/// Rows per batch the JSON decoder makes.
const JSON_BATCH_ROWS: usize = 8192;

/// Most errors a receipt lists (the dead-letter table has them all).
pub const MAX_RECEIPT_ERRORS: usize = 10;
/// The dead-letter table's columns (`<table>_dlq`).
const DEAD_LETTER_COLUMNS: &str = "request VARCHAR NOT NULL, line BIGINT NOT NULL, error VARCHAR NOT NULL, payload VARCHAR, \
     received_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (request, line)";

/// What a write did: what the client is told, and told again on a retry with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReceipt {
    pub table: String,
    pub accepted: u64,
    /// Records that went to the dead-letter table, and the first errors (line, why).
    pub dead_letters: u64,
    pub errors: Vec<(u64, String)>,
    /// A retry with a key already seen: nothing was written this time.
    pub replayed: bool,
}

impl WriteReceipt {
    /// What is stored with a key, and (with `replayed`) answered.
    fn stored_json(&self) -> Value {
        let errors: Vec<Value> = self.errors.iter().map(|(line, error)| json!({"line": line, "error": error})).collect();
        json!({"table": self.table, "accepted": self.accepted, "dead_letters": self.dead_letters, "errors": errors})
    }

    pub fn json(&self) -> Value {
        let mut value = self.stored_json();
        value["replayed"] = json!(self.replayed);
        value
    }
}

/// A record that did not decode: its line (1-based; a JSON array's element number), why, and
/// its text.
#[derive(Debug, Clone)]
pub(crate) struct BadRecord {
    pub line: u64,
    pub error: String,
    pub payload: String,
}

/// A body's rows, and the records that did not decode.
pub(crate) struct Decoded {
    pub batches: Vec<RecordBatch>,
    pub bad: Vec<BadRecord>,
}

/// Idempotency keys being written now: a second request with one of them is refused.
#[derive(Default)]
pub struct KeysInFlight(Mutex<HashSet<String>>);

struct KeyGuard<'a>(&'a KeysInFlight, String);

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.lock().expect("keys in flight lock").remove(&self.1);
    }
}

impl Database {
    /// `POST /v1/ingest/<table>`: decodes `body` into `table`'s columns and commits it; with
    /// `key`, at most once. A webhook table is refused: its requests must pass its checks.
    pub async fn write_rows<B: AsRef<[u8]> + Send + 'static>(&self, table: &str, format: BodyFormat, body: B, key: Option<String>) -> SqlResult<WriteReceipt> {
        self.refuse_webhook_table(table).await?;
        self.write_body(table, format, body, key).await
    }

    /// `POST /v1/webhook/<table>`: a request to a table fed by requests, checked by its
    /// receiver (a bad signature: 28000, and nothing is decoded or written), then written as
    /// ingest writes, at most once per delivery when the table names a delivery header.
    /// `format`: the body's format from its `Content-Type`, if it names one.
    pub async fn write_pushed<B: AsRef<[u8]> + Send + 'static>(&self, table: &str, header: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync), format: Option<BodyFormat>, body: B) -> SqlResult<WriteReceipt> {
        let receiver = self.receiver_of(table).await?.ok_or_else(|| {
            SqlError::new(SqlState::WrongObjectType, format!("table {} is not a webhook table", quote(table)))
                .with_hint(format!("CREATE TABLE ... WITH (connector = 'webhook'), or send rows to /v1/ingest/{table}"))
        })?;
        receiver.authenticate(header, body.as_ref()).map_err(|e| {
            let error = SqlError::new(SqlState::InvalidAuthorizationSpecification, e.message);
            match e.hint {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        })?;
        let key = receiver.idempotency_header().and_then(header).map(|delivery| format!("{table}/{}", String::from_utf8_lossy(&delivery)));
        let format = match receiver.body_is_text() {
            true => BodyFormat::Text,
            false => format.unwrap_or(BodyFormat::JsonDocument),
        };
        self.write_body(table, format, body, key).await
    }

    /// Refuses a webhook table to the write paths that would skip its checks (its requests
    /// must pass them at `/v1/webhook/<table>`).
    async fn refuse_webhook_table(&self, table: &str) -> SqlResult<()> {
        match self.receiver_of(table).await? {
            Some(_) => Err(SqlError::new(SqlState::WrongObjectType, format!("table {} receives its rows as a webhook", quote(table)))
                .with_hint(format!("send them to /v1/webhook/{table}"))),
            None => Ok(()),
        }
    }

    /// The receiver of a table fed by requests; `None` for any other table.
    async fn receiver_of(&self, table: &str) -> SqlResult<Option<std::sync::Arc<dyn openclaw_connectors::Receiver>>> {
        let catalog = self.catalog.lock().await;
        let entry = catalog.get(table).ok_or_else(|| SqlError::new(SqlState::UndefinedTable, format!("relation {} does not exist", quote(table))))?;
        Ok(match &entry.detail {
            crate::catalog::Detail::Table { receiver, .. } => receiver.clone(),
            _ => None,
        })
    }

    /// Arrow batches (Flight's `DoPut`), whose columns are the table's by name, in any order,
    /// of types that convert; committed as one write, with `key` at most once. A webhook table
    /// is refused, as by [`Database::write_rows`].
    pub async fn write_batches(&self, table: &str, batches: Vec<RecordBatch>, key: Option<String>) -> SqlResult<WriteReceipt> {
        self.refuse_webhook_table(table).await?;
        self.write_decoded(table, key, move |schema| {
            let batches = match batches.first().map(|b| b.schema()) {
                Some(theirs) => fit_arrow(&theirs, batches, schema)?,
                None => vec![],
            };
            finish(Decoded { batches, bad: vec![] }, schema, MAX_INGEST_ROWS)
        })
        .await
    }

    /// Records already parsed into JSON objects (Protobuf messages decoded by their
    /// descriptor), or, for one that could not be, why and its text for the dead-letter table;
    /// committed as one write, with `key` at most once. Record numbers count from 1.
    pub async fn write_records(&self, table: &str, records: Vec<Result<Value, (String, String)>>, key: Option<String>) -> SqlResult<WriteReceipt> {
        self.refuse_webhook_table(table).await?;
        self.write_decoded(table, key, move |schema| {
            let (mut good, mut numbers, mut bad) = (vec![], vec![], vec![]);
            for (i, record) in records.into_iter().enumerate() {
                match record {
                    Ok(value) => {
                        good.push(value);
                        numbers.push(i as u64 + 1);
                    }
                    Err((error, payload)) => bad.push(BadRecord { line: i as u64 + 1, error, payload }),
                }
            }
            let mut decoded = decode_json_values(good, &nullable(schema))?;
            // Numbered among the good ones: renumber among all.
            for record in &mut decoded.bad {
                record.line = numbers[record.line as usize - 1];
            }
            decoded.bad.extend(bad);
            decoded.bad.sort_by_key(|b| b.line);
            finish(decoded, schema, MAX_INGEST_ROWS)
        })
        .await
    }

    /// Decodes `body` into `table`'s columns and commits it; with `key`, at most once.
    async fn write_body<B: AsRef<[u8]> + Send + 'static>(&self, table: &str, format: BodyFormat, body: B, key: Option<String>) -> SqlResult<WriteReceipt> {
        self.write_decoded(table, key, move |schema| decode(format, body.as_ref(), schema)).await
    }

    /// Commits what `decode` makes of the request (run off the async workers, given the
    /// table's schema); with `key`, at most once.
    pub(crate) async fn write_decoded(&self, table: &str, key: Option<String>, decode: impl FnOnce(&SchemaRef) -> SqlResult<Decoded> + Send + 'static) -> SqlResult<WriteReceipt> {
        let _in_flight = match &key {
            Some(k) => Some(self.claim_key(k)?),
            None => None,
        };
        if let Some(receipt) = key.as_deref().map(|k| stored_receipt(&self.store, k)).transpose()?.flatten() {
            return Ok(WriteReceipt { replayed: true, ..receipt });
        }
        let (target, schema, _) = self.write_target(table).await?;
        let decoded = tokio::task::spawn_blocking({
            let schema = schema.clone();
            move || decode(&schema)
        })
        .await
        .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))??;
        let accepted: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
        let receipt = WriteReceipt {
            table: table.to_string(),
            accepted: accepted as u64,
            dead_letters: decoded.bad.len() as u64,
            errors: decoded.bad.iter().take(MAX_RECEIPT_ERRORS).map(|b| (b.line, b.error.clone())).collect(),
            replayed: false,
        };
        let mut extra = StateWrite::default();
        if let Some(k) = &key {
            remember(k, &receipt, chrono::Utc::now().timestamp_millis().max(0) as u64, &mut extra);
        }
        let mut writes = TableWrites::new(target);
        writes.changes = decoded.batches.into_iter().map(Change::Upsert).collect();
        let mut tables = vec![writes];
        if !decoded.bad.is_empty() {
            let request = key.clone().unwrap_or_else(new_request_id);
            let (dlq, dlq_schema, _) = self.dead_letter_target(table).await?;
            let mut dead = TableWrites::new(dlq);
            dead.changes.push(Change::Upsert(dead_letter_batch(&request, &decoded.bad, &dlq_schema)?));
            tables.push(dead);
        }
        // Locked in id order, as every commit locks.
        tables.sort_by_key(|t| t.target.id);
        self.commit_with(tables, false, extra).await?;
        if key.is_some() {
            self.write_keys.fetch_add(1, Ordering::AcqRel);
            let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
            self.trim_write_keys(now_ms)?;
        }
        Ok(receipt)
    }

    /// `<table>_dlq`, created with [`DEAD_LETTER_COLUMNS`] on first use.
    async fn dead_letter_target(&self, table: &str) -> SqlResult<(crate::transaction::WriteTarget, SchemaRef, Option<Vec<usize>>)> {
        let name = format!("{table}_dlq");
        let sql = format!("CREATE TABLE IF NOT EXISTS {} ({DEAD_LETTER_COLUMNS})", crate::schemas::sql_name(&name));
        let mut parsed = crate::parser::parse(&sql)?;
        let Some(crate::parser::OcStatement::CreateTable(create, None, _)) = parsed.pop() else {
            return Err(SqlError::new(SqlState::Internal, "the dead-letter table's definition did not parse"));
        };
        self.create_table(*create, None, &sql).await?;
        let target = self.write_target(&name).await?;
        let columns: Vec<&str> = target.1.fields().iter().map(|f| f.name().as_str()).collect();
        if columns != ["request", "line", "error", "payload", "received_at"] {
            return Err(SqlError::new(SqlState::WrongObjectType, format!("{} is not a dead-letter table of ingest", quote(&name)))
                .with_detail(format!("ingest writes records that do not decode to {} ({DEAD_LETTER_COLUMNS})", quote(&name)))
                .with_hint("rename that table"));
        }
        Ok(target)
    }

    /// Waits until every view reflects what was committed before this call (a barrier after it
    /// has passed every view), at most `timeout`: what `?wait=visible` asks.
    pub async fn wait_visible(&self, timeout: std::time::Duration) -> SqlResult<()> {
        match tokio::time::timeout(timeout, self.coordinator.inject_and_wait(openclaw_engine::BarrierKind::Periodic, None)).await {
            Ok(passed) => passed.map(|_| ()).map_err(SqlError::from),
            Err(_) => Err(SqlError::new(SqlState::QueryCanceled, format!("the rows are durable, but not yet visible in every view after {} ms", timeout.as_millis()))
                .with_hint("they will be; wait longer with ?wait=visible&timeout=30s, or read without waiting")),
        }
    }

    fn claim_key(&self, key: &str) -> SqlResult<KeyGuard<'_>> {
        if key.is_empty() || key.len() > MAX_WRITE_KEY_BYTES {
            return Err(SqlError::new(SqlState::InvalidParameterValue, format!("an idempotency key has 1 to {MAX_WRITE_KEY_BYTES} bytes")));
        }
        if !self.keys_in_flight.0.lock().expect("keys in flight lock").insert(key.to_string()) {
            return Err(SqlError::new(SqlState::SerializationFailure, format!("a request with idempotency key {} is being written", quote(key)))
                .with_hint("retry once it has been answered: the retry then gets its answer"));
        }
        Ok(KeyGuard(&self.keys_in_flight, key.to_string()))
    }

    /// Forgets keys past [`WRITE_KEY_TTL_MS`] and beyond [`MAX_WRITE_KEYS`], oldest first.
    pub(crate) fn trim_write_keys(&self, now_ms: u64) -> SqlResult<usize> {
        let dropped = trim_keys(&self.store, self.write_keys.load(Ordering::Acquire), MAX_WRITE_KEYS, now_ms)?;
        self.write_keys.fetch_sub(dropped, Ordering::AcqRel);
        Ok(dropped)
    }
}

/// Deletes the keys older than the TTL and the oldest beyond `max_keys` (of `stored`): reads
/// only the keys it drops and the one after them. How many it dropped.
fn trim_keys(store: &Store, stored: usize, max_keys: usize, now_ms: u64) -> SqlResult<usize> {
    let cutoff_ms = now_ms.saturating_sub(WRITE_KEY_TTL_MS);
    let over = stored.saturating_sub(max_keys);
    let mut expired: Vec<Vec<u8>> = vec![];
    store.scan_prefix(WRITE_KEYS_CF, b"t", false, |index_key, _| {
        let created_ms = index_key.get(1..9).map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        if expired.len() >= over && created_ms >= cutoff_ms {
            return false;
        }
        expired.push(index_key.to_vec());
        true
    })?;
    if expired.is_empty() {
        return Ok(0);
    }
    let cf: Arc<str> = Arc::from(WRITE_KEYS_CF);
    let mut write = StateWrite::default();
    for index_key in &expired {
        write.delete(&cf, stored_key(&index_key[9..]));
        write.delete(&cf, index_key.clone());
    }
    store.write_durable(write)?;
    Ok(expired.len())
}

/// Makes sure the keys' column family exists; how many keys it holds.
pub(crate) fn open(store: &Store) -> SqlResult<usize> {
    store.create_cf(WRITE_KEYS_CF, CfKind::Plain)?;
    let mut keys = 0;
    store.scan_prefix(WRITE_KEYS_CF, b"t", false, |_, _| {
        keys += 1;
        true
    })?;
    Ok(keys)
}

/// Where key `key`'s answer is stored (`'k' ‖ key`).
fn stored_key(key: &[u8]) -> Vec<u8> {
    [&b"k"[..], key].concat()
}

fn stored_receipt(store: &Store, key: &str) -> SqlResult<Option<WriteReceipt>> {
    let Some(value) = store.multi_get(WRITE_KEYS_CF, &[&stored_key(key.as_bytes())])?.pop().flatten() else { return Ok(None) };
    let corrupt = || SqlError::new(SqlState::Internal, format!("the stored answer of idempotency key {} is corrupt", quote(key)));
    let [WRITE_KEY_FORMAT, rest @ ..] = value.as_slice() else { return Err(corrupt()) };
    let receipt: Value = serde_json::from_slice(rest.get(8..).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let errors = receipt["errors"].as_array().ok_or_else(corrupt)?;
    Ok(Some(WriteReceipt {
        table: receipt["table"].as_str().ok_or_else(corrupt)?.to_string(),
        accepted: receipt["accepted"].as_u64().ok_or_else(corrupt)?,
        dead_letters: receipt["dead_letters"].as_u64().ok_or_else(corrupt)?,
        errors: errors.iter().map(|e| (e["line"].as_u64().unwrap_or(0), e["error"].as_str().unwrap_or("").to_string())).collect(),
        replayed: false,
    }))
}

/// Adds `key` and its receipt to `write` (the commit's own synced write).
fn remember(key: &str, receipt: &WriteReceipt, now_ms: u64, write: &mut StateWrite) {
    let cf: Arc<str> = Arc::from(WRITE_KEYS_CF);
    let mut value = vec![WRITE_KEY_FORMAT];
    value.extend_from_slice(&now_ms.to_le_bytes());
    value.extend_from_slice(receipt.stored_json().to_string().as_bytes());
    write.put(&cf, stored_key(key.as_bytes()), value);
    let mut index_key = vec![b't'];
    index_key.extend_from_slice(&now_ms.to_be_bytes());
    index_key.extend_from_slice(key.as_bytes());
    write.put(&cf, index_key, vec![]);
}

fn bad_body(message: String) -> SqlError {
    SqlError::new(SqlState::InvalidTextRepresentation, message).with_hint("nothing of this request was applied; fix the body and send it again")
}

/// A request id for dead letters of a request without an idempotency key.
fn new_request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{:x}-{}", chrono::Utc::now().timestamp_micros(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The dead-letter rows of one request, in the dead-letter table's columns.
fn dead_letter_batch(request: &str, bad: &[BadRecord], schema: &SchemaRef) -> SqlResult<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    let now_us = chrono::Utc::now().timestamp_micros();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(bad.iter().map(|_| request))),
        Arc::new(Int64Array::from_iter_values(bad.iter().map(|b| b.line as i64))),
        Arc::new(StringArray::from_iter_values(bad.iter().map(|b| b.error.as_str()))),
        Arc::new(StringArray::from_iter_values(bad.iter().map(|b| b.payload.as_str()))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(bad.iter().map(|_| now_us)).with_timezone("+00:00")),
    ];
    let fields: Vec<_> = schema.fields().iter().zip(&columns).map(|(f, c)| datafusion::arrow::datatypes::Field::new(f.name(), c.data_type().clone(), true)).collect();
    let batch = RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), columns).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
    crate::dml::conform(&batch, schema)
}

/// The body's rows, in the table's columns (cast, NOT NULL checked), and the records that did
/// not decode.
fn decode(format: BodyFormat, body: &[u8], table: &SchemaRef) -> SqlResult<Decoded> {
    decode_limited(format, body, table, MAX_INGEST_ROWS)
}

/// [`decode`], with at most `max_rows` records.
pub(crate) fn decode_limited(format: BodyFormat, body: &[u8], table: &SchemaRef, max_rows: usize) -> SqlResult<Decoded> {
    let schema = &nullable(table);
    let decoded = match format {
        BodyFormat::NdJson => {
            let whole = || std::str::from_utf8(body).map_err(|e| e.to_string()).and_then(|text| decode_json_lines(&[text], schema));
            by_record(whole, || lines(body), schema, decode_json_lines)?
        }
        BodyFormat::JsonArray => {
            let rows: Vec<Value> = serde_json::from_slice(body).map_err(|e| bad_body(format!("the body is not a JSON array of objects: {e}")))?;
            decode_json_values(rows, schema)?
        }
        BodyFormat::JsonDocument => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(rows)) => decode_json_values(rows, schema)?,
            Ok(object @ Value::Object(_)) => decode_json_values(vec![object], schema)?,
            Ok(_) => whole_body_bad("the body is not a JSON object or an array of them".into(), body),
            Err(e) => whole_body_bad(format!("the body is not JSON: {e}"), body),
        },
        BodyFormat::Text => match std::str::from_utf8(body) {
            Ok(text) => Decoded { batches: vec![text_row(text, schema)?], bad: vec![] },
            Err(e) => whole_body_bad(format!("the body is not UTF-8: {e}"), body),
        },
        BodyFormat::Csv { header } => {
            let whole = || decode_csv_body(header, body, schema, false);
            let records = || lines(body).into_iter().skip(usize::from(header)).collect();
            let head = lines(body.split(|b| *b == b'\n').next().unwrap_or_default()).pop().map(|(_, h)| h).filter(|_| header);
            by_record(whole, records, schema, |texts, schema| decode_csv(head.as_deref(), texts, schema, false))?
        }
        BodyFormat::CsvMarkedNulls => {
            let whole = || decode_csv_body(false, body, schema, true);
            by_record(whole, || lines(body), schema, |texts, schema| decode_csv(None, texts, schema, true))?
        }
        BodyFormat::ArrowStream => Decoded { batches: decode_arrow(body, table)?, bad: vec![] },
    };
    finish(decoded, table, max_rows)
}

/// A request body as the HTTP and gRPC fronts decode it, before anything is written: its
/// rows and its records that did not decode. The fuzz targets (`fuzz/`) feed it any bytes;
/// it must answer with rows or an error, never panic.
pub fn decode_request_body(format: BodyFormat, body: &[u8], table: &SchemaRef) -> SqlResult<(usize, usize)> {
    let decoded = decode(format, body, table)?;
    Ok((decoded.batches.iter().map(|b| b.num_rows()).sum(), decoded.bad.len()))
}

/// [`decode_request_body`] for records already parsed as JSON (gRPC's Protobuf rows, as
/// `ProtobufMessage::to_json` gives them).
pub fn decode_json_records(records: Vec<Value>, table: &SchemaRef) -> SqlResult<(usize, usize)> {
    let decoded = finish(decode_json_values(records, &nullable(table))?, table, MAX_INGEST_ROWS)?;
    Ok((decoded.batches.iter().map(|b| b.num_rows()).sum(), decoded.bad.len()))
}

/// The table's columns, all nullable: records are decoded so, and `conform` then names the
/// NOT NULL column a record left empty.
fn nullable(table: &SchemaRef) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(table.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()))
}

/// Holds `decoded` to the request row limit and conforms its batches to the table (types,
/// NOT NULL).
fn finish(decoded: Decoded, table: &SchemaRef, max_rows: usize) -> SqlResult<Decoded> {
    let rows: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
    if rows + decoded.bad.len() > max_rows {
        return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("{} records in one request, more than {max_rows}", rows + decoded.bad.len()))
            .with_hint("split the body into several requests"));
    }
    let batches = decoded.batches.iter().filter(|b| b.num_rows() > 0).map(|b| crate::dml::conform(b, table)).collect::<SqlResult<_>>()?;
    Ok(Decoded { batches, bad: decoded.bad })
}

/// JSON objects, already parsed (the elements of an array).
fn decode_json_values(rows: Vec<Value>, schema: &SchemaRef) -> SqlResult<Decoded> {
    let whole = || {
        let mut decoder = datafusion::arrow::json::ReaderBuilder::new(schema.clone()).with_batch_size(JSON_BATCH_ROWS).build_decoder().map_err(|e| e.to_string())?;
        decoder.serialize(&rows).map_err(|e| e.to_string())?;
        decoder.flush().map(|b| b.into_iter().collect()).map_err(|e| e.to_string())
    };
    let records = || rows.iter().enumerate().map(|(i, r)| (i as u64 + 1, r.to_string())).collect();
    by_record(whole, records, schema, decode_json_lines)
}

/// A body that is one bad record as a whole.
fn whole_body_bad(error: String, body: &[u8]) -> Decoded {
    Decoded { batches: vec![], bad: vec![BadRecord { line: 1, error, payload: String::from_utf8_lossy(body).into_owned() }] }
}

/// One row: `text` in the only column of `schema`.
fn text_row(text: &str, schema: &SchemaRef) -> SqlResult<RecordBatch> {
    let column: datafusion::arrow::array::ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![text]));
    let column = datafusion::arrow::compute::cast(&column, schema.field(0).data_type()).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
    RecordBatch::try_new(schema.clone(), vec![column]).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))
}

/// The body's non-blank lines, numbered from 1.
fn lines(body: &[u8]) -> Vec<(u64, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i as u64 + 1, l.to_string()))
        .collect()
}

/// Decodes the whole body at once (`whole`: one pass, batch by batch); only when that fails,
/// record by record, so that the bad ones go to the dead-letter table and the rest are written.
fn by_record(
    whole: impl FnOnce() -> Result<Vec<RecordBatch>, String>,
    records: impl FnOnce() -> Vec<(u64, String)>,
    schema: &SchemaRef,
    decode: impl Fn(&[&str], &SchemaRef) -> Result<Vec<RecordBatch>, String>,
) -> SqlResult<Decoded> {
    if let Ok(batches) = whole() {
        return Ok(Decoded { batches, bad: vec![] });
    }
    let (mut batches, mut bad) = (vec![], vec![]);
    for (line, text) in records() {
        match decode(&[text.as_str()], schema) {
            Ok(one) => batches.extend(one),
            Err(error) => bad.push(BadRecord { line, error, payload: text }),
        }
    }
    let batches = match batches.is_empty() {
        true => vec![],
        false => vec![datafusion::arrow::compute::concat_batches(schema, &batches).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?],
    };
    Ok(Decoded { batches, bad })
}

/// JSON objects, one per text.
fn decode_json_lines(texts: &[&str], schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let mut decoder = datafusion::arrow::json::ReaderBuilder::new(schema.clone()).with_batch_size(JSON_BATCH_ROWS).build_decoder().map_err(|e| e.to_string())?;
    let mut out = vec![];
    for text in texts {
        for mut bytes in [text.as_bytes(), b"\n"] {
            // The decoder takes at most a batch of rows per call and says how many bytes it
            // read: the rest waits until the batch is flushed.
            while !bytes.is_empty() {
                let read = decoder.decode(bytes).map_err(|e| e.to_string())?;
                bytes = &bytes[read..];
                if !bytes.is_empty() {
                    out.extend(decoder.flush().map_err(|e| e.to_string())?);
                }
            }
        }
    }
    out.extend(decoder.flush().map_err(|e| e.to_string())?);
    Ok(out)
}

/// A whole CSV body.
/// `marked_nulls`: only `\N` is NULL (else an empty field is).
fn decode_csv_body(header: bool, body: &[u8], schema: &SchemaRef, marked_nulls: bool) -> Result<Vec<RecordBatch>, String> {
    static MARKED_NULL: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let mut builder = datafusion::arrow::csv::ReaderBuilder::new(schema.clone()).with_header(header);
    if marked_nulls {
        let null = MARKED_NULL.get_or_init(|| regex::Regex::new(r"^\\N$").expect("a fixed regex"));
        builder = builder.with_format(datafusion::arrow::csv::reader::Format::default().with_header(header).with_null_regex(null.clone()));
    }
    builder
        .build(Cursor::new(body))
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// CSV rows, one per text, under the header line when there is one.
fn decode_csv(head: Option<&str>, texts: &[&str], schema: &SchemaRef, marked_nulls: bool) -> Result<Vec<RecordBatch>, String> {
    let mut text = head.map(|h| format!("{h}\n")).unwrap_or_default();
    for t in texts {
        text.push_str(t);
        text.push('\n');
    }
    decode_csv_body(head.is_some(), text.as_bytes(), schema, marked_nulls)
}

/// An Arrow IPC stream whose columns are the table's by name (in any order), castable to its
/// types.
fn decode_arrow(body: &[u8], schema: &SchemaRef) -> SqlResult<Vec<RecordBatch>> {
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(Cursor::new(body), None).map_err(|e| bad_body(format!("not an Arrow IPC stream: {e}")))?;
    let theirs = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad_body(format!("Arrow IPC: {e}")))?;
    fit_arrow(&theirs, batches, schema)
}

/// Arrow batches of schema `theirs`, with the table's columns picked by name (checked to
/// convert to the table's types; `finish` casts them).
fn fit_arrow(theirs: &SchemaRef, batches: Vec<RecordBatch>, schema: &SchemaRef) -> SqlResult<Vec<RecordBatch>> {
    let mut order = vec![];
    for field in schema.fields() {
        let at = theirs.index_of(field.name()).map_err(|_| {
            SqlError::new(SqlState::DatatypeMismatch, format!("the Arrow stream has no column {}", quote(field.name())))
                .with_detail(format!("the table's columns: {}", schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")))
        })?;
        if !datafusion::arrow::compute::can_cast_types(theirs.field(at).data_type(), field.data_type()) {
            return Err(SqlError::new(SqlState::DatatypeMismatch, format!("column {} is {} in the Arrow stream, which does not convert to {}", quote(field.name()), theirs.field(at).data_type(), field.data_type())));
        }
        order.push(at);
    }
    batches
        .into_iter()
        .map(|batch| {
            let columns = order.iter().map(|&i| batch.column(i).clone()).collect();
            let schema = theirs.project(&order).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
            RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| bad_body(format!("Arrow IPC: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys go by age past the TTL and oldest first beyond the cap; a kept key still answers.
    #[test]
    fn stored_keys_are_bounded_by_age_and_count() {
        let dir = std::env::temp_dir().join(format!("openclaw-write-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        open(&store).unwrap();
        let mut write = StateWrite::default();
        for i in 0..5u64 {
            let receipt = WriteReceipt { table: "t".into(), accepted: i, dead_letters: 0, errors: vec![], replayed: false };
            remember(&format!("key-{i}"), &receipt, 1_000 * (i + 1), &mut write);
        }
        store.write_durable(write).unwrap();
        assert_eq!(open(&store).unwrap(), 5);
        assert_eq!(trim_keys(&store, 5, 3, 5_000).unwrap(), 2, "the two oldest beyond a cap of 3");
        assert!(stored_receipt(&store, "key-0").unwrap().is_none());
        assert_eq!(stored_receipt(&store, "key-2").unwrap().unwrap().accepted, 2);
        // Past the TTL of the ones written at 3 s and 4 s.
        assert_eq!(trim_keys(&store, 3, 10, 4_500 + WRITE_KEY_TTL_MS).unwrap(), 2);
        assert_eq!(open(&store).unwrap(), 1);
        assert_eq!(store.count_keys(WRITE_KEYS_CF).unwrap(), 2, "one key and its age entry");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A body of more rows than a decoder batch is decoded whole, in every format (NDJSON
    /// once kept only its first 8,192 rows).
    #[test]
    fn every_row_of_a_large_body_is_decoded() {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let rows = 3 * JSON_BATCH_ROWS + 17;
        let ndjson: String = (0..rows).map(|i| format!("{{\"n\": {i}}}\n")).collect();
        let array = format!("[{}]", (0..rows).map(|i| format!("{{\"n\": {i}}}")).collect::<Vec<_>>().join(","));
        let csv: String = std::iter::once("n\n".to_string()).chain((0..rows).map(|i| format!("{i}\n"))).collect();
        for (format, body) in [(BodyFormat::NdJson, ndjson.as_bytes()), (BodyFormat::JsonArray, array.as_bytes()), (BodyFormat::JsonDocument, array.as_bytes()), (BodyFormat::Csv { header: true }, csv.as_bytes())] {
            let decoded = decode(format, body, &schema).unwrap();
            assert!(decoded.bad.is_empty(), "{format:?}");
            let values: Vec<i64> = decoded
                .batches
                .iter()
                .flat_map(|b| datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(b.column(0)).values().to_vec())
                .collect();
            assert_eq!(values, (0..rows as i64).collect::<Vec<_>>(), "{format:?}");
        }
        // A bad record among many: the rest are all kept.
        let with_bad = ndjson.replacen("{\"n\": 5}", "{\"n\": \"x\"}", 1);
        let decoded = decode(BodyFormat::NdJson, with_bad.as_bytes(), &schema).unwrap();
        assert_eq!((decoded.batches.iter().map(|b| b.num_rows()).sum::<usize>(), decoded.bad.len()), (rows - 1, 1));
    }

    /// The stored form of a key, pinned: keys written by this version answer in the next.
    #[test]
    fn a_stored_key_is_pinned() {
        let dir = std::env::temp_dir().join(format!("openclaw-write-key-golden-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        open(&store).unwrap();
        let mut write = StateWrite::default();
        let receipt = WriteReceipt { table: "t".into(), accepted: 3, dead_letters: 1, errors: vec![(2, "bad".into())], replayed: false };
        remember("k", &receipt, 0x0102, &mut write);
        store.write_durable(write).unwrap();
        let mut golden = vec![1u8, 0x02, 0x01, 0, 0, 0, 0, 0, 0];
        golden.extend_from_slice(br#"{"accepted":3,"dead_letters":1,"errors":[{"error":"bad","line":2}],"table":"t"}"#);
        let mut stored = vec![];
        store.scan(WRITE_KEYS_CF, None, |k, v| {
            stored.push((k.to_vec(), v.to_vec()));
            true
        }).unwrap();
        assert_eq!(stored, vec![(b"kk".to_vec(), golden), (vec![b't', 0, 0, 0, 0, 0, 0, 0x01, 0x02, b'k'], vec![])]);
        assert_eq!(stored_receipt(&store, "k").unwrap(), Some(receipt));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
