//! Lowers DataFusion's optimised logical plan, node by node, into the engine's streaming plan.
//! A node without a streaming operator is refused with 0A000, naming it: never a batch
//! fallback, never a wrong answer.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, FetchType, LogicalPlan, SkipType};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use openclaw_engine::operators::aggregate::AggCall;
use openclaw_engine::operators::{AggregateSpec, TemporalFilterSpec, TopNSpec};
use openclaw_engine::plan::StreamNode;

use crate::error::{SqlError, SqlResult, SqlState};

mod distinct_on;
mod grouping_sets;
mod join;
mod lookup_join;
mod over_window;
mod scalar_subquery;
mod unnest;

/// Deepest streaming plan accepted; the lowering recurses on it.
pub const MAX_PLAN_DEPTH: usize = 64;

/// Resolves a scanned relation (by its catalog name) to the node that produces its rows.
pub trait ScanResolver {
    fn resolve(&mut self, name: &str) -> SqlResult<StreamNode>;

    /// Whether relation `name` only ever gains rows (a table without a primary key, which
    /// takes no UPDATE or DELETE).
    fn append_only(&self, _name: &str) -> bool {
        false
    }

    /// Table `name`'s stored rows and primary key, for a temporal join to look up; the
    /// lowered plan then depends on it.
    fn lookup_table(&mut self, name: &str) -> SqlResult<(Arc<openclaw_engine::operators::MaterializedState>, Vec<usize>)> {
        Err(SqlError::not_supported(format!("temporal joins cannot look up {name} here")))
    }
}

pub fn lower(plan: &LogicalPlan, resolver: &mut dyn ScanResolver) -> SqlResult<StreamNode> {
    Lowering { resolver, props: ExecutionProps::new(), scalar_subqueries: 0 }.lower(plan, 0)
}

/// `e` with every timestamp plus or minus a constant `INTERVAL` of whole time units only (no
/// months, no days: HOP's and TUMBLE's window bounds) turned into
/// plus or minus a `duration` in the timestamp's unit. The result is the same; the duration is
/// one arrow kernel over the column, where an interval goes through a calendar computation
/// per row (it took a sixth of Nexmark q5's time).
fn interval_as_duration(e: Expr, schema: &DFSchema) -> SqlResult<Expr> {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{BinaryExpr, ExprSchemable, Operator};
    let rewritten = e.transform_up(|e| {
        let Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right }) = &e else {
            return Ok(Transformed::no(e));
        };
        let Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) = right.as_ref() else {
            return Ok(Transformed::no(e));
        };
        let DataType::Timestamp(unit, _) = left.get_type(schema)? else {
            return Ok(Transformed::no(e));
        };
        let nanos_per_unit: i64 = match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        };
        if v.months != 0 || v.days != 0 || v.nanoseconds % nanos_per_unit != 0 {
            return Ok(Transformed::no(e));
        }
        let n = Some(v.nanoseconds / nanos_per_unit);
        let duration = match unit {
            TimeUnit::Second => ScalarValue::DurationSecond(n),
            TimeUnit::Millisecond => ScalarValue::DurationMillisecond(n),
            TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(n),
            TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(n),
        };
        Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(left.clone(), *op, Box::new(Expr::Literal(duration, None))))))
    })?;
    Ok(rewritten.data)
}

struct Lowering<'a> {
    resolver: &'a mut dyn ScanResolver,
    props: ExecutionProps,
    /// How many scalar subqueries became joins, which names the next one's alias.
    scalar_subqueries: usize,
}

