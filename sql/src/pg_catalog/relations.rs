//! What `pg_catalog` says about OpenClaw's own relations: every table, source and
//! materialized view, under a stable OID, kept by the catalog as objects come and go.
//!
//! OIDs: PostgreSQL hands user objects OIDs from 16384 up. An object's OID is derived from
//! its catalog id, which a restart keeps (the durable catalog replays objects under their
//! ids), so a client that cached an OID finds the same relation after a restart. Each id
//! owns three OIDs: the relation, its primary key's index and the primary key constraint.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::{Detail, Entry};
use crate::parser::ObjectKind;

/// The first OID PostgreSQL gives user objects (`FirstNormalObjectId`).
const FIRST_USER_OID: u32 = 16384;
/// OIDs each catalog id owns.
const OIDS_PER_OBJECT: u32 = 3;

/// `pg_namespace` OIDs: `pg_catalog` and `public` have these in every PostgreSQL cluster.
pub const PG_CATALOG_NAMESPACE: i32 = 11;
pub const PUBLIC_NAMESPACE: i32 = 2200;
pub const INFORMATION_SCHEMA_NAMESPACE: i32 = 13183;
/// The bootstrap superuser's role OID, which owns everything here.
pub const OWNER: i32 = 10;

/// `pg_class.relkind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    Table,
    MaterializedView,
    /// Sources are described as foreign tables: their rows live outside OpenClaw, and are
    /// read (not stored) when a view or a query reads them.
    Source,
}

impl RelKind {
    pub fn code(self) -> &'static str {
        match self {
            RelKind::Table => "r",
            RelKind::MaterializedView => "m",
            RelKind::Source => "f",
        }
    }
}

/// One relation as the catalog tables show it.
#[derive(Debug, Clone)]
pub struct PgRelation {
    pub oid: i32,
    pub name: String,
    pub kind: RelKind,
    pub schema: SchemaRef,
    /// Column positions (0-based) of its primary key, if it has one.
    pub primary_key: Vec<usize>,
    /// A view's query; a source's options (`WITH (...)`); nothing for a table.
    pub definition: String,
    /// What `obj_description` and `\d+` show.
    pub comment: Option<String>,
}

impl PgRelation {
    /// The relation an entry of the catalog is, if it is one.
    pub fn of(entry: &Entry) -> Option<Self> {
        let (kind, primary_key, comment) = match (&entry.kind, &entry.detail) {
            (ObjectKind::Table, Detail::Table { primary_key, .. }) => (RelKind::Table, primary_key.clone().unwrap_or_default(), None),
            // What SHOW SOURCES shows of its options (secrets left out).
            (ObjectKind::Source, Detail::Source { .. }) => (RelKind::Source, vec![], Some(format!("source {}", entry.definition))),
            (ObjectKind::MaterializedView, _) => (RelKind::MaterializedView, vec![], None),
            _ => return None,
        };
        let oid = FIRST_USER_OID + OIDS_PER_OBJECT * u32::try_from(entry.id).ok()?;
        Some(Self {
            oid: i32::try_from(oid).ok()?,
            name: entry.name.clone(),
            kind,
            schema: entry.schema.clone(),
            primary_key,
            definition: entry.definition.clone(),
            comment,
        })
    }

    /// Its primary key's index, if it has a primary key.
    pub fn index_oid(&self) -> Option<i32> {
        (!self.primary_key.is_empty()).then_some(self.oid + 1)
    }

    pub fn index_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// Its primary key constraint, if it has a primary key.
    pub fn constraint_oid(&self) -> Option<i32> {
        (!self.primary_key.is_empty()).then_some(self.oid + 2)
    }

    /// `PRIMARY KEY (a, b)`.
    pub fn primary_key_def(&self) -> String {
        let names: Vec<String> = self.primary_key.iter().map(|&i| quote_ident(self.schema.field(i).name())).collect();
        format!("PRIMARY KEY ({})", names.join(", "))
    }

    /// A materialized view's query, as `pg_get_viewdef` and `pg_matviews.definition` give it.
    pub fn view_query(&self) -> Option<String> {
        (self.kind == RelKind::MaterializedView).then(|| format!(" {};", self.definition))
    }
}

/// A name as PostgreSQL's `quote_ident` writes it.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The relations the catalog holds now, shared between the catalog (which updates it) and
/// the `pg_catalog` tables (which read it when a query scans them).
#[derive(Debug, Clone, Default)]
pub struct Relations(Arc<RwLock<BTreeMap<String, PgRelation>>>);

impl Relations {
    pub fn insert(&self, entry: &Entry) {
        if let Some(relation) = PgRelation::of(entry) {
            self.0.write().expect("relations lock").insert(relation.name.clone(), relation);
        }
    }

    pub fn remove(&self, name: &str) {
        self.0.write().expect("relations lock").remove(name);
    }

    /// Every relation, by name.
    pub fn all(&self) -> Vec<PgRelation> {
        self.0.read().expect("relations lock").values().cloned().collect()
    }

    /// The relation whose OID (or whose primary key's index or constraint OID) is `oid`.
    pub fn by_oid(&self, oid: i32) -> Option<PgRelation> {
        if oid < FIRST_USER_OID as i32 {
            return None;
        }
        let base = oid - (oid - FIRST_USER_OID as i32) % OIDS_PER_OBJECT as i32;
        self.0.read().expect("relations lock").values().find(|r| r.oid == base).cloned()
    }
}
