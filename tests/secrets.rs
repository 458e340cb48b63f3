//! Secrets: a Kafka source whose SASL password (and topic) are secrets reads its topic, across
//! a SIGKILL and a restart; the password is then searched for in every file under the data
//! directory, in the server's log (at debug level), in what `SHOW`, `DESCRIBE`, `EXPLAIN` and
//! psql's `\d+` print, and in the errors of refused statements: it is nowhere. (The topic is
//! a secret only to show that the connector is handed opened values; the reader logs it.)
//!
//! The broker is librdkafka's mock cluster, which speaks no SASL, so the source connects with
//! `security.protocol = plaintext` while librdkafka is still handed the password; the topic,
//! also a secret, shows that the connector receives the opened values (the source reads it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TestServer;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The value that must appear nowhere.
const PASSWORD: &str = "Kafka-Sasl-Pa55word-5e9c41";
const TOPIC: &str = "bids-topic-71c2e8";
/// A topic name that holds the password, which the broker does not have: the connector's
/// error names the topic, and the server must blot the value out.
const MISSING_TOPIC: &str = "Kafka-Sasl-Pa55word-5e9c41-gone";

const KEY: &str = "5f0e1d2c3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const OTHER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const RECORDS: usize = 500;

fn produce(bootstrap: &str, n: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for i in 0..n {
        let payload = format!("{{\"auction\": {}, \"price\": {}}}", i % 7, i);
        let mut record = BaseRecord::<(), str>::to(TOPIC).payload(payload.as_str());
        while let Err((_, back)) = producer.send(record) {
            // librdkafka's queue is full: it drains as the broker acknowledges.
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush the producer");
}

/// Every value of every row `sql` returns, as text.
async fn texts(client: &tokio_postgres::Client, sql: &str) -> String {
    let mut out = String::new();
    for message in client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            for i in 0..row.len() {
                out.push_str(row.get(i).unwrap_or("NULL"));
                out.push('\t');
            }
            out.push('\n');
        }
    }
    out
}

