//! Durable subscriptions across crashes: a client reads part of `CREATE SUBSCRIPTION s FROM v`
//! (v a view over a running Nexmark source), the server is killed with SIGKILL at a moment
//! picked by a seeded generator and started again, and the client resumes — over pgwire with
//! `SUBSCRIBE s SINCE <last complete token>`, over SSE with `Last-Event-ID`. The changes
//! applied over every round equal the view once the source has ended: no change missing,
//! none twice. Also: retention refuses a token it no longer holds, naming the oldest.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Kill-and-restart rounds per test.
const ROUNDS: u64 = 3;
/// Generous bound on any one wait for the stream.
const STREAM_WAIT: Duration = Duration::from_secs(60);

/// The view's content as the client rebuilt it: each row (its columns' text) with its copies.
#[derive(Default, Debug)]
struct Model {
    applied: BTreeMap<String, i64>,
    /// Changes of the token not yet known complete (a pgwire client applies a token once a
    /// later token or its progress row says it is whole).
    pending: Vec<(String, i64)>,
    pending_token: i64,
    /// Every change up to this token is applied.
    complete: i64,
}

impl Model {
    fn apply(&mut self, row: String, diff: i64) {
        let count = self.applied.entry(row.clone()).or_insert(0);
        *count += diff;
        assert!(*count >= 0, "row {row} went below zero copies: a change came twice or out of order");
        if *count == 0 {
            self.applied.remove(&row);
        }
    }

    fn commit_pending(&mut self) {
        for (row, diff) in std::mem::take(&mut self.pending) {
            self.apply(row, diff);
        }
        self.complete = self.complete.max(self.pending_token);
    }

    /// One COPY line: `token \t diff \t columns...` (`\N` diff: a progress row).
    fn copy_line(&mut self, line: &str) {
        let (token, rest) = line.trim_end_matches('\n').split_once('\t').unwrap();
        let token: i64 = token.parse().unwrap();
        let (diff, row) = rest.split_once('\t').unwrap();
        assert!(token >= self.pending_token, "tokens never go back ({} then {token})", self.pending_token);
        if token > self.pending_token {
            self.commit_pending();
            self.pending_token = token;
        }
        match diff {
            "\\N" => {
                self.commit_pending();
                self.complete = token;
            }
            d => self.pending.push((row.to_string(), d.parse().unwrap())),
        }
    }
}

async fn view_rows(client: &Client) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for m in client.simple_query("SELECT bucket, n, total FROM v").await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            let row = (0..r.len()).map(|i| r.get(i).unwrap_or("\\N").to_string()).collect::<Vec<_>>().join("\t");
            *out.entry(row).or_insert(0) += 1;
        }
    }
    out
}

/// The subscription's newest committed token.
async fn newest_token(client: &Client) -> i64 {
    for m in client.simple_query("SHOW SUBSCRIPTIONS").await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            if r.get(0) == Some("s") {
                return r.get(4).unwrap().parse().unwrap();
            }
        }
    }
    panic!("subscription s is not listed");
}

/// Events the source makes in all; Nexmark's proportions make 46 of every 50 a bid.
const EVENTS: i64 = 400_000;
const BIDS: i64 = EVENTS / 50 * 46;

/// The source has not ended: the crash lands while it runs.
async fn assert_source_running(server: &common::TestServer) {
    let client = server.connect().await;
    let rows = client.simple_query("SELECT CAST(sum(n) AS TEXT) FROM v").await.unwrap();
    let read: i64 = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().parse().unwrap()),
            _ => None,
        })
        .expect("a row");
    assert!(read < BIDS, "the source had already ended ({read} bids) before the kill");
}

fn start(dir: std::path::PathBuf) -> common::TestServer {
    common::TestServer::start_with(dir, &["--flush-interval", "50ms", "--checkpoint-interval", "100ms"])
}

/// A source that runs for a few seconds (rate-limited), a view whose rows change with every
/// epoch, and the durable subscription.
async fn set_up(client: &Client) {
    client
        .batch_execute(&format!(
            "CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '{EVENTS}', 'nexmark.min.event.gap.in.ns' = '10000');
             CREATE MATERIALIZED VIEW v AS SELECT auction % 16 AS bucket, count(*) AS n, sum(price) AS total FROM bid GROUP BY auction % 16;
             CREATE SUBSCRIPTION s FROM v WITH (retention = '1 hour');"
        ))
        .await
        .unwrap();
}

