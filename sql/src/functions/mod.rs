//! PostgreSQL-compatible functions that override DataFusion's where the two differ.

mod approx_percentile;
mod count_min;
mod integer;
mod modulo;
pub mod numeric;
pub mod proctime;
mod session_info;
pub mod session_window;
pub mod sql_defined;
mod to_char;
mod to_char_number;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ScalarUDF;

/// DataFusion's session state over `config`, with the analyzer rules of PostgreSQL's
/// semantics: [`crate::set_operations::MultisetSetOperations`] and
/// [`numeric::NumericArithmetic`] before type coercion,
/// [`integer::CheckedIntegerArithmetic`] and [`crate::three_valued_in::ThreeValuedIn`] after it.
pub fn session_state(config: datafusion::execution::context::SessionConfig) -> datafusion::execution::SessionState {
    let mut rules = datafusion::optimizer::Analyzer::new().rules;
    let coercion = rules.iter().position(|r| r.name() == "type_coercion").unwrap_or(0);
    // Before type coercion, which then unifies the types of the union it builds.
    rules.insert(coercion, std::sync::Arc::new(crate::set_operations::MultisetSetOperations));
    rules.insert(coercion + 1, std::sync::Arc::new(numeric::NumericArithmetic::default()));
    // After type coercion: both operands of an integer operator have one type by then.
    rules.insert(coercion + 3, std::sync::Arc::new(integer::CheckedIntegerArithmetic::default()));
    // After type coercion, which has given an `IN`'s value and its subquery one type.
    rules.insert(coercion + 4, std::sync::Arc::new(crate::three_valued_in::ThreeValuedIn));
    datafusion::execution::SessionStateBuilder::new().with_config(config).with_default_features().with_analyzer_rules(rules).build()
}

/// Registers every override; a UDF with a built-in's name replaces it.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(to_char::PgToChar::new()));
    ctx.register_udf(ScalarUDF::from(modulo::Mod::new()));
    ctx.register_udf(ScalarUDF::from(proctime::Proctime::new()));
    let version = format!("PostgreSQL 15.0 (OpenClaw {}) on x86_64, compiled by rustc", env!("CARGO_PKG_VERSION"));
    for (name, value) in [("version", version.as_str()), ("current_database", "openclaw"), ("current_schema", "public")] {
        ctx.register_udf(ScalarUDF::from(session_info::ConstantText::new(name, value)));
    }
    for bound in [session_window::Bound::Start, session_window::Bound::End] {
        ctx.register_udwf(datafusion::logical_expr::WindowUDF::from(session_window::SessionBound::new(bound)));
    }
    // HyperLogLog distinct count under the name RisingWave and Flink use.
    let hll = datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf();
    ctx.register_udaf(hll.as_ref().clone().with_aliases(["approx_count_distinct"]));
    // RisingWave's retractable quantile sketch.
    ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(approx_percentile::ApproxPercentile::new()));
    // Frequencies in a Count-Min sketch, and their estimates.
    ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(count_min::CountMinSketch::new()));
    ctx.register_udf(ScalarUDF::from(count_min::CountMinEstimate::new()));
}

/// Rewrites every expression of `plan` bottom-up with `rewrite`, against the schema its
/// inputs give (`extra`, when a node reads more, such as a scan's filters over its source),
/// keeping each expression's output name: the shared walk of the arithmetic rules
/// ([`numeric::NumericArithmetic`], [`integer::CheckedIntegerArithmetic`]).
pub(crate) fn rewrite_expressions(
    plan: datafusion::logical_expr::LogicalPlan,
    extra: Option<&datafusion::common::DFSchema>,
    rewrite: impl Fn(datafusion::logical_expr::Expr, &datafusion::common::DFSchema) -> datafusion::common::Result<datafusion::common::tree_node::Transformed<datafusion::logical_expr::Expr>>,
) -> datafusion::common::Result<datafusion::common::tree_node::Transformed<datafusion::logical_expr::LogicalPlan>> {
    use datafusion::common::tree_node::TreeNode;
    let mut schema = datafusion::logical_expr::utils::merge_schema(&plan.inputs());
    if let Some(extra) = extra {
        schema.merge(extra);
    }
    let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&plan);
    plan.map_expressions(|expr| {
        let name = names.save(&expr);
        let rewritten = expr.transform_up(|e| rewrite(e, &schema))?;
        Ok(rewritten.update_data(|e| name.restore(e)))
    })
}
