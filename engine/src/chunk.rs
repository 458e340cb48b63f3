use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::EngineResult;

/// `schema` with every field nullable: for state rows and padded join rows, where any
/// column may hold NULL.
pub fn nullable_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}

/// The change a row makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    Insert,
    Delete,
    /// The old value of an updated row; always directly followed by its `UpdateInsert`.
    UpdateDelete,
    /// The new value of an updated row.
    UpdateInsert,
}

impl Op {
    /// +1 for rows that enter the collection, -1 for rows that leave it.
    pub fn sign(self) -> i64 {
        match self {
            Op::Insert | Op::UpdateInsert => 1,
            Op::Delete | Op::UpdateDelete => -1,
        }
    }
}

/// A micro-batch of changes: an Arrow batch plus one [`Op`] per row.
#[derive(Debug, Clone)]
pub struct StreamChunk {
    ops: Arc<[Op]>,
    batch: RecordBatch,
}

impl StreamChunk {
    pub fn new(ops: impl Into<Arc<[Op]>>, batch: RecordBatch) -> Self {
        let ops = ops.into();
        assert_eq!(ops.len(), batch.num_rows(), "one op per row");
        Self { ops, batch }
    }

    /// A chunk of inserts only.
    pub fn inserts(batch: RecordBatch) -> Self {
        Self::new(vec![Op::Insert; batch.num_rows()], batch)
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    pub fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// Rows `offset..offset + len`, zero-copy. The caller keeps update pairs together.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        Self::new(self.ops[offset..offset + len].to_vec(), self.batch.slice(offset, len))
    }

    /// Same ops, new columns (a projection).
    pub fn with_batch(&self, batch: RecordBatch) -> Self {
        Self::new(Arc::clone(&self.ops), batch)
    }

    /// Keeps the rows where `mask` is true (null counts as false). An update pair cut in half
    /// becomes a plain insert or delete, so that the changelog stays well formed.
    pub fn filter(&self, mask: &BooleanArray) -> EngineResult<Self> {
        let keep = |i: usize| mask.is_valid(i) && mask.value(i);
        if mask.null_count() == 0 && mask.true_count() == mask.len() {
            return Ok(self.clone());
        }
        let mut ops = Vec::with_capacity(mask.true_count());
        for (i, op) in self.ops.iter().enumerate() {
            if !keep(i) {
                continue;
            }
            ops.push(match op {
                Op::UpdateDelete if !(i + 1 < self.ops.len() && keep(i + 1)) => Op::Delete,
                Op::UpdateInsert if !(i > 0 && keep(i - 1)) => Op::Insert,
                op => *op,
            });
        }
        let mask = if mask.null_count() == 0 {
            mask.clone()
        } else {
            BooleanArray::from_iter((0..mask.len()).map(|i| Some(keep(i))))
        };
        Ok(Self::new(ops, filter_record_batch(&self.batch, &mask)?))
    }

    /// Renders the chunk in the fixture format of [`fixture::parse`], for test diffs.
    pub fn to_pretty(&self) -> String {
        use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
        let opts = FormatOptions::default().with_null("null");
        let fmts: Vec<_> = self
            .batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable"))
            .collect();
        let mut out = String::new();
        for (i, op) in self.ops.iter().enumerate() {
            out.push_str(match op {
                Op::Insert => "+",
                Op::Delete => "-",
                Op::UpdateDelete => "U-",
                Op::UpdateInsert => "U+",
            });
            for f in &fmts {
                out.push(' ');
                out.push_str(&f.value(i).to_string());
            }
            out.push('\n');
        }
        out
    }

    pub fn columns(&self) -> &[ArrayRef] {
        self.batch.columns()
    }
}

/// A readable text format for chunks in tests, after RisingWave's `StreamChunk::from_pretty`:
///
/// ```text
///  I  T
///  +  1 foo
///  U- 2 bar
///  U+ 2 baz
///  -  3 .
/// ```
///
/// The first line names the column types (`I` BIGINT, `i` INT, `F` DOUBLE, `T` TEXT, `B`
/// BOOLEAN); `.` is NULL.
pub mod fixture {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    pub fn schema(types: &str) -> SchemaRef {
        let fields: Vec<Field> = types
            .split_whitespace()
            .enumerate()
            .map(|(i, t)| Field::new(format!("c{i}"), type_of(t), true))
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn type_of(t: &str) -> DataType {
        match t {
            "I" => DataType::Int64,
            "i" => DataType::Int32,
            "F" => DataType::Float64,
            "T" => DataType::Utf8,
            "B" => DataType::Boolean,
            other => panic!("unknown fixture type {other:?}"),
        }
    }

    pub fn parse(text: &str) -> StreamChunk {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let header = lines.next().expect("a header line of column types");
        let schema = schema(header);
        let mut ops = vec![];
        let mut cells: Vec<Vec<String>> = vec![vec![]; schema.fields().len()];
        for line in lines {
            let mut parts = line.split_whitespace();
            ops.push(match parts.next().expect("an op") {
                "+" => Op::Insert,
                "-" => Op::Delete,
                "U-" => Op::UpdateDelete,
                "U+" => Op::UpdateInsert,
                other => panic!("unknown op {other:?}"),
            });
            for col in cells.iter_mut() {
                col.push(parts.next().expect("a value per column").to_string());
            }
        }
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(&cells)
            .map(|(f, vals)| column(f.data_type(), vals))
            .collect();
        StreamChunk::new(ops, RecordBatch::try_new(schema, columns).expect("valid fixture"))
    }

    fn column(dt: &DataType, vals: &[String]) -> ArrayRef {
        fn v(s: &String) -> Option<&str> {
            (s != ".").then_some(s.as_str())
        }
        match dt {
            DataType::Int64 => Arc::new(Int64Array::from_iter(vals.iter().map(|s| v(s).map(|s| s.parse::<i64>().unwrap())))),
            DataType::Int32 => Arc::new(Int32Array::from_iter(vals.iter().map(|s| v(s).map(|s| s.parse::<i32>().unwrap())))),
            DataType::Float64 => Arc::new(Float64Array::from_iter(vals.iter().map(|s| v(s).map(|s| s.parse::<f64>().unwrap())))),
            DataType::Boolean => Arc::new(BooleanArray::from_iter(vals.iter().map(|s| v(s).map(|s| s == "t" || s == "true")))),
            _ => Arc::new(StringArray::from_iter(vals.iter().map(v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_splits_update_pairs_into_plain_ops() {
        let chunk = fixture::parse(
            "I I
             U- 1 10
             U+ 1 20
             U- 2 30
             U+ 2 5
             +  3 50",
        );
        let mask = BooleanArray::from(vec![true, true, true, false, true]);
        let out = chunk.filter(&mask).unwrap();
        assert_eq!(out.to_pretty(), "U- 1 10\nU+ 1 20\n- 2 30\n+ 3 50\n");
    }
}
