//! The objects a database holds: tables, sources and materialized views, with what runs for
//! them and what depends on what.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use openclaw_connectors::Connector;
use openclaw_engine::coordinator::RootId;
use openclaw_engine::operators::MaterializedState;
use openclaw_engine::source::SourceProgress;
use openclaw_engine::table::TableRequest;
use openclaw_engine::ObjectId;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::SqlError;
use crate::parser::ObjectKind;
use crate::Options;

pub struct Entry {
    pub id: ObjectId,
    pub name: String,
    pub kind: ObjectKind,
    pub schema: SchemaRef,
    /// The statement that created it, normalised.
    pub definition: String,
    /// Names of the objects it reads.
    pub depends_on: Vec<String>,
    /// Columns whose watermarks it emits: a table's or source's declared one, or those a
    /// view's plan carries through.
    pub watermark_columns: Vec<usize>,
    pub detail: Detail,
}

pub enum Detail {
    Table {
        writer: mpsc::Sender<TableRequest>,
        state: Arc<MaterializedState>,
        primary_key: Option<Vec<usize>>,
        /// Held by each statement or commit that writes the table, for its whole run.
        write_lock: Arc<tokio::sync::Mutex<()>>,
        root: RootId,
        task: AbortHandle,
        /// For a table fed by a connector (`CREATE TABLE ... WITH (connector = ...)`).
        ingest: Option<Ingest>,
        /// For a table fed by requests sent to it (`connector = 'webhook'`): their checks.
        receiver: Option<Arc<dyn openclaw_connectors::Receiver>>,
    },
    Source {
        watermark: Option<openclaw_engine::watermark::WatermarkSpec>,
        connector: &'static dyn Connector,
        options: Options,
        /// Progress of every reader (one per view reading the source).
        readers: Mutex<Vec<Arc<SourceProgress>>>,
        /// Its dead-letter table (`<source>_dlq`), for connectors that have one.
        dead_letters: Option<String>,
    },
    View(ViewRuntime),
    /// A plain view: nothing runs for it; DataFusion expands its plan where it is read.
    PlainView,
    /// A function written in SQL, registered with DataFusion ([`crate::sql_functions`]).
    Function,
    /// A durable subscription: the view it logs and its log.
    Subscription { view: String, log: Arc<openclaw_engine::operators::ChangeLog> },
}

/// The task that feeds a table from a connector.
pub struct Ingest {
    pub task: AbortHandle,
    /// Asks the task to read up to where its stream ends now; answered once the rows are in
    /// the table (what `FLUSH` waits for).
    pub flush: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
    /// Its dead-letter table.
    pub dead_letters: Option<String>,
    pub progress: Arc<SourceProgress>,
}

pub struct ViewRuntime {
    pub state: Arc<MaterializedState>,
    /// Its operators' state tables, each with one column family per partition.
    pub state_tables: Vec<openclaw_engine::plan::StateTable>,
    /// Rows dropped behind the watermark of a closed window.
    pub late_rows: Arc<std::sync::atomic::AtomicU64>,
    /// Its rows whose expressions failed; `None` for a sink, which fails instead.
    pub eval_errors: Option<Arc<openclaw_engine::eval_errors::EvalErrors>>,
    /// The column families that keep those counts (some may not exist).
    pub error_tables: Vec<String>,
    pub tasks: Vec<AbortHandle>,
    pub roots: Vec<RootId>,
    /// Set when one of its operators failed; the view then stops and reports this.
    pub failure: Arc<Mutex<Option<SqlError>>>,
    /// Whether this start resumed it from a checkpoint (rather than rebuilding it).
    pub resumed: bool,
    /// The changelogs of its durable subscriptions, written by its materialize operator.
    pub logs: openclaw_engine::operators::ChangeLogs,
    /// While its CREATE fills it: how each input's backfill goes.
    pub backfill: Mutex<Option<Vec<Arc<openclaw_engine::backfill::BackfillProgress>>>>,
    /// Its plan as `EXPLAIN` printed it when it started, one node per line.
    pub plan: String,
    /// Each task's counters (rows in and out, processing and blocked time), naming the line
    /// of `plan` its node is on: what `EXPLAIN ANALYZE` and `/metrics` show.
    pub operators: Vec<Arc<openclaw_engine::metrics::OperatorMetrics>>,
}

