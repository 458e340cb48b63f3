//! The SQL dialect every OpenClaw parse uses: sqlparser's PostgreSQL dialect with one change,
//! a named function argument's name is an identifier (`f(x => 1)`), as in PostgreSQL's own
//! grammar, not any expression.
//!
//! Why: with expression names sqlparser parses every function argument twice (first as the
//! name of a named argument, failing at the missing `=>`, then again as the argument), so its
//! time doubles with each level of nested calls. Found by the `sql_parse` fuzz target:
//! `f(1, g(1, ...))` twenty calls deep took 3.4 s in a release build. With identifier names
//! the first attempt stops at the second token. DataFusion plans both forms alike; the one
//! statement this refuses is `json_object('label': value)`, which DataFusion cannot plan.
//!
//! Every method `PostgreSqlDialect` overrides is passed on to it (`dialect()` included, so
//! sqlparser's `dialect_of!(PostgreSqlDialect)` checks still hold); the rest are defaults in
//! both. `parses_every_slt_statement_as_postgres_does` holds the two to the same ASTs.

use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// sqlparser's PostgreSQL dialect with named function arguments named by identifiers only.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenClawDialect;

const POSTGRES: PostgreSqlDialect = PostgreSqlDialect {};

impl Dialect for OpenClawDialect {
    fn dialect(&self) -> std::any::TypeId {
        POSTGRES.dialect()
    }

    /// The one change (see the module's comment).
    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        false
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        POSTGRES.identifier_quote_style(identifier)
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        POSTGRES.is_delimited_identifier_start(ch)
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        POSTGRES.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        POSTGRES.is_identifier_part(ch)
    }
    fn supports_unicode_string_literal(&self) -> bool {
        POSTGRES.supports_unicode_string_literal()
    }
    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        POSTGRES.is_reserved_for_identifier(kw)
    }
    fn is_custom_operator_part(&self, ch: char) -> bool {
        POSTGRES.is_custom_operator_part(ch)
    }
    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        POSTGRES.get_next_precedence(parser)
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        POSTGRES.supports_filter_during_aggregation()
    }
    fn supports_group_by_expr(&self) -> bool {
        POSTGRES.supports_group_by_expr()
    }
    fn prec_value(&self, prec: Precedence) -> u8 {
        POSTGRES.prec_value(prec)
    }
    fn allow_extract_custom(&self) -> bool {
        POSTGRES.allow_extract_custom()
    }
    fn allow_extract_single_quotes(&self) -> bool {
        POSTGRES.allow_extract_single_quotes()
    }
    fn supports_create_index_with_clause(&self) -> bool {
        POSTGRES.supports_create_index_with_clause()
    }
    fn supports_explain_with_utility_options(&self) -> bool {
        POSTGRES.supports_explain_with_utility_options()
    }
    fn supports_listen_notify(&self) -> bool {
        POSTGRES.supports_listen_notify()
    }
    fn supports_factorial_operator(&self) -> bool {
        POSTGRES.supports_factorial_operator()
    }
    fn supports_bitwise_shift_operators(&self) -> bool {
        POSTGRES.supports_bitwise_shift_operators()
    }
    fn supports_comment_on(&self) -> bool {
        POSTGRES.supports_comment_on()
    }
    fn supports_load_extension(&self) -> bool {
        POSTGRES.supports_load_extension()
    }
    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        POSTGRES.supports_named_fn_args_with_colon_operator()
    }
    fn supports_empty_projections(&self) -> bool {
        POSTGRES.supports_empty_projections()
    }
    fn supports_nested_comments(&self) -> bool {
        POSTGRES.supports_nested_comments()
    }
    fn supports_string_escape_constant(&self) -> bool {
        POSTGRES.supports_string_escape_constant()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        POSTGRES.supports_numeric_literal_underscores()
    }
    fn supports_array_typedef_with_brackets(&self) -> bool {
        POSTGRES.supports_array_typedef_with_brackets()
    }
    fn supports_geometric_types(&self) -> bool {
        POSTGRES.supports_geometric_types()
    }
    fn supports_set_names(&self) -> bool {
        POSTGRES.supports_set_names()
    }
    fn supports_alter_column_type_using(&self) -> bool {
        POSTGRES.supports_alter_column_type_using()
    }
    fn supports_notnull_operator(&self) -> bool {
        POSTGRES.supports_notnull_operator()
    }
    fn supports_interval_options(&self) -> bool {
        POSTGRES.supports_interval_options()
    }
    fn supports_insert_table_alias(&self) -> bool {
        POSTGRES.supports_insert_table_alias()
    }
    fn supports_create_table_like_parenthesized(&self) -> bool {
        POSTGRES.supports_create_table_like_parenthesized()
    }
    fn supports_select_wildcard_with_alias(&self) -> bool {
        POSTGRES.supports_select_wildcard_with_alias()
    }
    fn supports_comma_separated_trim(&self) -> bool {
        POSTGRES.supports_comma_separated_trim()
    }
    fn supports_xml_expressions(&self) -> bool {
        POSTGRES.supports_xml_expressions()
    }
    fn supports_comment_optimizer_hint(&self) -> bool {
        POSTGRES.supports_comment_optimizer_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    /// The statements of every `.slt` file: the lines after a `statement` or `query` header up
    /// to `----` or a blank line.
    fn slt_statements() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/slt");
        let mut out = vec![];
        for entry in std::fs::read_dir(dir).expect("tests/slt") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "slt") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("an .slt file");
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.starts_with("statement") || line.starts_with("query") {
                    let sql: Vec<&str> = lines.by_ref().take_while(|l| !l.trim().is_empty() && *l != "----").collect();
                    out.push(sql.join("\n"));
                }
            }
        }
        out
    }

    fn parsed(dialect: &dyn Dialect, sql: &str) -> Result<Vec<String>, String> {
        Parser::parse_sql(dialect, sql).map(|stmts| stmts.iter().map(ToString::to_string).collect()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_every_slt_statement_as_postgres_does() {
        let statements = slt_statements();
        assert!(statements.len() > 1000, "{} statements", statements.len());
        for sql in statements {
            assert_eq!(parsed(&OpenClawDialect, &sql), parsed(&POSTGRES, &sql), "{sql}");
        }
        // Named arguments, as PostgreSQL writes them, still parse to the same text.
        for sql in ["SELECT f(a => 1, \"B\" => 2)", "SELECT f(1, b => g(c => 2))"] {
            assert_eq!(parsed(&OpenClawDialect, sql), parsed(&POSTGRES, sql), "{sql}");
        }
    }

    /// Found by the `sql_parse` fuzz target: with PostgreSqlDialect twenty nested two-argument
    /// calls took 3.4 s (release), each level doubling it.
    #[test]
    fn nested_function_calls_parse_in_linear_time() {
        let nested = |n: usize| format!("SELECT {}1{}", "f(1, g(".repeat(n), "))".repeat(n));
        let unbalanced = |n: usize| format!("SELECT {}1", "f(1, g(".repeat(n));
        let started = Instant::now();
        for n in [10, 20, 30] {
            crate::parser::parse(&nested(n)).unwrap_or_else(|e| panic!("{n} levels: {}", e.message));
            assert!(crate::parser::parse(&unbalanced(n)).is_err());
        }
        crate::parser::parse(&format!("SELECT {}1{}", "f(".repeat(40), ")".repeat(40))).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
}
