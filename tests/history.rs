//! History: a source's rows kept as Parquet files, exactly once, read back with SQL
//! (`history('name')`) and by DuckDB (from PyPI, installed by `scripts/install-grpc-client.sh`)
//! as an independent reader of the same files.

mod common;

use common::{one, python, until, Rng, S3Server, TestServer};

/// Events the Nexmark sources generate (46 of every 50 are bids).
const EVENTS: u64 = 300_000;
const BIDS: u64 = EVENTS / 50 * 46;

/// A bounded Nexmark bid source with history, generating about 50,000 events a second, so that
/// checkpoints (and crashes) fall while it runs. Its event times start 10 s before an hour
/// ends, so that they span two hours.
fn source_ddl(extra: &str) -> String {
    format!(
        "CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '{EVENTS}',
             'nexmark.min.event.gap.in.ns' = '20000', 'nexmark.base.time' = '1700002790000', history = 'parquet'{extra});
         CREATE MATERIALIZED VIEW all_bids AS SELECT auction, bidder, price, date_time FROM bid;"
    )
}

/// `count(*)`, `sum(price)` and the per-hour counts over a source's history equal the
/// generated bids (kept by a view over the same source), across several checkpoints; DuckDB
/// reading the files gives the same answers; `SHOW HISTORY` counts the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_counts_like_the_source_and_duckdb_reads_the_same_files() {
    let server = TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-history-{}", std::process::id())), &["--checkpoint-interval", "100ms"]);
    let client = server.connect().await;
    client.batch_execute(&source_ddl(", history.partition = 'hour'")).await.unwrap();
    // Periodic checkpoints are skipped while a FLUSH waits for a bounded source: several
    // files first, then the FLUSH.
    // The whole stream committed by periodic checkpoints (some 60), which compaction merges.
    until(&client, "SHOW HISTORY", "every bid committed at periodic checkpoints", |rows| tier(rows, "bid", "hot").is_some_and(|r| r[5] == BIDS.to_string())).await;
    client.batch_execute("FLUSH").await.unwrap();
    let totals = "SELECT count(*), sum(price), count(DISTINCT auction) FROM ";
    let expected = one(&client, &format!("{totals} all_bids")).await;
    assert_eq!(expected[0][0], BIDS.to_string());
    assert_eq!(one(&client, &format!("{totals} history('bid')")).await, expected);
    assert_eq!(one(&client, "SELECT sum(_diff) FROM history('bid')").await, [[BIDS.to_string()]]);
    let per_hour = "SELECT extract(epoch FROM date_trunc('hour', date_time))::bigint AS h, count(*) FROM {} GROUP BY 1 ORDER BY 1";
    let hours = one(&client, &per_hour.replace("{}", "all_bids")).await;
    assert!(hours.len() > 1, "the bids span hours: {hours:?}");
    assert_eq!(one(&client, &per_hour.replace("{}", "history('bid')")).await, hours);
    // Filters on the partition columns prune files, and still give exact answers.
    assert_eq!(one(&client, "SELECT count(*) FROM history('bid') WHERE date = '1999-01-01'").await, [["0"]]);
    assert_eq!(one(&client, "SELECT count(*) FROM history('bid') WHERE date >= '2000-01-01' AND hour <> 'x'").await, [[BIDS.to_string()]]);
    assert_eq!(one(&client, "SELECT count(*) FROM history('bid') WHERE price < 0").await, [["0"]]);

    let shown = one(&client, "SHOW HISTORY").await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    let (path, files, rows) = (shown[0][2].clone(), shown[0][3].parse::<u64>().unwrap(), shown[0][5].clone());
    assert_eq!((shown[0][0].as_str(), shown[0][1].as_str(), rows.as_str()), ("bid", "hot", BIDS.to_string().as_str()));
    assert!(files > 1, "written over several checkpoints: {files} files");
    // Compaction: each partition merges its small files as soon as 8 of them follow each
    // other, so after some 60 commits it holds at most a merged file and 7 small ones.
    for hour in std::fs::read_dir(&path).unwrap().flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap()) {
        let hour = hour.unwrap().path();
        let parquet = std::fs::read_dir(&hour).unwrap().filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|e| e == "parquet")).count();
        assert!((1..=8).contains(&parquet), "{} holds {parquet} files", hour.display());
    }

    let duckdb = python(&format!(
        "import duckdb\n\
         t = \"read_parquet('{path}/**/*.parquet', hive_partitioning = true)\"\n\
         print(duckdb.sql(f'SELECT count(*), sum(price), count(DISTINCT auction) FROM {{t}}').fetchall())\n\
         print(duckdb.sql(f\"SELECT epoch(date_trunc('hour', date_time))::BIGINT, count(*) FROM {{t}} GROUP BY 1 ORDER BY 1\").fetchall())\n\
         print(duckdb.sql(f'SELECT DISTINCT date FROM {{t}}').fetchall() != [])"
    ));
    let lines: Vec<&str> = duckdb.lines().collect();
    let tuple = |row: &Vec<String>| format!("({})", row.join(", "));
    assert_eq!(lines[0], format!("[{}]", tuple(&expected[0])), "DuckDB's totals");
    assert_eq!(lines[1], format!("[{}]", hours.iter().map(tuple).collect::<Vec<_>>().join(", ")), "DuckDB's hours");
    assert_eq!(lines[2], "True", "DuckDB sees the Hive partitions");

    // Mistakes are PostgreSQL-style errors.
    let error = client.simple_query("SELECT count(*) FROM history('nope')").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42P01", "{error:?}");
    let error = client.simple_query("SELECT count(*) FROM history(1)").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42883", "{error:?}");
    let error = client.simple_query("CREATE SOURCE s WITH (connector = 'nexmark', history = 'iceberg')").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "22023", "{error:?}");
    let error = client.simple_query("CREATE SOURCE s WITH (connector = 'nexmark', history = 'parquet', history.partition = 'week')").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "22023", "{error:?}");
    assert!(one(&client, "SHOW SOURCES").await.iter().all(|r| r[0] != "s"), "a refused history leaves no source behind");

    // The history goes with its source.
    client.batch_execute("DROP MATERIALIZED VIEW all_bids; DROP SOURCE bid").await.unwrap();
    assert!(one(&client, "SHOW HISTORY").await.is_empty());
    assert!(one(&client, "SHOW SINKS").await.is_empty());
    let error = client.simple_query("SELECT count(*) FROM history('bid')").await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42P01", "{error:?}");
}

