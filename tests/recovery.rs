//! Crashes: the server is killed with SIGKILL and started again on the same data dir. Every
//! table, source and view comes back; every acknowledged write is there; views equal their
//! queries over what the tables hold.

mod common;

use std::collections::BTreeMap;

use common::{Rng, TestServer};

/// Kill-and-restart rounds.
const ROUNDS: u64 = 10;
/// Acknowledged statements per round before the kill.
const STATEMENTS_PER_ROUND: u64 = 40;

/// One write and its effect on the model of the table (id → v).
fn statement(rng: &mut Rng, round: u64, i: u64) -> (String, Box<dyn Fn(&mut BTreeMap<i64, i64>)>) {
    let id = (rng.next() % 50) as i64;
    let v = (round * 1000 + i) as i64;
    match rng.next() % 3 {
        0 => (format!("INSERT INTO t VALUES ({id}, {v})"), Box::new(move |m| {
            m.insert(id, v);
        })),
        1 => (format!("UPDATE t SET v = {v} WHERE id = {id}"), Box::new(move |m| {
            if let Some(old) = m.get_mut(&id) {
                *old = v;
            }
        })),
        _ => (format!("DELETE FROM t WHERE id = {id}"), Box::new(move |m| {
            m.remove(&id);
        })),
    }
}

async fn table(client: &tokio_postgres::Client) -> BTreeMap<i64, i64> {
    let rows = client.query("SELECT id, v FROM t", &[]).await.unwrap();
    rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1))).collect()
}

