//! Statement layer over sqlparser: OpenClaw's own statements (`CREATE SOURCE`, `FLUSH`,
//! `SHOW SOURCES`, ...) are recognised by their leading keywords and parsed with sqlparser's
//! own building blocks; every other statement goes to sqlparser whole.

use datafusion::sql::sqlparser::ast::{ColumnDef, ObjectName, Query, Statement, TableConstraint};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{SqlError, SqlState};
use crate::Options;

mod copy;
mod dialect;
mod intervals;
mod limits;
mod options;
mod role;
mod secret;
mod watermark;
pub use dialect::OpenClawDialect;
pub use limits::{MAX_INTERVAL_NESTING, MAX_STATEMENT_BYTES, MAX_TABLE_NESTING};
use limits::MAX_PARSE_DEPTH;
pub(crate) use options::with_options;
use options::{alter_options, alters_options, format_clause, include_clauses, sink_options_start};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Table,
    Source,
    MaterializedView,
    Sink,
    /// A durable subscription (`CREATE SUBSCRIPTION s FROM v`): a view's retained changelog.
    Subscription,
    /// A schema (`CREATE SCHEMA s`): not a catalog entry, but kept by the durable catalog.
    Schema,
    /// A plain view (`CREATE VIEW v AS ...`): its query, expanded where it is read.
    View,
    /// A function written in SQL (`CREATE FUNCTION ... LANGUAGE SQL`).
    Function,
    /// A secret (`CREATE SECRET`): kept sealed beside the catalog, not a catalog entry.
    Secret,
    /// A role (`CREATE ROLE`) with its grants: beside the catalog, not a catalog entry.
    Role,
    /// An API key (`CREATE API KEY FOR ROLE r`): a bearer token's hash and its role.
    ApiKey,
}

impl ObjectKind {
    pub fn sql_name(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Source => "source",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sink => "sink",
            ObjectKind::Subscription => "subscription",
            ObjectKind::Schema => "schema",
            ObjectKind::View => "view",
            ObjectKind::Function => "function",
            ObjectKind::Secret => "secret",
            ObjectKind::Role => "role",
            ObjectKind::ApiKey => "api key",
        }
    }

    pub fn from_sql_name(name: &str) -> Option<Self> {
        [ObjectKind::Table, ObjectKind::Source, ObjectKind::MaterializedView, ObjectKind::Sink, ObjectKind::Subscription, ObjectKind::Schema, ObjectKind::View, ObjectKind::Function, ObjectKind::Secret, ObjectKind::Role, ObjectKind::ApiKey].into_iter().find(|k| k.sql_name() == name)
    }
}

#[derive(Debug)]
pub struct CreateSource {
    /// `CREATE TABLE ... WITH (connector = ...)`: a table fed by the connector.
    pub as_table: bool,
    pub name: ObjectName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
    pub options: Options,
    pub watermark: Option<WatermarkDecl>,
}

/// `WATERMARK FOR column AS column - INTERVAL …` in a column list.
#[derive(Debug, Clone)]
pub struct WatermarkDecl {
    pub column: String,
    pub delay_us: i64,
}

#[derive(Debug)]
pub struct CreateView {
    pub name: ObjectName,
    pub if_not_exists: bool,
    pub query: Box<Query>,
    pub emit_on_window_close: bool,
    /// `WITH (...)` before `AS` (RisingWave's place): only history options so far.
    pub options: Options,
}

/// `CREATE SINK name FROM object | AS query WITH (...) [FORMAT ... ENCODE ...]`.
#[derive(Debug)]
pub struct CreateSink {
    /// The sink as a view of its query (`FROM v` is `SELECT * FROM v`).
    pub view: CreateView,
    pub options: Options,
}

