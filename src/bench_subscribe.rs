//! `openclaw bench subscribe`: an in-process server (pgwire and HTTP on loopback) with a
//! dashboard-like view over an unbounded Nexmark source read at full speed, measured alone and
//! then with `--subscribers` clients on it (half `COPY (SUBSCRIBE ...)` over pgwire, half
//! WebSockets) and one stalled pgwire cursor that never fetches; then the latency from a
//! committed INSERT to a WebSocket client, at `--flush-interval` and at 50 ms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use openclaw_sql::{Database, SessionVars};
use openclaw_storage::Store;

use crate::bench::{peak_rss_bytes, reset_peak_rss, run as execute};
use crate::server::BoxError;
use crate::EngineArgs;

#[derive(Args)]
pub struct SubscribeArgs {
    /// Subscribers on the view: half pgwire COPY, half WebSocket.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Seconds over which each throughput phase counts the source's rows.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// INSERTs timed per latency phase.
    #[arg(long, default_value_t = 200)]
    inserts: usize,
    /// Rows of the view (`auction % buckets`): each changes with every barrier, so each
    /// subscriber receives twice this many rows per barrier.
    #[arg(long, default_value_t = 100)]
    buckets: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The view the subscribers watch: `buckets` rows, each changing with every barrier.
fn dashboard(buckets: u64) -> String {
    format!("CREATE MATERIALIZED VIEW dash AS SELECT auction % {buckets} AS bucket, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction % {buckets}")
}

const BID_SOURCE: &str = "CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR) WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid'";

/// An in-process server on loopback ports.
pub(crate) struct Running {
    pub(crate) db: Arc<Database>,
    pub(crate) pg_port: u16,
    pub(crate) http_port: u16,
    pub(crate) grpc_port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) dir: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(args: &SubscribeArgs, dataflow: &tokio::runtime::Handle, name: &str, flush_interval_ms: Option<u64>) -> Result<Running, BoxError> {
    start_server(&args.engine, dataflow, &format!("subscribe-{name}"), flush_interval_ms, args.subscribers + 16).await
}

/// A server in this process on loopback ports, over a fresh data dir.
pub(crate) async fn start_server(engine: &EngineArgs, dataflow: &tokio::runtime::Handle, name: &str, flush_interval_ms: Option<u64>, max_connections: usize) -> Result<Running, BoxError> {
    let dir = std::env::temp_dir().join(format!("openclaw-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = engine.engine_config(dataflow);
    if let Some(ms) = flush_interval_ms {
        config.flush_interval_ms = ms;
    }
    let db = Database::open(Store::open_with_cache(&dir, engine.state_cache_mb.max(8) << 20)?, config, None).await?;
    let pg = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (pg_port, http_port, grpc_port) = (pg.local_addr()?.port(), http.local_addr()?.port(), grpc.local_addr()?.port());
    let tasks = vec![
        tokio::spawn(crate::server::pg::serve(pg, db.clone(), max_connections, crate::server::pg::PgFront::trust())),
        tokio::spawn(crate::server::http::serve(http, db.clone(), crate::server::http_ingest::DEFAULT_MAX_INGEST_REQUESTS, crate::server::auth::Auth::Trust, None)),
        tokio::spawn({
            let db = db.clone();
            async move {
                if let Err(e) = crate::server::grpc::serve(grpc, db, crate::server::auth::Auth::Trust, None).await {
                    tracing::error!(error = %e, "the gRPC listener stopped");
                }
            }
        }),
    ];
    Ok(Running { db, pg_port, http_port, grpc_port, tasks, dir })
}

/// Rows the source's readers have read so far (`SHOW SOURCES`).
async fn rows_read(db: &Database) -> Result<u64, BoxError> {
    let mut vars = SessionVars::default();
    let mut total = 0;
    for output in execute(db, &mut vars, "SHOW SOURCES").await? {
        for batch in output.collect().await.map_err(|e| e.message)? {
            let column = batch.column_by_name("rows_read").ok_or("SHOW SOURCES has no rows_read")?;
            let text = datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Int64)?;
            let values = datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(&text);
            total += values.iter().flatten().sum::<i64>() as u64;
        }
    }
    Ok(total)
}

async fn pg_client(port: u16) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=bench dbname=bench"), tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Starts one subscriber on `dash`; it counts the rows (or messages) it receives.
async fn subscriber(run: &Running, websocket: bool, received: Arc<AtomicU64>) -> Result<tokio::task::JoinHandle<()>, BoxError> {
    if websocket {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", run.http_port)).await?;
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/v1/ws/subscribe/dash", run.http_port), tcp).await?;
        return Ok(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let client = pg_client(run.pg_port).await?;
    let copy = client.copy_out("COPY (SUBSCRIBE dash) TO STDOUT").await?;
    Ok(tokio::spawn(async move {
        let _client = client;
        futures::pin_mut!(copy);
        while let Some(Ok(_)) = copy.next().await {
            received.fetch_add(1, Ordering::Relaxed);
        }
    }))
}

/// Reads a stalled durable cursor until it has every token up to the newest durable one; how
/// many rows that took and how long.
async fn catch_up(client: &tokio_postgres::Client) -> Result<String, BoxError> {
    let mut newest = 0u64;
    for message in client.simple_query("SHOW SUBSCRIPTIONS").await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = message {
            newest = r.get(4).and_then(|t| t.parse().ok()).unwrap_or(0);
        }
    }
    let started = Instant::now();
    let (mut rows, mut token) = (0u64, 0u64);
    while token < newest {
        for message in client.simple_query("FETCH 65536 stuck WITH (timeout = '10s')").await? {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = message {
                rows += 1;
                token = token.max(r.get(0).and_then(|t| t.parse().ok()).unwrap_or(0));
            }
        }
    }
    Ok(format!("caught up to token {newest}, {rows} rows, in {:.2} s", started.elapsed().as_secs_f64()))
}

/// Source rows per second over `seconds`, once the source has been running a second.
async fn steady_rate(db: &Database, seconds: u64) -> Result<f64, BoxError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, started) = (rows_read(db).await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok((rows_read(db).await? - before) as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(args: SubscribeArgs, dataflow: tokio::runtime::Handle) -> Result<(), BoxError> {
    let splits = args.engine.worker_threads();
    let source = format!("{BID_SOURCE}, 'nexmark.split.num' = '{splits}')");

    // Alone.
    let alone = {
        let server = start(&args, &dataflow, "alone", None).await?;
        let mut vars = SessionVars::default();
        execute(&server.db, &mut vars, &source).await?;
        reset_peak_rss();
        execute(&server.db, &mut vars, &dashboard(args.buckets)).await?;
        let rate = steady_rate(&server.db, args.seconds).await?;
        // The dataflow runs on the shared dataflow runtime: stop it, or it competes with the
        // next phase (it did, and the subscribers were blamed for halving the rate).
        execute(&server.db, &mut vars, "DROP MATERIALIZED VIEW dash").await?;
        (rate, peak_rss_bytes())
    };
    println!("view alone: {:.0} bids/s, peak RSS {} MiB", alone.0, alone.1 >> 20);

    // With subscribers and a stalled cursor.
    let server = start(&args, &dataflow, "subscribed", None).await?;
    let mut vars = SessionVars::default();
    execute(&server.db, &mut vars, &source).await?;
    reset_peak_rss();
    execute(&server.db, &mut vars, &dashboard(args.buckets)).await?;
    let attach_started = Instant::now();
    let stalled = pg_client(server.pg_port).await?;
    stalled.batch_execute("DECLARE stuck CURSOR FOR SUBSCRIBE dash").await?;
    // A durable subscriber that stalls too: it must catch up from the log, not be closed.
    let durable = pg_client(server.pg_port).await?;
    durable.batch_execute("CREATE SUBSCRIPTION dash_log FROM dash; DECLARE stuck CURSOR FOR SUBSCRIBE dash_log WITH (progress = true)").await?;
    // Dashboards connect at once, as after a deploy.
    let counters: Vec<Arc<AtomicU64>> = (0..args.subscribers).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let attaching = counters.iter().enumerate().map(|(i, c)| subscriber(&server, i % 2 == 1, c.clone()));
    let readers = futures::future::try_join_all(attaching).await?;
    let attach_s = attach_started.elapsed().as_secs_f64();
    let rate = steady_rate(&server.db, args.seconds).await?;
    let peak_rss = peak_rss_bytes();
    let counts: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let alive = readers.iter().filter(|r| !r.is_finished()).count();
    let stalled_outcome = match stalled.simple_query("FETCH ALL stuck WITH (timeout = '0')").await {
        Ok(_) => "still open (within --subscriber-max-rows)".to_string(),
        Err(e) => format!("closed: {}", e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())),
    };
    let durable_outcome = catch_up(&durable).await?;
    println!(
        "with {} subscribers ({} pgwire COPY, {} WebSocket; attached in {attach_s:.1} s): {rate:.0} bids/s ({:.0}% of alone), peak RSS {} MiB; {alive} still reading, rows or messages each: min {}, max {}; the stalled cursor: {stalled_outcome}; the stalled durable cursor: {durable_outcome}",
        args.subscribers,
        args.subscribers.div_ceil(2),
        args.subscribers / 2,
        100.0 * rate / alone.0.max(1.0),
        peak_rss >> 20,
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    readers.iter().for_each(|r| r.abort());
    drop((stalled, durable));
    execute(&server.db, &mut vars, "DROP MATERIALIZED VIEW dash CASCADE").await?;
    drop(server);

    // Latency from a committed INSERT to a WebSocket client.
    let default_ms = args.engine.engine_config(&dataflow).flush_interval_ms;
    for flush_ms in [default_ms, 50] {
        let (p50, p99) = insert_latency(&args, &dataflow, flush_ms).await?;
        println!("INSERT to WebSocket at --flush-interval {flush_ms}ms: p50 {p50:.1} ms, p99 {p99:.1} ms ({} inserts)", args.inserts);
    }
    Ok(())
}

/// p50 and p99 (ms) from the return of each committed INSERT to its row at a WebSocket client.
async fn insert_latency(args: &SubscribeArgs, dataflow: &tokio::runtime::Handle, flush_ms: u64) -> Result<(f64, f64), BoxError> {
    let server = start(args, dataflow, &format!("latency-{flush_ms}"), Some(flush_ms)).await?;
    let mut vars = SessionVars::default();
    execute(&server.db, &mut vars, "CREATE TABLE lat (id BIGINT PRIMARY KEY); CREATE MATERIALIZED VIEW lat_v AS SELECT id FROM lat").await?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port)).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/v1/ws/subscribe/lat_v?snapshot=false", server.http_port), tcp).await?;
    let arrivals = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<i64, Instant>::new()));
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (seen, notify) = (arrivals.clone(), arrived.clone());
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(text) = message else { continue };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(id) = value["row"]["id"].as_i64() {
                seen.lock().expect("arrivals lock").insert(id, Instant::now());
                notify.notify_one();
            }
        }
    });
    let client = pg_client(server.pg_port).await?;
    let mut committed = vec![];
    for id in 0..args.inserts as i64 {
        client.batch_execute(&format!("INSERT INTO lat VALUES ({id})")).await?;
        committed.push((id, Instant::now()));
        // Spread the inserts over the barrier interval, so that the latencies sample all of it.
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while arrivals.lock().expect("arrivals lock").len() < args.inserts {
        if tokio::time::timeout_at(deadline, arrived.notified()).await.is_err() {
            break;
        }
    }
    reader.abort();
    let arrivals = arrivals.lock().expect("arrivals lock");
    let mut latencies: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| arrivals.get(id).map(|arrived| arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    if latencies.len() < args.inserts {
        return Err(format!("only {} of {} inserts reached the WebSocket client", latencies.len(), args.inserts).into());
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}
