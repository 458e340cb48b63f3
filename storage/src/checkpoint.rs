//! Checkpoints: at a checkpoint barrier each operator exports its own column families
//! (`cf_export.rs`: memtable flushed, SST files hard-linked) into `checkpoints/<id>.tmp/state/`
//! while the inputs go on; once every sink has passed the barrier, [`create`] commits the
//! checkpoint with a manifest that lists every file with its size and CRC-32, RocksDB's
//! description of each exported family, and the positions of the inputs at the cut. The
//! directory is renamed into place only once its manifest is synced, so a crash never leaves a
//! half-written checkpoint under a final name. [`verify`] recomputes every checksum, so a
//! truncated or corrupted checkpoint is detected before anyone trusts it. Tables and the
//! catalog are not in checkpoints: they are durable as they are written, and a restore keeps
//! them as they are.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cf_export::{ExportedCf, ExportedFile};
use crate::{CfKind, StorageError, StorageResult, Store};

pub const MANIFEST: &str = "OPENCLAW_CHECKPOINT.json";
/// Version of the checkpoint layout. 1: a RocksDB checkpoint of the whole store (inputs paused
/// while it was taken). 2: column families exported by their operators at the barrier.
pub const MANIFEST_FORMAT: u64 = 2;
/// Where the exported column families live inside a checkpoint.
const STATE_SUBDIR: &str = "state";
/// Complete checkpoints kept; older ones are deleted once a newer one commits.
pub const CHECKPOINTS_RETAINED: usize = 2;
const TMP_SUFFIX: &str = ".tmp";
/// A checkpoint that failed verification is renamed with this suffix and never used; the
/// newest such directory is kept for inspection.
pub const CORRUPT_SUFFIX: &str = ".corrupt";

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// What a committed checkpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The barrier epoch of the cut; checkpoints are named and ordered by it.
    pub id: u64,
    pub created_at_ms: u64,
    /// From the barrier's injection to the commit of the manifest.
    pub duration_ms: u64,
    /// Of which committing it (checksumming new files, writing the manifest), after every
    /// sink passed the barrier; rows flow throughout.
    pub write_ms: u64,
    /// The longest one operator spent starting its snapshots at the barrier: the only pause a
    /// checkpoint makes, and only of that operator.
    pub snapshot_ms: u64,
    /// Where each input stood at the cut (a source's next event, a table's last write).
    pub positions: BTreeMap<String, u64>,
    /// Every file, by its path under the checkpoint's directory.
    pub files: Vec<FileEntry>,
    /// The exported column families, each under `state/<name>/`.
    pub state: Vec<ExportedCf>,
    /// [`MANIFEST_FORMAT`] of the writer; 1 for whole-store copies of earlier versions.
    pub format: u64,
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    fn encode(&self) -> Vec<u8> {
        let files: Vec<Value> = self.files.iter().map(|f| json!({"name": f.name, "bytes": f.bytes, "crc32": f.crc32})).collect();
        let state: Vec<Value> = self.state.iter().map(encode_exported).collect();
        let body = json!({
            "format": self.format,
            "id": self.id,
            "created_at_ms": self.created_at_ms,
            "duration_ms": self.duration_ms,
            "write_ms": self.write_ms,
            "snapshot_ms": self.snapshot_ms,
            "positions": self.positions,
            "files": files,
            "state": state,
        });
        let text = body.to_string();
        // The manifest's own checksum: a torn write of the manifest is caught too.
        json!({"body": text, "crc32": crc32fast::hash(text.as_bytes())}).to_string().into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let outer: Value = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
        let text = outer.get("body").and_then(Value::as_str).ok_or("manifest has no body")?;
        let crc = outer.get("crc32").and_then(Value::as_u64).ok_or("manifest has no checksum")?;
        if u64::from(crc32fast::hash(text.as_bytes())) != crc {
            return Err("manifest checksum mismatch".into());
        }
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let num = |field: &str| v.get(field).and_then(Value::as_u64).ok_or(format!("manifest lacks {field}"));
        let positions = v
            .get("positions")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, p)| Some((k.clone(), p.as_u64()?))).collect())
            .unwrap_or_default();
        let mut files = vec![];
        for f in v.get("files").and_then(Value::as_array).ok_or("manifest lacks files")? {
            files.push(FileEntry {
                name: f.get("name").and_then(Value::as_str).ok_or("file without name")?.to_string(),
                bytes: f.get("bytes").and_then(Value::as_u64).ok_or("file without size")?,
                crc32: f.get("crc32").and_then(Value::as_u64).ok_or("file without checksum")? as u32,
            });
        }
        Ok(Self {
            id: num("id")?,
            created_at_ms: num("created_at_ms")?,
            duration_ms: num("duration_ms")?,
            write_ms: num("write_ms")?,
            snapshot_ms: v.get("snapshot_ms").and_then(Value::as_u64).unwrap_or(0),
            positions,
            files,
            state: v.get("state").and_then(Value::as_array).map(|a| a.iter().map(decode_exported).collect()).transpose()?.unwrap_or_default(),
            // Manifests of format 1 did not say.
            format: v.get("format").and_then(Value::as_u64).unwrap_or(1),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() % 2 != 0 {
        return Err(format!("odd-length hex {text:?}"));
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string())).collect()
}

