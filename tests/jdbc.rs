//! pgJDBC's `DatabaseMetaData` (`getTables`, `getColumns`, `getPrimaryKeys`, `getSchemas`),
//! what every JDBC tool calls first, and DBeaver's navigator queries (databases, schemas,
//! a schema's relations, a table's columns; prepared, ids bound as int8), answer as
//! `tests/jdbc/metadata.out` holds, through Debian's driver (`scripts/install-jdbc.sh`) and
//! `tests/jdbc/Metadata.java`.

mod common;

use common::TestServer;

const SETUP: &str = "
CREATE TABLE orders (id INT PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(12,2), placed TIMESTAMPTZ);
CREATE TABLE stock (warehouse BIGINT, item TEXT, quantity INT, PRIMARY KEY (warehouse, item));
CREATE SOURCE bids WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '10', 'nexmark.base.time' = '1700000000000');
CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n FROM orders GROUP BY customer;
INSERT INTO orders VALUES (1, 'ann', 9.5, now()), (2, 'bob', NULL, NULL);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_lists_tables_columns_and_primary_keys() {
    let jar = std::env::var("OPENCLAW_JDBC_JAR").unwrap_or_else(|_| "/usr/share/java/postgresql.jar".into());
    let server = TestServer::start("jdbc");
    server.connect().await.batch_execute(SETUP).await.unwrap();
    let url = format!("jdbc:postgresql://127.0.0.1:{}/openclaw", server.pg_port);
    let program = common::repo_path("tests/jdbc/Metadata.java");
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("java").args(["-cp", &jar, &program, &url]).output().expect("run java"))
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "java failed: {printed}{}", String::from_utf8_lossy(&out.stderr));
    let expected_path = &common::repo_path("tests/jdbc/metadata.out");
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(expected_path, &printed).unwrap();
    }
    assert_eq!(printed, std::fs::read_to_string(expected_path).unwrap(), "pgJDBC's answers differ from {expected_path}");
}
