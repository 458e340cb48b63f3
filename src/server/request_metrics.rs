//! The fronts' own counters, kept for the process's life (unlike the database's, which
//! `/metrics` reads from the running objects at each scrape): pgwire sessions, and ingest
//! requests over HTTP and gRPC with their latency.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Latency buckets of an ingest request, 0.5 ms to 8 s: a write is acknowledged once durable
/// (a RocksDB write with its WAL synced), so the fast end matters.
const INGEST_BUCKETS_SECONDS: [f64; 15] = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

struct FrontMetrics {
    sessions_open: IntGauge,
    sessions_total: IntCounter,
    sessions_refused: IntCounter,
    ingest_requests: IntCounterVec,
    ingest_seconds: HistogramVec,
}

static FRONTS: LazyLock<FrontMetrics> = LazyLock::new(|| FrontMetrics {
    sessions_open: IntGauge::new("sessions_open", "pgwire sessions open now.").expect("a valid name"),
    sessions_total: IntCounter::new("sessions_total", "pgwire sessions accepted since the server started.").expect("a valid name"),
    sessions_refused: IntCounter::new("sessions_refused_total", "pgwire connections refused because --max-connections were open.").expect("a valid name"),
    ingest_requests: IntCounterVec::new(
        Opts::new("ingest_requests_total", "Ingest requests answered, by front (http, grpc) and outcome (an HTTP status class, or a gRPC code)."),
        &["front", "outcome"],
    )
    .expect("valid names"),
    ingest_seconds: HistogramVec::new(
        HistogramOpts::new("ingest_request_duration_seconds", "Time from an ingest request's arrival to its answer, by front.").buckets(INGEST_BUCKETS_SECONDS.to_vec()),
        &["front"],
    )
    .expect("valid buckets"),
});

/// Adds the fronts' counters to `registry` (they share their values with the ones counted).
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    let f = &*FRONTS;
    registry.register(Box::new(f.sessions_open.clone()))?;
    registry.register(Box::new(f.sessions_total.clone()))?;
    registry.register(Box::new(f.sessions_refused.clone()))?;
    registry.register(Box::new(f.ingest_requests.clone()))?;
    registry.register(Box::new(f.ingest_seconds.clone()))
}

/// Counts a pgwire session open until the guard drops.
pub struct SessionGuard(());

impl SessionGuard {
    pub fn open() -> Self {
        FRONTS.sessions_open.inc();
        FRONTS.sessions_total.inc();
        SessionGuard(())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        FRONTS.sessions_open.dec();
    }
}

pub fn session_refused() {
    FRONTS.sessions_refused.inc();
}

/// Counts one ingest request answered after `took`.
pub fn ingest_answered(front: &str, outcome: &str, took: Duration) {
    FRONTS.ingest_requests.with_label_values(&[front, outcome]).inc();
    FRONTS.ingest_seconds.with_label_values(&[front]).observe(took.as_secs_f64());
}

/// An HTTP status as its class: `2xx`, `4xx`, ...
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
