//! The `pg_catalog` tables that describe OpenClaw's relations, built from [`Relations`] when
//! a query scans them; every other `pg_catalog` table is the crate's.
//!
//! Each keeps the crate's schema (PostgreSQL's columns, with the crate's OID metadata that
//! its `::regclass`-style rewrites rely on): the builder fills the columns it knows and gives
//! every other column PostgreSQL's neutral value (0, false, '' or NULL).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use super::relations::{self, PgRelation, PgRole, RelKind, Relations};

/// The tables built here; the rest come from the crate.
const OWN_TABLES: [&str; 14] = [
    "pg_class",
    "pg_namespace",
    "pg_attribute",
    "pg_index",
    "pg_constraint",
    "pg_description",
    "pg_tables",
    "pg_matviews",
    "pg_views",
    "pg_foreign_table",
    "pg_foreign_server",
    "pg_roles",
    "pg_authid",
    "pg_auth_members",
];

/// `pg_class`'s own OID, the `classoid` of a relation's description.
const PG_CLASS_OID: i32 = 1259;
/// The btree access method, which every primary key index claims.
const BTREE_AM: i32 = 403;
/// The heap access method of tables and materialized views.
const HEAP_AM: i32 = 2;
/// The default collation, of text columns.
const DEFAULT_COLLATION: i32 = 100;
/// `varchar`'s type OID.
const VARCHAR_OID: i32 = 1043;
/// The foreign server sources are listed under (psql's `\d` shows it as their server).
const SOURCE_SERVER: i32 = 16383;
const SOURCE_SERVER_NAME: &str = "openclaw";

/// `pg_catalog`: the crate's schema provider, with the tables of [`OWN_TABLES`] built here.
#[derive(Debug)]
pub struct PgCatalog {
    pub inner: Arc<dyn SchemaProvider>,
    pub relations: Relations,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if lower == "pg_proc" {
            return Ok(Some(Arc::new(super::procs::PgProc)));
        }
        if !OWN_TABLES.contains(&lower.as_str()) {
            return self.inner.table(name).await;
        }
        let Some(template) = self.inner.table(&lower).await? else { return Ok(None) };
        let schema = with_missing_columns(&lower, template.schema());
        let batch = match lower.as_str() {
            "pg_namespace" => pg_namespace(&self.relations.namespaces()).finish(&schema)?,
            "pg_roles" | "pg_authid" => roles(&self.relations.roles()).finish(&schema)?,
            "pg_auth_members" => auth_members(&self.relations.roles()).finish(&schema)?,
            _ => build(&lower, &schema, &self.relations.all())?,
        };
        Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// The crate's schema of `table`, as PostgreSQL's where psql needs it to be: with
/// `pg_class.reloptions` and `relacl`, which it lacks, and ACLs as arrays (`aclitem[]`, here
/// `text[]`), which psql passes to `array_to_string`. They are always NULL here.
fn with_missing_columns(table: &str, schema: SchemaRef) -> SchemaRef {
    let text_array = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let mut fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "relacl" | "nspacl" | "reloptions" => Arc::new(Field::new(f.name(), text_array.clone(), true)),
            _ => f.clone(),
        })
        .collect();
    if table == "pg_class" {
        for name in ["reloptions", "relacl"] {
            if schema.column_with_name(name).is_none() {
                fields.push(Arc::new(Field::new(name, text_array.clone(), true)));
            }
        }
    }
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Columns by name, for a table of `rows` rows.
struct Columns {
    rows: usize,
    columns: HashMap<&'static str, ArrayRef>,
}

impl Columns {
    fn new(rows: usize) -> Self {
        Self { rows, columns: HashMap::new() }
    }

    fn int(&mut self, name: &'static str, values: impl IntoIterator<Item = i32>) -> &mut Self {
        let values: Vec<i32> = values.into_iter().collect();
        self.set(name, Arc::new(Int32Array::from(values)))
    }

    fn text(&mut self, name: &'static str, values: impl IntoIterator<Item = Option<String>>) -> &mut Self {
        let values: Vec<Option<String>> = values.into_iter().collect();
        self.set(name, Arc::new(StringArray::from(values)))
    }

