//! OpenClaw's row encoding (format 2): rows of a fixed schema as byte strings that sort like
//! the values, for RocksDB keys and values. We own it, so that no dependency update can change
//! what is on disk; `tests/fixtures/row_encoding_v2.txt` pins it byte for byte.
//!
//! A row is its columns' encodings one after another. A column is one marker byte, then the
//! value when the marker says it is valid:
//! - marker: `0x01` valid; NULL is `0x00` when NULLs sort first, `0x02` when last;
//! - signed integers (and dates, times, timestamps, durations, decimals): big-endian two's
//!   complement with the sign bit flipped; unsigned integers: big-endian;
//! - floats: IEEE 754 big-endian, with the sign bit flipped for positives and every bit
//!   flipped for negatives (total order: -NaN < -inf < ... < -0 < +0 < ... < +inf < NaN);
//! - booleans: one byte, 0 or 1; intervals: their fields in order, each as a signed integer;
//! - strings and binaries: the bytes with each `0x00` written as `0x00 0xFF`, then `0x00 0x00`
//!   (prefix-free, so `"a" < "ab"` and `"a" < "a\0"`).
//!
//! In a descending column every byte after the marker is inverted. Decoding reads the same
//! layout back; a row that does not parse is an error, never a panic.

use std::sync::Arc;

use arrow::array::*;
use arrow::compute::SortOptions;
use arrow::datatypes::*;

use crate::{StorageError, StorageResult};

const VALID: u8 = 0x01;

/// Encodes rows of a fixed schema into byte strings and back (see the module docs).
pub struct RowCodec {
    schema: SchemaRef,
    options: Vec<SortOptions>,
}

/// Encoded rows, one byte string each, in one buffer: row `i` is
/// `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    data: Vec<u8>,
    offsets: Vec<usize>,
}

/// One encoded row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row<'a>(&'a [u8]);

impl<'a> Row<'a> {
    pub fn data(&self) -> &'a [u8] {
        self.0
    }
}

impl AsRef<[u8]> for Row<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

impl Rows {
    pub fn row(&self, i: usize) -> Row<'_> {
        Row(&self.data[self.offsets[i]..self.offsets[i + 1]])
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.offsets.windows(2).map(|w| Row(&self.data[w[0]..w[1]]))
    }

    pub fn num_rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn into_vecs(self) -> Vec<Vec<u8>> {
        self.iter().map(|r| r.0.to_vec()).collect()
    }
}

/// Where each row's next value goes while a batch is encoded column by column.
struct Writer<'a> {
    data: &'a mut [u8],
    cursors: Vec<usize>,
}

