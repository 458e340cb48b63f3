//! `openclaw bench nexmark`: runs a Nexmark query as a materialized view over the built-in
//! generator, in-process, and prints events per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use openclaw_sql::{Database, QueryOutput, SessionVars};
use openclaw_storage::Store;

use crate::server::BoxError;
use crate::EngineArgs;

#[derive(Args)]
pub struct NexmarkArgs {
    /// The queries, comma-separated, or `all`: q0, q1, q2, q10, q14, q21, q22 (stateless), or
    /// q3, q4, q5, q7, q8, q9, q15, q16, q17, q18, q19, q20 (stateful; partitioned over
    /// --workers). q3, q4, q8, q9 and q20 also read the person and auction streams.
    #[arg(long, default_value = "q1")]
    query: String,
    /// Events to generate (all types; 46 of every 50 are bids).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Where each query's rows go: `blackhole` (a sink that drops them, as Flink's and
    /// RisingWave's Nexmark runs do) or `view` (a materialized view that keeps them).
    #[arg(long, default_value = "blackhole")]
    sink: String,
    /// Also write the results to this file as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Generate events at this many per second of wall-clock time (event times then follow
    /// the wall clock), and measure each output row's latency from its event's generation
    /// (its `date_time`) to the blackhole sink: p50 and p99. Queries whose rows carry a
    /// `date_time`: q0, q1, q7, q10, q14, q20, q22... Without it, events come as fast as
    /// the query takes them.
    #[arg(long)]
    rate: Option<u64>,
    /// Directory under which each query gets a fresh state directory (deleted after it);
    /// the system's temporary directory by default.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Readers of the bid stream (`nexmark.split.num`): each generates a disjoint share of
    /// the bids on its own task. One per worker by default.
    #[arg(long)]
    splits: Option<usize>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Every query `bench nexmark` knows, in order.
const ALL_QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q10", "q14", "q15", "q16", "q17", "q18", "q19", "q20", "q21", "q22"];

const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR";

const PERSON_COLUMNS: &str = "id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR";

const AUCTION_COLUMNS: &str = "id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR";

/// Nexmark's watermark (its Flink DDL's), on every stream: what lets windows close and
/// interval joins free their state.
const WATERMARK: &str = "WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND";

/// The streams a query reads besides bids (each a source over the same event sequence, as in
/// RisingWave's Nexmark runs).
fn other_streams(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "q3" | "q8" => &[("person", PERSON_COLUMNS), ("auction", AUCTION_COLUMNS)],
        "q4" | "q9" | "q20" => &[("auction", AUCTION_COLUMNS)],
        _ => &[],
    }
}

