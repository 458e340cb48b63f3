//! Criterion benchmarks of the kernels on the hot path: building Nexmark bids into Arrow,
//! evaluating a projection and a filter over a chunk, and applying a changelog chunk to a
//! view's multiset state in RocksDB.
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

fn nexmark_generator(c: &mut Criterion) {
    let rt = runtime();
    let mut reader = bid_reader();
    let mut g = c.benchmark_group("nexmark");
    g.throughput(Throughput::Elements(CHUNK_ROWS as u64));
    g.bench_function("bid_chunk_4096", |b| b.iter(|| one_chunk(&rt, &mut reader)));
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

criterion_group!(kernels, nexmark_generator, stateless, materialize);
criterion_main!(kernels);
