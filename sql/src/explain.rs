//! `EXPLAIN CREATE MATERIALIZED VIEW`: the streaming plan a view would run, one node a line.
//!
//! `EXPLAIN ANALYZE MATERIALIZED VIEW | SINK name`: the running dataflow's plan, as `EXPLAIN`
//! printed it when the view started, with each node's counters since then: rows in and out,
//! time processing and time blocked on a full output channel (backpressure). RisingWave's
//! statement; PostgreSQL's `(actual ...)` after each line.
//!
//! A node's counters add up its tasks: each partition of a partitioned node, and the exchange
//! and union around them for time (not for rows, which would count each row twice). The
//! counters start at zero each time the view starts (they are not checkpointed).

use std::fmt::Write;

use datafusion::sql::sqlparser::ast::ObjectName;
use openclaw_engine::metrics::{OperatorCounts, OperatorMetrics, TaskRole};

use openclaw_engine::plan::StreamNode;

use crate::catalog::Detail;
use crate::database::{object_name, undefined, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::{CreateView, ObjectKind};
use crate::session::SessionVars;

/// The first line of a view's `EXPLAIN`: the step that keeps its rows.
pub(crate) fn view_header(name: &str) -> String {
    format!("Materialize: {name} (state: multiset of rows in RocksDB)")
}

/// A dataflow's plan as `EXPLAIN` prints it: `header`, then the nodes indented under it.
pub(crate) fn explained(header: &str, node: &StreamNode, parallelism: usize) -> String {
    let mut text = format!("{header}\n");
    node.explain(&mut text, 1, parallelism);
    text
}

impl Database {
    pub(crate) async fn explain_create_view(&self, view: CreateView, vars: &SessionVars) -> SqlResult<QueryOutput> {
        let parallelism = vars.streaming_parallelism()?.unwrap_or(self.config.parallelism);
        let catalog = self.catalog.lock().await;
        let (node, _, _) = self.plan_view(&catalog, &view).await?;
        let text = explained(&view_header(&view.name.to_string()), &node, parallelism);
        let rows = text.lines().map(|l| vec![l.to_string()]).collect();
        QueryOutput::text_rows(&["QUERY PLAN"], rows)
    }

    pub(crate) async fn explain_analyze(&self, kind: ObjectKind, name: &ObjectName) -> SqlResult<QueryOutput> {
        let name = object_name(name)?;
        let (plan, operators) = {
            let catalog = self.catalog.lock().await;
            let entry = catalog.get(&name).ok_or_else(|| undefined(&name))?;
            match &entry.detail {
                Detail::View(v) if entry.kind == kind => (v.plan.clone(), v.operators.clone()),
                _ => return Err(SqlError::new(SqlState::WrongObjectType, format!("{} is not a {}", quote(&name), kind.sql_name()))),
            }
        };
        let rows = analyzed(&plan, &operators).lines().map(|l| vec![l.to_string()]).collect();
        QueryOutput::text_rows(&["QUERY PLAN"], rows)
    }
}

/// `plan` with each line followed by its node's counters. Line 0 is the view's own sink;
/// line `n + 1` is node `n` in the plan's pre-order ([`OperatorMetrics::node`]).
pub(crate) fn analyzed(plan: &str, operators: &[std::sync::Arc<OperatorMetrics>]) -> String {
    let mut out = String::new();
    for (line, text) in plan.lines().enumerate() {
        let node = line.checked_sub(1);
        let tasks: Vec<&OperatorMetrics> = operators.iter().map(|m| m.as_ref()).filter(|m| m.node == node).collect();
        let _ = match node_counts(&tasks) {
            Some(c) => writeln!(out, "{text}{}", actual(&c, &tasks)),
            // A node with no task of its own: a table read through its subscription, or a
            // source another branch's reader feeds.
            None => writeln!(out, "{text}"),
        };
    }
    out
}

/// Rows from the node's own tasks; time from all of them.
fn node_counts(tasks: &[&OperatorMetrics]) -> Option<OperatorCounts> {
    if tasks.is_empty() {
        return None;
    }
    let mut total = OperatorCounts::default();
    for t in tasks {
        let c = t.counts();
        total.add(&if t.role == TaskRole::Helper { c.time_only() } else { c });
    }
    Some(total)
}

fn actual(c: &OperatorCounts, tasks: &[&OperatorMetrics]) -> String {
    let ms = |ns: u64| format!("{:.3} ms", ns as f64 / 1e6);
    let rows = match tasks.iter().all(|t| t.role == TaskRole::Source) {
        // A source reader has no input: what it reads is what it sends.
        true => format!("rows out={}", c.rows_out),
        false => format!("rows in={} out={}", c.rows_in, c.rows_out),
    };
    let processing = match tasks.iter().all(|t| t.role == TaskRole::Source) {
        true => String::new(),
        false => format!(" processing={}", ms(c.processing_ns)),
    };
    format!("  (actual {rows}{processing} backpressure={} tasks={})", ms(c.blocked_ns), tasks.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_line_gets_its_nodes_counters_rows_from_the_operators_time_from_every_task() {
        let plan = "Materialize: v (state: multiset of rows in RocksDB)\n  StreamHashAgg: group by [k], aggs [count(*)] [2 partitions by hash]\n    StreamScan: t (snapshot, then changes)\n";
        let task = |name: &str, node, role, partition| Arc::new(OperatorMetrics::new(name.into(), node, role, partition));
        let sink = task("Materialize", None, TaskRole::Operator, 0);
        let exchange = task("Exchange(2)", Some(0), TaskRole::Helper, 0);
        let parts = [task("Aggregate(count)", Some(0), TaskRole::Operator, 0), task("Aggregate(count)", Some(0), TaskRole::Operator, 1)];
        let union = task("Union(partitions)", Some(0), TaskRole::Helper, 0);
        exchange.received(100);
        exchange.sent(60);
        exchange.sent(40);
        exchange.processed(Duration::from_millis(1));
        parts[0].received(60);
        parts[1].received(40);
        parts[0].sent(3);
        parts[1].sent(2);
        parts[0].blocked(Duration::from_millis(2));
        union.received(5);
        union.sent(5);
        sink.received(5);
        sink.processed(Duration::from_micros(500));
        let operators = vec![exchange, parts[0].clone(), parts[1].clone(), union, sink];
        let text = analyzed(plan, &operators);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Materialize: v (state: multiset of rows in RocksDB)  (actual rows in=5 out=0 processing=0.500 ms backpressure=0.000 ms tasks=1)");
        assert_eq!(lines[1], "  StreamHashAgg: group by [k], aggs [count(*)] [2 partitions by hash]  (actual rows in=100 out=5 processing=1.000 ms backpressure=2.000 ms tasks=4)");
        assert_eq!(lines[2], "    StreamScan: t (snapshot, then changes)");
    }
}
