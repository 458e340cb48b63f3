//! PostgreSQL's catalog, for psql, drivers and BI tools: `pg_catalog`'s tables and the
//! functions their metadata queries call (`format_type`, `pg_table_is_visible`,
//! `has_*_privilege`, `::regclass`, ...), from `datafusion-pg-catalog`, which describes the
//! relations registered in the session context and serves PostgreSQL's own static tables
//! (`pg_type`, `pg_proc`, `pg_am`, ...) as exported from a real server.
//!
//! Those queries are written for PostgreSQL's parser and planner (`OPERATOR(pg_catalog.~)`,
//! `COLLATE pg_catalog.default`, `'t'::regclass`, correlated subqueries in the select list):
//! a query that names the catalog is parsed by the crate's compatibility parser, which
//! rewrites those forms into ones DataFusion plans. Other statements never go through it.

mod functions;
mod procs;
mod relations;
mod tables;
mod visible;

pub use relations::{object_oid, PgRole, Relations};

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use std::sync::OnceLock;

use crate::parser::OpenClawDialect;
use crate::{SqlError, SqlResult, SqlState};

/// The catalog (database) name OpenClaw's relations live in.
pub const CATALOG: &str = "openclaw";

/// The role that owns every object, as `pg_tables` and `pg_matviews` name it.
pub const OWNER_NAME: &str = "postgres";

/// Registers `pg_catalog` and its functions in `ctx`; OpenClaw's relations are described
/// from `relations`, which the catalog keeps.
/// `store`: where relations keep their rows, for their sizes.
pub fn register(ctx: &SessionContext, relations: Relations, store: &openclaw_storage::Store) -> SqlResult<()> {
    datafusion_pg_catalog::setup_pg_catalog(ctx, CATALOG, EmptyContextProvider).map_err(|e| SqlError::from(*e))?;
    let catalog = ctx.catalog(CATALOG).expect("the default catalog exists");
    let inner = catalog.schema("pg_catalog").expect("setup_pg_catalog registered pg_catalog");
    catalog.register_schema("pg_catalog", Arc::new(tables::PgCatalog { inner, relations: relations.clone() }))?;
    for function in functions::all(&relations).into_iter().chain(functions::plain()).chain(procs::describe_functions()).chain([procs::format_type_function(), visible::table_is_visible(&relations)]).chain(functions::sizes(&relations, store)) {
        ctx.register_udf(function);
    }
    Ok(())
}

/// Whether the statement in `tokens` is a query that reads the catalog: a `SELECT` (or
/// `WITH`) naming `pg_catalog`, one of its tables (`pg_class`, ... unqualified, as drivers
/// write them), a `pg_get_*`/`pg_*_is_visible` function or an OID alias type (`regclass`,
/// ...). A user's relation named `pg_something` is not enough: its queries keep OpenClaw's
/// own rewrites (windows, `AS OF`).
pub fn reads_catalog(tokens: &[TokenWithSpan]) -> bool {
    let mut words = tokens.iter().filter_map(|t| match &t.token {
        Token::Word(w) => Some(w),
        _ => None,
    });
    let Some(first) = words.next() else { return false };
    if !matches!(first.keyword, Keyword::SELECT | Keyword::WITH) {
        return false;
    }
    words.any(|w| {
        let v = w.value.to_ascii_lowercase();
        v == "pg_catalog"
            || OID_ALIASES.contains(&v.as_str())
            || datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES.contains(&v.as_str())
            || v.starts_with("pg_get_")
            || v.starts_with("pg_") && v.ends_with("_is_visible")
    })
}

/// The OID alias types whose casts the compatibility parser resolves.
const OID_ALIASES: [&str; 9] = ["regclass", "regtype", "regproc", "regprocedure", "regnamespace", "regrole", "regoper", "regoperator", "regconfig"];

/// Parses one catalog query with the compatibility parser's rewrites.
pub fn parse(text: &str) -> SqlResult<Statement> {
    static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();
    let parser = PARSER.get_or_init(PostgresCompatibilityParser::new);
    let text = rewrite_array_subqueries(&rewrite_expandarray(&system_regclass(text)));
    let mut statements = parser.parse(&text).map_err(|e| SqlError::new(SqlState::SyntaxError, e.to_string()))?;
    aggregate_scalar_subqueries(&mut statements);
    match statements.len() {
        1 => Ok(statements.remove(0)),
        n => Err(SqlError::new(SqlState::SyntaxError, format!("expected one statement, found {n}"))),
    }
}

