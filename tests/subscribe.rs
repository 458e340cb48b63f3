//! `SUBSCRIBE` over pgwire against a real server (tokio-postgres): `COPY (SUBSCRIBE ...) TO
//! STDOUT` while another session writes, applied change by change against a model of the
//! view; the cursor form with `FETCH ... WITH (timeout)`; a subscriber too far behind; and
//! the errors, each with its SQLSTATE, after which the session goes on.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::text_rows as rows;
use futures::StreamExt;
use tokio_postgres::Client;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| e.to_string())
}

/// `SELECT k, v FROM t` as the model's form.
async fn table_content(client: &Client) -> BTreeMap<(i64, String), i64> {
    let mut content = BTreeMap::new();
    for r in rows(client, "SELECT k, v FROM tv").await {
        let key = (r[0].as_ref().unwrap().parse().unwrap(), r[1].clone().unwrap());
        *content.entry(key).or_insert(0) += 1;
    }
    content
}

/// A subscriber's view of the stream: the content after every change up to `token`.
#[derive(Debug, Clone)]
struct Applied {
    token: i64,
    content: BTreeMap<(i64, String), i64>,
}

/// Several rounds of inserts, updates and deletes with FLUSH in one session, while another
/// reads `COPY (SUBSCRIBE TO tv WITH (progress = true)) TO STDOUT`: the stream applied change
/// by change reaches exactly the view's content after every round, never shows a row going
/// below zero copies, and its tokens never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_subscribe_reproduces_the_view_through_writes() {
    // By name: the view serves the subscriber itself.
    copy_subscribe_round_trip("view", "COPY (SUBSCRIBE TO tv WITH (progress = true)) TO STDOUT").await;
}

/// The same through a query: a dataflow of its own ends in the subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_subscribe_to_a_query_reproduces_it_through_writes() {
    copy_subscribe_round_trip("query", "COPY (SUBSCRIBE (SELECT k, v FROM t WHERE k > 0) WITH (progress = true)) TO STDOUT").await;
}

async fn copy_subscribe_round_trip(name: &str, copy_sql: &'static str) {
    let server = common::TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-subscribe-copy-{name}-{}", std::process::id())), &["--flush-interval", "50ms"]);
    let writer = server.connect().await;
    writer.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two'); CREATE MATERIALIZED VIEW tv AS SELECT k, v FROM t; FLUSH").await.unwrap();
    let reader = server.connect().await;
    let (applied_tx, mut applied_rx) = tokio::sync::mpsc::channel::<Result<Applied, String>>(256);
    let stream = tokio::spawn(async move {
        let copy = reader.copy_out(copy_sql).await.unwrap();
        futures::pin_mut!(copy);
        let mut applied = Applied { token: 0, content: BTreeMap::new() };
        while let Some(line) = copy.next().await {
            let line = String::from_utf8(line.unwrap().to_vec()).unwrap();
            let cols: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
            let token: i64 = cols[0].parse().unwrap();
            if token < applied.token {
                let _ = applied_tx.send(Err(format!("token went back from {} to {token}", applied.token))).await;
                return;
            }
            applied.token = token;
            if cols[1] == "\\N" {
                // A progress row: the content at this token is complete.
                if applied_tx.send(Ok(applied.clone())).await.is_err() {
                    return;
                }
                continue;
            }
            let diff: i64 = cols[1].parse().unwrap();
            let key = (cols[2].parse::<i64>().unwrap(), cols[3].to_string());
            let copies = applied.content.entry(key.clone()).or_insert(0);
            *copies += diff;
            if *copies < 0 {
                let _ = applied_tx.send(Err(format!("{key:?} went below zero copies at token {token}"))).await;
                return;
            }
            if *copies == 0 {
                applied.content.remove(&key);
            }
        }
    });
    let mut last_token = 0;
    for round in 0..6i64 {
        let base = 100 * (round + 1);
        writer.batch_execute(&format!("INSERT INTO t VALUES ({base}, 'a{round}'), ({}, 'b{round}'), ({}, 'c{round}')", base + 1, base + 2)).await.unwrap();
        writer.batch_execute(&format!("UPDATE t SET v = 'updated{round}' WHERE k = {}", base + 1)).await.unwrap();
        writer.batch_execute(&format!("DELETE FROM t WHERE k = {}", base + 2)).await.unwrap();
        if round % 2 == 1 {
            writer.batch_execute(&format!("DELETE FROM t WHERE k = {}", base - 100)).await.unwrap();
        }
        writer.batch_execute("FLUSH").await.unwrap();
        let expected = table_content(&writer).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let applied = tokio::time::timeout_at(deadline.into(), applied_rx.recv()).await.expect("the subscription keeps up").expect("stream open").unwrap();
            assert!(applied.token >= last_token);
            last_token = applied.token;
            if applied.content == expected {
                break;
            }
        }
    }
    stream.abort();
}

