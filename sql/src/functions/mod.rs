//! PostgreSQL-compatible functions that override DataFusion's where the two differ.

mod to_char;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ScalarUDF;

/// Registers every override; a UDF with a built-in's name replaces it.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(to_char::PgToChar::new()));
}