    fn flag(&mut self, name: &'static str, values: impl IntoIterator<Item = bool>) -> &mut Self {
        let values: Vec<bool> = values.into_iter().collect();
        self.set(name, Arc::new(BooleanArray::from(values)))
    }

    fn set(&mut self, name: &'static str, array: ArrayRef) -> &mut Self {
        assert_eq!(array.len(), self.rows, "column {name} has one value per row");
        self.columns.insert(name, array);
        self
    }

    /// The batch of `schema`: known columns cast to its types, the others neutral.
    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let arrays = schema
            .fields()
            .iter()
            .map(|f| match self.columns.remove(f.name().as_str()) {
                Some(a) if a.data_type() == f.data_type() => Ok(a),
                Some(a) => Ok(datafusion::arrow::compute::cast(&a, f.data_type())?),
                None => Ok(neutral(f.data_type(), self.rows, f.is_nullable())),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema.clone(), arrays)?)
    }
}

/// PostgreSQL's "nothing here" value of a column: NULL where allowed, else zero, false or ''.
fn neutral(data_type: &DataType, rows: usize, nullable: bool) -> ArrayRef {
    if nullable {
        return new_null_array(data_type, rows);
    }
    match data_type {
        DataType::Int16 => Arc::new(Int16Array::from(vec![0; rows])),
        DataType::Int32 => Arc::new(Int32Array::from(vec![0; rows])),
        DataType::Int64 => Arc::new(Int64Array::from(vec![0; rows])),
        DataType::Float32 => Arc::new(Float32Array::from(vec![0.0; rows])),
        DataType::Float64 => Arc::new(Float64Array::from(vec![0.0; rows])),
        DataType::Boolean => Arc::new(BooleanArray::from(vec![false; rows])),
        DataType::Utf8 => Arc::new(StringArray::from(vec![""; rows])),
        other => new_null_array(other, rows),
    }
}

fn some(s: impl Into<String>) -> Option<String> {
    Some(s.into())
}

fn build(table: &str, schema: &SchemaRef, relations: &[PgRelation]) -> Result<RecordBatch> {
    match table {
        "pg_class" => pg_class(relations),
        "pg_attribute" => pg_attribute(relations),
        "pg_index" => pg_index(relations),
        "pg_constraint" => pg_constraint(relations),
        "pg_description" => pg_description(relations),
        "pg_tables" => pg_tables(relations),
        "pg_matviews" => pg_matviews(relations),
        "pg_views" => pg_views(relations),
        "pg_foreign_table" => pg_foreign_table(relations),
        "pg_foreign_server" => pg_foreign_server(),
        other => unreachable!("{other} is not in OWN_TABLES"),
    }
    .finish(schema)
}

/// A relation or its primary key's index, as `pg_class` rows.
struct ClassRow<'a> {
    oid: i32,
    name: String,
    kind: &'static str,
    columns: usize,
    relation: &'a PgRelation,
}

fn pg_class(relations: &[PgRelation]) -> Columns {
    let mut rows = vec![];
    for r in relations {
        rows.push(ClassRow { oid: r.oid, name: r.name.clone(), kind: r.kind.code(), columns: r.schema.fields().len(), relation: r });
        if let Some(index) = r.index_oid() {
            rows.push(ClassRow { oid: index, name: r.index_name(), kind: "i", columns: r.primary_key.len(), relation: r });
        }
    }
    let mut c = Columns::new(rows.len());
    c.int("oid", rows.iter().map(|r| r.oid))
        .text("relname", rows.iter().map(|r| some(&r.name)))
        .int("relnamespace", rows.iter().map(|r| r.relation.namespace))
        .int("relowner", rows.iter().map(|_| relations::OWNER))
        .int("relam", rows.iter().map(|r| match r.kind {
            "i" => BTREE_AM,
            "f" => 0,
            _ => HEAP_AM,
        }))
        .int("relfilenode", rows.iter().map(|r| r.oid))
        .text("relpersistence", rows.iter().map(|_| some("p")))
        .text("relkind", rows.iter().map(|r| some(r.kind)))
        .set("relnatts", Arc::new(Int16Array::from_iter_values(rows.iter().map(|r| r.columns as i16))))
        .set("reltuples", Arc::new(Float64Array::from(vec![-1.0; rows.len()])))
        .flag("relhasindex", rows.iter().map(|r| r.kind != "i" && r.relation.index_oid().is_some()))
        .flag("relispopulated", rows.iter().map(|_| true))
        .text("relreplident", rows.iter().map(|r| some(if r.kind == "i" { "n" } else { "d" })))
        .text("relpartbound", rows.iter().map(|_| None));
    c
}

