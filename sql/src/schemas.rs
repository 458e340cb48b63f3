//! Schemas, as PostgreSQL's namespaces: `CREATE SCHEMA`, `DROP SCHEMA`, qualified names and
//! the session's `search_path`.
//!
//! Names: an object in `public` is kept under its bare name (`t`), one in another schema
//! under `schema.name` (`s.t`), which is also how DataFusion's table references print and
//! how the HTTP and gRPC fronts name it. Before a statement runs, [`Database::qualify`]
//! writes each unqualified relation it reads as the first one `search_path` finds, and the
//! name it creates in the first schema of the path that exists, as PostgreSQL does; what
//! follows (planning, the catalog) sees only canonical names. The path a `CREATE` ran
//! under is kept in its durable record, so a restart reads the statement the same way.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Query, Statement, TableFactor, TableObject, VisitMut, VisitorMut};
use openclaw_engine::ObjectId;

use crate::catalog::Catalog;
use crate::database::{Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::{ObjectKind, OcStatement};

/// The key under which a durable record keeps the `search_path` its statement ran under.
pub(crate) const SEARCH_PATH_KEY: &str = "search_path";

tokio::task_local! {
    /// The `search_path` of the statement running on this task: what a `CREATE` keeps in
    /// its durable record ([`Database::persist`]).
    static STATEMENT_PATH: Vec<String>;
}

/// Runs `statement` with `path` as its [`STATEMENT_PATH`].
pub(crate) async fn with_path<F: std::future::Future>(path: Vec<String>, statement: F) -> F::Output {
    STATEMENT_PATH.scope(path, statement).await
}

/// The running statement's `search_path` as a durable record keeps it, when it is not the
/// default (`public`): records written before schemas existed have none.
pub(crate) fn statement_path() -> Option<String> {
    STATEMENT_PATH.try_with(|p| (p.as_slice() != [PUBLIC]).then(|| p.iter().map(|s| format!("\"{}\"", s.replace('"', "\"\""))).collect::<Vec<_>>().join(", "))).ok().flatten()
}

datafusion::common::extensions_options! {
    /// The session's settings that OpenClaw's own functions read while a query runs
    /// (`pg_table_is_visible`).
    pub struct SessionSettings {
        /// `search_path`, as `SET` gave it.
        pub search_path: String, default = PUBLIC.to_string()
    }
}

impl datafusion::common::config::ConfigExtension for SessionSettings {
    const PREFIX: &'static str = "openclaw";
}

/// The schema every database has, whose objects go by their bare names.
pub const PUBLIC: &str = "public";

/// Schemas no user object can be created in.
const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// The schemas of a `search_path` value (`public`, `"$user", public`, `'s'`), in order:
/// unquoted names fold to lower case, quoted ones keep theirs.
pub fn parse_search_path(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))) {
            Some(quoted) => quoted.to_string(),
            None => s.to_lowercase(),
        })
        .collect()
}