/// The source view's rows: the Nexmark source keeps its base time across restarts, so the
/// rebuilt view has the same timestamps.
async fn bids(client: &tokio_postgres::Client) -> Vec<(i64, i64, String)> {
    let rows = client.query("SELECT bucket, n, CAST(last AS TEXT) FROM bids ORDER BY bucket", &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

/// How many input rows of view `name` fail its expression, from `SHOW MATERIALIZED VIEWS`.
async fn failed_rows(client: &tokio_postgres::Client, name: &str) -> usize {
    let rows = client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap();
    let status = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(name) => r.get(1).map(str::to_string),
            _ => None,
        })
        .expect("the view is listed");
    match status.split_once("unreadable: ") {
        Some((_, rest)) => rest.split(' ').next().unwrap().parse().unwrap(),
        None => 0,
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_and_every_object_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = TestServer::start_at(dir.clone());
    let mut client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT);
             CREATE TABLE appended (round BIGINT, n BIGINT);
             CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '20000');
             SET streaming_parallelism = 2;
             CREATE FUNCTION parity_of(v bigint) RETURNS bigint LANGUAGE SQL AS 'SELECT v % 2';
             CREATE VIEW t_parity AS SELECT parity_of(v) AS odd, id, v FROM t;
             CREATE MATERIALIZED VIEW parity AS SELECT odd, count(*) AS n, sum(v) AS total, max(id) AS top FROM t_parity GROUP BY odd;
             CREATE MATERIALIZED VIEW inverse AS SELECT id, 1000 / (v % 7) AS q FROM t;
             CREATE MATERIALIZED VIEW bids AS SELECT auction % 10 AS bucket, count(*) AS n, max(date_time) AS last FROM bid GROUP BY auction % 10;",
        )
        .await
        .unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    let bids_before = bids(&client).await;
    assert_eq!(bids_before.len(), 10, "every bucket of the source view");
    let mut model = BTreeMap::new();
    let mut rng = Rng(7);
    for round in 0..ROUNDS {
        for i in 0..STATEMENTS_PER_ROUND {
            let (sql, apply) = statement(&mut rng, round, i);
            client.batch_execute(&sql).await.unwrap();
            apply(&mut model);
        }
        client.batch_execute(&format!("INSERT INTO appended VALUES ({round}, {})", model.len())).await.unwrap();
        // One more write is in flight when the kill lands: it may or may not survive, but
        // nothing acknowledged before it may be lost.
        let (in_flight, apply) = statement(&mut rng, round, STATEMENTS_PER_ROUND);
        let mut with_it = model.clone();
        apply(&mut with_it);
        let sender = server.connect().await;
        let pending = tokio::spawn(async move { sender.batch_execute(&in_flight).await.is_ok() });
        let dir = server.kill();
        let acknowledged = pending.await.unwrap();
        server = TestServer::start_at(dir);
        client = server.connect().await;
        let client2 = &client;
        let found = table(client2).await;
        assert!(
            found == with_it || (!acknowledged && found == model),
            "round {round}: table after SIGKILL differs (in-flight write acknowledged: {acknowledged})"
        );
        model = found;
        assert_eq!(count(client2, "SELECT count(*) FROM appended").await, round as i64 + 1, "round {round}");
        client2.batch_execute("FLUSH").await.unwrap();
        let diff = "SELECT count(*) FROM ((SELECT * FROM parity EXCEPT ALL SELECT v % 2, count(*), sum(v), max(id) FROM t GROUP BY v % 2) \
                    UNION ALL (SELECT v % 2, count(*), sum(v), max(id) FROM t GROUP BY v % 2 EXCEPT ALL SELECT * FROM parity)) d";
        assert_eq!(count(client2, diff).await, 0, "round {round}: the view equals its query after restart");
        let plain = "SELECT count(*) FROM ((SELECT odd, id, v FROM t_parity EXCEPT ALL SELECT v % 2, id, v FROM t) \
                     UNION ALL (SELECT v % 2, id, v FROM t EXCEPT ALL SELECT odd, id, v FROM t_parity)) d";
        assert_eq!(count(client2, plain).await, 0, "round {round}: the plain view is back and reads the table");
        assert_eq!(bids(client2).await, bids_before, "round {round}: the source view is rebuilt to the same rows");
        let failing = model.values().filter(|v| *v % 7 == 0).count();
        assert_eq!(failed_rows(client2, "inverse").await, failing, "round {round}: the view's failed rows are counted once across the kill");
    }
    // Once the rows that fail are gone, the view reads, and equals its query.
    client.batch_execute("DELETE FROM t WHERE v % 7 = 0; FLUSH").await.unwrap();
    assert_eq!(failed_rows(&client, "inverse").await, 0);
    let inverse = "SELECT count(*) FROM ((SELECT * FROM inverse EXCEPT ALL SELECT id, 1000 / (v % 7) FROM t) \
                   UNION ALL (SELECT id, 1000 / (v % 7) FROM t EXCEPT ALL SELECT * FROM inverse)) d";
    assert_eq!(count(&client, inverse).await, 0, "the view equals its query once no row fails");
    assert!(count(&client, "SELECT count(*) FROM t").await > 0, "the table is not empty");
    let kinds = client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap();
    assert!(kinds.len() >= 2, "both views are back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_commits_a_verified_checkpoint_with_source_positions() {
    let server = TestServer::start("checkpoints");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY);
             INSERT INTO t VALUES (1), (2), (3);
             CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '50000');
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM bid;
             CREATE MATERIALIZED VIEW tn AS SELECT count(*) AS n FROM t;
             FLUSH;
             FLUSH;
             INSERT INTO t VALUES (4);
             FLUSH;",
        )
        .await
        .unwrap();
    let rows = client.query("SHOW CHECKPOINTS", &[]).await.unwrap();
    // Each FLUSH committed one; only the newest two are kept.
    assert_eq!(rows.len(), 2, "retained checkpoints");
    let ids: Vec<u64> = rows.iter().map(|r| r.get::<_, String>(0).parse().unwrap()).collect();
    assert!(ids[0] > ids[1], "newest first: {ids:?}");
    let positions: String = rows[0].get(7);
    // 50,000 events hold 46,000 bids: the reader's offset among bids at the cut.
    assert!(positions.contains("_source1=46000"), "{positions}");
    let (path, manifest) = openclaw_storage::checkpoint::list(&server.data_dir).pop().expect("a checkpoint on disk");
    assert_eq!(manifest.id, ids[0]);
    let verified = openclaw_storage::checkpoint::verify(&path).expect("the newest checkpoint verifies");
    assert!(verified.bytes() > 0 && verified.files.iter().all(|f| f.name.starts_with("state/mv_") && f.name.ends_with(".sst")), "{:?}", verified.files);
    assert_eq!(client.query_one("SELECT n FROM n", &[]).await.unwrap().get::<_, i64>(0), 46_000);

    // Damage a file of the newest checkpoint that the previous one does not share (its files
    // are hard links to the live ones: replace it, never write through it) and crash: the
    // restart finds it, sets it aside, and keeps the previous one.
    let (_, older) = openclaw_storage::checkpoint::list(&server.data_dir).into_iter().next().expect("two checkpoints");
    let own = verified.files.iter().find(|f| !older.files.contains(f)).expect("a file only the newest checkpoint has");
    let damaged = path.join(&own.name);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::remove_file(&damaged).unwrap();
    std::fs::write(&damaged, &bytes).unwrap();
    let dir = server.kill();
    let server = TestServer::start_at(dir);
    let client = server.connect().await;
    let rows = client.query("SHOW CHECKPOINTS", &[]).await.unwrap();
    let newest: u64 = rows[0].get::<_, String>(0).parse().unwrap();
    assert_eq!(newest, ids[1], "the damaged checkpoint {} is not listed", ids[0]);
    let aside = path.with_file_name(format!("{}.corrupt", path.file_name().unwrap().to_string_lossy()));
    assert!(aside.exists(), "the damaged checkpoint is kept aside at {}", aside.display());
    client.batch_execute("FLUSH").await.unwrap();
    let rows = client.query("SHOW CHECKPOINTS", &[]).await.unwrap();
    let after: u64 = rows[0].get::<_, String>(0).parse().unwrap();
    assert!(after > ids[0], "new checkpoint ids stay above the damaged one: {after}");
    assert_eq!(client.query_one("SELECT n FROM n", &[]).await.unwrap().get::<_, i64>(0), 46_000);
    assert_eq!(client.query_one("SELECT n FROM tn", &[]).await.unwrap().get::<_, i64>(0), 4, "resumed, then the table's log replayed");
}

