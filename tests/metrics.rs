//! `GET /metrics` against a real server after a known workload: Prometheus' own `promtool
//! check metrics` accepts it (Debian's prometheus package, installed by
//! `scripts/install-promtool.sh`), and its numbers are those of `SHOW SOURCES` and `SHOW
//! MATERIALIZED VIEWS`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{one, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_match_show() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-metrics-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Five records, two of which do not decode (dead letters).
    std::fs::write(dir.join("events.csv"), "id,tag\n1,a\nnot-a-number,b\n2,c\n3,d\nfour,e\n").unwrap();
    let server = TestServer::start("metrics");
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE events (id bigint, tag text) WITH (connector = 'file', path = '{}/events.csv', format = 'csv', csv.header = 'true');
             CREATE MATERIALIZED VIEW tags AS SELECT tag, count(*) AS n FROM events GROUP BY tag;
             CREATE TABLE readings (id int PRIMARY KEY, v int);
             CREATE MATERIALIZED VIEW ratio AS SELECT id, 1000 / (v % 7) AS r FROM readings;
             INSERT INTO readings VALUES (1, 3), (2, 7), (3, 14), (4, 5);
             FLUSH;",
            dir.display()
        ))
        .await
        .unwrap();

    let (status, body) = common::http_request(server.http_port, "GET", "/metrics", &[], b"").await.expect("a response");
    assert_eq!(status, 200, "{body}");
    let body = body.as_str();
    promtool_check(body);

    // The source's counters are SHOW SOURCES' columns.
    let show = one(&client, "SHOW SOURCES").await;
    let row = show.iter().find(|r| r[0] == "events").expect("the source in SHOW SOURCES");
    let labels = "{connector=\"file\",source=\"events\"}";
    assert_eq!(sample(body, &format!("openclaw_source_rows_read_total{labels}")), row[3], "{body}");
    assert_eq!(sample(body, &format!("openclaw_source_bytes_read_total{labels}")), row[4]);
    assert_eq!(sample(body, &format!("openclaw_source_dead_letters_total{labels}")), row[5]);
    assert_eq!(row[5], "2");
    assert_eq!(sample(body, &format!("openclaw_source_readers{labels}")), "1");

    // Two rows of `ratio` divide by zero: SHOW MATERIALIZED VIEWS says so, /metrics counts them.
    let views = one(&client, "SHOW MATERIALIZED VIEWS").await;
    let ratio = views.iter().find(|r| r[0] == "ratio").expect("ratio");
    assert!(ratio[1].contains("unreadable: 2 failed rows"), "{ratio:?}");
    assert_eq!(sample(body, "openclaw_view_failed_rows{kind=\"materialized_view\",view=\"ratio\"}"), "2");
    assert_eq!(sample(body, "openclaw_view_up{kind=\"materialized_view\",view=\"ratio\"}"), "1");
    let tags = views.iter().find(|r| r[0] == "tags").expect("tags");
    assert_eq!(sample(body, "openclaw_view_late_rows_dropped_total{kind=\"materialized_view\",view=\"tags\"}"), tags[2]);
    assert_eq!(sample(body, "openclaw_subscriptions_open"), "0");

    // The FLUSH took a checkpoint: /metrics reports SHOW CHECKPOINTS' newest; the views' state
    // and RocksDB's own statistics are there.
    let checkpoints = one(&client, "SHOW CHECKPOINTS").await;
    let newest = checkpoints.iter().map(|r| r[0].parse::<u64>().unwrap()).max().expect("a checkpoint");
    assert_eq!(sample(body, "openclaw_checkpoint_last_id").parse::<u64>().unwrap(), newest, "{checkpoints:?}");
    assert!(sample(body, "openclaw_checkpoint_last_bytes").parse::<u64>().unwrap() > 0);
    assert!(sample(body, "openclaw_checkpoint_last_duration_seconds").parse::<f64>().unwrap() >= 0.0);
    assert!(body.lines().any(|l| l.starts_with("openclaw_state_bytes{table=\"rows\",view=\"tags\"}")), "{body}");
    assert!(sample(body, "openclaw_rocksdb_property{property=\"estimate-num-keys\"}").parse::<u64>().unwrap() > 0);
}

/// The value of the sample named (with its labels) `series`.
fn sample(body: &str, series: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .to_string()
}

/// `promtool check metrics` on `body`: the exposition parses and passes its lint.
fn promtool_check(body: &str) {
    let promtool = std::env::var("OPENCLAW_PROMTOOL").expect("OPENCLAW_PROMTOOL: run through scripts/test.sh, which installs promtool");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics: {}{}\n{body}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
