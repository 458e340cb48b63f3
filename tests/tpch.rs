//! TPC-H q1–q22 as materialized views, written as the benchmark writes them (`ORDER BY`,
//! `LIMIT`, scalar and correlated subqueries, `EXISTS`, `NOT IN`; q15 with its `CREATE VIEW`), over
//! the eight tables filled with `tpchgen`'s data at scale factor 0.01 through `COPY`. Each
//! view is created before the data and again after it, and each must equal its ad-hoc query
//! (`EXCEPT ALL` both ways) then and after rounds of deletes and updates of `lineitem` and
//! `orders`. A view with `LIMIT` thus holds exactly its top rows.

mod common;

use std::io::Cursor;

use common::TestServer;
use futures::SinkExt;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

const SCALE_FACTOR: f64 = 0.01;
const QUERIES: usize = 22;

/// The statements of query `n`'s file: the query itself is the `SELECT`; q15's also creates
/// the view it reads before it, and drops it after.
fn statements(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(common::repo_path(&format!("tests/tpch/q{n}.sql"))).unwrap();
    text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn query(n: usize) -> String {
    statements(n).into_iter().find(|s| s.starts_with("select")).unwrap()
}

/// The `CREATE VIEW`s query `n` reads.
fn views(n: usize) -> Vec<String> {
    statements(n).into_iter().filter(|s| s.starts_with("create view")).collect()
}

/// Each table's rows in TBL form (`|` after every column), as `COPY ... (DELIMITER '|')`
/// reads them once the last `|` is cut.
fn tables() -> Vec<(&'static str, Vec<u8>)> {
    fn tbl<T: std::fmt::Display>(rows: impl Iterator<Item = T>) -> Vec<u8> {
        let mut out = String::new();
        for row in rows {
            let line = row.to_string();
            out.push_str(line.strip_suffix('|').unwrap_or(&line));
            out.push('\n');
        }
        out.into_bytes()
    }
    let sf = SCALE_FACTOR;
    vec![
        ("region", tbl(RegionGenerator::new(sf, 1, 1).iter())),
        ("nation", tbl(NationGenerator::new(sf, 1, 1).iter())),
        ("part", tbl(PartGenerator::new(sf, 1, 1).iter())),
        ("supplier", tbl(SupplierGenerator::new(sf, 1, 1).iter())),
        ("partsupp", tbl(PartSuppGenerator::new(sf, 1, 1).iter())),
        ("customer", tbl(CustomerGenerator::new(sf, 1, 1).iter())),
        ("orders", tbl(OrderGenerator::new(sf, 1, 1).iter())),
        ("lineitem", tbl(LineItemGenerator::new(sf, 1, 1).iter())),
    ]
}

async fn copy(client: &tokio_postgres::Client, table: &str, data: Vec<u8>) -> u64 {
    let sink = client.copy_in::<_, Cursor<Vec<u8>>>(&format!("COPY {table} FROM STDIN (FORMAT text, DELIMITER '|')")).await.unwrap();
    futures::pin_mut!(sink);
    for piece in data.chunks(1 << 16) {
        sink.send(Cursor::new(piece.to_vec())).await.unwrap();
    }
    sink.finish().await.unwrap()
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{e}\n{sql}")).get(0)
}

/// How many distinct rows occur a different number of times in `a` and in `b` (relations
/// of `width` columns): a multiset comparison. (DataFusion's `EXCEPT ALL` is not one: it drops
/// every copy of a row that the other side has once.)
async fn differ(client: &tokio_postgres::Client, a: &str, b: &str, width: usize) -> i64 {
    let cols = (1..=width).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", ");
    let counted = |r: &str| format!("SELECT {cols}, count(*) AS n FROM {r} AS r({cols}) GROUP BY {cols}");
    let (a, b) = (counted(a), counted(b));
    count(client, &format!("SELECT count(*) FROM (({a} EXCEPT {b}) UNION ALL ({b} EXCEPT {a})) d")).await
}

