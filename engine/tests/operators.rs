//! Operator tests on small text fixtures: each runs the real runtime loop over bounded
//! channels, and the stateful ones write to a real RocksDB.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::Operator as BinOp;
use datafusion::physical_expr::expressions::{binary, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use openclaw_engine::chunk::fixture;
use openclaw_engine::operators::materialize::Layout;
use openclaw_engine::operators::{FilterOperator, MaterializeOperator, MaterializedState, ProjectOperator, UnionOperator};
use openclaw_engine::runtime::run_operator;
use openclaw_engine::table::{TableRequest, TableWrite, TableWriter};
use openclaw_engine::{
    Barrier, BarrierKind, Coordinator, EngineConfig, Message, Operator, OperatorContext, Outputs, StreamChunk,
};
use openclaw_storage::Store;
use tokio::sync::{mpsc, oneshot};

fn barrier(epoch: u64) -> Message {
    Message::Barrier(Barrier { epoch, kind: BarrierKind::Periodic, checkpoint: false, mutation: None })
}

/// Runs `op` over the given inputs (each a list of messages), returns what it emitted.
async fn run(op: Box<dyn Operator>, inputs: Vec<Vec<Message>>) -> Vec<Message> {
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let mut receivers = vec![];
    for messages in inputs {
        let (tx, rx) = mpsc::channel(64);
        for m in messages {
            tx.send(m).await.unwrap();
        }
        receivers.push(rx);
    }
    let ctx = OperatorContext::new(Outputs::new(vec![out_tx]), Arc::new(EngineConfig::default()), Coordinator::new());
    run_operator(op, receivers, ctx).await.unwrap();
    let mut out = vec![];
    while let Some(m) = out_rx.recv().await {
        out.push(m);
    }
    out
}

fn pretty(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| match m {
            Message::Chunk(c) => c.to_pretty(),
            Message::Barrier(b) => format!("barrier {}\n", b.epoch),
            Message::Watermark(w) => format!("watermark {}\n", w.time_us),
            Message::Idle => "idle\n".to_string(),
        })
        .collect()
}

#[tokio::test]
async fn filter_keeps_matching_rows_of_every_op() {
    let chunk = fixture::parse(
        "I T
         + 1 a
         + 20 b
         - 30 c
         U- 5 d
         U+ 50 d",
    );
    let schema = chunk.schema();
    let pred = binary(col("c0", &schema).unwrap(), BinOp::GtEq, lit(10i64), &schema).unwrap();
    let out = run(Box::new(FilterOperator::new(pred)), vec![vec![Message::Chunk(chunk), barrier(1)]]).await;
    assert_eq!(pretty(&out), "+ 20 b\n- 30 c\n+ 50 d\nbarrier 1\n");
}

#[tokio::test]
async fn project_evaluates_expressions_and_keeps_ops() {
    let chunk = fixture::parse(
        "I I
         + 1 2
         - 3 4",
    );
    let schema = chunk.schema();
    let sum: Arc<dyn PhysicalExpr> = binary(col("c0", &schema).unwrap(), BinOp::Plus, col("c1", &schema).unwrap(), &schema).unwrap();
    let out_schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Int64, true)]));
    let out = run(Box::new(ProjectOperator::new(vec![sum], out_schema)), vec![vec![Message::Chunk(chunk)]]).await;
    assert_eq!(pretty(&out), "+ 3\n- 7\n");
}

#[tokio::test]
async fn union_aligns_barriers_across_inputs() {
    let a = fixture::parse("I\n + 1");
    let b = fixture::parse("I\n + 2");
    let late = fixture::parse("I\n + 3");
    let schema = a.schema();
    // Input 0 delivers its barrier first, then a row of the next epoch; that row must wait
    // until input 1's barrier has arrived.
    let out = run(
        Box::new(UnionOperator::new(schema)),
        vec![vec![Message::Chunk(a), barrier(1), Message::Chunk(late)], vec![Message::Chunk(b), barrier(1)]],
    )
    .await;
    let text = pretty(&out);
    let barrier_at = text.find("barrier 1").unwrap();
    assert!(text.find("+ 2").unwrap() < barrier_at, "{text}");
    assert!(text.find("+ 3").unwrap() > barrier_at, "{text}");
    assert_eq!(text.matches("barrier").count(), 1, "one aligned barrier: {text}");
}

