//! Errors as PostgreSQL reports them: a SQLSTATE, a lowercase message, and an optional detail,
//! hint and cursor position.

use datafusion::error::DataFusionError;
use openclaw_engine::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    SyntaxError,
    UndefinedTable,
    UndefinedColumn,
    UndefinedFunction,
    DatatypeMismatch,
    /// 42P07: a relation (table, source, view, sink) of that name exists.
    DuplicateTable,
    /// 42710: another kind of object of that name exists (a secret).
    DuplicateObject,
    DependentObjectsStillExist,
    FeatureNotSupported,
    InvalidParameterValue,
    DivisionByZero,
    NumericValueOutOfRange,
    InvalidTextRepresentation,
    /// 22007: a date/time template or value PostgreSQL would not take.
    InvalidDatetimeFormat,
    DataException,
    WrongObjectType,
    StatementTooComplex,
    ProgramLimitExceeded,
    InvalidObjectDefinition,
    InvalidTableDefinition,
    NotNullViolation,
    ObjectNotInPrerequisiteState,
    UndefinedObject,
    AmbiguousColumn,
    QueryCanceled,
    /// 40001: a transaction's write conflicted with a concurrent one; retry it.
    SerializationFailure,
    /// 25P02: an earlier statement of the transaction failed.
    InFailedSqlTransaction,
    /// 25001: the statement cannot run inside this transaction block.
    ActiveSqlTransaction,
    /// 34000: no open cursor by that name.
    InvalidCursorName,
    /// 42P03: a cursor by that name is already open.
    DuplicateCursor,
    /// 53400: a limit set by the server's configuration (`--max-subscribers`, ...).
    ConfigurationLimitExceeded,
    /// 28000: a request's credentials (a webhook's signature) do not check out.
    InvalidAuthorizationSpecification,
    /// 3F000: no such schema (or none in `search_path` to create in).
    InvalidSchemaName,
    /// 42P06: a schema by that name exists.
    DuplicateSchema,
    /// 42939: a name reserved for the system (`pg_...` schemas).
    ReservedName,
    /// 42701: a column name given twice (a view's column list).
    DuplicateColumn,
    /// 42723: a function of that name and argument types exists already.
    DuplicateFunction,
    /// 42P13: a function's definition does not fit its declaration (`RETURNS` type, arguments).
    InvalidFunctionDefinition,
    /// 42501: the statement would change what only the system may (`pg_catalog`).
    InsufficientPrivilege,
    /// 0LP01: a privilege that does not apply to the object (`GRANT CREATE ON TABLE`).
    InvalidGrantOperation,
    Internal,
}

impl SqlState {
    /// PostgreSQL's class 22: the data made an expression fail.
    const DATA_EXCEPTIONS: [SqlState; 6] = [
        SqlState::DivisionByZero,
        SqlState::NumericValueOutOfRange,
        SqlState::InvalidTextRepresentation,
        SqlState::InvalidDatetimeFormat,
        SqlState::InvalidParameterValue,
        SqlState::DataException,
    ];

