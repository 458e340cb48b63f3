//! The HTTP front: `GET /health`, `GET /metrics` (`metrics.rs`), `POST /v1/sql` (statements, answered as JSON),
//! `GET /v1/subscribe/<name>` (a subscription as Server-Sent Events) and
//! `GET /v1/ws/subscribe/<name>` (the same messages over a WebSocket); `POST /v1/ingest/<table>`
//! is `http_ingest.rs`.
//!
//! Errors are PostgreSQL's (SQLSTATE, message, detail, hint) in a JSON body, under the HTTP
//! status their SQLSTATE maps to ([`http_status`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use futures::{Stream, StreamExt};
use openclaw_sql::{Database, QueryOutput, SessionVars, SqlError, SqlState, Subscription};
use serde_json::{json, Value};

/// Largest `POST /v1/sql` body.
pub const MAX_SQL_BODY_BYTES: usize = 1 << 20;
/// Most rows one statement of `POST /v1/sql` returns; more is an error (use pgwire).
pub const MAX_SQL_RESULT_ROWS: usize = 100_000;
/// Least time between two heartbeats of a subscription's event stream.
pub const SSE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Serves the HTTP front; at most `max_ingest_requests` ingest requests at once. Everything
/// but `/health` and the console's files goes through [`guard`].
pub async fn serve(listener: tokio::net::TcpListener, db: Arc<Database>, max_ingest_requests: usize, auth: super::auth::Auth, tls: Option<pgwire::tokio::TlsAcceptor>) {
    let api = Router::new()
        .route("/metrics", get(super::metrics::metrics))
        .route("/v1/sql", post(sql))
        .route("/v1/subscribe/{name}", get(subscribe))
        .route("/v1/ws/subscribe/{name}", get(subscribe_ws))
        .layer(DefaultBodyLimit::max(MAX_SQL_BODY_BYTES))
        .with_state(db.clone())
        .merge(super::http_ingest::routes(db.clone(), max_ingest_requests))
        .layer(axum::middleware::from_fn_with_state((db, auth), guard));
    let app = Router::new()
        .route("/", get(|| async { console_file("text/html; charset=utf-8", CONSOLE_HTML) }))
        .route("/console.js", get(|| async { console_file("text/javascript; charset=utf-8", CONSOLE_JS) }))
        .route("/console.css", get(|| async { console_file("text/css; charset=utf-8", CONSOLE_CSS) }))
        .route("/health", get(|| async { "ok\n" }))
        .merge(api);
    if let Some(acceptor) = tls {
        return serve_tls(listener, acceptor, app).await;
    }
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

/// [`serve`] over TLS: each connection after its handshake is served by hyper (HTTP/1.1 with
/// upgrades, for WebSockets) in a task of its own.
async fn serve_tls(listener: tokio::net::TcpListener, acceptor: pgwire::tokio::TlsAcceptor, app: Router) {
    let mut connections = super::tls::accept_tls(listener, acceptor, "http");
    while let Some(connection) = connections.recv().await {
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(connection), service).await {
                tracing::debug!(error = %e, "an HTTPS connection ended with an error");
            }
        });
    }
}

/// The console (`GET /`): three files compiled into the binary, so it works offline. It uses
/// only the public API below (`/v1/sql`, `/v1/ws/subscribe`).
const CONSOLE_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

