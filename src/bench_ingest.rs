//! `openclaw bench ingest`: rows sent by concurrent clients on loopback (bodies encoded before
//! the clock starts), over HTTP (`POST /v1/ingest/<table>`), gRPC (`Ingest/Write` streams,
//! with producer ids and sequence numbers, 8 batches in flight each) or Arrow Flight
//! (`DoPut`), into a table without a primary key, then into one with a view over it (counted
//! until a FLUSH shows every row). For comparison in the same run, the same rows through a
//! Kafka topic (librdkafka's mock broker, in this process) and a source, materialized as they
//! are in place of the table.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use openclaw_sql::SessionVars;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::bench::run as execute;
use crate::server::BoxError;
use crate::EngineArgs;

#[derive(Args)]
pub struct IngestArgs {
    /// Rows posted per phase.
    #[arg(long, default_value_t = 2_000_000)]
    rows: usize,
    /// Rows per request.
    #[arg(long, default_value_t = 10_000)]
    batch_rows: usize,
    /// Concurrent HTTP clients (one keep-alive connection each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Body formats, comma-separated: ndjson, csv, arrow, protobuf. Each protocol runs with
    /// each of them it takes (HTTP: ndjson, csv, arrow; gRPC: ndjson, arrow, protobuf;
    /// Flight: arrow; Kafka: ndjson, protobuf).
    #[arg(long, default_value = "ndjson", value_delimiter = ',')]
    format: Vec<String>,
    /// The view of the second phase, over `bids (auction, bidder, price, channel)`; a heavy
    /// one (`SELECT bidder, count(*) AS n FROM bids GROUP BY bidder`, a group per row) shows
    /// backpressure: producers slowed, acks later, memory bounded.
    #[arg(long, default_value = "SELECT auction % 100 AS bucket, count(*) AS n, sum(price) AS total FROM bids GROUP BY auction % 100")]
    view: String,
    /// How the rows are sent, comma-separated: http, grpc, flight, kafka.
    #[arg(long, default_value = "http", value_delimiter = ',')]
    protocol: Vec<String>,
    /// Kafka: rows produced between two FLUSHes (librdkafka's mock broker keeps only about
    /// 5 MB per partition, so the topic is filled and drained in steps).
    #[arg(long, default_value_t = 40_000)]
    kafka_step: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

const TABLE: &str = "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR)";

/// One request body of `rows` bid-like rows starting at `first`, and its Content-Type.
fn body(format: &str, first: usize, rows: usize) -> Result<(Vec<u8>, &'static str), BoxError> {
    let ids = first as i64..(first + rows) as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| 1000 + i % 977))),
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| 2000 + i % 331))),
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| (i * 7919) % 100_000))),
        Arc::new(StringArray::from_iter_values(ids.map(|i| CHANNELS[(i % 4) as usize]))),
    ];
    let fields = ["auction", "bidder", "price"].iter().map(|n| Field::new(*n, DataType::Int64, false)).chain([Field::new("channel", DataType::Utf8, false)]);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields.collect::<Vec<_>>())), columns)?;
    let mut out = vec![];
    let content_type = match format {
        "ndjson" => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write(&batch)?;
            writer.finish()?;
            "application/x-ndjson"
        }
        "csv" => {
            datafusion::arrow::csv::Writer::new(&mut out).write(&batch)?;
            "text/csv"
        }
        "arrow" => {
            let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
            writer.write(&batch)?;
            writer.finish()?;
            "application/vnd.apache.arrow.stream"
        }
        "protobuf" => {
            out = protobuf_rows(first, rows);
            "application/x-protobuf"
        }
        other => return Err(format!("--format takes ndjson, csv, arrow or protobuf, not {other}").into()),
    };
    Ok((out, content_type))
}

/// A bid as the bench encodes it in Protobuf (`bench.Bid`).
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoBid {
    #[prost(int64, tag = "1")]
    auction: i64,
    #[prost(int64, tag = "2")]
    bidder: i64,
    #[prost(int64, tag = "3")]
    price: i64,
    #[prost(string, tag = "4")]
    channel: String,
}

impl ProtoBid {
    /// The `i`-th row, as [`body`] makes it.
    fn nth(i: i64) -> Self {
        Self { auction: 1000 + i % 977, bidder: 2000 + i % 331, price: (i * 7919) % 100_000, channel: CHANNELS[(i % 4) as usize].into() }
    }
}