#[derive(Debug)]
pub enum OcStatement {
    CreateSource(CreateSource),
    CreateSink(CreateSink),
    /// `CREATE TABLE`, with its watermark when it declares one.
    CreateTable(Box<datafusion::sql::sqlparser::ast::CreateTable>, Option<WatermarkDecl>, Options),
    CreateView(CreateView),
    /// `CREATE SUBSCRIPTION name FROM view [WITH (retention = ...)]`.
    CreateSubscription { name: ObjectName, view: ObjectName, options: Options },
    ExplainCreateView(CreateView),
    /// `EXPLAIN ANALYZE MATERIALIZED VIEW | SINK name` (RisingWave's form): the running
    /// dataflow's plan with each node's counters.
    ExplainAnalyze { kind: ObjectKind, name: ObjectName },
    Flush,
    Show(ObjectKind),
    /// `SHOW STATE TABLES`: the operators' state tables and their key counts.
    ShowStateTables,
    /// `SHOW CHECKPOINTS`.
    ShowCheckpoints,
    /// `SHOW HISTORY`.
    ShowHistory,
    Describe(ObjectName),
    /// `ALTER TABLE | SOURCE | MATERIALIZED VIEW name SET (history = ..., ...)`, or `RESET
    /// (history, ...)` (`reset`: the options' keys are what is reset).
    AlterHistory { kind: ObjectKind, name: ObjectName, if_exists: bool, options: Options, reset: bool },
    /// `SET name = value` / `SET name TO value` / `SET TIME ZONE value`.
    SetVar { name: String, value: String },
    /// `SHOW name` of a session variable (or `ALL`).
    ShowVar(String),
    Drop { kind: ObjectKind, names: Vec<ObjectName>, if_exists: bool, cascade: bool },
    /// `SUBSCRIBE ...` on its own (refused: it is read through COPY or a cursor).
    Subscribe(crate::subscribe::SubscribeStmt),
    /// `COPY (SUBSCRIBE ...) TO STDOUT`.
    CopySubscribe(crate::subscribe::SubscribeStmt),
    /// `COPY t [(columns)] FROM STDIN ...`.
    CopyFrom(crate::copy::CopyFrom),
    /// `COPY t [(columns)] | (query) TO STDOUT ...`.
    CopyTo(crate::copy::CopyTo),
    /// `DECLARE name CURSOR FOR SUBSCRIBE ...`.
    DeclareSubscribe { cursor: String, stmt: crate::subscribe::SubscribeStmt },
    /// `FETCH [n | ALL] [FROM | IN] name [WITH (timeout = ...)]`; `count` `None` is `ALL`.
    Fetch { cursor: String, count: Option<u64>, options: Options },
    /// `CLOSE name | ALL` (`None`: all).
    Close(Option<String>),
    /// `CREATE SECRET [IF NOT EXISTS] name WITH (backend = 'meta') AS 'value'`. Its text, as
    /// [`parse_with_text`] returns it, leaves the value out.
    CreateSecret { name: String, if_not_exists: bool, value: String },
    /// `GRANT group, ... TO role, ...` (`grant`) or `REVOKE group, ... FROM role, ...`: role
    /// membership.
    GrantRole { groups: Vec<String>, members: Vec<String>, grant: bool },
    /// `CREATE API KEY FOR ROLE name`.
    CreateApiKey { role: String },
    /// `DROP API KEY [IF EXISTS] id`.
    DropApiKey { id: String, if_exists: bool },
    /// Anything else, parsed by sqlparser.
    Standard(Box<Statement>),
}

/// [`parse_with_text`] on a blocking thread, off the async workers, so that a slow parse
/// never holds up other sessions or the accept loop.
pub async fn parse_off_workers(sql: &str) -> Result<Vec<(OcStatement, String)>, SqlError> {
    let sql = sql.to_string();
    tokio::task::spawn_blocking(move || parse_with_text(&sql))
        .await
        .map_err(|e| SqlError::new(SqlState::Internal, format!("the parser stopped: {e}")))?
}

/// Splits `sql` into statements and parses each.
pub fn parse(sql: &str) -> Result<Vec<OcStatement>, SqlError> {
    Ok(parse_with_text(sql)?.into_iter().map(|(stmt, _)| stmt).collect())
}

