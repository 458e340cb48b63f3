//! `openclaw kafka ...`: tools around Kafka for demos, benchmarks and tests. `mock` runs
//! librdkafka's mock cluster (a real Kafka protocol peer, in memory) for trying OpenClaw
//! without a broker; `produce-nexmark` writes Nexmark bids as JSON to a topic.

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
    /// Produce Nexmark bids as JSON records to a topic.
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
    let bids = openclaw_connectors::nexmark::json::bids(&options).map_err(|e| e.message)?;
    for (n, good) in bids.take(args.events as usize).enumerate() {
        let n = n as u64;
        let record = match args.malformed_every {
            m if m > 0 && n % m == m - 1 => openclaw_connectors::nexmark::json::malformed(n / m, &good),
            _ => good,
        };
        let mut pending = BaseRecord::<(), str>::to(&args.topic).payload(record.as_str());
        // A full queue is waited out, not dropped.
        while let Err((e, back)) = producer.send(pending) {
            if !matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
                return Err(e.into());
            }
            pending = back;
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(out) = &mut out {
            writeln!(out, "{record}")?;
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