impl Writer<'_> {
    fn push(&mut self, row: usize, byte: u8) {
        self.data[self.cursors[row]] = byte;
        self.cursors[row] += 1;
    }

    /// Appends `bytes` to row `row`, inverted for a descending column.
    fn put(&mut self, row: usize, bytes: &[u8], descending: bool) {
        let at = self.cursors[row];
        let slot = &mut self.data[at..at + bytes.len()];
        if descending {
            slot.iter_mut().zip(bytes).for_each(|(d, b)| *d = !b);
        } else {
            slot.copy_from_slice(bytes);
        }
        self.cursors[row] += bytes.len();
    }

    fn rows(&self) -> usize {
        self.cursors.len()
    }
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
        if let Some(f) = schema.fields().iter().find(|f| !supported(f.data_type())) {
            return Err(StorageError::UnsupportedType(format!("column \"{}\" of type {} cannot be kept in state", f.name(), f.data_type())));
        }
        Ok(Self { schema, options: options.to_vec() })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Encodes the given columns (which must match the codec's schema) row by row.
    pub fn encode(&self, columns: &[ArrayRef]) -> StorageResult<Rows> {
        assert_eq!(columns.len(), self.schema.fields().len(), "one array per column");
        let rows = columns.first().map_or(0, |c| c.len());
        // One buffer for the batch, each row's length known before any is written: a vector
        // per row, grown column by column, was a fifth of Nexmark q5's time.
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        for len in row_lengths(columns, rows) {
            offsets.push(offsets.last().copied().unwrap_or(0) + len);
        }
        let mut data = vec![0u8; offsets[rows]];
        let mut out = Writer { data: &mut data, cursors: offsets[..rows].to_vec() };
        for ((column, field), options) in columns.iter().zip(self.schema.fields()).zip(&self.options) {
            if column.data_type() != field.data_type() {
                return Err(StorageError::UnsupportedType(format!("column \"{}\" is {}, the codec's schema says {}", field.name(), column.data_type(), field.data_type())));
            }
            encode_column(column, *options, &mut out)?;
        }
        debug_assert!(out.cursors.iter().zip(&offsets[1..]).all(|(c, end)| c == end), "every row filled exactly");
        Ok(Rows { data, offsets })
    }

    /// Decodes encoded rows (as produced by [`Self::encode`]) into one batch.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> StorageResult<RecordBatch> {
        let rows: Vec<&[u8]> = rows.into_iter().collect();
        let mut cursors = vec![0usize; rows.len()];
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (field, options) in self.schema.fields().iter().zip(&self.options) {
            let mut reader = Reader { rows: &rows, cursors: &mut cursors, descending: options.descending };
            columns.push(decode_column(field.data_type(), &mut reader)?);
        }
        if let Some(i) = (0..rows.len()).find(|&i| cursors[i] != rows[i].len()) {
            return Err(corrupt(format!("row {i} has {} bytes left over", rows[i].len() - cursors[i])));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?)
    }
}

fn supported(dt: &DataType) -> bool {
    use DataType::*;
    matches!(
        dt,
        Null | Boolean
            | Int8 | Int16 | Int32 | Int64
            | UInt8 | UInt16 | UInt32 | UInt64
            | Float32 | Float64
            | Decimal128(..) | Decimal256(..)
            | Date32 | Date64 | Time32(_) | Time64(_) | Timestamp(..) | Duration(_)
            | Interval(_)
            | Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView
    )
}

fn corrupt(message: String) -> StorageError {
    StorageError::Corrupt(format!("undecodable row: {message}"))
}

fn null_marker(options: SortOptions) -> u8 {
    if options.nulls_first { 0x00 } else { 0x02 }
}

/// Fixed-width order-preserving bytes of a native value.
trait Ordered: Copy {
    const WIDTH: usize;
    fn write(self, out: &mut [u8]);
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! ordered_signed {
    ($($t:ty),*) => {$(
        impl Ordered for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_be_bytes());
                out[0] ^= 0x80;
            }
            fn read(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                b[0] ^= 0x80;
                <$t>::from_be_bytes(b)
            }
        }
    )*};
}
ordered_signed!(i8, i16, i32, i64, i128);

macro_rules! ordered_unsigned {
    ($($t:ty),*) => {$(
        impl Ordered for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_be_bytes());
            }
            fn read(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_be_bytes(b)
            }
        }
    )*};
}
ordered_unsigned!(u8, u16, u32, u64);

macro_rules! ordered_float {
    ($($t:ty => $bits:ty),*) => {$(
        impl Ordered for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn write(self, out: &mut [u8]) {
                let bits = self.to_bits();
                let sign = 1 << (<$bits>::BITS - 1);
                let ordered = if bits & sign != 0 { !bits } else { bits | sign };
                out.copy_from_slice(&ordered.to_be_bytes());
            }
            fn read(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                let ordered = <$bits>::from_be_bytes(b);
                let sign = 1 << (<$bits>::BITS - 1);
                <$t>::from_bits(if ordered & sign != 0 { ordered & !sign } else { !ordered })
            }
        }
    )*};
}
ordered_float!(f32 => u32, f64 => u64);

impl Ordered for i256 {
    const WIDTH: usize = 32;
    fn write(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_be_bytes());
        out[0] ^= 0x80;
    }
    fn read(bytes: &[u8]) -> Self {
        let mut b = [0u8; 32];
        b.copy_from_slice(bytes);
        b[0] ^= 0x80;
        i256::from_be_bytes(b)
    }
}

