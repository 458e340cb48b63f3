//! Decoding of record values into Arrow, vectorized: a whole poll's worth of records goes
//! through one arrow-json, arrow-csv or arrow-avro decoder (one per Avro writer schema). A record that does not decode is isolated
//! (the rest of its batch still decodes) and reported with its error, for the dead-letter table.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;

use super::avro::{AvroDecoder, AvroEncoding};
use crate::ConnectorError;

/// How record values are encoded (`ENCODE JSON | CSV`).
#[derive(Debug, Clone, PartialEq)]
pub enum Encoding {
    /// One JSON object per record; fields are matched to columns by name.
    Json,
    /// One CSV line per record; fields are matched to columns by position.
    Csv { delimiter: u8 },
    /// One Avro datum per record; fields are matched to columns by name.
    Avro(AvroEncoding),
    /// One Protobuf message per record, decoded by its descriptor; fields are matched to
    /// columns by name.
    Protobuf(ProtobufEncoding),
}

/// `ENCODE PROTOBUF`: the message, and whether records carry Confluent's header (with a
/// schema registry).
#[derive(Debug, Clone, PartialEq)]
pub struct ProtobufEncoding {
    pub message: crate::protobuf::ProtobufMessage,
    /// With a schema registry, each record starts with Confluent's header: a zero byte, the
    /// schema id (4 bytes, big-endian) and the message's indexes in its file, which must be
    /// these ([`crate::protobuf::ProtobufMessage::message_indexes`]).
    pub confluent_indexes: Option<Vec<i32>>,
}

impl ProtobufEncoding {
    /// The message bytes of `record`, past Confluent's header if records carry one.
    fn payload<'a>(&self, record: &'a [u8]) -> Result<&'a [u8], String> {
        let Some(expected) = &self.confluent_indexes else {
            return Ok(record);
        };
        let [0, _, _, _, _, rest @ ..] = record else {
            return Err("not in Confluent's wire format: no zero byte and schema id".into());
        };
        let (indexes, payload) = confluent_message_indexes(rest)?;
        if indexes != *expected {
            return Err(format!("the record is the message at indexes {indexes:?} of its schema, not {} (at {expected:?})", self.message.name()));
        }
        Ok(payload)
    }
}

/// Longest message-index path of Confluent's header accepted (nesting depth).
const MAX_MESSAGE_INDEXES: i64 = 32;

/// Reads the message indexes of Confluent's Protobuf header: a zigzag varint count, then as
/// many zigzag varints; a count of 0 stands for `[0]`. Returns them and the rest.
fn confluent_message_indexes(mut bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), String> {
    let next = |bytes: &mut &[u8]| -> Result<i64, String> {
        let raw = prost::encoding::decode_varint(bytes).map_err(|e| format!("bad message indexes in Confluent's header: {e}"))?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    };
    let count = next(&mut bytes)?;
    if !(0..=MAX_MESSAGE_INDEXES).contains(&count) {
        return Err(format!("bad message index count {count} in Confluent's header"));
    }
    if count == 0 {
        return Ok((vec![0], bytes));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        indexes.push(i32::try_from(next(&mut bytes)?).map_err(|_| "a message index out of range in Confluent's header".to_string())?);
    }
    Ok((indexes, bytes))
}

/// The outcome of decoding one poll's records.
pub struct Decoded {
    /// The good records, in their order.
    pub batch: RecordBatch,
    /// Index into the input of every good record (one per row of `batch`).
    pub good: Vec<usize>,
    /// Index and error of every bad record.
    pub bad: Vec<(usize, String)>,
}

/// Decodes record values into batches of `schema`.
pub struct ValueDecoder {
    schema: SchemaRef,
    encoding: Encoding,
    avro: Option<AvroDecoder>,
}

impl ValueDecoder {
    pub fn new(schema: SchemaRef, encoding: Encoding) -> Result<Self, ConnectorError> {
        let avro = match &encoding {
            Encoding::Avro(a) => Some(AvroDecoder::new(schema.clone(), a)?),
            _ => None,
        };
        Ok(Self { schema, encoding, avro })
    }

    /// Makes ready to decode `records`: fetches the Avro writer schemas they name that are not
    /// known yet. Fails only when the schema registry cannot be asked.
    pub async fn prepare(&mut self, records: &[&[u8]]) -> Result<(), String> {
        match &mut self.avro {
            Some(avro) => avro.learn(records).await,
            None => Ok(()),
        }
    }