/// Ten SIGKILLs at random moments while a source's history is written: afterwards the history
/// holds every bid once (equal, as a multiset, to a view over the same source, which resumes
/// exactly once from checkpoints itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_holds_every_event_once_across_ten_sigkills() {
    let flags = ["--checkpoint-interval", "200ms"];
    let dir = std::env::temp_dir().join(format!("openclaw-test-history-kills-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = TestServer::start_with(dir, &flags);
    server.connect().await.batch_execute(&source_ddl("")).await.unwrap();
    let mut rng = Rng(29);
    for _ in 0..10 {
        // A moment somewhere in the next 0.2 to 1.0 s picks when to crash; results are read
        // only after FLUSH.
        tokio::time::sleep(std::time::Duration::from_millis(200 + rng.next() % 800)).await;
        server = TestServer::start_with(server.kill(), &flags);
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let columns = "auction, bidder, price, date_time";
    assert_eq!(one(&client, "SELECT count(*) FROM all_bids").await, [[BIDS.to_string()]]);
    assert_eq!(one(&client, "SELECT count(*) FROM history('bid')").await, [[BIDS.to_string()]], "every bid once");
    for (a, b) in [("history('bid')", "all_bids"), ("all_bids", "history('bid')")] {
        let differ = one(&client, &format!("SELECT count(*) FROM (SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b}) AS d")).await;
        assert_eq!(differ, [["0"]], "{a} EXCEPT ALL {b}");
    }
}

/// `SHOW HISTORY`'s row for `object` in `tier`.
fn tier<'a>(rows: &'a [Vec<String>], object: &str, tier: &str) -> Option<&'a Vec<String>> {
    rows.iter().find(|r| r[0] == object && r[1] == tier)
}

