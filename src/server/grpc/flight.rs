//! Arrow Flight `DoPut` into a table: the descriptor's path is the table's name, each record
//! batch is written (and acknowledged by a `PutResult`) once durable, as an ingest request is.
//! A batch whose `app_metadata` is `{"producer_id": "...", "sequence": n}` is written at most
//! once, as a gRPC `Write` batch with that producer and sequence; the ack's metadata is
//! `{"sequence", "accepted", "dead_letters", "replayed"}`. Every other Flight call is
//! UNIMPLEMENTED.

use std::sync::Arc;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use openclaw_sql::{Database, SqlError, SqlState};
use tonic::{Request, Response, Status, Streaming};

pub struct FlightIngest {
    db: Arc<Database>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl FlightIngest {
    pub fn new(db: Arc<Database>, streams: Arc<tokio::sync::Semaphore>) -> Self {
        Self { db, streams }
    }
}

fn unimplemented<T>(call: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!("OpenClaw's Flight service takes DoPut only, not {call}")))
}

/// The table a `DoPut` writes: the descriptor's one-element path.
fn table_of(descriptor: Option<&FlightDescriptor>) -> Result<String, Status> {
    match descriptor.map(|d| d.path.as_slice()) {
        Some([table]) => Ok(table.clone()),
        _ => Err(super::status(&SqlError::new(SqlState::InvalidParameterValue, "a DoPut's descriptor must be a path of one element, the table's name").with_hint("FlightDescriptor.for_path(\"bids\")"))),
    }
}

/// The producer key a batch's `app_metadata` names, if any.
fn batch_key(app_metadata: &[u8]) -> Result<(Option<String>, u64), Status> {
    if app_metadata.is_empty() {
        return Ok((None, 0));
    }
    let bad = || super::status(&SqlError::new(SqlState::InvalidParameterValue, "a batch's app_metadata must be {\"producer_id\": \"...\", \"sequence\": n}"));
    let value: serde_json::Value = serde_json::from_slice(app_metadata).map_err(|_| bad())?;
    let producer = value["producer_id"].as_str().ok_or_else(bad)?;
    let sequence = value["sequence"].as_u64().ok_or_else(bad)?;
    Ok((super::producer_key(producer, sequence)?, sequence))
}

/// Writes every batch of a DoPut, in order, sending one ack each.
async fn put(db: Arc<Database>, role: Option<String>, mut input: Streaming<FlightData>, acks: tokio::sync::mpsc::Sender<Result<PutResult, Status>>) {
    let first = match input.message().await {
        Ok(Some(first)) => first,
        _ => return,
    };
    let table = match table_of(first.flight_descriptor.as_ref()) {
        Ok(table) => match db.check_privilege(role.as_deref(), &table, openclaw_sql::roles::Privilege::Insert).await {
            Ok(()) => table,
            Err(e) => {
                let _ = acks.send(Err(super::status(&e))).await;
                return;
            }
        },
        Err(status) => {
            let _ = acks.send(Err(status)).await;
            return;
        }
    };
    let data = futures::stream::once(async { Ok(first) }).chain(input).map_err(|status| FlightError::Tonic(Box::new(status)));
    let mut decoder = FlightDataDecoder::new(data);
    while let Some(decoded) = decoder.next().await {
        let started = std::time::Instant::now();
        let result = match decoded {
            Err(e) => Err(super::status(&SqlError::new(SqlState::InvalidTextRepresentation, format!("Flight data: {e}")))),
            Ok(decoded) => match decoded.payload {
                DecodedPayload::RecordBatch(batch) => match batch_key(&decoded.inner.app_metadata) {
                    Ok((key, sequence)) => match db.write_batches(&table, vec![batch], key).await {
                        Ok(receipt) => {
                            let ack = serde_json::json!({"sequence": sequence, "accepted": receipt.accepted, "dead_letters": receipt.dead_letters, "replayed": receipt.replayed});
                            Ok(PutResult { app_metadata: ack.to_string().into() })
                        }
                        Err(e) => Err(super::status(&e)),
                    },
                    Err(status) => Err(status),
                },
                DecodedPayload::Schema(_) | DecodedPayload::None => continue,
            },
        };
        super::ingest::answered("flight", &result, started);
        let failed = result.is_err();
        if acks.send(result).await.is_err() || failed {
            return;
        }
    }
}

#[tonic::async_trait]
impl FlightService for FlightIngest {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let slot = super::take_stream_slot(&self.streams)?;
        let (acks, rx) = tokio::sync::mpsc::channel(super::MAX_UNACKED_PER_STREAM);
        let db = self.db.clone();
        let role = super::caller(&request);
        let input = request.into_inner();
        tokio::spawn(async move {
            let _slot = slot;
            put(db, role, input, acks).await;
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|ack| (ack, rx)) });
        Ok(Response::new(stream.boxed()))
    }

    async fn handshake(&self, _: Request<Streaming<HandshakeRequest>>) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }

    async fn list_flights(&self, _: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn get_flight_info(&self, _: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }

    async fn poll_flight_info(&self, _: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn get_schema(&self, _: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }

    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        unimplemented("DoGet")
    }

    async fn do_action(&self, _: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented("DoAction")
    }

    async fn list_actions(&self, _: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented("ListActions")
    }

    async fn do_exchange(&self, _: Request<Streaming<FlightData>>) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }
}
