//! Tables fed by a connector: `CREATE TABLE t (...) WITH (connector = 'kafka', ...)`. A task
//! reads the connector and writes each chunk into the table, together with the reader's
//! position in the same atomic write (`TableWrite::Ingest`). Tables keep their rows across a
//! restart (they are not rolled back to a checkpoint), so the position kept beside them is
//! where the reader resumes: no row is lost or written twice.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use openclaw_engine::source::{Position, SourceProgress, SourceReader};
use openclaw_engine::table::{TableRequest, TableWrite};
use openclaw_engine::{EngineError, EngineResult, ObjectId};
use openclaw_storage::{CfKind, StateWrite, Store};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::{Detail, Ingest};
use crate::parser::ObjectKind;
use crate::database::{object_name, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::CreateSource;

/// Waiting `FLUSH`es a feeding task holds at most; more wait to be queued.
const FLUSH_QUEUE: usize = 16;

/// The column family holding the position of the reader that feeds table `id` (carried over
/// by a restart, like the table's rows).
pub(crate) fn offsets_cf(id: ObjectId) -> String {
    format!("table_{id}_offsets")
}

impl Database {
    /// `CREATE TABLE ... WITH (connector = ...)`.
    pub(crate) async fn create_connector_table(&self, create: CreateSource, sql: &str) -> SqlResult<QueryOutput> {
        let name = object_name(&create.name)?;
        if create.if_not_exists && self.catalog.lock().await.get(&name).is_some() {
            return Ok(QueryOutput::command("CREATE TABLE"));
        }
        let typed = create.options.clone();
        let created = self.connector_table(create, sql, &name).await.map_err(|e| self.secrets.scrub(e, &typed))?;
        self.secrets.record_uses(&name, &typed);
        Ok(created)
    }

    /// [`Self::create_connector_table`] with the secrets its options refer to opened.
    async fn connector_table(&self, create: CreateSource, sql: &str, name: &str) -> SqlResult<QueryOutput> {
        let name = name.to_string();
        let mut options = self.secrets.reveal(&create.options)?;
        // The history's own sink is created beside the table (`crate::history`).
        crate::history::HistoryOptions::take(&mut options)?;
        let connector_name = options.get("connector").cloned().unwrap_or_default();
        let connector = openclaw_connectors::connector(&connector_name).ok_or_else(|| {
            SqlError::not_supported(format!("connector {} is not supported", quote(&connector_name)))
                .with_hint(format!("available connectors: {}", openclaw_connectors::CONNECTORS.join(", ")))
        })?;
        let resolved = crate::ddl::resolve_options(connector, &mut options)?;
        let schema = self.connector_schema(&create, connector, &options).await?;
        let table_sql = table_definition(&create, &schema)?;
        let Some(crate::parser::OcStatement::CreateTable(ct, _, _)) = crate::parser::parse(&table_sql)?.pop() else {
            return Err(SqlError::new(SqlState::Internal, "a connector table's definition did not parse"));
        };
        self.check_upsert_key(connector, &options, &ct).await?;
        let receiver = connector.receiver(&schema, &options).map_err(crate::ddl::connector_error)?;
        // The dead-letter table first: a restart replays records in id order, and finds it.
        let dead_letters = match connector.has_dead_letters() {
            true => Some(self.create_dead_letter_table(&name).await?),
            false => None,
        };
        self.create_table(*ct, create.watermark.clone(), sql).await?;
        let mut catalog = self.catalog.lock().await;
        let dead_letter_state = match dead_letters.as_deref().and_then(|d| catalog.get(d)).map(|e| &e.detail) {
            Some(Detail::Table { state, .. }) => Some(state.clone()),
            _ => None,
        };
        let Some(entry) = catalog.get_mut(&name) else {
            return Err(SqlError::new(SqlState::Internal, "the table just created is gone"));
        };
        let Detail::Table { writer, ingest, receiver: receives, .. } = &mut entry.detail else {
            return Err(SqlError::new(SqlState::Internal, "a connector table is a table"));
        };
        // The table's record again, with what the connector resolved (its Avro schema).
        self.persist(entry.id, ObjectKind::Table, &name, sql, resolved)?;
        if let Some(receiver) = receiver {
            // Fed by the requests sent to it: nothing to read, no position to keep.
            *receives = Some(receiver);
            tracing::info!(table = %name, connector = connector.name(), "table fed by requests sent to it");
            return Ok(QueryOutput::command("CREATE TABLE"));
        }
        let cf = offsets_cf(entry.id);
        self.store.create_cf(&cf, CfKind::Plain)?;
        let dead_letter_table = match dead_letter_state {
            Some(state) => Some(Arc::new(openclaw_engine::dead_letters::DeadLetterTable::new(state)?)),
            None => None,
        };
        let progress = Arc::new(SourceProgress::default());
        let context = openclaw_connectors::ReaderContext { source: name.clone(), progress: progress.clone(), dead_letters: dead_letter_table };
        let mut reader = connector
            .reader(&entry.schema, &options, context)
            .map_err(|e| SqlError::new(SqlState::InvalidParameterValue, e.message))?;
        let stored = stored_position(&self.store, &cf)?;
        if !stored.is_empty() {
            reader.seek(stored)?;
        }
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_QUEUE);
        let task = tokio::spawn(tracing::Instrument::instrument(
            feed(reader, writer.clone(), cf, flush_rx, self.config.chunk_size_rows, progress.clone()),
            tracing::info_span!("ingest", table = %name),
        ));
        *ingest = Some(Ingest { task: task.abort_handle(), flush: flush_tx, dead_letters, progress });
        tracing::info!(table = %name, connector = connector.name(), "table fed by a connector");
        Ok(QueryOutput::command("CREATE TABLE"))
    }

    /// `FORMAT UPSERT`: the record key (the `INCLUDE key` column) must be the primary key,
    /// alone, since a tombstone names a row by its key only.
    async fn check_upsert_key(
        &self,
        connector: &'static dyn openclaw_connectors::Connector,
        options: &openclaw_connectors::Options,
        table: &datafusion::sql::sqlparser::ast::CreateTable,
    ) -> SqlResult<()> {
        if connector.name() != "kafka" {
            return Ok(());
        }
        let Some(key) = openclaw_connectors::kafka::upsert_key_column(options).map_err(crate::ddl::connector_error)? else {
            return Ok(());
        };
        let (schema, constraints) = self.plan_columns(table.clone()).await?;
        let primary_key: Option<Vec<&str>> = constraints.iter().find_map(|c| match c {
            datafusion::common::Constraint::PrimaryKey(cols) => Some(cols.iter().map(|&i| schema.field(i).name().as_str()).collect()),
            _ => None,
        });
        if primary_key.as_deref() == Some(&[key.as_str()][..]) {
            return Ok(());
        }
        Err(SqlError::new(SqlState::InvalidTableDefinition, format!("the primary key of a FORMAT UPSERT table must be its key column {}", quote(&key)))
            .with_detail("a record replaces the row of its key, and a tombstone deletes it")
            .with_hint(format!("declare PRIMARY KEY ({key})")))
    }

    /// Asks every connector-fed table to read up to where its stream ends now, and waits.
    pub(crate) async fn flush_ingests(&self) {
        let waits: Vec<oneshot::Receiver<()>> = {
            let catalog = self.catalog.lock().await;
            catalog
                .of_kind(crate::parser::ObjectKind::Table)
                .filter_map(|e| match &e.detail {
                    Detail::Table { ingest: Some(i), .. } => {
                        let (tx, rx) = oneshot::channel();
                        i.flush.try_send(tx).ok().map(|_| rx)
                    }
                    _ => None,
                })
                .collect()
        };
        for rx in waits {
            let _ = rx.await;
        }
    }
}