/// Like [`parse`], with the text of each statement as written (what the durable catalog
/// keeps, so that a restart replays exactly what the user typed).
pub fn parse_with_text(sql: &str) -> Result<Vec<(OcStatement, String)>, SqlError> {
    limits::check_length(sql)?;
    let dialect = OpenClawDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax_error(sql, &e.to_string()))?;
    let mut out = vec![];
    for group in tokens.split(|t| t.token == Token::SemiColon) {
        if group.iter().all(|t| matches!(t.token, Token::Whitespace(_) | Token::EOF)) {
            continue;
        }
        if secret::is_create_secret(group) {
            // Neither its text nor its errors may carry the value.
            out.push(secret::create_secret(group)?);
            continue;
        }
        if let Some(stmt) = role::membership_statement(group)? {
            out.push(stmt);
            continue;
        }
        if let Some(stmt) = role::role_statement(group)? {
            // A role's password is in it: its text is not kept, its errors not repeated.
            out.push(stmt);
            continue;
        }
        let text: String = group.iter().map(|t| t.token.to_string()).collect::<String>().trim().to_string();
        limits::check_nesting(group)?;
        if crate::pg_catalog::reads_catalog(group) {
            let stmt = crate::pg_catalog::parse(&text).map_err(|e| syntax_error(sql, &e.message))?;
            out.push((OcStatement::Standard(Box::new(stmt)), text));
            continue;
        }
        let tokens = crate::windows::desugar_flink_windows(group.to_vec());
        let tokens = crate::as_of::desugar(tokens).map_err(|e| syntax_error(sql, &e.to_string()))?;
        let tokens = intervals::normalize(tokens);
        let (tokens, watermark) = watermark::extract_watermark(tokens).map_err(|e| syntax_error(sql, &e.to_string()))?;
        let mut stmt = parse_one(tokens).map_err(|e| syntax_error(sql, &e.to_string()))?;
        stmt = match (stmt, watermark) {
            (OcStatement::Standard(s), wm) if matches!(*s, Statement::CreateTable(_)) => {
                let Statement::CreateTable(ct) = *s else { unreachable!("matched") };
                OcStatement::CreateTable(Box::new(ct), wm, Options::new())
            }
            (OcStatement::CreateTable(ct, None, options), wm) => OcStatement::CreateTable(ct, wm, options),
            (OcStatement::CreateSource(mut cs), wm) => {
                cs.watermark = wm;
                OcStatement::CreateSource(cs)
            }
            (_, Some(_)) => return Err(syntax_error(sql, "WATERMARK FOR is allowed only in CREATE TABLE and CREATE SOURCE")),
            (stmt, None) => stmt,
        };
        match &mut stmt {
            OcStatement::Standard(s) => {
                crate::types::normalize_casts(s.as_mut());
                crate::windows::rewrite(s.as_mut())?;
                crate::set_returning::rewrite(s.as_mut())
            }
            OcStatement::CopyTo(c) => {
                crate::types::normalize_casts(c.query.as_mut());
                crate::windows::rewrite(c.query.as_mut())?;
                crate::set_returning::rewrite(c.query.as_mut())
            }
            OcStatement::CreateView(v) | OcStatement::ExplainCreateView(v) => {
                crate::types::normalize_casts(v.query.as_mut());
                crate::windows::rewrite(v.query.as_mut())?;
                crate::set_returning::rewrite(v.query.as_mut())
            }
            OcStatement::CreateSink(s) => {
                crate::types::normalize_casts(s.view.query.as_mut());
                crate::windows::rewrite(s.view.query.as_mut())?;
                crate::set_returning::rewrite(s.view.query.as_mut())
            }
            _ => {}
        }
        out.push((stmt, text));
    }
    Ok(out)
}

/// Whether the COPY the parser is at reads from the client (`FROM STDIN`).
fn is_copy_from_stdin(p: &Parser) -> bool {
    let mut from = false;
    for i in 0.. {
        match p.peek_nth_token(i).token {
            Token::EOF => return false,
            Token::Word(w) if w.keyword == Keyword::FROM => from = true,
            Token::Word(w) if from && w.keyword == Keyword::STDIN => return true,
            _ => from = false,
        }
    }
    false
}

