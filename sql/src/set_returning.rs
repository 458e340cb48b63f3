//! Set-returning functions in a select list, as PostgreSQL runs them: `SELECT x,
//! generate_series(1, x) FROM t` gives one row per element, where DataFusion's
//! `generate_series` is a scalar function returning a list. A select item that is such a call
//! (aliased or not) becomes `unnest(call)`, named as PostgreSQL names it (the function's
//! name) unless aliased; views then maintain it with the unnest operator. Calls nested inside
//! other expressions keep DataFusion's list.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::parser::Parser;

use crate::parser::OpenClawDialect;

/// The functions PostgreSQL returns a set from that DataFusion returns a list from.
const LIST_RETURNING: [&str; 1] = ["generate_series"];

/// Rewrites the set-returning select items of every query in `node`.
pub fn rewrite<T: VisitMut>(node: &mut T) {
    let _ = node.visit(&mut Rewriter);
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        rewrite_body(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

fn rewrite_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => select.projection.iter_mut().for_each(rewrite_item),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_body(left);
            rewrite_body(right);
        }
        _ => {}
    }
}

fn rewrite_item(item: &mut SelectItem) {
    match item {
        SelectItem::UnnamedExpr(e) => {
            let Some((name, unnested)) = unnested(e) else { return };
            *item = SelectItem::ExprWithAlias { expr: unnested, alias: Ident::new(name) };
        }
        SelectItem::ExprWithAlias { expr, .. } => {
            if let Some((_, unnested)) = unnested(expr) {
                *expr = unnested;
            }
        }
        _ => {}
    }
}

/// `unnest(e)` and the function's name, when `e` is a call of a list-returning function.
fn unnested(e: &Expr) -> Option<(String, Expr)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_lowercase();
    if !LIST_RETURNING.contains(&name.as_str()) || f.over.is_some() {
        return None;
    }
    let wrapped = Parser::new(&OpenClawDialect).try_with_sql(&format!("unnest({e})")).ok()?.parse_expr().ok()?;
    Some((name, wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_items_are_unnested() {
        let sql = "SELECT x, generate_series(1, x), generate_series(1, 2) AS g, generate_series(1, 3) + 1 FROM t WHERE x IN (SELECT generate_series(1, 9))";
        let mut stmt = Parser::new(&OpenClawDialect).try_with_sql(sql).unwrap().parse_statement().unwrap();
        rewrite(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT x, unnest(generate_series(1, x)) AS generate_series, unnest(generate_series(1, 2)) AS g, generate_series(1, 3) + 1 FROM t WHERE x IN (SELECT unnest(generate_series(1, 9)) AS generate_series)"
        );
    }
}
