//! `to_char(number, text)` with PostgreSQL's numeric template patterns (`9`, `0`, `.`, `,`,
//! `D`, `G`, `S`, `MI`, `PL`, `SG`, `PR`, `L`, `RN`, `TH`, `V`, `EEEE`, `FM`, upper or lower
//! case), written to give what PostgreSQL's `formatting.c` gives, quirks included: a number
//! wider than the template prints `#`s, `9.99` prints 0.5 as `  .50`, `FM` drops trailing
//! zeros a `9` stands for but keeps those of a `0`. The locale is C's: `.` and `,`, a blank
//! currency symbol.
//!
//! A template is parsed once per call into a [`NumFormat`]; each value is then turned into
//! its digits (rounded to the template's decimals, as `numeric`, `float8` or `int8` would be)
//! and written by [`write`].

use datafusion::common::Result;

use crate::{SqlError, SqlState};

/// A template PostgreSQL refuses: 42601, with its message.
fn refused<T>(message: impl Into<String>) -> Result<T> {
    Err(SqlError::new(SqlState::SyntaxError, message).into_datafusion())
}

/// One element of a numeric template.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Nine,
    Zero,
    Point,
    LocalePoint,
    Comma,
    Group,
    Currency,
    Minus,
    Plus,
    PlusMinus,
    /// `S`: the sign anchored to the number.
    Sign,
    Brackets,
    Roman { lower: bool },
    Ordinal { lower: bool },
    Shift,
    Exponent,
    /// `FM`, `B`, `C`, `SP`: no output of their own.
    Silent,
    Text(String),
}

/// Where an `S` puts the sign: before or after the digits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AnchoredSign {
    None,
    Before,
    After,
}

/// A parsed template and what PostgreSQL derives from it before writing a value.
#[derive(Debug, Clone)]
pub struct NumFormat {
    tokens: Vec<Token>,
    /// Digit positions before and after the decimal point.
    pre: usize,
    post: usize,
    /// Digits after `V`: the value is multiplied by 10^multi.
    multi: usize,
    fill: bool,
    /// The position (0-based among the integer digits) of the first `0`, if any.
    zero_start: Option<usize>,
    /// Digit positions up to the last `0`.
    zero_end: usize,
    decimal: bool,
    anchored: AnchoredSign,
    /// `pre` when the `S` was met (an `S` before every digit moves after them).
    pre_at_sign: usize,
    brackets: bool,
    plus: bool,
    minus: bool,
    roman: bool,
    exponent: bool,
}

/// PostgreSQL's numeric keywords, longest first where one starts another.
const KEYWORDS: &[(&str, Token)] = &[
    ("EEEE", Token::Exponent),
    ("eeee", Token::Exponent),
    ("FM", Token::Silent),
    ("fm", Token::Silent),
    ("MI", Token::Minus),
    ("mi", Token::Minus),
    ("PL", Token::Plus),
    ("pl", Token::Plus),
    ("PR", Token::Brackets),
    ("pr", Token::Brackets),
    ("RN", Token::Roman { lower: false }),
    ("rn", Token::Roman { lower: true }),
    ("SG", Token::PlusMinus),
    ("sg", Token::PlusMinus),
    ("SP", Token::Silent),
    ("sp", Token::Silent),
    ("TH", Token::Ordinal { lower: false }),
    ("th", Token::Ordinal { lower: true }),
    ("S", Token::Sign),
    ("s", Token::Sign),
    ("V", Token::Shift),
    ("v", Token::Shift),
    ("L", Token::Currency),
    ("l", Token::Currency),
    ("G", Token::Group),
    ("g", Token::Group),
    ("D", Token::LocalePoint),
    ("d", Token::LocalePoint),
    ("B", Token::Silent),
    ("b", Token::Silent),
    ("C", Token::Silent),
    ("c", Token::Silent),
    ("9", Token::Nine),
    ("0", Token::Zero),
    (".", Token::Point),
    (",", Token::Comma),
];

