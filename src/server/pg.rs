//! The Postgres wire protocol front, on the `pgwire` crate: simple and extended query
//! protocols, Arrow results encoded by `arrow-pg` in text or binary.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::messages::data::DataRow;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::{PgWireConnectionState, METADATA_USER};
use pgwire::tokio::TlsAcceptor;
use super::auth::Auth;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::CopyResponse;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use openclaw_sql::copy::{CopyFrom, MAX_COPY_BYTES};
use openclaw_sql::SqlState;
use datafusion::arrow::array::timezone::Tz;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::PgWireBackendMessage;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use openclaw_sql::interrupt::CancelSignal;
use openclaw_sql::{Database, QueryOutput, SessionVars, SqlError};
use tokio::sync::{Mutex, Semaphore};

/// How the Postgres front admits a connection: its authentication and its TLS.
#[derive(Clone)]
pub struct PgFront {
    pub auth: Auth,
    pub tls: Option<TlsAcceptor>,
}

impl PgFront {
    /// No password, no TLS: for a front on loopback (`bench subscribe`'s).
    pub fn trust() -> Self {
        Self { auth: Auth::Trust, tls: None }
    }
}

pub async fn serve(listener: tokio::net::TcpListener, db: Arc<Database>, max_connections: usize, front: PgFront) {
    let slots = Arc::new(Semaphore::new(max_connections));
    // Which connection a CancelRequest (psql's Ctrl-C) names, by process id and secret key.
    let connections = Arc::new(Cancels::default());
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "refusing connection: too many connections");
            super::lifetime_metrics::session_refused();
            drop(socket);
            continue;
        };
        let handlers = Arc::new(Session::new(db.clone(), connections.clone(), front.auth.clone()));
        let tls = front.tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _session = super::lifetime_metrics::SessionGuard::open();
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// One client connection: its settings, and the handlers pgwire calls. Clones share the
/// connection's state, so the simple and extended handlers see the same settings.
#[derive(Clone)]
pub struct Session {
    db: Arc<Database>,
    vars: Arc<Mutex<SessionVars>>,
    parser: Arc<SqlText>,
    connections: Arc<Cancels>,
    copy_in: Arc<Mutex<Option<CopyInProgress>>>,
    auth: Auth,
    /// The role the connection logged in as, found at its first statement
    /// ([`Session::identify`]).
    role: Arc<std::sync::OnceLock<Option<String>>>,
}

impl Session {
    fn new(db: Arc<Database>, connections: Arc<Cancels>, auth: Auth) -> Self {
        Self { db, vars: Arc::new(Mutex::new(SessionVars::default())), parser: Arc::new(SqlText), connections, copy_in: Default::default(), auth, role: Default::default() }
    }

    /// Which role the session runs as: none (the bootstrap superuser) for `--superuser`'s
    /// name, the role of the user name otherwise. Under `--auth trust` a name that is no role
    /// is the bootstrap superuser, as any name was before roles.
    fn identify<C: ClientInfo>(&self, client: &C, vars: &mut SessionVars) {
        let role = self.role.get_or_init(|| {
            let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
            match &self.auth {
                Auth::Scram(superuser) if user == superuser.name => None,
                Auth::Scram(_) => Some(user),
                Auth::Trust => self.db.roles().exists(&user).then_some(user),
            }
        });
        vars.session_user = role.clone();
    }
}

/// A `COPY ... FROM STDIN` under way on the connection: what it writes, the data so far (held
/// until the client's CopyDone, since a COPY is one atomic write), and the error that ended
/// it early (answered at CopyDone; the data sent after it is dropped, as PostgreSQL does).
struct CopyInProgress {
    copy: CopyFrom,
    data: Vec<u8>,
    failed: Option<SqlError>,
}

