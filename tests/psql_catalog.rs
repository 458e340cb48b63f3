//! psql's describe commands (`\dt`, `\dv`, `\dm`, `\d`, `\d name`, `\d+ view`, `\det`) run
//! against a table, a keyed table, a source and a materialized view print what
//! `tests/psql/describe.out` holds: PostgreSQL's layout, sources as foreign tables. OIDs stay
//! the same across a restart, and a dropped relation leaves the catalog.

mod common;

use common::{one, TestServer};

const SETUP: &str = "
CREATE TABLE orders (id INT PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(12,2), placed TIMESTAMPTZ);
CREATE TABLE stock (warehouse BIGINT, item TEXT, quantity INT, PRIMARY KEY (warehouse, item));
CREATE SOURCE bids WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '10');
CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer;
";

const COMMANDS: [&str; 9] = ["\\dt", "\\dv", "\\dm", "\\d", "\\d orders", "\\d stock", "\\d bids", "\\d+ per_customer", "\\det"];

/// What psql prints for `COMMANDS`, each after a line naming it, with its messages (stderr) in
/// place.
fn describe(server: &TestServer) -> String {
    let url = server.conn_str();
    let mut psql = std::process::Command::new("sh");
    psql.args(["-c", "exec psql \"$@\" 2>&1", "psql", url.as_str(), "-X", "-v", "ON_ERROR_STOP=1"]);
    for c in COMMANDS {
        psql.args(["-c", &format!("\\echo == {}", c.trim_start_matches('\\')), "-c", c]);
    }
    let out = psql.output().expect("run psql");
    let printed = String::from_utf8(out.stdout).expect("psql prints UTF-8");
    assert!(out.status.success() && !printed.contains("ERROR"), "psql failed: {printed}");
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_tables_sources_and_views_as_postgresql_does() {
    let server = TestServer::start("psql-describe");
    server.connect().await.batch_execute(SETUP).await.unwrap();
    let printed = tokio::task::spawn_blocking(move || (describe(&server), server)).await.unwrap();
    let expected_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/psql/describe.out");
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(expected_path, &printed.0).unwrap();
    }
    let expected = std::fs::read_to_string(expected_path).unwrap();
    assert_eq!(printed.0, expected, "psql's output differs from {expected_path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oids_survive_a_restart_and_dropped_relations_leave_the_catalog() {
    let server = TestServer::start("psql-oids");
    let client = server.connect().await;
    client.batch_execute(SETUP).await.unwrap();
    let oids = "SELECT relname, oid::text, relkind FROM pg_catalog.pg_class ORDER BY relname";
    let before = one(&client, oids).await;
    let kinds: Vec<(&str, &str)> = before.iter().map(|r| (r[0].as_str(), r[2].as_str())).collect();
    assert_eq!(
        kinds,
        [("bids", "f"), ("orders", "r"), ("orders_pkey", "i"), ("per_customer", "m"), ("stock", "r"), ("stock_pkey", "i")],
    );
    // `'name'::regclass` is the same OID, and each column is in pg_attribute under it.
    let by_cast = one(&client, "SELECT 'orders'::regclass::oid::text").await;
    assert_eq!(by_cast[0][0], before[1][1]);
    let columns = one(&client, "SELECT attname, atttypid::text, attnotnull::text FROM pg_catalog.pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 ORDER BY attnum").await;
    assert_eq!(columns, [["id", "23", "true"], ["customer", "25", "true"], ["amount", "1700", "false"], ["placed", "1184", "false"]]);
    drop(client);
    let dir = server.kill();
    let server = TestServer::start_at(dir);
    let client = server.connect().await;
    assert_eq!(one(&client, oids).await, before, "OIDs changed across a restart");
    client.batch_execute("DROP MATERIALIZED VIEW per_customer; DROP TABLE orders").await.unwrap();
    let after = one(&client, "SELECT relname FROM pg_catalog.pg_class ORDER BY relname").await;
    assert_eq!(after, [["bids"], ["stock"], ["stock_pkey"]]);
    let constraint = one(&client, "SELECT conname, pg_catalog.pg_get_constraintdef(oid, true) FROM pg_catalog.pg_constraint").await;
    assert_eq!(constraint, [["stock_pkey", "PRIMARY KEY (warehouse, item)"]]);
}
