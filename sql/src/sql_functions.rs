//! `CREATE FUNCTION ... LANGUAGE SQL` and `DROP FUNCTION`: scalar functions whose body is one
//! SQL expression (`RETURN expr`, `AS 'SELECT expr'` or `AS $$ SELECT expr $$`), inlined into
//! the plans that call them ([`crate::functions::sql_defined`]). A function is a catalog entry
//! named [`function_key`], so that views calling it depend on it as on a relation.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, ScalarUDF, Volatility};
use datafusion::sql::sqlparser::ast::{self, CreateFunctionBody, FunctionBehavior, SelectItem, SetExpr, Statement, Value, VisitMut};
use datafusion::sql::sqlparser::parser::Parser;

use crate::parser::OpenClawDialect;
use crate::catalog::{Detail, Entry};
use crate::database::{Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::functions::sql_defined::SqlFunction;
use crate::parser::ObjectKind;

/// Parameters a function may declare (PostgreSQL allows 100).
pub const MAX_FUNCTION_PARAMS: usize = 100;

/// The catalog name of function `name`: apart from relations' names, which it may share.
pub(crate) fn function_key(name: &str) -> String {
    format!("{name}()")
}

/// The functions written in SQL that `plan` calls (subqueries included), by catalog name.
pub(crate) fn functions_called(plan: &LogicalPlan) -> Vec<String> {
    let mut found = vec![];
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.inner().is::<SqlFunction>() {
                        let key = function_key(f.func.name());
                        if !found.contains(&key) {
                            found.push(key);
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

impl Database {
    /// `CREATE [OR REPLACE] FUNCTION name(args) RETURNS type LANGUAGE SQL ...`. `sql`: the
    /// statement as the durable catalog keeps it.
    pub(crate) async fn create_function(&self, f: ast::CreateFunction, sql: &str) -> SqlResult<QueryOutput> {
        const TAG: &str = "CREATE FUNCTION";
        let name = function_name(&f.name)?;
        let key = function_key(&name);
        let mut catalog = self.catalog.lock().await;
        let exists = catalog.get(&key).is_some();
        if exists && f.if_not_exists {
            return Ok(QueryOutput::command(TAG));
        }
        if exists && !f.or_replace {
            return Err(SqlError::new(SqlState::DuplicateFunction, format!("function {name} already exists"))
                .with_hint("functions are told apart by name only here: use CREATE OR REPLACE FUNCTION or another name"));
        }
        if !exists && self.ctx.state().scalar_functions().contains_key(&name) {
            return Err(SqlError::new(SqlState::DuplicateFunction, format!("function {name} already exists as a built-in function")));
        }
        if let Some(d) = catalog.dependents(&key).first().filter(|_| exists) {
            return Err(SqlError::not_supported(format!("cannot replace function {name} because {} {} depends on it", d.kind.sql_name(), quote(&d.name)))
                .with_hint("drop the objects that call it first, or DROP FUNCTION ... CASCADE and create them again"));
        }
        let (function, depends_on) = self.plan_function(&name, &f)?;
        let definition = f.function_body.as_ref().map(body_text).unwrap_or_default();
        if exists {
            self.drop_one(&mut catalog, &key)?;
        }
        let id = catalog.next_id();
        self.persist(id, ObjectKind::Function, &key, sql, Default::default())?;
        self.ctx.register_udf(ScalarUDF::from(function));
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        catalog.insert(Entry { id, name: key, kind: ObjectKind::Function, schema, definition, depends_on, watermark_columns: vec![], detail: Detail::Function });
        tracing::info!(function = %name, "created function");
        Ok(QueryOutput::command(TAG))
    }

    /// The function `f` declares, with the functions its body calls.
    fn plan_function(&self, name: &str, f: &ast::CreateFunction) -> SqlResult<(SqlFunction, Vec<String>)> {
        if let Some(language) = f.language.as_ref().filter(|l| !l.value.eq_ignore_ascii_case("sql")) {
            return Err(SqlError::not_supported(format!("functions in language {} are not supported", language.value)).with_hint("write the function in LANGUAGE SQL"));
        }
        if f.temporary {
            crate::not_supported!("temporary functions are not supported");
        }
        let args = f.args.clone().unwrap_or_default();
        if args.len() > MAX_FUNCTION_PARAMS {
            return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("functions cannot have more than {MAX_FUNCTION_PARAMS} arguments")));
        }
        let state = self.ctx.state();
        let mut params = vec![];
        for (i, arg) in args.iter().enumerate() {
            if arg.default_expr.is_some() || arg.mode.as_ref().is_some_and(|m| !matches!(m, ast::ArgMode::In)) {
                crate::not_supported!("function parameters with defaults or OUT modes are not supported");
            }
            let param = arg.name.as_ref().map_or_else(|| format!("${}", i + 1), crate::schemas::folded_ident);
            if params.iter().any(|(p, _)| *p == param) {
                return Err(SqlError::new(SqlState::InvalidFunctionDefinition, format!("parameter name {} used more than once", quote(&param))));
            }
            params.push((param, self.sql_type(&arg.data_type)?));
        }
        let return_type = match &f.return_type {
            Some(ast::FunctionReturnType::DataType(t)) => self.sql_type(t)?,
            Some(ast::FunctionReturnType::SetOf(_)) => crate::not_supported!("functions returning SETOF are not supported"),
            None => return Err(SqlError::new(SqlState::InvalidFunctionDefinition, "function result type must be specified")),
        };
        let mut body = body_expr(f.function_body.as_ref())?;
        let _ = body.visit(&mut Placeholders(&params));
        let schema = DFSchema::try_from(SqlFunction::params_schema(&params))?;
        let planned = state.create_logical_expr_from_sql_expr(ast::ExprWithAlias { expr: body, alias: None }, &schema)?;
        // Through the analyzer, as a query's expressions are: types coerced, PostgreSQL's
        // arithmetic; what the optimizer later inlines is then ready to run.
        let relation = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation { produce_one_row: false, schema: Arc::new(schema.clone()) });
        let plan = LogicalPlanBuilder::from(relation).project([planned])?.build()?;
        let plan = crate::database::analyzed(&state, plan)?;
        let LogicalPlan::Projection(projection) = &plan else {
            return Err(SqlError::new(SqlState::Internal, "a function body planned to something else"));
        };
        let mut body = projection.expr[0].clone().unalias();
        let body_type = body.get_type(&schema)?;
        if body_type != return_type {
            if !SqlFunction::assignable(&body_type, &return_type) {
                return Err(SqlError::new(SqlState::InvalidFunctionDefinition, format!("return type mismatch in function declared to return {}", crate::types::pg_type_name(&return_type)))
                    .with_detail(format!("Actual return type is {}.", crate::types::pg_type_name(&body_type))));
            }
            body = Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(body), return_type.clone()));
        }
        let volatility = match f.behavior {
            Some(FunctionBehavior::Immutable) => Volatility::Immutable,
            Some(FunctionBehavior::Stable) => Volatility::Stable,
            // PostgreSQL's default.
            Some(FunctionBehavior::Volatile) | None => Volatility::Volatile,
        };
        let depends_on = functions_called(&plan);
        Ok((SqlFunction::new(name.to_string(), params, return_type, body, volatility), depends_on))
    }

    /// The Arrow type of a declared SQL type, as a column of that type gets.
    fn sql_type(&self, declared: &ast::DataType) -> SqlResult<DataType> {
        let mut declared = declared.clone();
        crate::types::normalize_declared_type(&mut declared);
        let cast = ast::Expr::Cast { kind: ast::CastKind::Cast, expr: Box::new(ast::Expr::value(Value::Null)), data_type: declared, array: false, format: None };
        let expr = self.ctx.state().create_logical_expr_from_sql_expr(ast::ExprWithAlias { expr: cast, alias: None }, &DFSchema::empty())?;
        Ok(expr.get_type(&DFSchema::empty())?)
    }

    /// `DROP FUNCTION [IF EXISTS] name[(types)], ... [CASCADE]`.
    pub(crate) async fn drop_functions(&self, drop: ast::DropFunction) -> SqlResult<QueryOutput> {
        let cascade = matches!(drop.drop_behavior, Some(ast::DropBehavior::Cascade));
        let names = drop.func_desc.iter().map(|d| Ok(function_name(&d.name)?)).collect::<SqlResult<Vec<String>>>()?;
        let names: Vec<ast::ObjectName> = names.iter().map(|n| ast::ObjectName::from(vec![ast::Ident::with_quote('"', function_key(n))])).collect();
        self.drop_objects(ObjectKind::Function, &names, drop.if_exists, cascade).await.map(|_| QueryOutput::command("DROP FUNCTION"))
    }
}

