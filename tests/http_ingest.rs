//! `POST /v1/ingest/<table>` against a real server over raw HTTP/1.1: NDJSON, a JSON array, CSV
//! and an Arrow IPC stream into one table, the view over it counting exactly what was
//! accepted; a bad record refuses the whole request and leaves nothing; the errors with their
//! SQLSTATE and HTTP status; and an idempotency key that holds across a crash between the
//! durable write and the answer.

mod common;

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;

/// One POST on a fresh connection; the status and the JSON body (`None`: the connection closed
/// without an answer).
async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, Value)> {
    let (status, body) = common::http_request(port, "POST", path, headers, body).await?;
    Some((status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))))
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `bytes` compressed by the gzip tool (not by our code).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gzip = std::process::Command::new("gzip").arg("-c").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("gzip");
    gzip.stdin.take().unwrap().write_all(bytes).unwrap();
    gzip.wait_with_output().unwrap().stdout
}

fn arrow_stream(batch: &RecordBatch) -> Vec<u8> {
    let mut out = vec![];
    let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_formats_land_in_one_table_and_bad_requests_leave_nothing() {
    let server = common::TestServer::start("http-ingest");
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE ev (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, amount DOUBLE); CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS s FROM ev")
        .await
        .unwrap();
    let port = server.http_port;
    let path = "/v1/ingest/ev";
    let ndjson = b"{\"id\": 1, \"name\": \"a\", \"amount\": 1.5}\n{\"id\": 2, \"name\": \"b\", \"amount\": null}\n";
    let (status, body) = post(port, path, &[("Content-Type", "application/x-ndjson")], ndjson).await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(2)), "{body}");
    let (status, body) = post(port, path, &[("Content-Type", "application/json")], br#"[{"id": 3, "name": "c", "amount": 3}]"#).await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(1)), "{body}");
    let (status, body) = post(port, path, &[("Content-Type", "text/csv")], b"id,name,amount\n4,d,4\n5,e,5\n").await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(2)), "{body}");
    let (status, body) = post(port, &format!("{path}?header=false"), &[("Content-Type", "text/csv; charset=utf-8")], b"6,f,6\n").await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(1)), "{body}");
    // Arrow: columns by name in another order, an int32 id that widens to the table's bigint.
    let schema = Arc::new(Schema::new(vec![Field::new("amount", DataType::Float64, true), Field::new("name", DataType::Utf8, false), Field::new("id", DataType::Int32, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![7.0, 8.0])), Arc::new(StringArray::from(vec!["g", "h"])), Arc::new(Int32Array::from(vec![7, 8]))]).unwrap();
    let (status, body) = post(port, path, &[("Content-Type", "application/vnd.apache.arrow.stream")], &arrow_stream(&batch)).await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(2)), "{body}");
    // An upsert by primary key, as INSERT does.
    post(port, path, &[("Content-Type", "application/x-ndjson")], b"{\"id\": 1, \"name\": \"a2\", \"amount\": 10}\n").await.unwrap();

    // Malformed records among good ones: the good ones are written, the bad ones go to the
    // dead-letter table in the same write, and the answer counts both.
    let mixed = b"{\"id\": 20, \"name\": \"x\"}\n{\"id\": \"oops\", \"name\": \"y\"}\n\n{\"id\": 21, \"name\": \"z\"\n";
    let (status, body) = post(port, path, &[("Content-Type", "application/x-ndjson"), ("Idempotency-Key", "mixed-1")], mixed).await.unwrap();
    assert_eq!((status, &body["accepted"], &body["dead_letters"]), (200, &serde_json::json!(1), &serde_json::json!(2)), "{body}");
    assert_eq!((&body["errors"][0]["line"], &body["errors"][1]["line"]), (&serde_json::json!(2), &serde_json::json!(4)), "{body}");
    // Its retry writes nothing again, dead letters included.
    let (_, again) = post(port, path, &[("Content-Type", "application/x-ndjson"), ("Idempotency-Key", "mixed-1")], mixed).await.unwrap();
    assert_eq!((&again["replayed"], &again["dead_letters"]), (&serde_json::json!(true), &serde_json::json!(2)), "{again}");
    let (status, body) = post(port, path, &[("Content-Type", "text/csv")], b"id,name,amount\n30,p,1\nthirty-one,q,2\n32,r,3\n").await.unwrap();
    assert_eq!((status, &body["accepted"], &body["dead_letters"]), (200, &serde_json::json!(2), &serde_json::json!(1)), "{body}");
    assert_eq!(body["errors"][0]["line"], 3, "{body}");
    let (status, body) = post(port, path, &[("Content-Type", "application/json")], br#"[{"id": 40, "name": "s"}, {"id": [1], "name": "t"}]"#).await.unwrap();
    assert_eq!((status, &body["accepted"], &body["dead_letters"]), (200, &serde_json::json!(1), &serde_json::json!(1)), "{body}");

    // Refused whole: an unreadable body, a NULL in a NOT NULL column, a missing Arrow
    // column, an unknown table, a format not read, a compressed body.
    let (status, body) = post(port, path, &[("Content-Type", "application/json")], b"[{\"id\": 50,").await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("22P02")), "{body}");
    let (status, body) = post(port, path, &[("Content-Type", "application/json")], br#"[{"id": 21, "name": null}]"#).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("23502")), "{body}");
    let narrow = RecordBatch::try_new(Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)])), vec![Arc::new(Int32Array::from(vec![22]))]).unwrap();
    let (status, body) = post(port, path, &[("Content-Type", "application/vnd.apache.arrow.stream")], &arrow_stream(&narrow)).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("42804")), "{body}");
    let (status, body) = post(port, "/v1/ingest/nope", &[("Content-Type", "application/json")], b"[]").await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("42P01")), "{body}");
    let (status, _) = post(port, path, &[("Content-Type", "text/plain")], b"1").await.unwrap();
    assert_eq!(status, 415);
    let (status, _) = post(port, path, &[("Content-Type", "application/json"), ("Content-Encoding", "br")], b"[]").await.unwrap();
    assert_eq!(status, 415);
    // gzip (as the gzip tool writes it) and zstd bodies are read.
    let gzipped = gzip(b"{\"id\": 46, \"name\": \"gz\"}\n");
    let (status, body) = post(port, path, &[("Content-Type", "application/x-ndjson"), ("Content-Encoding", "gzip")], &gzipped).await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(1)), "{body}");
    let (status, _) = post(port, path, &[("Content-Type", "application/x-ndjson"), ("Content-Encoding", "gzip")], b"not gzip").await.unwrap();
    assert_eq!(status, 415);
    let compressed = zstd::encode_all(&b"{\"id\": 45, \"name\": \"zz\"}\n"[..], 3).unwrap();
    let (status, body) = post(port, path, &[("Content-Type", "application/x-ndjson"), ("Content-Encoding", "zstd")], &compressed).await.unwrap();
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(1)), "{body}");
    let (status, _) = post(port, path, &[("Content-Type", "application/x-ndjson"), ("Content-Encoding", "zstd")], b"not zstd").await.unwrap();
    assert_eq!(status, 415);
    let big = vec![b' '; (64 << 20) + 1];
    let (status, body) = post(port, path, &[("Content-Type", "application/x-ndjson")], &big).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("54000")), "{body}");

    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count(&client, "SELECT n FROM totals").await, 8 + 1 + 2 + 1 + 1 + 1, "exactly the accepted rows, the upsert replacing one");
    assert_eq!(count(&client, "SELECT CAST(sum(amount) AS BIGINT) FROM ev WHERE id < 20").await, 10 + 3 + 4 + 5 + 6 + 7 + 8);
    assert_eq!(count(&client, "SELECT count(*) FROM ev WHERE id >= 50").await, 0, "nothing of a refused request");
    // `?wait=visible`: the view has the row when the answer comes, without a FLUSH.
    let (status, body) = post(port, &format!("{path}?wait=visible&timeout=30s"), &[("Content-Type", "application/x-ndjson")], b"{\"id\": 60, \"name\": \"w\"}\n").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&client, "SELECT n FROM totals").await, 8 + 1 + 2 + 1 + 1 + 1 + 1, "visible at the answer");
    let (status, body) = post(port, &format!("{path}?wait=soon"), &[("Content-Type", "application/x-ndjson")], b"{\"id\": 61, \"name\": \"v\"}\n").await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("22023")), "{body}");
    // Each bad record once, with its line, error and text.
    assert_eq!(count(&client, "SELECT count(*) FROM ev_dlq").await, 4);
    let row = client.query_one("SELECT line, payload, error FROM ev_dlq WHERE request = 'mixed-1' AND line = 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(1), r#"{"id": "oops", "name": "y"}"#);
    assert!(row.get::<_, String>(2).contains("oops"), "{:?}", row.get::<_, String>(2));
}

