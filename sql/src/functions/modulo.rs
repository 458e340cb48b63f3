//! `mod(a, b)`, PostgreSQL's function form of `a % b` (DataFusion has only the operator):
//! inlined as the operator when the optimizer simplifies, so it runs as Arrow's kernel;
//! evaluated with that kernel when a call is not simplified.

use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Mod {
    signature: Signature,
}

impl Mod {
    pub fn new() -> Self {
        Self { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Both arguments numeric, coerced as `a % b`'s operands are.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [a, b] = arg_types else { return plan_err!("mod takes two numbers") };
        if !(a.is_numeric() || a.is_null()) || !(b.is_numeric() || b.is_null()) {
            return plan_err!("function mod({a}, {b}) does not exist");
        }
        let (a, b) = BinaryTypeCoercer::new(a, &Operator::Modulo, b).get_input_types()?;
        Ok(vec![a, b])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        BinaryTypeCoercer::new(&arg_types[0], &Operator::Modulo, &arg_types[1]).get_result_type()
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [a, b]: [Expr; 2] = args.try_into().map_err(|_| datafusion::common::DataFusionError::Plan("mod takes two numbers".into()))?;
        Ok(ExprSimplifyResult::Simplified(Expr::BinaryExpr(BinaryExpr::new(Box::new(a), Operator::Modulo, Box::new(b)))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else { return plan_err!("mod takes two numbers") };
        let (a, b) = (a.to_array(args.number_rows)?, b.to_array(args.number_rows)?);
        Ok(ColumnarValue::Array(numeric::rem(&a, &b)?))
    }
}
