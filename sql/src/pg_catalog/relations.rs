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
    /// A plain view.
    View,
    /// Sources are described as foreign tables: their rows live outside OpenClaw, and are
    /// read (not stored) when a view or a query reads them.
    Source,
}

impl RelKind {
    pub fn code(self) -> &'static str {
        match self {
            RelKind::Table => "r",
            RelKind::MaterializedView => "m",
            RelKind::View => "v",
            RelKind::Source => "f",
        }
    }
}

/// One relation as the catalog tables show it.
#[derive(Debug, Clone)]
pub struct PgRelation {
    pub oid: i32,
    /// Its name in its schema (`relname`).
    pub name: String,
    /// Its schema's OID (`relnamespace`) and name.
    pub namespace: i32,
    pub schema_name: String,
    pub kind: RelKind,
    pub schema: SchemaRef,
    /// Column positions (0-based) of its primary key, if it has one.
    pub primary_key: Vec<usize>,
    /// A view's query; a source's options (`WITH (...)`); nothing for a table.
    pub definition: String,
    /// What `obj_description` and `\d+` show.
    pub comment: Option<String>,
    /// The column families holding its rows and state (none for a source), whose bytes are
    /// its size (`pg_table_size`).
    pub column_families: Vec<String>,
}

impl PgRelation {
    /// The relation an entry of the catalog is, if it is one.
    /// `namespace`: the OID of the entry's schema.
    pub fn of(entry: &Entry, namespace: i32) -> Option<Self> {
        let (kind, primary_key, comment) = match (&entry.kind, &entry.detail) {
            (ObjectKind::Table, Detail::Table { primary_key, .. }) => (RelKind::Table, primary_key.clone().unwrap_or_default(), None),
            // What SHOW SOURCES shows of its options (secrets left out).
            (ObjectKind::Source, Detail::Source { .. }) => (RelKind::Source, vec![], Some(format!("source {}", entry.definition))),
            (ObjectKind::MaterializedView, _) => (RelKind::MaterializedView, vec![], None),
            (ObjectKind::View, _) => (RelKind::View, vec![], None),
            _ => return None,
        };
        let column_families = match &entry.detail {
            Detail::Table { state, .. } => vec![state.cf.to_string()],
            Detail::View(view) => std::iter::once(view.state.cf.to_string()).chain(view.state_tables.iter().flat_map(|t| t.column_families.iter().cloned())).collect(),
            _ => vec![],
        };
        let (schema_name, name) = crate::schemas::split(&entry.name);
        Some(Self {
            oid: object_oid(entry.id)?,
            name: name.to_string(),
            namespace,
            schema_name: schema_name.to_string(),
            kind,
            schema: entry.schema.clone(),
            primary_key,
            definition: entry.definition.clone(),
            comment,
            column_families,
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

    /// A view's query, as `pg_get_viewdef`, `pg_views.definition` and `pg_matviews.definition` give it.
    pub fn view_query(&self) -> Option<String> {
        matches!(self.kind, RelKind::MaterializedView | RelKind::View).then(|| format!(" {};", self.definition))
    }
}

/// The OID of the object with catalog id `id` (a relation's, or a schema's).
pub fn object_oid(id: openclaw_engine::ObjectId) -> Option<i32> {
    i32::try_from(FIRST_USER_OID + OIDS_PER_OBJECT * u32::try_from(id).ok()?).ok()
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
pub struct Relations(Arc<RwLock<Known>>);

#[derive(Debug, Default)]
struct Known {
    /// By catalog name (`t`, `s.t`).
    relations: BTreeMap<String, PgRelation>,
    /// Schemas other than `public`, with their OIDs.
    schemas: BTreeMap<String, i32>,
    /// The roles of `CREATE ROLE`, by name (the bootstrap superuser is not among them).
    roles: BTreeMap<String, PgRole>,
}

/// A role as `pg_roles` and `pg_auth_members` describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct PgRole {
    pub oid: i32,
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    /// The roles it is a member of, by name.
    pub member_of: Vec<String>,
}

impl Relations {
    pub fn insert(&self, entry: &Entry) {
        let mut known = self.0.write().expect("relations lock");
        let namespace = match crate::schemas::split(&entry.name).0 {
            crate::schemas::PUBLIC => PUBLIC_NAMESPACE,
            schema => *known.schemas.get(schema).expect("an object's schema is known before it"),
        };
        if let Some(relation) = PgRelation::of(entry, namespace) {
            known.relations.insert(entry.name.clone(), relation);
        }
    }

    pub fn remove(&self, name: &str) {
        self.0.write().expect("relations lock").relations.remove(name);
    }

    pub fn add_schema(&self, name: &str, id: openclaw_engine::ObjectId) {
        let oid = object_oid(id).expect("catalog ids fit an OID");
        self.0.write().expect("relations lock").schemas.insert(name.to_string(), oid);
    }

    /// Replaces the roles described (kept in step by [`crate::roles::Roles`]).
    pub fn set_roles(&self, roles: Vec<PgRole>) {
        self.0.write().expect("relations lock").roles = roles.into_iter().map(|r| (r.name.clone(), r)).collect();
    }

    /// Every role of `CREATE ROLE`, by name.
    pub fn roles(&self) -> Vec<PgRole> {
        self.0.read().expect("relations lock").roles.values().cloned().collect()
    }

    pub fn remove_schema(&self, name: &str) {
        self.0.write().expect("relations lock").schemas.remove(name);
    }

    /// Every relation, by catalog name.
    pub fn all(&self) -> Vec<PgRelation> {
        self.0.read().expect("relations lock").relations.values().cloned().collect()
    }

    /// Whether a relation has catalog name `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.read().expect("relations lock").relations.contains_key(name)
    }

    /// Every schema as `pg_namespace` lists it: OID and name, the system's first.
    pub fn namespaces(&self) -> Vec<(i32, String)> {
        let system = [(PG_CATALOG_NAMESPACE, "pg_catalog"), (PUBLIC_NAMESPACE, crate::schemas::PUBLIC), (INFORMATION_SCHEMA_NAMESPACE, "information_schema")];
        let known = self.0.read().expect("relations lock");
        system.into_iter().map(|(oid, name)| (oid, name.to_string())).chain(known.schemas.iter().map(|(name, oid)| (*oid, name.clone()))).collect()
    }

    /// The relation whose OID (or whose primary key's index or constraint OID) is `oid`.
    pub fn by_oid(&self, oid: i32) -> Option<PgRelation> {
        if oid < FIRST_USER_OID as i32 {
            return None;
        }
        let base = oid - (oid - FIRST_USER_OID as i32) % OIDS_PER_OBJECT as i32;
        self.0.read().expect("relations lock").relations.values().find(|r| r.oid == base).cloned()
    }
}
