//! Checkpoints of the whole store: a RocksDB checkpoint (hard links to the immutable SST files
//! plus copies of the metadata files and the write-ahead log) in `checkpoints/<id>/`, committed by a manifest
//! that lists every file with its size and CRC-32, and that carries the positions of the
//! inputs at the cut. The directory is built under a temporary name and renamed into place
//! only once its manifest is synced, so a crash never leaves a half-written checkpoint under a
//! final name. [`verify`] recomputes every checksum, so a truncated or corrupted checkpoint is
//! detected before anyone trusts it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{StorageError, StorageResult, Store};

pub const MANIFEST: &str = "OPENCLAW_CHECKPOINT.json";
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
    /// Of which writing the copy (flushing memtables, linking and checksumming files); the
    /// rest is the barrier's way through the dataflow, during which rows still flow.
    pub write_ms: u64,
    /// Where each input stood at the cut (a source's next event, a table's last write).
    pub positions: BTreeMap<String, u64>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    fn encode(&self) -> Vec<u8> {
        let files: Vec<Value> = self.files.iter().map(|f| json!({"name": f.name, "bytes": f.bytes, "crc32": f.crc32})).collect();
        let body = json!({
            "id": self.id,
            "created_at_ms": self.created_at_ms,
            "duration_ms": self.duration_ms,
            "write_ms": self.write_ms,
            "positions": self.positions,
            "files": files,
        });
        let text = body.to_string();
        // The manifest's own checksum: a torn write of the manifest is caught too.
        json!({"body": text, "crc32": crc32fast::hash(text.as_bytes())}).to_string().into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
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
            positions,
            files,
        })
    }
}

/// Where checkpoints live: `<data dir>/checkpoints`.
pub fn checkpoints_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

/// Where checkpoint `id` lives once committed.
pub fn checkpoint_dir(data_dir: &Path, id: u64) -> PathBuf {
    checkpoints_dir(data_dir).join(format!("{id:020}"))
}

