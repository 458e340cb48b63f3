//! Which privileges a statement needs, checked before it runs (after its names are
//! qualified): `SELECT` on every relation it reads (queries, `COPY ... TO`, `SUBSCRIBE`,
//! `history()` and `AS OF`, a view's query), `INSERT | UPDATE | DELETE` on what it writes
//! (`COPY ... FROM` inserts), `CREATE` on the schema it creates in, ownership to drop or alter.
//! Roles, grants and secrets are a superuser's.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, FromTable, FunctionArg, FunctionArgExpr, ObjectName, Query, Statement, TableFactor, TableObject, Value, Visit, Visitor};

use super::{denied, superuser_only, Grantable, Privilege};
use crate::database::{object_name, Database};
use crate::error::{SqlError, SqlResult, SqlState};
use crate::parser::{ObjectKind, OcStatement};
use crate::session::SessionVars;

/// Names a statement reads: every relation it names (its `WITH` names aside) and the objects
/// `history('name')` and `AS OF` read.
#[derive(Default)]
struct Reads {
    names: BTreeSet<String>,
    ctes: BTreeSet<String>,
}

impl Visitor for Reads {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|c| c.alias.name.value.to_ascii_lowercase()));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, args: None, .. } => {
                if let Ok(name) = object_name(name) {
                    if !self.ctes.contains(&name) {
                        self.names.insert(name);
                    }
                }
            }
            // `history('t')`, `AS OF` (rewritten to a function of the object's name) and
            // lookups read the object their first argument names.
            TableFactor::Table { args: Some(args), .. } => {
                if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) = args.args.first() {
                    if let Value::SingleQuotedString(object) = &v.value {
                        self.names.insert(object.clone());
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn reads<V: Visit>(node: &V) -> BTreeSet<String> {
    let mut reads = Reads::default();
    let _ = node.visit(&mut reads);
    reads.names
}

impl SessionVars {
    /// The role statements run as: `SET ROLE`'s, else the one the session logged in as
    /// (`None`: the bootstrap superuser).
    pub fn current_role(&self) -> Option<String> {
        match self.get("role") {
            Ok(role) if !role.is_empty() && role != "none" => Some(role.to_string()),
            _ => self.session_user.clone(),
        }
    }
}

impl Database {
    /// Refuses `stmt` with 42501 unless the session's role holds what it needs.
    pub(crate) async fn authorize(&self, vars: &SessionVars, stmt: &OcStatement) -> SqlResult<()> {
        let role = vars.current_role();
        if self.roles.is_superuser(role.as_deref()) {
            return Ok(());
        }
        let role = role.expect("only the bootstrap superuser has no name");
        let catalog = self.catalog.lock().await;
        let kind_of = |name: &str| catalog.get(name).map(|e| e.kind);
        let need = |name: &str, privilege: Privilege| -> SqlResult<()> {
            let Some(kind) = kind_of(name) else { return Ok(()) };
            match self.roles.holds(Some(&role), &Grantable::Relation(name.to_string()), privilege) {
                true => Ok(()),
                false => Err(denied(&role, kind.sql_name(), name, privilege.sql_name())),
            }
        };
        let select_all = |names: BTreeSet<String>| names.iter().try_for_each(|n| need(n, Privilege::Select));
        let create_in = |name: &ObjectName| -> SqlResult<()> {
            let name = object_name(name)?;
            let schema = crate::schemas::split(&name).0.to_string();
            match self.roles.holds(Some(&role), &Grantable::Schema(schema.clone()), Privilege::Create) {
                true => Ok(()),
                false => Err(denied(&role, "schema", &schema, "CREATE")),
            }
        };
        let own = |name: &ObjectName| -> SqlResult<()> {
            let name = object_name(name)?;
            match (kind_of(&name), self.roles.owner(&name)) {
                (None, _) => Ok(()),
                (Some(_), Some(owner)) if owner == role => Ok(()),
                (Some(kind), _) => Err(SqlError::new(SqlState::InsufficientPrivilege, format!("must be owner of {} {}", kind.sql_name(), crate::error::quote(&name)))
                    .with_hint("only its owner or a superuser may drop or alter it")),
            }
        };
        match stmt {
            OcStatement::CreateSource(s) => create_in(&s.name),
            OcStatement::CreateTable(ct, ..) => create_in(&ct.name),
            OcStatement::CreateView(v) => {
                create_in(&v.name)?;
                select_all(reads(&v.query))
            }
            OcStatement::ExplainCreateView(v) => select_all(reads(&v.query)),
            // A view's counters, to whoever may read it; a sink's, to its owner.
            OcStatement::ExplainAnalyze { kind: ObjectKind::Sink, name } => own(name),
            OcStatement::ExplainAnalyze { name, .. } => need(&object_name(name)?, Privilege::Select),
            OcStatement::CreateSink(s) => {
                create_in(&s.view.name)?;
                select_all(reads(&s.view.query))
            }
            OcStatement::CreateSubscription { name, view, .. } => {
                create_in(name)?;
                need(&object_name(view)?, Privilege::Select)
            }
            OcStatement::CreateSecret { .. } | OcStatement::Drop { kind: ObjectKind::Secret, .. } => Err(superuser_only("manage secrets")),
            OcStatement::Drop { names, .. } => names.iter().try_for_each(own),
            OcStatement::AlterHistory { name, .. } => own(name),
            OcStatement::Subscribe(s) | OcStatement::CopySubscribe(s) | OcStatement::DeclareSubscribe { stmt: s, .. } => match &s.object {
                Some(object) => need(&object_name(object)?, Privilege::Select),
                None => select_all(reads(&s.query)),
            },
            // Refused once the client is in COPY mode (`Database::copy_from_allowed`): drivers
            // expect the data to be taken first.
            OcStatement::CopyFrom(_) => Ok(()),
            OcStatement::CopyTo(copy) => select_all(reads(&copy.query)),
            OcStatement::Standard(s) => self.authorize_standard(s, &need, &select_all, &create_in, &own),
            // They check for themselves.
            OcStatement::CreateApiKey { .. } | OcStatement::DropApiKey { .. } | OcStatement::GrantRole { .. } => Ok(()),
            OcStatement::Flush
            | OcStatement::Show(_)
            | OcStatement::ShowStateTables
            | OcStatement::ShowCheckpoints
            | OcStatement::ShowHistory
            | OcStatement::Describe(_)
            | OcStatement::SetVar { .. }
            | OcStatement::ShowVar(_)
            | OcStatement::Fetch { .. }
            | OcStatement::Close(_) => Ok(()),
        }
    }

    /// `COPY t FROM STDIN` needs INSERT on `t`.
    pub(crate) async fn copy_from_allowed(&self, vars: &SessionVars, table: &str) -> SqlResult<()> {
        self.check_privilege(vars.current_role().as_deref(), table, Privilege::Insert).await
    }

    #[allow(clippy::too_many_arguments)]
    fn authorize_standard(
        &self,
        stmt: &Statement,
        need: &dyn Fn(&str, Privilege) -> SqlResult<()>,
        select_all: &dyn Fn(BTreeSet<String>) -> SqlResult<()>,
        create_in: &dyn Fn(&ObjectName) -> SqlResult<()>,
        own: &dyn Fn(&ObjectName) -> SqlResult<()>,
    ) -> SqlResult<()> {
        // What a write reads besides its target needs SELECT; so does its target when the
        // write reads the target's columns (in WHERE, SET or RETURNING), as in PostgreSQL.
        let write = |target: Option<&ObjectName>, privilege: Privilege, reads_target: bool| -> SqlResult<()> {
            let mut read = reads(stmt);
            if let Some(target) = target {
                let target = object_name(target)?;
                need(&target, privilege)?;
                if !reads_target {
                    read.remove(&target);
                }
            }
            select_all(read)
        };
        match stmt {
            Statement::Query(_) | Statement::Explain { .. } => select_all(reads(stmt)),
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => write(Some(name), Privilege::Insert, insert.returning.is_some()),
                _ => write(None, Privilege::Insert, false),
            },
            Statement::Update(update) => {
                let reads_target = update.returning.is_some() || names_columns(update.selection.iter().chain(update.assignments.iter().map(|a| &a.value)));
                match &update.table.relation {
                    TableFactor::Table { name, .. } => write(Some(name), Privilege::Update, reads_target),
                    _ => write(None, Privilege::Update, false),
                }
            }
            Statement::Delete(delete) => {
                let from = match &delete.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t.first(),
                };
                let reads_target = delete.returning.is_some() || names_columns(delete.selection.iter());
                match from.map(|t| &t.relation) {
                    Some(TableFactor::Table { name, .. }) => write(Some(name), Privilege::Delete, reads_target),
                    _ => write(None, Privilege::Delete, false),
                }
            }
            Statement::Truncate(truncate) => truncate.table_names.iter().try_for_each(|t| need(&object_name(&t.name)?, Privilege::Delete)),
            Statement::CreateTable(ct) => create_in(&ct.name),
            Statement::CreateView(v) => {
                create_in(&v.name)?;
                select_all(reads(&v.query))
            }
            Statement::CreateFunction(f) => create_in(&f.name),
            Statement::Drop { names, .. } => names.iter().try_for_each(own),
            Statement::CreateSchema { .. } => Err(superuser_only("create schemas")),
            Statement::CreateRole(_) | Statement::AlterRole { .. } => Err(superuser_only("manage roles")),
            // GRANT, REVOKE and DROP ROLE check for themselves (an owner may grant).
            _ => Ok(()),
        }
    }
}

/// Whether any of `exprs` names a column (an identifier, plain or qualified): what makes a
/// write read its target.
fn names_columns<'a>(mut exprs: impl Iterator<Item = &'a Expr>) -> bool {
    exprs.any(|e| {
        datafusion::sql::sqlparser::ast::visit_expressions(e, |x| match x {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    })
}