/// The Nexmark queries that read bids only, in RisingWave's form (q14 with `count_char`
/// inlined). The stateless ones are checked against ad-hoc queries in
/// `tests/slt/06_nexmark_queries.slt`.
fn query(name: &str) -> Option<&'static str> {
    Some(match name {
        "q0" => "SELECT auction, bidder, price, date_time FROM bid",
        "q1" => "SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid",
        "q2" => "SELECT auction, price FROM bid WHERE auction = 1007 OR auction = 1020 OR auction = 2001 OR auction = 2019 OR auction = 2087",
        "q10" => "SELECT auction, bidder, price, date_time, extra, to_char(date_time, 'YYYY-MM-DD') AS date, to_char(date_time, 'HH:MI') AS time FROM bid",
        "q14" => "SELECT auction, bidder, 0.908 * price AS price, CASE WHEN extract(hour from date_time) >= 8 AND extract(hour from date_time) <= 18 THEN 'dayTime' WHEN extract(hour from date_time) <= 6 OR extract(hour from date_time) >= 20 THEN 'nightTime' ELSE 'otherTime' END AS bidTimeType, date_time, extra, length(extra) - length(replace(extra, 'c', '')) AS c_counts FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000",
        "q21" => "SELECT auction, bidder, price, channel, CASE WHEN lower(channel) = 'apple' THEN '0' WHEN lower(channel) = 'google' THEN '1' WHEN lower(channel) = 'facebook' THEN '2' WHEN lower(channel) = 'baidu' THEN '3' ELSE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] END AS channel_id FROM bid WHERE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] IS NOT NULL OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')",
        "q22" => "SELECT auction, bidder, price, channel, split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2, split_part(url, '/', 6) AS dir3 FROM bid",
        // Stateful queries over several streams, RisingWave's forms as in
        // tests/slt/07_nexmark_stateful.slt (checked there against ad-hoc queries).
        "q3" => "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')",
        "q4" => "SELECT Q.category, AVG(Q.final) AS avg FROM (SELECT MAX(B.price) AS final, A.category FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) Q GROUP BY Q.category",
        "q8" => "SELECT P.id, P.name, P.starttime FROM (SELECT id, name, window_start AS starttime, window_end AS endtime FROM TUMBLE(person, date_time, INTERVAL '10' SECOND) GROUP BY id, name, window_start, window_end) P JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND) GROUP BY seller, window_start, window_end) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
        "q9" => "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, auction, bidder, price, bid_date_time FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.bidder ASC) AS rownum FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) tmp WHERE rownum <= 1",
        "q20" => "SELECT auction, bidder, price, channel, url, B.date_time AS date_time, B.extra AS extra, item_name, description, initial_bid, reserve, A.date_time AS auction_date_time, expires, seller, category, A.extra AS auction_extra FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id WHERE A.category = 10",
        // Stateful queries over bids only, as in tests/slt/nexmark_queries.py (checked against
        // ad-hoc queries in 07_nexmark_stateful.slt and 10_parallelism.slt).
        "q5" => "SELECT AuctionBids.auction, AuctionBids.num FROM (SELECT bid.auction, count(*) AS num, window_start AS starttime FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY window_start, bid.auction) AS AuctionBids JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime_c FROM (SELECT count(*) AS num, window_start AS starttime_c FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY bid.auction, window_start) AS CountBids GROUP BY CountBids.starttime_c) AS MaxBids ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn",
        "q7" => "SELECT B.auction, B.price, B.bidder, B.date_time FROM bid B JOIN (SELECT MAX(price) AS maxprice, window_end AS date_time FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end) B1 ON B.price = B1.maxprice WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time",
        "q15" => "SELECT to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM bid GROUP BY to_char(date_time, 'YYYY-MM-DD')",
        "q16" => "SELECT channel, to_char(date_time, 'YYYY-MM-DD') AS day, max(to_char(date_time, 'HH:mm')) AS minute, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM bid GROUP BY channel, to_char(date_time, 'YYYY-MM-DD')",
        "q17" => "SELECT auction, to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, sum(price) AS sum_price FROM bid GROUP BY auction, to_char(date_time, 'YYYY-MM-DD')",
        "q18" => "SELECT auction, bidder, price, channel, url, date_time, extra FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC) AS rank_number FROM bid) t WHERE rank_number <= 1",
        "q19" => "SELECT auction, bidder, price, channel, url, date_time, extra, rank_number FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time ASC, bidder ASC) AS rank_number FROM bid) t WHERE rank_number <= 10",
        _ => return None,
    })
}

pub(crate) async fn run(db: &Database, vars: &mut SessionVars, sql: &str) -> Result<Vec<QueryOutput>, BoxError> {
    let mut out = vec![];
    for r in db.execute(vars, sql).await {
        out.push(r.map_err(|e| format!("{sql}: {} ({})", e.message, e.code.code()))?);
    }
    Ok(out)
}

/// One query's run.
struct NexmarkResult {
    engine: &'static str,
    query: String,
    sink: String,
    events: u64,
    workers: usize,
    seconds: f64,
    events_per_s: f64,
    events_per_s_per_core: f64,
    cpu_seconds: f64,
    peak_rss_mb: f64,
    /// The state store's largest size during the run (SST files and memtables).
    peak_state_mb: f64,
    state_cache_mb: usize,
    output_rows: Option<u64>,
    /// Under `--rate`: the rate, and the p50 and p99 latency (ms).
    latency: Option<(u64, Option<u64>, Option<u64>)>,
}