fn watermark(column: usize, time_us: i64) -> Message {
    Message::Watermark(openclaw_engine::Watermark { column, time_us })
}

#[tokio::test]
async fn union_watermark_waits_for_a_silent_input_but_not_an_idle_one() {
    let rows = fixture::parse("I\n + 1");
    let schema = rows.schema();
    // Input 1 has rows but no watermark: the union's watermark cannot move.
    let stalled = run(
        Box::new(UnionOperator::new(schema.clone())),
        vec![vec![watermark(0, 10), watermark(0, 20)], vec![Message::Chunk(rows.clone()), barrier(1)]],
    )
    .await;
    assert!(!pretty(&stalled).contains("watermark"), "{}", pretty(&stalled));
    // Once it says it is idle, input 0's watermark goes through; the union is not idle itself.
    let moved = run(
        Box::new(UnionOperator::new(schema.clone())),
        vec![vec![watermark(0, 10), watermark(0, 20), barrier(1)], vec![Message::Chunk(rows.clone()), Message::Idle, barrier(1)]],
    )
    .await;
    let text = pretty(&moved);
    assert!(text.ends_with("watermark 20\nbarrier 1\n"), "{text}");
    assert!(!text.contains("idle"), "{text}");
    // Both idle: the union says so downstream, and keeps the smaller watermark.
    let both = run(
        Box::new(UnionOperator::new(schema)),
        vec![vec![watermark(0, 10), Message::Idle, barrier(1)], vec![watermark(0, 5), Message::Idle, barrier(1)]],
    )
    .await;
    assert_eq!(pretty(&both), "watermark 5\nidle\nbarrier 1\n");
}

#[tokio::test]
async fn a_partitions_merge_holds_the_watermark_for_an_idle_partition() {
    let row = fixture::parse("I\n + 2");
    let schema = row.schema();
    // Both partitions went idle; then the input wakes up: a row reaches partition 0 only, and
    // the broadcast watermark 24 reaches partition 1 first. (The round-robin merge reads
    // partition 1's watermark before partition 0's row.)
    let inputs = || {
        vec![
            vec![watermark(0, 1), Message::Idle, Message::Idle, barrier(1), Message::Chunk(row.clone()), watermark(0, 24)],
            vec![watermark(0, 1), Message::Idle, barrier(1), watermark(0, 24)],
        ]
    };
    let gathered = pretty(&run(Box::new(UnionOperator::of_partitions(schema.clone())), inputs()).await);
    assert_eq!(gathered, "watermark 1\nidle\nbarrier 1\n+ 2\nwatermark 24\n", "the row is never behind the watermark");
    // Distinct streams leave an idle one out (as in Flink): the row would then be late.
    let union = pretty(&run(Box::new(UnionOperator::new(schema)), inputs()).await);
    assert!(union.find("watermark 24").unwrap() < union.find("+ 2").unwrap(), "{union}");
}

