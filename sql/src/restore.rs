//! Bringing a database back at start: the durable catalog replayed in creation order, each
//! record's statement resolved under the `search_path` it was created with.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;

use crate::database::{object_name, Database, QueryOutput};
use crate::error::{SqlError, SqlResult, SqlState};
use crate::parser::{self, ObjectKind, OcStatement};
use crate::session::SessionVars;

impl Database {
    /// Replays the durable catalog in creation order. Tables keep their rows; sources are
    /// declared again with what was resolved at creation; views are rebuilt from their inputs
    /// (a backfill), so they equal what their inputs now hold. Column families of anything
    /// else (views, operator state, objects dropped or half-created before a crash) go.
    pub(crate) async fn restore(self: &Arc<Self>, restored: Option<openclaw_storage::checkpoint::Manifest>) -> SqlResult<()> {
        let started = std::time::Instant::now();
        crate::durable::open(&self.store)?;
        self.write_keys.store(crate::write_api::open(&self.store)?, std::sync::atomic::Ordering::Release);
        let records = crate::durable::load(&self.store)?;
        let keep: std::collections::HashSet<String> = records
            .iter()
            .filter(|r| r.kind == ObjectKind::Table)
            .map(|r| format!("table_{}", r.id))
            .chain([crate::durable::CATALOG_CF.to_string(), openclaw_connectors::two_phase::SINK_COMMITS_CF.to_string(), crate::write_api::WRITE_KEYS_CF.to_string()])
            .collect();
        // With a restored checkpoint, a view's state may resume; `create_view` decides.
        let view_prefixes: Vec<String> = match &restored {
            Some(_) => records
                .iter()
                .filter(|r| matches!(r.kind, ObjectKind::MaterializedView | ObjectKind::Sink))
                .map(|r| format!("mv_{}", r.id))
                .collect(),
            None => vec![],
        };
        let of_a_view = |cf: &str| view_prefixes.iter().any(|p| cf == p || cf.starts_with(&format!("{p}_")));
        // A connector table's reader position lives beside it (`table_<id>_offsets`).
        let of_a_table = |cf: &str| keep.iter().any(|t| t.starts_with("table_") && cf.starts_with(&format!("{t}_")));
        for cf in self.store.opened_with().iter().filter(|cf| !keep.contains(*cf) && !of_a_view(cf) && !of_a_table(cf)) {
            tracing::debug!(column_family = %cf, "dropping state that a restart rebuilds");
            self.store.drop_cf(cf)?;
        }
        // No source reads until every object is back: a resumed view must not move past its
        // checkpoint before the views and sinks over it are attached.
        let _hold = self.coordinator.hold_sources();
        let plans = records.iter().filter_map(|r| Some((r.id, r.resolved.get(crate::ddl::PLAN_KEY)?.clone()))).collect();
        let mut resume = restored.map(|m| crate::ddl::Resume { positions: m.positions, resumed: Default::default(), plans });
        let mut restored_count = 0;
        for record in &records {
            self.catalog.lock().await.resume_ids_at(record.id);
            match self.restore_one(record, resume.as_mut()).await {
                Ok(()) => restored_count += 1,
                // Without its secrets, a connector would run without its credentials.
                Err(e) if matches!(record.kind, ObjectKind::Secret | ObjectKind::Role | ObjectKind::ApiKey) => return Err(e),
                Err(e) => tracing::error!(object = %record.name, id = record.id, error = %e.message, "cannot restore; skipped"),
            }
        }
        self.drop_orphan_logs().await?;
        if !records.is_empty() {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let resumed: Vec<&String> = resume.as_ref().map(|r| r.resumed.iter().collect()).unwrap_or_default();
            tracing::info!(restored = restored_count, failed = records.len() - restored_count, elapsed_ms, ?resumed, "restored the catalog; views not listed as resumed were rebuilt from their inputs");
        }
        Ok(())
    }