const CHANNELS: [&str; 4] = ["apple", "google", "facebook", "baidu"];

/// The descriptor set of [`ProtoBid`].
fn bid_descriptor_set() -> Vec<u8> {
    use prost_types::{field_descriptor_proto::Type, DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};
    let field = |name: &str, number: i32, kind: Type| FieldDescriptorProto { name: Some(name.into()), number: Some(number), r#type: Some(kind as i32), ..Default::default() };
    let fields = vec![field("auction", 1, Type::Int64), field("bidder", 2, Type::Int64), field("price", 3, Type::Int64), field("channel", 4, Type::String)];
    let message = DescriptorProto { name: Some("Bid".into()), field: fields, ..Default::default() };
    let file = FileDescriptorProto { name: Some("bench.proto".into()), package: Some("bench".into()), message_type: vec![message], syntax: Some("proto3".into()), ..Default::default() };
    prost::Message::encode_to_vec(&FileDescriptorSet { file: vec![file] })
}

/// The same rows as [`body`]'s, as an encoded `ProtobufRows` with its descriptor set.
fn protobuf_rows(first: usize, rows: usize) -> Vec<u8> {
    let messages = (first as i64..(first + rows) as i64).map(|i| prost::Message::encode_to_vec(&ProtoBid::nth(i))).collect();
    let rows = crate::server::grpc::proto::ProtobufRows { message: "bench.Bid".into(), descriptor_set: bid_descriptor_set(), messages };
    prost::Message::encode_to_vec(&rows)
}

/// Posts `bodies` on one keep-alive connection; fails on any answer but 200.
async fn client(port: u16, bodies: Vec<Arc<Vec<u8>>>, content_type: &'static str) -> Result<(), BoxError> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut reader = BufReader::new(stream);
    for body in bodies {
        let head = format!("POST /v1/ingest/bids HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
        reader.get_mut().write_all(head.as_bytes()).await?;
        reader.get_mut().write_all(&body).await?;
        let (mut status, mut length, mut line) = (String::new(), 0usize, String::new());
        reader.read_line(&mut status).await?;
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut answer = vec![0; length];
        reader.read_exact(&mut answer).await?;
        if !status.contains(" 200 ") {
            return Err(format!("{}: {}", status.trim(), String::from_utf8_lossy(&answer)).into());
        }
    }
    Ok(())
}

/// Batches a gRPC client keeps unacknowledged.
const GRPC_WINDOW: usize = 8;

/// Streams `bodies` on one `Ingest/Write` call, as producer `producer`, and waits for every
/// ack.
async fn grpc_client(port: u16, producer: String, bodies: Vec<Arc<Vec<u8>>>, format: &'static str) -> Result<Vec<std::time::Duration>, BoxError> {
    use crate::server::grpc::proto::{ingest_client::IngestClient, write_request::Rows, WriteRequest};
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect().await?;
    let mut client = IngestClient::new(channel).max_encoding_message_size(crate::server::grpc::MAX_GRPC_MESSAGE_BYTES);
    let (tx, rx) = tokio::sync::mpsc::channel(GRPC_WINDOW);
    let expected = bodies.len();
    // When each batch was handed to the stream, for its ack latency.
    let sent = Arc::new(std::sync::Mutex::new(vec![None; expected]));
    let feeder_sent = sent.clone();
    let feeder = tokio::spawn(async move {
        for (sequence, body) in bodies.into_iter().enumerate() {
            feeder_sent.lock().expect("sent lock")[sequence] = Some(Instant::now());
            let body = Arc::unwrap_or_clone(body);
            let rows = match format {
                "arrow" => Rows::ArrowIpc(body),
                // The descriptor set goes with a stream's first request only.
                "protobuf" => match <crate::server::grpc::proto::ProtobufRows as prost::Message>::decode(body.as_slice()) {
                    Ok(mut rows) => {
                        if sequence > 0 {
                            rows.descriptor_set.clear();
                        }
                        Rows::Protobuf(rows)
                    }
                    Err(_) => return,
                },
                _ => Rows::JsonRows(body),
            };
            let request = WriteRequest { table: "bids".into(), producer_id: producer.clone(), sequence: sequence as u64, rows: Some(rows) };
            if tx.send(request).await.is_err() {
                return;
            }
        }
    });
    let requests = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut acks = client.write(requests).await?.into_inner();
    let (mut acked, mut latencies) = (0, Vec::with_capacity(expected));
    while let Some(ack) = acks.message().await? {
        if ack.replayed || ack.sequence != acked as u64 {
            return Err(format!("unexpected ack {ack:?}").into());
        }
        latencies.extend(sent.lock().expect("sent lock")[acked].map(|t| t.elapsed()));
        acked += 1;
        if acked == expected {
            break;
        }
    }
    feeder.abort();
    if acked != expected {
        return Err(format!("{acked} acks for {expected} batches").into());
    }
    Ok(latencies)
}

/// Sends `bodies` (Arrow IPC streams) as one Flight `DoPut`, and waits for every `PutResult`.
async fn flight_client(port: u16, bodies: Vec<Arc<Vec<u8>>>) -> Result<Vec<std::time::Duration>, BoxError> {
    use futures::StreamExt;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect().await?;
    let mut client = arrow_flight::FlightClient::new(channel);
    let batches: Vec<Result<RecordBatch, arrow_flight::error::FlightError>> = bodies
        .iter()
        .flat_map(|body| datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.as_slice()), None).expect("our own stream"))
        .map(|b| b.map_err(arrow_flight::error::FlightError::Arrow))
        .collect();
    let expected = batches.len();
    let data = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(arrow_flight::FlightDescriptor::new_path(vec!["bids".into()])))
        .with_max_flight_data_size(crate::server::grpc::MAX_GRPC_MESSAGE_BYTES)
        .build(futures::stream::iter(batches));
    let results: Vec<_> = client.do_put(data).await?.collect().await;
    let acked = results.into_iter().collect::<Result<Vec<_>, _>>()?.len();
    if acked != expected {
        return Err(format!("{acked} acks for {expected} batches").into());
    }
    Ok(vec![])
}

