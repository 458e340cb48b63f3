//! `COPY name [(columns)] FROM STDIN [[WITH] (options)]`, `COPY name [(columns)] | (query)
//! TO STDOUT [[WITH] (options)]`, and the options psql's `\copy` writes in the older form
//! (`CSV HEADER`, `DELIMITER ';'`, `NULL 'x'`).
//!
//! Options: `FORMAT text | csv`, `HEADER [true | false]`, `DELIMITER 'c'`, `NULL 'x'` (text
//! format), and `ON_ERROR stop | dead_letter` (PostgreSQL 17's option, with OpenClaw's
//! `dead_letter`: bad lines go to `<table>_dlq`, as for ingest). Others are refused.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use datafusion::sql::sqlparser::ast::Query;

use crate::parser::OpenClawDialect;
use crate::copy::{CopyFormat, CopyFrom, CopyTo, OnError};

/// Parses what follows `COPY`.
pub(crate) fn copy_from(p: &mut Parser) -> Result<CopyFrom, ParserError> {
    // The catalog's name (`s.t`, or `t` for `public.t`); an unqualified one is resolved on
    // the session's search_path before it runs.
    let table = crate::database::object_name(&p.parse_object_name(false)?).map_err(|e| ParserError::ParserError(e.message))?;
    let columns = if p.consume_token(&Token::LParen) {
        let columns = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        columns.into_iter().map(|c| c.value).collect()
    } else {
        vec![]
    };
    p.expect_keyword(Keyword::FROM)?;
    p.expect_keyword(Keyword::STDIN)?;
    let mut copy = CopyFrom { table, columns, format: CopyFormat::Text, header: false, delimiter: None, null: None, on_error: OnError::Stop };
    options_clause(p, &mut copy)?;
    Ok(copy)
}

/// `[WITH] (option, ...)`, or the older form's words, to the end of the statement.
fn options_clause(p: &mut Parser, copy: &mut CopyFrom) -> Result<(), ParserError> {
    let _ = p.parse_keyword(Keyword::WITH);
    if p.consume_token(&Token::LParen) {
        loop {
            option(p, copy)?;
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen)?;
    } else {
        while p.peek_token().token != Token::EOF {
            legacy_option(p, copy)?;
        }
    }
    Ok(())
}

/// A word or a quoted string.
fn value(p: &mut Parser) -> Result<String, ParserError> {
    match p.next_token().token {
        Token::Word(w) => Ok(w.value),
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(ParserError::ParserError(format!("expected a COPY option's value, found {other}"))),
    }
}

fn single_char(p: &mut Parser) -> Result<u8, ParserError> {
    let s = value(p)?;
    match s.as_bytes() {
        [c] if c.is_ascii() => Ok(*c),
        _ => Err(ParserError::ParserError("COPY delimiter must be a single one-byte character".into())),
    }
}

fn boolean(p: &mut Parser) -> Result<bool, ParserError> {
    if matches!(p.peek_token().token, Token::Comma | Token::RParen) {
        return Ok(true);
    }
    match value(p)?.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        other => Err(ParserError::ParserError(format!("HEADER takes a boolean, not {other}"))),
    }
}

fn option(p: &mut Parser, copy: &mut CopyFrom) -> Result<(), ParserError> {
    let name = value(p)?.to_ascii_lowercase();
    match name.as_str() {
        "format" => {
            copy.format = match value(p)?.to_ascii_lowercase().as_str() {
                "text" => CopyFormat::Text,
                "csv" => CopyFormat::Csv,
                other => return Err(ParserError::ParserError(format!("COPY format \"{other}\" is not supported (text or csv)"))),
            }
        }
        "header" => copy.header = boolean(p)?,
        "delimiter" => copy.delimiter = Some(single_char(p)?),
        "null" => copy.null = Some(value(p)?),
        "on_error" => {
            copy.on_error = match value(p)?.to_ascii_lowercase().as_str() {
                "stop" => OnError::Stop,
                "dead_letter" => OnError::DeadLetter,
                other => return Err(ParserError::ParserError(format!("ON_ERROR takes stop or dead_letter, not {other}"))),
            }
        }
        other => return Err(ParserError::ParserError(format!("COPY option \"{other}\" is not supported"))),
    }
    Ok(())
}

fn legacy_option(p: &mut Parser, copy: &mut CopyFrom) -> Result<(), ParserError> {
    let word = value(p)?.to_ascii_lowercase();
    match word.as_str() {
        "csv" => copy.format = CopyFormat::Csv,
        "header" => copy.header = true,
        "delimiter" => {
            let _ = p.parse_keyword(Keyword::AS);
            copy.delimiter = Some(single_char(p)?);
        }
        "null" => {
            let _ = p.parse_keyword(Keyword::AS);
            copy.null = Some(value(p)?);
        }
        other => return Err(ParserError::ParserError(format!("COPY option \"{other}\" is not supported"))),
    }
    Ok(())
}

/// Parses what follows `COPY` in a `COPY ... TO STDOUT`.
pub(crate) fn copy_to(p: &mut Parser) -> Result<CopyTo, ParserError> {
    let query: Box<Query> = if p.consume_token(&Token::LParen) {
        let query = p.parse_query()?;
        p.expect_token(&Token::RParen)?;
        query
    } else {
        let table = p.parse_object_name(false)?.to_string();
        let columns = if p.consume_token(&Token::LParen) {
            let columns = p.parse_comma_separated(|p| p.parse_identifier())?;
            p.expect_token(&Token::RParen)?;
            columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        } else {
            "*".to_string()
        };
        Parser::new(&OpenClawDialect).try_with_sql(&format!("SELECT {columns} FROM {table}"))?.parse_query()?
    };
    p.expect_keyword(Keyword::TO)?;
    p.expect_keyword(Keyword::STDOUT)?;
    // The same options as FROM, of which TO takes the format and the header.
    let mut options = CopyFrom { table: String::new(), columns: vec![], format: CopyFormat::Text, header: false, delimiter: None, null: None, on_error: OnError::Stop };
    options_clause(p, &mut options)?;
    if options.delimiter.is_some() || options.null.is_some() || options.on_error != OnError::Stop {
        return Err(ParserError::ParserError("COPY ... TO STDOUT takes only FORMAT and HEADER".into()));
    }
    Ok(CopyTo { query, format: options.format, header: options.header })
}
