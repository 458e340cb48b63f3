//! The Nexmark generator, writing Arrow columns directly: the events of the reference (the
//! `nexmark` crate 0.2.0, RisingWave's nexmark-rs) without a struct, a `String` or a copy per
//! event. Every value but the times comes from the reference's `SmallRng` seeded with the
//! event id (`rng.rs`), drawn in the reference's order and with the reference's types (a
//! `usize` range and a `u32` one give different draws); times use the reference's `f32`
//! arithmetic. The columns therefore
//! equal the reference's events value for value, which the tests check against the crate.

use std::f64::consts::PI;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use nexmark::config::{NexmarkConfig, RateShape};

use super::rng::EventRng;
use super::{table_schema, TableType};

/// The reference's fixed ratios of hot sellers, auctions and bidders (one in 100 ids).
const HOT_RATIO: usize = 100;
/// Shortest string of `gen_string_with_delimiter`.
const MIN_STRING_LENGTH: usize = 3;
/// The reference's number of cold channels.
const CHANNELS: usize = 10_000;

/// The generator's configuration with what the reference derives from it: the event mix and
/// the schedule of event times.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    cfg: NexmarkConfig,
    /// Events in one round of the mix (persons + auctions + bids; 50 by default).
    denominator: usize,
    inter_event_delays: Vec<f32>,
    step_length: usize,
    events_per_epoch: usize,
    epoch_period: f32,
}

impl Schedule {
    pub(crate) fn new(cfg: NexmarkConfig) -> Self {
        let denominator = cfg.person_proportion + cfg.auction_proportion + cfg.bid_proportion;
        let generators = cfg.num_event_generators as f32;
        let rate_to_period = |r: usize| cfg.us_per_unit as f32 / r as f32;
        let mut inter_event_delays = vec![];
        if cfg.first_rate == cfg.next_rate {
            inter_event_delays.push(rate_to_period(cfg.first_rate) * generators);
        } else {
            match cfg.rate_shape {
                RateShape::Square => {
                    inter_event_delays.push(rate_to_period(cfg.first_rate) * generators);
                    inter_event_delays.push(rate_to_period(cfg.next_rate) * generators);
                }
                RateShape::Sine => {
                    let mid = (cfg.first_rate + cfg.next_rate) as f64 / 2.0;
                    let amp = (cfg.first_rate as f64 - cfg.next_rate as f64) / 2.0;
                    for i in 0..cfg.sine_approx_steps {
                        let r = (2.0 * PI * i as f64) / cfg.sine_approx_steps as f64;
                        let rate = mid + amp * r.cos();
                        inter_event_delays.push(rate_to_period(rate.round() as usize) * generators);
                    }
                }
            }
        }
        let steps = if cfg.rate_shape == RateShape::Square { 2 } else { cfg.sine_approx_steps };
        let step_length = cfg.rate_period.div_ceil(steps);
        let (mut events_per_epoch, mut epoch_period) = (0, 0.0);
        if inter_event_delays.len() > 1 {
            for delay in &inter_event_delays {
                let events = (step_length * 1_000_000) as f32 / delay;
                events_per_epoch += events.round() as usize;
                epoch_period += (events * delay) / 1000.0;
            }
        }
        Self { cfg, denominator, inter_event_delays, step_length, events_per_epoch, epoch_period }
    }

    /// The event time (ms) of event `event_number`.
    fn timestamp(&self, event_number: usize) -> u64 {
        let base = self.cfg.base_time;
        if let [delay] = self.inter_event_delays[..] {
            return base + ((event_number as f32 * delay) / 1000.0).round() as u64;
        }
        let epoch = event_number / self.events_per_epoch;
        let mut event_i = event_number % self.events_per_epoch;
        let mut offset_in_epoch = 0.0;
        for delay in &self.inter_event_delays {
            let events = (self.step_length * 1_000_000) as f32 / delay;
            if self.cfg.out_of_order_group_size < events.round() as usize {
                let offset_in_cycle = event_i as f32 * delay;
                return base + (epoch as f32 * self.epoch_period + offset_in_epoch + offset_in_cycle / 1000.0).round() as u64;
            }
            event_i -= events.round() as usize;
            offset_in_epoch += (events * delay) / 1000.0;
        }
        0
    }