impl NumFormat {
    /// Parses `template`; a template PostgreSQL refuses (two decimal points, `V` with a
    /// point, `EEEE` with a sign pattern, ...) is an error with its message.
    pub fn parse(template: &str) -> Result<Self> {
        let mut f = NumFormat {
            tokens: vec![],
            pre: 0,
            post: 0,
            multi: 0,
            fill: false,
            zero_start: None,
            zero_end: 0,
            decimal: false,
            anchored: AnchoredSign::None,
            pre_at_sign: 0,
            brackets: false,
            plus: false,
            minus: false,
            roman: false,
            exponent: false,
        };
        let mut rest = template;
        let mut text = String::new();
        while let Some(c) = rest.chars().next() {
            if let Some((keyword, token)) = KEYWORDS.iter().find(|(k, _)| rest.starts_with(*k)) {
                if !text.is_empty() {
                    f.tokens.push(Token::Text(std::mem::take(&mut text)));
                }
                f.describe(token, keyword)?;
                f.tokens.push(token.clone());
                rest = &rest[keyword.len()..];
                continue;
            }
            if c == '"' {
                rest = super::to_char::quoted_text(rest, &mut text);
                continue;
            }
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !text.is_empty() {
            f.tokens.push(Token::Text(text));
        }
        Ok(f)
    }

    /// What `token` adds to the template's description (PostgreSQL's `NUMDesc_prepare`).
    fn describe(&mut self, token: &Token, keyword: &str) -> Result<()> {
        if self.exponent && *token != Token::Exponent {
            return refused(format!("\"EEEE\" must be the last pattern used"));
        }
        let sign_like = self.plus || self.minus || self.brackets;
        match token {
            Token::Nine | Token::Zero if self.brackets => return refused(format!("\"{keyword}\" must be ahead of \"PR\"")),
            Token::Nine if self.multi > 0 || self.tokens.contains(&Token::Shift) => self.multi += 1,
            Token::Nine | Token::Zero => {
                if *token == Token::Zero && self.zero_start.is_none() && !self.decimal {
                    self.zero_start = Some(self.pre);
                }
                if self.decimal {
                    self.post += 1;
                } else {
                    self.pre += 1;
                }
                if *token == Token::Zero {
                    self.zero_end = self.pre + self.post;
                }
            }
            Token::Point | Token::LocalePoint if self.decimal => return refused(format!("multiple decimal points")),
            Token::Point | Token::LocalePoint if self.tokens.contains(&Token::Shift) => return refused(format!("cannot use \"V\" and decimal point together")),
            Token::Point | Token::LocalePoint => self.decimal = true,
            Token::Sign if self.anchored != AnchoredSign::None && self.tokens.contains(&Token::Sign) => return refused(format!("cannot use \"S\" twice")),
            Token::Sign if sign_like => return refused(format!("cannot use \"S\" and \"PL\"/\"MI\"/\"SG\"/\"PR\" together")),
            Token::Sign if !self.decimal => {
                self.anchored = AnchoredSign::Before;
                self.pre_at_sign = self.pre;
            }
            Token::Sign if self.anchored == AnchoredSign::None => self.anchored = AnchoredSign::After,
            Token::Minus | Token::Plus | Token::PlusMinus if self.anchored != AnchoredSign::None => return refused(format!("cannot use \"S\" and \"{keyword}\" together")),
            Token::Minus => self.minus = true,
            Token::Plus => self.plus = true,
            Token::PlusMinus => {
                self.minus = true;
                self.plus = true;
            }
            Token::Brackets if self.anchored != AnchoredSign::None || self.plus || self.minus => {
                return refused(format!("cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together"))
            }
            Token::Brackets => self.brackets = true,
            Token::Roman { .. } => self.roman = true,
            Token::Shift if self.decimal => return refused(format!("cannot use \"V\" and decimal point together")),
            Token::Exponent if self.exponent => return refused(format!("cannot use \"EEEE\" twice")),
            Token::Exponent if self.fill || self.anchored != AnchoredSign::None || sign_like || self.roman || self.multi > 0 => {
                return refused(format!("\"EEEE\" is incompatible with other formats"))
            }
            Token::Exponent => self.exponent = true,
            Token::Silent if keyword.eq_ignore_ascii_case("FM") => self.fill = true,
            _ => {}
        }
        Ok(())
    }
}

/// A value's digits as the formatter takes them: no sign, `digits[.fraction]`, or `#`s.
struct Prepared {
    digits: String,
    /// `'+'`, `'-'`, or none (Roman numerals).
    sign: Option<char>,
    pre_spaces: usize,
    format: NumFormat,
}

/// `#`s for a number wider than the template: `pre` of them, the point, `post` more.
fn overflow(pre: usize, post: usize) -> String {
    let mut s = "#".repeat(pre + post + 1);
    s.replace_range(pre..=pre, ".");
    s
}

/// Roman numerals of 1..=3999, or 15 `#`s.
fn roman(n: i64) -> String {
    if !(1..=3999).contains(&n) {
        return "#".repeat(15);
    }
    const PARTS: [(i64, &str); 13] = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")];
    let (mut n, mut out) = (n, String::new());
    for (value, letters) in PARTS {
        while n >= value {
            out.push_str(letters);
            n -= value;
        }
    }
    out
}

/// Splits `digits` (no sign) into the sign and what the template writes; common to every
/// type once its value is rounded to `post` decimals.
fn finish(format: NumFormat, rounded: String) -> Prepared {
    let (sign, digits) = match rounded.strip_prefix('-') {
        Some(d) => ('-', d.to_string()),
        None => ('+', rounded),
    };
    let pre_len = digits.find('.').unwrap_or(digits.len());
    let (digits, pre_spaces) = match pre_len.cmp(&format.pre) {
        std::cmp::Ordering::Less => (digits, format.pre - pre_len),
        std::cmp::Ordering::Equal => (digits, 0),
        std::cmp::Ordering::Greater => (overflow(format.pre, format.post), 0),
    };
    Prepared { digits, sign: Some(sign), pre_spaces, format }
}

/// C's `%+.*e` with a blank for `+`: `' 4.86e-04'`.
fn scientific(value: f64, post: usize) -> String {
    let s = format!("{value:+.post$e}");
    let (mantissa, exponent) = s.split_once('e').expect("Rust writes an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let mantissa = mantissa.replacen('+', " ", 1);
    format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
}

/// `to_char` of an integer (PostgreSQL's `int8_to_char`).
pub fn integer(value: i64, format: &NumFormat) -> String {
    let mut format = format.clone();
    if format.roman {
        return write(roman_prepared(roman(value), format));
    }
    if format.exponent {
        return scientific(value as f64, format.post);
    }
    let shifted = i128::from(value) * 10i128.pow(format.multi as u32);
    format.pre += format.multi;
    let mut rounded = shifted.to_string();
    if format.post > 0 {
        rounded = format!("{rounded}.{}", "0".repeat(format.post));
    }
    write(finish(format, rounded))
}

/// `to_char` of a `float8` (`digits` = 15) or `float4` (6): PostgreSQL keeps no more
/// significant digits than the type has.
pub fn float(value: f64, digits: usize, format: &NumFormat) -> String {
    let mut format = format.clone();
    if format.roman {
        return write(roman_prepared(roman(value.round_ties_even() as i64), format));
    }
    if format.exponent {
        if !value.is_finite() {
            let mut s = " ".to_string() + &"#".repeat(format.pre + format.post + 5);
            s.replace_range(format.pre + 1..=format.pre + 1, ".");
            return s;
        }
        return scientific(value, format.post);
    }
    if !value.is_finite() {
        return write(Prepared { digits: overflow(format.pre, format.post), sign: Some('+'), pre_spaces: 0, format });
    }
    let value = value * 10f64.powi(format.multi as i32);
    format.pre += format.multi;
    let pre_len = format!("{:.0}", value.abs()).len();
    if pre_len >= digits {
        format.post = 0;
    } else if pre_len + format.post > digits {
        format.post = digits - pre_len;
    }
    // As C's `%.*f`: a negative value that rounds to zero keeps its minus, as in PostgreSQL.
    let rounded = format!("{value:.*}", format.post);
    write(finish(format, rounded))
}

/// `to_char` of a `numeric` given as its unscaled digits (with `-` if negative) and scale.
pub fn numeric(unscaled: &str, scale: usize, format: &NumFormat) -> String {
    let mut format = format.clone();
    let (negative, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    if format.roman {
        let whole = round_decimal(digits, scale, 0);
        let n = whole.parse::<i64>().unwrap_or(i64::MAX).min(i64::from(i32::MAX));
        return write(roman_prepared(roman(if negative { -n } else { n }), format));
    }
    if format.exponent {
        return numeric_scientific(negative, digits, scale, format.post);
    }
    // `V`: shifting the point right is dropping scale.
    let (scale, shifted) = if scale >= format.multi { (scale - format.multi, digits.to_string()) } else { (0, format!("{digits}{}", "0".repeat(format.multi - scale))) };
    format.pre += format.multi;
    let rounded = round_decimal(&shifted, scale, format.post);
    let is_zero = rounded.chars().all(|c| c == '0' || c == '.');
    let rounded = if negative && !is_zero { format!("-{rounded}") } else { rounded };
    write(finish(format, rounded))
}

/// `digits` (unscaled, scale `scale`) rounded half away from zero to `post` decimals, as
/// `int[.frac]` with exactly `post` decimals.
fn round_decimal(digits: &str, scale: usize, post: usize) -> String {
    let digits = if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits.to_string() };
    let (int, frac) = digits.split_at(digits.len() - scale);
    let mut kept: Vec<u8> = format!("{int}{}", &frac[..post.min(frac.len())]).into_bytes();
    kept.extend(std::iter::repeat_n(b'0', post.saturating_sub(frac.len())));
    if frac.len() > post && frac.as_bytes()[post] >= b'5' {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if kept[i] == b'9' {
                kept[i] = b'0';
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let mut s = String::from_utf8(kept).expect("ASCII digits");
    let int_len = s.len() - post;
    let int = s[..int_len].trim_start_matches('0');
    let int = if int.is_empty() { "0".to_string() } else { int.to_string() };
    let frac = s.split_off(int_len);
    if post == 0 {
        int
    } else {
        format!("{int}.{frac}")
    }
}

/// PostgreSQL's `numeric_out_sci`: `post` decimals of the mantissa, a blank for `+`.
fn numeric_scientific(negative: bool, digits: &str, scale: usize, post: usize) -> String {
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        let frac = if post > 0 { format!(".{}", "0".repeat(post)) } else { String::new() };
        return format!(" 0{frac}e+00");
    }
    let mut exponent = significant.len() as i64 - 1 - scale as i64;
    // The mantissa's digits, rounded half away from zero to 1 + post of them.
    let mut mantissa = round_decimal(significant, significant.len() - 1, post);
    if mantissa.starts_with("10") {
        exponent += 1;
        mantissa = round_decimal(&mantissa.replace('.', ""), post + 1, post);
    }
    let sign = if negative { '-' } else { ' ' };
    format!("{sign}{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
}

fn roman_prepared(numerals: String, mut format: NumFormat) -> Prepared {
    format.anchored = AnchoredSign::None;
    format.pre_at_sign = 0;
    format.post = 0;
    format.pre = 0;
    format.decimal = false;
    format.zero_start = None;
    format.brackets = false;
    format.plus = false;
    format.minus = false;
    format.multi = 0;
    format.exponent = false;
    Prepared { digits: numerals, sign: None, pre_spaces: 0, format }
}

/// English ordinal suffix of the number's last digits.
fn ordinal_suffix(digits: &str, lower: bool) -> &'static str {
    let bytes = digits.as_bytes();
    let last = bytes.last().copied().unwrap_or(b'0');
    let teen = bytes.len() > 1 && bytes[bytes.len() - 2] == b'1';
    let suffix = match last {
        _ if teen => "TH",
        b'1' => "ST",
        b'2' => "ND",
        b'3' => "RD",
        _ => "TH",
    };
    match (lower, suffix) {
        (false, s) => s,
        (true, "ST") => "st",
        (true, "ND") => "nd",
        (true, "RD") => "rd",
        (true, _) => "th",
    }
}

/// The output being written, cut where PostgreSQL's C string would end (a NUL written when
/// the digits ran out).
struct Out {
    text: String,
    cut: Option<usize>,
}

impl Out {
    fn push(&mut self, c: char) {
        self.text.push(c);
    }

    fn end_here(&mut self) {
        self.cut.get_or_insert(self.text.len());
    }
}

/// Writing state (PostgreSQL's `NUMProc` for output).
struct Writer<'a> {
    f: NumFormat,
    number: &'a [u8],
    at: usize,
    sign: Option<char>,
    sign_written: bool,
    count: isize,
    pre_spaces: usize,
    last_relevant: Option<usize>,
    current: usize,
    digit_written: bool,
    out: Out,
}

/// Writes a prepared value by its template.
fn write(p: Prepared) -> String {
    let Prepared { digits, sign, pre_spaces, format } = p;
    if format.exponent {
        return digits;
    }
    let mut f = format;
    let mut sign_written;
    if f.plus || f.minus {
        // MI, PL and SG write the sign themselves; PL alone leaves the minus to the digits.
        sign_written = !(f.plus && !f.minus);
    } else {
        if sign != Some('-') && f.fill {
            f.brackets = false;
        }
        sign_written = sign == Some('+') && f.fill && f.anchored == AnchoredSign::None;
        if f.anchored == AnchoredSign::Before && f.pre == f.pre_at_sign {
            f.anchored = AnchoredSign::After;
        }
    }
    if f.roman {
        sign_written = true;
    }
    let mut count = f.post as isize + f.pre as isize - 1;
    let number = digits.as_bytes();
    let mut last_relevant = None;
    if f.fill && f.decimal {
        last_relevant = digits.find('.').map(|point| number.iter().enumerate().skip(point + 1).filter(|(_, d)| **d != b'0').map(|(i, _)| i).last().unwrap_or(point));
        if let Some(relevant) = last_relevant.as_mut() {
            if f.zero_end > pre_spaces {
                let last_zero = (number.len() - 1).min(f.zero_end - pre_spaces);
                *relevant = (*relevant).max(last_zero);
            }
        }
    }
    if !sign_written && pre_spaces == 0 {
        count += 1;
    }
    let tokens = std::mem::take(&mut f.tokens);
    let mut w = Writer {
        f,
        number,
        at: 0,
        sign,
        sign_written,
        count,
        pre_spaces,
        last_relevant,
        current: 0,
        digit_written: false,
        out: Out { text: String::with_capacity(tokens.len() + digits.len() + 4), cut: None },
    };
    for token in &tokens {
        w.token(token);
    }
    let Out { mut text, cut } = w.out;
    if let Some(cut) = cut {
        text.truncate(cut);
    }
    text
}

impl Writer<'_> {
    fn token(&mut self, token: &Token) {
        let fill = self.f.fill;
        match token {
            Token::Nine | Token::Zero | Token::Point | Token::LocalePoint => self.digit(token),
            Token::Comma | Token::Group => match (self.digit_written, fill) {
                (true, _) => self.out.push(','),
                (false, false) => self.out.push(' '),
                (false, true) => {}
            },
            Token::Currency => self.out.push(' '),
            Token::Roman { lower } => {
                let numerals = std::str::from_utf8(self.number).expect("ASCII");
                let numerals = if *lower { numerals.to_ascii_lowercase() } else { numerals.to_string() };
                let text = if fill { numerals } else { format!("{numerals:>15}") };
                self.out.text.push_str(&text);
            }
            Token::Ordinal { lower } => {
                if self.f.roman || self.number.first() == Some(&b'#') || self.sign == Some('-') || self.f.decimal {
                    return;
                }
                let digits = std::str::from_utf8(self.number).expect("ASCII");
                self.out.text.push_str(ordinal_suffix(digits, *lower));
            }
            Token::Minus => match (self.sign, fill) {
                (Some('-'), _) => self.out.push('-'),
                (_, true) => {}
                (_, false) => self.out.push(' '),
            },
            Token::Plus => match (self.sign, fill) {
                (Some('+'), _) => self.out.push('+'),
                (_, true) => {}
                (_, false) => self.out.push(' '),
            },
            Token::PlusMinus => match self.sign {
                Some(sign) => self.out.push(sign),
                None => self.out.end_here(),
            },
            Token::Text(text) => self.out.text.push_str(text),
            Token::Sign | Token::Brackets | Token::Shift | Token::Exponent | Token::Silent => {}
        }
    }

    /// `0.1` by `9.9`: the integer zero is a blank.
    fn before_point_blank(&self) -> bool {
        self.f.zero_start.is_none() && self.at == 0 && self.number.first() == Some(&b'0') && self.f.post != 0
    }

    fn relevant_is_point(&self) -> bool {
        self.last_relevant.is_some_and(|i| self.number.get(i) == Some(&b'.'))
    }

    fn write_sign_before(&mut self) {
        let zero_here = self.f.zero_start == Some(self.current);
        if self.sign_written || !(self.current >= self.pre_spaces || zero_here) || (self.before_point_blank() && !self.relevant_is_point()) {
            return;
        }
        let sign = self.sign.unwrap_or('+');
        if self.f.anchored != AnchoredSign::None {
            if self.f.anchored == AnchoredSign::Before {
                self.out.push(if sign == '-' { '-' } else { '+' });
                self.sign_written = true;
            }
        } else if self.f.brackets {
            self.out.push(if sign == '+' { ' ' } else { '<' });
            self.sign_written = true;
        } else if sign == '+' {
            if !self.f.fill {
                self.out.push(' ');
            }
            self.sign_written = true;
        } else {
            self.out.push('-');
            self.sign_written = true;
        }
    }

    /// A digit position or the decimal point (PostgreSQL's `NUM_numpart_to_char`).
    fn digit(&mut self, token: &Token) {
        if self.f.roman {
            return;
        }
        self.digit_written = false;
        self.write_sign_before();
        let zero_from = self.f.zero_start;
        let blank = self.current < self.pre_spaces && zero_from.is_none_or(|z| z > self.current);
        let zero = self.current < self.pre_spaces && zero_from.is_some_and(|z| z <= self.current);
        if blank {
            if !self.f.fill {
                self.out.push(' ');
            }
        } else if zero {
            self.out.push('0');
            self.digit_written = true;
        } else {
            match self.number.get(self.at) {
                Some(b'.') => self.out.push('.'),
                next => {
                    let past_relevant = self.last_relevant.is_some_and(|r| self.at > r) && *token != Token::Zero;
                    if past_relevant {
                    } else if self.before_point_blank() {
                        if !self.f.fill {
                            self.out.push(' ');
                        } else if self.relevant_is_point() {
                            self.out.push('0');
                        }
                    } else {
                        match next {
                            Some(d) => self.out.push(char::from(*d)),
                            None => self.out.end_here(),
                        }
                        self.digit_written = true;
                    }
                }
            }
            if self.at < self.number.len() {
                self.at += 1;
            }
        }
        let mut end = self.count + isize::from(self.pre_spaces > 0) + isize::from(self.f.decimal);
        if self.last_relevant.is_some_and(|r| r == self.at) {
            end = self.current as isize;
        }
        if self.current as isize + 1 == end {
            let sign = self.sign.unwrap_or('+');
            if self.sign_written && self.f.brackets {
                self.out.push(if sign == '+' { ' ' } else { '>' });
            } else if self.f.anchored == AnchoredSign::After {
                self.out.push(if sign == '-' { '-' } else { '+' });
            }
        }
        self.current += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{float, integer, numeric, NumFormat};

    fn num(value: &str, template: &str) -> String {
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        numeric(&format!("{int}{frac}"), frac.len(), &NumFormat::parse(template).unwrap())
    }

    /// The examples of PostgreSQL's documentation (Table 9.28, "to_char Examples"), C locale.
    #[test]
    fn documented_examples() {
        for (value, template, expected) in [
            ("-0.1", "99.99", "  -.10"),
            ("-0.1", "FM9.99", "-.1"),
            ("-0.1", "FM90.99", "-0.1"),
            ("0.1", "0.9", " 0.1"),
            ("12", "9990999.9", "    0012.0"),
            ("12", "FM9990999.9", "0012."),
            ("485", "999", " 485"),
            ("-485", "999", "-485"),
            ("485", "9 9 9", " 4 8 5"),
            ("1485", "9,999", " 1,485"),
            ("1485", "9G999", " 1,485"),
            ("148.5", "999.999", " 148.500"),
            ("148.5", "FM999.999", "148.5"),
            ("148.5", "FM999.990", "148.500"),
            ("148.5", "999D999", " 148.500"),
            ("3148.5", "9G999D999", " 3,148.500"),
            ("-485", "999S", "485-"),
            ("-485", "999MI", "485-"),
            ("485", "999MI", "485 "),
            ("485", "FM999MI", "485"),
            // The documentation shows '+485'; formatting.c leaves the digits' sign slot blank
            // when PL alone writes the plus.
            ("485", "PL999", "+ 485"),
            ("485", "SG999", "+485"),
            ("-485", "SG999", "-485"),
            ("-485", "9SG99", "4-85"),
            ("-485", "999PR", "<485>"),
            ("485", "L999", "  485"),
            ("485", "RN", "        CDLXXXV"),
            ("485", "FMRN", "CDLXXXV"),
            ("5.2", "FMRN", "V"),
            ("482", "999th", " 482nd"),
            ("485", "\"Good number:\"999", "Good number: 485"),
            ("485.8", "\"Pre:\"999\" Post:\" .999", "Pre: 485 Post: .800"),
            ("12", "99V999", " 12000"),
            ("12.4", "99V999", " 12400"),
            ("12.45", "99V9", " 125"),
            ("0.0004859", "9.99EEEE", " 4.86e-04"),
        ] {
            assert_eq!(num(value, template), expected, "to_char({value}, '{template}')");
        }
    }

    #[test]
    fn more_templates() {
        for (value, template, expected) in [
            ("12345", "999", " ###"),
            ("12345.678", "99,999.99", " 12,345.68"),
            ("-12345.678", "99,999.99", "-12,345.68"),
            ("0", "9", " 0"),
            ("0", "FM9.99", "0."),
            ("3", "FM9.99", "3."),
            ("0.5", "9.99", "  .50"),
            ("1", "S9", "+1"),
            ("-12.5", "S99.99", "-12.50"),
            ("0.999", "9.99", " 1.00"),
            ("-0.001", "9.99", "  .00"),
            ("42", "000", " 042"),
            ("42", "FM000", "042"),
            ("7", "FM9th", "7th"),
            ("11", "99TH", " 11TH"),
            ("2024", "rn", "         mmxxiv"),
            ("99999.09", "FM9.09", "#.##"),
            ("-5", "999PR", "  <5>"),
            ("5", "999PR", "   5 "),
            ("123.456", "9.99EEEE", " 1.23e+02"),
            ("-123.456", "9.9EEEE", "-1.2e+02"),
            ("9.99", "9.9EEEE", " 1.0e+01"),
        ] {
            assert_eq!(num(value, template), expected, "to_char({value}, '{template}')");
        }
    }

    #[test]
    fn integers_and_floats() {
        let f = |t: &str| NumFormat::parse(t).unwrap();
        assert_eq!(integer(125, &f("999")), " 125");
        assert_eq!(integer(-125, &f("FM0000")), "-0125");
        assert_eq!(integer(1485, &f("9,999.99")), " 1,485.00");
        assert_eq!(integer(12, &f("99V99")), " 1200");
        assert_eq!(integer(485, &f("9.99EEEE")), " 4.85e+02");
        assert_eq!(float(125.8, 15, &f("999D9")), " 125.8");
        assert_eq!(float(-125.8, 15, &f("999D99S")), "125.80-");
        assert_eq!(float(0.5, 15, &f("0.0")), " 0.5");
        assert_eq!(float(1234567890123.45, 15, &f("9999999999999.9999")), " 1234567890123.45");
        assert_eq!(float(0.0004859, 15, &f("9.99EEEE")), " 4.86e-04");
        assert_eq!(float(f64::NAN, 15, &f("99.9")), " ##.#");
    }

    #[test]
    fn refused_templates() {
        for (template, message) in [("9.9.9", "multiple decimal points"), ("99V9.9", "cannot use \"V\" and decimal point together"), ("S9S", "cannot use \"S\" twice"), ("FM9.9EEEE", "\"EEEE\" is incompatible with other formats")] {
            let err = NumFormat::parse(template).unwrap_err().to_string();
            assert!(err.contains(message), "{template}: {err}");
        }
    }
}