impl Ordered for IntervalDayTime {
    const WIDTH: usize = 8;
    fn write(self, out: &mut [u8]) {
        self.days.write(&mut out[..4]);
        self.milliseconds.write(&mut out[4..]);
    }
    fn read(bytes: &[u8]) -> Self {
        IntervalDayTime { days: i32::read(&bytes[..4]), milliseconds: i32::read(&bytes[4..]) }
    }
}

impl Ordered for IntervalMonthDayNano {
    const WIDTH: usize = 16;
    fn write(self, out: &mut [u8]) {
        self.months.write(&mut out[..4]);
        self.days.write(&mut out[4..8]);
        self.nanoseconds.write(&mut out[8..]);
    }
    fn read(bytes: &[u8]) -> Self {
        IntervalMonthDayNano { months: i32::read(&bytes[..4]), days: i32::read(&bytes[4..8]), nanoseconds: i64::read(&bytes[8..]) }
    }
}

fn encode_primitive<T: ArrowPrimitiveType>(column: &dyn Array, options: SortOptions, out: &mut Writer)
where
    T::Native: Ordered,
{
    let array = column.as_primitive::<T>();
    let mut scratch = [0u8; 32];
    let width = <T::Native as Ordered>::WIDTH;
    for i in 0..out.rows() {
        if array.is_null(i) {
            out.push(i, null_marker(options));
        } else {
            out.push(i, VALID);
            array.value(i).write(&mut scratch[..width]);
            out.put(i, &scratch[..width], options.descending);
        }
    }
}

fn encode_bytes<'a>(values: impl Iterator<Item = Option<&'a [u8]>>, options: SortOptions, out: &mut Writer) {
    for (i, value) in values.enumerate() {
        let Some(value) = value else {
            out.push(i, null_marker(options));
            continue;
        };
        out.push(i, VALID);
        let flip = if options.descending { 0xFF } else { 0x00 };
        let start = out.cursors[i];
        let mut at = start;
        for &b in value {
            out.data[at] = b ^ flip;
            at += 1;
            if b == 0 {
                out.data[at] = 0xFF ^ flip;
                at += 1;
            }
        }
        out.data[at] = flip;
        out.data[at + 1] = flip;
        out.cursors[i] = at + 2;
    }
}

/// Bytes each row's encoding takes: a marker per value, the width of every fixed-width
/// value, and for bytes the value, one escape per zero byte and a two-byte terminator.
fn row_lengths(columns: &[ArrayRef], rows: usize) -> Vec<usize> {
    use DataType::*;
    let mut lengths = vec![0; rows];
    for c in columns {
        let c = c.as_ref();
        let width = c.data_type().primitive_width().unwrap_or(match c.data_type() {
            Boolean => 1,
            _ => 0,
        });
        let bytes_len = |v: Option<&[u8]>| v.map_or(0, |v| v.len() + v.iter().filter(|&&b| b == 0).count() + 2);
        let var: Option<Box<dyn Iterator<Item = usize>>> = match c.data_type() {
            Utf8 => Some(Box::new(c.as_string::<i32>().iter().map(move |v| bytes_len(v.map(str::as_bytes))))),
            LargeUtf8 => Some(Box::new(c.as_string::<i64>().iter().map(move |v| bytes_len(v.map(str::as_bytes))))),
            Utf8View => Some(Box::new(c.as_string_view().iter().map(move |v| bytes_len(v.map(str::as_bytes))))),
            Binary => Some(Box::new(c.as_binary::<i32>().iter().map(bytes_len))),
            LargeBinary => Some(Box::new(c.as_binary::<i64>().iter().map(bytes_len))),
            BinaryView => Some(Box::new(c.as_binary_view().iter().map(bytes_len))),
            _ => None,
        };
        match var {
            Some(var) => lengths.iter_mut().zip(var).for_each(|(l, v)| *l += 1 + v),
            // A null is its marker alone; NULL columns hold nothing but markers.
            None if width == 0 || c.null_count() == 0 => lengths.iter_mut().for_each(|l| *l += 1 + width),
            None => lengths.iter_mut().enumerate().for_each(|(i, l)| *l += 1 + if c.is_null(i) { 0 } else { width }),
        }
    }
    lengths
}

