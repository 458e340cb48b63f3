//! `pg_proc` as this server has it, and the functions psql's `\df` calls to print a
//! function's signature (`pg_get_function_result`, `pg_get_function_arguments`,
//! `pg_get_function_identity_arguments`), and `format_type` over all of PostgreSQL's types.
//!
//! The rows are PostgreSQL's own (the crate's export of a real server's `pg_proc`, with its
//! OIDs and argument types) kept only for the functions this session can call: a client
//! listing functions (`\df`, DBeaver's navigator, completion) is told of none that would fail
//! with "invalid function". A name counts when DataFusion or OpenClaw registers a scalar,
//! aggregate, window or table function under it; the signatures are PostgreSQL's, which are
//! what the coercion here accepts for those names.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, Array, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{create_udf, ColumnarValue, Expr, ScalarUDF, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

/// PostgreSQL's `pg_proc` and `pg_type`, loaded once per process.
struct Static {
    /// Type OID → name, as `format_type` prints it without a modifier.
    types: HashMap<i32, String>,
    /// Array type OID → element type OID.
    elements: HashMap<i32, i32>,
    proc_schema: SchemaRef,
    procs: RecordBatch,
    /// Function OID → (result, arguments, identity arguments), as `pg_get_function_*` print them.
    signatures: HashMap<i32, Signature>,
}

struct Signature {
    result: String,
    arguments: String,
    identity: String,
}

fn statics() -> &'static Static {
    static STATIC: OnceLock<Static> = OnceLock::new();
    STATIC.get_or_init(|| {
        let tables = PgCatalogStaticTables::try_new().expect("the crate's catalog export decodes");
        let procs = datafusion::arrow::compute::concat_batches(&tables.pg_proc.schema(), tables.pg_proc.data()).expect("one schema");
        let procs = acl_as_array(procs);
        let proc_schema = procs.schema();
        let (types, elements) = type_names(tables.pg_type.data());
        let signatures = signatures(&procs, &types);
        Static { types, elements, proc_schema, procs, signatures }
    })
}

/// `proacl` as PostgreSQL's `aclitem[]` (here `text[]`), which psql's `\df+` passes to
/// `array_to_string`: NULL, the default privileges.
fn acl_as_array(procs: RecordBatch) -> RecordBatch {
    let text_array = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let schema = procs.schema();
    let (fields, columns): (Vec<_>, Vec<_>) = schema
        .fields()
        .iter()
        .zip(procs.columns())
        .map(|(f, c)| match f.name().as_str() {
            "proacl" => (Arc::new(Field::new("proacl", text_array.clone(), true)), new_null_array(&text_array, procs.num_rows())),
            _ => (f.clone(), c.clone()),
        })
        .unzip();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).expect("same row count")
}

/// Type OID → the name `format_type` gives it (PostgreSQL's SQL names for the built-in ones,
/// `element[]` for arrays).
fn type_names(batches: &[RecordBatch]) -> (HashMap<i32, String>, HashMap<i32, i32>) {
    let mut internal = HashMap::new();
    let mut elements = HashMap::new();
    for b in batches {
        let oid = b.column_by_name("oid").expect("pg_type.oid").as_primitive::<Int32Type>();
        let name = b.column_by_name("typname").expect("pg_type.typname").as_string::<i32>();
        let element = b.column_by_name("typelem").expect("pg_type.typelem").as_primitive::<Int32Type>();
        let storage = b.column_by_name("typstorage").expect("pg_type.typstorage").as_string::<i32>();
        for i in 0..b.num_rows() {
            internal.insert(oid.value(i), name.value(i).to_string());
            // A true array: pseudo-arrays (`name`, `int2vector`, `oidvector`) keep their names,
            // as PostgreSQL tells them by plain storage.
            if element.value(i) != 0 && storage.value(i) != "p" {
                elements.insert(oid.value(i), element.value(i));
            }
        }
    }
    let plain = |oid: i32| sql_name(oid).map(str::to_string).or_else(|| internal.get(&oid).map(|n| quote_type(n)));
    let names = internal
        .keys()
        .filter_map(|&oid| {
            let name = match elements.get(&oid) {
                Some(&element) => format!("{}[]", plain(element)?),
                None => plain(oid)?,
            };
            Some((oid, name))
        })
        .collect();
    (names, elements)
}

