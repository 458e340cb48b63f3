//! `SELECT ... FROM t FOR SYSTEM_TIME AS OF <timestamp>` (SQL:2011): the content of table or
//! view `t` at that time, rebuilt from its history (`WITH (history = 'parquet')`, which keeps
//! every change as a row with `_diff` and `_commit_time`).
//!
//! sqlparser reads the clause only in dialects other than PostgreSQL's, so [`desugar`] rewrites
//! it on the tokens into a call of the table function `history_as_of('t', <timestamp>) AS t`,
//! which [`AsOfFunction`] plans as: the history's rows committed at or before the time,
//! grouped by every column with the sum of their `_diff`, each group repeated that many times
//! (a table without a primary key can hold equal rows). The time is evaluated once, when the
//! query is planned (`now() - interval '1 hour'` works), as a `timestamptz`; its resolution is
//! the history's, a millisecond.
//!
//! What the history holds is what its sink has committed, at the last checkpoint: changes
//! younger than that are not seen yet. A history with a retention has lost the changes that
//! built its oldest rows, so `AS OF` refuses it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::logical_expr::{col, lit, Expr, LogicalPlanBuilder};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};
use openclaw_connectors::parquet::{COMMIT_TIME_COLUMN, DIFF_COLUMN};

use crate::parser::OpenClawDialect;
use crate::error::{SqlError, SqlState};
use crate::history::ParquetSinks;

/// The table function `FOR SYSTEM_TIME AS OF` becomes.
pub(crate) const FUNCTION: &str = "history_as_of";

/// Rewrites each `name FOR SYSTEM_TIME AS OF <expr> [[AS] alias]` in `tokens` into
/// `history_as_of('name', <expr>) [AS] alias` (aliased `name` when no alias is given, so that
/// the query's qualified columns still resolve); `AS OF PROCTIME()`, a temporal join's, into
/// `temporal_lookup('name') [AS] alias` ([`crate::lookup_join`]).
pub(crate) fn desugar(mut tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, ParserError> {
    while let Some((name_start, expr_start)) = find_clause(&tokens) {
        let name: Vec<String> = tokens[name_start..]
            .iter()
            .take_while(|t| !matches!(&t.token, Token::Word(w) if w.keyword == Keyword::FOR))
            .filter_map(|t| match &t.token {
                Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
                Token::Word(w) => Some(w.value.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let dialect = OpenClawDialect;
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens[expr_start..].to_vec());
        let expr = parser.parse_expr()?;
        let expr_end = expr_start + parser.index();
        let aliased = matches!(significant_after(&tokens, expr_end), Some(Token::Word(w)) if w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword);
        let mut call = match is_proctime(&expr) {
            true => vec![Token::make_word(crate::lookup_join::FUNCTION, None), Token::LParen, Token::SingleQuotedString(name.join("."))],
            false => {
                let mut call = vec![Token::make_word(FUNCTION, None), Token::LParen, Token::SingleQuotedString(name.join(".")), Token::Comma];
                call.extend(tokens[expr_start..expr_end].iter().map(|t| t.token.clone()));
                call
            }
        };
        call.push(Token::RParen);
        if !aliased {
            let last = name.last().cloned().unwrap_or_default();
            call.extend([Token::Whitespace(Whitespace::Space), Token::make_keyword("AS"), Token::Whitespace(Whitespace::Space), Token::make_word(&last, Some('"'))]);
        }
        tokens.splice(name_start..expr_end, call.into_iter().map(TokenWithSpan::wrap));
    }
    Ok(tokens)
}

/// Whether `expr` is `PROCTIME()`: the processing time of each row, a temporal join's.
fn is_proctime(expr: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments};
    let Expr::Function(f) = expr else { return false };
    let no_args = match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    no_args && f.name.to_string().eq_ignore_ascii_case("proctime")
}

/// The first `FOR SYSTEM_TIME AS OF` after a name: where the name starts and where the
/// expression after `OF` does.
fn find_clause(tokens: &[TokenWithSpan]) -> Option<(usize, usize)> {
    let significant: Vec<usize> = (0..tokens.len()).filter(|i| !matches!(tokens[*i].token, Token::Whitespace(_))).collect();
    let is = |n: usize, kw: Keyword| matches!(significant.get(n).map(|i| &tokens[*i].token), Some(Token::Word(w)) if w.keyword == kw);
    let at = (1..significant.len()).find(|&n| is(n, Keyword::FOR) && is(n + 1, Keyword::SYSTEM_TIME) && is(n + 2, Keyword::AS) && is(n + 3, Keyword::OF))?;
    // The name: words joined by periods, back from `FOR`.
    let mut first = at - 1;
    while first >= 2 && tokens[significant[first - 1]].token == Token::Period && matches!(tokens[significant[first - 2]].token, Token::Word(_)) {
        first -= 2;
    }
    if !matches!(tokens[significant[first]].token, Token::Word(_)) {
        return None;
    }
    Some((significant[first], significant[at + 3] + 1))
}

fn significant_after(tokens: &[TokenWithSpan], from: usize) -> Option<&Token> {
    tokens[from..].iter().map(|t| &t.token).find(|t| !matches!(t, Token::Whitespace(_)))
}

/// `history_as_of('name', timestamp)`: the content of `name` at `timestamp`, from its history.
pub(crate) struct AsOfFunction(pub(crate) ParquetSinks);

impl std::fmt::Debug for AsOfFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsOfFunction")
    }
}

