//! `openclaw bench ingest`: rows posted to `POST /v1/ingest/<table>` by concurrent HTTP
//! clients on loopback (bodies encoded before the clock starts), into a table without a
//! primary key, then into one with a view over it (counted until a FLUSH shows every row).

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
    /// Body format: ndjson, csv or arrow.
    #[arg(long, default_value = "ndjson")]
    format: String,
    #[command(flatten)]
    pub engine: EngineArgs,
}

const TABLE: &str = "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR)";
const VIEW: &str = "CREATE MATERIALIZED VIEW per_bucket AS SELECT auction % 100 AS bucket, count(*) AS n, sum(price) AS total FROM bids GROUP BY auction % 100";

/// One request body of `rows` bid-like rows starting at `first`, and its Content-Type.
fn body(format: &str, first: usize, rows: usize) -> Result<(Vec<u8>, &'static str), BoxError> {
    let ids = first as i64..(first + rows) as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| 1000 + i % 977))),
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| 2000 + i % 331))),
        Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| (i * 7919) % 100_000))),
        Arc::new(StringArray::from_iter_values(ids.map(|i| ["apple", "google", "facebook", "baidu"][(i % 4) as usize]))),
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
        other => return Err(format!("--format takes ndjson, csv or arrow, not {other}").into()),
    };
    Ok((out, content_type))
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

/// Rows per second of one phase: every body posted, then (with a view) a FLUSH.
async fn phase(args: &IngestArgs, dataflow: &tokio::runtime::Handle, with_view: bool) -> Result<f64, BoxError> {
    let server = crate::bench_subscribe::start_server(&args.engine, dataflow, &format!("ingest-{with_view}"), None, 16).await?;
    let mut vars = SessionVars::default();
    execute(&server.db, &mut vars, TABLE).await?;
    if with_view {
        execute(&server.db, &mut vars, VIEW).await?;
    }
    let batches = args.rows.div_ceil(args.batch_rows.max(1));
    let mut per_client: Vec<Vec<Arc<Vec<u8>>>> = vec![vec![]; args.clients.max(1)];
    let mut content_type = "";
    for b in 0..batches {
        let rows = args.batch_rows.min(args.rows - b * args.batch_rows);
        let (bytes, ct) = body(&args.format, b * args.batch_rows, rows)?;
        content_type = ct;
        let n = per_client.len();
        per_client[b % n].push(Arc::new(bytes));
    }
    let started = Instant::now();
    let clients = per_client.into_iter().map(|bodies| tokio::spawn(client(server.http_port, bodies, content_type)));
    for c in futures::future::join_all(clients).await {
        c??;
    }
    if with_view {
        execute(&server.db, &mut vars, "FLUSH").await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if with_view {
        execute(&server.db, &mut vars, "DROP MATERIALIZED VIEW per_bucket").await?;
    }
    Ok(args.rows as f64 / elapsed)
}

pub async fn run(args: IngestArgs, dataflow: tokio::runtime::Handle) -> Result<(), BoxError> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    for with_view in [false, true] {
        let rate = phase(&args, &dataflow, with_view).await?;
        let into = if with_view { "a table with a view" } else { "a table" };
        println!(
            "{} rows as {} in requests of {} rows, {} clients, into {into}: {rate:.0} rows/s ({:.0} per core)",
            args.rows, args.format, args.batch_rows, args.clients, rate / cores
        );
    }
    Ok(())
}
