//! `COPY t [(columns)] FROM STDIN`: the rows a client sends (PostgreSQL's text or CSV
//! format) are decoded and committed as one write through ingest's path
//! (`write_api.rs`): atomic, synced before `COPY n` is answered, upserting by primary key.
//!
//! A line that does not decode fails the whole COPY (nothing is written), with its line
//! number, as in PostgreSQL; with `ON_ERROR dead_letter` it goes to `<table>_dlq` instead,
//! in the same commit, and the rest is written.
//!
//! The server (`src/server/pg.rs`) gathers the COPY's data up to [`MAX_COPY_BYTES`].
//!
//! `COPY t | (query) TO STDOUT` runs the query as a `SELECT`; the server streams its rows in
//! the format asked for (`src/server/pg_copy.rs`).

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::write_api::{self, BodyFormat, Decoded};
use crate::{Database, SqlError, SqlResult, SqlState};

/// Most bytes one COPY may send (the data is held until it ends: COPY is atomic).
pub const MAX_COPY_BYTES: usize = 1 << 30;
/// Most rows one COPY may write.
pub const MAX_COPY_ROWS: usize = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: tab-separated, `\N` for NULL, backslash escapes.
    Text,
    /// CSV: comma-separated, an unquoted empty field for NULL.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// A bad line fails the COPY; nothing is written.
    Stop,
    /// Bad lines go to `<table>_dlq`; the others are written.
    DeadLetter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFrom {
    pub table: String,
    /// The columns the data holds, in order; empty for all of the table's.
    pub columns: Vec<String>,
    pub format: CopyFormat,
    /// Whether the first line is a header (skipped, as PostgreSQL does).
    pub header: bool,
    pub delimiter: Option<u8>,
    pub null: Option<String>,
    pub on_error: OnError,
}

/// `COPY t | (query) TO STDOUT`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyTo {
    pub query: Box<datafusion::sql::sqlparser::ast::Query>,
    pub format: CopyFormat,
    pub header: bool,
}

impl CopyFrom {
    fn delimiter(&self) -> u8 {
        self.delimiter.unwrap_or(match self.format {
            CopyFormat::Text => b'\t',
            CopyFormat::Csv => b',',
        })
    }
}

impl Database {
    /// Checks a COPY before its data comes: the table takes writes, the columns exist and
    /// the options are ones we read. Returns how many columns each line holds.
    pub async fn copy_target(&self, copy: &CopyFrom) -> SqlResult<usize> {
        if copy.format == CopyFormat::Csv && (copy.delimiter() != b',' || copy.null.as_deref().is_some_and(|n| !n.is_empty())) {
            return Err(SqlError::new(SqlState::FeatureNotSupported, "COPY ... CSV takes only the default DELIMITER ',' and NULL ''")
                .with_hint("use FORMAT text for other delimiters"));
        }
        let (_, schema, _) = self.write_target(&copy.table).await?;
        Ok(columns_of(copy, &schema)?.fields().len())
    }

    /// Writes the data a COPY received, once it has all come; returns the rows written.
    pub async fn copy_from(&self, copy: &CopyFrom, data: Vec<u8>) -> SqlResult<u64> {
        let spec = copy.clone();
        let receipt = self.write_decoded(&copy.table, None, move |table| decode(&spec, data, table)).await?;
        Ok(receipt.accepted)
    }
}

