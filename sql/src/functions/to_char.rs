//! `to_char(timestamp | date | interval, text)` with PostgreSQL's template patterns
//! (`YYYY-MM-DD HH24:MI:SS`, `FMDay`, `DDth`, `dy mon`, ...), where DataFusion's takes
//! chrono's (`%Y-%m-%d`), and `to_char(number, text)` by [`super::to_char_number`]: the
//! template is parsed once, then each value is written by its pieces.

use std::sync::Arc;

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type, Float32Type, Float64Type, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgToChar {
    signature: Signature,
}

impl PgToChar {
    pub fn new() -> Self {
        Self { signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable) }
    }
}

/// A template's pieces: text copied as it is, and fields of the time.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field { field: &'static str, fill: bool, ordinal: Option<bool> },
}

/// PostgreSQL's template patterns (its `DCH_keywords`), longest first where one starts
/// another. Upper, capitalised and lower forms differ only for the ones that print words.
const KEYWORDS: &[&str] = &[
    "A.D.", "A.M.", "AD", "AM", "B.C.", "BC", "CC", "DAY", "DDD", "DD", "DY", "Day", "Dy", "D", "FF1", "FF2", "FF3", "FF4",
    "FF5", "FF6", "HH24", "HH12", "HH", "IDDD", "ID", "IW", "IYYY", "IYY", "IY", "I", "J", "MI", "MM", "MONTH", "MON",
    "MS", "Month", "Mon", "OF", "P.M.", "PM", "Q", "RM", "SSSSS", "SSSS", "SS", "TZH", "TZM", "TZ", "US", "WW", "W",
    "Y,YYY", "YYYY", "YYY", "YY", "Y", "a.d.", "a.m.", "ad", "am", "b.c.", "bc", "cc", "day", "ddd", "dd", "dy", "d",
    "ff1", "ff2", "ff3", "ff4", "ff5", "ff6", "hh24", "hh12", "hh", "iddd", "id", "iw", "iyyy", "iyy", "iy", "i", "j",
    "mi", "mm", "month", "mon", "ms", "of", "p.m.", "pm", "q", "rm", "sssss", "ssss", "ss", "tzh", "tzm", "tz", "us",
    "ww", "w", "y,yyy", "yyyy", "yyy", "yy", "y",
];

/// Splits a template into pieces: `FM` (fill mode: no padding) and `TM`/`FX` before a field,
/// `TH`/`th` (ordinal suffix) and `SP` after it, `"text"` and `\c` copied as they are.
fn parse_template(template: &str) -> Vec<Piece> {
    let mut pieces = vec![];
    let mut text = String::new();
    let mut rest = template;
    let mut fill = false;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            fill = true;
            rest = after;
            continue;
        }
        if let Some(after) = ["TM", "tm", "FX", "fx"].iter().find_map(|p| rest.strip_prefix(p)) {
            rest = after;
            continue;
        }
        if c == '"' {
            rest = quoted_text(rest, &mut text);
            continue;
        }
        if c == '\\' {
            let mut chars = rest.chars();
            chars.next();
            if let Some(escaped) = chars.next() {
                text.push(escaped);
            }
            rest = chars.as_str();
            continue;
        }
        if let Some(keyword) = KEYWORDS.iter().find(|k| rest.starts_with(**k)) {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            rest = &rest[keyword.len()..];
            let ordinal = if let Some(after) = rest.strip_prefix("TH") {
                rest = after;
                Some(true)
            } else if let Some(after) = rest.strip_prefix("th") {
                rest = after;
                Some(false)
            } else {
                None
            };
            rest = rest.strip_prefix("SP").unwrap_or(rest);
            pieces.push(Piece::Field { field: keyword, fill: std::mem::take(&mut fill), ordinal });
            continue;
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const ROMAN: [&str; 12] = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"];

/// A word in the case its pattern is written in: `MONTH` upper, `Month` as is, `month` lower.
fn cased(word: &str, pattern: &str) -> String {
    let mut letters = pattern.chars().filter(|c| c.is_alphabetic());
    match (letters.next(), letters.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && b.is_uppercase() => word.to_uppercase(),
        (Some(a), _) if a.is_lowercase() => word.to_lowercase(),
        _ => word.to_string(),
    }
}

/// English ordinal suffix of `n`, upper or lower case.
fn ordinal(n: i64, upper: bool) -> &'static str {
    let suffix = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    match (upper, suffix) {
        (false, s) => s,
        (true, "st") => "ST",
        (true, "nd") => "ND",
        (true, "rd") => "RD",
        (true, _) => "TH",
    }
}

