//! `CREATE` and `DROP` of tables, sources and materialized views.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{Constraint, Constraints};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{CreateTable, Statement};
use futures::stream::{FuturesUnordered, StreamExt};
use openclaw_engine::operators::materialize::Layout;
use openclaw_engine::operators::{MaterializeOperator, MaterializedState};
use openclaw_engine::plan::{build_dataflow, StateLocation, StreamNode};
use openclaw_engine::source::SourceProgress;
use openclaw_engine::table::{TableWriter, TABLE_REQUEST_QUEUE};
use openclaw_engine::{BarrierKind, Mutation, ObjectId};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, Detail, Entry, ViewRuntime};
use crate::database::{object_name, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::catalog_resolver::CatalogResolver;
use crate::lower::lower;
use crate::parser::{CreateSource, CreateView, ObjectKind, WatermarkDecl};
use crate::relation::{SourceRelation, StoredRelation};
use crate::session::SessionVars;

/// What a dataflow ends in.
enum Target {
    /// A materialized view: rows kept in RocksDB, queryable.
    View,
    /// A sink of a connector's, with its options as shown by `SHOW SINKS`.
    Sink(Arc<dyn openclaw_connectors::PreparedSink>, String),
}

impl Target {
    /// The first line of the dataflow's `EXPLAIN`: the step that keeps or sends its rows.
    fn header(&self, name: &str) -> String {
        match self {
            Target::View => crate::explain::view_header(name),
            Target::Sink(_, shown) => format!("Sink: {name} ({shown})"),
        }
    }
}

/// What a restart resumes views from.
pub(crate) struct Resume {
    /// The restored checkpoint's positions.
    pub positions: std::collections::BTreeMap<String, u64>,
    /// Views that resumed so far: views over them may resume too.
    pub resumed: std::collections::HashSet<String>,
    /// Each view's plan digest as its record holds it ([`PLAN_KEY`]).
    pub plans: std::collections::BTreeMap<ObjectId, String>,
}

/// The key, among what a view's record resolved at creation, of its plan's digest
/// ([`StreamNode::fingerprint`]): its state resumes only under the same plan.
pub(crate) const PLAN_KEY: &str = "plan";

impl Database {
    pub(crate) fn check_new_name(&self, catalog: &Catalog, name: &str) -> SqlResult<()> {
        let schema = crate::schemas::split(name).0;
        if schema != crate::schemas::PUBLIC && catalog.schema_id(schema).is_none() {
            return Err(SqlError::new(SqlState::InvalidSchemaName, format!("schema {} does not exist", quote(schema))));
        }
        match catalog.get(name) {
            Some(e) => Err(SqlError::new(SqlState::DuplicateTable, format!("{} {} already exists", e.kind.sql_name(), quote(name)))),
            None => Ok(()),
        }
    }

    /// Plans the column list of a `CREATE` through DataFusion, for its type names and
    /// constraints.
    pub(crate) async fn plan_columns(&self, create: CreateTable) -> SqlResult<(SchemaRef, Constraints)> {
        let plan = self.plan(&self.ctx.state(), Statement::CreateTable(create)).await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmt)) = plan else {
            return Err(SqlError::new(SqlState::Internal, "CREATE TABLE planned to something else"));
        };
        Ok((Arc::new(cmt.input.schema().as_arrow().clone()), cmt.constraints))
    }

    /// `sql`: the statement as written, kept in the durable catalog.
    pub(crate) async fn create_table(&self, mut create: CreateTable, watermark: Option<WatermarkDecl>, sql: &str) -> SqlResult<QueryOutput> {
        let name = object_name(&create.name)?;
        for column in &mut create.columns {
            crate::types::normalize_declared_type(&mut column.data_type);
        }
        if create.query.is_some() {
            crate::not_supported!("CREATE TABLE ... AS is not supported yet");
        }
        if !matches!(create.table_options, datafusion::sql::sqlparser::ast::CreateTableOptions::None) {
            return Err(SqlError::not_supported("tables with WITH options (connectors) are not supported yet")
                .with_hint("use CREATE SOURCE for a nexmark or datagen stream"));
        }
        let if_not_exists = create.if_not_exists;
        let mut catalog = self.catalog.lock().await;
        if if_not_exists && catalog.get(&name).is_some() {
            return Ok(QueryOutput::command("CREATE TABLE"));
        }
        self.check_new_name(&catalog, &name)?;
        let declared: Vec<_> = create.columns.iter().map(|c| crate::types::declared_type_metadata(&c.data_type)).collect();
        let (schema, constraints) = self.plan_columns(create).await?;
        let primary_key = constraints.iter().find_map(|c| match c {
            Constraint::PrimaryKey(cols) => Some(cols.clone()),
            _ => None,
        });
        // Primary-key columns are NOT NULL, as in PostgreSQL; a `varchar` keeps its declared
        // type (`crate::types::PG_TYPE_KEY`).
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let pk = primary_key.as_ref().is_some_and(|pk| pk.contains(&i));
                let field = f.as_ref().clone().with_nullable(f.is_nullable() && !pk);
                match declared.get(i) {
                    Some(metadata) if !metadata.is_empty() => field.with_metadata(metadata.clone()),
                    _ => field,
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let watermark = watermark.map(|w| resolve_watermark(&w, &schema)).transpose()?;
        let id = catalog.next_id();
        let layout = match &primary_key {
            Some(pk) => Layout::Keyed(pk.clone()),
            None => Layout::RowId,
        };
        let state = Arc::new(MaterializedState::new(self.store.clone(), &format!("table_{id}"), schema.clone(), layout)?);
        let checkpoints = openclaw_engine::source::RootCheckpoints { coordinator: self.coordinator.clone(), key: format!("table_{id}") };
        let writer = TableWriter::new(id, state.clone(), watermark, self.config.idle_timeout_ms)?.with_checkpoints(checkpoints);
        let (req_tx, req_rx) = mpsc::channel(TABLE_REQUEST_QUEUE);
        let (barrier_tx, barrier_rx) = openclaw_engine::coordinator::barrier_channel();
        let root = self.coordinator.register_root(barrier_tx);
        let span = tracing::info_span!("table", name = %name);
        let task = tokio::spawn(tracing::Instrument::instrument(
            writer.run(req_rx, barrier_rx, self.config.chunk_size_rows),
            span,
        ));
        self.ctx.register_table(crate::schemas::table_reference(&name), Arc::new(StoredRelation::new(state.clone(), constraints.clone())))?;
        self.persist(id, ObjectKind::Table, &name, sql, Default::default())?;
        catalog.insert(Entry {
            id,
            name: name.clone(),
            kind: ObjectKind::Table,
            schema,
            definition: String::new(),
            depends_on: vec![],
            watermark_columns: watermark.iter().map(|w| w.column).collect(),
            detail: Detail::Table { writer: req_tx, state, primary_key, write_lock: Default::default(), root, task: task.abort_handle(), ingest: None, receiver: None },
        });
        tracing::info!(table = %name, "created table");
        Ok(QueryOutput::command("CREATE TABLE"))
    }

    pub(crate) async fn create_source(&self, create: CreateSource, sql: &str) -> SqlResult<QueryOutput> {
        let name = object_name(&create.name)?;
        let typed = create.options.clone();
        let created = self.create_source_revealed(create, sql, &name).await.map_err(|e| self.secrets.scrub(e, &typed))?;
        self.secrets.record_uses(&name, &typed);
        Ok(created)
    }

    /// [`Self::create_source`]: its connector is handed the values of the secrets its options
    /// refer to; what is shown keeps `SECRET name`.
    async fn create_source_revealed(&self, create: CreateSource, sql: &str, name: &str) -> SqlResult<QueryOutput> {
        let name = name.to_string();
        let mut catalog = self.catalog.lock().await;
        if create.if_not_exists && catalog.get(&name).is_some() {
            return Ok(QueryOutput::command("CREATE SOURCE"));
        }
        self.check_new_name(&catalog, &name)?;
        let mut options = self.secrets.reveal(&create.options)?;
        // The history's own sink is created beside the source (`crate::history`).
        crate::history::HistoryOptions::take(&mut options)?;
        if options.get("format").is_some_and(|f| f.eq_ignore_ascii_case("upsert")) {
            return Err(SqlError::not_supported("FORMAT UPSERT needs a table: a source is a stream of inserts")
                .with_hint("CREATE TABLE t (..., PRIMARY KEY (k)) INCLUDE key AS k WITH (...) FORMAT UPSERT ENCODE JSON"));
        }
        let connector_name = options.get("connector").cloned().ok_or_else(|| {
            SqlError::new(SqlState::InvalidParameterValue, "a source needs a connector")
                .with_hint(format!("add WITH (connector = '...'); connectors: {}", openclaw_connectors::CONNECTORS.join(", ")))
        })?;
        let connector = openclaw_connectors::connector(&connector_name).ok_or_else(|| {
            SqlError::not_supported(format!("connector {} is not supported", quote(&connector_name)))
                .with_hint(format!("available connectors: {}", openclaw_connectors::CONNECTORS.join(", ")))
        })?;
        if connector.name() == "nexmark" && !options.contains_key("nexmark.base.time") {
            // Fixed at creation, so every view over the source sees the same timestamps.
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            options.insert("nexmark.base.time".into(), now_ms.to_string());
        }
        // What a restart must not choose again.
        let resolved = resolve_options(connector, &mut options)?;
        let schema = self.connector_schema(&create, connector, &options).await?;
        if connector.receiver(&schema, &options).map_err(connector_error)?.is_some() {
            return Err(SqlError::new(SqlState::WrongObjectType, format!("connector {} feeds a table, not a source", quote(connector.name())))
                .with_detail("its rows are sent to OpenClaw, and a table keeps them")
                .with_hint(format!("CREATE TABLE {name} (...) WITH (connector = '{}', ...)", connector.name())));
        }
        let watermark = create.watermark.as_ref().map(|w| resolve_watermark(w, &schema)).transpose()?;
        let dead_letters = match connector.has_dead_letters() {
            true => {
                drop(catalog);
                let dlq = self.create_dead_letter_table(&name).await?;
                catalog = self.catalog.lock().await;
                self.check_new_name(&catalog, &name)?;
                Some(dlq)
            }
            false => None,
        };
        let id = catalog.next_id();
        let key = match self.declared_source_key(&create, &schema).await? {
            Some(declared) => Some(declared),
            None => connector.unique_key(&schema, &options),
        };
        let constraints = Constraints::new_unverified(key.into_iter().map(Constraint::PrimaryKey).collect());
        self.ctx.register_table(crate::schemas::table_reference(&name), Arc::new(SourceRelation { name: name.clone(), schema: schema.clone(), constraints }))?;
        self.persist(id, ObjectKind::Source, &name, sql, resolved)?;
        // A stored Protobuf descriptor set is bytes in base64, a file list can be long: not
        // for reading.
        let mut shown: Vec<String> = crate::secrets::display_options(&options, &create.options)
            .filter(|(k, _)| !["encode.descriptor", "file.list"].contains(&k.as_str()))
            .map(|(_, shown)| shown)
            .collect();
        shown.sort();
        catalog.insert(Entry {
            id,
            name: name.clone(),
            kind: ObjectKind::Source,
            schema,
            definition: format!("WITH ({})", shown.join(", ")),
            depends_on: vec![],
            watermark_columns: watermark.iter().map(|w| w.column).collect(),
            detail: Detail::Source { watermark, connector, options, readers: Mutex::new(vec![]), dead_letters },
        });
        Ok(QueryOutput::command("CREATE SOURCE"))
    }

    /// The schema of a source (or connector table): its declared columns, or the connector's
    /// own, checked by the connector (which may ask a broker).
    pub(crate) async fn connector_schema(
        &self,
        create: &CreateSource,
        connector: &'static dyn openclaw_connectors::Connector,
        options: &openclaw_connectors::Options,
    ) -> SqlResult<SchemaRef> {
        let declared = if create.columns.is_empty() {
            Arc::new(Schema::empty())
        } else {
            let sql = format!(
                "CREATE TABLE {} ({})",
                create.name,
                create.columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            );
            let Some(crate::parser::OcStatement::CreateTable(ct, _, _)) = crate::parser::parse(&sql)?.pop() else {
                return Err(SqlError::new(SqlState::Internal, "column list did not re-parse"));
            };
            self.plan_columns(*ct).await?.0
        };
        // A connector may ask a broker (Kafka's metadata): blocking, bounded by its timeout.
        tokio::task::block_in_place(|| connector.validate(&declared, options)).map_err(connector_error)
    }

    /// The primary key a `CREATE SOURCE` declares, as indices into its `schema`. It is trusted,
    /// not enforced (Flink's `PRIMARY KEY (...) NOT ENFORCED`): views grouped or partitioned by
    /// it free state by a watermarked column it determines, which is wrong only if two records
    /// share a key with different values.
    async fn declared_source_key(&self, create: &CreateSource, schema: &SchemaRef) -> SqlResult<Option<Vec<usize>>> {
        use datafusion::sql::sqlparser::ast::ColumnOption;
        let column_key = create.columns.iter().any(|c| c.options.iter().any(|o| matches!(o.option, ColumnOption::PrimaryKey(_))));
        if create.constraints.is_empty() && !column_key {
            return Ok(None);
        }
        let sql = crate::ingest::table_definition(create, schema)?;
        let Some(crate::parser::OcStatement::CreateTable(ct, _, _)) = crate::parser::parse(&sql)?.pop() else {
            return Err(SqlError::new(SqlState::Internal, "a source's columns did not re-parse"));
        };
        let (_, constraints) = self.plan_columns(*ct).await?;
        Ok(constraints.iter().find_map(|c| match c {
            Constraint::PrimaryKey(cols) => Some(cols.clone()),
            _ => None,
        }))
    }

    /// Creates `<source>_dlq`, the table a source's undecodable records go to, or keeps the
    /// one a restart already replayed (it is stored as its own catalog record, before the
    /// source's).
    pub(crate) async fn create_dead_letter_table(&self, source: &str) -> SqlResult<String> {
        let name = format!("{source}_dlq");
        if let Some(e) = self.catalog.lock().await.get(&name) {
            return match &e.detail {
                Detail::Table { state, .. } if openclaw_engine::dead_letters::DeadLetterTable::new(state.clone()).is_ok() => Ok(name),
                _ => Err(SqlError::new(SqlState::DuplicateTable, format!("{} {} already exists", e.kind.sql_name(), quote(&name)))
                    .with_hint(format!("the source's dead-letter table is named {}; drop or rename the existing one", quote(&name)))),
            };
        }
        let sql = format!("CREATE TABLE {} ({})", crate::schemas::sql_name(&name), openclaw_engine::dead_letters::DEAD_LETTER_COLUMNS);
        let Some(crate::parser::OcStatement::CreateTable(ct, _, _)) = crate::parser::parse(&sql)?.pop() else {
            return Err(SqlError::new(SqlState::Internal, "the dead-letter table's definition did not parse"));
        };
        self.create_table(*ct, None, &sql).await?;
        Ok(name)
    }

    /// Plans and lowers a view's query; returns the streaming plan and the names it reads.
    pub(crate) async fn plan_view(&self, catalog: &Catalog, view: &CreateView) -> SqlResult<(StreamNode, Vec<String>, Vec<(String, Arc<SourceProgress>)>)> {
        let state = self.ctx.state();
        let plan = self.plan(&state, Statement::Query(view.query.clone())).await?;
        let functions = crate::sql_functions::functions_called(&plan);
        let plan = crate::temporal::mark_now(plan, state.config_options().execution.time_zone.as_deref())?;
        let plan = state.optimize(&plan)?;
        let mut resolver = CatalogResolver::new(catalog);
        let mut node = lower(&plan, &mut resolver)?;
        if view.emit_on_window_close {
            emit_on_window_close(&mut node)?;
        }
        // The view's columns carry the names of the query's output.
        let node = rename(node, Arc::new(plan.schema().as_arrow().clone()));
        let mut deps = resolver.deps;
        deps.extend(functions);
        deps.extend(crate::views::plain_views_read(catalog, &view.query).into_iter().filter(|v| !deps.contains(v)).collect::<Vec<_>>());
        Ok((node, deps, resolver.progress))
    }

    pub(crate) async fn create_view(&self, view: CreateView, vars: &SessionVars, sql: &str) -> SqlResult<QueryOutput> {
        self.create_view_resuming(view, vars, sql, None).await
    }

    /// Whether the view `id` can resume from the restored checkpoint: its state is there, it
    /// reads only sources, views that resumed, and tables whose log still holds every change
    /// since their position in the checkpoint, and the checkpoint has a position for each of its
    /// source readers.
    fn can_resume(&self, catalog: &Catalog, id: ObjectId, deps: &[String], node: &StreamNode, plan: &str, resume: &Resume) -> bool {
        let inputs_resume = deps.iter().all(|d| match catalog.get(d) {
            _ if resume.resumed.contains(d) => true,
            Some(e) if e.kind == ObjectKind::Source => true,
            Some(e) if e.kind == ObjectKind::Table => {
                let cf = format!("table_{}", e.id);
                let position = resume.positions.get(&cf).copied();
                position.is_some_and(|p| openclaw_engine::table_log::covers(&self.store, &cf, p).unwrap_or(false))
            }
            _ => false,
        });
        let positions = (1..=node.source_count()).all(|n| {
            openclaw_engine::source::RootCheckpoints::stored_position(&resume.positions, &format!("mv_{id}_source{n}")).is_some()
        });
        let state = self.store.has_cf(&format!("mv_{id}"));
        let same_plan = resume.plans.get(&id).is_some_and(|p| p == plan);
        if state && !same_plan {
            tracing::warn!(id, "the view's state was written under another plan (an earlier version planned it differently); rebuilding it from its inputs");
        }
        inputs_resume && positions && state && same_plan
    }

    /// Drops whatever state view `id` left in the store (a view rebuilt from its inputs).
    fn drop_view_state(&self, id: ObjectId) -> SqlResult<()> {
        let prefix = format!("mv_{id}");
        for cf in self.store.opened_with().iter().filter(|cf| **cf == prefix || cf.starts_with(&format!("{prefix}_"))) {
            self.store.drop_cf(cf)?;
        }
        Ok(())
    }

    /// [`Self::create_view`], resuming the view's state from a restored checkpoint when it can.
    pub(crate) async fn create_view_resuming(
        &self,
        view: CreateView,
        vars: &SessionVars,
        sql: &str,
        resume: Option<&mut Resume>,
    ) -> SqlResult<QueryOutput> {
        self.create_dataflow(view, Target::View, vars, sql, resume).await
    }

    /// `CREATE SINK`: a dataflow like a view's whose last operator writes to Kafka instead of
    /// keeping rows; it resumes from checkpoints as views do.
    pub(crate) async fn create_sink_resuming(
        &self,
        sink: crate::parser::CreateSink,
        vars: &SessionVars,
        sql: &str,
        resume: Option<&mut Resume>,
    ) -> SqlResult<QueryOutput> {
        let connector = sink.options.get("connector").and_then(|c| openclaw_connectors::sink_connector(c)).ok_or_else(|| {
            SqlError::new(SqlState::InvalidParameterValue, format!("a sink needs connector = one of {}", openclaw_connectors::SINK_CONNECTORS.join(", ")))
                .with_hint("e.g. WITH (connector = 'kafka', topic = '...', 'properties.bootstrap.server' = '...'), or connector = 'blackhole' to discard the rows")
        })?;
        let typed = sink.options.clone();
        let scrub = |e| self.secrets.scrub(e, &typed);
        let resolved = under_data_dir(&self.secrets.reveal(&sink.options)?, self.store.dir());
        let options = tokio::task::block_in_place(|| connector.prepare(&resolved)).map_err(connector_error).map_err(scrub)?;
        let mut shown: Vec<String> = crate::secrets::display_options(&typed, &typed).map(|(_, shown)| shown).collect();
        shown.sort();
        let name = object_name(&sink.view.name)?;
        let output = self.create_dataflow(sink.view, Target::Sink(options, shown.join(", ")), vars, sql, resume).await.map_err(scrub)?;
        self.secrets.record_uses(&name, &typed);
        if let Some(schema) = self.catalog.lock().await.get(&name).map(|e| e.schema.clone()) {
            self.parquet_sinks.register(&name, &resolved, &schema);
        }
        Ok(output)
    }

    async fn create_dataflow(
        &self,
        view: CreateView,
        target: Target,
        vars: &SessionVars,
        sql: &str,
        resume: Option<&mut Resume>,
    ) -> SqlResult<QueryOutput> {
        let tag = match target {
            Target::View => "CREATE MATERIALIZED VIEW",
            Target::Sink(..) => "CREATE SINK",
        };
        let name = object_name(&view.name)?;
        let mut catalog = self.catalog.lock().await;
        if view.if_not_exists && catalog.get(&name).is_some() {
            return Ok(QueryOutput::command(tag));
        }
        self.check_new_name(&catalog, &name)?;
        let (node, deps, progress) = self.plan_view(&catalog, &view).await?;
        let schema = node.schema();
        let watermark_columns = node.watermark_columns();
        let parallelism = vars.streaming_parallelism()?.unwrap_or(self.config.parallelism);
        let plan = node.fingerprint(parallelism);
        let id = catalog.next_id();
        let positions = match resume.as_deref() {
            Some(r) if self.can_resume(&catalog, id, &deps, &node, &plan, r) => Some(r.positions.clone()),
            _ => {
                self.drop_view_state(id)?;
                None
            }
        };
        let resuming = positions.is_some();
        let logs = openclaw_engine::operators::ChangeLogs::default();
        let (state, sink): (_, Box<dyn openclaw_engine::Operator>) = match &target {
            Target::View => {
                let state = Arc::new(MaterializedState::new(self.store.clone(), &format!("mv_{id}"), schema.clone(), Layout::Multiset)?);
                (state.clone(), Box::new(MaterializeOperator::with_logs(id, state, logs.clone())))
            }
            Target::Sink(sink, _) => {
                // The sink's column family is its buffer of records not yet written out.
                let state = Arc::new(MaterializedState::new(self.store.clone(), &format!("mv_{id}"), schema.clone(), Layout::RowId)?);
                let op = sink.operator(id, &name, &schema, self.store.clone(), &state.cf).map_err(connector_error)?;
                (state, op)
            }
        };
        // A view counts rows whose expressions fail and refuses readers while any does; a
        // sink cannot take rows back from its destination, so such a row stops it.
        let eval_errors = matches!(target, Target::View).then(|| {
            openclaw_engine::eval_errors::EvalErrors::new(Arc::new(|e: &openclaw_engine::EngineError| crate::error::eval_failure(e)))
        });
        let location = StateLocation { store: self.store.clone(), owner: id, prefix: format!("mv_{id}"), parallelism, resume: positions, eval_errors: eval_errors.clone() };
        let plan_text = crate::explain::explained(&target.header(&name), &node, parallelism);
        let dataflow = match build_dataflow(node, sink, &location, &self.config, &self.coordinator) {
            Ok(df) => df,
            Err(e) => {
                self.coordinator.unregister_sink(id);
                let _ = self.store.drop_cf(&state.cf);
                return Err(e.into());
            }
        };
        let failure = Arc::new(Mutex::new(None));
        let backfills: Vec<_> = dataflow.subscriptions.iter().filter_map(|s| s.progress.clone()).collect();
        let runtime = ViewRuntime {
            state: state.clone(),
            state_tables: dataflow.state_tables.clone(),
            late_rows: dataflow.late_rows.clone(),
            eval_errors,
            error_tables: dataflow.error_tables.clone(),
            tasks: dataflow.tasks.iter().map(|(_, t)| t.abort_handle()).collect(),
            roots: dataflow.roots.clone(),
            failure: failure.clone(),
            resumed: resuming,
            logs,
            backfill: Mutex::new((!backfills.is_empty()).then(|| backfills.clone())),
            plan: plan_text,
            operators: dataflow.operators.clone(),
        };
        self.supervise(&name, id, dataflow.tasks, dataflow.roots.clone(), failure.clone());
        for (source, p) in &progress {
            if let Some(Detail::Source { readers, .. }) = catalog.get(source).map(|e| &e.detail) {
                readers.lock().expect("readers lock").push(p.clone());
            }
        }
        let resolved = [("streaming_parallelism".to_string(), parallelism.to_string()), (PLAN_KEY.to_string(), plan)].into();
        let (kind, definition) = match &target {
            Target::View => (ObjectKind::MaterializedView, view.query.to_string()),
            Target::Sink(_, shown) => (ObjectKind::Sink, format!("{} WITH ({shown})", view.query)),
        };
        if kind == ObjectKind::MaterializedView {
            self.ctx.register_table(crate::schemas::table_reference(&name), Arc::new(StoredRelation::new(state, Constraints::default())))?;
        }
        // In the catalog from now on (SHOW lists it, reads are refused until it is filled),
        // so that the catalog lock is free while it backfills.
        catalog.insert(Entry {
            id,
            name: name.clone(),
            kind,
            schema,
            definition,
            depends_on: deps,
            watermark_columns,
            detail: Detail::View(runtime),
        });
        drop(catalog);
        // Backfill: the barrier hands each upstream the new edge; each then sends the rows it
        // holds, page by page, while it goes on serving writes and barriers.
        let subscribe = (!dataflow.subscriptions.is_empty()).then(|| Mutation::Subscribe(dataflow.subscriptions));
        let filled = self.fill(id, subscribe, dataflow.pending_roots, &backfills, &failure).await;
        let mut catalog = self.catalog.lock().await;
        if !catalog.get(&name).is_some_and(|e| e.id == id) {
            return Err(SqlError::new(SqlState::QueryCanceled, format!("{} {} was dropped while it was being created", kind.sql_name(), quote(&name))));
        }
        if let Err(e) = filled.and_then(|()| self.persist(id, kind, &name, sql, resolved)) {
            self.drop_one(&mut catalog, &name)?;
            return Err(e);
        }
        if let Some(Detail::View(v)) = catalog.get(&name).map(|e| &e.detail) {
            *v.backfill.lock().expect("backfill lock") = None;
        }
        if let (true, Some(r)) = (resuming, resume) {
            r.resumed.insert(name.clone());
        }
        tracing::info!(object = %name, kind = kind.sql_name(), resumed = resuming, "created");
        Ok(QueryOutput::command(tag))
    }

    /// Attaches a new dataflow and waits until it holds everything its inputs hold: every
    /// upstream has sent its rows, and a barrier after them has passed the new sink.
    pub(crate) async fn fill(
        &self,
        id: ObjectId,
        subscribe: Option<Mutation>,
        roots: Vec<(openclaw_engine::coordinator::RootId, openclaw_engine::coordinator::BarrierSender)>,
        backfills: &[Arc<openclaw_engine::backfill::BackfillProgress>],
        failure: &Mutex<Option<SqlError>>,
    ) -> SqlResult<()> {
        let failed = || failure.lock().expect("failure lock").clone();
        let filling = self.coordinator.filling(id);
        self.coordinator.inject_attaching(BarrierKind::Periodic, subscribe, roots, vec![id]).await?;
        // From here FLUSH and checkpoints go on without waiting for the backfill.
        filling.attached();
        for backfill in backfills {
            if !backfill.finished().await {
                return Err(failed().unwrap_or_else(|| SqlError::new(SqlState::QueryCanceled, "the backfill stopped: an input or the view went away")));
            }
        }
        if !backfills.is_empty() {
            filling.caught_up().await;
        }
        drop(filling);
        if !backfills.is_empty() {
            self.coordinator.inject_and_wait(BarrierKind::Periodic, None).await?;
        }
        match failed() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Keeps a created object in the durable catalog.
    /// The `search_path` the statement ran under goes with it, so that a restart resolves
    /// its names the same way.
    pub(crate) fn persist(&self, id: ObjectId, kind: ObjectKind, name: &str, sql: &str, mut resolved: std::collections::BTreeMap<String, String>) -> SqlResult<()> {
        if let Some(path) = crate::schemas::statement_path() {
            resolved.insert(crate::schemas::SEARCH_PATH_KEY.to_string(), path);
        }
        // What a role creates, it owns (a restart keeps the owner from the record).
        if let Some(owner) = crate::roles::statement_role().or_else(|| self.roles.owner(name)) {
            self.roles.set_owner(name, &owner);
            resolved.insert(crate::roles::OWNER_KEY.to_string(), owner);
        }
        let record = crate::durable::DdlRecord { id, kind, name: name.to_string(), sql: sql.to_string(), resolved };
        crate::durable::save(&self.store, &record)
    }

    /// Watches a view's tasks: the first failure stops the view and is kept for its readers.
    pub(crate) fn supervise(
        &self,
        name: &str,
        id: ObjectId,
        tasks: Vec<(String, tokio::task::JoinHandle<openclaw_engine::EngineResult<()>>)>,
        roots: Vec<openclaw_engine::coordinator::RootId>,
        failure: Arc<Mutex<Option<SqlError>>>,
    ) {
        let coordinator = self.coordinator.clone();
        let name = name.to_string();
        let aborts: Vec<_> = tasks.iter().map(|(_, t)| t.abort_handle()).collect();
        let mut running: FuturesUnordered<_> = tasks.into_iter().map(|(op, t)| async move { (op, t.await) }).collect();
        tokio::spawn(async move {
            while let Some((op, result)) = running.next().await {
                let err = match result {
                    Ok(Ok(())) => continue,
                    Err(join) if join.is_cancelled() => return,
                    Ok(Err(e)) => SqlError::from(e),
                    Err(join) => SqlError::new(SqlState::Internal, format!("operator {op} panicked: {join}")),
                };
                tracing::error!(view = %name, operator = %op, error = %err.message, "materialized view failed");
                *failure.lock().expect("failure lock") = Some(err);
                break;
            }
            coordinator.unregister_sink(id);
            coordinator.unregister_external(id);
            roots.iter().for_each(|r| coordinator.unregister_root(*r));
            aborts.iter().for_each(|a| a.abort());
        });
    }

    pub(crate) fn stop_view(&self, id: ObjectId, view: &ViewRuntime) {
        view.tasks.iter().for_each(|t| t.abort());
        self.coordinator.unregister_sink(id);
        self.coordinator.unregister_external(id);
        view.roots.iter().for_each(|r| self.coordinator.unregister_root(*r));
        let _ = self.store.drop_cf(&view.state.cf);
        for log in view.logs.lock().expect("change logs lock").drain(..) {
            let _ = self.store.drop_cf(&log.cf);
        }
        for cf in view.state_tables.iter().flat_map(|t| &t.column_families).chain(&view.error_tables) {
            let _ = self.store.drop_cf(cf);
        }
    }
}

/// The error for reading a view whose CREATE has not finished filling it.
pub(crate) fn backfilling(name: &str) -> SqlError {
    SqlError::new(SqlState::ObjectNotInPrerequisiteState, format!("materialized view {} is still being backfilled", quote(name)))
        .with_hint("its CREATE returns once it holds every row of its inputs; SHOW MATERIALIZED VIEWS shows how far it is")
}

/// Makes the aggregation at the top of a view (under projections and filters) emit each group
/// once, when the watermark of one of its group columns passes it.
fn emit_on_window_close(node: &mut StreamNode) -> SqlResult<()> {
    let mut node = node;
    loop {
        match node {
            StreamNode::Project { input, .. } | StreamNode::Filter { input, .. } => node = input,
            StreamNode::Aggregate { spec, input } => {
                let carried = input.watermark_columns();
                let window = spec.group_exprs.iter().position(|e| {
                    e.downcast_ref::<datafusion::physical_plan::expressions::Column>().is_some_and(|c| carried.contains(&c.index()))
                });
                let Some(window) = window else {
                    return Err(SqlError::new(
                        SqlState::InvalidObjectDefinition,
                        "EMIT ON WINDOW CLOSE needs a GROUP BY column that carries a watermark",
                    )
                    .with_hint("declare WATERMARK FOR the time column of the input and group by window_start or window_end of TUMBLE or HOP"));
                };
                spec.emit_on_close = Some(window);
                return Ok(());
            }
            _ => {
                return Err(SqlError::not_supported("EMIT ON WINDOW CLOSE is supported only for views that end in a GROUP BY")
                    .with_hint("group by a window column of TUMBLE or HOP"))
            }
        }
    }
}

/// The column index of a declared watermark, which must be a timestamp or a date.
fn resolve_watermark(w: &WatermarkDecl, schema: &SchemaRef) -> SqlResult<openclaw_engine::watermark::WatermarkSpec> {
    let column = schema.index_of(&w.column).map_err(|_| {
        SqlError::new(SqlState::UndefinedColumn, format!("column {} of the watermark does not exist", quote(&w.column)))
    })?;
    let dt = schema.field(column).data_type();
    if !matches!(dt, datafusion::arrow::datatypes::DataType::Timestamp(..) | datafusion::arrow::datatypes::DataType::Date32) {
        return Err(SqlError::new(SqlState::DatatypeMismatch, format!("watermark column {} must be a timestamp, not {dt}", quote(&w.column)))
            .with_hint("declare WATERMARK FOR on a TIMESTAMP column"));
    }
    Ok(openclaw_engine::watermark::WatermarkSpec { column, delay_us: w.delay_us })
}

/// Relabels the output of `node` with the view's column names.
fn rename(node: StreamNode, schema: SchemaRef) -> StreamNode {
    if node.schema().fields().iter().map(|f| f.name()).eq(schema.fields().iter().map(|f| f.name())) {
        return node;
    }
    let base = node.schema();
    let exprs = (0..base.fields().len())
        .map(|i| Arc::new(datafusion::physical_plan::expressions::Column::new(base.field(i).name(), i)) as _)
        .collect();
    let fields: Vec<Field> = base
        .fields()
        .iter()
        .zip(schema.fields())
        .map(|(b, s)| b.as_ref().clone().with_name(s.name()))
        .collect();
    StreamNode::Project { exprs, schema: Arc::new(Schema::new(fields)), input: Box::new(node) }
}

/// A connector's complaint about its options, as a 22023 error with its hint.
pub(crate) fn connector_error(e: openclaw_connectors::ConnectorError) -> SqlError {
    let err = SqlError::new(SqlState::InvalidParameterValue, e.message);
    match e.hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

/// Lets the connector fix what a restart must not choose again (it may ask a schema registry,
/// blocking, bounded by its timeout), and returns those options for the catalog record. On a
/// restart they are present already and come back unchanged.
pub(crate) fn resolve_options(
    connector: &'static dyn openclaw_connectors::Connector,
    options: &mut openclaw_connectors::Options,
) -> SqlResult<std::collections::BTreeMap<String, String>> {
    connector.resolve(options).map_err(connector_error)?;
    Ok(options
        .iter()
        .filter(|(k, _)| openclaw_connectors::RESOLVED_OPTIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// A Parquet sink's relative `path` is under the data directory (a history's is
/// `history/<name>`), so that a data directory moved or restored elsewhere keeps its files.
fn under_data_dir(options: &crate::Options, data_dir: &std::path::Path) -> crate::Options {
    let mut resolved = options.clone();
    if options.get("connector").is_some_and(|c| c.eq_ignore_ascii_case("parquet")) {
        if let Some(path) = options.get("path").filter(|p| !p.starts_with('/') && !p.contains("://")) {
            resolved.insert("path".into(), data_dir.join(path).display().to_string());
        }
    }
    resolved
}
