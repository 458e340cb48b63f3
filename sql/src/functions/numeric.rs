//! `numeric` multiplication and division that do not overflow where PostgreSQL's do not.
//!
//! Arrow gives a product the scale `s1 + s2` and a quotient the scale `s1 + 4`, computing the
//! quotient as `a * 10^(4 + s2) / b` in 128 bits. An unconstrained `numeric` is
//! `Decimal128(38, 10)` here, so a TPC-H revenue ratio (`100.00 * sum(a * (1 - b)) / sum(a *
//! (1 - b))`) reached scale 22 and overflowed in that division. PostgreSQL keeps each value's
//! own scale instead, and gives a quotient at least 16 significant digits
//! (`NUMERIC_MIN_SIG_DIGITS`).
//!
//! [`NumericArithmetic`] (an analyzer rule, run before type coercion, so ad-hoc queries and
//! views alike) turns `*` and `/` between decimals (or a decimal and an integer) into
//! [`NumericOp`]s, which compute in 256 bits and round half away from zero, as PostgreSQL does:
//! - a product keeps its exact scale `s1 + s2` up to [`SIGNIFICANT_SCALE`] digits (or the
//!   larger operand scale); beyond that it is rounded there, so that chained products keep
//!   room for their integer digits;
//! - a quotient has the scale `max(16, s1, s2)`: PostgreSQL's for a quotient between 1 and
//!   10,000 (for smaller quotients PostgreSQL gives more digits, for larger ones fewer; a fixed
//!   column type cannot follow the value).
//!
//! A result whose integer digits do not fit in precision 38 is an error (22003), as is a
//! division by zero (22012).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::compute::kernels::arity::try_binary;
use datafusion::arrow::datatypes::{i256, DataType, Decimal128Type, DECIMAL128_MAX_PRECISION};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{exec_err, plan_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// Fractional digits a product keeps at most unless an operand has more, and the least a
/// quotient has: PostgreSQL's `NUMERIC_MIN_SIG_DIGITS`.
pub const SIGNIFICANT_SCALE: i8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arith {
    Multiply,
    Divide,
}

/// `numeric_mul(a, b)` or `numeric_div(a, b)` over `Decimal128`s (integers are taken as
/// decimals of scale 0).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NumericOp {
    op: Arith,
    signature: Signature,
}

impl NumericOp {
    pub fn new(op: Arith) -> Self {
        Self { op, signature: Signature::user_defined(Volatility::Immutable) }
    }

    /// The precision and scale of the result over operands of these.
    fn result(&self, (p1, s1): (u8, i8), (p2, s2): (u8, i8)) -> (u8, i8) {
        match self.op {
            Arith::Multiply => {
                let scale = (s1 + s2).min(SIGNIFICANT_SCALE.max(s1).max(s2));
                let integer_digits = (p1 as i8 - s1).max(0) + (p2 as i8 - s2).max(0);
                ((integer_digits + scale).clamp(1, DECIMAL128_MAX_PRECISION as i8) as u8, scale)
            }
            Arith::Divide => (DECIMAL128_MAX_PRECISION, SIGNIFICANT_SCALE.max(s1).max(s2).min(DECIMAL128_MAX_PRECISION as i8)),
        }
    }
}

fn as_decimal(t: &DataType) -> Option<(u8, i8)> {
    match t {
        DataType::Decimal128(p, s) => Some((*p, *s)),
        DataType::Int8 | DataType::UInt8 => Some((3, 0)),
        DataType::Int16 | DataType::UInt16 => Some((5, 0)),
        DataType::Int32 | DataType::UInt32 => Some((10, 0)),
        DataType::Int64 => Some((19, 0)),
        DataType::UInt64 => Some((20, 0)),
        DataType::Null => Some((1, 0)),
        _ => None,
    }
}