/// The catalog name of `name` in `schema`.
pub fn qualified(schema: &str, name: &str) -> String {
    if schema == PUBLIC {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

/// The catalog name of a table DataFusion planned (`t`, `public.t` and `openclaw.public.t`
/// are `t`; `s.t` is `s.t`).
pub fn reference_name(reference: &datafusion::common::TableReference) -> String {
    qualified(reference.schema().unwrap_or(PUBLIC), reference.table())
}

/// Catalog name `name` as SQL that names it whatever the path (`"s"."t"`, or `"t"` in
/// `public`): for the statements OpenClaw writes itself (dead-letter tables, histories).
pub fn sql_name(name: &str) -> String {
    let quoted = |part: &str| format!("\"{}\"", part.replace('"', "\"\""));
    match split(name) {
        (PUBLIC, table) => format!("{}.{}", quoted(PUBLIC), quoted(table)),
        (schema, table) => format!("{}.{}", quoted(schema), quoted(table)),
    }
}

/// How DataFusion's catalog knows the object of catalog name `name` (exactly: no folding).
pub fn table_reference(name: &str) -> datafusion::common::TableReference {
    match split(name) {
        (PUBLIC, table) => datafusion::common::TableReference::bare(table),
        (schema, table) => datafusion::common::TableReference::partial(schema, table),
    }
}

/// A catalog name split into its schema and its name in the schema.
pub fn split(name: &str) -> (&str, &str) {
    match name.split_once('.') {
        Some((schema, rest)) => (schema, rest),
        None => (PUBLIC, name),
    }
}

/// An identifier as the catalog keeps it: folded to lower case unless quoted.
/// `ident` as the catalog names it: folded to lower case unless quoted.
pub(crate) fn folded_ident(ident: &Ident) -> String {
    folded(ident)
}

fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn part(name: &ObjectName, i: usize) -> Option<String> {
    name.0.get(i).map(|p| match p {
        ObjectNamePart::Identifier(ident) => folded(ident),
        other => other.to_string(),
    })
}

/// How the names of one statement are resolved: the session's path and what exists.
struct Resolver<'a> {
    path: &'a [String],
    catalog: &'a Catalog,
}

impl Resolver<'_> {
    fn schema_exists(&self, schema: &str) -> bool {
        schema == PUBLIC || self.catalog.schema_id(schema).is_some()
    }

    /// The schema an unqualified `CREATE` puts its object in: the path's first that exists.
    fn creation_schema(&self) -> SqlResult<&str> {
        self.path.iter().map(String::as_str).find(|s| self.schema_exists(s)).ok_or_else(|| {
            SqlError::new(SqlState::InvalidSchemaName, "no schema has been selected to create in")
                .with_hint("SET search_path to a schema that exists, or qualify the name (schema.name)")
        })
    }

    /// `name` as a `CREATE` names its object: in the creation schema when unqualified; a
    /// qualified one's schema must exist.
    fn created(&self, name: &mut ObjectName) -> SqlResult<()> {
        match name.0.len() {
            1 => {
                let schema = self.creation_schema()?.to_string();
                if schema != PUBLIC {
                    name.0.insert(0, ObjectNamePart::Identifier(Ident::with_quote('"', schema)));
                }
                Ok(())
            }
            2 => {
                let schema = part(name, 0).unwrap_or_default();
                if SYSTEM_SCHEMAS.contains(&schema.as_str()) {
                    return Err(SqlError::new(SqlState::InsufficientPrivilege, format!("permission denied to create {}", quote(&name.to_string())))
                        .with_detail(format!("System schema {} is read-only.", quote(&schema))));
                }
                match self.schema_exists(&schema) {
                    true => Ok(()),
                    false => Err(undefined_schema(&schema)),
                }
            }
            _ => Ok(()),
        }
    }

    /// An unqualified `name` that a statement reads, qualified with the first schema of the
    /// path that holds an object of that name. Left as it is when `public` comes first (or
    /// nothing holds it: the error then names it as written).
    fn read(&self, name: &mut ObjectName) {
        let Some(bare) = (name.0.len() == 1).then(|| part(name, 0)).flatten() else { return };
        for schema in self.path {
            if schema == PUBLIC && self.catalog.get(&bare).is_some() {
                return;
            }
            if schema != PUBLIC && self.catalog.schema_id(schema).is_some() && self.catalog.get(&qualified(schema, &bare)).is_some() {
                name.0.insert(0, ObjectNamePart::Identifier(Ident::with_quote('"', schema.clone())));
                return;
            }
        }
    }

    /// A name kept as text (`COPY t FROM STDIN`), resolved as [`Self::read`] does.
    fn read_text(&self, name: &mut String) {
        if name.contains('.') {
            return;
        }
        for schema in self.path {
            if schema == PUBLIC && self.catalog.get(name).is_some() {
                return;
            }
            let candidate = qualified(schema, name);
            if schema != PUBLIC && self.catalog.schema_id(schema).is_some() && self.catalog.get(&candidate).is_some() {
                *name = candidate;
                return;
            }
        }
    }

    fn query(&self, query: &mut Query) {
        let mut visitor = Relations { resolver: self, ctes: HashSet::new() };
        let _ = query.visit(&mut visitor);
    }

    fn statement(&self, stmt: &mut Statement) -> SqlResult<()> {
        match stmt {
            Statement::CreateTable(ct) => return self.created(&mut ct.name),
            Statement::CreateView(v) => {
                self.created(&mut v.name)?;
                self.query(&mut v.query);
                return Ok(());
            }
            Statement::Insert(insert) => {
                if let TableObject::TableName(name) = &mut insert.table {
                    self.read(name);
                }
            }
            _ => {}
        }
        let mut visitor = Relations { resolver: self, ctes: HashSet::new() };
        let _ = stmt.visit(&mut visitor);
        Ok(())
    }
}

