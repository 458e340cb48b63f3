//! `COPY ... FROM STDIN`: a million CSV rows through tokio-postgres' `copy_in` are all in the
//! table (and its view) and survive a SIGKILL once acknowledged; a bad line writes nothing
//! and names its line; `ON_ERROR dead_letter` writes the rest and sends the bad lines to
//! `<table>_dlq`; the text format's escapes and NULLs, a column list, and psql's `\copy`.

mod common;

use std::io::Cursor;
use std::time::Instant;

use common::{one, TestServer};
use futures::SinkExt;

/// Sends `data` as one COPY; the rows it wrote, or its error.
async fn copy(client: &tokio_postgres::Client, statement: &str, data: Vec<u8>) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Cursor<Vec<u8>>>(statement).await?;
    futures::pin_mut!(sink);
    // In pieces, as drivers send a file.
    for piece in data.chunks(1 << 16) {
        sink.send(Cursor::new(piece.to_vec())).await?;
    }
    sink.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_csv_rows_are_all_written_once_and_survive_a_crash() {
    const ROWS: u64 = 1_000_000;
    let server = TestServer::start("copy-million");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT); \
             CREATE MATERIALIZED VIEW per_channel AS SELECT channel, count(*) AS n, sum(price) AS total FROM bids GROUP BY channel",
        )
        .await
        .unwrap();
    let mut data = b"auction,bidder,price,channel\n".to_vec();
    for i in 0..ROWS {
        data.extend_from_slice(format!("{},{},{},\"ch,{}\"\n", i % 1000, i, i % 97, i % 4).as_bytes());
    }
    let started = Instant::now();
    let written = copy(&client, "COPY bids FROM STDIN WITH (FORMAT csv, HEADER)", data).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(written, ROWS);
    println!("COPY of {ROWS} CSV rows: {elapsed:?}, {:.0} rows/s", ROWS as f64 / elapsed.as_secs_f64());
    let expected_total: u64 = (0..ROWS).map(|i| i % 97).sum();
    client.batch_execute("FLUSH").await.unwrap();
    let counted = "SELECT sum(n)::text, sum(total)::text, count(*)::text FROM per_channel";
    assert_eq!(one(&client, counted).await, [[ROWS.to_string(), expected_total.to_string(), "4".to_string()]]);
    // Acknowledged means durable.
    drop(client);
    let server = TestServer::start_at(server.kill());
    let client = server.connect().await;
    assert_eq!(one(&client, "SELECT count(*)::text FROM bids").await, [[ROWS.to_string()]]);
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(one(&client, counted).await, [[ROWS.to_string(), expected_total.to_string(), "4".to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_writes_nothing_unless_it_goes_to_the_dead_letter_table() {
    let server = TestServer::start("copy-errors");
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, name TEXT NOT NULL)").await.unwrap();
    let data = b"1,one\n2,two\nthree,3\n4,four\n".to_vec();
    let err = copy(&client, "COPY t FROM STDIN (FORMAT csv)", data.clone()).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    assert!(db.detail().unwrap_or_default().contains("line 3"), "{db:?}");
    assert_eq!(one(&client, "SELECT count(*)::text FROM t").await, [["0"]], "a failed COPY wrote rows");
    // The session goes on, and the same data with ON_ERROR dead_letter writes the rest.
    let written = copy(&client, "COPY t FROM STDIN WITH (FORMAT csv, ON_ERROR dead_letter)", data).await.unwrap();
    assert_eq!(written, 3);
    assert_eq!(one(&client, "SELECT string_agg(name, ',' ORDER BY id) FROM t").await, [["one,two,four"]]);
    let dead = one(&client, "SELECT line::text, payload FROM t_dlq").await;
    assert_eq!(dead, [["3", "three,3"]]);
    // A NULL in a NOT NULL column fails the COPY too, and an unknown column before any data.
    let err = copy(&client, "COPY t FROM STDIN (FORMAT csv)", b"9,\n".to_vec()).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "23502");
    let err = copy(&client, "COPY t (id, nope) FROM STDIN", vec![]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42703");
    assert_eq!(one(&client, "SELECT count(*)::text FROM t").await, [["3"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_format_a_column_list_and_psqls_copy_work() {
    let server = TestServer::start("copy-text");
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE notes (id INT PRIMARY KEY, body TEXT, score DOUBLE PRECISION)").await.unwrap();
    let text = b"1\ttab\\there\t1.5\n2\t\\N\t\\N\n3\tback\\\\slash \"q\"\t-2\n".to_vec();
    assert_eq!(copy(&client, "COPY notes FROM STDIN", text).await.unwrap(), 3);
    assert_eq!(copy(&client, "COPY notes (score, id) FROM STDIN", b"7\t4\n".to_vec()).await.unwrap(), 1);
    let rows = common::text_rows(&client, "SELECT id, body, score FROM notes ORDER BY id").await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        [
            vec![s("1"), s("tab\there"), s("1.5")],
            vec![s("2"), None, None],
            vec![s("3"), s("back\\slash \"q\""), s("-2")],
            vec![s("4"), None, s("7")],
        ]
    );
    // psql's \copy: from a file with a header, and from its standard input.
    let dir = std::env::temp_dir().join(format!("openclaw-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("notes.csv");
    std::fs::write(&file, "id,body,score\n10,from a file,0.25\n11,\"with, comma\",\n").unwrap();
    let url = server.conn_str();
    let command = format!("\\copy notes from '{}' csv header", file.display());
    let out = std::process::Command::new("psql").args([url.as_str(), "-X", "-v", "ON_ERROR_STOP=1", "-c", &command]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 2");
    let mut psql = std::process::Command::new("psql")
        .args([url.as_str(), "-X", "-v", "ON_ERROR_STOP=1", "-c", "\\copy notes (id, body) from stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    psql.stdin.take().unwrap().write_all(b"12\tpiped\n").unwrap();
    let out = psql.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 1");
    let rows = one(&client, "SELECT id, body, coalesce(score::text, 'null') AS score FROM notes WHERE id >= 10 ORDER BY id").await;
    assert_eq!(rows, [["10", "from a file", "0.25"], ["11", "with, comma", "null"], ["12", "piped", "null"]]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a `COPY ... TO STDOUT` sends.
async fn copy_out(client: &tokio_postgres::Client, statement: &str) -> String {
    use futures::TryStreamExt;
    let stream = client.copy_out(statement).await.unwrap();
    let pieces: Vec<_> = stream.try_collect().await.unwrap();
    String::from_utf8(pieces.concat()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_writes_text_and_csv_that_copy_from_reads_back() {
    let server = TestServer::start("copy-out");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE src (id INT PRIMARY KEY, body TEXT, ok BOOLEAN, at TIMESTAMP); \
             INSERT INTO src VALUES (1, 'tab\there', true, '2024-02-29 13:45:07'), (2, NULL, false, NULL), (3, 'a,\"b\"', NULL, '1999-12-31 23:59:59.5'), (4, '', true, NULL)",
        )
        .await
        .unwrap();
    let text = copy_out(&client, "COPY (SELECT * FROM src ORDER BY id) TO STDOUT").await;
    assert_eq!(
        text,
        "1\ttab\\there\tt\t2024-02-29 13:45:07\n2\t\\N\tf\t\\N\n3\ta,\"b\"\t\\N\t1999-12-31 23:59:59.5\n4\t\ttrue_placeholder\n".replace("true_placeholder", "t\t\\N")
    );
    let csv = copy_out(&client, "COPY (SELECT id, body FROM src ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)").await;
    assert_eq!(csv, "id,body\n1,tab\there\n2,\n3,\"a,\"\"b\"\"\"\n4,\"\"\n");
    // Both read back to the same rows.
    client.batch_execute("CREATE TABLE from_text (id INT PRIMARY KEY, body TEXT, ok BOOLEAN, at TIMESTAMP); CREATE TABLE from_csv (id INT PRIMARY KEY, body TEXT)").await.unwrap();
    copy(&client, "COPY from_text FROM STDIN", text.into_bytes()).await.unwrap();
    copy(&client, "COPY from_csv FROM STDIN (FORMAT csv, HEADER)", csv.into_bytes()).await.unwrap();
    let all = |t: &str| format!("SELECT id, body, body IS NULL AS null_body FROM {t} ORDER BY id");
    let original = common::text_rows(&client, &all("src")).await;
    assert_eq!(common::text_rows(&client, &all("from_text")).await, original);
    assert_eq!(common::text_rows(&client, &all("from_csv")).await, original);
    // A table by name, and psql's \copy to a file.
    assert_eq!(copy_out(&client, "COPY src (id) TO STDOUT").await, "1\n2\n3\n4\n");
    let file = std::env::temp_dir().join(format!("openclaw-copy-out-{}.csv", std::process::id()));
    let command = format!("\\copy (SELECT id, ok FROM src ORDER BY id) to '{}' csv header", file.display());
    let out = std::process::Command::new("psql").args([server.conn_str().as_str(), "-X", "-v", "ON_ERROR_STOP=1", "-c", &command]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 4");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "id,ok\n1,t\n2,f\n3,\n4,t\n");
    let _ = std::fs::remove_file(&file);
}