pub async fn nexmark(args: NexmarkArgs, dataflow: tokio::runtime::Handle) -> Result<(), BoxError> {
    let names: Vec<String> = match args.query.as_str() {
        "all" => ALL_QUERIES.iter().map(|q| q.to_string()).collect(),
        list => list.split(',').map(|q| q.trim().to_string()).collect(),
    };
    if let Some(unknown) = names.iter().find(|q| query(q).is_none()) {
        return Err(format!("unknown query {unknown:?}; choose from {}, or all", ALL_QUERIES.join(", ")).into());
    }
    if !["blackhole", "view"].contains(&args.sink.as_str()) {
        return Err(format!("unknown sink {:?}; choose blackhole or view", args.sink).into());
    }
    let mut results = vec![];
    for name in &names {
        results.push(nexmark_query(&args, name, &dataflow).await?);
    }
    println!();
    println!("{:<6} {:>10} {:>9} {:>12} {:>14} {:>9} {:>10} {:>11}", "query", "events", "seconds", "events/s", "events/s/core", "cpu s", "peak MiB", "state MiB");
    for r in &results {
        println!(
            "{:<6} {:>10} {:>9.2} {:>12.0} {:>14.0} {:>9.1} {:>10.0} {:>11.0}",
            r.query, r.events, r.seconds, r.events_per_s, r.events_per_s_per_core, r.cpu_seconds, r.peak_rss_mb, r.peak_state_mb
        );
    }
    if let Some(path) = &args.json {
        let json: Vec<serde_json::Value> = results.iter().map(NexmarkResult::to_json).collect();
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

impl NexmarkResult {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "engine": self.engine, "query": self.query, "sink": self.sink, "events": self.events,
            "workers": self.workers, "seconds": self.seconds, "events_per_s": self.events_per_s.round(),
            "events_per_s_per_core": self.events_per_s_per_core.round(), "cpu_seconds": self.cpu_seconds,
            "peak_rss_mb": self.peak_rss_mb.round(), "peak_state_mb": self.peak_state_mb.round(),
            "state_cache_mb": self.state_cache_mb, "output_rows": self.output_rows,
            "rate": self.latency.map(|l| l.0), "latency_p50_ms": self.latency.and_then(|l| l.1),
            "latency_p99_ms": self.latency.and_then(|l| l.2),
        })
    }
}

/// Runs one query from CREATE to FLUSH in a fresh store, measuring wall and CPU time and the
/// peak resident memory of the process during the run.
async fn nexmark_query(args: &NexmarkArgs, name: &str, dataflow: &tokio::runtime::Handle) -> Result<NexmarkResult, BoxError> {
    let sql = query(name).expect("checked");
    // A directory per query: the previous query's store may still be closing.
    let dir = args.data_dir.clone().unwrap_or_else(|| std::env::temp_dir()).join(format!("openclaw-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_with_cache(&dir, args.engine.state_cache_mb.max(8) << 20)?;
    let state_sampler = StateSampler::start(store.clone());
    let db = Database::open(store, args.engine.engine_config(dataflow), None).await?;
    let mut vars = SessionVars::default();
    // Paced: event i is released at start + i / rate and stamped base + i / rate, with the
    // base the wall clock now, so that an event's time is when it was generated.
    // A reader paces the rows of its own stream, which holds `share` of every 50 events.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let pacing = |share: u64| match args.rate {
        Some(rate) => format!(
            ", 'nexmark.min.event.gap.in.ns' = '{}', 'nexmark.base.time' = '{now_ms}', 'nexmark.first.rate' = '{rate}', 'nexmark.next.rate' = '{rate}'",
            50_000_000_000 / (rate.max(1) * share)
        ),
        None => String::new(),
    };
    let bid_splits = args.splits.unwrap_or_else(|| args.engine.worker_threads()).max(1);
    for (stream, columns) in [("bid", BID_COLUMNS)].iter().chain(other_streams(name)) {
        let pacing = pacing(match *stream { "bid" => 46, "auction" => 3, _ => 1 });
        // Persons and auctions are 4 events in 50: one reader each keeps up.
        let splits = if *stream == "bid" { bid_splits } else { 1 };
        run(&db, &mut vars, &format!(
            "CREATE SOURCE {stream} ({columns}, {WATERMARK}) WITH (connector = 'nexmark', 'nexmark.table.type' = '{stream}', 'nexmark.event.num' = '{}', 'nexmark.split.num' = '{splits}'{pacing})",
            args.events
        ))
        .await?;
    }
    reset_peak_rss();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let create = match args.sink.as_str() {
        "view" => format!("CREATE MATERIALIZED VIEW {name} AS {sql}"),
        _ if args.rate.is_some() => format!("CREATE SINK {name} AS {sql} WITH (connector = 'blackhole', 'latency.column' = 'date_time')"),
        _ => format!("CREATE SINK {name} AS {sql} WITH (connector = 'blackhole')"),
    };
    run(&db, &mut vars, &create).await?;
    run(&db, &mut vars, "FLUSH").await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let peak_rss_mb = peak_rss_bytes() as f64 / (1 << 20) as f64;
    let peak_state_mb = state_sampler.stop() as f64 / (1 << 20) as f64;
    let output_rows = match args.sink.as_str() {
        "view" => match run(&db, &mut vars, &format!("SELECT count(*) FROM {name}")).await?.pop() {
            Some(output) => {
                let batches = output.collect().await.map_err(|e| e.message)?;
                batches.first().and_then(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>()).map(|c| c.value(0) as u64)
            }
            None => None,
        },
        _ => None,
    };
    let latency = args.rate.map(|rate| {
        let histogram = openclaw_connectors::blackhole::latency::take(name);
        let quantile = |q| histogram.as_ref().and_then(|h| h.lock().ok()?.quantile_ms(q));
        (rate, quantile(0.5), quantile(0.99))
    });
    if let Some((rate, p50, p99)) = latency {
        let ms = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{v} ms"));
        println!("nexmark {name} at {rate} events/s: latency from generation to the sink p50 {}, p99 {}", ms(p50), ms(p99));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = args.engine.worker_threads();
    let eps = args.events as f64 / elapsed;
    println!(
        "nexmark {name} ({} events, {} bids, {} sink): {elapsed:.2} s, {eps:.0} events/s, {:.0} per core ({cores} cores, {workers} workers), {cpu:.1} CPU s, peak RSS {peak_rss_mb:.0} MiB, peak state {peak_state_mb:.0} MiB (cache {} MiB){}",
        args.events,
        args.events / 50 * 46,
        args.sink,
        eps / cores.min(workers) as f64,
        args.engine.state_cache_mb,
        output_rows.map(|r| format!(", {r} rows in the view")).unwrap_or_default()
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(NexmarkResult {
        engine: "openclaw",
        query: name.to_string(),
        sink: args.sink.clone(),
        events: args.events,
        workers,
        seconds: elapsed,
        events_per_s: eps,
        events_per_s_per_core: eps / cores.min(workers) as f64,
        cpu_seconds: cpu,
        peak_rss_mb,
        peak_state_mb,
        state_cache_mb: args.engine.state_cache_mb,
        output_rows,
        latency,
    })
}

/// Samples the state store's size (SST files and memtables) every quarter second on a thread
/// of its own, keeping the largest.
struct StateSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl StateSampler {
    const EVERY: Duration = Duration::from_millis(250);

    fn start(store: Store) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                peak = store.state_bytes().unwrap_or(0).max(peak);
                if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Self::EVERY);
            }
        });
        Self { stop, thread }
    }

    /// The largest size seen, in bytes, once the sampler has stopped.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// CPU seconds (user and system) this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Resets the process's peak resident set to its current size (Linux: `clear_refs` 5), so
