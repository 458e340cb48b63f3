//! State that is cleaned: windowed aggregates, a window join and an interval join over
//! event-time columns with watermarks free the state the watermark has passed, so their key
//! count stays bounded while the input grows, before and after a SIGKILL. Half an hour of
//! event time goes in, a minute per step; `SHOW STATE TABLES` is read after each step.

mod common;

use common::TestServer;
use tokio_postgres::Client;

/// Steps of one minute of event time each.
const MINUTES: i64 = 30;
/// Bids per minute of event time (one every 100 ms).
const BIDS_PER_MINUTE: i64 = 600;
const AUCTIONS: i64 = 50;
/// Most keys a view's state may hold at any step: the windows still open behind the
/// watermark's 4-second delay (at most 8 hops of 2 s for a 10-s HOP) times the auctions, with
/// room to spare, far below what one minute alone adds without cleaning (1,500 groups).
const KEY_LIMIT: i64 = 1_000;
const BID_TABLE: &str = "CREATE TABLE bid (id BIGINT PRIMARY KEY, auction BIGINT, price BIGINT, date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)";

async fn state_keys(client: &Client) -> std::collections::BTreeMap<String, i64> {
    let mut keys = std::collections::BTreeMap::new();
    for row in client.simple_query("SHOW STATE TABLES").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = row {
            let n: i64 = r.get(3).unwrap().parse().unwrap();
            *keys.entry(r.get(0).unwrap().to_string()).or_default() += n;
        }
    }
    keys
}

/// The bids of one minute: one every 100 ms, on `auction`, an expression of the bid's `g`.
fn bids_of_minute(minute: i64, auction: &str) -> String {
    let (first, last) = (minute * BIDS_PER_MINUTE, (minute + 1) * BIDS_PER_MINUTE - 1);
    format!("INSERT INTO bid SELECT g, {auction}, (g * 7919) % 1000, CAST(to_timestamp_millis(1704067200000 + g * 100) AS TIMESTAMP) FROM generate_series({first}, {last}) AS s(g)")
}