/// `CREATE TABLE` text for a connector table: every column of `schema` (declared and
/// included metadata), then the declared constraints.
pub(crate) fn table_definition(create: &CreateSource, schema: &SchemaRef) -> SqlResult<String> {
    let mut parts = vec![];
    for field in schema.fields() {
        let declared = create.columns.iter().find(|c| c.name.value == *field.name());
        match declared {
            Some(c) => parts.push(c.to_string()),
            None => parts.push(format!("\"{}\" {}", field.name(), sql_type(field.data_type())?)),
        }
    }
    parts.extend(create.constraints.iter().map(|c| c.to_string()));
    Ok(format!("CREATE TABLE {} ({})", create.name, parts.join(", ")))
}

fn sql_type(t: &DataType) -> SqlResult<String> {
    Ok(match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary => "BYTEA".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        other => return Err(SqlError::not_supported(format!("a connector column of type {other} cannot be stored in a table"))),
    })
}

fn stored_position(store: &Store, cf: &str) -> SqlResult<Position> {
    let mut position = Position::new();
    store.scan(cf, None, |k, v| {
        if let (Ok(split), Ok(offset)) = (std::str::from_utf8(k), <[u8; 8]>::try_from(v)) {
            position.insert(split.to_string(), u64::from_be_bytes(offset));
        }
        true
    })?;
    Ok(position)
}