    /// The position among all events of the `offset`-th event of `table` (the reference's
    /// `global_offset` under a type filter).
    pub(crate) fn global_offset(&self, table: TableType, offset: u64) -> u64 {
        let (p, a, b) = (self.cfg.person_proportion, self.cfg.auction_proportion, self.cfg.bid_proportion);
        let o = offset as usize;
        let global = match table {
            TableType::Person => o / p * self.denominator + o % p,
            TableType::Auction => o / a * self.denominator + p + o % a,
            TableType::Bid => o / b * self.denominator + p + a + o % b,
        };
        global as u64
    }

    /// The last person id (base 0) at event `event_id`.
    fn last_person(&self, event_id: usize) -> usize {
        let epoch = event_id / self.denominator;
        let offset = (event_id % self.denominator).min(self.cfg.person_proportion - 1);
        epoch * self.cfg.person_proportion + offset
    }

    /// A random active person id (base 0).
    fn next_person(&self, event_id: usize, rng: &mut EventRng) -> usize {
        let people = self.last_person(event_id) + 1;
        let active = people.min(self.cfg.active_people);
        people - active + rng.below(active + self.cfg.person_id_lead)
    }

    /// The last auction id (base 0) at event `event_id`.
    fn last_auction(&self, event_id: usize) -> usize {
        let (p, a) = (self.cfg.person_proportion, self.cfg.auction_proportion);
        let mut epoch = event_id / self.denominator;
        let mut offset = event_id % self.denominator;
        if offset < p {
            epoch -= 1;
            offset = a - 1;
        } else if p + a <= offset {
            offset = a - 1;
        } else {
            offset -= p;
        }
        epoch * a + offset
    }

    /// A random auction id (base 0) among those in flight.
    fn next_auction(&self, event_id: usize, rng: &mut EventRng) -> usize {
        let max = self.last_auction(event_id);
        let min = max.saturating_sub(self.cfg.in_flight_auctions);
        min + rng.below(max - min + 1 + self.cfg.auction_id_lead)
    }

    /// A random auction length (ms).
    fn auction_length(&self, event_number: usize, rng: &mut EventRng, time: u64) -> u64 {
        let events_for_auctions = (self.cfg.in_flight_auctions * self.denominator) / self.cfg.auction_proportion;
        let horizon = self.timestamp(event_number + events_for_auctions) - time;
        1 + rng.below_u64((horizon * 2).max(1))
    }

    /// The rows of `table` at `offsets` (offsets among events of that type), as a batch of
    /// the table's full schema.
    pub(crate) fn batch(&self, table: TableType, offsets: &[u64]) -> RecordBatch {
        let columns = match table {
            TableType::Person => self.persons(offsets),
            TableType::Auction => self.auctions(offsets),
            TableType::Bid => self.bids(offsets),
        };
        RecordBatch::try_new(table_schema(table), columns).expect("the generator builds the table's schema")
    }

    /// `(event number, event id, time)` of the `offset`-th event of `table`.
    fn event(&self, table: TableType, offset: u64) -> (usize, usize, u64) {
        let number = self.cfg.first_event_number + self.global_offset(table, offset) as usize;
        (number, self.cfg.first_event_id + number, self.timestamp(number))
    }

    fn bids(&self, offsets: &[u64]) -> Vec<ArrayRef> {
        let n = offsets.len();
        let (mut auction, mut bidder, mut price, mut time) = (ints(n), ints(n), ints(n), ints(n));
        let (mut channel, mut url, mut extra) = (Text::new(n, 12), Text::new(n, 80), Text::new(n, 70));
        let cfg = &self.cfg;
        for &offset in offsets {
            let (_, id, t) = self.event(TableType::Bid, offset);
            let rng = &mut EventRng::seeded(id as u64);
            let a = match 0 < rng.below(cfg.hot_auction_ratio) {
                true => (self.last_auction(id) / HOT_RATIO) * HOT_RATIO,
                false => self.next_auction(id, rng),
            };
            let b = match 0 < rng.below(cfg.hot_bidder_ratio) {
                true => (self.last_person(id) / HOT_RATIO) * HOT_RATIO + 1,
                false => self.next_person(id, rng),
            };
            auction.push((a + cfg.first_auction_id) as i64);
            bidder.push((b + cfg.first_person_id) as i64);
            price.push(gen_price(rng) as i64);
            if rng.below(cfg.hot_channel_ratio) > 0 {
                let index = rng.below(cfg.hot_channels.len());
                channel.push(&cfg.hot_channels[index]);
                url.push(&cfg.hot_urls[index]);
            } else {
                let (c, u) = rng.choose(&CHANNEL_URLS);
                channel.push(c);
                url.push(u);
            }
            extra.push_extra(rng, 8 + 8 + 8 + 8, cfg.avg_bid_byte_size);
            time.push(t as i64);
        }
        vec![int_array(auction), int_array(bidder), int_array(price), channel.finish(), url.finish(), time_array(time), extra.finish()]
    }