/// A function's name, folded; only `public` holds functions.
fn function_name(name: &ast::ObjectName) -> SqlResult<String> {
    match crate::database::object_name(name)? {
        n if n.contains('.') => Err(SqlError::not_supported(format!("functions in schemas other than public are not supported: {name}"))),
        n => Ok(n),
    }
}

/// The one expression of a function's body: `RETURN expr`, or a string holding `SELECT expr`.
fn body_expr(body: Option<&CreateFunctionBody>) -> SqlResult<ast::Expr> {
    let refused = || {
        SqlError::new(SqlState::InvalidFunctionDefinition, "a SQL function's body must be one expression: RETURN expr, or AS 'SELECT expr'")
            .with_hint("functions that read tables or run several statements are not supported; write the query into the view")
    };
    let text = match body {
        Some(CreateFunctionBody::Return(e) | CreateFunctionBody::AsReturnExpr(e)) => return Ok(e.clone()),
        Some(CreateFunctionBody::AsBeforeOptions { body: e, .. } | CreateFunctionBody::AsAfterOptions(e)) => match e {
            ast::Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                Value::DollarQuotedString(d) => d.value.clone(),
                _ => return Err(refused()),
            },
            _ => return Err(refused()),
        },
        _ => return Err(refused()),
    };
    let mut statements = Parser::parse_sql(&OpenClawDialect, &text).map_err(|e| SqlError::new(SqlState::SyntaxError, format!("in the function's body: {e}")))?;
    let (Some(Statement::Query(q)), true) = (statements.pop(), statements.is_empty()) else { return Err(refused()) };
    let SetExpr::Select(select) = *q.body else { return Err(refused()) };
    let plain = select.from.is_empty() && select.selection.is_none() && select.having.is_none() && q.order_by.is_none() && q.limit_clause.is_none();
    match (plain, select.projection.as_slice()) {
        (true, [SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }]) => Ok(e.clone()),
        _ => Err(refused()),
    }
}

/// What `SHOW FUNCTIONS` and `pg_get_functiondef` show of a body.
fn body_text(body: &CreateFunctionBody) -> String {
    match body {
        CreateFunctionBody::Return(e) | CreateFunctionBody::AsReturnExpr(e) => format!("RETURN {e}"),
        CreateFunctionBody::AsBeforeOptions { body: e, .. } | CreateFunctionBody::AsAfterOptions(e) => format!("AS {e}"),
        CreateFunctionBody::AsBeginEnd(b) => format!("BEGIN {} END", b.statements.iter().map(|s| format!("{s};")).collect::<Vec<_>>().join(" ")),
        CreateFunctionBody::AsReturnSelect(s) => format!("AS RETURN {s}"),
    }
}

/// Writes `$n` in a body as the `n`th parameter's column.
struct Placeholders<'a>(&'a [(String, DataType)]);

impl ast::VisitorMut for Placeholders<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> std::ops::ControlFlow<()> {
        if let ast::Expr::Value(v) = expr {
            if let Value::Placeholder(p) = &v.value {
                if let Some((param, _)) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).and_then(|n| self.0.get(n.wrapping_sub(1))) {
                    *expr = ast::Expr::Identifier(ast::Ident::with_quote('"', param.clone()));
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}
