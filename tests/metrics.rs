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
    // Each commit is observed too: a histogram of durations, and the bytes written.
    let committed: u64 = sample(body, "openclaw_checkpoint_duration_seconds_count").parse().unwrap();
    assert!(committed >= 1 && committed as usize <= checkpoints.len() + 8, "{committed} vs {checkpoints:?}");
    assert!(sample(body, "openclaw_checkpoint_bytes_total").parse::<u64>().unwrap() > 0);
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

/// Per-operator counters after a known workload: `EXPLAIN ANALYZE MATERIALIZED VIEW` prints
/// each node's rows, and along the plan each node's rows in are its input's rows out;
/// `/metrics` has the same numbers per task, and counts sessions and ingest requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_counters_in_explain_analyze_and_metrics() {
    let server = TestServer::start("metrics-operators");
    let client = server.connect().await;
    // 100 rows over 10 keys; 20 of them filtered out (v <= 0).
    let values: Vec<String> = (0..100).map(|i| format!("({}, {})", i % 10, if i % 5 == 0 { -i } else { i })).collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE t (k int, v int);
             SET streaming_parallelism = 2;
             CREATE MATERIALIZED VIEW per_key AS SELECT k, count(*) AS n FROM t WHERE v > 0 GROUP BY k;
             INSERT INTO t VALUES {};
             FLUSH;",
            values.join(", ")
        ))
        .await
        .unwrap();

    let plan: Vec<String> = one(&client, "EXPLAIN ANALYZE MATERIALIZED VIEW per_key").await.into_iter().map(|r| r[0].clone()).collect();
    let text = plan.join("\n");
    // A line's (rows in, rows out), if it has counters.
    let counted = |line: &str| -> Option<(u64, u64)> {
        let actual = line.split("(actual rows in=").nth(1)?;
        let rows_in = actual.split(' ').next()?.parse().ok()?;
        let rows_out = actual.split(" out=").nth(1)?.split(' ').next()?.parse().ok()?;
        Some((rows_in, rows_out))
    };
    let node = |prefix: &str| plan.iter().find(|l| l.trim_start().starts_with(prefix)).and_then(|l| counted(l)).unwrap_or_else(|| panic!("no counted {prefix} in\n{text}"));
    // Keys 0 and 5 have only filtered rows: 8 groups.
    assert_eq!(node("StreamFilter"), (100, 80), "{text}");
    let (agg_in, agg_out) = node("StreamHashAgg");
    assert_eq!(agg_in, 80, "{text}");
    assert!((8..=80).contains(&agg_out), "{text}");
    assert!(text.contains("[2 partitions by hash]") && text.contains("tasks=4"), "two partitions, an exchange and their union:\n{text}");
    assert!(plan.last().is_some_and(|l| l.trim_start().starts_with("StreamScan") && counted(l).is_none()), "{text}");
    assert_eq!(counted(&plan[0]).map(|(_, out)| out), Some(0), "the view keeps its rows, sends none: {text}");
    // A chain: each node takes in what the node under it sent.
    let rows: Vec<Option<(u64, u64)>> = plan.iter().map(|l| counted(l)).collect();
    for pair in rows.windows(2) {
        if let [Some((rows_in, _)), Some((_, rows_out))] = pair {
            assert_eq!(rows_in, rows_out, "{text}");
        }
    }
    assert!(plan.iter().all(|l| !l.contains("processing=") || l.contains(" ms")), "{text}");

    // One HTTP ingest request, then /metrics: the same counters per task, the request, this
    // session.
    let (status, _) = common::http_request(server.http_port, "POST", "/v1/ingest/t", &[("content-type", "application/x-ndjson")], b"{\"k\": 1, \"v\": 1}\n").await.expect("a response");
    assert_eq!(status, 200);
    let (status, body) = common::http_request(server.http_port, "GET", "/metrics", &[], b"").await.expect("a response");
    assert_eq!(status, 200, "{body}");
    promtool_check(&body);
    let filter: u64 = body
        .lines()
        .filter(|l| l.starts_with("openclaw_operator_rows_in_total{") && l.contains("operator=\"Filter\"") && l.contains("view=\"per_key\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    // The ingested row may or may not have reached the view yet: it is not flushed.
    assert!((100..=101).contains(&filter), "{body}");
    assert_eq!(sample(&body, "openclaw_ingest_requests_total{front=\"http\",outcome=\"2xx\"}"), "1");
    assert_eq!(sample(&body, "openclaw_ingest_request_duration_seconds_count{front=\"http\"}"), "1");
    assert!(sample(&body, "openclaw_sessions_open").parse::<u64>().unwrap() >= 1);

    // Wrong names and kinds are refused as PostgreSQL refuses them.
    let err = client.batch_execute("EXPLAIN ANALYZE MATERIALIZED VIEW nowhere").await.unwrap_err();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("42P01"), "{err}");
    let err = client.batch_execute("EXPLAIN ANALYZE SINK per_key").await.unwrap_err();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("42809"), "{err}");
}