/// The server dies right after the durable write of a keyed request, before it answers; the
/// client retries with the key after the restart and gets the first answer, and the rows are
/// there once. A retry without a crash is answered the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_a_crash_before_the_answer() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-http-ingest-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = common::TestServer::start_with(dir.clone(), &[]);
    server.connect().await.batch_execute("CREATE TABLE log (n BIGINT)").await.unwrap();
    let dir = server.kill();
    let crashing = common::TestServer::start_with_env(dir, &[], &[("OPENCLAW_TEST_CRASH_AFTER_INGEST_WRITE", "1")]);
    let rows: String = (0..100).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    let headers = [("Content-Type", "application/x-ndjson"), ("Idempotency-Key", "batch-1")];
    assert!(post(crashing.http_port, "/v1/ingest/log", &headers, rows.as_bytes()).await.is_none(), "the server died before answering");
    let dir = crashing.kill();
    let server = common::TestServer::start_with(dir, &[]);
    let (status, body) = post(server.http_port, "/v1/ingest/log", &headers, rows.as_bytes()).await.unwrap();
    assert_eq!((status, &body["accepted"], &body["replayed"]), (200, &serde_json::json!(100), &serde_json::json!(true)), "{body}");
    let (_, body) = post(server.http_port, "/v1/ingest/log", &headers, rows.as_bytes()).await.unwrap();
    assert_eq!(body["replayed"], true, "{body}");
    let client = server.connect().await;
    assert_eq!(count(&client, "SELECT count(*) FROM log").await, 100, "the rows are there once");
    // Another key writes again (the table has no primary key: appended).
    let other = [("Content-Type", "application/x-ndjson"), ("Idempotency-Key", "batch-2")];
    let (_, body) = post(server.http_port, "/v1/ingest/log", &other, rows.as_bytes()).await.unwrap();
    assert_eq!(body["replayed"], false, "{body}");
    assert_eq!(count(&client, "SELECT count(*) FROM log").await, 200);
}