fn encode_exported(e: &ExportedCf) -> Value {
    let files: Vec<Value> = e
        .files
        .iter()
        .map(|f| {
            json!({
                "name": f.name, "level": f.level, "bytes": f.bytes,
                "smallest_key": hex(&f.smallest_key), "largest_key": hex(&f.largest_key),
                "smallest_seqno": f.smallest_seqno, "largest_seqno": f.largest_seqno,
                "entries": f.entries, "deletions": f.deletions,
            })
        })
        .collect();
    let kind = match e.kind {
        CfKind::Plain => "plain",
        CfKind::Counters => "counters",
    };
    json!({"cf": e.cf, "kind": kind, "comparator": e.comparator, "files": files})
}

fn decode_exported(v: &Value) -> Result<ExportedCf, String> {
    let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string).ok_or(format!("exported family lacks {f}"));
    let num = |v: &Value, f: &str| v.get(f).and_then(Value::as_u64).ok_or(format!("exported file lacks {f}"));
    let kind = match text(v, "kind")?.as_str() {
        "plain" => CfKind::Plain,
        "counters" => CfKind::Counters,
        other => return Err(format!("unknown column family kind {other:?}")),
    };
    let mut files = vec![];
    for f in v.get("files").and_then(Value::as_array).ok_or("exported family lacks files")? {
        files.push(ExportedFile {
            name: text(f, "name")?,
            level: f.get("level").and_then(Value::as_i64).ok_or("exported file lacks level")? as i32,
            bytes: num(f, "bytes")?,
            smallest_key: unhex(&text(f, "smallest_key")?)?,
            largest_key: unhex(&text(f, "largest_key")?)?,
            smallest_seqno: num(f, "smallest_seqno")?,
            largest_seqno: num(f, "largest_seqno")?,
            entries: num(f, "entries")?,
            deletions: num(f, "deletions")?,
        });
    }
    Ok(ExportedCf { cf: text(v, "cf")?, kind, comparator: text(v, "comparator")?, files })
}

/// The path of an exported file under its checkpoint's directory.
fn state_file(cf: &str, file: &ExportedFile) -> String {
    format!("{STATE_SUBDIR}/{cf}/{}", file.name.trim_start_matches('/'))
}

/// Where operators export their column families for checkpoint `id` before it commits.
pub fn pending_state_dir(data_dir: &Path, id: u64) -> PathBuf {
    checkpoints_dir(data_dir).join(format!("{id:020}{TMP_SUFFIX}")).join(STATE_SUBDIR)
}

/// Where checkpoints live: `<data dir>/checkpoints`.
pub fn checkpoints_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

/// Where checkpoint `id` lives once committed.
pub fn checkpoint_dir(data_dir: &Path, id: u64) -> PathBuf {
    checkpoints_dir(data_dir).join(format!("{id:020}"))
}

