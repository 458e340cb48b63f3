//! `DROP`: an object, what depends on it (with CASCADE), and what goes with it (a source's
//! dead-letter table, an object's history).

use datafusion::sql::sqlparser::ast::ObjectName;

use crate::catalog::{Catalog, Detail};
use crate::database::{object_name, undefined, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;

impl Database {
    pub(crate) async fn drop_objects(&self, kind: ObjectKind, names: &[ObjectName], if_exists: bool, cascade: bool) -> SqlResult<QueryOutput> {
        let tag = format!("DROP {}", kind.sql_name().to_uppercase());
        let mut catalog = self.catalog.lock().await;
        for name in names {
            let name = object_name(name)?;
            let Some(entry) = catalog.get(&name) else {
                if if_exists {
                    continue;
                }
                if kind == ObjectKind::Function {
                    return Err(SqlError::new(SqlState::UndefinedFunction, format!("function {name} does not exist")));
                }
                return Err(undefined(&name).with_hint(format!("no {} named {} exists", kind.sql_name(), quote(&name))));
            };
            if entry.kind != kind {
                return Err(SqlError::new(SqlState::WrongObjectType, format!("{} is not a {}", quote(&name), kind.sql_name()))
                    .with_hint(format!("use DROP {}", entry.kind.sql_name().to_uppercase())));
            }
            if crate::history::is_history_sink(entry) {
                let object = name.strip_suffix("$history").unwrap_or(&name);
                let kind = catalog.get(object).map(|e| e.kind.sql_name().to_ascii_uppercase()).unwrap_or_default();
                return Err(SqlError::new(SqlState::DependentObjectsStillExist, format!("cannot drop sink {} because it keeps the history of {}", quote(&name), quote(object)))
                    .with_hint(format!("ALTER {kind} {object} RESET (history) stops it and deletes the files")));
            }
            if catalog.is_dead_letter_table(&name) {
                let source = name.strip_suffix("_dlq").unwrap_or(&name);
                return Err(SqlError::new(
                    SqlState::DependentObjectsStillExist,
                    format!("cannot drop table {} because source {} writes to it", quote(&name), quote(source)),
                )
                .with_hint(format!("DROP SOURCE {} drops its dead-letter table too", quote(source))));
            }
            // Histories are not dependents of their own: each goes with its object.
            let dependents: Vec<(String, ObjectKind)> = catalog.dependents(&name).iter().filter(|e| !crate::history::is_history_sink(e)).map(|e| (e.name.clone(), e.kind)).collect();
            if !dependents.is_empty() && !cascade {
                let detail: Vec<String> = dependents
                    .iter()
                    .map(|(d, k)| format!("{} {} depends on {} {}", k.sql_name(), quote(d), kind.sql_name(), quote(&name)))
                    .collect();
                return Err(SqlError::new(
                    SqlState::DependentObjectsStillExist,
                    format!("cannot drop {} {} because other objects depend on it", kind.sql_name(), quote(&name)),
                )
                .with_detail(detail.join("\n"))
                .with_hint("use DROP ... CASCADE to drop the dependent objects too"));
            }
            // An object's history goes with it.
            self.drop_history(&mut catalog, &name)?;
            for (dependent, _) in dependents {
                self.drop_history(&mut catalog, &dependent)?;
                self.drop_one(&mut catalog, &dependent)?;
            }
            self.drop_one(&mut catalog, &name)?;
        }
        Ok(QueryOutput::command(&tag))
    }

    /// Drops `name`'s history, if it has one: its sink, and its files (set aside at once,
    /// deleted in the background).
    pub(crate) fn drop_history(&self, catalog: &mut Catalog, name: &str) -> SqlResult<()> {
        let history = crate::history::sink_name(name);
        // Named after the sink, which no later history of `name` shares.
        if let Some(id) = catalog.get(&history).map(|e| e.id) {
            self.drop_one(catalog, &history)?;
            tokio::task::block_in_place(|| crate::history::set_aside(self.store.dir(), name, id));
        }
        Ok(())
    }

    pub(crate) fn drop_one(&self, catalog: &mut Catalog, name: &str) -> SqlResult<()> {
        let Some(id) = catalog.get(name).map(|e| e.id) else { return Ok(()) };
        // The record goes first: a crash before the column families are dropped leaves
        // orphans, which the next start drops, never a record without its rows.
        crate::durable::remove(&self.store, id)?;
        let Some(entry) = catalog.remove(name) else { return Ok(()) };
        self.ctx.deregister_table(crate::schemas::table_reference(name))?;
        self.parquet_sinks.remove(name);
        self.secrets.forget_uses(name);
        for role in self.roles.forget_object(name) {
            self.save_role(&role)?;
        }
        match &entry.detail {
            Detail::Table { root, task, state, ingest, .. } => {
                if let Some(ingest) = ingest {
                    ingest.task.abort();
                    let _ = self.store.drop_cf(&crate::ingest::offsets_cf(entry.id));
                    if let Some(dlq) = &ingest.dead_letters {
                        self.drop_one(catalog, dlq)?;
                    }
                }
                task.abort();
                self.coordinator.unregister_root(*root);
                self.store.drop_cf(&state.cf)?;
            }
            Detail::View(view) => self.stop_view(entry.id, view),
            Detail::Source { dead_letters: Some(dlq), .. } => self.drop_one(catalog, dlq)?,
            Detail::Source { .. } | Detail::PlainView => {}
            Detail::Function => {
                self.ctx.deregister_udf(name.trim_end_matches("()"));
            }
            Detail::Subscription { view, log } => self.drop_subscription(catalog, view, log),
        }
        tracing::info!(object = %name, kind = entry.kind.sql_name(), "dropped");
        Ok(())
    }
}