impl Lowering<'_> {
    fn expr(&self, e: &Expr, schema: &DFSchema) -> SqlResult<Arc<dyn PhysicalExpr>> {
        if crate::temporal::mentions_now(e) {
            return Err(SqlError::not_supported("a materialized view can read now() only in a WHERE bound")
                .with_detail(format!("now() is read in {e}, which would be frozen at CREATE"))
                .with_hint("compare a column with now() in WHERE, as in WHERE ts > now() - INTERVAL '1 hour'"));
        }
        Ok(create_physical_expr(e, schema, &self.props, &PhysicalPlanningContext::default())?)
    }

    /// An expression of a projection, with [`interval_as_duration`] applied. Only there:
    /// filters and join conditions keep their intervals, which the join's time-bound analysis
    /// and `EXPLAIN` show as written.
    fn projected_expr(&self, e: &Expr, schema: &DFSchema) -> SqlResult<Arc<dyn PhysicalExpr>> {
        self.expr(&interval_as_duration(e.clone(), schema)?, schema)
    }

    /// `input` filtered by `predicate`: one ordinary filter of the conjuncts that do not read
    /// `now()`, then a temporal filter per conjunct that does (which keeps only the rows that
    /// passed the others in its state).
    fn filter(&self, predicate: &Expr, schema: &DFSchema, input: StreamNode) -> SqlResult<StreamNode> {
        let (mut temporal, mut rest) = (vec![], vec![]);
        for conjunct in datafusion::logical_expr::utils::split_conjunction(predicate) {
            match crate::temporal::expiry(conjunct) {
                Some(found) => temporal.push(found?),
                None => rest.push(conjunct.clone()),
            }
        }
        let mut node = match conjunction(rest) {
            Some(predicate) => StreamNode::Filter { predicate: self.expr(&predicate, schema)?, input: Box::new(input) },
            None => input,
        };
        for (expiry, inclusive) in temporal {
            let spec = TemporalFilterSpec { expiry: self.expr(&expiry, schema)?, inclusive };
            node = StreamNode::TemporalFilter { spec, input: Box::new(node) };
        }
        Ok(node)
    }

    fn lower(&mut self, plan: &LogicalPlan, depth: usize) -> SqlResult<StreamNode> {
        if depth > MAX_PLAN_DEPTH {
            return Err(SqlError::new(SqlState::StatementTooComplex, "materialized view plan is too deep")
                .with_hint(format!("a view may nest at most {MAX_PLAN_DEPTH} operators")));
        }
        match plan {
            LogicalPlan::Projection(p) if p.expr.iter().any(scalar_subquery::holds_one) => {
                let plan = scalar_subquery::in_projection(p, &mut self.scalar_subqueries)?;
                self.lower(&plan, depth + 1)
            }
            LogicalPlan::Filter(f) if scalar_subquery::holds_one(&f.predicate) => {
                let plan = scalar_subquery::in_filter(f, &mut self.scalar_subqueries)?;
                self.lower(&plan, depth + 1)
            }
            LogicalPlan::Projection(p) => {
                let input = self.lower(&p.input, depth + 1)?;
                if p.expr.iter().any(crate::functions::proctime::mentions) && !(input.append_only() || self.reads_append_only(&p.input)) {
                    return Err(SqlError::not_supported("PROCTIME() over an input that updates or deletes rows")
                        .with_detail("a retraction would get a different processing time than the row it retracts")
                        .with_hint("compute PROCTIME() over a source or a table without a primary key, before any join or aggregate"));
                }
                let exprs = p.expr.iter().map(|e| self.projected_expr(e, p.input.schema())).collect::<SqlResult<_>>()?;
                let schema = Arc::new(p.schema.as_arrow().clone());
                Ok(project(exprs, schema, input))
            }
            LogicalPlan::Filter(f) if over_window::is_top_n(f) => self.top_n(f, depth),
            LogicalPlan::Window(w) => self.over_window(w, depth),
            LogicalPlan::Unnest(u) => self.unnest(u, depth),
            LogicalPlan::Filter(f) => {
                if crate::functions::proctime::mentions(&f.predicate) {
                    return Err(SqlError::not_supported("PROCTIME() in a view's WHERE")
                        .with_hint("compare with now() for a temporal filter, which retracts rows as the clock passes them"));
                }
                let input = self.lower(&f.input, depth + 1)?;
                self.filter(&f.predicate, f.input.schema(), input)
            }
            LogicalPlan::SubqueryAlias(a) => self.lower(&a.input, depth + 1),
            LogicalPlan::Aggregate(agg) => self.aggregate(agg, depth),
            LogicalPlan::Join(join) => self.join(join, depth),
            LogicalPlan::Union(u) => {
                let inputs = u.inputs.iter().map(|i| self.lower(i, depth + 1)).collect::<SqlResult<_>>()?;
                Ok(StreamNode::Union { inputs, schema: Arc::new(u.schema.as_arrow().clone()) })
            }
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Err(limit_without_order());
                }
                // A temporal join's looked-up table is read as the table itself.
                let name = crate::lookup_join::looked_up(plan).unwrap_or_else(|| crate::schemas::reference_name(&scan.table_name));
                let mut node = self.resolver.resolve(&name)?;
                let source_schema = DFSchema::try_from_qualified_schema(scan.table_name.clone(), &node.schema())?;
                if let Some(predicate) = conjunction(scan.filters.iter().cloned()) {
                    node = self.filter(&predicate, &source_schema, node)?;
                }
                if let Some(indices) = &scan.projection {
                    let base = node.schema();
                    let exprs: Vec<Arc<dyn PhysicalExpr>> = indices
                        .iter()
                        .map(|&i| Arc::new(Column::new(base.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
                        .collect();
                    let schema = Arc::new(base.project(indices)?);
                    node = project(exprs, schema, node);
                }
                Ok(node)
            }
            // Without LIMIT, a view's ORDER BY does not bind the order it is stored in (as in
            // RisingWave): a query reading it orders what it reads.
            LogicalPlan::Sort(sort) if sort.fetch.is_none() => self.lower(&sort.input, depth + 1),
            LogicalPlan::Sort(sort) => self.order_limit(sort, 0, sort.fetch, depth),
            LogicalPlan::Limit(limit) => {
                let (SkipType::Literal(skip), FetchType::Literal(fetch)) = (limit.get_skip_type()?, limit.get_fetch_type()?) else {
                    return Err(SqlError::not_supported("LIMIT and OFFSET in a materialized view must be constants")
                        .with_hint("write the number itself, as in LIMIT 10"));
                };
                match limit.input.as_ref() {
                    LogicalPlan::Sort(sort) => self.order_limit(sort, skip, fetch, depth),
                    _ => Err(limit_without_order()),
                }
            }
            other => Err(unsupported(node_name(other))),
        }
    }
}

