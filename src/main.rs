//! The `openclaw` binary: `serve` runs the server (pgwire and HTTP fronts over one database);
//! `bench` runs a Nexmark query in-process and prints its throughput.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod bench;
mod bench_ingest;
mod bench_subscribe;
mod kafka;
mod server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "openclaw", version, about = "OpenClaw: a streaming SQL engine that speaks the Postgres wire protocol")]
struct Cli {
    /// How log lines (stderr) are written: `text` for people, `json` (one object per line)
    /// for log shippers.
    #[arg(long, global = true, env = "OPENCLAW_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr at `OPENCLAW_LOG`'s levels (default `info`), in `format`.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENCLAW_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: Postgres wire protocol for SQL, HTTP for health.
    Serve(ServeArgs),
    /// Run a benchmark in-process and print its throughput.
    Bench {
        #[command(subcommand)]
        bench: BenchCommand,
    },
    /// Kafka tools: a mock cluster to try OpenClaw without a broker, a Nexmark producer.
    Kafka {
        #[command(subcommand)]
        kafka: kafka::KafkaCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// A Nexmark query as a materialized view over the built-in generator.
    Nexmark(bench::NexmarkArgs),
    /// How long checkpoints hold the inputs, with `--state-mb` of state.
    Checkpoint(bench::CheckpointArgs),
    /// JSON bids from a Kafka topic (librdkafka's mock broker) into a counting view.
    Kafka(bench::KafkaArgs),
    /// Subscribers (pgwire and WebSocket) on a view over a Nexmark source at full speed, and
    /// the latency from a committed INSERT to a WebSocket client.
    Subscribe(bench_subscribe::SubscribeArgs),
    /// Rows posted to `POST /v1/ingest/<table>` by concurrent HTTP clients, into a table and
    /// into a table with a view.
    Ingest(bench_ingest::IngestArgs),
}

/// Limits and pacing shared by `serve` and `bench`.
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Most rows in one micro-batch (chunk).
    #[arg(long, env = "OPENCLAW_CHUNK_SIZE", default_value_t = 4096)]
    chunk_size: usize,
    /// Capacity of each channel between operators, in chunks.
    #[arg(long, env = "OPENCLAW_CHANNEL_CAPACITY", default_value_t = 16)]
    channel_capacity: usize,
    /// How often progress is pushed through the dataflow without a FLUSH (e.g. 1s, 200ms).
    #[arg(long, env = "OPENCLAW_FLUSH_INTERVAL", default_value = "1s")]
    flush_interval: humantime::Duration,
    /// Memory for state, in MiB: half for the operators' decoded state (join sides, aggregate
    /// groups, top-N partitions; least recently used evicted at barriers), a quarter each for
    /// RocksDB's block cache and write buffers. State beyond it stays on disk.
    #[arg(long, env = "OPENCLAW_STATE_CACHE_MB", default_value_t = 256)]
    pub state_cache_mb: usize,
    /// How long a table or source with a watermark may carry no rows before it counts as idle
    /// and stops holding back the watermark of the unions and joins it feeds (e.g. 5s, 0s).
    #[arg(long, env = "OPENCLAW_IDLE_TIMEOUT", default_value = "5s")]
    idle_timeout: humantime::Duration,
    /// How often a checkpoint (a consistent copy of all state) is taken besides the one of
    /// every FLUSH, e.g. 1s; 0s for never.
    #[arg(long, env = "OPENCLAW_CHECKPOINT_INTERVAL", default_value = "5s")]
    checkpoint_interval: humantime::Duration,
    /// Worker threads, and the partitions of each keyed stateful operator (aggregate, join,
    /// top-N) unless a session sets `streaming_parallelism`. Default: the number of cores.
    #[arg(long, env = "OPENCLAW_WORKERS")]
    pub workers: Option<usize>,
    /// Rows a SUBSCRIBE may have waiting for its client; a client further behind is
    /// disconnected with an error that says by how much (the dataflow never waits for it).
    #[arg(long, env = "OPENCLAW_SUBSCRIBER_MAX_ROWS", default_value_t = openclaw_engine::operators::subscribe::DEFAULT_SUBSCRIBER_MAX_ROWS)]
    subscriber_max_rows: usize,
    /// Bytes of changes a SUBSCRIBE may have waiting for its client (Arrow arrays), with the
    /// same consequence as --subscriber-max-rows.
    #[arg(long, env = "OPENCLAW_SUBSCRIBER_MAX_BYTES", default_value_t = openclaw_engine::operators::subscribe::DEFAULT_SUBSCRIBER_MAX_BYTES)]
    subscriber_max_bytes: usize,
    /// Subscriptions (SUBSCRIBE, the HTTP event streams and WebSockets) open at once in all;
    /// one more is refused with 53400.
    #[arg(long, env = "OPENCLAW_MAX_SUBSCRIBERS", default_value_t = openclaw_engine::config::DEFAULT_MAX_SUBSCRIBERS)]
    max_subscribers: usize,
    /// Subscriptions open at once on any one view, table or durable subscription.
    #[arg(long, env = "OPENCLAW_MAX_SUBSCRIBERS_PER_OBJECT", default_value_t = openclaw_engine::config::DEFAULT_MAX_SUBSCRIBERS_PER_OBJECT)]
    max_subscribers_per_object: usize,
}

