//! Executes statements: the one entry point the server calls.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SessionConfig, SessionContext, SessionState};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use openclaw_engine::{BarrierKind, Coordinator, EngineConfig, EngineError};
use openclaw_storage::Store;

use crate::catalog::{Catalog, Detail};
use crate::error::{SqlError, SqlResult, SqlState};
use crate::interrupt::Interrupt;
use crate::parser::{self, ObjectKind, OcStatement};
use crate::relation::QuerySnapshot;
use crate::session::SessionVars;
use crate::transaction::TxnState;

/// What a statement returns. Rows come as a stream, so that a large result is sent to the
/// client as it is read, never held whole in memory.
pub enum QueryOutput {
    Rows { schema: SchemaRef, stream: SendableRecordBatchStream },
    Command { tag: String, rows: Option<usize> },
    /// `COPY (SUBSCRIBE ...) TO STDOUT`: rows that keep coming until the client goes.
    Subscription(Box<crate::subscribe::Subscription>),
    /// `COPY ... FROM STDIN`: the server gathers the client's data and hands it to
    /// [`Database::copy_from`]; `columns` per line. `refused`: why it cannot be written (no
    /// such table or column, say), answered once the client has sent its data: a client of
    /// the extended protocol has already pipelined what follows the COPY.
    CopyIn { copy: crate::copy::CopyFrom, columns: usize, refused: Option<SqlError> },
    /// `COPY ... TO STDOUT`: a query's rows, which the server streams in `format`.
    CopyOut { schema: SchemaRef, stream: SendableRecordBatchStream, format: crate::copy::CopyFormat, header: bool },
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryOutput::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            QueryOutput::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
            QueryOutput::Subscription(s) => write!(f, "Subscription({:?})", s.schema()),
            QueryOutput::CopyIn { copy, .. } => write!(f, "CopyIn({})", copy.table),
            QueryOutput::CopyOut { schema, .. } => write!(f, "CopyOut({schema:?})"),
        }
    }
}

impl QueryOutput {
    /// Rows already in memory.
    pub fn rows(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        QueryOutput::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) }
    }

    /// Every row, collected (for tests and the benchmark).
    pub async fn collect(self) -> SqlResult<Vec<RecordBatch>> {
        use futures::TryStreamExt;
        match self {
            QueryOutput::Rows { stream, .. } => Ok(stream.try_collect().await?),
            QueryOutput::Command { .. } => Ok(vec![]),
            QueryOutput::Subscription(_) => Err(SqlError::new(SqlState::FeatureNotSupported, "a subscription never ends: read it, do not collect it")),
            QueryOutput::CopyIn { .. } => Err(SqlError::new(SqlState::FeatureNotSupported, "COPY FROM STDIN takes its data over the wire protocol")),
            QueryOutput::CopyOut { stream, .. } => Ok(stream.try_collect().await?),
        }
    }

    pub(crate) fn command(tag: &str) -> Self {
        QueryOutput::Command { tag: tag.to_string(), rows: None }
    }

    pub(crate) fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> SqlResult<Self> {
        Self::nullable_text_rows(columns, rows.into_iter().map(|r| r.into_iter().map(Some).collect()).collect())
    }

    /// [`Self::text_rows`] where `None` is NULL.
    pub(crate) fn nullable_text_rows(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> SqlResult<Self> {
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| Arc::new(StringArray::from_iter(rows.iter().map(|r| r[i].as_deref()))) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
        Ok(QueryOutput::rows(schema, vec![batch]))
    }
}

