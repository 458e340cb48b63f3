//! `openclaw kafka ...`: tools around Kafka for demos, benchmarks and tests. `mock` runs
//! librdkafka's mock cluster (a real Kafka protocol peer, in memory) for trying OpenClaw
//! without a broker, and optionally an in-memory schema registry; `produce-nexmark` writes
//! Nexmark bids as JSON or Avro to a topic.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::server::BoxError;

#[derive(Subcommand)]
pub enum KafkaCommand {
    /// Run librdkafka's in-memory mock cluster until interrupted, and print its bootstrap
    /// servers. It keeps only about 5 MB per partition: a demo and test broker.
    Mock(MockArgs),
    /// Produce Nexmark bids as JSON (or Avro) records to a topic.
    ProduceNexmark(ProduceArgs),
}

#[derive(Args)]
pub struct MockArgs {
    /// Topics to create, as name:partitions (e.g. bid:4).
    #[arg(long = "topic", value_name = "NAME:PARTITIONS")]
    topics: Vec<String>,
    /// Number of mock brokers.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// Also serve an in-memory Confluent-compatible schema registry on this address (e.g.
    /// 127.0.0.1:8081), for trying ENCODE AVRO.
    #[arg(long, value_name = "ADDR")]
    schema_registry: Option<std::net::SocketAddr>,
}

#[derive(Args)]
pub struct ProduceArgs {
    /// Broker list (librdkafka's bootstrap.servers).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    #[arg(long, default_value = "bid")]
    topic: String,
    /// Bids to produce.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Make every N-th record malformed (0: none).
    #[arg(long, default_value_t = 0)]
    malformed_every: u64,
    /// Records per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Also write every record produced, one per line, to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Nexmark generator options, as key=value (e.g. nexmark.base.time=0).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Record encoding: json, or avro (Confluent's wire format; needs --schema-registry).
    #[arg(long, default_value = "json")]
    encode: String,
    /// Schema registry URL; with --encode avro the bid schema is registered under
    /// `<topic>-value`.
    #[arg(long, value_name = "URL")]
    schema_registry: Option<String>,
}

pub async fn run(command: KafkaCommand) -> Result<(), BoxError> {
    match command {
        KafkaCommand::Mock(args) => mock(args).await,
        KafkaCommand::ProduceNexmark(args) => tokio::task::spawn_blocking(move || produce(args)).await?,
    }
}

async fn mock(args: MockArgs) -> Result<(), BoxError> {
    let cluster = rdkafka::mocking::MockCluster::new(args.brokers)?;
    for topic in &args.topics {
        let (name, partitions) = topic.split_once(':').unwrap_or((topic, "1"));
        cluster.create_topic(name, partitions.parse()?, 1)?;
    }
    println!("bootstrap.servers={}", cluster.bootstrap_servers());
    if let Some(addr) = args.schema_registry {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        println!("schema.registry=http://{}", listener.local_addr()?);
        tokio::spawn(openclaw_connectors::kafka::registry::serve_mock_registry(listener));
    }
    std::io::stdout().flush()?;
    tracing::info!(bootstrap = %cluster.bootstrap_servers(), "kafka mock cluster running; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn produce(args: ProduceArgs) -> Result<(), BoxError> {
    let mut options = openclaw_connectors::Options::new();
    for kv in &args.options {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--option {kv}: expected KEY=VALUE"))?;
        options.insert(k.to_string(), v.to_string());
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let mut out = args.out.as_ref().map(std::fs::File::create).transpose()?.map(std::io::BufWriter::new);
    let started = Instant::now();
    for (n, (record, line)) in records(&args, &options)?.take(args.events as usize).enumerate() {
        let n = n as u64;
        let (record, line) = match args.malformed_every {
            m if m > 0 && n % m == m - 1 => malformed(&args.encode, n / m, &record),
            _ => (record, line),
        };
        send_waiting(&producer, BaseRecord::to(&args.topic).payload(record.as_slice()))?;
        if let Some(out) = &mut out {
            writeln!(out, "{line}")?;
        }
        if args.rate > 0 {
            let due = Duration::from_secs_f64((n + 1) as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    if let Some(out) = &mut out {
        out.flush()?;
    }
    eprintln!("produced {} records to {} in {:.1?}", args.events, args.topic, started.elapsed());
    Ok(())
}

/// Bids as records to produce, each with its line for `--out` (the bid as JSON).
fn records(args: &ProduceArgs, options: &openclaw_connectors::Options) -> Result<Box<dyn Iterator<Item = (Vec<u8>, String)>>, BoxError> {
    use openclaw_connectors::nexmark::avro::{AvroBids, Framing, BID_SCHEMA};
    match args.encode.as_str() {
        "json" => Ok(Box::new(openclaw_connectors::nexmark::json::bids(options).map_err(|e| e.message)?.map(|j| (j.clone().into_bytes(), j)))),
        "avro" => {
            let base = args.schema_registry.as_deref().ok_or("--encode avro needs --schema-registry")?;
            let registry = openclaw_connectors::kafka::registry::RegistryClient::new(base).map_err(|e| e.message)?;
            let subject = format!("{}-value", args.topic);
            let id = openclaw_connectors::kafka::registry::block_on(registry.register(&subject, BID_SCHEMA)).map_err(|e| e.to_string())?;
            let mut bids = AvroBids::new(options, Framing::Confluent(id)).map_err(|e| e.message)?;
            // Encoded a chunk at a time (vectorized), handed out one by one.
            let chunks = std::iter::from_fn(move || bids.next_chunk(4096).ok());
            Ok(Box::new(chunks.flatten()))
        }
        other => Err(format!("--encode {other}: expected json or avro").into()),
    }
}

/// The `n`-th malformed record instead of `good`, and its line for `--out`.
fn malformed(encode: &str, n: u64, good: &[u8]) -> (Vec<u8>, String) {
    match encode {
        // Binary: the line only marks it (it may hold any byte, a newline too).
        "avro" => (openclaw_connectors::nexmark::avro::malformed(n, good), format!("malformed avro record {n}")),
        _ => {
            let record = openclaw_connectors::nexmark::json::malformed(n, &String::from_utf8_lossy(good));
            (record.clone().into_bytes(), record)
        }
    }
}

/// Sends `record`; while librdkafka's queue is full, waits for it to drain (the broker
/// acknowledging) instead of dropping the record. The pause is short: the queue drains in
/// milliseconds, and librdkafka offers no notification to wait on.
pub(crate) fn send_waiting(producer: &ThreadedProducer<DefaultProducerContext>, mut record: BaseRecord<'_, (), [u8]>) -> Result<(), rdkafka::error::KafkaError> {
    while let Err((e, back)) = producer.send(record) {
        if !matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
            return Err(e);
        }
        record = back;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