/// Nexmark sources (bounded, paced so that the run takes a while) into stateful views: a
/// tumbling window closed by the watermark, a join with an aggregate, and a top-1.
const NEXMARK_VIEWS: &str = "
    CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
                       WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
        WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '2000000', 'nexmark.base.time' = '1700000000000',
              'nexmark.first.rate' = '10000', 'nexmark.next.rate' = '10000', 'nexmark.min.event.gap.in.ns' = '5000');
    CREATE SOURCE auction WITH (connector = 'nexmark', 'nexmark.table.type' = 'auction', 'nexmark.event.num' = '2000000',
              'nexmark.base.time' = '1700000000000', 'nexmark.first.rate' = '10000', 'nexmark.next.rate' = '10000', 'nexmark.min.event.gap.in.ns' = '5000');
    CREATE MATERIALIZED VIEW per_second AS SELECT window_start, count(*) AS n, max(price) AS top
        FROM TUMBLE(bid, date_time, INTERVAL '1' SECOND) GROUP BY window_start EMIT ON WINDOW CLOSE;
    CREATE MATERIALIZED VIEW per_category AS SELECT a.category, count(*) AS n, sum(b.price) AS total
        FROM auction a JOIN bid b ON a.id = b.auction GROUP BY a.category;
    CREATE MATERIALIZED VIEW top_bid AS SELECT auction, bidder, price FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, bidder, date_time) AS rn FROM bid) t WHERE rn = 1;";

