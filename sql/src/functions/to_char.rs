//! `to_char(timestamp | date, text)` with PostgreSQL's template patterns (`YYYY-MM-DD
//! HH24:MI:SS`), where DataFusion's takes chrono's (`%Y-%m-%d`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgToChar {
    signature: Signature,
}

impl PgToChar {
    pub fn new() -> Self {
        Self { signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable) }
    }
}

/// PostgreSQL template patterns and their chrono equivalents, longest first.
const PATTERNS: &[(&str, &str)] = &[
    ("HH24", "%H"), ("HH12", "%I"), ("YYYY", "%Y"), ("Month", "%B"), ("MONTH", "%B"), ("month", "%B"),
    ("Day", "%A"), ("DAY", "%A"), ("day", "%A"), ("DDD", "%j"), ("Mon", "%b"), ("MON", "%b"), ("mon", "%b"),
    ("Dy", "%a"), ("DY", "%a"), ("dy", "%a"), ("YY", "%y"), ("MM", "%m"), ("DD", "%d"), ("HH", "%I"),
    ("MI", "%M"), ("SS", "%S"), ("MS", "%3f"), ("US", "%6f"), ("AM", "%p"), ("PM", "%p"), ("am", "%P"),
    ("pm", "%P"), ("TZ", "UTC"), ("tz", "utc"),
];

/// Translates a PostgreSQL template into a chrono format string.
pub fn translate(template: &str) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if let Some(stripped) = rest.strip_prefix("FM") {
            rest = stripped; // fill mode: chrono's output is already unpadded for names
            continue;
        }
        if c == '"' {
            let end = rest[1..].find('"').map(|i| i + 1).unwrap_or(rest.len());
            out.push_str(&rest[1..end].replace('%', "%%"));
            rest = rest.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some((pat, fmt)) = PATTERNS.iter().find(|(p, _)| rest.starts_with(p)) {
            out.push_str(fmt);
            rest = &rest[pat.len()..];
            continue;
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null => Ok(DataType::Utf8),
            other => plan_err!("function to_char({other}, text) does not exist"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, template] = args.args.as_slice() else { return exec_err!("to_char takes two arguments") };
        let ColumnarValue::Scalar(ScalarValue::Utf8(template) | ScalarValue::LargeUtf8(template) | ScalarValue::Utf8View(template)) = template else {
            return exec_err!("to_char needs a constant template");
        };
        let Some(template) = template else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let format = translate(template);
        let is_scalar = matches!(value, ColumnarValue::Scalar(_));
        let array = value.to_array(args.number_rows.max(1))?;
        let micros = cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * format.len());
        for i in 0..micros.len() {
            if micros.is_null(i) {
                out.append_null();
                continue;
            }
            match chrono::DateTime::from_timestamp_micros(micros.value(i)) {
                Some(t) => out.append_value(t.naive_utc().format(&format).to_string()),
                None => out.append_null(),
            }
        }
        let result = Arc::new(out.finish());
        if is_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(result.as_ref(), 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn translates_postgres_templates() {
        assert_eq!(translate("YYYY-MM-DD HH24:MI:SS"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(translate("HH24:MI"), "%H:%M");
        assert_eq!(translate("\"day\" DD"), "day %d");
    }
}
