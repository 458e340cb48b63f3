//! History: `WITH (history = 'parquet', history.retention = '30 days', history.partition =
//! 'hour')` on a source keeps every row it has produced as Parquet files under
//! `<data dir>/history/<name>/`, written by a Parquet sink of its own, `<name>$history`
//! (`CREATE SINK "<name>$history" AS SELECT * FROM <name> WITH (connector = 'parquet', ...)`,
//! stored and restored like any sink: exactly once across crashes). `history('<name>')`
//! reads the files with DataFusion (any Parquet sink's, by the sink's name too), and `SHOW
//! HISTORY` lists them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::Expr;
use openclaw_connectors::parquet::{cold_store, file_schema, list_files, sink_dir_name, ParquetSinkOptions, Partitioning};

use crate::database::{object_name, Database};
use crate::parser::ObjectKind;
use crate::error::{SqlError, SqlResult, SqlState};
use crate::session::SessionVars;
use crate::{Options, QueryOutput};

/// Where `object`'s history files are.
fn history_dir(data_dir: &Path, object: &str) -> PathBuf {
    data_dir.join("history").join(object)
}

/// Prefix of a dropped object's history directory, until it is removed.
const DROPPED_PREFIX: &str = ".dropped-";

/// Moves a dropped object's history out of the way at once (one rename), so that an object
/// created under the same name starts empty; [`remove_dropped`] deletes it.
pub(crate) fn set_aside(data_dir: &Path, object: &str, id: openclaw_engine::ObjectId) {
    let from = history_dir(data_dir, object);
    let to = data_dir.join("history").join(format!("{DROPPED_PREFIX}{id}"));
    match std::fs::rename(&from, &to) {
        Ok(()) => {
            std::thread::spawn(move || remove_dropped(to.parent().expect("under history/")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %from.display(), error = %e, "could not set a dropped object's history aside"),
    }
}

/// Deletes the history directories of dropped objects (also what a crash left of them).
pub(crate) fn remove_dropped(data_dir: &Path) {
    let root = if data_dir.ends_with("history") { data_dir.to_path_buf() } else { data_dir.join("history") };
    let Ok(entries) = std::fs::read_dir(&root) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(DROPPED_PREFIX) {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not delete a dropped object's history");
            }
        }
    }
}

/// The sink that writes `object`'s history.
pub(crate) fn sink_name(object: &str) -> String {
    format!("{object}$history")
}

/// Whether `entry` is the sink of an object's history (`<object>$history`, reading `<object>`).
pub(crate) fn is_history_sink(entry: &crate::catalog::Entry) -> bool {
    entry.kind == ObjectKind::Sink && entry.name.strip_suffix("$history").is_some_and(|object| entry.depends_on.iter().any(|d| d == object))
}

/// What `WITH (history = ...)` asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistoryOptions {
    retention: Option<String>,
    partition: Option<String>,
    hot: Option<String>,
    hot_limit: Option<String>,
}

impl HistoryOptions {
    /// Takes the `history` options out of `options` (the rest are the connector's).
    pub(crate) fn take(options: &mut Options) -> SqlResult<Option<Self>> {
        let keys: Vec<String> = options.keys().filter(|k| *k == "history" || k.starts_with("history.")).cloned().collect();
        let mut taken: HashMap<String, String> = keys.into_iter().filter_map(|k| options.remove(&k).map(|v| (k, v))).collect();
        let Some(kind) = taken.remove("history") else {
            if let Some(key) = taken.keys().next() {
                return Err(SqlError::new(SqlState::InvalidParameterValue, format!("option \"{key}\" needs history = 'parquet'")));
            }
            return Ok(None);
        };
        if !kind.eq_ignore_ascii_case("parquet") {
            return Err(SqlError::new(SqlState::InvalidParameterValue, format!("history = '{kind}' is not supported")).with_hint("history = 'parquet'"));
        }
        let (retention, partition, hot) = (taken.remove("history.retention"), taken.remove("history.partition"), taken.remove("history.hot"));
        let hot_limit = taken.remove("history.hot.limit");
        if let Some(key) = taken.keys().next() {
            return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unknown option \"{key}\""))
                .with_hint("history takes history.retention, history.partition, history.hot and history.hot.limit"));
        }
        Ok(Some(Self { retention, partition, hot, hot_limit }))
    }
}