#[async_trait]
impl CopyHandler for Session {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.copy_in.lock().await;
        let Some(progress) = state.as_mut() else { return Ok(()) };
        if progress.failed.is_some() {
            return Ok(());
        }
        if progress.data.len() + copy_data.data.len() > MAX_COPY_BYTES {
            progress.data = vec![];
            progress.failed = Some(
                SqlError::new(SqlState::ProgramLimitExceeded, format!("COPY data larger than {} MiB", MAX_COPY_BYTES >> 20))
                    .with_hint("split the data into several COPY statements"),
            );
            return Ok(());
        }
        progress.data.extend_from_slice(&copy_data.data);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(progress) = self.copy_in.lock().await.take() else { return Ok(()) };
        if let Some(error) = progress.failed {
            return Err(pg_error(error));
        }
        let rows = self.db.copy_from(&progress.copy, progress.data).await.map_err(pg_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copy_in.lock().await.take();
        pg_error(SqlError::new(SqlState::QueryCanceled, format!("COPY from stdin failed: {}", fail.message)))
    }
}

/// The connections a CancelRequest may name, by process id and secret key (what
/// BackendKeyData gave the client): each one's running statement's cancel signal. Ours rather
/// than pgwire's `ConnectionManager`, which cancels by dropping the whole statement (a DDL or
/// a write half done); ours stops only the waits that may stop (`openclaw_sql::interrupt`).
#[derive(Default)]
pub struct Cancels(std::sync::Mutex<HashMap<(i32, Vec<u8>), Arc<std::sync::Mutex<CancelSignal>>>>);

/// A connection's entry in [`Cancels`], removed when the connection (its session
/// extensions) ends.
struct Registered {
    cancels: Arc<Cancels>,
    key: (i32, Vec<u8>),
    current: Arc<std::sync::Mutex<CancelSignal>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.cancels.0.lock().expect("cancels lock").remove(&self.key);
    }
}

/// A new cancel signal for the statement starting now on `client`'s connection, which a
/// CancelRequest naming the connection fires.
fn arm_cancel<C: ClientInfo>(client: &C) -> CancelSignal {
    let signal = CancelSignal::default();
    if let Some(registered) = client.session_extensions().get::<Registered>() {
        *registered.current.lock().expect("cancel signal lock") = signal.clone();
    }
    signal
}

/// Fires the running statement's signal of the connection a CancelRequest names; a request
/// that names none (a wrong key, a connection gone) does nothing, as in PostgreSQL.
struct CancelRequests(Arc<Cancels>);

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let current = self.0 .0.lock().expect("cancels lock").get(&(request.pid, request.secret_key.to_bytes().to_vec())).cloned();
        tracing::debug!(pid = request.pid, found = current.is_some(), "cancel request");
        if let Some(current) = current {
            current.lock().expect("cancel signal lock").cancel();
        }
    }
}

impl PgWireServerHandlers for Session {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone())
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        let scram = match &self.auth {
            Auth::Trust => None,
            Auth::Scram(superuser) => {
                let logins = super::auth::Logins { superuser: superuser.clone(), db: self.db.clone() };
                let scram = ScramAuth::new(Arc::new(logins));
                Some(SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default())).with_scram(scram))
            }
        };
        Arc::new(Login { cancels: self.connections.clone(), scram })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(CancelRequests(self.connections.clone()))
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(self.clone())
    }
}

/// A connection's startup: authentication (none under `trust`, SCRAM-SHA-256 otherwise),
/// then its registration in [`Cancels`] once it has its process id and secret key.
struct Login {
    cancels: Arc<Cancels>,
    scram: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(scram) = &self.scram else {
            return Trusted(self.cancels.clone()).on_startup(client, message).await;
        };
        if let Err(e) = scram.on_startup(client, message).await {
            return Err(refuse_login(client, e));
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            register(&self.cancels, client);
        }
        Ok(())
    }
}

/// Any error during authentication ends the connection (pgwire would answer a non-FATAL one
/// with ReadyForQuery, letting the client on without a password): a wrong password as
/// PostgreSQL words it (28P01), anything else as a protocol violation. The failure is logged
/// with the user name and address; the exchange never carries the password itself.
fn refuse_login<C: ClientInfo>(client: &C, error: PgWireError) -> PgWireError {
    let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
    let peer = client.socket_addr();
    let (code, message) = match error {
        PgWireError::InvalidPassword(_) => ("28P01", format!("password authentication failed for user \"{user}\"")),
        other => ("08P01", format!("authentication failed for user \"{user}\": {other}")),
    };
    tracing::warn!(%user, %peer, tls = client.is_secure(), sqlstate = code, "password authentication failed");
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_string(), code.to_string(), message)))
}