/// Wraps the value of each scalar subquery that is not aggregated in `max(...)`: catalog
/// queries look one row up that way (psql's `\dT`: `(SELECT c.relkind = 'c' FROM pg_class c
/// WHERE c.oid = t.typrelid)`), which DataFusion plans only as an aggregate. PostgreSQL would
/// fail on a second row; over the catalog's unique OIDs there is at most one.
fn aggregate_scalar_subqueries(statements: &mut [Statement]) {
    use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Expr, GroupByExpr, SelectItem, SetExpr};
    use datafusion::sql::sqlparser::parser::Parser;
    for statement in statements {
        let _ = visit_expressions_mut(statement, |e| {
            let Expr::Subquery(query) = e else { return std::ops::ControlFlow::<()>::Continue(()) };
            if query.limit_clause.is_some() {
                return std::ops::ControlFlow::Continue(());
            }
            let SetExpr::Select(select) = query.body.as_mut() else { return std::ops::ControlFlow::Continue(()) };
            let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty());
            let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] = select.projection.as_mut_slice() else {
                return std::ops::ControlFlow::Continue(());
            };
            if grouped || select.distinct.is_some() || has_aggregate(value) {
                return std::ops::ControlFlow::Continue(());
            }
            if let Ok(wrapped) = Parser::new(&OpenClawDialect).try_with_sql(&format!("max({value})")).and_then(|mut p| p.parse_expr()) {
                *value = wrapped;
            }
            std::ops::ControlFlow::Continue(())
        });
    }
}