/// Refuses options left after the history's were taken, on an object that takes no others.
pub(crate) fn refuse_other_options(options: &Options, what: &str) -> SqlResult<()> {
    match options.keys().next() {
        None => Ok(()),
        Some(key) => Err(SqlError::new(SqlState::InvalidParameterValue, format!("unknown option \"{key}\" for {what}"))
            .with_hint("WITH takes history = 'parquet', history.retention, history.partition and history.hot here")),
    }
}

/// Where each Parquet sink writes and what its files hold, by sink name: what `history()`
/// reads.
#[derive(Default, Clone)]
pub(crate) struct ParquetSinks(Arc<RwLock<HashMap<String, SinkFiles>>>);

#[derive(Clone, Debug)]
pub(crate) struct SinkFiles {
    pub(crate) path: PathBuf,
    pub(crate) partitioning: Partitioning,
    /// The files' columns (the object's, `_diff`, `_commit_time`).
    pub(crate) schema: SchemaRef,
    /// Files older than this are deleted.
    pub(crate) retention_ms: Option<u64>,
    /// Files older than this move to the cold tier, and at most this many bytes of them wait.
    pub(crate) hot_ms: u64,
    pub(crate) hot_limit_bytes: u64,
}

impl ParquetSinks {
    /// Notes sink `name` if its options are a Parquet sink's.
    pub(crate) fn register(&self, name: &str, options: &Options, schema: &SchemaRef) {
        if !options.get("connector").is_some_and(|c| c.eq_ignore_ascii_case("parquet")) {
            return;
        }
        let (Ok(parsed), Ok(schema)) = (ParquetSinkOptions::parse(options), file_schema(schema)) else { return };
        let files = SinkFiles { path: parsed.path, partitioning: parsed.partitioning, schema, retention_ms: parsed.retention_ms, hot_ms: parsed.hot_ms, hot_limit_bytes: parsed.hot_limit_bytes };
        self.0.write().expect("parquet sinks lock").insert(name.to_string(), files);
    }

    pub(crate) fn remove(&self, name: &str) {
        self.0.write().expect("parquet sinks lock").remove(name);
    }

    /// The files of `name`'s history, or of the Parquet sink `name`.
    pub(crate) fn find(&self, name: &str) -> Option<SinkFiles> {
        let sinks = self.0.read().expect("parquet sinks lock");
        sinks.get(&sink_name(name)).or_else(|| sinks.get(name)).cloned()
    }

    fn all(&self) -> Vec<(String, SinkFiles)> {
        let mut all: Vec<_> = self.0.read().expect("parquet sinks lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// `history('name')`: the Parquet files of `name`'s history as a table (its columns, then
/// `_diff`, `_commit_time`, and the partition columns `date` and `hour`).
pub(crate) struct HistoryFunction(pub(crate) ParquetSinks);

impl std::fmt::Debug for HistoryFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryFunction")
    }
}

impl TableFunctionImpl for HistoryFunction {
    fn call(&self, args: &[Expr]) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let name = match args {
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => name.clone(),
            _ => {
                let error = SqlError::new(SqlState::UndefinedFunction, "history() takes the name of an object with history, as a string")
                    .with_hint("e.g. SELECT count(*) FROM history('bid')");
                return Err(DataFusionError::External(Box::new(error)));
            }
        };
        let Some(files) = self.0.find(&name) else {
            let error = SqlError::new(SqlState::UndefinedTable, format!("relation \"{name}\" has no history"))
                .with_hint(format!("create it WITH (history = 'parquet'); SHOW HISTORY lists what has one"));
            return Err(DataFusionError::External(Box::new(error)));
        };
        Ok(Arc::new(crate::history_scan::HistoryTable::new(files)))
    }
}

