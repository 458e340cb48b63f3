//! `INSERT`, `UPDATE` and `DELETE`: DataFusion plans and evaluates the rows; the table's
//! writer applies them and emits the changelog at the commit.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::sqlparser::ast::{AssignmentTarget, Statement};
use futures::StreamExt;
use openclaw_engine::table::Change;

use crate::catalog::Detail;
use crate::database::{undefined, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::relation::QuerySnapshot;
use crate::session::SessionVars;
use crate::transaction::{TableWrites, TxnState, WriteTarget};

impl Database {
    /// `INSERT`, `UPDATE` or `DELETE`: outside a transaction block, evaluated and committed with
    /// the table locked; inside one, evaluated over the transaction's own changes and kept
    /// until `COMMIT` (see [`crate::transaction`]). Either way a statement that fails writes
    /// nothing.
    pub(crate) async fn dml(&self, vars: &mut SessionVars, stmt: Statement, params: Option<Vec<ScalarValue>>) -> SqlResult<QueryOutput> {
        let updated_columns: Vec<String> = match &stmt {
            Statement::Update(u) => u
                .assignments
                .iter()
                .filter_map(|a| match &a.target {
                    AssignmentTarget::ColumnName(n) => n.0.last().map(|p| p.to_string().trim_matches('"').to_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        // Planned once to learn the table; the rows are read at execution, from the snapshot
        // of the state it runs with.
        let plan = self.plan(&self.query_state(), stmt).await?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(SqlError::new(SqlState::Internal, "DML planned to something else"));
        };
        let name = crate::schemas::reference_name(&dml.table_name);
        let (target, table_schema, primary_key) = self.write_target(&name).await?;
        let (tag, is_delete) = match &dml.op {
            WriteOp::Insert(_) => ("INSERT", false),
            WriteOp::Update => ("UPDATE", false),
            WriteOp::Delete => ("DELETE", true),
            other => crate::not_supported!("{other} is not supported"),
        };
        if tag != "INSERT" {
            let Some(pk) = &primary_key else {
                return Err(SqlError::not_supported(format!("{tag} needs a primary key on table {}", quote(&name)))
                    .with_hint("declare PRIMARY KEY (...) when creating the table"));
            };
            let pk_names: Vec<&String> = pk.iter().map(|&i| table_schema.field(i).name()).collect();
            if let Some(c) = updated_columns.iter().find(|c| pk_names.contains(c)) {
                return Err(SqlError::not_supported(format!("UPDATE of primary-key column {} is not supported", quote(c)))
                    .with_hint("DELETE the row and INSERT it with its new key"));
            }
        }
        let change = move |b: RecordBatch| if is_delete { Change::Delete(b) } else { Change::Upsert(b) };
        let input = (*dml.input).clone();
        let affected = match &mut vars.txn {
            TxnState::Open(txn) => {
                let (state, snapshot) = self.query_state_with(Some(txn.overlays()));
                let batches = self.rows_to_write(state, input, params, &table_schema, txn.bytes).await?;
                txn.bytes = crate::transaction::check_size(txn.bytes, &batches)?;
                let writes = txn.tables.entry(target.id).or_insert_with(|| TableWrites::new(target));
                let mut affected = 0;
                for batch in batches {
                    if tag != "INSERT" {
                        note_reads(writes, &batch, &snapshot)?;
                    }
                    affected += batch.num_rows();
                    writes.push(change(batch))?;
                }
                affected
            }
            _ => {
                let _locked = target.lock.clone().lock_owned().await;
                let state = self.query_state();
                let batches = self.rows_to_write(state, input, params, &table_schema, 0).await?;
                let affected = batches.iter().map(|b| b.num_rows()).sum();
                let mut writes = TableWrites::new(target);
                writes.changes = batches.into_iter().map(change).collect();
                self.commit(vec![writes], true).await?;
                affected
            }
        };
        let tag = if tag == "INSERT" { "INSERT 0".to_string() } else { tag.to_string() };
        Ok(QueryOutput::Command { tag, rows: Some(affected) })
    }

    /// The table `name` as a write target, with its schema and primary key.
    pub(crate) async fn write_target(&self, name: &str) -> SqlResult<(WriteTarget, SchemaRef, Option<Vec<usize>>)> {
        let catalog = self.catalog.lock().await;
        let entry = catalog.get(name).ok_or_else(|| undefined(name))?;
        match &entry.detail {
            Detail::Table { writer, state, primary_key, write_lock, .. } => {
                let target = WriteTarget { id: entry.id, name: name.to_string(), writer: writer.clone(), state: state.clone(), lock: write_lock.clone() };
                Ok((target, entry.schema.clone(), primary_key.clone()))
            }
            _ => Err(SqlError::new(SqlState::WrongObjectType, format!("cannot change {} {}", entry.kind.sql_name(), quote(name)))
                .with_hint("only tables take INSERT, UPDATE and DELETE")),
        }
    }

    /// Every row `input` produces, in the table's exact schema, held against the size limit.
    async fn rows_to_write(
        &self,
        state: datafusion::execution::context::SessionState,
        input: LogicalPlan,
        params: Option<Vec<ScalarValue>>,
        table_schema: &SchemaRef,
        held_bytes: usize,
    ) -> SqlResult<Vec<RecordBatch>> {
        let mut stream = self.run_plan(state, input, params).await?;
        let mut out = vec![];
        let mut bytes = held_bytes;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = conform(&batch, table_schema)?;
            bytes = crate::transaction::check_size(bytes, std::slice::from_ref(&batch))?;
            out.push(batch);
        }
        Ok(out)
    }
}

/// Records, for the keys of `batch` that the transaction has not written yet, the committed
/// row its statement read (as of `snapshot`), for [`Database::commit`] to validate.
fn note_reads(writes: &mut TableWrites, batch: &RecordBatch, snapshot: &QuerySnapshot) -> SqlResult<()> {
    let Some(keys) = writes.target.state.encode_keys(batch)? else { return Ok(()) };
    let fresh: Vec<&[u8]> = keys
        .iter()
        .map(|k| k.data())
        .filter(|k| !writes.overlay.keyed.contains_key(*k) && !writes.read.contains_key(*k))
        .collect();
    let state = &writes.target.state;
    let rows = state.store.multi_get_at(&state.cf, &fresh, Some(&snapshot.0))?;
    for (key, row) in fresh.into_iter().zip(rows) {
        writes.read.insert(key.to_vec(), row);
    }
    Ok(())
}

/// Casts the planned rows to the table's exact schema and checks NOT NULL.
pub(crate) fn conform(batch: &RecordBatch, schema: &datafusion::arrow::datatypes::SchemaRef) -> SqlResult<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(SqlError::new(SqlState::Internal, "DML produced the wrong number of columns"));
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (col, field) in batch.columns().iter().zip(schema.fields()) {
        if !field.is_nullable() && col.null_count() > 0 {
            return Err(SqlError::new(SqlState::NotNullViolation, format!("null value in column {} violates not-null constraint", quote(field.name()))));
        }
        let col = if col.data_type() == field.data_type() { col.clone() } else { cast(col, field.data_type()).map_err(|e| SqlError::from(datafusion::error::DataFusionError::from(e)))? };
        columns.push(col);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| SqlError::new(SqlState::Internal, e.to_string()))
}
