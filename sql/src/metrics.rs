//! What the server's `/metrics` reports, read from the running objects: the counters behind
//! `SHOW SOURCES` and `SHOW MATERIALIZED VIEWS`, as numbers. The server turns them into
//! Prometheus' format; this crate knows nothing of it.

use std::sync::atomic::Ordering::Relaxed;

use crate::catalog::{Detail, Entry};
use crate::parser::ObjectKind;
use crate::database::Database;

/// One source, as `SHOW SOURCES` counts it: each view reading it has its own reader, which
/// reads the whole stream, so counts are the furthest reader's and lag and watermark the
/// slowest one's.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceMetrics {
    pub name: String,
    pub connector: String,
    pub readers: usize,
    pub rows_read: u64,
    pub bytes_read: u64,
    pub dead_letters: u64,
    /// Records not read yet, where the connector knows (Kafka).
    pub lag: Option<i64>,
    /// Microseconds since the epoch.
    pub watermark_us: Option<i64>,
}

/// One materialized view, sink or subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewMetrics {
    pub name: String,
    /// `materialized_view`, `sink` or `subscription`.
    pub kind: &'static str,
    /// Rows dropped behind the watermark of a closed window.
    pub late_rows: u64,
    /// Whether an operator failed and stopped it.
    pub failed: bool,
    /// Input rows whose expressions fail now (the view is unreadable while there are any).
    pub failed_rows: i64,
    /// Each of its tasks' counters, since the view started.
    pub operators: Vec<OperatorSample>,
}

/// One task of a view's dataflow ([`openclaw_engine::metrics::OperatorMetrics`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorSample {
    /// The plan node's line in `EXPLAIN ANALYZE` (0: the view's own sink).
    pub node: usize,
    /// The operator's kind (`Aggregate`, `Join`, `Exchange`, `Source`, ...).
    pub operator: String,
    pub partition: usize,
    pub counts: openclaw_engine::metrics::OperatorCounts,
}

/// One state table of a view (a join side, an aggregate's groups, ...), or the view's own
/// rows (`table` = `rows`): bytes on disk and in memtables, from RocksDB's estimates.
#[derive(Clone, Debug, PartialEq)]
pub struct StateMetrics {
    pub view: String,
    pub table: String,
    pub bytes: u64,
}

/// The last committed checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMetrics {
    pub id: u64,
    pub created_at_ms: u64,
    /// From the barrier's injection to the manifest's commit.
    pub duration_ms: u64,
    /// Of which writing it, after every sink passed the barrier.
    pub write_ms: u64,
    /// The longest any operator paused at the barrier.
    pub snapshot_ms: u64,
    pub bytes: u64,
    pub files: usize,
}

impl CheckpointMetrics {
    pub(crate) fn of(m: &openclaw_storage::checkpoint::Manifest) -> Self {
        Self {
            id: m.id,
            created_at_ms: m.created_at_ms,
            duration_ms: m.duration_ms,
            write_ms: m.write_ms,
            snapshot_ms: m.snapshot_ms,
            bytes: m.files.iter().map(|f| f.bytes).sum(),
            files: m.files.len(),
        }
    }
}

/// Called with each checkpoint as it commits ([`Database::observe_checkpoints`]).
pub type CheckpointObserver = Box<dyn Fn(&CheckpointMetrics) + Send + Sync>;

impl Database {
    /// Calls `observer` with every checkpoint committed from now on (the server keeps a
    /// histogram of their durations). One observer; a second call is ignored.
    pub fn observe_checkpoints(&self, observer: CheckpointObserver) {
        let _ = self.checkpoint_observer.set(observer);
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub sources: Vec<SourceMetrics>,
    pub views: Vec<ViewMetrics>,
    pub subscriptions_open: usize,
    pub state: Vec<StateMetrics>,
    pub checkpoint: Option<CheckpointMetrics>,
    /// RocksDB's statistics over every column family, by property name.
    pub rocksdb: Vec<(&'static str, u64)>,
}

impl Database {
    /// The metrics of every source and view now.
    pub async fn metrics(&self) -> Metrics {
        let catalog = self.catalog.lock().await;
        let sources = catalog.of_kind(ObjectKind::Source).filter_map(source_metrics).collect();
        let views = [(ObjectKind::MaterializedView, "materialized_view"), (ObjectKind::Sink, "sink"), (ObjectKind::Subscription, "subscription")]
            .into_iter()
            .flat_map(|(kind, label)| catalog.of_kind(kind).filter_map(move |e| view_metrics(e, label)))
            .collect();
        // Column families listed under the lock, sized without it (RocksDB properties).
        let tables: Vec<(String, String, Vec<String>)> = catalog
            .of_kind(ObjectKind::MaterializedView)
            .filter_map(|e| match &e.detail {
                Detail::View(v) => Some(
                    std::iter::once((e.name.clone(), "rows".to_string(), vec![v.state.cf.to_string()]))
                        .chain(v.state_tables.iter().map(|t| (e.name.clone(), t.name.clone(), t.column_families.clone())))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        drop(catalog);
        // RocksDB's properties are in memory, but listing the families reads its MANIFEST:
        // off the async workers.
        let store = self.store.clone();
        let (state, rocksdb) = tokio::task::spawn_blocking(move || {
            let state = tables.into_iter().map(|(view, table, cfs)| StateMetrics { view, table, bytes: store.bytes_in(&cfs).unwrap_or(0) }).collect();
            let families: Vec<String> = store.families().map(|f| f.into_iter().map(|(name, _)| name).collect()).unwrap_or_default();
            (state, store.rocksdb_statistics(&families).unwrap_or_default())
        })
        .await
        .unwrap_or_default();
        let checkpoint = self.last_checkpoint.lock().await.as_ref().map(CheckpointMetrics::of);
        Metrics { sources, views, subscriptions_open: self.subscribers.open(), state, checkpoint, rocksdb }
    }
}

pub(crate) fn source_metrics(e: &Entry) -> Option<SourceMetrics> {
    let Detail::Source { connector, readers, .. } = &e.detail else { return None };
    let readers = readers.lock().expect("readers lock");
    let furthest = |f: &dyn Fn(&openclaw_engine::source::SourceProgress) -> u64| readers.iter().map(|r| f(r)).max().unwrap_or(0);
    Some(SourceMetrics {
        name: e.name.clone(),
        connector: connector.name().to_string(),
        readers: readers.len(),
        rows_read: furthest(&|r| r.rows.load(Relaxed)),
        bytes_read: furthest(&|r| r.bytes.load(Relaxed)),
        dead_letters: furthest(&|r| r.dead_letters.load(Relaxed)),
        // The slowest reader's: what holds the source back.
        lag: readers.iter().map(|r| r.lag.load(Relaxed)).filter(|l| *l >= 0).max(),
        watermark_us: readers.iter().map(|r| r.watermark_us.load(Relaxed)).filter(|w| *w != 0).min(),
    })
}

fn view_metrics(e: &Entry, kind: &'static str) -> Option<ViewMetrics> {
    let Detail::View(v) = &e.detail else { return None };
    Some(ViewMetrics {
        name: e.name.clone(),
        kind,
        late_rows: v.late_rows.load(Relaxed),
        failed: v.failure.lock().expect("failure lock").is_some(),
        failed_rows: v.eval_errors.as_ref().and_then(|e| e.first()).map_or(0, |(_, rows)| rows),
        operators: v
            .operators
            .iter()
            .map(|m| OperatorSample { node: m.node.map_or(0, |n| n + 1), operator: m.kind().to_string(), partition: m.partition, counts: m.counts() })
            .collect(),
    })
}
