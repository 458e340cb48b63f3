//! Window table functions, rewritten into plain SQL before planning, so that a view and the
//! same ad-hoc `SELECT` mean exactly the same thing:
//!
//! - `TUMBLE(t, ts, size)` becomes `(SELECT *, date_bin(size, ts) AS window_start,
//!   date_bin(size, ts) + size AS window_end FROM t) AS t`;
//! - `HOP(t, ts, slide, size)` becomes the `UNION ALL` of `size / slide` such selects, one per
//!   window a row falls in (the latest start, then one slide earlier, and so on);
//! - Flink's `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))` is first reduced to the above.
//!
//! `date_bin` is monotone in `ts`, so a watermark on `ts` carries over to both window columns.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DateTimeField, Expr, FunctionArg, FunctionArgExpr, Query, TableAlias, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{SqlError, SqlResult, SqlState};

/// Most windows one row may fall in under `HOP` (`size / slide`).
pub const MAX_HOP_WINDOWS: i64 = 64;

const ORIGIN: &str = "TIMESTAMP '1970-01-01 00:00:00'";

/// Rewrites every window table function in `node` (a statement or a query).
pub fn rewrite<T: VisitMut>(node: &mut T) -> SqlResult<()> {
    let mut rewriter = Rewriter;
    match node.visit(&mut rewriter) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = SqlError;

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SqlError> {
        let TableFactor::Table { name, args: Some(args), alias, .. } = factor else { return ControlFlow::Continue(()) };
        let func = name.to_string().to_ascii_lowercase();
        if !matches!(func.as_str(), "tumble" | "hop" | "session") {
            return ControlFlow::Continue(());
        }
        match window_subquery(&func, &args.args, alias.take()) {
            Ok(derived) => {
                *factor = derived;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

fn window_subquery(func: &str, args: &[FunctionArg], alias: Option<TableAlias>) -> SqlResult<TableFactor> {
    let args: Vec<&Expr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage(func)),
        })
        .collect::<SqlResult<_>>()?;
    let (table, ts) = match args.as_slice() {
        [t, ts, ..] => (relation_name(t, func)?, ts.to_string()),
        _ => return Err(usage(func)),
    };
    let alias = alias.map(|a| a.to_string()).unwrap_or_else(|| table.rsplit('.').next().unwrap_or(&table).to_string());
    let sql = match (func, &args[2..]) {
        ("tumble", [size]) => {
            let bin = format!("date_bin({size}, {ts}, {ORIGIN})");
            format!("SELECT *, {bin} AS window_start, {bin} + {size} AS window_end FROM {table}")
        }
        ("hop", [slide, size]) => hop_sql(&table, &ts, slide, size)?,
        ("session", _) => {
            return Err(SqlError::not_supported("SESSION windows are not supported yet")
                .with_hint("use TUMBLE or HOP windows"))
        }
        _ => return Err(usage(func)),
    };
    let query = parse_query(&format!("({sql}) AS {alias}"))?;
    Ok(query)
}

fn hop_sql(table: &str, ts: &str, slide: &Expr, size: &Expr) -> SqlResult<String> {
    let slide_us = interval_micros(slide).ok_or_else(|| literal_interval("HOP"))?;
    let size_us = interval_micros(size).ok_or_else(|| literal_interval("HOP"))?;
    if slide_us <= 0 || size_us <= 0 || size_us % slide_us != 0 {
        return Err(SqlError::new(SqlState::InvalidParameterValue, "HOP window size must be a positive multiple of its slide")
            .with_hint(format!("got slide {slide} and size {size}")));
    }
    let windows = size_us / slide_us;
    if windows > MAX_HOP_WINDOWS {
        return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("HOP puts each row in {windows} windows"))
            .with_hint(format!("size / slide may be at most {MAX_HOP_WINDOWS}")));
    }
    let bin = format!("date_bin({slide}, {ts}, {ORIGIN})");
    let branches: Vec<String> = (0..windows)
        .map(|i| {
            let back = i * slide_us;
            let ahead = size_us - back;
            format!(
                "SELECT *, {bin} - INTERVAL '{back} microseconds' AS window_start, \
                 {bin} + INTERVAL '{ahead} microseconds' AS window_end FROM {table}"
            )
        })
        .collect();
    Ok(branches.join(" UNION ALL "))
}

fn relation_name(e: &Expr, func: &str) -> SqlResult<String> {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Ok(e.to_string()),
        _ => Err(usage(func)),
    }
}

fn parse_query(sql: &str) -> SqlResult<TableFactor> {
    let q: Box<Query> = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("SELECT * FROM {sql}"))
        .and_then(|mut p| p.parse_query())
        .map_err(|e| SqlError::new(SqlState::Internal, format!("window rewrite did not parse: {e}")))?;
    let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = *q.body else {
        return Err(SqlError::new(SqlState::Internal, "window rewrite is not a select"));
    };
    Ok(select.from.into_iter().next().map(|t| t.relation).expect("one relation"))
}

/// The length of an `INTERVAL` literal in microseconds, for units up to days.
pub fn interval_micros(e: &Expr) -> Option<i64> {
    let Expr::Interval(iv) = e else { return None };
    let Expr::Value(v) = iv.value.as_ref() else { return None };
    let Value::SingleQuotedString(text) = &v.value else { return None };
    let mut parts = text.split_whitespace();
    let n: f64 = parts.next()?.parse().ok()?;
    let unit = match (parts.next(), &iv.leading_field) {
        (Some(u), None) => u.to_ascii_lowercase(),
        (None, Some(f)) => field_name(f)?.to_string(),
        (None, None) => "second".to_string(),
        _ => return None,
    };
    let unit_us: f64 = match unit.trim_end_matches('s') {
        "microsecond" | "us" => 1.0,
        "millisecond" | "m" => 1e3,
        "second" | "sec" => 1e6,
        "minute" | "min" => 60e6,
        "hour" | "h" => 3600e6,
        "day" | "d" => 86_400e6,
        _ => return None,
    };
    Some((n * unit_us).round() as i64)
}