async fn scalar(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// Whether `view` and `query` differ, as a count of rows in one and not the other.
async fn differs(client: &Client, view: &str, query: &str) -> i64 {
    scalar(client, &format!("SELECT count(*) FROM ((SELECT * FROM {view} EXCEPT ALL {query}) UNION ALL ({query} EXCEPT ALL SELECT * FROM {view})) d")).await
}

/// Runs `ddl`, then feeds half an hour of event time a minute at a time (`minute(m)` is the
/// SQL of minute `m`, each followed by a FLUSH), with a SIGKILL and restart halfway, and
/// checks that no view's state ever holds more than [`KEY_LIMIT`] keys. Returns the server
/// and a client of the restarted one.
async fn feed_half_an_hour(name: &str, ddl: &str, minute: impl Fn(i64) -> String) -> (TestServer, Client) {
    let mut server = TestServer::start(name);
    let mut client = server.connect().await;
    client.batch_execute(ddl).await.unwrap();
    let mut samples = vec![];
    for m in 0..MINUTES {
        if m == MINUTES / 2 {
            // The restored state is as bounded as the live one, and keeps being cleaned.
            drop(client);
            server = TestServer::start_at(server.kill());
            client = server.connect().await;
            samples.push((m, "restarted", state_keys(&client).await));
        }
        client.batch_execute(&format!("{}; FLUSH", minute(m))).await.unwrap();
        samples.push((m, "", state_keys(&client).await));
    }
    for (m, note, keys) in &samples {
        eprintln!("minute {m:2} {note:9} state keys {keys:?}");
        for (view, n) in keys {
            assert!(*n <= KEY_LIMIT, "minute {m} {note}: {view} holds {n} state keys, more than {KEY_LIMIT}: {samples:?}");
        }
    }
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_aggregates_keep_their_state_bounded_across_a_restart() {
    let hop = "SELECT auction, window_start, count(*) AS n FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY auction, window_start";
    let tumble = "SELECT window_end, max(price) AS top FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end";
    let window_join = "SELECT c.auction, c.window_end, c.n, m.top FROM (SELECT auction, window_end, count(*) AS n FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_end) c JOIN (SELECT window_end, max(price) AS top FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end) m ON c.window_end = m.window_end";
    // Nexmark q5's shape: the three auctions with the most bids in each window (a top-N
    // partitioned by the window, freed once the watermark passes it).
    let hot = "SELECT window_start, auction, n, rn FROM (SELECT window_start, auction, n, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC, auction) AS rn FROM (SELECT auction, window_start, count(*) AS n FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_start) c) t WHERE rn <= 3";
    let ddl = format!(
        "{BID_TABLE}; CREATE MATERIALIZED VIEW hop_counts AS {hop}; CREATE MATERIALIZED VIEW window_max AS {tumble}; CREATE MATERIALIZED VIEW window_join AS {window_join}; CREATE MATERIALIZED VIEW hot_items AS {hot}"
    );
    let (_server, client) = feed_half_an_hour("state-size", &ddl, |m| bids_of_minute(m, &format!("g % {AUCTIONS}"))).await;
    // Cleaning never changes the results: each view still equals its query.
    let bids = MINUTES * BIDS_PER_MINUTE;
    assert_eq!(scalar(&client, "SELECT count(*) FROM bid").await, bids);
    assert_eq!(differs(&client, "hop_counts", hop).await, 0, "hop_counts equals its query");
    assert_eq!(differs(&client, "window_max", tumble).await, 0, "window_max equals its query");
    assert_eq!(scalar(&client, "SELECT count(*) FROM window_max").await, bids / 100, "one row per 10-second window");
    assert_eq!(differs(&client, "window_join", window_join).await, 0, "window_join equals its query");
    assert_eq!(differs(&client, "hot_items", hot).await, 0, "hot_items equals its query");
    assert_eq!(scalar(&client, "SELECT count(*) FROM hot_items").await, 3 * bids / 100, "three auctions per window");
}

/// An interval join (Nexmark q4's condition) frees the bids behind the auctions' watermark and
/// the auctions that expired behind the bids', so its state stays bounded, also after a
/// SIGKILL; its result still equals its query, and deleting an expired bid is late, not an
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_keeps_its_state_bounded_across_a_restart() {
    let join = "SELECT b.id AS bid_id, b.auction, b.price, a.category FROM auction a JOIN bid b ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires";
    // Nexmark q4, q6 and q9 (the forms of `07_nexmark_stateful.slt`): grouped or partitioned by
    // the auction, whose `expires` the auction's key determines and the join's bounds give a
    // watermark, so each auction's state goes once its bids can no longer come.
    let q4 = "SELECT Q.category, AVG(Q.final) AS avg FROM (SELECT MAX(B.price) AS final, A.category FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category";
    let q6 = "SELECT Q.seller, AVG(Q.final) AS avg FROM (SELECT ROW_NUMBER() OVER (PARTITION BY A.id, A.seller ORDER BY B.price DESC) AS rank, A.seller, B.price AS final FROM auction AS A, bid AS B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) AS Q WHERE Q.rank <= 1 GROUP BY Q.seller";
    let q9 = "SELECT id, seller, category, date_time, expires, auction, price, bid_date_time FROM (SELECT A.*, B.auction, B.price, B.date_time AS bid_date_time, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.id ASC) AS rownum FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) tmp WHERE rownum <= 1";
    let ddl = format!(
        "CREATE TABLE auction (id BIGINT PRIMARY KEY, seller BIGINT, category BIGINT, date_time TIMESTAMP, expires TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND);
         {BID_TABLE}; CREATE MATERIALIZED VIEW winning AS {join}; CREATE MATERIALIZED VIEW q4 AS {q4}; CREATE MATERIALIZED VIEW q6 AS {q6}; CREATE MATERIALIZED VIEW q9 AS {q9}"
    );
    // Auctions, one per second of event time, each open for 20 seconds; ten bids a second,
    // each on one of the last ten auctions.
    let minute = |m: i64| {
        let (first, last) = (m * 60, m * 60 + 59);
        format!(
            "INSERT INTO auction SELECT s, s % 11, s % 7, CAST(to_timestamp_millis(1704067200000 + s * 1000) AS TIMESTAMP), CAST(to_timestamp_millis(1704067200000 + s * 1000 + 20000) AS TIMESTAMP) FROM generate_series({first}, {last}) AS t(s); {}",
            bids_of_minute(m, "greatest(g / 10 - g % 10, 0)")
        )
    };
    let (_server, client) = feed_half_an_hour("state-size-join", &ddl, minute).await;
    let joined = scalar(&client, "SELECT count(*) FROM winning").await;
    assert!(joined > MINUTES * BIDS_PER_MINUTE / 2, "most bids join an open auction: {joined}");
    assert_eq!(differs(&client, "winning", join).await, 0, "the join equals its query");
    // Cleaning never changes the results.
    for (view, query) in [("q4", q4), ("q6", q6), ("q9", q9)] {
        assert_eq!(differs(&client, view, query).await, 0, "{view} equals its query");
    }
    assert_eq!(scalar(&client, "SELECT count(*) FROM q9").await, MINUTES * 60, "one winner per auction (every auction has bids)");
    // The first bid expired long ago: its deletion is late (as a late row of a window is), and
    // the view goes on.
    client.batch_execute("DELETE FROM bid WHERE id = 1; FLUSH").await.unwrap();
    assert_eq!(scalar(&client, "SELECT count(*) FROM winning").await, joined, "a late deletion changes nothing");
    client.batch_execute(&format!("{}; FLUSH", bids_of_minute(MINUTES, "greatest(g / 10 - g % 10, 0)"))).await.unwrap();
    assert!(scalar(&client, "SELECT count(*) FROM winning").await > joined, "the view still runs");
}

/// A view on `now()` retracts rows as the clock passes their bound and frees their state,
/// also across a SIGKILL. Its subject is the wall clock, so the test waits for a condition
/// (FLUSH, read) with a deadline, never for a fixed time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporal_filter_retracts_rows_as_the_clock_passes_them() {
    const ROWS: i64 = 1_000;
    let server = TestServer::start("temporal");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE ev (id BIGINT PRIMARY KEY, ts TIMESTAMP);
             CREATE MATERIALIZED VIEW recent AS SELECT id FROM ev WHERE ts > now() - INTERVAL '2 seconds';
             CREATE MATERIALIZED VIEW n_recent AS SELECT id % 10 AS k, count(*) AS n FROM ev WHERE ts > now() - INTERVAL '2 seconds' GROUP BY id % 10",
        )
        .await
        .unwrap();
    // Rows of now, whose bound passes in two seconds, and rows an hour ahead.
    client
        .batch_execute(&format!(
            "INSERT INTO ev SELECT g, CAST(now() AS TIMESTAMP) FROM generate_series(1, {ROWS}) AS s(g);
             INSERT INTO ev SELECT g, CAST(now() + INTERVAL '1 hour' AS TIMESTAMP) FROM generate_series({}, {}) AS s(g);
             FLUSH",
            ROWS + 1,
            2 * ROWS
        ))
        .await
        .unwrap();
    let in_view = scalar(&client, "SELECT count(*) FROM recent").await;
    assert!(in_view == 2 * ROWS || in_view == ROWS, "{in_view} rows in the view");
    drop(client);
    let server = TestServer::start_at(server.kill());
    let client = server.connect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        client.batch_execute("FLUSH").await.unwrap();
        if scalar(&client, "SELECT count(*) FROM recent").await == ROWS {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the rows of now were not retracted within a minute");
    }
    assert_eq!(scalar(&client, "SELECT min(id) FROM recent").await, ROWS + 1, "only the rows an hour ahead stay");
    assert_eq!(scalar(&client, "SELECT sum(n)::BIGINT FROM n_recent").await, ROWS);
    let keys = state_keys(&client).await;
    eprintln!("state keys after the retraction: {keys:?}");
    // The filters' rows (the views' own rows are not operator state), and ten groups.
    for (view, most) in [("recent", ROWS), ("n_recent", ROWS + 20)] {
        assert!(keys[view] <= most, "{view} still holds the state of retracted rows: {keys:?}");
    }
}

