//! `connector = 'datagen'`: rows made from per-column rules, after RisingWave's datagen.
//!
//! `fields.<col>.kind = 'sequence'` counts from `start` to `end` (the source ends when the
//! first sequence ends); `'random'` (the default) draws from `min`..=`max` (numbers) or makes
//! `length` letters (text), from a generator seeded by `seed` and the row number, so the same
//! options always give the same rows. `datagen.rows.per.second` limits the rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use openclaw_engine::source::SourceReader;
use openclaw_engine::{EngineResult, StreamChunk};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{parse_opt, Connector, ConnectorError, Options};

pub struct DatagenConnector;

/// Longest random string datagen makes, in characters.
const MAX_STRING_LENGTH: usize = 65_536;

#[derive(Debug, Clone)]
enum Rule {
    Sequence { start: i64, end: Option<i64> },
    Random { min: f64, max: f64, length: usize, seed: u64 },
}

fn rule(options: &Options, col: &str, dt: &DataType) -> Result<Rule, ConnectorError> {
    let key = |k: &str| format!("fields.{}.{k}", col.to_ascii_lowercase());
    let kind = options.get(&key("kind")).map(|s| s.to_ascii_lowercase()).unwrap_or_else(|| "random".into());
    match kind.as_str() {
        "sequence" => {
            if !(dt.is_integer() || dt.is_floating() || matches!(dt, DataType::Utf8 | DataType::Timestamp(..))) {
                return Err(ConnectorError::new(format!("datagen cannot make a sequence of type {dt} for \"{col}\"")));
            }
            Ok(Rule::Sequence { start: parse_opt(options, &key("start"))?.unwrap_or(1), end: parse_opt(options, &key("end"))? })
        }
        "random" => {
            let min: f64 = parse_opt(options, &key("min"))?.unwrap_or(0.0);
            let max: f64 = parse_opt(options, &key("max"))?.unwrap_or(1000.0);
            let length: usize = parse_opt(options, &key("length"))?.unwrap_or(10);
            if !(min <= max) {
                return Err(ConnectorError::new(format!("datagen min {min} is above max {max} for \"{col}\"")));
            }
            if length > MAX_STRING_LENGTH {
                return Err(ConnectorError::new(format!("datagen length {length} for \"{col}\" is above {MAX_STRING_LENGTH}")));
            }
            Ok(Rule::Random { min, max, length, seed: parse_opt(options, &key("seed"))?.unwrap_or(0) })
        }
        other => Err(ConnectorError::new(format!("invalid datagen kind \"{other}\" for \"{col}\""))
            .with_hint("use 'sequence' or 'random'")),
    }
}

impl Connector for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn validate(&self, declared: &SchemaRef, options: &Options) -> Result<SchemaRef, ConnectorError> {
        if declared.fields().is_empty() {
            return Err(ConnectorError::new("a datagen source needs declared columns"));
        }
        for key in options.keys() {
            let ok = key == "connector"
                || key == "datagen.rows.per.second"
                || key == "datagen.split.num"
                || key.strip_prefix("fields.").and_then(|r| r.split_once('.')).is_some_and(|(c, _)| {
                    declared.fields().iter().any(|f| f.name().eq_ignore_ascii_case(c))
                });
            if !ok {
                return Err(ConnectorError::new(format!("unrecognized datagen option \"{key}\""))
                    .with_hint("options are datagen.rows.per.second and fields.<column>.{kind,start,end,min,max,length,seed}"));
            }
        }
        for f in declared.fields() {
            rule(options, f.name(), f.data_type())?;
        }
        Ok(declared.clone())
    }

    fn reader(&self, schema: &SchemaRef, options: &Options, _context: crate::ReaderContext) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let rules = schema
            .fields()
            .iter()
            .map(|f| rule(options, f.name(), f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = rules
            .iter()
            .filter_map(|r| match r {
                Rule::Sequence { start, end: Some(end) } => Some((end - start + 1).max(0) as u64),
                _ => None,
            })
            .min();
        let rate = parse_opt::<u64>(options, "datagen.rows.per.second")?.filter(|&r| r > 0);
        Ok(Box::new(DatagenReader { schema: schema.clone(), rules, limit, rate, row: 0, started: Instant::now() }))
    }
}

struct DatagenReader {
    schema: SchemaRef,
    rules: Vec<Rule>,
    limit: Option<u64>,
    rate: Option<u64>,
    row: u64,
    started: Instant,
}

impl DatagenReader {
    fn column(&self, rule: &Rule, dt: &DataType, rows: std::ops::Range<u64>) -> ArrayRef {
        match rule {
            Rule::Sequence { start, .. } => {
                let vals = rows.map(|r| start + r as i64);
                match dt {
                    DataType::Utf8 => Arc::new(StringArray::from_iter_values(vals.map(|v| v.to_string()))),
                    DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::from_iter_values(vals.map(|v| v * 1_000_000))),
                    _ => Arc::new(Int64Array::from_iter_values(vals)),
                }
            }
            Rule::Random { min, max, length, seed } => {
                let rng = |r: u64| SmallRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r);
                match dt {
                    DataType::Utf8 => Arc::new(StringArray::from_iter_values(rows.map(|r| {
                        let mut g = rng(r);
                        (0..*length).map(|_| g.gen_range(b'a'..=b'z') as char).collect::<String>()
                    }))),
                    DataType::Timestamp(..) => {
                        let now = chrono_now_us();
                        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.map(|_| now)))
                    }
                    dt if dt.is_floating() => Arc::new(Float64Array::from_iter_values(rows.map(|r| rng(r).gen_range(*min..=*max)))),
                    _ => Arc::new(Int64Array::from_iter_values(
                        rows.map(|r| rng(r).gen_range(*min as i64..=*max as i64)),
                    )),
                }
            }
        }
    }
}

fn chrono_now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[async_trait]
impl SourceReader for DatagenReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_append_only(&self) -> bool {
        true
    }

    fn is_bounded(&self) -> bool {
        self.limit.is_some()
    }

    async fn next_chunk(&mut self, max_rows: usize) -> EngineResult<Option<StreamChunk>> {
        let remaining = self.limit.map(|l| l.saturating_sub(self.row)).unwrap_or(u64::MAX);
        if remaining == 0 {
            return Ok(None);
        }
        let mut n = (max_rows as u64).min(remaining);
        if let Some(rate) = self.rate {
            n = n.min((rate / 10).max(1));
            let due = Duration::from_secs_f64((self.row + n) as f64 / rate as f64);
            if !crate::pace(self.started, due).await {
                return Ok(Some(StreamChunk::inserts(RecordBatch::new_empty(self.schema.clone()))));
            }
        }
        let rows = self.row..self.row + n;
        self.row += n;
        let fields = self.schema.fields().clone();
        let mut cols = fields.iter().zip(&self.rules).map(|(f, r)| (f.name().clone(), self.column(r, f.data_type(), rows.clone())));
        let cols: Vec<(String, ArrayRef)> = cols.by_ref().collect();
        let batch = crate::conform(&self.schema, |name| cols.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone()))?;
        Ok(Some(StreamChunk::inserts(batch)))
    }
}