/// Reads `reader` into the table behind `writer`, storing the position with every write.
/// Between chunks it serves FLUSH requests: one is answered once the reader has caught up
/// with where its stream ended when the request came (a bounded stream: its end).
async fn feed(
    mut reader: Box<dyn SourceReader>,
    writer: mpsc::Sender<TableRequest>,
    cf: String,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    chunk_rows: usize,
    progress: Arc<SourceProgress>,
) -> EngineResult<()> {
    use std::sync::atomic::Ordering;
    let cf: Arc<str> = Arc::from(cf.as_str());
    let mut waiting: Vec<oneshot::Sender<()>> = vec![];
    let mut exhausted = false;
    let mut last = reader.position();
    loop {
        while let Ok(tx) = flushes.try_recv() {
            if exhausted || !reader.begin_flush() {
                let _ = tx.send(());
            } else {
                waiting.push(tx);
            }
        }
        if exhausted {
            // Nothing more to read: wait for FLUSH requests only.
            match flushes.recv().await {
                Some(tx) => {
                    let _ = tx.send(());
                    continue;
                }
                None => return Ok(()),
            }
        }
        // Not inside a select: a reader's next_chunk is not cancel-safe (records taken from
        // the consumer would be lost), and it returns within about 100 ms anyway.
        match reader.next_chunk(chunk_rows).await? {
            None => {
                exhausted = true;
                progress.exhausted.store(true, Ordering::Relaxed);
                waiting.drain(..).for_each(|tx| {
                    let _ = tx.send(());
                });
            }
            Some(chunk) => {
                let position = reader.position();
                if !chunk.is_empty() || position != last {
                    let mut extra = StateWrite::default();
                    for (split, offset) in position.iter().flatten() {
                        extra.put(&cf, split.as_bytes().to_vec(), offset.to_be_bytes().to_vec());
                    }
                    let rows = chunk.num_rows();
                    let (done, result) = oneshot::channel();
                    let request = TableRequest { write: TableWrite::Ingest(chunk, extra), done };
                    writer.send(request).await.map_err(|_| EngineError::Closed)?;
                    result.await.map_err(|_| EngineError::Closed)??;
                    progress.rows.fetch_add(rows as u64, Ordering::Relaxed);
                    last = position;
                }
                if !waiting.is_empty() && reader.caught_up() {
                    waiting.drain(..).for_each(|tx| {
                        let _ = tx.send(());
                    });
                }
            }
        }
    }
}
