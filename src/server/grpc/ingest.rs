//! `openclaw.ingest.v1.Ingest`: `Write`, a stream of batches acknowledged in order once
//! durable, and `WriteBatch`, one of them. A batch with a producer id and sequence number is
//! written at most once: its key (`<producer>/<sequence>`) is stored in the same synced write
//! as its rows, exactly as an HTTP `Idempotency-Key`, so that a client resending what was not
//! acknowledged, after a disconnect or a server restart, writes each batch once.
//!
//! Flow control: a stream's requests are read only as fast as they are written (at most
//! [`super::MAX_UNACKED_PER_STREAM`] acks wait for the client); the rest wait in HTTP/2's
//! windows, so a producer faster than the engine is slowed, never dropped.

use std::sync::Arc;

use futures::StreamExt;
use openclaw_sql::write_api::BodyFormat;
use openclaw_sql::{Database, SqlError, SqlState};
use tonic::{Request, Response, Status, Streaming};

use openclaw_connectors::protobuf::ProtobufMessage;

use super::proto::{write_request::Rows, ProtobufRows, WriteAck, WriteRequest};

/// Set to n by the crash test only: the server dies right after the n-th durable write of a
/// stream, before its ack, as a crash at that moment would.
const CRASH_AFTER_WRITES_ENV: &str = "OPENCLAW_TEST_CRASH_AFTER_GRPC_WRITES";

pub struct IngestService {
    db: Arc<Database>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl IngestService {
    pub fn new(db: Arc<Database>, streams: Arc<tokio::sync::Semaphore>) -> Self {
        Self { db, streams }
    }
}

/// Writes one request; its ack, or the error that ends the call. `message`: the Protobuf
/// message type of the stream's last descriptor set.
async fn write_one(db: &Database, role: Option<&str>, request: WriteRequest, message: &mut Option<ProtobufMessage>) -> Result<WriteAck, Status> {
    db.check_privilege(role, &request.table, openclaw_sql::roles::Privilege::Insert).await.map_err(|e| super::status(&e))?;
    let key = super::producer_key(&request.producer_id, request.sequence)?;
    let (format, body) = match request.rows {
        Some(Rows::ArrowIpc(bytes)) => (BodyFormat::ArrowStream, bytes),
        Some(Rows::JsonRows(bytes)) => (BodyFormat::NdJson, bytes),
        Some(Rows::Protobuf(rows)) => {
            let receipt = write_protobuf(db, &request.table, rows, message, key).await?;
            return Ok(super::ack(request.sequence, &receipt));
        }
        None => return Err(super::status(&SqlError::new(SqlState::InvalidParameterValue, "the request carries no rows").with_hint("set arrow_ipc, json_rows or protobuf"))),
    };
    let receipt = db.write_rows(&request.table, format, body, key).await.map_err(|e| super::status(&e))?;
    Ok(super::ack(request.sequence, &receipt))
}

/// Protobuf messages, decoded (off the async workers) by the descriptor set the request
/// carries, or the stream's last one; a message that does not decode is a dead letter, its
/// bytes as hex.
async fn write_protobuf(db: &Database, table: &str, rows: ProtobufRows, message: &mut Option<ProtobufMessage>, key: Option<String>) -> Result<openclaw_sql::write_api::WriteReceipt, Status> {
    let bad_descriptor = |e: openclaw_connectors::ConnectorError| {
        let error = SqlError::new(SqlState::InvalidParameterValue, e.message);
        super::status(&match e.hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        })
    };
    if !rows.descriptor_set.is_empty() {
        *message = Some(ProtobufMessage::from_descriptor_set(&rows.descriptor_set, &rows.message).map_err(bad_descriptor)?);
    }
    let decoder = match message.as_ref() {
        Some(m) if m.name() == rows.message => m.clone(),
        _ => {
            let e = SqlError::new(SqlState::InvalidParameterValue, format!("no descriptor set for message {:?} on this stream", rows.message))
                .with_hint("send descriptor_set with the first Protobuf request of a stream (and of every WriteBatch)");
            return Err(super::status(&e));
        }
    };
    let records = tokio::task::spawn_blocking(move || {
        rows.messages.iter().map(|m| decoder.to_json(m).map_err(|e| (e, m.iter().map(|b| format!("{b:02x}")).collect()))).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?;
    db.write_records(table, records, key).await.map_err(|e| super::status(&e))
}

#[tonic::async_trait]
impl super::proto::ingest_server::Ingest for IngestService {
    type WriteStream = futures::stream::BoxStream<'static, Result<WriteAck, Status>>;

    async fn write(&self, request: Request<Streaming<WriteRequest>>) -> Result<Response<Self::WriteStream>, Status> {
        let slot = super::take_stream_slot(&self.streams)?;
        let role = super::caller(&request);
        let mut input = request.into_inner();
        let (acks, rx) = tokio::sync::mpsc::channel(super::MAX_UNACKED_PER_STREAM);
        let db = self.db.clone();
        let crash_after = std::env::var(CRASH_AFTER_WRITES_ENV).ok().and_then(|n| n.parse::<u64>().ok());
        tokio::spawn(async move {
            let _slot = slot;
            let mut last: Option<(String, u64)> = None;
            let mut written = 0u64;
            let mut message = None;
            loop {
                let request = match input.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "an ingest stream ended");
                        return;
                    }
                };
                let started = std::time::Instant::now();
                let result = match check_order(&mut last, &request) {
                    Ok(()) => write_one(&db, role.as_deref(), request, &mut message).await,
                    Err(status) => Err(status),
                };
                answered("grpc", &result, started);
                if let Ok(ack) = &result {
                    written += u64::from(!ack.replayed);
                    if crash_after == Some(written) {
                        tracing::error!("{CRASH_AFTER_WRITES_ENV} is set: dying after a durable write, before its ack");
                        std::process::abort();
                    }
                }
                let failed = result.is_err();
                // The client went away: what was written stands, and it resends the rest.
                if acks.send(result).await.is_err() || failed {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|ack| (ack, rx)) });
        Ok(Response::new(stream.boxed()))
    }

    async fn write_batch(&self, request: Request<WriteRequest>) -> Result<Response<WriteAck>, Status> {
        let _slot = super::take_stream_slot(&self.streams)?;
        let role = super::caller(&request);
        let started = std::time::Instant::now();
        let result = write_one(&self.db, role.as_deref(), request.into_inner(), &mut None).await;
        answered("grpc", &result, started);
        result.map(Response::new)
    }
}

/// Counts an answered write, by its gRPC code ([`crate::server::lifetime_metrics`]).
pub(super) fn answered<T>(front: &str, result: &Result<T, Status>, started: std::time::Instant) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    crate::server::lifetime_metrics::ingest_answered(front, &format!("{code:?}"), started.elapsed());
}

/// A producer's sequence numbers must increase along a stream: one that does not is a client's
/// mistake, which would otherwise be taken for a retry and skipped.
fn check_order(last: &mut Option<(String, u64)>, request: &WriteRequest) -> Result<(), Status> {
    if request.producer_id.is_empty() {
        return Ok(());
    }
    if let Some((producer, sequence)) = last.as_ref() {
        if *producer == request.producer_id && request.sequence <= *sequence {
            let e = SqlError::new(SqlState::InvalidParameterValue, format!("sequence {} after {sequence} on a stream of producer {producer:?}", request.sequence))
                .with_hint("sequence numbers increase along a stream; a retry goes on a new stream");
            return Err(super::status(&e));
        }
    }
    *last = Some((request.producer_id.clone(), request.sequence));
    Ok(())
}
