//! Transactions and atomic writes.
//!
//! Every write, a single statement or a `BEGIN ... COMMIT` block, is committed the same way
//! ([`Database::commit`]): the tables it writes are locked in id order, each table's writer
//! prepares its part ([`TableWrite::Prepare`]), the parts go to disk as one synced RocksDB
//! write, and only then do the writers send the changelog on, with barriers held back
//! meanwhile so that every view sees the whole commit in one epoch.
//!
//! Isolation, in PostgreSQL's terms:
//! - A statement outside a transaction block runs with its table locked: an `UPDATE` or
//!   `DELETE` reads the rows as they are at that moment and writes them before any other
//!   statement can write the table, so no update is lost (what PostgreSQL's row locks give at
//!   READ COMMITTED). It never fails with 40001.
//! - Inside `BEGIN ... COMMIT`, each statement reads the committed rows as of its start plus
//!   the transaction's own changes (READ COMMITTED). Writes are kept in the session until
//!   `COMMIT`. At `COMMIT`, every row that an `UPDATE` or `DELETE` of the transaction read from
//!   committed state must still be as it read it; otherwise the commit fails with 40001 and
//!   writes nothing (first committer wins), and the client retries the transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use openclaw_engine::operators::MaterializedState;
use openclaw_engine::table::{Change, TableRequest, TableWrite};
use openclaw_engine::ObjectId;
use openclaw_storage::StateWrite;
use tokio::sync::{mpsc, oneshot};

use crate::database::Database;
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::relation::TableOverlay;

/// Most bytes of rows (Arrow memory) one statement or one transaction may write; they are
/// held in memory until the commit.
pub const MAX_WRITE_BYTES: usize = 1 << 30;

/// A table a write goes to.
#[derive(Clone)]
pub(crate) struct WriteTarget {
    pub id: ObjectId,
    pub name: String,
    pub writer: mpsc::Sender<TableRequest>,
    pub state: Arc<MaterializedState>,
    /// Held by every writing statement and commit of this table for its whole run.
    pub lock: Arc<tokio::sync::Mutex<()>>,
}

/// What a transaction (or one statement) writes to one table.
pub(crate) struct TableWrites {
    pub target: WriteTarget,
    pub changes: Vec<Change>,
    /// The net effect of `changes`, which the transaction's own statements read.
    pub overlay: Arc<TableOverlay>,
    /// For each key an `UPDATE` or `DELETE` read from committed state: the stored row it read
    /// (`None`: absent). [`Database::commit`] checks that it is unchanged.
    pub read: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl TableWrites {
    pub fn new(target: WriteTarget) -> Self {
        Self { target, changes: vec![], overlay: Default::default(), read: BTreeMap::new() }
    }

    /// Adds a statement's change, and its effect to the overlay.
    pub fn push(&mut self, change: Change) -> SqlResult<()> {
        let batch = change.batch().clone();
        let overlay = Arc::make_mut(&mut self.overlay);
        match self.target.state.encode_keys(&batch)? {
            None => overlay.appended.push(batch),
            Some(keys) => {
                let rows = self.target.state.row_codec().encode(batch.columns())?;
                for (key, row) in keys.iter().zip(rows.iter()) {
                    let now = matches!(change, Change::Upsert(_)).then(|| row.data().to_vec());
                    overlay.keyed.insert(key.data().to_vec(), now);
                }
            }
        }
        self.changes.push(change);
        Ok(())
    }
}

/// A session's transaction block.
#[derive(Default)]
pub enum TxnState {
    /// No transaction block: each statement commits on its own.
    #[default]
    Idle,
    /// Inside `BEGIN`: writes wait for `COMMIT`.
    Open(Transaction),
    /// A statement of the block failed: everything up to `COMMIT` or `ROLLBACK` is refused.
    Failed,
}

#[derive(Default)]
pub struct Transaction {
    /// By table id: the order in which a commit locks them.
    pub(crate) tables: BTreeMap<ObjectId, TableWrites>,
    /// Bytes of rows held, against [`MAX_WRITE_BYTES`].
    pub(crate) bytes: usize,
    /// Set by a query of the block whose rows failed while they were sent (after its
    /// statement returned): the block is then failed, as if the statement had failed.
    pub(crate) poisoned: Arc<std::sync::atomic::AtomicBool>,
}

impl Transaction {
    pub fn has_writes(&self) -> bool {
        self.tables.values().any(|t| !t.changes.is_empty())
    }

