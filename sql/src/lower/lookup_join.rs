//! Temporal joins (`s [LEFT] JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS d ON s.x = d.k`, see
//! [`crate::lookup_join`]): the lookup-join operator, which reads `t`'s stored rows by their
//! primary key as each row of `s` arrives. The equalities must give `t`'s whole primary key;
//! `s` must only gain rows; filters on `d` alone become a condition on the row looked up.

use std::sync::Arc;

use datafusion::common::{DFSchema, JoinType};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Join, LogicalPlan, TableScan};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_engine::operators::LookupJoinSpec;
use openclaw_engine::plan::StreamNode;

use super::Lowering;
use crate::error::{SqlError, SqlResult};
use crate::lookup_join::looked_up;

fn refused(what: &str) -> SqlError {
    SqlError::not_supported(format!("{what} in a temporal join is not supported in materialized views"))
        .with_hint("write s [LEFT] JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS d ON s.x = d.k, d.k being t's primary key")
}

impl Lowering<'_> {
    /// Whether `join` is a temporal join: its right side `FOR SYSTEM_TIME AS OF PROCTIME()`.
    pub(super) fn is_lookup(&self, join: &Join) -> SqlResult<bool> {
        match (looked_up(&join.left), looked_up(&join.right)) {
            (Some(_), _) => Err(refused("the looked-up table on the left")),
            (None, Some(_)) if !matches!(join.join_type, JoinType::Inner | JoinType::Left | JoinType::LeftSemi) => Err(refused(&format!("{} JOIN", join.join_type.to_string().to_uppercase()))),
            (None, found) => Ok(found.is_some()),
        }
    }

    pub(super) fn lookup_join(&mut self, join: &Join, depth: usize) -> SqlResult<StreamNode> {
        let (scan, filters) = looked_up_scan(&join.right).ok_or_else(|| refused("a subquery or projection on the looked-up side"))?;
        let name = looked_up(&join.right).expect("checked by is_lookup");
        let (table, primary_key) = self.resolver.lookup_table(&name)?;
        let table_schema = table.schema().clone();
        // Filters over the table's row read its columns by name, whatever alias qualifies them.
        let full = DFSchema::try_from(table_schema.as_ref().clone())?;
        // Each equality's table side is a column of the table; together, its primary key.
        let mut keys: Vec<Option<Arc<dyn PhysicalExpr>>> = vec![None; primary_key.len()];
        let left_schema = join.left.schema();
        for (l, r) in &join.on {
            let Expr::Column(c) = r.clone().unalias() else { return Err(refused("an equality on an expression of the looked-up table")) };
            let column = table_schema.index_of(&c.name).map_err(|_| refused("an equality on a column the table lacks"))?;
            let Some(slot) = primary_key.iter().position(|&k| k == column) else { return Err(refused("an equality on a column outside the table's primary key")) };
            let key = self.expr(l, left_schema)?;
            let wanted = table_schema.field(column).data_type();
            keys[slot] = Some(datafusion::physical_expr::expressions::cast(key, left_schema.as_arrow(), wanted.clone())?);
        }
        let keys: Vec<_> = keys.into_iter().collect::<Option<_>>().ok_or_else(|| refused("an equality on part of the table's primary key"))?;
        let table_filter = conjunction(filters.into_iter().map(unqualified)).map(|f| self.expr(&f, &full)).transpose()?;
        // The looked-up side's columns, as the table's (pruned by the optimizer, never computed).
        let table_columns = join
            .right
            .schema()
            .fields()
            .iter()
            .map(|f| table_schema.index_of(f.name()).map_err(|_| refused("a computed column on the looked-up side")))
            .collect::<SqlResult<Vec<usize>>>()?;
        let _ = scan;
        let filter = match &join.filter {
            Some(f) => Some(self.expr(f, &left_schema.join(join.right.schema())?)?),
            None => None,
        };
        let input = self.lower(&join.left, depth + 1)?;
        if !(input.append_only() || self.reads_append_only(&join.left)) {
            return Err(SqlError::not_supported("a temporal join (FOR SYSTEM_TIME AS OF PROCTIME()) needs an append-only left side")
                .with_detail("a change of a row already joined could not find the version of the table it was joined with")
                .with_hint("join a source, or a table without a primary key; or join the table without FOR SYSTEM_TIME AS OF, which follows its changes"));
        }
        // A semi join (an inner join that outputs only the stream's columns) is the inner join
        // projected: the table's primary key matches at most one row.
        let joined = left_schema.join(join.right.schema())?;
        let left_width = left_schema.fields().len();
        let spec = LookupJoinSpec {
            left_outer: join.join_type == JoinType::Left,
            keys,
            table,
            table_columns,
            table_filter,
            filter,
            schema: Arc::new(joined.as_arrow().clone()),
        };
        let node = StreamNode::LookupJoin { spec, input: Box::new(input) };
        if join.join_type != JoinType::LeftSemi {
            return Ok(node);
        }
        let schema = Arc::new(join.schema.as_arrow().clone());
        let exprs = (0..left_width).map(|i| Arc::new(datafusion::physical_expr::expressions::Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>).collect();
        Ok(super::project(exprs, schema, node))
    }

    /// Whether `plan` reads, through projections and filters, a relation that only gains rows.
    pub(super) fn reads_append_only(&self, plan: &LogicalPlan) -> bool {
        match plan {
            LogicalPlan::TableScan(scan) => self.resolver.append_only(&crate::schemas::reference_name(&scan.table_name)),
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => plan.inputs().iter().all(|i| self.reads_append_only(i)),
            _ => false,
        }
    }
}

/// `e` with its columns unqualified.
fn unqualified(e: Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .expect("renaming columns cannot fail")
}

/// The looked-up table's scan under aliases, with the filters above it (over its columns).
fn looked_up_scan(plan: &LogicalPlan) -> Option<(&TableScan, Vec<Expr>)> {
    match plan {
        LogicalPlan::TableScan(scan) => Some((scan, scan.filters.clone())),
        LogicalPlan::SubqueryAlias(a) => looked_up_scan(&a.input),
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => looked_up_scan(&p.input),
        LogicalPlan::Filter(f) => {
            let (scan, mut filters) = looked_up_scan(&f.input)?;
            filters.push(f.predicate.clone());
            Some((scan, filters))
        }
        _ => None,
    }
}