/// Whether `expr` calls an aggregate function (or an `ARRAY(...)` rewritten into one).
fn has_aggregate(expr: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
    const AGGREGATES: [&str; 11] = ["count", "sum", "max", "min", "avg", "array_agg", "string_agg", "bool_and", "bool_or", "every", "json_agg"];
    visit_expressions(expr, |e| match e {
        Expr::Function(f) if AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.")) => std::ops::ControlFlow::Break(()),
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

/// Rewrites psql's array constructors over subqueries, which DataFusion lacks:
/// `ARRAY(SELECT x FROM ...)` becomes `coalesce((SELECT array_agg(x) FROM ...), make_array())`
/// (`{}` when the subquery is empty, as psql's `\du` prints "Member of"), and one that reads an
/// options column (`reloptions`, `ftoptions`, `attfdwoptions`, ...) through a set-returning
/// function of the outer row becomes a NULL array: no relation here has options.
fn rewrite_array_subqueries(text: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&OpenClawDialect, text).tokenize() else { return text.to_string() };
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        match array_subquery(&tokens, i) {
            Some(found) if found.reads_options => {
                out.extend(Tokenizer::new(&OpenClawDialect, "CAST(NULL AS TEXT[])").tokenize().expect("a fixed text tokenizes"));
                i = found.close + 1;
            }
            Some(ArraySubquery { select, from: Some(from), close: found_close, .. }) => {
                // `ARRAY (` → `coalesce((`, `SELECT` → `SELECT array_agg(`, `FROM` → `) FROM`,
                // and after the subquery `, make_array())`.
                out.extend(Tokenizer::new(&OpenClawDialect, "coalesce(").tokenize().expect("a fixed text tokenizes"));
                out.push(Token::LParen);
                out.extend(tokens[select..from].iter().cloned().enumerate().flat_map(|(k, t)| {
                    let mut v = vec![t];
                    if k == 0 {
                        v.extend(Tokenizer::new(&OpenClawDialect, " array_agg(").tokenize().expect("a fixed text tokenizes"));
                    }
                    v
                }));
                out.push(Token::RParen);
                out.extend(tokens[from..=found_close].iter().cloned());
                out.extend(Tokenizer::new(&OpenClawDialect, ", make_array())").tokenize().expect("a fixed text tokenizes"));
                i = found_close + 1;
            }
            _ => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out.iter().map(ToString::to_string).collect()
}

/// PostgreSQL's OIDs of its own catalog tables, which clients name as `'pg_class'::regclass`
/// (the `classoid` of a description, say).
const SYSTEM_RELATIONS: [(&str, i32); 12] = [
    ("pg_class", 1259),
    ("pg_attribute", 1249),
    ("pg_type", 1247),
    ("pg_proc", 1255),
    ("pg_namespace", 2615),
    ("pg_constraint", 2606),
    ("pg_index", 2610),
    ("pg_description", 2609),
    ("pg_database", 1262),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_trigger", 2620),
];

/// Writes `'pg_class'::regclass` (or `'pg_catalog.pg_class'`) as PostgreSQL's OID of that
/// catalog table: the crate's rewrite looks names up in `pg_class`, which lists only
/// OpenClaw's relations.
fn system_regclass(text: &str) -> String {
    if !text.to_ascii_lowercase().contains("regclass") {
        return text.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&OpenClawDialect, text).tokenize() else { return text.to_string() };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Token::SingleQuotedString(name) = &tokens[i] {
            let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
            let oid = SYSTEM_RELATIONS.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid);
            let mut it = significant(&tokens, i + 1);
            let cast = it.next().filter(|(_, t)| **t == Token::DoubleColon).and_then(|_| it.next().filter(|(_, t)| is_word(t, "regclass")));
            if let (Some(oid), Some((end, _))) = (oid, cast) {
                out.push_str(&oid.to_string());
                i = end + 1;
                continue;
            }
        }
        out.push_str(&tokens[i].to_string());
        i += 1;
    }
    out
}

/// Rewrites pgJDBC's `getPrimaryKeys` query, which numbers a key's columns with the
/// composite-returning `information_schema._pg_expandarray(i.indkey)` (DataFusion has no
/// composite values): `(_pg_expandarray(k)).n` becomes the position of `a.attnum` in the key,
/// `_pg_expandarray(k)` becomes `a.attnum` for a key column (-1 for another), and `(r.KEYS).x`
/// becomes `r.KEYS`, so the outer `A_ATTNUM = (KEYS).x` keeps the key's columns.
fn rewrite_expandarray(text: &str) -> String {
    if !text.to_ascii_lowercase().contains("_pg_expandarray") {
        return text.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&OpenClawDialect, text).tokenize() else { return text.to_string() };
    let position = |key: &str| format!("array_position(CAST(string_to_array({key}, ' ') AS INT[]), CAST(a.attnum AS INT))");
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some((key, end)) = expandarray_call(&tokens, i, true) {
            out.push_str(&position(&key));
            i = end;
        } else if let Some((key, end)) = expandarray_call(&tokens, i, false) {
            out.push_str(&format!("CASE WHEN {} IS NULL THEN -1 ELSE a.attnum END", position(&key)));
            i = end;
        } else if let Some((field, end)) = composite_field(&tokens, i) {
            out.push_str(&field);
            i = end;
        } else {
            out.push_str(&tokens[i].to_string());
            i += 1;
        }
    }
    out
}

