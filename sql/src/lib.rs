//! OpenClaw's SQL front: statements are parsed by sqlparser (through [`parser`]), planned and
//! optimised by DataFusion, and views are lowered ([`lower`]) from DataFusion's logical plan
//! into the engine's streaming plan. [`Database`] executes statements for the server.

pub mod catalog;
mod catalog_resolver;
mod as_of;
pub mod checkpoint_store;
mod checkpoints;
pub mod copy;
pub mod database;
mod describe;
mod ddl;
mod history;
mod restore;
pub mod interrupt;
mod history_scan;
mod lookup_join;
mod ingest;
mod dml;
mod drop;
mod explain;
pub mod durable;
pub mod error;
pub mod functions;
pub mod lower;
pub mod metrics;
mod naming;
pub mod parameters;
pub mod parser;
mod pg_catalog;
pub mod prepared;
pub mod relation;
pub mod session;
mod set_operations;
mod three_valued_in;
mod set_returning;
pub mod subscribe;
pub mod schemas;
mod subscriptions;
mod temporal;
pub mod transaction;
pub mod types;
mod views;
pub mod roles;
pub mod secrets;
mod sql_functions;
pub mod windows;
pub mod write_api;

pub use database::{Database, QueryOutput};
pub use error::{SqlError, SqlResult, SqlState};
pub use session::SessionVars;
pub use subscribe::{SubscribeStmt, Subscription};

/// `WITH (...)` options, keys lowercased.
pub type Options = openclaw_connectors::Options;