/// What a sender puts in GitHub's signature header: `sha256=` and the HMAC-SHA256 of the body
/// under the secret, as hex, computed by OpenSSL (not by our code).
fn github_signature(secret: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut openssl = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    openssl.stdin.take().unwrap().write_all(body).unwrap();
    let out = String::from_utf8(openssl.wait_with_output().unwrap().stdout).unwrap();
    format!("sha256={}", out.trim().rsplit(' ').next().unwrap())
}

/// A webhook table: signed deliveries land (a redelivery once), a wrong or missing signature
/// is 401 and leaves nothing (not even a dead letter), a body that is not JSON is a dead
/// letter, and the table keeps its secret across a restart. `/v1/ingest` refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_table_takes_only_signed_deliveries() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-webhook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = common::TestServer::start_with(dir, &[]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE gh (action VARCHAR, number BIGINT) WITH (connector = 'webhook', webhook.secret = 's3cret', webhook.idempotency.header = 'X-GitHub-Delivery'); \
             CREATE MATERIALIZED VIEW actions AS SELECT action, count(*) AS n FROM gh GROUP BY action",
        )
        .await
        .unwrap();
    let port = server.http_port;
    let path = "/v1/webhook/gh";
    let opened = br#"{"action": "opened", "number": 7}"#;
    let signed = github_signature("s3cret", opened);
    let delivery = |id: &'static str| [("X-Hub-Signature-256", signed.as_str()), ("X-GitHub-Delivery", id), ("Content-Type", "application/json")];
    let (status, body) = post(port, path, &delivery("d-1"), opened).await.unwrap();
    assert_eq!((status, &body["accepted"], &body["replayed"]), (200, &serde_json::json!(1), &serde_json::json!(false)), "{body}");
    let (status, body) = post(port, path, &delivery("d-1"), opened).await.unwrap();
    assert_eq!((status, &body["replayed"]), (200, &serde_json::json!(true)), "a redelivery: {body}");
    // Signed for another body, unsigned, signed with another secret: refused, nothing written.
    let closed = br#"{"action": "closed", "number": 7}"#;
    let forged = github_signature("guess", closed);
    for headers in [vec![("X-Hub-Signature-256", signed.as_str())], vec![], vec![("X-Hub-Signature-256", forged.as_str())]] {
        let (status, body) = post(port, path, &headers, closed).await.unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("28000")), "{body}");
    }
    let not_json = b"action=closed";
    let (status, body) = post(port, path, &[("X-Hub-Signature-256", github_signature("s3cret", not_json).as_str())], not_json).await.unwrap();
    assert_eq!((status, &body["accepted"], &body["dead_letters"]), (200, &serde_json::json!(0), &serde_json::json!(1)), "{body}");
    let (status, body) = post(port, "/v1/ingest/gh", &[("Content-Type", "application/x-ndjson")], closed).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("42809")), "ingest bypassing the signature: {body}");
    client.batch_execute("FLUSH").await.unwrap();
    let rows = common::text_rows(&client, "SELECT action, n FROM actions").await;
    assert_eq!(rows, vec![vec![Some("opened".to_string()), Some("1".to_string())]]);
    assert_eq!(count(&client, "SELECT count(*) FROM gh_dlq WHERE payload = 'action=closed'").await, 1);
    // After a restart the table still checks, and still knows the delivery.
    let server = common::TestServer::start_with(server.kill(), &[]);
    let port = server.http_port;
    let (status, _) = post(port, path, &[("X-Hub-Signature-256", signed.as_str())], closed).await.unwrap();
    assert_eq!(status, 401);
    let (_, body) = post(port, path, &delivery("d-1"), opened).await.unwrap();
    assert_eq!(body["replayed"], true, "{body}");
    let closed_signed = github_signature("s3cret", closed);
    let (status, _) = post(port, path, &[("X-Hub-Signature-256", closed_signed.as_str())], closed).await.unwrap();
    assert_eq!(status, 200);
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let rows = common::text_rows(&client, "SELECT action, n FROM actions ORDER BY action").await;
    assert_eq!(rows, vec![vec![Some("closed".to_string()), Some("1".to_string())], vec![Some("opened".to_string()), Some("1".to_string())]]);
}