    /// The data exception whose SQLSTATE is `code` (a view's failed rows keep theirs).
    pub fn data_exception(code: &str) -> Option<SqlState> {
        Self::DATA_EXCEPTIONS.into_iter().find(|s| s.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            SqlState::SyntaxError => "42601",
            SqlState::UndefinedTable => "42P01",
            SqlState::UndefinedColumn => "42703",
            SqlState::UndefinedFunction => "42883",
            SqlState::DatatypeMismatch => "42804",
            SqlState::DuplicateTable => "42P07",
            SqlState::DuplicateObject => "42710",
            SqlState::DependentObjectsStillExist => "2BP01",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::InvalidParameterValue => "22023",
            SqlState::DivisionByZero => "22012",
            SqlState::NumericValueOutOfRange => "22003",
            SqlState::InvalidTextRepresentation => "22P02",
            SqlState::InvalidDatetimeFormat => "22007",
            SqlState::DataException => "22000",
            SqlState::WrongObjectType => "42809",
            SqlState::StatementTooComplex => "54001",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::InvalidObjectDefinition => "42P17",
            SqlState::InvalidTableDefinition => "42P16",
            SqlState::NotNullViolation => "23502",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::UndefinedObject => "42704",
            SqlState::AmbiguousColumn => "42702",
            SqlState::QueryCanceled => "57014",
            SqlState::SerializationFailure => "40001",
            SqlState::InFailedSqlTransaction => "25P02",
            SqlState::ActiveSqlTransaction => "25001",
            SqlState::InvalidCursorName => "34000",
            SqlState::DuplicateCursor => "42P03",
            SqlState::ConfigurationLimitExceeded => "53400",
            SqlState::InvalidAuthorizationSpecification => "28000",
            SqlState::InvalidSchemaName => "3F000",
            SqlState::DuplicateSchema => "42P06",
            SqlState::ReservedName => "42939",
            SqlState::DuplicateColumn => "42701",
            SqlState::DuplicateFunction => "42723",
            SqlState::InvalidFunctionDefinition => "42P13",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::InvalidGrantOperation => "0LP01",
            SqlState::Internal => "XX000",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqlError {
    pub code: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character offset into the statement.
    pub position: Option<usize>,
}

impl SqlError {
    pub fn new(code: SqlState, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None, hint: None, position: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn not_supported(what: impl Into<String>) -> Self {
        Self::new(SqlState::FeatureNotSupported, what)
    }

    /// The error as DataFusion carries it out of a function it calls, typed, so that it
    /// reaches the client as it is ([`from_datafusion`] unwraps it).
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for SqlError {}

pub type SqlResult<T> = Result<T, SqlError>;

/// Returns early with a 0A000 error.
#[macro_export]
macro_rules! not_supported {
    ($($arg:tt)*) => { return Err($crate::error::SqlError::not_supported(format!($($arg)*))) };
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        from_datafusion(e)
    }
}

impl From<EngineError> for SqlError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DataFusion(e) => from_datafusion(e),
            EngineError::Arrow(e) => from_message(&e.to_string()),
            EngineError::Execution(m) => SqlError::new(SqlState::DataException, m),
            EngineError::NotSupported(m) => SqlError::not_supported(m),
            EngineError::Storage(e) => e.into(),
            other => SqlError::new(SqlState::Internal, other.to_string()),
        }
    }
}

impl From<openclaw_storage::StorageError> for SqlError {
    fn from(e: openclaw_storage::StorageError) -> Self {
        match e {
            openclaw_storage::StorageError::UnsupportedType(m) => SqlError::not_supported(m),
            e => SqlError::new(SqlState::Internal, e.to_string()),
        }
    }
}

/// What a view's row whose expression failed with `e` reads as, when the data is at fault
/// (a data exception, class 22); `None` for errors of any other kind.
pub(crate) fn eval_failure(e: &EngineError) -> Option<openclaw_engine::eval_errors::EvalFailure> {
    let err = match e {
        EngineError::Execution(m) => from_message(m),
        EngineError::Arrow(e) => from_message(&e.to_string()),
        EngineError::DataFusion(e) => match e.find_root() {
            DataFusionError::ArrowError(e, _) => from_message(&e.to_string()),
            DataFusionError::Execution(m) => from_message(m),
            DataFusionError::External(e) => match (e.downcast_ref::<EngineError>(), e.downcast_ref::<SqlError>()) {
                (Some(EngineError::Execution(m)), _) => from_message(m),
                (_, Some(e)) => e.clone(),
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    };
    SqlState::data_exception(err.code.code())?;
    Some(openclaw_engine::eval_errors::EvalFailure { code: err.code.code().to_string(), message: err.message })
}

fn from_datafusion(e: DataFusionError) -> SqlError {
    match e.find_root() {
        DataFusionError::SQL(e, _) => SqlError::new(SqlState::SyntaxError, lower_first(&e.to_string())),
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            datafusion::common::SchemaError::FieldNotFound { field, valid_fields } => {
                let err = SqlError::new(SqlState::UndefinedColumn, format!("column {} does not exist", quote(field.name())));
                let names: Vec<String> = valid_fields.iter().map(|f| f.name().to_string()).collect();
                if names.is_empty() {
                    err
                } else {
                    err.with_hint(format!("columns in scope: {}", names.join(", ")))
                }
            }
            datafusion::common::SchemaError::AmbiguousReference { field } => {
                SqlError::new(SqlState::AmbiguousColumn, format!("column reference {} is ambiguous", quote(field.name())))
            }
            other => SqlError::new(SqlState::DuplicateTable, lower_first(&other.to_string())),
        },
        DataFusionError::NotImplemented(m) => SqlError::not_supported(lower_first(m)),
        DataFusionError::Plan(m) => from_plan_message(m),
        DataFusionError::ArrowError(e, _) => from_message(&e.to_string()),
        DataFusionError::Execution(m) => from_message(m),
        DataFusionError::External(e) => match (e.downcast_ref::<EngineError>(), e.downcast_ref::<SqlError>()) {
            (Some(EngineError::Execution(m)), _) => from_message(m),
            (_, Some(e)) => e.clone(),
            _ => from_message(&e.to_string()),
        },
        other => from_message(&other.to_string()),
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        from_message(&e.to_string())
    }
}

fn from_plan_message(m: &str) -> SqlError {
    if let Some(rest) = m.strip_prefix("table '").or_else(|| m.strip_prefix("Table '")) {
        let name = rest.split('\'').next().unwrap_or(rest);
        let name = name.rsplit('.').next().unwrap_or(name);
        return SqlError::new(SqlState::UndefinedTable, format!("relation {} does not exist", quote(name)));
    }
    if let Some(op) = m.strip_suffix(" queries have different number of columns") {
        // The SQL planner's "EXCEPT queries have ...", in PostgreSQL's words.
        return SqlError::new(SqlState::SyntaxError, format!("each {op} query must have the same number of columns"));
    }
    if m.contains("non-boolean predicate") {
        return SqlError::new(SqlState::DatatypeMismatch, "argument of WHERE must be type boolean");
    }
    if m.contains("cannot coerce arithmetic expression") || m.contains("Cannot coerce arithmetic expression") {
        let what = m.split("expression ").nth(1).unwrap_or(m).split(" to valid types").next().unwrap_or(m);
        return SqlError::new(SqlState::UndefinedFunction, format!("operator does not exist: {what}"))
            .with_hint("no operator matches the given name and argument types; you might need to add explicit type casts");
    }
    if m.contains("Invalid function") || m.contains("No function matches") || m.contains("not found in registry") {
        return SqlError::new(SqlState::UndefinedFunction, lower_first(m))
            .with_hint("no function matches the given name and argument types");
    }
    if m.contains("Cannot coerce")
        || m.contains("cannot be coerced")
        || m.contains("Cannot infer common")
        || m.contains("Unsupported CAST")
        || m.contains("does not support")
        || m.contains("Failed to coerce")
        || m.contains("coercion")
    {
        let code = if m.contains("function") || m.contains("operator") || m.contains("argument") {
            SqlState::UndefinedFunction
        } else {
            SqlState::DatatypeMismatch
        };
        return SqlError::new(code, lower_first(m));
    }
    SqlError::new(SqlState::SyntaxError, lower_first(m))
}

fn from_message(m: &str) -> SqlError {
    let lower = m.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return SqlError::new(SqlState::DivisionByZero, "division by zero");
    }
    if lower.contains("overflow") {
        return SqlError::new(SqlState::NumericValueOutOfRange, lower_first(m));
    }
    if lower.contains("cannot cast") || lower.contains("can't cast") || lower.contains("cast error") || lower.contains("parser error") {
        return SqlError::new(SqlState::InvalidTextRepresentation, lower_first(m));
    }
    SqlError::new(SqlState::DataException, lower_first(m))
}

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.trim_matches('"'))
}

fn lower_first(s: &str) -> String {
    let s = s.trim();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