/// Commits checkpoint `id` in `data_dir`: the families in `state` were exported into
/// [`pending_state_dir`] by their operators. `started` is when its barrier was injected. Files
/// already listed (same name and size) in `previous` keep their checksum: SST files are
/// immutable and uniquely named, so only new files are read.
pub fn create(
    data_dir: &Path,
    id: u64,
    positions: BTreeMap<String, u64>,
    state: Vec<ExportedCf>,
    timing: Timing,
    previous: Option<&Manifest>,
) -> StorageResult<Manifest> {
    let writing = std::time::Instant::now();
    let root = checkpoints_dir(data_dir);
    let tmp = root.join(format!("{id:020}{TMP_SUFFIX}"));
    std::fs::create_dir_all(&tmp)?;
    let known: BTreeMap<(&str, u64), u32> =
        previous.map(|m| m.files.iter().map(|f| ((f.name.as_str(), f.bytes), f.crc32)).collect()).unwrap_or_default();
    let mut files = vec![];
    for exported in &state {
        for f in &exported.files {
            let name = state_file(&exported.cf, f);
            let bytes = std::fs::metadata(tmp.join(&name))?.len();
            if bytes != f.bytes {
                return Err(StorageError::Corrupt(format!("{name} is {bytes} bytes; RocksDB exported {}", f.bytes)));
            }
            let crc32 = match known.get(&(name.as_str(), bytes)) {
                Some(crc) => *crc,
                None => crc_of(&tmp.join(&name))?,
            };
            files.push(FileEntry { name, bytes, crc32 });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let created_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let manifest = Manifest {
        id,
        created_at_ms,
        duration_ms: timing.started.elapsed().as_millis() as u64,
        write_ms: writing.elapsed().as_millis() as u64,
        snapshot_ms: timing.longest_snapshot.as_millis() as u64,
        positions,
        files,
        state,
        format: MANIFEST_FORMAT,
    };
    let mut f = std::fs::File::create(tmp.join(MANIFEST))?;
    f.write_all(&manifest.encode())?;
    f.sync_all()?;
    std::fs::rename(&tmp, checkpoint_dir(data_dir, id))?;
    std::fs::File::open(&root)?.sync_all()?;
    Ok(manifest)
}

/// When a checkpoint's barrier was injected, and the longest an operator spent on its snapshot.
pub struct Timing {
    pub started: std::time::Instant,
    pub longest_snapshot: std::time::Duration,
}

fn crc_of(path: &Path) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// Reads the manifest of the checkpoint in `dir` and checks every file against it (present,
/// same size, same CRC-32). An error says what is wrong.
pub fn verify(dir: &Path) -> Result<Manifest, String> {
    let bytes = std::fs::read(dir.join(MANIFEST)).map_err(|e| format!("no manifest: {e}"))?;
    let manifest = Manifest::decode(&bytes)?;
    for f in &manifest.files {
        let path = dir.join(&f.name);
        let len = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", f.name))?.len();
        if len != f.bytes {
            return Err(format!("{} is {len} bytes, the manifest says {}", f.name, f.bytes));
        }
        if crc_of(&path).map_err(|e| format!("{}: {e}", f.name))? != f.crc32 {
            return Err(format!("{} does not match its checksum", f.name));
        }
    }
    Ok(manifest)
}

/// The committed checkpoints' manifests, oldest first, read without verifying the files
/// (cheap; for listing). Unreadable manifests are left out.
pub fn list(data_dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(data_dir)) else { return vec![] };
    let mut out: Vec<(PathBuf, Manifest)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().parse::<u64>().is_ok()))
        .filter_map(|p| {
            let m = Manifest::decode(&std::fs::read(p.join(MANIFEST)).ok()?).ok()?;
            Some((p, m))
        })
        .collect();
    out.sort_by_key(|(_, m)| m.id);
    out
}

/// The largest checkpoint id used in `data_dir`, committed or not, readable or not: new ids
/// must stay above it.
pub fn highest_id(data_dir: &Path) -> Option<u64> {
    std::fs::read_dir(checkpoints_dir(data_dir))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.trim_end_matches(TMP_SUFFIX).trim_end_matches(CORRUPT_SUFFIX).parse::<u64>().ok()
        })
        .max()
}

/// Where an interrupted restore of format 1 left the live database.
const CRASHED_SUBDIR: &str = "state.before-restore";
/// Where a restore links the files it imports (the import moves them into the database).
const IMPORT_SUBDIR: &str = "restore-import";

/// What [`restore`] did.
pub struct Restored {
    pub manifest: Manifest,
    /// Column families kept as they were in the live database (tables, the catalog).
    pub carried: Vec<String>,
    /// Column families imported from the checkpoint.
    pub imported: usize,
    pub elapsed_ms: u64,
}

