//! Joins. An equi-join is keyed by its equal columns (where NULL equals NULL for the joins
//! `EXCEPT` and `INTERSECT` plan to). A join with no equality (a cross join,
//! a band join such as `a.t BETWEEN b.lo AND b.hi`, and the left join DataFusion makes of an
//! uncorrelated scalar subquery) is keyed by one constant: every row of one side meets every
//! row of the other, and the condition decides. Each side is then one group in the join's
//! state, all in the cache; a scalar subquery's side is its one aggregate row.
//!
//! `x NOT IN (SELECT k ...)` is a null-aware anti join: a row is kept when no `k` equals `x`,
//! and no row is kept once a `k` is NULL, nor a row whose `x` is NULL while any `k` exists. It
//! becomes two plain anti joins: on `x = k`, then against the one-row count of the
//! subquery's rows and of its non-NULL keys.

use std::sync::Arc;

use datafusion::common::{Column as LogicalColumn, JoinType, NullEquality, ScalarValue};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::{col, lit, Expr, Join, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_engine::operators::{JoinKind, JoinSpec};
use openclaw_engine::plan::StreamNode;

use super::Lowering;
use crate::error::{SqlError, SqlResult};

/// The count of a NOT IN subquery's rows, and of its non-NULL keys.
const SUBQUERY_ROWS: &str = "__openclaw_not_in_rows";
const SUBQUERY_KEYS: &str = "__openclaw_not_in_keys";

impl Lowering<'_> {
    pub(super) fn join(&mut self, join: &Join, depth: usize) -> SqlResult<StreamNode> {
        if self.is_lookup(join)? {
            return self.lookup_join(join, depth);
        }
        if join.null_aware {
            return self.not_in(join, depth);
        }
        let kind = kind(join.join_type)?;
        let left_schema = join.left.schema();
        let right_schema = join.right.schema();
        let (left_keys, right_keys) = if join.on.is_empty() {
            (vec![constant_key()], vec![constant_key()])
        } else {
            let left_keys = join.on.iter().map(|(l, _)| self.expr(l, left_schema)).collect::<SqlResult<Vec<_>>>()?;
            let right_keys = join.on.iter().map(|(_, r)| self.expr(r, right_schema)).collect::<SqlResult<Vec<_>>>()?;
            (left_keys, right_keys)
        };
        let filter = match &join.filter {
            Some(f) => Some(self.expr(f, &left_schema.join(right_schema)?)?),
            None => None,
        };
        let left = self.lower(&join.left, depth + 1)?;
        let right = self.lower(&join.right, depth + 1)?;
        let spec = JoinSpec {
            kind,
            keys: [left_keys, right_keys],
            filter,
            schema: Arc::new(join.schema.as_arrow().clone()),
            input_schemas: [left.schema(), right.schema()],
            nulls_equal: join.null_equality == NullEquality::NullEqualsNull,
        };
        Ok(StreamNode::Join { spec, inputs: Box::new([left, right]) })
    }

    /// The null-aware anti join of `x NOT IN (SELECT k ...)`, as two plain anti joins (see the
    /// module's comment).
    fn not_in(&mut self, join: &Join, depth: usize) -> SqlResult<StreamNode> {
        let (probe, key) = match (join.on.as_slice(), &join.filter) {
            ([(probe, key)], None) => (probe.clone(), key.clone()),
            _ => {
                return Err(SqlError::not_supported("NOT IN with a correlated or multi-column subquery is not supported in materialized views")
                    .with_hint("write NOT EXISTS (SELECT ... WHERE ...), whose NULLs do not block every row"))
            }
        };
        let unmatched = LogicalPlan::Join(Join { null_aware: false, ..join.clone() });
        let counts = LogicalPlanBuilder::from(join.right.as_ref().clone())
            .aggregate(Vec::<Expr>::new(), vec![count(lit(1i64)).alias(SUBQUERY_ROWS), count(key).alias(SUBQUERY_KEYS)])?
            .filter(col(SUBQUERY_ROWS).gt(lit(0i64)))?
            .build()?;
        let blocks = col(SUBQUERY_ROWS).gt(col(SUBQUERY_KEYS)).or(probe.is_null());
        let none: (Vec<LogicalColumn>, Vec<LogicalColumn>) = (vec![], vec![]);
        let plan = LogicalPlanBuilder::from(unmatched)
            .join_detailed(counts, JoinType::LeftAnti, none, Some(blocks), NullEquality::NullEqualsNothing)?
            .build()?;
        self.lower(&plan, depth + 1)
    }
}

fn kind(join_type: JoinType) -> SqlResult<JoinKind> {
    Ok(match join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => JoinKind::Right,
        JoinType::Full => JoinKind::Full,
        JoinType::LeftSemi => JoinKind::Semi(0),
        JoinType::RightSemi => JoinKind::Semi(1),
        JoinType::LeftAnti => JoinKind::Anti(0),
        JoinType::RightAnti => JoinKind::Anti(1),
        JoinType::LeftMark => JoinKind::Mark(0),
        other => {
            return Err(SqlError::not_supported(format!("{other} joins are not supported in materialized views yet"))
                .with_hint("split the query with UNION"))
        }
    })
}

/// The key of a join without an equality: the same on every row of both sides.
fn constant_key() -> Arc<dyn PhysicalExpr> {
    datafusion::physical_expr::expressions::lit(ScalarValue::Boolean(Some(true)))
}