/// Tiering: files older than `history.hot` move to the S3 server, and a query over both tiers
/// answers as before the move. With the server stopped, ingestion goes on, files wait in the
/// hot tier, and `SHOW HISTORY` says the store is unreachable; once it is back they move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_moves_to_an_s3_server_and_waits_while_it_is_down() {
    let s3 = S3Server::start();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = std::env::temp_dir().join(format!("openclaw-test-history-s3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start_with_env(dir, &["--checkpoint-interval", "100ms", "--cold-store", "s3://history/tiers"], &env);
    let client = server.connect().await;
    client.batch_execute(&source_ddl(", history.hot = '1 s'")).await.unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    let totals = "SELECT count(*), sum(price), count(DISTINCT auction) FROM ";
    let expected = one(&client, &format!("{totals} all_bids")).await;
    assert_eq!(one(&client, &format!("{totals} history('bid')")).await, expected, "over both tiers while files move");
    let shown = until(&client, "SHOW HISTORY", "every file moves to the cold tier", |rows| tier(rows, "bid", "hot").is_some_and(|r| r[3] == "0")).await;
    let cold = tier(&shown, "bid", "cold").unwrap();
    assert!(cold[3].parse::<u64>().unwrap() >= 1, "files in the cold tier: {cold:?}");
    assert!(cold[2].starts_with("s3://history/tiers/bid/"), "{cold:?}");
    assert_eq!(cold[8], "ok");
    assert_eq!(one(&client, &format!("{totals} history('bid')")).await, expected, "from the cold tier alone");

    // The store stops answering: a second source still flows, its files wait in the hot tier.
    s3.signal("-STOP");
    client
        .batch_execute(
            "CREATE SOURCE ask WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '50000',
                 'nexmark.base.time' = '1700002790000', history = 'parquet', history.hot = '1 s');
             CREATE MATERIALIZED VIEW ask_totals AS SELECT count(*) AS n, sum(price) AS total FROM ask;
             FLUSH;",
        )
        .await
        .unwrap();
    let ask = one(&client, "SELECT n, total FROM ask_totals").await;
    assert_eq!(ask[0][0], (50_000 / 50 * 46).to_string());
    let shown = until(&client, "SHOW HISTORY", "the cold tier is reported unreachable", |rows| tier(rows, "ask", "cold").is_some_and(|r| r[8].starts_with("unreachable"))).await;
    let waiting = tier(&shown, "ask", "hot").unwrap();
    assert!(waiting[3] != "0" && waiting[5] == ask[0][0], "files wait in the hot tier: {waiting:?}");
    // Back: they move.
    s3.signal("-CONT");
    until(&client, "SHOW HISTORY", "waiting files move once the store is back", |rows| {
        tier(rows, "ask", "hot").is_some_and(|r| r[3] == "0") && tier(rows, "ask", "cold").is_some_and(|r| r[3] != "0" && r[8] == "ok")
    })
    .await;
    assert_eq!(one(&client, "SELECT count(*), sum(price) FROM history('ask')").await, ask, "nothing lost while the store was down");
    assert_eq!(one(&client, &format!("{totals} history('bid')")).await, expected);
}

/// Retention: files older than `history.retention` are deleted, and `SHOW HISTORY` shows
/// none left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_past_its_retention_is_deleted() {
    let server = TestServer::start_with(std::env::temp_dir().join(format!("openclaw-test-history-retention-{}", std::process::id())), &["--checkpoint-interval", "100ms"]);
    let client = server.connect().await;
    client.batch_execute(&source_ddl(", history.retention = '2 s'")).await.unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    let shown = one(&client, "SHOW HISTORY").await;
    assert!(tier(&shown, "bid", "hot").is_some_and(|r| r[3] != "0"), "written: {shown:?}");
    until(&client, "SHOW HISTORY", "files past the retention are deleted", |rows| tier(rows, "bid", "hot").is_some_and(|r| r[3] == "0" && r[5] == "0")).await;
    assert_eq!(one(&client, "SELECT count(*) FROM history('bid')").await, [["0"]]);
    assert_eq!(one(&client, "SELECT count(*) FROM all_bids").await, [[BIDS.to_string()]], "the source and its views are untouched");
}

