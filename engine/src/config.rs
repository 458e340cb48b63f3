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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { chunk_size_rows: 4096, channel_capacity_chunks: 16, flush_interval_ms: 1000, parallelism: 1, idle_timeout_ms: 5000, checkpoint_interval_ms: 5000 }
    }
}
