//! Kafka sources against a real Kafka protocol peer: librdkafka's mock cluster, run by the
//! test process, while the server (a separate `openclaw serve` process) reads it over TCP.
//! Records are produced with rdkafka, as a service would, and also written to a file; the
//! view's results must equal the same query over the file.
//!
//! The mock keeps only about 5 MB per partition, so producing is paced: a batch at a time,
//! each followed by a FLUSH, which waits until the source has read what the topic held.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::TestServer;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: i32 = 4;
/// Records produced between FLUSHes: far below the mock's retention per partition.
const STEP: usize = 40_000;

struct Broker {
    cluster: MockCluster<'static, DefaultProducerContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl Broker {
    fn start(topic: &str) -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(topic, PARTITIONS, 1).expect("create topic");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("compression.type", "lz4")
            .set("linger.ms", "10")
            .create()
            .expect("producer");
        Self { cluster, producer }
    }

    fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    fn produce(&self, topic: &str, records: &[String]) {
        produce(&self.producer, topic, records)
    }
}

/// Produces `records` spread over the partitions and waits until the broker has them.
fn produce<R: AsRef<[u8]>>(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, records: &[R]) {
    for r in records {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(r.as_ref());
        while let Err((e, back)) = producer.send(record) {
            assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
            // librdkafka's queue is full; it drains as the broker acknowledges.
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush the producer");
}

/// `n` records: Nexmark bids as JSON, every `malformed_every`-th one malformed (0: none).
fn records(n: usize, malformed_every: usize) -> Vec<String> {
    let options = [("nexmark.base.time".to_string(), "1700000000000".to_string())].into();
    let bids = openclaw_connectors::nexmark::json::bids(&options).expect("generator");
    bids.take(n)
        .enumerate()
        .map(|(i, good)| match malformed_every {
            m if m > 0 && i % m == m - 1 => openclaw_connectors::nexmark::json::malformed((i / m) as u64, &good),
            _ => good,
        })
        .collect()
}

/// Bids per auction in the good lines of `file`, and how many lines did not parse as a bid.
fn count_file(file: &std::path::Path) -> (BTreeMap<i64, i64>, usize) {
    let text = std::fs::read_to_string(file).expect("read the produced file");
    let mut counts = BTreeMap::new();
    let mut bad = 0;
    for line in text.lines() {
        let auction = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .filter(|v| v.get("price").is_some_and(|p| p.is_i64()))
            .and_then(|v| v.get("auction").and_then(|a| a.as_i64()));
        match auction {
            Some(a) => *counts.entry(a).or_insert(0) += 1,
            None => bad += 1,
        }
    }
    (counts, bad)
}

async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect()),
            _ => None,
        })
        .collect()
}

async fn view_counts(client: &tokio_postgres::Client) -> BTreeMap<i64, i64> {
    rows(client, "SELECT auction, num FROM bids_per_auction")
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

fn source_ddl(bootstrap: &str) -> String {
    format!(
        "CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR)
             INCLUDE partition AS kafka_partition INCLUDE offset AS kafka_offset
             WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bootstrap}', 'scan.startup.mode' = 'earliest')
             FORMAT PLAIN ENCODE JSON;
         CREATE MATERIALIZED VIEW bids_per_auction AS SELECT auction, count(*) AS num FROM bid GROUP BY auction;
         CREATE MATERIALIZED VIEW per_partition AS SELECT kafka_partition, count(*) AS num, max(kafka_offset) AS last FROM bid GROUP BY kafka_partition;"
    )
}

/// Writes `records` to `file` (appending), as produced.
fn append(file: &std::path::Path, records: &[String]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).expect("open the produced file");
    for r in records {
        writeln!(f, "{r}").expect("write the produced file");
    }
}

/// Must-shows 1 and 2: a million good JSON bids (and 1% malformed records among them) from
/// four partitions, counted by auction, equal the count over the produced file; the
/// dead-letter table holds exactly the malformed ones, with their partitions and offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_json_bids_count_like_the_file_and_malformed_records_go_to_the_dlq() {
    const GOOD: usize = 1_000_000;
    const MALFORMED_EVERY: usize = 101; // 1 in 101: 10,000 malformed among 1,010,000
    let broker = Broker::start("bid");
    let server = TestServer::start("kafka-million");
    let client = server.connect().await;
    client.batch_execute(&source_ddl(&broker.bootstrap())).await.unwrap();
    let all = records(GOOD * MALFORMED_EVERY / (MALFORMED_EVERY - 1), MALFORMED_EVERY);
    let file = server.data_dir.with_extension("produced.jsonl");
    let _ = std::fs::remove_file(&file);
    for step in all.chunks(STEP) {
        broker.produce("bid", step);
        append(&file, step);
        client.batch_execute("FLUSH").await.unwrap();
    }
    let (expected, bad_lines) = count_file(&file);
    assert_eq!(expected.values().sum::<i64>(), GOOD as i64, "the file holds a million good bids");
    assert_eq!(bad_lines, all.len() - GOOD);
    let got = view_counts(&client).await;
    assert_eq!(got.len(), expected.len(), "auctions counted");
    assert!(got == expected, "the view's counts differ from the file's");

    // The dead-letter table holds exactly the malformed records, at their offsets.
    let dlq = rows(&client, "SELECT kafka_partition, kafka_offset, error, payload FROM bid_dlq").await;
    assert_eq!(dlq.len(), bad_lines, "dead letters");
    let malformed: std::collections::HashSet<&str> = all.iter().skip(MALFORMED_EVERY - 1).step_by(MALFORMED_EVERY).map(|s| s.as_str()).collect();
    for row in &dlq {
        let payload = decode_bytea(&row[3]);
        assert!(malformed.contains(payload.as_str()), "dead letter {payload:?} was not produced malformed");
        assert!(!row[2].is_empty());
    }
    // Offsets are where the records sit: the good records' offsets fill the gaps.
    let per_partition = rows(&client, "SELECT * FROM per_partition ORDER BY 1").await;
    assert_eq!(per_partition.len(), PARTITIONS as usize, "every partition was read: {per_partition:?}");
    let dlq_per_partition = rows(&client, "SELECT kafka_partition, count(*) FROM bid_dlq GROUP BY kafka_partition ORDER BY 1").await;
    for (p, d) in per_partition.iter().zip(&dlq_per_partition) {
        let (good, max_offset, bad): (i64, i64, i64) = (p[1].parse().unwrap(), p[2].parse().unwrap(), d[1].parse().unwrap());
        assert!(good + bad >= max_offset, "partition {}: {good} good + {bad} bad records cover offsets up to {max_offset}", p[0]);
    }
    let sources = rows(&client, "SHOW SOURCES").await;
    assert_eq!(sources[0][0], "bid");
    assert_eq!(sources[0][5], bad_lines.to_string(), "SHOW SOURCES counts the dead letters: {sources:?}");
    assert_eq!(sources[0][3], GOOD.to_string(), "SHOW SOURCES counts the rows read: {sources:?}");
    let _ = std::fs::remove_file(&file);
}

