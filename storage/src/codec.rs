use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::compute::SortOptions;
use arrow::row::{RowConverter, Rows, SortField};

use crate::StorageResult;

/// Encodes rows of a fixed schema into byte strings and back, with Arrow's row format.
///
/// The encoding sorts like the values (so it makes ordered RocksDB keys) and is reversible
/// (so it makes values). It is not stable across Arrow versions, which is why the store
/// records [`crate::FORMAT_VERSION`].
pub struct RowCodec {
    schema: SchemaRef,
    converter: RowConverter,
}

impl RowCodec {
    pub fn new(schema: SchemaRef) -> StorageResult<Self> {
        let options = vec![SortOptions::default(); schema.fields().len()];
        Self::with_order(schema, &options)
    }

    /// A codec whose encoding sorts each column as `options` says (descending, nulls first),
    /// for keys that must iterate in a query's `ORDER BY` order.
    pub fn with_order(schema: SchemaRef, options: &[SortOptions]) -> StorageResult<Self> {
        assert_eq!(options.len(), schema.fields().len(), "one sort option per column");
        let fields = schema
            .fields()
            .iter()
            .zip(options)
            .map(|(f, o)| SortField::new_with_options(f.data_type().clone(), *o))
            .collect();
        Ok(Self { converter: RowConverter::new(fields)?, schema })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Encodes the given columns (which must match the codec's schema) row by row.
    pub fn encode(&self, columns: &[ArrayRef]) -> StorageResult<Rows> {
        debug_assert_eq!(columns.len(), self.schema.fields().len());
        Ok(self.converter.convert_columns(columns)?)
    }

    /// Decodes encoded rows (as produced by [`Self::encode`]) into one batch.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> StorageResult<RecordBatch> {
        let parser = self.converter.parser();
        let parsed: Vec<_> = rows.into_iter().map(|bytes| parser.parse(bytes)).collect();
        let columns = self.converter.convert_rows(parsed)?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn round_trips_and_sorts_like_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let codec = RowCodec::new(schema.clone()).unwrap();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![-5, 3, 100])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("zz")])),
        ];
        let rows = codec.encode(&cols).unwrap();
        assert!(rows.row(0) < rows.row(1) && rows.row(1) < rows.row(2));
        let bytes: Vec<Vec<u8>> = rows.iter().map(|r| r.as_ref().to_vec()).collect();
        let batch = codec.decode(bytes.iter().map(|b| b.as_slice())).unwrap();
        assert_eq!(batch.columns(), cols.as_slice());
    }
}
