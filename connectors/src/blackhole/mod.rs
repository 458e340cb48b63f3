//! `CREATE SINK ... WITH (connector = 'blackhole')`: a sink that drops every row, counting
//! them. For measuring a query without keeping its output, as Flink's and RisingWave's Nexmark
//! benchmarks do; it passes barriers like any sink, so FLUSH waits for it.

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
        if let Some(key) = options.keys().find(|k| k.as_str() != "connector") {
            return Err(ConnectorError::new(format!("unknown option \"{key}\" of a blackhole sink")).with_hint("a blackhole sink takes no options"));
        }
        Ok(Arc::new(Blackhole))
    }
}

struct Blackhole;

impl PreparedSink for Blackhole {
    fn operator(&self, object: ObjectId, _name: &str, _schema: &SchemaRef, _store: Store, _buffer_cf: &str) -> Result<Box<dyn Operator>, ConnectorError> {
        Ok(Box::new(BlackholeSinkOperator { object, rows: 0 }))
    }
}

/// Drops what reaches it; acknowledges barriers.
pub struct BlackholeSinkOperator {
    object: ObjectId,
    rows: u64,
}

#[async_trait]
impl Operator for BlackholeSinkOperator {
    fn name(&self) -> String {
        "BlackholeSink".into()
    }

    async fn process_batch(&mut self, _input: usize, chunk: StreamChunk, _ctx: &mut OperatorContext) -> EngineResult<()> {
        self.rows += chunk.num_rows() as u64;
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