/// The name of the row number a view's `ORDER BY ... LIMIT` ranks its rows with, dropped from
/// its output.
const ROW_NUMBER: &str = "__openclaw_row_number";

impl Lowering<'_> {
    /// An `ORDER BY` list as a top-N's keys.
    fn sort_keys(&self, order: &[datafusion::logical_expr::SortExpr], schema: &DFSchema) -> SqlResult<Vec<(Arc<dyn PhysicalExpr>, datafusion::arrow::compute::SortOptions)>> {
        order
            .iter()
            .map(|s| {
                let options = datafusion::arrow::compute::SortOptions { descending: !s.asc, nulls_first: s.nulls_first };
                Ok((self.expr(&s.expr, schema)?, options))
            })
            .collect()
    }

    /// `ORDER BY ... LIMIT fetch OFFSET skip`: a top-N without partition (one partition at any
    /// parallelism) of the first `skip + fetch` rows, of which those ranked after `skip` are
    /// kept. Its state is those rows; an update or delete among them brings the next one in.
    fn order_limit(&mut self, sort: &datafusion::logical_expr::Sort, skip: usize, fetch: Option<usize>, depth: usize) -> SqlResult<StreamNode> {
        let Some(fetch) = fetch.map(|f| sort.fetch.map_or(f, |s| f.min(s.saturating_sub(skip)))) else {
            return Err(SqlError::not_supported("OFFSET without LIMIT is not supported in materialized views")
                .with_hint("add LIMIT: the view keeps that many rows after the offset"));
        };
        let limit = skip.saturating_add(fetch);
        if limit > openclaw_engine::operators::top_n::MAX_TOP_N {
            return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("LIMIT {fetch} OFFSET {skip} keeps too many rows"))
                .with_hint(format!("a materialized view with ORDER BY ... LIMIT may keep at most {} rows (offset included)", openclaw_engine::operators::top_n::MAX_TOP_N)));
        }
        let input_schema = sort.input.schema();
        let order_by = self.sort_keys(&sort.expr, input_schema)?;
        let input = self.lower(&sort.input, depth + 1)?;
        let rows = input.schema();
        let width = rows.fields().len();
        let mut node = ranked(vec![], order_by, limit.max(1), input);
        if skip > 0 || fetch == 0 {
            use datafusion::physical_plan::expressions::{BinaryExpr, Literal};
            let rank = |op, n: usize| Arc::new(BinaryExpr::new(Arc::new(Column::new(ROW_NUMBER, width)), op, Arc::new(Literal::new(datafusion::common::ScalarValue::UInt64(Some(n as u64)))))) as Arc<dyn PhysicalExpr>;
            let predicate = Arc::new(BinaryExpr::new(rank(datafusion::logical_expr::Operator::Gt, skip), datafusion::logical_expr::Operator::And, rank(datafusion::logical_expr::Operator::LtEq, limit)));
            node = StreamNode::Filter { predicate, input: Box::new(node) };
        }
        let exprs = (0..width).map(|i| Arc::new(Column::new(rows.field(i).name(), i)) as Arc<dyn PhysicalExpr>).collect();
        Ok(project(exprs, rows, node))
    }
}