fn pg_namespace(spaces: &[(i32, String)]) -> Columns {
    let mut c = Columns::new(spaces.len());
    c.int("oid", spaces.iter().map(|s| s.0)).text("nspname", spaces.iter().map(|s| some(&s.1))).int("nspowner", spaces.iter().map(|_| relations::OWNER));
    c
}

/// PostgreSQL's description of a column type: its OID, length, by-value, alignment,
/// storage.
fn pg_type_of(data_type: &DataType) -> (i32, i16, bool, &'static str, &'static str) {
    use DataType::*;
    match data_type {
        Boolean => (16, 1, true, "c", "p"),
        Int8 | Int16 | UInt8 => (21, 2, true, "s", "p"),
        Int32 | UInt16 => (23, 4, true, "i", "p"),
        Int64 | UInt32 | UInt64 => (20, 8, true, "d", "p"),
        Float16 | Float32 => (700, 4, true, "i", "p"),
        Float64 => (701, 8, true, "d", "p"),
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => (1700, -1, false, "i", "m"),
        Date32 | Date64 => (1082, 4, true, "i", "p"),
        Time32(_) | Time64(_) => (1083, 8, true, "d", "p"),
        Timestamp(_, None) => (1114, 8, true, "d", "p"),
        Timestamp(_, Some(_)) => (1184, 8, true, "d", "p"),
        Interval(_) | Duration(_) => (1186, 16, false, "d", "p"),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => (17, -1, false, "i", "x"),
        List(f) | LargeList(f) | FixedSizeList(f, _) => {
            let element = match f.data_type() {
                Boolean => 1000,
                Int16 => 1005,
                Int32 => 1007,
                Int64 => 1016,
                Float32 => 1021,
                Float64 => 1022,
                Decimal128(..) => 1231,
                Timestamp(_, None) => 1115,
                Timestamp(_, Some(_)) => 1185,
                Date32 => 1182,
                _ => 1009,
            };
            (element, -1, false, "i", "x")
        }
        _ => (25, -1, false, "i", "x"),
    }
}

/// `numeric(p, s)`'s type modifier, as PostgreSQL stores it.
fn typmod(data_type: &DataType) -> i32 {
    match data_type {
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => ((i32::from(*p) << 16) | i32::from(*s as u8)) + 4,
        _ => -1,
    }
}

fn pg_attribute(relations: &[PgRelation]) -> Columns {
    // (relation OID, name, type, number, not null, declared varchar)
    let mut rows: Vec<(i32, String, DataType, i16, bool, Option<Option<u64>>)> = vec![];
    for r in relations {
        for (i, f) in r.schema.fields().iter().enumerate() {
            let not_null = !f.is_nullable() || r.primary_key.contains(&i);
            rows.push((r.oid, f.name().clone(), f.data_type().clone(), i as i16 + 1, not_null, crate::types::declared_varchar(f)));
        }
        if let Some(index) = r.index_oid() {
            for (n, &i) in r.primary_key.iter().enumerate() {
                let f = r.schema.field(i);
                rows.push((index, f.name().clone(), f.data_type().clone(), n as i16 + 1, true, crate::types::declared_varchar(f)));
            }
        }
    }
    let types: Vec<_> = rows.iter().map(|r| if r.5.is_some() { (VARCHAR_OID, -1, false, "i", "x") } else { pg_type_of(&r.2) }).collect();
    let mut c = Columns::new(rows.len());
    c.int("attrelid", rows.iter().map(|r| r.0))
        .text("attname", rows.iter().map(|r| some(&r.1)))
        .int("atttypid", types.iter().map(|t| t.0))
        .int("attstattarget", rows.iter().map(|_| -1))
        .set("attlen", Arc::new(Int16Array::from_iter_values(types.iter().map(|t| t.1))))
        .set("attnum", Arc::new(Int16Array::from_iter_values(rows.iter().map(|r| r.3))))
        .int("attcacheoff", rows.iter().map(|_| -1))
        .int("atttypmod", rows.iter().map(|r| match r.5 {
            // varchar(n): n plus the 4 bytes of the length word, as PostgreSQL stores it.
            Some(Some(n)) => n as i32 + 4,
            _ => typmod(&r.2),
        }))
        .flag("attbyval", types.iter().map(|t| t.2))
        .text("attalign", types.iter().map(|t| some(t.3)))
        .text("attstorage", types.iter().map(|t| some(t.4)))
        .flag("attnotnull", rows.iter().map(|r| r.4))
        .flag("attislocal", rows.iter().map(|_| true))
        .int("attcollation", types.iter().map(|t| if t.0 == 25 || t.0 == VARCHAR_OID { DEFAULT_COLLATION } else { 0 }));
    c
}