fn user_error(error: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

impl TableFunctionImpl for AsOfFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let (name, time) = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _), time] => (name.clone(), time),
            _ => {
                return Err(user_error(
                    SqlError::new(SqlState::UndefinedFunction, "history_as_of() takes the name of an object with history, as a string, and a timestamp")
                        .with_hint("or write SELECT ... FROM t FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2026-01-01 00:00:00+00'"),
                ))
            }
        };
        let Some(files) = self.0.find(&name) else {
            if !exists(args.session(), &name) {
                return Err(user_error(SqlError::new(SqlState::UndefinedTable, format!("relation \"{name}\" does not exist"))));
            }
            return Err(user_error(
                SqlError::new(SqlState::FeatureNotSupported, format!("relation \"{name}\" has no history, so FOR SYSTEM_TIME AS OF cannot rebuild it"))
                    .with_hint(format!("keep its history: ALTER TABLE {name} SET (history = 'parquet') (from then on)")),
            ));
        };
        if let Some(retention_ms) = files.retention_ms {
            return Err(user_error(
                SqlError::new(SqlState::FeatureNotSupported, format!("the history of \"{name}\" has a retention ({} s), so it no longer holds the changes that built its oldest rows", retention_ms / 1000))
                    .with_hint("FOR SYSTEM_TIME AS OF needs a history without history.retention; history('name') reads what is kept"),
            ));
        }
        let at_ms = evaluate_time(time, args.session())?;
        let history = Arc::new(crate::history_scan::HistoryTable::new(files.clone()));
        let columns: Vec<Expr> = files.schema.fields().iter().map(|f| f.name()).filter(|n| *n != DIFF_COLUMN && *n != COMMIT_TIME_COLUMN).map(|n| col(datafusion::common::Column::from_name(n))).collect();
        let mut filter = col(COMMIT_TIME_COLUMN).lt_eq(lit(ScalarValue::TimestampMillisecond(Some(at_ms), None)));
        if files.partitioning.columns().contains(&"date") {
            // Partitions are by commit date: later days are not opened.
            let day = chrono::DateTime::from_timestamp_millis(at_ms).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default();
            filter = filter.and(col("date").lt_eq(lit(day)));
        }
        let copies = datafusion::functions_nested::expr_fn::array_repeat(lit(true), col("_n"));
        let mut with_copies = columns.clone();
        with_copies.push(copies.alias("_copies"));
        let plan = LogicalPlanBuilder::scan(name.as_str(), provider_as_source(history), None)?
            .filter(filter)?
            .aggregate(columns.clone(), vec![datafusion::functions_aggregate::expr_fn::sum(col(DIFF_COLUMN)).alias("_n")])?
            .filter(col("_n").gt(lit(0i64)))?
            .project(with_copies)?
            .unnest_column("_copies")?
            .project(columns)?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// Whether the session knows a relation `name`.
fn exists(session: &dyn datafusion::catalog::Session, name: &str) -> bool {
    let Some(state) = session.as_any().downcast_ref::<datafusion::execution::context::SessionState>() else { return true };
    let reference = datafusion::common::TableReference::from(name);
    state.schema_for_ref(reference.clone()).map(|schema| schema.table_exist(reference.table())).unwrap_or(true)
}

/// The time of `AS OF`, in milliseconds since the epoch: `expr` evaluated once, as a
/// `timestamptz` (a timestamp without time zone is taken as UTC).
fn evaluate_time(expr: &Expr, session: &dyn datafusion::catalog::Session) -> datafusion::error::Result<i64> {
    let as_time = Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(expr.clone()), DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))));
    let refused = |detail: String| {
        user_error(SqlError::new(SqlState::InvalidParameterValue, "FOR SYSTEM_TIME AS OF takes a timestamp").with_detail(detail).with_hint("e.g. FOR SYSTEM_TIME AS OF now() - interval '1 hour'"))
    };
    let physical = session.create_physical_expr(as_time, &DFSchema::empty()).map_err(|e| refused(e.to_string()))?;
    let one_row = RecordBatch::try_new_with_options(Arc::new(datafusion::arrow::datatypes::Schema::empty()), vec![], &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)))?;
    let value = physical.evaluate(&one_row).and_then(|v| v.into_array(1)).map_err(|e| refused(e.to_string()))?;
    let times = value.as_any().downcast_ref::<datafusion::arrow::array::TimestampMillisecondArray>().ok_or_else(|| refused(format!("got {}", value.data_type())))?;
    if times.is_null(0) {
        return Err(refused("the timestamp is NULL".into()));
    }
    Ok(times.value(0))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let tokens = Tokenizer::new(&OpenClawDialect, sql).tokenize_with_location().unwrap();
        desugar(tokens).unwrap().iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn the_clause_becomes_a_call_aliased_as_the_table() {
        assert_eq!(
            rewritten("SELECT t.k FROM T FOR SYSTEM_TIME AS OF now() - interval '1 hour' WHERE k > 1"),
            "SELECT t.k FROM history_as_of('t', now() - interval '1 hour') AS \"t\" WHERE k > 1"
        );
    }

    #[test]
    fn an_alias_a_quoted_name_and_two_clauses_are_kept() {
        assert_eq!(
            rewritten("SELECT * FROM s.\"My T\" FOR SYSTEM_TIME AS OF TIMESTAMP '2026-01-01' AS a JOIN u FOR SYSTEM_TIME AS OF '2026-01-02' b ON a.k = b.k"),
            "SELECT * FROM history_as_of('s.My T', TIMESTAMP '2026-01-01') AS a JOIN history_as_of('u', '2026-01-02') b ON a.k = b.k"
        );
    }

    #[test]
    fn other_statements_are_left_as_they_are() {
        assert_eq!(rewritten("SELECT 1 FROM t FOR UPDATE"), "SELECT 1 FROM t FOR UPDATE");
    }
}