/// `format_type(oid, typmod)` as PostgreSQL prints it: the SQL name with the modifier
/// (`numeric(12,2)`, `character varying(10)`, `timestamp(3) with time zone`), arrays as
/// `element[]`, and `???` for an OID that is no type.
pub fn format_type(oid: i32, typmod: Option<i32>) -> String {
    let statics = statics();
    if let Some(&element) = statics.elements.get(&oid) {
        return format!("{}[]", format_type(element, typmod));
    }
    let Some(name) = statics.types.get(&oid) else { return "???".to_string() };
    let typmod = typmod.unwrap_or(-1);
    match oid {
        1042 | 1043 if typmod >= 4 => format!("{name}({})", typmod - 4),
        1560 | 1562 if typmod >= 0 => format!("{name}({typmod})"),
        1700 if typmod >= 4 => {
            let (precision, scale) = ((typmod - 4) >> 16, (typmod - 4) & 0xffff);
            format!("numeric({precision},{scale})")
        }
        1083 | 1114 | 1184 | 1266 if typmod >= 0 => match name.split_once(' ') {
            Some((base, zone)) => format!("{base}({typmod}) {zone}"),
            None => format!("{name}({typmod})"),
        },
        _ => name.clone(),
    }
}

/// The SQL-standard names `format_type` prints for PostgreSQL's built-in types.
fn sql_name(oid: i32) -> Option<&'static str> {
    Some(match oid {
        16 => "boolean",
        18 => "\"char\"",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1266 => "time with time zone",
        1560 => "bit",
        1562 => "bit varying",
        _ => return None,
    })
}

/// A type's internal name as `format_type` prints it: quoted when it is a keyword PostgreSQL
/// reserves there (`"any"`).
fn quote_type(name: &str) -> String {
    match name {
        "any" | "char" => format!("\"{name}\""),
        _ => name.to_string(),
    }
}

/// `pg_proc`'s list columns are exported as Python-style text: `[25, 18]`, `['word', 'x']`.
fn list_items(text: Option<&str>) -> Vec<String> {
    let Some(text) = text else { return vec![] };
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split(',').map(|s| s.trim().trim_matches('\'').to_string()).filter(|s| !s.is_empty()).collect()
}

fn signatures(procs: &RecordBatch, types: &HashMap<i32, String>) -> HashMap<i32, Signature> {
    let column = |name: &str| procs.column_by_name(name).unwrap_or_else(|| panic!("pg_proc.{name}"));
    let oid = column("oid").as_primitive::<Int32Type>();
    let result_type = column("prorettype").as_primitive::<Int32Type>();
    let returns_set = column("proretset").as_boolean();
    let variadic = column("provariadic").as_primitive::<Int32Type>();
    let arg_types = column("proargtypes").as_string::<i32>();
    let all_types = column("proallargtypes").as_string::<i32>();
    let modes = column("proargmodes").as_string::<i32>();
    let names = column("proargnames").as_string::<i32>();
    let type_name = |oid: i32| types.get(&oid).cloned().unwrap_or_else(|| oid.to_string());
    let text = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    (0..procs.num_rows())
        .map(|i| {
            let in_types: Vec<i32> = arg_types.value(i).split_whitespace().filter_map(|t| t.parse().ok()).collect();
            let all: Vec<i32> = match text(all_types, i) {
                Some(t) => list_items(Some(&t)).iter().filter_map(|t| t.parse().ok()).collect(),
                None => in_types.clone(),
            };
            let modes = list_items(text(modes, i).as_deref());
            let names = list_items(text(names, i).as_deref());
            let mode = |k: usize| modes.get(k).map(String::as_str).unwrap_or("i");
            let is_variadic = |k: usize| mode(k) == "v" || (modes.is_empty() && variadic.value(i) != 0 && k + 1 == all.len());
            let describe = |k: usize, with_out: bool| {
                let prefix = match mode(k) {
                    "o" if with_out => "OUT ",
                    "b" => "INOUT ",
                    _ if is_variadic(k) => "VARIADIC ",
                    _ => "",
                };
                let name = names.get(k).filter(|n| !n.is_empty()).map(|n| format!("{n} ")).unwrap_or_default();
                format!("{prefix}{name}{}", type_name(all[k]))
            };
            let table_columns: Vec<String> = (0..all.len()).filter(|&k| mode(k) == "t").map(|k| describe(k, false)).collect();
            let result = if !table_columns.is_empty() {
                format!("TABLE({})", table_columns.join(", "))
            } else if returns_set.value(i) {
                format!("SETOF {}", type_name(result_type.value(i)))
            } else {
                type_name(result_type.value(i))
            };
            let listed = |identity: bool| {
                (0..all.len()).filter(|&k| mode(k) != "t" && !(identity && mode(k) == "o")).map(|k| describe(k, true)).collect::<Vec<_>>().join(", ")
            };
            (oid.value(i), Signature { result, arguments: listed(false), identity: listed(true) })
        })
        .collect()
}

/// The names of every function `session` can call, lower case.
fn callable(session: &dyn Session) -> HashSet<String> {
    let mut names: HashSet<String> = session.scalar_functions().keys().chain(session.aggregate_functions().keys()).chain(session.window_functions().keys()).map(|n| n.to_ascii_lowercase()).collect();
    if let Some(state) = session.as_any().downcast_ref::<SessionState>() {
        names.extend(state.table_functions().keys().map(|n| n.to_ascii_lowercase()));
    }
    names
}