impl ScalarUDFImpl for NumericOp {
    fn name(&self) -> &str {
        match self.op {
            Arith::Multiply => "numeric_mul",
            Arith::Divide => "numeric_div",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        arg_types
            .iter()
            .map(|t| match as_decimal(t) {
                Some((p, s)) => Ok(DataType::Decimal128(p, s)),
                None => plan_err!("{} takes numeric arguments, not {t}", self.name()),
            })
            .collect()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let [Some(a), Some(b)] = [arg_types.first().and_then(as_decimal), arg_types.get(1).and_then(as_decimal)] else {
            return plan_err!("{} takes two numeric arguments", self.name());
        };
        let (p, s) = self.result(a, b);
        Ok(DataType::Decimal128(p, s))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else { return exec_err!("{} takes two arguments", self.name()) };
        let (Some(left), Some(right)) = (as_decimal(&a.data_type()), as_decimal(&b.data_type())) else {
            return exec_err!("{} takes two numeric arguments", self.name());
        };
        // The type planned (from the argument types before any constant folding) is the one.
        let (precision, scale) = match args.return_field.data_type() {
            DataType::Decimal128(p, s) => (*p, *s),
            _ => self.result(left, right),
        };
        let all_scalar = matches!((a, b), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let (a, b) = (a.to_array(rows)?, b.to_array(rows)?);
        let (a, b) = (decimals(&a)?, decimals(&b)?);
        let limit = pow10(precision as u32)?;
        let out: Decimal128Array = match self.op {
            Arith::Multiply => {
                let drop = pow10((left.1 + right.1 - scale) as u32)?;
                try_binary(&a, &b, |x, y| {
                    let product = i256::from_i128(x).checked_mul(i256::from_i128(y)).ok_or_else(|| overflow("numeric_mul"))?;
                    fit(round_div(product, drop)?, limit)
                })?
            }
            Arith::Divide => {
                // q = a / b at `scale`: a * 10^(scale - s1 + s2) / b.
                let shift = scale as i32 - left.1 as i32 + right.1 as i32;
                let (up, down) = if shift >= 0 { (pow10(shift as u32)?, i256::ONE) } else { (i256::ONE, pow10((-shift) as u32)?) };
                try_binary(&a, &b, |x, y| {
                    if y == 0 {
                        return Err(ArrowError::DivideByZero);
                    }
                    let num = i256::from_i128(x).checked_mul(up).ok_or_else(|| overflow("numeric_div"))?;
                    let den = i256::from_i128(y).checked_mul(down).ok_or_else(|| overflow("numeric_div"))?;
                    fit(round_div(num, den)?, limit)
                })?
            }
        };
        let out: ArrayRef = Arc::new(out.with_precision_and_scale(precision, scale)?);
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

fn decimals(array: &ArrayRef) -> Result<Decimal128Array> {
    match array.data_type() {
        DataType::Decimal128(..) => Ok(array.as_primitive::<Decimal128Type>().clone()),
        DataType::Null => Ok(Decimal128Array::new_null(array.len())),
        other => {
            let cast = datafusion::arrow::compute::cast(array, &DataType::Decimal128(as_decimal(other).map_or(38, |d| d.0), 0))?;
            Ok(cast.as_primitive::<Decimal128Type>().clone())
        }
    }
}

fn overflow(op: &str) -> ArrowError {
    ArrowError::ArithmeticOverflow(format!("numeric field overflow in {op}"))
}

fn pow10(exp: u32) -> std::result::Result<i256, ArrowError> {
    i256::from_i128(10).checked_pow(exp).ok_or_else(|| overflow("numeric"))
}

/// `n / d` rounded half away from zero (PostgreSQL's rounding of numeric results).
fn round_div(n: i256, d: i256) -> std::result::Result<i256, ArrowError> {
    if d == i256::ONE {
        return Ok(n);
    }
    let q = n.checked_div(d).ok_or_else(|| overflow("numeric"))?;
    let r = n.checked_rem(d).ok_or_else(|| overflow("numeric"))?;
    let twice = r.checked_mul(i256::from_i128(2)).ok_or_else(|| overflow("numeric"))?;
    if twice.checked_abs().unwrap_or(i256::MAX) >= d.checked_abs().unwrap_or(i256::MAX) {
        let away = if n.is_negative() != d.is_negative() { i256::MINUS_ONE } else { i256::ONE };
        return q.checked_add(away).ok_or_else(|| overflow("numeric"));
    }
    Ok(q)
}

/// `v` as a 128-bit decimal of at most `limit`'s digits.
fn fit(v: i256, limit: i256) -> std::result::Result<i128, ArrowError> {
    let magnitude = v.checked_abs().ok_or_else(|| overflow("numeric"))?;
    if magnitude >= limit {
        return Err(overflow("numeric"));
    }
    v.to_i128().ok_or_else(|| overflow("numeric"))
}

/// The analyzer rule: `*` and `/` between decimals (or a decimal and an integer) become
/// [`NumericOp`] calls. Runs before type coercion, which then coerces their arguments.
#[derive(Debug)]
pub struct NumericArithmetic {
    mul: Arc<ScalarUDF>,
    div: Arc<ScalarUDF>,
}

impl Default for NumericArithmetic {
    fn default() -> Self {
        Self { mul: Arc::new(ScalarUDF::from(NumericOp::new(Arith::Multiply))), div: Arc::new(ScalarUDF::from(NumericOp::new(Arith::Divide))) }
    }
}

impl AnalyzerRule for NumericArithmetic {
    fn name(&self) -> &str {
        "openclaw_numeric_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut changed = false;
        let plan = plan.transform_up_with_subqueries(|plan| {
            let rewritten = self.rewrite_node(plan)?;
            changed |= rewritten.transformed;
            // A node above a rewritten one has a new input schema.
            if changed { rewritten.data.recompute_schema().map(Transformed::yes) } else { Ok(rewritten) }
        })?;
        Ok(plan.data)
    }
}

impl NumericArithmetic {
    fn rewrite_node(&self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        // A scan's filters read its source's columns.
        let source = match &plan {
            LogicalPlan::TableScan(scan) => Some(DFSchema::try_from_qualified_schema(scan.table_name.clone(), &scan.source.schema())?),
            _ => None,
        };
        super::rewrite_expressions(plan, source.as_ref(), |e, schema| self.rewrite_expr(e, schema))
    }

    fn rewrite_expr(&self, expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else { return Ok(Transformed::no(expr)) };
        let udf = match op {
            Operator::Multiply => &self.mul,
            Operator::Divide => &self.div,
            _ => return Ok(Transformed::no(expr)),
        };
        // Types that cannot be worked out here (a parameter, an outer column) stay as they are.
        let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else { return Ok(Transformed::no(expr)) };
        let decimal = |t: &DataType| matches!(t, DataType::Decimal128(..));
        if !(decimal(&l) || decimal(&r)) || as_decimal(&l).is_none() || as_decimal(&r).is_none() {
            return Ok(Transformed::no(expr));
        }
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), vec![left.as_ref().clone(), right.as_ref().clone()]));
        Ok(Transformed::yes(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Arith, a: (i128, u8, i8), b: (i128, u8, i8)) -> Result<String> {
        let udf = NumericOp::new(op);
        let arg = |(v, p, s): (i128, u8, i8)| ColumnarValue::Scalar(ScalarValue::Decimal128(Some(v), p, s));
        let types = [DataType::Decimal128(a.1, a.2), DataType::Decimal128(b.1, b.2)];
        let return_field = Arc::new(datafusion::arrow::datatypes::Field::new("r", udf.return_type(&types)?, true));
        let arg_fields = types.iter().map(|t| Arc::new(datafusion::arrow::datatypes::Field::new("a", t.clone(), true))).collect();
        let args = ScalarFunctionArgs { args: vec![arg(a), arg(b)], arg_fields, number_rows: 1, return_field, config_options: Arc::new(ConfigOptions::default()) };
        match udf.invoke_with_args(args)? {
            ColumnarValue::Scalar(v) => Ok(v.to_string()),
            ColumnarValue::Array(_) => unreachable!(),
        }
    }

    #[test]
    fn quotients_have_sixteen_digits_rounded_half_away_from_zero() {
        // 2/3 at scale 16, rounded up; -2/3 rounded down.
        assert_eq!(run(Arith::Divide, (2, 1, 0), (3, 1, 0)).unwrap(), "0.6666666666666667");
        assert_eq!(run(Arith::Divide, (-2, 1, 0), (3, 1, 0)).unwrap(), "-0.6666666666666667");
        // Scale 22 over scale 20, where arrow's own division overflowed.
        let big = 16_380_000_000_000 * 10i128.pow(22);
        assert_eq!(run(Arith::Divide, (big, 38, 22), (1_000_000_000_000 * 10i128.pow(20), 38, 20)).unwrap(), "16.3800000000000000000000");
        assert!(run(Arith::Divide, (1, 1, 0), (0, 1, 0)).unwrap_err().to_string().contains("Divide by zero"));
    }

    #[test]
    fn products_keep_their_scale_up_to_sixteen_digits() {
        // 1.25 * 0.04 = 0.0500 (scale 2 + 2).
        assert_eq!(run(Arith::Multiply, (125, 3, 2), (4, 3, 2)).unwrap(), "0.0500");
        // Two scale-10 values: scale 16, rounded (0.0000000001 * 0.5 = 5e-11).
        assert_eq!(run(Arith::Multiply, (1, 38, 10), (5_000_000_000, 38, 10)).unwrap(), "0.0000000000500000");
        assert!(run(Arith::Multiply, (10i128.pow(37), 38, 0), (100, 38, 0)).unwrap_err().to_string().contains("overflow"));
    }
}