impl Lowering<'_> {
    fn aggregate(&mut self, agg: &datafusion::logical_expr::Aggregate, depth: usize) -> SqlResult<StreamNode> {
        if let [Expr::GroupingSet(sets)] = agg.group_expr.as_slice() {
            return self.grouping_sets(agg, sets, depth);
        }
        if let Some((args, order)) = distinct_on::first_values(agg) {
            return self.distinct_on(agg, &args, &order, depth);
        }
        let input_schema = agg.input.schema();
        let group_exprs: Vec<Arc<dyn PhysicalExpr>> = agg.group_expr.iter().map(|e| self.expr(e, input_schema)).collect::<SqlResult<_>>()?;
        let calls = self.calls(agg)?;
        let mut input = self.lower(&agg.input, depth + 1)?;
        let mut group_exprs = group_exprs;
        let schema = Arc::new(agg.schema.as_arrow().clone());
        // A group column with a watermark frees its groups' state as the watermark passes.
        let carried = input.watermark_columns();
        let clean_by = group_exprs.iter().position(|e| e.downcast_ref::<Column>().is_some_and(|c| carried.contains(&c.index())));
        if clean_by.is_none() {
            let keys: Option<Vec<usize>> = group_exprs.iter().map(|e| e.downcast_ref::<Column>().map(|c| c.index())).collect();
            if let Some(hidden) = keys.and_then(|keys| dependent_watermark(&agg.input, &mut input, &keys)) {
                // Grouped by it too, in a hidden key column that a projection drops again.
                let n = group_exprs.len();
                let field = input.schema().field(hidden).clone();
                group_exprs.push(Arc::new(Column::new(field.name(), hidden)));
                let mut fields = schema.fields().to_vec();
                fields.insert(n, Arc::new(field));
                let spec = AggregateSpec { group_exprs, calls, schema: Arc::new(Schema::new(fields)), emit_on_close: None, clean_by: Some(n) };
                let node = StreamNode::Aggregate { spec, input: Box::new(input) };
                return Ok(drop_column(node, n, schema));
            }
        }
        let spec = AggregateSpec { group_exprs, calls, schema, emit_on_close: None, clean_by };
        Ok(StreamNode::Aggregate { spec, input: Box::new(input) })
    }

    /// The lowered calls of `agg`.
    fn calls(&self, agg: &datafusion::logical_expr::Aggregate) -> SqlResult<Vec<AggCall>> {
        let input_schema = agg.input.schema();
        let physical_input = input_schema.as_arrow();
        let calls = agg
            .aggr_expr
            .iter()
            .map(|e| {
                let planning = PhysicalPlanningContext::default();
                let lowered = LoweredAggregateBuilder::new(e, input_schema, physical_input, &self.props, &planning).build()?;
                let (expr, filter) = (lowered.aggregate, lowered.filter);
                // An ordered-set aggregate's WITHIN GROUP ordering is its accumulator's own
                // (the operator recomputes it, or counts `approx_percentile`'s buckets).
                if !lowered.order_bys.is_empty() && !expr.fun().inner().supports_within_group_clause() {
                    return Err(SqlError::not_supported(format!(
                        "aggregate {}(... ORDER BY ...) is not supported in materialized views yet",
                        expr.fun().name()
                    ))
                    .with_hint("drop the ORDER BY inside the aggregate (its order is then unspecified), or keep the rows in the view and aggregate them ad hoc"));
                }
                Ok(AggCall { expr, filter })
            })
            .collect::<SqlResult<Vec<_>>>()?;
        if calls.len() > usize::from(u8::MAX) {
            return Err(SqlError::new(SqlState::StatementTooComplex, "too many aggregate calls in one GROUP BY")
                .with_hint("a materialized view may compute at most 255 aggregates per GROUP BY"));
        }
        Ok(calls)
    }
}