/// Every view's rows, as text, sorted.
async fn nexmark_results(client: &tokio_postgres::Client) -> Vec<Vec<String>> {
    let mut all = vec![];
    for view in ["per_second", "per_category", "top_bid"] {
        let rows = client.simple_query(&format!("SELECT * FROM {view}")).await.unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL")).collect::<Vec<_>>().join("|")),
                _ => None,
            })
            .collect();
        lines.sort();
        assert!(!lines.is_empty(), "{view} is empty");
        all.push(lines);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_views_after_ten_sigkills_equal_an_uninterrupted_run() {
    let flags = ["--checkpoint-interval", "300ms"];
    let expected = {
        let server = TestServer::start("nexmark-uninterrupted");
        let client = server.connect().await;
        client.batch_execute(NEXMARK_VIEWS).await.unwrap();
        client.batch_execute("FLUSH").await.unwrap();
        nexmark_results(&client).await
    };
    let dir = std::env::temp_dir().join(format!("openclaw-test-nexmark-kills-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = TestServer::start_with(dir, &flags);
    server.connect().await.batch_execute(NEXMARK_VIEWS).await.unwrap();
    let mut rng = Rng(11);
    let mut resumed_rounds = 0;
    for _ in 0..ROUNDS {
        // A moment somewhere in the next 0.2 to 1.2 s (this picks when to crash; results are
        // still read only after FLUSH).
        tokio::time::sleep(std::time::Duration::from_millis(200 + rng.next() % 1000)).await;
        let dir = server.kill();
        server = TestServer::start_with(dir, &flags);
        let client = server.connect().await;
        let views = client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap();
        let resumed = views.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(1).is_some_and(|s| s.contains("resumed"))));
        resumed_rounds += usize::from(resumed);
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let found = nexmark_results(&client).await;
    for (view, (got, want)) in ["per_second", "per_category", "top_bid"].iter().zip(found.iter().zip(&expected)) {
        let extra: Vec<&String> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
        let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
        assert!(
            got == want,
            "{view} after {ROUNDS} SIGKILLs differs from an uninterrupted run ({} rows vs {}): extra {extra:?}, missing {missing:?}",
            got.len(),
            want.len()
        );
    }
    assert!(resumed_rounds >= ROUNDS as usize / 2, "views resumed from checkpoints in only {resumed_rounds} of {ROUNDS} restarts");
    drop(server);
}

/// Rows of the table in [`a_view_over_a_large_table_resumes_after_sigkill`]; the note gives the
/// figure for 5 million (`OPENCLAW_RESUME_ROWS=5000000`).
fn resume_rows() -> i64 {
    std::env::var("OPENCLAW_RESUME_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// A view over a table resumes from the checkpoint after a SIGKILL, replaying the table's log
/// of the writes made since, instead of being rebuilt from every row; over a table without a
/// primary key too, whose log names the appended rows that replay reads from the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_large_table_resumes_after_sigkill() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-resume-table-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // No periodic checkpoint: the writes after the FLUSH must come from the log.
    let server = TestServer::start_with(dir.clone(), &["--checkpoint-interval", "0s"]);
    let client = server.connect().await;
    let n = resume_rows();
    client.batch_execute("CREATE TABLE big (k BIGINT PRIMARY KEY, v BIGINT)").await.unwrap();
    for start in (0..n).step_by(1_000_000) {
        let end = (start + 1_000_000).min(n) - 1;
        client.batch_execute(&format!("INSERT INTO big SELECT g, g % 13 FROM generate_series({start}, {end}) AS s(g)")).await.unwrap();
    }
    client
        .batch_execute(
            "CREATE TABLE events (k BIGINT, v BIGINT); INSERT INTO events SELECT g, g % 7 FROM generate_series(1, 5000) AS s(g);
             CREATE MATERIALIZED VIEW per_bucket AS SELECT k % 100 AS bucket, count(*) AS n, sum(v) AS total FROM big GROUP BY k % 100;
             CREATE MATERIALIZED VIEW events_per_v AS SELECT v, count(*) AS n, sum(k) AS total FROM events GROUP BY v; FLUSH",
        )
        .await
        .unwrap();
    // After the checkpoint: only the table's log holds these.
    client
        .batch_execute(
            "UPDATE big SET v = v + 1000 WHERE k < 500; DELETE FROM big WHERE k >= 500 AND k < 700;
             INSERT INTO big VALUES (-1, 7), (-2, 8); BEGIN; UPDATE big SET v = 0 WHERE k = 900; DELETE FROM big WHERE k = 901; COMMIT;
             INSERT INTO events VALUES (-1, 1); INSERT INTO events SELECT g, g % 5 FROM generate_series(10001, 20000) AS s(g);
             BEGIN; INSERT INTO events VALUES (-2, 2), (-3, 3); INSERT INTO big VALUES (-3, 9); COMMIT",
        )
        .await
        .unwrap();
    let dir = server.kill();
    let started = std::time::Instant::now();
    let server = TestServer::start_at(dir);
    let client = server.connect().await;
    let serving = started.elapsed();
    let status = client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap();
    let resumed = status.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(1) == Some("running (resumed from a checkpoint)"))).count();
    eprintln!("a view over {n} rows was serving again {serving:?} after the restart began (resumed: {resumed} of 2)");
    assert_eq!(resumed, 2, "a view was rebuilt, not resumed: {status:?}");
    client.batch_execute("FLUSH").await.unwrap();
    let diff = "SELECT count(*) FROM ((SELECT * FROM per_bucket EXCEPT ALL SELECT k % 100, count(*), sum(v) FROM big GROUP BY k % 100) \
                UNION ALL (SELECT k % 100, count(*), sum(v) FROM big GROUP BY k % 100 EXCEPT ALL SELECT * FROM per_bucket)) d";
    assert_eq!(count(&client, diff).await, 0, "the resumed view equals its query");
    assert_eq!(count(&client, "SELECT sum(n)::BIGINT FROM per_bucket").await, n - 200 + 2 - 1 + 1);
    let diff = "SELECT count(*) FROM ((SELECT * FROM events_per_v EXCEPT ALL SELECT v, count(*), sum(k) FROM events GROUP BY v) \
                UNION ALL (SELECT v, count(*), sum(k) FROM events GROUP BY v EXCEPT ALL SELECT * FROM events_per_v)) d";
    assert_eq!(count(&client, diff).await, 0, "the resumed view over the keyless table equals its query");
    assert_eq!(count(&client, "SELECT sum(n)::BIGINT FROM events_per_v").await, 5000 + 1 + 10000 + 2);
    assert!(serving < std::time::Duration::from_secs(10), "serving again took {serving:?}");
}

