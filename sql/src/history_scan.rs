//! `history('name')` as a table: the Parquet files of a history in both tiers, listed when the
//! query runs (the hot tier first, then the cold one, so that a file being moved is read once),
//! pruned by the partition columns (`date`, `hour`) the query's filters bound, and read by
//! DataFusion's Parquet scan with the other filters pushed down to row groups.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use openclaw_connectors::parquet::{cold_store, list_files, relative_path, sink_dir_name};

use crate::error::{SqlError, SqlState};
use crate::history::SinkFiles;

/// A history's files as one table.
#[derive(Debug)]
pub(crate) struct HistoryTable {
    files: SinkFiles,
    /// The files' columns, then the partition columns.
    schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
}

impl HistoryTable {
    pub(crate) fn new(files: SinkFiles) -> Self {
        let partition_fields: Vec<FieldRef> = files.partitioning.columns().iter().map(|c| Arc::new(Field::new(*c, DataType::Utf8, false))).collect();
        let fields: Vec<FieldRef> = files.schema.fields().iter().cloned().chain(partition_fields.iter().cloned()).collect();
        Self { schema: Arc::new(Schema::new(fields)), files, partition_fields }
    }

    fn is_partition_column(&self, name: &str) -> bool {
        self.partition_fields.iter().any(|f| f.name() == name)
    }

    /// Whether `filter` reads partition columns only (and can prune files).
    fn on_partitions(&self, filter: &Expr) -> bool {
        let columns = filter.column_refs();
        !columns.is_empty() && columns.iter().all(|c| self.is_partition_column(&c.name))
    }
}

/// One file of a tier: where it is in its store, its size, its partition values.
struct TierFile {
    location: String,
    bytes: u64,
    partition: Vec<String>,
}

/// The files of both tiers: the hot tier's unmoved files, then the cold tier's files that are
/// not among them.
fn list_tiers(files: &SinkFiles, partitions: usize) -> Result<(Vec<TierFile>, Vec<TierFile>)> {
    let mut seen = HashSet::new();
    let mut hot = vec![];
    for file in list_files(&files.path).map_err(|e| DataFusionError::External(Box::new(e)))? {
        if file.uploaded {
            continue;
        }
        let relative = relative_path(&files.path, &file.path).map_err(DataFusionError::Execution)?;
        let location = file.path.display().to_string().trim_start_matches('/').to_string();
        hot.push(TierFile { location, bytes: file.bytes, partition: partition_values(&relative, partitions) });
        seen.insert(relative);
    }
    let mut cold = vec![];
    if let Some(store) = cold_store() {
        let name = sink_dir_name(&files.path);
        let listed = store.list(&name).map_err(|e| {
            let error = SqlError::new(SqlState::ObjectNotInPrerequisiteState, format!("the cold tier cannot be read: {e}"))
                .with_hint("SHOW HISTORY shows its status; files written since wait in the hot tier");
            DataFusionError::External(Box::new(error))
        })?;
        for (relative, bytes, _) in listed {
            if relative.ends_with(".parquet") && !seen.contains(&relative) {
                let location = format!("{}/{relative}", store.sink_prefix(&name));
                cold.push(TierFile { location, bytes, partition: partition_values(&relative, partitions) });
            }
        }
    }
    Ok((hot, cold))
}

/// `date=2026-12-02/hour=23/part-….parquet` → `["2026-12-02", "23"]`, the first `n`.
fn partition_values(relative: &str, n: usize) -> Vec<String> {
    relative.split('/').filter_map(|part| part.split_once('=').map(|(_, v)| v.to_string())).take(n).collect()
}

#[async_trait]
impl TableProvider for HistoryTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter is re-checked above the scan; pushed down, it prunes files (on partition
    /// columns) and row groups (on the others).
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(&self, state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> Result<Arc<dyn ExecutionPlan>> {
        let files = self.files.clone();
        let n = self.partition_fields.len();
        let (hot, cold) = tokio::task::spawn_blocking(move || list_tiers(&files, n)).await.map_err(|e| DataFusionError::Execution(e.to_string()))??;
        let (partition_filters, row_filters): (Vec<Expr>, Vec<Expr>) = filters.iter().cloned().partition(|f| self.on_partitions(f));
        let hot = self.prune(state, &partition_filters, hot)?;
        let cold = self.prune(state, &partition_filters, cold)?;
        let table_schema = TableSchema::builder(self.files.schema.clone()).with_table_partition_cols(self.partition_fields.clone()).build();
        let mut source = ParquetSource::new(table_schema);
        let file_columns_only = row_filters.into_iter().filter(|f| f.column_refs().iter().all(|c| !self.is_partition_column(&c.name)));
        if let Some(predicate) = conjunction(file_columns_only) {
            let df_schema = DFSchema::try_from(self.files.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let source = Arc::new(source);
        let mut scans: Vec<Arc<dyn ExecutionPlan>> = vec![];
        let tiers = [(ObjectStoreUrl::local_filesystem(), hot)].into_iter().chain(cold_store().map(|c| (ObjectStoreUrl::parse(c.root_url.as_str()), cold)).map(|(u, f)| (u.expect("the cold store's URL"), f)));
        for (url, tier) in tiers {
            if tier.is_empty() {
                continue;
            }
            let group: Vec<PartitionedFile> = tier
                .into_iter()
                .map(|f| PartitionedFile::new(f.location, f.bytes).with_partition_values(f.partition.into_iter().map(|v| ScalarValue::Utf8(Some(v))).collect()))
                .collect();
            // Two groups, so that the two cores read at once.
            let groups: Vec<FileGroup> = split_in_two(group).into_iter().map(FileGroup::new).collect();
            let config = FileScanConfigBuilder::new(url, source.clone())
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            scans.push(DataSourceExec::from_data_source(config));
        }
        match scans.len() {
            0 => {
                let projected = match projection {
                    Some(p) => Arc::new(self.schema.project(p)?),
                    None => self.schema.clone(),
                };
                Ok(Arc::new(EmptyExec::new(projected)))
            }
            _ => UnionExec::try_new(scans),
        }
    }
}

impl HistoryTable {
    /// The files whose partition values pass every filter on partition columns.
    fn prune(&self, state: &dyn Session, filters: &[Expr], files: Vec<TierFile>) -> Result<Vec<TierFile>> {
        let Some(predicate) = conjunction(filters.to_vec()) else { return Ok(files) };
        if files.is_empty() {
            return Ok(files);
        }
        let schema = Arc::new(Schema::new(self.partition_fields.clone()));
        let columns: Vec<ArrayRef> = (0..self.partition_fields.len())
            .map(|i| Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.partition.get(i).cloned().unwrap_or_default()))) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let predicate = state.create_physical_expr(predicate, &DFSchema::try_from(schema.as_ref().clone())?)?;
        let keep = predicate.evaluate(&batch)?.into_array(files.len())?;
        let keep = keep.as_boolean();
        Ok(files.into_iter().enumerate().filter(|(i, _)| keep.is_valid(*i) && keep.value(*i)).map(|(_, f)| f).collect())
    }
}

/// `files` in two halves (one when there is a single file).
fn split_in_two(mut files: Vec<PartitionedFile>) -> Vec<Vec<PartitionedFile>> {
    if files.len() < 2 {
        return vec![files];
    }
    let second = files.split_off(files.len() / 2);
    vec![files, second]
}
