//! Uncorrelated scalar subqueries, as in `WHERE price > (SELECT avg(price) FROM bid)` or a
//! select list's `(SELECT max(price) FROM bid)`. DataFusion keeps them as expressions,
//! evaluated once per ad-hoc query; a view must follow the subquery's changes. So the node
//! that holds them becomes a left join of its input with each subquery (on no key: see
//! `join.rs`), the subquery replaced by its column: when the subquery's value changes, the
//! join retracts the rows it made with the old value and emits them with the new one. An
//! empty subquery pads with NULL, as a scalar subquery of no rows is NULL.
//!
//! Only a subquery that cannot return two rows (an aggregate without GROUP BY, or LIMIT 1)
//! is accepted: a view cannot fail later the way PostgreSQL's query fails then.
//! DataFusion decorrelates the correlated ones into joins before this.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, NullEquality};
use std::sync::Arc;

use datafusion::logical_expr::{Expr, FetchType, Filter, Join, JoinConstraint, LogicalPlan, LogicalPlanBuilder, Projection, Subquery};

use crate::error::{SqlError, SqlResult};

/// The alias of the `n`th subquery joined in, unique within the view.
const ALIAS: &str = "__openclaw_scalar";

/// Whether `e` holds a scalar subquery.
pub(super) fn holds_one(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_)))).unwrap_or(false)
}

/// `Filter(p(subquery))` as `Projection(input columns) ← Filter(p(column)) ← input ⟕ subquery`.
pub(super) fn in_filter(f: &Filter, next_alias: &mut usize) -> SqlResult<LogicalPlan> {
    let input = f.input.as_ref();
    let (joined, predicate) = join_subqueries(input.clone(), &f.predicate, next_alias)?;
    let columns: Vec<Expr> = input.schema().columns().into_iter().map(Expr::Column).collect();
    Ok(LogicalPlanBuilder::from(joined).filter(predicate)?.project(columns)?.build()?)
}

/// `Projection(e(subquery))` as `Projection(e(column)) ← input ⟕ subquery`, each output named
/// as before.
pub(super) fn in_projection(p: &Projection, next_alias: &mut usize) -> SqlResult<LogicalPlan> {
    let mut plan = p.input.as_ref().clone();
    let mut exprs = Vec::with_capacity(p.expr.len());
    for (e, field) in p.expr.iter().zip(p.schema.columns()) {
        let (joined, rewritten) = join_subqueries(plan, e, next_alias)?;
        plan = joined;
        exprs.push(if holds_one(e) { rewritten.alias_qualified(field.relation.clone(), field.name.clone()) } else { rewritten });
    }
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// `input` left-joined with every scalar subquery of `e`, and `e` reading their columns.
fn join_subqueries(input: LogicalPlan, e: &Expr, next_alias: &mut usize) -> SqlResult<(LogicalPlan, Expr)> {
    let mut subqueries = vec![];
    e.apply(|e| {
        if let Expr::ScalarSubquery(sq) = e {
            subqueries.push(sq.clone());
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut plan = input;
    let mut columns = Vec::with_capacity(subqueries.len());
    for sq in &subqueries {
        check(sq)?;
        let alias = format!("{ALIAS}_{next_alias}");
        *next_alias += 1;
        let sub = LogicalPlanBuilder::from(sq.subquery.as_ref().clone()).alias(alias.as_str())?.build()?;
        let (qualifier, field) = sub.schema().qualified_field(0);
        columns.push(Column::new(qualifier.cloned(), field.name()));
        let join = Join::try_new(Arc::new(plan), Arc::new(sub), vec![], None, JoinType::Left, JoinConstraint::On, NullEquality::NullEqualsNothing, false)?;
        plan = LogicalPlan::Join(join);
    }
    let mut columns = columns.into_iter();
    let rewritten = e
        .clone()
        .transform_down(|e| match e {
            Expr::ScalarSubquery(_) => Ok(Transformed::new(Expr::Column(columns.next().expect("one column per subquery")), true, TreeNodeRecursion::Jump)),
            e => Ok(Transformed::no(e)),
        })?
        .data;
    Ok((plan, rewritten))
}

fn check(sq: &Subquery) -> SqlResult<()> {
    if !sq.outer_ref_columns.is_empty() {
        return Err(SqlError::not_supported("this correlated scalar subquery is not supported in materialized views")
            .with_hint("correlate it by equal columns only (WHERE inner.k = outer.k), which is planned as a join"));
    }
    if !at_most_one_row(&sq.subquery) {
        return Err(SqlError::not_supported("a scalar subquery in a materialized view must return at most one row whatever the data")
            .with_detail("a view cannot fail later when a second row arrives, as the query would")
            .with_hint("aggregate it without GROUP BY (max, min, sum, ...) or end it with ORDER BY ... LIMIT 1"));
    }
    Ok(())
}

fn at_most_one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        LogicalPlan::Limit(l) => matches!(l.get_fetch_type(), Ok(FetchType::Literal(Some(n))) if n <= 1) || at_most_one_row(&l.input),
        LogicalPlan::Sort(s) => s.fetch.is_some_and(|n| n <= 1) || at_most_one_row(&s.input),
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => plan.inputs().into_iter().all(at_most_one_row),
        _ => false,
    }
}