/// With `--max-ingest-requests 1`, a request whose body is still arriving holds the one slot:
/// another is refused with 429, `Retry-After` and 53400, and writes nothing; the first then
/// completes, and the next is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_the_concurrency_limit_gets_429_and_leaves_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("openclaw-test-ingest-429-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = common::TestServer::start_with(dir, &["--max-ingest-requests", "1"]);
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE log (n BIGINT)").await.unwrap();
    let body = b"{\"n\": 1}\n";
    let head = format!("POST /v1/ingest/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let start_slow = || async {
        let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port)).await.unwrap();
        slow.write_all(head.as_bytes()).await.unwrap();
        slow.write_all(&body[..3]).await.unwrap();
        slow
    };
    let mut slow = start_slow().await;
    // Until the slow request's handler holds the slot, others may still get in (and write);
    // and one of them may hold it when the slow one comes, which is then refused itself and
    // started again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut served_before = 0;
    let refused = loop {
        if slow.try_read(&mut [0u8; 1]).is_ok_and(|n| n > 0) {
            slow = start_slow().await;
        }
        let mut other = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port)).await.unwrap();
        let head = format!("POST /v1/ingest/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        other.write_all(head.as_bytes()).await.unwrap();
        other.write_all(body).await.unwrap();
        let mut answer = String::new();
        other.read_to_string(&mut answer).await.unwrap();
        if answer.starts_with("HTTP/1.1 429") {
            break answer;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        served_before += 1;
        assert!(std::time::Instant::now() < deadline, "never refused");
    };
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("\"code\":\"53400\""), "{refused}");
    slow.write_all(&body[3..]).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "the slow request completes: {answer}");
    let (status, _) = post(server.http_port, "/v1/ingest/log", &[("Content-Type", "application/x-ndjson")], body).await.unwrap();
    assert_eq!(status, 200, "the slot is free again");
    assert_eq!(count(&client, "SELECT count(*) FROM log").await, served_before + 2, "the refused request wrote nothing");
}

