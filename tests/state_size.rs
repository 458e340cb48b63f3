//! State that is cleaned: windowed aggregates, a window join and an interval join over
//! event-time columns with watermarks free the state the watermark has passed, so their key
//! count stays bounded while the input grows, before and after a SIGKILL. Half an hour of
//! event time goes in, a minute per step; `SHOW STATE TABLES` is read after each step.

mod common;

/// Steps of one minute of event time each.
const MINUTES: i64 = 30;
/// Bids per minute of event time (one every 100 ms).
const BIDS_PER_MINUTE: i64 = 600;
const AUCTIONS: i64 = 50;
/// Most keys a view's state may hold at any step: the windows still open behind the
/// watermark's 4-second delay (at most 8 hops of 2 s for a 10-s HOP) times the auctions, with
/// room to spare, far below what one minute alone adds without cleaning (1,500 groups).
const KEY_LIMIT: i64 = 1_000;

async fn state_keys(client: &tokio_postgres::Client) -> std::collections::BTreeMap<String, i64> {
    let mut keys = std::collections::BTreeMap::new();
    for row in client.simple_query("SHOW STATE TABLES").await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = row {
            let n: i64 = r.get(3).unwrap().parse().unwrap();
            *keys.entry(r.get(0).unwrap().to_string()).or_default() += n;
        }
    }
    keys
}

async fn insert_minute(client: &tokio_postgres::Client, minute: i64) {
    let (first, last) = (minute * BIDS_PER_MINUTE, (minute + 1) * BIDS_PER_MINUTE - 1);
    client
        .batch_execute(&format!(
            "INSERT INTO bid SELECT g, g % {AUCTIONS}, (g * 7919) % 1000, CAST(to_timestamp_millis(1704067200000 + g * 100) AS TIMESTAMP) FROM generate_series({first}, {last}) AS s(g); FLUSH"
        ))
        .await
        .unwrap();
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_aggregates_keep_their_state_bounded_across_a_restart() {
    let server = common::TestServer::start("state-size");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE bid (id BIGINT PRIMARY KEY, auction BIGINT, price BIGINT, date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND);
             CREATE MATERIALIZED VIEW hop_counts AS SELECT auction, window_start, count(*) AS n FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY auction, window_start;
             CREATE MATERIALIZED VIEW window_max AS SELECT window_end, max(price) AS top FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end;
             CREATE MATERIALIZED VIEW window_join AS SELECT c.auction, c.window_end, c.n, m.top FROM (SELECT auction, window_end, count(*) AS n FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_end) c JOIN (SELECT window_end, max(price) AS top FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end) m ON c.window_end = m.window_end;",
        )
        .await
        .unwrap();
    let mut server = server;
    let mut client = client;
    let mut samples = vec![];
    for minute in 0..MINUTES {
        if minute == MINUTES / 2 {
            // The restored state is as bounded as the live one, and keeps being cleaned.
            drop(client);
            server = common::TestServer::start_at(server.kill());
            client = server.connect().await;
            samples.push((minute, "restarted", state_keys(&client).await));
        }
        insert_minute(&client, minute).await;
        samples.push((minute, "", state_keys(&client).await));
    }
    for (minute, note, keys) in &samples {
        eprintln!("minute {minute:2} {note:9} state keys {keys:?}");
        for (view, n) in keys {
            assert!(*n <= KEY_LIMIT, "minute {minute} {note}: {view} holds {n} state keys, more than {KEY_LIMIT}: {samples:?}");
        }
    }
    // Cleaning never changes the results: each view still equals its query.
    let bids = MINUTES * BIDS_PER_MINUTE;
    assert_eq!(scalar(&client, "SELECT count(*) FROM bid").await, bids);
    let differs = |view: &str, query: &str| {
        format!("SELECT count(*) FROM ((SELECT * FROM {view} EXCEPT ALL {query}) UNION ALL ({query} EXCEPT ALL SELECT * FROM {view})) d")
    };
    let hop = "SELECT auction, window_start, count(*) AS n FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY auction, window_start";
    assert_eq!(scalar(&client, &differs("hop_counts", hop)).await, 0, "hop_counts equals its query");
    let tumble = "SELECT window_end, max(price) AS top FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end";
    assert_eq!(scalar(&client, &differs("window_max", tumble)).await, 0, "window_max equals its query");
    assert_eq!(scalar(&client, "SELECT count(*) FROM window_max").await, bids / 100, "one row per 10-second window");
    let window_join = "SELECT c.auction, c.window_end, c.n, m.top FROM (SELECT auction, window_end, count(*) AS n FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY auction, window_end) c JOIN (SELECT window_end, max(price) AS top FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end) m ON c.window_end = m.window_end";
    assert_eq!(scalar(&client, &differs("window_join", window_join)).await, 0, "window_join equals its query");
}

