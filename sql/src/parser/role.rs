//! `CREATE | ALTER ROLE | USER`, parsed apart from other statements so that neither their
//! text nor their syntax errors carry the password they may hold.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

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
    let dialect = PostgreSqlDialect {};
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
