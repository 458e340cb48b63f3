//! The streaming plan: what SQL lowers to, and what [`build_dataflow`] turns into running
//! tasks connected by bounded channels.

use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use openclaw_storage::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::coordinator::RootId;
use crate::metrics::{OperatorMetrics, TaskRole};
use crate::operators::aggregate::AggregateTables;
use crate::operators::project::{is_processing_time, monotone_in};
use crate::watermark::{WatermarkGenerator, WatermarkSpec};
use datafusion::physical_plan::expressions::Column;
use crate::operators::exchange::{ExchangeOperator, MAX_PARALLELISM};
use crate::operators::{
    AggregateOperator, AggregateSpec, FilterOperator, JoinKind, JoinOperator, JoinSpec, ProjectOperator, TemporalFilterOperator, TemporalFilterSpec, TopNOperator, TopNSpec, OverWindowOperator, OverWindowSpec, SessionWindowOperator, UnnestOperator, UnnestSpec, LookupJoinOperator, LookupJoinSpec,
    UnionOperator,
};
use crate::source::{run_source, RootCheckpoints, SourceProgress, SourceReader};
use crate::{
    Coordinator, EngineConfig, EngineResult, Message, ObjectId, Operator, OperatorContext, Outputs,
    Subscription,
};

/// A node of a streaming plan.
pub enum StreamNode {
    /// The rows of an existing table or view: its current content, then every change.
    Subscribe { object: ObjectId, name: String, schema: SchemaRef, watermark_columns: Vec<usize> },
    /// A new reader of a source, owned by this dataflow.
    Source { name: String, reader: Box<dyn SourceReader>, progress: Arc<SourceProgress>, watermark: Option<WatermarkSpec> },
    Filter { predicate: Arc<dyn PhysicalExpr>, input: Box<StreamNode> },
    /// A filter on `now()`: rows pass until their expiry, then are retracted.
    TemporalFilter { spec: TemporalFilterSpec, input: Box<StreamNode> },
    Project { exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef, input: Box<StreamNode> },
    Union { inputs: Vec<StreamNode>, schema: SchemaRef },
    Aggregate { spec: AggregateSpec, input: Box<StreamNode> },
    Join { spec: JoinSpec, inputs: Box<[StreamNode; 2]> },
    TopN { spec: TopNSpec, input: Box<StreamNode> },
    /// Window functions over partitions, recomputed per partition a change touches.
    OverWindow { spec: OverWindowSpec, input: Box<StreamNode> },
    /// Each row once per element of its list columns.
    Unnest { spec: UnnestSpec, input: Box<StreamNode> },
    /// A temporal join: each row joined with a table's stored rows as they are when it arrives.
    LookupJoin { spec: LookupJoinSpec, input: Box<StreamNode> },
}

/// Whether every input reads exactly one and the same table, view or source: the branches of
/// one stream, as `HOP` rewrites into.
fn same_origin(inputs: &[StreamNode]) -> bool {
    fn leaves(node: &StreamNode, out: &mut Vec<String>) {
        match node {
            StreamNode::Subscribe { object, .. } => out.push(format!("object {object}")),
            StreamNode::Source { name, .. } => out.push(format!("source {name}")),
            other => other.children().into_iter().for_each(|c| leaves(c, out)),
        }
    }
    let origins: Vec<Vec<String>> = inputs.iter().map(|i| {
        let mut out = vec![];
        leaves(i, &mut out);
        out
    }).collect();
    origins.len() > 1 && origins.iter().all(|o| o.len() == 1 && o[0] == origins[0][0])
}

impl StreamNode {
    pub fn schema(&self) -> SchemaRef {
        match self {
            StreamNode::Subscribe { schema, .. } => schema.clone(),
            StreamNode::Source { reader, .. } => reader.schema(),
            StreamNode::Filter { input, .. } | StreamNode::TemporalFilter { input, .. } => input.schema(),
            StreamNode::Project { schema, .. } | StreamNode::Union { schema, .. } => schema.clone(),
            StreamNode::Aggregate { spec, .. } => spec.schema.clone(),
            StreamNode::Join { spec, .. } => spec.schema.clone(),
            StreamNode::TopN { spec, .. } => spec.schema.clone(),
            StreamNode::OverWindow { spec, .. } => spec.schema.clone(),
            StreamNode::Unnest { spec, .. } => spec.schema.clone(),
            StreamNode::LookupJoin { spec, .. } => spec.schema.clone(),
        }
    }