/// The schema of the columns a COPY's lines hold.
fn columns_of(copy: &CopyFrom, table: &SchemaRef) -> SqlResult<SchemaRef> {
    if copy.columns.is_empty() {
        return Ok(table.clone());
    }
    let fields = copy
        .columns
        .iter()
        .map(|c| {
            table.field_with_name(c).cloned().map_err(|_| {
                SqlError::new(SqlState::UndefinedColumn, format!("column \"{c}\" of relation \"{}\" does not exist", copy.table))
            })
        })
        .collect::<SqlResult<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

fn decode(copy: &CopyFrom, mut data: Vec<u8>, table: &SchemaRef) -> SqlResult<Decoded> {
    if copy.header {
        let end = data.iter().position(|b| *b == b'\n').map_or(data.len(), |i| i + 1);
        data.drain(..end);
    }
    // The decoder reads an empty field as NULL. Where the data has empty strings too (a
    // quoted "" in CSV, an empty field in text), NULLs are marked `\N` and read as such,
    // which is slower (a regex per field), so only then.
    let format = match copy.format {
        CopyFormat::Text => {
            let null = copy.null.as_deref().unwrap_or("\\N");
            let (csv, has_empty) = text_to_csv(&data, copy.delimiter(), null, false);
            if has_empty {
                data = text_to_csv(&data, copy.delimiter(), null, true).0;
                BodyFormat::CsvMarkedNulls
            } else {
                data = csv;
                BodyFormat::Csv { header: false }
            }
        }
        CopyFormat::Csv if has_quoted_empty(&data) => {
            data = mark_csv_nulls(&data);
            BodyFormat::CsvMarkedNulls
        }
        CopyFormat::Csv => BodyFormat::Csv { header: false },
    };
    let columns = columns_of(copy, table)?;
    // Booleans are read as text first: PostgreSQL writes them `t`/`f`, which the CSV reader
    // does not take.
    let read_as = booleans_as_text(&columns);
    let mut decoded = write_api::decode_limited(format, &data, &read_as, MAX_COPY_ROWS)?;
    if read_as != columns {
        decoded.batches = decoded.batches.iter().map(|b| booleans_from_text(b, &columns)).collect::<SqlResult<_>>()?;
    }
    for bad in &mut decoded.bad {
        bad.line += u64::from(copy.header);
    }
    if copy.on_error == OnError::Stop {
        if let Some(first) = decoded.bad.first() {
            return Err(SqlError::new(SqlState::InvalidTextRepresentation, first.error.clone())
                .with_detail(format!("COPY {}, line {}: \"{}\"", copy.table, first.line, first.payload))
                .with_hint("fix the line, or add ON_ERROR dead_letter to write the other lines and the bad ones to the dead-letter table"));
        }
    }
    if !copy.columns.is_empty() {
        decoded.batches = decoded.batches.iter().map(|b| widen(b, table)).collect::<SqlResult<_>>()?;
    }
    Ok(decoded)
}

fn booleans_as_text(columns: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = columns
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Boolean => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` with its text columns that `columns` has as booleans read as PostgreSQL reads a
/// boolean (`t`, `true`, `yes`, `on`, `1` and their opposites, any case, trimmed).
fn booleans_from_text(batch: &RecordBatch, columns: &SchemaRef) -> SqlResult<RecordBatch> {
    let mut arrays = batch.columns().to_vec();
    for (i, f) in columns.fields().iter().enumerate() {
        if f.data_type() != &DataType::Boolean {
            continue;
        }
        let text = arrays[i].as_string::<i32>();
        let values = text
            .iter()
            .map(|v| {
                v.map(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "y" | "yes" | "on" | "1" => Ok(true),
                    "f" | "false" | "n" | "no" | "off" | "0" => Ok(false),
                    _ => Err(SqlError::new(SqlState::InvalidTextRepresentation, format!("invalid input syntax for type boolean: \"{v}\""))),
                })
                .transpose()
            })
            .collect::<SqlResult<BooleanArray>>()?;
        arrays[i] = Arc::new(values);
    }
    Ok(RecordBatch::try_new(columns.clone(), arrays)?)
}

/// `batch` (some of the table's columns) as a batch of the whole table, NULL in the others.
fn widen(batch: &RecordBatch, table: &SchemaRef) -> SqlResult<RecordBatch> {
    let columns: Vec<ArrayRef> = table
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    let nullable = Arc::new(Schema::new(table.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()));
    let wide = RecordBatch::try_new(nullable, columns)?;
    crate::dml::conform(&wide, table)
}

/// Whether CSV `data` has a quoted empty field (`""`): an empty string, not NULL.
fn has_quoted_empty(data: &[u8]) -> bool {
    let (mut quoted, mut previous, mut at_field_start, mut opened_at_start) = (false, 0u8, true, false);
    for &b in data {
        if quoted {
            if b == b'"' {
                quoted = false;
                previous = b;
                continue;
            }
            opened_at_start = false;
        } else {
            match b {
                b'"' if previous == b'"' => {
                    // A doubled quote inside a field, not an end.
                    quoted = true;
                    opened_at_start = false;
                }
                b'"' => {
                    quoted = true;
                    opened_at_start = at_field_start;
                }
                b',' | b'\n' | b'\r' if previous == b'"' && opened_at_start => return true,
                _ => opened_at_start = false,
            }
            at_field_start = matches!(b, b',' | b'\n');
        }
        previous = b;
    }
    previous == b'"' && opened_at_start && !quoted
}

/// CSV as PostgreSQL reads it, with its NULLs (unquoted empty fields) marked `\N` for the
/// decoder, which otherwise takes a quoted empty field (an empty string) for NULL too.
fn mark_csv_nulls(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    let (mut quoted, mut field_empty) = (false, true);
    for &b in data {
        if quoted {
            quoted = b != b'"';
            out.push(b);
            continue;
        }
        match b {
            b',' | b'\n' => {
                if field_empty && !(b == b'\n' && out.last().is_none_or(|l| *l == b'\n')) {
                    out.extend_from_slice(b"\\N");
                }
                field_empty = true;
            }
            b'\r' => {}
            b'"' => {
                quoted = true;
                field_empty = false;
            }
            _ => field_empty = false,
        }
        if b != b'\r' {
            out.push(b);
        }
    }
    out
}

/// PostgreSQL's text format as CSV: fields split on `delimiter`, `null` as an empty field
/// (as an unquoted `\N` with `mark_nulls`), every other field unescaped (`\t`, `\n`, `\\`,
/// octal `\NNN`, hex `\xHH`, ...) and quoted. Also says whether a field was an empty string.
fn text_to_csv(data: &[u8], delimiter: u8, null: &str, mark_nulls: bool) -> (Vec<u8>, bool) {
    let mut has_empty = false;
    let mut out = Vec::with_capacity(data.len() + data.len() / 4);
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // The end-of-data marker of the older protocol, and the empty piece after the last
        // newline.
        if line.is_empty() || line == b"\\." {
            continue;
        }
        for (i, field) in line.split(|b| *b == delimiter).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if field == null.as_bytes() {
                if mark_nulls {
                    out.extend_from_slice(b"\\N");
                }
                continue;
            }
            has_empty |= field.is_empty();
            out.push(b'"');
            unescape_into(field, &mut out);
            out.push(b'"');
        }
        out.push(b'\n');
    }
    (out, has_empty)
}

/// Appends `field` unescaped, with `"` doubled for CSV.
fn unescape_into(field: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        let byte = if b != b'\\' || i == field.len() {
            b
        } else {
            let e = field[i];
            i += 1;
            match e {
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 11,
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match field.get(i) {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    v as u8
                }
                b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                    let mut v = 0u32;
                    for _ in 0..2 {
                        match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d;
                                i += 1;
                            }
                            None => break,
                        }
                    }
                    v as u8
                }
                other => other,
            }
        };
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::text_to_csv;


    #[test]
    fn text_format_becomes_csv() {
        let text = b"1\tplain\t\\N\n2\ttab\\there, \"quoted\"\t\\\\back\n\\.\n";
        let (csv, has_empty) = text_to_csv(text, b'\t', "\\N", true);
        assert_eq!(String::from_utf8(csv).unwrap(), "\"1\",\"plain\",\\N\n\"2\",\"tab\there, \"\"quoted\"\"\",\"\\back\"\n");
        assert!(!has_empty);
        assert_eq!(text_to_csv(b"1\t\t\\N\n", b'\t', "\\N", false), (b"\"1\",\"\",\n".to_vec(), true));
    }

    #[test]
    fn csv_nulls_are_marked_and_quoted_empties_kept() {
        let csv = b"1,,\"\"\r\n2,\"a,\n\"\"b\",\n\n";
        let marked = String::from_utf8(super::mark_csv_nulls(csv)).unwrap();
        assert_eq!(marked, "1,\\N,\"\"\n2,\"a,\n\"\"b\",\\N\n\n");
        assert!(super::has_quoted_empty(csv));
        assert!(super::has_quoted_empty(b"1,\"\""));
        assert!(!super::has_quoted_empty(b"1,\"a\"\"\",2\n\"\"\"x\",3"));
    }
}
