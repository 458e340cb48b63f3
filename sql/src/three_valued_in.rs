//! `x IN (subquery)` and `x NOT IN (subquery)` with PostgreSQL's three-valued result wherever
//! the result is a value, not a `WHERE` conjunct: under `OR`, under `NOT`, in a `CASE`, in a
//! select list.
//!
//! PostgreSQL's `x IN (SELECT k ...)` is TRUE when some `k = x`, else NULL when `x` is NULL
//! or some `k` is NULL (and the subquery has rows), else FALSE; `NOT IN` is its negation, so
//! `1 NOT IN (SELECT k ...)` over the keys `{2, NULL}` is NULL and `WHERE ... OR` keeps no
//! row for it. DataFusion plans such an `IN` as a mark join, whose mark is TRUE or FALSE, and
//! refuses one in a select list.
//!
//! [`ThreeValuedIn`], an analyzer rule (ad-hoc queries and views alike), plans it as that mark
//! join (which views maintain) plus one scalar subquery over the subquery's rows, and replaces
//! the `IN` with:
//!
//! ```text
//! CASE WHEN mark THEN TRUE
//!      WHEN keys + CASE WHEN x IS NULL THEN 1 ELSE 0 END >= 2 THEN NULL
//!      ELSE FALSE END
//! keys = (SELECT CASE WHEN count(*) = 0 THEN 0 WHEN count(*) > count(k) THEN 2 ELSE 1 END ...)
//! ```
//!
//! A `WHERE` conjunct that is the `IN` itself is left to DataFusion: there NULL and FALSE both
//! drop the row, and `NOT IN` already becomes a null-aware anti join. Correlated subqueries are
//! left as DataFusion plans them (their mark join needs the correlation pulled up first).

use std::sync::Arc;

use datafusion::common::alias::AliasGenerator;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, Result, ScalarValue, Spans};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::InSubquery;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{col, lit, when, Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, Subquery};
use datafusion::optimizer::AnalyzerRule;

/// Names of the rewrite's own relations and columns; no query shows them.
const ALIAS_PREFIX: &str = "__openclaw_in";
const ROWS: &str = "__openclaw_in_rows";
const KEYS: &str = "__openclaw_in_keys";

/// Rows of the subquery: none, some and no NULL key, or some with a NULL key.
const NO_ROWS: i64 = 0;
const NO_NULL_KEY: i64 = 1;
const NULL_KEY: i64 = 2;

#[derive(Debug, Default)]
pub struct ThreeValuedIn;

impl AnalyzerRule for ThreeValuedIn {
    fn name(&self) -> &str {
        "openclaw_three_valued_in"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let aliases = AliasGenerator::new();
        plan.transform_up_with_subqueries(|plan| rewrite(plan, &aliases)).data()
    }
}

fn rewrite(plan: LogicalPlan, aliases: &AliasGenerator) -> Result<Transformed<LogicalPlan>> {
    match plan {
        LogicalPlan::Filter(filter) if needs_rewrite_in_filter(&filter.predicate) => rewrite_filter(filter, aliases).map(Transformed::yes),
        LogicalPlan::Projection(projection) if projection.expr.iter().any(has_uncorrelated_in) => {
            rewrite_projection(projection, aliases).map(Transformed::yes)
        }
        plan => Ok(Transformed::no(plan)),
    }
}

fn needs_rewrite_in_filter(predicate: &Expr) -> bool {
    datafusion::logical_expr::utils::split_conjunction(predicate).into_iter().any(|c| !matches!(c, Expr::InSubquery(_)) && has_uncorrelated_in(c))
}

fn has_uncorrelated_in(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::InSubquery(in_subquery) if in_subquery.subquery.outer_ref_columns.is_empty()))).unwrap_or(false)
}