/// One OpenClaw database: its store, its catalog, its running dataflows.
pub struct Database {
    pub(crate) ctx: SessionContext,
    pub(crate) store: Store,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) coordinator: Arc<Coordinator>,
    /// DDL takes this lock for its whole run, so catalog changes happen one at a time.
    pub(crate) catalog: tokio::sync::Mutex<Catalog>,
    /// The last committed checkpoint; its lock serialises checkpoints.
    pub(crate) last_checkpoint: tokio::sync::Mutex<Option<openclaw_storage::checkpoint::Manifest>>,
    /// Told of each checkpoint as it commits (`crate::metrics`).
    pub(crate) checkpoint_observer: std::sync::OnceLock<crate::metrics::CheckpointObserver>,
    /// `FLUSH`es waiting for bounded sources. Their barriers hold back every later barrier at
    /// those sources, so a periodic checkpoint now would wait (holding the checkpoint lock)
    /// until the sources end; it is skipped instead.
    pub(crate) pending_flushes: std::sync::atomic::AtomicUsize,
    /// Subscriptions open now, against `--max-subscribers` and `--max-subscribers-per-object`.
    pub(crate) subscribers: Arc<crate::subscribe::SubscriberSlots>,
    /// Idempotency keys of API writes in progress, and how many are stored
    /// (`crate::write_api`).
    pub(crate) keys_in_flight: crate::write_api::KeysInFlight,
    pub(crate) write_keys: std::sync::atomic::AtomicUsize,
    /// Parquet sinks' files, for `history()` (`crate::history`).
    pub(crate) parquet_sinks: crate::history::ParquetSinks,
    /// Where checkpoints are uploaded (the cold store), if anywhere.
    pub(crate) checkpoint_store: Option<Arc<crate::checkpoint_store::CheckpointStore>>,
    /// `CREATE SECRET`'s sealed values and who uses them (`crate::secrets`).
    pub(crate) secrets: crate::secrets::Secrets,
    /// Roles, their grants, and the owners of objects (`crate::roles`).
    pub(crate) roles: crate::roles::Roles,
    /// Bearer tokens of the HTTP and gRPC fronts (`crate::roles::api_keys`).
    pub(crate) api_keys: crate::roles::api_keys::ApiKeys,
}

/// A query's rows, cut off with PostgreSQL's 57014 error by `interrupt`: rows are computed as
/// they are sent, so the deadline and a cancel must hold over the stream too, not only over
/// planning.
fn rows_until(interrupt: Interrupt, output: QueryOutput) -> QueryOutput {
    use futures::StreamExt;
    let (schema, stream) = match output {
        QueryOutput::Rows { schema, stream } => (schema, stream),
        output => return output,
    };
    let rows = futures::stream::unfold(Some(stream), move |stream| {
        let interrupt = interrupt.clone();
        async move {
            let mut stream = stream?;
            match interrupt.until(stream.next()).await {
                Ok(Some(batch)) => Some((batch, Some(stream))),
                Ok(None) => None,
                Err(e) => Some((Err(datafusion::error::DataFusionError::External(Box::new(e))), None)),
            }
        }
    });
    QueryOutput::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, rows)) }
}

/// Counts a `FLUSH` in [`Database::pending_flushes`] while it lives.
struct PendingFlush<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> PendingFlush<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for PendingFlush<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Database {
    /// Opens the database over `store` and brings back every object of its durable catalog.
    ///
    /// `restored`: the checkpoint the store was rolled back to before it was opened
    /// (`openclaw_storage::checkpoint::restore`); views that read only sources and other such
    /// views resume from it, the rest are rebuilt from their inputs.
    pub async fn open(store: Store, config: EngineConfig, restored: Option<openclaw_storage::checkpoint::Manifest>) -> SqlResult<Arc<Self>> {
        Self::open_with_secrets(store, config, restored, None).await
    }

    /// [`Self::open`], with the key that seals and opens secrets (`CREATE SECRET` is refused
    /// without one, and a catalog holding secrets does not open without the key they were
    /// sealed under).
    pub async fn open_with_secrets(
        store: Store,
        config: EngineConfig,
        restored: Option<openclaw_storage::checkpoint::Manifest>,
        secret_key: Option<crate::secrets::SecretKey>,
    ) -> SqlResult<Arc<Self>> {
        let mut session = SessionConfig::new()
            .with_default_catalog_and_schema("openclaw", "public")
            .with_information_schema(true)
            .with_target_partitions(2);
        let opts = session.options_mut();
        opts.sql_parser.parse_float_as_decimal = true;
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        // The session time zone is UTC, so TIMESTAMPTZ columns carry a zone.
        opts.execution.time_zone = Some("+00:00".to_string());
        let ctx = SessionContext::new_with_state(crate::functions::session_state(session));
        let relations = crate::pg_catalog::Relations::default();
        crate::pg_catalog::register(&ctx, relations.clone(), &store)?;
        crate::functions::register(&ctx);
        let parquet_sinks = crate::history::ParquetSinks::default();
        ctx.register_udtf("history", Arc::new(crate::history::HistoryFunction(parquet_sinks.clone())));
        ctx.register_udtf(crate::as_of::FUNCTION, Arc::new(crate::as_of::AsOfFunction(parquet_sinks.clone())));
        ctx.register_udtf(crate::lookup_join::FUNCTION, Arc::new(crate::lookup_join::LookupFunction));
        if let Some(cold) = openclaw_connectors::parquet::cold_store() {
            ctx.register_object_store(&cold.root_url, cold.store.clone());
        }
        let coordinator = Coordinator::new();
        coordinator.set_snapshot_store(store.clone());
        let db = Self {
            ctx,
            store,
            config: Arc::new(config),
            coordinator,
            catalog: tokio::sync::Mutex::new(Catalog::with_relations(relations.clone())),
            last_checkpoint: Default::default(),
            checkpoint_observer: Default::default(),
            pending_flushes: Default::default(),
            subscribers: Default::default(),
            keys_in_flight: Default::default(),
            write_keys: Default::default(),
            parquet_sinks,
            checkpoint_store: crate::checkpoint_store::CheckpointStore::from_cold_store(),
            secrets: crate::secrets::Secrets::new(secret_key),
            roles: {
                let roles = crate::roles::Roles::default();
                roles.describe_in(relations);
                roles
            },
            api_keys: Default::default(),
        };
        let db = Arc::new(db);
        db.report_checkpoints(restored.as_ref()).await?;
        db.spawn_periodic_barriers();
        db.restore(restored).await?;
        let dir = db.store.dir().to_path_buf();
        tokio::task::spawn_blocking(move || crate::history::remove_dropped(&dir));
        // Tables replay their logs to resumed views at the first barrier after the restore
        // (once every view is attached); this one makes that happen before clients come.
        db.coordinator.inject_and_wait(BarrierKind::Periodic, None).await?;
        db.spawn_periodic_checkpoints();
        Ok(db)
    }

