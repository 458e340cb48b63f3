//! Interval literals in PostgreSQL's own output form (`'1 day 02:03:04'`, `'1 year 2
//! mons'`, `'00:00:01.5'`), which DataFusion's interval parser does not read: each
//! `INTERVAL '...'` and `'...'::interval` whose text PostgreSQL's form describes is rewritten,
//! on the tokens, into units DataFusion reads (`'1 day 7384000000 microseconds'`). Texts
//! DataFusion reads already (`'2 hours'`) are left alone.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// Rewrites the interval literals of a statement's tokens.
pub(crate) fn normalize(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).collect();
    for (n, &i) in significant.iter().enumerate() {
        let Token::SingleQuotedString(text) = &tokens[i].token else { continue };
        let word = |k: usize, w: &str| significant.get(k).is_some_and(|&j| matches!(&tokens[j].token, Token::Word(x) if x.value.eq_ignore_ascii_case(w)));
        let after_keyword = n > 0 && word(n - 1, "interval");
        let cast = significant.get(n + 1).is_some_and(|&j| tokens[j].token == Token::DoubleColon) && word(n + 2, "interval");
        if !(after_keyword || cast) {
            continue;
        }
        if let Some(units) = in_units(text) {
            tokens[i].token = Token::SingleQuotedString(units);
        }
    }
    tokens
}

/// `text` in units DataFusion reads, if it has PostgreSQL's clock part (`[-]hh:mm[:ss[.f]]`)
/// or its `mons`, which DataFusion does not take: the clock becomes microseconds, `mons`
/// becomes `months`, the rest stays.
fn in_units(text: &str) -> Option<String> {
    let mut out: Vec<String> = vec![];
    let mut changed = false;
    for word in text.split_whitespace() {
        if word.contains(':') {
            out.push(format!("{} microseconds", clock_micros(word)?));
            changed = true;
        } else if word.eq_ignore_ascii_case("mons") || word.eq_ignore_ascii_case("mon") {
            out.push("months".into());
            changed = true;
        } else {
            out.push(word.to_string());
        }
    }
    changed.then(|| out.join(" "))
}

/// `[-+]hh:mm[:ss[.ffffff]]` in microseconds.
fn clock_micros(clock: &str) -> Option<i64> {
    let (sign, digits) = match clock.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, clock.strip_prefix('+').unwrap_or(clock)),
    };
    let mut parts = digits.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: f64 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    if parts.next().is_some() || !(0..60).contains(&minutes) || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    Some(sign * ((hours * 60 + minutes) * 60_000_000 + (seconds * 1e6).round() as i64))
}

#[cfg(test)]
mod tests {
    use super::in_units;

    #[test]
    fn postgres_forms_become_units() {
        assert_eq!(in_units("1 day 02:03:04").as_deref(), Some("1 day 7384000000 microseconds"));
        assert_eq!(in_units("1 year 2 mons").as_deref(), Some("1 year 2 months"));
        assert_eq!(in_units("-1 days +02:00:00").as_deref(), Some("-1 days 7200000000 microseconds"));
        assert_eq!(in_units("-01:30").as_deref(), Some("-5400000000 microseconds"));
        assert_eq!(in_units("00:00:01.5").as_deref(), Some("1500000 microseconds"));
        assert_eq!(in_units("2 hours"), None);
        assert_eq!(in_units("1:99"), None);
    }
}
