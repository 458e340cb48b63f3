//! Per-connection settings: what `SET` changes and `SHOW` reads, with PostgreSQL's defaults so
//! that psql and drivers find what they ask for at start-up.

use std::collections::BTreeMap;
use std::time::Duration;

use openclaw_engine::operators::exchange::MAX_PARALLELISM;

use crate::error::{SqlError, SqlState};

pub const SERVER_VERSION: &str = "15.0 (OpenClaw)";

pub struct SessionVars {
    vars: BTreeMap<String, String>,
    /// The session's transaction block.
    pub(crate) txn: crate::transaction::TxnState,
    /// Open cursors (`DECLARE ... CURSOR FOR SUBSCRIBE`), by name, until `CLOSE` or the
    /// session's end.
    pub(crate) cursors: std::collections::HashMap<String, crate::subscribe::Subscription>,
    /// The running statement's cancel request; the server gives each statement a new one.
    pub cancel: crate::interrupt::CancelSignal,
    /// Plans of the queries executed with parameters, reused while they hold.
    pub prepared: crate::prepared::PreparedPlans,
    /// The role the session logged in as; `None`: the bootstrap superuser (and, under `--auth
    /// trust`, a user name that is no role). `SET ROLE` changes the `role` variable instead.
    pub session_user: Option<String>,
}

impl Default for SessionVars {
    fn default() -> Self {
        let defaults = [
            ("application_name", ""),
            ("client_encoding", "UTF8"),
            ("client_min_messages", "notice"),
            ("datestyle", "ISO, MDY"),
            ("default_transaction_isolation", "read committed"),
            ("default_transaction_read_only", "off"),
            ("extra_float_digits", "1"),
            ("integer_datetimes", "on"),
            ("intervalstyle", "postgres"),
            ("is_superuser", "on"),
            ("role", "none"),
            ("lc_messages", "C"),
            ("max_identifier_length", "63"),
            ("search_path", "public"),
            ("server_encoding", "UTF8"),
            ("server_version", SERVER_VERSION),
            ("server_version_num", "150000"),
            ("standard_conforming_strings", "on"),
            ("statement_timeout", "0"),
            ("streaming_parallelism", "default"),
            ("timezone", "UTC"),
            ("transaction_isolation", "read committed"),
            ("transaction_read_only", "off"),
        ];
        Self { vars: defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), txn: Default::default(), cursors: Default::default(), cancel: Default::default(), prepared: Default::default(), session_user: None }
    }
}

impl SessionVars {
    fn key(name: &str) -> String {
        match name.to_ascii_lowercase().as_str() {
            "time zone" | "time_zone" => "timezone".into(),
            "transaction isolation level" => "transaction_isolation".into(),
            other => other.to_string(),
        }
    }

    /// Sets a variable. The ones OpenClaw acts on are checked here, so that a bad value is
    /// refused at `SET` rather than at the next `CREATE`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SqlError> {
        let key = Self::key(name);
        if key == "streaming_parallelism" {
            parse_parallelism(value)?;
        }
        if key == "statement_timeout" {
            parse_timeout(value)?;
        }
        if key == "search_path" {
            // Kept plans resolved their names under the old path.
            self.prepared = Default::default();
        }
        if key == "timezone" {
            self.vars.insert(key, parse_time_zone(value)?.0);
            return Ok(());
        }
        self.vars.insert(key, value.to_string());
        Ok(())
    }

    /// `TimeZone`: the zone `timestamptz` values are shown in, and text without an offset
    /// read in (`SET TIME ZONE`), as its name (an IANA name or a `+hh:mm` offset), which
    /// arrow and DataFusion take.
    pub fn time_zone(&self) -> String {
        self.vars.get("timezone").cloned().unwrap_or_else(|| "UTC".into())
    }

    /// [`Self::time_zone`], parsed.
    pub fn time_zone_tz(&self) -> datafusion::arrow::array::timezone::Tz {
        parse_time_zone(&self.time_zone()).map(|z| z.1).unwrap_or_else(|_| "+00:00".parse().expect("a fixed offset parses"))
    }

    /// `streaming_parallelism`: partitions of each keyed stateful operator of the views this
    /// session creates; `None` for the server's default (`--workers`).
    pub fn streaming_parallelism(&self) -> Result<Option<usize>, SqlError> {
        parse_parallelism(self.vars.get("streaming_parallelism").map_or("default", String::as_str))
    }

    /// `statement_timeout`: how long a query or a `FLUSH` may wait before it is canceled;
    /// `None` (0, the default) for no limit.
    pub fn statement_timeout(&self) -> Result<Option<Duration>, SqlError> {
        parse_timeout(self.vars.get("statement_timeout").map_or("0", String::as_str))
    }

    /// When the statement starting now stops waiting: its `statement_timeout` from now, or a
    /// cancel request.
    pub fn interrupt(&self) -> Result<crate::interrupt::Interrupt, SqlError> {
        let deadline = self.statement_timeout()?.map(|t| tokio::time::Instant::now() + t);
        Ok(crate::interrupt::Interrupt { deadline, cancel: self.cancel.clone() })
    }

    /// Gives a query's state what this session's settings change in it: the time zone, in
    /// which `timestamptz` is shown and read, and `search_path`, which says which relations
    /// `pg_table_is_visible` finds.
    pub fn configure(&self, state: &mut datafusion::execution::SessionState) {
        let options = state.config_mut().options_mut();
        options.execution.time_zone = Some(self.time_zone());
        let mut settings = crate::schemas::SessionSettings::default();
        settings.search_path = self.vars.get("search_path").cloned().unwrap_or_else(|| crate::schemas::PUBLIC.to_string());
        options.extensions.insert(settings);
        // Functions see the options of the query's start (`ExecutionProps`), taken when the
        // state was made: take them again.
        state.mark_start_execution();
    }

    /// `search_path`'s schemas, in order ([`crate::schemas`]).
    pub fn search_path(&self) -> Vec<String> {
        crate::schemas::parse_search_path(self.vars.get("search_path").map_or(crate::schemas::PUBLIC, String::as_str))
    }

    pub fn get(&self, name: &str) -> Result<&str, SqlError> {
        self.vars.get(&Self::key(name)).map(String::as_str).ok_or_else(|| {
            SqlError::new(SqlState::UndefinedObject, format!("unrecognized configuration parameter \"{name}\""))
        })
    }

    pub fn all(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars.iter()
    }
}