/// Qualifies the tables a statement reads (not table functions, not its `WITH` names).
struct Relations<'a> {
    resolver: &'a Resolver<'a>,
    /// Names of common table expressions seen so far, which shadow relations.
    ctes: HashSet<String>,
}

impl VisitorMut for Relations<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|c| folded(&c.alias.name)));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: None, .. } = factor {
            if name.0.len() == 1 && !part(name, 0).is_some_and(|n| self.ctes.contains(&n)) {
                self.resolver.read(name);
            }
        }
        ControlFlow::Continue(())
    }
}

fn undefined_schema(schema: &str) -> SqlError {
    SqlError::new(SqlState::InvalidSchemaName, format!("schema {} does not exist", quote(schema)))
}

impl Database {
    /// Writes the names `stmt` reads and creates as the catalog knows them, under `path`
    /// (the session's `search_path`, or the one a stored `CREATE` ran under).
    pub(crate) async fn qualify(&self, stmt: &mut OcStatement, path: &[String]) -> SqlResult<()> {
        let catalog = self.catalog.lock().await;
        let r = Resolver { path, catalog: &catalog };
        match stmt {
            OcStatement::CreateSource(s) => r.created(&mut s.name)?,
            OcStatement::CreateTable(ct, _, _) => r.created(&mut ct.name)?,
            OcStatement::CreateView(v) | OcStatement::ExplainCreateView(v) => {
                r.created(&mut v.name)?;
                r.query(&mut v.query);
            }
            OcStatement::CreateSink(s) => {
                r.created(&mut s.view.name)?;
                r.query(&mut s.view.query);
            }
            OcStatement::CreateSubscription { name, view, .. } => {
                r.created(name)?;
                r.read(view);
            }
            OcStatement::Describe(name) | OcStatement::AlterHistory { name, .. } | OcStatement::ExplainAnalyze { name, .. } => r.read(name),
            OcStatement::Drop { names, .. } => names.iter_mut().for_each(|n| r.read(n)),
            OcStatement::Subscribe(s) | OcStatement::CopySubscribe(s) | OcStatement::DeclareSubscribe { stmt: s, .. } => {
                if let Some(object) = &mut s.object {
                    r.read(object);
                }
                r.query(&mut s.query);
            }
            OcStatement::CopyFrom(copy) => r.read_text(&mut copy.table),
            OcStatement::CopyTo(copy) => r.query(&mut copy.query),
            OcStatement::Standard(s) => r.statement(s)?,
            _ => {}
        }
        Ok(())
    }

