//! `Describe` for the extended protocol: a statement's parameter types and result columns,
//! learned by planning it (or, for statements that only read the catalog, running it).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;

use crate::database::is_query;
use crate::parser::{self, OcStatement};
use crate::{Database, QueryOutput, SessionVars, SqlResult};

impl Database {
    /// Parameter types and result schema of one statement, without running it (for
    /// `Describe`). Statements that only read the catalog are run to learn their schema.
    pub async fn describe(&self, vars: &mut SessionVars, sql: &str) -> SqlResult<(Vec<Option<DataType>>, Option<SchemaRef>)> {
        let mut statements = parser::parse_off_workers(sql).await?;
        let Some((stmt, text)) = statements.pop() else { return Ok((vec![], None)) };
        match stmt {
            OcStatement::Standard(s) if is_query(&s) || matches!(*s, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)) => {
                // Drivers describe again at every Execute: kept while the catalog holds.
                let catalog_version = self.catalog.lock().await.version();
                let time_zone = vars.time_zone();
                if let Some(kept) = vars.prepared.described(&text, catalog_version, &time_zone) {
                    return Ok(kept);
                }
                let description = self.describe_planned(*s).await?;
                vars.prepared.keep_description(&text, catalog_version, time_zone, description.clone());
                Ok(description)
            }
            s @ (OcStatement::Show(_) | OcStatement::ShowVar(_) | OcStatement::Describe(_) | OcStatement::ShowStateTables | OcStatement::ShowCheckpoints) => {
                match self.execute_statement(vars, s, sql, None).await? {
                    QueryOutput::Rows { schema, .. } => Ok((vec![], Some(schema))),
                    QueryOutput::Command { .. } | QueryOutput::Subscription(_) | QueryOutput::CopyIn { .. } | QueryOutput::CopyOut { .. } => Ok((vec![], None)),
                }
            }
            // Its one row, without making a key.
            OcStatement::CreateApiKey { .. } => {
                let fields: Vec<datafusion::arrow::datatypes::Field> = ["id", "role", "key"].iter().map(|c| datafusion::arrow::datatypes::Field::new(*c, DataType::Utf8, true)).collect();
                Ok((vec![], Some(std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields)))))
            }
            // The rows a FETCH returns, without taking any.
            OcStatement::Fetch { cursor, .. } => Ok((vec![], vars.cursors.get(&cursor).map(|s| s.schema()))),
            _ => Ok((vec![], None)),
        }
    }

    /// [`Self::describe`] of a query or DML statement, by planning it.
    async fn describe_planned(&self, mut s: Statement) -> SqlResult<(Vec<Option<DataType>>, Option<SchemaRef>)> {
        let names = crate::naming::pg_column_names(&s);
        crate::naming::alias_unnamed(&mut s);
        let state = self.query_state();
        let plan = self.plan(&state, s).await?;
        let types = plan.get_parameter_types()?;
        let mut params: Vec<(usize, Option<DataType>)> = types
            .into_iter()
            .filter_map(|(k, v)| Some((k.trim_start_matches('$').parse::<usize>().ok()?, v)))
            .collect();
        params.sort_by_key(|(i, _)| *i);
        let n = params.last().map(|(i, _)| *i).unwrap_or(0);
        let mut out = vec![None; n];
        for (i, t) in params {
            out[i - 1] = t;
        }
        // `$1::interval`: DataFusion leaves a parameter only cast untyped; PostgreSQL
        // types it by the cast.
        for (i, cast_to) in cast_parameters(&plan) {
            if let Some(slot @ None) = out.get_mut(i - 1) {
                *slot = Some(cast_to);
            }
        }
        // The analyzed plan's types are the rows' (a placeholder's may not be known yet).
        let output = crate::database::analyzed(&state, plan.clone()).map(|p| p.schema().clone()).unwrap_or_else(|_| plan.schema().clone());
        let schema = crate::naming::rename_schema(Arc::new(output.as_arrow().clone()), &names);
        let returns_rows = !matches!(plan, LogicalPlan::Dml(_));
        Ok((out, returns_rows.then_some(schema)))
    }
}

/// The parameters of `plan` that appear cast (`$1::interval`), with the type cast to.
fn cast_parameters(plan: &LogicalPlan) -> Vec<(usize, DataType)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = vec![];
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            let _ = e.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e {
                    if let Expr::Placeholder(p) = expr.as_ref() {
                        if let Ok(i) = p.id.trim_start_matches('$').parse::<usize>() {
                            found.push((i, field.data_type().clone()));
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}