/// Each query's `_after` view against the query, and its `_before` view against the
/// `_after` one (which runs the query once, not twice).
async fn check_all(client: &tokio_postgres::Client, when: &str) {
    let mut wrong = vec![];
    for n in 1..=QUERIES {
        let (before, after) = (format!("q{n}_before"), format!("q{n}_after"));
        let width = client.prepare(&format!("SELECT * FROM {after}")).await.unwrap().columns().len();
        let diff = differ(client, &after, &format!("({})", query(n)), width).await;
        if diff != 0 {
            wrong.push(format!("{after}: {diff} rows differ from the query"));
        }
        let diff = differ(client, &before, &after, width).await;
        if diff != 0 {
            wrong.push(format!("{before}: {diff} rows differ from {after}"));
        }
    }
    assert!(wrong.is_empty(), "{when}: views differ from their queries:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_queries_as_views_equal_their_queries_through_deletes_and_updates() {
    let started = std::time::Instant::now();
    let phase = |name: &str| eprintln!("{name}: {:?}", started.elapsed());
    let server = TestServer::start("tpch");
    let client = server.connect().await;
    client.batch_execute(&std::fs::read_to_string(common::repo_path("tests/tpch/schema.sql")).unwrap()).await.unwrap();
    for view in (1..=QUERIES).flat_map(views) {
        client.batch_execute(&view).await.unwrap();
    }
    for n in 1..=QUERIES {
        client.batch_execute(&format!("CREATE MATERIALIZED VIEW q{n}_before AS {}", query(n))).await.unwrap_or_else(|e| panic!("q{n}: {e}"));
    }
    phase("views before");
    for (table, data) in tables() {
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(copy(&client, table, data).await, lines, "{table}");
    }
    for n in 1..=QUERIES {
        client.batch_execute(&format!("CREATE MATERIALIZED VIEW q{n}_after AS {}", query(n))).await.unwrap_or_else(|e| panic!("q{n}: {e}"));
    }
    phase("data and views after");
    client.batch_execute("FLUSH").await.unwrap();
    phase("flush");
    check_all(&client, "after the data").await;
    let mut sizes = vec![];
    for n in 1..=QUERIES {
        sizes.push(count(&client, &format!("SELECT count(*) FROM q{n}_after")).await);
    }
    phase("check");
    eprintln!("rows of q1..q22 at scale factor {SCALE_FACTOR}: {sizes:?}");
    // The comparison means something only where the queries return rows.
    assert!(sizes.iter().filter(|&&n| n > 0).count() >= 20, "too few queries return rows: {sizes:?}");
    for round in 0..2 {
        client
            .batch_execute(&format!(
                "DELETE FROM lineitem WHERE l_orderkey % 17 = {round};
                 UPDATE lineitem SET l_quantity = l_quantity + 1, l_discount = 0.05 WHERE l_orderkey % 13 = {round};
                 UPDATE lineitem SET l_shipdate = l_receiptdate, l_returnflag = 'R' WHERE l_orderkey % 11 = {round};
                 UPDATE orders SET o_orderpriority = '1-URGENT', o_totalprice = o_totalprice * 2 WHERE o_orderkey % 7 = {round};
                 DELETE FROM orders WHERE o_orderkey % 19 = {round};
                 UPDATE customer SET c_acctbal = c_acctbal - 1000 WHERE c_custkey % 5 = {round};
                 FLUSH"
            ))
            .await
            .unwrap();
        phase("round");
        check_all(&client, &format!("after round {round} of deletes and updates")).await;
        phase("check");
    }
    // q15's own `DROP VIEW` is refused while the materialized views read the view.
    let drop = statements(15).pop().unwrap();
    assert!(drop.starts_with("drop view"), "{drop}");
    let refused = client.batch_execute(&drop).await.unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST), "{refused:?}");
    client.batch_execute("DROP MATERIALIZED VIEW q15_before, q15_after").await.unwrap();
    client.batch_execute(&drop).await.unwrap();
}
