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
    visit_expressions_mut, DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Query, Select, SetExpr, TableAlias,
    TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::parser::OpenClawDialect;
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

    /// Flink's legacy group windows first: `GROUP BY k, SESSION(ts, gap)` becomes a group by
    /// the window columns over `SESSION(t, ts, gap, k)`, which the table factor rewrite below
    /// then expands.
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<SqlError> {
        match legacy_group_windows(query.body.as_mut()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

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

/// The window function of a legacy group window call (`SESSION(ts, gap)` in `GROUP BY`), if
/// `e` is one.
fn group_window_call(e: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_lowercase();
    if !matches!(name.as_str(), "tumble" | "hop" | "session") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let args = list.args.iter().map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
        _ => None,
    });
    Some((name, args.collect::<Option<Vec<_>>>()?))
}

/// A column reference without its qualifier, as the window's subquery reads the table itself.
fn unqualified(e: &Expr, func: &str) -> SqlResult<String> {
    match e {
        Expr::Identifier(i) => Ok(i.to_string()),
        Expr::CompoundIdentifier(parts) => Ok(parts.last().map(|i| i.to_string()).unwrap_or_default()),
        _ => Err(SqlError::not_supported(format!("GROUP BY {} over an expression", func.to_ascii_uppercase()))
            .with_hint(format!("group by columns only, or write {}(table, ...) in FROM", func.to_ascii_uppercase()))),
    }
}

/// [`legacy_group_window`] for each `SELECT` of a query's body (the operands of its set
/// operations; a nested query is visited on its own).
fn legacy_group_windows(body: &mut SetExpr) -> SqlResult<()> {
    match body {
        SetExpr::Select(select) => legacy_group_window(select),
        SetExpr::SetOperation { left, right, .. } => {
            legacy_group_windows(left)?;
            legacy_group_windows(right)
        }
        _ => Ok(()),
    }
}

/// Rewrites `SELECT ..., SESSION_START(ts, gap), ... FROM t [AS a] GROUP BY k, SESSION(ts,
/// gap)` (and TUMBLE's and HOP's, Flink's legacy group windows) into a group by the window
/// columns of the window table function over `t`, sessions taken per the other group keys.
fn legacy_group_window(select: &mut Select) -> SqlResult<()> {
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else { return Ok(()) };
    let Some(at) = exprs.iter().position(|e| group_window_call(e).is_some()) else { return Ok(()) };
    let (func, args) = group_window_call(&exprs[at]).expect("found above");
    let single = match select.from.as_slice() {
        [TableWithJoins { relation: TableFactor::Table { name, args: None, alias, .. }, joins }] if joins.is_empty() => Some((name.to_string(), alias.clone())),
        _ => None,
    };
    let Some((table, alias)) = single else {
        return Err(SqlError::not_supported(format!("GROUP BY {}(...) over anything but one table", func.to_ascii_uppercase()))
            .with_hint(format!("write the window table function in FROM: {}", usage(&func).hint.unwrap_or_default())));
    };
    let [ts, params @ ..] = args.as_slice() else { return Err(usage(&func)) };
    let mut call = vec![table.clone(), unqualified(ts, &func)?];
    call.extend(params.iter().map(|p| p.to_string()));
    if func == "session" {
        for (i, e) in exprs.iter().enumerate() {
            if i != at {
                call.push(unqualified(e, &func)?);
            }
        }
    }
    let alias = alias_text(alias, &table);
    select.from[0].relation = parse_query(&format!("{}({}) AS {alias}", func.to_ascii_uppercase(), call.join(", ")))?;
    let column = |name: &str| Expr::Identifier(Ident::new(name));
    exprs.splice(at..=at, [column("window_start"), column("window_end")]);
    let bounds = |e: &mut Expr| {
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_ascii_lowercase();
            let bound = name.strip_prefix(&func).and_then(|rest| match rest {
                "_start" => Some("window_start"),
                "_end" => Some("window_end"),
                _ => None,
            });
            if let Some(bound) = bound {
                *e = column(bound);
            }
        }
        ControlFlow::<()>::Continue(())
    };
    let _ = visit_expressions_mut(&mut select.projection, bounds);
    let _ = visit_expressions_mut(&mut select.having, bounds);
    Ok(())
}

