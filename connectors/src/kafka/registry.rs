//! Confluent Schema Registry: a client for the REST calls Avro sources and sinks need, and a
//! small in-memory registry speaking the same API (`openclaw kafka mock --schema-registry`,
//! and the tests), for trying Avro without Confluent's server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::ConnectorError;

/// Longest one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest schema the mock registry accepts, in bytes (a request body limit).
const MOCK_MAX_SCHEMA_BYTES: usize = 1 << 20;

/// A registry at `base` (e.g. `http://localhost:8081`).
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

/// Why a registry call failed: the registry said no, or it could not be asked.
#[derive(Debug)]
pub enum RegistryError {
    /// The registry answered that the subject or schema does not exist (HTTP 404).
    NotFound(String),
    /// Any other failure (unreachable, timeout, bad answer); worth retrying.
    Unavailable(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::NotFound(m) | RegistryError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl RegistryError {
    /// As a user-facing error of `CREATE`, naming the registry.
    pub fn into_connector_error(self, base: &str) -> ConnectorError {
        match self {
            RegistryError::NotFound(m) => ConnectorError::new(m).with_hint("register the schema first, or check the topic name"),
            RegistryError::Unavailable(m) => ConnectorError::new(format!("could not reach the schema registry: {m}"))
                .with_hint(format!("check 'schema.registry' ({base})")),
        }
    }
}

impl RegistryClient {
    pub fn new(base: &str) -> Result<Self, ConnectorError> {
        if !base.starts_with("http://") {
            return Err(ConnectorError::new(format!("invalid schema registry address \"{base}\""))
                .with_hint("give an http:// URL, e.g. 'http://localhost:8081' (https is not built in)"));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ConnectorError::new(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The schema (Avro JSON) with this id.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let body = self.call(self.http.get(format!("{}/schemas/ids/{id}", self.base)), &format!("schema id {id}")).await?;
        schema_field(&body)
    }

    /// The latest schema of `subject`: its id and its Avro JSON.
    pub async fn latest(&self, subject: &str) -> Result<(u32, String), RegistryError> {
        let body = self.call(self.http.get(format!("{}/subjects/{subject}/versions/latest", self.base)), &format!("subject \"{subject}\"")).await?;
        Ok((id_field(&body)?, schema_field(&body)?))
    }

    /// Registers `schema` under `subject` (a no-op returning the same id when it is there
    /// already), and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let request = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(json!({ "schema": schema }).to_string());
        id_field(&self.call(request, &format!("subject \"{subject}\"")).await?)
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, RegistryError> {
        let response = request.send().await.map_err(|e| RegistryError::Unavailable(format!("{}: {e}", self.base)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        if status.as_u16() == 404 {
            return Err(RegistryError::NotFound(format!("the schema registry has no {what}")));
        }
        if !status.is_success() {
            return Err(RegistryError::Unavailable(format!("{what}: HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| RegistryError::Unavailable(format!("{what}: not JSON: {e}")))
    }
}

fn schema_field(body: &Value) -> Result<String, RegistryError> {
    body.get("schema").and_then(Value::as_str).map(str::to_string).ok_or_else(|| RegistryError::Unavailable(format!("no \"schema\" in {body}")))
}

fn id_field(body: &Value) -> Result<u32, RegistryError> {
    body.get("id")
        .and_then(Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| RegistryError::Unavailable(format!("no \"id\" in {body}")))
}

/// Runs `fut` to completion from synchronous code inside the runtime (`CREATE` validates on a
/// `block_in_place` thread), or on a small runtime of its own outside one.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(fut),
    }
}

/// The in-memory registry's content: schemas by id (from 1) and subjects' versions.
#[derive(Default)]
struct MockState {
    schemas: Vec<String>,
    subjects: BTreeMap<String, Vec<u32>>,
}

/// Serves a Confluent-compatible registry on `listener` until the task is dropped: register
/// (`POST /subjects/{s}/versions`), look up by id, latest version, and list subjects.
pub async fn serve_mock_registry(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use axum::extract::{DefaultBodyLimit, Path, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Json;

    type Shared = Arc<Mutex<MockState>>;
    type Answer = (StatusCode, Json<Value>);
    fn not_found(code: u32, message: &str) -> Answer {
        (StatusCode::NOT_FOUND, Json(json!({ "error_code": code, "message": message })))
    }
    async fn register(State(state): State<Shared>, Path(subject): Path<String>, body: String) -> Answer {
        let Some(schema) = serde_json::from_str::<Value>(&body).ok().and_then(|b| b.get("schema")?.as_str().map(str::to_string)) else {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error_code": 42201, "message": "Invalid schema" })));
        };
        if serde_json::from_str::<Value>(&schema).is_err() {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error_code": 42201, "message": "Invalid schema" })));
        }
        let mut s = state.lock().expect("registry lock");
        // The same schema text gets the same id, under any subject (as Confluent's does).
        let id = match s.schemas.iter().position(|known| *known == schema) {
            Some(i) => i as u32 + 1,
            None => {
                s.schemas.push(schema);
                s.schemas.len() as u32
            }
        };
        let versions = s.subjects.entry(subject).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        (StatusCode::OK, Json(json!({ "id": id })))
    }
    async fn by_id(State(state): State<Shared>, Path(id): Path<u32>) -> Answer {
        let s = state.lock().expect("registry lock");
        match id.checked_sub(1).and_then(|i| s.schemas.get(i as usize)) {
            Some(schema) => (StatusCode::OK, Json(json!({ "schema": schema }))),
            None => not_found(40403, "Schema not found"),
        }
    }
    async fn latest(State(state): State<Shared>, Path(subject): Path<String>) -> Answer {
        let s = state.lock().expect("registry lock");
        let Some((version, &id)) = s.subjects.get(&subject).and_then(|v| v.iter().enumerate().last()) else {
            return not_found(40401, "Subject not found");
        };
        let schema = &s.schemas[id as usize - 1];
        (StatusCode::OK, Json(json!({ "subject": subject, "version": version + 1, "id": id, "schema": schema })))
    }
    async fn subjects(State(state): State<Shared>) -> Json<Value> {
        Json(json!(state.lock().expect("registry lock").subjects.keys().collect::<Vec<_>>()))
    }

    let app = axum::Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}/versions", axum::routing::post(register))
        .route("/subjects/{subject}/versions/latest", get(latest))
        .route("/schemas/ids/{id}", get(by_id))
        .layer(DefaultBodyLimit::max(MOCK_MAX_SCHEMA_BYTES))
        .with_state(Shared::default());
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mock_registry_registers_and_looks_up_like_confluents() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(serve_mock_registry(listener));
        let client = RegistryClient::new(&base).unwrap();
        let v1 = r#"{"type":"record","name":"bid","fields":[{"name":"auction","type":"long"}]}"#;
        let v2 = r#"{"type":"record","name":"bid","fields":[{"name":"auction","type":"long"},{"name":"price","type":"long","default":0}]}"#;
        let id1 = client.register("bid-value", v1).await.unwrap();
        assert_eq!(client.register("bid-value", v1).await.unwrap(), id1, "registering again is a no-op");
        let id2 = client.register("bid-value", v2).await.unwrap();
        assert_ne!(id1, id2);
        assert_eq!(client.schema_by_id(id1).await.unwrap(), v1);
        assert_eq!(client.latest("bid-value").await.unwrap(), (id2, v2.to_string()));
        assert!(matches!(client.schema_by_id(99).await, Err(RegistryError::NotFound(_))));
        assert!(matches!(client.latest("nope-value").await, Err(RegistryError::NotFound(_))));
        server.abort();
        let gone = RegistryClient::new(&base).unwrap();
        assert!(matches!(gone.schema_by_id(id1).await, Err(RegistryError::Unavailable(_))));
    }
}