/// PostgreSQL's hex form of a bytea (`\x...`), back to text.
fn decode_bytea(hex: &str) -> String {
    let hex = hex.strip_prefix("\\x").unwrap_or(hex);
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    String::from_utf8(bytes).unwrap()
}

/// Must-show 3: the server is killed with SIGKILL while it reads, five times, and restarted;
/// the counts are still exact (no record lost or counted twice), and so is the dead-letter
/// table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stay_exact_across_sigkills_during_consumption() {
    const KILLS: usize = 5;
    let broker = Broker::start("bid");
    let flags = ["--checkpoint-interval", "200ms"];
    let dir = std::env::temp_dir().join(format!("openclaw-test-kafka-kills-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = TestServer::start_with(dir, &flags);
    server.connect().await.batch_execute(&source_ddl(&broker.bootstrap())).await.unwrap();
    // Small enough that the mock keeps every record (about 5 MB per partition).
    let step = STEP / 4;
    let all = records(KILLS * 2 * step, 101);
    let file = server.data_dir.with_extension("produced.jsonl");
    let _ = std::fs::remove_file(&file);
    let mut resumed = 0;
    for (i, pair) in all.chunks(2 * step).enumerate() {
        let (first, second) = pair.split_at(step);
        broker.produce("bid", first);
        append(&file, first);
        // Kill while the second half is being produced and read (a moment that varies per
        // round).
        let dir = kill_while_producing(server, &broker, second, Duration::from_millis(20 + 30 * i as u64));
        append(&file, second);
        server = TestServer::start_with(dir, &flags);
        let client = server.connect().await;
        let views = rows(&client, "SHOW MATERIALIZED VIEWS").await;
        resumed += usize::from(views.iter().any(|r| r[1].contains("resumed")));
        client.batch_execute("FLUSH").await.unwrap();
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let (expected, bad_lines) = count_file(&file);
    let got = view_counts(&client).await;
    let total: i64 = got.values().sum();
    assert_eq!(total, expected.values().sum::<i64>(), "bids counted after {KILLS} SIGKILLs (a difference is loss or duplication)");
    assert!(got == expected, "per-auction counts differ from the file's after {KILLS} SIGKILLs");
    let dlq = rows(&client, "SELECT count(*) FROM bid_dlq").await;
    assert_eq!(dlq[0][0], bad_lines.to_string(), "dead letters after {KILLS} SIGKILLs");
    assert!(resumed >= KILLS / 2, "the view resumed from a checkpoint in only {resumed} of {KILLS} restarts");
    let _ = std::fs::remove_file(&file);
}

/// Mistakes in a Kafka source's definition get PostgreSQL-style errors with a hint, and the
/// dead-letter table cannot be dropped apart from its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_mistakes_get_clear_errors() {
    let broker = Broker::start("bid");
    let server = TestServer::start("kafka-errors");
    let client = server.connect().await;
    let bs = broker.bootstrap();
    let cases = [
        (format!("CREATE SOURCE s (a INT) WITH (connector = 'kafka', 'properties.bootstrap.server' = '{bs}')"), "22023", "needs a topic"),
        (format!("CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 'nope', 'properties.bootstrap.server' = '{bs}')"), "22023", "topic \"nope\" does not exist"),
        (format!("CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}', colour = 'red')"), "22023", "unknown option \"colour\""),
        (format!("CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE AVRO"), "22023", "ENCODE AVRO needs a schema"),
        (format!("CREATE SOURCE s WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}')"), "22023", "needs a column list"),
        (format!("CREATE SOURCE s WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE AVRO (schema.registry = 'http://127.0.0.1:1')"), "22023", "could not reach the schema registry"),
        (format!("CREATE SOURCE s WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE AVRO (schema = '{{\"type\": \"long\"}}')"), "22023", "invalid Avro schema"),
        (format!("CREATE SINK k AS SELECT 1 AS a WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE AVRO"), "22023", "needs a schema registry"),
        (format!("CREATE SOURCE s (a INT) INCLUDE colour WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}')"), "22023", "INCLUDE colour is not available"),
        (format!("CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN"), "42601", "ENCODE"),
    ];
    assert_refused(&client, &cases).await;
    // Nothing was left behind by the failed statements.
    client.batch_execute(&format!(
        "CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE CSV"
    )).await.unwrap();
    let err = client.batch_execute("DROP TABLE s_dlq").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "2BP01");
    let err = client.batch_execute("CREATE MATERIALIZED VIEW d AS SELECT * FROM s_dlq").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000");
    client.batch_execute("DROP SOURCE s").await.unwrap();
    let tables = rows(&client, "SHOW TABLES").await;
    assert!(tables.is_empty(), "DROP SOURCE drops the dead-letter table: {tables:?}");
}