/// Rolls the live database in `data_dir` back to its newest valid checkpoint: every column
/// family that `keep_live` does not select (tables and the catalog, whose acknowledged writes
/// after the checkpoint must survive, stay as they are) is dropped, and the families the
/// checkpoint exported are imported in their place. Returns `None` when there is no live
/// database or no valid checkpoint of this format. Call it before opening the store.
///
/// A crash during the restore is safe: the next start drops and imports again.
pub fn restore(data_dir: &Path, cache_bytes: usize, keep_live: impl Fn(&str) -> bool) -> StorageResult<Option<Restored>> {
    let started = std::time::Instant::now();
    // A data dir of another format is refused before anything in it moves.
    if data_dir.exists() {
        crate::store::check_format(data_dir)?;
    }
    let live = data_dir.join(crate::store::STATE_SUBDIR);
    let crashed = data_dir.join(CRASHED_SUBDIR);
    if crashed.exists() {
        // A restore of format 1 did not finish: the side directory is the real live database.
        let _ = std::fs::remove_dir_all(&live);
        std::fs::rename(&crashed, &live)?;
    }
    if !live.exists() {
        return Ok(None);
    }
    let Some((checkpoint, manifest)) = newest_valid(data_dir)? else { return Ok(None) };
    if manifest.format != MANIFEST_FORMAT {
        tracing::warn!(checkpoint = manifest.id, format = manifest.format, "the newest checkpoint is a whole-store copy written by an earlier version; it is not used, and views are rebuilt from their inputs");
        return Ok(None);
    }
    let store = Store::open_at(data_dir, crate::store::STATE_SUBDIR, cache_bytes)?;
    let carried: Vec<String> = store.opened_with().iter().filter(|cf| keep_live(cf)).cloned().collect();
    for cf in store.opened_with().iter().filter(|cf| !keep_live(cf)) {
        store.drop_cf(cf)?;
    }
    import_families(&store, data_dir, &checkpoint, &manifest, |cf| !keep_live(cf))?;
    drop(store);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let imported = manifest.state.iter().filter(|e| !keep_live(&e.cf)).count();
    Ok(Some(Restored { imported, manifest, carried, elapsed_ms }))
}

