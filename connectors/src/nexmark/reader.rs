use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use nexmark::EventGenerator;
use openclaw_engine::source::{Position, SourceReader};
use openclaw_engine::{EngineResult, StreamChunk};

use super::TableType;
use crate::{parse_opt, ConnectorError, Options};

/// Reads one Nexmark table: the events of that type among the first `event.num` events.
pub struct NexmarkReader {
    schema: SchemaRef,
    table: TableType,
    generator: EventGenerator,
    /// Total events (of all types) to cover; `None` is unbounded.
    event_num: Option<u64>,
    max_chunk_rows: usize,
    min_event_gap: Option<Duration>,
    started: Instant,
    emitted: u64,
}

/// The `NexmarkConfig` field an option `nexmark.<a>.<b>` sets, if it names one.
pub(crate) fn config_field(key: &str) -> Option<&'static str> {
    const FIELDS: &[&str] = &[
        "active_people", "in_flight_auctions", "out_of_order_group_size", "avg_person_byte_size",
        "avg_auction_byte_size", "avg_bid_byte_size", "hot_seller_ratio", "hot_auction_ratio",
        "hot_bidder_ratio", "hot_channel_ratio", "first_event_id", "first_event_number",
        "num_categories", "auction_id_lead", "person_proportion", "auction_proportion",
        "bid_proportion", "first_auction_id", "first_person_id", "first_category_id",
        "person_id_lead", "base_time", "first_rate", "next_rate",
    ];
    let field = key.strip_prefix("nexmark.")?.replace('.', "_");
    FIELDS.iter().copied().find(|f| *f == field)
}

pub(crate) fn generator_config(options: &Options) -> Result<NexmarkConfig, ConnectorError> {
    let mut cfg = NexmarkConfig::default();
    for key in options.keys() {
        let Some(field) = config_field(key) else { continue };
        let v: usize = parse_opt(options, key)?.expect("present");
        match field {
            "active_people" => cfg.active_people = v,
            "in_flight_auctions" => cfg.in_flight_auctions = v,
            "out_of_order_group_size" => cfg.out_of_order_group_size = v.max(1),
            "avg_person_byte_size" => cfg.avg_person_byte_size = v,
            "avg_auction_byte_size" => cfg.avg_auction_byte_size = v,
            "avg_bid_byte_size" => cfg.avg_bid_byte_size = v,
            "hot_seller_ratio" => cfg.hot_seller_ratio = v.max(1),
            "hot_auction_ratio" => cfg.hot_auction_ratio = v.max(1),
            "hot_bidder_ratio" => cfg.hot_bidder_ratio = v.max(1),
            "hot_channel_ratio" => cfg.hot_channel_ratio = v.max(1),
            "first_event_id" => cfg.first_event_id = v,
            "first_event_number" => cfg.first_event_number = v,
            "num_categories" => cfg.num_categories = v.max(1),
            "auction_id_lead" => cfg.auction_id_lead = v,
            "person_proportion" => cfg.person_proportion = v.max(1),
            "auction_proportion" => cfg.auction_proportion = v.max(1),
            "bid_proportion" => cfg.bid_proportion = v.max(1),
            "first_auction_id" => cfg.first_auction_id = v,
            "first_person_id" => cfg.first_person_id = v,
            "first_category_id" => cfg.first_category_id = v,
            "person_id_lead" => cfg.person_id_lead = v,
            "base_time" => cfg.base_time = v as u64,
            // Events per second of event time: spreads timestamps, not a wall-clock pace.
            "first_rate" => cfg.first_rate = v.max(1),
            "next_rate" => cfg.next_rate = v.max(1),
            _ => unreachable!("config_field returns only listed fields"),
        }
    }
    Ok(cfg)
}