fn encode_column(column: &ArrayRef, options: SortOptions, out: &mut Writer) -> StorageResult<()> {
    use DataType::*;
    let c = column.as_ref();
    match column.data_type() {
        Null => (0..out.rows()).for_each(|i| out.push(i, null_marker(options))),
        Boolean => {
            let array = c.as_boolean();
            for i in 0..out.rows() {
                if array.is_null(i) {
                    out.push(i, null_marker(options));
                } else {
                    out.push(i, VALID);
                    out.put(i, &[array.value(i) as u8], options.descending);
                }
            }
        }
        Int8 => encode_primitive::<Int8Type>(c, options, out),
        Int16 => encode_primitive::<Int16Type>(c, options, out),
        Int32 => encode_primitive::<Int32Type>(c, options, out),
        Int64 => encode_primitive::<Int64Type>(c, options, out),
        UInt8 => encode_primitive::<UInt8Type>(c, options, out),
        UInt16 => encode_primitive::<UInt16Type>(c, options, out),
        UInt32 => encode_primitive::<UInt32Type>(c, options, out),
        UInt64 => encode_primitive::<UInt64Type>(c, options, out),
        Float32 => encode_primitive::<Float32Type>(c, options, out),
        Float64 => encode_primitive::<Float64Type>(c, options, out),
        Decimal128(..) => encode_primitive::<Decimal128Type>(c, options, out),
        Decimal256(..) => encode_primitive::<Decimal256Type>(c, options, out),
        Date32 => encode_primitive::<Date32Type>(c, options, out),
        Date64 => encode_primitive::<Date64Type>(c, options, out),
        Time32(TimeUnit::Second) => encode_primitive::<Time32SecondType>(c, options, out),
        Time32(_) => encode_primitive::<Time32MillisecondType>(c, options, out),
        Time64(TimeUnit::Microsecond) => encode_primitive::<Time64MicrosecondType>(c, options, out),
        Time64(_) => encode_primitive::<Time64NanosecondType>(c, options, out),
        Timestamp(TimeUnit::Second, _) => encode_primitive::<TimestampSecondType>(c, options, out),
        Timestamp(TimeUnit::Millisecond, _) => encode_primitive::<TimestampMillisecondType>(c, options, out),
        Timestamp(TimeUnit::Microsecond, _) => encode_primitive::<TimestampMicrosecondType>(c, options, out),
        Timestamp(TimeUnit::Nanosecond, _) => encode_primitive::<TimestampNanosecondType>(c, options, out),
        Duration(TimeUnit::Second) => encode_primitive::<DurationSecondType>(c, options, out),
        Duration(TimeUnit::Millisecond) => encode_primitive::<DurationMillisecondType>(c, options, out),
        Duration(TimeUnit::Microsecond) => encode_primitive::<DurationMicrosecondType>(c, options, out),
        Duration(TimeUnit::Nanosecond) => encode_primitive::<DurationNanosecondType>(c, options, out),
        Interval(IntervalUnit::YearMonth) => encode_primitive::<IntervalYearMonthType>(c, options, out),
        Interval(IntervalUnit::DayTime) => encode_primitive::<IntervalDayTimeType>(c, options, out),
        Interval(IntervalUnit::MonthDayNano) => encode_primitive::<IntervalMonthDayNanoType>(c, options, out),
        Utf8 => encode_bytes(c.as_string::<i32>().iter().map(|v| v.map(str::as_bytes)), options, out),
        LargeUtf8 => encode_bytes(c.as_string::<i64>().iter().map(|v| v.map(str::as_bytes)), options, out),
        Utf8View => encode_bytes(c.as_string_view().iter().map(|v| v.map(str::as_bytes)), options, out),
        Binary => encode_bytes(c.as_binary::<i32>().iter(), options, out),
        LargeBinary => encode_bytes(c.as_binary::<i64>().iter(), options, out),
        BinaryView => encode_bytes(c.as_binary_view().iter(), options, out),
        other => return Err(StorageError::UnsupportedType(format!("{other} cannot be kept in state"))),
    }
    Ok(())
}