fn console_file(content_type: &'static str, body: &'static str) -> Response {
    ([(axum::http::header::CONTENT_TYPE, content_type), (axum::http::header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The HTTP status of an error, by its SQLSTATE.
fn http_status(code: SqlState) -> StatusCode {
    match code {
        SqlState::UndefinedTable | SqlState::UndefinedObject | SqlState::InvalidCursorName | SqlState::InvalidSchemaName => StatusCode::NOT_FOUND,
        SqlState::DuplicateTable | SqlState::DuplicateObject | SqlState::DependentObjectsStillExist | SqlState::SerializationFailure | SqlState::DuplicateCursor | SqlState::DuplicateSchema => StatusCode::CONFLICT,
        SqlState::InsufficientPrivilege => StatusCode::FORBIDDEN,
        SqlState::FeatureNotSupported => StatusCode::NOT_IMPLEMENTED,
        SqlState::ProgramLimitExceeded | SqlState::StatementTooComplex => StatusCode::PAYLOAD_TOO_LARGE,
        SqlState::QueryCanceled => StatusCode::REQUEST_TIMEOUT,
        SqlState::ConfigurationLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        SqlState::InvalidAuthorizationSpecification => StatusCode::UNAUTHORIZED,
        SqlState::ObjectNotInPrerequisiteState => StatusCode::SERVICE_UNAVAILABLE,
        SqlState::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub(super) fn error_json(e: &SqlError) -> Value {
    json!({"code": e.code.code(), "message": e.message, "detail": e.detail, "hint": e.hint})
}

pub(super) fn error_response(e: SqlError, results: Vec<Value>) -> Response {
    (http_status(e.code), Json(json!({"results": results, "error": error_json(&e)}))).into_response()
}

/// Who the request runs as (its API key's role; [`super::auth::bearer_role`]), and what its
/// path needs: `INSERT` on an ingest or webhook table, `SELECT` on what a subscription reads.
/// `/v1/sql` checks each statement as the role. A refusal is 401 or 403 with the SQLSTATE.
async fn guard(State((db, auth)): State<(Arc<Database>, super::auth::Auth)>, mut request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use openclaw_sql::roles::Privilege;
    // A browser's WebSocket cannot send Authorization: its key comes as a subprotocol.
    let from_protocol = websocket_key(request.headers()).map(|key| format!("Bearer {key}"));
    let header = request.headers().get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?")).or(from_protocol.as_deref());
    let caller = match super::auth::bearer_role(&db, &auth, header) {
        Ok(caller) => caller,
        Err(e) => return error_response(e, vec![]),
    };
    let path = request.uri().path();
    let needs = [("/v1/ingest/", Privilege::Insert), ("/v1/webhook/", Privilege::Insert), ("/v1/subscribe/", Privilege::Select), ("/v1/ws/subscribe/", Privilege::Select)]
        .into_iter()
        .find_map(|(prefix, privilege)| path.strip_prefix(prefix).map(|object| (object.to_string(), privilege)));
    if let Some((object, privilege)) = needs {
        let object = percent_decoded(&object);
        if let Err(e) = db.check_privilege(caller.0.as_deref(), &object, privilege).await {
            return error_response(e, vec![]);
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The subprotocol a browser's WebSocket carries its API key in (`new WebSocket(url,
/// ["openclaw.bearer.<key>"])`; Kubernetes does the same), since it cannot set headers.
const WEBSOCKET_KEY_PROTOCOL: &str = "openclaw.bearer.";

/// The API key a WebSocket request offers as a subprotocol, if it does.
fn websocket_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    let offered = headers.get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered.split(',').find_map(|p| p.trim().strip_prefix(WEBSOCKET_KEY_PROTOCOL))
}

/// A path segment with its `%XX` escapes decoded (as axum's `Path` gives it to the handler).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /v1/sql`: the body is the SQL text, or `{"sql": "..."}`. Runs its statements in order
/// in a session of its own, as the request's role, up to the first error, and answers each
/// one's rows or command tag.
async fn sql(State(db): State<Arc<Database>>, caller: Option<axum::Extension<super::auth::Caller>>, body: Bytes) -> Response {
    let text = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => match o.get("sql") {
            Some(Value::String(s)) => s.clone(),
            _ => return error_response(SqlError::new(SqlState::InvalidParameterValue, "a JSON body needs \"sql\": \"<statements>\""), vec![]),
        },
        _ => match String::from_utf8(body.to_vec()) {
            Ok(s) => s,
            Err(_) => return error_response(SqlError::new(SqlState::InvalidParameterValue, "the body is not UTF-8 text"), vec![]),
        },
    };
    let mut vars = SessionVars::default();
    vars.session_user = caller.and_then(|c| c.0 .0);
    let mut results = vec![];
    for result in db.execute(&mut vars, &text).await {
        let output = match result {
            Ok(output) => output,
            Err(e) => return error_response(e, results),
        };
        match statement_json(output).await {
            Ok(v) => results.push(v),
            Err(e) => return error_response(e, results),
        }
    }
    Json(json!({"results": results})).into_response()
}

/// One statement's answer: its columns and rows, or its command tag.
async fn statement_json(output: QueryOutput) -> Result<Value, SqlError> {
    match output {
        QueryOutput::Command { tag, rows } => Ok(json!({"command": tag, "rows": rows})),
        QueryOutput::Subscription(_) => Err(SqlError::new(SqlState::FeatureNotSupported, "a subscription does not end: read it from GET /v1/subscribe/<name>")),
        QueryOutput::CopyIn { copy, .. } => Err(SqlError::new(SqlState::FeatureNotSupported, "COPY FROM STDIN takes its data over the PostgreSQL protocol")
            .with_hint(format!("POST the rows to /v1/ingest/{}", copy.table))),
        QueryOutput::Rows { schema, mut stream } | QueryOutput::CopyOut { schema, mut stream, .. } => {
            let mut rows = vec![];
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if rows.len() + batch.num_rows() > MAX_SQL_RESULT_ROWS {
                    return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("the result has more than {MAX_SQL_RESULT_ROWS} rows"))
                        .with_hint("add a LIMIT, or read it over the Postgres protocol"));
                }
                rows.extend(rows_json(&batch)?);
            }
            Ok(json!({"columns": columns_json(&schema), "rows": rows}))
        }
    }
}

fn columns_json(schema: &SchemaRef) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let pg = arrow_pg::datatypes::into_pg_type(f.data_type()).map(|t| t.name().to_string()).unwrap_or_else(|_| f.data_type().to_string());
            json!({"name": f.name(), "type": pg})
        })
        .collect()
}

/// A batch's rows as JSON objects (NULLs kept as `null`).
fn rows_json(batch: &RecordBatch) -> Result<Vec<Value>, SqlError> {
    rows_json_text(batch)?
        .iter()
        .map(|row| serde_json::from_str(row).map_err(|e| SqlError::new(SqlState::Internal, format!("arrow's JSON writer wrote an invalid row: {e}"))))
        .collect()
}

/// A batch's rows, each as the text of a JSON object (arrow's line-delimited JSON writer, NULLs
/// kept as `null`, columns in the batch's order).
fn rows_json_text(batch: &RecordBatch) -> Result<Vec<String>, SqlError> {
    use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
    let mut buf = Vec::new();
    let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(&mut buf);
    writer.write(batch).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
    writer.finish().map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
    drop(writer);
    let text = String::from_utf8(buf).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// `GET /v1/subscribe/<name>?snapshot=true|false&progress=true|false&since=T`: the
/// subscription's rows as Server-Sent Events: `change` events (`{"token", "diff", "row"}`), a
/// `progress` event per barrier when asked, else a `heartbeat` with the current token at most
/// every second, and an `error` event if it ends. Event ids are positions: `T:k` on the k-th
/// change of token `T`, `T` on progress and heartbeats; a snapshot's rows have none. A
/// durable subscription (`CREATE SUBSCRIPTION`) resumes from `Last-Event-ID` (what browsers'
/// `EventSource` sends on reconnecting) or `since`, with no change missing or repeated.
async fn subscribe(State(db): State<Arc<Database>>, Path(name): Path<String>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("?").to_string());
    let (subscription, progress, cursor) = match start_subscription(&db, &name, query.as_deref(), last_event_id).await {
        Ok(s) => s,
        Err(e) => return error_response(e, vec![]),
    };
    Sse::new(events(subscription, progress, cursor)).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /v1/ws/subscribe/<name>?snapshot=&progress=`: the same subscription over a WebSocket,
/// each message one JSON object: `{"type": "change", "token", "diff", "row", "id"}`, `{"type":
/// "heartbeat" | "progress", "token"}`, or `{"type": "error", "error": {...}}` before the
/// server closes it. The subscription stops as soon as the client closes or goes.
async fn subscribe_ws(State(db): State<Arc<Database>>, Path(name): Path<String>, RawQuery(query): RawQuery, headers: axum::http::HeaderMap, ws: WebSocketUpgrade) -> Response {
    let (subscription, progress, cursor) = match start_subscription(&db, &name, query.as_deref(), None).await {
        Ok(s) => s,
        Err(e) => return error_response(e, vec![]),
    };
    // A browser refuses the connection unless the server picks the subprotocol it offered.
    let ws = match websocket_key(&headers) {
        Some(key) => ws.protocols([format!("{WEBSOCKET_KEY_PROTOCOL}{key}")]),
        None => ws,
    };
    ws.on_upgrade(move |socket| ws_stream(socket, subscription, progress, cursor))
}

/// Starts the subscription an HTTP request asks for; with it, whether the client wants every
/// progress mark (else heartbeats). `since` (or SSE's `Last-Event-ID`, which wins) resumes a
/// durable subscription: `T` after token `T`, `T:k` after the first `k` rows of token `T`.
async fn start_subscription(db: &Database, name: &str, query: Option<&str>, last_event_id: Option<String>) -> Result<(Subscription, bool, StreamCursor), SqlError> {
    let mut options = vec!["progress = true".to_string()];
    let mut progress = false;
    let mut since = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "snapshot" => options.push(format!("snapshot = '{}'", value.replace('\'', ""))),
            "progress" => progress = matches!(value, "true" | "on" | "1"),
            "since" => since = Some(parse_position(value)?),
            other => return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unrecognized parameter \"{other}\"")).with_hint("use snapshot, progress and since")),
        }
    }
    if let Some(last) = last_event_id {
        since = Some(parse_position(&last)?);
    }
    let ident = format!("\"{}\"", name.replace('"', "\"\""));
    let sql = format!("SUBSCRIBE TO {ident} WITH ({})", options.join(", "));
    let mut parsed = openclaw_sql::parser::parse(&sql)?;
    let mut stmt = match parsed.pop() {
        Some(openclaw_sql::parser::OcStatement::Subscribe(stmt)) if parsed.is_empty() => stmt,
        _ => return Err(SqlError::new(SqlState::Internal, "a SUBSCRIBE did not parse to one subscription")),
    };
    if let Some((after, rows)) = since {
        (stmt.since, stmt.since_rows) = (Some(after), rows);
    }
    let subscription = db.subscribe(&SessionVars::default(), stmt).await?;
    let mut cursor = StreamCursor::new(&subscription);
    if let Some((after, rows)) = since.filter(|(_, rows)| *rows > 0) {
        (cursor.token, cursor.rows) = ((after + 1) as i64, rows);
    }
    Ok((subscription, progress, cursor))
}