fn words(tokens: &[TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(n)
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect()
}

fn parse_one(mut tokens: Vec<TokenWithSpan>) -> Result<OcStatement, ParserError> {
    let w = words(&tokens, 4);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let dialect = OpenClawDialect;
    if let ["CREATE", "SINK", ..] = w.as_slice() {
        // `AS SELECT ... FROM t WITH (...)`: sqlparser would take the WITH for table hints of
        // `t`, so the sink's options are cut off first (the last top-level `WITH (`).
        let Some(at) = sink_options_start(&tokens) else {
            return Err(ParserError::ParserError("CREATE SINK needs WITH (connector = ...)".into()));
        };
        let options = tokens.split_off(at);
        let mut head = Parser::new(&dialect).with_recursion_limit(MAX_PARSE_DEPTH).with_tokens_with_locations(tokens);
        head.next_token();
        head.next_token();
        let mut tail = Parser::new(&dialect).with_tokens_with_locations(options);
        let sink = create_sink(&mut head, &mut tail)?;
        for p in [&mut head, &mut tail] {
            if p.peek_token().token != Token::EOF {
                return p.expected("end of statement", p.peek_token());
            }
        }
        return Ok(OcStatement::CreateSink(sink));
    }
    // `CREATE TABLE t (...) WITH (connector = ...)` is a table fed by a connector.
    let has_connector = sink_options_start(&tokens).is_some_and(|at| {
        let w = words(&tokens[at..], 3);
        w.len() == 3 && w[2].trim_matches('\'').eq_ignore_ascii_case("connector")
    });
    if let (["CREATE", "TABLE", ..], false, Some(at)) = (w.as_slice(), has_connector, sink_options_start(&tokens)) {
        // `CREATE TABLE t (...) WITH (history = ...)`: sqlparser's table options take no
        // dotted keys, so ours are cut off and read as a connector's are.
        let options = tokens.split_off(at);
        let mut tail = Parser::new(&dialect).with_tokens_with_locations(options);
        tail.next_token();
        let options = with_options(&mut tail)?;
        if tail.peek_token().token != Token::EOF {
            return tail.expected("end of statement", tail.peek_token());
        }
        let mut head = Parser::new(&dialect).with_recursion_limit(MAX_PARSE_DEPTH).with_tokens_with_locations(tokens);
        let Statement::CreateTable(ct) = head.parse_statement()? else {
            return Err(ParserError::ParserError("expected CREATE TABLE".into()));
        };
        if head.peek_token().token != Token::EOF {
            return head.expected("end of statement", head.peek_token());
        }
        return Ok(OcStatement::CreateTable(Box::new(ct), None, options));
    }
    let tokens_copy = if w.first() == Some(&"ALTER") { tokens.clone() } else { vec![] };
    let mut p = Parser::new(&dialect).with_recursion_limit(MAX_PARSE_DEPTH).with_tokens_with_locations(tokens);
    let stmt = match w.as_slice() {
        ["CREATE", "SOURCE", ..] => {
            p.next_token();
            p.next_token();
            OcStatement::CreateSource(create_source(&mut p)?)
        }
        ["CREATE", "TABLE", ..] if has_connector => {
            p.next_token();
            p.next_token();
            OcStatement::CreateSource(CreateSource { as_table: true, ..create_source(&mut p)? })
        }
        ["CREATE", "MATERIALIZED", "VIEW", ..] => {
            let _ = p.parse_keywords(&[Keyword::CREATE, Keyword::MATERIALIZED, Keyword::VIEW]);
            OcStatement::CreateView(create_view(&mut p)?)
        }
        ["EXPLAIN", "CREATE", "MATERIALIZED", "VIEW"] => {
            let _ = p.parse_keywords(&[Keyword::EXPLAIN, Keyword::CREATE, Keyword::MATERIALIZED, Keyword::VIEW]);
            OcStatement::ExplainCreateView(create_view(&mut p)?)
        }
        ["EXPLAIN", "ANALYZE", "MATERIALIZED", "VIEW"] => {
            let _ = p.parse_keywords(&[Keyword::EXPLAIN, Keyword::ANALYZE, Keyword::MATERIALIZED, Keyword::VIEW]);
            OcStatement::ExplainAnalyze { kind: ObjectKind::MaterializedView, name: p.parse_object_name(false)? }
        }
        ["EXPLAIN", "ANALYZE", "SINK", ..] => {
            (0..3).for_each(|_| {
                p.next_token();
            });
            OcStatement::ExplainAnalyze { kind: ObjectKind::Sink, name: p.parse_object_name(false)? }
        }
        ["FLUSH"] => {
            p.next_token();
            OcStatement::Flush
        }
        ["SHOW", "TABLES"] => show(&mut p, 2, ObjectKind::Table),
        ["SHOW", "SOURCES"] => show(&mut p, 2, ObjectKind::Source),
        ["SHOW", "MATERIALIZED", "VIEWS"] => show(&mut p, 3, ObjectKind::MaterializedView),
        ["SHOW", "SINKS"] => show(&mut p, 2, ObjectKind::Sink),
        ["SHOW", "SUBSCRIPTIONS"] => show(&mut p, 2, ObjectKind::Subscription),
        ["SHOW", "SCHEMAS"] => show(&mut p, 2, ObjectKind::Schema),
        ["SHOW", "VIEWS"] => show(&mut p, 2, ObjectKind::View),
        ["SHOW", "FUNCTIONS"] => show(&mut p, 2, ObjectKind::Function),
        ["SHOW", "SECRETS"] => show(&mut p, 2, ObjectKind::Secret),
        ["SHOW", "ROLES"] | ["SHOW", "USERS"] => show(&mut p, 2, ObjectKind::Role),
        ["SHOW", "API", "KEYS"] => show(&mut p, 3, ObjectKind::ApiKey),
        ["CREATE", "API", "KEY", ..] => {
            for _ in 0..3 {
                p.next_token();
            }
            p.expect_keyword(Keyword::FOR)?;
            p.expect_keyword(Keyword::ROLE)?;
            OcStatement::CreateApiKey { role: secret::identifier(&mut p)? }
        }
        ["DROP", "API", "KEY", ..] => {
            for _ in 0..3 {
                p.next_token();
            }
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let id = match p.next_token().token {
                Token::SingleQuotedString(s) => s,
                Token::Word(w) => w.value,
                Token::Number(n, _) => n,
                _ => return p.expected("an API key's id", p.peek_token()),
            };
            OcStatement::DropApiKey { id, if_exists }
        }
        ["RESET", "ROLE"] => {
            p.next_token();
            p.next_token();
            OcStatement::SetVar { name: "role".into(), value: "none".into() }
        }
        ["CREATE", "SUBSCRIPTION", ..] => {
            p.next_token();
            p.next_token();
            let name = p.parse_object_name(false)?;
            p.expect_keyword(Keyword::FROM)?;
            let view = p.parse_object_name(false)?;
            let options = match p.parse_keyword(Keyword::WITH) {
                true => with_options(&mut p)?,
                false => Options::new(),
            };
            OcStatement::CreateSubscription { name, view, options }
        }
        ["SHOW", "STATE", "TABLES"] => {
            for _ in 0..3 {
                p.next_token();
            }
            OcStatement::ShowStateTables
        }
        ["SHOW", "CHECKPOINTS"] => {
            p.next_token();
            p.next_token();
            OcStatement::ShowCheckpoints
        }
        ["SHOW", "HISTORY"] => {
            p.next_token();
            p.next_token();
            OcStatement::ShowHistory
        }
        ["ALTER", "TABLE" | "SOURCE", ..] | ["ALTER", "MATERIALIZED", "VIEW", ..] if alters_options(&tokens_copy) => alter_options(&mut p)?,
        ["DESCRIBE" | "DESC", ..] => {
            p.next_token();
            OcStatement::Describe(p.parse_object_name(false)?)
        }
        ["SET", ..] => {
            p.next_token();
            set_var(&mut p)?
        }
        ["SHOW", ..] => {
            p.next_token();
            OcStatement::ShowVar(rest_text(&mut p).to_ascii_lowercase())
        }
        ["SUBSCRIBE", ..] => {
            p.next_token();
            OcStatement::Subscribe(subscribe(&mut p)?)
        }
        ["COPY", "(", "SUBSCRIBE", ..] => {
            for _ in 0..3 {
                p.next_token();
            }
            let stmt = subscribe(&mut p)?;
            p.expect_token(&Token::RParen)?;
            p.expect_keyword(Keyword::TO)?;
            p.expect_keyword(Keyword::STDOUT)?;
            if p.parse_keyword(Keyword::WITH) || p.peek_token().token == Token::LParen {
                let options = with_options(&mut p)?;
                if let Some(other) = options.iter().find(|(k, v)| !(k.as_str() == "format" && v.eq_ignore_ascii_case("text"))) {
                    return Err(ParserError::ParserError(format!("COPY of a SUBSCRIBE takes only FORMAT text, not {} {}", other.0, other.1)));
                }
            }
            OcStatement::CopySubscribe(stmt)
        }
        ["COPY", ..] if is_copy_from_stdin(&p) => {
            p.next_token();
            OcStatement::CopyFrom(copy::copy_from(&mut p)?)
        }
        ["COPY", ..] => {
            p.next_token();
            OcStatement::CopyTo(copy::copy_to(&mut p)?)
        }
        ["DECLARE", ..] => {
            p.next_token();
            let cursor = p.parse_identifier()?.value;
            p.expect_keyword(Keyword::CURSOR)?;
            p.expect_keyword(Keyword::FOR)?;
            if !matches!(p.next_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case("subscribe")) {
                return Err(ParserError::ParserError("DECLARE ... CURSOR FOR takes a SUBSCRIBE (other queries run directly)".into()));
            }
            OcStatement::DeclareSubscribe { cursor, stmt: subscribe(&mut p)? }
        }
        ["FETCH", ..] => {
            p.next_token();
            fetch(&mut p)?
        }
        ["CLOSE", ..] => {
            p.next_token();
            match p.parse_keyword(Keyword::ALL) {
                true => OcStatement::Close(None),
                false => OcStatement::Close(Some(p.parse_identifier()?.value)),
            }
        }
        ["DROP", "TABLE", ..] => drop_stmt(&mut p, 2, ObjectKind::Table)?,
        ["DROP", "SOURCE", ..] => drop_stmt(&mut p, 2, ObjectKind::Source)?,
        ["DROP", "SINK", ..] => drop_stmt(&mut p, 2, ObjectKind::Sink)?,
        ["DROP", "SUBSCRIPTION", ..] => drop_stmt(&mut p, 2, ObjectKind::Subscription)?,
        ["DROP", "MATERIALIZED", "VIEW", ..] => drop_stmt(&mut p, 3, ObjectKind::MaterializedView)?,
        ["DROP", "VIEW", ..] => drop_stmt(&mut p, 2, ObjectKind::View)?,
        ["DROP", "SECRET", ..] => drop_stmt(&mut p, 2, ObjectKind::Secret)?,
        _ => OcStatement::Standard(Box::new(p.parse_statement()?)),
    };
    if p.peek_token().token != Token::EOF {
        return p.expected("end of statement", p.peek_token());
    }
    Ok(stmt)
}

/// After `SUBSCRIBE`: `[TO] <object | (query)> [WITH (...)] [SINCE <token>]`.
fn subscribe(p: &mut Parser) -> Result<crate::subscribe::SubscribeStmt, ParserError> {
    let _ = p.parse_keyword(Keyword::TO);
    let (query, object) = match p.consume_token(&Token::LParen) {
        true => {
            let q = p.parse_query()?;
            p.expect_token(&Token::RParen)?;
            (q, None)
        }
        false => {
            let name = p.parse_object_name(false)?;
            let dialect = OpenClawDialect;
            let mut q = Parser::new(&dialect).try_with_sql(&format!("SELECT * FROM {name}"))?;
            (q.parse_query()?, Some(name))
        }
    };
    let options = match p.parse_keyword(Keyword::WITH) {
        true => with_options(p)?,
        false => Options::new(),
    };
    let since = match p.peek_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("since") => {
            p.next_token();
            match p.next_token().token {
                Token::Number(n, _) => Some(n.parse::<u64>().map_err(|_| ParserError::ParserError(format!("SINCE takes a token (a non-negative integer), not {n}")))?),
                other => return Err(ParserError::ParserError(format!("SINCE takes a token (a non-negative integer), not {other}"))),
            }
        }
        _ => None,
    };
    Ok(crate::subscribe::SubscribeStmt { query, object, options, since, since_rows: 0 })
}