/// Startup without authentication (`--auth trust`).
struct Trusted(Arc<Cancels>);

#[async_trait]
impl NoopStartupHandler for Trusted {
    async fn post_startup<C>(&self, client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        register(&self.0, client);
        Ok(())
    }
}

/// Registers the connection in [`Cancels`] by its process id and secret key.
fn register<C: ClientInfo>(cancels: &Arc<Cancels>, client: &mut C) {
    let (pid, secret) = client.pid_and_secret_key();
    let key = (pid, secret.to_bytes().to_vec());
    let current = Arc::new(std::sync::Mutex::new(CancelSignal::default()));
    cancels.0.lock().expect("cancels lock").insert(key.clone(), current.clone());
    client.session_extensions().insert(Registered { cancels: cancels.clone(), key, current });
}

/// The extended protocol stores statements as SQL text; planning happens at describe and
/// execute, with the catalog as it is then.
pub struct SqlText;

#[async_trait]
impl QueryParser for SqlText {
    type Statement = String;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_string()))
    }

    fn get_parameter_types(&self, _stmt: &String) -> PgWireResult<Vec<Type>> {
        Ok(vec![])
    }

    fn get_result_schema(&self, _stmt: &String, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(vec![])
    }
}

fn pg_error(e: SqlError) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.code.code().to_string(), e.message);
    info.detail = e.detail;
    info.hint = e.hint;
    info.position = e.position.map(|p| p.to_string());
    PgWireError::UserError(Box::new(info))
}

/// `zone`: the session's time zone, in which `timestamptz` text is shown.
/// The RowDescription of `schema`: arrow-pg's, with a column declared `varchar` described as
/// `varchar` (OID 1043), as drivers and BI tools expect, rather than `text`.
fn pg_fields(schema: &SchemaRef, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, None)?;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| match openclaw_sql::types::declared_varchar(field) {
            Some(_) if info.datatype() == &Type::TEXT => FieldInfo::new(info.name().to_string(), None, None, Type::VARCHAR, info.format()),
            _ => info,
        })
        .collect())
}

