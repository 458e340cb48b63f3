//! psql's describe commands (`\dt`, `\dv`, `\dm`, `\d`, `\d name`, `\d+ view`, `\det`, `\dn`,
//! `\du`, `\l`, `\df`, `\dT`, and `\x`) run
//! against a table, a keyed table, a source and a materialized view print what
//! `tests/psql/describe.out` holds: PostgreSQL's layout, sources as foreign tables. Tab
//! completes their names and columns. OIDs stay the same across a restart, and a dropped
//! relation leaves the catalog.

mod common;

use common::{one, TestServer};

const SETUP: &str = "
CREATE TABLE orders (id INT PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(12,2), placed TIMESTAMPTZ);
CREATE TABLE stock (warehouse BIGINT, item TEXT, quantity INT, PRIMARY KEY (warehouse, item));
CREATE SOURCE bids WITH (connector = 'nexmark', 'nexmark.table.type' = 'Bid', 'nexmark.event.num' = '10');
CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer;
";

const COMMANDS: [&str; 17] = [
    "\\dt",
    "\\dv",
    "\\dm",
    "\\d",
    "\\d orders",
    "\\d stock",
    "\\d bids",
    "\\d+ per_customer",
    "\\det",
    "\\dn",
    "\\du",
    "\\l",
    "\\df",
    "\\df to_char",
    "\\dT times*",
    "\\x",
    "\\dt",
];

/// What psql prints for `COMMANDS`, each after a line naming it, with its messages (stderr) in
/// place.
fn describe(server: &TestServer) -> String {
    run_psql(server, &COMMANDS)
}

/// What psql prints for `commands` (run in one session), each after a line naming it.
fn run_psql(server: &TestServer, commands: &[&str]) -> String {
    let url = server.conn_str();
    let mut psql = std::process::Command::new("sh");
    psql.args(["-c", "exec psql \"$@\" 2>&1", "psql", url.as_str(), "-X", "-v", "ON_ERROR_STOP=1"]);
    for c in commands {
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
    let expected_path = &common::repo_path("tests/psql/describe.out");
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(expected_path, &printed.0).unwrap();
    }
    let expected = std::fs::read_to_string(expected_path).unwrap();
    assert_eq!(printed.0, expected, "psql's output differs from {expected_path}");
}

/// Tab in an interactive psql (on a pseudo-terminal, `tests/psql/complete.py`) completes a
/// table, a view, a source and a column from what psql's completion queries find.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_completes_relation_and_column_names() {
    let server = TestServer::start("psql-complete");
    server.connect().await.batch_execute(SETUP).await.unwrap();
    let port = server.pg_port.to_string();
    let typed = ["SELECT * FROM ord", "\\d per_", "SELECT * FROM bi", "SELECT * FROM orders WHERE cust"];
    let out = tokio::task::spawn_blocking(move || {
        let script = common::repo_path("tests/psql/complete.py");
        let out = std::process::Command::new("python3").arg(script).arg(&port).args(typed).output().expect("run python3");
        (out, server)
    })
    .await
    .unwrap()
    .0;
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "complete.py failed: {printed}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = printed.lines().map(|l| l.trim_start_matches("openclaw=# ")).collect();
    assert_eq!(lines, ["SELECT * FROM orders ", "\\d per_customer ", "SELECT * FROM bids ", "SELECT * FROM orders WHERE customer "]);
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