/// After `FETCH`: `[FORWARD] [n | ALL] [FROM | IN] cursor [WITH (timeout = ...)]`.
fn fetch(p: &mut Parser) -> Result<OcStatement, ParserError> {
    let _ = p.parse_keyword(Keyword::FORWARD);
    let count = match p.peek_token().token {
        Token::Number(n, _) => {
            p.next_token();
            Some(n.parse::<u64>().map_err(|_| ParserError::ParserError(format!("FETCH takes a row count, not {n}")))?)
        }
        Token::Word(w) if w.keyword == Keyword::ALL => {
            p.next_token();
            None
        }
        _ => Some(1),
    };
    let _ = p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN]);
    let cursor = p.parse_identifier()?.value;
    let options = match p.parse_keyword(Keyword::WITH) {
        true => with_options(p)?,
        false => Options::new(),
    };
    Ok(OcStatement::Fetch { cursor, count, options })
}

fn set_var(p: &mut Parser) -> Result<OcStatement, ParserError> {
    let _ = p.parse_one_of_keywords(&[Keyword::SESSION, Keyword::LOCAL]);
    if p.parse_keywords(&[Keyword::TIME, Keyword::ZONE]) {
        return Ok(OcStatement::SetVar { name: "timezone".into(), value: rest_text(p) });
    }
    let mut name = p.parse_identifier()?.value;
    // `SET ROLE name | NONE`, as PostgreSQL writes it (no `=`).
    if name.eq_ignore_ascii_case("role") && !matches!(p.peek_token().token, Token::Eq) && !p.peek_keyword(Keyword::TO) {
        let role = p.parse_identifier()?;
        let value = if role.quote_style.is_some() { role.value } else { role.value.to_ascii_lowercase() };
        return Ok(OcStatement::SetVar { name: "role".into(), value });
    }
    while p.consume_token(&Token::Period) {
        name.push('.');
        name.push_str(&p.parse_identifier()?.value);
    }
    if !p.consume_token(&Token::Eq) && !p.parse_keyword(Keyword::TO) {
        return p.expected("= or TO", p.peek_token());
    }
    Ok(OcStatement::SetVar { name: name.to_ascii_lowercase(), value: rest_text(p) })
}

