//! Counters kept for the process's life (unlike the database's, which `/metrics` reads from
//! the running objects at each scrape): pgwire sessions, ingest requests over HTTP and gRPC
//! with their latency, and checkpoints with theirs (the database tells of each as it commits).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Latency buckets of an ingest request, 0.5 ms to 8 s: a write is acknowledged once durable
/// (a RocksDB write with its WAL synced), so the fast end matters.
const INGEST_BUCKETS_SECONDS: [f64; 15] = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// Checkpoint duration buckets, 10 ms to 82 s: from its barrier's injection to its commit.
const CHECKPOINT_BUCKETS_SECONDS: [f64; 14] = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];

struct LifetimeMetrics {
    sessions_open: IntGauge,
    sessions_total: IntCounter,
    sessions_refused: IntCounter,
    ingest_requests: IntCounterVec,
    ingest_seconds: HistogramVec,
    checkpoint_seconds: Histogram,
    checkpoint_bytes: IntCounter,
}

static LIFETIME: LazyLock<LifetimeMetrics> = LazyLock::new(|| LifetimeMetrics {
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
    checkpoint_seconds: Histogram::with_opts(
        HistogramOpts::new("checkpoint_duration_seconds", "Checkpoints committed since the server started, by time from their barrier's injection to their commit.")
            .buckets(CHECKPOINT_BUCKETS_SECONDS.to_vec()),
    )
    .expect("valid buckets"),
    checkpoint_bytes: IntCounter::new("checkpoint_bytes_total", "Bytes of the files of every checkpoint committed since the server started.").expect("a valid name"),
});

/// Adds the fronts' counters to `registry` (they share their values with the ones counted).
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    let f = &*LIFETIME;
    registry.register(Box::new(f.sessions_open.clone()))?;
    registry.register(Box::new(f.sessions_total.clone()))?;
    registry.register(Box::new(f.sessions_refused.clone()))?;
    registry.register(Box::new(f.ingest_requests.clone()))?;
    registry.register(Box::new(f.ingest_seconds.clone()))?;
    registry.register(Box::new(f.checkpoint_seconds.clone()))?;
    registry.register(Box::new(f.checkpoint_bytes.clone()))
}

/// Counts a checkpoint that committed (`Database::observe_checkpoints`).
pub fn checkpoint_committed(c: &openclaw_sql::metrics::CheckpointMetrics) {
    LIFETIME.checkpoint_seconds.observe(c.duration_ms as f64 / 1e3);
    LIFETIME.checkpoint_bytes.inc_by(c.bytes);
}

/// Counts a pgwire session open until the guard drops.
pub struct SessionGuard(());

impl SessionGuard {
    pub fn open() -> Self {
        LIFETIME.sessions_open.inc();
        LIFETIME.sessions_total.inc();
        SessionGuard(())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        LIFETIME.sessions_open.dec();
    }
}

pub fn session_refused() {
    LIFETIME.sessions_refused.inc();
}

/// Counts one ingest request answered after `took`.
pub fn ingest_answered(front: &str, outcome: &str, took: Duration) {
    LIFETIME.ingest_requests.with_label_values(&[front, outcome]).inc();
    LIFETIME.ingest_seconds.with_label_values(&[front]).observe(took.as_secs_f64());
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