fn temp_store(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("openclaw-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (Store::open(&dir).unwrap(), dir)
}

/// The writer of table 1, keyed by its first column, over `schema`.
fn keyed_table_writer(store: &Store, schema: datafusion::arrow::datatypes::SchemaRef) -> TableWriter {
    let state = Arc::new(MaterializedState::new(store.clone(), "table_1", schema, Layout::Keyed(vec![0])).unwrap());
    TableWriter::new(1, state, None, 0).unwrap()
}

/// The barrier of `epoch`, attaching `tx` to table 1 as a backfilled downstream.
fn subscribing(epoch: u64, tx: mpsc::Sender<Message>, progress: Option<Arc<openclaw_engine::backfill::BackfillProgress>>) -> Barrier {
    let sub = openclaw_engine::Subscription { upstream: 1, snapshot: true, sender: std::sync::Mutex::new(Some(tx)), progress, replay_from: None };
    Barrier { epoch, kind: BarrierKind::Periodic, checkpoint: false, mutation: Some(Arc::new(openclaw_engine::Mutation::Subscribe(vec![sub]))) }
}

/// The keyed writer of table 1 running, with a subscriber attached at barrier 1 before any
/// write (so it sees the barrier, then every change).
struct RunningWriter {
    req_tx: mpsc::Sender<TableRequest>,
    barrier_tx: openclaw_engine::coordinator::BarrierSender,
    task: tokio::task::JoinHandle<openclaw_engine::EngineResult<()>>,
    sub_rx: mpsc::Receiver<Message>,
}

impl RunningWriter {
    fn start(store: &Store, schema: datafusion::arrow::datatypes::SchemaRef) -> Self {
        let writer = keyed_table_writer(store, schema);
        let (req_tx, req_rx) = mpsc::channel(4);
        let (barrier_tx, barrier_rx) = openclaw_engine::coordinator::barrier_channel();
        let (sub_tx, sub_rx) = mpsc::channel(64);
        let task = tokio::spawn(writer.run(req_rx, barrier_rx, 1024));
        barrier_tx.send(subscribing(1, sub_tx, None)).unwrap();
        Self { req_tx, barrier_tx, task, sub_rx }
    }

    /// Stops the writer and returns what its subscriber saw.
    async fn finish(mut self) -> Vec<Message> {
        drop(self.req_tx);
        drop(self.barrier_tx);
        self.task.await.unwrap().unwrap();
        let mut seen = vec![];
        while let Some(m) = self.sub_rx.recv().await {
            seen.push(m);
        }
        seen
    }
}

/// The rows a printed changelog adds up to, barriers skipped, with their multiplicities.
fn net_rows(changelog: &str) -> std::collections::BTreeMap<String, i64> {
    let mut net: std::collections::BTreeMap<String, i64> = Default::default();
    for line in changelog.lines().filter(|l| !l.starts_with("barrier")) {
        let (sign, row) = line.split_once(' ').unwrap();
        *net.entry(row.to_string()).or_default() += if sign.ends_with('+') { 1 } else { -1 };
    }
    net.retain(|_, n| *n != 0);
    net
}

#[tokio::test]
async fn materialize_applies_a_changelog_as_a_multiset() {
    let (store, dir) = temp_store("mv");
    let chunk1 = fixture::parse(
        "I T
         + 1 a
         + 1 a
         + 2 b",
    );
    let chunk2 = fixture::parse(
        "I T
         - 1 a
         U- 2 b
         U+ 2 c",
    );
    let state = Arc::new(MaterializedState::new(store.clone(), "mv_1", chunk1.schema(), Layout::Multiset).unwrap());
    let op = MaterializeOperator::new(1, state.clone());
    run(Box::new(op), vec![vec![Message::Chunk(chunk1), Message::Chunk(chunk2)]]).await;
    let rows = StreamChunk::inserts(state.read_all(None, 100).unwrap().remove(0)).to_pretty();
    assert_eq!(rows, "+ 1 a\n+ 2 c\n");
    // Changes are applied per epoch, netted: the row (2, b), inserted and retracted in the same
    // epoch, never reaches the store.
    assert_eq!(store.count_keys("mv_1").unwrap(), 2);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn table_writer_upserts_by_primary_key_and_emits_updates() {
    let (store, dir) = temp_store("table");
    let rows = fixture::parse(
        "I T
         + 1 a
         + 2 b
         + 1 z",
    );
    // The subscriber is attached before any write: it is backfilled (page by page, between
    // the writes), so it sees the barrier first, then rows that add up to the table.
    let writer = RunningWriter::start(&store, rows.schema());
    let (done, wait) = oneshot::channel();
    writer.req_tx.send(TableRequest { write: TableWrite::Upsert(rows.batch().clone()), done }).await.unwrap();
    assert_eq!(wait.await.unwrap().unwrap(), 3);
    let (done, wait) = oneshot::channel();
    let key = fixture::parse("I T\n - 2 .");
    writer.req_tx.send(TableRequest { write: TableWrite::Delete(key.batch().clone()), done }).await.unwrap();
    assert_eq!(wait.await.unwrap().unwrap(), 1);
    let seen = pretty(&writer.finish().await);
    assert!(seen.starts_with("barrier 1\n"), "{seen}");
    assert_eq!(net_rows(&seen), [("1 z".to_string(), 1)].into(), "{seen}");
    assert_eq!(store.count_keys("table_1").unwrap(), 1);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// One prepared write through the writer of table 1: its changes planned, the write applied
/// to the store as a commit would, the decision sent; returns the rows it affected.
async fn prepared_write(req_tx: &mpsc::Sender<TableRequest>, store: &Store, changes: Vec<openclaw_engine::table::Change>) -> usize {
    let (prepared, planned) = oneshot::channel();
    let (decide, decision) = oneshot::channel();
    let (done, wait) = oneshot::channel();
    req_tx.send(TableRequest { write: TableWrite::Prepare { changes, prepared, decision }, done }).await.unwrap();
    store.write_durable(planned.await.unwrap().unwrap()).unwrap();
    decide.send(true).unwrap();
    wait.await.unwrap().unwrap()
}

/// A bulk write of several upserts (as COPY sends them) is planned as one: a key written by
/// an earlier batch of the write is an update of that row, a stored key an update of the
/// stored row, in the order of the rows; a batch of distinct keys replaces stored rows by
/// interleaving them with its own.
#[tokio::test]
async fn table_writer_plans_a_bulk_write_in_row_order() {
    use openclaw_engine::table::Change;
    let (store, dir) = temp_store("bulk");
    let first = fixture::parse("I T\n + 1 x");
    let writer = RunningWriter::start(&store, first.schema());
    let req_tx = &writer.req_tx;
    assert_eq!(prepared_write(req_tx, &store, vec![Change::Upsert(first.batch().clone())]).await, 1);
    let a = fixture::parse("I T\n + 1 a\n + 2 b");
    let b = fixture::parse("I T\n + 2 c\n + 3 d");
    assert_eq!(prepared_write(req_tx, &store, vec![Change::Upsert(a.batch().clone()), Change::Upsert(b.batch().clone())]).await, 4);
    let distinct = fixture::parse("I T\n + 4 w\n + 1 q");
    assert_eq!(prepared_write(req_tx, &store, vec![Change::Upsert(distinct.batch().clone())]).await, 2);
    assert_eq!(pretty(&writer.finish().await), "barrier 1\n+ 1 x\nU- 1 x\nU+ 1 a\n+ 2 b\nU- 2 b\nU+ 2 c\n+ 3 d\n+ 4 w\nU- 1 a\nU+ 1 q\n");
    let stored = StreamChunk::inserts(openclaw_engine::operators::MaterializedState::new(store.clone(), "table_1", first.schema(), Layout::Keyed(vec![0])).unwrap().read_all(None, 100).unwrap().remove(0)).to_pretty();
    assert_eq!(stored, "+ 1 q\n+ 2 c\n+ 3 d\n+ 4 w\n");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A stand-in reader (beside the real connectors, which have their own tests): `limit`
/// one-row chunks, or endless ones.
struct Counter {
    next: i64,
    limit: Option<i64>,
}

#[async_trait::async_trait]
impl openclaw_engine::source::SourceReader for Counter {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        fixture::schema("I")
    }

    async fn next_chunk(&mut self, _max_rows: usize) -> openclaw_engine::EngineResult<Option<StreamChunk>> {
        if self.limit.is_some_and(|l| self.next >= l) {
            return Ok(None);
        }
        self.next += 1;
        Ok(Some(fixture::parse(&format!("I\n + {}", self.next))))
    }

    fn is_bounded(&self) -> bool {
        self.limit.is_some()
    }
}

/// Runs a source until it has emitted a FLUSH barrier; returns what came before it.
async fn rows_before_flush(limit: Option<i64>) -> usize {
    let (barrier_tx, barrier_rx) = openclaw_engine::coordinator::barrier_channel();
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let progress = Arc::new(openclaw_engine::source::SourceProgress::default());
    let reader = Box::new(Counter { next: 0, limit });
    let task = tokio::spawn(openclaw_engine::source::run_source(reader, barrier_rx, Outputs::new(vec![out_tx]), 1, progress, None, None));
    barrier_tx.send(Barrier { epoch: 1, kind: BarrierKind::Flush, checkpoint: false, mutation: None }).unwrap();
    let mut rows = 0;
    // Bounded, so that a source that never passes the barrier fails the test instead of hanging.
    while rows <= 1000 {
        match out_rx.recv().await.expect("the source keeps running") {
            Message::Chunk(c) => rows += c.num_rows(),
            Message::Barrier(b) => {
                assert_eq!(b.epoch, 1);
                break;
            }
            Message::Watermark(_) | Message::Idle => {}
        }
    }
    task.abort();
    rows
}

#[tokio::test]
async fn flush_waits_for_the_end_of_a_bounded_source_only() {
    assert_eq!(rows_before_flush(Some(100)).await, 100, "a bounded source is read to its end first");
    assert!(rows_before_flush(None).await < 100, "an unbounded source passes FLUSH promptly");
}

fn agg(udaf: Arc<datafusion::logical_expr::AggregateUDF>, arg: Arc<dyn PhysicalExpr>, schema: &Arc<Schema>, name: &str) -> openclaw_engine::operators::aggregate::AggCall {
    let expr = datafusion::physical_expr::aggregate::AggregateExprBuilder::new(udaf, vec![arg])
        .schema(schema.clone())
        .alias(name)
        .build()
        .unwrap();
    openclaw_engine::operators::aggregate::AggCall { expr: Arc::new(expr), filter: None }
}

fn aggregate_op(store: &Store, emit_on_close: Option<usize>, prefix: &str) -> Box<dyn Operator> {
    use openclaw_engine::operators::aggregate::{AggregateSpec, AggregateTables};
    let input = fixture::schema("I I");
    let calls = vec![
        agg(datafusion::functions_aggregate::count::count_udaf(), col("c1", &input).unwrap(), &input, "n"),
        agg(datafusion::functions_aggregate::min_max::max_udaf(), col("c1", &input).unwrap(), &input, "hi"),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("hi", DataType::Int64, true),
    ]));
    let spec = AggregateSpec { group_exprs: vec![col("c0", &input).unwrap()], calls, schema, emit_on_close, clean_by: None };
    let tables = AggregateTables { groups: format!("{prefix}_groups"), values: format!("{prefix}_values") };
    Box::new(openclaw_engine::operators::AggregateOperator::new(spec, store.clone(), tables, &input, false, Default::default()).unwrap())
}

#[tokio::test]
async fn aggregate_retracts_and_brings_back_the_next_maximum() {
    let (store, dir) = temp_store("agg");
    let input = vec![
        Message::Chunk(fixture::parse(
            "I I
             + 1 10
             + 1 30
             + 2 5",
        )),
        Message::Chunk(fixture::parse(
            "I I
             - 1 30
             U- 2 5
             U+ 1 5",
        )),
    ];
    let out = run(aggregate_op(&store, None, "a"), vec![input]).await;
    assert_eq!(pretty(&out), "+ 1 2 30\n+ 2 1 5\nU- 1 2 30\nU+ 1 2 10\n- 2 1 5\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn aggregate_emits_each_window_once_when_the_watermark_passes_it() {
    use openclaw_engine::Watermark;
    let (store, dir) = temp_store("eowc");
    // Group key c0 is the "window"; its watermark closes groups below it.
    let input = vec![
        Message::Chunk(fixture::parse(
            "I I
             + 1 10
             + 2 20
             + 1 11",
        )),
        Message::Watermark(Watermark { column: 0, time_us: 2 }),
        Message::Chunk(fixture::parse(
            "I I
             + 1 99
             + 3 30",
        )),
        barrier(1),
    ];
    let out = run(aggregate_op(&store, Some(0), "w"), vec![input]).await;
    // Only inserts (append-only); group 1 closes at watermark 2, the late row is dropped; the
    // open groups reach the store at the barrier.
    assert_eq!(pretty(&out), "+ 1 2 11\nwatermark 2\nbarrier 1\n");
    let mut keys = 0;
    store.scan("w_groups", None, |_, _| { keys += 1; true }).unwrap();
    assert_eq!(keys, 2, "groups 2 and 3 stay open; group 1's state is gone");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn join_retracts_when_one_side_is_deleted_and_pads_outer_rows() {
    use openclaw_engine::operators::{JoinKind, JoinOperator, JoinSpec};
    let (store, dir) = temp_store("join");
    let left = fixture::schema("I T");
    let right = fixture::schema("I I");
    let schema = Arc::new(Schema::new(vec![
        Field::new("l0", DataType::Int64, true),
        Field::new("l1", DataType::Utf8, true),
        Field::new("r0", DataType::Int64, true),
        Field::new("r1", DataType::Int64, true),
    ]));
    let spec = JoinSpec {
        kind: JoinKind::Left,
        keys: [vec![col("c0", &left).unwrap()], vec![col("c0", &right).unwrap()]],
        filter: None,
        schema,
        input_schemas: [left, right],
        nulls_equal: false,
    };
    let op = JoinOperator::new(spec, store.clone(), ["j_l".into(), "j_r".into()]).unwrap();
    let l = vec![
        Message::Chunk(fixture::parse(
            "I T
             + 1 a
             + 2 b",
        )),
        barrier(1),
    ];
    let r = vec![
        barrier(1),
        Message::Chunk(fixture::parse(
            "I I
             + 1 100
             - 1 100",
        )),
    ];
    let out = run(Box::new(op), vec![l, r]).await;
    assert_eq!(
        pretty(&out),
        "+ 1 a null null\n+ 2 b null null\nbarrier 1\n- 1 a null null\n+ 1 a 1 100\n- 1 a 1 100\n+ 1 a null null\n"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A join holds its changes in memory until a barrier; when barriers are slow to come and the
/// changes outgrow the operators' cache budget, it writes them back early instead of growing.
#[tokio::test]
async fn a_join_over_its_cache_budget_writes_back_before_any_barrier() {
    use openclaw_engine::operators::{JoinKind, JoinOperator, JoinSpec};
    let dir = std::env::temp_dir().join(format!("openclaw-engine-join-budget-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 64 KiB of state: 32 KiB for the operators' caches, a few hundred rows.
    let store = Store::open_with_cache(&dir, 64 << 10).unwrap();
    let side = fixture::schema("I T");
    let schema = Arc::new(Schema::new(vec![
        Field::new("l0", DataType::Int64, true),
        Field::new("l1", DataType::Utf8, true),
        Field::new("r0", DataType::Int64, true),
        Field::new("r1", DataType::Utf8, true),
    ]));
    let spec = JoinSpec {
        kind: JoinKind::Inner,
        keys: [vec![col("c0", &side).unwrap()], vec![col("c0", &side).unwrap()]],
        filter: None,
        schema,
        input_schemas: [side.clone(), side],
        nulls_equal: false,
    };
    let op = JoinOperator::new(spec, store.clone(), ["jb_l".into(), "jb_r".into()]).unwrap();
    let chunks: Vec<Message> = (0..20)
        .map(|c| {
            let rows: String = (0..100).map(|i| format!("+ {} row-{c}-{i}\n", c * 100 + i)).collect();
            Message::Chunk(fixture::parse(&format!("I T\n{rows}")))
        })
        .collect();
    let out = run(Box::new(op), vec![chunks, vec![]]).await;
    assert_eq!(pretty(&out), "", "nothing on the right: nothing joins");
    let written = store.count_keys("jb_l").unwrap();
    assert!(written >= 1_000, "no barrier came, yet the rows beyond the budget were written back: {written} of 2,000");
    assert_eq!(store.operator_cache().used_bytes(), 0, "the dropped operator released its cache");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn top_n_promotes_the_runner_up_when_the_leader_is_deleted() {
    use datafusion::arrow::compute::SortOptions;
    use openclaw_engine::operators::{TopNOperator, TopNSpec};
    let (store, dir) = temp_store("topn");
    let input = fixture::schema("T I");
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("rn", DataType::UInt64, false));
    let spec = TopNSpec {
        partition_by: vec![col("c0", &input).unwrap()],
        order_by: vec![(col("c1", &input).unwrap(), SortOptions { descending: true, nulls_first: false })],
        limit: 1,
        schema: Arc::new(Schema::new(fields)),
        input_schema: input,
        clean_by: None,
    };
    let op = TopNOperator::new(spec, store.clone(), "t_rows".into(), Default::default()).unwrap();
    let chunks = vec![
        Message::Chunk(fixture::parse(
            "T I
             + x 5
             + x 9
             + y 1",
        )),
        Message::Chunk(fixture::parse(
            "T I
             - x 9",
        )),
    ];
    let out = run(Box::new(op), vec![chunks]).await;
    assert_eq!(pretty(&out), "+ x 9 1\n+ y 1 1\nU- x 9 1\nU+ x 5 1\n");
    let _ = std::fs::remove_dir_all(dir);
}

/// A downstream being backfilled keeps its channel full of pages; the table's writer must not
/// wait on it for barriers or writes (they queue in the backfill's outbox, in order), so that
/// INSERT and FLUSH stay fast while a view backfills. The downstream, read at last, gets
/// every barrier in order and rows that add up to the table.
#[tokio::test]
async fn a_backfill_with_a_full_channel_never_holds_up_the_writer() {
    let (store, dir) = temp_store("outbox");
    let rows = fixture::parse(
        "I T
         + 1 a
         + 2 b
         + 3 c",
    );
    let writer = keyed_table_writer(&store, rows.schema());
    let (req_tx, req_rx) = mpsc::channel(4);
    let (barrier_tx, barrier_rx) = openclaw_engine::coordinator::barrier_channel();
    let task = tokio::spawn(writer.run(req_rx, barrier_rx, 1));
    let write = |batch: datafusion::arrow::array::RecordBatch| {
        let req_tx = req_tx.clone();
        async move {
            let (done, wait) = oneshot::channel();
            req_tx.send(TableRequest { write: TableWrite::Upsert(batch), done }).await.unwrap();
            wait.await.unwrap().unwrap()
        }
    };
    write(rows.batch().clone()).await;
    // A downstream whose channel holds one message, and nobody reads it yet.
    let (sub_tx, mut sub_rx) = mpsc::channel(1);
    let progress = Arc::new(openclaw_engine::backfill::BackfillProgress::default());
    barrier_tx.send(subscribing(1, sub_tx, Some(progress.clone()))).unwrap();
    // The barrier and the first page get through; then the channel is full for good.
    let mut seen = vec![sub_rx.recv().await.unwrap(), sub_rx.recv().await.unwrap()];
    let last_epoch = 100;
    let mut table: std::collections::BTreeMap<i64, String> = [(1, "a"), (2, "b"), (3, "c")].into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let writes_and_barriers = async {
        for epoch in 2..=last_epoch {
            barrier_tx.send(Barrier { epoch, kind: BarrierKind::Periodic, checkpoint: false, mutation: None }).unwrap();
            // Keys behind the backfill's cursor (forwarded) and ahead of it (read by a page).
            let key = epoch as i64 % 3 + 1;
            write(fixture::parse(&format!("I T\n + {key} v{epoch}")).batch().clone()).await;
            table.insert(key, format!("v{epoch}"));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), writes_and_barriers).await.expect("the writer waited for the backfilling downstream");
    // Now the downstream reads: the held messages and the pages reach it, then a last barrier.
    let drained = async {
        let finished = progress.finished();
        tokio::pin!(finished);
        loop {
            tokio::select! {
                m = sub_rx.recv() => seen.push(m.unwrap()),
                done = &mut finished => break assert!(done),
            }
        }
        let last = last_epoch + 1;
        barrier_tx.send(Barrier { epoch: last, kind: BarrierKind::Periodic, checkpoint: false, mutation: None }).unwrap();
        loop {
            let m = sub_rx.recv().await.unwrap();
            let end = matches!(&m, Message::Barrier(b) if b.epoch == last);
            seen.push(m);
            if end {
                break;
            }
        }
    };
    drained.await;
    drop(barrier_tx);
    task.await.unwrap().unwrap();
    let last_epoch = last_epoch + 1;
    let epochs: Vec<u64> = seen.iter().filter_map(|m| if let Message::Barrier(b) = m { Some(b.epoch) } else { None }).collect();
    assert_eq!(epochs, (1..=last_epoch).collect::<Vec<_>>());
    let text = pretty(&seen);
    let table: std::collections::BTreeMap<String, i64> = table.iter().map(|(k, v)| (format!("{k} {v}"), 1)).collect();
    assert_eq!(net_rows(&text), table, "{text}");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// count, sum (the vectorized kernels) and avg (group by group) over inserts and retractions
/// with NULLs, with the state written back at a barrier and read back by a new operator.
#[tokio::test]
async fn aggregate_kernels_retract_and_resume_from_the_written_back_state() {
    use openclaw_engine::operators::aggregate::{AggregateSpec, AggregateTables};
    let (store, dir) = temp_store("agg-kernels");
    let op = |store: &Store| -> Box<dyn Operator> {
        let input = fixture::schema("I I");
        let c1 = || col("c1", &input).unwrap();
        let calls = vec![
            agg(datafusion::functions_aggregate::count::count_udaf(), c1(), &input, "n"),
            agg(datafusion::functions_aggregate::sum::sum_udaf(), c1(), &input, "s"),
            // The planner casts avg's argument to DOUBLE; so does this test.
            agg(datafusion::functions_aggregate::average::avg_udaf(), datafusion::physical_expr::expressions::cast(c1(), &input, DataType::Float64).unwrap(), &input, "a"),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Int64, true),
            Field::new("a", DataType::Float64, true),
        ]));
        let spec = AggregateSpec { group_exprs: vec![col("c0", &input).unwrap()], calls, schema, emit_on_close: None, clean_by: None };
        let tables = AggregateTables { groups: "k_groups".into(), values: "k_values".into() };
        Box::new(openclaw_engine::operators::AggregateOperator::new(spec, store.clone(), tables, &input, false, Default::default()).unwrap())
    };
    let first = vec![
        Message::Chunk(fixture::parse(
            "I I
             + 1 10
             + 1 .
             + 2 5",
        )),
        Message::Chunk(fixture::parse(
            "I I
             - 1 10
             + 2 7",
        )),
        barrier(1),
    ];
    let out = run(op(&store), vec![first]).await;
    assert_eq!(
        pretty(&out),
        "+ 1 1 10 10.0\n+ 2 1 5 5.0\nU- 1 1 10 10.0\nU+ 1 0 null null\nU- 2 1 5 5.0\nU+ 2 2 12 6.0\nbarrier 1\n"
    );
    // A new operator over the same column families continues from what the barrier wrote.
    // A chunk whose groups are partly new: a new group starts from no rows, whatever the old
    // groups beside it hold, so that retracting its one row deletes it.
    let second = vec![
        Message::Chunk(fixture::parse(
            "I I
             - 1 .
             - 2 5
             + 3 4",
        )),
        Message::Chunk(fixture::parse(
            "I I
             - 3 4",
        )),
    ];
    let out = run(op(&store), vec![second]).await;
    assert_eq!(pretty(&out), "- 1 0 null null\nU- 2 2 12 6.0\nU+ 2 1 7 7.0\n+ 3 1 4 4.0\n- 3 1 4 4.0\n");
    let _ = std::fs::remove_dir_all(dir);
}

/// A stand-in for SQL's `PROCTIME()` with a fixed clock, so the test is deterministic.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FixedProctime(datafusion::logical_expr::Signature);

impl datafusion::logical_expr::ScalarUDFImpl for FixedProctime {
    fn name(&self) -> &str {
        "proctime"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.0
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, Some("+00:00".into())))
    }
    fn invoke_with_args(&self, _: datafusion::logical_expr::ScalarFunctionArgs) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        Ok(datafusion::logical_expr::ColumnarValue::Scalar(datafusion::common::ScalarValue::TimestampMillisecond(Some(1_700_000_000_123), Some("+00:00".into()))))
    }
}

#[tokio::test]
async fn project_of_processing_time_sends_its_watermark_after_each_chunk() {
    let chunk = fixture::parse("I\n + 1\n + 2");
    let schema = chunk.schema();
    let signature = datafusion::logical_expr::Signature::exact(vec![], datafusion::logical_expr::Volatility::Volatile);
    let udf = Arc::new(datafusion::logical_expr::ScalarUDF::from(FixedProctime(signature)));
    let proctime: Arc<dyn PhysicalExpr> =
        Arc::new(datafusion::physical_expr::ScalarFunctionExpr::try_new(udf, vec![], &schema, Default::default()).unwrap());
    assert!(openclaw_engine::operators::project::is_processing_time(&proctime));
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("c0", DataType::Int64, true),
        Field::new("p", proctime.data_type(&schema).unwrap(), false),
    ]));
    let exprs = vec![col("c0", &schema).unwrap(), proctime];
    let out = run(Box::new(ProjectOperator::new(exprs, out_schema)), vec![vec![Message::Chunk(chunk), barrier(1)]]).await;
    let watermarks: Vec<(usize, i64)> = out.iter().filter_map(|m| match m {
        Message::Watermark(w) => Some((w.column, w.time_us)),
        _ => None,
    }).collect();
    assert_eq!(watermarks, vec![(1, 1_700_000_000_123_000)], "{}", pretty(&out));
    assert!(matches!(out.last(), Some(Message::Barrier(_))));
}