    /// Decodes `records`. Never fails on bad input: a record that does not decode is put in
    /// `bad` with the reason. Records that pass a cheap per-record syntax check are decoded
    /// together; a batch that still fails (a type mismatch, say) is halved until the bad
    /// records are alone, with an explicit work list (no recursion).
    pub fn decode(&self, records: &[&[u8]]) -> Decoded {
        if let Encoding::Protobuf(protobuf) = &self.encoding {
            return self.decode_protobuf(protobuf, records);
        }
        let mut bad = vec![];
        // Candidates grouped by Avro writer schema (one group for JSON and CSV), so that one
        // decoder never switches schemas mid-batch.
        let mut groups: Vec<(u32, Vec<usize>)> = vec![];
        for (i, r) in records.iter().enumerate() {
            match self.check_syntax(r) {
                Ok(writer) => match groups.iter_mut().find(|(w, _)| *w == writer) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((writer, vec![i])),
                },
                Err(e) => bad.push((i, e)),
            }
        }
        let mut good = Vec::with_capacity(records.len());
        let mut batches = vec![];
        for (writer, candidates) in &groups {
            // Ranges of `candidates` still to decode, the leftmost on top of the stack.
            let mut work = vec![(0, candidates.len())];
            while let Some((start, end)) = work.pop() {
                if start == end {
                    continue;
                }
                let slice = &candidates[start..end];
                match self.decode_all(*writer, slice.len(), slice.iter().map(|&i| records[i])) {
                    Ok(batch) => {
                        good.extend_from_slice(slice);
                        batches.push(batch);
                    }
                    Err(e) if slice.len() == 1 => bad.push((slice[0], e)),
                    Err(_) => {
                        let mid = start + (end - start) / 2;
                        work.push((mid, end));
                        work.push((start, mid));
                    }
                }
            }
        }
        bad.sort_by_key(|(i, _)| *i);
        let batch = match batches.len() {
            0 => RecordBatch::new_empty(self.schema.clone()),
            1 => batches.pop().expect("one batch"),
            _ => concat_batches(&self.schema, &batches).expect("batches of one schema concatenate"),
        };
        debug_assert_eq!(batch.num_rows(), good.len());
        Decoded { batch, good, bad }
    }

    /// Protobuf records: each message is decoded alone (that is the format), to a JSON object
    /// or an error; the objects then go through one JSON decoder, record by record only when
    /// that fails (a value of the wrong type for its column).
    fn decode_protobuf(&self, protobuf: &ProtobufEncoding, records: &[&[u8]]) -> Decoded {
        let (mut values, mut good, mut bad) = (vec![], vec![], vec![]);
        for (i, record) in records.iter().enumerate() {
            match protobuf.payload(record).and_then(|payload| protobuf.message.to_json(payload)) {
                Ok(value) => {
                    values.push(value);
                    good.push(i);
                }
                Err(e) => bad.push((i, e)),
            }
        }
        let serialize = |values: &[serde_json::Value]| -> Result<RecordBatch, String> {
            let mut decoder = datafusion::arrow::json::ReaderBuilder::new(self.schema.clone()).with_batch_size(values.len().max(1)).build_decoder().map_err(|e| e.to_string())?;
            decoder.serialize(values).map_err(|e| e.to_string())?;
            Ok(decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
        };
        let batch = match serialize(&values) {
            Ok(batch) => batch,
            Err(_) => {
                let (mut kept, mut batches) = (vec![], vec![]);
                for (value, i) in values.iter().zip(&good) {
                    match serialize(std::slice::from_ref(value)) {
                        Ok(batch) => {
                            kept.push(*i);
                            batches.push(batch);
                        }
                        Err(e) => bad.push((*i, e)),
                    }
                }
                good = kept;
                bad.sort_by_key(|(i, _)| *i);
                concat_batches(&self.schema, &batches).expect("batches of one schema concatenate")
            }
        };
        debug_assert_eq!(batch.num_rows(), good.len());
        Decoded { batch, good, bad }
    }

    /// A fast check that rejects most malformed records one by one, so that a batch rarely
    /// needs to be split. Returns the record's Avro writer schema id (0 for JSON and CSV).
    fn check_syntax(&self, record: &[u8]) -> Result<u32, String> {
        match self.encoding {
            Encoding::Json => {
                let first = record.iter().find(|b| !b.is_ascii_whitespace());
                if first != Some(&b'{') {
                    return Err("a JSON record must be one JSON object".into());
                }
                serde_json::from_slice::<serde::de::IgnoredAny>(record)
                    .map(|_| 0)
                    .map_err(|e| format!("invalid JSON: {e}"))
            }
            Encoding::Csv { .. } => {
                let line = std::str::from_utf8(record).map_err(|e| format!("invalid UTF-8: {e}"))?;
                let line = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(line);
                match () {
                    _ if line.trim().is_empty() => Err("empty CSV record".into()),
                    _ if line.contains('\n') => Err("a CSV record must be one line".into()),
                    _ => Ok(0),
                }
            }
            Encoding::Avro(_) => self.avro.as_ref().expect("an Avro decoder for ENCODE AVRO").writer_of(record),
            Encoding::Protobuf(_) => Ok(0),
        }
    }

    /// Decodes every record into one batch, or fails if any of them does not decode.
    fn decode_all<'a>(&self, writer: u32, n: usize, records: impl Iterator<Item = &'a [u8]>) -> Result<RecordBatch, String> {
        match &self.encoding {
            Encoding::Json => self.decode_json(n, records),
            Encoding::Csv { delimiter } => self.decode_csv(n, records, *delimiter),
            Encoding::Avro(_) => self.avro.as_ref().expect("an Avro decoder for ENCODE AVRO").decode_all(writer, n, records),
            Encoding::Protobuf(_) => Err("Protobuf records are decoded by decode_protobuf".into()),
        }
    }

    /// `n`: the number of records, the decoder's batch size (one batch holds them all).
    fn decode_json<'a>(&self, n: usize, records: impl Iterator<Item = &'a [u8]>) -> Result<RecordBatch, String> {
        use datafusion::arrow::json::ReaderBuilder;
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(n.max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for record in records {
            let before = decoder.len();
            let read = decoder.decode(record).map_err(|e| e.to_string())?;
            // One record is one whole object: no partial object may carry over to the next
            // record, and no record may hold two.
            if read != record.len() || decoder.has_partial_record() || decoder.len() != before + 1 {
                return Err("a JSON record must be one JSON object".into());
            }
        }
        Ok(decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }

    fn decode_csv<'a>(&self, n: usize, records: impl Iterator<Item = &'a [u8]>, delimiter: u8) -> Result<RecordBatch, String> {
        use datafusion::arrow::csv::ReaderBuilder;
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(delimiter)
            .with_batch_size(n.max(1))
            .build_decoder();
        for record in records {
            let mut rest = record;
            while !rest.is_empty() {
                let read = decoder.decode(rest).map_err(|e| e.to_string())?;
                if read == 0 {
                    return Err("CSV decoder made no progress".into());
                }
                rest = &rest[read..];
            }
            if !record.ends_with(b"\n") {
                decoder.decode(b"\n").map_err(|e| e.to_string())?;
            }
        }
        Ok(decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("auction", DataType::Int64, true), Field::new("channel", DataType::Utf8, true)]))
    }

    #[test]
    fn json_isolates_syntax_and_type_errors() {
        let d = ValueDecoder::new(schema(), Encoding::Json).unwrap();
        let records: Vec<&[u8]> = vec![
            br#"{"auction": 1, "channel": "a"}"#,
            br#"{"auction": 2, "chan"#,
            br#"{"auction": "x", "channel": "b"}"#,
            br#"{"auction": 3}"#,
            br#"[1, 2]"#,
            br#"{"auction": 4} {"auction": 5}"#,
            br#"{"auction": 6, "channel": "c", "extra": true}"#,
        ];
        let out = d.decode(&records);
        assert_eq!(out.good, vec![0, 3, 6]);
        assert_eq!(out.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        let a = out.batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(a.values(), &[1, 3, 6]);
        let c = out.batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(c.is_null(1));
        assert!(out.bad[1].1.contains("auction") || out.bad[1].1.to_lowercase().contains("parse"), "{}", out.bad[1].1);
    }

    #[test]
    fn csv_decodes_by_position_and_isolates_bad_lines() {
        let d = ValueDecoder::new(schema(), Encoding::Csv { delimiter: b',' }).unwrap();
        let records: Vec<&[u8]> = vec![b"1,a", b"two,b", b"3,c\n", b"4,d,extra", b"5,e"];
        let out = d.decode(&records);
        assert_eq!(out.good, vec![0, 2, 4]);
        assert_eq!(out.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 3]);
        let a = out.batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(a.values(), &[1, 3, 5]);
    }
}
