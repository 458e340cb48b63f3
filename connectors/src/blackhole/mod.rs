//! `CREATE SINK ... WITH (connector = 'blackhole')`: a sink that drops every row, counting
//! them. For measuring a query without keeping its output, as Flink's and RisingWave's Nexmark
//! benchmarks do; it passes barriers like any sink, so FLUSH waits for it. With
//! `'latency.column' = '<timestamp column>'` it also measures each row's latency
//! ([`latency`]).

pub mod latency;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use openclaw_engine::{Barrier, EngineResult, ObjectId, Operator, OperatorContext, StreamChunk};
use openclaw_storage::Store;

use crate::{ConnectorError, Options, PreparedSink, SinkConnector};

pub struct BlackholeConnector;

impl SinkConnector for BlackholeConnector {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn prepare(&self, options: &Options) -> Result<Arc<dyn PreparedSink>, ConnectorError> {
        if let Some(key) = options.keys().find(|k| !["connector", "latency.column"].contains(&k.as_str())) {
            return Err(ConnectorError::new(format!("unknown option \"{key}\" of a blackhole sink")).with_hint("a blackhole sink takes only 'latency.column'"));
        }
        Ok(Arc::new(Blackhole { latency_column: options.get("latency.column").cloned() }))
    }
}

struct Blackhole {
    latency_column: Option<String>,
}

impl PreparedSink for Blackhole {
    fn operator(&self, object: ObjectId, name: &str, schema: &SchemaRef, _store: Store, _buffer_cf: &str) -> Result<Box<dyn Operator>, ConnectorError> {
        let latency = match &self.latency_column {
            Some(column) => {
                let index = schema.index_of(column).map_err(|_| ConnectorError::new(format!("the sink's rows have no column \"{column}\" to measure latency by")))?;
                if !schema.field(index).data_type().is_temporal() {
                    return Err(ConnectorError::new(format!("column \"{column}\" is not a timestamp")).with_hint("'latency.column' names the rows' event time"));
                }
                Some((index, latency::histogram(name)))
            }
            None => None,
        };
        Ok(Box::new(BlackholeSinkOperator { object, rows: 0, latency }))
    }
}

/// Drops what reaches it (measuring its latency, if asked); acknowledges barriers.
pub struct BlackholeSinkOperator {
    object: ObjectId,
    rows: u64,
    latency: Option<(usize, Arc<std::sync::Mutex<latency::Histogram>>)>,
}

#[async_trait]
impl Operator for BlackholeSinkOperator {
    fn name(&self) -> String {
        "BlackholeSink".into()
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.rows += chunk.num_rows() as u64;
        if let Some((column, histogram)) = &self.latency {
            latency::record(histogram, &chunk, *column)?;
        }
        Ok(())
    }

    async fn barrier_passed(&mut self, barrier: &Barrier, ctx: &mut OperatorContext) -> EngineResult<()> {
        ctx.coordinator.ack(self.object, barrier.epoch);
        Ok(())
    }

    async fn on_close(&mut self, _ctx: &mut OperatorContext) -> EngineResult<()> {
        tracing::debug!(rows = self.rows, "blackhole sink closed");
        Ok(())
    }
}