/// Produces `records` to `bid` on another thread and SIGKILLs `server` `after` it began (the
/// moment of a crash, chosen per round, not a wait for a result); returns its data dir.
fn kill_while_producing(server: TestServer, broker: &Broker, records: &[String], after: Duration) -> std::path::PathBuf {
    let producer = &broker.producer;
    std::thread::scope(|s| {
        s.spawn(move || produce(producer, "bid", records));
        std::thread::sleep(after);
        server.kill()
    })
}

/// The upsert topic `topic`, read with `read_committed` and replayed key by key: the last value
/// of each key not deleted by a tombstone.
fn replay_upserts(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for (key, value) in read_committed(bootstrap, topic) {
        let key = key.expect("upsert records have keys");
        match value {
            Some(v) => state.insert(key, v),
            None => state.remove(&key),
        };
    }
    state
}

/// Each statement fails with its SQLSTATE and a message containing the given text.
async fn assert_refused(client: &tokio_postgres::Client, cases: &[(String, &str, &str)]) {
    for (sql, code, message) in cases {
        let err = client.batch_execute(sql).await.expect_err(sql);
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(db.code().code(), *code, "{sql}: {}", db.message());
        assert!(db.message().contains(message), "{sql}: {}", db.message());
    }
}

/// Runs kcat (Debian's, librdkafka's CLI) with `args`; returns its stdout.
fn kcat(args: &[&str], stdin: Option<&std::path::Path>) -> String {
    let mut cmd = std::process::Command::new("kcat");
    cmd.args(args).stderr(std::process::Stdio::inherit());
    if let Some(path) = stdin {
        cmd.stdin(std::fs::File::open(path).expect("open kcat's input"));
    }
    let out = cmd.output().expect("run kcat (scripts/env.sh installs it)");
    assert!(out.status.success(), "kcat {args:?} failed");
    String::from_utf8(out.stdout).expect("kcat prints text")
}

/// Every record of `topic`, as `key<TAB>value` lines, read by kcat with `read_committed`
/// (`-e`: up to the end of every partition).
fn read_committed(bootstrap: &str, topic: &str) -> Vec<(Option<String>, Option<String>)> {
    let out = kcat(&["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-X", "isolation.level=read_committed", "-Z", "-f", "%k\t%s\n"], None);
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("key<TAB>value");
            let opt = |s: &str| (s != "NULL").then(|| s.to_string());
            (opt(k), opt(v))
        })
        .collect()
}

/// Must-show 4: an updating view written by an UPSERT sink, and an append-only one by a
/// PLAIN sink, both read back by kcat with `read_committed` after three SIGKILLs while bids
/// (produced by kcat) flowed in: replaying the upserts gives exactly the view's rows, and the
/// plain topic holds each of the view's rows once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_read_back_with_read_committed_equal_their_views_after_sigkills() {
    const KILLS: usize = 3;
    let broker = Broker::start("bid");
    broker.cluster.create_topic("per_auction", 2, 1).expect("create topic");
    broker.cluster.create_topic("big_bids", 2, 1).expect("create topic");
    let bs = broker.bootstrap();
    // Checkpoints only at FLUSH: sinks commit only then, so a kill never lands inside a
    // commit. (The mock broker shows records of aborted transactions, which a real one hides;
    // this keeps the test about OpenClaw's side: what it commits, and what it skips after a
    // restart.)
    let flags = ["--checkpoint-interval", "0s"];
    let dir = std::env::temp_dir().join(format!("openclaw-test-kafka-sinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = TestServer::start_with(dir, &flags);
    server
        .connect()
        .await
        .batch_execute(&format!(
            "{}
             CREATE MATERIALIZED VIEW top AS SELECT auction, count(*) AS num, max(price) AS top_price FROM bid GROUP BY auction;
             CREATE MATERIALIZED VIEW big AS SELECT auction, bidder, price, kafka_partition, kafka_offset FROM bid WHERE price > 5000000;
             CREATE SINK top_sink FROM top WITH (connector = 'kafka', topic = 'per_auction', 'properties.bootstrap.server' = '{bs}', primary_key = 'auction') FORMAT UPSERT ENCODE JSON;
             CREATE SINK big_sink AS SELECT * FROM big WITH (connector = 'kafka', topic = 'big_bids', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE JSON;",
            source_ddl(&bs)
        ))
        .await
        .unwrap();
    let all = records(KILLS * 2 * 5_000, 0);
    let input = server.data_dir.with_extension("kcat-input.jsonl");
    for (i, pair) in all.chunks(10_000).enumerate() {
        let (first, second) = pair.split_at(5_000);
        for half in [first, second] {
            let _ = std::fs::remove_file(&input);
            append(&input, half);
            kcat(&["-b", &bs, "-P", "-t", "bid", "-l", input.to_str().unwrap()], None);
            if half.as_ptr() == first.as_ptr() {
                server.connect().await.batch_execute("FLUSH").await.unwrap();
            }
        }
        // The second half is read, and its records buffered by the sinks, but not committed.
        std::thread::sleep(Duration::from_millis(20 + 40 * i as u64));
        let dir = server.kill();
        server = TestServer::start_with(dir, &flags);
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let _ = std::fs::remove_file(&input);

    // The upsert topic, replayed key by key, is the view.
    let state = replay_upserts(&bs, "per_auction");
    let mut replayed: Vec<(i64, i64, i64)> = state
        .values()
        .map(|v| {
            let v: serde_json::Value = serde_json::from_str(v).unwrap();
            (v["auction"].as_i64().unwrap(), v["num"].as_i64().unwrap(), v["top_price"].as_i64().unwrap())
        })
        .collect();
    replayed.sort();
    let mut view: Vec<(i64, i64, i64)> = rows(&client, "SELECT auction, num, top_price FROM top")
        .await
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap(), r[2].parse().unwrap()))
        .collect();
    view.sort();
    assert_eq!(view.iter().map(|r| r.1).sum::<i64>(), all.len() as i64, "the view counts every bid once");
    assert!(replayed == view, "upserts replayed give {} rows, the view has {}", replayed.len(), view.len());

    // The plain topic holds each row of the append-only view exactly once.
    let mut written: Vec<(i64, i64)> = read_committed(&bs, "big_bids")
        .iter()
        .map(|(_, v)| {
            let v: serde_json::Value = serde_json::from_str(v.as_deref().unwrap()).unwrap();
            (v["kafka_partition"].as_i64().unwrap(), v["kafka_offset"].as_i64().unwrap())
        })
        .collect();
    written.sort();
    let mut expected: Vec<(i64, i64)> =
        rows(&client, "SELECT kafka_partition, kafka_offset FROM big").await.iter().map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap())).collect();
    expected.sort();
    assert!(!expected.is_empty());
    let duplicates = written.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(duplicates, 0, "records written twice after {KILLS} SIGKILLs");
    assert!(written == expected, "the plain topic has {} records, the view {} rows", written.len(), expected.len());
}

