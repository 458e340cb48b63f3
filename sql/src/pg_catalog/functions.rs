//! Catalog functions that describe a relation by OID from [`Relations`]: `pg_get_indexdef`,
//! `pg_get_constraintdef`, `pg_get_viewdef` and `obj_description` (psql's `\d` and `\d+`,
//! drivers' index and key lookups), and `col_description` (no column comments: NULL).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use super::relations::{quote_ident, PgRelation, Relations};

type Describe = fn(&PgRelation, i32) -> Option<String>;

/// A function whose first argument is an OID and whose value is text about that object
/// (NULL for an OID that is not one of ours, as PostgreSQL gives for a missing object).
#[derive(Debug)]
struct DescribeOid {
    name: &'static str,
    relations: Relations,
    describe: Describe,
    signature: Signature,
}

impl PartialEq for DescribeOid {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for DescribeOid {}

impl Hash for DescribeOid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for DescribeOid {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(first) = args.args.first() else { return exec_err!("{} takes an OID", self.name) };
        let oids = first.to_array(args.number_rows)?;
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int32)?;
        let oids = oids.as_any().downcast_ref::<Int32Array>().expect("cast to Int32");
        let out: StringArray = oids
            .iter()
            .map(|oid| {
                let oid = oid?;
                let relation = self.relations.by_oid(oid)?;
                (self.describe)(&relation, oid)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

fn index_def(r: &PgRelation, oid: i32) -> Option<String> {
    (r.index_oid() == Some(oid)).then(|| {
        let columns: Vec<String> = r.primary_key.iter().map(|&i| quote_ident(r.schema.field(i).name())).collect();
        format!("CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})", quote_ident(&r.index_name()), quote_ident(&r.schema_name), quote_ident(&r.name), columns.join(", "))
    })
}

fn constraint_def(r: &PgRelation, oid: i32) -> Option<String> {
    (r.constraint_oid() == Some(oid)).then(|| r.primary_key_def())
}

fn view_def(r: &PgRelation, oid: i32) -> Option<String> {
    if r.oid == oid {
        r.view_query()
    } else {
        None
    }
}

fn comment(r: &PgRelation, oid: i32) -> Option<String> {
    if r.oid == oid {
        r.comment.clone()
    } else {
        None
    }
}

fn nothing(_: &PgRelation, _: i32) -> Option<String> {
    None
}

/// The functions, each replacing any of the same name registered before.
pub fn all(relations: &Relations) -> Vec<ScalarUDF> {
    let functions: [(&'static str, Describe); 5] = [
        ("pg_get_indexdef", index_def),
        ("pg_get_constraintdef", constraint_def),
        ("pg_get_viewdef", view_def),
        ("obj_description", comment),
        ("col_description", nothing),
    ];
    functions
        .into_iter()
        .map(|(name, describe)| {
            ScalarUDF::new_from_impl(DescribeOid {
                name,
                relations: relations.clone(),
                describe,
                signature: Signature::variadic_any(Volatility::Stable),
            })
        })
        .collect()
}

/// `pg_table_size`, `pg_relation_size` and `pg_total_relation_size` of a relation's OID (psql's
/// `\dt+`, BI tools' table lists): the bytes of the column families holding its rows and
/// state, on disk and in memtables ([`openclaw_storage::Store::bytes_in`]). A primary key is
/// the order of the table's own rows, so its index takes no bytes of its own; a source
/// stores nothing (0); an OID that is not a relation's is NULL, as in PostgreSQL.
pub fn sizes(relations: &Relations, store: &openclaw_storage::Store) -> Vec<ScalarUDF> {
    use datafusion::logical_expr::expr_fn::SimpleScalarUDF;
    ["pg_table_size", "pg_relation_size", "pg_total_relation_size"]
        .into_iter()
        .map(|name| {
            let (relations, store) = (relations.clone(), store.clone());
            // An OID column, a `::regclass` or an integer literal.
            let signature = Signature::uniform(1, vec![DataType::Int32, DataType::Int64], Volatility::Volatile);
            let udf = SimpleScalarUDF::new_with_signature(
                name,
                signature,
                DataType::Int64,
                Arc::new(move |args: &[ColumnarValue]| {
                    let oids = ColumnarValue::values_to_arrays(args)?;
                    let oids = datafusion::arrow::compute::cast(&oids[0], &DataType::Int32)?;
                    let oids = oids.as_any().downcast_ref::<Int32Array>().expect("cast to Int32");
                    let sizes: Result<Int64Array> = oids
                        .iter()
                        .map(|oid| {
                            let Some(r) = oid.and_then(|oid| relations.by_oid(oid).filter(|r| r.oid == oid)) else {
                                return Ok(oid.and_then(|oid| relations.by_oid(oid)).map(|_| 0));
                            };
                            let bytes = store.bytes_in(&r.column_families).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                            Ok(Some(i64::try_from(bytes).unwrap_or(i64::MAX)))
                        })
                        .collect();
                    Ok(ColumnarValue::Array(Arc::new(sizes?)))
                }),
            );
            ScalarUDF::from(udf)
        })
        .collect()
}

/// `pg_get_expr(expr, relation [, pretty])`: OpenClaw keeps no expression trees (no column
/// has a default, so `pg_attrdef` is empty), so the text is the expression as given, and NULL
/// stays NULL (the crate's version returned '' for NULL, which DBeaver shows as a default).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetExpr {
    signature: Signature,
}

impl ScalarUDFImpl for PgGetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(expr) = args.args.first() else { return exec_err!("pg_get_expr takes an expression and a relation") };
        Ok(match expr {
            ColumnarValue::Scalar(v) => ColumnarValue::Scalar(v.cast_to(&DataType::Utf8)?),
            ColumnarValue::Array(a) => ColumnarValue::Array(datafusion::arrow::compute::cast(a, &DataType::Utf8)?),
        })
    }
}

/// `pg_size_pretty(bigint)`, with PostgreSQL's units and rounding (bytes below 10 kB, then
/// kB, MB, GB, TB, PB, each half-rounded).
pub fn size_pretty(size: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if size.abs() < LIMIT {
        return format!("{size} bytes");
    }
    // One extra bit kept for rounding.
    let mut size = size >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

/// PostgreSQL's type names (internal and SQL spellings) and OIDs, for `to_regtype`.
const TYPE_OIDS: &[(&str, i32)] = &[
    ("bool", 16), ("boolean", 16), ("bytea", 17), ("char", 18), ("name", 19), ("int8", 20), ("bigint", 20),
    ("int2", 21), ("smallint", 21), ("int4", 23), ("integer", 23), ("int", 23), ("text", 25), ("oid", 26),
    ("json", 114), ("float4", 700), ("real", 700), ("float8", 701), ("double precision", 701),
    ("bpchar", 1042), ("character", 1042), ("varchar", 1043), ("character varying", 1043), ("date", 1082),
    ("time", 1083), ("time without time zone", 1083), ("timestamp", 1114), ("timestamp without time zone", 1114),
    ("timestamptz", 1184), ("timestamp with time zone", 1184), ("interval", 1186), ("numeric", 1700),
    ("decimal", 1700), ("uuid", 2950), ("jsonb", 3802), ("_bool", 1000), ("_int2", 1005), ("_int4", 1007),
    ("_text", 1009), ("_int8", 1016), ("_float4", 1021), ("_float8", 1022), ("_timestamp", 1115),
    ("_timestamptz", 1185), ("_date", 1182), ("_numeric", 1231), ("_varchar", 1015),
];

/// `to_regtype(name)`: the type's OID, NULL for a name that is not a type.
pub fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim().trim_start_matches("pg_catalog.").to_ascii_lowercase();
    let oid_of = |n: &str| TYPE_OIDS.iter().find(|(t, _)| *t == n).map(|(_, oid)| *oid);
    let Some(element) = name.strip_suffix("[]") else { return oid_of(&name) };
    // An array type is named by its element's internal name with `_` before it (`_int4`).
    let element_oid = oid_of(element.trim())?;
    let internal = TYPE_OIDS.iter().find(|(t, oid)| *oid == element_oid && !t.contains(' ') && !t.starts_with('_'))?.0;
    oid_of(&format!("_{internal}"))
}

/// The `pg_*_is_visible` functions of psql's listings (`pg_table_is_visible` is the crate's).
const VISIBLE: [&str; 11] = [
    "pg_function_is_visible",
    "pg_type_is_visible",
    "pg_operator_is_visible",
    "pg_opclass_is_visible",
    "pg_opfamily_is_visible",
    "pg_collation_is_visible",
    "pg_conversion_is_visible",
    "pg_ts_config_is_visible",
    "pg_ts_dict_is_visible",
    "pg_ts_parser_is_visible",
    "pg_ts_template_is_visible",
];

/// Functions psql's listings call that need nothing of ours: `pg_size_pretty`,
/// `pg_function_is_visible` (every function is on the search path) and `to_regtype`
/// (psycopg's `TypeInfo.fetch`).
pub fn plain() -> Vec<ScalarUDF> {
    use datafusion::logical_expr::create_udf;
    let get_expr = ScalarUDF::new_from_impl(PgGetExpr { signature: Signature::variadic_any(Volatility::Stable) });
    let pretty = create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = ColumnarValue::values_to_arrays(args)?;
            let sizes = sizes[0].as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().expect("coerced to Int64");
            let out: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    // Every object is on the search path: `pg_catalog` and `public` are the only schemas.
    let visible = VISIBLE.into_iter().map(|name| {
        create_udf(
            name,
            vec![DataType::Int32],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let oids = ColumnarValue::values_to_arrays(args)?;
                let out: datafusion::arrow::array::BooleanArray = oids[0].as_any().downcast_ref::<Int32Array>().expect("coerced to Int32").iter().map(|o| o.map(|_| true)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        )
    });
    let to_regtype = create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::arrow::compute::cast(&names[0], &DataType::Utf8)?;
            let out: Int32Array = names.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").iter().map(|n| n.and_then(type_oid)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    visible.chain([pretty, to_regtype, get_expr]).collect()
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn type_names_resolve_as_to_regtype_does() {
        use super::type_oid;
        assert_eq!(type_oid("int8"), Some(20));
        assert_eq!(type_oid("timestamp with time zone"), Some(1184));
        assert_eq!(type_oid("pg_catalog.numeric"), Some(1700));
        assert_eq!(type_oid("integer[]"), Some(1007));
        assert_eq!(type_oid("nothing"), None);
    }

    #[test]
    fn sizes_print_as_postgresql_prints_them() {
        // From PostgreSQL 15: SELECT pg_size_pretty(x::bigint).
        for (size, shown) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (1_000_000, "977 kB"),
            (20_970_000, "20 MB"),
            (1 << 30, "1024 MB"),
            (10_000_000_000, "9537 MB"),
            (1 << 40, "1024 GB"),
            (-20_000, "-20 kB"),
        ] {
            assert_eq!(size_pretty(size), shown, "{size}");
        }
    }
}
