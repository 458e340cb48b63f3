/// Limits and pacing of the dataflow, shared by every operator.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most rows in one chunk that a source or a backfill emits.
    pub chunk_size_rows: usize,
    /// Capacity of every channel between two tasks, in chunks. Together with
    /// `chunk_size_rows` this bounds the rows in flight on an edge.
    pub channel_capacity_chunks: usize,
    /// How often the coordinator injects a barrier on its own, and the longest a source holds a
    /// partial chunk before emitting it.
    pub flush_interval_ms: u64,
    /// Partitions of each keyed stateful operator when the session does not set
    /// `streaming_parallelism`: the number of worker threads.
    pub parallelism: usize,
    /// How long a table or source with a watermark may carry no rows before it is declared
    /// idle (at its next barrier), so that it no longer holds back the watermark of a union or
    /// join with busier inputs.
    pub idle_timeout_ms: u64,
    /// How often a checkpoint is taken besides the one of every `FLUSH`; 0 for never.
    pub checkpoint_interval_ms: u64,
    /// The runtime sources and operators run on; `None`: the runtime that builds the
    /// dataflow. The server gives the dataflow a runtime of its own, so that sessions are
    /// never queued behind busy operators on the same worker threads (a point `SELECT` took
    /// up to 188 ms while a view backfilled on shared workers).
    pub dataflow_runtime: Option<tokio::runtime::Handle>,
    /// Rows a subscriber may have waiting for its client before it is closed
    /// ([`crate::operators::subscribe`]).
    pub subscriber_max_rows: usize,
    /// Bytes of changes a subscriber may have waiting for its client.
    pub subscriber_max_bytes: usize,
    /// Subscriptions open at once, over every object ([`DEFAULT_MAX_SUBSCRIBERS`]).
    pub max_subscribers: usize,
    /// Subscriptions open at once on one view, table or durable subscription
    /// ([`DEFAULT_MAX_SUBSCRIBERS_PER_OBJECT`]).
    pub max_subscribers_per_object: usize,
}

/// Default of `--max-subscribers`.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 4096;
/// Default of `--max-subscribers-per-object`.
pub const DEFAULT_MAX_SUBSCRIBERS_PER_OBJECT: usize = 1024;

impl EngineConfig {
    /// A subscriber's queue under `--subscriber-max-rows` and `--subscriber-max-bytes`.
    pub fn subscriber_queue(&self) -> std::sync::Arc<crate::operators::SubscriberQueue> {
        crate::operators::SubscriberQueue::with_limits(self.subscriber_max_rows, self.subscriber_max_bytes)
    }

    /// Spawns a task of the dataflow on [`Self::dataflow_runtime`].
    pub fn spawn_dataflow<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.dataflow_runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { chunk_size_rows: 4096, channel_capacity_chunks: 16, flush_interval_ms: 1000, parallelism: 1, idle_timeout_ms: 5000, checkpoint_interval_ms: 5000, dataflow_runtime: None,
            subscriber_max_rows: crate::operators::subscribe::DEFAULT_SUBSCRIBER_MAX_ROWS,
            subscriber_max_bytes: crate::operators::subscribe::DEFAULT_SUBSCRIBER_MAX_BYTES,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            max_subscribers_per_object: DEFAULT_MAX_SUBSCRIBERS_PER_OBJECT,
        }
    }
}
