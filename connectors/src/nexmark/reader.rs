use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use nexmark::config::NexmarkConfig;
use openclaw_engine::source::{Position, SourceReader};
use openclaw_engine::{EngineResult, StreamChunk};

use super::generator::Schedule;
use super::TableType;
use crate::{parse_opt, ConnectorError, Options};

/// Most splits a Nexmark source may have (`nexmark.split.num`).
pub const MAX_SPLITS: usize = 256;

/// Reads one Nexmark table: the events of that type among the first `event.num` events,
/// or this reader's share of them when the source is split.
pub struct NexmarkReader {
    schema: SchemaRef,
    table: TableType,
    schedule: Arc<Schedule>,
    /// The splits this reader generates.
    splits: Vec<Split>,
    /// Splits of the whole source (`nexmark.split.num`).
    split_num: u64,
    /// Total events (of all types) to cover; `None` is unbounded.
    event_num: Option<u64>,
    max_chunk_rows: usize,
    min_event_gap: Option<Duration>,
    started: Instant,
    emitted: u64,
    /// The offsets of the chunk being generated (kept to reuse its allocation).
    offsets: Vec<u64>,
}

/// One split of a source: every `split_num`-th event of the table's type from `index`.
#[derive(Debug, Clone, Copy)]
struct Split {
    index: u64,
    /// The next offset (among events of the table's type) it generates.
    offset: u64,
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
        let max_chunk_rows = parse_opt::<usize>(options, "nexmark.max.chunk.size")?.unwrap_or(usize::MAX).max(1);
        let min_event_gap = parse_opt::<u64>(options, "nexmark.min.event.gap.in.ns")?
            .filter(|&ns| ns > 0)
            .map(Duration::from_nanos);
        let split_num = parse_opt::<usize>(options, "nexmark.split.num")?.unwrap_or(1);
        if !(1..=MAX_SPLITS).contains(&split_num) {
            return Err(ConnectorError::new(format!("nexmark.split.num must be between 1 and {MAX_SPLITS}, got {split_num}")));
        }
        Ok(Self {
            schema,
            table,
            schedule: Arc::new(Schedule::new(generator_config(options)?)),
            splits: (0..split_num as u64).map(|index| Split { index, offset: index }).collect(),
            split_num: split_num as u64,
            event_num: parse_opt(options, "nexmark.event.num")?,
            max_chunk_rows,
            min_event_gap,
            started: Instant::now(),
            emitted: 0,
            offsets: vec![],
        })
    }

    /// The gap between this reader's events under the rate limit: the limit is for the whole
    /// source, shared evenly by its splits.
    fn own_gap(&self) -> Option<Duration> {
        let gap = self.min_event_gap?;
        Some(gap.saturating_mul(self.split_num as u32) / self.splits.len().max(1) as u32)
    }

    /// How many rows the next chunk may hold under the rate limit (zero: not yet).
    async fn admit(&mut self, max_rows: usize) -> usize {
        let rows = max_rows.min(self.max_chunk_rows);
        let Some(gap) = self.own_gap() else { return rows };
        let per_wait = (crate::MAX_PACING_WAIT.as_nanos() / gap.as_nanos().max(1)).max(1) as usize;
        let rows = rows.min(per_wait);
        let due_ns = gap.as_nanos().saturating_mul(u128::from(self.emitted) + rows as u128);
        let due = Duration::from_nanos(u64::try_from(due_ns).unwrap_or(u64::MAX));
        if crate::pace(self.started, due).await { rows } else { 0 }
    }

    /// Whether `split` has covered the first `event.num` events.
    fn split_done(&self, split: &Split) -> bool {
        self.event_num.is_some_and(|n| self.schedule.global_offset(self.table, split.offset) >= n)
    }

    fn exhausted(&self) -> bool {
        self.splits.iter().all(|s| self.split_done(s))
    }

    /// The offsets of the next `rows` events, in generator order over this reader's splits
    /// (the smallest offset first), advancing the splits past them.
    fn take_offsets(&mut self, rows: usize) {
        self.offsets.clear();
        while self.offsets.len() < rows {
            let next = (0..self.splits.len())
                .filter(|&i| !self.split_done(&self.splits[i]))
                .min_by_key(|&i| self.splits[i].offset);
            let Some(i) = next else { break };
            self.offsets.push(self.splits[i].offset);
            self.splits[i].offset += self.split_num;
        }
    }

    /// The name of split `index` in positions: "" while the source has one split, as before
    /// splits existed, so that older checkpoints resume.
    fn split_name(&self, index: u64) -> String {
        match self.split_num {
            1 => String::new(),
            _ => format!("s{index}"),
        }
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

    /// Split `s` of `k` generates the events of this table's type at offsets `s`, `s + k`,
    /// `s + 2k`, ...: the readers together generate exactly the unsplit sequence. Reader `r`
    /// of `n` takes the splits `r`, `r + n`, ...
    fn split_off(&mut self, n: usize) -> EngineResult<Vec<Box<dyn SourceReader>>> {
        let readers = n.clamp(1, self.splits.len());
        let mut others: Vec<NexmarkReader> = (1..readers)
            .map(|_| NexmarkReader {
                schema: self.schema.clone(),
                table: self.table,
                schedule: self.schedule.clone(),
                splits: vec![],
                split_num: self.split_num,
                event_num: self.event_num,
                max_chunk_rows: self.max_chunk_rows,
                min_event_gap: self.min_event_gap,
                started: self.started,
                emitted: 0,
                offsets: vec![],
            })
            .collect();
        let splits = std::mem::take(&mut self.splits);
        for (i, split) in splits.into_iter().enumerate() {
            match i % readers {
                0 => self.splits.push(split),
                r => others[r - 1].splits.push(split),
            }
        }
        Ok(others.into_iter().map(|r| Box::new(r) as Box<dyn SourceReader>).collect())
    }

    /// The generator's offset among events of this table's type, per split.
    fn position(&self) -> Option<Position> {
        Some(self.splits.iter().map(|s| (self.split_name(s.index), s.offset)).collect())
    }

    fn seek(&mut self, position: Position) -> EngineResult<()> {
        for i in 0..self.splits.len() {
            let name = self.split_name(self.splits[i].index);
            let Some(&offset) = position.get(&name) else {
                openclaw_engine::internal_err!("the stored nexmark position {position:?} has no split \"{name}\"");
            };
            if offset % self.split_num != self.splits[i].index {
                openclaw_engine::internal_err!("the stored nexmark offset {offset} is not one of split {name}");
            }
            self.splits[i].offset = offset;
        }
        Ok(())
    }

    async fn next_chunk(&mut self, max_rows: usize) -> EngineResult<Option<StreamChunk>> {
        if self.exhausted() {
            return Ok(None);
        }
        let rows = self.admit(max_rows).await;
        if rows == 0 {
            return Ok(Some(StreamChunk::inserts(RecordBatch::new_empty(self.schema.clone()))));
        }
        self.take_offsets(rows);
        self.emitted += self.offsets.len() as u64;
        let batch = self.schedule.batch(self.table, &self.offsets);
        let batch = crate::conform(&self.schema, |name| batch.column_by_name(name).cloned())?;
        Ok(Some(StreamChunk::inserts(batch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use nexmark::event::Event;
    use nexmark::EventGenerator;

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

    /// Each row of a chunk as its columns' text.
    fn row_strings(chunk: &StreamChunk) -> Vec<String> {
        let batch = chunk.batch();
        (0..batch.num_rows())
            .map(|row| {
                let cols: Vec<String> = batch.columns().iter().map(|c| datafusion::arrow::util::display::array_value_to_string(c, row).unwrap()).collect();
                cols.join("|")
            })
            .collect()
    }

    /// Every row of `readers`, read to the end, each row's columns as text, sorted.
    async fn read_all(readers: Vec<NexmarkReader>) -> Vec<String> {
        let mut rows = vec![];
        for mut reader in readers {
            while let Some(chunk) = reader.next_chunk(1000).await.unwrap() {
                rows.extend(row_strings(&chunk));
            }
        }
        rows.sort();
        rows
    }

    fn split_readers(split_num: usize, readers: usize, events: &str) -> Vec<NexmarkReader> {
        let split = split_num.to_string();
        let mut first = bid_reader(&[("nexmark.event.num", events), ("nexmark.base.time", "0"), ("nexmark.split.num", &split)]);
        let others = first.split_off(readers).unwrap();
        assert_eq!(others.len() + 1, readers.min(split_num));
        // Box<dyn SourceReader> back to the concrete readers: rebuild them from their positions.
        let mut all = vec![];
        for other in others {
            let mut r = bid_reader(&[("nexmark.event.num", events), ("nexmark.base.time", "0"), ("nexmark.split.num", &split)]);
            let position = other.position().unwrap();
            r.splits.retain(|s| position.contains_key(&format!("s{}", s.index)));
            all.push(r);
        }
        all.insert(0, first);
        all
    }

    /// The reference's figures for the first 1,000,000 events (shared/nexmark/reference.md),
    /// from one reader and from a source split four ways over two readers.
    #[tokio::test]
    async fn split_readers_together_generate_the_reference_bids() {
        for (split_num, readers) in [(1, 1), (4, 2), (3, 4)] {
            let (mut count, mut auction, mut bidder, mut price) = (0u64, 0i64, 0i64, 0i64);
            let mut channels = std::collections::HashSet::new();
            for mut reader in split_readers(split_num, readers, "1000000") {
                while let Some(chunk) = reader.next_chunk(4096).await.unwrap() {
                    let b = chunk.batch();
                    let sum = |c: usize| b.column(c).as_primitive::<Int64Type>().values().iter().sum::<i64>();
                    (auction, bidder, price) = (auction + sum(0), bidder + sum(1), price + sum(2));
                    channels.extend(b.column(3).as_string::<i32>().iter().map(|c| c.unwrap().to_string()));
                    count += b.num_rows() as u64;
                }
            }
            let case = format!("{split_num} splits over {readers} readers");
            assert_eq!(count, 920_000, "{case}");
            assert_eq!((auction, bidder, price), (28_476_995_203, 9_975_374_887, 6_677_208_808_305), "{case}");
            assert_eq!(channels.len(), 10_004, "{case}");
        }
    }

    /// Split readers that stop part-way and resume from their positions generate each row
    /// once: the same rows as one unsplit reader.
    #[tokio::test]
    async fn split_readers_resume_from_their_positions() {
        let whole = read_all(vec![bid_reader(&[("nexmark.event.num", "20000"), ("nexmark.base.time", "0")])]).await;
        let mut before = vec![];
        let mut resumed = vec![];
        for mut reader in split_readers(3, 2, "20000") {
            for _ in 0..3 {
                let chunk = reader.next_chunk(1000).await.unwrap().unwrap();
                before.push(chunk);
            }
            let position = reader.position().unwrap();
            let mut again = bid_reader(&[("nexmark.event.num", "20000"), ("nexmark.base.time", "0"), ("nexmark.split.num", "3")]);
            again.splits.retain(|s| position.contains_key(&format!("s{}", s.index)));
            again.seek(position).unwrap();
            resumed.push(again);
        }
        let mut rows = read_all(resumed).await;
        for chunk in before {
            rows.extend(row_strings(&chunk));
        }
        rows.sort();
        assert_eq!(rows.len(), whole.len());
        assert!(rows == whole, "split readers resumed from their positions generate the unsplit rows");
    }

    #[test]
    fn a_split_count_out_of_range_is_refused() {
        for bad in ["0", "257"] {
            let mut options = Options::new();
            options.insert("nexmark.table.type".into(), "bid".into());
            options.insert("nexmark.split.num".into(), bad.into());
            let err = NexmarkReader::new(super::super::table_schema(TableType::Bid), &options).err().expect("refused");
            assert!(err.message.contains("nexmark.split.num"), "{}", err.message);
        }
    }
}
