//! Nexmark bids as JSON records, as a service would produce them to Kafka: for
//! `openclaw kafka produce-nexmark`, the docker-compose demo, benchmarks and tests.

use nexmark::event::{Bid, Event, EventType};
use nexmark::EventGenerator;

use super::reader::generator_config;
use crate::{ConnectorError, Options};

/// Endless bids in generator order, each one JSON object with the columns of the `bid`
/// table (`date_time` as `YYYY-MM-DD HH:MM:SS.mmm`, UTC).
pub fn bids(options: &Options) -> Result<impl Iterator<Item = String>, ConnectorError> {
    let generator = EventGenerator::new(generator_config(options)?).with_type_filter(EventType::Bid);
    Ok(generator.filter_map(|event| match event {
        Event::Bid(b) => Some(bid_json(&b)),
        _ => None,
    }))
}

/// One bid as a JSON object with the columns of the `bid` table.
pub fn bid_json(b: &Bid) -> String {
    let time = chrono::DateTime::from_timestamp_millis(b.date_time as i64).unwrap_or_default();
    let record = serde_json::json!({
        "auction": b.auction,
        "bidder": b.bidder,
        "price": b.price,
        "channel": b.channel,
        "url": b.url,
        "date_time": time.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        "extra": b.extra,
    });
    record.to_string()
}

/// The `n`-th kind of malformed record (cycling through three): broken JSON, not JSON, and
/// a type mismatch, made from a good record.
pub fn malformed(n: u64, good: &str) -> String {
    match n % 3 {
        0 => good[..good.len() / 2].to_string(),
        1 => format!("not json #{n}"),
        _ => good.replacen("\"price\":", "\"price\":\"free\",\"was\":", 1),
    }
}