/// A `SET TIME ZONE` value as PostgreSQL takes it: an IANA name (`'Europe/Paris'`, `'UTC'`),
/// an offset (`'+05:30'`), a number of hours east of UTC (`-7`), or `LOCAL`/`DEFAULT` (UTC,
/// the server's zone). Returns the name kept and the zone.
pub(crate) fn parse_time_zone(value: &str) -> Result<(String, datafusion::arrow::array::timezone::Tz), SqlError> {
    let text = value.trim().trim_matches('\'').trim();
    let name = if text.eq_ignore_ascii_case("local") || text.eq_ignore_ascii_case("default") {
        "UTC".to_string()
    } else if let Ok(hours) = text.parse::<f64>() {
        if !(-15.0..=15.0).contains(&hours) {
            return Err(bad_zone(value));
        }
        let minutes = (hours * 60.0).round() as i64;
        format!("{}{:02}:{:02}", if minutes < 0 { '-' } else { '+' }, minutes.abs() / 60, minutes.abs() % 60)
    } else {
        text.to_string()
    };
    let zone = name.parse().map_err(|_| bad_zone(value))?;
    Ok((name, zone))
}

fn bad_zone(value: &str) -> SqlError {
    SqlError::new(SqlState::InvalidParameterValue, format!("invalid value for parameter \"TimeZone\": \"{}\"", value.trim().trim_matches('\'')))
}

/// PostgreSQL's form of a time setting: a number of milliseconds, or a number with a unit
/// (`ms`, `s`, `min`, `h`, `d`), e.g. `5000`, `'5s'`, `'1 min'`. Zero means no limit.
pub(crate) fn parse_timeout(value: &str) -> Result<Option<Duration>, SqlError> {
    let text = value.trim().trim_matches('\'').trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let ms_per_unit: Option<u64> = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" => Some(1),
        "s" => Some(1_000),
        "min" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        _ => None,
    };
    let ms = number.parse::<u64>().ok().zip(ms_per_unit).and_then(|(n, per)| n.checked_mul(per)).filter(|ms| *ms <= i32::MAX as u64);
    match ms {
        Some(0) => Ok(None),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
        None => Err(SqlError::new(SqlState::InvalidParameterValue, format!("invalid value for parameter \"statement_timeout\": \"{text}\""))
            .with_hint("give milliseconds, or a number with a unit: ms, s, min, h or d (0 for no limit)")),
    }
}

/// `default` (or 0, as RisingWave takes it) means the server's default; otherwise 1 up to
/// [`MAX_PARALLELISM`].
fn parse_parallelism(value: &str) -> Result<Option<usize>, SqlError> {
    let value = value.trim().trim_matches('\'');
    if value.eq_ignore_ascii_case("default") || value == "0" {
        return Ok(None);
    }
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_PARALLELISM).contains(&n) => Ok(Some(n)),
        _ => Err(SqlError::new(
            SqlState::InvalidParameterValue,
            format!("invalid value for parameter \"streaming_parallelism\": \"{value}\""),
        )
        .with_hint(format!("use DEFAULT or an integer from 1 to {MAX_PARALLELISM}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_takes_postgres_units_and_refuses_the_rest() {
        let ms = |v: &str| parse_timeout(v).map(|d| d.map(|d| d.as_millis()));
        assert_eq!(ms("0").unwrap(), None);
        assert_eq!(ms("250").unwrap(), Some(250));
        assert_eq!(ms("'5s'").unwrap(), Some(5_000));
        assert_eq!(ms("'1 min'").unwrap(), Some(60_000));
        assert_eq!(ms("2h").unwrap(), Some(7_200_000));
        for bad in ["-1", "5 parsecs", "'abc'", "99999999999", "30d"] {
            let e = ms(bad).unwrap_err();
            assert_eq!(e.code, SqlState::InvalidParameterValue, "{bad}");
        }
        let mut vars = SessionVars::default();
        assert!(vars.set("statement_timeout", "'soon'").is_err());
        assert_eq!(vars.statement_timeout().unwrap(), None, "a refused value leaves the setting alone");
        vars.set("STATEMENT_TIMEOUT", "'100ms'").unwrap();
        assert_eq!(vars.statement_timeout().unwrap(), Some(Duration::from_millis(100)));
    }
}