/// Reads one column of every row, each row from its own cursor.
struct Reader<'r, 'a> {
    rows: &'r [&'a [u8]],
    cursors: &'r mut [usize],
    descending: bool,
}

impl<'a> Reader<'_, 'a> {
    /// Reads row `i`'s marker: whether its value follows.
    fn valid(&mut self, i: usize) -> StorageResult<bool> {
        let at = self.cursors[i];
        let marker = *self.rows[i].get(at).ok_or_else(|| corrupt(format!("row {i} ends before its marker")))?;
        self.cursors[i] += 1;
        match marker {
            VALID => Ok(true),
            0x00 | 0x02 => Ok(false),
            other => Err(corrupt(format!("row {i} has marker {other:#04x}"))),
        }
    }

    fn fixed<T: Ordered>(&mut self, i: usize) -> StorageResult<T> {
        let at = self.cursors[i];
        let bytes = self.rows[i].get(at..at + T::WIDTH).ok_or_else(|| corrupt(format!("row {i} is cut short")))?;
        self.cursors[i] += T::WIDTH;
        if self.descending {
            let inverted: Vec<u8> = bytes.iter().map(|b| !b).collect();
            Ok(T::read(&inverted))
        } else {
            Ok(T::read(bytes))
        }
    }

    /// Reads row `i`'s escaped bytes into `out` (cleared first).
    fn bytes(&mut self, i: usize, out: &mut Vec<u8>) -> StorageResult<()> {
        out.clear();
        let row = self.rows[i];
        let flip = if self.descending { 0xFF } else { 0x00 };
        let mut at = self.cursors[i];
        loop {
            let b = *row.get(at).ok_or_else(|| corrupt(format!("row {i} ends inside a string")))? ^ flip;
            at += 1;
            if b != 0 {
                out.push(b);
                continue;
            }
            let next = *row.get(at).ok_or_else(|| corrupt(format!("row {i} ends inside a string")))? ^ flip;
            at += 1;
            match next {
                0x00 => break,
                0xFF => out.push(0),
                other => return Err(corrupt(format!("row {i} has escape {other:#04x}"))),
            }
        }
        self.cursors[i] = at;
        Ok(())
    }
}

fn decode_primitive<T: ArrowPrimitiveType>(dt: &DataType, reader: &mut Reader) -> StorageResult<ArrayRef>
where
    T::Native: Ordered,
{
    let mut values = Vec::with_capacity(reader.rows.len());
    for i in 0..reader.rows.len() {
        values.push(if reader.valid(i)? { Some(reader.fixed::<T::Native>(i)?) } else { None });
    }
    Ok(Arc::new(PrimitiveArray::<T>::from_iter(values).with_data_type(dt.clone())))
}

fn decode_bytes(reader: &mut Reader) -> StorageResult<Vec<Option<Vec<u8>>>> {
    let mut values = Vec::with_capacity(reader.rows.len());
    let mut scratch = vec![];
    for i in 0..reader.rows.len() {
        values.push(if reader.valid(i)? {
            reader.bytes(i, &mut scratch)?;
            Some(scratch.clone())
        } else {
            None
        });
    }
    Ok(values)
}

fn decode_strings(reader: &mut Reader) -> StorageResult<Vec<Option<String>>> {
    decode_bytes(reader)?
        .into_iter()
        .map(|v| v.map(|b| String::from_utf8(b).map_err(|_| corrupt("a string is not UTF-8".into()))).transpose())
        .collect()
}