    fn auctions(&self, offsets: &[u64]) -> Vec<ArrayRef> {
        let n = offsets.len();
        let (mut ids, mut initial, mut reserve, mut time, mut expires, mut seller, mut category) =
            (ints(n), ints(n), ints(n), ints(n), ints(n), ints(n), ints(n));
        let (mut item, mut description, mut extra) = (Text::new(n, 20), Text::new(n, 100), Text::new(n, 330));
        let cfg = &self.cfg;
        for &offset in offsets {
            let (number, id, t) = self.event(TableType::Auction, offset);
            let rng = &mut EventRng::seeded(id as u64);
            ids.push((self.last_auction(id) + cfg.first_auction_id) as i64);
            item.push_random(rng, 20);
            description.push_random(rng, 100);
            let first_bid = gen_price(rng);
            initial.push(first_bid as i64);
            reserve.push((first_bid + gen_price(rng)) as i64);
            expires.push((t + self.auction_length(number, rng, t)) as i64);
            let s = match rng.below(cfg.hot_seller_ratio) > 0 {
                true => (self.last_person(id) / HOT_RATIO) * HOT_RATIO,
                false => self.next_person(id, rng),
            };
            seller.push((s + cfg.first_person_id) as i64);
            category.push((cfg.first_category_id + rng.below(cfg.num_categories)) as i64);
            extra.push_extra(rng, 8 + 20 + 100 + 8 + 8 + 8 + 8 + 8, cfg.avg_auction_byte_size);
            time.push(t as i64);
        }
        vec![
            int_array(ids), item.finish(), description.finish(), int_array(initial), int_array(reserve),
            time_array(time), time_array(expires), int_array(seller), int_array(category), extra.finish(),
        ]
    }

    fn persons(&self, offsets: &[u64]) -> Vec<ArrayRef> {
        let n = offsets.len();
        let (mut ids, mut time) = (ints(n), ints(n));
        let (mut name, mut email, mut card) = (Text::new(n, 12), Text::new(n, 17), Text::new(n, 19));
        let (mut city, mut state, mut extra) = (Text::new(n, 8), Text::new(n, 2), Text::new(n, 150));
        let cfg = &self.cfg;
        for &offset in offsets {
            let (_, id, t) = self.event(TableType::Person, offset);
            let rng = &mut EventRng::seeded(id as u64);
            ids.push((self.last_person(id) + cfg.first_person_id) as i64);
            let start = extra_start(&name, &email, &card, &city, &state);
            name.push_part(rng.choose(&cfg.first_names).as_str());
            name.push_part(" ");
            name.push(rng.choose(&cfg.last_names).as_str());
            email.push_random_part(rng, 7);
            email.push_part("@");
            email.push_random_part(rng, 5);
            email.push(".com");
            for group in 0..4 {
                card.push_digits(rng.below_u32(10_000) as i32);
                if group < 3 {
                    card.push_part(" ");
                }
            }
            card.end();
            city.push(rng.choose(&cfg.us_cities).as_str());
            state.push(rng.choose(&cfg.us_states).as_str());
            let size = 8 + extra_start(&name, &email, &card, &city, &state) - start;
            extra.push_extra(rng, size, cfg.avg_person_byte_size);
            time.push(t as i64);
        }
        vec![
            int_array(ids), name.finish(), email.finish(), card.finish(), city.finish(), state.finish(),
            time_array(time), extra.finish(),
        ]
    }
}

/// Bytes written so far over the person's string columns (the reference sizes `extra` by them).
fn extra_start(name: &Text, email: &Text, card: &Text, city: &Text, state: &Text) -> usize {
    name.values.len() + email.values.len() + card.values.len() + city.values.len() + state.values.len()
}

/// The reference's price: `10^(6u) * 100` cents, rounded, from an `f32` draw.
fn gen_price(rng: &mut EventRng) -> usize {
    (10.0_f32.powf(rng.unit_f32() * 6.0) * 100.0).round() as usize
}