/// Imports into `store` the families of `manifest` (checkpoint directory `checkpoint`) that
/// `select` picks.
fn import_families(store: &Store, data_dir: &Path, checkpoint: &Path, manifest: &Manifest, select: impl Fn(&str) -> bool) -> StorageResult<()> {
    let scratch = data_dir.join(IMPORT_SUBDIR);
    let _ = std::fs::remove_dir_all(&scratch);
    for exported in manifest.state.iter().filter(|e| select(&e.cf)) {
        let links = scratch.join(&exported.cf);
        std::fs::create_dir_all(&links)?;
        for f in &exported.files {
            // The import moves its files into the database: give it links, never the
            // checkpoint's own names, which a later restore may need again.
            std::fs::hard_link(checkpoint.join(state_file(&exported.cf, f)), links.join(f.name.trim_start_matches('/')))?;
        }
        store.import_cf(exported, &links)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Starts a data directory that has no database from its newest valid checkpoint (one
/// downloaded into it by `--restore-from`): creates the database with the families `select`
/// picks (the tables and the catalog, which [`restore`] keeps as they are), so that the
/// [`restore`] that follows imports the rest as it does after a crash. Returns the checkpoint
/// used, or `None` when the directory has a database already or no valid checkpoint.
pub fn seed(data_dir: &Path, cache_bytes: usize, select: impl Fn(&str) -> bool) -> StorageResult<Option<Manifest>> {
    if data_dir.join(crate::store::STATE_SUBDIR).exists() {
        return Ok(None);
    }
    let Some((checkpoint, manifest)) = newest_valid(data_dir)? else { return Ok(None) };
    let store = Store::open_at(data_dir, crate::store::STATE_SUBDIR, cache_bytes)?;
    import_families(&store, data_dir, &checkpoint, &manifest, select)?;
    Ok(Some(manifest))
}

/// Deletes all but the newest [`CHECKPOINTS_RETAINED`] checkpoints, and any temporary
/// directory a crash left behind (never the one being written: callers serialise).
pub fn collect_garbage(data_dir: &Path) -> StorageResult<()> {
    let root = checkpoints_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(()) };
    let (mut committed, mut corrupt) = (vec![], vec![]);
    for e in entries {
        let path = e?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(TMP_SUFFIX) {
            std::fs::remove_dir_all(&path)?;
        } else if name.ends_with(CORRUPT_SUFFIX) {
            corrupt.push(path);
        } else {
            committed.push(path);
        }
    }
    for (list, keep) in [(&mut committed, CHECKPOINTS_RETAINED), (&mut corrupt, 1)] {
        list.sort();
        let excess = list.len().saturating_sub(keep);
        for path in &list[..excess] {
            std::fs::remove_dir_all(path).map_err(StorageError::Io)?;
        }
    }
    Ok(())
}

/// The newest checkpoint whose every file matches its manifest. Newer ones that fail are
/// logged as errors and renamed aside (`<id>.corrupt`), so they are never used or listed.
pub fn newest_valid(data_dir: &Path) -> StorageResult<Option<(PathBuf, Manifest)>> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(data_dir)) else { return Ok(None) };
    let mut dirs: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_string_lossy().parse::<u64>().ok()?, e.path())))
        .collect();
    dirs.sort();
    while let Some((id, path)) = dirs.pop() {
        match verify(&path) {
            Ok(m) => return Ok(Some((path, m))),
            Err(why) => {
                tracing::error!(checkpoint = id, path = %path.display(), error = %why, "checkpoint is damaged; falling back to the previous one");
                let mut aside = path.clone().into_os_string();
                aside.push(CORRUPT_SUFFIX);
                std::fs::rename(&path, &aside)?;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CfKind, StateWrite};

    fn store_with_rows(name: &str) -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("openclaw-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        store.create_cf("mv_1", CfKind::Plain).unwrap();
        store.create_cf("table_2", CfKind::Plain).unwrap();
        write_rows(&store, 0..1000, 7);
        (store, dir)
    }

    fn write_rows(store: &Store, keys: std::ops::Range<u32>, value: u8) {
        let mut w = StateWrite::default();
        for i in keys {
            w.put(&"mv_1".into(), i.to_be_bytes().to_vec(), vec![value; 100]);
            w.put(&"table_2".into(), i.to_be_bytes().to_vec(), vec![value; 100]);
        }
        store.write_state(w).unwrap();
    }

    /// What an operator does at the barrier, then what the checkpoint does once every sink
    /// has passed it.
    fn checkpoint(store: &Store, id: u64, positions: BTreeMap<String, u64>, previous: Option<&Manifest>) -> Manifest {
        let dir = pending_state_dir(store.dir(), id);
        let pending = store.switch_memtable("mv_1", CfKind::Plain).unwrap();
        let exported = store.collect_snapshot(&pending, &dir.join("mv_1")).unwrap();
        let timing = Timing { started: std::time::Instant::now(), longest_snapshot: std::time::Duration::ZERO };
        create(store.dir(), id, positions, vec![exported], timing, previous).unwrap()
    }

    fn values(store: &Store, cf: &str) -> Vec<u8> {
        let mut out = vec![];
        store
            .scan(cf, None, |_, v| {
                out.push(v[0]);
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn a_checkpoint_verifies_and_damage_is_detected() {
        let (store, dir) = store_with_rows("verify");
        let m = checkpoint(&store, 5, [("source 1".to_string(), 42u64)].into(), None);
        let (path, listed) = list(&dir).pop().unwrap();
        assert_eq!(listed, m);
        assert_eq!(verify(&path).unwrap().positions["source 1"], 42);
        assert!(m.files.iter().all(|f| f.name.starts_with("state/mv_1/") && f.name.ends_with(".sst")), "{:?}", m.files);
        assert!(m.bytes() > 0);
        // Truncate the largest file: detected by size.
        let big = m.files.iter().max_by_key(|f| f.bytes).unwrap().name.clone();
        let bytes = std::fs::read(path.join(&big)).unwrap();
        // The files are hard links to the live ones: replace, never write through them.
        std::fs::remove_file(path.join(&big)).unwrap();
        std::fs::write(path.join(&big), &bytes[..bytes.len() / 2]).unwrap();
        assert!(verify(&path).unwrap_err().contains("bytes"));
        // Same size, one byte flipped: detected by checksum.
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0xff;
        std::fs::write(path.join(&big), &flipped).unwrap();
        assert!(verify(&path).unwrap_err().contains("checksum"));
        // A torn manifest.
        std::fs::write(path.join(MANIFEST), b"{\"body\": \"{}\", \"crc32\": 1}").unwrap();
        assert!(verify(&path).is_err());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writes after the barrier are not in the checkpoint; tables keep them across a restore.
    #[test]
    fn a_restore_rolls_state_back_and_keeps_tables() {
        let (store, dir) = store_with_rows("restore");
        let first = checkpoint(&store, 1, BTreeMap::new(), None);
        write_rows(&store, 0..1000, 8);
        write_rows(&store, 1000..1010, 9);
        store.create_cf("mv_3", CfKind::Plain).unwrap();
        drop(store);
        let restored = restore(&dir, 8 << 20, |cf| cf.starts_with("table_")).unwrap().expect("a checkpoint");
        assert_eq!(restored.manifest, first);
        assert_eq!(restored.carried, vec!["table_2".to_string()]);
        let store = Store::open(&dir).unwrap();
        assert_eq!(values(&store, "mv_1"), vec![7; 1000], "the state as of the barrier");
        let table = values(&store, "table_2");
        assert_eq!((table.len(), table[0], table[1005]), (1010, 8, 9), "the table as it was written");
        assert!(!store.has_cf("mv_3"), "state not in the checkpoint is dropped");
        // A second crash restores the same checkpoint again: its files are intact.
        write_rows(&store, 0..5, 1);
        drop(store);
        restore(&dir, 8 << 20, |cf| cf.starts_with("table_")).unwrap().expect("a checkpoint");
        let store = Store::open(&dir).unwrap();
        assert_eq!(values(&store, "mv_1"), vec![7; 1000]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_newest_checkpoint_is_set_aside_for_the_previous_one() {
        let (store, dir) = store_with_rows("fallback");
        let first = checkpoint(&store, 1, BTreeMap::new(), None);
        write_rows(&store, 0..1000, 8);
        let second = checkpoint(&store, 2, BTreeMap::new(), Some(&first));
        let newest = checkpoints_dir(&dir).join(format!("{:020}", 2));
        let damaged = newest.join(&second.files.iter().find(|f| !first.files.contains(f)).expect("a new file").name);
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[10] ^= 1;
        std::fs::remove_file(&damaged).unwrap();
        std::fs::write(&damaged, &bytes).unwrap();
        let (_, m) = newest_valid(&dir).unwrap().expect("the previous checkpoint");
        assert_eq!(m.id, 1);
        assert_eq!(list(&dir).iter().map(|(_, m)| m.id).collect::<Vec<_>>(), vec![1]);
        assert!(checkpoints_dir(&dir).join(format!("{:020}{CORRUPT_SUFFIX}", 2)).exists());
        assert_eq!(highest_id(&dir), Some(2), "new ids stay above the damaged one");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_checkpoints_and_leftovers_are_collected() {
        let (store, dir) = store_with_rows("gc");
        let mut previous = None;
        for id in 1..=4 {
            previous = Some(checkpoint(&store, id, BTreeMap::new(), previous.as_ref()));
        }
        std::fs::create_dir_all(checkpoints_dir(&dir).join(format!("{:020}{TMP_SUFFIX}", 9))).unwrap();
        collect_garbage(&dir).unwrap();
        let ids: Vec<u64> = list(&dir).iter().map(|(_, m)| m.id).collect();
        assert_eq!(ids, vec![3, 4]);
        assert_eq!(std::fs::read_dir(checkpoints_dir(&dir)).unwrap().count(), 2);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The manifest is our own encoding: a checked-in one must keep decoding as it did.
    #[test]
    fn a_manifest_of_format_2_decodes() {
        let m = Manifest {
            id: 7,
            created_at_ms: 1,
            duration_ms: 2,
            write_ms: 3,
            snapshot_ms: 4,
            positions: [("table_2".to_string(), 9)].into(),
            files: vec![FileEntry { name: "state/mv_1/000012.sst".into(), bytes: 100, crc32: 5 }],
            state: vec![ExportedCf {
                cf: "mv_1".into(),
                kind: CfKind::Counters,
                comparator: "leveldb.BytewiseComparator".into(),
                files: vec![ExportedFile {
                    name: "/000012.sst".into(),
                    level: 6,
                    bytes: 100,
                    smallest_key: vec![0, 1],
                    largest_key: vec![0xff],
                    smallest_seqno: 3,
                    largest_seqno: 8,
                    entries: 2,
                    deletions: 0,
                }],
            }],
            format: MANIFEST_FORMAT,
        };
        // Found at run time (cargo sets the variable for tests), not where the binary was built:
        // a test binary shared between checkouts must read this checkout's fixture.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let fixture = format!("{dir}/tests/fixtures/checkpoint_manifest_v2.json");
        let golden = std::fs::read(&fixture);
        if std::env::var_os("OPENCLAW_BLESS").is_some() {
            std::fs::write(&fixture, m.encode()).unwrap();
            return;
        }
        let golden = golden.expect("the fixture (OPENCLAW_BLESS=1 writes it)");
        assert_eq!(Manifest::decode(&golden).unwrap(), m);
        assert_eq!(m.encode(), golden, "the encoding changed: bump MANIFEST_FORMAT and keep decoding format 2");
    }
}