/// Records produced by kcat with keys and headers: `INCLUDE key | headers | timestamp |
/// partition` give them as columns; a CSV source decodes by position and sends a bad line to
/// its dead-letter table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_records_with_keys_headers_and_csv() {
    let broker = Broker::start("bid");
    broker.cluster.create_topic("meta", 1, 1).expect("create topic");
    broker.cluster.create_topic("lines", 2, 1).expect("create topic");
    broker.cluster.create_topic("lines_dead", 1, 1).expect("create topic");
    let bs = broker.bootstrap();
    let server = TestServer::start("kafka-kcat");
    let input = server.data_dir.with_extension("kcat.txt");
    std::fs::write(&input, "k1:{\"a\": 1, \"b\": \"x\"}\nk2:{\"a\": 2, \"b\": \"y\"}\n").unwrap();
    kcat(&["-b", &bs, "-P", "-t", "meta", "-K:", "-H", "trace=abc", "-l", input.to_str().unwrap()], None);
    std::fs::write(&input, "1,apple\n2,pear\nthree,plum\n4,fig\n").unwrap();
    kcat(&["-b", &bs, "-P", "-t", "lines", "-l", input.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&input);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE m (a INT, b VARCHAR) INCLUDE key AS k INCLUDE headers AS h INCLUDE timestamp AS ts INCLUDE partition
                 WITH (connector = 'kafka', topic = 'meta', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW mv AS SELECT a, b, k, h, ts IS NOT NULL AS has_ts, _partition FROM m;
             CREATE SOURCE l (n INT, fruit VARCHAR)
                 WITH (connector = 'kafka', topic = 'lines', 'properties.bootstrap.server' = '{bs}', 'dlq.topic' = 'lines_dead')
                 FORMAT PLAIN ENCODE CSV (delimiter = ',');
             CREATE MATERIALIZED VIEW lv AS SELECT n, fruit FROM l;
             FLUSH;"
        ))
        .await
        .unwrap();
    let got = rows(&client, "SELECT a, b, k, h, has_ts, _partition FROM mv ORDER BY a").await;
    assert_eq!(
        got,
        vec![
            vec!["1", "x", "\\x6b31", r#"{"trace":"abc"}"#, "t", "0"],
            vec!["2", "y", "\\x6b32", r#"{"trace":"abc"}"#, "t", "0"],
        ]
    );
    let got = rows(&client, "SELECT n, fruit FROM lv ORDER BY n").await;
    assert_eq!(got, vec![vec!["1", "apple"], vec!["2", "pear"], vec!["4", "fig"]]);
    let dlq = rows(&client, "SELECT encode(payload, 'hex') FROM l_dlq").await;
    assert_eq!(dlq, vec![vec![hex("three,plum")]], "the bad line is a dead letter");
    // ... and was produced to the dead-letter topic, with where it came from in headers.
    let dead = kcat(&["-b", &bs, "-C", "-t", "lines_dead", "-o", "beginning", "-e", "-q", "-f", "%s|%h\n"], None);
    let dead: Vec<&str> = dead.lines().collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].starts_with("three,plum|") && dead[0].contains("openclaw.topic=lines") && dead[0].contains("openclaw.error="), "{dead:?}");
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `CREATE TABLE ... WITH (connector = 'kafka')`: the table holds every good record once,
/// queryable ad hoc and by views, across SIGKILLs while records are produced (the reader's
/// offsets are stored in the same write as the rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_table_holds_each_record_once_across_sigkills() {
    const KILLS: usize = 3;
    let broker = Broker::start("bid");
    let bs = broker.bootstrap();
    let dir = std::env::temp_dir().join(format!("openclaw-test-kafka-table-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = TestServer::start_with(dir, &[]);
    server
        .connect()
        .await
        .batch_execute(&format!(
            "CREATE TABLE tbid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR)
                 INCLUDE partition AS kafka_partition INCLUDE offset AS kafka_offset
                 WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{bs}') FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW bids_per_auction AS SELECT auction, count(*) AS num FROM tbid GROUP BY auction;"
        ))
        .await
        .unwrap();
    let all = records(KILLS * 2 * 5_000, 101);
    let file = server.data_dir.with_extension("table.jsonl");
    let _ = std::fs::remove_file(&file);
    for (i, pair) in all.chunks(10_000).enumerate() {
        let (first, second) = pair.split_at(5_000);
        broker.produce("bid", first);
        append(&file, first);
        // The table holds the first half; the kill lands while the second is read.
        server.connect().await.batch_execute("FLUSH").await.unwrap();
        let dir = kill_while_producing(server, &broker, second, Duration::from_millis(20 + 40 * i as u64));
        append(&file, second);
        server = TestServer::start_with(dir, &[]);
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let (expected, bad) = count_file(&file);
    let _ = std::fs::remove_file(&file);
    let good: i64 = expected.values().sum();
    let totals = rows(&client, "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM tbid").await;
    assert_eq!(totals[0], vec![good.to_string(), good.to_string()], "rows in the table after {KILLS} SIGKILLs (each record once)");
    assert!(view_counts(&client).await == expected, "the view over the table differs from the file's counts");
    let dlq = rows(&client, "SELECT count(*) FROM tbid_dlq").await;
    assert_eq!(dlq[0][0], bad.to_string());
    let err = client.batch_execute("DROP TABLE tbid_dlq").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "2BP01");
    client.batch_execute("DROP TABLE tbid CASCADE").await.unwrap();
    assert!(rows(&client, "SHOW TABLES").await.is_empty(), "the dead-letter table goes with its table");
}

/// Every record of `topic` as raw bytes (key, value; `None` when null), read by kcat with
/// `read_committed`, framed by their lengths (`%K`, `%S`: -1 for null).
fn read_committed_bytes(bootstrap: &str, topic: &str) -> Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let out = std::process::Command::new("kcat")
        .args(["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-X", "isolation.level=read_committed", "-f", "%K %S\n%k%s"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run kcat (scripts/env.sh installs it)");
    assert!(out.status.success(), "kcat failed");
    let mut rest = &out.stdout[..];
    let mut records = vec![];
    while !rest.is_empty() {
        let line_end = rest.iter().position(|&b| b == b'\n').expect("a length line");
        let header = std::str::from_utf8(&rest[..line_end]).expect("lengths");
        let (k, v) = header.split_once(' ').expect("key and value lengths");
        rest = &rest[line_end + 1..];
        let mut take = |len: i64| {
            (len >= 0).then(|| {
                let (bytes, after) = rest.split_at(len as usize);
                rest = after;
                bytes.to_vec()
            })
        };
        let key = take(k.parse().unwrap());
        let value = take(v.parse().unwrap());
        records.push((key, value));
    }
    records
}

/// Reads Avro's binary encoding by hand, from the specification (not through arrow-avro, which
/// wrote it): a zigzag varint long, and a record of optional longs whose union branch order
/// the registered schema gives.
struct AvroLongs<'a>(&'a [u8]);

impl AvroLongs<'_> {
    fn long(&mut self) -> i64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let (&b, rest) = self.0.split_first().expect("a varint");
            self.0 = rest;
            value |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        (value >> 1) as i64 ^ -((value & 1) as i64)
    }

    /// A record of `fields` optional longs; `null_first`: the union is `["null", "long"]`.
    fn record(bytes: &[u8], schema_id: u32, fields: usize, null_first: bool) -> Vec<Option<i64>> {
        assert_eq!(bytes[0], 0, "Confluent's magic byte");
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), schema_id, "the registered schema's id");
        let mut r = AvroLongs(&bytes[5..]);
        let out = (0..fields).map(|_| if (r.long() == 0) == null_first { None } else { Some(r.long()) }).collect();
        assert!(r.0.is_empty(), "bytes after the record");
        out
    }
}