    /// Whether the node only ever emits inserts: what reads it may keep less state (an
    /// aggregate's `min`/`max` as one value).
    pub fn append_only(&self) -> bool {
        match self {
            StreamNode::Subscribe { .. } | StreamNode::TemporalFilter { .. } | StreamNode::TopN { .. } | StreamNode::OverWindow { .. } => false,
            StreamNode::Source { reader, .. } => reader.is_append_only(),
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } | StreamNode::Unnest { input, .. } | StreamNode::LookupJoin { input, .. } => input.append_only(),
            StreamNode::Union { inputs, .. } => inputs.iter().all(|i| i.append_only()),
            StreamNode::Aggregate { spec, .. } => spec.emit_on_close.is_some(),
            StreamNode::Join { spec, inputs } => spec.kind == JoinKind::Inner && inputs.iter().all(|i| i.append_only()),
        }
    }

    /// The output columns that carry watermarks (event time that only moves forward).
    pub fn watermark_columns(&self) -> Vec<usize> {
        match self {
            StreamNode::Subscribe { watermark_columns, .. } => watermark_columns.clone(),
            StreamNode::Source { watermark, .. } => watermark.iter().map(|w| w.column).collect(),
            StreamNode::Filter { input, .. }
            | StreamNode::TemporalFilter { input, .. }
            | StreamNode::TopN { input, .. }
            | StreamNode::LookupJoin { input, .. } => input.watermark_columns(),
            StreamNode::OverWindow { spec, input } => match spec.session {
                None => input.watermark_columns(),
                // A session window turns the time's watermark into its end's.
                Some(s) => s.end_column.filter(|_| input.watermark_columns().contains(&s.ts_column)).into_iter().collect(),
            },
            StreamNode::Unnest { spec, input } => {
                input.watermark_columns().into_iter().filter(|c| !spec.lists.iter().any(|l| l.index_in_input_schema == *c)).collect()
            }
            StreamNode::Project { exprs, input, .. } => {
                let inputs = input.watermark_columns();
                (0..exprs.len()).filter(|&i| inputs.iter().any(|&c| monotone_in(&exprs[i], c)) || is_processing_time(&exprs[i])).collect()
            }
            StreamNode::Union { inputs, .. } => {
                let mut cols = inputs.first().map(|i| i.watermark_columns()).unwrap_or_default();
                for i in &inputs[1..] {
                    let other = i.watermark_columns();
                    cols.retain(|c| other.contains(c));
                }
                cols
            }
            StreamNode::Aggregate { spec, input } => {
                let inputs = input.watermark_columns();
                spec.group_exprs
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.downcast_ref::<Column>().is_some_and(|c| inputs.contains(&c.index())))
                    .map(|(i, _)| i)
                    .collect()
            }
            StreamNode::Join { spec, inputs } => {
                let (l, r) = (inputs[0].watermark_columns(), inputs[1].watermark_columns());
                let left_width = spec.input_schemas[0].fields().len();
                let mut cols: Vec<usize> = spec
                    .watermark_pairs()
                    .into_iter()
                    .filter(|(a, b)| l.contains(a) && r.contains(b))
                    .flat_map(|(a, b)| spec.watermark_outputs(a, b, left_width))
                    .collect();
                let carried = |side: &[usize], bounds: &[(usize, i64)]| bounds.iter().any(|(c, _)| side.contains(c));
                cols.extend(spec.derived_watermarks().into_iter().filter(|d| carried(&l, &d.bounds[0]) && carried(&r, &d.bounds[1])).map(|d| d.output));
                cols
            }
        }
    }

    /// One line per node, children indented, as `EXPLAIN` prints it. Stateful nodes name
    /// their state tables, numbered in the order [`build_dataflow`] creates them, and how many
    /// partitions they run as when built with `parallelism`.
    pub fn explain(&self, out: &mut String, depth: usize, parallelism: usize) {
        self.explain_numbered(out, depth, &mut 0, parallelism);
    }

    /// A digest of how the plan lays out its state: the plan as EXPLAIN prints it, with each
    /// node's schema and what orders or frees its state. A view's checkpointed state resumes
    /// only under a plan with the same digest; a planner that lays it out differently (a newer
    /// version's) rebuilds the view instead of misreading it.
    pub fn fingerprint(&self, parallelism: usize) -> String {
        let mut text = String::new();
        self.explain(&mut text, 0, parallelism);
        self.describe_layout(&mut text);
        if self.source_reads().values().any(|&n| n > 1) {
            // Its branches share one reader, whose position is stored once: a checkpoint
            // taken with one reader per branch cannot be resumed.
            text.push_str("shared sources\n");
        }
        format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
    }

    fn describe_layout(&self, out: &mut String) {
        let _ = match self {
            StreamNode::Aggregate { spec, input } => writeln!(
                out,
                "agg groups {:?} clean {:?} emit {:?} append-only input {} calls {:?}",
                spec.group_exprs.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                spec.clean_by,
                spec.emit_on_close,
                input.append_only(),
                spec.calls.iter().map(|c| (c.expr.name().to_string(), c.expr.expressions().iter().map(|e| e.to_string()).collect::<Vec<_>>())).collect::<Vec<_>>()
            ),
            StreamNode::TopN { spec, .. } => writeln!(out, "topn clean {:?} input {:?}", spec.clean_by, spec.input_schema),
            StreamNode::OverWindow { spec, .. } => writeln!(
                out,
                "overwindow clean {:?} session {:?} input {:?} order {:?} functions {:?}",
                spec.sort.clean_by,
                spec.session,
                spec.sort.input_schema,
                spec.sort.order_by.iter().map(|(e, o)| format!("{e} {o:?}")).collect::<Vec<_>>(),
                spec.functions.iter().map(|f| f.name().to_string()).collect::<Vec<_>>()
            ),
            StreamNode::Join { spec, .. } => writeln!(out, "join inputs {:?}", spec.input_schemas),
            _ => Ok(()),
        };
        let _ = writeln!(out, "{:?}", self.schema());
        for child in self.children() {
            child.describe_layout(out);
        }
    }

    /// The key expressions, per input, that partition this node's state; `None` for nodes
    /// without state, or whose state has one key only (a global aggregate, an unpartitioned
    /// top-N), which run as one partition.
    pub fn partition_keys(&self) -> Option<Vec<Vec<Arc<dyn PhysicalExpr>>>> {
        let keys = match self {
            StreamNode::Aggregate { spec, .. } => vec![spec.group_exprs.clone()],
            StreamNode::TopN { spec, .. } => vec![spec.partition_by.clone()],
            StreamNode::OverWindow { spec, .. } => vec![spec.sort.partition_by.clone()],
            StreamNode::Join { spec, .. } => spec.keys.to_vec(),
            _ => return None,
        };
        keys.iter().all(|k| !k.is_empty()).then_some(keys)
    }

    /// How many source readers the plan builds (each stores a position in checkpoints).
    pub fn source_count(&self) -> usize {
        let own = usize::from(matches!(self, StreamNode::Source { .. }));
        own + self.children().iter().map(|c| c.source_count()).sum::<usize>()
    }

    /// How many partitions this node runs as under `parallelism`.
    fn partitions(&self, parallelism: usize) -> usize {
        if self.partition_keys().is_some() { parallelism.clamp(1, MAX_PARALLELISM) } else { 1 }
    }

    fn explain_numbered(&self, out: &mut String, depth: usize, tables: &mut usize, parallelism: usize) {
        let pad = "  ".repeat(depth);
        let parts = match self.partitions(parallelism) {
            1 => String::new(),
            n => format!(" [{n} partitions by hash]"),
        };
        let _ = match self {
            StreamNode::Subscribe { name, .. } => writeln!(out, "{pad}StreamScan: {name} (snapshot, then changes)"),
            StreamNode::Source { name, .. } => writeln!(out, "{pad}SourceReader: {name}"),
            StreamNode::Filter { predicate, .. } => writeln!(out, "{pad}StreamFilter: {predicate}"),
            StreamNode::LookupJoin { spec, .. } => {
                let keys: Vec<String> = spec.keys.iter().map(|k| k.to_string()).collect();
                let kind = if spec.left_outer { "Left" } else { "Inner" };
                writeln!(out, "{pad}StreamLookupJoin: {kind}, [{}] looked up in {} by its primary key (temporal, no state)", keys.join(", "), spec.table.cf)
            }
            StreamNode::Unnest { spec, .. } => {
                let lists: Vec<String> = spec.lists.iter().map(|l| format!("{}@{}", spec.input_schema.field(l.index_in_input_schema).name(), l.index_in_input_schema)).collect();
                writeln!(out, "{pad}StreamUnnest: [{}]", lists.join(", "))
            }
            StreamNode::TemporalFilter { spec, .. } => {
                let t = next_table(tables);
                let bound = if spec.inclusive { "<=" } else { "<" };
                writeln!(out, "{pad}StreamTemporalFilter: now() {bound} {} (state: s{t}_rows)", spec.expiry)
            }
            StreamNode::Project { exprs, schema, .. } => {
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| format!("{e} AS {}", f.name()))
                    .collect();
                writeln!(out, "{pad}StreamProject: {}", items.join(", "))
            }
            StreamNode::Union { .. } => writeln!(out, "{pad}StreamUnion (all)"),
            StreamNode::Aggregate { spec, .. } => {
                let n = spec.group_exprs.len();
                let groups: Vec<String> = (0..n).map(|i| spec.schema.field(i).name().clone()).collect();
                let calls: Vec<String> = spec.calls.iter().map(|c| c.expr.name().to_string()).collect();
                let emit = if spec.emit_on_close.is_some() { ", emit on window close" } else { "" };
                let t = next_table(tables);
                writeln!(
                    out,
                    "{pad}StreamHashAgg: group by [{}], aggs [{}]{emit} (state: s{t}_groups, s{t}_values){parts}",
                    groups.join(", "),
                    calls.join(", ")
                )
            }
            StreamNode::Join { spec, .. } => {
                let t = next_table(tables);
                let keys = |i: usize| spec.keys[i].iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
                let filter = spec.filter.as_ref().map(|f| format!(", filter {f}")).unwrap_or_default();
                writeln!(
                    out,
                    "{pad}StreamHashJoin: {:?}, [{}] {} [{}]{filter} (state: s{t}_left, s{t}_right){parts}",
                    spec.kind,
                    keys(0),
                    if spec.nulls_equal { "IS NOT DISTINCT FROM" } else { "=" },
                    keys(1)
                )
            }
            StreamNode::TopN { spec, .. } => {
                let t = next_table(tables);
                let part: Vec<String> = spec.partition_by.iter().map(|e| e.to_string()).collect();
                let order: Vec<String> = spec
                    .order_by
                    .iter()
                    .map(|(e, o)| format!("{e}{}", if o.descending { " DESC" } else { "" }))
                    .collect();
                writeln!(
                    out,
                    "{pad}StreamGroupTopN: limit {}, partition by [{}], order by [{}] (state: s{t}_rows){parts}",
                    spec.limit,
                    part.join(", "),
                    order.join(", ")
                )
            }
            StreamNode::OverWindow { spec, .. } => {
                let t = next_table(tables);
                let part: Vec<String> = spec.sort.partition_by.iter().map(|e| e.to_string()).collect();
                let order: Vec<String> = spec.sort.order_by.iter().map(|(e, o)| format!("{e}{}", if o.descending { " DESC" } else { "" })).collect();
                let functions: Vec<String> = spec.functions.iter().map(|f| f.name().to_string()).collect();
                match spec.session {
                    Some(s) => writeln!(
                        out,
                        "{pad}StreamSessionWindow: gap {}, partition by [{}], order by [{}] (state: s{t}_rows, s{t}_ends){parts}",
                        interval_text(s.gap_us),
                        part.join(", "),
                        order.join(", ")
                    ),
                    None => writeln!(
                        out,
                        "{pad}StreamOverWindow: [{}], partition by [{}], order by [{}] (state: s{t}_rows){parts}",
                        functions.join(", "),
                        part.join(", "),
                        order.join(", ")
                    ),
                }
            }
        };
        for child in self.children() {
            child.explain_numbered(out, depth + 1, tables, parallelism);
        }
    }

    /// How many nodes read each source, by name. A source read more than once is read by one
    /// reader whose output goes to every such node.
    pub fn source_reads(&self) -> HashMap<String, usize> {
        fn count(node: &StreamNode, out: &mut HashMap<String, usize>) {
            if let StreamNode::Source { name, .. } = node {
                *out.entry(name.clone()).or_default() += 1;
            }
            node.children().into_iter().for_each(|c| count(c, out));
        }
        let mut out = HashMap::new();
        count(self, &mut out);
        out
    }

    fn children(&self) -> Vec<&StreamNode> {
        match self {
            StreamNode::Subscribe { .. } | StreamNode::Source { .. } => vec![],
            StreamNode::Filter { input, .. }
            | StreamNode::TemporalFilter { input, .. }
            | StreamNode::Project { input, .. }
            | StreamNode::Unnest { input, .. }
            | StreamNode::LookupJoin { input, .. }
            | StreamNode::Aggregate { input, .. }
            | StreamNode::TopN { input, .. }
            | StreamNode::OverWindow { input, .. } => {
                vec![input]
            }
            StreamNode::Union { inputs, .. } => inputs.iter().collect(),
            StreamNode::Join { inputs, .. } => inputs.iter().collect(),
        }
    }
}