impl Lowering<'_> {
    /// `Filter(rn <= N [AND …]) ← Window(row_number() OVER (…))` becomes a top-N; any other
    /// conjunct of the filter stays as a filter above it.
    fn top_n(&mut self, f: &datafusion::logical_expr::Filter, depth: usize) -> SqlResult<StreamNode> {
        use datafusion::logical_expr::expr::WindowFunction;
        use datafusion::logical_expr::utils::split_conjunction;
        let (projection, window) = window_below(&f.input).expect("checked by the caller");
        let [Expr::WindowFunction(wf)] = window.window_expr.as_slice() else {
            return Err(unsupported("Window"));
        };
        let WindowFunction { fun, params } = wf.as_ref();
        if fun.name() != "row_number" {
            return Err(SqlError::not_supported(format!("window function {}() is not supported in materialized views yet", fun.name()))
                .with_hint("use ROW_NUMBER() OVER (PARTITION BY … ORDER BY …) filtered by rn <= N"));
        }
        let rn_name = window.schema.field(window.schema.fields().len() - 1).name().clone();
        let mut limit: Option<usize> = None;
        let mut rest = vec![];
        for conjunct in split_conjunction(&f.predicate) {
            match row_number_bound(conjunct, &rn_name) {
                Some(n) => limit = Some(limit.map_or(n, |l: usize| l.min(n))),
                None => rest.push(conjunct.clone()),
            }
        }
        let Some(limit) = limit else {
            return Err(SqlError::not_supported("ROW_NUMBER() without a bound is not supported in materialized views")
                .with_hint("filter the row number with rn <= N, rn < N or rn = 1"));
        };
        if limit > openclaw_engine::operators::top_n::MAX_TOP_N {
            return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("top-N bound {limit} is too large"))
                .with_hint(format!("a materialized view may keep at most the top {} rows per partition", openclaw_engine::operators::top_n::MAX_TOP_N)));
        }
        let input_schema = window.input.schema();
        let partition_by: Vec<Arc<dyn PhysicalExpr>> = params.partition_by.iter().map(|e| self.expr(e, input_schema)).collect::<SqlResult<_>>()?;
        let order_by = self.sort_keys(&params.order_by, input_schema)?;
        let mut input = self.lower(&window.input, depth + 1)?;
        let mut partition_by = partition_by;
        let mut schema = Arc::new(window.schema.as_arrow().clone());
        // Partitions led by a watermarked column (a window's) are freed once it passes them.
        // Only the first: reordering the key would change the encoding of existing state.
        let mut clean_by = partition_by
            .first()
            .and_then(|e| e.downcast_ref::<Column>().map(|c| c.index()))
            .filter(|c| input.watermark_columns().contains(c));
        let mut widened = None;
        let keys: Option<Vec<usize>> = partition_by.iter().map(|e| e.downcast_ref::<Column>().map(|c| c.index())).collect();
        let width = input.schema().fields().len();
        if let (None, Some(keys)) = (clean_by, keys.filter(|k| !k.is_empty())) {
            if let Some(hidden) = dependent_watermark(&window.input, &mut input, &keys) {
                // Partitioned by it first (the keys determine it, so the partitions are the
                // same), so that a range delete frees the partitions it has passed.
                let field = input.schema().field(hidden).clone();
                partition_by.insert(0, Arc::new(Column::new(field.name(), hidden)));
                clean_by = Some(hidden);
                if hidden == width {
                    // Brought back by widening the input: the rows carry it until after the top-N.
                    let mut fields = input.schema().fields().to_vec();
                    fields.push(schema.field(schema.fields().len() - 1).clone().into());
                    widened = Some((hidden, schema));
                    schema = Arc::new(Schema::new(fields));
                }
            }
        }
        let spec = TopNSpec { partition_by, order_by, limit, schema, input_schema: input.schema(), clean_by };
        let mut node = StreamNode::TopN { spec, input: Box::new(input) };
        if let Some((hidden, schema)) = widened {
            node = drop_column(node, hidden, schema);
        }
        if let Some(p) = projection {
            let exprs = p.expr.iter().map(|e| self.expr(e, &window.schema)).collect::<SqlResult<_>>()?;
            node = project(exprs, Arc::new(p.schema.as_arrow().clone()), node);
        }
        if let Some(predicate) = conjunction(rest) {
            node = StreamNode::Filter { predicate: self.expr(&predicate, f.input.schema())?, input: Box::new(node) };
        }
        Ok(node)
    }
}