/// Nexmark q4, q6 and q9 over the generator: half an hour of event time (360,000 events at
/// 200 a second of event time, paced to 10,000 a second of wall time) from sources with
/// watermarks. `SHOW STATE TABLES` is sampled while they run,
/// before and after a SIGKILL halfway through, and stays far below the bids read; without
/// cleaning, every bid would stay (331,200 per view).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_q4_q6_q9_over_the_generator_keep_their_state_bounded_across_a_restart() {
    const EVENTS: i64 = 360_000;
    const BIDS: i64 = EVENTS / 50 * 46;
    /// What a view may hold. Cleaned, a view holds the auctions still open (they run up to
    /// about 17 s here) and their bids, plus what one source's readers run ahead of the
    /// other's: each view reads both on its own, and rows wait in the join for the other side's
    /// watermark (at most 21,713 to 23,139 keys per view in runs here). Not cleaned, it holds
    /// every bid: 165,600 halfway, 331,200 at the end.
    const LIMIT: i64 = BIDS / 4;
    /// The generator is paced to 10,000 events a second of wall time (36 s for the run), so
    /// that the samples see it running whatever the machine's speed.
    const GAP_NS: i64 = 100_000;
    let source = |name: &str, kind: &str, columns: &str| {
        format!(
            "CREATE SOURCE {name} ({columns}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) WITH (connector = 'nexmark', 'nexmark.table.type' = '{kind}', 'nexmark.event.num' = '{EVENTS}', 'nexmark.base.time' = '1700000000000', 'nexmark.first.rate' = '200', 'nexmark.next.rate' = '200', 'nexmark.min.event.gap.in.ns' = '{GAP_NS}')"
        )
    };
    let ddl = [
        source("auction", "auction", "id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR"),
        source("bid", "bid", "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR"),
        "CREATE MATERIALIZED VIEW q4 AS SELECT Q.category, AVG(Q.final) AS avg FROM (SELECT MAX(B.price) AS final, A.category FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category".into(),
        "CREATE MATERIALIZED VIEW q6 AS SELECT Q.seller, AVG(Q.final) AS avg FROM (SELECT ROW_NUMBER() OVER (PARTITION BY A.id, A.seller ORDER BY B.price DESC) AS rank, A.seller, B.price AS final FROM auction AS A, bid AS B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) AS Q WHERE Q.rank <= 1 GROUP BY Q.seller".into(),
        "CREATE MATERIALIZED VIEW q9 AS SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, auction, bidder, price, bid_date_time FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.bidder ASC) AS rownum FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) tmp WHERE rownum <= 1".into(),
    ]
    .join("; ");
    let server = TestServer::start_with(
        std::env::temp_dir().join(format!("openclaw-test-state-size-nexmark-{}", std::process::id())),
        &["--checkpoint-interval", "1s"],
    );
    let client = server.connect().await;
    client.batch_execute(&ddl).await.unwrap();
    let mut samples: Vec<(&str, std::collections::BTreeMap<String, i64>)> = vec![];
    // Until the readers are halfway through the bids. The pause is a sampling period, not a
    // wait for a condition: the run's end is awaited by FLUSH.
    loop {
        samples.push(("", state_keys(&client).await));
        if source_rows_read(&client, "bid").await >= BIDS / 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(client);
    let server = TestServer::start_with(server.kill(), &["--checkpoint-interval", "1s"]);
    let client = server.connect().await;
    samples.push(("restarted", state_keys(&client).await));
    // Sampled from another session while FLUSH waits for the generator's end.
    let sampler = server.connect().await;
    let flush = tokio::spawn(async move { client.batch_execute("FLUSH").await.map(|()| client) });
    while !flush.is_finished() {
        samples.push(("after", state_keys(&sampler).await));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let client = flush.await.unwrap().unwrap();
    for (note, keys) in &samples {
        eprintln!("{note:9} state keys {keys:?}");
    }
    let peak = |view: &str| samples.iter().filter_map(|(_, k)| k.get(view).copied()).max().unwrap_or(0);
    eprintln!("peak state keys: q4 {}, q6 {}, q9 {} (limit {LIMIT})", peak("q4"), peak("q6"), peak("q9"));
    for view in ["q4", "q6", "q9"] {
        assert!(peak(view) <= LIMIT, "{view} held {} state keys, more than {LIMIT}", peak(view));
    }
    assert!(samples.iter().filter(|(n, _)| *n == "after").count() >= 3, "the run after the restart was sampled");
    assert!(peak("q4") > 100, "the views held live state while they ran: {samples:?}");
    // One winner per auction that had a bid in time; the generator's bids go to recent auctions.
    let winners = scalar(&client, "SELECT count(*) FROM q9").await;
    assert!(winners > EVENTS / 50 * 3 / 2, "q9 has a winner for most auctions: {winners}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM q4").await, 5, "q4 has a row per category");
}

/// The rows the readers of `source` have read (`SHOW SOURCES`).
async fn source_rows_read(client: &Client, source: &str) -> i64 {
    for row in client.simple_query("SHOW SOURCES").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = row {
            if r.get(0) == Some(source) {
                return r.get(3).unwrap().parse().unwrap();
            }
        }
    }
    panic!("no source {source}")
}