/// Auctions, one per second of event time, each open for 20 seconds; ten bids a second, each
/// on one of the last ten auctions.
async fn insert_auction_minute(client: &tokio_postgres::Client, minute: i64) {
    let (first, last) = (minute * 60, minute * 60 + 59);
    let (first_bid, last_bid) = (minute * BIDS_PER_MINUTE, (minute + 1) * BIDS_PER_MINUTE - 1);
    client
        .batch_execute(&format!(
            "INSERT INTO auction SELECT s, s % 7, CAST(to_timestamp_millis(1704067200000 + s * 1000) AS TIMESTAMP), CAST(to_timestamp_millis(1704067200000 + s * 1000 + 20000) AS TIMESTAMP) FROM generate_series({first}, {last}) AS t(s);
             INSERT INTO bid SELECT g, greatest(g / 10 - g % 10, 0), (g * 7919) % 1000, CAST(to_timestamp_millis(1704067200000 + g * 100) AS TIMESTAMP) FROM generate_series({first_bid}, {last_bid}) AS s(g);
             FLUSH"
        ))
        .await
        .unwrap();
}

/// An interval join (Nexmark q4's condition) frees the bids behind the auctions' watermark and
/// the auctions that expired behind the bids', so its state stays bounded, also after a
/// SIGKILL; its result still equals its query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_keeps_its_state_bounded_across_a_restart() {
    let mut server = common::TestServer::start("state-size-join");
    let mut client = server.connect().await;
    let join = "SELECT b.id AS bid_id, b.auction, b.price, a.category FROM auction a JOIN bid b ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires";
    client
        .batch_execute(&format!(
            "CREATE TABLE auction (id BIGINT PRIMARY KEY, category BIGINT, date_time TIMESTAMP, expires TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND);
             CREATE TABLE bid (id BIGINT PRIMARY KEY, auction BIGINT, price BIGINT, date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND);
             CREATE MATERIALIZED VIEW winning AS {join};"
        ))
        .await
        .unwrap();
    let mut samples = vec![];
    for minute in 0..MINUTES {
        if minute == MINUTES / 2 {
            drop(client);
            server = common::TestServer::start_at(server.kill());
            client = server.connect().await;
            samples.push((minute, "restarted", state_keys(&client).await));
        }
        insert_auction_minute(&client, minute).await;
        samples.push((minute, "", state_keys(&client).await));
    }
    for (minute, note, keys) in &samples {
        eprintln!("minute {minute:2} {note:9} state keys {keys:?}");
        for (view, n) in keys {
            assert!(*n <= KEY_LIMIT, "minute {minute} {note}: {view} holds {n} state keys, more than {KEY_LIMIT}: {samples:?}");
        }
    }
    let joined = scalar(&client, "SELECT count(*) FROM winning").await;
    assert!(joined > MINUTES * BIDS_PER_MINUTE / 2, "most bids join an open auction: {joined}");
    let differs = format!("SELECT count(*) FROM ((SELECT * FROM winning EXCEPT ALL {join}) UNION ALL ({join} EXCEPT ALL SELECT * FROM winning)) d");
    assert_eq!(scalar(&client, &differs).await, 0, "the join equals its query");
}