impl Database {
    /// Whether `CREATE ... IF NOT EXISTS name` finds `name` there already (and does nothing).
    pub(crate) async fn exists_already(&self, if_not_exists: bool, name: &datafusion::sql::sqlparser::ast::ObjectName) -> bool {
        let Ok(name) = object_name(name) else { return false };
        if_not_exists && self.catalog.lock().await.get(&name).is_some()
    }

    /// After `CREATE` of `name`: creates its history if asked for (and it was not there
    /// already); if that fails, drops the object again, so that the statement did nothing.
    pub(crate) async fn add_history(&self, kind: ObjectKind, name: &datafusion::sql::sqlparser::ast::ObjectName, history: Option<HistoryOptions>, existed: bool, vars: &SessionVars) -> SqlResult<()> {
        let (Some(history), false) = (history, existed) else { return Ok(()) };
        let object = object_name(name)?;
        if let Err(e) = self.create_history(&object, history, vars).await {
            let _ = self.drop_objects(kind, std::slice::from_ref(name), true, false).await;
            return Err(e);
        }
        Ok(())
    }

    /// Creates `<object>$history`, the Parquet sink of `object`'s history.
    pub(crate) async fn create_history(&self, object: &str, history: HistoryOptions, vars: &SessionVars) -> SqlResult<()> {
        // Relative to the data directory (see `ddl::under_data_dir`).
        let path = history_dir(Path::new(""), object);
        let quote = |s: &str| s.replace('\'', "''");
        let mut options = vec![format!("connector = 'parquet'"), format!("path = '{}'", quote(&path.display().to_string()))];
        options.extend(history.partition.map(|p| format!("partition = '{}'", quote(&p))));
        options.extend(history.retention.map(|r| format!("retention = '{}'", quote(&r))));
        options.extend(history.hot.map(|h| format!("hot = '{}'", quote(&h))));
        options.extend(history.hot_limit.map(|l| format!("hot_limit = '{}'", quote(&l))));
        let sql = format!("CREATE SINK {} AS SELECT * FROM {} WITH ({})", crate::schemas::sql_name(&sink_name(object)), crate::schemas::sql_name(object), options.join(", "));
        let mut statements = crate::parser::parse(&sql)?;
        let Some(crate::parser::OcStatement::CreateSink(sink)) = statements.pop() else {
            return Err(SqlError::new(SqlState::Internal, "the history sink did not parse as a sink"));
        };
        self.create_sink_resuming(sink, vars, &sql, None).await?;
        Ok(())
    }

    /// `ALTER <kind> name SET (history = 'parquet', ...)` starts `name`'s history (from its
    /// content then, as rows entering); `RESET (history)` stops it and deletes its files.
    pub(crate) async fn alter_history(&self, kind: ObjectKind, name: &datafusion::sql::sqlparser::ast::ObjectName, if_exists: bool, mut options: Options, reset: bool, vars: &SessionVars) -> SqlResult<QueryOutput> {
        let object = object_name(name)?;
        let tag = format!("ALTER {}", kind.sql_name().to_ascii_uppercase());
        let mut catalog = self.catalog.lock().await;
        match catalog.get(&object) {
            None if if_exists => return Ok(QueryOutput::command(&tag)),
            None => return Err(SqlError::new(SqlState::UndefinedTable, format!("{} \"{object}\" does not exist", kind.sql_name()))),
            Some(entry) if entry.kind != kind => {
                return Err(SqlError::new(SqlState::WrongObjectType, format!("\"{object}\" is not a {}", kind.sql_name()))
                    .with_hint(format!("use ALTER {}", entry.kind.sql_name().to_ascii_uppercase())))
            }
            Some(_) => {}
        }
        let has_history = catalog.get(&sink_name(&object)).is_some();
        if reset {
            if let Some(key) = options.keys().find(|k| *k != "history" && !k.starts_with("history.")) {
                return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unrecognized parameter \"{key}\"")).with_hint("RESET (history) stops the history and deletes its files"));
            }
            if !options.contains_key("history") {
                return Err(SqlError::not_supported("resetting one history option is not supported yet").with_hint("RESET (history) stops the history and deletes its files"));
            }
            self.drop_history(&mut catalog, &object)?;
            return Ok(QueryOutput::command(&tag));
        }
        drop(catalog);
        let history = HistoryOptions::take(&mut options)?;
        refuse_other_options(&options, &format!("ALTER {}", kind.sql_name().to_ascii_uppercase()))?;
        let Some(history) = history else {
            return Err(SqlError::new(SqlState::InvalidParameterValue, "ALTER ... SET takes history = 'parquet' and its options"));
        };
        if has_history {
            return Err(SqlError::not_supported(format!("\"{object}\" has history already; changing its options is not supported yet"))
                .with_hint(format!("ALTER {} {object} RESET (history) deletes it; SET starts a new one", kind.sql_name().to_ascii_uppercase())));
        }
        self.create_history(&object, history, vars).await?;
        Ok(QueryOutput::command(&tag))
    }

    /// `SHOW HISTORY`: each Parquet sink's files (a history is its object's `$history` sink).
    pub(crate) async fn show_history(&self) -> SqlResult<QueryOutput> {
        let sinks = self.parquet_sinks.all();
        let rows = tokio::task::spawn_blocking(move || sinks.into_iter().flat_map(|(name, files)| describe(&name, &files)).collect::<Vec<_>>())
            .await
            .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))?;
        QueryOutput::text_rows(&["object", "tier", "path", "files", "bytes", "rows", "oldest_partition", "newest_partition", "status"], rows)
    }
}