/// `pg_proc`: PostgreSQL's rows for the functions the scanning session can call.
#[derive(Debug)]
pub struct PgProc;

#[async_trait]
impl TableProvider for PgProc {
    fn schema(&self) -> SchemaRef {
        statics().proc_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(&self, session: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> Result<Arc<dyn ExecutionPlan>> {
        let statics = statics();
        let callable = callable(session);
        let names = statics.procs.column_by_name("proname").expect("pg_proc.proname").as_string::<i32>();
        let keep: BooleanArray = names.iter().map(|n| Some(n.is_some_and(|n| callable.contains(n)))).collect();
        let rows = datafusion::arrow::compute::filter_record_batch(&statics.procs, &keep)?;
        MemTable::try_new(statics.proc_schema.clone(), vec![vec![rows]])?.scan(session, projection, filters, limit).await
    }
}

/// `format_type(type_oid, typmod)`.
pub fn format_type_function() -> ScalarUDF {
    create_udf(
        "format_type",
        vec![DataType::Int32, DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let oids = args[0].as_any().downcast_ref::<Int32Array>().expect("coerced to Int32");
            let mods = args[1].as_any().downcast_ref::<Int32Array>().expect("coerced to Int32");
            let out: StringArray = oids.iter().zip(mods.iter()).map(|(oid, typmod)| oid.map(|oid| format_type(oid, typmod))).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `pg_get_function_result(oid)`, `pg_get_function_arguments(oid)` and
/// `pg_get_function_identity_arguments(oid)`: NULL for an OID that is no function; and
/// `pg_get_function_sqlbody(oid)` (psql's `\df+`), NULL as for every function not written
/// in SQL.
pub fn describe_functions() -> Vec<ScalarUDF> {
    type Part = fn(&Signature) -> Option<&str>;
    let parts: [(&str, Part); 4] = [
        ("pg_get_function_result", |s| Some(&s.result)),
        ("pg_get_function_arguments", |s| Some(&s.arguments)),
        ("pg_get_function_identity_arguments", |s| Some(&s.identity)),
        ("pg_get_function_sqlbody", |_| None),
    ];
    parts
        .into_iter()
        .map(|(name, part)| {
            create_udf(
                name,
                vec![DataType::Int32],
                DataType::Utf8,
                Volatility::Stable,
                Arc::new(move |args: &[ColumnarValue]| {
                    let oids = ColumnarValue::values_to_arrays(args)?;
                    let oids = oids[0].as_any().downcast_ref::<Int32Array>().expect("coerced to Int32");
                    let signatures = &statics().signatures;
                    let out: StringArray = oids.iter().map(|oid| oid.and_then(|oid| signatures.get(&oid)).and_then(part)).collect();
                    Ok(ColumnarValue::Array(Arc::new(out)))
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::statics;

    fn signature(oid: i32) -> (&'static str, &'static str, &'static str) {
        let s = &statics().signatures[&oid];
        (&s.result, &s.arguments, &s.identity)
    }

    /// As PostgreSQL 17's `pg_get_function_result/arguments/identity_arguments` print them.
    #[test]
    fn types_format_as_postgresql_formats_them() {
        use super::format_type;
        assert_eq!(format_type(23, None), "integer");
        assert_eq!(format_type(1700, Some(-1)), "numeric");
        assert_eq!(format_type(1700, Some((12 << 16 | 2) + 4)), "numeric(12,2)");
        assert_eq!(format_type(1043, Some(14)), "character varying(10)");
        assert_eq!(format_type(1184, Some(3)), "timestamp(3) with time zone");
        assert_eq!(format_type(1007, None), "integer[]");
        assert_eq!(format_type(1231, Some((10 << 16) + 4)), "numeric(10,0)[]");
        assert_eq!(format_type(22, None), "int2vector");
        assert_eq!(format_type(19, None), "name");
        assert_eq!(format_type(2276, None), "\"any\"");
        assert_eq!(format_type(999_999, None), "???");
    }

    #[test]
    fn signatures_print_as_postgresql_prints_them() {
        // to_char(numeric, text)
        assert_eq!(signature(1772), ("text", "numeric, text", "numeric, text"));
        // to_char(timestamp with time zone, text)
        assert_eq!(signature(1770), ("text", "timestamp with time zone, text", "timestamp with time zone, text"));
        // generate_series(integer, integer): a set
        assert_eq!(signature(1067), ("SETOF integer", "integer, integer", "integer, integer"));
        // pg_get_keywords(): OUT parameters
        assert_eq!(
            signature(1686),
            ("SETOF record", "OUT word text, OUT catcode \"char\", OUT barelabel boolean, OUT catdesc text, OUT baredesc text", "")
        );
        // concat("any"): variadic
        assert_eq!(signature(3058), ("text", "VARIADIC \"any\"", "VARIADIC \"any\""));
    }
}
