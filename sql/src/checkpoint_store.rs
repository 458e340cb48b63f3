//! Checkpoints kept in an object store, so that a new machine can start where this one was.
//!
//! With `--cold-store` set, every committed checkpoint also holds the families that live
//! across rollbacks (tables, their logs, the catalog, sinks' commit notes), exported when it
//! commits (after its barrier: a table may be ahead of the cut, which its log covers, since a
//! view resumes a table from its position by the log), and is uploaded in the background:
//! each state file once, under `<prefix>/_checkpoints/state/<family>/<file>` (SST files are
//! immutable and uniquely named), then the manifest, last, under
//! `<prefix>/_checkpoints/<id>/OPENCLAW_CHECKPOINT.json`; a checkpoint is there once its
//! manifest is. The newest [`UPLOADS_RETAINED`] are kept; state files no kept manifest lists
//! are deleted. One upload runs at a time; a checkpoint committed meanwhile is skipped (the
//! next one carries its files).
//!
//! `openclaw serve --restore-from s3://bucket/prefix` with an empty data directory downloads
//! the newest uploaded checkpoint into it and starts from it ([`restore_from`]): the catalog and
//! tables from its exports, views from their state, sources from its positions. A data
//! directory that has a database already starts from it, and the flag does nothing.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use openclaw_storage::checkpoint::{self, Manifest, MANIFEST};

/// Uploaded checkpoints kept in the store.
pub const UPLOADS_RETAINED: usize = 2;
/// The folder of checkpoints under the store's prefix.
const FOLDER: &str = "_checkpoints";

/// Where checkpoints are uploaded.
pub(crate) struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    /// State files known to be in the store (by path under the checkpoint).
    uploaded: Mutex<HashSet<String>>,
    busy: AtomicBool,
    /// The ids of the newest checkpoints this process uploaded, for `SHOW CHECKPOINTS`.
    done: Mutex<BTreeSet<u64>>,
}

/// Uploaded ids remembered for `SHOW CHECKPOINTS` (it lists the newest few).
const IDS_REMEMBERED: usize = 16;

impl CheckpointStore {
    /// The cold store's, if `--cold-store` set one.
    pub(crate) fn from_cold_store() -> Option<Arc<Self>> {
        let cold = openclaw_connectors::parquet::cold_store()?;
        Some(Arc::new(Self::new(cold.store.clone(), cold.prefix.clone())))
    }

    fn new(store: Arc<dyn ObjectStore>, prefix: ObjectPath) -> Self {
        Self { store, root: prefix.clone().join(FOLDER), uploaded: Default::default(), busy: AtomicBool::new(false), done: Default::default() }
    }

    /// Whether this process uploaded checkpoint `id`.
    pub(crate) fn has_uploaded(&self, id: u64) -> bool {
        self.done.lock().expect("done lock").contains(&id)
    }

    fn location(&self, relative: &str) -> Result<ObjectPath, String> {
        ObjectPath::parse(format!("{}/{relative}", self.root)).map_err(|e| e.to_string())
    }