impl EngineArgs {
    /// `--workers`, or the number of cores, within the named limit.
    pub(crate) fn worker_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        self.workers.unwrap_or(cores).clamp(1, openclaw_engine::operators::exchange::MAX_PARALLELISM)
    }

    /// The engine's settings; `dataflow`: the runtime operators run on.
    pub(crate) fn engine_config(&self, dataflow: &tokio::runtime::Handle) -> openclaw_engine::EngineConfig {
        openclaw_engine::EngineConfig {
            chunk_size_rows: self.chunk_size.max(1),
            channel_capacity_chunks: self.channel_capacity.max(1),
            flush_interval_ms: self.flush_interval.as_millis().max(1) as u64,
            parallelism: self.worker_threads(),
            idle_timeout_ms: self.idle_timeout.as_millis() as u64,
            checkpoint_interval_ms: self.checkpoint_interval.as_millis() as u64,
            dataflow_runtime: Some(dataflow.clone()),
            subscriber_max_rows: self.subscriber_max_rows.max(1),
            subscriber_max_bytes: self.subscriber_max_bytes.max(1),
            max_subscribers: self.max_subscribers,
            max_subscribers_per_object: self.max_subscribers_per_object,
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Directory for all state (RocksDB).
    #[arg(long, env = "OPENCLAW_DATA_DIR", default_value = "./openclaw-data")]
    data_dir: PathBuf,
    /// Address of the Postgres wire protocol listener.
    #[arg(long, env = "OPENCLAW_PG_LISTEN", default_value = "127.0.0.1:5433")]
    pg_listen: SocketAddr,
    /// Address of the HTTP listener (GET /health).
    #[arg(long, env = "OPENCLAW_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Address of the gRPC listener (ingest, Arrow Flight DoPut, health, reflection).
    #[arg(long, env = "OPENCLAW_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,
    /// Most concurrent client connections.
    #[arg(long, env = "OPENCLAW_MAX_CONNECTIONS", default_value_t = 256)]
    max_connections: usize,
    /// Ingest requests (`POST /v1/ingest`, `/v1/webhook`) served at once; one more is refused
    /// with 429 and `Retry-After`.
    #[arg(long, env = "OPENCLAW_MAX_INGEST_REQUESTS", default_value_t = 32)]
    max_ingest_requests: usize,
    /// Once listening, write the bound ports here (`pg=`, `http=` and `grpc=<port>` lines), so
    /// that a supervisor can pass port 0 and learn which ports the kernel chose.
    #[arg(long)]
    ports_file: Option<PathBuf>,
    /// Where history files older than their `history.hot` age go: `s3://bucket/prefix` (S3 or
    /// an S3-compatible store, with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_ALLOW_HTTP) or `file:///directory`. Without it, history stays on
    /// local disk. Checkpoints are uploaded there too (under `_checkpoints/`), for
    /// --restore-from.
    #[arg(long, env = "OPENCLAW_COLD_STORE")]
    cold_store: Option<String>,
    /// With an empty data directory: start from the newest checkpoint uploaded under this URL
    /// (a --cold-store of another server): its catalog, tables, views and source positions.
    /// A data directory that has a database starts from it instead.
    #[arg(long, env = "OPENCLAW_RESTORE_FROM")]
    restore_from: Option<String>,
    /// How Postgres clients authenticate: `trust` (any user, no password; only while every
    /// listener is on loopback) or `scram-sha-256` (the superuser's password). Default:
    /// scram-sha-256 when a password is set or --pg-listen is not loopback, else trust.
    #[arg(long, env = "OPENCLAW_AUTH", value_enum)]
    auth: Option<server::auth::AuthMethod>,
    /// The bootstrap superuser's name.
    #[arg(long, env = "OPENCLAW_SUPERUSER", default_value = "openclaw")]
    superuser: String,
    /// A file whose first line is the superuser's password (instead of OPENCLAW_PASSWORD).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// PEM certificate chain for TLS on the Postgres front (with --tls-key).
    #[arg(long, env = "OPENCLAW_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "OPENCLAW_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// A file holding the 32-byte key (64 hex digits or base64; `openssl rand -hex 32`) that
    /// CREATE SECRET seals values with (instead of OPENCLAW_SECRET_KEY). Without a key,
    /// CREATE SECRET is refused.
    #[arg(long)]
    secret_key_file: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Longest the exit waits for the dataflow's blocking calls to return.
const DATAFLOW_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How much lower than the sessions' the dataflow threads' CPU priority is (a nice value).
/// Sessions are short and the dataflow is busy: when both want the cores, a statement runs
/// first and the dataflow catches up right after (no stream waits on the wall clock).
const DATAFLOW_NICE: libc::c_int = 5;

/// Lowers the calling thread's CPU priority by [`DATAFLOW_NICE`] (on Linux a thread has a
/// nice value of its own). Best effort: a refusal leaves it as it was.
fn lower_cpu_priority() {
    // SAFETY: setpriority(2) reads its arguments only; `who` 0 is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, DATAFLOW_NICE);
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let workers = match &cli.command {
        Command::Serve(args) => args.engine.worker_threads(),
        Command::Bench { bench: BenchCommand::Nexmark(args) } => args.engine.worker_threads(),
        Command::Bench { bench: BenchCommand::Kafka(args) } => args.engine.worker_threads(),
        Command::Bench { bench: BenchCommand::Checkpoint(args) } => args.engine.worker_threads(),
        Command::Bench { bench: BenchCommand::Subscribe(args) } => args.engine.worker_threads(),
        Command::Bench { bench: BenchCommand::Ingest(args) } => args.engine.worker_threads(),
        Command::Kafka { .. } => 2,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("openclaw")
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("openclaw: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Sources and operators get worker threads of their own (see `EngineConfig::dataflow_runtime`).
    let dataflow = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("openclaw-dataflow")
        .on_thread_start(lower_cpu_priority)
        .build();
    let dataflow = match dataflow {
        Ok(r) => r,
        Err(e) => {
            eprintln!("openclaw: cannot start the dataflow runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let handle = dataflow.handle().clone();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => match args.cold_store.as_deref().map(openclaw_connectors::parquet::configure_cold_store) {
                Some(Err(e)) => Err(format!("{}{}", e.message, e.hint.map(|h| format!(" ({h})")).unwrap_or_default()).into()),
                _ => server::serve(server::ServeConfig {
                data_dir: args.data_dir,
                pg_listen: args.pg_listen,
                http_listen: args.http_listen,
                grpc_listen: args.grpc_listen,
                max_connections: args.max_connections,
                max_ingest_requests: args.max_ingest_requests.max(1),
                ports_file: args.ports_file,
                restore_from: args.restore_from,
                state_cache_bytes: args.engine.state_cache_mb.max(8) << 20,
                engine: args.engine.engine_config(&handle),
                security: server::SecurityConfig {
                    auth: args.auth,
                    superuser: args.superuser,
                    password_file: args.password_file,
                    tls_cert: args.tls_cert,
                    tls_key: args.tls_key,
                    secret_key_file: args.secret_key_file,
                },
                })
                .await,
            },
            Command::Bench { bench: BenchCommand::Nexmark(args) } => bench::nexmark(args, handle).await,
            Command::Bench { bench: BenchCommand::Checkpoint(args) } => bench::checkpoint(args, handle).await,
            Command::Bench { bench: BenchCommand::Kafka(args) } => bench::kafka(args, handle).await,
            Command::Bench { bench: BenchCommand::Subscribe(args) } => bench_subscribe::run(args, handle).await,
            Command::Bench { bench: BenchCommand::Ingest(args) } => bench_ingest::run(args, handle).await,
            Command::Kafka { kafka } => kafka::run(kafka).await,
        }
    });
    // Operators still running at exit (a bench's dataflows) are dropped, but a RocksDB call
    // in progress on a blocking thread (a memtable switch) is let finish: the process exiting
    // under it aborts in RocksDB ("pthread lock: Invalid argument").
    dataflow.shutdown_timeout(DATAFLOW_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openclaw: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