impl NexmarkReader {
    pub fn new(schema: SchemaRef, options: &Options) -> Result<Self, ConnectorError> {
        let table = TableType::from_options(options)?;
        let event_type = match table {
            TableType::Person => EventType::Person,
            TableType::Auction => EventType::Auction,
            TableType::Bid => EventType::Bid,
        };
        let generator = EventGenerator::new(generator_config(options)?).with_type_filter(event_type);
        let max_chunk_rows = parse_opt::<usize>(options, "nexmark.max.chunk.size")?.unwrap_or(usize::MAX).max(1);
        let min_event_gap = parse_opt::<u64>(options, "nexmark.min.event.gap.in.ns")?
            .filter(|&ns| ns > 0)
            .map(Duration::from_nanos);
        Ok(Self {
            schema,
            table,
            generator,
            event_num: parse_opt(options, "nexmark.event.num")?,
            max_chunk_rows,
            min_event_gap,
            started: Instant::now(),
            emitted: 0,
        })
    }

    /// How many rows the next chunk may hold under the rate limit (zero: not yet).
    async fn admit(&mut self, max_rows: usize) -> usize {
        let rows = max_rows.min(self.max_chunk_rows);
        let Some(gap) = self.min_event_gap else { return rows };
        let per_wait = (crate::MAX_PACING_WAIT.as_nanos() / gap.as_nanos().max(1)).max(1) as usize;
        let rows = rows.min(per_wait);
        let due_ns = gap.as_nanos().saturating_mul(u128::from(self.emitted) + rows as u128);
        let due = Duration::from_nanos(u64::try_from(due_ns).unwrap_or(u64::MAX));
        if crate::pace(self.started, due).await { rows } else { 0 }
    }

    fn exhausted(&self) -> bool {
        self.event_num.is_some_and(|n| self.generator.global_offset() >= n)
    }
}

#[async_trait]
impl SourceReader for NexmarkReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_append_only(&self) -> bool {
        true
    }

    fn is_bounded(&self) -> bool {
        self.event_num.is_some()
    }

    /// The generator's offset among events of this table's type.
    fn position(&self) -> Option<Position> {
        Some(Position::from([(String::new(), self.generator.offset())]))
    }

    fn seek(&mut self, position: Position) -> EngineResult<()> {
        let Some(&offset) = position.get("") else {
            openclaw_engine::internal_err!("a nexmark position has one split, got {position:?}");
        };
        self.generator = self.generator.clone().with_offset(offset);
        Ok(())
    }

    async fn next_chunk(&mut self, max_rows: usize) -> EngineResult<Option<StreamChunk>> {
        if self.exhausted() {
            return Ok(None);
        }
        let rows = self.admit(max_rows).await;
        if rows == 0 {
            return Ok(Some(StreamChunk::inserts(datafusion::arrow::array::RecordBatch::new_empty(self.schema.clone()))));
        }
        let mut cols = Columns::new(self.table, rows);
        while cols.len < rows && !self.exhausted() {
            let event = self.generator.next().expect("the generator is endless");
            cols.push(event);
        }
        self.emitted += cols.len as u64;
        let batch = crate::conform(&self.schema, |name| cols.column(name))?;
        Ok(Some(StreamChunk::inserts(batch)))
    }
}