/// One protocol and one body format.
#[derive(Clone, Copy)]
struct Pair {
    protocol: &'static str,
    format: &'static str,
}

/// The pairs that run: every protocol asked for with every format asked for that it takes.
fn pairs(args: &IngestArgs) -> Result<Vec<Pair>, BoxError> {
    const TAKES: [(&str, &[&str]); 4] =
        [("http", &["ndjson", "csv", "arrow"]), ("grpc", &["ndjson", "arrow", "protobuf"]), ("flight", &["arrow"]), ("kafka", &["ndjson", "protobuf"])];
    let mut pairs = vec![];
    for protocol in &args.protocol {
        let (protocol, formats) = TAKES
            .iter()
            .find(|(p, _)| p == protocol)
            .ok_or_else(|| format!("--protocol takes http, grpc, flight or kafka, not {protocol}"))?;
        for format in &args.format {
            if !["ndjson", "csv", "arrow", "protobuf"].contains(&format.as_str()) {
                return Err(format!("--format takes ndjson, csv, arrow or protobuf, not {format}").into());
            }
            if let Some(format) = formats.iter().find(|f| *f == format) {
                pairs.push(Pair { protocol, format });
            }
        }
    }
    if pairs.is_empty() {
        return Err("no protocol takes any of those formats: http takes ndjson, csv and arrow; grpc ndjson, arrow and protobuf; flight arrow; kafka ndjson and protobuf".into());
    }
    Ok(pairs)
}

/// The request bodies of a phase, dealt round-robin to the clients.
fn bodies(args: &IngestArgs, format: &str) -> Result<(Vec<Vec<Arc<Vec<u8>>>>, &'static str), BoxError> {
    let batches = args.rows.div_ceil(args.batch_rows.max(1));
    let mut per_client: Vec<Vec<Arc<Vec<u8>>>> = vec![vec![]; args.clients.max(1)];
    let mut content_type = "";
    for b in 0..batches {
        let rows = args.batch_rows.min(args.rows - b * args.batch_rows);
        let (bytes, ct) = body(format, b * args.batch_rows, rows)?;
        content_type = ct;
        let n = per_client.len();
        per_client[b % n].push(Arc::new(bytes));
    }
    Ok((per_client, content_type))
}