/// A column of `input` (lowered from `plan`) that carries a watermark and that the plain
/// columns `keys` determine through a primary key, so that grouping or partitioning by it as
/// well changes nothing and lets the state its watermark has passed be freed. Nexmark q4's
/// `GROUP BY A.id`: `A.id` determines `A.expires`, which the join's time bounds give a
/// watermark. When a projection at the top of `input` dropped the column, it is widened to
/// carry it as its last column.
fn dependent_watermark(plan: &LogicalPlan, input: &mut StreamNode, keys: &[usize]) -> Option<usize> {
    fn determined(schema: &DFSchema, keys: &[usize], carried: &[usize]) -> Option<usize> {
        schema
            .functional_dependencies()
            .iter()
            .filter(|d| !d.nullable && !d.source_indices.is_empty() && d.source_indices.iter().all(|s| keys.contains(s)))
            .flat_map(|d| d.target_indices.iter().copied())
            .find(|t| carried.contains(t) && !keys.contains(t))
    }
    if let Some(found) = determined(plan.schema(), keys, &input.watermark_columns()) {
        return Some(found);
    }
    let (LogicalPlan::Projection(p), StreamNode::Project { exprs, schema, input: below }) = (plan, input) else { return None };
    let below_keys: Vec<usize> = keys
        .iter()
        .map(|&k| match p.expr.get(k)?.clone().unalias() {
            Expr::Column(c) => p.input.schema().index_of_column(&c).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let found = determined(p.input.schema(), &below_keys, &below.watermark_columns())?;
    let field = below.schema().field(found).clone();
    exprs.push(Arc::new(Column::new(field.name(), found)));
    let mut fields = schema.fields().to_vec();
    fields.push(Arc::new(field));
    *schema = Arc::new(Schema::new(fields));
    Some(exprs.len() - 1)
}

/// `node` without its column `hidden`, as `schema` says.
fn drop_column(node: StreamNode, hidden: usize, schema: datafusion::arrow::datatypes::SchemaRef) -> StreamNode {
    let exprs = (0..node.schema().fields().len())
        .filter(|&i| i != hidden)
        .map(|i| Arc::new(Column::new(node.schema().field(i).name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    StreamNode::Project { exprs, schema, input: Box::new(node) }
}

/// The window under a filter, directly or through a projection of plain columns.
fn window_below(plan: &LogicalPlan) -> Option<(Option<&datafusion::logical_expr::Projection>, &datafusion::logical_expr::Window)> {
    match plan {
        LogicalPlan::Window(w) => Some((None, w)),
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Window(w) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => Some((Some(p), w)),
            _ => None,
        },
        _ => None,
    }
}

/// N when `e` is `rn <= N`, `rn < N + 1` or `rn = 1` over the row-number column `rn`.
fn row_number_bound(e: &Expr, rn: &str) -> Option<usize> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
    let is_rn = |e: &Expr| matches!(e, Expr::Column(c) if c.name == rn);
    let lit = |e: &Expr| match e {
        Expr::Literal(v, _) => v.cast_to(&datafusion::arrow::datatypes::DataType::Int64).ok().and_then(|v| match v {
            datafusion::common::ScalarValue::Int64(Some(n)) => Some(n),
            _ => None,
        }),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(datafusion::common::ScalarValue::Int64(Some(n)), _) => Some(*n),
            _ => None,
        },
        _ => None,
    };
    let (n, op) = match (is_rn(left), is_rn(right)) {
        (true, false) => (lit(right)?, *op),
        (false, true) => (lit(left)?, op.swap()?),
        _ => return None,
    };
    let bound = match op {
        Operator::LtEq => n,
        Operator::Lt => n - 1,
        Operator::Eq if n == 1 => 1,
        _ => return None,
    };
    usize::try_from(bound).ok().filter(|&b| b >= 1)
}

/// A projection node, or its input alone when the projection only passes every column
/// through in order (column names do not matter inside the plan; the view's are set at its top).
/// The first `limit` rows of `input` per partition in `order_by`, each followed by its rank in
/// the hidden column [`ROW_NUMBER`] (which the top-N's state needs and a projection drops).
fn ranked(
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<(Arc<dyn PhysicalExpr>, datafusion::arrow::compute::SortOptions)>,
    limit: usize,
    input: StreamNode,
) -> StreamNode {
    let rows = input.schema();
    let mut fields = rows.fields().to_vec();
    fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(ROW_NUMBER, datafusion::arrow::datatypes::DataType::UInt64, false)));
    let spec = TopNSpec { partition_by, order_by, limit, schema: Arc::new(Schema::new(fields)), input_schema: rows, clean_by: None };
    StreamNode::TopN { spec, input: Box::new(input) }
}