/// The remaining tokens as text: quoted strings lose their quotes, lists join with ", ".
fn rest_text(p: &mut Parser) -> String {
    let mut out = String::new();
    loop {
        let t = p.next_token().token;
        match t {
            Token::EOF => return out.trim().to_string(),
            Token::SingleQuotedString(s) => out.push_str(&s),
            Token::Comma => out.push_str(", "),
            Token::Word(w) => {
                if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('.') {
                    out.push(' ');
                }
                out.push_str(&w.value);
            }
            other => out.push_str(&other.to_string()),
        }
    }
}

fn show(p: &mut Parser, n: usize, kind: ObjectKind) -> OcStatement {
    (0..n).for_each(|_| {
        p.next_token();
    });
    OcStatement::Show(kind)
}

fn if_not_exists(p: &mut Parser) -> bool {
    p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS])
}

fn create_source(p: &mut Parser) -> Result<CreateSource, ParserError> {
    let if_not_exists = if_not_exists(p);
    let name = p.parse_object_name(false)?;
    let (columns, constraints) = p.parse_columns()?;
    let include = include_clauses(p)?;
    let mut options = if p.parse_keyword(Keyword::WITH) { with_options(p)? } else { Options::new() };
    for (n, (what, column)) in include.into_iter().enumerate() {
        options.insert(format!("include.{n}.{what}"), column);
    }
    format_clause(p, &mut options)?;
    Ok(CreateSource { as_table: false, name, if_not_exists, columns, constraints, options, watermark: None })
}

