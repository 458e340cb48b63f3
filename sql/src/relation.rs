//! How tables, views and sources appear to DataFusion for ad-hoc queries.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{not_impl_err, Constraints};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use openclaw_engine::operators::MaterializedState;
use openclaw_storage::ReadSnapshot;

/// The RocksDB snapshot one ad-hoc query reads, so that every relation it touches is read
/// at the same point in time. Stored as a session config extension.
pub struct QuerySnapshot(pub ReadSnapshot);

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
        let snapshot = state.config().get_extension::<QuerySnapshot>();
        let batches = self
            .state
            .read_all(snapshot.as_ref().map(|s| &s.0), SCAN_PAGE_ROWS)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
            .into_iter()
            .map(|b| RecordBatch::try_new(self.schema.clone(), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemorySourceConfig::try_new_exec(&[batches], self.schema(), projection.cloned())?)
    }
}

/// A source: it has a schema for planning, but no stored rows to read ad hoc.
#[derive(Debug)]
pub struct SourceRelation {
    pub name: String,
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SourceRelation {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
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