    /// `CREATE SCHEMA [IF NOT EXISTS] name`.
    pub(crate) async fn create_schema(&self, name: &ObjectName, if_not_exists: bool, sql: &str) -> SqlResult<QueryOutput> {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return Err(SqlError::new(SqlState::SyntaxError, format!("improper qualified name (too many dotted names): {name}")));
        };
        let schema = folded(ident);
        let mut catalog = self.catalog.lock().await;
        if schema == PUBLIC || SYSTEM_SCHEMAS.contains(&schema.as_str()) || catalog.schema_id(&schema).is_some() {
            return match if_not_exists {
                true => Ok(QueryOutput::command("CREATE SCHEMA")),
                false => Err(SqlError::new(SqlState::DuplicateSchema, format!("schema {} already exists", quote(&schema)))),
            };
        }
        if schema.starts_with("pg_") {
            return Err(SqlError::new(SqlState::ReservedName, format!("unacceptable schema name {}", quote(&schema)))
                .with_detail("The prefix \"pg_\" is reserved for system schemas."));
        }
        if schema.contains('.') {
            return Err(SqlError::new(SqlState::InvalidSchemaName, format!("schema name {} has a dot, which OpenClaw's names cannot hold", quote(&schema))));
        }
        let id = catalog.next_id();
        self.persist(id, ObjectKind::Schema, &schema, sql, BTreeMap::new())?;
        self.register_schema(&mut catalog, &schema, id)?;
        Ok(QueryOutput::command("CREATE SCHEMA"))
    }

    /// Makes `schema` known to the catalog and to DataFusion's (which plans `schema.t`).
    pub(crate) fn register_schema(&self, catalog: &mut Catalog, schema: &str, id: ObjectId) -> SqlResult<()> {
        let provider = self.ctx.catalog("openclaw").expect("the default catalog exists");
        provider.register_schema(schema, std::sync::Arc::new(MemorySchemaProvider::new()))?;
        catalog.add_schema(schema, id);
        tracing::info!(schema, id, "schema created");
        Ok(())
    }

    /// `DROP SCHEMA [IF EXISTS] name, ... [CASCADE | RESTRICT]`.
    pub(crate) async fn drop_schemas(&self, names: &[ObjectName], if_exists: bool, cascade: bool) -> SqlResult<QueryOutput> {
        let mut catalog = self.catalog.lock().await;
        for name in names {
            let schema = part(name, 0).unwrap_or_default();
            if schema == PUBLIC || SYSTEM_SCHEMAS.contains(&schema.as_str()) {
                return Err(SqlError::new(SqlState::DependentObjectsStillExist, format!("cannot drop schema {} because the system requires it", quote(&schema))));
            }
            let Some(id) = catalog.schema_id(&schema) else {
                if if_exists {
                    continue;
                }
                return Err(undefined_schema(&schema));
            };
            // Histories are not objects of their own here: each goes with its object.
            let inside: Vec<(String, ObjectKind)> = catalog.in_schema(&schema).filter(|e| !crate::history::is_history_sink(e)).map(|e| (e.name.clone(), e.kind)).collect();
            if !inside.is_empty() && !cascade {
                let detail: Vec<String> = inside.iter().map(|(n, k)| format!("{} {} depends on schema {}", k.sql_name(), quote(n), quote(&schema))).collect();
                return Err(SqlError::new(SqlState::DependentObjectsStillExist, format!("cannot drop schema {} because other objects depend on it", quote(&schema)))
                    .with_detail(detail.join("\n"))
                    .with_hint("use DROP ... CASCADE to drop the dependent objects too"));
            }
            // Latest first, with whatever reads them (in this schema or another), and their
            // histories and dead-letter tables, as DROP ... CASCADE of each would.
            let mut doomed: Vec<(ObjectId, String)> = vec![];
            for (name, _) in &inside {
                let entry = catalog.get(name).expect("listed from the catalog");
                doomed.push((entry.id, name.clone()));
                doomed.extend(catalog.dependents(name).iter().filter(|e| !crate::history::is_history_sink(e)).map(|e| (e.id, e.name.clone())));
            }
            doomed.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
            doomed.dedup();
            for (_, name) in doomed {
                self.drop_history(&mut catalog, &name)?;
                self.drop_one(&mut catalog, &name)?;
            }
            crate::durable::remove(&self.store, id)?;
            let provider = self.ctx.catalog("openclaw").expect("the default catalog exists");
            provider.deregister_schema(&schema, true)?;
            catalog.remove_schema(&schema);
            tracing::info!(schema = %schema, "schema dropped");
        }
        Ok(QueryOutput::command("DROP SCHEMA"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_paths_fold_unquoted_names_and_keep_quoted_ones() {
        assert_eq!(parse_search_path("public"), vec!["public"]);
        assert_eq!(parse_search_path("Sales, \"$user\", PUBLIC"), vec!["sales", "$user", "public"]);
        assert_eq!(parse_search_path("'Mixed', \"Quoted\""), vec!["Mixed", "Quoted"]);
        assert_eq!(parse_search_path(""), Vec::<String>::new());
    }

    #[test]
    fn catalog_names_put_public_objects_under_their_bare_names() {
        assert_eq!(qualified("public", "t"), "t");
        assert_eq!(qualified("s", "t"), "s.t");
        assert_eq!(split("s.t"), ("s", "t"));
        assert_eq!(split("t"), ("public", "t"));
        assert_eq!(sql_name("s.t$history"), "\"s\".\"t$history\"");
        assert_eq!(sql_name("Big"), "\"public\".\"Big\"");
    }
}