/// A server on a fresh data dir with the source, the view and the subscription.
async fn started(name: &str) -> common::TestServer {
    let dir = std::env::temp_dir().join(format!("openclaw-test-sub-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = start(dir);
    set_up(&server.connect().await).await;
    server
}

/// Once the source has ended (FLUSH waits for it) and the stream has delivered every token up
/// to the checkpoint after it, the model must equal the view.
async fn settle_and_compare(client: &Client, caught_up_to: impl std::future::Future<Output = Model>) {
    let model = caught_up_to.await;
    let view = view_rows(client).await;
    let total: i64 = view.keys().map(|row| row.split('\t').nth(1).unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(total, BIDS, "the source ended: every bid is counted once");
    assert_eq!(model.applied, view, "the changes applied over every round equal the view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscription_resumes_across_sigkill_over_pgwire() {
    let mut server = started("pg").await;
    let mut rng = common::Rng(11);
    let mut model = Model::default();
    let mut since: Option<i64> = None;
    for round in 0..ROUNDS {
        let reader = server.connect().await;
        let sql = match since {
            None => "COPY (SUBSCRIBE s WITH (progress = true)) TO STDOUT".to_string(),
            Some(t) => format!("COPY (SUBSCRIBE s WITH (progress = true) SINCE {t}) TO STDOUT"),
        };
        // Read a seeded number of progress rows, then crash (in the middle of a token at times).
        let stop_after = 2 + rng.next() % 6;
        let extra_rows = rng.next() % 8;
        let copy = reader.copy_out(sql.as_str()).await.unwrap();
        futures::pin_mut!(copy);
        let (mut progress_rows, mut rows_after) = (0, 0);
        while progress_rows < stop_after || rows_after < extra_rows {
            let line = tokio::time::timeout(STREAM_WAIT, copy.next()).await.expect("the stream moves").expect("the stream goes on").unwrap();
            let line = std::str::from_utf8(&line).unwrap();
            model.copy_line(line);
            match progress_rows < stop_after {
                true => progress_rows += u64::from(line.contains("\t\\N\t")),
                false => rows_after += 1,
            }
        }
        // Whatever of a token was read but not known complete is dropped, as a client would.
        model.pending.clear();
        since = Some(model.complete);
        assert_source_running(&server).await;
        let dir = server.kill();
        server = start(dir);
        eprintln!("round {round}: killed after token {}; {} rows applied", model.complete, model.applied.len());
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let target = newest_token(&client).await;
    let reader = server.connect().await;
    let sql = format!("COPY (SUBSCRIBE s WITH (progress = true) SINCE {}) TO STDOUT", since.unwrap());
    settle_and_compare(&client, async move {
        let copy = reader.copy_out(sql.as_str()).await.unwrap();
        futures::pin_mut!(copy);
        while model.complete < target {
            let line = tokio::time::timeout(STREAM_WAIT, copy.next()).await.expect("the stream moves").expect("the stream goes on").unwrap();
            model.copy_line(std::str::from_utf8(&line).unwrap());
        }
        model
    })
    .await;
    // The retained log is bounded by what it holds after `oldest`; a token before it is refused.
    let err = client.batch_execute("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE s SINCE 1").await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "22023", "{db:?}");
    assert!(db.detail().unwrap_or("").contains("oldest token"), "{db:?}");
}

/// An SSE stream over raw HTTP/1.1 (each event's `id`, `event` and `data` lines).
struct Sse {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
}

impl Sse {
    async fn open(port: u16, last_event_id: Option<&str>) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request = format!("GET /v1/subscribe/s?progress=true HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{resume}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        let status = lines.next_line().await.unwrap().unwrap();
        assert!(status.contains(" 200 "), "{status}");
        Self { lines }
    }

    /// The next event: (id, event, data).
    async fn next(&mut self) -> (Option<String>, String, serde_json::Value) {
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        loop {
            let line = tokio::time::timeout(STREAM_WAIT, self.lines.next_line()).await.expect("the stream moves").unwrap().expect("stream open");
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = d.to_string();
            } else if line.is_empty() && !event.is_empty() {
                return (id, event, serde_json::from_str(&data).unwrap());
            }
        }
    }
}

/// A change event's row in the form of `view_rows`.
fn sse_row(row: &serde_json::Value) -> String {
    ["bucket", "n", "total"].iter().map(|c| row[c].to_string()).collect::<Vec<_>>().join("\t")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscription_resumes_across_sigkill_over_sse_with_last_event_id() {
    let mut server = started("sse").await;
    let mut rng = common::Rng(23);
    let mut model = Model::default();
    // As a browser's EventSource keeps it: the id of the last event that had one.
    let mut last_id: Option<String> = None;
    for round in 0..ROUNDS {
        let mut sse = Sse::open(server.http_port, last_id.as_deref()).await;
        // Stop in the middle of a token at times: a seeded number of change events.
        let stop_after = 5 + rng.next() % 40;
        let mut changes = 0;
        // Never inside the snapshot: it has no ids, so it cannot be resumed.
        while changes < stop_after || last_id.is_none() {
            let (id, event, data) = sse.next().await;
            if event == "change" {
                model.apply(sse_row(&data["row"]), data["diff"].as_i64().unwrap());
                changes += 1;
            }
            last_id = id.or(last_id);
        }
        assert_source_running(&server).await;
        let dir = server.kill();
        server = start(dir);
        eprintln!("round {round}: killed after event {last_id:?}");
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let target = newest_token(&client).await;
    let port = server.http_port;
    settle_and_compare(&client, async move {
        let mut sse = Sse::open(port, last_id.as_deref()).await;
        loop {
            let (_, event, data) = sse.next().await;
            match event.as_str() {
                "change" => model.apply(sse_row(&data["row"]), data["diff"].as_i64().unwrap()),
                "progress" if data["token"].as_i64().unwrap() >= target => return model,
                "error" => panic!("the stream failed: {data}"),
                _ => {}
            }
        }
    })
    .await;
}


/// A durable subscriber that stops reading falls more than `--subscriber-max-rows` behind; it
/// is not closed, as an ephemeral one is: it drops back to the retained log and catches up,
/// and what it reads, applied, is the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_durable_subscriber_catches_up_from_the_log() {
    let server = common::TestServer::start_with(
        std::env::temp_dir().join(format!("openclaw-test-sub-stalled-{}", std::process::id())),
        &["--flush-interval", "50ms", "--checkpoint-interval", "100ms", "--subscriber-max-rows", "8"],
    );
    let writer = server.connect().await;
    writer
        .batch_execute("CREATE TABLE t (k INT PRIMARY KEY, v INT); CREATE MATERIALIZED VIEW tv AS SELECT k, v FROM t; CREATE SUBSCRIPTION s FROM tv")
        .await
        .unwrap();
    let oldest = common::text_rows(&writer, "SHOW SUBSCRIPTIONS").await[0][3].clone().unwrap();
    let reader = server.connect().await;
    reader.batch_execute(&format!("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE s WITH (progress = true) SINCE {oldest}")).await.unwrap();
    // 10 rounds of 20 writes, none read: far more than 8 rows behind.
    for round in 0..10 {
        let values: Vec<String> = (0..20).map(|i| format!("({}, {round})", (round * 7 + i) % 50)).collect();
        writer.batch_execute(&format!("INSERT INTO t VALUES {}; FLUSH", values.join(", "))).await.unwrap();
    }
    writer.batch_execute("DELETE FROM t WHERE k < 10; FLUSH").await.unwrap();
    let target: i64 = common::text_rows(&writer, "SHOW SUBSCRIPTIONS").await[0][4].clone().unwrap().parse().unwrap();
    let mut model = Model::default();
    while model.complete < target {
        for row in common::text_rows(&reader, "FETCH ALL c WITH (timeout = '5s')").await {
            let cols: Vec<String> = row.iter().map(|c| c.clone().unwrap_or_else(|| "\\N".into())).collect();
            model.copy_line(&cols.join("\t"));
        }
    }
    let mut view = BTreeMap::new();
    for row in common::text_rows(&writer, "SELECT k, v FROM tv").await {
        *view.entry(format!("{}\t{}", row[0].as_ref().unwrap(), row[1].as_ref().unwrap())).or_insert(0) += 1;
    }
    assert_eq!(model.applied, view, "the stalled subscriber caught up with the view, nothing missing or twice");
}