fn create_sink(p: &mut Parser, options_p: &mut Parser) -> Result<CreateSink, ParserError> {
    let if_not_exists = if_not_exists(p);
    let name = p.parse_object_name(false)?;
    let query = if p.parse_keyword(Keyword::FROM) {
        let from = p.parse_object_name(false)?;
        let dialect = OpenClawDialect;
        Parser::new(&dialect).try_with_sql(&format!("SELECT * FROM {from}"))?.parse_query()?
    } else {
        p.expect_keyword(Keyword::AS)?;
        p.parse_query()?
    };
    if !options_p.parse_keyword(Keyword::WITH) {
        return options_p.expected("WITH (connector = ...)", options_p.peek_token());
    }
    let mut options = with_options(options_p)?;
    format_clause(options_p, &mut options)?;
    Ok(CreateSink { view: CreateView { name, if_not_exists, query, emit_on_window_close: false, options: Options::new() }, options })
}

fn create_view(p: &mut Parser) -> Result<CreateView, ParserError> {
    let if_not_exists = if_not_exists(p);
    let name = p.parse_object_name(false)?;
    let options = match p.parse_keyword(Keyword::WITH) {
        true => with_options(p)?,
        false => Options::new(),
    };
    p.expect_keyword(Keyword::AS)?;
    let query = p.parse_query()?;
    let emit_on_window_close = match words(&p_rest(p), 4).as_slice() {
        [a, b, c, d] if a == "EMIT" && b == "ON" && c == "WINDOW" && d == "CLOSE" => {
            (0..4).for_each(|_| {
                p.next_token();
            });
            true
        }
        _ => false,
    };
    Ok(CreateView { name, if_not_exists, query, emit_on_window_close, options })
}

