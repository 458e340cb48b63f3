//! The cold tier: an object store (`--cold-store s3://bucket/prefix`, S3 or an S3-compatible
//! store, with the usual `AWS_*` variables; or `file:///dir`) where a Parquet sink moves its
//! files once they are older than its `hot` age. A file is uploaded, then deleted from the hot
//! tier; while the store cannot be reached, files wait in the hot tier and the next sweep tries
//! again. The store is the process's, set once at start.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::ConnectorError;

/// How long one request to the cold store may take before it is given up (and retried at the
/// next sweep): a store that is down must not hold a sweep for minutes.
const COLD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of one request inside the client before it is given up.
const COLD_MAX_RETRIES: usize = 2;
/// How long a hot file stays after it is uploaded: a query that listed it in the hot tier
/// just before (queries read marked files from the cold tier) may still be reading it.
pub(crate) const MOVED_FILE_GRACE: Duration = Duration::from_secs(60);

/// The process's cold tier.
pub struct ColdStore {
    pub store: Arc<dyn ObjectStore>,
    /// The store's URL without a path (`s3://bucket`, `file:///`), to register with DataFusion.
    pub root_url: url::Url,
    /// Where under the store the sinks' directories go.
    pub prefix: ObjectPath,
    /// The last error talking to it, for `SHOW HISTORY`; `None` once a request succeeds.
    pub last_error: Mutex<Option<String>>,
    /// After a failed upload, none is tried before this time: a store that is down must not
    /// hold every commit (a sweep runs after each) for its timeouts.
    retry_uploads_at: Mutex<Option<std::time::Instant>>,
}

/// How long uploads pause after one fails.
const UPLOAD_BACKOFF: Duration = Duration::from_secs(2);

static COLD_STORE: OnceLock<ColdStore> = OnceLock::new();

/// An object store named by a URL (`s3://bucket/prefix`, with the usual `AWS_*` variables,
/// or `file:///dir`): the store, its root URL (without a path, to register with DataFusion),
/// and the prefix under it.
pub fn open_object_store(location: &str) -> Result<(Arc<dyn ObjectStore>, url::Url, ObjectPath), ConnectorError> {
    let url = url::Url::parse(location).map_err(|e| ConnectorError::new(format!("invalid object store \"{location}\": {e}")).with_hint("give s3://bucket/prefix or file:///directory"))?;
    let retry = object_store::RetryConfig { max_retries: COLD_MAX_RETRIES, retry_timeout: COLD_REQUEST_TIMEOUT * 2, ..Default::default() };
    let (store, root_url, prefix): (Arc<dyn ObjectStore>, url::Url, String) = match url.scheme() {
        "s3" => {
            let bucket = url.host_str().ok_or_else(|| ConnectorError::new(format!("the object store \"{location}\" names no bucket")))?;
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_timeout(COLD_REQUEST_TIMEOUT)
                        .with_connect_timeout(COLD_REQUEST_TIMEOUT)
                        // Replacing the client options drops what from_env read for them.
                        .with_allow_http(std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"))),
                )
                .build()
                .map_err(|e| ConnectorError::new(format!("cannot use the object store \"{location}\": {e}")))?;
            let root = url::Url::parse(&format!("s3://{bucket}")).expect("a bucket URL");
            (Arc::new(store), root, url.path().trim_matches('/').to_string())
        }
        "file" => {
            let dir = url.to_file_path().map_err(|()| ConnectorError::new(format!("the object store \"{location}\" is not a local path")))?;
            std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::new(format!("cannot create the object store {}: {e}", dir.display())))?;
            let root = url::Url::parse("file:///").expect("the file root");
            (Arc::new(object_store::local::LocalFileSystem::new()), root, dir.display().to_string().trim_matches('/').to_string())
        }
        other => return Err(ConnectorError::new(format!("object store scheme \"{other}\" is not supported")).with_hint("give s3://bucket/prefix or file:///directory")),
    };
    Ok((store, root_url, ObjectPath::from(prefix)))
}

/// Sets the cold tier from `--cold-store`.
pub fn configure_cold_store(location: &str) -> Result<(), ConnectorError> {
    let (store, root_url, prefix) = open_object_store(location)?;
    let cold = ColdStore { store, root_url, prefix, last_error: Mutex::new(None), retry_uploads_at: Mutex::new(None) };
    COLD_STORE.set(cold).map_err(|_| ConnectorError::new("the cold store is set once"))
}

/// The cold tier, if `--cold-store` set one.
pub fn cold_store() -> Option<&'static ColdStore> {
    COLD_STORE.get()
}

impl ColdStore {
    /// Where sink directory `name` (the last part of its hot path) goes in the store.
    pub fn sink_prefix(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    /// The URL of sink directory `name` in the store, with a trailing slash (for a listing).
    pub fn sink_url(&self, name: &str) -> String {
        format!("{}{}/", self.root_url.as_str().trim_end_matches('/').to_string() + "/", self.sink_prefix(name))
    }

    fn outcome<T>(&self, result: object_store::Result<T>) -> Result<T, String> {
        let mut last = self.last_error.lock().expect("cold store error lock");
        match result {
            Ok(v) => {
                *last = None;
                Ok(v)
            }
            Err(e) => {
                // With its root cause: the top error alone says little ("HTTP error").
                let mut message = e.to_string();
                let mut root: Option<&dyn std::error::Error> = None;
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    root = Some(cause);
                    source = cause.source();
                }
                if let Some(root) = root.map(|r| r.to_string()).filter(|r| !message.contains(r.as_str())) {
                    message.push_str(&format!(": {root}"));
                }
                *last = Some(message.clone());
                Err(message)
            }
        }
    }

