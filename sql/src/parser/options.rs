//! The clauses that carry options: `WITH (key = value, ...)` (dotted keys, as RisingWave's),
//! `FORMAT ... ENCODE ...`, `INCLUDE ...`, where a sink's options start, and `ALTER ... SET |
//! RESET (...)`.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{ObjectKind, OcStatement};
use crate::Options;

/// RisingWave's `INCLUDE partition [AS name]` clauses: connector metadata as columns. The
/// column is named `_<what>` unless named.
pub(super) fn include_clauses(p: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    let mut out = vec![];
    while p.parse_keyword(Keyword::INCLUDE) {
        let what = p.parse_identifier()?.value.to_ascii_lowercase();
        let column = match p.parse_keyword(Keyword::AS) {
            true => p.parse_identifier()?.value,
            false => format!("_{what}"),
        };
        out.push((what, column));
    }
    Ok(out)
}

/// `FORMAT PLAIN ENCODE JSON [(key = value, ...)]`, stored as the options `format`, `encode`
/// and `encode.<key>`.
pub(super) fn format_clause(p: &mut Parser, options: &mut Options) -> Result<(), ParserError> {
    if !p.parse_keyword(Keyword::FORMAT) {
        return Ok(());
    }
    options.insert("format".into(), p.parse_identifier()?.value.to_ascii_lowercase());
    // sqlparser has no ENCODE keyword: match the word.
    match p.peek_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("encode") => {
            p.next_token();
        }
        _ => return p.expected("ENCODE after FORMAT", p.peek_token()),
    }
    options.insert("encode".into(), p.parse_identifier()?.value.to_ascii_lowercase());
    if p.peek_token().token == Token::LParen {
        for (k, v) in with_options(p)? {
            options.insert(format!("encode.{k}"), v);
        }
    }
    Ok(())
}

/// `( key = value, ... )` where a key is a dotted name or a quoted string.
pub(crate) fn with_options(p: &mut Parser) -> Result<Options, ParserError> {
    p.expect_token(&Token::LParen)?;
    let mut options = Options::new();
    loop {
        let key = match p.next_token().token {
            Token::SingleQuotedString(s) => s,
            Token::Word(w) => {
                let mut key = w.value;
                while p.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&p.parse_identifier()?.value);
                }
                key
            }
            _ => return p.expected("an option name", p.peek_token()),
        };
        p.expect_token(&Token::Eq)?;
        let nul = || ParserError::ParserError("an option's value cannot hold a NUL character".into());
        // NUL starts a secret reference (`crate::secrets`), so no literal may hold one.
        let value = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::Number(s, _) if !s.contains('\0') => s,
            // `key = SECRET name`: a reference, opened only when a connector is handed it.
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("secret") && matches!(p.peek_token().token, Token::Word(_)) => {
                let name = super::secret::identifier(p)?;
                if name.contains('\0') {
                    return Err(nul());
                }
                crate::secrets::reference(&name)
            }
            Token::Word(w) if !w.value.contains('\0') => w.value,
            Token::SingleQuotedString(_) | Token::Number(..) | Token::Word(_) => return Err(nul()),
            _ => return p.expected("an option value", p.peek_token()),
        };
        options.insert(key.to_ascii_lowercase(), value);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    Ok(options)
}

/// Index of the last `WITH` followed by `(` outside parentheses.
pub(super) fn sink_options_start(tokens: &[TokenWithSpan]) -> Option<usize> {
    let mut depth = 0i32;
    let mut found = None;
    let significant: Vec<(usize, &Token)> = tokens.iter().enumerate().filter(|(_, t)| !matches!(t.token, Token::Whitespace(_))).map(|(i, t)| (i, &t.token)).collect();
    for (n, (i, t)) in significant.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.keyword == Keyword::WITH && matches!(significant.get(n + 1), Some((_, Token::LParen))) => {
                found = Some(*i)
            }
            _ => {}
        }
    }
    found
}

/// Whether an `ALTER` sets or resets options (`SET (` or `RESET (` outside parentheses).
pub(super) fn alters_options(tokens: &[TokenWithSpan]) -> bool {
    let significant: Vec<&Token> = tokens.iter().map(|t| &t.token).filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    significant.windows(2).any(|w| matches!(w[0], Token::Word(word) if word.keyword == Keyword::SET || word.keyword == Keyword::RESET) && *w[1] == Token::LParen)
}

/// `ALTER <kind> [IF EXISTS] name SET (key = value, ...)` or `RESET (key, ...)`.
pub(super) fn alter_options(p: &mut Parser) -> Result<OcStatement, ParserError> {
    p.expect_keyword(Keyword::ALTER)?;
    let kind = match p.parse_one_of_keywords(&[Keyword::TABLE, Keyword::SOURCE, Keyword::MATERIALIZED]) {
        Some(Keyword::TABLE) => ObjectKind::Table,
        Some(Keyword::SOURCE) => ObjectKind::Source,
        _ => {
            p.expect_keyword(Keyword::VIEW)?;
            ObjectKind::MaterializedView
        }
    };
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?;
    let reset = p.expect_one_of_keywords(&[Keyword::SET, Keyword::RESET])? == Keyword::RESET;
    let options = match reset {
        false => with_options(p)?,
        true => {
            p.expect_token(&Token::LParen)?;
            let mut keys = Options::new();
            loop {
                let mut key = p.parse_identifier()?.value;
                while p.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&p.parse_identifier()?.value);
                }
                keys.insert(key.to_ascii_lowercase(), String::new());
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen)?;
            keys
        }
    };
    if p.peek_token().token != Token::EOF {
        return p.expected("end of statement", p.peek_token());
    }
    Ok(OcStatement::AlterHistory { kind, name, if_exists, options, reset })
}
