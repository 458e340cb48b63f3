//! PostgreSQL's text output where the encoder's differs: timestamps print their fractional
//! seconds without trailing zeros (`07:08:09.5`, not `07:08:09.500000`), and `timestamptz`
//! is shown in the session's time zone (`SET TIME ZONE`) with its offset (`+00`, `-05`,
//! `+05:30`); floats print in their shortest form, switching to
//! an exponent as PostgreSQL does (`5`, `1e+20`, `Infinity`); numerics are written by arrow's
//! own formatter, which takes all 38 digits of a `Decimal128` (the encoder's `rust_decimal`
//! holds only 28, and refuses a wider value).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use chrono::Offset;
use datafusion::arrow::array::timezone::Tz;
use pgwire::api::results::{FieldFormat, FieldInfo};

/// Rewrites the timestamp columns sent as text into PostgreSQL's text form, `timestamptz`
/// in `zone`.
pub fn apply(batch: RecordBatch, fields: &[FieldInfo], zone: &Tz) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let needs = |i: usize, dt: &DataType| {
        matches!(dt, DataType::Timestamp(..) | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..))
            && fields[i].format() == FieldFormat::Text
    };
    if !batch.schema().fields().iter().enumerate().any(|(i, f)| needs(i, f.data_type())) {
        return Ok(batch);
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut schema_fields = Vec::with_capacity(batch.num_columns());
    for (i, (col, field)) in batch.columns().iter().zip(batch.schema().fields()).enumerate() {
        if needs(i, field.data_type()) && matches!(field.data_type(), DataType::Decimal128(..) | DataType::Decimal256(..)) {
            columns.push(cast(col, &DataType::Utf8)?);
            schema_fields.push(Field::new(field.name(), DataType::Utf8, true));
        } else if needs(i, field.data_type()) && field.data_type().is_floating() {
            columns.push(floats(col)?);
            schema_fields.push(Field::new(field.name(), DataType::Utf8, true));
        } else if needs(i, field.data_type()) {
            let with_zone = matches!(field.data_type(), DataType::Timestamp(_, Some(_)));
            columns.push(timestamps(col, with_zone.then_some(zone))?);
            schema_fields.push(Field::new(field.name(), DataType::Utf8, true));
        } else {
            columns.push(col.clone());
            schema_fields.push(field.as_ref().clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns)
}

/// `zone`: for `timestamptz`, the zone to show it in.
fn timestamps(col: &ArrayRef, zone: Option<&Tz>) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    let micros = cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 26);
    for i in 0..micros.len() {
        if micros.is_null(i) {
            out.append_null();
            continue;
        }
        match (chrono::DateTime::from_timestamp_micros(micros.value(i)), zone) {
            (Some(t), Some(zone)) => {
                let local = t.with_timezone(zone);
                out.append_value(format(local.naive_local(), Some(local.offset().fix().local_minus_utc())))
            }
            (Some(t), None) => out.append_value(format(t.naive_utc(), None)),
            (None, _) => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn floats(col: &ArrayRef) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    let single = col.data_type() == &DataType::Float32;
    let values = cast(col, &DataType::Float64)?;
    let values = values.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 8);
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
        } else if single {
            out.append_value(float_text(values.value(i) as f32 as f64, |v| (v as f32).to_string(), |v| format!("{:e}", v as f32)));
        } else {
            out.append_value(float_text(values.value(i), |v| v.to_string(), |v| format!("{v:e}")));
        }
    }
    Ok(Arc::new(out.finish()))
}

fn float_text(v: f64, plain: impl Fn(f64) -> String, exp: impl Fn(f64) -> String) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        // Rust writes 1e20 and 1.5e-5; PostgreSQL writes 1e+20 and 1.5e-05.
        let e = exp(v);
        let (mantissa, exponent) = e.split_once('e').expect("an exponent");
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    plain(v)
}

/// `offset_s`: a `timestamptz`'s offset from UTC, in seconds, printed as PostgreSQL does
/// (`+01`, `-03:30`).
fn format(t: chrono::NaiveDateTime, offset_s: Option<i32>) -> String {
    use chrono::Timelike;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.nanosecond() / 1000;
    if micros > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    if let Some(offset_s) = offset_s {
        let sign = if offset_s < 0 { '-' } else { '+' };
        let (hours, minutes, seconds) = (offset_s.abs() / 3600, offset_s.abs() / 60 % 60, offset_s.abs() % 60);
        s.push_str(&format!("{sign}{hours:02}"));
        if minutes > 0 || seconds > 0 {
            s.push_str(&format!(":{minutes:02}"));
        }
        if seconds > 0 {
            s.push_str(&format!(":{seconds:02}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_fractional_zeros() {
        let t = chrono::NaiveDate::from_ymd_opt(2024, 3, 5).unwrap().and_hms_micro_opt(7, 8, 9, 500_000).unwrap();
        assert_eq!(format(t, None), "2024-03-05 07:08:09.5");
        assert_eq!(format(t.with_nanosecond(0).unwrap(), Some(0)), "2024-03-05 07:08:09+00");
        assert_eq!(format(t.with_nanosecond(0).unwrap(), Some(-5 * 3600)), "2024-03-05 07:08:09-05");
        assert_eq!(format(t.with_nanosecond(0).unwrap(), Some(5 * 3600 + 1800)), "2024-03-05 07:08:09+05:30");
    }

    use chrono::Timelike;

    #[test]
    fn floats_print_like_postgres() {
        let f = |v: f64| float_text(v, |v| v.to_string(), |v| format!("{v:e}"));
        assert_eq!(f(5.0), "5");
        assert_eq!(f(37.5), "37.5");
        assert_eq!(f(1e20), "1e+20");
        assert_eq!(f(1.5e-5), "1.5e-05");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
    }
}