/// A resume position, `T` or `T:k` (an event id), as (every change after this token, rows
/// of the next token the client has).
fn parse_position(text: &str) -> Result<(u64, usize), SqlError> {
    let bad = || {
        SqlError::new(SqlState::InvalidParameterValue, format!("invalid position \"{text}\""))
            .with_hint("give a token (since=1234) or an event id (1234:17) as the server sent it")
    };
    match text.split_once(':') {
        None => Ok((text.parse().map_err(|_| bad())?, 0)),
        Some((token, rows)) => {
            let (token, rows): (u64, usize) = (token.parse().map_err(|_| bad())?, rows.parse().map_err(|_| bad())?);
            match token {
                0 => Err(bad()),
                t => Ok((t - 1, rows)),
            }
        }
    }
}

/// Sends the subscription's messages until it ends, the client closes, or a send fails.
async fn ws_stream(mut socket: WebSocket, mut subscription: Subscription, progress: bool, mut cursor: StreamCursor) {
    loop {
        let batch = tokio::select! {
            batch = subscription.next_batch() => batch,
            incoming = socket.recv() => match incoming {
                // Pings are answered by axum; anything else from the client is ignored.
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        let messages = match batch {
            Ok(Some(batch)) => match batch_messages(&batch, progress, &mut cursor) {
                Ok(m) => m,
                Err(e) => vec![Msg::Error(e)],
            },
            Ok(None) => return,
            Err(e) => vec![Msg::Error(e)],
        };
        for message in messages {
            let last = matches!(message, Msg::Error(_));
            if socket.send(WsMessage::Text(message.json().into())).await.is_err() || last {
                let _ = socket.send(WsMessage::Close(None)).await;
                return;
            }
        }
    }
}

/// One message of a subscription, as SSE and WebSocket both carry it.
enum Msg {
    /// `id`: the event's position (`T:k`: the first `k` rows of token `T` are out), none in a
    /// snapshot, which cannot be resumed.
    /// `row`: the row as a JSON object, already encoded (`rows_json_text`).
    Change { token: i64, diff: i64, row: String, id: Option<String> },
    Progress(i64),
    Heartbeat(i64),
    Error(SqlError),
}

impl Msg {
    /// The WebSocket form: the SSE data with the event's kind as `type`. Written as text,
    /// not through `serde_json::Value`: the row is already JSON, and a busy view sends every
    /// subscriber thousands of these per barrier.
    fn json(&self) -> String {
        match self {
            Msg::Change { token, diff, row, id } => {
                // Ids are digits and a colon: nothing to escape.
                let id = id.as_ref().map_or("null".to_string(), |id| format!("\"{id}\""));
                format!(r#"{{"type":"change","token":{token},"diff":{diff},"row":{row},"id":{id}}}"#)
            }
            Msg::Progress(token) => format!(r#"{{"type":"progress","token":{token}}}"#),
            Msg::Heartbeat(token) => format!(r#"{{"type":"heartbeat","token":{token}}}"#),
            Msg::Error(e) => json!({"type": "error", "error": error_json(e)}).to_string(),
        }
    }

    fn event(&self) -> Event {
        match self {
            Msg::Change { token, diff, row, id } => {
                let event = Event::default().event("change").data(format!(r#"{{"token":{token},"diff":{diff},"row":{row}}}"#));
                match id {
                    Some(id) => event.id(id),
                    None => event,
                }
            }
            Msg::Progress(token) => Event::default().event("progress").id(token.to_string()).data(format!(r#"{{"token":{token}}}"#)),
            Msg::Heartbeat(token) => Event::default().event("heartbeat").id(token.to_string()).data(format!(r#"{{"token":{token}}}"#)),
            Msg::Error(e) => Event::default().event("error").data(error_json(e).to_string()),
        }
    }
}

/// The subscription's rows as events, until it ends or the client goes (dropping the stream
/// stops the subscription).
fn events(subscription: Subscription, progress: bool, cursor: StreamCursor) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    futures::stream::unfold((subscription, cursor, false), move |(mut sub, mut cursor, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let messages = match sub.next_batch().await {
                Ok(Some(batch)) => match batch_messages(&batch, progress, &mut cursor) {
                    Ok(m) => m,
                    Err(e) => vec![Msg::Error(e)],
                },
                Ok(None) => return None,
                Err(e) => vec![Msg::Error(e)],
            };
            let ended = messages.iter().any(|m| matches!(m, Msg::Error(_)));
            if !messages.is_empty() {
                return Some((messages.iter().map(Msg::event).collect::<Vec<_>>(), (sub, cursor, ended)));
            }
        }
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok)))
}

/// Where a client's stream stands: what its event ids say, and when it last had a heartbeat.
struct StreamCursor {
    last_beat: Instant,
    /// The token of the last change sent, and how many of its rows are out.
    token: i64,
    rows: usize,
    /// The snapshot's token: its rows get no id, as a snapshot cannot be resumed.
    snapshot_token: Option<i64>,
}

impl StreamCursor {
    fn new(subscription: &Subscription) -> Self {
        Self { last_beat: Instant::now() - SSE_HEARTBEAT_INTERVAL, token: -1, rows: 0, snapshot_token: subscription.snapshot_token().map(|t| t as i64) }
    }

    /// The id of the next change of `token`.
    fn change_id(&mut self, token: i64) -> Option<String> {
        self.rows = if token == self.token { self.rows + 1 } else { 1 };
        self.token = token;
        (self.snapshot_token != Some(token)).then(|| format!("{token}:{}", self.rows))
    }
}

/// The messages of one batch of subscription rows (`token`, `diff`, then the columns):
/// progress rows become progress messages when asked, else a heartbeat at most every
/// [`SSE_HEARTBEAT_INTERVAL`].
fn batch_messages(batch: &RecordBatch, progress: bool, cursor: &mut StreamCursor) -> Result<Vec<Msg>, SqlError> {
    let tokens = batch.column(0).as_primitive::<Int64Type>();
    let diffs = batch.column(1).as_primitive::<Int64Type>();
    let columns = batch.project(&(2..batch.num_columns()).collect::<Vec<_>>()).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
    let rows = rows_json_text(&columns)?;
    let mut messages = Vec::with_capacity(batch.num_rows());
    for (i, row) in rows.into_iter().enumerate() {
        let token = tokens.value(i);
        if !diffs.is_null(i) {
            messages.push(Msg::Change { token, diff: diffs.value(i), row, id: cursor.change_id(token) });
        } else if progress {
            messages.push(Msg::Progress(token));
        } else if cursor.last_beat.elapsed() >= SSE_HEARTBEAT_INTERVAL {
            cursor.last_beat = Instant::now();
            messages.push(Msg::Heartbeat(token));
        }
    }
    Ok(messages)
}