/// `FETCH ... WITH (timeout)` on a cursor: no rows after about the timeout when nothing
/// changes, the new row promptly when one comes; the snapshot first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_fetch_waits_for_its_timeout_or_the_next_change() {
    let server = common::TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-subscribe-cursor-{}", std::process::id())), &["--flush-interval", "50ms"]);
    let writer = server.connect().await;
    writer.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one'); CREATE MATERIALIZED VIEW counts AS SELECT v, count(*) AS n FROM t GROUP BY v; FLUSH").await.unwrap();
    let reader = server.connect().await;
    reader.batch_execute("DECLARE c CURSOR FOR SUBSCRIBE counts").await.unwrap();
    let snapshot = rows(&reader, "FETCH ALL c").await;
    assert_eq!(snapshot.len(), 1);
    assert_eq!(&snapshot[0][1..], [Some("1".to_string()), Some("one".to_string()), Some("1".to_string())]);
    let started = Instant::now();
    let none = rows(&reader, "FETCH ALL c WITH (timeout = '200ms')").await;
    let waited = started.elapsed();
    assert!(none.is_empty(), "{none:?}");
    assert!(waited >= Duration::from_millis(190) && waited < Duration::from_secs(2), "{waited:?}");
    let fetch = tokio::spawn(async move {
        let started = Instant::now();
        let got = rows(&reader, "FETCH ALL c WITH (timeout = '10s')").await;
        (got, started.elapsed())
    });
    writer.batch_execute("INSERT INTO t VALUES (2, 'one')").await.unwrap();
    let (got, waited) = fetch.await.unwrap();
    assert!(waited < Duration::from_secs(5), "the change came after {waited:?}");
    let diffs: Vec<(String, String)> = got.iter().map(|r| (r[1].clone().unwrap(), r[3].clone().unwrap())).collect();
    assert_eq!(diffs, [("-1".to_string(), "1".to_string()), ("1".to_string(), "2".to_string())], "{got:?}");
    assert!(got[0][0] == got[1][0], "one token for one commit: {got:?}");
}

/// A subscriber that reads nothing is closed once more rows than the limit wait for it, with
/// an error that says so; writes, FLUSH and another subscriber go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_closed_and_nothing_else_waits() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-subscribe-stalled-{}", std::process::id()));
    let server = common::TestServer::start_with(dir, &["--flush-interval", "50ms", "--subscriber-max-rows", "100"]);
    let writer = server.connect().await;
    writer.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY); CREATE MATERIALIZED VIEW tv AS SELECT k FROM t; FLUSH").await.unwrap();
    let stalled = server.connect().await;
    stalled.batch_execute("DECLARE s CURSOR FOR SUBSCRIBE tv").await.unwrap();
    let reading = server.connect().await;
    reading.batch_execute("DECLARE r CURSOR FOR SUBSCRIBE tv").await.unwrap();
    let mut seen = 0;
    for batch in 0..10 {
        let values: Vec<String> = (0..30).map(|i| format!("({})", batch * 30 + i)).collect();
        tokio::time::timeout(Duration::from_secs(10), writer.batch_execute(&format!("INSERT INTO t VALUES {}; FLUSH", values.join(", "))))
            .await
            .expect("writes and FLUSH never wait for a subscriber")
            .unwrap();
        seen += rows(&reading, "FETCH ALL r WITH (timeout = '2s')").await.len();
        while seen < (batch + 1) * 30 {
            let more = rows(&reading, "FETCH ALL r WITH (timeout = '2s')").await;
            assert!(!more.is_empty(), "the reading subscriber stopped at {seen}");
            seen += more.len();
        }
    }
    assert_eq!(seen, 300);
    let err = stalled.simple_query("FETCH ALL s").await.expect_err("closed");
    assert_eq!(code(&err), "54000", "{err}");
    let message = err.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    assert!(message.contains("fell behind") && message.contains("limit of 100"), "{message}");
    assert_eq!(code(&stalled.simple_query("FETCH ALL s").await.expect_err("gone")), "34000");
    assert_eq!(rows(&stalled, "SELECT count(*) FROM tv").await, [[Some("300".to_string())]]);
}