/// State a view's checkpoint holds is resumed only under the plan that wrote it: a record
/// whose plan digest differs (an older version planned the view differently, or, as the
/// predecessor wrote its records, has none) gets the view rebuilt from its inputs, never its
/// state misread under another layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_planned_differently_is_rebuilt_not_misread() {
    let server = TestServer::start("plan-digest");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 1000) AS s(g);
             CREATE MATERIALIZED VIEW sums AS SELECT k % 3 AS g, sum(v) AS total FROM t GROUP BY k % 3; FLUSH",
        )
        .await
        .unwrap();
    let status = |client: tokio_postgres::Client| async move {
        let rows = client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap();
        let status = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("sums") => r.get(1).map(str::to_string),
            _ => None,
        });
        (client, status.expect("the view is listed"))
    };
    // Under the same plan it resumes.
    drop(client);
    let server = TestServer::start_at(server.kill());
    let (client, resumed) = status(server.connect().await).await;
    assert_eq!(resumed, "running (resumed from a checkpoint)");
    client.batch_execute("INSERT INTO t VALUES (1001, 5); FLUSH").await.unwrap();
    drop(client);
    // The record as a planner that laid the state out differently would have left it.
    let dir = server.kill();
    {
        let store = openclaw_storage::Store::open(&dir).unwrap();
        for mut record in openclaw_sql::durable::load(&store).unwrap() {
            if record.name == "sums" {
                record.resolved.insert("plan".into(), "0123456789abcdef".into());
                openclaw_sql::durable::save(&store, &record).unwrap();
            }
        }
    }
    let server = TestServer::start_at(dir);
    let (client, rebuilt) = status(server.connect().await).await;
    assert_eq!(rebuilt, "running", "rebuilt from its inputs, not resumed");
    client.batch_execute("FLUSH").await.unwrap();
    let diff = "SELECT count(*) FROM ((SELECT * FROM sums EXCEPT ALL SELECT k % 3, sum(v) FROM t GROUP BY k % 3) \
                UNION ALL (SELECT k % 3, sum(v) FROM t GROUP BY k % 3 EXCEPT ALL SELECT * FROM sums)) d";
    assert_eq!(count(&client, diff).await, 0, "the rebuilt view equals its query");
    // Its record holds the current digest again: the next restart resumes it.
    drop(client);
    let server = TestServer::start_at(server.kill());
    let (_client, resumed) = status(server.connect().await).await;
    assert_eq!(resumed, "running (resumed from a checkpoint)");
}