/// The significant tokens from `start` on, with their indexes.
fn significant(tokens: &[Token], start: usize) -> impl Iterator<Item = (usize, &Token)> {
    tokens.iter().enumerate().skip(start).filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// At `start`, `information_schema._pg_expandarray(<key>)` (with `field_n`: wrapped as
/// `(...).n`): the key's text and the index after the match.
fn expandarray_call(tokens: &[Token], start: usize, field_n: bool) -> Option<(String, usize)> {
    let mut it = significant(tokens, start);
    if field_n {
        it.next().filter(|(_, t)| **t == Token::LParen)?;
    }
    it.next().filter(|(_, t)| is_word(t, "information_schema"))?;
    it.next().filter(|(_, t)| **t == Token::Period)?;
    it.next().filter(|(_, t)| is_word(t, "_pg_expandarray"))?;
    let (open, _) = it.next().filter(|(_, t)| **t == Token::LParen)?;
    let (close, _) = it.find(|(_, t)| **t == Token::RParen)?;
    let key: String = tokens[open + 1..close].iter().map(ToString::to_string).collect();
    if !field_n {
        return Some((key, close + 1));
    }
    it.next().filter(|(_, t)| **t == Token::RParen)?;
    it.next().filter(|(_, t)| **t == Token::Period)?;
    let (end, _) = it.next().filter(|(_, t)| is_word(t, "n"))?;
    Some((key, end + 1))
}

/// At `start`, `(<alias>.KEYS).x`: `<alias>.KEYS` and the index after the match.
fn composite_field(tokens: &[Token], start: usize) -> Option<(String, usize)> {
    let mut it = significant(tokens, start);
    it.next().filter(|(_, t)| **t == Token::LParen)?;
    let (_, alias) = it.next().filter(|(_, t)| matches!(t, Token::Word(_)))?;
    it.next().filter(|(_, t)| **t == Token::Period)?;
    it.next().filter(|(_, t)| is_word(t, "keys"))?;
    it.next().filter(|(_, t)| **t == Token::RParen)?;
    it.next().filter(|(_, t)| **t == Token::Period)?;
    let (end, _) = it.next().filter(|(_, t)| is_word(t, "x"))?;
    Some((format!("{alias}.KEYS"), end + 1))
}

/// An `ARRAY ( SELECT ... )` found in the tokens: where its `SELECT`, its own `FROM` (none
/// when it has an `ORDER BY`, which `array_agg` would need inside) and its closing
/// parenthesis are.
struct ArraySubquery {
    select: usize,
    from: Option<usize>,
    close: usize,
    reads_options: bool,
}

fn array_subquery(tokens: &[Token], start: usize) -> Option<ArraySubquery> {
    let is_array = matches!(&tokens[start], Token::Word(w) if w.value.eq_ignore_ascii_case("array"));
    if !is_array {
        return None;
    }
    let mut significant = tokens.iter().enumerate().skip(start + 1).filter(|(_, t)| !matches!(t, Token::Whitespace(_)));
    let (open, _) = significant.next().filter(|(_, t)| **t == Token::LParen)?;
    let (select, _) = significant.next().filter(|(_, t)| matches!(t, Token::Word(w) if w.keyword == Keyword::SELECT))?;
    let (mut depth, mut from, mut ordered, mut reads_options) = (0usize, None, false, false);
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    let from = if ordered { None } else { from };
                    return Some(ArraySubquery { select, from, close: i, reads_options });
                }
            }
            Token::Word(w) if depth == 1 && w.keyword == Keyword::FROM && from.is_none() => from = Some(i),
            Token::Word(w) if depth == 1 && w.keyword == Keyword::ORDER => ordered = true,
            Token::Word(w) if w.value.to_ascii_lowercase().ends_with("options") => reads_options = true,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::rewrite_array_subqueries;

    #[test]
    fn array_subqueries_become_aggregates_and_option_arrays_null() {
        // psql's \du: the roles a role is a member of.
        let du = "SELECT r.rolname, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) as memberof FROM pg_catalog.pg_roles r";
        assert_eq!(
            rewrite_array_subqueries(du),
            "SELECT r.rolname, coalesce((SELECT array_agg( b.rolname )FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid), make_array()) as memberof FROM pg_catalog.pg_roles r"
        );
        // psql's \d of a foreign table: its options, through a function of the outer row.
        let options = "SELECT array_to_string(ARRAY(SELECT quote_ident(option_name) FROM pg_options_to_table(ftoptions)), ', ') FROM f";
        assert_eq!(rewrite_array_subqueries(options), "SELECT array_to_string(CAST(NULL AS TEXT[]), ', ') FROM f");
        // An ordered one stays (array_agg would need the ORDER BY inside); literals stay.
        let ordered = "SELECT ARRAY(SELECT x FROM t ORDER BY x), ARRAY[1, 2]";
        assert_eq!(rewrite_array_subqueries(ordered), ordered);
    }

    #[test]
    fn system_relations_have_their_postgresql_oids() {
        let sql = "SELECT 1 FROM d WHERE d.classoid = 'pg_class'::regclass AND x = 'pg_catalog.pg_type'::regclass AND y = 'mine'::regclass";
        assert_eq!(super::system_regclass(sql), "SELECT 1 FROM d WHERE d.classoid = 1259 AND x = 1247 AND y = 'mine'::regclass");
    }
}