fn project(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: datafusion::arrow::datatypes::SchemaRef, input: StreamNode) -> StreamNode {
    let width = input.schema().fields().len();
    let identity = exprs.len() == width
        && exprs.iter().enumerate().all(|(i, e)| e.downcast_ref::<Column>().is_some_and(|c| c.index() == i))
        && input.schema().fields().iter().zip(schema.fields()).all(|(a, b)| a.data_type() == b.data_type());
    if identity {
        return input;
    }
    StreamNode::Project { exprs, schema, input: Box::new(input) }
}

fn node_name(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Aggregate(_) => "Aggregate",
        LogicalPlan::Join(_) => "Join",
        LogicalPlan::Window(_) => "Window",
        LogicalPlan::Sort(_) => "Sort",
        LogicalPlan::Limit(_) => "Limit",
        LogicalPlan::Distinct(_) => "Distinct",
        LogicalPlan::Values(_) => "Values",
        LogicalPlan::EmptyRelation(_) => "EmptyRelation",
        LogicalPlan::Subquery(_) => "Subquery",
        LogicalPlan::Unnest(_) => "Unnest",
        LogicalPlan::RecursiveQuery(_) => "RecursiveQuery",
        LogicalPlan::Repartition(_) => "Repartition",
        _ => "this plan node",
    }
}

fn limit_without_order() -> SqlError {
    SqlError::not_supported("LIMIT without ORDER BY is not supported in materialized views")
        .with_detail("which rows it keeps would change with every update of its input")
        .with_hint("add ORDER BY: the view keeps the first rows in that order")
}

fn unsupported(node: &str) -> SqlError {
    SqlError::not_supported(format!("streaming operator \"{node}\" is not supported yet in materialized views"))
        .with_hint("run the query as an ad-hoc SELECT instead")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano, TimeUnit};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{col, lit};

    fn interval(months: i32, days: i32, nanoseconds: i64) -> Expr {
        lit(ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanoseconds))))
    }

    #[test]
    fn whole_time_intervals_on_timestamps_become_durations_in_their_unit() {
        let schema = Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true), Field::new("n", DataType::Int64, true)]);
        let schema = DFSchema::try_from(schema).unwrap();
        let rewrite = |e: Expr| interval_as_duration(e, &schema).unwrap();
        assert_eq!(rewrite(col("ts") - interval(0, 0, 8_000_000_000)), col("ts") - lit(ScalarValue::DurationMillisecond(Some(8_000))));
        assert_eq!(rewrite(col("ts") + interval(0, 0, 2_000_000_000)), col("ts") + lit(ScalarValue::DurationMillisecond(Some(2_000))));
        // Calendar intervals, and what the unit cannot hold exactly, stay as written.
        for kept in [col("ts") - interval(1, 0, 0), col("ts") - interval(0, 1, 0), col("ts") - interval(0, 0, 1_500)] {
            assert_eq!(rewrite(kept.clone()), kept);
        }
    }
}