    /// Says which checkpoint is the newest, keeps checkpoint ids above every one on disk, and
    /// clears what a crash left half-written.
    /// `restored`: the checkpoint the store was rolled back to, already verified.
    async fn report_checkpoints(&self, restored: Option<&openclaw_storage::checkpoint::Manifest>) -> SqlResult<()> {
        let dir = self.store.dir().to_path_buf();
        if let Some(id) = openclaw_storage::checkpoint::highest_id(&dir) {
            self.coordinator.start_epochs_after(id);
        }
        let newest = match restored {
            Some(m) => Some((openclaw_storage::checkpoint::checkpoint_dir(&dir, m.id), m.clone())),
            None => {
                let verify_dir = dir.clone();
                tokio::task::spawn_blocking(move || openclaw_storage::checkpoint::newest_valid(&verify_dir))
                    .await
                    .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))??
            }
        };
        openclaw_storage::checkpoint::collect_garbage(&dir)?;
        if let Some((path, m)) = newest {
            // Durable subscriptions give tokens up to it from the start.
            self.coordinator.checkpoint_committed(m.id);
            tracing::info!(
                checkpoint = m.id,
                path = %path.display(),
                "newest checkpoint"
            );
            *self.last_checkpoint.lock().await = Some(m);
        }
        Ok(())
    }

    /// Injects a barrier every `flush_interval_ms`, so that progress flows without `FLUSH`.
    fn spawn_periodic_barriers(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval = std::time::Duration::from_millis(self.config.flush_interval_ms.max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(db) = weak.upgrade() else { return };
                let coordinator = db.coordinator.clone();
                drop(db);
                // Fire and forget: a periodic barrier only advances progress.
                let _ = coordinator.inject_periodic().await;
            }
        });
    }

    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Runs every statement of `sql` in order, stopping at the first error.
    pub async fn execute(&self, vars: &mut SessionVars, sql: &str) -> Vec<SqlResult<QueryOutput>> {
        let statements = match parser::parse_off_workers(sql).await {
            Ok(s) => s,
            Err(e) => return vec![Err(e)],
        };
        let mut out = vec![];
        for (stmt, text) in statements {
            let result = self.execute_statement(vars, stmt, &text, None).await;
            let failed = result.is_err();
            out.push(result);
            if failed {
                break;
            }
        }
        out
    }

    /// Runs one statement with bound parameters (extended protocol).
    pub async fn execute_one(
        &self,
        vars: &mut SessionVars,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<QueryOutput> {
        let mut statements = parser::parse_off_workers(sql).await?;
        if statements.len() != 1 {
            return Err(SqlError::new(SqlState::SyntaxError, "cannot insert multiple commands into a prepared statement"));
        }
        let (stmt, text) = statements.remove(0);
        self.execute_statement(vars, stmt, &text, params).await
    }

    /// `text`: the statement as written (kept by the durable catalog for `CREATE`s).
    pub(crate) async fn execute_statement(
        &self,
        vars: &mut SessionVars,
        stmt: OcStatement,
        text: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<QueryOutput> {
        if let Some(done) = self.transaction_control(vars, &stmt).await {
            return done;
        }
        let path = vars.search_path();
        let mut stmt = stmt;
        let result = match self.qualify(&mut stmt, &path).await {
            Ok(()) => match self.authorize(vars, &stmt).await {
                Ok(()) => {
                    let role = vars.current_role().filter(|r| self.roles.exists(r));
                    crate::roles::with_role(role, crate::schemas::with_path(path, self.execute_in_block(vars, stmt, text, params))).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match (result, &vars.txn) {
            (Err(e), TxnState::Open(_)) => {
                vars.txn = TxnState::Failed;
                Err(e)
            }
            (Ok(output), TxnState::Open(txn)) => Ok(crate::transaction::watch_rows(output, txn.poisoned.clone())),
            (result, _) => result,
        }
    }

    async fn execute_in_block(
        &self,
        vars: &mut SessionVars,
        stmt: OcStatement,
        text: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<QueryOutput> {
        match stmt {
            // An object's stored statement keeps its history options; the history's sink is a
            // catalog object of its own, restored from its own record (`crate::history`).
            OcStatement::CreateSource(s) => {
                let history = crate::history::HistoryOptions::take(&mut s.options.clone())?;
                let (name, kind) = (s.name.clone(), if s.as_table { ObjectKind::Table } else { ObjectKind::Source });
                let existed = self.exists_already(s.if_not_exists, &name).await;
                let created = match s.as_table {
                    true => self.create_connector_table(s, text).await?,
                    false => self.create_source(s, text).await?,
                };
                self.add_history(kind, &name, history, existed, vars).await?;
                Ok(created)
            }
            OcStatement::CreateTable(ct, watermark, mut options) => {
                let history = crate::history::HistoryOptions::take(&mut options)?;
                crate::history::refuse_other_options(&options, "a table")?;
                let (name, existed) = (ct.name.clone(), self.exists_already(ct.if_not_exists, &ct.name).await);
                let created = self.create_table(*ct, watermark, text).await?;
                self.add_history(ObjectKind::Table, &name, history, existed, vars).await?;
                Ok(created)
            }
            OcStatement::CreateView(mut v) => {
                let history = crate::history::HistoryOptions::take(&mut v.options)?;
                crate::history::refuse_other_options(&v.options, "a materialized view")?;
                let (name, existed) = (v.name.clone(), self.exists_already(v.if_not_exists, &v.name).await);
                let created = self.create_view(v, vars, text).await?;
                self.add_history(ObjectKind::MaterializedView, &name, history, existed, vars).await?;
                Ok(created)
            }
            OcStatement::ShowStateTables => self.show_state_tables().await,
            OcStatement::CreateSink(s) => self.create_sink_resuming(s, vars, text, None).await,
            OcStatement::ExplainCreateView(v) => self.explain_create_view(v, vars).await,
            OcStatement::ExplainAnalyze { kind, name } => self.explain_analyze(kind, &name).await,
            OcStatement::Flush => self.flush(vars.interrupt()?).await,
            OcStatement::ShowCheckpoints => self.show_checkpoints().await,
            OcStatement::ShowHistory => self.show_history().await,
            OcStatement::AlterHistory { kind, name, if_exists, options, reset } => self.alter_history(kind, &name, if_exists, options, reset, vars).await,
            OcStatement::Show(ObjectKind::Subscription) => self.show_subscriptions().await,
            OcStatement::Show(ObjectKind::Secret) => self.show_secrets(),
            OcStatement::Show(ObjectKind::Role) => self.show_roles(),
            OcStatement::Show(ObjectKind::ApiKey) => self.show_api_keys(),
            OcStatement::CreateApiKey { role } => self.create_api_key(vars, &role).await,
            OcStatement::GrantRole { groups, members, grant } => self.change_membership(vars, &groups, &members, grant).await,
            OcStatement::DropApiKey { id, if_exists } => self.drop_api_key(vars, &id, if_exists).await,
            OcStatement::SetVar { name, value } if name == "role" => {
                self.check_set_role(vars, &value)?;
                vars.set(&name, &value)?;
                Ok(QueryOutput::command("SET"))
            }
            OcStatement::CreateSecret { name, if_not_exists, value } => self.create_secret(&name, if_not_exists, &value, text).await,
            OcStatement::Drop { kind: ObjectKind::Secret, names, if_exists, .. } => self.drop_secrets(&names, if_exists).await,
            OcStatement::Show(kind) => self.show(kind).await,
            OcStatement::CreateSubscription { name, view, options } => self.create_subscription(&name, &view, &options, text).await,
            OcStatement::Describe(name) => self.describe_object(&name).await,
            OcStatement::Drop { kind, names, if_exists, cascade } => self.drop_objects(kind, &names, if_exists, cascade).await,
            OcStatement::Subscribe(_) => Err(SqlError::new(SqlState::FeatureNotSupported, "SUBSCRIBE is read with COPY or through a cursor")
                .with_hint("COPY (SUBSCRIBE ...) TO STDOUT, or DECLARE c CURSOR FOR SUBSCRIBE ...; FETCH ALL c WITH (timeout = '1s')")),
            OcStatement::CopySubscribe(stmt) => Ok(QueryOutput::Subscription(Box::new(self.subscribe(vars, stmt).await?))),
            OcStatement::CopyTo(copy) => match self.select(Statement::Query(copy.query), None, None, vars).await? {
                QueryOutput::Rows { schema, stream } => Ok(QueryOutput::CopyOut { schema, stream, format: copy.format, header: copy.header }),
                other => Err(SqlError::new(SqlState::Internal, format!("a query answered {other:?}"))),
            },
            OcStatement::CopyFrom(copy) => match self.copy_from_allowed(vars, &copy.table).await.and(self.copy_target(&copy).await) {
                Ok(columns) => Ok(QueryOutput::CopyIn { copy, columns, refused: None }),
                Err(e) => Ok(QueryOutput::CopyIn { columns: copy.columns.len(), copy, refused: Some(e) }),
            },
            OcStatement::DeclareSubscribe { cursor, stmt } => self.declare(vars, cursor, stmt).await,
            OcStatement::Fetch { cursor, count, options } => crate::subscribe::fetch(vars, &cursor, count, &options).await,
            OcStatement::Close(cursor) => crate::subscribe::close(vars, cursor.as_deref()),
            OcStatement::SetVar { name, value } => {
                vars.set(&name, &value)?;
                Ok(QueryOutput::command("SET"))
            }
            OcStatement::ShowVar(name) if name == "all" => {
                let rows = vars.all().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
                QueryOutput::text_rows(&["name", "setting"], rows)
            }
            OcStatement::ShowVar(name) => {
                let value = vars.get(&name)?.to_string();
                QueryOutput::text_rows(&[name.as_str()], vec![vec![value]])
            }
            OcStatement::Standard(s) if is_query(&s) => {
                let interrupt = vars.interrupt()?;
                let overlays = match &vars.txn {
                    TxnState::Open(txn) => Some(txn.overlays()),
                    _ => None,
                };
                let output = match params {
                    // With parameters (the extended protocol): planned once per session.
                    Some(params) if matches!(*s, Statement::Query(_)) => interrupt.until(self.select_prepared(vars, text, *s, params, overlays)).await??,
                    params => interrupt.until(self.select(*s, params, overlays, vars)).await??,
                };
                Ok(rows_until(interrupt.clone(), output))
            }
            OcStatement::Standard(s) => self.execute_standard(vars, *s, params).await,
        }
    }

    /// `FLUSH`: every row written before it is in every view, a checkpoint holds them, and
    /// Kafka sinks have committed them. Under `statement_timeout` only the waits are cut short,
    /// never a barrier's injection or the checkpoint's copy, which must not stop half done;
    /// what FLUSH waited for goes on without it.
    async fn flush(&self, interrupt: Interrupt) -> SqlResult<QueryOutput> {
        // First the wait for bounded sources, which may be long; then a checkpoint. Neither
        // pauses any input.
        {
            let _pending = PendingFlush::enter(&self.pending_flushes);
            // Tables fed by connectors first take in what their streams hold now.
            interrupt.until(self.flush_ingests()).await?;
            let (_, done) = self.coordinator.inject(BarrierKind::Flush, None).await;
            interrupt.until(done).await?.map_err(|_| EngineError::Closed)?;
        }
        let manifest = self.checkpoint(BarrierKind::Periodic).await?;
        // Sinks show what FLUSH saw only once they committed it to Kafka.
        interrupt.until(self.coordinator.wait_external_commits(manifest.id)).await.map_err(|e| {
            e.with_hint("a Kafka sink has not committed this checkpoint yet; its log says why (is the broker down?)")
        })?;
        Ok(QueryOutput::command("FLUSH"))
    }

    async fn execute_standard(&self, vars: &mut SessionVars, stmt: Statement, params: Option<Vec<ScalarValue>>) -> SqlResult<QueryOutput> {
        match stmt {
            Statement::CreateTable(ct) => {
                let text = ct.to_string();
                self.create_table(ct, None, &text).await
            }
            Statement::CreateSchema { schema_name: datafusion::sql::sqlparser::ast::SchemaName::Simple(name), if_not_exists, .. } => {
                let text = format!("CREATE SCHEMA {name}");
                self.create_schema(&name, if_not_exists, &text).await
            }
            Statement::Drop { object_type: datafusion::sql::sqlparser::ast::ObjectType::Schema, names, if_exists, cascade, .. } => self.drop_schemas(&names, if_exists, cascade).await,
            Statement::CreateFunction(f) => {
                let text = f.to_string();
                self.create_function(f, &text).await
            }
            Statement::DropFunction(d) => self.drop_functions(d).await,
            Statement::CreateRole(create) => self.create_role(vars, &create).await,
            Statement::AlterRole { name, operation } => self.alter_role(vars, &name, &operation).await,
            Statement::Drop { object_type: datafusion::sql::sqlparser::ast::ObjectType::Role, names, if_exists, .. } => self.drop_roles(vars, &names, if_exists).await,
            Statement::Grant(grant) => self.grant(vars, &grant).await,
            Statement::Revoke(revoke) => self.revoke(vars, &revoke).await,
            Statement::CreateView(v) if !v.materialized => {
                let text = v.to_string();
                self.create_plain_view(v, &text).await
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                let mut stmt = stmt;
                // `INSERT ... SELECT i, i`: the select list is matched by position.
                crate::naming::alias_unnamed(&mut stmt);
                self.dml(vars, stmt, params).await
            }
            s if is_query(&s) => self.select(s, params, None, vars).await,
            other => {
                let first = other.to_string();
                let word = first.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                Err(SqlError::not_supported(format!("statement {word} is not supported")))
            }
        }
    }

    /// The roles of this database (for the server's logins).
    pub fn roles(&self) -> &crate::roles::Roles {
        &self.roles
    }

    /// A session state for one ad-hoc query: every relation it reads sees one snapshot.
    pub(crate) fn query_state(&self) -> SessionState {
        self.query_state_with(None).0
    }

    /// [`Self::query_state`], reading a transaction's own changes (`overlays`) over the
    /// snapshot, which it also returns.
    pub(crate) fn query_state_with(&self, overlays: Option<crate::relation::TxnOverlays>) -> (SessionState, Arc<QuerySnapshot>) {
        let mut state = self.ctx.state();
        let snapshot = Arc::new(QuerySnapshot(self.store.snapshot()));
        state.config_mut().set_extension(snapshot.clone());
        if let Some(overlays) = overlays {
            state.config_mut().set_extension(Arc::new(overlays));
        }
        (state, snapshot)
    }

    /// The logical plan of `stmt`, its placeholders typed as PostgreSQL types them
    /// ([`crate::parameters`]).
    pub(crate) async fn plan(&self, state: &SessionState, stmt: Statement) -> SqlResult<LogicalPlan> {
        let plan = state.statement_to_plan(DFStatement::Statement(Box::new(stmt))).await?;
        crate::parameters::type_array_placeholders(plan)
    }

    /// Executes `plan` with its parameters bound, as a stream of batches.
    pub(crate) async fn run_plan(
        &self,
        state: SessionState,
        plan: LogicalPlan,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<SendableRecordBatchStream> {
        Ok(DataFrame::new(state, bind(plan, params)?).execute_stream().await?)
    }

    /// `overlays`: the session's transaction's own changes, which it reads.
    /// `vars`: the session's settings ([`SessionVars::configure`]), such as the time zone in
    /// which text without an offset is read as a `timestamptz`.
    async fn select(&self, mut stmt: Statement, params: Option<Vec<ScalarValue>>, overlays: Option<crate::relation::TxnOverlays>, vars: &SessionVars) -> SqlResult<QueryOutput> {
        let names = crate::naming::pg_column_names(&stmt);
        crate::naming::alias_unnamed(&mut stmt);
        let (mut state, _) = self.query_state_with(overlays);
        vars.configure(&mut state);
        let plan = self.plan(&state, stmt).await?;
        self.check_readable(&plan).await?;
        let plan = analyzed(&state, bind(plan, params)?)?;
        let schema = crate::naming::rename_schema(Arc::new(plan.schema().as_arrow().clone()), &names);
        let stream = DataFrame::new(state, plan).execute_stream().await?;
        Ok(crate::naming::relabel(schema, stream))
    }

    /// Refuses to read a view whose dataflow failed, with the failure.
    pub(crate) async fn check_readable(&self, plan: &LogicalPlan) -> SqlResult<()> {
        let mut names = vec![];
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                names.push(crate::schemas::reference_name(&scan.table_name));
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })?;
        let catalog = self.catalog.lock().await;
        for name in &names {
            if let Some(Detail::View(v)) = catalog.get(name).map(|e| &e.detail) {
                if let Some(failure) = v.failure.lock().expect("failure lock").clone() {
                    return Err(SqlError::new(failure.code, format!("materialized view \"{name}\" failed: {}", failure.message))
                        .with_hint("drop and re-create the view after fixing its input"));
                }
                if v.backfilling() {
                    return Err(crate::ddl::backfilling(name));
                }
            }
        }
        failed_rows(&catalog, names)
    }

    async fn show(&self, kind: ObjectKind) -> SqlResult<QueryOutput> {
        let catalog = self.catalog.lock().await;
        let entries = catalog.of_kind(kind);
        match kind {
            ObjectKind::Table => QueryOutput::text_rows(&["name"], entries.map(|e| vec![e.name.clone()]).collect()),
            ObjectKind::View => QueryOutput::text_rows(&["name", "definition"], entries.map(|e| vec![e.name.clone(), e.definition.clone()]).collect()),
            ObjectKind::Function => {
                let rows = entries.map(|e| vec![e.name.trim_end_matches("()").to_string(), e.definition.clone()]).collect();
                QueryOutput::text_rows(&["name", "definition"], rows)
            }
            ObjectKind::Schema => {
                let names = std::iter::once(crate::schemas::PUBLIC.to_string()).chain(catalog.schema_names());
                QueryOutput::text_rows(&["name"], names.map(|n| vec![n]).collect())
            }
            ObjectKind::Source => {
                let rows = entries.map(|e| source_row(e)).collect();
                QueryOutput::nullable_text_rows(&["name", "connector", "readers", "rows_read", "bytes_read", "dead_letters", "lag", "watermark"], rows)
            }
            ObjectKind::MaterializedView | ObjectKind::Sink | ObjectKind::Subscription => {
                let rows = entries
                    .map(|e| {
                        let (status, late) = match &e.detail {
                            Detail::View(v) => {
                                let failed_rows = v.eval_errors.as_ref().and_then(|e| e.first());
                                let status = match &*v.failure.lock().expect("failure lock") {
                                    Some(f) => format!("failed: {}", f.message),
                                    None if failed_rows.is_some() => {
                                        let (f, rows) = failed_rows.expect("checked");
                                        format!("running, unreadable: {rows} failed rows ({})", f.message)
                                    }
                                    None if v.backfilling() => format!("backfilling ({} rows so far)", v.backfilled_rows().unwrap_or(0)),
                                    None if v.resumed => "running (resumed from a checkpoint)".to_string(),
                                    None => "running".to_string(),
                                };
                                (status, v.late_rows.load(std::sync::atomic::Ordering::Relaxed))
                            }
                            _ => (String::new(), 0),
                        };
                        vec![e.name.clone(), status, late.to_string(), e.definition.clone()]
                    })
                    .collect();
                QueryOutput::text_rows(&["name", "status", "late_rows_dropped", "definition"], rows)
            }
            ObjectKind::Secret => self.show_secrets(),
            ObjectKind::Role => self.show_roles(),
            ObjectKind::ApiKey => self.show_api_keys(),
        }
    }

    /// Every operator state table of every view, with its partitions and its exact key
    /// count (a full scan of each partition).
    async fn show_state_tables(&self) -> SqlResult<QueryOutput> {
        // Listed under the catalog lock, counted without it (a full scan of each partition).
        let tables: Vec<(String, String, Vec<String>)> = {
            let catalog = self.catalog.lock().await;
            catalog
                .of_kind(ObjectKind::MaterializedView)
                .filter_map(|e| match &e.detail {
                    Detail::View(v) => Some(v.state_tables.iter().map(|t| (e.name.clone(), t.name.clone(), t.column_families.clone())).collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || -> SqlResult<Vec<Vec<String>>> {
            let mut rows = vec![];
            for (view, table, cfs) in tables {
                let mut keys = 0;
                for cf in &cfs {
                    // A view dropped meanwhile has no column families any more.
                    keys += store.count_keys(cf).unwrap_or(0);
                }
                rows.push(vec![view, table, cfs.len().to_string(), keys.to_string()]);
            }
            Ok(rows)
        })
        .await
        .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))??;
        QueryOutput::text_rows(&["view", "state_table", "partitions", "keys"], rows)
    }

    async fn describe_object(&self, name: &datafusion::sql::sqlparser::ast::ObjectName) -> SqlResult<QueryOutput> {
        let name = crate::database::object_name(name)?;
        let catalog = self.catalog.lock().await;
        let entry = catalog.get(&name).ok_or_else(|| undefined(&name))?;
        let pk: Vec<usize> = match &entry.detail {
            Detail::Table { primary_key: Some(pk), .. } => pk.clone(),
            _ => vec![],
        };
        let rows = entry
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                vec![
                    f.name().clone(),
                    crate::types::pg_type_name(f.data_type()),
                    if f.is_nullable() { "YES" } else { "NO" }.to_string(),
                    if pk.contains(&i) { "YES" } else { "NO" }.to_string(),
                ]
            })
            .collect();
        QueryOutput::text_rows(&["name", "type", "nullable", "primary_key"], rows)
    }

}

pub(crate) fn bind(plan: LogicalPlan, params: Option<Vec<ScalarValue>>) -> SqlResult<LogicalPlan> {
    Ok(match params {
        Some(p) if !p.is_empty() => plan.with_param_values(ParamValues::from(p))?,
        _ => plan,
    })
}

pub(crate) fn is_query(s: &Statement) -> bool {
    matches!(s, Statement::Query(_) | Statement::Explain { .. })
}

pub(crate) fn undefined(name: &str) -> SqlError {
    SqlError::new(SqlState::UndefinedTable, format!("relation \"{name}\" does not exist"))
}

/// The catalog name of `name`: unquoted parts fold to lower case, as in PostgreSQL; an object
/// of a schema other than `public` is `schema.name` ([`crate::schemas`]). An unqualified name
/// is taken as written: [`Database::qualify`] has already put the schema `search_path` finds.
pub(crate) fn object_name(name: &datafusion::sql::sqlparser::ast::ObjectName) -> SqlResult<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            let ident = p.as_ident().cloned().unwrap_or_else(|| datafusion::sql::sqlparser::ast::Ident::new(p.to_string()));
            if ident.quote_style.is_some() { ident.value } else { ident.value.to_lowercase() }
        })
        .collect();
    match parts.as_slice() {
        [n] => Ok(n.clone()),
        [schema, n] => Ok(crate::schemas::qualified(schema, n)),
        _ => Err(SqlError::not_supported(format!("cross-database references are not implemented: {name}"))),
    }
}

