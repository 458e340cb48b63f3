//! `CREATE SECRET [IF NOT EXISTS] name WITH (backend = 'meta') AS 'value'`, parsed apart from
//! every other statement: its text as kept and its syntax errors leave the value out (a
//! sqlparser error would quote the token it found, which may be the value).

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::parser::OpenClawDialect;
use super::{with_options, OcStatement};
use crate::error::{SqlError, SqlState};
use crate::secrets::BACKEND_META;

/// Whether `tokens` start with `CREATE SECRET`.
pub(super) fn is_create_secret(tokens: &[TokenWithSpan]) -> bool {
    let words = super::words(tokens, 2);
    words.len() == 2 && words[0] == "CREATE" && words[1] == "SECRET"
}

/// The statement, and the text the catalog keeps: `CREATE SECRET name WITH (backend = 'meta')`.
pub(super) fn create_secret(tokens: &[TokenWithSpan]) -> Result<(OcStatement, String), SqlError> {
    let dialect = OpenClawDialect;
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens.to_vec());
    let (name, if_not_exists, value) = parse(&mut p).map_err(|_| {
        SqlError::new(SqlState::SyntaxError, "syntax error in CREATE SECRET (the statement is not repeated: it holds a secret)")
            .with_hint("CREATE SECRET [IF NOT EXISTS] name WITH (backend = 'meta') AS 'value'")
    })?;
    let text = format!("CREATE SECRET {} WITH (backend = '{BACKEND_META}')", crate::error::quote(&name));
    Ok((OcStatement::CreateSecret { name, if_not_exists, value }, text))
}

fn parse(p: &mut Parser) -> Result<(String, bool, String), ParserError> {
    p.expect_keyword(Keyword::CREATE)?;
    p.next_token(); // SECRET
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = identifier(p)?;
    let options = match p.parse_keyword(Keyword::WITH) {
        true => with_options(p)?,
        false => Default::default(),
    };
    match (options.get("backend").map(|b| b.to_ascii_lowercase()), options.len()) {
        (Some(b), 1) if b == BACKEND_META => {}
        // RisingWave's default backend is `meta` too.
        (None, 0) => {}
        _ => return Err(ParserError::ParserError("backend".into())),
    }
    p.expect_keyword(Keyword::AS)?;
    let value = match p.next_token().token {
        Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => s,
        Token::DollarQuotedString(d) => d.value,
        _ => return Err(ParserError::ParserError("value".into())),
    };
    if p.peek_token().token != Token::EOF || value.contains('\0') {
        return Err(ParserError::ParserError("end".into()));
    }
    Ok((name, if_not_exists, value))
}

/// A secret's name: one identifier, folded to lower case unless quoted (secrets are not in a
/// schema).
pub(crate) fn identifier(p: &mut Parser) -> Result<String, ParserError> {
    let ident = p.parse_identifier()?;
    Ok(match ident.quote_style {
        Some(_) => ident.value,
        None => ident.value.to_ascii_lowercase(),
    })
}