/// Rows per second of one phase: every body posted, then (with a view) a FLUSH.
async fn phase(args: &IngestArgs, dataflow: &tokio::runtime::Handle, pair: Pair, with_view: bool) -> Result<Phase, BoxError> {
    if pair.protocol == "kafka" {
        return kafka_phase(args, dataflow, pair.format, with_view).await;
    }
    let server = crate::bench_subscribe::start_server(&args.engine, dataflow, &format!("ingest-{}-{}-{with_view}", pair.protocol, pair.format), None, 16).await?;
    let mut vars = SessionVars::default();
    execute(&server.db, &mut vars, TABLE).await?;
    if with_view {
        execute(&server.db, &mut vars, &format!("CREATE MATERIALIZED VIEW per_bucket AS {}", args.view)).await?;
    }
    let (per_client, content_type) = bodies(args, pair.format)?;
    let started = Instant::now();
    let clients = per_client.into_iter().enumerate().map(|(i, bodies)| match pair.protocol {
        "grpc" => tokio::spawn(grpc_client(server.grpc_port, format!("bench-{with_view}-{i}"), bodies, pair.format)),
        "flight" => tokio::spawn(flight_client(server.grpc_port, bodies)),
        _ => tokio::spawn(async move { client(server.http_port, bodies, content_type).await.map(|()| vec![]) }),
    });
    let mut latencies = vec![];
    for c in futures::future::join_all(clients).await {
        latencies.extend(c??);
    }
    if with_view {
        execute(&server.db, &mut vars, "FLUSH").await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    check_count(&server.db, &mut vars, args.rows).await?;
    if with_view {
        execute(&server.db, &mut vars, "DROP MATERIALIZED VIEW per_bucket").await?;
    }
    latencies.sort_unstable();
    Ok(Phase { rows_per_s: args.rows as f64 / elapsed, ack_latencies: latencies })
}

/// Kafka partitions of the comparison's topic.
const KAFKA_PARTITIONS: i32 = 4;

/// The same rows through Kafka: produced to a topic of librdkafka's mock broker a step at a
/// time, each step followed by a FLUSH (which waits until the source has read every
/// partition to its end), into a source materialized as it is (`bids`, in place of the table).
/// Producing and reading overlap and share the machine, as the other protocols' clients do.
async fn kafka_phase(args: &IngestArgs, dataflow: &tokio::runtime::Handle, format: &'static str, with_view: bool) -> Result<Phase, BoxError> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    cluster.create_topic("bids_in", KAFKA_PARTITIONS, 1)?;
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("compression.type", "lz4")
        .set("linger.ms", "10")
        .create()?;
    let server = crate::bench_subscribe::start_server(&args.engine, dataflow, &format!("ingest-kafka-{format}-{with_view}"), None, 16).await?;
    let encode = match format {
        "protobuf" => {
            let descriptor = server.dir.join("bench.desc");
            std::fs::write(&descriptor, bid_descriptor_set())?;
            format!("ENCODE PROTOBUF (message = 'bench.Bid', schema.location = 'file://{}')", descriptor.display())
        }
        _ => "ENCODE JSON".to_string(),
    };
    let mut vars = SessionVars::default();
    execute(&server.db, &mut vars, &format!(
        // The mock broker holds an empty fetch for fetch.wait.max.ms (500 ms by default) even
        // when records arrive meanwhile; a short wait keeps that out of the figure.
        "CREATE SOURCE bids_in (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR) WITH (connector = 'kafka', topic = 'bids_in', 'properties.bootstrap.server' = '{}', 'properties.fetch.wait.max.ms' = '5', 'properties.enable.auto.commit' = 'false') FORMAT PLAIN {encode}",
        cluster.bootstrap_servers()
    ))
    .await?;
    execute(&server.db, &mut vars, "CREATE MATERIALIZED VIEW bids AS SELECT * FROM bids_in").await?;
    if with_view {
        execute(&server.db, &mut vars, &format!("CREATE MATERIALIZED VIEW per_bucket AS {}", args.view)).await?;
    }
    let records = kafka_records(format, args.rows);
    let started = Instant::now();
    for step in records.chunks(args.kafka_step.max(1)) {
        for record in step {
            crate::kafka::send_waiting(&producer, BaseRecord::to("bids_in").payload(record.as_slice()))?;
        }
        producer.flush(std::time::Duration::from_secs(60))?;
        execute(&server.db, &mut vars, "FLUSH").await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    check_count(&server.db, &mut vars, args.rows).await?;
    // The source's readers stop before the broker goes away, so that they do not log its going.
    let drops = if with_view { &["DROP MATERIALIZED VIEW per_bucket", "DROP MATERIALIZED VIEW bids", "DROP SOURCE bids_in"][..] } else { &["DROP MATERIALIZED VIEW bids", "DROP SOURCE bids_in"][..] };
    for sql in drops {
        execute(&server.db, &mut vars, sql).await?;
    }
    drop(server);
    drop(cluster);
    Ok(Phase { rows_per_s: args.rows as f64 / elapsed, ack_latencies: vec![] })
}

/// `rows` bids as Kafka records, one row each: the lines of [`body`]'s NDJSON, or `bench.Bid`
/// messages.
fn kafka_records(format: &str, rows: usize) -> Vec<Vec<u8>> {
    (0..rows as i64)
        .map(|i| {
            let bid = ProtoBid::nth(i);
            match format {
                "protobuf" => prost::Message::encode_to_vec(&bid),
                _ => format!(r#"{{"auction":{},"bidder":{},"price":{},"channel":"{}"}}"#, bid.auction, bid.bidder, bid.price, bid.channel).into_bytes(),
            }
        })
        .collect()
}

/// Nothing dropped: every row sent is in the table.
async fn check_count(db: &openclaw_sql::Database, vars: &mut SessionVars, sent: usize) -> Result<(), BoxError> {
    let counted = count_rows(db, vars).await?;
    if counted != sent as u64 {
        return Err(format!("{counted} rows in the table, {sent} sent").into());
    }
    Ok(())
}

/// `SELECT count(*) FROM bids`.
async fn count_rows(db: &openclaw_sql::Database, vars: &mut SessionVars) -> Result<u64, BoxError> {
    let mut total = 0;
    for output in execute(db, vars, "SELECT count(*) FROM bids").await? {
        for batch in output.collect().await.map_err(|e| e.message)? {
            let column = datafusion::arrow::compute::cast(batch.column(0), &DataType::Int64)?;
            total += datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(&column).iter().flatten().sum::<i64>() as u64;
        }
    }
    Ok(total)
}

/// What one phase measured.
struct Phase {
    rows_per_s: f64,
    /// gRPC only: from handing a batch to the stream to its ack, sorted.
    ack_latencies: Vec<std::time::Duration>,
}

/// The process's peak resident memory so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0) / 1024
}

pub async fn run(args: IngestArgs, dataflow: tokio::runtime::Handle) -> Result<(), BoxError> {
    let pairs = pairs(&args)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let mut summary = vec![];
    for pair in pairs {
        let mut rates = vec![];
        for with_view in [false, true] {
            let measured = phase(&args, &dataflow, pair, with_view).await?;
            let rate = measured.rows_per_s;
            rates.push(rate);
            let into = match (with_view, pair.protocol) {
                (false, "kafka") => "a source materialized as it is",
                (true, "kafka") => "a source materialized as it is, with a view",
                (false, _) => "a table",
                (true, _) => "a table with a view",
            };
            println!(
                "{} rows as {} over {} in batches of {} rows, {} clients, into {into}: {rate:.0} rows/s ({:.0} per core); peak RSS {} MiB",
                args.rows, pair.format, pair.protocol, args.batch_rows, args.clients, rate / cores, peak_rss_mib()
            );
            let l = &measured.ack_latencies;
            if !l.is_empty() {
                let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
                println!("  ack latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", at(0.5), at(0.99), at(1.0));
            }
        }
        summary.push((pair, rates));
    }
    println!("\n{:<8} {:<9} {:>16} {:>16} {:>16} {:>16}", "protocol", "format", "table rows/s", "per core", "+view rows/s", "per core");
    for (pair, rates) in summary {
        println!("{:<8} {:<9} {:>16.0} {:>16.0} {:>16.0} {:>16.0}", pair.protocol, pair.format, rates[0], rates[0] / cores, rates[1], rates[1] / cores);
    }
    println!("({cores} cores; Kafka: produced and read in steps of {} rows, its table a source materialized as it is)", args.kafka_step);
    Ok(())
}