/// One row of `SHOW HISTORY` per tier of `sink`: the hot tier, and the cold one if any.
fn describe(sink: &str, files: &SinkFiles) -> Vec<Vec<String>> {
    let object = sink.strip_suffix("$history").unwrap_or(sink).to_string();
    let hot: Vec<_> = list_files(&files.path).unwrap_or_default().into_iter().filter(|f| !f.uploaded).collect();
    let rows: i64 = hot.iter().filter_map(|f| parquet_rows(&f.path)).sum();
    let relative: Vec<String> = hot.iter().filter_map(|f| f.path.strip_prefix(&files.path).ok().map(|p| p.display().to_string())).collect();
    let mut status = "ok".to_string();
    if cold_store().is_some() {
        let waiting = openclaw_connectors::parquet::waiting_bytes(&files.path, std::time::Duration::from_millis(files.hot_ms)).unwrap_or(0);
        if waiting >= files.hot_limit_bytes {
            status = format!("full: {waiting} bytes wait for the cold tier (limit {}); commits wait", files.hot_limit_bytes);
        }
    }
    let mut out = vec![tier_row(&object, "hot", &files.path.display().to_string(), &relative, hot.iter().map(|f| f.bytes).sum(), rows.to_string(), status)];
    if let Some(cold) = cold_store() {
        let name = sink_dir_name(&files.path);
        let (listed, status) = match cold.list(&name) {
            Ok(listed) => (listed, "ok".to_string()),
            Err(e) => (vec![], format!("unreachable: {e}")),
        };
        let listed: Vec<_> = listed.into_iter().filter(|(p, ..)| p.ends_with(".parquet")).collect();
        let relative: Vec<String> = listed.iter().map(|(p, ..)| p.clone()).collect();
        // Row counts of cold files would mean reading their footers from the store.
        out.push(tier_row(&object, "cold", &cold.sink_url(&name), &relative, listed.iter().map(|(_, b, _)| *b).sum(), String::new(), status));
    }
    out
}

/// A tier's row: its files (paths relative to the tier's directory), bytes, rows, status.
fn tier_row(object: &str, tier: &str, path: &str, relative: &[String], bytes: u64, rows: String, status: String) -> Vec<String> {
    let partition = |p: &String| p.rsplit_once('/').map(|(dir, _)| dir.to_string()).unwrap_or_default();
    let oldest = relative.iter().map(partition).min().unwrap_or_default();
    let newest = relative.iter().map(partition).max().unwrap_or_default();
    vec![object.into(), tier.into(), path.into(), relative.len().to_string(), bytes.to_string(), rows, oldest, newest, status]
}

/// Rows of a Parquet file, from its footer.
fn parquet_rows(path: &std::path::Path) -> Option<i64> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).ok()?).ok()?;
    Some(reader.metadata().file_metadata().num_rows())
}
