//! CancelRequest: a driver's cancel (tokio-postgres's `CancelToken`) and psql's Ctrl-C (a
//! SIGINT to a real psql) stop the running statement (a FLUSH waiting for a slow source, a
//! long query, a SUBSCRIBE) with 57014, and the session goes on.

mod common;

use common::TestServer;

/// A source that takes about a minute to read to its end, so a FLUSH over it waits.
const SLOW_SOURCE: &str = "CREATE SOURCE slow WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '10000000', 'nexmark.min.event.gap.in.ns' = '6000000');
     CREATE MATERIALIZED VIEW slow_count AS SELECT count(*) AS n FROM slow;";

/// Longest a canceled statement may take to stop (it stops within milliseconds).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `sql` on `client` while `cancel` fires once the server has started it; returns the
/// statement's error.
async fn canceled(client: &tokio_postgres::Client, sql: &str) -> tokio_postgres::Error {
    let token = client.cancel_token();
    let canceling = tokio::spawn(async move {
        // The statement must have reached the server; a cancel before it starts does nothing.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let error = tokio::time::timeout(LIMIT, client.simple_query(sql)).await.expect("the cancel stops the statement").expect_err("the statement is canceled");
    canceling.await.unwrap();
    error
}

fn assert_user_cancel(error: &tokio_postgres::Error) {
    let db = error.as_db_error().unwrap_or_else(|| panic!("a server error: {error:?}"));
    assert_eq!((db.code().code(), db.message()), ("57014", "canceling statement due to user request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_cancels_flush_a_query_and_a_subscribe_and_the_session_goes_on() {
    let server = TestServer::start("cancel");
    let client = server.connect().await;
    client.batch_execute(SLOW_SOURCE).await.unwrap();
    assert_user_cancel(&canceled(&client, "SELECT count(*) FROM generate_series(1, 100000000000) AS s(i) WHERE i % 7 = 3").await);
    // A subscription streams over COPY until the cancel ends it.
    let token = client.cancel_token();
    let copy = client.copy_out("COPY (SUBSCRIBE slow_count) TO STDOUT").await.unwrap();
    futures::pin_mut!(copy);
    let first = futures::StreamExt::next(&mut copy).await.expect("the snapshot").unwrap();
    assert!(!first.is_empty());
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let error = loop {
        match tokio::time::timeout(LIMIT, futures::StreamExt::next(&mut copy)).await.expect("the cancel ends the subscription") {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the subscription ended without an error"),
        }
    };
    assert_user_cancel(&error);
    // Last: the barrier of a canceled FLUSH still waits for the bounded source's end, and
    // every later barrier (a subscription's snapshot) with it.
    assert_user_cancel(&canceled(&client, "FLUSH").await);
    // The session is still there, in no transaction, and the view goes on.
    let rows = client.simple_query("SELECT n > 0 FROM slow_count").await.unwrap();
    assert!(matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t")), "{rows:?}");
    // A cancel sent with no statement running: the request is not answered, so (as in
    // PostgreSQL) it may be handled only once the next statement runs and cancel that one
    // (a race this test once lost); either way the session goes on.
    client.cancel_token().cancel_query(tokio_postgres::NoTls).await.unwrap();
    if let Err(e) = client.simple_query("SELECT 1").await {
        assert_user_cancel(&e);
    }
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_ctrl_c_cancels_a_flush() {
    let server = TestServer::start("cancel-psql");
    server.connect().await.batch_execute(SLOW_SOURCE).await.unwrap();
    let url = server.conn_str();
    // psql sends a CancelRequest on SIGINT and prints the error.
    let mut psql = std::process::Command::new("psql")
        .args([url.as_str(), "-X", "-c", "FLUSH"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run psql");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let sent = std::process::Command::new("kill").args(["-INT", &psql.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = psql.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > LIMIT {
                let _ = psql.kill();
                panic!("psql's FLUSH was not canceled");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        use std::io::Read;
        psql.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        psql.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status, stdout, stderr)
    })
    .await
    .unwrap();
    assert!(out.2.contains("Cancel request sent") && out.2.contains("canceling statement due to user request"), "psql's stderr: {}", out.2);
    assert!(!out.0.success(), "psql reports the failed command");
}
