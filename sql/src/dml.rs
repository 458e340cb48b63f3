//! `INSERT`, `UPDATE` and `DELETE`: DataFusion plans and evaluates the rows; the table's
//! writer applies them and emits the changelog.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::sqlparser::ast::{AssignmentTarget, Statement};
use openclaw_engine::table::{TableRequest, TableWrite};
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::catalog::Detail;
use crate::database::{undefined, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};

impl Database {
    pub(crate) async fn dml(&self, stmt: Statement, params: Option<Vec<ScalarValue>>) -> SqlResult<QueryOutput> {
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
        let state = self.query_state();
        let plan = self.plan(&state, stmt).await?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(SqlError::new(SqlState::Internal, "DML planned to something else"));
        };
        let name = dml.table_name.table().to_string();
        let (writer, table_schema, primary_key) = {
            let catalog = self.catalog.lock().await;
            let entry = catalog.get(&name).ok_or_else(|| undefined(&name))?;
            match &entry.detail {
                Detail::Table { writer, primary_key, .. } => (writer.clone(), entry.schema.clone(), primary_key.clone()),
                _ => {
                    return Err(SqlError::new(SqlState::WrongObjectType, format!("cannot change {} {}", entry.kind.sql_name(), quote(&name)))
                        .with_hint("only tables take INSERT, UPDATE and DELETE"))
                }
            }
        };
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
        let mut batches = self.run_plan(state, (*dml.input).clone(), params).await?;
        let mut affected = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = conform(&batch, &table_schema)?;
            for start in (0..batch.num_rows()).step_by(self.config.chunk_size_rows.max(1)) {
                let len = self.config.chunk_size_rows.min(batch.num_rows() - start);
                let part = batch.slice(start, len);
                let write = if is_delete { TableWrite::Delete(part) } else { TableWrite::Upsert(part) };
                let (done, wait) = oneshot::channel();
                writer
                    .send(TableRequest { write, done })
                    .await
                    .map_err(|_| SqlError::new(SqlState::Internal, format!("table {} is not accepting writes", quote(&name))))?;
                affected += wait.await.map_err(|_| SqlError::new(SqlState::Internal, "table writer stopped"))??;
            }
        }
        let tag = if tag == "INSERT" { "INSERT 0".to_string() } else { tag.to_string() };
        Ok(QueryOutput::Command { tag, rows: Some(affected) })
    }
}

/// Casts the planned rows to the table's exact schema and checks NOT NULL.
fn conform(batch: &RecordBatch, schema: &datafusion::arrow::datatypes::SchemaRef) -> SqlResult<RecordBatch> {
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