fn with_key(relations: &[PgRelation]) -> Vec<&PgRelation> {
    relations.iter().filter(|r| r.index_oid().is_some()).collect()
}

/// `int2vector`'s text: column numbers separated by spaces.
fn attnums(r: &PgRelation, sep: &str) -> String {
    r.primary_key.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(sep)
}

fn pg_index(relations: &[PgRelation]) -> Columns {
    let keyed = with_key(relations);
    let mut c = Columns::new(keyed.len());
    c.int("indexrelid", keyed.iter().filter_map(|r| r.index_oid()))
        .int("indrelid", keyed.iter().map(|r| r.oid))
        .set("indnatts", Arc::new(Int16Array::from_iter_values(keyed.iter().map(|r| r.primary_key.len() as i16))))
        .set("indnkeyatts", Arc::new(Int16Array::from_iter_values(keyed.iter().map(|r| r.primary_key.len() as i16))));
    for name in ["indisunique", "indisprimary", "indimmediate", "indisvalid", "indisready", "indislive"] {
        c.flag(name, keyed.iter().map(|_| true));
    }
    c.text("indkey", keyed.iter().map(|r| some(attnums(r, " "))))
        .text("indcollation", keyed.iter().map(|r| some(vec!["0"; r.primary_key.len()].join(" "))))
        .text("indclass", keyed.iter().map(|r| some(vec!["0"; r.primary_key.len()].join(" "))))
        .text("indoption", keyed.iter().map(|r| some(vec!["0"; r.primary_key.len()].join(" "))));
    c
}

fn pg_constraint(relations: &[PgRelation]) -> Columns {
    let keyed = with_key(relations);
    let mut c = Columns::new(keyed.len());
    c.int("oid", keyed.iter().filter_map(|r| r.constraint_oid()))
        .text("conname", keyed.iter().map(|r| some(r.index_name())))
        .int("connamespace", keyed.iter().map(|r| r.namespace))
        .text("contype", keyed.iter().map(|_| some("p")))
        .flag("convalidated", keyed.iter().map(|_| true))
        .int("conrelid", keyed.iter().map(|r| r.oid))
        .int("conindid", keyed.iter().filter_map(|r| r.index_oid()))
        .text("confupdtype", keyed.iter().map(|_| some(" ")))
        .text("confdeltype", keyed.iter().map(|_| some(" ")))
        .text("confmatchtype", keyed.iter().map(|_| some(" ")))
        .flag("conislocal", keyed.iter().map(|_| true))
        .flag("connoinherit", keyed.iter().map(|_| true))
        .text("conkey", keyed.iter().map(|r| some(format!("{{{}}}", attnums(r, ",")))));
    c
}

fn pg_description(relations: &[PgRelation]) -> Columns {
    let described: Vec<_> = relations.iter().filter_map(|r| Some((r.oid, r.comment.clone()?))).collect();
    let mut c = Columns::new(described.len());
    c.int("objoid", described.iter().map(|d| d.0))
        .int("classoid", described.iter().map(|_| PG_CLASS_OID))
        .int("objsubid", described.iter().map(|_| 0))
        .text("description", described.iter().map(|d| some(&d.1)));
    c
}

fn pg_tables(relations: &[PgRelation]) -> Columns {
    let tables: Vec<_> = relations.iter().filter(|r| r.kind == RelKind::Table).collect();
    let mut c = Columns::new(tables.len());
    c.text("schemaname", tables.iter().map(|r| some(&r.schema_name)))
        .text("tablename", tables.iter().map(|r| some(&r.name)))
        .text("tableowner", tables.iter().map(|_| some(super::OWNER_NAME)))
        .flag("hasindexes", tables.iter().map(|r| r.index_oid().is_some()))
        .flag("hasindex", tables.iter().map(|r| r.index_oid().is_some()));
    c
}

