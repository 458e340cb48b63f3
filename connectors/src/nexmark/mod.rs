//! The Nexmark generator as a source: the events of the `nexmark` crate (RisingWave's
//! nexmark-rs, the reference), generated straight into Arrow columns chunk by chunk
//! (`generator.rs`), optionally split over several readers (`nexmark.split.num`).

pub mod avro;
pub mod json;
mod generator;
mod rng;
mod reader;
mod schema;

pub use reader::NexmarkReader;
pub use schema::{table_schema, TableType};

use datafusion::arrow::datatypes::SchemaRef;
use openclaw_engine::source::SourceReader;

use crate::{Connector, ConnectorError, Options};

pub struct NexmarkConnector;

/// Options besides the generator's own `nexmark.<field>` settings.
const OPTIONS: &[&str] = &[
    "connector",
    "nexmark.table.type",
    "nexmark.event.num",
    "nexmark.max.chunk.size",
    "nexmark.min.event.gap.in.ns",
    "nexmark.split.num",
    "nexmark.use.real.time",
];

impl Connector for NexmarkConnector {
    fn name(&self) -> &'static str {
        "nexmark"
    }

    /// The generator makes each person and each auction once, under a new `id`.
    fn unique_key(&self, schema: &SchemaRef, options: &Options) -> Option<Vec<usize>> {
        match TableType::from_options(options).ok()? {
            TableType::Person | TableType::Auction => Some(vec![schema.index_of("id").ok()?]),
            TableType::Bid => None,
        }
    }

    fn validate(&self, declared: &SchemaRef, options: &Options) -> Result<SchemaRef, ConnectorError> {
        for key in options.keys() {
            if !OPTIONS.contains(&key.as_str()) && reader::config_field(key).is_none() {
                return Err(ConnectorError::new(format!("unrecognized nexmark option \"{key}\""))
                    .with_hint("valid options are nexmark.table.type, nexmark.event.num, nexmark.max.chunk.size, nexmark.min.event.gap.in.ns, nexmark.split.num, nexmark.use.real.time and the generator's nexmark.<field> settings"));
            }
        }
        let table = TableType::from_options(options)?;
        let full = table_schema(table);
        // Every option's value (numbers, ranges) as the reader will read it.
        NexmarkReader::new(full.clone(), options)?;
        if declared.fields().is_empty() {
            return Ok(full);
        }
        for f in declared.fields() {
            let Ok(src) = full.field_with_name(&f.name().to_ascii_lowercase()) else {
                let names: Vec<&str> = full.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ConnectorError::new(format!("column \"{}\" is not a nexmark {} column", f.name(), table.name()))
                    .with_hint(format!("the {} columns are: {}", table.name(), names.join(", "))));
            };
            if !datafusion::arrow::compute::can_cast_types(src.data_type(), f.data_type()) {
                return Err(ConnectorError::new(format!(
                    "column \"{}\" cannot be {} (the generator produces {})",
                    f.name(), f.data_type(), src.data_type()
                )));
            }
        }
        Ok(declared.clone())
    }

    fn reader(&self, schema: &SchemaRef, options: &Options, _context: crate::ReaderContext) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Ok(Box::new(NexmarkReader::new(schema.clone(), options)?))
    }
}
