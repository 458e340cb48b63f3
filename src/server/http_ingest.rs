//! `POST /v1/ingest/<table>`: rows for a table in the body (newline-delimited JSON, a JSON
//! array, CSV or an Arrow IPC stream, by `Content-Type`), committed through the table's writer
//! and answered once durable: `{"table", "accepted", "dead_letters", "replayed"}`. An
//! `Idempotency-Key` header makes a retry safe (`openclaw_sql::write_api`). A request is all or
//! nothing; an error is PostgreSQL's, under the HTTP status of its SQLSTATE.
//!
//! `POST /v1/webhook/<table>`: a delivery to a webhook table (`connector = 'webhook'`), whose
//! signature the table's receiver checks first (a bad one: 401, nothing written).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openclaw_sql::write_api::BodyFormat;
use openclaw_sql::{Database, SqlError, SqlState};
use tokio::sync::Semaphore;

/// Largest body of one ingest request (larger: 413).
pub const MAX_INGEST_BODY_BYTES: usize = 64 << 20;
/// Largest body once decompressed (`Content-Encoding: gzip | zstd`): a small body must not expand
/// without bound.
pub const MAX_DECODED_BODY_BYTES: usize = 256 << 20;
/// Ingest requests served at once by default (`--max-ingest-requests`); one more is refused
/// with 429 and `Retry-After`. A request holds its slot from before its body is read, so the
/// limit also bounds the memory of bodies being received.
pub const DEFAULT_MAX_INGEST_REQUESTS: usize = 32;
/// Seconds a client refused for concurrency is told to wait.
const RETRY_AFTER_SECONDS: &str = "1";
/// How long `?wait=visible` waits by default, and at most.
const DEFAULT_VISIBLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_VISIBLE_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
/// Set (to anything) by the crash test only: the server dies right after a write is durable,
/// before it answers, as a crash at that moment would.
const CRASH_AFTER_WRITE_ENV: &str = "OPENCLAW_TEST_CRASH_AFTER_INGEST_WRITE";

#[derive(Clone)]
struct Ingest {
    db: Arc<Database>,
    slots: Arc<Semaphore>,
    max_requests: usize,
}

/// The ingest routes; at most `max_requests` served at once.
pub(crate) fn routes(db: Arc<Database>, max_requests: usize) -> Router {
    Router::new()
        .route("/v1/ingest/{table}", post(ingest))
        .route("/v1/webhook/{table}", post(webhook))
        // The body is read by `read_body`, under its own limit, once the request has a slot.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(timed))
        .with_state(Ingest { db, slots: Arc::new(Semaphore::new(max_requests)), max_requests })
}

/// Counts each ingest request by its answer's status class, with its latency.
async fn timed(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    super::lifetime_metrics::ingest_answered("http", super::lifetime_metrics::status_class(response.status().as_u16()), started.elapsed());
    response
}

/// `POST /v1/webhook/<table>`: one delivery to a webhook table, checked (its signature) by the
/// table's receiver, then written as ingest writes. The body's format is its `Content-Type`'s
/// (a JSON object or array of them when it names none).
async fn webhook(State(state): State<Ingest>, Path(table): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let (_slot, body) = match admit(&state, body).await {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let format = match headers.get(header::CONTENT_TYPE) {
        Some(_) => body_format(&headers, None).ok().map(|f| if f == BodyFormat::JsonArray { BodyFormat::JsonDocument } else { f }),
        None => None,
    };
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes().to_vec());
    match state.db.write_pushed(&table, &header, format, body).await {
        Ok(receipt) => Json(receipt.json()).into_response(),
        Err(e) => super::http::error_response(e, vec![]),
    }
}

/// A slot for the request, then its body: or the answer that refuses it (429, 413).
async fn admit(state: &Ingest, body: Body) -> Result<(tokio::sync::OwnedSemaphorePermit, Bytes), Box<Response>> {
    let slot = take_slot(state)?;
    Ok((slot, read_body(body).await?))
}

/// The whole body, at most [`MAX_INGEST_BODY_BYTES`], or the answer to one over the limit
/// (413) or cut off.
async fn read_body(body: Body) -> Result<Bytes, Box<Response>> {
    let too_large = || {
        let e = SqlError::new(SqlState::ProgramLimitExceeded, format!("the body is larger than {} MiB", MAX_INGEST_BODY_BYTES >> 20))
            .with_hint("split it into several requests");
        Box::new(super::http::error_response(e, vec![]))
    };
    let limited = http_body_util::Limited::new(body, MAX_INGEST_BODY_BYTES);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Box::new(super::http::error_response(SqlError::new(SqlState::InvalidParameterValue, format!("the body could not be read: {e}")), vec![]))),
    }
}

/// One of the `--max-ingest-requests` slots, or the 429 that says to retry.
fn take_slot(state: &Ingest) -> Result<tokio::sync::OwnedSemaphorePermit, Box<Response>> {
    state.slots.clone().try_acquire_owned().map_err(|_| {
        let e = SqlError::new(SqlState::ConfigurationLimitExceeded, format!("{} ingest requests are being served", state.max_requests))
            .with_hint("retry after the time Retry-After gives");
        let mut response = super::http::error_response(e, vec![]);
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECONDS));
        Box::new(response)
    })
}