/// The id of `subject`'s latest schema and whether its unions put null first.
async fn registered(registry: &str, subject: &str) -> (u32, bool) {
    let client = openclaw_connectors::kafka::registry::RegistryClient::new(registry).unwrap();
    let (id, schema) = client.latest(subject).await.unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let first_type = &schema["fields"][0]["type"];
    assert!(first_type.is_array(), "view columns are optional in the sink's schema: {schema}");
    (id, first_type[0] == "null")
}

/// Avro end to end: Nexmark bids in Confluent's wire format (1% malformed) from a schema
/// registry, read by a source declared without columns (they come from the registry); a view
/// counts them by auction exactly like the file, the dead-letter table holds the malformed
/// ones, and an UPSERT sink writes the counts as Avro, registered, that kcat reads back and
/// this test decodes by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_bids_from_a_schema_registry_count_exactly_and_an_avro_upsert_sink_reads_back() {
    use openclaw_connectors::nexmark::avro::{malformed, AvroBids, Framing, BID_SCHEMA};
    const BIDS: usize = 60_000;
    const MALFORMED_EVERY: usize = 101;
    let broker = Broker::start("bid");
    broker.cluster.create_topic("counts", 1, 1).expect("create topic");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(openclaw_connectors::kafka::registry::serve_mock_registry(listener));
    let client_registry = openclaw_connectors::kafka::registry::RegistryClient::new(&registry).unwrap();
    let id = client_registry.register("bid-value", BID_SCHEMA).await.unwrap();

    let server = TestServer::start("kafka-avro");
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE bid WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{b}')
                 FORMAT PLAIN ENCODE AVRO (schema.registry = '{registry}');
             CREATE MATERIALIZED VIEW bids_per_auction AS SELECT auction, count(*) AS num FROM bid GROUP BY auction;
             CREATE MATERIALIZED VIEW newest AS SELECT max(date_time) AS t, min(channel) AS c FROM bid;
             CREATE SINK counts_out FROM bids_per_auction
                 WITH (connector = 'kafka', topic = 'counts', 'properties.bootstrap.server' = '{b}', primary_key = 'auction')
                 FORMAT UPSERT ENCODE AVRO (schema.registry = '{registry}');",
            b = broker.bootstrap()
        ))
        .await
        .unwrap();

    let mut bids = AvroBids::new(&[("nexmark.base.time".to_string(), "1700000000000".to_string())].into(), Framing::Confluent(id)).unwrap();
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    let mut bad = 0;
    let mut produced = 0;
    for _ in 0..BIDS / STEP.min(20_000) {
        let chunk = bids.next_chunk(20_000).unwrap();
        let mut step = Vec::with_capacity(chunk.len());
        for (record, json) in chunk {
            produced += 1;
            if produced % MALFORMED_EVERY == 0 {
                step.push(malformed((produced / MALFORMED_EVERY) as u64, &record));
                bad += 1;
            } else {
                let bid: serde_json::Value = serde_json::from_str(&json).unwrap();
                *expected.entry(bid["auction"].as_i64().unwrap()).or_insert(0) += 1;
                step.push(record);
            }
        }
        produce(&broker.producer, "bid", &step);
        client.batch_execute("FLUSH").await.unwrap();
    }
    // The columns came from the registry's schema, with their Avro types.
    let newest = rows(&client, "SELECT t, c FROM newest").await;
    assert!(newest[0][0].starts_with("2023-11-14"), "date_time is a timestamp from timestamp-millis: {newest:?}");
    let got = view_counts(&client).await;
    assert_eq!(got.values().sum::<i64>(), (produced - bad) as i64);
    assert!(got == expected, "the view's counts differ from the produced bids'");
    let dlq = rows(&client, "SELECT error FROM bid_dlq").await;
    assert_eq!(dlq.len(), bad, "dead letters");
    for kind in ["truncated", "schema id 999999", "wire format"] {
        assert!(dlq.iter().any(|r| r[0].contains(kind)), "a dead letter says {kind:?}: {dlq:?}");
    }

    // The sink's records, replayed key by key, equal the view.
    let (key_id, key_null_first) = registered(&registry, "counts-key").await;
    let (value_id, value_null_first) = registered(&registry, "counts-value").await;
    let mut replayed: BTreeMap<i64, i64> = BTreeMap::new();
    for (key, value) in read_committed_bytes(&broker.bootstrap(), "counts") {
        let auction = AvroLongs::record(&key.expect("upsert records have keys"), key_id, 1, key_null_first)[0].expect("an auction");
        match value {
            Some(v) => {
                let row = AvroLongs::record(&v, value_id, 2, value_null_first);
                assert_eq!(row[0], Some(auction), "the value's auction is the key's");
                replayed.insert(auction, row[1].expect("a count"));
            }
            None => {
                replayed.remove(&auction);
            }
        }
    }
    assert!(replayed == got, "the Avro sink's upserts replay to {} auctions, the view has {}", replayed.len(), got.len());
}

