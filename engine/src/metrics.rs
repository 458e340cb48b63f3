//! Counters of one dataflow task, kept by the runtime loop and the task's [`crate::Outputs`]
//! as it runs, read by `/metrics` and `EXPLAIN ANALYZE` without stopping it.
//!
//! Each counter has one writer (its task) and is read with relaxed loads: a reader sees each
//! counter's latest value, not a snapshot of all of them at one instant.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a task does for its plan node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRole {
    /// The node's own work (one per partition): its rows are the node's rows.
    Operator,
    /// A source reader (one per reader of a source split several ways).
    Source,
    /// Routing or merging around a partitioned node (an exchange, the union of partitions or
    /// of readers): its time counts toward the node, its rows do not (they are the node's).
    Helper,
}

/// The counters of one task.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// The operator's own name (`Aggregate(count; state = ...)`).
    pub name: String,
    /// The plan node it belongs to: its line in the view's `EXPLAIN`, counted from 0 in the
    /// plan's pre-order; `None` for the view's own sink (its materialize or subscribe step).
    pub node: Option<usize>,
    pub role: TaskRole,
    /// Which partition of the node, for nodes run as several.
    pub partition: usize,
    rows_in: AtomicU64,
    chunks_in: AtomicU64,
    rows_out: AtomicU64,
    chunks_out: AtomicU64,
    /// Time handling messages, less the time blocked sending.
    processing_ns: AtomicU64,
    /// Time blocked on a full output channel (backpressure from downstream).
    blocked_ns: AtomicU64,
}

/// A reading of [`OperatorMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorCounts {
    pub rows_in: u64,
    pub chunks_in: u64,
    pub rows_out: u64,
    pub chunks_out: u64,
    pub processing_ns: u64,
    pub blocked_ns: u64,
}

impl OperatorCounts {
    /// Adds `other` to these counts (a node's partitions and helpers).
    pub fn add(&mut self, other: &OperatorCounts) {
        self.rows_in += other.rows_in;
        self.chunks_in += other.chunks_in;
        self.rows_out += other.rows_out;
        self.chunks_out += other.chunks_out;
        self.processing_ns += other.processing_ns;
        self.blocked_ns += other.blocked_ns;
    }

    /// These counts' times without their rows (a helper's, which counts each row again).
    pub fn time_only(&self) -> OperatorCounts {
        OperatorCounts { processing_ns: self.processing_ns, blocked_ns: self.blocked_ns, ..OperatorCounts::default() }
    }
}

impl OperatorMetrics {
    pub fn new(name: String, node: Option<usize>, role: TaskRole, partition: usize) -> Self {
        Self {
            name,
            node,
            role,
            partition,
            rows_in: AtomicU64::new(0),
            chunks_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            chunks_out: AtomicU64::new(0),
            processing_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
        }
    }

    /// Counters for a task outside any view's plan (tests, a table's own task).
    pub fn detached(name: String) -> Self {
        Self::new(name, None, TaskRole::Operator, 0)
    }

    /// The operator's kind: its name up to the first parenthesis (`Aggregate`).
    pub fn kind(&self) -> &str {
        self.name.split('(').next().unwrap_or(&self.name)
    }

    pub fn received(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Relaxed);
        self.chunks_in.fetch_add(1, Relaxed);
    }

    pub fn sent(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Relaxed);
        self.chunks_out.fetch_add(1, Relaxed);
    }

    pub fn processed(&self, took: Duration) {
        self.processing_ns.fetch_add(nanos(took), Relaxed);
    }

    pub fn blocked(&self, took: Duration) {
        self.blocked_ns.fetch_add(nanos(took), Relaxed);
    }

    /// The time blocked so far, to subtract from a handling time that includes sends.
    pub fn blocked_so_far(&self) -> Duration {
        Duration::from_nanos(self.blocked_ns.load(Relaxed))
    }

    pub fn counts(&self) -> OperatorCounts {
        OperatorCounts {
            rows_in: self.rows_in.load(Relaxed),
            chunks_in: self.chunks_in.load(Relaxed),
            rows_out: self.rows_out.load(Relaxed),
            chunks_out: self.chunks_out.load(Relaxed),
            processing_ns: self.processing_ns.load(Relaxed),
            blocked_ns: self.blocked_ns.load(Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_kind_is_the_name_before_its_arguments() {
        let m = OperatorMetrics::new("Aggregate(count; state = \"v_s1_groups\")".into(), Some(2), TaskRole::Operator, 1);
        m.received(10);
        m.received(5);
        m.sent(3);
        m.processed(Duration::from_millis(2));
        m.blocked(Duration::from_millis(1));
        let c = m.counts();
        assert_eq!((c.rows_in, c.chunks_in, c.rows_out, c.chunks_out), (15, 2, 3, 1));
        assert_eq!((c.processing_ns, c.blocked_ns), (2_000_000, 1_000_000));
        assert_eq!(m.kind(), "Aggregate");
        let mut total = OperatorCounts::default();
        total.add(&c);
        total.add(&c);
        assert_eq!(total.rows_in, 30);
    }
}
