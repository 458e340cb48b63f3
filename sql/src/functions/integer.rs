//! Integer `+`, `-` and `*` that fail on overflow, as PostgreSQL's do ("integer out of
//! range", 22003), where DataFusion's wrap around (`2147483647::int + 1` would be
//! -2147483648).
//!
//! [`CheckedIntegerArithmetic`], an analyzer rule run after type coercion (so both operands
//! have one integer type, and ad-hoc queries and views alike), turns those operators between
//! `smallint`, `integer` or `bigint` operands into [`CheckedOp`]s, which run Arrow's checked
//! kernels over whole arrays.

use std::sync::Arc;

use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{exec_err, DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::optimizer::AnalyzerRule;

use crate::{SqlError, SqlState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Subtract,
    Multiply,
}

/// `int_add`, `int_sub` or `int_mul` of two integers of one type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedOp {
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for CheckedOp {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "int_add",
            Op::Subtract => "int_sub",
            Op::Multiply => "int_mul",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else { return exec_err!("{} takes two integers", self.name()) };
        let (a, b) = (a.to_array(args.number_rows)?, b.to_array(args.number_rows)?);
        let result = match self.op {
            Op::Add => numeric::add(&a, &b),
            Op::Subtract => numeric::sub(&a, &b),
            Op::Multiply => numeric::mul(&a, &b),
        };
        let out_of_range = |_| {
            let name = match a.data_type() {
                DataType::Int16 => "smallint",
                DataType::Int32 => "integer",
                _ => "bigint",
            };
            SqlError::new(SqlState::NumericValueOutOfRange, format!("{name} out of range")).into_datafusion()
        };
        Ok(ColumnarValue::Array(result.map_err(out_of_range)?))
    }
}

/// The analyzer rule; see the module's documentation.
#[derive(Debug)]
pub struct CheckedIntegerArithmetic {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
}

impl Default for CheckedIntegerArithmetic {
    fn default() -> Self {
        let udf = |op| Arc::new(ScalarUDF::new_from_impl(CheckedOp { op, signature: Signature::any(2, Volatility::Immutable) }));
        Self { add: udf(Op::Add), sub: udf(Op::Subtract), mul: udf(Op::Multiply) }
    }
}

impl CheckedIntegerArithmetic {
    fn rewrite_node(&self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        super::rewrite_expressions(plan, None, |e, schema| self.rewrite_expr(e, schema))
    }

    fn rewrite_expr(&self, expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else { return Ok(Transformed::no(expr)) };
        let udf = match op {
            Operator::Plus => &self.add,
            Operator::Minus => &self.sub,
            Operator::Multiply => &self.mul,
            _ => return Ok(Transformed::no(expr)),
        };
        // Types not known here (a parameter, an outer column) stay as they are.
        let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else { return Ok(Transformed::no(expr)) };
        if l != r || !matches!(l, DataType::Int16 | DataType::Int32 | DataType::Int64) {
            return Ok(Transformed::no(expr));
        }
        let call = ScalarFunction::new_udf(udf.clone(), vec![(**left).clone(), (**right).clone()]);
        Ok(Transformed::yes(Expr::ScalarFunction(call)))
    }
}

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn name(&self) -> &str {
        "openclaw_checked_integer_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let plan = plan.transform_up_with_subqueries(|plan| self.rewrite_node(plan))?;
        Ok(plan.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int32Array, Int64Array};
    use datafusion::arrow::datatypes::Field;

    fn run(op: Op, a: ArrayRef, b: ArrayRef) -> Result<ArrayRef> {
        let udf = CheckedOp { op, signature: Signature::any(2, Volatility::Immutable) };
        let field = Arc::new(Field::new("x", a.data_type().clone(), true));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(a.clone()), ColumnarValue::Array(b)],
            arg_fields: vec![field.clone(), field.clone()],
            number_rows: a.len(),
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        };
        match udf.invoke_with_args(args)? {
            ColumnarValue::Array(a) => Ok(a),
            ColumnarValue::Scalar(_) => unreachable!(),
        }
    }

    use datafusion::arrow::array::ArrayRef;

    #[test]
    fn overflow_is_out_of_range_and_nulls_stay_null() {
        let sum = run(Op::Add, Arc::new(Int32Array::from(vec![Some(1), None, Some(-5)])), Arc::new(Int32Array::from(vec![Some(2), Some(3), Some(5)]))).unwrap();
        assert_eq!(sum.as_any().downcast_ref::<Int32Array>().unwrap(), &Int32Array::from(vec![Some(3), None, Some(0)]));
        let err = run(Op::Add, Arc::new(Int32Array::from(vec![i32::MAX])), Arc::new(Int32Array::from(vec![1]))).unwrap_err();
        assert!(err.to_string().contains("integer out of range"), "{err}");
        let err = run(Op::Multiply, Arc::new(Int64Array::from(vec![i64::MAX / 2 + 1])), Arc::new(Int64Array::from(vec![2]))).unwrap_err();
        assert!(err.to_string().contains("bigint out of range"), "{err}");
        let difference = run(Op::Subtract, Arc::new(Int64Array::from(vec![i64::MIN + 1])), Arc::new(Int64Array::from(vec![1]))).unwrap();
        assert_eq!(difference.len(), 1);
    }
}
