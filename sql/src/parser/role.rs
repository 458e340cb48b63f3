//! `CREATE | ALTER ROLE | USER`, parsed apart from other statements so that neither their
//! text nor their syntax errors carry the password they may hold.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::parser::OpenClawDialect;
use super::OcStatement;
use crate::error::{SqlError, SqlState};

/// `CREATE | ALTER ROLE | USER ...` (a `USER` is a role that may log in, as in PostgreSQL):
/// parsed by sqlparser, but its text, kept for nothing, and its syntax errors leave out what
/// may be a password.
pub(super) fn role_statement(tokens: &[TokenWithSpan]) -> Result<Option<(OcStatement, String)>, SqlError> {
    let words = super::words(tokens, 2);
    let (verb, user) = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [verb @ ("CREATE" | "ALTER"), "ROLE"] => (verb.to_string(), false),
        [verb @ ("CREATE" | "ALTER"), "USER"] => (verb.to_string(), true),
        _ => return Ok(None),
    };
    let mut tokens = tokens.to_vec();
    if user {
        let at = tokens.iter().position(|t| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("user"))).expect("seen");
        tokens[at].token = Token::make_keyword("ROLE");
    }
    let dialect = OpenClawDialect;
    let refused = || {
        SqlError::new(SqlState::SyntaxError, format!("syntax error in {verb} ROLE (the statement is not repeated: it may hold a password)"))
            .with_hint(format!("{verb} ROLE name [WITH] [LOGIN | NOLOGIN] [SUPERUSER | NOSUPERUSER] [PASSWORD 'password' | PASSWORD NULL]"))
    };
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut stmt = p.parse_statement().map_err(|_| refused())?;
    if p.peek_token().token != Token::EOF {
        return Err(refused());
    }
    if let (true, datafusion::sql::sqlparser::ast::Statement::CreateRole(create)) = (user, &mut stmt) {
        create.login = create.login.or(Some(true));
    }
    Ok(Some((OcStatement::Standard(Box::new(stmt)), format!("{verb} ROLE"))))
}

/// Privileges, which `GRANT x TO r` names instead of a role (sqlparser's `GRANT ... ON` path
/// answers those).
const PRIVILEGE_WORDS: [&str; 14] = ["SELECT", "INSERT", "UPDATE", "DELETE", "ALL", "CREATE", "USAGE", "TRUNCATE", "REFERENCES", "TRIGGER", "CONNECT", "TEMPORARY", "TEMP", "EXECUTE"];

/// `GRANT group [, ...] TO role [, ...]` and `REVOKE group [, ...] FROM role [, ...]
/// [CASCADE | RESTRICT]`: role membership, PostgreSQL's grammar (which sqlparser 0.62 lacks).
/// A GRANT or REVOKE with `ON`, or naming a privilege, is not one.
pub(super) fn membership_statement(tokens: &[TokenWithSpan]) -> Result<Option<(OcStatement, String)>, SqlError> {
    let words = super::words(tokens, 2);
    let grant = match words.first().map(String::as_str) {
        Some("GRANT") => true,
        Some("REVOKE") => false,
        _ => return Ok(None),
    };
    if words.get(1).is_some_and(|w| PRIVILEGE_WORDS.contains(&w.as_str())) || tokens.iter().any(|t| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::ON && w.quote_style.is_none())) {
        return Ok(None);
    }
    let dialect = OpenClawDialect;
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens.to_vec());
    let syntax = |e: ParserError| SqlError::new(SqlState::SyntaxError, e.to_string());
    p.next_token();
    if !grant && p.parse_keywords(&[Keyword::ADMIN, Keyword::OPTION, Keyword::FOR]) {
        return Err(SqlError::not_supported("REVOKE ADMIN OPTION FOR is not supported").with_hint("only superusers grant and revoke memberships"));
    }
    let names = |p: &mut Parser| p.parse_comma_separated(|p| p.parse_identifier()).map(|ids| ids.into_iter().map(|i| if i.quote_style.is_some() { i.value } else { i.value.to_ascii_lowercase() }).collect::<Vec<_>>());
    let groups = names(&mut p).map_err(syntax)?;
    p.expect_keyword(if grant { Keyword::TO } else { Keyword::FROM }).map_err(syntax)?;
    let members = names(&mut p).map_err(syntax)?;
    if grant && p.parse_keyword(Keyword::WITH) {
        return Err(SqlError::not_supported("GRANT role ... WITH options are not supported").with_hint("memberships inherit their group's privileges and allow SET ROLE to it"));
    }
    if !grant {
        let _ = p.parse_one_of_keywords(&[Keyword::CASCADE, Keyword::RESTRICT]);
    }
    if p.peek_token().token != Token::EOF {
        return Err(syntax(ParserError::ParserError(format!("Expected: end of statement, found: {}", p.peek_token()))));
    }
    let text = format!("{} {} {} {}", if grant { "GRANT" } else { "REVOKE" }, groups.join(", "), if grant { "TO" } else { "FROM" }, members.join(", "));
    Ok(Some((OcStatement::GrantRole { groups, members, grant }, text)))
}