fn decode_column(dt: &DataType, reader: &mut Reader) -> StorageResult<ArrayRef> {
    use DataType::*;
    Ok(match dt {
        Null => {
            for i in 0..reader.rows.len() {
                if reader.valid(i)? {
                    return Err(corrupt(format!("row {i} has a value in a NULL column")));
                }
            }
            Arc::new(NullArray::new(reader.rows.len()))
        }
        Boolean => {
            let mut values = Vec::with_capacity(reader.rows.len());
            for i in 0..reader.rows.len() {
                values.push(if reader.valid(i)? { Some(reader.fixed::<u8>(i)? != 0) } else { None });
            }
            Arc::new(BooleanArray::from(values))
        }
        Int8 => decode_primitive::<Int8Type>(dt, reader)?,
        Int16 => decode_primitive::<Int16Type>(dt, reader)?,
        Int32 => decode_primitive::<Int32Type>(dt, reader)?,
        Int64 => decode_primitive::<Int64Type>(dt, reader)?,
        UInt8 => decode_primitive::<UInt8Type>(dt, reader)?,
        UInt16 => decode_primitive::<UInt16Type>(dt, reader)?,
        UInt32 => decode_primitive::<UInt32Type>(dt, reader)?,
        UInt64 => decode_primitive::<UInt64Type>(dt, reader)?,
        Float32 => decode_primitive::<Float32Type>(dt, reader)?,
        Float64 => decode_primitive::<Float64Type>(dt, reader)?,
        Decimal128(..) => decode_primitive::<Decimal128Type>(dt, reader)?,
        Decimal256(..) => decode_primitive::<Decimal256Type>(dt, reader)?,
        Date32 => decode_primitive::<Date32Type>(dt, reader)?,
        Date64 => decode_primitive::<Date64Type>(dt, reader)?,
        Time32(TimeUnit::Second) => decode_primitive::<Time32SecondType>(dt, reader)?,
        Time32(_) => decode_primitive::<Time32MillisecondType>(dt, reader)?,
        Time64(TimeUnit::Microsecond) => decode_primitive::<Time64MicrosecondType>(dt, reader)?,
        Time64(_) => decode_primitive::<Time64NanosecondType>(dt, reader)?,
        Timestamp(TimeUnit::Second, _) => decode_primitive::<TimestampSecondType>(dt, reader)?,
        Timestamp(TimeUnit::Millisecond, _) => decode_primitive::<TimestampMillisecondType>(dt, reader)?,
        Timestamp(TimeUnit::Microsecond, _) => decode_primitive::<TimestampMicrosecondType>(dt, reader)?,
        Timestamp(TimeUnit::Nanosecond, _) => decode_primitive::<TimestampNanosecondType>(dt, reader)?,
        Duration(TimeUnit::Second) => decode_primitive::<DurationSecondType>(dt, reader)?,
        Duration(TimeUnit::Millisecond) => decode_primitive::<DurationMillisecondType>(dt, reader)?,
        Duration(TimeUnit::Microsecond) => decode_primitive::<DurationMicrosecondType>(dt, reader)?,
        Duration(TimeUnit::Nanosecond) => decode_primitive::<DurationNanosecondType>(dt, reader)?,
        Interval(IntervalUnit::YearMonth) => decode_primitive::<IntervalYearMonthType>(dt, reader)?,
        Interval(IntervalUnit::DayTime) => decode_primitive::<IntervalDayTimeType>(dt, reader)?,
        Interval(IntervalUnit::MonthDayNano) => decode_primitive::<IntervalMonthDayNanoType>(dt, reader)?,
        Utf8 => Arc::new(StringArray::from(decode_strings(reader)?)),
        LargeUtf8 => Arc::new(LargeStringArray::from(decode_strings(reader)?)),
        Utf8View => Arc::new(StringViewArray::from(decode_strings(reader)?)),
        Binary => Arc::new(BinaryArray::from_iter(decode_bytes(reader)?)),
        LargeBinary => Arc::new(LargeBinaryArray::from_iter(decode_bytes(reader)?)),
        BinaryView => Arc::new(BinaryViewArray::from_iter(decode_bytes(reader)?)),
        other => return Err(StorageError::UnsupportedType(format!("{other} cannot be kept in state"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(fields: Vec<Field>) -> RowCodec {
        RowCodec::new(Arc::new(Schema::new(fields))).unwrap()
    }

    fn round_trip(codec: &RowCodec, cols: Vec<ArrayRef>) -> Rows {
        let rows = codec.encode(&cols).unwrap();
        let batch = codec.decode(rows.iter().map(|r| r.data())).unwrap();
        assert_eq!(batch.columns(), cols.as_slice());
        rows
    }

    #[test]
    fn round_trips_and_sorts_like_values() {
        let c = codec(vec![Field::new("k", DataType::Int64, false), Field::new("s", DataType::Utf8, true)]);
        let rows = round_trip(
            &c,
            vec![Arc::new(Int64Array::from(vec![-5, 3, 3, 100])), Arc::new(StringArray::from(vec![Some("a"), None, Some("a\0"), Some("zz")]))],
        );
        for i in 0..3 {
            assert!(rows.row(i) < rows.row(i + 1), "row {i}");
        }
    }

    #[test]
    fn every_type_round_trips() {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
            Arc::new(Int16Array::from(vec![Some(-1), None, Some(1)])),
            Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(i32::MAX)])),
            Arc::new(UInt64Array::from(vec![Some(0), None, Some(u64::MAX)])),
            Arc::new(Float32Array::from(vec![Some(-0.5), None, Some(f32::INFINITY)])),
            Arc::new(Float64Array::from(vec![Some(-1e300), None, Some(0.25)])),
            Arc::new(Decimal128Array::from(vec![Some(-12345), None, Some(99)]).with_precision_and_scale(10, 2).unwrap()),
            Arc::new(Decimal256Array::from(vec![Some(i256::from_i128(-7)), None, Some(i256::MAX)]).with_precision_and_scale(76, 3).unwrap()),
            Arc::new(Date32Array::from(vec![Some(-1), None, Some(19000)])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(-1), None, Some(1_700_000_000_000_000)]).with_timezone("+00:00")),
            Arc::new(TimestampNanosecondArray::from(vec![Some(5), None, Some(6)])),
            Arc::new(Time64MicrosecondArray::from(vec![Some(5), None, Some(6)])),
            Arc::new(DurationMicrosecondArray::from(vec![Some(-5), None, Some(6)])),
            Arc::new(IntervalMonthDayNanoArray::from(vec![Some(IntervalMonthDayNano::new(1, -2, 3)), None, Some(IntervalMonthDayNano::new(0, 0, -1))])),
            Arc::new(IntervalDayTimeArray::from(vec![Some(IntervalDayTime::new(1, -2)), None, Some(IntervalDayTime::new(0, 9))])),
            Arc::new(LargeStringArray::from(vec![Some(""), None, Some("é\0x")])),
            Arc::new(StringViewArray::from(vec![Some("a long string beyond twelve bytes"), None, Some("")])),
            Arc::new(BinaryArray::from(vec![Some(&[0u8, 0xFF, 0][..]), None, Some(&[][..])])),
            Arc::new(NullArray::new(3)),
        ];
        let fields: Vec<Field> = cols.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true)).collect();
        round_trip(&codec(fields), cols);
    }

    #[test]
    fn descending_and_nulls_last_sort_as_asked() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true), Field::new("f", DataType::Float64, true)]));
        let desc = SortOptions { descending: true, nulls_first: false };
        let c = RowCodec::with_order(schema, &[desc, SortOptions::default()]).unwrap();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("b"), Some("ab"), Some("a"), Some("a"), None])),
            Arc::new(Float64Array::from(vec![Some(0.0), Some(0.0), Some(f64::NEG_INFINITY), Some(-0.0), Some(1.0)])),
        ];
        let rows = round_trip(&c, cols);
        for i in 0..4 {
            assert!(rows.row(i) < rows.row(i + 1), "row {i}");
        }
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let c = codec(vec![Field::new("k", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]);
        let rows = c.encode(&[Arc::new(Int64Array::from(vec![7])) as ArrayRef, Arc::new(StringArray::from(vec!["x"]))]).unwrap();
        let good = rows.row(0).data().to_vec();
        for cut in 0..good.len() {
            assert!(c.decode([&good[..cut]]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = 7;
        assert!(c.decode([bad.as_slice()]).is_err());
        let mut longer = good;
        longer.push(1);
        assert!(c.decode([longer.as_slice()]).is_err());
    }
}