/// A FLUSH waits for Kafka sinks to commit; with the broker down it would wait until the
/// broker is back. `statement_timeout` cuts the wait short with PostgreSQL's 57014 and a hint,
/// other sessions go on, and once the broker is up the sink commits what it held: the topic,
/// replayed, equals the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_gives_up_at_statement_timeout_while_the_broker_is_down_and_the_sink_catches_up() {
    let broker = Broker::start("bid");
    broker.cluster.create_topic("kv", 1, 1).expect("create topic");
    let bs = broker.bootstrap();
    let dir = std::env::temp_dir().join(format!("openclaw-test-kafka-broker-down-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start_with(dir, &["--checkpoint-interval", "0s"]);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE kv (k INT PRIMARY KEY, v INT);
             CREATE SINK kv_sink AS SELECT k, v FROM kv WITH (connector = 'kafka', topic = 'kv', 'properties.bootstrap.server' = '{bs}', primary_key = 'k') FORMAT UPSERT ENCODE JSON;
             INSERT INTO kv VALUES (1, 10), (2, 20);
             FLUSH;"
        ))
        .await
        .unwrap();
    broker.cluster.broker_down(1).expect("broker down");
    client.batch_execute("INSERT INTO kv VALUES (3, 30); UPDATE kv SET v = 11 WHERE k = 1; DELETE FROM kv WHERE k = 2;").await.unwrap();
    client.batch_execute("SET statement_timeout = '200ms'").await.unwrap();
    // More checkpoints than a sink keeps waiting (16): none of them may wait on Kafka, or
    // FLUSH, DDL and later checkpoints would hang until the broker is back.
    for i in 0..20 {
        client.batch_execute(&format!("INSERT INTO kv VALUES ({}, {i})", 100 + i)).await.unwrap();
        let flush = tokio::time::timeout(Duration::from_secs(30), client.batch_execute("FLUSH")).await.expect("FLUSH returns at its timeout");
        let err = flush.expect_err("the sink cannot commit while the broker is down");
        let db = err.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), "57014", "{db:?}");
        assert_eq!(db.message(), "canceling statement due to statement timeout");
        assert!(db.hint().is_some_and(|h| h.contains("Kafka sink")), "{db:?}");
    }
    client.batch_execute("DELETE FROM kv WHERE k >= 100").await.unwrap();
    // The server goes on serving, this session and others, DDL included.
    assert_eq!(rows(&client, "SELECT k, v FROM kv ORDER BY k").await, [["1", "11"], ["3", "30"]]);
    let other = server.connect().await;
    assert_eq!(rows(&other, "SELECT count(*) FROM kv").await, [["2"]]);
    let ddl = tokio::time::timeout(Duration::from_secs(30), other.batch_execute("CREATE MATERIALIZED VIEW kv_sum AS SELECT sum(v) AS s FROM kv"));
    ddl.await.expect("DDL does not wait on Kafka").unwrap();
    assert_eq!(rows(&other, "SELECT s FROM kv_sum").await, [["41"]]);

    broker.cluster.broker_up(1).expect("broker up");
    client.batch_execute("SET statement_timeout = 0; FLUSH").await.unwrap();
    let state = replay_upserts(&bs, "kv");
    let replayed: Vec<String> = state.into_values().collect();
    assert_eq!(replayed, [r#"{"k":1,"v":11}"#, r#"{"k":3,"v":30}"#]);
}

/// FORMAT UPSERT reads what an UPSERT sink writes: a table keyed by the record key, where a
/// record replaces its key's row and a tombstone deletes it. A view's UPSERT sink, read back
/// into such a table, equals the view, through updates and deletes; a view over the mirror
/// sees the deletes; a record without a key is a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_table_mirrors_an_upsert_sink_with_its_deletes() {
    let broker = Broker::start("bid");
    broker.cluster.create_topic("kv_out", 2, 1).expect("create topic");
    let bs = broker.bootstrap();
    let server = TestServer::start("kafka-upsert-table");
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE kv (k INT PRIMARY KEY, v INT);
             CREATE SINK kv_sink AS SELECT k, v FROM kv WITH (connector = 'kafka', topic = 'kv_out', 'properties.bootstrap.server' = '{bs}', primary_key = 'k') FORMAT UPSERT ENCODE JSON;
             CREATE TABLE mirror (k INT, v INT, PRIMARY KEY (kafka_key)) INCLUDE key AS kafka_key WITH (connector = 'kafka', topic = 'kv_out', 'properties.bootstrap.server' = '{bs}') FORMAT UPSERT ENCODE JSON;
             CREATE MATERIALIZED VIEW mirror_sum AS SELECT count(*) AS n, sum(v) AS s FROM mirror;"
        ))
        .await
        .unwrap();
    for round in 0..5 {
        let statements = format!(
            "INSERT INTO kv SELECT i, i * {round} FROM generate_series({start}, {end}) AS t(i);
             UPDATE kv SET v = v + 1 WHERE k % 3 = {m};
             DELETE FROM kv WHERE k % 7 = {m};
             FLUSH;",
            start = round * 40,
            end = round * 40 + 99,
            m = round % 3,
        );
        client.batch_execute(&statements).await.unwrap();
    }
    // The first FLUSH commits the sink's last records; the second reads them into the mirror.
    client.batch_execute("FLUSH; FLUSH").await.unwrap();
    let view = rows(&client, "SELECT k, v FROM kv ORDER BY k").await;
    assert!(view.len() > 100, "{} rows", view.len());
    assert_eq!(rows(&client, "SELECT k, v FROM mirror ORDER BY k").await, view, "the mirror is the view");
    assert_eq!(
        rows(&client, "SELECT n, s FROM mirror_sum").await,
        rows(&client, "SELECT count(*), sum(v) FROM kv").await,
        "a view over the mirror saw its deletes"
    );
    // A keyless record cannot name a row.
    broker.produce("kv_out", &[r#"{"k": 1, "v": 1}"#.to_string()]);
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(rows(&client, "SELECT error FROM mirror_dlq").await, [["an upsert record needs a key"]]);
    assert_eq!(rows(&client, "SELECT k, v FROM mirror ORDER BY k").await, view);

    let cases = [
        (format!("CREATE SOURCE s (k INT) INCLUDE key AS kk WITH (connector = 'kafka', topic = 'kv_out', 'properties.bootstrap.server' = '{bs}') FORMAT UPSERT ENCODE JSON"), "0A000", "FORMAT UPSERT needs a table"),
        (format!("CREATE TABLE t (k INT PRIMARY KEY) WITH (connector = 'kafka', topic = 'kv_out', 'properties.bootstrap.server' = '{bs}') FORMAT UPSERT ENCODE JSON"), "22023", "FORMAT UPSERT needs the record key as a column"),
        (format!("CREATE TABLE t (k INT PRIMARY KEY) INCLUDE key AS kk WITH (connector = 'kafka', topic = 'kv_out', 'properties.bootstrap.server' = '{bs}') FORMAT UPSERT ENCODE JSON"), "42P16", "must be its key column \"kk\""),
    ];
    assert_refused(&client, &cases).await;
    let tables = rows(&client, "SHOW TABLES").await;
    assert_eq!(tables.len(), 3, "nothing left behind by the failed statements: {tables:?}");
}

/// A bid as Protobuf (`test.Bid`), encoded by prost, and the descriptor set that defines it.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoBid {
    #[prost(int64, tag = "1")]
    auction: i64,
    #[prost(int64, tag = "2")]
    price: i64,
    #[prost(string, tag = "3")]
    channel: String,
}

