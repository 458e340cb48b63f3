//! `WATERMARK FOR column AS column - INTERVAL '...'` in `CREATE TABLE | SOURCE`: RisingWave's
//! (and Flink's) clause, which sqlparser does not know, cut out of the column list before
//! sqlparser sees it.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{words, OpenClawDialect, WatermarkDecl};

/// Cuts `, WATERMARK FOR col AS expr` out of a column list (sqlparser does not know it).
pub(super) fn extract_watermark(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, Option<WatermarkDecl>), ParserError> {
    let w = words(&tokens, 2);
    if !(w.len() == 2 && w[0] == "CREATE" && (w[1] == "TABLE" || w[1] == "SOURCE")) {
        return Ok((tokens, None));
    }
    let next_word = |i: usize| tokens[i + 1..].iter().find(|t| !matches!(t.token, Token::Whitespace(_)));
    let is_watermark = |(i, t): &(usize, &TokenWithSpan)| {
        matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("watermark"))
            && matches!(next_word(*i).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::FOR)
    };
    let Some((start, _)) = tokens.iter().enumerate().find(is_watermark) else { return Ok((tokens, None)) };
    // The clause runs to the next comma or closing parenthesis at its own depth.
    let mut depth = 0i32;
    let mut end = tokens.len();
    for (i, t) in tokens.iter().enumerate().skip(start) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => {
                end = i;
                break;
            }
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let clause: Vec<TokenWithSpan> = tokens[start..end].to_vec();
    // Drop the comma before the clause (or after it, when the clause comes first).
    let before = tokens[..start].iter().rposition(|t| !matches!(t.token, Token::Whitespace(_)));
    let (cut_from, cut_to) = match before {
        Some(b) if tokens[b].token == Token::Comma => (b, end),
        _ if end < tokens.len() && tokens[end].token == Token::Comma => (start, end + 1),
        _ => (start, end),
    };
    let mut rest = tokens[..cut_from].to_vec();
    rest.extend_from_slice(&tokens[cut_to..]);
    let dialect = OpenClawDialect;
    let mut p = Parser::new(&dialect).with_tokens_with_locations(clause);
    p.next_token(); // WATERMARK
    p.expect_keyword(Keyword::FOR)?;
    let column = p.parse_identifier()?.value;
    p.expect_keyword(Keyword::AS)?;
    let expr = p.parse_expr()?;
    let delay_us = match &expr {
        Expr::Identifier(id) if id.value == column => 0,
        Expr::BinaryOp { left, op: BinaryOperator::Minus, right } if matches!(left.as_ref(), Expr::Identifier(id) if id.value == column) => {
            crate::windows::interval_micros(right)
                .filter(|d| *d >= 0)
                .ok_or_else(|| ParserError::ParserError(format!("watermark delay must be a literal interval, found {right}")))?
        }
        _ => {
            return Err(ParserError::ParserError(format!(
                "watermark must be \"{column}\" or \"{column}\" - INTERVAL '...', found {expr}"
            )))
        }
    };
    Ok((rest, Some(WatermarkDecl { column, delay_us })))
}