fn field_name(f: &DateTimeField) -> Option<&'static str> {
    Some(match f {
        DateTimeField::Microsecond | DateTimeField::Microseconds => "microsecond",
        DateTimeField::Millisecond | DateTimeField::Milliseconds => "millisecond",
        DateTimeField::Second | DateTimeField::Seconds => "second",
        DateTimeField::Minute | DateTimeField::Minutes => "minute",
        DateTimeField::Hour | DateTimeField::Hours => "hour",
        DateTimeField::Day | DateTimeField::Days => "day",
        _ => return None,
    })
}

fn usage(func: &str) -> SqlError {
    let form = match func {
        "hop" => "HOP(table, time_column, slide, size)",
        "session" => "SESSION(table, time_column, gap)",
        _ => "TUMBLE(table, time_column, size)",
    };
    SqlError::new(SqlState::SyntaxError, format!("invalid arguments to {}", func.to_ascii_uppercase())).with_hint(format!("use {form}"))
}

fn literal_interval(func: &str) -> SqlError {
    SqlError::not_supported(format!("{func} needs literal intervals"))
        .with_hint("write sizes like INTERVAL '10' SECOND or INTERVAL '2 minutes'")
}

/// Reduces Flink's `TABLE(F(TABLE t, DESCRIPTOR(ts), args…))` to `F(t, ts, args…)` in a
/// statement's tokens, keeping every token's position for error messages.
pub fn desugar_flink_windows(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some((replacement, consumed)) = flink_call(&tokens[i..]) {
            out.extend(replacement);
            i += consumed;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

/// Matches `TABLE ( F ( TABLE t , DESCRIPTOR ( ts ) , … ) )` at the start of `tokens`.
fn flink_call(tokens: &[TokenWithSpan]) -> Option<(Vec<TokenWithSpan>, usize)> {
    let mut pos = 0;
    let next = |pos: &mut usize| -> Option<usize> {
        while matches!(tokens.get(*pos)?.token, Token::Whitespace(_)) {
            *pos += 1;
        }
        *pos += 1;
        Some(*pos - 1)
    };
    let is_kw = |i: usize, kw: Keyword| matches!(&tokens[i].token, Token::Word(w) if w.keyword == kw);
    let is_word = |i: usize, names: &[&str]| matches!(&tokens[i].token, Token::Word(w) if names.iter().any(|n| w.value.eq_ignore_ascii_case(n)));
    let t0 = next(&mut pos)?;
    if !is_kw(t0, Keyword::TABLE) || tokens[next(&mut pos)?].token != Token::LParen {
        return None;
    }
    let func = next(&mut pos)?;
    if !is_word(func, &["tumble", "hop", "session"]) || tokens[next(&mut pos)?].token != Token::LParen {
        return None;
    }
    let open = pos - 1;
    if !is_kw(next(&mut pos)?, Keyword::TABLE) {
        return None;
    }
    let table = next(&mut pos)?;
    if tokens[next(&mut pos)?].token != Token::Comma || !is_word(next(&mut pos)?, &["descriptor"]) || tokens[next(&mut pos)?].token != Token::LParen {
        return None;
    }
    let column = next(&mut pos)?;
    if tokens[next(&mut pos)?].token != Token::RParen {
        return None;
    }
    // The rest of F's arguments, up to F's closing parenthesis, then TABLE's.
    let rest_start = pos;
    let mut depth = 1;
    let close = loop {
        let t = next(&mut pos)?;
        match tokens[t].token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    break t;
                }
            }
            Token::EOF => return None,
            _ => {}
        }
    };
    let outer = next(&mut pos)?;
    if tokens[outer].token != Token::RParen {
        return None;
    }
    let comma = TokenWithSpan { token: Token::Comma, span: tokens[column].span };
    let mut out = vec![tokens[func].clone(), tokens[open].clone(), tokens[table].clone(), comma, tokens[column].clone()];
    out.extend_from_slice(&tokens[rest_start..=close]);
    Some((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn rewritten(sql: &str) -> String {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        let tokens = desugar_flink_windows(tokens);
        let mut q = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(tokens).parse_query().unwrap();
        rewrite(&mut q).unwrap();
        q.to_string()
    }

    #[test]
    fn tumble_and_flink_form_agree() {
        let a = rewritten("SELECT window_start, count(*) FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_start");
        let b = rewritten(
            "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start",
        );
        assert_eq!(a, b);
        assert!(a.contains("date_bin(INTERVAL '10' SECOND, date_time"), "{a}");
    }

    #[test]
    fn hop_expands_to_one_branch_per_window() {
        let q = rewritten("SELECT * FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)");
        assert_eq!(q.matches("UNION ALL").count(), 4, "{q}");
        assert!(q.contains("INTERVAL '8000000 microseconds' AS window_start"), "{q}");
        assert_eq!(interval_micros(&Parser::new(&PostgreSqlDialect {}).try_with_sql("INTERVAL '1 minute'").unwrap().parse_expr().unwrap()), Some(60_000_000));
    }
}