/// Each refusal is a PostgreSQL error with its SQLSTATE; the session goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_errors_carry_their_sqlstate_and_the_session_continues() {
    let server = common::TestServer::start("subscribe-errors");
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY); CREATE MATERIALIZED VIEW tv AS SELECT k FROM t").await.unwrap();
    for (sql, expected) in [
        ("COPY (SUBSCRIBE TO nope) TO STDOUT", "42P01"),
        ("DECLARE c CURSOR FOR SUBSCRIBE nope", "42P01"),
        ("DECLARE c CURSOR FOR SUBSCRIBE tv WITH (snapshot = maybe)", "22023"),
        ("DECLARE c CURSOR FOR SUBSCRIBE tv WITH (colour = 'blue')", "22023"),
        ("DECLARE c CURSOR FOR SUBSCRIBE tv SINCE 12", "0A000"),
        ("SUBSCRIBE tv", "0A000"),
        ("FETCH ALL never_declared", "34000"),
        ("CLOSE never_declared", "34000"),
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert_eq!(rows(&client, "SELECT 1").await, [[Some("1".to_string())]], "the session goes on after {sql}");
    }
    client.batch_execute("DECLARE c CURSOR FOR SUBSCRIBE tv").await.unwrap();
    assert_eq!(code(&client.simple_query("DECLARE c CURSOR FOR SUBSCRIBE tv").await.unwrap_err()), "42P03");
    assert_eq!(code(&client.simple_query("FETCH c WITH (wait = '1s')").await.unwrap_err()), "22023");
    client.batch_execute("CLOSE c").await.unwrap();
    assert_eq!(code(&client.simple_query("FETCH c").await.unwrap_err()), "34000");
}

/// Subscriptions are limited in all and per object; a refusal is 53400 and names the limit
/// (429 over HTTP); closing one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_limits_refuse_with_53400_and_free_on_close() {
    let server = common::TestServer::start_with(
        std::env::temp_dir().join(format!("openclaw-test-subscribe-limits-{}", std::process::id())),
        &["--max-subscribers", "3", "--max-subscribers-per-object", "2"],
    );
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY); CREATE MATERIALIZED VIEW a AS SELECT k FROM t; CREATE MATERIALIZED VIEW b AS SELECT k FROM t; DECLARE a1 CURSOR FOR SUBSCRIBE a; DECLARE a2 CURSOR FOR SUBSCRIBE a")
        .await
        .unwrap();
    let err = client.batch_execute("DECLARE a3 CURSOR FOR SUBSCRIBE a").await.unwrap_err();
    assert_eq!(code(&err), "53400");
    assert!(err.as_db_error().unwrap().message().contains("limit per object is 2"), "{err:?}");
    client.batch_execute("DECLARE b1 CURSOR FOR SUBSCRIBE b").await.unwrap();
    let err = client.batch_execute("DECLARE b2 CURSOR FOR SUBSCRIBE b").await.unwrap_err();
    assert_eq!(code(&err), "53400");
    assert!(err.as_db_error().unwrap().message().contains("the limit is 3"), "{err:?}");
    // Over HTTP the same refusal is 429.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /v1/subscribe/b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(response.contains("53400"), "{response}");
    // Closing one frees its place.
    client.batch_execute("CLOSE a1; DECLARE b2 CURSOR FOR SUBSCRIBE b").await.unwrap();
}
