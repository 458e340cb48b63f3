//! Session information functions that drivers and tools call on connect: `version()`,
//! `current_database()`, `current_schema()`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// A function of no arguments that returns a fixed text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ConstantText {
    name: &'static str,
    value: String,
    signature: Signature,
}

impl ConstantText {
    pub fn new(name: &'static str, value: impl Into<String>) -> Self {
        Self { name, value: value.into(), signature: Signature::exact(vec![], Volatility::Stable) }
    }
}

impl ScalarUDFImpl for ConstantText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(self.value.clone()))))
    }
}