    /// Every object under sink directory `name`: its path relative to the directory, size and
    /// when it was written.
    pub fn list(&self, name: &str) -> Result<Vec<(String, u64, chrono::DateTime<chrono::Utc>)>, String> {
        use futures::TryStreamExt;
        let prefix = self.sink_prefix(name);
        let listed = block_on(self.store.list(Some(&prefix)).try_collect::<Vec<_>>());
        let listed = self.outcome(listed)?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let relative = m.location.prefix_match(&prefix)?.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
                Some((relative, m.size, m.last_modified))
            })
            .collect())
    }

    /// Uploads the hot file `file` as `relative` under sink directory `name`.
    fn upload(&self, name: &str, relative: &str, file: &Path) -> Result<(), String> {
        let mut retry_at = self.retry_uploads_at.lock().expect("upload backoff lock");
        if retry_at.is_some_and(|at| std::time::Instant::now() < at) {
            let last = self.last_error.lock().expect("cold store error lock").clone();
            return Err(format!("uploads paused after a failure: {}", last.unwrap_or_default()));
        }
        let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
        let location = ObjectPath::parse(format!("{}/{relative}", self.sink_prefix(name))).map_err(|e| e.to_string())?;
        let put = block_on(self.store.put(&location, PutPayload::from(bytes)));
        let outcome = self.outcome(put).map(|_| ());
        *retry_at = outcome.is_err().then(|| std::time::Instant::now() + UPLOAD_BACKOFF);
        outcome
    }

    fn delete(&self, name: &str, relative: &str) -> Result<(), String> {
        let location = ObjectPath::parse(format!("{}/{relative}", self.sink_prefix(name))).map_err(|e| e.to_string())?;
        let deleted = block_on(self.store.delete(&location));
        self.outcome(deleted)
    }
}

/// Runs `fut` from the blocking thread a sink's committer runs on.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(fut)
}

/// Moves the files of the sink at `root` written more than `hot` ago to the cold tier: each is
/// uploaded, then marked as uploaded (from then on queries read it from the cold tier), then,
/// [`MOVED_FILE_GRACE`] later, deleted here. A query lists the hot tier before the cold one,
/// so it sees each file once: unmarked here, or marked and so already there. Stops at the
/// first failure (the store is down): the rest wait for the next sweep. Returns how many
/// files were uploaded.
pub(crate) fn move_cold(cold: &ColdStore, root: &Path, hot: Duration) -> Result<usize, String> {
    let name = sink_dir_name(root);
    let now = std::time::SystemTime::now();
    let mut moved = 0;
    for file in super::files::list_files(root).map_err(|e| e.to_string())? {
        let marker = file.uploaded_marker();
        if file.uploaded {
            let marked = std::fs::metadata(&marker).and_then(|m| m.modified()).map_err(|e| e.to_string())?;
            if now.duration_since(marked).unwrap_or_default() >= MOVED_FILE_GRACE {
                file.remove().map_err(|e| e.to_string())?;
                super::files::remove_empty_parents(root, &file.path);
            }
            continue;
        }
        let written = std::fs::metadata(&file.path).and_then(|m| m.modified()).map_err(|e| e.to_string())?;
        if now.duration_since(written).unwrap_or_default() < hot {
            continue;
        }
        cold.upload(&name, &relative_path(root, &file.path)?, &file.path)?;
        std::fs::File::create(&marker).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        moved += 1;
    }
    Ok(moved)
}

/// Bytes of the hot files of the sink at `root` that wait for the cold tier: older than `hot`
/// and not uploaded yet.
pub fn waiting_bytes(root: &Path, hot: Duration) -> std::io::Result<u64> {
    let now = std::time::SystemTime::now();
    let mut waiting = 0;
    for file in super::files::list_files(root)? {
        let written = std::fs::metadata(&file.path)?.modified()?;
        if !file.uploaded && now.duration_since(written).unwrap_or_default() >= hot {
            waiting += file.bytes;
        }
    }
    Ok(waiting)
}

/// `file`'s path under `root`, with `/` between parts (as in the store and in partitions).
pub fn relative_path(root: &Path, file: &Path) -> Result<String, String> {
    Ok(file.strip_prefix(root).map_err(|e| e.to_string())?.to_string_lossy().replace('\\', "/"))
}

/// Deletes the cold files of the sink at `root` written more than `retention` ago.
pub(crate) fn expire_cold(cold: &ColdStore, root: &Path, retention: Duration) -> Result<usize, String> {
    let name = sink_dir_name(root);
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut removed = 0;
    for (relative, _, written) in cold.list(&name)? {
        if written < cutoff && relative.ends_with(".parquet") {
            cold.delete(&name, &relative)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The name a sink's directory has in the cold store: the last part of its hot path.
pub fn sink_dir_name(root: &Path) -> String {
    root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
