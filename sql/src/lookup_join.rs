//! Temporal joins: `FROM s JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS d ON ...` (Flink's and
//! RisingWave's lookup join). Each row of `s` is joined with `t` as `t` is when the row
//! arrives; later changes of `t` do not revisit rows already joined, so `t`'s rows are kept
//! as the join's lookup state and only `s`'s rows make output. `s` must be append-only (a
//! source, or a table without a primary key), since a retraction could not find what its row
//! was joined with.
//!
//! [`crate::as_of::desugar`] rewrites the clause into `temporal_lookup('t') AS d`, a table
//! function whose [`LookupRelation`] reads as `t` itself ad hoc (a query runs at one
//! processing time: it is a plain join) and tells the lowering which side is looked up.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Constraints, DataFusionError, ScalarValue, TableReference};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{SqlError, SqlState};

/// The table function `FOR SYSTEM_TIME AS OF PROCTIME()` becomes.
pub(crate) const FUNCTION: &str = "temporal_lookup";

/// `temporal_lookup('t')`: table `t`, looked up by a temporal join.
#[derive(Debug)]
pub(crate) struct LookupFunction;

impl TableFunctionImpl for LookupFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] = args.exprs() else {
            return Err(user_error(SqlError::new(SqlState::UndefinedFunction, "temporal_lookup() takes the name of a table, as a string")
                .with_hint("write JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS d ON ...")));
        };
        let inner = table(args.session(), name)?;
        Ok(Arc::new(LookupRelation { name: name.clone(), inner }))
    }
}

fn table(session: &dyn Session, name: &str) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    let undefined = || user_error(SqlError::new(SqlState::UndefinedTable, format!("relation \"{name}\" does not exist")));
    let state = session.as_any().downcast_ref::<datafusion::execution::context::SessionState>().ok_or_else(undefined)?;
    let reference = TableReference::from(name);
    let schema = state.schema_for_ref(reference.clone())?;
    // The catalog's schemas are in memory: the lookup is ready at once.
    futures::executor::block_on(schema.table(reference.table()))?.ok_or_else(undefined)
}

fn user_error(error: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Table `name` as a temporal join looks it up; read ad hoc, it is the table.
#[derive(Debug)]
pub(crate) struct LookupRelation {
    pub name: String,
    inner: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for LookupRelation {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// The looked-up table `plan` reads, when it is one (under aliases, projections and filters).
pub(crate) fn looked_up(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
            provider.downcast_ref::<LookupRelation>().map(|l| l.name.clone())
        }
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => plan.inputs().first().and_then(|i| looked_up(i)),
        _ => None,
    }
}
