//! Per-connection settings: what `SET` changes and `SHOW` reads, with PostgreSQL's defaults so
//! that psql and drivers find what they ask for at start-up.

use std::collections::BTreeMap;

use openclaw_engine::operators::exchange::MAX_PARALLELISM;

use crate::error::{SqlError, SqlState};

pub const SERVER_VERSION: &str = "15.0 (OpenClaw)";

pub struct SessionVars {
    vars: BTreeMap<String, String>,
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
        Self { vars: defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
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
        self.vars.insert(key, value.to_string());
        Ok(())
    }

    /// `streaming_parallelism`: partitions of each keyed stateful operator of the views this
    /// session creates; `None` for the server's default (`--workers`).
    pub fn streaming_parallelism(&self) -> Result<Option<usize>, SqlError> {
        parse_parallelism(self.vars.get("streaming_parallelism").map_or("default", String::as_str))
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