    /// The overlays its statements read, by column family.
    pub(crate) fn overlays(&self) -> crate::relation::TxnOverlays {
        crate::relation::TxnOverlays(self.tables.values().map(|t| (t.target.state.cf.clone(), t.overlay.clone())).collect())
    }
}

/// Counts `batches`' bytes against [`MAX_WRITE_BYTES`], with what is already held.
pub(crate) fn check_size(held: usize, batches: &[RecordBatch]) -> SqlResult<usize> {
    let bytes = held + batches.iter().map(|b| b.get_array_memory_size()).sum::<usize>();
    if bytes > MAX_WRITE_BYTES {
        return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("write too large: more than {} MiB of rows in one statement or transaction", MAX_WRITE_BYTES >> 20))
            .with_hint("split the write into several statements or transactions"));
    }
    Ok(bytes)
}

impl Database {
    /// Commits `tables`' writes as one atomic, durable write that every view sees in one epoch.
    /// Locks the tables (in id order) unless the caller holds their locks (`locked`).
    pub(crate) async fn commit(&self, tables: Vec<TableWrites>, locked: bool) -> SqlResult<()> {
        self.commit_with(tables, locked, StateWrite::default()).await
    }

    /// [`Self::commit`], with `extra` in the same synced write (an API write's idempotency
    /// key: stored if and only if its rows are).
    pub(crate) async fn commit_with(&self, tables: Vec<TableWrites>, locked: bool, extra: StateWrite) -> SqlResult<()> {
        let mut guards = vec![];
        if !locked {
            for t in &tables {
                guards.push(t.target.lock.clone().lock_owned().await);
            }
        }
        validate(&tables)?;
        let tables: Vec<TableWrites> = tables.into_iter().filter(|t| !t.changes.is_empty()).collect();
        if tables.is_empty() {
            return Ok(());
        }
        // No barrier between the first writer's changelog and the last one's.
        let _barriers = self.coordinator.hold_barriers().await;
        let mut parts = vec![];
        for t in tables {
            let (prepared, prepared_rx) = oneshot::channel();
            let (decide, decision) = oneshot::channel();
            let (done, done_rx) = oneshot::channel();
            let write = TableWrite::Prepare { changes: t.changes, prepared, decision };
            t.target.writer.send(TableRequest { write, done }).await.map_err(|_| not_accepting(&t.target.name))?;
            parts.push((t.target.name, prepared_rx, decide, done_rx));
        }
        let mut write = extra;
        for (name, prepared, _, _) in &mut parts {
            // On an error, the other writers' decisions are dropped: they send nothing.
            write.append(prepared.await.map_err(|_| not_accepting(name))??);
        }
        let mut decisions = vec![];
        let mut waits = vec![];
        for (name, _, decide, done) in parts {
            decisions.push(decide);
            waits.push((name, done));
        }
        // The durable write and the writers' release happen together, off the workers and in
        // a task of their own: should this statement's future be dropped once the write is
        // on disk, the views still get its changelog. A failed write releases nobody.
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.write_durable(write)?;
            decisions.into_iter().for_each(|d| {
                let _ = d.send(true);
            });
            Ok::<(), openclaw_storage::StorageError>(())
        })
        .await
        .map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))??;
        for (name, done) in waits {
            // Durable already: a writer that stops now only fails to tell its views.
            done.await.map_err(|_| not_accepting(&name))??;
        }
        Ok(())
    }
}

/// Checks that every row a transaction read to update or delete is still as it read it.
fn validate(tables: &[TableWrites]) -> SqlResult<()> {
    for t in tables.iter().filter(|t| !t.read.is_empty()) {
        let keys: Vec<&[u8]> = t.read.keys().map(Vec::as_slice).collect();
        let now = t.target.state.store.multi_get(&t.target.state.cf, &keys)?;
        if t.read.values().zip(now).any(|(then, now)| *then != now) {
            return Err(SqlError::new(SqlState::SerializationFailure, "could not serialize access due to concurrent update")
                .with_detail(format!("a row of {} that this transaction updated or deleted was changed by another transaction that committed first", quote(&t.target.name)))
                .with_hint("the transaction wrote nothing; retry it"));
        }
    }
    Ok(())
}

