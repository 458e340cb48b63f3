//! `SELECT DISTINCT ON (k) ... ORDER BY k, o`: DataFusion plans it as a `GROUP BY k` whose
//! every column is `first_value(c ORDER BY k, o)`, one ordering for all. A view keeps it as a
//! top-1 per key (the top-N operator, `PARTITION BY k ORDER BY k, o`, limit 1), so the row a
//! key shows is replaced when a better one arrives or it is deleted, as a `first_value`
//! accumulator that only grows could not. Ties in `o` are broken by the whole row, where
//! PostgreSQL picks any of them.

use std::sync::Arc;

use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, SortExpr};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_engine::plan::StreamNode;

use super::{project, ranked, Lowering};
use crate::error::SqlResult;

/// The columns and the one ordering of an aggregate made only of `first_value(column ORDER BY
/// ...)` calls with the same ordering, without `FILTER` or `DISTINCT`; `None` otherwise.
pub(super) fn first_values(agg: &Aggregate) -> Option<(Vec<Expr>, Vec<SortExpr>)> {
    let mut args = Vec::with_capacity(agg.aggr_expr.len());
    let mut order: Option<&Vec<SortExpr>> = None;
    for e in &agg.aggr_expr {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else { return None };
        let plain = func.name() == "first_value" && params.args.len() == 1 && !params.distinct && params.filter.is_none() && params.null_treatment.is_none();
        if !plain || params.order_by.is_empty() || order.is_some_and(|o| *o != params.order_by) {
            return None;
        }
        order = Some(&params.order_by);
        args.push(params.args[0].clone());
    }
    Some((args, order?.clone()))
}

impl Lowering<'_> {
    /// The top-1 per group of `agg`, whose calls are `first_value(args[i] ORDER BY order)`.
    pub(super) fn distinct_on(&mut self, agg: &Aggregate, args: &[Expr], order: &[SortExpr], depth: usize) -> SqlResult<StreamNode> {
        let input_schema = agg.input.schema();
        let partition_by = agg.group_expr.iter().map(|e| self.expr(e, input_schema)).collect::<SqlResult<Vec<_>>>()?;
        let order_by = self.sort_keys(order, input_schema)?;
        // The top-N passes its input's columns through first, so these read its output.
        let outputs = agg.group_expr.iter().chain(args).map(|e| self.expr(e, input_schema)).collect::<SqlResult<Vec<Arc<dyn PhysicalExpr>>>>()?;
        let input = self.lower(&agg.input, depth + 1)?;
        let node = ranked(partition_by, order_by, 1, input);
        Ok(project(outputs, Arc::new(agg.schema.as_arrow().clone()), node))
    }
}