fn bid_descriptor_set() -> Vec<u8> {
    use prost_types::{field_descriptor_proto::Type, DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};
    let field = |name: &str, number: i32, kind: Type| FieldDescriptorProto { name: Some(name.into()), number: Some(number), r#type: Some(kind as i32), ..Default::default() };
    let message = DescriptorProto { name: Some("Bid".into()), field: vec![field("auction", 1, Type::Int64), field("price", 2, Type::Int64), field("channel", 3, Type::String)], ..Default::default() };
    let file = FileDescriptorProto { name: Some("test.proto".into()), package: Some("test".into()), message_type: vec![message], syntax: Some("proto3".into()), ..Default::default() };
    prost::Message::encode_to_vec(&FileDescriptorSet { file: vec![file] })
}

/// `ENCODE PROTOBUF (message, schema.location)`: Protobuf bids count exactly, a record that is
/// not a Bid is a dead letter, and the descriptor set is kept with the source, so a restart
/// without the file still decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bids_count_exactly_and_survive_a_restart_without_their_descriptor_file() {
    use prost::Message;
    let broker = Broker::start("pbid");
    let dir = std::env::temp_dir().join(format!("openclaw-test-kafka-protobuf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start_with(dir.clone(), &[]);
    let desc = dir.with_extension("bid.desc");
    std::fs::write(&desc, bid_descriptor_set()).unwrap();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE pbid (auction BIGINT, price BIGINT, channel VARCHAR)
                 WITH (connector = 'kafka', topic = 'pbid', 'properties.bootstrap.server' = '{}', 'scan.startup.mode' = 'earliest')
                 FORMAT PLAIN ENCODE PROTOBUF (message = 'test.Bid', schema.location = 'file://{}');
             CREATE MATERIALIZED VIEW per_channel AS SELECT channel, count(*) AS n, sum(price) AS total FROM pbid GROUP BY channel;",
            broker.bootstrap(),
            desc.display()
        ))
        .await
        .unwrap();
    let bids = |from: i64, to: i64| -> Vec<Vec<u8>> { (from..to).map(|i| ProtoBid { auction: i % 100, price: i, channel: format!("c{}", i % 3) }.encode_to_vec()).collect() };
    let mut first = bids(0, 3000);
    first.push(vec![0x0a, 0xff, 0xff]);
    produce(&broker.producer, "pbid", &first);
    client.batch_execute("FLUSH").await.unwrap();
    let totals = |n: i64| vec![vec!["3".to_string(), n.to_string(), ((0..n).sum::<i64>()).to_string()]];
    assert_eq!(rows(&client, "SELECT count(*), sum(n), sum(total) FROM per_channel").await, totals(3000));
    assert_eq!(rows(&client, "SELECT count(*) FROM pbid_dlq").await, vec![vec!["1".to_string()]]);
    // The file goes; the source keeps its descriptor set.
    std::fs::remove_file(&desc).unwrap();
    let server = TestServer::start_with(server.kill(), &[]);
    produce(&broker.producer, "pbid", &bids(3000, 5000));
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(rows(&client, "SELECT count(*), sum(n), sum(total) FROM per_channel").await, totals(5000));
    let refused = client
        .batch_execute("CREATE SOURCE nodesc (a BIGINT) WITH (connector = 'kafka', topic = 'pbid', 'properties.bootstrap.server' = 'x:1') FORMAT PLAIN ENCODE PROTOBUF (message = 'test.Bid')")
        .await
        .unwrap_err();
    assert!(refused.as_db_error().unwrap().message().contains("needs a descriptor set"), "{refused:?}");
}