fn to_response(output: QueryOutput, format: &Format, zone: Tz) -> PgWireResult<Response> {
    match output {
        // pgwire reports the transaction status in ReadyForQuery from these two.
        QueryOutput::Command { tag, rows: None } if tag == "BEGIN" => Ok(Response::TransactionStart(Tag::new(&tag))),
        QueryOutput::Command { tag, rows: None } if tag == "COMMIT" || tag == "ROLLBACK" => Ok(Response::TransactionEnd(Tag::new(&tag))),
        QueryOutput::Command { tag, rows } => {
            let t = match tag.strip_suffix(" 0") {
                Some(cmd) => Tag::new(cmd).with_oid(0),
                None => Tag::new(&tag),
            };
            Ok(Response::Execution(match rows {
                Some(n) => t.with_rows(n),
                None => t,
            }))
        }
        QueryOutput::Rows { schema, stream } => {
            let fields = Arc::new(pg_fields(&schema, format)?);
            let encode_fields = fields.clone();
            let rows = stream.flat_map(move |batch| {
                let rows: Vec<PgWireResult<DataRow>> = match batch
                    .map_err(|e| pg_error(SqlError::from(e)))
                    .and_then(|b| super::pg_text::apply(b, &encode_fields, &zone).map_err(|e| PgWireError::ApiError(Box::new(e))))
                {
                    // The encoder yields an error without moving past its row: the rows end at it.
                    Ok(b) => encode_recordbatch(encode_fields.clone(), b).scan(false, until_error).collect(),
                    Err(e) => vec![Err(e)],
                };
                stream::iter(rows)
            });
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
        QueryOutput::Subscription(_) | QueryOutput::CopyIn { .. } | QueryOutput::CopyOut { .. } => unreachable!("COPY is answered by respond"),
    }
}

/// A `scan` step that passes rows on up to and including the first error, then ends.
fn until_error(failed: &mut bool, row: PgWireResult<DataRow>) -> Option<PgWireResult<DataRow>> {
    if *failed {
        return None;
    }
    *failed = row.is_err();
    Some(row)
}

impl Session {
    /// The response to one statement's output: a subscription streams over the connection
    /// now (COPY OUT, until it ends or the client goes); a COPY FROM STDIN starts taking the
    /// client's data ([`CopyHandler`]); anything else is handed to pgwire.
    async fn respond<C>(&self, client: &mut C, output: QueryOutput, format: &Format, cancel: &CancelSignal, zone: Tz) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<C::Error>,
    {
        match output {
            QueryOutput::Subscription(subscription) => super::pg_copy::copy_out(client, *subscription, cancel, &zone).await,
            QueryOutput::CopyIn { copy, columns, refused } => {
                *self.copy_in.lock().await = Some(CopyInProgress { copy, data: vec![], failed: refused });
                Ok(Response::CopyIn(CopyResponse::new(0, columns, stream::empty())))
            }
            QueryOutput::CopyOut { schema, stream, format, header } => super::pg_copy::copy_rows(client, schema, stream, format, header, cancel, &zone).await,
            other => to_response(other, format, zone),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let cancel = arm_cancel(client);
        let mut vars = self.vars.lock().await;
        self.identify(client, &mut vars);
        vars.cancel = cancel.clone();
        let results = self.db.execute(&mut vars, query).await;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            out.push(match r {
                Ok(output) => self.respond(client, output, &Format::UnifiedText, &cancel, vars.time_zone_tz()).await?,
                Err(e) => Response::Error(Box::new(error_info(e))),
            });
        }
        Ok(out)
    }
}

pub(super) fn error_info(e: SqlError) -> ErrorInfo {
    match pg_error(e) {
        PgWireError::UserError(info) => *info,
        _ => unreachable!("pg_error makes user errors"),
    }
}

/// The statement's text with each parameter the client declared an `interval` written
/// `CAST($n AS INTERVAL)`: PostgreSQL takes a declared type as the parameter's, while
/// DataFusion infers one from the expression (`ts + $1` would make `$1` a timestamp, and fail).
fn typed_sql(stmt: &StoredStatement<String>) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let interval = |n: &str| n.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| stmt.parameter_types.get(n.wrapping_sub(1)) == Some(&Some(Type::INTERVAL)));
    if !stmt.parameter_types.contains(&Some(Type::INTERVAL)) {
        return std::borrow::Cow::Borrowed(&stmt.statement);
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, &stmt.statement).tokenize() else { return std::borrow::Cow::Borrowed(&stmt.statement) };
    let text: String = tokens
        .iter()
        .map(|t| match t {
            Token::Placeholder(p) if interval(p) => format!("CAST({p} AS INTERVAL)"),
            other => other.to_string(),
        })
        .collect();
    std::borrow::Cow::Owned(text)
}

/// The parameter types of a statement: the client's where it gave them, else the planner's.
async fn parameter_types(session: &Session, stmt: &StoredStatement<String>) -> PgWireResult<Vec<Type>> {
    let mut vars = session.vars.lock().await;
    let (inferred, _) = session.db.describe(&mut vars, &typed_sql(stmt)).await.map_err(pg_error)?;
    let n = inferred.len().max(stmt.parameter_types.len());
    (0..n)
        .map(|i| match stmt.parameter_types.get(i).cloned().flatten() {
            Some(t) => Ok(t),
            None => match inferred.get(i).cloned().flatten() {
                Some(dt) => into_pg_type(&dt),
                None => Ok(Type::UNKNOWN),
            },
        })
        .collect()
}

