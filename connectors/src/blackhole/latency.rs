//! Latency measured by a blackhole sink: for each row, the wall-clock time at which it
//! reached the sink minus the time in one of its timestamp columns. Over a Nexmark source
//! paced in real time (`nexmark.min.event.gap.in.ns`) whose event times start at the wall
//! clock (`nexmark.base.time`) and advance at the same rate, that column is when the event was
//! generated, and the difference is the event's latency through the query.
//!
//! Kept in a bounded histogram of 1 ms buckets (up to [`MAX_LATENCY_MS`]; later rows count in
//! the last bucket), registered by sink name for `openclaw bench nexmark --rate` to read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use openclaw_engine::{EngineResult, StreamChunk};

/// The longest latency told apart; the histogram's size (8 bytes a bucket).
pub const MAX_LATENCY_MS: usize = 120_000;

/// Counts of rows by latency in whole milliseconds.
pub struct Histogram {
    buckets: Vec<u64>,
    rows: u64,
}

impl Histogram {
    fn new() -> Self {
        Self { buckets: vec![0; MAX_LATENCY_MS + 1], rows: 0 }
    }

    /// The latency (ms) below which a `q` share of the rows fall (0 < q ≤ 1).
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        if self.rows == 0 {
            return None;
        }
        let rank = ((self.rows as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets.iter().position(|&n| {
            seen += n;
            seen >= rank
        }).map(|b| b as u64)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Mutex<Histogram>>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Mutex<Histogram>>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The histogram of sink `name` (created empty on first use).
pub fn histogram(name: &str) -> Arc<Mutex<Histogram>> {
    let mut registry = registry().lock().expect("latency registry");
    registry.entry(name.to_string()).or_insert_with(|| Arc::new(Mutex::new(Histogram::new()))).clone()
}

/// Forgets sink `name`'s histogram, returning it.
pub fn take(name: &str) -> Option<Arc<Mutex<Histogram>>> {
    registry().lock().expect("latency registry").remove(name)
}

/// Records the latency of every row of `chunk`, by its column `column`, as of now.
pub fn record(histogram: &Mutex<Histogram>, chunk: &StreamChunk, column: usize) -> EngineResult<()> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let times = datafusion::arrow::compute::cast(chunk.batch().column(column), &micros)?;
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let mut h = histogram.lock().expect("latency histogram");
    for (i, t) in times.values().iter().enumerate() {
        if times.is_valid(i) {
            let ms = (now_us.saturating_sub(*t) / 1_000).clamp(0, MAX_LATENCY_MS as i64) as usize;
            h.buckets[ms] += 1;
            h.rows += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_ms(0.5), None);
        h.buckets[3] = 98;
        h.buckets[40] = 2;
        h.rows = 100;
        assert_eq!(h.quantile_ms(0.5), Some(3));
        assert_eq!(h.quantile_ms(0.98), Some(3));
        assert_eq!(h.quantile_ms(0.99), Some(40));
    }
}