/// The next few tokens, for keyword checks sqlparser has no keyword for.
fn p_rest(p: &Parser) -> Vec<TokenWithSpan> {
    p.peek_tokens_with_location::<8>().to_vec()
}

fn drop_stmt(p: &mut Parser, n: usize, kind: ObjectKind) -> Result<OcStatement, ParserError> {
    (0..n).for_each(|_| {
        p.next_token();
    });
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let names = p.parse_comma_separated(|p| p.parse_object_name(false))?;
    let cascade = match p.parse_one_of_keywords(&[Keyword::CASCADE, Keyword::RESTRICT]) {
        Some(Keyword::CASCADE) => true,
        _ => false,
    };
    Ok(OcStatement::Drop { kind, names, if_exists, cascade })
}

/// A syntax error (42601) with the position sqlparser reported, as a 1-based character
/// offset into `sql`, which is what PostgreSQL's error position field holds.
pub(crate) fn syntax_error(sql: &str, message: &str) -> SqlError {
    let message = message.trim_start_matches("sql parser error: ");
    let (text, position) = match message.rfind(" at Line: ") {
        Some(at) => (&message[..at], line_col(&message[at + 10..]).map(|(l, c)| offset(sql, l, c))),
        None => (message, None),
    };
    let mut text = text.to_string();
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_lowercase();
    }
    let mut err = SqlError::new(SqlState::SyntaxError, format!("syntax error: {text}"));
    err.position = position;
    err
}

fn line_col(s: &str) -> Option<(usize, usize)> {
    let (line, rest) = s.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

fn offset(sql: &str, line: usize, col: usize) -> usize {
    let before: usize = sql.split('\n').take(line.saturating_sub(1)).map(|l| l.chars().count() + 1).sum();
    before + col
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_openclaw_statements() {
        let stmts = parse(
            "CREATE SOURCE bid (auction BIGINT) WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', nexmark.event.num = 10);
             FLUSH; SHOW MATERIALIZED VIEWS; DROP SOURCE IF EXISTS bid CASCADE; SELECT 1",
        )
        .unwrap();
        assert_eq!(stmts.len(), 5);
        let OcStatement::CreateSource(src) = &stmts[0] else { panic!("{:?}", stmts[0]) };
        assert_eq!(src.options["nexmark.table.type"], "bid");
        assert_eq!(src.options["nexmark.event.num"], "10");
        assert!(matches!(stmts[1], OcStatement::Flush));
        assert!(matches!(stmts[3], OcStatement::Drop { kind: ObjectKind::Source, if_exists: true, cascade: true, .. }));
        assert!(matches!(stmts[4], OcStatement::Standard(_)));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("SELECT 1;\nSELEC 2").unwrap_err();
        assert_eq!(err.code, SqlState::SyntaxError);
        assert_eq!(err.position, Some(11));
    }
}