/// The filter over its input with a mark join per `IN`, then the input's columns again (a
/// filter's output is its input's).
fn rewrite_filter(filter: Filter, aliases: &AliasGenerator) -> Result<LogicalPlan> {
    let columns: Vec<Expr> = filter.input.schema().columns().into_iter().map(Expr::Column).collect();
    let mut marks = MarkJoins { input: filter.input.as_ref().clone(), aliases };
    let mut conjuncts = Vec::new();
    for conjunct in split_conjunction_owned(filter.predicate) {
        conjuncts.push(if matches!(conjunct, Expr::InSubquery(_)) { conjunct } else { marks.rewrite(conjunct)? });
    }
    let predicate = conjunction(conjuncts).expect("a filter has a predicate");
    let filtered = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(marks.input))?);
    LogicalPlanBuilder::from(filtered).project(columns)?.build()
}

fn rewrite_projection(projection: Projection, aliases: &AliasGenerator) -> Result<LogicalPlan> {
    let names = NamePreserver::new_for_projection();
    let mut marks = MarkJoins { input: projection.input.as_ref().clone(), aliases };
    let mut exprs = Vec::with_capacity(projection.expr.len());
    for expr in projection.expr {
        let name = names.save(&expr);
        exprs.push(name.restore(marks.rewrite(expr)?));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(marks.input))?))
}

/// The input, growing one mark join per rewritten `IN`.
struct MarkJoins<'a> {
    input: LogicalPlan,
    aliases: &'a AliasGenerator,
}

impl MarkJoins<'_> {
    fn rewrite(&mut self, expr: Expr) -> Result<Expr> {
        expr.transform_up(|e| match e {
            Expr::InSubquery(in_subquery) if in_subquery.subquery.outer_ref_columns.is_empty() => {
                Ok(Transformed::yes(self.three_valued(in_subquery)?))
            }
            e => Ok(Transformed::no(e)),
        })
        .data()
    }

    fn three_valued(&mut self, in_subquery: InSubquery) -> Result<Expr> {
        let InSubquery { expr, subquery, negated } = in_subquery;
        let alias = self.aliases.next(ALIAS_PREFIX);
        let rows = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone()).alias(alias.clone())?.build()?;
        let key = Expr::Column(Column::from(rows.schema().qualified_field(0)));
        let input = std::mem::replace(&mut self.input, LogicalPlan::default());
        self.input = LogicalPlanBuilder::from(input).join_on(rows, JoinType::LeftMark, Some(expr.as_ref().clone().eq(key)))?.build()?;
        let mark = Expr::Column(Column::new(Some(alias), "mark"));
        let x_is_null = when(expr.is_null(), lit(1i64)).otherwise(lit(0i64))?;
        let value = when(mark, lit(true))
            .when((key_state(&subquery)? + x_is_null).gt_eq(lit(NULL_KEY)), lit(ScalarValue::Boolean(None)))
            .otherwise(lit(false))?;
        Ok(if negated { !value } else { value })
    }
}

/// `(SELECT CASE WHEN count(*) = 0 THEN 0 WHEN count(*) > count(k) THEN 2 ELSE 1 END FROM
/// (subquery))`: [`NO_ROWS`], [`NO_NULL_KEY`] or [`NULL_KEY`].
fn key_state(subquery: &Subquery) -> Result<Expr> {
    let plan = subquery.subquery.as_ref();
    let key = Expr::Column(Column::from(plan.schema().qualified_field(0)));
    let state = LogicalPlanBuilder::from(plan.clone())
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias(ROWS), count(key).alias(KEYS)])?
        .project(vec![when(col(ROWS).eq(lit(0i64)), lit(NO_ROWS))
            .when(col(ROWS).gt(col(KEYS)), lit(NULL_KEY))
            .otherwise(lit(NO_NULL_KEY))?
            .alias(KEYS)])?
        .build()?;
    Ok(Expr::ScalarSubquery(Subquery { subquery: Arc::new(state), outer_ref_columns: vec![], spans: Spans::new() }))
}
