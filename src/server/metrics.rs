//! `GET /metrics`: the server's counters in Prometheus' text format (the `prometheus` crate's
//! encoder), read from the running objects at each scrape ([`Database::metrics`]), so they
//! equal what `SHOW SOURCES` and `SHOW MATERIALIZED VIEWS` say at that moment.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use openclaw_sql::metrics::Metrics;
use openclaw_sql::Database;
use prometheus::{CounterVec, Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub async fn metrics(State(db): State<Arc<Database>>) -> Response {
    match render(&db.metrics().await) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the metrics: {e}\n")).into_response()
        }
    }
}

/// The metrics as Prometheus' text exposition format (version 0.0.4).
pub fn render(m: &Metrics) -> prometheus::Result<String> {
    let registry = Registry::new_custom(Some("openclaw".to_string()), None)?;
    let source = ["source", "connector"];
    let rows = counter(&registry, "source_rows_read_total", "Records a source has read (its furthest reader's count).", &source)?;
    let bytes = counter(&registry, "source_bytes_read_total", "Bytes a source has read.", &source)?;
    let dead = counter(&registry, "source_dead_letters_total", "Records of a source that did not decode, sent to its dead-letter table.", &source)?;
    let readers = gauge(&registry, "source_readers", "Views reading a source, each with its own reader.", &source)?;
    let lag = gauge(&registry, "source_lag_records", "Records not read yet by a source's slowest reader, where the connector knows (Kafka).", &source)?;
    let watermark = GaugeVec::new(Opts::new("source_watermark_seconds", "A source's event-time watermark (its slowest reader's), in seconds since the epoch."), &source)?;
    registry.register(Box::new(watermark.clone()))?;
    for s in &m.sources {
        let labels = [s.name.as_str(), s.connector.as_str()];
        rows.with_label_values(&labels).inc_by(s.rows_read);
        bytes.with_label_values(&labels).inc_by(s.bytes_read);
        dead.with_label_values(&labels).inc_by(s.dead_letters);
        readers.with_label_values(&labels).set(s.readers as i64);
        if let Some(l) = s.lag {
            lag.with_label_values(&labels).set(l);
        }
        if let Some(w) = s.watermark_us {
            watermark.with_label_values(&labels).set(w as f64 / 1e6);
        }
    }
    let view = ["view", "kind"];
    let late = counter(&registry, "view_late_rows_dropped_total", "Rows a view dropped behind the watermark of a closed window.", &view)?;
    let failed_rows = gauge(&registry, "view_failed_rows", "Input rows whose expressions fail in a view now (it is unreadable while any do).", &view)?;
    let up = gauge(&registry, "view_up", "1 while a view, sink or subscription runs, 0 once an operator failed and stopped it.", &view)?;
    for v in &m.views {
        let labels = [v.name.as_str(), v.kind];
        late.with_label_values(&labels).inc_by(v.late_rows);
        failed_rows.with_label_values(&labels).set(v.failed_rows);
        up.with_label_values(&labels).set(i64::from(!v.failed));
    }
    render_operators(&registry, m)?;
    let state = gauge(&registry, "state_bytes", "Bytes of a view's state table (or its rows, table=\"rows\") on disk and in memtables, RocksDB's estimate.", &["view", "table"])?;
    for s in &m.state {
        state.with_label_values(&[s.view.as_str(), s.table.as_str()]).set(s.bytes as i64);
    }
    if let Some(c) = &m.checkpoint {
        let seconds = |name: &str, help: &str, ms: u64| -> prometheus::Result<()> {
            let g = prometheus::Gauge::new(name, help)?;
            g.set(ms as f64 / 1e3);
            registry.register(Box::new(g))
        };
        seconds("checkpoint_last_duration_seconds", "The last checkpoint, from its barrier's injection to its commit.", c.duration_ms)?;
        seconds("checkpoint_last_write_seconds", "Of which writing it, after every sink passed the barrier.", c.write_ms)?;
        seconds("checkpoint_last_snapshot_seconds", "The longest any operator paused at the last checkpoint's barrier.", c.snapshot_ms)?;
        seconds("checkpoint_last_timestamp_seconds", "When the last checkpoint was taken, in seconds since the epoch.", c.created_at_ms)?;
        for (name, help, value) in [
            ("checkpoint_last_id", "The last committed checkpoint's id (its barrier epoch).", c.id as i64),
            ("checkpoint_last_bytes", "Bytes of the files the last checkpoint holds.", c.bytes as i64),
            ("checkpoint_last_files", "Files the last checkpoint holds.", c.files as i64),
        ] {
            let g = IntGauge::new(name, help)?;
            g.set(value);
            registry.register(Box::new(g))?;
        }
    }
    let rocksdb = gauge(&registry, "rocksdb_property", "RocksDB's statistics (its rocksdb.<property> values), summed over every column family.", &["property"])?;
    for (property, value) in &m.rocksdb {
        rocksdb.with_label_values(&[*property]).set(*value as i64);
    }
    let subscriptions = IntGauge::new("subscriptions_open", "Subscriptions open now (SUBSCRIBE, event streams, WebSockets).")?;
    subscriptions.set(m.subscriptions_open as i64);
    registry.register(Box::new(subscriptions))?;
    super::lifetime_metrics::register(&registry)?;
    let mut text = vec![];
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    String::from_utf8(text).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// Each view's tasks, labelled with their node's line in `EXPLAIN ANALYZE` (0: the view's own
/// sink), the operator's kind and the partition.
fn render_operators(registry: &Registry, m: &Metrics) -> prometheus::Result<()> {
    let labels = ["view", "kind", "node", "operator", "partition"];
    let rows_in = counter(registry, "operator_rows_in_total", "Rows an operator task received.", &labels)?;
    let rows_out = counter(registry, "operator_rows_out_total", "Rows an operator task sent downstream.", &labels)?;
    let seconds = |name: &str, help: &str| -> prometheus::Result<CounterVec> {
        let c = CounterVec::new(Opts::new(name, help), &labels)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let processing = seconds("operator_processing_seconds_total", "Time an operator task spent handling its input, less the time it was blocked sending.")?;
    let blocked = seconds("operator_backpressure_seconds_total", "Time an operator task was blocked on a full output channel (backpressure from downstream).")?;
    for v in &m.views {
        for o in &v.operators {
            let (node, partition) = (o.node.to_string(), o.partition.to_string());
            let values = [v.name.as_str(), v.kind, node.as_str(), o.operator.as_str(), partition.as_str()];
            rows_in.with_label_values(&values).inc_by(o.counts.rows_in);
            rows_out.with_label_values(&values).inc_by(o.counts.rows_out);
            processing.with_label_values(&values).inc_by(o.counts.processing_ns as f64 / 1e9);
            blocked.with_label_values(&values).inc_by(o.counts.blocked_ns as f64 / 1e9);
        }
    }
    Ok(())
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use openclaw_engine::metrics::OperatorCounts;
    use openclaw_sql::metrics::{CheckpointMetrics, OperatorSample, SourceMetrics, StateMetrics, ViewMetrics};

    use super::*;

    /// A snapshot with every metric present.
    fn full_snapshot() -> Metrics {
        Metrics {
            sources: vec![SourceMetrics {
                name: "bids".into(),
                connector: "kafka".into(),
                readers: 2,
                rows_read: 1000,
                bytes_read: 64_000,
                dead_letters: 3,
                lag: Some(7),
                watermark_us: Some(1_500_000),
            }],
            views: vec![ViewMetrics {
                name: "q5".into(),
                kind: "materialized_view",
                late_rows: 4,
                failed: false,
                failed_rows: 0,
                operators: vec![OperatorSample {
                    node: 1,
                    operator: "Aggregate".into(),
                    partition: 0,
                    counts: OperatorCounts { rows_in: 100, chunks_in: 2, rows_out: 10, chunks_out: 1, processing_ns: 2_500_000, blocked_ns: 0 },
                }],
            }],
            subscriptions_open: 1,
            state: vec![StateMetrics { view: "q5".into(), table: "join_left".into(), bytes: 4096 }],
            checkpoint: Some(CheckpointMetrics { id: 42, created_at_ms: 1_700_000_000_000, duration_ms: 250, write_ms: 40, snapshot_ms: 2, bytes: 1_000_000, files: 12 }),
            rocksdb: vec![("block-cache-usage", 8192), ("estimate-num-keys", 77)],
        }
    }

    /// The exposition of a known snapshot, pinned: names, labels, types and values.
    #[test]
    fn renders_prometheus_text() {
        let text = render(&full_snapshot()).unwrap();
        for line in [
            "# TYPE openclaw_source_rows_read_total counter",
            "openclaw_source_rows_read_total{connector=\"kafka\",source=\"bids\"} 1000",
            "openclaw_source_dead_letters_total{connector=\"kafka\",source=\"bids\"} 3",
            "openclaw_source_lag_records{connector=\"kafka\",source=\"bids\"} 7",
            "openclaw_source_watermark_seconds{connector=\"kafka\",source=\"bids\"} 1.5",
            "openclaw_view_late_rows_dropped_total{kind=\"materialized_view\",view=\"q5\"} 4",
            "openclaw_view_up{kind=\"materialized_view\",view=\"q5\"} 1",
            "openclaw_subscriptions_open 1",
            "openclaw_state_bytes{table=\"join_left\",view=\"q5\"} 4096",
            "openclaw_checkpoint_last_duration_seconds 0.25",
            "openclaw_checkpoint_last_bytes 1000000",
            "openclaw_checkpoint_last_id 42",
            "openclaw_rocksdb_property{property=\"block-cache-usage\"} 8192",
            "# TYPE openclaw_operator_rows_in_total counter",
            "openclaw_operator_rows_in_total{kind=\"materialized_view\",node=\"1\",operator=\"Aggregate\",partition=\"0\",view=\"q5\"} 100",
            "openclaw_operator_rows_out_total{kind=\"materialized_view\",node=\"1\",operator=\"Aggregate\",partition=\"0\",view=\"q5\"} 10",
            "openclaw_operator_processing_seconds_total{kind=\"materialized_view\",node=\"1\",operator=\"Aggregate\",partition=\"0\",view=\"q5\"} 0.0025",
            "openclaw_operator_backpressure_seconds_total{kind=\"materialized_view\",node=\"1\",operator=\"Aggregate\",partition=\"0\",view=\"q5\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    /// Every series the Grafana dashboard (`deploy/grafana/openclaw.json`) plots is one the
    /// server exports.
    #[test]
    fn the_dashboard_reads_exported_metrics() {
        // A histogram vector shows once it has a sample.
        crate::server::lifetime_metrics::ingest_answered("http", "2xx", std::time::Duration::from_millis(3));
        let text = render(&full_snapshot()).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(include_str!("../../deploy/grafana/openclaw.json")).expect("the dashboard is JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        let exprs: Vec<&str> = panels.iter().flat_map(|p| p["targets"].as_array().expect("targets")).filter_map(|t| t["expr"].as_str()).collect();
        assert_eq!(exprs.len(), panels.len());
        for expr in exprs {
            let names: Vec<&str> = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("openclaw_")).collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                // A histogram's series are its name with `_bucket`, `_sum` or `_count`.
                let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
                let exported = |n: &str| text.lines().any(|l| l.starts_with(&format!("# TYPE {n} ")));
                assert!(exported(name) || exported(family), "the dashboard reads {name}, which /metrics lacks");
            }
        }
    }
}