/// A row of `SHOW SOURCES` (see [`crate::metrics::SourceMetrics`]).
fn source_row(e: &crate::catalog::Entry) -> Vec<Option<String>> {
    let Some(m) = crate::metrics::source_metrics(e) else {
        return vec![Some(e.name.clone()); 8];
    };
    let watermark = m.watermark_us.and_then(chrono::DateTime::from_timestamp_micros).map(|t| t.naive_utc().to_string());
    vec![
        Some(m.name),
        Some(m.connector),
        Some(m.readers.to_string()),
        Some(m.rows_read.to_string()),
        Some(m.bytes_read.to_string()),
        Some(m.dead_letters.to_string()),
        m.lag.map(|l| l.to_string()),
        watermark,
    ]
}

/// `plan` through the analyzer (type coercion and our rules before it, such as
/// [`crate::functions::numeric::NumericArithmetic`]): the types of its output are those of the
/// rows it will make, which the SQL planner's alone may not be.
pub(crate) fn analyzed(state: &SessionState, plan: LogicalPlan) -> SqlResult<LogicalPlan> {
    Ok(state.analyzer().execute_and_check(plan, state.config_options(), |_, _| {})?)
}

/// Refuses to read views (or what they read, transitively) that hold rows whose expressions
/// failed: the error a query over those rows gives, as in Materialize. The view keeps running;
/// once the failing input rows are deleted or updated it reads right again.
fn failed_rows(catalog: &crate::catalog::Catalog, mut names: Vec<String>) -> SqlResult<()> {
    let mut seen = std::collections::HashSet::new();
    while let Some(name) = names.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(entry) = catalog.get(&name) else { continue };
        if let Detail::View(v) = &entry.detail {
            if let Some((failure, rows)) = v.eval_errors.as_ref().and_then(|e| e.first()) {
                let code = SqlState::data_exception(&failure.code).unwrap_or(SqlState::DataException);
                let what = if rows == 1 { "1 row".to_string() } else { format!("{rows} rows") };
                return Err(SqlError::new(code, format!("materialized view \"{name}\" has {what} whose expression failed: {}", failure.message))
                    .with_hint("the view reads again once the input rows that fail are deleted or updated; it keeps running meanwhile"));
            }
        }
        names.extend(entry.depends_on.iter().cloned());
    }
    Ok(())
}
