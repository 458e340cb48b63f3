//! Functions written in SQL (`CREATE FUNCTION f(a int) RETURNS int LANGUAGE SQL AS 'SELECT a + 1'`):
//! a [`SqlFunction`] holds its body as a type-checked expression over columns named after its
//! parameters. The optimizer inlines each call ([`ScalarUDFImpl::simplify`]: the body with the
//! call's arguments in place of the parameters), so a view's plan holds the body itself and
//! runs it as any expression, vectorized. A call that is not inlined (none is, in a plan that
//! went through the optimizer) evaluates the body over the argument arrays.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, DFSchema, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// One function written in SQL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SqlFunction {
    name: String,
    /// Its parameters' names (`$n` for unnamed ones), as the body's columns, and types.
    params: Vec<(String, DataType)>,
    signature: Signature,
    return_type: DataType,
    /// The body, of type `return_type`, over columns named after `params`.
    body: Expr,
}

impl SqlFunction {
    /// `body` must be of type `return_type` and read no column but `params`.
    pub fn new(name: String, params: Vec<(String, DataType)>, return_type: DataType, body: Expr, volatility: Volatility) -> Self {
        Self { name, params, signature: Signature::user_defined(volatility), return_type, body }
    }

    /// The schema of the body's columns.
    pub fn params_schema(params: &[(String, DataType)]) -> Schema {
        Schema::new(params.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>())
    }

    /// The body with `args` in place of the parameters.
    fn inline(&self, args: Vec<Expr>) -> Result<Expr> {
        assert_eq!(args.len(), self.params.len(), "calls are checked against the parameters");
        self.body
            .clone()
            .transform_up(|e| {
                let Expr::Column(c) = &e else { return Ok(Transformed::no(e)) };
                match self.params.iter().position(|(p, _)| c.relation.is_none() && *p == c.name) {
                    Some(i) => Ok(Transformed::yes(args[i].clone())),
                    None => Ok(Transformed::no(e)),
                }
            })
            .map(|t| t.data)
    }

    /// Whether a value of type `given` is taken for a parameter or result of type `declared`:
    /// the same kind of value (numbers for numbers, text for text), or an untyped NULL.
    pub fn assignable(given: &DataType, declared: &DataType) -> bool {
        let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        given == declared || given.is_null() || (given.is_numeric() && declared.is_numeric()) || (text(given) && text(declared))
    }
}

impl ScalarUDFImpl for SqlFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let fits = arg_types.len() == self.params.len() && arg_types.iter().zip(&self.params).all(|(g, (_, d))| Self::assignable(g, d));
        if !fits {
            let given: Vec<String> = arg_types.iter().map(crate::types::pg_type_name).collect();
            return plan_err!("function {}({}) does not exist", self.name, given.join(", "));
        }
        Ok(self.params.iter().map(|(_, t)| t.clone()).collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(self.inline(args)?))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let schema = Arc::new(Self::params_schema(&self.params));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let options = RecordBatchOptions::new().with_row_count(Some(args.number_rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &options)?;
        let df_schema = DFSchema::try_from(schema)?;
        let body = datafusion::physical_expr::create_physical_expr(&self.body, &df_schema, &ExecutionProps::new(), &Default::default())?;
        body.evaluate(&batch)
    }
}
