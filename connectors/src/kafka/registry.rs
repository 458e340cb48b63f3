//! Confluent Schema Registry: a client for the REST calls Avro and Protobuf sources and Avro
//! sinks need, and a small in-memory registry speaking the same API (`openclaw kafka mock
//! --schema-registry`, and the tests), for trying them without Confluent's server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::ConnectorError;

/// Longest one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest schema the mock registry accepts, in bytes (a request body limit).
const MOCK_MAX_SCHEMA_BYTES: usize = 1 << 20;

/// A schema as the registry keeps it: its text, its type (`AVRO`, `PROTOBUF`, `JSON`) and
/// the schemas it imports.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredSchema {
    pub id: u32,
    pub schema: String,
    pub schema_type: String,
    pub references: Vec<SchemaReference>,
}

/// A schema's import of another subject's version, by the name the schema imports it as (a
/// Protobuf import path such as `common/money.proto`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

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
        let found = self.version(subject, None).await?;
        Ok((found.id, found.schema))
    }

    /// Version `version` of `subject` (the latest with `None`), with its type and references.
    pub async fn version(&self, subject: &str, version: Option<u32>) -> Result<RegisteredSchema, RegistryError> {
        let which = version.map_or("latest".to_string(), |v| v.to_string());
        let what = format!("subject \"{subject}\" version {which}");
        let body = self.call(self.http.get(format!("{}/subjects/{subject}/versions/{which}", self.base)), &what).await?;
        let references = match body.get("references") {
            None | Some(Value::Null) => vec![],
            Some(r) => serde_json::from_value(r.clone()).map_err(|e| RegistryError::Unavailable(format!("{what}: bad references: {e}")))?,
        };
        // Confluent leaves the type out for Avro.
        let schema_type = body.get("schemaType").and_then(Value::as_str).unwrap_or("AVRO").to_string();
        Ok(RegisteredSchema { id: id_field(&body)?, schema: schema_field(&body)?, schema_type, references })
    }

    /// Registers `schema` under `subject` (a no-op returning the same id when it is there
    /// already), and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        self.register_typed(subject, schema, "AVRO", &[]).await
    }

    /// Registers a schema of `schema_type` with its references, as [`Self::register`].
    pub async fn register_typed(&self, subject: &str, schema: &str, schema_type: &str, references: &[SchemaReference]) -> Result<u32, RegistryError> {
        let body = match schema_type {
            "AVRO" => json!({ "schema": schema }),
            _ => json!({ "schema": schema, "schemaType": schema_type, "references": references }),
        };
        let request = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string());
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
    schemas: Vec<MockSchema>,
    subjects: BTreeMap<String, Vec<u32>>,
}

/// A registered schema: its text, type and references (as the request gave them).
#[derive(PartialEq)]
struct MockSchema {
    schema: String,
    schema_type: String,
    references: Value,
}

impl MockSchema {
    /// The fields of an answer about this schema; the type left out for Avro, as Confluent's.
    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        out.insert("schema".into(), json!(self.schema));
        if self.schema_type != "AVRO" {
            out.insert("schemaType".into(), json!(self.schema_type));
        }
        if self.references.as_array().is_some_and(|r| !r.is_empty()) {
            out.insert("references".into(), self.references.clone());
        }
        out
    }
}

/// Serves a Confluent-compatible registry on `listener` until the task is dropped: register
/// (`POST /subjects/{s}/versions`, Avro checked to be JSON, Protobuf and JSON Schema kept as
/// given), look up by id, by subject and version (or `latest`), and list subjects.
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
        let invalid = || (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error_code": 42201, "message": "Invalid schema" })));
        let Ok(body) = serde_json::from_str::<Value>(&body) else { return invalid() };
        let Some(text) = body.get("schema").and_then(Value::as_str).map(str::to_string) else { return invalid() };
        let schema_type = body.get("schemaType").and_then(Value::as_str).unwrap_or("AVRO").to_string();
        let references = body.get("references").cloned().unwrap_or(json!([]));
        if !["AVRO", "PROTOBUF", "JSON"].contains(&schema_type.as_str()) || (schema_type != "PROTOBUF" && serde_json::from_str::<Value>(&text).is_err()) {
            return invalid();
        }
        let schema = MockSchema { schema: text, schema_type, references };
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
            Some(schema) => (StatusCode::OK, Json(Value::Object(schema.fields()))),
            None => not_found(40403, "Schema not found"),
        }
    }
    async fn version(State(state): State<Shared>, Path((subject, version)): Path<(String, String)>) -> Answer {
        let s = state.lock().expect("registry lock");
        let Some(versions) = s.subjects.get(&subject) else {
            return not_found(40401, "Subject not found");
        };
        let index = match version.as_str() {
            "latest" => versions.len().checked_sub(1),
            v => v.parse::<usize>().ok().and_then(|v| v.checked_sub(1)).filter(|i| *i < versions.len()),
        };
        let Some(index) = index else {
            return not_found(40402, "Version not found");
        };
        let id = versions[index];
        let mut fields = s.schemas[id as usize - 1].fields();
        fields.extend([("subject".into(), json!(subject)), ("version".into(), json!(index + 1)), ("id".into(), json!(id))]);
        (StatusCode::OK, Json(Value::Object(fields)))
    }
    async fn subjects(State(state): State<Shared>) -> Json<Value> {
        Json(json!(state.lock().expect("registry lock").subjects.keys().collect::<Vec<_>>()))
    }

    let app = axum::Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}/versions", axum::routing::post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
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
        assert_eq!(client.version("bid-value", Some(1)).await.unwrap(), RegisteredSchema { id: id1, schema: v1.into(), schema_type: "AVRO".into(), references: vec![] });
        let proto = "syntax = \"proto3\"; import \"money.proto\"; message Bid { Money price = 1; }";
        let money = "syntax = \"proto3\"; message Money { int64 cents = 1; }";
        let money_id = client.register_typed("money", money, "PROTOBUF", &[]).await.unwrap();
        let reference = SchemaReference { name: "money.proto".into(), subject: "money".into(), version: 1 };
        let proto_id = client.register_typed("pbid-value", proto, "PROTOBUF", std::slice::from_ref(&reference)).await.unwrap();
        assert_ne!(money_id, proto_id);
        let found = client.version("pbid-value", None).await.unwrap();
        assert_eq!(found, RegisteredSchema { id: proto_id, schema: proto.into(), schema_type: "PROTOBUF".into(), references: vec![reference] });
        assert!(matches!(client.version("bid-value", Some(3)).await, Err(RegistryError::NotFound(_))));
        assert_eq!(client.latest("bid-value").await.unwrap(), (id2, v2.to_string()));
        assert!(matches!(client.schema_by_id(99).await, Err(RegistryError::NotFound(_))));
        assert!(matches!(client.latest("nope-value").await, Err(RegistryError::NotFound(_))));
        server.abort();
        let gone = RegistryClient::new(&base).unwrap();
        assert!(matches!(gone.schema_by_id(id1).await, Err(RegistryError::Unavailable(_))));
    }
}
