//! The SQL entry point: every statement text a client sends goes through
//! `openclaw_sql::parser::parse_with_text` (OpenClaw's statements, the Flink window and
//! `AS OF` rewrites, then sqlparser) before anything is planned. Any text must give statements
//! or an error, never a panic, and quickly (the parser's limits on length and nesting).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        let _ = openclaw_sql::parser::parse_with_text(sql);
    }
});