fn pg_matviews(relations: &[PgRelation]) -> Columns {
    let views: Vec<_> = relations.iter().filter(|r| r.kind == RelKind::MaterializedView).collect();
    let mut c = Columns::new(views.len());
    c.text("schemaname", views.iter().map(|r| some(&r.schema_name)))
        .text("matviewname", views.iter().map(|r| some(&r.name)))
        .text("matviewowner", views.iter().map(|_| some(super::OWNER_NAME)))
        .flag("ispopulated", views.iter().map(|_| true))
        .text("definition", views.iter().map(|r| r.view_query()));
    c
}

fn pg_views(relations: &[PgRelation]) -> Columns {
    let views: Vec<_> = relations.iter().filter(|r| r.kind == RelKind::View).collect();
    let mut c = Columns::new(views.len());
    c.text("schemaname", views.iter().map(|r| some(&r.schema_name)))
        .text("viewname", views.iter().map(|r| some(&r.name)))
        .text("viewowner", views.iter().map(|_| some(super::OWNER_NAME)))
        .text("definition", views.iter().map(|r| r.view_query()));
    c
}

fn pg_foreign_table(relations: &[PgRelation]) -> Columns {
    let sources: Vec<_> = relations.iter().filter(|r| r.kind == RelKind::Source).collect();
    let mut c = Columns::new(sources.len());
    c.int("ftrelid", sources.iter().map(|r| r.oid)).int("ftserver", sources.iter().map(|_| SOURCE_SERVER));
    c
}

/// The bootstrap superuser (the owner of every object it created, a superuser that can log
/// in), then every role of `CREATE ROLE`. PostgreSQL's predefined `pg_*` roles are not listed
/// (none of their privileges apply here), and no password is shown (`pg_authid.rolpassword`
/// is NULL, as for a role without one).
fn roles(roles: &[PgRole]) -> Columns {
    let mut c = Columns::new(1 + roles.len());
    c.int("oid", std::iter::once(relations::OWNER).chain(roles.iter().map(|r| r.oid)))
        .text("rolname", std::iter::once(some(super::OWNER_NAME)).chain(roles.iter().map(|r| some(r.name.clone()))))
        .int("rolconnlimit", std::iter::repeat_n(-1, 1 + roles.len()))
        .flag("rolsuper", std::iter::once(true).chain(roles.iter().map(|r| r.superuser)))
        .flag("rolcanlogin", std::iter::once(true).chain(roles.iter().map(|r| r.login)))
        // Members hold their groups' privileges (PostgreSQL's INHERIT).
        .flag("rolinherit", std::iter::repeat_n(true, 1 + roles.len()));
    for flag in ["rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls"] {
        c.flag(flag, std::iter::once(true).chain(roles.iter().map(|r| r.superuser)));
    }
    c
}

/// One row per membership (`GRANT group TO member`), granted by the bootstrap superuser.
fn auth_members(roles: &[PgRole]) -> Columns {
    let oid_of: HashMap<&str, i32> = roles.iter().map(|r| (r.name.as_str(), r.oid)).collect();
    let pairs: Vec<(i32, i32)> = roles.iter().flat_map(|r| r.member_of.iter().filter_map(|g| oid_of.get(g.as_str())).map(move |g| (*g, r.oid))).collect();
    let mut c = Columns::new(pairs.len());
    c.int("roleid", pairs.iter().map(|p| p.0))
        .int("member", pairs.iter().map(|p| p.1))
        .int("grantor", pairs.iter().map(|_| relations::OWNER))
        .flag("admin_option", pairs.iter().map(|_| false))
        .flag("inherit_option", pairs.iter().map(|_| true))
        .flag("set_option", pairs.iter().map(|_| true));
    c
}

fn pg_foreign_server() -> Columns {
    let mut c = Columns::new(1);
    c.int("oid", [SOURCE_SERVER]).text("srvname", [some(SOURCE_SERVER_NAME)]).int("srvowner", [relations::OWNER]);
    c
}
