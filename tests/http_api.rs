//! The HTTP API against a real server, over plain HTTP/1.1 on a TCP socket: `POST /v1/sql`
//! answers rows and command tags as JSON and errors with their SQLSTATE under the matching
//! HTTP status; `GET /v1/subscribe/<view>` streams the snapshot and then each change as
//! Server-Sent Events while another client writes.

mod common;

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One request on a fresh connection (closed after it); the status and the body.
async fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    common::http_request(port, method, path, headers, body).await.expect("a status line")
}

async fn sql(port: u16, sql: &str) -> (u16, Value) {
    let (status, body) = request(port, "POST", "/v1/sql", &[], sql.as_bytes()).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_sql_answers_json_and_errors_with_their_sqlstate() {
    let server = common::TestServer::start("http-sql");
    let port = server.http_port;
    let (status, body) = sql(port, "CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, NULL); SELECT k, v FROM t ORDER BY k").await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["command"], "CREATE TABLE");
    assert_eq!(results[1]["rows"], 2);
    assert_eq!(results[2]["columns"][0]["name"], "k");
    assert_eq!(results[2]["columns"][0]["type"], "int4");
    assert_eq!(results[2]["rows"], serde_json::json!([{"k": 1, "v": "a"}, {"k": 2, "v": null}]));

    let (status, body) = sql(port, "SELECT * FROM nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("42P01")), "{body}");
    let (status, body) = sql(port, "SELEC 1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("42601")), "{body}");
    // What ran before the failing statement is reported with it.
    let (status, body) = sql(port, "INSERT INTO t VALUES (3, 'c'); SELECT * FROM nope; INSERT INTO t VALUES (4, 'never')").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1, "{body}");
    let (status, body) = request(port, "POST", "/v1/sql", &[("Content-Type", "application/json")], br#"{"query": "SELECT 1"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("22023"), "{body}");
    let big = vec![b' '; (1 << 20) + 1];
    let (status, _) = request(port, "POST", "/v1/sql", &[], &big).await;
    assert_eq!(status, 413, "a body over the limit is refused");
    let (status, body) = sql(port, "SELECT count(*) AS n FROM t").await;
    assert_eq!((status, &body["results"][0]["rows"][0]["n"]), (200, &serde_json::json!(3)), "the server goes on: {body}");
}

/// Reads SSE events (`event`, `data`) from `lines` until `want` returns true for one.
async fn until_event(lines: &mut tokio::io::Lines<BufReader<TcpStream>>, mut want: impl FnMut(&str, &Value) -> bool) -> Vec<(String, Value)> {
    let mut seen = vec![];
    let (mut event, mut data) = (String::new(), String::new());
    // Heartbeats keep the stream busy: the deadline is for the wanted event, not the next line.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line()).await.expect("the event in time").unwrap().expect("stream open");
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = d.to_string();
        } else if line.is_empty() && !event.is_empty() {
            let value: Value = serde_json::from_str(&data).unwrap();
            let done = want(&event, &value);
            seen.push((std::mem::take(&mut event), value));
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_the_snapshot_then_each_change() {
    let server = common::TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-http-sse-{}", std::process::id())), &["--flush-interval", "50ms"]);
    let port = server.http_port;
    let (status, body) = sql(port, "CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'); CREATE MATERIALIZED VIEW counts AS SELECT v, count(*) AS n FROM t GROUP BY v; FLUSH").await;
    assert_eq!(status, 200, "{body}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /v1/subscribe/counts HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next_line().await.unwrap().unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let snapshot = until_event(&mut lines, |e, _| e == "heartbeat").await;
    let changes: Vec<&Value> = snapshot.iter().filter(|(e, _)| e == "change").map(|(_, v)| v).collect();
    assert_eq!(changes.len(), 1, "{snapshot:?}");
    assert_eq!((&changes[0]["diff"], &changes[0]["row"]), (&serde_json::json!(1), &serde_json::json!({"v": "a", "n": 1})));
    let snapshot_token = changes[0]["token"].as_i64().unwrap();
    let (status, _) = sql(port, "INSERT INTO t VALUES (2, 'a')").await;
    assert_eq!(status, 200);
    let after = until_event(&mut lines, |e, v| e == "change" && v["diff"] == 1).await;
    let changes: Vec<&Value> = after.iter().filter(|(e, _)| e == "change").map(|(_, v)| v).collect();
    assert_eq!(changes.len(), 2, "{after:?}");
    assert_eq!((&changes[0]["diff"], &changes[0]["row"]["n"]), (&serde_json::json!(-1), &serde_json::json!(1)));
    assert_eq!((&changes[1]["diff"], &changes[1]["row"]["n"]), (&serde_json::json!(1), &serde_json::json!(2)));
    assert!(changes[1]["token"].as_i64().unwrap() > snapshot_token);

    let (status, body) = request(port, "GET", "/v1/subscribe/counts", &[("Last-Event-ID", "5")], b"").await;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("0A000"), "{body}");
    let (status, body) = request(port, "GET", "/v1/subscribe/nope", &[], b"").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("42P01"), "{body}");
}

/// The same subscription over a WebSocket: the snapshot, then a change made over HTTP, each
/// one JSON message; closing the socket ends it (the server goes on serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_carries_the_same_messages() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = common::TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-http-ws-{}", std::process::id())), &["--flush-interval", "50ms"]);
    let port = server.http_port;
    let (status, body) = sql(port, "CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'); CREATE MATERIALIZED VIEW counts AS SELECT v, count(*) AS n FROM t GROUP BY v; FLUSH").await;
    assert_eq!(status, 200, "{body}");
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/v1/ws/subscribe/counts"), tcp).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut next = async || -> Value {
        loop {
            let m = tokio::time::timeout_at(deadline, ws.next()).await.expect("the messages in time").expect("open").unwrap();
            if let Message::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    };
    let first = next().await;
    assert_eq!((&first["type"], &first["diff"], &first["row"]), (&serde_json::json!("change"), &serde_json::json!(1), &serde_json::json!({"v": "a", "n": 1})), "{first}");
    let (status, _) = sql(port, "INSERT INTO t VALUES (2, 'b')").await;
    assert_eq!(status, 200);
    let change = loop {
        let m = next().await;
        if m["type"] == "change" {
            break m;
        }
        assert_eq!(m["type"], "heartbeat", "{m}");
    };
    assert_eq!((&change["diff"], &change["row"]), (&serde_json::json!(1), &serde_json::json!({"v": "b", "n": 1})), "{change}");
    assert!(change["token"].as_i64().unwrap() > first["token"].as_i64().unwrap());
    drop(next);
    ws.send(Message::Close(None)).await.unwrap();
    let (status, _) = sql(port, "SELECT 1").await;
    assert_eq!(status, 200);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    match tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/v1/ws/subscribe/nope"), tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("42P01"), "{body}");
        }
        other => panic!("an unknown view is refused before the upgrade: {:?}", other.map(|_| ())),
    }
}
