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
    let ddl = format!(
        "CREATE TABLE auction (id BIGINT PRIMARY KEY, category BIGINT, date_time TIMESTAMP, expires TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND);
         {BID_TABLE}; CREATE MATERIALIZED VIEW winning AS {join}"
    );
    // Auctions, one per second of event time, each open for 20 seconds; ten bids a second,
    // each on one of the last ten auctions.
    let minute = |m: i64| {
        let (first, last) = (m * 60, m * 60 + 59);
        format!(
            "INSERT INTO auction SELECT s, s % 7, CAST(to_timestamp_millis(1704067200000 + s * 1000) AS TIMESTAMP), CAST(to_timestamp_millis(1704067200000 + s * 1000 + 20000) AS TIMESTAMP) FROM generate_series({first}, {last}) AS t(s); {}",
            bids_of_minute(m, "greatest(g / 10 - g % 10, 0)")
        )
    };
    let (_server, client) = feed_half_an_hour("state-size-join", &ddl, minute).await;
    let joined = scalar(&client, "SELECT count(*) FROM winning").await;
    assert!(joined > MINUTES * BIDS_PER_MINUTE / 2, "most bids join an open auction: {joined}");
    assert_eq!(differs(&client, "winning", join).await, 0, "the join equals its query");
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
