//! Checkpoints of the database: on `--checkpoint-interval` and on every `FLUSH`, a consistent
//! cut of the whole store (the coordinator pauses every root behind a checkpoint barrier until
//! every view has passed it), written by `openclaw_storage::checkpoint` with the positions of
//! the inputs, and listed by `SHOW CHECKPOINTS`.

use std::sync::Arc;

use openclaw_engine::BarrierKind;
use openclaw_storage::checkpoint::{self, Manifest};

use crate::database::{Database, QueryOutput};
use crate::error::{SqlError, SqlResult, SqlState};

impl Database {
    /// Takes a checkpoint at a barrier of `kind`, commits it, and deletes the ones no longer
    /// retained. (`FLUSH` waits for bounded sources with a barrier of its own first: a
    /// checkpoint barrier pauses the other inputs until it completes.)
    pub(crate) async fn checkpoint(&self, kind: BarrierKind) -> SqlResult<Manifest> {
        let mut last = self.last_checkpoint.lock().await;
        let cut = self.coordinator.checkpoint(kind).await?;
        let (store, previous, positions, started) = (self.store.clone(), last.clone(), cut.positions.clone(), cut.started);
        let epoch = cut.epoch;
        let written = tokio::task::spawn_blocking(move || checkpoint::create(&store, epoch, positions, started, previous.as_ref())).await;
        // The copy is done (or failed): the roots may move again.
        cut.resume();
        let manifest = written.map_err(|e| SqlError::new(SqlState::Internal, format!("checkpoint task failed: {e}")))??;
        // Sinks commit what they wrote up to this checkpoint.
        self.coordinator.checkpoint_committed(epoch);
        let dir = self.store.dir().to_path_buf();
        tokio::task::spawn_blocking(move || checkpoint::collect_garbage(&dir))
            .await
            .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))??;
        tracing::debug!(id = manifest.id, bytes = manifest.bytes(), files = manifest.files.len(), duration_ms = manifest.duration_ms, "checkpoint committed");
        *last = Some(manifest.clone());
        Ok(manifest)
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
                    positions.join(", "),
                ]
            })
            .collect();
        QueryOutput::text_rows(&["id", "created_at", "size_bytes", "files", "duration_ms", "write_ms", "positions"], rows)
    }
}
