//! The streaming plan: what SQL lowers to, and what [`build_dataflow`] turns into running
//! tasks connected by bounded channels.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::coordinator::RootId;
use crate::operators::{FilterOperator, ProjectOperator, UnionOperator};
use crate::source::{run_source, SourceProgress, SourceReader};
use crate::{
    Coordinator, EngineConfig, EngineResult, Message, ObjectId, Operator, OperatorContext, Outputs,
    Subscription,
};

/// A node of a streaming plan.
pub enum StreamNode {
    /// The rows of an existing table or view: its current content, then every change.
    Subscribe { object: ObjectId, name: String, schema: SchemaRef },
    /// A new reader of a source, owned by this dataflow.
    Source { name: String, reader: Box<dyn SourceReader>, progress: Arc<SourceProgress> },
    Filter { predicate: Arc<dyn PhysicalExpr>, input: Box<StreamNode> },
    Project { exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef, input: Box<StreamNode> },
    Union { inputs: Vec<StreamNode>, schema: SchemaRef },
}

impl StreamNode {
    pub fn schema(&self) -> SchemaRef {
        match self {
            StreamNode::Subscribe { schema, .. } => schema.clone(),
            StreamNode::Source { reader, .. } => reader.schema(),
            StreamNode::Filter { input, .. } => input.schema(),
            StreamNode::Project { schema, .. } | StreamNode::Union { schema, .. } => schema.clone(),
        }
    }

    /// One line per node, children indented, as `EXPLAIN` prints it.
    pub fn explain(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        let _ = match self {
            StreamNode::Subscribe { name, .. } => writeln!(out, "{pad}StreamScan: {name} (snapshot, then changes)"),
            StreamNode::Source { name, .. } => writeln!(out, "{pad}SourceReader: {name}"),
            StreamNode::Filter { predicate, .. } => writeln!(out, "{pad}StreamFilter: {predicate}"),
            StreamNode::Project { exprs, schema, .. } => {
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| format!("{e} AS {}", f.name()))
                    .collect();
                writeln!(out, "{pad}StreamProject: {}", items.join(", "))
            }
            StreamNode::Union { .. } => writeln!(out, "{pad}StreamUnion (all)"),
        };
        for child in self.children() {
            child.explain(out, depth + 1);
        }
    }

    fn children(&self) -> Vec<&StreamNode> {
        match self {
            StreamNode::Subscribe { .. } | StreamNode::Source { .. } => vec![],
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => vec![input],
            StreamNode::Union { inputs, .. } => inputs.iter().collect(),
        }
    }
}

/// The running tasks of one view, and what it registered with the coordinator.
pub struct Dataflow {
    pub tasks: Vec<(String, JoinHandle<EngineResult<()>>)>,
    pub roots: Vec<RootId>,
    /// Subscriptions to hand to the upstream objects in the barrier that starts the view.
    pub subscriptions: Vec<Subscription>,
}

/// Spawns the tasks of `plan`, ending in `sink` (the view's materialize operator).
pub fn build_dataflow(
    plan: StreamNode,
    sink: Box<dyn Operator>,
    config: &Arc<EngineConfig>,
    coordinator: &Arc<Coordinator>,
) -> Dataflow {
    let mut df = Dataflow { tasks: vec![], roots: vec![], subscriptions: vec![] };
    let mut b = Builder { config, coordinator, df: &mut df };
    let input = b.build(plan);
    b.spawn_operator(sink, vec![input], Outputs::default());
    df
}

struct Builder<'a> {
    config: &'a Arc<EngineConfig>,
    coordinator: &'a Arc<Coordinator>,
    df: &'a mut Dataflow,
}

impl Builder<'_> {
    fn channel(&self) -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
        mpsc::channel(self.config.channel_capacity_chunks)
    }

    /// Builds `node` and returns the receiver of its output.
    fn build(&mut self, node: StreamNode) -> mpsc::Receiver<Message> {
        let (tx, rx) = self.channel();
        match node {
            StreamNode::Subscribe { object, .. } => {
                self.df.subscriptions.push(Subscription { upstream: object, sender: std::sync::Mutex::new(Some(tx)) });
            }
            StreamNode::Source { name, reader, progress } => {
                let (btx, brx) = mpsc::channel(crate::coordinator::ROOT_BARRIER_QUEUE);
                self.df.roots.push(self.coordinator.register_root(btx));
                let chunk_rows = self.config.chunk_size_rows;
                let task = run_source(reader, brx, Outputs::new(vec![tx]), chunk_rows, progress);
                let span = tracing::info_span!("source", name = %name);
                self.df.tasks.push((format!("source {name}"), tokio::spawn(task.instrument(span))));
            }
            StreamNode::Filter { predicate, input } => {
                let input = self.build(*input);
                self.spawn_operator(Box::new(FilterOperator::new(predicate)), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::Project { exprs, schema, input } => {
                let input = self.build(*input);
                self.spawn_operator(Box::new(ProjectOperator::new(exprs, schema)), vec![input], Outputs::new(vec![tx]));
            }
            StreamNode::Union { inputs, schema } => {
                let inputs = inputs.into_iter().map(|i| self.build(i)).collect();
                self.spawn_operator(Box::new(UnionOperator::new(schema)), inputs, Outputs::new(vec![tx]));
            }
        }
        rx
    }

    fn spawn_operator(&mut self, op: Box<dyn Operator>, inputs: Vec<mpsc::Receiver<Message>>, outputs: Outputs) {
        let name = op.name();
        let ctx = OperatorContext::new(outputs, self.config.clone(), self.coordinator.clone());
        let span = tracing::info_span!("operator", name = %name);
        let task = tokio::spawn(crate::runtime::run_operator(op, inputs, ctx).instrument(span));
        self.df.tasks.push((name, task));
    }
}
