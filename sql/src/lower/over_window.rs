//! Window functions (`... OVER (PARTITION BY p ORDER BY o [frame])`) in materialized views.
//! `ROW_NUMBER()` filtered by an upper bound (`rn <= N`) is a top-N (see
//! [`Lowering::top_n`](super::Lowering)); every other window, `rank()`, `dense_rank()`,
//! `lag`/`lead`, `first_value`, running and framed aggregates, and `ROW_NUMBER()` filtered any
//! other way, is the over-window operator, which recomputes the partitions a change touches
//! with DataFusion's own window evaluators. Filters above it stay filters of its changes.

use std::sync::Arc;

use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Filter, Window};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::expressions::Column;
use openclaw_engine::operators::{OverWindowSpec, SessionSpec};
use openclaw_engine::plan::StreamNode;
use openclaw_engine::state::sorted::SortSpec;

use super::{row_number_bound, window_below, Lowering};
use crate::error::{SqlError, SqlResult};

/// Whether `f` is a top-N: a filter bounding from above the one `ROW_NUMBER()` of the window
/// right under it.
pub(super) fn is_top_n(f: &Filter) -> bool {
    let Some((_, window)) = window_below(&f.input) else { return false };
    let [Expr::WindowFunction(wf)] = window.window_expr.as_slice() else { return false };
    if wf.fun.name() != "row_number" {
        return false;
    }
    let rn = window.schema.field(window.schema.fields().len() - 1).name().clone();
    datafusion::logical_expr::utils::split_conjunction(&f.predicate).iter().any(|c| row_number_bound(c, &rn).is_some())
}

impl Lowering<'_> {
    /// A `Window` node: its functions, all over one `PARTITION BY` and `ORDER BY`, as one
    /// over-window operator.
    pub(super) fn over_window(&mut self, window: &Window, depth: usize) -> SqlResult<StreamNode> {
        let functions = functions_of(window)?;
        let first = &functions[0].params;
        if functions.iter().any(|f| f.params.partition_by != first.partition_by || f.params.order_by != first.order_by) {
            return Err(SqlError::not_supported("window functions over different PARTITION BY or ORDER BY in one SELECT are not supported in materialized views")
                .with_hint("compute each window in its own subquery and join them, or give them one OVER clause"));
        }
        let input_schema = window.input.schema();
        let partition_by: Vec<Arc<dyn PhysicalExpr>> = first.partition_by.iter().map(|e| self.expr(e, input_schema)).collect::<SqlResult<_>>()?;
        let order_by = self.sort_keys(&first.order_by, input_schema)?;
        let input = self.lower(&window.input, depth + 1)?;
        // Partitions led by a watermarked column (a window's) are freed once it passes them.
        let clean_by = partition_by
            .first()
            .and_then(|e| e.downcast_ref::<Column>().map(|c| c.index()))
            .filter(|c| input.watermark_columns().contains(c));
        let functions = window
            .window_expr
            .iter()
            .map(|e| Ok(datafusion::physical_planner::create_window_expr(e, input_schema, &self.props, &PhysicalPlanningContext::default())?))
            .collect::<SqlResult<_>>()?;
        let session = session(&functions_of(window)?, input_schema)?;
        // A session window frees its state by its own rule, not by partition.
        let clean_by = clean_by.filter(|_| session.is_none());
        let sort = SortSpec { partition_by, order_by, input_schema: input.schema(), clean_by };
        let spec = OverWindowSpec { sort, functions, schema: Arc::new(window.schema.as_arrow().clone()), session };
        Ok(StreamNode::OverWindow { spec, input: Box::new(input) })
    }
}

fn functions_of(window: &Window) -> SqlResult<Vec<&WindowFunction>> {
    window
        .window_expr
        .iter()
        .map(|e| match e {
            Expr::WindowFunction(wf) => Ok(wf.as_ref()),
            Expr::Alias(a) => match a.expr.as_ref() {
                Expr::WindowFunction(wf) => Ok(wf.as_ref()),
                _ => Err(super::unsupported("Window")),
            },
            _ => Err(super::unsupported("Window")),
        })
        .collect()
}

/// The session window that `functions` compute, when they are the bounds `SESSION(...)` is
/// rewritten into (`functions/session_window.rs`): each over the input's time column and one
/// literal gap, ordered by it.
fn session(functions: &[&WindowFunction], input_schema: &datafusion::common::DFSchema) -> SqlResult<Option<SessionSpec>> {
    let input_width = input_schema.fields().len();
    use crate::functions::session_window::{gap_micros, END, START};
    let is_bound = |f: &WindowFunction| matches!(f.fun.name(), START | END);
    if !functions.iter().any(|f| is_bound(f)) {
        return Ok(None);
    }
    let mixed = || SqlError::not_supported("a SESSION window's bounds beside other window functions over the same PARTITION BY")
        .with_hint("compute the other window functions in a query over the SESSION(...) subquery");
    let mut spec: Option<SessionSpec> = None;
    for (i, f) in functions.iter().enumerate() {
        if !is_bound(f) {
            return Err(mixed());
        }
        let [Expr::Column(ts), Expr::Literal(gap, _)] = f.params.args.as_slice() else { return Err(mixed()) };
        let gap_us = gap.to_array().and_then(|a| gap_micros(a.as_ref())).map_err(SqlError::from)?;
        let end_column = (f.fun.name() == END).then_some(input_width + i);
        if !matches!(f.params.order_by.first().map(|s| &s.expr), Some(Expr::Column(c)) if c == ts) {
            return Err(mixed());
        }
        let ts_column = input_schema.index_of_column(ts)?;
        let next = SessionSpec { ts_column, gap_us, end_column };
        spec = Some(match spec {
            None => next,
            Some(s) if s.gap_us == gap_us && s.ts_column == ts_column => SessionSpec { end_column: s.end_column.or(end_column), ..s },
            Some(_) => return Err(mixed()),
        });
    }
    Ok(spec)
}