/// A zone's offset as PostgreSQL's `OF` prints it: `+01`, `-05:30`.
fn offset_text(offset_s: i32) -> String {
    let sign = if offset_s < 0 { '-' } else { '+' };
    let (hours, minutes) = (offset_s.abs() / 3600, offset_s.abs() / 60 % 60);
    if minutes == 0 {
        format!("{sign}{hours:02}")
    } else {
        format!("{sign}{hours:02}:{minutes:02}")
    }
}

/// `t` (local time) written by the template's pieces. `offset_s`: a `timestamptz`'s offset
/// from UTC in the session's time zone; `None` for a `timestamp`.
fn format_time(t: chrono::NaiveDateTime, pieces: &[Piece], offset_s: Option<i32>) -> String {
    use chrono::{Datelike, Timelike};
    let mut out = String::with_capacity(32);
    for piece in pieces {
        let (field, fill, suffix) = match piece {
            Piece::Text(text) => {
                out.push_str(text);
                continue;
            }
            Piece::Field { field, fill, ordinal } => (*field, *fill, *ordinal),
        };
        let upper = field.to_uppercase();
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let year = i64::from(t.year());
        let iso = t.iso_week();
        // A number, its width when padded with zeros.
        let number = |n: i64, width: usize| -> String {
            let digits = if fill { n.to_string() } else { format!("{n:0width$}") };
            match suffix {
                Some(upper) => format!("{digits}{}", ordinal(n, upper)),
                None => digits,
            }
        };
        // A word, padded with blanks to `width` unless in fill mode.
        let word = |w: String, width: usize| if fill { w } else { format!("{w:<width$}") };
        let text = match upper.as_str() {
            "HH" | "HH12" => number(i64::from(hour12), 2),
            "HH24" => number(i64::from(t.hour()), 2),
            "MI" => number(i64::from(t.minute()), 2),
            "SS" => number(i64::from(t.second()), 2),
            "MS" => number(i64::from(t.nanosecond() / 1_000_000), 3),
            "US" => number(i64::from(t.nanosecond() / 1000), 6),
            "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
                let digits = usize::from(upper.as_bytes()[2] - b'0');
                number(i64::from(t.nanosecond() / 10u32.pow(9 - digits as u32)), digits)
            }
            "SSSS" | "SSSSS" => number(i64::from(t.num_seconds_from_midnight()), 0),
            "AM" | "PM" => cased(if t.hour() < 12 { "AM" } else { "PM" }, field),
            "A.M." | "P.M." => cased(if t.hour() < 12 { "A.M." } else { "P.M." }, field),
            "AD" | "BC" => cased(if year > 0 { "AD" } else { "BC" }, field),
            "A.D." | "B.C." => cased(if year > 0 { "A.D." } else { "B.C." }, field),
            "Y,YYY" => {
                let y = year.abs();
                format!("{},{:03}", y / 1000, y % 1000)
            }
            "YYYY" => number(year, 4),
            "YYY" => number(year % 1000, 3),
            "YY" => number(year % 100, 2),
            "Y" => number(year % 10, 1),
            "IYYY" => number(i64::from(iso.year()), 4),
            "IYY" => number(i64::from(iso.year()) % 1000, 3),
            "IY" => number(i64::from(iso.year()) % 100, 2),
            "I" => number(i64::from(iso.year()) % 10, 1),
            "CC" => number(if year > 0 { (year + 99) / 100 } else { -((99 - year) / 100) }, 2),
            "Q" => number(i64::from(t.month0() / 3 + 1), 0),
            "MM" => number(i64::from(t.month()), 2),
            "MONTH" => word(cased(MONTHS[t.month0() as usize], field), 9),
            "MON" => cased(&MONTHS[t.month0() as usize][..3], field),
            "RM" => word(cased(ROMAN[t.month0() as usize], field), 4),
            "DAY" => word(cased(DAYS[t.weekday().num_days_from_sunday() as usize], field), 9),
            "DY" => cased(&DAYS[t.weekday().num_days_from_sunday() as usize][..3], field),
            "DDD" => number(i64::from(t.ordinal()), 3),
            "IDDD" => number(i64::from((iso.week() - 1) * 7 + t.weekday().number_from_monday()), 3),
            "DD" => number(i64::from(t.day()), 2),
            "D" => number(i64::from(t.weekday().number_from_sunday()), 0),
            "ID" => number(i64::from(t.weekday().number_from_monday()), 0),
            "W" => number(i64::from(t.day0() / 7 + 1), 0),
            "WW" => number(i64::from(t.ordinal0() / 7 + 1), 2),
            "IW" => number(i64::from(iso.week()), 2),
            "J" => number(i64::from(t.date().num_days_from_ce()) + 1_721_425, 0),
            // No zone abbreviations here (CET, EST): a zone other than UTC shows its offset.
            "TZ" => match offset_s {
                Some(0) => cased("UTC", field),
                Some(s) => offset_text(s),
                None => String::new(),
            },
            "TZH" => offset_s.map(|s| offset_text(s - s % 3600)).unwrap_or_default(),
            "TZM" => offset_s.map(|s| format!("{:02}", s.abs() / 60 % 60)).unwrap_or_default(),
            "OF" => offset_s.map(offset_text).unwrap_or_default(),
            other => unreachable!("{other} is a keyword"),
        };
        out.push_str(&text);
    }
    out
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null | DataType::Interval(_) => Ok(DataType::Utf8),
            t if t.is_numeric() => Ok(DataType::Utf8),
            other => plan_err!("function to_char({other}, text) does not exist"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, template] = args.args.as_slice() else { return exec_err!("to_char takes two arguments") };
        let ColumnarValue::Scalar(ScalarValue::Utf8(template) | ScalarValue::LargeUtf8(template) | ScalarValue::Utf8View(template)) = template else {
            return exec_err!("to_char needs a constant template");
        };
        let Some(template) = template else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let is_scalar = matches!(value, ColumnarValue::Scalar(_));
        let array = value.to_array(args.number_rows.max(1))?;
        let result = match array.data_type() {
            t if t.is_numeric() => numbers(&array, template)?,
            DataType::Interval(_) => intervals(&array, template)?,
            _ => times(&array, template, &args.config_options.execution.time_zone)?,
        };
        if is_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(result.as_ref(), 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// Timestamps and dates; a `timestamptz` in the session's time zone (`SET TIME ZONE`).
fn times(array: &ArrayRef, template: &str, session_zone: &Option<String>) -> Result<ArrayRef> {
    use chrono::{Offset, TimeZone};
    let pieces = parse_template(template);
    let zone: Option<Tz> = match array.data_type() {
        DataType::Timestamp(_, Some(_)) => Some(session_zone.as_deref().unwrap_or("+00:00").parse()?),
        _ => None,
    };
    let micros = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * template.len() * 2);
    for t in micros.iter() {
        let Some(utc) = t.and_then(chrono::DateTime::from_timestamp_micros) else {
            out.append_null();
            continue;
        };
        match &zone {
            Some(zone) => {
                let local = zone.from_utc_datetime(&utc.naive_utc());
                out.append_value(format_time(local.naive_local(), &pieces, Some(local.offset().fix().local_minus_utc())));
            }
            None => out.append_value(format_time(utc.naive_utc(), &pieces, None)),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Intervals, as PostgreSQL writes them: years and months from the months, the days, and
/// hours that may pass 23 (`HH24`) from the time; day names and week fields refer to no
/// calendar date and are refused.
fn intervals(array: &ArrayRef, template: &str) -> Result<ArrayRef> {
    let pieces = parse_template(template);
    let values = cast(array, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * template.len() * 2);
    for v in values.as_primitive::<IntervalMonthDayNanoType>().iter() {
        match v {
            Some(v) => out.append_value(format_interval(v.months, v.days, v.nanoseconds / 1000, &pieces)?),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn format_interval(months: i32, days: i32, micros: i64, pieces: &[Piece]) -> Result<String> {
    let (year, month) = (i64::from(months / 12), i64::from(months % 12));
    let hour = micros / 3_600_000_000;
    let minute = micros / 60_000_000 % 60;
    let second = micros / 1_000_000 % 60;
    let fraction = micros % 1_000_000;
    let mut out = String::with_capacity(32);
    for piece in pieces {
        let (field, fill, suffix) = match piece {
            Piece::Text(text) => {
                out.push_str(text);
                continue;
            }
            Piece::Field { field, fill, ordinal } => (*field, *fill, *ordinal),
        };
        // A negative number takes one more place for its sign, as in PostgreSQL.
        let number = |n: i64, width: usize| -> String {
            let width = if n < 0 { width + 1 } else { width };
            let digits = if fill { n.to_string() } else { format!("{n:0width$}") };
            match suffix {
                Some(upper) => format!("{digits}{}", ordinal(n.abs(), upper)),
                None => digits,
            }
        };
        let upper = field.to_uppercase();
        let text = match upper.as_str() {
            "HH" | "HH12" => number(if hour % 12 == 0 { 12 } else { hour % 12 }, 2),
            "HH24" => number(hour, 2),
            "MI" => number(minute, 2),
            "SS" => number(second, 2),
            "MS" => number(fraction / 1000, 3),
            "US" => number(fraction, 6),
            "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
                let digits = usize::from(upper.as_bytes()[2] - b'0');
                number(fraction / 10i64.pow(6 - digits as u32), digits)
            }
            "SSSS" | "SSSSS" => number(hour * 3600 + minute * 60 + second, 0),
            "AM" | "PM" => cased(if hour % 24 < 12 { "AM" } else { "PM" }, field),
            "A.M." | "P.M." => cased(if hour % 24 < 12 { "A.M." } else { "P.M." }, field),
            "AD" | "BC" => cased(if year >= 0 { "AD" } else { "BC" }, field),
            "A.D." | "B.C." => cased(if year >= 0 { "A.D." } else { "B.C." }, field),
            "Y,YYY" => format!("{},{:03}", year / 1000, (year % 1000).abs()),
            "YYYY" => number(year, 4),
            "YYY" => number(year % 1000, 3),
            "YY" => number(year % 100, 2),
            "Y" => number(year % 10, 1),
            "CC" => number(year / 100, 2),
            "Q" => number(month / 3 + 1, 0),
            "MM" => number(month, 2),
            "MONTH" | "MON" | "RM" if month <= 0 => String::new(),
            "MONTH" => {
                let name = cased(MONTHS[month as usize - 1], field);
                if fill { name } else { format!("{name:<9}") }
            }
            "MON" => cased(&MONTHS[month as usize - 1][..3], field),
            "RM" => {
                let name = cased(ROMAN[month as usize - 1], field);
                if fill { name } else { format!("{name:<4}") }
            }
            "DD" => number(i64::from(days), 2),
            "DDD" => number((year * 12 + month) * 30 + i64::from(days), 3),
            "TZ" | "TZH" | "TZM" | "OF" => String::new(),
            _ => {
                let error = crate::SqlError::new(crate::SqlState::InvalidDatetimeFormat, "invalid format specification for an interval value")
                    .with_hint(format!("Intervals are not tied to specific calendar dates ({field})."));
                return Err(datafusion::error::DataFusionError::External(Box::new(error)));
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// Integers, floats and decimals: each as PostgreSQL's `int8`, `float4`/`float8` or
/// `numeric` is written.
fn numbers(array: &ArrayRef, template: &str) -> Result<ArrayRef> {
    use super::to_char_number::{float, integer, numeric, NumFormat};
    let format = NumFormat::parse(template)?;
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * (template.len() + 4));
    let mut each = |text: Option<String>| out.append_option(text);
    match array.data_type() {
        DataType::Float16 | DataType::Float32 => {
            let values = cast(array, &DataType::Float32)?;
            values.as_primitive::<Float32Type>().iter().for_each(|v| each(v.map(|v| float(f64::from(v), 6, &format))));
        }
        DataType::Float64 => array.as_primitive::<Float64Type>().iter().for_each(|v| each(v.map(|v| float(v, 15, &format)))),
        DataType::Decimal32(_, scale) | DataType::Decimal64(_, scale) | DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) => {
            let scale = usize::try_from(*scale).unwrap_or(0);
            decimal_digits(array)?.into_iter().for_each(|d| each(d.map(|d| numeric(&d, scale, &format))));
        }
        _ => {
            let values = cast(array, &DataType::Int64)?;
            values.as_primitive::<Int64Type>().iter().for_each(|v| each(v.map(|v| integer(v, &format))));
        }
    }
    Ok(Arc::new(out.finish()))
}

/// A decimal array's unscaled values as text (`-` for negative ones).
fn decimal_digits(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    Ok(match array.data_type() {
        DataType::Decimal128(..) => array.as_primitive::<Decimal128Type>().iter().map(|v| v.map(|v| v.to_string())).collect(),
        DataType::Decimal256(..) => array.as_primitive::<Decimal256Type>().iter().map(|v| v.map(|v| v.to_string())).collect(),
        DataType::Decimal64(..) => array.as_primitive::<Decimal64Type>().iter().map(|v| v.map(|v| v.to_string())).collect(),
        DataType::Decimal32(..) => array.as_primitive::<Decimal32Type>().iter().map(|v| v.map(|v| v.to_string())).collect(),
        other => return exec_err!("to_char: {other} is not a decimal"),
    })
}


/// A template's `"quoted text"` at the start of `rest`: its characters (with `\\` escaping the
/// next one) go to `text`; returns what follows the closing quote (nothing if unclosed).
pub(super) fn quoted_text<'a>(rest: &'a str, text: &mut String) -> &'a str {
    let mut chars = rest[1..].char_indices();
    let mut end = rest.len();
    while let Some((i, q)) = chars.next() {
        match q {
            '\\' => text.extend(chars.next().map(|(_, escaped)| escaped)),
            '"' => {
                end = i + 2;
                break;
            }
            other => text.push(other),
        }
    }
    &rest[end.min(rest.len())..]
}

#[cfg(test)]
mod tests {
    use super::{format_time, parse_template};

    fn to_char(t: &str, template: &str) -> String {
        let t = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        format_time(t, &parse_template(template), None)
    }

    #[test]
    fn templates_print_as_postgresql_prints_them() {
        // Each expected value is PostgreSQL 15's `to_char(timestamp '...', '...')`.
        let t = "2024-03-05 07:08:09.5";
        for (template, expected) in [
            ("YYYY-MM-DD HH24:MI:SS.MS", "2024-03-05 07:08:09.500"),
            ("Day, DD Month YYYY HH12:MI am", "Tuesday  , 05 March     2024 07:08 am"),
            ("dy mon yy hh:mi pm", "tue mar 24 07:08 am"),
            ("FMDay FMMonth DDth", "Tuesday March 05th"),
            ("DY MON Dy Mon", "TUE MAR Tue Mar"),
            ("Q WW IW IYYY DDD D ID W", "1 10 10 2024 065 3 2 1"),
            ("FMDD/FMMM/YYYY", "5/3/2024"),
            ("\"week\" IW, \"quarter\" Q", "week 10, quarter 1"),
            ("HH:MI:SS A.M. FMDDTH", "07:08:09 A.M. 5TH"),
            ("RM rm CC Y,YYY J", "III  iii  21 2,024 2460375"),
            ("US FF3 SSSS", "500000 500 25689"),
        ] {
            assert_eq!(to_char(t, template), expected, "{template}");
        }
        assert_eq!(to_char("2024-12-31 23:00:00", "IYYY-IW-ID DDD"), "2025-01-2 366");
        assert_eq!(to_char("2024-01-01 00:00:00", "HH12 AM DDth"), "12 AM 01st");
        assert_eq!(to_char("2024-01-13 12:00:00", "hh pm ddth"), "12 pm 13th");
    }
}