/// The reference's cold channels and their urls, built as it builds them.
static CHANNEL_URLS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    (0..CHANNELS)
        .map(|i| {
            let mut url = base_url(i as u64);
            if EventRng::seeded(i as u64).below_u32(10) > 0 {
                url.push_str("&channel_id=");
                url.push_str(&i64::abs((i as i32).reverse_bits() as i64).to_string());
            }
            (format!("channel-{i}"), url)
        })
        .collect()
});

/// The reference's `get_base_url`.
fn base_url(seed: u64) -> String {
    let mut rng = EventRng::seeded(seed);
    let mut part = || -> String {
        let len = MIN_STRING_LENGTH + rng.below(5 - MIN_STRING_LENGTH);
        (0..len).map(|_| if rng.below_u32(13) == 0 { '_' } else { rng.letter() as char }).collect()
    };
    let (a, b, c) = (part(), part(), part());
    format!("https://www.nexmark.com/{a}/{b}/{c}/item.htm?query=1")
}

fn ints(n: usize) -> Vec<i64> {
    Vec::with_capacity(n)
}

fn int_array(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn time_array(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values))
}

/// A string column written in place: one value buffer and its offsets.
struct Text {
    offsets: Vec<i32>,
    values: Vec<u8>,
}

impl Text {
    fn new(rows: usize, bytes_per_row: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self { offsets, values: Vec::with_capacity(rows * bytes_per_row) }
    }

    /// Appends `s` to the value being written.
    fn push_part(&mut self, s: &str) {
        self.values.extend_from_slice(s.as_bytes());
    }

    /// Ends the value being written.
    fn end(&mut self) {
        let end = i32::try_from(self.values.len()).expect("a generated chunk stays under 2 GiB of text");
        self.offsets.push(end);
    }

    fn push(&mut self, s: &str) {
        self.push_part(s);
        self.end();
    }

    /// Appends `len` random lowercase letters (the reference's `gen_exact_string`).
    fn push_random_part(&mut self, rng: &mut EventRng, len: usize) {
        self.values.extend((0..len).map(|_| rng.letter()));
    }

    fn push_random(&mut self, rng: &mut EventRng, len: usize) {
        self.push_random_part(rng, len);
        self.end();
    }

    /// Appends `v` (0..10000) as four digits, zero-padded.
    fn push_digits(&mut self, v: i32) {
        debug_assert!((0..10_000).contains(&v));
        let v = v as u32;
        self.values.extend_from_slice(&[
            b'0' + (v / 1000) as u8,
            b'0' + (v / 100 % 10) as u8,
            b'0' + (v / 10 % 10) as u8,
            b'0' + (v % 10) as u8,
        ]);
    }

    /// The reference's `gen_next_extra`: random letters bringing an event of `current_size`
    /// bytes near `average` bytes.
    fn push_extra(&mut self, rng: &mut EventRng, current_size: usize, average: usize) {
        if current_size > average {
            self.end();
            return;
        }
        let wanted = average - current_size;
        let delta = (wanted + 2) / 5;
        let len = wanted - delta + if delta == 0 { 0 } else { rng.below(2 * delta) };
        self.push_random(rng, len);
    }

