//! PostgreSQL-compatible functions that override DataFusion's where the two differ.

mod session_info;
mod to_char;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ScalarUDF;

/// Registers every override; a UDF with a built-in's name replaces it.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(to_char::PgToChar::new()));
    let version = format!("PostgreSQL 15.0 (OpenClaw {}) on x86_64, compiled by rustc", env!("CARGO_PKG_VERSION"));
    for (name, value) in [("version", version.as_str()), ("current_database", "openclaw"), ("current_schema", "public")] {
        ctx.register_udf(ScalarUDF::from(session_info::ConstantText::new(name, value)));
    }
    // HyperLogLog distinct count under the name RisingWave and Flink use.
    let hll = datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf();
    ctx.register_udaf(hll.as_ref().clone().with_aliases(["approx_count_distinct"]));
}
