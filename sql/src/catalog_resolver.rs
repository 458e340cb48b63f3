//! What a view's plan scans, resolved against the catalog (`lower`'s [`ScanResolver`]): a
//! table or view becomes a subscription to its changes, a source a reader of its connector,
//! and each object read becomes a dependency of the view.

use std::sync::Arc;

use openclaw_engine::operators::MaterializedState;
use openclaw_engine::plan::StreamNode;
use openclaw_engine::source::SourceProgress;

use crate::catalog::{Catalog, Detail};
use crate::database::undefined;
use crate::ddl::backfilling;
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::lower::ScanResolver;

/// Resolves the names a view's plan scans against the catalog.
pub(crate) struct CatalogResolver<'a> {
    catalog: &'a Catalog,
    /// The objects the view reads, in the order it first reads them.
    pub deps: Vec<String>,
    /// Each source reader's progress, by the source it reads.
    pub progress: Vec<(String, Arc<SourceProgress>)>,
}

impl<'a> CatalogResolver<'a> {
    pub(crate) fn new(catalog: &'a Catalog) -> Self {
        Self { catalog, deps: vec![], progress: vec![] }
    }
}

impl ScanResolver for CatalogResolver<'_> {
    fn append_only(&self, name: &str) -> bool {
        matches!(self.catalog.get(name).map(|e| &e.detail), Some(Detail::Table { primary_key: None, ingest: None, .. }))
    }

    fn lookup_table(&mut self, name: &str) -> SqlResult<(Arc<MaterializedState>, Vec<usize>)> {
        let entry = self.catalog.get(name).ok_or_else(|| undefined(name))?;
        let Detail::Table { state, primary_key: Some(pk), .. } = &entry.detail else {
            return Err(SqlError::not_supported(format!("a temporal join looks up a table by its primary key; {} is not a table with one", quote(name)))
                .with_hint("join it without FOR SYSTEM_TIME AS OF PROCTIME(), which follows its changes"));
        };
        if !self.deps.contains(&entry.name) {
            self.deps.push(entry.name.clone());
        }
        Ok((state.clone(), pk.clone()))
    }

    fn resolve(&mut self, name: &str) -> SqlResult<StreamNode> {
        let entry = self.catalog.get(name).ok_or_else(|| undefined(name))?;
        if !self.deps.contains(&entry.name) {
            self.deps.push(entry.name.clone());
        }
        match &entry.detail {
            Detail::Table { .. } if self.catalog.is_dead_letter_table(name) => {
                Err(SqlError::not_supported(format!("materialized views over the dead-letter table {} are not supported", quote(name)))
                    .with_hint("query it with SELECT; its rows are written by the source, not through the changelog"))
            }
            Detail::Table { .. } => Ok(StreamNode::Subscribe {
                    object: entry.id,
                    name: name.to_string(),
                    schema: entry.schema.clone(),
                    watermark_columns: entry.watermark_columns.clone(),
                }),
            Detail::View(v) => {
                if let Some(f) = v.failure.lock().expect("failure lock").clone() {
                    return Err(SqlError::new(SqlState::ObjectNotInPrerequisiteState, format!("materialized view {} failed: {}", quote(name), f.message)));
                }
                if v.backfilling() {
                    return Err(backfilling(name));
                }
                Ok(StreamNode::Subscribe {
                    object: entry.id,
                    name: name.to_string(),
                    schema: entry.schema.clone(),
                    watermark_columns: entry.watermark_columns.clone(),
                })
            }
            Detail::Source { connector, options, watermark, dead_letters, .. } => {
                let dead_letters = match dead_letters.as_deref().and_then(|d| self.catalog.get(d)).map(|e| &e.detail) {
                    Some(Detail::Table { state, .. }) => Some(Arc::new(openclaw_engine::dead_letters::DeadLetterTable::new(state.clone())?)),
                    _ => None,
                };
                // A source read twice in one plan is read by one reader (the engine shares it),
                // so it counts once in SHOW SOURCES.
                let progress = match self.progress.iter().find(|(n, _)| *n == entry.name) {
                    Some((_, p)) => p.clone(),
                    None => {
                        let p = Arc::new(SourceProgress::default());
                        self.progress.push((entry.name.clone(), p.clone()));
                        p
                    }
                };
                let context = openclaw_connectors::ReaderContext { source: name.to_string(), progress: progress.clone(), dead_letters };
                let reader = connector
                    .reader(&entry.schema, options, context)
                    .map_err(|e| SqlError::new(SqlState::InvalidParameterValue, e.message))?;
                Ok(StreamNode::Source { name: name.to_string(), reader, progress, watermark: *watermark })
            }
            // DataFusion expands a plain view where it is planned: its scan never reaches here.
            Detail::PlainView | Detail::Function => Err(SqlError::new(SqlState::Internal, format!("view {} was not expanded", quote(name)))),
            Detail::Subscription { .. } => Err(SqlError::new(SqlState::WrongObjectType, format!("{} is a subscription, not a relation", quote(name)))
                .with_hint("read it with SUBSCRIBE, or query its view")),
        }
    }
}