/// that each query's peak is its own.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set since the last [`reset_peak_rss`] (Linux's `VmHWM`).
pub(crate) fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[derive(Args)]
pub struct KafkaArgs {
    /// JSON bids to produce and read.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Bids produced between two FLUSHes: librdkafka's mock broker keeps only about 5 MB per
    /// partition, so the topic is filled and drained in steps.
    #[arg(long, default_value_t = 40_000)]
    step: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `openclaw bench kafka`: JSON bids from a Kafka topic (librdkafka's mock broker, in this
/// process) into a view counting bids per auction, a step at a time: produce, then FLUSH
/// (which waits for the source to reach the end of every partition).
pub async fn kafka(args: KafkaArgs, dataflow: tokio::runtime::Handle) -> Result<(), BoxError> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    cluster.create_topic("bid", args.partitions, 1)?;
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("compression.type", "lz4")
        .set("linger.ms", "10")
        .create()?;
    let dir = std::env::temp_dir().join(format!("openclaw-bench-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::open(Store::open_with_cache(&dir, args.engine.state_cache_mb.max(8) << 20)?, args.engine.engine_config(&dataflow), None).await?;
    let mut vars = SessionVars::default();
    run(&db, &mut vars, &format!(
        // The mock broker holds an empty fetch for fetch.wait.max.ms (500 ms by default) even
        // when records arrive meanwhile; a short wait keeps that out of the figure.
        "CREATE SOURCE bid ({BID_COLUMNS}) WITH (connector = 'kafka', topic = 'bid', 'properties.bootstrap.server' = '{}', 'properties.fetch.wait.max.ms' = '5', 'properties.enable.auto.commit' = 'false') FORMAT PLAIN ENCODE JSON",
        cluster.bootstrap_servers()
    ))
    .await?;
    run(&db, &mut vars, "CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS num FROM bid GROUP BY auction").await?;
    let options = [("nexmark.base.time".to_string(), "1700000000000".to_string())].into();
    let bids: Vec<String> = openclaw_connectors::nexmark::json::bids(&options).map_err(|e| e.message)?.take(args.events as usize).collect();
    let bytes: usize = bids.iter().map(String::len).sum();
    let (mut reading, mut producing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for step in bids.chunks(args.step.max(1)) {
        let started = Instant::now();
        for bid in step {
            crate::kafka::send_waiting(&producer, BaseRecord::to("bid").payload(bid.as_bytes()))?;
        }
        producer.flush(std::time::Duration::from_secs(60))?;
        producing += started.elapsed();
        let started = Instant::now();
        run(&db, &mut vars, "FLUSH").await?;
        reading += started.elapsed();
    }
    let counted = match run(&db, &mut vars, "SELECT sum(num) FROM per_auction").await?.pop() {
        Some(output) => datafusion::arrow::util::pretty::pretty_format_batches(&output.collect().await.map_err(|e| e.message)?)?.to_string(),
        None => String::new(),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = args.engine.worker_threads();
    let eps = args.events as f64 / reading.as_secs_f64();
    println!("kafka: {} JSON bids ({:.1} MB) from {} partitions, {} per step", args.events, bytes as f64 / 1e6, args.partitions, args.step);
    println!("counted:\n{counted}");
    // The source reads while the step is being produced, so the FLUSH time alone flatters it;
    // the end-to-end figure (producer and reader sharing the machine) is the conservative one.
    let total = (producing + reading).as_secs_f64();
    let end_to_end = args.events as f64 / total;
    println!("producing a step: {:.2} s; FLUSH after it: {:.2} s; in all {total:.2} s", producing.as_secs_f64(), reading.as_secs_f64());
    println!(
        "throughput end to end (producing and reading overlap): {end_to_end:.0} events/s ({:.1} MB/s); {:.0} events/s per core ({cores} cores, {workers} workers)",
        bytes as f64 / 1e6 / total,
        end_to_end / cores as f64
    );
    println!("FLUSH time only: {eps:.0} events/s");
    let _ = std::fs::remove_dir_all(&dir);
    // The process ends right after: the mock broker stays up until then, so that the source,
    // still running, does not log the broker's going away.
    std::mem::forget(cluster);
    drop(db);
    Ok(())
}

#[derive(Args)]
pub struct CheckpointArgs {
    /// State to hold while measuring, in MiB: half in a table, half in a view copying it.
    #[arg(long, default_value_t = 1024)]
    state_mb: u64,
    /// How long to measure, once the state is loaded.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Directory for the benchmark's state; a fresh temporary one by default.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Bytes of each row of the state table.
const STATE_ROW_BYTES: u64 = 1000;
/// Random digits (`random()` as text, 55 times, cut to 1,000 bytes), which LZ4 cannot shrink
/// much: the state on disk is about as large as asked for.
fn state_payload() -> String {
    format!("left(concat({}), {STATE_ROW_BYTES})", vec!["random()::text"; 55].join(", "))
}
/// Rows per `INSERT ... SELECT` while loading the state (about 50 MB each).
const STATE_ROWS_PER_INSERT: u64 = 50_000;

/// `openclaw bench checkpoint`: loads `--state-mb` of state, then runs an unbounded Nexmark
/// source into an aggregating view for `--seconds` while checkpoints are taken every
/// `--checkpoint-interval`, and prints what checkpoints cost (the longest operator snapshot of
/// each, from `SHOW CHECKPOINTS`) and the events read per second.
pub async fn checkpoint(args: CheckpointArgs, dataflow: tokio::runtime::Handle) -> Result<(), BoxError> {
    let dir = args.data_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("openclaw-bench-ckpt-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::open(Store::open_with_cache(&dir, args.engine.state_cache_mb.max(8) << 20)?, args.engine.engine_config(&dataflow), None).await?;
    let mut vars = SessionVars::default();
    let loading = Instant::now();
    run(&db, &mut vars, "CREATE TABLE state_rows (k BIGINT PRIMARY KEY, v VARCHAR)").await?;
    run(&db, &mut vars, "CREATE MATERIALIZED VIEW state_copy AS SELECT k, v FROM state_rows").await?;
    let rows = (args.state_mb << 20) / 2 / STATE_ROW_BYTES;
    let mut start = 0;
    while start < rows {
        let end = (start + STATE_ROWS_PER_INSERT).min(rows);
        run(&db, &mut vars, &format!("INSERT INTO state_rows SELECT i, {} FROM generate_series({start}, {}) AS s(i)", state_payload(), end - 1)).await?;
        start = end;
    }
    run(&db, &mut vars, "FLUSH").await?;
    println!("loaded {rows} rows of {STATE_ROW_BYTES} bytes into a table and a view copying it in {:.1} s", loading.elapsed().as_secs_f64());
    run(&db, &mut vars, &format!(
        "CREATE SOURCE bid ({BID_COLUMNS}) WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.event.num' = '{}')",
        u64::MAX / 2
    ))
    .await?;
    run(&db, &mut vars, "CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS num, max(price) AS top FROM bid GROUP BY auction").await?;
    // Only the newest two checkpoints stay listed: poll often enough to see every one.
    let before: std::collections::BTreeMap<u64, Listed> = checkpoints(&db, &mut vars).await?;
    let read_before = rows_read(&db, &mut vars).await?;
    let started = Instant::now();
    let mut seen = std::collections::BTreeMap::new();
    while started.elapsed() < std::time::Duration::from_secs(args.seconds) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen.extend(checkpoints(&db, &mut vars).await?.into_iter().filter(|(id, _)| !before.contains_key(id)));
    }
    let wall_ms = started.elapsed().as_millis() as u64;
    let read = rows_read(&db, &mut vars).await? - read_before;
    let mean = |f: fn(&Listed) -> u64| seen.values().map(f).sum::<u64>() as f64 / seen.len().max(1) as f64;
    let snapshot_total: u64 = seen.values().map(|c| c.snapshot_ms).sum();
    println!("window: {:.1} s; checkpoints committed in it: {}", wall_ms as f64 / 1e3, seen.len());
    println!(
        "per checkpoint: {:.0} MB, {:.0} ms from barrier to commit, of which {:.0} ms committing",
        mean(|c| c.bytes) / 1e6,
        mean(|c| c.duration_ms),
        mean(|c| c.write_ms)
    );
    // Sources and tables never wait for a checkpoint: each operator exports its own state as
    // the barrier passes it, and only that operator waits meanwhile.
    println!(
        "inputs held by checkpoints: 0 ms; longest operator snapshot per checkpoint: mean {:.0} ms, max {} ms ({:.2}% of wall time summed)",
        mean(|c| c.snapshot_ms),
        seen.values().map(|c| c.snapshot_ms).max().unwrap_or(0),
        100.0 * snapshot_total as f64 / wall_ms as f64
    );
    println!("bids read: {read}, {:.0} per second", read as f64 / (wall_ms as f64 / 1e3));
    drop(db);
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A checkpoint as `SHOW CHECKPOINTS` lists it.
struct Listed {
    bytes: u64,
    duration_ms: u64,
    write_ms: u64,
    snapshot_ms: u64,
}

async fn checkpoints(db: &Database, vars: &mut SessionVars) -> Result<std::collections::BTreeMap<u64, Listed>, BoxError> {
    let mut out = std::collections::BTreeMap::new();
    for row in text_rows(db, vars, "SHOW CHECKPOINTS").await? {
        let n = |i: usize| row.get(i).and_then(|v| v.as_deref()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(n(0), Listed { bytes: n(2), duration_ms: n(4), write_ms: n(5), snapshot_ms: n(6) });
    }
    Ok(out)
}

/// Rows the sources have read, over every reader.
async fn rows_read(db: &Database, vars: &mut SessionVars) -> Result<u64, BoxError> {
    let rows = text_rows(db, vars, "SHOW SOURCES").await?;
    Ok(rows.iter().filter_map(|r| r.get(3)?.as_deref()?.parse::<u64>().ok()).sum())
}

/// The rows of a statement's result, each column as text.
async fn text_rows(db: &Database, vars: &mut SessionVars, sql: &str) -> Result<Vec<Vec<Option<String>>>, BoxError> {
    use datafusion::arrow::array::Array;
    let mut out = vec![];
    let Some(output) = run(db, vars, sql).await?.pop() else { return Ok(out) };
    for batch in output.collect().await.map_err(|e| e.message)? {
        let columns: Vec<_> = batch.columns().iter().map(|c| datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)).collect::<Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().expect("cast to Utf8");
                        (!c.is_null(i)).then(|| c.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}
