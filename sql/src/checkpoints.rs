//! Checkpoints of the database: on `--checkpoint-interval` and on every `FLUSH`, a consistent
//! cut of every view's state (each operator exports its own column families as the checkpoint
//! barrier passes it, while the inputs go on; see `Coordinator::checkpoint`), committed by
//! `openclaw_storage::checkpoint` with the positions of the inputs, and listed by
//! `SHOW CHECKPOINTS`.

use std::sync::Arc;

use openclaw_engine::BarrierKind;
use openclaw_storage::checkpoint::{self, Manifest};

use crate::database::{Database, QueryOutput};
use crate::error::{SqlError, SqlResult, SqlState};

/// Times a checkpoint is taken again when its snapshots could not be collected.
pub const CHECKPOINT_ATTEMPTS: u32 = 3;

impl Database {
    /// Takes a checkpoint at a barrier of `kind`, commits it, and deletes the ones no longer
    /// retained. One at a time: the next barrier waits for this one's commit. A checkpoint
    /// whose snapshots could not be collected (state flushed past its barrier first) is
    /// abandoned and taken again with a new barrier, up to [`CHECKPOINT_ATTEMPTS`] times.
    pub(crate) async fn checkpoint(&self, kind: BarrierKind) -> SqlResult<Manifest> {
        let mut last = self.last_checkpoint.lock().await;
        let mut attempt = 1;
        loop {
            match self.checkpoint_once(kind, last.clone()).await? {
                Ok(manifest) => {
                    *last = Some(manifest.clone());
                    return Ok(manifest);
                }
                Err(openclaw_storage::StorageError::SnapshotUnavailable(why)) if attempt < CHECKPOINT_ATTEMPTS => {
                    tracing::warn!(attempt, reason = %why, "checkpoint abandoned; taking it again");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn checkpoint_once(&self, kind: BarrierKind, previous: Option<Manifest>) -> SqlResult<Result<Manifest, openclaw_storage::StorageError>> {
        let cut = self.coordinator.checkpoint(kind).await?;
        let epoch = cut.epoch;
        let dir = self.store.dir().to_path_buf();
        let timing = checkpoint::Timing { started: cut.started, longest_snapshot: cut.longest_snapshot };
        let store = self.store.clone();
        let uploaded = self.checkpoint_store.is_some();
        let written = tokio::task::spawn_blocking(move || {
            let pending = checkpoint::pending_state_dir(&dir, epoch);
            // A view dropped since the barrier has no state to keep.
            let live = cut.snapshots.iter().filter(|s| store.has_cf(&s.cf));
            let mut state = live.map(|s| store.collect_snapshot(s, &pending.join(&s.cf))).collect::<Result<Vec<_>, _>>()?;
            drop(cut.snapshots);
            if uploaded {
                // A checkpoint another machine starts from carries the tables and the catalog.
                state.extend(export_lasting(&store, &pending)?);
            }
            let manifest = checkpoint::create(&dir, epoch, cut.positions, state, timing, previous.as_ref())?;
            checkpoint::collect_garbage(&dir)?;
            Ok::<_, openclaw_storage::StorageError>(manifest)
        })
        .await
        .map_err(|e| SqlError::new(SqlState::Internal, format!("checkpoint task failed: {e}")))?;
        if let Ok(manifest) = &written {
            // Sinks commit what they wrote up to this checkpoint.
            self.coordinator.checkpoint_committed(epoch);
            if let Some(remote) = &self.checkpoint_store {
                remote.upload_in_background(self.store.dir(), manifest);
            }
            tracing::debug!(id = manifest.id, bytes = manifest.bytes(), files = manifest.files.len(), duration_ms = manifest.duration_ms, snapshot_ms = manifest.snapshot_ms, "checkpoint committed");
            if let Some(observe) = self.checkpoint_observer.get() {
                observe(&crate::metrics::CheckpointMetrics::of(manifest));
            }
        }
        Ok(written)
    }

    /// Takes a checkpoint every `checkpoint_interval_ms` (none when it is 0).
    pub(crate) fn spawn_periodic_checkpoints(self: &Arc<Self>) {
        let interval_ms = self.config.checkpoint_interval_ms;
        if interval_ms == 0 {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(db) = weak.upgrade() else { return };
                if db.pending_flushes.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                    tracing::debug!("checkpoint skipped: a FLUSH is waiting for bounded sources, and takes one after");
                    continue;
                }
                if let Err(e) = db.checkpoint(BarrierKind::Periodic).await {
                    tracing::error!(error = %e.message, "checkpoint failed; the previous one stays the latest");
                }
            }
        });
    }

    /// `SHOW CHECKPOINTS`: the committed checkpoints, newest first.
    pub(crate) async fn show_checkpoints(&self) -> SqlResult<QueryOutput> {
        let dir = self.store.dir().to_path_buf();
        let listed = tokio::task::spawn_blocking(move || checkpoint::list(&dir))
            .await
            .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
        let rows = listed
            .iter()
            .rev()
            .map(|(_, m)| {
                let at = chrono::DateTime::from_timestamp_millis(m.created_at_ms as i64)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string())
                    .unwrap_or_default();
                let positions: Vec<String> = m.positions.iter().map(|(k, p)| format!("{k}={p}")).collect();
                vec![
                    m.id.to_string(),
                    at,
                    m.bytes().to_string(),
                    m.files.len().to_string(),
                    m.duration_ms.to_string(),
                    m.write_ms.to_string(),
                    m.snapshot_ms.to_string(),
                    positions.join(", "),
                    match &self.checkpoint_store {
                        Some(remote) if remote.has_uploaded(m.id) => "yes".into(),
                        Some(_) => "no".into(),
                        None => String::new(),
                    },
                ]
            })
            .collect();
        QueryOutput::text_rows(&["id", "created_at", "size_bytes", "files", "duration_ms", "write_ms", "snapshot_ms", "positions", "uploaded"], rows)
    }
}

/// Times a family that lives across rollbacks is exported again when writes after its flush
/// reached its files first.
const LASTING_EXPORT_ATTEMPTS: u32 = 3;

/// Exports, into `pending`, the families that a rollback keeps as they are (tables, their
/// logs, the catalog, sinks' commit notes): as they are now, after the checkpoint's barrier.
fn export_lasting(store: &openclaw_storage::Store, pending: &std::path::Path) -> Result<Vec<openclaw_storage::cf_export::ExportedCf>, openclaw_storage::StorageError> {
    let mut out = vec![];
    for (cf, kind) in store.families()?.into_iter().filter(|(cf, _)| crate::durable::lives_across_rollbacks(cf)) {
        let mut attempt = 1;
        loop {
            let started = store.switch_memtable(&cf, kind)?;
            match store.collect_snapshot(&started, &pending.join(&cf)) {
                Ok(exported) => break out.push(exported),
                Err(openclaw_storage::StorageError::SnapshotUnavailable(_)) if attempt < LASTING_EXPORT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}
