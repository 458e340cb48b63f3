//! How tables, views and sources appear to DataFusion for ad-hoc queries.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{not_impl_err, Constraints};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use openclaw_engine::operators::MaterializedState;
use openclaw_storage::ReadSnapshot;

/// The RocksDB snapshot one ad-hoc query reads, so that every relation it touches is read
/// at the same point in time. Stored as a session config extension.
pub struct QuerySnapshot(pub ReadSnapshot);

/// A transaction's own changes to the tables it wrote, by column family: its statements read
/// them over the committed rows. Stored as a session config extension.
#[derive(Default)]
pub struct TxnOverlays(pub std::collections::HashMap<Arc<str>, Arc<TableOverlay>>);

/// One table's uncommitted changes.
#[derive(Default, Clone)]
pub struct TableOverlay {
    /// By stored key (the encoded primary key): the row now, `None` when deleted.
    pub keyed: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Rows appended to a table without a primary key.
    pub appended: Vec<RecordBatch>,
}

/// Rows per batch when reading stored relations.
const SCAN_PAGE_ROWS: usize = 8192;

/// A table or view: its stored rows.
///
/// DataFusion sees every column as nullable, so that `NOT NULL` is checked by the table writer
/// with PostgreSQL's message and column name rather than by DataFusion's plan checks.
#[derive(Clone)]
pub struct StoredRelation {
    pub state: Arc<MaterializedState>,
    pub constraints: Constraints,
    schema: SchemaRef,
}

impl StoredRelation {
    pub fn new(state: Arc<MaterializedState>, constraints: Constraints) -> Self {
        let fields: Vec<Field> = state.schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        Self { state, constraints, schema: Arc::new(Schema::new(fields)) }
    }
}

impl std::fmt::Debug for StoredRelation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredRelation({})", self.state.cf)
    }
}

#[async_trait]
impl TableProvider for StoredRelation {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let overlay = state.config().get_extension::<TxnOverlays>().and_then(|o| o.0.get(&self.state.cf).cloned());
        let scan = PagedScan {
            state: self.state.clone(),
            snapshot: state.config().get_extension::<QuerySnapshot>(),
            schema: self.schema.clone(),
            overlay,
        };
        Ok(Arc::new(StreamingTableExec::try_new(self.schema.clone(), vec![Arc::new(scan)], projection, [], false, None)?))
    }
}

/// Reads a stored relation page by page, so that a scan holds one page in memory at a time.
struct PagedScan {
    state: Arc<MaterializedState>,
    snapshot: Option<Arc<QuerySnapshot>>,
    schema: SchemaRef,
    /// The reading transaction's own changes to this relation.
    overlay: Option<Arc<TableOverlay>>,
}

impl PagedScan {
    /// The overlay's rows, read after the committed ones.
    fn overlay_rows(&self) -> Result<Vec<RecordBatch>> {
        let Some(overlay) = &self.overlay else { return Ok(vec![]) };
        let rows: Vec<&[u8]> = overlay.keyed.values().filter_map(|r| r.as_deref()).collect();
        let decoded = self.state.row_codec().decode(rows).map_err(|e| DataFusionError::External(Box::new(e)))?;
        std::iter::once(&decoded)
            .chain(overlay.appended.iter())
            .filter(|b| b.num_rows() > 0)
            .map(|b| Ok(RecordBatch::try_new(self.schema.clone(), b.columns().to_vec())?))
            .collect()
    }
}

impl std::fmt::Debug for PagedScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PagedScan({})", self.state.cf)
    }
}

impl PartitionStream for PagedScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (state, snapshot, schema) = (self.state.clone(), self.snapshot.clone(), self.schema.clone());
        let overlay = self.overlay.clone();
        // `None` = not started, `Some(None)` = finished, `Some(Some(key))` = resume after key.
        let pages = futures::stream::unfold(None::<Option<Vec<u8>>>, move |cursor| {
            let (state, snapshot, schema, overlay) = (state.clone(), snapshot.clone(), schema.clone(), overlay.clone());
            async move {
                if matches!(cursor, Some(None)) {
                    return None;
                }
                let after = cursor.flatten();
                let replaced = |key: &[u8]| overlay.as_ref().is_some_and(|o| o.keyed.contains_key(key));
                let page = state
                    .read_page_skipping(snapshot.as_ref().map(|s| &s.0), after.as_deref(), SCAN_PAGE_ROWS, &replaced)
                    .map_err(|e| DataFusionError::External(Box::new(e)))
                    .and_then(|(batch, last)| {
                        Ok((RecordBatch::try_new(schema, batch.columns().to_vec())?, last))
                    });
                Some(match page {
                    Ok((batch, last)) => (Ok(batch), Some(last)),
                    Err(e) => (Err(e), Some(None)),
                })
            }
        });
        let own = match self.overlay_rows() {
            Ok(batches) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::StreamExt::chain(pages, futures::stream::iter(own))))
    }
}

/// A source: it has a schema for planning, but no stored rows to read ad hoc.
#[derive(Debug)]
pub struct SourceRelation {
    pub name: String,
    pub schema: SchemaRef,
    /// The key its connector guarantees unique, as a primary key ([`openclaw_connectors::Connector::unique_key`]).
    pub constraints: Constraints,
}

#[async_trait]
impl TableProvider for SourceRelation {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        not_impl_err!(
            "source \"{}\" cannot be queried directly; create a materialized view over it and query that",
            self.name
        )
    }
}
