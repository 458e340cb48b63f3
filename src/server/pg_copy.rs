//! `COPY (SUBSCRIBE ...) TO STDOUT`: a subscription's rows streamed to the client in COPY's
//! text format, each batch flushed as it comes, until the client goes or the subscription
//! ends. `COPY t | (query) TO STDOUT`: a query's rows, in the text format or CSV.

use std::fmt::Debug;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::PgWireBackendMessage;
use datafusion::arrow::array::timezone::Tz;
use openclaw_sql::copy::CopyFormat;
use openclaw_sql::Subscription;

/// Streams `subscription` as COPY OUT. Returns the command's completion (`COPY n`), or the
/// error that ended it (a client too far behind, the subscribed view dropped).
pub async fn copy_out<C>(client: &mut C, mut subscription: Subscription, cancel: &openclaw_sql::interrupt::CancelSignal, zone: &Tz) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<C::Error>,
{
    let schema = subscription.schema();
    let fields = arrow_pg::datatypes::arrow_schema_to_pg_fields(&schema, &Format::UnifiedText, None)?;
    let columns = schema.fields().len();
    client.send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, columns as i16, vec![0; columns]))).await?;
    let mut rows = 0usize;
    loop {
        // A cancel request ends the subscription (with 57014, which ends the COPY), the
        // session goes on.
        let next = tokio::select! {
            next = subscription.next_batch() => next,
            () = cancel.canceled() => Err(openclaw_sql::interrupt::user_cancel()),
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => return Ok(Response::Error(Box::new(super::pg::error_info(e)))),
        };
        let batch = super::pg_text::apply(batch, &fields, zone).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        for line in text_lines(&batch)? {
            client.feed(PgWireBackendMessage::CopyData(CopyData::new(line.into()))).await?;
        }
        rows += batch.num_rows();
        // Each batch is one token's changes (or part of them): the client sees them now.
        client.flush().await?;
    }
    client.send(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

/// Streams a query's rows as COPY OUT in `format` (with a header line of the column names
/// for CSV's `HEADER`), stopping on a cancel request. Returns `COPY n`, or the error that
/// ended it.
pub async fn copy_rows<C>(
    client: &mut C,
    schema: datafusion::arrow::datatypes::SchemaRef,
    mut stream: datafusion::execution::SendableRecordBatchStream,
    format: CopyFormat,
    header: bool,
    cancel: &openclaw_sql::interrupt::CancelSignal,
    zone: &Tz,
) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<C::Error>,
{
    use futures::StreamExt;
    let fields = arrow_pg::datatypes::arrow_schema_to_pg_fields(&schema, &Format::UnifiedText, None)?;
    let columns = schema.fields().len();
    client.send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, columns as i16, vec![0; columns]))).await?;
    if header && format == CopyFormat::Csv {
        let mut line = vec![];
        for (i, f) in schema.fields().iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            csv_escape_into(f.name(), &mut line);
        }
        line.push(b'\n');
        client.feed(PgWireBackendMessage::CopyData(CopyData::new(line.into()))).await?;
    }
    let mut rows = 0usize;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = cancel.canceled() => Some(Err(datafusion::error::DataFusionError::External(Box::new(openclaw_sql::interrupt::user_cancel())))),
        };
        let batch = match next {
            Some(Ok(batch)) => batch,
            None => break,
            Some(Err(e)) => return Ok(Response::Error(Box::new(super::pg::error_info(openclaw_sql::SqlError::from(e))))),
        };
        let batch = super::pg_text::apply(batch, &fields, zone).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let lines = match format {
            CopyFormat::Text => text_lines(&batch)?,
            CopyFormat::Csv => csv_lines(&batch)?,
        };
        for line in lines {
            client.feed(PgWireBackendMessage::CopyData(CopyData::new(line.into()))).await?;
        }
        rows += batch.num_rows();
    }
    client.send(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

/// Each row's values as PostgreSQL's text forms, `None` for NULL, handed to `line`.
fn each_row(batch: &RecordBatch, mut line: impl FnMut(usize, Option<&str>)) -> PgWireResult<()> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let mut value = String::new();
    for row in 0..batch.num_rows() {
        for (i, column) in batch.columns().iter().enumerate() {
            if column.is_null(row) {
                line(i, None);
                continue;
            }
            value.clear();
            match column.data_type() {
                DataType::Boolean => value.push(if column.as_boolean().value(row) { 't' } else { 'f' }),
                _ => {
                    use std::fmt::Write;
                    let _ = write!(value, "{}", formatters[i].value(row));
                }
            }
            line(i, Some(&value));
        }
    }
    Ok(())
}

/// Each row as a CSV line: comma-separated, NULL as an empty field, a value quoted when it
/// holds a comma, a quote, a line break or nothing (so that it is not read back as NULL).
fn csv_lines(batch: &RecordBatch) -> PgWireResult<Vec<Vec<u8>>> {
    let columns = batch.num_columns();
    let mut lines = Vec::with_capacity(batch.num_rows());
    let mut line = Vec::with_capacity(64);
    each_row(batch, |i, value| {
        if i > 0 {
            line.push(b',');
        }
        if let Some(v) = value {
            csv_escape_into(v, &mut line);
        }
        if i + 1 == columns {
            line.push(b'\n');
            lines.push(std::mem::take(&mut line));
        }
    })?;
    Ok(lines)
}

fn csv_escape_into(value: &str, out: &mut Vec<u8>) {
    if value.is_empty() || value.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for b in value.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// Each row as a line of COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn text_lines(batch: &RecordBatch) -> PgWireResult<Vec<Vec<u8>>> {
    let columns = batch.num_columns();
    let mut lines = Vec::with_capacity(batch.num_rows());
    let mut line = Vec::with_capacity(64);
    each_row(batch, |i, value| {
        if i > 0 {
            line.push(b'\t');
        }
        match value {
            Some(v) => escape_into(v, &mut line),
            None => line.extend_from_slice(b"\\N"),
        }
        if i + 1 == columns {
            line.push(b'\n');
            lines.push(std::mem::take(&mut line));
        }
    })?;
    Ok(lines)
}

/// COPY text's escapes: backslash, tab, newline and carriage return.
fn escape_into(value: &str, out: &mut Vec<u8>) {
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn rows_are_copy_text_with_nulls_and_escapes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("token", DataType::Int64, false),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), None])),
            ],
        )
        .unwrap();
        let lines: Vec<String> = text_lines(&batch).unwrap().into_iter().map(|l| String::from_utf8(l).unwrap()).collect();
        assert_eq!(lines, ["7\tt\ta\\tb\\\\c\\nd\n", "8\t\\N\t\\N\n"]);
    }
}