impl ViewRuntime {
    pub fn backfilling(&self) -> bool {
        self.backfill.lock().expect("backfill lock").is_some()
    }

    /// Rows its inputs have sent it so far, while it backfills.
    pub fn backfilled_rows(&self) -> Option<u64> {
        let backfill = self.backfill.lock().expect("backfill lock");
        backfill.as_ref().map(|b| b.iter().map(|p| p.rows_sent.load(std::sync::atomic::Ordering::Relaxed)).sum())
    }
}

#[derive(Default)]
pub struct Catalog {
    next_id: ObjectId,
    entries: BTreeMap<String, Entry>,
    /// Schemas other than `public` ([`crate::schemas`]), with their ids.
    schemas: BTreeMap<String, ObjectId>,
    /// What `pg_catalog` describes, kept in step with `entries`.
    relations: crate::pg_catalog::Relations,
    /// Changes with every object added, replaced or removed: plans kept across executions
    /// ([`crate::prepared`]) hold only while it stays.
    version: u64,
}

impl Catalog {
    /// An empty catalog that keeps `relations` (what `pg_catalog` reads) in step.
    pub fn with_relations(relations: crate::pg_catalog::Relations) -> Self {
        Self { relations, ..Self::default() }
    }

    /// Whether `name` is a source's (or a connector table's) dead-letter table.
    pub fn is_dead_letter_table(&self, name: &str) -> bool {
        let source = name.strip_suffix("_dlq").and_then(|s| self.get(s));
        match source.map(|e| &e.detail) {
            Some(Detail::Source { dead_letters: Some(d), .. }) => d == name,
            Some(Detail::Table { ingest: Some(Ingest { dead_letters: Some(d), .. }), .. }) => d == name,
            _ => false,
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.version += 1;
        self.entries.get_mut(name)
    }

    /// Makes the next [`Self::next_id`] return `id`: a restart recreates each object under
    /// the id its column families are named by. Ids only grow.
    pub fn resume_ids_at(&mut self, id: ObjectId) {
        assert!(id > self.next_id, "catalog records replay in id order");
        self.next_id = id - 1;
    }

    pub fn next_id(&mut self) -> ObjectId {
        self.next_id += 1;
        self.next_id
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// See [`Self::version`]'s field.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn insert(&mut self, entry: Entry) {
        self.version += 1;
        self.relations.insert(&entry);
        let previous = self.entries.insert(entry.name.clone(), entry);
        assert!(previous.is_none(), "catalog names are unique");
    }

    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.version += 1;
        self.relations.remove(name);
        self.entries.remove(name)
    }

    /// The id of schema `name` (not `public`, which every database has and no record keeps).
    pub fn schema_id(&self, name: &str) -> Option<ObjectId> {
        self.schemas.get(name).copied()
    }

    /// Schemas other than `public`, by name.
    pub fn schema_names(&self) -> impl Iterator<Item = String> + '_ {
        self.schemas.keys().cloned()
    }

    pub fn add_schema(&mut self, name: &str, id: ObjectId) {
        self.version += 1;
        self.relations.add_schema(name, id);
        let previous = self.schemas.insert(name.to_string(), id);
        assert!(previous.is_none(), "schema names are unique");
    }

    pub fn remove_schema(&mut self, name: &str) {
        assert!(self.in_schema(name).next().is_none(), "a schema is dropped empty");
        self.version += 1;
        self.relations.remove_schema(name);
        self.schemas.remove(name);
    }

    /// The objects of schema `schema` (other than `public`).
    pub fn in_schema<'a>(&'a self, schema: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.values().filter(move |e| crate::schemas::split(&e.name).0 == schema)
    }

    pub fn of_kind(&self, kind: ObjectKind) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(move |e| e.kind == kind)
    }

    /// Every object that reads `name`, directly or through others, latest first (the order
    /// in which they can be dropped).
    pub fn dependents(&self, name: &str) -> Vec<&Entry> {
        let mut found: Vec<&Entry> = vec![];
        let mut frontier = vec![name.to_string()];
        while let Some(n) = frontier.pop() {
            for e in self.entries.values() {
                if e.depends_on.contains(&n) && !found.iter().any(|f| f.id == e.id) {
                    found.push(e);
                    frontier.push(e.name.clone());
                }
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.id));
        found
    }
}
