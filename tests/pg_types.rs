//! tokio-postgres over the extended protocol: every listed type round-trips through a table
//! (binary parameters in, binary results out), and errors carry their SQLSTATE.

mod common;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_with_the_extended_protocol() {
    let server = common::TestServer::start("pg-types");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE all_types (id BIGINT PRIMARY KEY, b BOOLEAN, i2 SMALLINT, i4 INT, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, \
             n NUMERIC(12,3), t TEXT, v VARCHAR, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, iv INTERVAL, by BYTEA)",
        )
        .await
        .unwrap();
    let ts = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap().and_hms_micro_opt(13, 45, 7, 123456).unwrap();
    let tz = Utc.with_ymd_and_hms(2023, 12, 31, 23, 59, 59).unwrap();
    let n = Decimal::from_str("12345.678").unwrap();
    let insert = client
        .prepare("INSERT INTO all_types (id, b, i2, i4, i8, f4, f8, n, t, v, d, ts, tz, by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
        .await
        .unwrap();
    let rows = client
        .execute(
            &insert,
            &[&1i64, &true, &-7i16, &42i32, &(i64::MAX - 1), &1.5f32, &-2.25f64, &n, &"héllo", &"vc", &NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(), &ts, &tz, &vec![0u8, 1, 255]],
        )
        .await
        .unwrap();
    assert_eq!(rows, 1);
    client.batch_execute("UPDATE all_types SET iv = INTERVAL '1 day 2 hours' WHERE id = 1").await.unwrap();

    let row = client.query_one("SELECT b, i2, i4, i8, f4, f8, n, t, v, d, ts, tz, by FROM all_types WHERE id = $1", &[&1i64]).await.unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i16>(1), -7);
    assert_eq!(row.get::<_, i32>(2), 42);
    assert_eq!(row.get::<_, i64>(3), i64::MAX - 1);
    assert_eq!(row.get::<_, f32>(4), 1.5);
    assert_eq!(row.get::<_, f64>(5), -2.25);
    assert_eq!(row.get::<_, Decimal>(6), n);
    assert_eq!(row.get::<_, String>(7), "héllo");
    assert_eq!(row.get::<_, String>(8), "vc");
    assert_eq!(row.get::<_, NaiveDate>(9), NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    assert_eq!(row.get::<_, NaiveDateTime>(10), ts);
    assert_eq!(row.get::<_, chrono::DateTime<Utc>>(11), tz);
    assert_eq!(row.get::<_, Vec<u8>>(12), vec![0u8, 1, 255]);

    // Type OIDs as PostgreSQL reports them.
    let stmt = client.prepare("SELECT b, i2, i4, i8, f4, f8, n, t, d, ts, tz, iv, by FROM all_types").await.unwrap();
    let oids: Vec<u32> = stmt.columns().iter().map(|c| c.type_().oid()).collect();
    assert_eq!(oids, vec![16, 21, 23, 20, 700, 701, 1700, 25, 1082, 1114, 1184, 1186, 17]);

    // The text forms, through the simple protocol, are PostgreSQL's.
    let text = client.simple_query("SELECT n, ts, tz, iv, d, b FROM all_types").await.unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(r) = &text[1] else { panic!("expected a row: {text:?}") };
    assert_eq!(r.get(0), Some("12345.678"));
    assert_eq!(r.get(1), Some("2024-02-29 13:45:07.123456"));
    assert_eq!(r.get(2), Some("2023-12-31 23:59:59+00"));
    assert_eq!(r.get(3), Some("1 day 02:00:00"));
    assert_eq!(r.get(4), Some("2020-01-02"));
    assert_eq!(r.get(5), Some("t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_position_and_sessions_survive() {
    let server = common::TestServer::start("pg-errors");
    let a = server.connect().await;
    let b = server.connect().await;
    let err = a.simple_query("SELECT * FROM\n nowhere").await.unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42P01");
    let err = a.simple_query("SELECT 1 +* 2").await.unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42601");
    assert!(matches!(db.position(), Some(tokio_postgres::error::ErrorPosition::Original(p)) if *p > 0), "{db:?}");
    // Both sessions keep working.
    assert_eq!(a.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 1);
    assert_eq!(b.query_one("SELECT 2::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 2);
    // A value the binary encoder cannot hold (a numeric past 28 digits) ends its rows with
    // 22003 rather than the session.
    let err = a.query("SELECT 99999999999999999999999999999999999999", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("22003"), "{err}");
    assert_eq!(a.query_one("SELECT 3::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 3);
    // Output columns are named as PostgreSQL names them, and equal expressions may repeat.
    let stmt = a
        .prepare("SELECT 1, 1, 2 AS two, upper('a'), count(*), extract(year FROM DATE '2024-01-01') FROM (SELECT 1) x")
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["?column?", "?column?", "two", "upper", "count", "extract"]);
    // So may columns, as in `SELECT i, i`, and in an INSERT's select list.
    let stmt = a.prepare("SELECT t.i, i, \"I\" FROM (SELECT 1 AS i, 2 AS \"I\") t").await.unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["i", "i", "I"]);
    let row = a.query_one(&stmt, &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)), (1, 1, 2));
    a.batch_execute("CREATE TABLE pairs (a BIGINT, b BIGINT); INSERT INTO pairs SELECT i, i FROM (SELECT 7 AS i) t").await.unwrap();
    assert_eq!(a.query_one("SELECT a + b FROM pairs", &[]).await.unwrap().get::<_, i64>(0), 14);
    // psql's and drivers' session chatter.
    a.batch_execute("SET extra_float_digits = 3; SET application_name = 'test'; BEGIN; COMMIT").await.unwrap();
    let v = a.simple_query("SHOW application_name").await.unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(r) = &v[1] else { panic!("{v:?}") };
    assert_eq!(r.get(0), Some("test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoint_answers() {
    let server = common::TestServer::start("http");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_write_and_views_see_every_row() {
    const SESSIONS: i64 = 8;
    const ROWS_PER_SESSION: i64 = 200;
    let server = common::TestServer::start("concurrent");
    let admin = server.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT); \
             CREATE MATERIALIZED VIEW odd AS SELECT k, v * 10 AS v10 FROM kv WHERE v % 2 = 1",
        )
        .await
        .unwrap();
    let mut tasks = vec![];
    for s in 0..SESSIONS {
        let client = server.connect().await;
        tasks.push(tokio::spawn(async move {
            let insert = client.prepare("INSERT INTO kv VALUES ($1, $2)").await.unwrap();
            for i in 0..ROWS_PER_SESSION {
                let k = s * ROWS_PER_SESSION + i;
                client.execute(&insert, &[&k, &k]).await.unwrap();
            }
            // Every session deletes its first ten rows again.
            client.execute("DELETE FROM kv WHERE k >= $1 AND k < $2", &[&(s * ROWS_PER_SESSION), &(s * ROWS_PER_SESSION + 10)]).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    admin.batch_execute("FLUSH").await.unwrap();
    let kept = SESSIONS * (ROWS_PER_SESSION - 10);
    let row = admin.query_one("SELECT count(*), (SELECT count(*) FROM odd) FROM kv", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), kept);
    assert_eq!(row.get::<_, i64>(1), kept / 2);
    let diff = admin
        .query_one(
            "SELECT count(*) FROM ((SELECT * FROM odd EXCEPT ALL SELECT k, v * 10 FROM kv WHERE v % 2 = 1) \
             UNION ALL (SELECT k, v * 10 FROM kv WHERE v % 2 = 1 EXCEPT ALL SELECT * FROM odd)) d",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(diff.get::<_, i64>(0), 0);
}

/// An `interval` parameter over the extended protocol: tokio-postgres sends it binary (through
/// pg_interval's `ToSql`), psycopg sends a `timedelta` as text; both add to a timestamp as
/// PostgreSQL adds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_parameters_work_binary_and_text() {
    let server = common::TestServer::start("pg-interval");
    let client = server.connect().await;
    let sql = "SELECT TIMESTAMP '2024-01-31 00:00:00' + $1::interval";
    // 1 month, 2 days, 3 hours and a microsecond.
    let interval = pg_interval::Interval::new(1, 2, 3 * 3_600_000_000 + 1);
    let row = client.query_one(sql, &[&interval]).await.unwrap();
    let expected = NaiveDate::from_ymd_opt(2024, 3, 2).unwrap().and_hms_micro_opt(3, 0, 0, 1).unwrap();
    assert_eq!(row.get::<_, NaiveDateTime>(0), expected);
    // Its type, as a prepared statement describes it, is interval (OID 1186).
    let statement = client.prepare(sql).await.unwrap();
    assert_eq!(statement.params()[0].oid(), 1186);
    let printed = common::python(&format!(
        "import datetime, psycopg\n\
         with psycopg.connect('{}') as c:\n\
         \x20   print(c.execute('SELECT TIMESTAMP \\'2024-01-31 00:00:00\\' + %s', [datetime.timedelta(days=1, hours=2, seconds=0.5)]).fetchone()[0])\n",
        server.conn_str()
    ));
    assert_eq!(printed.trim(), "2024-02-01 02:00:00.500000");
}

/// `SET TIME ZONE` changes how `timestamptz` text is shown and how text without an offset is
/// read, as in PostgreSQL; binary values are instants and do not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_time_zone_changes_how_timestamptz_is_shown_and_read() {
    let server = common::TestServer::start("pg-time-zone");
    let client = server.connect().await;
    client.batch_execute("CREATE TABLE ev (id INT PRIMARY KEY, at TIMESTAMPTZ); INSERT INTO ev VALUES (1, '2024-07-01 12:00:00+00')").await.unwrap();
    let shown = || async { common::one(&client, "SELECT at FROM ev").await[0][0].clone() };
    assert_eq!(shown().await, "2024-07-01 12:00:00+00");
    for (zone, expected) in [
        ("'America/New_York'", "2024-07-01 08:00:00-04"),
        ("'+05:30'", "2024-07-01 17:30:00+05:30"),
        ("-7", "2024-07-01 05:00:00-07"),
        ("'Asia/Kolkata'", "2024-07-01 17:30:00+05:30"),
        ("LOCAL", "2024-07-01 12:00:00+00"),
    ] {
        client.batch_execute(&format!("SET TIME ZONE {zone}")).await.unwrap();
        assert_eq!(shown().await, expected, "SET TIME ZONE {zone}");
    }
    client.batch_execute("SET TIME ZONE 'America/New_York'").await.unwrap();
    assert_eq!(common::one(&client, "SHOW TIME ZONE").await, [["America/New_York"]]);
    // Text without an offset is read in the session's zone (winter: -05).
    let read = common::one(&client, "SELECT '2024-01-15 09:30:00'::timestamptz = '2024-01-15 14:30:00+00'::timestamptz, '2024-01-15 09:30:00'::timestamptz").await;
    assert_eq!(read, [["t", "2024-01-15 09:30:00-05"]]);
    // Binary results are the instant, whatever the zone.
    let at: chrono::DateTime<Utc> = client.query_one("SELECT at FROM ev", &[]).await.unwrap().get(0);
    assert_eq!(at, Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap());
    // A zone that does not exist is refused and the session keeps its zone.
    let err = client.batch_execute("SET TIME ZONE 'Nowhere/Land'").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "22023");
    assert_eq!(shown().await, "2024-07-01 08:00:00-04");
}

/// A column declared `varchar` is described as `varchar` (OID 1043), with its length in
/// `pg_attribute`, and `text` stays `text`; a view over it keeps the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varchar_columns_are_described_as_varchar() {
    let server = common::TestServer::start("pg-varchar");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE names (id INT PRIMARY KEY, short VARCHAR(20), free CHARACTER VARYING, body TEXT); \
             CREATE MATERIALIZED VIEW name_view AS SELECT id, short, body FROM names",
        )
        .await
        .unwrap();
    let insert = client.prepare("INSERT INTO names VALUES ($1, $2, $3, $4)").await.unwrap();
    client.execute(&insert, &[&1i32, &"ann", &"free text", &"body"]).await.unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    let types = |s: &tokio_postgres::Statement| s.columns().iter().map(|c| c.type_().oid()).collect::<Vec<_>>();
    let from_table = client.prepare("SELECT id, short, free, body FROM names").await.unwrap();
    assert_eq!(types(&from_table), [23, 1043, 1043, 25]);
    let from_view = client.prepare("SELECT short, body FROM name_view").await.unwrap();
    assert_eq!(types(&from_view), [1043, 25]);
    let row = client.query_one(&from_table, &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(1), row.get::<_, String>(3)), ("ann".to_string(), "body".to_string()));
    let attributes = common::one(
        &client,
        "SELECT attname, atttypid::text, atttypmod::text, format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute WHERE attrelid = 'names'::regclass AND attnum > 1 ORDER BY attnum",
    )
    .await;
    assert_eq!(attributes, [["short", "1043", "24", "character varying(20)"], ["free", "1043", "-1", "character varying"], ["body", "25", "-1", "text"]]);
}
