//! `pg_table_is_visible(oid)`: whether a relation can be named without its schema, as psql's
//! listings (`\dt`, `\d` without a pattern) ask. As in PostgreSQL, it is when its schema is on
//! the session's `search_path` (`pg_catalog` always is) and no schema before it on the path
//! holds a relation of the same name.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use super::relations::Relations;
use crate::schemas::{parse_search_path, qualified, SessionSettings, PUBLIC};

#[derive(Debug)]
struct TableIsVisible {
    relations: Relations,
    signature: Signature,
}

impl PartialEq for TableIsVisible {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TableIsVisible {}

impl Hash for TableIsVisible {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "pg_table_is_visible".hash(state);
    }
}

impl ScalarUDFImpl for TableIsVisible {
    fn name(&self) -> &str {
        "pg_table_is_visible"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let path = args.config_options.extensions.get::<SessionSettings>().map_or_else(|| vec![PUBLIC.to_string()], |s| parse_search_path(&s.search_path));
        let oids = args.args[0].to_array(args.number_rows)?;
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int32)?;
        let oids = oids.as_any().downcast_ref::<Int32Array>().expect("cast to Int32");
        let out: BooleanArray = oids.iter().map(|oid| oid.map(|oid| self.visible(oid, &path))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

impl TableIsVisible {
    fn visible(&self, oid: i32, path: &[String]) -> bool {
        // Not one of ours: the system's own relations, in `pg_catalog`.
        let Some(relation) = self.relations.by_oid(oid) else { return true };
        let first = path.iter().find(|schema| self.relations.has(&qualified(schema, &relation.name)));
        first == Some(&relation.schema_name)
    }
}

/// The function, replacing the crate's (which says every relation is visible).
pub fn table_is_visible(relations: &Relations) -> ScalarUDF {
    ScalarUDF::new_from_impl(TableIsVisible { relations: relations.clone(), signature: Signature::exact(vec![DataType::Int32], Volatility::Stable) })
}