fn next_table(tables: &mut usize) -> usize {
    *tables += 1;
    *tables
}

/// The running tasks of one view, and what it registered with the coordinator.
pub struct Dataflow {
    pub tasks: Vec<(String, JoinHandle<EngineResult<()>>)>,
    pub roots: Vec<RootId>,
    /// The barrier inputs of `roots`, registered with the barrier that starts the dataflow
    /// ([`Coordinator::inject_attaching`]).
    pub pending_roots: Vec<(RootId, crate::coordinator::BarrierSender)>,
    /// Subscriptions to hand to the upstream objects in the barrier that starts the view.
    pub subscriptions: Vec<Subscription>,
    /// The operators' state, to show and to drop with the view.
    pub state_tables: Vec<StateTable>,
    /// Rows dropped because they arrived behind the watermark of a closed window.
    pub late_rows: Arc<AtomicU64>,
    /// The column families that count rows whose expressions failed
    /// ([`crate::eval_errors::ErrorTable`]), one per projection or filter; each exists only
    /// once a row failed there. To drop with the view.
    pub error_tables: Vec<String>,
    /// Every task's counters, in the order the tasks were spawned (`EXPLAIN ANALYZE`,
    /// `/metrics`).
    pub operators: Vec<Arc<OperatorMetrics>>,
}