/// Two clients post 100 keyed requests of 500 rows each, retrying a request (same key) until
/// it is answered, while the server is SIGKILLed at three seeded points of their progress and
/// restarted (the first restart also dies by itself between a durable write and its answer):
/// every request's rows are in the table exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_requests_land_once_across_sigkills() {
    use std::sync::atomic::{AtomicU16, Ordering};
    const CLIENTS: u64 = 2;
    const REQUESTS: u64 = 100;
    const ROWS: u64 = 500;
    let dir = std::env::temp_dir().join(format!("openclaw-test-ingest-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = common::TestServer::start_with(dir, &[]);
    server.connect().await.batch_execute("CREATE TABLE log (k BIGINT, n BIGINT); CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS c FROM log GROUP BY k").await.unwrap();
    let port = Arc::new(AtomicU16::new(server.http_port));
    let (answered, mut progress) = tokio::sync::watch::channel(0u64);
    let answered = Arc::new(answered);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (port, answered) = (port.clone(), answered.clone());
            tokio::spawn(async move {
                for r in 0..REQUESTS {
                    let k = c * REQUESTS + r;
                    let body: String = (0..ROWS).map(|n| format!("{{\"k\": {k}, \"n\": {n}}}\n")).collect();
                    let key = format!("req-{k}");
                    let headers = [("Content-Type", "application/x-ndjson"), ("Idempotency-Key", key.as_str())];
                    loop {
                        match common::http_request(port.load(Ordering::Acquire), "POST", "/v1/ingest/log", &headers, body.as_bytes()).await {
                            Some((200, _)) => break,
                            // Killed mid-request, not yet back, or the key still in flight on
                            // a dying server: the same request again.
                            _ => tokio::task::yield_now().await,
                        }
                    }
                    answered.send_modify(|n| *n += 1);
                }
            })
        })
        .collect();
    let seed = 0x6874_7470u64 ^ std::process::id() as u64;
    let mut rng = common::Rng(seed);
    let kills: Vec<u64> = (1..=3).map(|i| i * 50 + rng.next() % 30).collect();
    eprintln!("seed {seed:#x}: SIGKILL after {kills:?} answers");
    for (i, kill_at) in kills.into_iter().enumerate() {
        progress.wait_for(|n| *n >= kill_at).await.unwrap();
        let dir = server.kill();
        if i == 0 {
            // This one dies by itself right after its first durable write, before answering:
            // the retry must be answered from the stored key, not written again.
            let mut crashing = common::TestServer::start_with_env(dir, &[], &[("OPENCLAW_TEST_CRASH_AFTER_INGEST_WRITE", "1")]);
            port.store(crashing.http_port, Ordering::Release);
            let crashing = tokio::task::spawn_blocking(move || {
                crashing.wait_exit();
                crashing
            })
            .await
            .unwrap();
            server = common::TestServer::start_with(crashing.kill(), &[]);
        } else {
            server = common::TestServer::start_with(dir, &[]);
        }
        port.store(server.http_port, Ordering::Release);
    }
    for c in clients {
        c.await.unwrap();
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let total = CLIENTS * REQUESTS * ROWS;
    assert_eq!(count(&client, "SELECT count(*) FROM log").await, total as i64, "every row once");
    assert_eq!(count(&client, &format!("SELECT count(*) FROM per_k WHERE c <> {ROWS}")).await, 0, "each request's rows once");
    assert_eq!(count(&client, "SELECT count(*) FROM per_k").await, (CLIENTS * REQUESTS) as i64);
}