async fn ingest(
    State(state): State<Ingest>,
    Path(table): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A body over the limit (or cut off) is answered like every other error.
    let (_slot, body) = match admit(&state, body).await {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let body = match decompress(&headers, body).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(serde_json::json!({"error": super::http::error_json(&e)}))).into_response(),
    };
    let format = match body_format(&headers, query.as_deref()) {
        Ok(f) => f,
        Err(e) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(serde_json::json!({"error": super::http::error_json(&e)}))).into_response(),
    };
    let wait = match visible_wait(query.as_deref()) {
        Ok(w) => w,
        Err(e) => return super::http::error_response(e, vec![]),
    };
    let key = headers.get("idempotency-key").map(|v| v.to_str().unwrap_or("").to_string());
    let receipt = match state.db.write_rows(&table, format, body, key).await {
        Ok(receipt) => receipt,
        Err(e) => return super::http::error_response(e, vec![]),
    };
    if std::env::var_os(CRASH_AFTER_WRITE_ENV).is_some() && !receipt.replayed {
        tracing::error!("{CRASH_AFTER_WRITE_ENV} is set: dying after a durable write, before its answer");
        std::process::abort();
    }
    if let Some(timeout) = wait {
        if let Err(e) = state.db.wait_visible(timeout).await {
            // The write stands: the answer says so beside the error.
            return super::http::error_response(e, vec![receipt.json()]);
        }
    }
    Json(receipt.json()).into_response()
}

/// `?wait=visible[&timeout=10s]`: how long to wait for the views after the write.
fn visible_wait(query: Option<&str>) -> Result<Option<std::time::Duration>, SqlError> {
    let (mut wait, mut timeout) = (false, DEFAULT_VISIBLE_WAIT);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("wait", "visible") => wait = true,
            ("wait", "durable") => wait = false,
            ("timeout", t) => {
                timeout = humantime::parse_duration(t)
                    .ok()
                    .filter(|t| *t <= MAX_VISIBLE_WAIT)
                    .ok_or_else(|| SqlError::new(SqlState::InvalidParameterValue, format!("invalid timeout \"{t}\"")).with_hint("e.g. timeout=5s, at most 300s"))?;
            }
            ("header", _) => {}
            (other, _) => {
                return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unrecognized parameter \"{other}\""))
                    .with_hint("ingest takes wait=visible|durable, timeout and header"))
            }
        }
    }
    Ok(wait.then_some(timeout))
}

/// The body as sent, or decompressed (`Content-Encoding: gzip | zstd`), off the async workers.
async fn decompress(headers: &HeaderMap, body: Bytes) -> Result<Bytes, SqlError> {
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("identity") => Ok(body),
        Some(encoding @ ("zstd" | "gzip")) => {
            let gzip = encoding == "gzip";
            tokio::task::spawn_blocking(move || {
                let decoder: Box<dyn std::io::Read> = match gzip {
                    true => Box::new(flate2::read::MultiGzDecoder::new(body.as_ref())),
                    false => Box::new(zstd::stream::read::Decoder::new(body.as_ref()).map_err(|e| SqlError::new(SqlState::InvalidParameterValue, format!("zstd: {e}")))?),
                };
                read_decoded(decoder, if gzip { "gzip" } else { "zstd" })
            })
            .await
            .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?
        }
        Some(other) => Err(SqlError::new(SqlState::FeatureNotSupported, format!("Content-Encoding {other} is not supported")).with_hint("send the body as it is, or compressed with gzip or zstd")),
    }
}

/// Everything `decoder` gives, at most [`MAX_DECODED_BODY_BYTES`]: a small body must not
/// expand without bound.
fn read_decoded(decoder: Box<dyn std::io::Read + '_>, encoding: &str) -> Result<Bytes, SqlError> {
    use std::io::Read;
    let mut out = Vec::new();
    decoder
        .take(MAX_DECODED_BODY_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| SqlError::new(SqlState::InvalidParameterValue, format!("the body is not valid {encoding}: {e}")))?;
    if out.len() > MAX_DECODED_BODY_BYTES {
        return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("the body decompresses to more than {} MiB", MAX_DECODED_BODY_BYTES >> 20)));
    }
    Ok(Bytes::from(out))
}

/// The body's format from `Content-Type` (and `?header=false` for CSV without a header line).
fn body_format(headers: &HeaderMap, query: Option<&str>) -> Result<BodyFormat, SqlError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let header_line = !query.unwrap_or("").split('&').any(|p| p == "header=false");
    match media.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => Ok(BodyFormat::NdJson),
        "application/json" => Ok(BodyFormat::JsonArray),
        "text/csv" => Ok(BodyFormat::Csv { header: header_line }),
        "application/vnd.apache.arrow.stream" => Ok(BodyFormat::ArrowStream),
        other => Err(SqlError::new(SqlState::InvalidParameterValue, format!("Content-Type \"{other}\" is not a format ingest reads"))
            .with_hint("application/x-ndjson, application/json (an array), text/csv or application/vnd.apache.arrow.stream")),
    }
}
