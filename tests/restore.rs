//! Restore on a new machine: a server with `--cold-store` on an S3-compatible server (moto's,
//! from PyPI) uploads its checkpoints; it is killed and its data directory is lost; a new
//! server on an empty data directory started with `--restore-from` serves the same tables and
//! views and resumes the source from the checkpoint's position: once the source ends, its
//! views count every event once.

mod common;

use common::{one, until, S3Server, TestServer};

/// Events of the source (46 of every 50 are bids), about 200,000 a second.
const EVENTS: u64 = 2_000_000;
const BIDS: u64 = EVENTS / 50 * 46;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_data_directory_restored_from_s3_serves_the_same_views_and_resumes_the_source() {
    let s3 = S3Server::start();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dirs = ["a", "b"].map(|m| std::env::temp_dir().join(format!("openclaw-test-restore-{m}-{}", std::process::id())));
    dirs.iter().for_each(|d| drop(std::fs::remove_dir_all(d)));
    let first = TestServer::start_with_env(dirs[0].clone(), &["--checkpoint-interval", "200ms", "--cold-store", "s3://history/machine"], &env);
    let client = first.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE acct (id int PRIMARY KEY, balance bigint) WITH (history = 'parquet');
             INSERT INTO acct SELECT i, i * 10 FROM generate_series(1, 100) AS s(i);
             CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '{EVENTS}',
                 'nexmark.min.event.gap.in.ns' = '5000', 'nexmark.base.time' = '1700000000000');
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n, sum(price) AS total FROM bid;
             CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction;
             CREATE MATERIALIZED VIEW rich AS SELECT count(*) AS c, sum(balance) AS s FROM acct WHERE balance > 500;"
        ))
        .await
        .unwrap();
    // Mid-stream: a checkpoint newer than what the view shows now is uploaded.
    let seen: u64 = until(&client, "SELECT n FROM n", "the view counts bids", |r| r[0][0].parse::<u64>().unwrap() >= 300_000).await[0][0].parse().unwrap();
    let newest = one(&client, "SHOW CHECKPOINTS").await[0][0].parse::<u64>().unwrap();
    until(&client, "SHOW CHECKPOINTS", "a newer checkpoint is uploaded", |rows| rows[0][0].parse::<u64>().unwrap() > newest && rows[0][8] == "yes").await;
    assert!(seen < BIDS, "the source is still being read: {seen}");
    drop(client);
    // The machine is gone, its disk with it.
    let lost = first.kill();
    std::fs::remove_dir_all(&lost).unwrap();

    let second = TestServer::start_with_env(dirs[1].clone(), &["--checkpoint-interval", "200ms", "--restore-from", "s3://history/machine"], &env);
    let client = second.connect().await;
    assert_eq!(one(&client, "SELECT count(*), sum(balance) FROM acct").await, [["100", "50500"]], "the table");
    assert_eq!(one(&client, "SELECT c, s FROM rich").await, [["50", "37750"]], "a view over the table");
    let restored: u64 = one(&client, "SELECT n FROM n").await[0][0].parse().unwrap();
    assert!(restored >= seen, "the view starts from the checkpoint ({restored} bids), not from nothing");
    client.batch_execute("FLUSH").await.unwrap();
    // A view created now reads the whole stream with a new reader: the resumed views equal it.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW n_again AS SELECT count(*) AS n, sum(price) AS total FROM bid;
             CREATE MATERIALIZED VIEW per_auction_again AS SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction;
             FLUSH;",
        )
        .await
        .unwrap();
    let totals = one(&client, "SELECT n, total FROM n").await;
    assert_eq!(totals[0][0], BIDS.to_string(), "every bid once");
    assert_eq!(one(&client, "SELECT n, total FROM n_again").await, totals);
    let differ = "SELECT count(*) FROM ((SELECT * FROM per_auction EXCEPT ALL SELECT * FROM per_auction_again) UNION ALL (SELECT * FROM per_auction_again EXCEPT ALL SELECT * FROM per_auction)) AS d";
    assert_eq!(one(&client, differ).await, [["0"]]);
    // The table's history goes on under the new data directory (its path is relative).
    let history = one(&client, "SHOW HISTORY").await;
    assert!(history[0][2].starts_with(&dirs[1].display().to_string()), "{history:?}");
    // It uploads nothing (no --cold-store of its own) and says so.
    assert_eq!(one(&client, "SHOW CHECKPOINTS").await[0][8], "");
}