/// One state table of an operator (`s<n>_<role>` in `EXPLAIN`), split over the column
/// families of its partitions.
#[derive(Debug, Clone)]
pub struct StateTable {
    /// `<prefix>_s<n>_<role>`.
    pub name: String,
    /// One per partition: the name itself when the operator runs as one partition, else
    /// `<name>_p<k>`. Partitions hold disjoint keys, so their key counts add up.
    pub column_families: Vec<String>,
}

/// Where the operators of one dataflow keep their state, and how widely they spread it.
pub struct StateLocation {
    pub store: Store,
    /// The view (or sink) whose dataflow this is.
    pub owner: ObjectId,
    /// Prefix of every state column family (the view's own name in the store).
    pub prefix: String,
    /// Partitions of each stateful operator whose state is keyed (the view's
    /// `streaming_parallelism`). Each partition is its own task, so they run on different
    /// worker threads; results do not depend on it.
    pub parallelism: usize,
    /// Positions from a checkpoint when the view resumes from it: its state is already in the
    /// store, so its sources seek to where they stood and its subscriptions skip the snapshot.
    pub resume: Option<std::collections::BTreeMap<String, u64>>,
    /// Where a view counts rows whose expressions fail ([`crate::eval_errors`]); without it
    /// (a sink, a subscription) such a row fails the dataflow.
    pub eval_errors: Option<Arc<crate::eval_errors::EvalErrors>>,
}

