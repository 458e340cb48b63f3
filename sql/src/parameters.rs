//! Query parameters typed and bound as PostgreSQL does where DataFusion alone does not:
//! `x = ANY($1)` takes an array of `x`'s type (DataFusion leaves the placeholder untyped),
//! and an array sent as text (`{int8,"a b",NULL}`, what node-postgres and most drivers send
//! for an array without a declared type) is read as PostgreSQL's array input reads it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use crate::{SqlError, SqlResult, SqlState};

/// Gives each untyped placeholder searched by `= ANY(...)` (DataFusion's `array_has`) the
/// type of an array of what it is searched for.
pub fn type_array_placeholders(plan: LogicalPlan) -> SqlResult<LogicalPlan> {
    let typed = plan.transform_up_with_subqueries(|node| {
        let schema = match node.inputs().as_slice() {
            [] => Arc::new(DFSchema::empty()),
            [input] => input.schema().clone(),
            inputs => Arc::new(inputs.iter().skip(1).try_fold((*inputs[0].schema()).as_ref().clone(), |mut merged, i| {
                merged.merge(i.schema());
                Ok::<_, datafusion::error::DataFusionError>(merged)
            })?),
        };
        node.map_expressions(|e| e.transform_up(|e| type_searched_placeholder(e, &schema)))
    })?;
    Ok(typed.data)
}

fn type_searched_placeholder(e: Expr, schema: &DFSchema) -> datafusion::error::Result<Transformed<Expr>> {
    let Expr::ScalarFunction(mut call) = e else { return Ok(Transformed::no(e)) };
    let untyped = matches!(call.args.first(), Some(Expr::Placeholder(Placeholder { field: None, .. })));
    if call.func.name() != "array_has" || call.args.len() != 2 || !untyped {
        return Ok(Transformed::no(Expr::ScalarFunction(call)));
    }
    let Ok(element) = call.args[1].get_type(schema) else { return Ok(Transformed::no(Expr::ScalarFunction(call))) };
    if let Expr::Placeholder(p) = &mut call.args[0] {
        let list = DataType::List(Arc::new(Field::new_list_field(element, true)));
        p.field = Some(Arc::new(Field::new(p.id.clone(), list, true)));
    }
    Ok(Transformed::yes(Expr::ScalarFunction(call)))
}

/// A parameter for a placeholder of type `to`: text is read as an array literal when `to`
/// is a list, and cast otherwise.
pub fn cast_param(value: ScalarValue, to: &DataType) -> SqlResult<ScalarValue> {
    match (&value, to) {
        (ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text)) | ScalarValue::Utf8View(Some(text)), DataType::List(element)) => {
            parse_array(text, element.data_type())
        }
        _ => Ok(value.cast_to(to)?),
    }
}

/// PostgreSQL's array input of one dimension: `{a,"b c",NULL}`, elements cast to `element`.
pub fn parse_array(text: &str, element: &DataType) -> SqlResult<ScalarValue> {
    let malformed = |why: &str| SqlError::new(SqlState::InvalidTextRepresentation, format!("malformed array literal: \"{text}\"")).with_detail(why.to_string());
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(|| malformed("Array value must start with \"{\" or dimension information."))?;
    let mut items: Vec<Option<String>> = vec![];
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let (item, quoted) = if chars.peek() == Some(&'"') {
            chars.next();
            let mut item = String::new();
            loop {
                match chars.next() {
                    Some('\\') => item.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(malformed("Unexpected end of input.")),
                }
            }
            (item, true)
        } else {
            let mut item = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '"' {
                    return Err(malformed("Multidimensional arrays and quotes inside elements are not supported here."));
                }
                if c == '\\' {
                    chars.next();
                    item.extend(chars.next());
                    continue;
                }
                item.push(c);
                chars.next();
            }
            (item.trim_end().to_string(), false)
        };
        items.push(if !quoted && item.eq_ignore_ascii_case("null") { None } else { Some(item) });
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') | None => {}
            Some(_) => return Err(malformed("Unexpected array element.")),
        }
    }
    let values = items
        .into_iter()
        .map(|item| ScalarValue::Utf8(item).cast_to(element))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SqlError::new(SqlState::InvalidTextRepresentation, format!("invalid array element: {e}")))?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(&values, element)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str, element: &DataType) -> Vec<String> {
        let ScalarValue::List(list) = parse_array(text, element).unwrap() else { panic!("a list") };
        let values = list.value(0);
        (0..values.len()).map(|i| ScalarValue::try_from_array(&values, i).unwrap().to_string()).collect()
    }

    #[test]
    fn array_literals_read_as_postgresql_reads_them() {
        assert_eq!(items("{int8,numeric,timestamptz}", &DataType::Utf8), ["int8", "numeric", "timestamptz"]);
        assert_eq!(items(r#"{"a b", "c,d" ,NULL,"NULL",e\,f}"#, &DataType::Utf8), ["a b", "c,d", "NULL", "NULL", "e,f"]);
        assert_eq!(items("{1, 2,3}", &DataType::Int32), ["1", "2", "3"]);
        assert_eq!(items("{}", &DataType::Int32), Vec::<String>::new());
        for bad in ["1,2", "{1,2", "{{1},{2}}", "{x}"] {
            let err = parse_array(bad, &DataType::Int32).unwrap_err();
            assert_eq!(err.code, SqlState::InvalidTextRepresentation, "{bad}");
        }
    }
}