/// Column builders for one table type, filled event by event.
struct Columns {
    len: usize,
    ints: Vec<(&'static str, Int64Builder)>,
    strs: Vec<(&'static str, StringBuilder)>,
    times: Vec<(&'static str, TimestampMillisecondBuilder)>,
}

impl Columns {
    fn new(t: TableType, cap: usize) -> Self {
        let (ints, strs, times): (&[&'static str], &[&'static str], &[&'static str]) = match t {
            TableType::Person => (&["id"], &["name", "email_address", "credit_card", "city", "state", "extra"], &["date_time"]),
            TableType::Auction => (
                &["id", "initial_bid", "reserve", "seller", "category"],
                &["item_name", "description", "extra"],
                &["date_time", "expires"],
            ),
            TableType::Bid => (&["auction", "bidder", "price"], &["channel", "url", "extra"], &["date_time"]),
        };
        Self {
            len: 0,
            ints: ints.iter().map(|n| (*n, Int64Builder::with_capacity(cap))).collect(),
            strs: strs.iter().map(|n| (*n, StringBuilder::with_capacity(cap, cap * 16))).collect(),
            times: times.iter().map(|n| (*n, TimestampMillisecondBuilder::with_capacity(cap))).collect(),
        }
    }

    fn push(&mut self, event: Event) {
        let (ints, strs, times): (Vec<i64>, Vec<String>, Vec<i64>) = match event {
            Event::Person(p) => (
                vec![p.id as i64],
                vec![p.name, p.email_address, p.credit_card, p.city, p.state, p.extra],
                vec![p.date_time as i64],
            ),
            Event::Auction(a) => (
                vec![a.id as i64, a.initial_bid as i64, a.reserve as i64, a.seller as i64, a.category as i64],
                vec![a.item_name, a.description, a.extra],
                vec![a.date_time as i64, a.expires as i64],
            ),
            Event::Bid(b) => (
                vec![b.auction as i64, b.bidder as i64, b.price as i64],
                vec![b.channel, b.url, b.extra],
                vec![b.date_time as i64],
            ),
        };
        self.ints.iter_mut().zip(ints).for_each(|((_, b), v)| b.append_value(v));
        self.strs.iter_mut().zip(strs).for_each(|((_, b), v)| b.append_value(v));
        self.times.iter_mut().zip(times).for_each(|((_, b), v)| b.append_value(v));
        self.len += 1;
    }

    fn column(&mut self, name: &str) -> Option<ArrayRef> {
        if let Some((_, b)) = self.ints.iter_mut().find(|(n, _)| *n == name) {
            return Some(Arc::new(b.finish_cloned()));
        }
        if let Some((_, b)) = self.strs.iter_mut().find(|(n, _)| *n == name) {
            return Some(Arc::new(b.finish_cloned()));
        }
        self.times.iter_mut().find(|(n, _)| *n == name).map(|(_, b)| Arc::new(b.finish_cloned()) as ArrayRef)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    fn bid_reader(extra: &[(&str, &str)]) -> NexmarkReader {
        let mut options = Options::new();
        options.insert("nexmark.table.type".into(), "bid".into());
        for (k, v) in extra {
            options.insert(k.to_string(), v.to_string());
        }
        NexmarkReader::new(super::super::table_schema(TableType::Bid), &options).unwrap()
    }

    /// The mix of the reference generator (46 bids in 50 events), and the first bid equal to
    /// the crate's own.
    #[tokio::test]
    async fn bids_among_first_events_match_the_reference_generator() {
        let mut reader = bid_reader(&[("nexmark.event.num", "100000"), ("nexmark.base.time", "0")]);
        let mut rows = 0;
        let mut first_auction = None;
        while let Some(chunk) = reader.next_chunk(4096).await.unwrap() {
            let auctions: &Int64Array = chunk.batch().column(0).as_primitive::<Int64Type>();
            first_auction.get_or_insert(auctions.value(0));
            rows += chunk.num_rows();
        }
        assert_eq!(rows, 92_000, "46 of every 50 events are bids");
        let mut cfg = NexmarkConfig::default();
        cfg.base_time = 0;
        let expected = EventGenerator::new(cfg)
            .find_map(|e| if let Event::Bid(b) = e { Some(b.auction as i64) } else { None });
        assert_eq!(first_auction, expected);
    }

    /// An absurd rate limit neither panics nor blocks: the reader answers "nothing yet".
    #[tokio::test]
    async fn a_huge_event_gap_yields_empty_chunks_without_blocking() {
        let gap = u64::MAX.to_string();
        let mut reader = bid_reader(&[("nexmark.min.event.gap.in.ns", gap.as_str())]);
        let started = Instant::now();
        let chunk = reader.next_chunk(4096).await.unwrap().unwrap();
        assert!(chunk.is_empty());
        assert!(started.elapsed() < crate::MAX_PACING_WAIT * 10);
    }
}