/// Spawns the tasks of `plan`, ending in `sink` (the view's materialize operator).
pub fn build_dataflow(
    plan: StreamNode,
    sink: Box<dyn Operator>,
    state: &StateLocation,
    config: &Arc<EngineConfig>,
    coordinator: &Arc<Coordinator>,
) -> EngineResult<Dataflow> {
    let mut df = Dataflow { tasks: vec![], roots: vec![], pending_roots: vec![], subscriptions: vec![], state_tables: vec![], late_rows: Default::default(), error_tables: vec![], operators: vec![] };
    let source_reads = plan.source_reads();
    let mut b = Builder { config, coordinator, state, tables: 0, sources: 0, source_reads, shared: HashMap::new(), node: None, nodes: 0, df: &mut df };
    let built = b.build(plan);
    let input = match built {
        Ok(input) => input,
        Err(e) => {
            // Tasks spawned before the failure hold no state yet; stop them.
            df.tasks.iter().for_each(|(_, t)| t.abort());
            return Err(e);
        }
    };
    b.spawn_operator(sink, vec![input], Outputs::default());
    Ok(df)
}

struct Builder<'a> {
    config: &'a Arc<EngineConfig>,
    coordinator: &'a Arc<Coordinator>,
    state: &'a StateLocation,
    tables: usize,
    /// Source readers built so far: the n-th stores its position as `<prefix>_source<n>`.
    sources: usize,
    /// How many nodes of the plan read each source ([`StreamNode::source_reads`]).
    source_reads: HashMap<String, usize>,
    /// Outputs of sources already built, waiting for the other nodes that read them: one
    /// reader feeds every branch of a source read several times (HOP's windows, self-joins).
    shared: HashMap<String, Vec<mpsc::Receiver<Message>>>,
    /// The plan node being built: its line in `EXPLAIN` (pre-order, as
    /// [`StreamNode::explain`] prints), which its tasks' counters name.
    node: Option<usize>,
    /// Nodes entered so far.
    nodes: usize,
    df: &'a mut Dataflow,
}

/// The tasks of one stateful node: its input receivers, its partitions' operators, and the
/// sender its (merged) output goes to.
struct Partitioned {
    keys: Option<Vec<Vec<Arc<dyn PhysicalExpr>>>>,
    inputs: Vec<mpsc::Receiver<Message>>,
    operators: Vec<Box<dyn Operator>>,
    schema: SchemaRef,
    output: mpsc::Sender<Message>,
}

