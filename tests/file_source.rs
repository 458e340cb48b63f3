//! The file source (`connector = 'file'`): ten million rows from Parquet files and from CSV
//! files, written by DuckDB (from PyPI, installed by `scripts/install-grpc-client.sh`), into
//! views, counted exactly across a SIGKILL mid-read; CSV lines that do not decode go to the
//! dead-letter table.

mod common;

use common::{one, python, TestServer};

const ROWS: u64 = 10_000_000;
const FILES: u64 = 8;

/// Writes `FILES` Parquet and `FILES` CSV files of `ROWS` rows in all under `dir`, plus two
/// bad lines (and a blank one) at the end of the last CSV file; returns DuckDB's `sum(v)`.
fn write_files(dir: &std::path::Path) -> String {
    let per_file = ROWS / FILES;
    python(&format!(
        r#"
import duckdb
con = duckdb.connect()
for p in range({FILES}):
    rows = f"SELECT i AS id, i % 1000 AS k, (i * 7) % 10007 AS v, 'tag' || (i % 13) AS tag FROM range({{p * {per_file}}}, {{(p + 1) * {per_file}}}) t(i)"
    con.execute(f"COPY ({{rows}}) TO '{dir}/parquet/part-{{p}}.parquet' (FORMAT parquet, ROW_GROUP_SIZE 100000)")
    con.execute(f"COPY ({{rows}}) TO '{dir}/csv/part-{{p}}.csv' (FORMAT csv, HEADER true)")
with open('{dir}/csv/part-{last}.csv', 'a') as f:
    f.write('not-a-number,1,2,x\n\n1,2,3\n')
print(con.execute("SELECT sum((i * 7) % 10007) FROM range({ROWS}) t(i)").fetchone()[0])
"#,
        dir = dir.display(),
        last = FILES - 1,
    ))
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_rows_from_parquet_and_csv_counted_exactly_across_a_sigkill() {
    let root = std::env::temp_dir().join(format!("openclaw-test-file-source-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for sub in ["parquet", "csv"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let sum_v = write_files(&root);
    let flags = ["--checkpoint-interval", "200ms"];
    let server = TestServer::start_with(root.join("data"), &flags);
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE pq (id bigint, k int, v bigint, tag text) WITH (connector = 'file', path = '{dir}/parquet/*.parquet', format = 'parquet');
             CREATE SOURCE lines (id bigint, k int, v bigint, tag text) WITH (connector = 'file', path = '{dir}/csv/part-*.csv', format = 'csv');
             CREATE MATERIALIZED VIEW pq_totals AS SELECT count(*) AS n, sum(id) AS ids, sum(v) AS vs, count(DISTINCT k) AS ks FROM pq;
             CREATE MATERIALIZED VIEW csv_totals AS SELECT count(*) AS n, sum(id) AS ids, sum(v) AS vs, count(DISTINCT k) AS ks FROM lines;",
            dir = root.display()
        ))
        .await
        .unwrap();
    // Mid-read (the CSV files take seconds): a crash.
    let mut read = 0;
    for _ in 0..3000 {
        read = one(&client, "SELECT n FROM csv_totals").await.first().map_or(0, |r| r[0].parse().unwrap());
        if read >= ROWS / 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!((ROWS / 5..ROWS).contains(&read), "the kill falls mid-read: {read} rows read");
    drop(client);
    let data = server.kill();
    let server = TestServer::start_with(data, &flags);
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    let ids = (ROWS * (ROWS - 1) / 2).to_string();
    let expected = [[ROWS.to_string(), ids, sum_v, "1000".to_string()]];
    assert_eq!(one(&client, "SELECT n, ids, vs, ks FROM pq_totals").await, expected, "from Parquet");
    assert_eq!(one(&client, "SELECT n, ids, vs, ks FROM csv_totals").await, expected, "from CSV");
    // The two bad lines, by file and line number (a header, then 1,250,000 rows, then them).
    let last_line = ROWS / FILES + 2;
    assert_eq!(
        one(&client, "SELECT kafka_partition, kafka_offset, error <> '' FROM lines_dlq ORDER BY 2").await,
        [[(FILES - 1).to_string(), last_line.to_string(), "t".into()], [(FILES - 1).to_string(), (last_line + 2).to_string(), "t".into()]]
    );
    assert_eq!(one(&client, "SELECT count(*) FROM pq_dlq").await, [["0"]]);
    let _ = std::fs::remove_dir_all(root.join("parquet"));
    let _ = std::fs::remove_dir_all(root.join("csv"));
}
