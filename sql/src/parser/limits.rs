//! Limits on a statement checked before sqlparser sees it: its length, and the shapes sqlparser
//! 0.62 parses in time exponential in their depth (each refused with 54001 and a hint, in time
//! linear in the statement's tokens). Found by measurement and by the `sql_parse` fuzz target.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{SqlError, SqlState};

/// Deepest nesting of parentheses the parser accepts (sqlparser recurses on it).
pub(crate) const MAX_PARSE_DEPTH: usize = 128;

/// Longest SQL text one query message may carry.
pub const MAX_STATEMENT_BYTES: usize = 16 << 20;

/// Deepest chain of parentheses opened where a table may stand (after `FROM`, `JOIN` or such
/// a parenthesis). sqlparser 0.62 tries each as a derived table, then again as a nested join,
/// so its time doubles with each level (fixed upstream after 0.62, which DataFusion 55 pins:
/// apache/datafusion-sqlparser-rs#2372). 16 levels parse in milliseconds; real queries nest
/// derived tables a few deep.
pub const MAX_TABLE_NESTING: usize = 16;

/// Deepest chain of `INTERVAL <expression>` (an `INTERVAL` not followed by a string literal)
/// nested in another's expression. sqlparser tries each such operand more than one way, so its
/// time grows about thirty-fold with each two levels (found by the `sql_parse` fuzz target: 10
/// levels took 68 s); PostgreSQL's own intervals are `INTERVAL 'text'`, which nest nothing.
pub const MAX_INTERVAL_NESTING: usize = 4;

/// Refuses a statement text longer than [`MAX_STATEMENT_BYTES`] (54000).
pub(crate) fn check_length(sql: &str) -> Result<(), SqlError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("statement too long: {} bytes, more than {} MiB", sql.len(), MAX_STATEMENT_BYTES >> 20))
            .with_hint("split it, or load rows with several INSERTs"));
    }
    Ok(())
}

/// Refuses one statement's tokens that nest deeper than sqlparser parses in reasonable time
/// (54001).
pub(crate) fn check_nesting(tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    if table_nesting(tokens) > MAX_TABLE_NESTING {
        return Err(SqlError::new(SqlState::StatementTooComplex, format!("statement too complex: more than {MAX_TABLE_NESTING} nested parenthesized tables in FROM"))
            .with_hint("use fewer nested parentheses or derived tables, or name parts with WITH"));
    }
    if interval_nesting(tokens) > MAX_INTERVAL_NESTING {
        return Err(SqlError::new(SqlState::StatementTooComplex, format!("statement too complex: more than {MAX_INTERVAL_NESTING} nested INTERVAL expressions"))
            .with_hint("write intervals as INTERVAL '1 day', or compute the expression in a subquery"));
    }
    Ok(())
}

/// The deepest chain of open parentheses that each stand where a table may (see
/// [`MAX_TABLE_NESTING`]): one opened right after `FROM`, `JOIN`, `LATERAL` or another such
/// parenthesis. Linear in the tokens.
fn table_nesting(tokens: &[TokenWithSpan]) -> usize {
    let mut open: Vec<bool> = vec![];
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut previous: Option<&Token> = None;
    for t in tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_))) {
        match &t.token {
            Token::LParen => {
                let table_position = match previous {
                    Some(Token::Word(w)) => matches!(w.keyword, Keyword::FROM | Keyword::JOIN | Keyword::LATERAL),
                    Some(Token::LParen) => open.last().copied().unwrap_or(false),
                    _ => false,
                };
                open.push(table_position);
                if table_position {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
            Token::RParen => {
                if open.pop() == Some(true) {
                    depth -= 1;
                }
            }
            _ => {}
        }
        previous = Some(&t.token);
    }
    deepest
}

/// The deepest chain of `INTERVAL <expression>`s each within the one before (see
/// [`MAX_INTERVAL_NESTING`]): an `INTERVAL` not followed by a string literal opens a level
/// that lasts until the parenthesis it stands in closes. Linear in the tokens.
fn interval_nesting(tokens: &[TokenWithSpan]) -> usize {
    let significant: Vec<&Token> = tokens.iter().map(|t| &t.token).filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    // The parenthesis depth at which each open level started.
    let mut open: Vec<usize> = vec![];
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (i, t) in significant.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.saturating_sub(1);
                while open.last().is_some_and(|d| *d > depth) {
                    open.pop();
                }
            }
            Token::Word(w) if w.keyword == Keyword::INTERVAL && !matches!(significant.get(i + 1), Some(Token::SingleQuotedString(_))) => {
                open.push(depth);
                deepest = deepest.max(open.len());
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;
    use crate::parser::{parse, OpenClawDialect};

    #[test]
    fn nested_tables_in_from_are_refused_before_parsing() {
        let nested = |levels: usize| format!("SELECT count(*) FROM {}(SELECT 1)) d", "(FROM ".repeat(levels));
        let started = std::time::Instant::now();
        let err = parse(&nested(30)).unwrap_err();
        assert_eq!(err.code, SqlState::StatementTooComplex, "{}", err.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // At the limit the parser still answers (with its own error), quickly.
        let started = std::time::Instant::now();
        assert_eq!(parse(&nested(MAX_TABLE_NESTING - 1)).unwrap_err().code, SqlState::SyntaxError);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        // Derived tables nested a few deep, and deep expressions, are fine.
        parse("SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT 1) a) b) c JOIN (SELECT 2) d ON true").unwrap();
        parse(&format!("SELECT {}1{}", "(".repeat(40), ")".repeat(40))).unwrap();
    }

    /// Found by the `sql_parse` fuzz target: ten nested `INTERVAL <expression>`s took 68 s.
    #[test]
    fn nested_interval_expressions_are_refused_at_once() {
        let nested = |n: usize| format!("SELECT {}'1'{}", "length(generate_series(1, interval ".repeat(n), ")".repeat(2 * n));
        let started = std::time::Instant::now();
        let err = parse(&nested(12)).unwrap_err();
        assert_eq!(err.code, SqlState::StatementTooComplex);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(!matches!(parse(&nested(MAX_INTERVAL_NESTING)), Err(e) if e.code == SqlState::StatementTooComplex));
        // Intervals as PostgreSQL writes them, however many, pass; levels close with their
        // parentheses (`interval 1 + interval 2` may nest: sqlparser may read the second in the
        // first's operand).
        assert!(parse(&format!("SELECT {}", vec!["INTERVAL '1 day'"; 50].join(" + "))).is_ok());
        assert_eq!(interval_nesting(&Tokenizer::new(&OpenClawDialect, &format!("SELECT {}", vec!["(interval 1 + interval 2)"; 9].join(" + "))).tokenize_with_location().unwrap()), 2);
    }
}
