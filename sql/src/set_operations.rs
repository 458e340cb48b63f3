//! `EXCEPT ALL` and `INTERSECT ALL` with PostgreSQL's multiset semantics: a row that occurs
//! `m` times on the left and `n` times on the right occurs `max(m - n, 0)` times in `EXCEPT
//! ALL` and `min(m, n)` times in `INTERSECT ALL`. DataFusion plans both as a semi or anti join
//! on every column (NULL equal to NULL), which keeps all `m` copies or none.
//!
//! [`MultisetSetOperations`], an analyzer rule (so ad-hoc queries and views alike), rewrites
//! such a join into counting:
//!
//! ```text
//! SELECT c... FROM (
//!   SELECT c..., generate_series(1, copies) FROM (
//!     SELECT c..., sum(l) - sum(r) AS copies          -- least(sum(l), sum(r)) for INTERSECT
//!     FROM (SELECT c..., 1 AS l, 0 AS r FROM left UNION ALL SELECT c..., 0, 1 FROM right)
//!     GROUP BY c...) WHERE copies > 0) unnested
//! ```
//!
//! which a view maintains with the aggregate (the counts follow inserts and deletes on both
//! sides) and the unnest (a count's change retracts and inserts its copies).
//!
//! The join is recognised before the optimizer, as the SQL planner builds it: a left semi or
//! anti join with one key per column and no filter, NULL equal to NULL, whose left input is not
//! a `DISTINCT` (plain `EXCEPT`/`INTERSECT` put one there and stay joins). Nothing else plans
//! such a join at that point: subqueries are decorrelated later, by the optimizer.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, NullEquality, Result};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::functions_nested::expr_fn::gen_series;
use datafusion::logical_expr::{col, lit, when, Expr, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::AnalyzerRule;

/// Names of the rewrite's own columns; a view never shows them.
const COLUMN_PREFIX: &str = "__openclaw_set_c";
const LEFT_COUNT: &str = "__openclaw_set_left";
const RIGHT_COUNT: &str = "__openclaw_set_right";
const COPIES: &str = "__openclaw_set_copies";

#[derive(Debug, Default)]
pub struct MultisetSetOperations;

impl AnalyzerRule for MultisetSetOperations {
    fn name(&self) -> &str {
        "openclaw_multiset_set_operations"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan.transform_up_with_subqueries(rewrite)?.data)
    }
}

/// Whether `join` is what the SQL planner makes of `EXCEPT ALL` (anti) or `INTERSECT ALL`
/// (semi).
fn set_operation_all(plan: &LogicalPlan) -> Option<bool> {
    let LogicalPlan::Join(join) = plan else { return None };
    let except = match join.join_type {
        JoinType::LeftAnti => true,
        JoinType::LeftSemi => false,
        _ => return None,
    };
    let width = join.left.schema().fields().len();
    let keyed_by_every_column = join.on.len() == width && join.right.schema().fields().len() == width;
    let all = !matches!(join.left.as_ref(), LogicalPlan::Distinct(_));
    (join.null_equality == NullEquality::NullEqualsNull && join.filter.is_none() && keyed_by_every_column && all).then_some(except)
}

fn rewrite(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let Some(except) = set_operation_all(&plan) else { return Ok(Transformed::no(plan)) };
    let LogicalPlan::Join(join) = &plan else { unreachable!("checked above") };
    let schema = join.left.schema().clone();
    let width = schema.fields().len();
    let name = |i: usize| format!("{COLUMN_PREFIX}{i}");
    let side = |input: &LogicalPlan, left: i64| -> Result<LogicalPlan> {
        let mut exprs: Vec<Expr> = (0..width).map(|i| Expr::Column(Column::from(input.schema().qualified_field(i))).alias(name(i))).collect();
        exprs.push(lit(left).alias(LEFT_COUNT));
        exprs.push(lit(1 - left).alias(RIGHT_COUNT));
        LogicalPlanBuilder::from(input.clone()).project(exprs)?.build()
    };
    let columns: Vec<Expr> = (0..width).map(|i| col(name(i))).collect();
    let (left, right) = (col(LEFT_COUNT), col(RIGHT_COUNT));
    let copies = match except {
        true => left.clone() - right.clone(),
        false => when(left.clone().lt(right.clone()), left.clone()).otherwise(right.clone())?,
    };
    let mut counted = columns.clone();
    counted.push(copies.alias(COPIES));
    let mut replicated = columns.clone();
    replicated.push(gen_series(lit(1i64), col(COPIES), lit(1i64)).alias(COPIES));
    let output: Vec<Expr> = (0..width)
        .map(|i| {
            let (qualifier, field) = schema.qualified_field(i);
            col(name(i)).alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    let rewritten = LogicalPlanBuilder::from(side(&join.left, 1)?)
        .union(side(&join.right, 0)?)?
        .aggregate(columns.clone(), vec![sum(col(LEFT_COUNT)).alias(LEFT_COUNT), sum(col(RIGHT_COUNT)).alias(RIGHT_COUNT)])?
        .project(counted)?
        .filter(col(COPIES).gt(lit(0i64)))?
        .project(replicated)?
        .unnest_column(COPIES)?
        .project(output)?
        .build()?;
    Ok(Transformed::yes(rewritten))
}