    /// Uploads checkpoint `manifest` from `data_dir` in the background, unless an upload is
    /// running.
    pub(crate) fn upload_in_background(self: &Arc<Self>, data_dir: &Path, manifest: &Manifest) {
        if self.busy.swap(true, Ordering::SeqCst) {
            tracing::debug!(checkpoint = manifest.id, "checkpoint upload skipped: the previous one is still running");
            return;
        }
        let (this, dir, id, files) = (self.clone(), checkpoint::checkpoint_dir(data_dir, manifest.id), manifest.id, manifest.files.iter().map(|f| f.name.clone()).collect::<Vec<_>>());
        let span = tracing::info_span!("checkpoint upload", checkpoint = id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let started = std::time::Instant::now();
                match this.upload(&dir, id, &files).await {
                    Ok(bytes) => {
                        let mut done = this.done.lock().expect("done lock");
                        done.insert(id);
                        while done.len() > IDS_REMEMBERED {
                            done.pop_first();
                        }
                        tracing::info!(bytes, elapsed_ms = started.elapsed().as_millis() as u64, "checkpoint uploaded");
                    }
                    Err(e) => tracing::warn!(error = %e, "checkpoint not uploaded; the next one will be"),
                }
                this.busy.store(false, Ordering::SeqCst);
            },
            span,
        ));
    }

    /// Uploads the files of checkpoint `id` (in `dir`) the store lacks, then its manifest, then
    /// deletes what is no longer kept. Returns the bytes sent.
    async fn upload(&self, dir: &Path, id: u64, files: &[String]) -> Result<u64, String> {
        let mut sent = 0;
        for name in files {
            if self.uploaded.lock().expect("uploaded lock").contains(name) {
                continue;
            }
            sent += self.put_file(&dir.join(name), &self.location(name)?).await?;
            self.uploaded.lock().expect("uploaded lock").insert(name.clone());
        }
        sent += self.put_file(&dir.join(MANIFEST), &self.location(&format!("{id:020}/{MANIFEST}"))?).await?;
        self.collect_garbage().await?;
        Ok(sent)
    }

    async fn put_file(&self, file: &Path, location: &ObjectPath) -> Result<u64, String> {
        let bytes = tokio::fs::read(file).await.map_err(|e| format!("{}: {e}", file.display()))?;
        let len = bytes.len() as u64;
        self.store.put(location, PutPayload::from(bytes)).await.map_err(|e| format!("upload of {location}: {e}"))?;
        Ok(len)
    }

    /// The ids of the uploaded checkpoints (those whose manifest is there), and every state
    /// file, each as its path under the folder.
    async fn listing(&self) -> Result<(BTreeSet<u64>, Vec<String>), String> {
        let listed: Vec<_> = self.store.list(Some(&self.root)).try_collect().await.map_err(|e| format!("listing {}: {e}", self.root))?;
        let (mut ids, mut state) = (BTreeSet::new(), vec![]);
        for meta in listed {
            let Some(parts) = meta.location.prefix_match(&self.root) else { continue };
            let relative = parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
            match relative.split_once('/') {
                Some((id, MANIFEST)) => ids.extend(id.parse::<u64>().ok()),
                Some(("state", _)) => state.push(relative),
                _ => {}
            }
        }
        Ok((ids, state))
    }

    async fn manifest(&self, id: u64) -> Result<(Vec<u8>, Manifest), String> {
        let location = self.location(&format!("{id:020}/{MANIFEST}"))?;
        let bytes = self.store.get(&location).await.map_err(|e| format!("{location}: {e}"))?.bytes().await.map_err(|e| format!("{location}: {e}"))?;
        let manifest = Manifest::decode(&bytes).map_err(|e| format!("{location}: {e}"))?;
        Ok((bytes.to_vec(), manifest))
    }

    /// Deletes the manifests past the newest [`UPLOADS_RETAINED`], then the state files no
    /// kept manifest lists.
    async fn collect_garbage(&self) -> Result<(), String> {
        let (ids, state) = self.listing().await?;
        let kept: Vec<u64> = ids.iter().rev().take(UPLOADS_RETAINED).copied().collect();
        for old in ids.iter().filter(|id| !kept.contains(id)) {
            let location = self.location(&format!("{old:020}/{MANIFEST}"))?;
            self.store.delete(&location).await.map_err(|e| format!("{location}: {e}"))?;
        }
        let mut referenced = HashSet::new();
        for id in kept {
            referenced.extend(self.manifest(id).await?.1.files.into_iter().map(|f| f.name));
        }
        for name in state.iter().filter(|n| !referenced.contains(*n)) {
            self.store.delete(&self.location(name)?).await.map_err(|e| format!("{name}: {e}"))?;
            self.uploaded.lock().expect("uploaded lock").remove(name);
        }
        Ok(())
    }

    /// Downloads the newest uploaded checkpoint into `data_dir`'s checkpoints (written aside,
    /// then renamed into place); returns its id, or `None` when the store has none.
    async fn download_newest(&self, data_dir: &Path) -> Result<Option<u64>, String> {
        let (ids, _) = self.listing().await?;
        let Some(&id) = ids.last() else { return Ok(None) };
        let (raw, manifest) = self.manifest(id).await?;
        let target = checkpoint::checkpoint_dir(data_dir, id);
        let partial = target.with_extension("download");
        let _ = std::fs::remove_dir_all(&partial);
        for file in &manifest.files {
            let location = self.location(&file.name)?;
            let bytes = self.store.get(&location).await.map_err(|e| format!("{location}: {e}"))?.bytes().await.map_err(|e| format!("{location}: {e}"))?;
            let path = partial.join(&file.name);
            std::fs::create_dir_all(path.parent().expect("a file in a folder")).map_err(|e| e.to_string())?;
            std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        std::fs::write(partial.join(MANIFEST), raw).map_err(|e| e.to_string())?;
        checkpoint::verify(&partial).map_err(|e| format!("the downloaded checkpoint {id} does not verify: {e}"))?;
        std::fs::rename(&partial, &target).map_err(|e| e.to_string())?;
        Ok(Some(id))
    }
}

/// `--restore-from <url>`: when `data_dir` has no database yet, downloads the newest
/// checkpoint uploaded under `url` and creates the database from it (the families that live
/// across rollbacks; the normal start then imports the rest). Returns the checkpoint's id, or
/// `None` when the directory has a database already.
pub async fn restore_from(url: &str, data_dir: &Path, cache_bytes: usize) -> Result<Option<u64>, String> {
    if data_dir.join("state").exists() {
        tracing::info!(data_dir = %data_dir.display(), "the data directory has a database; --restore-from is not used");
        return Ok(None);
    }
    let (store, _, prefix) = openclaw_connectors::parquet::open_object_store(url).map_err(|e| e.message)?;
    let remote = CheckpointStore::new(store, prefix);
    std::fs::create_dir_all(checkpoint::checkpoints_dir(data_dir)).map_err(|e| e.to_string())?;
    let Some(id) = remote.download_newest(data_dir).await? else {
        return Err(format!("{url} holds no uploaded checkpoint"));
    };
    let dir = data_dir.to_path_buf();
    let seeded = tokio::task::spawn_blocking(move || checkpoint::seed(&dir, cache_bytes, crate::durable::lives_across_rollbacks))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match seeded {
        Some(manifest) if manifest.id == id => Ok(Some(id)),
        _ => Err(format!("checkpoint {id} was downloaded but could not be used")),
    }
}