/// Writes checkpoint `id` of `store`. `started` is when its barrier was injected. Files
/// already listed (same name and size) in `previous` keep their checksum: SST files are
/// immutable and uniquely named, so only new files are read.
pub fn create(
    store: &Store,
    id: u64,
    positions: BTreeMap<String, u64>,
    started: std::time::Instant,
    previous: Option<&Manifest>,
) -> StorageResult<Manifest> {
    let writing = std::time::Instant::now();
    let root = checkpoints_dir(store.dir());
    std::fs::create_dir_all(&root)?;
    let tmp = root.join(format!("{id:020}{TMP_SUFFIX}"));
    let _ = std::fs::remove_dir_all(&tmp);
    store.create_rocksdb_checkpoint(&tmp)?;
    let known: BTreeMap<(&str, u64), u32> =
        previous.map(|m| m.files.iter().map(|f| ((f.name.as_str(), f.bytes), f.crc32)).collect()).unwrap_or_default();
    let mut files = vec![];
    for entry in std::fs::read_dir(&tmp)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = entry.metadata()?.len();
        let immutable = name.ends_with(".sst");
        let crc32 = match known.get(&(name.as_str(), bytes)) {
            Some(crc) if immutable => *crc,
            _ => crc_of(&entry.path())?,
        };
        files.push(FileEntry { name, bytes, crc32 });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let created_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let duration_ms = started.elapsed().as_millis() as u64;
    let write_ms = writing.elapsed().as_millis() as u64;
    let manifest = Manifest { id, created_at_ms, duration_ms, write_ms, positions, files };
    let mut f = std::fs::File::create(tmp.join(MANIFEST))?;
    f.write_all(&manifest.encode())?;
    f.sync_all()?;
    let dir = checkpoint_dir(store.dir(), id);
    std::fs::rename(&tmp, &dir)?;
    std::fs::File::open(&root)?.sync_all()?;
    Ok(manifest)
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

/// Where the live database waits while a checkpoint replaces it (see [`restore`]).
const CRASHED_SUBDIR: &str = "state.before-restore";
/// Where a restore writes the files of the tables it carries over.
const INGEST_SUBDIR: &str = "restore-ingest";

/// What [`restore`] did.
pub struct Restored {
    pub manifest: Manifest,
    /// Column families carried over from the live database (tables, the catalog).
    pub carried: Vec<String>,
    pub elapsed_ms: u64,
}

/// Rolls the live database in `data_dir` back to its newest valid checkpoint, except for the
/// column families `keep_live` selects (tables and the catalog: acknowledged writes after the
/// checkpoint must survive), which are copied over from the live database. Returns `None`
/// when there is no live database or no valid checkpoint. Call it before opening the store.
///
/// A crash during the restore is safe: the live database waits in a side directory until
/// the restore is complete, and the next start resumes from it.
pub fn restore(data_dir: &Path, cache_bytes: usize, keep_live: impl Fn(&str) -> bool) -> StorageResult<Option<Restored>> {
    let started = std::time::Instant::now();
    // A data dir of another format is refused before anything in it moves.
    if data_dir.exists() {
        crate::store::check_format(data_dir)?;
    }
    let live = data_dir.join(crate::store::STATE_SUBDIR);
    let crashed = data_dir.join(CRASHED_SUBDIR);
    if crashed.exists() {
        // An earlier restore did not finish: the side directory is the real live database.
        let _ = std::fs::remove_dir_all(&live);
        std::fs::rename(&crashed, &live)?;
    }
    if !live.exists() {
        return Ok(None);
    }
    let Some((checkpoint, manifest)) = newest_valid(data_dir)? else { return Ok(None) };
    std::fs::rename(&live, &crashed)?;
    std::fs::create_dir_all(&live)?;
    for f in &manifest.files {
        let (from, to) = (checkpoint.join(&f.name), live.join(&f.name));
        // SST files never change: link them. The rest (RocksDB's MANIFEST, the WAL) is
        // copied, so that opening the restored database cannot touch the checkpoint.
        if f.name.ends_with(".sst") {
            std::fs::hard_link(&from, &to)?;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    let carried = {
        let restored = Store::open_at(data_dir, crate::store::STATE_SUBDIR, cache_bytes)?;
        let before = Store::open_at(data_dir, CRASHED_SUBDIR, cache_bytes)?;
        let carried: Vec<String> = before.opened_with().iter().filter(|cf| keep_live(cf)).cloned().collect();
        let scratch = data_dir.join(INGEST_SUBDIR);
        let _ = std::fs::remove_dir_all(&scratch);
        for cf in &carried {
            restored.drop_cf(cf)?;
            restored.create_cf(cf, crate::CfKind::Plain)?;
            restored.ingest_copy(&before, cf, &scratch)?;
        }
        let _ = std::fs::remove_dir_all(&scratch);
        carried
    };
    std::fs::remove_dir_all(&crashed)?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(Some(Restored { manifest, carried, elapsed_ms }))
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
        store.create_cf("t", CfKind::Plain).unwrap();
        let mut w = StateWrite::default();
        for i in 0..1000u32 {
            w.put(&"t".into(), i.to_be_bytes().to_vec(), vec![7; 100]);
        }
        store.write(w).unwrap();
        (store, dir)
    }

    #[test]
    fn a_checkpoint_verifies_and_damage_is_detected() {
        let (store, dir) = store_with_rows("verify");
        let positions = [("source 1".to_string(), 42u64)].into();
        let m = create(&store, 5, positions, std::time::Instant::now(), None).unwrap();
        let (path, listed) = list(&dir).pop().unwrap();
        assert_eq!(listed, m);
        assert_eq!(verify(&path).unwrap().positions["source 1"], 42);
        assert!(m.files.iter().any(|f| f.name.ends_with(".log") || f.name.ends_with(".sst")), "the rows are in the checkpoint");
        // Truncate the largest file: detected by size.
        let big = m.files.iter().max_by_key(|f| f.bytes).unwrap().name.clone();
        let bytes = std::fs::read(path.join(&big)).unwrap();
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

    #[test]
    fn a_damaged_newest_checkpoint_is_set_aside_for_the_previous_one() {
        let (store, dir) = store_with_rows("fallback");
        create(&store, 1, BTreeMap::new(), std::time::Instant::now(), None).unwrap();
        create(&store, 2, BTreeMap::new(), std::time::Instant::now(), None).unwrap();
        // RocksDB copies (does not link) its MANIFEST into a checkpoint: damage that one.
        let newest = checkpoints_dir(&dir).join(format!("{:020}", 2));
        let rocks_manifest = std::fs::read_dir(&newest)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("MANIFEST-"))
            .unwrap();
        let bytes = std::fs::read(&rocks_manifest).unwrap();
        std::fs::write(&rocks_manifest, &bytes[..bytes.len() - 1]).unwrap();
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
        for id in 1..=4 {
            create(&store, id, BTreeMap::new(), std::time::Instant::now(), None).unwrap();
        }
        std::fs::create_dir_all(checkpoints_dir(&dir).join(format!("{:020}{TMP_SUFFIX}", 9))).unwrap();
        collect_garbage(&dir).unwrap();
        let ids: Vec<u64> = list(&dir).iter().map(|(_, m)| m.id).collect();
        assert_eq!(ids, vec![3, 4]);
        assert_eq!(std::fs::read_dir(checkpoints_dir(&dir)).unwrap().count(), 2);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