fn not_accepting(name: &str) -> SqlError {
    SqlError::new(SqlState::Internal, format!("table {} is not accepting writes", quote(name)))
}

/// `output`, whose rows, should they fail while sent, set `poisoned`.
pub(crate) fn watch_rows(output: crate::QueryOutput, poisoned: Arc<std::sync::atomic::AtomicBool>) -> crate::QueryOutput {
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt;
    match output {
        crate::QueryOutput::Rows { schema, stream } => {
            let rows = stream.inspect(move |batch| {
                if batch.is_err() {
                    poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
            crate::QueryOutput::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, rows)) }
        }
        other => other,
    }
}

/// What a statement does to the transaction block.
enum Control {
    Begin,
    Commit,
    Rollback,
}

impl Database {
    /// Runs `BEGIN`, `COMMIT` and `ROLLBACK`, and refuses what a transaction block does not
    /// allow; `None` for a statement that runs as usual.
    ///
    /// As in PostgreSQL: `BEGIN` inside a block and `COMMIT` or `ROLLBACK` outside one do
    /// nothing; after a failed statement everything but `COMMIT`/`ROLLBACK` is refused with
    /// 25P02, and `COMMIT` then rolls back. DDL and `FLUSH` run at once, outside the
    /// transaction (as in Materialize), so they are refused (25001) once it has written.
    pub(crate) async fn transaction_control(&self, vars: &mut crate::SessionVars, stmt: &crate::parser::OcStatement) -> Option<SqlResult<crate::QueryOutput>> {
        use crate::parser::OcStatement;
        use crate::QueryOutput;
        use datafusion::sql::sqlparser::ast::Statement;
        if let TxnState::Open(txn) = &vars.txn {
            if txn.poisoned.load(std::sync::atomic::Ordering::SeqCst) {
                vars.txn = TxnState::Failed;
            }
        }
        let control = match stmt {
            OcStatement::Standard(s) => match s.as_ref() {
                Statement::StartTransaction { .. } => Some(Control::Begin),
                Statement::Commit { .. } => Some(Control::Commit),
                Statement::Rollback { savepoint: None, .. } => Some(Control::Rollback),
                Statement::Rollback { .. } | Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
                    return Some(Err(SqlError::not_supported("savepoints are not supported")))
                }
                _ => None,
            },
            _ => None,
        };
        match (control, &vars.txn) {
            (Some(Control::Begin), TxnState::Idle) => {
                vars.txn = TxnState::Open(Transaction::default());
                Some(Ok(QueryOutput::command("BEGIN")))
            }
            (Some(Control::Begin), _) => Some(Ok(QueryOutput::command("BEGIN"))),
            (Some(Control::Commit), _) => Some(match std::mem::take(&mut vars.txn) {
                TxnState::Open(txn) => self.commit(txn.tables.into_values().collect(), false).await.map(|()| QueryOutput::command("COMMIT")),
                TxnState::Failed => Ok(QueryOutput::command("ROLLBACK")),
                TxnState::Idle => Ok(QueryOutput::command("COMMIT")),
            }),
            (Some(Control::Rollback), _) => {
                vars.txn = TxnState::Idle;
                Some(Ok(QueryOutput::command("ROLLBACK")))
            }
            (None, TxnState::Failed) => Some(Err(SqlError::new(
                SqlState::InFailedSqlTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            ))),
            (None, TxnState::Open(txn)) if txn.has_writes() && !runs_in_a_block(stmt) => Some(Err(SqlError::new(
                SqlState::ActiveSqlTransaction,
                "this statement cannot run inside a transaction block that has written",
            )
            .with_hint("COMMIT or ROLLBACK first; DDL and FLUSH take effect at once and cannot be rolled back"))),
            (None, _) => None,
        }
    }
}

/// Statements that belong in a transaction block: reads, writes and settings.
fn runs_in_a_block(stmt: &crate::parser::OcStatement) -> bool {
    use crate::parser::OcStatement;
    matches!(
        stmt,
        OcStatement::Standard(_)
            | OcStatement::SetVar { .. }
            | OcStatement::ShowVar(_)
            | OcStatement::Show(_)
            | OcStatement::Describe(_)
            | OcStatement::ShowStateTables
            | OcStatement::ShowCheckpoints
            | OcStatement::ExplainCreateView(_)
            | OcStatement::ExplainAnalyze { .. }
    )
}
