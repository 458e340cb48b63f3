//! PostgreSQL names of Arrow types, for `DESCRIBE` and messages.

use datafusion::arrow::datatypes::{DataType, IntervalUnit};

pub fn pg_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "character varying".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Interval(IntervalUnit::MonthDayNano | IntervalUnit::DayTime | IntervalUnit::YearMonth) => "interval".into(),
        DataType::Null => "unknown".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// Field metadata naming a column's declared PostgreSQL type where Arrow's type loses it:
/// `varchar` (Arrow's `Utf8` is also `text`). RowDescription and `pg_attribute` report it.
pub const PG_TYPE_KEY: &str = "openclaw.pg_type";
/// Field metadata: the declared length of a `varchar(n)`.
pub const PG_LENGTH_KEY: &str = "openclaw.pg_length";

/// The declared type of a `CREATE TABLE` column, as field metadata (empty when Arrow's type
/// says it all).
pub fn declared_type_metadata(declared: &datafusion::sql::sqlparser::ast::DataType) -> std::collections::HashMap<String, String> {
    use datafusion::sql::sqlparser::ast::{CharacterLength, DataType as Sql};
    let mut metadata = std::collections::HashMap::new();
    if let Sql::Varchar(length) | Sql::CharacterVarying(length) | Sql::CharVarying(length) = declared {
        metadata.insert(PG_TYPE_KEY.to_string(), "varchar".to_string());
        if let Some(CharacterLength::IntegerLength { length, .. }) = length {
            metadata.insert(PG_LENGTH_KEY.to_string(), length.to_string());
        }
    }
    metadata
}

/// A field's declared `varchar`, with its length if it has one.
pub fn declared_varchar(field: &datafusion::arrow::datatypes::Field) -> Option<Option<u64>> {
    (field.metadata().get(PG_TYPE_KEY).map(String::as_str) == Some("varchar")).then(|| field.metadata().get(PG_LENGTH_KEY).and_then(|l| l.parse().ok()))
}

/// PostgreSQL's spellings of `varchar` that DataFusion's planner does not take
/// (`CHARACTER VARYING(n)`, as pg_dump writes it), as `VARCHAR(n)`.
pub fn normalize_declared_type(declared: &mut datafusion::sql::sqlparser::ast::DataType) {
    use datafusion::sql::sqlparser::ast::DataType as Sql;
    if let Sql::CharacterVarying(length) | Sql::CharVarying(length) = declared {
        *declared = Sql::Varchar(*length);
    }
}

/// Rewrites `CAST(x AS CHARACTER VARYING)` (and `x::character varying(n)`) in `node` into
/// `VARCHAR`, which DataFusion's planner takes.
pub fn normalize_casts<T: datafusion::sql::sqlparser::ast::VisitMut>(node: &mut T) {
    use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Expr};
    let _ = visit_expressions_mut(node, |e| {
        if let Expr::Cast { data_type, .. } = e {
            normalize_declared_type(data_type);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}