    async fn restore_one(&self, record: &crate::durable::DdlRecord, resume: Option<&mut crate::ddl::Resume>) -> SqlResult<()> {
        if record.kind == ObjectKind::Secret {
            return self.restore_secret(record);
        }
        if record.kind == ObjectKind::Role {
            return self.restore_role(record);
        }
        if record.kind == ObjectKind::ApiKey {
            return self.restore_api_key(record);
        }
        if let Some(owner) = record.resolved.get(crate::roles::OWNER_KEY) {
            self.roles.set_owner(&record.name, owner);
        }
        let mut statements = parser::parse(&record.sql)?;
        let (Some(stmt), true) = (statements.pop(), statements.is_empty()) else {
            return Err(SqlError::new(SqlState::Internal, "a catalog record holds more than one statement"));
        };
        let vars = SessionVars::default();
        let mut resolved = record.resolved.clone();
        let path = resolved.remove(crate::schemas::SEARCH_PATH_KEY).map_or_else(|| vec![crate::schemas::PUBLIC.to_string()], |p| crate::schemas::parse_search_path(&p));
        let mut stmt = stmt;
        self.qualify(&mut stmt, &path).await?;
        let record = &crate::durable::DdlRecord { resolved, ..record.clone() };
        crate::schemas::with_path(path, self.restore_statement(record, stmt, vars, resume)).await
    }

    async fn restore_statement(&self, record: &crate::durable::DdlRecord, stmt: OcStatement, mut vars: SessionVars, resume: Option<&mut crate::ddl::Resume>) -> SqlResult<()> {
        match stmt {
            OcStatement::Standard(s) if record.kind == ObjectKind::Schema => {
                let Statement::CreateSchema { schema_name: datafusion::sql::sqlparser::ast::SchemaName::Simple(name), .. } = *s else {
                    return Err(SqlError::new(SqlState::Internal, "a schema's record holds no CREATE SCHEMA"));
                };
                let schema = object_name(&name)?;
                let mut catalog = self.catalog.lock().await;
                self.register_schema(&mut catalog, &schema, record.id)?;
                QueryOutput::command("CREATE SCHEMA")
            }
            OcStatement::Standard(s) if record.kind == ObjectKind::Function => {
                let Statement::CreateFunction(f) = *s else {
                    return Err(SqlError::new(SqlState::Internal, "a function's record holds no CREATE FUNCTION"));
                };
                self.create_function(f, &record.sql).await?
            }
            OcStatement::Standard(s) if record.kind == ObjectKind::View => {
                let Statement::CreateView(v) = *s else {
                    return Err(SqlError::new(SqlState::Internal, "a view's record holds no CREATE VIEW"));
                };
                self.create_plain_view(v, &record.sql).await?
            }
            OcStatement::CreateTable(ct, watermark, _) => self.create_table(*ct, watermark, &record.sql).await?,
            OcStatement::CreateSource(mut source) if source.as_table => {
                source.options.extend(record.resolved.clone());
                self.create_connector_table(source, &record.sql).await?
            }
            OcStatement::CreateSource(mut source) => {
                source.options.extend(record.resolved.clone());
                self.create_source(source, &record.sql).await?
            }
            OcStatement::CreateView(view) => {
                for (k, v) in record.resolved.iter().filter(|(k, _)| *k != crate::ddl::PLAN_KEY) {
                    vars.set(k, v)?;
                }
                self.create_view_resuming(view, &vars, &record.sql, resume).await?
            }
            OcStatement::CreateSink(sink) => {
                for (k, v) in record.resolved.iter().filter(|(k, _)| *k != crate::ddl::PLAN_KEY) {
                    vars.set(k, v)?;
                }
                self.create_sink_resuming(sink, &vars, &record.sql, resume).await?
            }
            OcStatement::CreateSubscription { name, view, options } => self.create_subscription(&name, &view, &options, &record.sql).await?,
            _ => return Err(SqlError::new(SqlState::Internal, "a catalog record holds no CREATE statement")),
        };
        Ok(())
    }
}
