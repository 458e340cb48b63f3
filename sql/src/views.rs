//! Plain views (`CREATE VIEW v AS ...`), as in PostgreSQL: nothing is stored or runs for one;
//! its query is planned at creation and DataFusion expands that plan wherever the view is
//! read, in ad-hoc queries and in materialized views alike (which then read the view's inputs).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::{CreateView, Query, Statement, TableFactor, Visit, Visitor};

use crate::catalog::{Catalog, Detail, Entry};
use crate::database::{object_name, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;

impl Database {
    /// `CREATE [OR REPLACE] VIEW name [(columns)] AS query`. `sql`: the statement as the
    /// durable catalog keeps it.
    pub(crate) async fn create_plain_view(&self, view: CreateView, sql: &str) -> SqlResult<QueryOutput> {
        const TAG: &str = "CREATE VIEW";
        if view.temporary {
            crate::not_supported!("temporary views are not supported");
        }
        let name = object_name(&view.name)?;
        let mut catalog = self.catalog.lock().await;
        match catalog.get(&name) {
            Some(_) if view.if_not_exists => return Ok(QueryOutput::command(TAG)),
            Some(e) if view.or_replace && e.kind == ObjectKind::View => self.replaceable(&catalog, &name)?,
            _ => {}
        }
        let plan = self.plan_plain_view(&view).await?;
        if catalog.get(&name).is_some() && view.or_replace {
            self.drop_one(&mut catalog, &name)?;
        }
        self.check_new_name(&catalog, &name)?;
        let id = catalog.next_id();
        // Nullable, as a view's columns are in PostgreSQL's catalog.
        let fields: Vec<_> = plan.schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let definition = view.query.to_string();
        let mut depends_on: Vec<String> = relations_read(&view.query).into_iter().filter(|r| catalog.get(r).is_some()).collect();
        depends_on.extend(crate::sql_functions::functions_called(&plan));
        self.ctx.register_table(crate::schemas::table_reference(&name), Arc::new(ViewTable::new(plan, Some(definition.clone()))))?;
        if let Err(e) = self.persist(id, ObjectKind::View, &name, sql, Default::default()) {
            self.ctx.deregister_table(crate::schemas::table_reference(&name))?;
            return Err(e);
        }
        catalog.insert(Entry { id, name: name.clone(), kind: ObjectKind::View, schema, definition, depends_on, watermark_columns: vec![], detail: Detail::PlainView });
        tracing::info!(view = %name, "created view");
        Ok(QueryOutput::command(TAG))
    }

    /// `OR REPLACE` replaces a view only while nothing reads it (PostgreSQL would keep its
    /// dependents when the columns stay; a materialized view over it would need rebuilding).
    fn replaceable(&self, catalog: &Catalog, name: &str) -> SqlResult<()> {
        match catalog.dependents(name).first() {
            Some(d) => Err(SqlError::not_supported(format!("cannot replace view {} because {} {} depends on it", quote(name), d.kind.sql_name(), quote(&d.name)))
                .with_hint("drop the objects that read it first, or DROP VIEW ... CASCADE and create them again")),
            None => Ok(()),
        }
    }

    /// The view's query planned, its columns named as PostgreSQL names them (or as its column
    /// list says).
    async fn plan_plain_view(&self, view: &CreateView) -> SqlResult<LogicalPlan> {
        let mut stmt = Statement::Query(view.query.clone());
        let pg_names = crate::naming::pg_column_names(&stmt);
        crate::naming::alias_unnamed(&mut stmt);
        let plan = self.plan(&self.ctx.state(), stmt).await?;
        let fields = plan.schema().columns();
        if view.columns.len() > fields.len() {
            return Err(SqlError::new(SqlState::SyntaxError, "CREATE VIEW specifies more column names than columns"));
        }
        let names: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, c)| match (view.columns.get(i), pg_names.as_ref().and_then(|n| n.get(i).cloned().flatten())) {
                (Some(declared), _) => crate::schemas::folded_ident(&declared.name),
                (None, Some(pg)) => pg,
                (None, None) => c.name.clone(),
            })
            .collect();
        if let Some(twice) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
            return Err(SqlError::new(SqlState::DuplicateColumn, format!("column {} specified more than once", quote(twice))));
        }
        let columns = fields.into_iter().zip(names).map(|(c, n)| Expr::Column(c).alias(n));
        Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
    }
}

/// The relations `query` reads by name (common table expressions left out), as the catalog
/// names them: what a view depends on.
pub(crate) fn relations_read(query: &Query) -> Vec<String> {
    struct Reads {
        ctes: Vec<String>,
        names: Vec<String>,
    }
    impl Visitor for Reads {
        type Break = ();

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.ctes.extend(with.cte_tables.iter().map(|c| crate::schemas::folded_ident(&c.alias.name)));
            }
            ControlFlow::Continue(())
        }

        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args: None, .. } = factor {
                if let Ok(n) = object_name(name) {
                    if !self.ctes.contains(&n) && !self.names.contains(&n) {
                        self.names.push(n);
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut reads = Reads { ctes: vec![], names: vec![] };
    let _ = query.visit(&mut reads);
    reads.names
}

/// The plain views among what `query` reads: a materialized view over one depends on it
/// (its plan holds the view's expansion, which names only the view's inputs).
pub(crate) fn plain_views_read(catalog: &Catalog, query: &Query) -> Vec<String> {
    relations_read(query).into_iter().filter(|r| catalog.get(r).is_some_and(|e| e.kind == ObjectKind::View)).collect()
}