impl Builder<'_> {
    fn channel(&self) -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
        mpsc::channel(self.config.channel_capacity_chunks)
    }

    /// Names (and records) the column families of state table `s<n>_<role>`, one per
    /// partition; entry `k` belongs to partition `k`.
    fn table(&mut self, n: usize, role: &str, partitions: usize) -> Vec<String> {
        let name = format!("{}_s{n}_{role}", self.state.prefix);
        let column_families: Vec<String> = match partitions {
            1 => vec![name.clone()],
            _ => (0..partitions).map(|k| format!("{name}_p{k}")).collect(),
        };
        self.df.state_tables.push(StateTable { name, column_families: column_families.clone() });
        column_families
    }

    /// The next evaluating operator's error table (`<prefix>_e<n>`), in a view.
    fn error_table(&mut self) -> EngineResult<Option<crate::eval_errors::ErrorTable>> {
        let Some(errors) = &self.state.eval_errors else { return Ok(None) };
        let cf = format!("{}_e{}", self.state.prefix, self.df.error_tables.len() + 1);
        self.df.error_tables.push(cf.clone());
        Ok(Some(crate::eval_errors::ErrorTable::open(errors.clone(), self.state.store.clone(), cf)?))
    }

    /// Builds `node` and its inputs; returns its output. Numbers the nodes in the order
    /// `EXPLAIN` prints them, so that each task's counters name their node's line.
    fn build(&mut self, node: StreamNode) -> EngineResult<mpsc::Receiver<Message>> {
        let outer = self.node.replace(self.nodes);
        self.nodes += 1;
        let built = self.build_node(node);
        self.node = outer;
        built
    }

    fn build_node(&mut self, node: StreamNode) -> EngineResult<mpsc::Receiver<Message>> {
        let (tx, rx) = self.channel();
        let parts = node.partitions(self.state.parallelism);
        let keys = node.partition_keys();
        let schema = node.schema();
        match node {
            StreamNode::Subscribe { object, .. } => {
                let snapshot = self.state.resume.is_none();
                let progress = snapshot.then(Default::default);
                // A table's position in the checkpoint (views have none): where its log replay starts.
                let replay_from = self.state.resume.as_ref().and_then(|r| r.get(&format!("table_{object}")).copied());
                self.df.subscriptions.push(Subscription { upstream: object, snapshot, sender: std::sync::Mutex::new(Some(tx)), progress, replay_from });
            }
            StreamNode::Source { name, mut reader, progress, watermark } => {
                if let Some(shared) = self.shared.get_mut(&name).and_then(|r| r.pop()) {
                    return Ok(shared);
                }
                let mut tx = vec![tx];
                for _ in 1..self.source_reads.get(&name).copied().unwrap_or(1) {
                    let (stx, srx) = self.channel();
                    tx.push(stx);
                    self.shared.entry(name.clone()).or_default().push(srx);
                }
                self.sources += 1;
                let key = format!("{}_source{}", self.state.prefix, self.sources);
                let others = reader.split_off(self.state.parallelism.max(1))?;
                let readers: Vec<Box<dyn SourceReader>> = std::iter::once(reader).chain(others).collect();
                if readers.len() == 1 {
                    let reader = readers.into_iter().next().expect("one reader");
                    self.spawn_source(&name, &key, reader, progress, watermark, Outputs::new(tx), 0)?;
                } else {
                    // Each reader reads its share of the partitions; a union merges them (and
                    // their watermarks: the minimum over readers not idle).
                    let mut inputs = vec![];
                    for (k, reader) in readers.into_iter().enumerate() {
                        let (rtx, rrx) = self.channel();
                        self.spawn_source(&name, &key, reader, progress.clone(), watermark, Outputs::new(vec![rtx]), k)?;
                        inputs.push(rrx);
                    }
                    self.spawn_task(Box::new(UnionOperator::new(schema)), inputs, Outputs::new(tx), TaskRole::Helper, 0);
                }
            }
            StreamNode::Filter { predicate, input } => {
                let mut op = FilterOperator::new(predicate);
                if let Some(errors) = self.error_table()? {
                    op = op.with_errors(errors);
                }
                let input = self.build(*input)?;
                self.spawn_operator(Box::new(op), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::LookupJoin { spec, input } => {
                let input = self.build(*input)?;
                self.spawn_operator(Box::new(LookupJoinOperator::new(spec)), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::Unnest { spec, input } => {
                let input = self.build(*input)?;
                self.spawn_operator(Box::new(UnnestOperator::new(spec)), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::TemporalFilter { spec, input } => {
                let n = next_table(&mut self.tables);
                let rows = self.table(n, "rows", 1).remove(0);
                let op = TemporalFilterOperator::new(spec, self.state.store.clone(), rows, input.schema())?;
                let input = self.build(*input)?;
                self.spawn_operator(Box::new(op), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::Project { exprs, schema, input } => {
                let mut op = ProjectOperator::new(exprs, schema).with_input(input.schema());
                if let Some(errors) = self.error_table()? {
                    op = op.with_errors(errors);
                }
                let input = self.build(*input)?;
                self.spawn_operator(Box::new(op), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::Union { inputs, schema } => {
                // Branches of one stream (HOP's windows) share its idleness: one branch woken
                // before another must not carry the watermark past the other's rows.
                let op = match same_origin(&inputs) {
                    true => UnionOperator::of_partitions(schema),
                    false => UnionOperator::new(schema),
                };
                let inputs = inputs.into_iter().map(|i| self.build(i)).collect::<EngineResult<_>>()?;
                self.spawn_operator(Box::new(op), inputs, Outputs::new(vec![tx]));
            }
            StreamNode::Aggregate { spec, input } => {
                let n = next_table(&mut self.tables);
                let groups = self.table(n, "groups", parts);
                let values = self.table(n, "values", parts);
                let input_schema = input.schema();
                let append_only = input.append_only();
                let operators = (0..parts)
                    .map(|k| {
                        let tables = AggregateTables { groups: groups[k].clone(), values: values[k].clone() };
                        let op = AggregateOperator::new(spec.clone(), self.state.store.clone(), tables, &input_schema, append_only, self.df.late_rows.clone())?;
                        Ok(Box::new(op) as Box<dyn Operator>)
                    })
                    .collect::<EngineResult<_>>()?;
                let inputs = vec![self.build(*input)?];
                self.spawn_partitioned(Partitioned { keys, inputs, operators, schema, output: tx });
            }
            StreamNode::TopN { spec, input } => {
                let n = next_table(&mut self.tables);
                let rows = self.table(n, "rows", parts);
                let operators = (0..parts)
                    .map(|k| Ok(Box::new(TopNOperator::new(spec.clone(), self.state.store.clone(), rows[k].clone(), self.df.late_rows.clone())?) as Box<dyn Operator>))
                    .collect::<EngineResult<_>>()?;
                let inputs = vec![self.build(*input)?];
                self.spawn_partitioned(Partitioned { keys, inputs, operators, schema, output: tx });
            }
            StreamNode::OverWindow { spec, input } => {
                let n = next_table(&mut self.tables);
                let rows = self.table(n, "rows", parts);
                let ends = match spec.session {
                    Some(_) => self.table(n, "ends", parts),
                    None => vec![],
                };
                let store = self.state.store.clone();
                let late = self.df.late_rows.clone();
                let operators = (0..parts)
                    .map(|k| {
                        Ok(match spec.session {
                            Some(_) => Box::new(SessionWindowOperator::new(spec.clone(), store.clone(), rows[k].clone(), ends[k].clone(), late.clone())?) as Box<dyn Operator>,
                            None => Box::new(OverWindowOperator::new(spec.clone(), store.clone(), rows[k].clone(), late.clone())?) as Box<dyn Operator>,
                        })
                    })
                    .collect::<EngineResult<_>>()?;
                let inputs = vec![self.build(*input)?];
                self.spawn_partitioned(Partitioned { keys, inputs, operators, schema, output: tx });
            }
            StreamNode::Join { spec, inputs } => {
                let n = next_table(&mut self.tables);
                let (left, right) = (self.table(n, "left", parts), self.table(n, "right", parts));
                let operators = (0..parts)
                    .map(|k| {
                        let tables = [left[k].clone(), right[k].clone()];
                        Ok(Box::new(JoinOperator::new(spec.clone(), self.state.store.clone(), tables)?) as Box<dyn Operator>)
                    })
                    .collect::<EngineResult<_>>()?;
                let [l, r] = *inputs;
                let inputs = vec![self.build(l)?, self.build(r)?];
                self.spawn_partitioned(Partitioned { keys, inputs, operators, schema, output: tx });
            }
        }
        Ok(rx)
    }

    /// Spawns a stateful node. One partition reads its inputs directly. Several get an
    /// exchange per input that routes rows by key hash, so partition `k` sees exactly the rows
    /// of its keys, in input order; a union merges their outputs (aligning barriers and taking
    /// the minimum watermark over all partitions, idle or not).
    fn spawn_partitioned(&mut self, node: Partitioned) {
        let Partitioned { keys, inputs, mut operators, schema, output } = node;
        if operators.len() == 1 {
            let op = operators.pop().expect("one partition");
            self.spawn_operator(op, inputs, Outputs::new(vec![output]));
            return;
        }
        let keys = keys.expect("only keyed nodes run partitioned");
        debug_assert_eq!(keys.len(), inputs.len(), "keys for every input");
        let parts = operators.len();
        let mut routed: Vec<Vec<mpsc::Receiver<Message>>> = (0..parts).map(|_| vec![]).collect();
        for (input, keys) in inputs.into_iter().zip(keys) {
            let (senders, receivers): (Vec<_>, Vec<_>) = (0..parts).map(|_| self.channel()).unzip();
            self.spawn_task(Box::new(ExchangeOperator::new(keys, parts)), vec![input], Outputs::new(senders), TaskRole::Helper, 0);
            for (k, rx) in receivers.into_iter().enumerate() {
                routed[k].push(rx);
            }
        }
        let mut merged = vec![];
        for (k, (op, inputs)) in operators.into_iter().zip(routed).enumerate() {
            let (tx, rx) = self.channel();
            self.spawn_task(op, inputs, Outputs::new(vec![tx]), TaskRole::Operator, k);
            merged.push(rx);
        }
        self.spawn_task(Box::new(UnionOperator::of_partitions(schema)), merged, Outputs::new(vec![output]), TaskRole::Helper, 0);
    }

    /// Runs one source reader as a root whose position is stored under `key`; `partition`:
    /// which of the source's readers it is.
    #[allow(clippy::too_many_arguments)]
    fn spawn_source(
        &mut self,
        name: &str,
        key: &str,
        mut reader: Box<dyn SourceReader>,
        progress: Arc<SourceProgress>,
        watermark: Option<WatermarkSpec>,
        outputs: Outputs,
        partition: usize,
    ) -> EngineResult<()> {
        let (btx, brx) = crate::coordinator::barrier_channel();
        let id = self.coordinator.reserve_root();
        self.df.roots.push(id);
        self.df.pending_roots.push((id, btx));
        let chunk_rows = self.config.chunk_size_rows;
        let mut watermark = watermark.map(|w| WatermarkGenerator::new(w, self.config.idle_timeout_ms));
        let checkpoints = RootCheckpoints { coordinator: self.coordinator.clone(), key: key.to_string() };
        if let Some(positions) = &self.state.resume {
            let Some(position) = RootCheckpoints::stored_position(positions, key) else {
                return Err(crate::EngineError::Internal(format!("checkpoint has no position for {key}")));
            };
            reader.seek(position)?;
            let stored = positions.get(&RootCheckpoints::watermark_key(key));
            if let (Some(w), Some(&time_us)) = (watermark.as_mut(), stored) {
                w.resume_at(time_us as i64);
            }
        }
        let metrics = Arc::new(OperatorMetrics::new(format!("Source({name})"), self.node, TaskRole::Source, partition));
        self.df.operators.push(metrics.clone());
        let outputs = outputs.with_metrics(metrics);
        let task = run_source(reader, brx, outputs, chunk_rows, progress, watermark, Some(checkpoints));
        let span = tracing::info_span!("source", name = %name);
        self.df.tasks.push((format!("source {name}"), self.config.spawn_dataflow(task.instrument(span))));
        Ok(())
    }

    /// Spawns the task of a node's own operator, run as one partition.
    fn spawn_operator(&mut self, op: Box<dyn Operator>, inputs: Vec<mpsc::Receiver<Message>>, outputs: Outputs) {
        self.spawn_task(op, inputs, outputs, TaskRole::Operator, 0);
    }

    fn spawn_task(&mut self, op: Box<dyn Operator>, inputs: Vec<mpsc::Receiver<Message>>, outputs: Outputs, role: TaskRole, partition: usize) {
        let name = op.name();
        let metrics = Arc::new(OperatorMetrics::new(name.clone(), self.node, role, partition));
        self.df.operators.push(metrics.clone());
        let ctx = OperatorContext::new(outputs, self.config.clone(), self.coordinator.clone()).owned_by(self.state.owner).with_metrics(metrics);
        let span = tracing::info_span!("operator", name = %name);
        let task = self.config.spawn_dataflow(crate::runtime::run_operator(op, inputs, ctx).instrument(span));
        self.df.tasks.push((name, task));
    }
}

/// A gap as EXPLAIN prints it: `INTERVAL '10 seconds'`, or in microseconds when not whole.
fn interval_text(us: i64) -> String {
    match us % 1_000_000 {
        0 => format!("INTERVAL '{} seconds'", us / 1_000_000),
        _ => format!("INTERVAL '{us} microseconds'"),
    }
}

