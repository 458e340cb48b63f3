//! A file source, for backfills: `CREATE SOURCE s (...) WITH (connector = 'file', path =
//! '/data/bids/*.parquet', format = 'parquet' | 'csv' | 'json')`. Bounded: `FLUSH` waits until
//! every file has been read.
//!
//! The files are listed once, at `CREATE` (a glob in the last component of `path`, or every
//! file of a directory), sorted by name, and the list is stored with the statement
//! (`file.list`), so that a restart reads the same files. The reader's position is the file
//! it is in and the rows of that file already returned (`file` and `row`), kept in
//! checkpoints: after a crash it goes on from there, and a view over it counts every row
//! once. CSV and JSON lines go through the same decoder as Kafka records (a line that does not
//! decode goes to `<source>_dlq`, keyed by file index and line number); a Parquet file whose
//! columns do not fit is one dead letter. Files are read on a thread of their own, a few
//! chunks ahead ([`reader::READ_AHEAD_CHUNKS`]).

mod reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use openclaw_engine::source::SourceReader;

use crate::{Connector, ConnectorError, Options, ReaderContext};

/// The stored list of files (one absolute path a line), fixed at `CREATE`.
pub const FILE_LIST_OPTION: &str = "file.list";
/// Most files one source lists.
pub const MAX_FILES: usize = 100_000;

const KNOWN: &[&str] = &["connector", "path", "format", "csv.header", "csv.delimiter", FILE_LIST_OPTION];

/// How the files are encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Format {
    Parquet,
    /// One record a line; `header`: the first line of each file names the columns.
    Csv { header: bool, delimiter: u8 },
    /// One JSON object a line.
    Json,
}

/// `connector = 'file'`.
pub struct FileConnector;

/// A file source's options, checked.
#[derive(Debug, Clone)]
pub(crate) struct FileOptions {
    pub(crate) format: Format,
    pub(crate) files: Arc<Vec<PathBuf>>,
}

impl FileOptions {
    fn parse(options: &Options) -> Result<Self, ConnectorError> {
        if let Some(key) = options.keys().find(|k| !KNOWN.contains(&k.as_str()) && !k.starts_with("include.")) {
            return Err(ConnectorError::new(format!("unknown option \"{key}\" for a file source")).with_hint(format!("options are {}", KNOWN[..5].join(", "))));
        }
        let format = match options.get("format").map(|f| f.to_ascii_lowercase()).as_deref() {
            Some("parquet") => Format::Parquet,
            Some("json") | Some("ndjson") => Format::Json,
            Some("csv") => {
                let header = match options.get("csv.header").map(|h| h.to_ascii_lowercase()).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => return Err(ConnectorError::new(format!("csv.header = '{other}' is not a boolean"))),
                };
                let delimiter = match options.get("csv.delimiter").map(|d| d.as_bytes()) {
                    None => b',',
                    Some([d]) => *d,
                    Some(_) => return Err(ConnectorError::new("csv.delimiter must be one character")),
                };
                Format::Csv { header, delimiter }
            }
            Some(other) => return Err(ConnectorError::new(format!("format = '{other}' is not supported for files")).with_hint("format = 'parquet', 'csv' or 'json'")),
            None => return Err(ConnectorError::new("a file source needs a format").with_hint("add WITH (format = 'parquet' | 'csv' | 'json')")),
        };
        let files = match options.get(FILE_LIST_OPTION) {
            Some(list) => list.lines().map(PathBuf::from).collect(),
            None => list_matching(options.get("path").map(String::as_str))?,
        };
        Ok(Self { format, files: Arc::new(files) })
    }
}

/// The files `path` names: a file, every file of a directory, or the files whose names match
/// a glob (`*`, `?`, `[...]`) in the last component; sorted by path.
fn list_matching(path: Option<&str>) -> Result<Vec<PathBuf>, ConnectorError> {
    let path = path.ok_or_else(|| ConnectorError::new("a file source needs a path").with_hint("add WITH (path = '/data/*.parquet')"))?;
    if path.contains("://") && !path.starts_with("file://") {
        return Err(ConnectorError::new(format!("path \"{path}\": only local files are read so far")).with_hint("copy the files to local disk, or give a file:// or absolute path"));
    }
    let path = Path::new(path.strip_prefix("file://").unwrap_or(path));
    if !path.is_absolute() {
        return Err(ConnectorError::new(format!("the file source's path \"{}\" is not absolute", path.display())));
    }
    let (dir, pattern) = match path.is_dir() {
        true => (path.to_path_buf(), "*".to_string()),
        false => (path.parent().unwrap_or(Path::new("/")).to_path_buf(), path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
    };
    if dir.to_string_lossy().contains(['*', '?', '[']) {
        return Err(ConnectorError::new(format!("path \"{}\": a pattern may only be in the file name", path.display())));
    }
    let pattern = glob::Pattern::new(&pattern).map_err(|e| ConnectorError::new(format!("path \"{}\": {e}", path.display())))?;
    let entries = std::fs::read_dir(&dir).map_err(|e| ConnectorError::new(format!("cannot list {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && pattern.matches(&name)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConnectorError::new(format!("no file matches \"{}\"", path.display())));
    }
    if files.len() > MAX_FILES {
        return Err(ConnectorError::new(format!("{} files match \"{}\", more than {MAX_FILES}", files.len(), path.display())).with_hint("split them over several sources"));
    }
    Ok(files)
}

impl Connector for FileConnector {
    fn name(&self) -> &'static str {
        "file"
    }

    fn resolve(&self, options: &mut Options) -> Result<(), ConnectorError> {
        if !options.contains_key(FILE_LIST_OPTION) {
            let files = list_matching(options.get("path").map(String::as_str))?;
            let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            options.insert(FILE_LIST_OPTION.into(), list.join("\n"));
        }
        Ok(())
    }

    fn validate(&self, declared: &SchemaRef, options: &Options) -> Result<SchemaRef, ConnectorError> {
        let parsed = FileOptions::parse(options)?;
        let first = parsed.files.first().ok_or_else(|| ConnectorError::new("the file source lists no file"))?;
        match (parsed.format, declared.fields().is_empty()) {
            (Format::Parquet, true) => {
                let schema = reader::parquet_schema(first).map_err(ConnectorError::new)?;
                Ok(Arc::new(Schema::new(schema.fields().clone())))
            }
            (Format::Parquet, false) => {
                let schema = reader::parquet_schema(first).map_err(ConnectorError::new)?;
                for field in declared.fields() {
                    let found = reader::find_column(&schema, field.name()).ok_or_else(|| {
                        ConnectorError::new(format!("column \"{}\" is not in {}", field.name(), first.display())).with_hint(format!("its columns: {}", column_names(&schema)))
                    })?;
                    if !can_cast_types(schema.field(found).data_type(), field.data_type()) {
                        return Err(ConnectorError::new(format!("column \"{}\" of {} is {}, which cannot be read as {}", field.name(), first.display(), schema.field(found).data_type(), field.data_type())));
                    }
                }
                Ok(declared.clone())
            }
            (_, true) => Err(ConnectorError::new("a CSV or JSON file source needs its columns declared").with_hint("CREATE SOURCE s (id bigint, name text, ...) WITH (connector = 'file', ...)")),
            (_, false) => Ok(declared.clone()),
        }
    }

    fn has_dead_letters(&self) -> bool {
        true
    }

    fn reader(&self, schema: &SchemaRef, options: &Options, context: ReaderContext) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let parsed = FileOptions::parse(options)?;
        Ok(Box::new(reader::FileReader::new(schema.clone(), parsed, context)?))
    }
}

fn column_names(schema: &Schema) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}
