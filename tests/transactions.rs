//! Transactions and concurrent writers over pgwire (tokio-postgres against a real server):
//! no lost update, no resurrected row, ROLLBACK leaves nothing, a failing statement writes
//! nothing, and a commit over two tables is seen whole by a view that joins them.

mod common;

use tokio_postgres::Client;

async fn value(client: &Client, sql: &str) -> Option<i64> {
    client.query_opt(sql, &[]).await.unwrap().map(|r| r.get::<_, i64>(0))
}

async fn count(client: &Client, sql: &str) -> i64 {
    value(client, sql).await.expect("one row")
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_lose_nothing() {
    let server = common::TestServer::start("txn-lost-update");
    let setup = server.connect().await;
    setup.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 0)").await.unwrap();
    setup.batch_execute("CREATE MATERIALIZED VIEW tv AS SELECT k, v FROM t").await.unwrap();
    let mut sessions = vec![];
    for _ in 0..8 {
        let client = server.connect().await;
        sessions.push(tokio::spawn(async move {
            for _ in 0..500 {
                client.execute("UPDATE t SET v = v + 1 WHERE k = 1", &[]).await.unwrap();
            }
        }));
    }
    for s in sessions {
        s.await.unwrap();
    }
    assert_eq!(count(&setup, "SELECT v FROM t WHERE k = 1").await, 4000);
    setup.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count(&setup, "SELECT v FROM tv WHERE k = 1").await, 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_racing_a_delete_never_brings_the_row_back() {
    let server = common::TestServer::start("txn-resurrect");
    let setup = server.connect().await;
    setup.batch_execute("CREATE TABLE lu (k BIGINT PRIMARY KEY, v BIGINT)").await.unwrap();
    let updater = std::sync::Arc::new(server.connect().await);
    let deleter = server.connect().await;
    for round in 0..30 {
        setup.batch_execute("INSERT INTO lu VALUES (1, 0)").await.unwrap();
        let u = updater.clone();
        let updates = tokio::spawn(async move {
            for _ in 0..20 {
                u.execute("UPDATE lu SET v = v + 1 WHERE k = 1", &[]).await.unwrap();
            }
        });
        // Let a few updates in first, so that the delete lands among them.
        for _ in 0..(round % 5) {
            tokio::task::yield_now().await;
        }
        deleter.execute("DELETE FROM lu WHERE k = 1", &[]).await.unwrap();
        updates.await.unwrap();
        assert_eq!(value(&setup, "SELECT v FROM lu WHERE k = 1").await, None, "round {round}: the deleted row came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_failed_statements_leave_nothing() {
    let server = common::TestServer::start("txn-rollback");
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT NOT NULL);
         INSERT INTO t VALUES (1, 10);
         CREATE MATERIALIZED VIEW s AS SELECT count(*) AS n, sum(v) AS total FROM t;",
    )
    .await
    .unwrap();
    // Reads inside the block see its own writes; ROLLBACK drops them.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (2, 20); UPDATE t SET v = v + 1 WHERE k = 1").await.unwrap();
    assert_eq!(count(&c, "SELECT sum(v) FROM t").await, 31);
    assert_eq!(count(&c, "SELECT v FROM t WHERE k = 1").await, 11);
    let other = server.connect().await;
    assert_eq!(count(&other, "SELECT sum(v) FROM t").await, 10, "uncommitted writes are invisible to others");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count(&c, "SELECT sum(v) FROM t").await, 10);
    assert_eq!(count(&c, "SELECT n FROM s").await, 1);
    assert_eq!(count(&c, "SELECT total FROM s").await, 10);

    // A failing INSERT ... SELECT writes none of its rows (the last one breaks NOT NULL).
    let err = c
        .batch_execute("INSERT INTO t SELECT g, CASE WHEN g = 20010 THEN NULL ELSE g END FROM generate_series(10, 20010) AS s(g)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "23502");
    c.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 1);
    assert_eq!(count(&c, "SELECT n FROM s").await, 1);

    // After an error the block refuses everything until it ends; COMMIT then rolls back.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (3, 30)").await.unwrap();
    assert_eq!(code(&c.batch_execute("SELECT 1/0").await.unwrap_err()), "22012");
    assert_eq!(code(&c.batch_execute("SELECT 1").await.unwrap_err()), "25P02");
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 1);

    // DDL is refused once the block has written; COMMIT makes the writes visible.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (4, 40)").await.unwrap();
    assert_eq!(code(&c.batch_execute("CREATE TABLE u (a INT)").await.unwrap_err()), "25001");
    c.batch_execute("ROLLBACK; BEGIN; INSERT INTO t VALUES (4, 40); DELETE FROM t WHERE k = 1; COMMIT; FLUSH").await.unwrap();
    assert_eq!(count(&c, "SELECT total FROM s").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_commit_fails_with_40001_and_writes_nothing() {
    let server = common::TestServer::start("txn-conflict");
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 0), (2, 0)").await.unwrap();
    a.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE k = 1; UPDATE t SET v = v + 5 WHERE k = 2").await.unwrap();
    b.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE k = 1").await.unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    let err = a.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(code(&err), "40001");
    assert_eq!(count(&a, "SELECT v FROM t WHERE k = 1").await, 1);
    assert_eq!(count(&a, "SELECT v FROM t WHERE k = 2").await, 0, "the failed commit wrote none of its rows");
    // Retried, it goes through.
    a.batch_execute("BEGIN; UPDATE t SET v = v + 1 WHERE k = 1; UPDATE t SET v = v + 5 WHERE k = 2; COMMIT").await.unwrap();
    assert_eq!(count(&a, "SELECT v FROM t WHERE k = 1").await, 2);
    assert_eq!(count(&a, "SELECT v FROM t WHERE k = 2").await, 5);
}

/// 200 transactions each move one unit from `a` to `b`; a view joining the two tables must
/// always show a total of 1000, never a commit half applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_two_tables_sees_each_commit_whole() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-txn-two-tables-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = common::TestServer::start_with(dir, &["--flush-interval", "10ms"]);
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE a (k BIGINT PRIMARY KEY, v BIGINT); CREATE TABLE b (k BIGINT PRIMARY KEY, v BIGINT);
         INSERT INTO a VALUES (1, 1000); INSERT INTO b VALUES (1, 0);
         CREATE MATERIALIZED VIEW j AS SELECT a.k, a.v + b.v AS total, a.v AS av FROM a JOIN b ON a.k = b.k;
         FLUSH;",
    )
    .await
    .unwrap();
    let writer = server.connect().await;
    let writes = tokio::spawn(async move {
        for _ in 0..200 {
            writer.batch_execute("BEGIN; UPDATE a SET v = v - 1 WHERE k = 1; UPDATE b SET v = v + 1 WHERE k = 1; COMMIT").await.unwrap();
        }
    });
    let mut reads = 0;
    let mut states = std::collections::BTreeSet::new();
    while !writes.is_finished() {
        let rows = c.query("SELECT total, av FROM j", &[]).await.unwrap();
        assert_eq!(rows.len(), 1, "the view lost its row mid-commit");
        assert_eq!(rows[0].get::<_, i64>(0), 1000, "a commit was seen half applied");
        states.insert(rows[0].get::<_, i64>(1));
        reads += 1;
    }
    writes.await.unwrap();
    c.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count(&c, "SELECT av FROM j").await, 800);
    assert!(reads > 20 && states.len() > 2, "the reader saw too little: {reads} reads, {} states", states.len());
}