    fn finish(self) -> ArrayRef {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Arc::new(StringArray::new(offsets, Buffer::from_vec(self.values), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
    use nexmark::event::{Event, EventType};
    use nexmark::EventGenerator;

    fn config() -> NexmarkConfig {
        NexmarkConfig { base_time: 1_700_000_000_000, ..NexmarkConfig::default() }
    }

    fn reference(cfg: NexmarkConfig, t: EventType, n: usize) -> Vec<Event> {
        EventGenerator::new(cfg).with_type_filter(t).take(n).collect()
    }

    fn int(batch: &RecordBatch, name: &str, row: usize) -> i64 {
        let col = batch.column_by_name(name).unwrap();
        match col.data_type() {
            datafusion::arrow::datatypes::DataType::Int64 => col.as_primitive::<Int64Type>().value(row),
            _ => col.as_primitive::<TimestampMillisecondType>().value(row),
        }
    }

    fn text<'a>(batch: &'a RecordBatch, name: &str, row: usize) -> &'a str {
        batch.column_by_name(name).unwrap().as_string::<i32>().value(row)
    }

    fn offsets(n: usize) -> Vec<u64> {
        (0..n as u64).collect()
    }

    /// Every column of the first 20,000 bids equals the reference's bids.
    #[test]
    fn bids_equal_the_reference_generator() {
        let n = 20_000;
        let batch = Schedule::new(config()).batch(TableType::Bid, &offsets(n));
        for (row, event) in reference(config(), EventType::Bid, n).into_iter().enumerate() {
            let Event::Bid(b) = event else { panic!("a bid") };
            assert_eq!(int(&batch, "auction", row), b.auction as i64, "bid {row}");
            assert_eq!(int(&batch, "bidder", row), b.bidder as i64, "bid {row}");
            assert_eq!(int(&batch, "price", row), b.price as i64, "bid {row}");
            assert_eq!(text(&batch, "channel", row), b.channel, "bid {row}");
            assert_eq!(text(&batch, "url", row), b.url, "bid {row}");
            assert_eq!(int(&batch, "date_time", row), b.date_time as i64, "bid {row}");
            assert_eq!(text(&batch, "extra", row), b.extra, "bid {row}");
        }
    }

    #[test]
    fn auctions_equal_the_reference_generator() {
        let n = 5_000;
        let batch = Schedule::new(config()).batch(TableType::Auction, &offsets(n));
        for (row, event) in reference(config(), EventType::Auction, n).into_iter().enumerate() {
            let Event::Auction(a) = event else { panic!("an auction") };
            assert_eq!(int(&batch, "id", row), a.id as i64, "auction {row}");
            assert_eq!(text(&batch, "item_name", row), a.item_name);
            assert_eq!(text(&batch, "description", row), a.description);
            assert_eq!(int(&batch, "initial_bid", row), a.initial_bid as i64);
            assert_eq!(int(&batch, "reserve", row), a.reserve as i64);
            assert_eq!(int(&batch, "date_time", row), a.date_time as i64);
            assert_eq!(int(&batch, "expires", row), a.expires as i64, "auction {row}");
            assert_eq!(int(&batch, "seller", row), a.seller as i64, "auction {row}");
            assert_eq!(int(&batch, "category", row), a.category as i64);
            assert_eq!(text(&batch, "extra", row), a.extra, "auction {row}");
        }
    }

    #[test]
    fn persons_equal_the_reference_generator() {
        let n = 5_000;
        let batch = Schedule::new(config()).batch(TableType::Person, &offsets(n));
        for (row, event) in reference(config(), EventType::Person, n).into_iter().enumerate() {
            let Event::Person(p) = event else { panic!("a person") };
            assert_eq!(int(&batch, "id", row), p.id as i64, "person {row}");
            assert_eq!(text(&batch, "name", row), p.name);
            assert_eq!(text(&batch, "email_address", row), p.email_address);
            assert_eq!(text(&batch, "credit_card", row), p.credit_card);
            assert_eq!(text(&batch, "city", row), p.city);
            assert_eq!(text(&batch, "state", row), p.state);
            assert_eq!(int(&batch, "date_time", row), p.date_time as i64);
            assert_eq!(text(&batch, "extra", row), p.extra, "person {row}");
        }
    }

    /// A non-default schedule (a sine-shaped rate, other proportions and ids, out-of-order
    /// groups) and offsets far from the start still follow the reference. (Not a non-zero
    /// `first_event_number`: the reference's type filter then yields events of other types.)
    #[test]
    fn other_configurations_and_late_offsets_follow_the_reference() {
        let cfg = NexmarkConfig {
            first_rate: 20_000,
            next_rate: 5_000,
            person_proportion: 2,
            auction_proportion: 5,
            bid_proportion: 13,
            first_event_id: 77,
            out_of_order_group_size: 3,
            hot_channel_ratio: 3,
            ..config()
        };
        let schedule = Schedule::new(cfg.clone());
        for (table, t) in [(TableType::Bid, EventType::Bid), (TableType::Auction, EventType::Auction), (TableType::Person, EventType::Person)] {
            let start = 3_000_000u64;
            let expected: Vec<Event> = EventGenerator::new(cfg.clone()).with_type_filter(t).with_offset(start).take(500).collect();
            let batch = schedule.batch(table, &(start..start + 500).collect::<Vec<_>>());
            for (row, event) in expected.iter().enumerate() {
                let (key, time) = match event {
                    Event::Bid(b) => (b.auction as i64, b.date_time),
                    Event::Auction(a) => (a.seller as i64, a.date_time),
                    Event::Person(p) => (p.id as i64, p.date_time),
                };
                let key_column = ["auction", "seller", "id"].into_iter().find(|c| batch.column_by_name(c).is_some()).unwrap();
                assert_eq!(int(&batch, key_column, row), key, "{table:?} {row}");
                assert_eq!(int(&batch, "date_time", row), time as i64, "{table:?} {row}");
            }
        }
    }
}