/// A bid as the registry's Protobuf schema below has it (`channel` is the enum's number).
#[derive(Clone, PartialEq, prost::Message)]
struct RegistryBid {
    #[prost(int64, tag = "1")]
    auction: i64,
    #[prost(int64, tag = "2")]
    price: i64,
    #[prost(int32, tag = "3")]
    channel: i32,
}

/// `record` in Confluent's wire format: a zero byte, the schema id, the message's indexes in
/// its file (zigzag varints: a count, then each), the message.
fn confluent_protobuf(schema_id: u32, indexes: &[i64], record: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    if indexes == [0] {
        out.push(0);
    } else {
        prost::encoding::encode_varint(zigzag(indexes.len() as i64), &mut out);
        indexes.iter().for_each(|i| prost::encoding::encode_varint(zigzag(*i), &mut out));
    }
    out.extend_from_slice(record);
    out
}

/// `ENCODE PROTOBUF (message, schema.registry)`: the topic's `.proto` schema and the schema it
/// imports (a reference to another subject) are fetched and compiled at CREATE; records in
/// Confluent's wire format count exactly, the enum as its name; a record without the header or
/// of another message of the file is a dead letter; a restart decodes with the registry gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bids_from_a_schema_registry_count_exactly_and_survive_the_registry_going() {
    use openclaw_connectors::kafka::registry::{serve_mock_registry, RegistryClient, SchemaReference};
    use prost::Message;
    let broker = Broker::start("rbid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(serve_mock_registry(listener));
    let client_registry = RegistryClient::new(&registry).unwrap();
    let channel = "syntax = \"proto3\";\npackage shop;\nenum Channel { APPLE = 0; GOOGLE = 1; BAIDU = 2; }\n";
    client_registry.register_typed("shop-channel", channel, "PROTOBUF", &[]).await.unwrap();
    let bid = "syntax = \"proto3\";\npackage shop;\nimport \"shop/channel.proto\";\nmessage Ask { int64 id = 1; }\nmessage Bid { int64 auction = 1; int64 price = 2; Channel channel = 3; }\n";
    let reference = SchemaReference { name: "shop/channel.proto".into(), subject: "shop-channel".into(), version: 1 };
    let id = client_registry.register_typed("rbid-value", bid, "PROTOBUF", &[reference]).await.unwrap();

    let dir = std::env::temp_dir().join(format!("openclaw-test-kafka-protobuf-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start_with(dir.clone(), &[]);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE rbid (auction BIGINT, price BIGINT, channel VARCHAR)
                 WITH (connector = 'kafka', topic = 'rbid', 'properties.bootstrap.server' = '{}', 'scan.startup.mode' = 'earliest')
                 FORMAT PLAIN ENCODE PROTOBUF (message = 'shop.Bid', schema.registry = '{registry}');
             CREATE MATERIALIZED VIEW per_channel AS SELECT channel, count(*) AS n, sum(price) AS total FROM rbid GROUP BY channel;",
            broker.bootstrap()
        ))
        .await
        .unwrap();
    // Bid is the file's second message: indexes [1].
    let bids = |from: i64, to: i64| -> Vec<Vec<u8>> {
        (from..to).map(|i| confluent_protobuf(id, &[1], &RegistryBid { auction: i % 100, price: i, channel: (i % 3) as i32 }.encode_to_vec())).collect()
    };
    let mut first = bids(0, 3000);
    first.push(RegistryBid { auction: 1, price: 1, channel: 0 }.encode_to_vec());
    first.push(confluent_protobuf(id, &[0], &[0x08, 1]));
    produce(&broker.producer, "rbid", &first);
    client.batch_execute("FLUSH").await.unwrap();
    let per_channel = |n: i64| -> Vec<Vec<String>> {
        ["APPLE", "BAIDU", "GOOGLE"]
            .iter()
            .map(|name| {
                let number = ["APPLE", "GOOGLE", "BAIDU"].iter().position(|c| c == name).unwrap() as i64;
                let prices: Vec<i64> = (0..n).filter(|i| i % 3 == number).collect();
                vec![name.to_string(), prices.len().to_string(), prices.iter().sum::<i64>().to_string()]
            })
            .collect()
    };
    assert_eq!(rows(&client, "SELECT channel, n, total FROM per_channel ORDER BY channel").await, per_channel(3000));
    let errors = rows(&client, "SELECT error FROM rbid_dlq ORDER BY error").await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0][0].contains("not in Confluent's wire format"), "{errors:?}");
    assert!(errors[1][0].contains("indexes [0]"), "{errors:?}");
    // The registry goes; the source keeps the compiled schema.
    serving.abort();
    let server = TestServer::start_with(server.kill(), &[]);
    produce(&broker.producer, "rbid", &bids(3000, 5000));
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(rows(&client, "SELECT channel, n, total FROM per_channel ORDER BY channel").await, per_channel(5000));
    let options = rows(&client, "SHOW SOURCES").await;
    assert!(!format!("{options:?}").contains("encode.descriptor"), "the compiled schema is not shown: {options:?}");
}
