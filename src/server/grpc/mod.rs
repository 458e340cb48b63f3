//! The gRPC front, on its own listener (`--grpc-listen`): `openclaw.ingest.v1.Ingest`
//! (`ingest.rs`), Arrow Flight `DoPut` (`flight.rs`), the standard health service and server
//! reflection (so that `grpcurl` lists and calls the API without a .proto at hand).

mod flight;
mod ingest;

use std::sync::Arc;

use openclaw_sql::{Database, SqlError, SqlState};

/// The code generated from `proto/openclaw/ingest/v1/ingest.proto` by `build.rs`.
pub mod proto {
    tonic::include_proto!("openclaw.ingest.v1");
}

/// The descriptor set of the API, served by reflection.
const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ingest_descriptor.bin"));

/// Largest message a client may send (an Arrow batch, a page of JSON rows): the HTTP body
/// limit.
pub const MAX_GRPC_MESSAGE_BYTES: usize = super::http_ingest::MAX_INGEST_BODY_BYTES;
/// Write streams (and DoPut calls) open at once; one more is refused with RESOURCE_EXHAUSTED.
pub const MAX_GRPC_STREAMS: usize = 256;
/// Requests of one stream that may wait behind the one being written: the client may have
/// more on the wire, held back by HTTP/2 flow control.
pub const MAX_UNACKED_PER_STREAM: usize = 4;
/// HTTP/2 streams (calls) one connection may have open at once.
const MAX_CONCURRENT_CALLS_PER_CONNECTION: u32 = 64;

/// Serves the gRPC front on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, db: Arc<Database>, auth: super::auth::Auth, tls: Option<pgwire::tokio::TlsAcceptor>) -> Result<(), super::BoxError> {
    let streams = Arc::new(tokio::sync::Semaphore::new(MAX_GRPC_STREAMS));
    let ingest = proto::ingest_server::IngestServer::new(ingest::IngestService::new(db.clone(), streams.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let ingest = tonic::service::interceptor::InterceptedService::new(ingest, api_key(db.clone(), auth.clone()));
    let flight = arrow_flight::flight_service_server::FlightServiceServer::new(flight::FlightIngest::new(db.clone(), streams))
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let flight = tonic::service::interceptor::InterceptedService::new(flight, api_key(db, auth));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<proto::ingest_server::IngestServer<ingest::IngestService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_CONCURRENT_CALLS_PER_CONNECTION))
        .add_service(health)
        .add_service(reflection)
        .add_service(ingest)
        .add_service(flight);
    match tls {
        Some(acceptor) => {
            let connections = super::tls::accept_tls(listener, acceptor, "grpc");
            let incoming = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(connections), Ok::<_, std::io::Error>);
            router.serve_with_incoming(incoming).await?
        }
        None => router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)).await?,
    }
    Ok(())
}

/// A gRPC status for an error, by its SQLSTATE (as the HTTP front maps it to a status), with
/// the SQLSTATE itself in the `x-sqlstate` metadata and the hint in `x-hint`.
/// The interceptor of the ingest and Flight services: the `authorization: Bearer <API key>`
/// metadata's role, as a [`super::auth::Caller`] in the request's extensions (each request's
/// table is checked for `INSERT` where it is known). Health and reflection need no key.
fn api_key(db: Arc<Database>, auth: super::auth::Auth) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        let header = request.metadata().get("authorization").map(|v| v.to_str().unwrap_or("?"));
        let caller = super::auth::bearer_role(&db, &auth, header).map_err(|e| status(&e))?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The role a request runs as (`None`: the superuser).
pub(crate) fn caller<T>(request: &tonic::Request<T>) -> Option<String> {
    request.extensions().get::<super::auth::Caller>().and_then(|c| c.0.clone())
}

pub(crate) fn status(e: &SqlError) -> tonic::Status {
    use tonic::Code;
    let code = match e.code {
        SqlState::UndefinedTable | SqlState::UndefinedObject | SqlState::UndefinedColumn | SqlState::InvalidSchemaName => Code::NotFound,
        SqlState::InsufficientPrivilege => Code::PermissionDenied,
        SqlState::InvalidAuthorizationSpecification => Code::Unauthenticated,
        SqlState::ConfigurationLimitExceeded | SqlState::ProgramLimitExceeded | SqlState::StatementTooComplex => Code::ResourceExhausted,
        SqlState::SerializationFailure => Code::Aborted,
        SqlState::FeatureNotSupported => Code::Unimplemented,
        SqlState::QueryCanceled => Code::DeadlineExceeded,
        SqlState::WrongObjectType | SqlState::ObjectNotInPrerequisiteState => Code::FailedPrecondition,
        SqlState::Internal => Code::Internal,
        _ => Code::InvalidArgument,
    };
    let mut status = tonic::Status::new(code, e.message.clone());
    if let Ok(value) = e.code.code().parse() {
        status.metadata_mut().insert("x-sqlstate", value);
    }
    if let Some(Ok(hint)) = e.hint.as_deref().map(|h| h.replace(['\r', '\n'], " ").parse()) {
        status.metadata_mut().insert("x-hint", hint);
    }
    status
}

/// One of the [`MAX_GRPC_STREAMS`] slots, or RESOURCE_EXHAUSTED (53400).
fn take_stream_slot(streams: &Arc<tokio::sync::Semaphore>) -> Result<tokio::sync::OwnedSemaphorePermit, tonic::Status> {
    streams.clone().try_acquire_owned().map_err(|_| {
        status(&SqlError::new(SqlState::ConfigurationLimitExceeded, format!("{MAX_GRPC_STREAMS} ingest streams are open")).with_hint("retry later, or send more per stream"))
    })
}

/// The idempotency key of a producer's batch: `<producer>/<sequence>`, stored as an HTTP
/// request's `Idempotency-Key` is (same window and bound).
fn producer_key(producer_id: &str, sequence: u64) -> Result<Option<String>, tonic::Status> {
    if producer_id.is_empty() {
        return Ok(None);
    }
    if producer_id.len() > MAX_PRODUCER_ID_BYTES {
        return Err(status(&SqlError::new(SqlState::InvalidParameterValue, format!("a producer id has at most {MAX_PRODUCER_ID_BYTES} bytes"))));
    }
    Ok(Some(format!("grpc:{producer_id}/{sequence}")))
}

/// Longest producer id.
pub const MAX_PRODUCER_ID_BYTES: usize = 200;

/// A receipt as an ack.
fn ack(sequence: u64, receipt: &openclaw_sql::write_api::WriteReceipt) -> proto::WriteAck {
    proto::WriteAck {
        sequence,
        accepted: receipt.accepted,
        dead_letters: receipt.dead_letters,
        errors: receipt.errors.iter().map(|(record, error)| proto::RecordError { record: *record, error: error.clone() }).collect(),
        replayed: receipt.replayed,
    }
}
