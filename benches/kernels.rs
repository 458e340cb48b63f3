//! Criterion benchmarks of the kernels on the hot path: building Nexmark bids into Arrow,
//! evaluating a projection and a filter over a chunk, and applying a changelog chunk to a
//! view's multiset state in RocksDB, a join's probe over its in-memory state, an aggregate
//! over its in-memory groups, a top-N per partition, and the exchange's routing of rows.
//!
//! `cargo bench --bench kernels` (in CI they run once each, as tests, through `--all-targets`).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::logical_expr::Operator as BinOp;
use datafusion::physical_expr::expressions::{binary, col, lit};
use openclaw_connectors::nexmark::{table_schema, NexmarkReader, TableType};
use openclaw_connectors::Options;
use openclaw_engine::operators::materialize::Layout;
use openclaw_engine::operators::MaterializedState;
use openclaw_engine::source::SourceReader;
use openclaw_engine::StreamChunk;
use openclaw_storage::Store;

const CHUNK_ROWS: usize = 4096;

fn bid_reader() -> NexmarkReader {
    let mut options = Options::new();
    options.insert("nexmark.table.type".into(), "bid".into());
    options.insert("nexmark.base.time".into(), "1700000000000".into());
    NexmarkReader::new(table_schema(TableType::Bid), &options).expect("valid options")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn one_chunk(rt: &tokio::runtime::Runtime, reader: &mut NexmarkReader) -> StreamChunk {
    rt.block_on(reader.next_chunk(CHUNK_ROWS)).expect("chunk").expect("unbounded")
}

/// Runs `op` over `inputs` (each input's chunks, then its end) to its close; the rows it emitted.
fn run_to_end(rt: &tokio::runtime::Runtime, op: Box<dyn openclaw_engine::Operator>, inputs: Vec<Vec<StreamChunk>>) -> usize {
    use openclaw_engine::{Coordinator, EngineConfig, Message, OperatorContext, Outputs};
    rt.block_on(async {
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(64);
        let mut receivers = vec![];
        for chunks in inputs {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            for chunk in chunks {
                tx.send(Message::Chunk(chunk)).await.unwrap();
            }
            receivers.push(rx);
        }
        let ctx = OperatorContext::new(Outputs::new(vec![out_tx]), Arc::new(EngineConfig::default()), Coordinator::new());
        openclaw_engine::runtime::run_operator(op, receivers, ctx).await.unwrap();
        let mut rows = 0;
        while let Some(m) = out_rx.recv().await {
            if let Message::Chunk(c) = m {
                rows += c.num_rows();
            }
        }
        rows
    })
}

fn nexmark_generator(c: &mut Criterion) {
    let rt = runtime();
    let mut reader = bid_reader();
    let mut g = c.benchmark_group("nexmark");
    g.throughput(Throughput::Elements(CHUNK_ROWS as u64));
    g.bench_function("bid_chunk_4096", |b| b.iter(|| one_chunk(&rt, &mut reader)));
    // The reference crate's events alone (a struct and its strings per bid, no columns):
    // what the reader cost at least before it wrote columns directly.
    let mut reference = nexmark::EventGenerator::new(nexmark::config::NexmarkConfig { base_time: 1_700_000_000_000, ..Default::default() })
        .with_type_filter(nexmark::event::EventType::Bid);
    g.bench_function("reference_crate_bid_events_4096", |b| b.iter(|| reference.by_ref().take(CHUNK_ROWS).count()));
    g.finish();
}

fn stateless(c: &mut Criterion) {
    let rt = runtime();
    let chunk = one_chunk(&rt, &mut bid_reader());
    let schema = chunk.schema();
    let price = col("price", &schema).unwrap();
    let scaled = binary(price.clone(), BinOp::Multiply, lit(908i64), &schema).unwrap();
    let pred = binary(col("auction", &schema).unwrap(), BinOp::Modulo, lit(123i64), &schema).unwrap();
    let pred = binary(pred, BinOp::Eq, lit(0i64), &schema).unwrap();
    let mut g = c.benchmark_group("stateless");
    g.throughput(Throughput::Elements(CHUNK_ROWS as u64));
    g.bench_function("project_price_4096", |b| b.iter(|| scaled.evaluate(chunk.batch()).unwrap()));
    g.bench_function("filter_auction_4096", |b| {
        b.iter(|| {
            let mask = pred.evaluate(chunk.batch()).unwrap().into_array(chunk.num_rows()).unwrap();
            chunk.filter(mask.as_boolean()).unwrap()
        })
    });
    g.finish();
}

fn materialize(c: &mut Criterion) {
    let rt = runtime();
    let mut reader = bid_reader();
    let dir = std::env::temp_dir().join(format!("openclaw-bench-kernels-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let chunk = one_chunk(&rt, &mut reader);
    let state = Arc::new(MaterializedState::new(store, "mv_bench", chunk.schema(), Layout::Multiset).unwrap());
    let mut g = c.benchmark_group("materialize");
    g.throughput(Throughput::Elements(CHUNK_ROWS as u64));
    g.bench_function("multiset_insert_4096", |b| {
        b.iter_batched(|| one_chunk(&rt, &mut reader), |chunk| {
            let mut deltas = std::collections::HashMap::new();
            state.add_deltas(&chunk, &mut deltas).unwrap();
            state.apply_deltas(&mut deltas).unwrap()
        }, BatchSize::SmallInput)
    });
    g.finish();
    // Keep the first column's values observable so the work is not optimised away.
    assert!(chunk.batch().column(0).as_primitive::<Int64Type>().len() == CHUNK_ROWS);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The join's probe and state cache: a self-join of bids on `auction`, four chunks a side
/// arriving alternately, through the operator's runtime loop (as a dataflow runs it), on a
/// fresh operator each time.
fn join(c: &mut Criterion) {
    use openclaw_engine::operators::{JoinKind, JoinOperator, JoinSpec};
    let rt = runtime();
    let mut reader = bid_reader();
    let chunks: Vec<StreamChunk> = (0..8).map(|_| one_chunk(&rt, &mut reader)).collect();
    let schema = chunks[0].schema();
    let mut fields: Vec<datafusion::arrow::datatypes::Field> = vec![];
    for side in ["l", "r"] {
        fields.extend(schema.fields().iter().map(|f| f.as_ref().clone().with_name(format!("{side}_{}", f.name())).with_nullable(true)));
    }
    let spec = JoinSpec {
        kind: JoinKind::Inner,
        keys: [vec![col("auction", &schema).unwrap()], vec![col("auction", &schema).unwrap()]],
        filter: None,
        schema: Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        input_schemas: [schema.clone(), schema.clone()],
        nulls_equal: false,
    };
    let dir = std::env::temp_dir().join(format!("openclaw-bench-join-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let mut n = 0;
    let mut g = c.benchmark_group("join");
    g.throughput(Throughput::Elements((CHUNK_ROWS * chunks.len()) as u64));
    g.bench_function("self_join_8x4096", |b| {
        b.iter_batched(
            || {
                for side in ["l", "r"] {
                    let _ = store.drop_cf(&format!("j{n}_{side}"));
                }
                n += 1;
                JoinOperator::new(spec.clone(), store.clone(), [format!("j{n}_l"), format!("j{n}_r")]).unwrap()
            },
            |op| {
                let sides: Vec<Vec<StreamChunk>> = (0..2).map(|side| chunks.iter().skip(side).step_by(2).cloned().collect()).collect();
                let rows = run_to_end(&rt, Box::new(op), sides);
                assert!(rows > 0, "bids of one auction join");
                rows
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// A `GROUP BY auction` with `count(*)`, `sum(price)` and `max(price)` over 8 chunks of bids:
/// over an append-only input (count and sum by the vectorized kernels, max by DataFusion's
/// `GroupsAccumulator`), and over a changelog (max kept as counted values per group).
fn aggregate(c: &mut Criterion) {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use openclaw_engine::operators::aggregate::{AggCall, AggregateSpec, AggregateTables};
    use openclaw_engine::operators::AggregateOperator;
    let rt = runtime();
    let mut reader = bid_reader();
    let chunks: Vec<StreamChunk> = (0..8).map(|_| one_chunk(&rt, &mut reader)).collect();
    let schema = chunks[0].schema();
    let call = |udaf, name: &str| AggCall {
        expr: Arc::new(AggregateExprBuilder::new(udaf, vec![col("price", &schema).unwrap()]).schema(schema.clone()).alias(name).build().unwrap()),
        filter: None,
    };
    let spec = AggregateSpec {
        group_exprs: vec![col("auction", &schema).unwrap()],
        calls: vec![
            call(datafusion::functions_aggregate::count::count_udaf(), "n"),
            call(datafusion::functions_aggregate::sum::sum_udaf(), "s"),
            call(datafusion::functions_aggregate::min_max::max_udaf(), "hi"),
        ],
        schema: Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Int64, true),
            Field::new("hi", DataType::Int64, true),
        ])),
        emit_on_close: None,
        clean_by: None,
    };
    let dir = std::env::temp_dir().join(format!("openclaw-bench-agg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let mut n = 0;
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements((CHUNK_ROWS * chunks.len()) as u64));
    for (name, append_only) in [("append_only_count_sum_max_8x4096", true), ("changelog_count_sum_max_8x4096", false)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let tables = AggregateTables { groups: format!("a{n}_groups"), values: format!("a{n}_values") };
                    AggregateOperator::new(spec.clone(), store.clone(), tables, &schema, append_only, Default::default()).unwrap()
                },
                |op| {
                    let rows = run_to_end(&rt, Box::new(op), vec![chunks.clone()]);
                    assert!(rows > 0, "every group emits");
                    rows
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// A top-10 per auction by price (q19's shape) over 8 chunks of bids, from an empty state.
fn top_n(c: &mut Criterion) {
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use openclaw_engine::operators::{TopNOperator, TopNSpec};
    let rt = runtime();
    let mut reader = bid_reader();
    let chunks: Vec<StreamChunk> = (0..8).map(|_| one_chunk(&rt, &mut reader)).collect();
    let schema = chunks[0].schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    fields.push(Field::new("rank", DataType::UInt64, true));
    let spec = TopNSpec {
        partition_by: vec![col("auction", &schema).unwrap()],
        order_by: vec![(col("price", &schema).unwrap(), SortOptions { descending: true, nulls_first: false })],
        limit: 10,
        schema: Arc::new(Schema::new(fields)),
        input_schema: schema.clone(),
        clean_by: None,
    };
    let dir = std::env::temp_dir().join(format!("openclaw-bench-topn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let mut n = 0;
    let mut g = c.benchmark_group("top_n");
    g.throughput(Throughput::Elements((CHUNK_ROWS * chunks.len()) as u64));
    g.bench_function("top10_per_auction_8x4096", |b| {
        b.iter_batched(
            || {
                n += 1;
                TopNOperator::new(spec.clone(), store.clone(), format!("t{n}_rows"), Default::default()).unwrap()
            },
            |op| {
                let rows = run_to_end(&rt, Box::new(op), vec![chunks.clone()]);
                assert!(rows > 0, "every auction has a top bid");
                rows
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The exchange's routing of a chunk of bids by auction over 2 and 8 partitions: the row
/// encoding of the key and its hash.
fn exchange(c: &mut Criterion) {
    use openclaw_engine::operators::exchange::partition_of_rows;
    let rt = runtime();
    let mut reader = bid_reader();
    let chunk = one_chunk(&rt, &mut reader);
    let keys = vec![chunk.batch().column_by_name("auction").unwrap().clone()];
    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Elements(chunk.num_rows() as u64));
    for partitions in [2, 8] {
        g.bench_function(format!("route_by_auction_4096_to_{partitions}"), |b| {
            b.iter(|| partition_of_rows(&keys, chunk.num_rows(), partitions).unwrap())
        });
    }
    g.finish();
}

criterion_group!(kernels, nexmark_generator, stateless, materialize, join, aggregate, top_n, exchange);
criterion_main!(kernels);