/// `FOR SYSTEM_TIME AS OF`: a keyed table, a table without a key and a view over them,
/// each with history, changed in rounds of inserts, updates and deletes (with a SIGKILL and a
/// restart halfway); queried `AS OF` the time each round ended, each equals what a `SELECT`
/// returned then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_each_round_equals_what_a_select_returned_then() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-history-as-of-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let flags = ["--checkpoint-interval", "100ms"];
    let mut server = Some(TestServer::start_with(dir.clone(), &flags));
    let mut client = server.as_ref().unwrap().connect().await;
    client
        .batch_execute(
            "CREATE TABLE acct (id int PRIMARY KEY, owner text, balance bigint) WITH (history = 'parquet');
             CREATE TABLE note (owner text, words text) WITH (history = 'parquet');
             CREATE MATERIALIZED VIEW per_owner WITH (history = 'parquet') AS
                 SELECT owner, count(*) AS accounts, sum(balance) AS total FROM acct GROUP BY owner;",
        )
        .await
        .unwrap();
    let queries = [
        ("acct", "SELECT id, owner, balance FROM acct{} ORDER BY id"),
        ("note", "SELECT owner, words FROM note{} ORDER BY owner, words"),
        ("per_owner", "SELECT owner, accounts, total FROM per_owner{} ORDER BY owner"),
    ];
    let mut rng = Rng(0x5eed_a5_0f);
    let mut rounds: Vec<(String, Vec<Vec<Vec<String>>>)> = vec![];
    for round in 0..6 {
        let mut sql = String::new();
        for _ in 0..20 {
            let (id, owner, amount) = (rng.next() % 40, ["ann", "bob", "cy", "dee"][(rng.next() % 4) as usize], rng.next() % 1000);
            sql.push_str(&match rng.next() % 4 {
                0 => format!("DELETE FROM acct WHERE id = {id};"),
                1 => format!("UPDATE acct SET balance = balance + {amount} WHERE id = {id};"),
                _ => format!("INSERT INTO acct VALUES ({id}, '{owner}', {amount});"),
            });
            // Equal rows in a table without a key: each is kept as a row of its own.
            sql.push_str(&format!("INSERT INTO note VALUES ('{owner}', 'w{}');", rng.next() % 3));
        }
        client.batch_execute(&sql).await.unwrap();
        client.batch_execute("FLUSH").await.unwrap();
        let at = one(&client, "SELECT now()::text").await.remove(0).remove(0);
        let mut seen = vec![];
        for (_, query) in queries {
            seen.push(one(&client, &query.replace("{}", "")).await);
        }
        rounds.push((at, seen));
        if round == 2 {
            // Once the history has caught up, a crash: what it committed stays, once.
            until(&client, "SELECT count(*) FROM per_owner FOR SYSTEM_TIME AS OF now()", "the view's history catches up", |rows| rows[0][0] == rounds[2].1[2].len().to_string()).await;
            drop(client);
            let dir = server.take().unwrap().kill();
            server = Some(TestServer::start_with(dir, &flags));
            client = server.as_ref().unwrap().connect().await;
        }
    }
    // The history is written at checkpoints: wait until it has the last round.
    let last = rounds.last().unwrap().1.clone();
    for ((name, query), expected) in queries.iter().zip(&last) {
        let now = query.replace("{}", " FOR SYSTEM_TIME AS OF now()");
        until(&client, &now, &format!("{name}'s history catches up"), |rows| rows == expected.as_slice()).await;
    }
    assert!(rounds.iter().all(|(_, seen)| !seen[0].is_empty()), "every round has accounts");
    for (n, (at, seen)) in rounds.iter().enumerate() {
        for ((name, query), expected) in queries.iter().zip(seen) {
            let as_of = query.replace("{}", &format!(" FOR SYSTEM_TIME AS OF TIMESTAMPTZ '{at}'"));
            assert_eq!(&one(&client, &as_of).await, expected, "{name} as of round {n} ({at})");
        }
    }
    // Before the first round: nothing.
    assert_eq!(one(&client, "SELECT count(*) FROM acct FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2000-01-01 00:00:00+00'").await, [["0"]]);
}

/// The hot tier's limit: with the S3 server gone (connections refused, so that commits do not
/// wait on timeouts), a history's files that should have moved stay under
/// `history.hot.limit` (commits wait) while the source's view goes on to the end; once a
/// server is back the files move, the history catches up, and it holds every bid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_waits_under_its_disk_limit_while_s3_is_down() {
    let mut s3 = S3Server::start();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = std::env::temp_dir().join(format!("openclaw-test-history-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start_with_env(dir, &["--checkpoint-interval", "100ms", "--cold-store", "s3://history/limit"], &env);
    let client = server.connect().await;
    s3.stop();
    // 2,000,000 events at about 200,000 a second: the files of the first seconds pass the
    // limit once they are a second old, long before the end.
    let (events, bids) = (2_000_000u64, 2_000_000u64 / 50 * 46);
    client
        .batch_execute(&format!(
            "CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '{events}',
                 'nexmark.min.event.gap.in.ns' = '5000', history = 'parquet', history.hot = '1 s', history.hot.limit = '1 MB');
             CREATE MATERIALIZED VIEW all_bids AS SELECT auction, bidder, price, date_time FROM bid;"
        ))
        .await
        .unwrap();
    // The view reads the source on its own and reaches the end.
    until(&client, "SELECT count(*) FROM all_bids", "the view reads every bid", |rows| rows[0][0] == bids.to_string()).await;
    let full = until(&client, "SHOW HISTORY", "the hot tier reports it is full", |rows| tier(rows, "bid", "hot").is_some_and(|r| r[8].starts_with("full"))).await;
    let hot = tier(&full, "bid", "hot").unwrap();
    let rows: u64 = hot[5].parse().unwrap();
    // The limit is checked before each commit: what passed it is at most one commit.
    assert!(rows < bids / 2, "the history waits, its files under the limit: {hot:?}");
    s3.restart();
    // A query that lists a file a compaction then merges fails (and is run again), as
    // DuckDB's would: while the history catches up, a failed count is "not yet".
    for _ in 0..600 {
        match client.simple_query("SELECT count(*) FROM history('bid')").await {
            Ok(messages) if messages.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(bids.to_string().as_str()))) => break,
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let totals = "SELECT count(*), sum(price), count(DISTINCT auction) FROM ";
    assert_eq!(one(&client, &format!("{totals} history('bid')")).await, one(&client, &format!("{totals} all_bids")).await);
}