/// Schemas in psql: `\dn` lists them; `\dt` shows the tables the session's `search_path`
/// makes visible (a table of an earlier schema hides a later one's of the same name);
/// `\dt sales.*` and `\d sales.orders` find a schema's table. What was created under a
/// `search_path` comes back from a restart in the same schema, with the same OIDs, and a view
/// over an unqualified name reads the same table as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_list_in_psql_and_survive_a_restart() {
    let server = TestServer::start("psql-schemas");
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SCHEMA sales;
             CREATE TABLE orders (id INT PRIMARY KEY, note TEXT);
             SET search_path = sales, public;
             CREATE TABLE orders (id INT PRIMARY KEY, amount BIGINT);
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS total FROM orders;
             INSERT INTO orders VALUES (1, 10), (2, 20);
             INSERT INTO public.orders VALUES (1, 'public');
             FLUSH;",
        )
        .await
        .unwrap();
    let commands = ["\\dn", "\\dt", "\\dt sales.*", "\\d sales.orders", "SET search_path = sales, public", "\\dt", "\\dm"];
    let (printed, server) = tokio::task::spawn_blocking(move || (run_psql(&server, &commands), server)).await.unwrap();
    let expected_path = &common::repo_path("tests/psql/schemas.out");
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(expected_path, &printed).unwrap();
    }
    assert_eq!(printed, std::fs::read_to_string(expected_path).unwrap(), "psql's output differs from {expected_path}");
    let oids = "SELECT n.nspname, n.oid::text, c.relname, c.oid::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') ORDER BY 1, 3";
    let before = one(&client, oids).await;
    drop(client);
    let server = TestServer::start_at(server.kill());
    let client = server.connect().await;
    assert_eq!(one(&client, oids).await, before, "schemas or OIDs changed across a restart");
    assert_eq!(one(&client, "SELECT n::text, total::text FROM sales.totals").await, [["2", "30"]]);
    client.batch_execute("INSERT INTO sales.orders VALUES (3, 30); INSERT INTO orders VALUES (2, 'public too'); FLUSH").await.unwrap();
    assert_eq!(one(&client, "SELECT n::text, total::text FROM sales.totals").await, [["3", "60"]], "the view reads sales.orders, as it did before the restart");
    assert_eq!(one(&client, "SELECT count(*)::text FROM orders").await, [["2"]]);
}

/// The schema queries of BI tools and drivers, as their sources write them, answer correctly:
/// Metabase's table listing (its PostgreSQL driver's `describe-database`), Grafana's table and
/// column pickers (its PostgreSQL data source's meta queries) and psycopg's type lookup
/// (`TypeInfo.fetch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tools_schema_queries_answer_correctly() {
    let server = TestServer::start("bi-queries");
    let client = server.connect().await;
    client.batch_execute(SETUP).await.unwrap();
    let metabase = r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name",
        CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type",
        "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count"
        FROM "pg_catalog"."pg_class" AS "c"
        INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid"
        LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = '0') AND ("d"."classoid" = 'pg_class'::regclass)
        LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname")
        WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema')
          AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('public'))
        ORDER BY "type" ASC, "schema" ASC, "name" ASC"#;
    let rows = one(&client, metabase).await;
    // A source's description is its options as SHOW SOURCES shows them (with what was
    // resolved at CREATE, such as the generator's base time).
    let listed: Vec<[&str; 4]> = rows.iter().map(|r| [r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].split(", 'nexmark.base").next().unwrap()]).collect();
    assert_eq!(
        listed,
        [
            ["public", "bids", "FOREIGN TABLE", "source WITH ('connector' = 'nexmark'"],
            ["public", "per_customer", "MATERIALIZED VIEW", ""],
            ["public", "orders", "TABLE", ""],
            ["public", "stock", "TABLE", ""],
        ]
    );
    let grafana_tables = "select quote_ident(table_name) as \"table\" from information_schema.tables \
        where quote_ident(table_schema) not in ('information_schema', 'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal') \
        and table_type = 'BASE TABLE' order by 1";
    let tables: Vec<String> = one(&client, grafana_tables).await.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(tables, ["bids", "orders", "per_customer", "stock"]);
    let grafana_columns = "select quote_ident(column_name) as \"column\", data_type as \"type\" from information_schema.columns \
        where quote_ident(table_name) = 'orders' order by ordinal_position";
    let columns: Vec<String> = one(&client, grafana_columns).await.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(columns, ["id", "customer", "amount", "placed"]);
    let psycopg = common::python(&format!(
        "import psycopg\nfrom psycopg.types import TypeInfo\n\
         with psycopg.connect('{}') as c:\n\
         \x20   for name in ('int8', 'text', 'timestamptz', 'numeric'):\n\
         \x20       t = TypeInfo.fetch(c, name)\n\
         \x20       print(t.name, t.oid, t.array_oid)\n",
        server.conn_str()
    ));
    assert_eq!(psycopg, "int8 20 1016\ntext 25 1009\ntimestamptz 1184 1185\nnumeric 1700 1231\n");
}