/// The refusal `sql` gets: its SQLSTATE, and its message, detail and hint as one text.
async fn refusal(client: &tokio_postgres::Client, sql: &str) -> (String, String) {
    let error = client.batch_execute(sql).await.expect_err(sql);
    let db = error.as_db_error().unwrap_or_else(|| panic!("{sql}: {error}"));
    (db.code().code().to_string(), format!("{} | {} | {}", db.message(), db.detail().unwrap_or(""), db.hint().unwrap_or("")))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Files under `data_dir` whose bytes hold `needle`, and column families with a key or value
/// that holds it (RocksDB compresses its files: a raw search alone could miss it).
fn holding(data_dir: &Path, needle: &str) -> Vec<String> {
    let mut files = vec![];
    files_under(data_dir, &mut files);
    assert!(files.len() > 10, "the data directory holds {} files", files.len());
    let mut found: Vec<String> = files.iter().filter(|f| holds(&std::fs::read(f).unwrap(), needle)).map(|f| f.display().to_string()).collect();
    let store = openclaw_storage::Store::open(data_dir).expect("open the store");
    for cf in store.opened_with().to_vec() {
        store
            .scan(&cf, None, |k, v| {
                if holds(k, needle) || holds(v, needle) {
                    found.push(format!("column family {cf}"));
                }
                true
            })
            .unwrap();
    }
    found
}

/// `openclaw serve` over `data_dir` that must stop at start; its stderr.
fn refused_start(data_dir: &Path, key: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_openclaw"));
    command.args(["serve", "--data-dir"]).arg(data_dir).args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]);
    match key {
        Some(key) => command.env("OPENCLAW_SECRET_KEY", key),
        None => command.env_remove("OPENCLAW_SECRET_KEY"),
    };
    let out = command.env("OPENCLAW_LOG", "debug").output().expect("run openclaw");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a server started with key {key:?} over secrets sealed under another: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_appear_nowhere_but_in_the_connector() {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, RECORDS);

    let scratch = std::env::temp_dir().join(format!("openclaw-test-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let data_dir = scratch.join("data");
    let logs: Vec<PathBuf> = (0..2).map(|i| scratch.join(format!("server-{i}.log"))).collect();
    let env = [("OPENCLAW_SECRET_KEY", KEY), ("OPENCLAW_LOG", "debug")];
    let server = TestServer::start_full(data_dir.clone(), &[], Some(logs[0].clone()), &env);
    let client = server.connect().await;
    let mut shown = String::new();

    client
        .batch_execute(&format!(
            "CREATE SECRET kafka_password WITH (backend = 'meta') AS '{PASSWORD}';
             CREATE SECRET kafka_topic WITH (backend = 'meta') AS '{TOPIC}';
             CREATE SECRET missing_topic AS '{MISSING_TOPIC}';
             CREATE SOURCE bids (auction BIGINT, price BIGINT)
                 WITH (connector = 'kafka', topic = SECRET kafka_topic, 'properties.bootstrap.server' = '{bootstrap}',
                       'scan.startup.mode' = 'earliest', 'properties.security.protocol' = 'plaintext',
                       'properties.sasl.username' = 'reader', 'properties.sasl.password' = SECRET kafka_password)
                 FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bids GROUP BY auction;
             FLUSH;"
        ))
        .await
        .expect("a source over secrets");
    let total = texts(&client, "SELECT sum(n) FROM per_auction").await;
    assert_eq!(total.trim(), format!("{RECORDS}"), "the source read its topic, named by a secret");

    // What is shown names the secrets, never their values.
    // A source's options are its description (`obj_description`, psql's `\d+`).
    let source = texts(&client, "SELECT description FROM pg_catalog.pg_description").await;
    assert!(source.contains("'properties.sasl.password' = SECRET kafka_password") && source.contains("'topic' = SECRET kafka_topic"), "{source}");
    assert_eq!(texts(&client, "SHOW SECRETS").await, "kafka_password\t\nkafka_topic\t\nmissing_topic\t\n");
    shown.push_str(&source);
    for sql in [
        "SHOW SOURCES",
        "SHOW SECRETS",
        "DESCRIBE bids",
        "SHOW MATERIALIZED VIEWS",
        "EXPLAIN CREATE MATERIALIZED VIEW v AS SELECT * FROM bids",
        "SELECT relname FROM pg_catalog.pg_class",
        "SHOW ALL",
    ] {
        shown.push_str(&texts(&client, sql).await);
    }
    let psql = Command::new("psql")
        .args([&server.conn_str(), "-X", "-c", "\\d+ bids", "-c", "\\dv", "-c", "\\df"])
        .output()
        .expect("run psql");
    assert!(psql.status.success(), "{}", String::from_utf8_lossy(&psql.stderr));
    shown.push_str(&String::from_utf8_lossy(&psql.stdout));

    // Refusals: none repeats a value, even those whose statement holds one.
    let refusals = [
        (format!("CREATE SECRET kafka_password AS '{PASSWORD}'"), "42710"),
        (format!("CREATE SECRET other WITH (backend = 'meta') '{PASSWORD}'"), "42601"),
        (format!("CREATE SECRET other WITH (backend = 'vault') AS '{PASSWORD}'"), "42601"),
        (format!("CREATE SECRET other AS '{PASSWORD}' '{PASSWORD}'"), "42601"),
        ("DROP SECRET kafka_password".to_string(), "2BP01"),
        ("DROP SECRET nope".to_string(), "42704"),
        (
            format!("CREATE SOURCE gone (auction BIGINT) WITH (connector = 'kafka', topic = SECRET missing_topic, 'properties.bootstrap.server' = '{bootstrap}') FORMAT PLAIN ENCODE JSON"),
            "22023",
        ),
        (
            format!("CREATE SOURCE nosecret (auction BIGINT) WITH (connector = 'kafka', topic = SECRET nope, 'properties.bootstrap.server' = '{bootstrap}') FORMAT PLAIN ENCODE JSON"),
            "42704",
        ),
    ];
    for (sql, code) in &refusals {
        let (got, text) = refusal(&client, sql).await;
        assert_eq!(&got, code, "{sql}: {text}");
        shown.push_str(&text);
        shown.push('\n');
    }
    let (_, gone) = refusal(&client, &refusals[6].0).await;
    assert!(gone.contains("SECRET missing_topic"), "the connector's error names the topic, blotted out: {gone}");
    let (_, in_use) = refusal(&client, "DROP SECRET kafka_password").await;
    assert!(in_use.contains("\"bids\" uses secret \"kafka_password\""), "{in_use}");

    // A crash and a restart: the secrets open under the same key and the source reads on.
    drop(client);
    let data_dir = server.kill();
    assert_eq!(holding(&data_dir, PASSWORD), Vec::<String>::new(), "the password is stored");
    produce(&bootstrap, RECORDS);
    let server = TestServer::start_full(data_dir.clone(), &[], Some(logs[1].clone()), &env);
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let total = texts(&client, "SELECT sum(n) FROM per_auction").await;
    assert_eq!(total.trim(), format!("{}", 2 * RECORDS), "after the restart");
    client.batch_execute("DROP SOURCE bids CASCADE; DROP SECRET kafka_password; CREATE SECRET again AS 'x'").await.unwrap();
    assert_eq!(texts(&client, "SHOW SECRETS").await, "again\t\nkafka_topic\t\nmissing_topic\t\n");
    drop(client);
    let data_dir = server.kill();

    // Another key, or none, does not open the catalog: the server stops and says why.
    let wrong = refused_start(&data_dir, Some(OTHER_KEY));
    assert!(wrong.contains("cannot open secret"), "{wrong}");
    let none = refused_start(&data_dir, None);
    assert!(none.contains("secrets need a key"), "{none}");
    shown.push_str(&wrong);
    shown.push_str(&none);

    // The password: in no file under the data directory, no log line, nothing shown.
    assert_eq!(holding(&data_dir, PASSWORD), Vec::<String>::new(), "the password is stored");
    for log in &logs {
        assert!(!holds(&std::fs::read(log).unwrap(), PASSWORD), "{} holds the password", log.display());
    }
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains("created secret") && log.contains("DEBUG"), "the log is at debug level and saw the secrets made");
    assert!(!shown.contains(PASSWORD), "the password was shown:\n{shown}");
    let _ = std::fs::remove_dir_all(&scratch);
}