fn decode_param(portal: &Portal<String>, i: usize, ty: &Type) -> PgWireResult<ScalarValue> {
    if ty.name().starts_with('_') {
        return array_param(portal, i, ty);
    }
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, ty)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, ty)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, ty)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, ty)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, ty)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, ty)?),
        Type::NUMERIC => match portal.parameter::<rust_decimal::Decimal>(i, ty)? {
            Some(d) => ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8),
            None => ScalarValue::Decimal128(None, 38, 0),
        },
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<chrono::NaiveDate>(i, ty)?
                .map(|d| (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal.parameter::<chrono::NaiveDateTime>(i, ty)?.map(|t| t.and_utc().timestamp_micros()),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal.parameter::<chrono::DateTime<chrono::FixedOffset>>(i, ty)?.map(|t| t.timestamp_micros()),
            Some("+00:00".into()),
        ),
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(i, ty)?),
        Type::INTERVAL => ScalarValue::IntervalMonthDayNano(portal.parameter::<pg_interval::Interval>(i, ty)?.map(|v| {
            datafusion::arrow::datatypes::IntervalMonthDayNano::new(v.months, v.days, v.microseconds.saturating_mul(1000))
        })),
        _ => ScalarValue::Utf8(portal.parameter::<String>(i, ty)?),
    })
}

/// An array parameter (`_text`, `_int4`, ...): in text form its literal (`{a,b}`), which the
/// binding reads as PostgreSQL's array input ([`openclaw_sql::parameters`]); in binary form
/// the elements of a text array (other binary arrays are refused).
fn array_param(portal: &Portal<String>, i: usize, ty: &Type) -> PgWireResult<ScalarValue> {
    let raw = portal.parameters.get(i).ok_or(PgWireError::ParameterIndexOutOfBound(i))?;
    let Some(raw) = raw else { return Ok(ScalarValue::Utf8(None)) };
    if portal.parameter_format.format_for(i) == pgwire::api::results::FieldFormat::Text {
        let text = std::str::from_utf8(raw).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        return Ok(ScalarValue::Utf8(Some(text.to_string())));
    }
    match portal.parameter::<Vec<Option<String>>>(i, ty) {
        Ok(Some(items)) => {
            let values: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(&values, &datafusion::arrow::datatypes::DataType::Utf8)))
        }
        Ok(None) => Ok(ScalarValue::Utf8(None)),
        Err(_) => Err(pg_error(SqlError::not_supported(format!("binary {} parameters", ty.name())))),
    }
}

async fn result_fields(session: &Session, sql: &str, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let mut vars = session.vars.lock().await;
    let (_, schema): (_, Option<SchemaRef>) = session.db.describe(&mut vars, sql).await.map_err(pg_error)?;
    match schema {
        Some(schema) => pg_fields(&schema, format),
        None => Ok(vec![]),
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = String;
    type QueryParser = SqlText;

    fn query_parser(&self) -> Arc<SqlText> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(&self, _client: &mut C, stmt: &StoredStatement<String>) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let params = parameter_types(self, stmt).await?;
        let fields = result_fields(self, &typed_sql(stmt), &Format::UnifiedBinary).await?;
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(&self, _client: &mut C, portal: &Portal<String>) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let fields = result_fields(self, &typed_sql(&portal.statement), &portal.result_column_format).await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<String>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = if portal.parameter_len() == 0 {
            None
        } else {
            let types = parameter_types(self, &portal.statement).await?;
            let values = (0..portal.parameter_len())
                .map(|i| decode_param(portal, i, types.get(i).unwrap_or(&Type::UNKNOWN)))
                .collect::<PgWireResult<Vec<_>>>()?;
            Some(values)
        };
        let cancel = arm_cancel(client);
        let mut vars = self.vars.lock().await;
        self.identify(client, &mut vars);
        vars.cancel = cancel.clone();
        let output = self.db.execute_one(&mut vars, &typed_sql(&portal.statement), params).await;
        match output {
            Ok(o) => self.respond(client, o, &portal.result_column_format, &cancel, vars.time_zone_tz()).await,
            Err(e) => Err(pg_error(e)),
        }
    }
}