/// `name [(columns)]` of a window's alias (its `AS` is the caller's), else the table's name.
fn alias_text(alias: Option<TableAlias>, table: &str) -> String {
    match alias {
        Some(a) if a.columns.is_empty() => a.name.to_string(),
        Some(a) => format!("{} ({})", a.name, a.columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")),
        None => table.rsplit('.').next().unwrap_or(table).to_string(),
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
    let alias = alias_text(alias, &table);
    let sql = match (func, &args[2..]) {
        ("tumble", [size]) => {
            let bin = format!("date_bin({size}, {ts}, {ORIGIN})");
            format!("SELECT *, {bin} AS window_start, {bin} + {size} AS window_end FROM {table}")
        }
        ("hop", [slide, size]) => hop_sql(&table, &ts, slide, size)?,
        ("session", [gap, keys @ ..]) => session_sql(&table, &ts, gap, keys)?,
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

/// `SESSION(t, ts, gap, key...)`: every row with its session's bounds, sessions taken per
/// key (all rows one partition without keys), as the window functions of
/// `functions/session_window.rs`.
fn session_sql(table: &str, ts: &str, gap: &Expr, keys: &[&Expr]) -> SqlResult<String> {
    let gap_us = interval_micros(gap).ok_or_else(|| literal_interval("SESSION"))?;
    if gap_us <= 0 {
        return Err(SqlError::new(SqlState::InvalidParameterValue, "SESSION window gap must be positive").with_hint(format!("got {gap}")));
    }
    let keys = keys
        .iter()
        .map(|k| match k {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Ok(k.to_string()),
            _ => Err(usage("session")),
        })
        .collect::<SqlResult<Vec<_>>>()?;
    let partition = match keys.is_empty() {
        true => String::new(),
        false => format!("PARTITION BY {} ", keys.join(", ")),
    };
    let over = format!("OVER ({partition}ORDER BY {ts})");
    let (start, end) = (crate::functions::session_window::START, crate::functions::session_window::END);
    Ok(format!("SELECT *, {start}({ts}, {gap}) {over} AS window_start, {end}({ts}, {gap}) {over} AS window_end FROM {table}"))
}

fn relation_name(e: &Expr, func: &str) -> SqlResult<String> {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Ok(e.to_string()),
        _ => Err(usage(func)),
    }
}

fn parse_query(sql: &str) -> SqlResult<TableFactor> {
    let q: Box<Query> = Parser::new(&OpenClawDialect)
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
        "session" => "SESSION(table, time_column, gap [, key_column ...]) or SESSION(TABLE t [PARTITION BY key_column, ...], DESCRIPTOR(time_column), gap)",
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
    // Flink's `PARTITION BY k, ...` (SESSION's keys) goes last in the short form.
    let mut keys = vec![];
    let mut after_table = next(&mut pos)?;
    if is_kw(after_table, Keyword::PARTITION) {
        if !is_kw(next(&mut pos)?, Keyword::BY) {
            return None;
        }
        loop {
            let key = next(&mut pos)?;
            if !matches!(tokens[key].token, Token::Word(_)) {
                return None;
            }
            keys.push(key);
            after_table = next(&mut pos)?;
            let mut peek = pos;
            if tokens[after_table].token != Token::Comma || is_word(next(&mut peek)?, &["descriptor"]) {
                break;
            }
        }
    }
    if tokens[after_table].token != Token::Comma || !is_word(next(&mut pos)?, &["descriptor"]) || tokens[next(&mut pos)?].token != Token::LParen {
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
    let mut out = vec![tokens[func].clone(), tokens[open].clone(), tokens[table].clone(), comma.clone(), tokens[column].clone()];
    out.extend_from_slice(&tokens[rest_start..close]);
    for key in keys {
        out.push(comma.clone());
        out.push(tokens[key].clone());
    }
    out.push(tokens[close].clone());
    Some((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn rewritten(sql: &str) -> String {
        let tokens = Tokenizer::new(&OpenClawDialect, sql).tokenize_with_location().unwrap();
        let tokens = desugar_flink_windows(tokens);
        let mut q = Parser::new(&OpenClawDialect).with_tokens_with_locations(tokens).parse_query().unwrap();
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
    fn session_keys_go_last_in_the_short_form() {
        let a = rewritten("SELECT * FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))");
        let b = rewritten("SELECT * FROM SESSION(bid, date_time, INTERVAL '10' SECOND, bidder, auction)");
        assert_eq!(a, b);
        assert!(a.contains("OVER (PARTITION BY bidder, auction ORDER BY date_time) AS window_end"), "{a}");
    }

    #[test]
    fn legacy_group_windows_become_window_table_functions() {
        let legacy = rewritten(
            "SELECT B.bidder, count(*) AS bid_count, SESSION_START(B.date_time, INTERVAL '10' SECOND) AS starttime, \
             SESSION_END(B.date_time, INTERVAL '10' SECOND) AS endtime FROM bid B GROUP BY B.bidder, SESSION(B.date_time, INTERVAL '10' SECOND)",
        );
        let tvf = rewritten(
            "SELECT B.bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime \
             FROM SESSION(bid, date_time, INTERVAL '10' SECOND, bidder) AS B GROUP BY B.bidder, window_start, window_end",
        );
        assert_eq!(legacy, tvf);
        let tumble = rewritten("SELECT TUMBLE_END(date_time, INTERVAL '10' SECOND), count(*) FROM bid GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND)");
        assert!(tumble.contains("date_bin(INTERVAL '10' SECOND, date_time"), "{tumble}");
        assert!(tumble.contains("GROUP BY window_start, window_end"), "{tumble}");
    }

    #[test]
    fn an_alias_names_the_window_subquery() {
        let q = rewritten("SELECT x.k FROM TUMBLE(b, ts, INTERVAL '10' SECOND) AS x");
        assert!(q.ends_with("FROM b) AS x"), "{q}");
    }

    #[test]
    fn hop_expands_to_one_branch_per_window() {
        let q = rewritten("SELECT * FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)");
        assert_eq!(q.matches("UNION ALL").count(), 4, "{q}");
        assert!(q.contains("INTERVAL '8000000 microseconds' AS window_start"), "{q}");
        assert_eq!(interval_micros(&Parser::new(&OpenClawDialect).try_with_sql("INTERVAL '1 minute'").unwrap().parse_expr().unwrap()), Some(60_000_000));
    }
}
