//! `SUBSCRIBE`: a client's live feed of a view's (or a query's) changes, read with
//! `COPY (SUBSCRIBE ...) TO STDOUT` or through a cursor (`DECLARE c CURSOR FOR SUBSCRIBE ...`,
//! `FETCH`, `CLOSE`).
//!
//! A subscription is a dataflow like a view's, planned from the same query, that ends in a
//! [`SubscribeOperator`] instead of stored rows: it is not in the catalog and lives as long
//! as its client holds the [`Subscription`]. Its rows are Materialize's form:
//!
//! | column | type | |
//! |---|---|---|
//! | `token` | `bigint` | the barrier epoch that made the change visible; never decreases |
//! | `diff` | `bigint` | the row's net change in copies at that token: positive it appears, negative it goes (an update is both); `NULL` on a progress row |
//! | the view's columns | | `NULL` on a progress row |
//!
//! The snapshot comes first, every row with the token of the first consistent point after
//! the subscription attached; then every change after it. Applying every row with token up
//! to `T` gives the query's result at `T`. With `progress = true`, a row with a `NULL`
//! `diff` says that every change up to its token has been sent.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::Query;
use openclaw_engine::operators::{SubscribeOperator, SubscriberQueue, SubscriptionEvent};
use openclaw_engine::plan::{build_dataflow, StateLocation};
use openclaw_engine::{BarrierKind, Mutation, ObjectId};

use crate::database::Database;
use crate::error::{SqlError, SqlResult, SqlState};
use crate::parser::CreateView;
use crate::session::SessionVars;

/// Most rows one `FETCH` returns (`FETCH ALL` included): what is waiting beyond stays for the
/// next.
pub const MAX_FETCH_ROWS: usize = 65_536;

/// Most cursors one session may hold open.
pub const MAX_CURSORS_PER_SESSION: usize = 64;

/// `SUBSCRIBE [TO] <object | (query)> [WITH (snapshot = .., progress = ..)] [SINCE token]`.
#[derive(Debug, Clone)]
pub struct SubscribeStmt {
    pub query: Box<Query>,
    /// The object subscribed to by name (`SUBSCRIBE v`), rather than a query.
    pub object: Option<datafusion::sql::sqlparser::ast::ObjectName>,
    pub options: crate::Options,
    /// `SINCE token`: every change after it (a durable subscription only).
    pub since: Option<u64>,
    /// Rows of the token after `since` the client already has (SSE's `Last-Event-ID: T:k`
    /// resumes after `T - 1`, skipping `k` rows of `T`).
    pub since_rows: usize,
}

impl SubscribeStmt {
    /// `(snapshot, progress)` from the options (defaults: snapshot, no progress rows).
    fn settings(&self) -> SqlResult<(bool, bool)> {
        let (mut snapshot, mut progress) = (true, false);
        for (key, value) in &self.options {
            let flag = match key.as_str() {
                "snapshot" => &mut snapshot,
                "progress" => &mut progress,
                other => {
                    return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unrecognized SUBSCRIBE option \"{other}\""))
                        .with_hint("SUBSCRIBE takes snapshot = true | false and progress = true | false"))
                }
            };
            *flag = match value.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => true,
                "false" | "off" | "no" | "0" => false,
                _ => return Err(SqlError::new(SqlState::InvalidParameterValue, format!("SUBSCRIBE option \"{key}\" must be true or false, not \"{value}\""))),
            };
        }
        Ok((snapshot, progress))
    }
}

/// Where a subscription's events come from.
enum Feed {
    /// A queue the view (or the subscription's own dataflow) fills at barriers.
    Queue(Arc<SubscriberQueue>),
    /// A durable subscription's log, then its view's queue.
    Durable(Box<crate::subscriptions::DurableFeed>),
}

impl Feed {
    async fn next(&mut self) -> SqlResult<SubscriptionEvent> {
        match self {
            Feed::Queue(queue) => Ok(queue.pop().await),
            Feed::Durable(feed) => feed.next_event().await,
        }
    }

    /// An event that is there now, without waiting. A durable feed waits for checkpoints, so
    /// it is read one event per wait.
    fn try_next(&mut self) -> Option<SubscriptionEvent> {
        match self {
            Feed::Queue(queue) => queue.try_pop(),
            Feed::Durable(_) => None,
        }
    }
}

/// A running subscription. Dropping it stops its dataflow.
pub struct Subscription {
    schema: SchemaRef,
    feed: Feed,
    /// Changes at or before this token are the snapshot: they take this token.
    start: u64,
    snapshot: bool,
    progress: bool,
    /// Rows read from the queue and not yet returned (a `FETCH` took fewer).
    leftover: Option<RecordBatch>,
    ended: bool,
    /// Held for its `Drop`: stops the dataflow with the subscription (none for a view's
    /// subscriber, which the view serves itself and lets go once this queue is dropped).
    _teardown: Option<Teardown>,
    /// Its place under the subscriber limits, given back when it is dropped.
    _slot: Option<SubscriberSlot>,
}

/// Subscriptions open now: in all, and per object subscribed to by name.
#[derive(Default)]
pub struct SubscriberSlots {
    open: std::sync::Mutex<(usize, std::collections::HashMap<String, usize>)>,
}

/// One open subscription's place; dropping it frees the place.
pub(crate) struct SubscriberSlot {
    slots: Arc<SubscriberSlots>,
    object: Option<String>,
}

impl SubscriberSlots {
    /// A place for a new subscription (to `object` by name, or to a query), or the error
    /// that names the limit it would pass.
    pub(crate) fn take(self: &Arc<Self>, object: Option<&str>, max_total: usize, max_per_object: usize) -> SqlResult<SubscriberSlot> {
        let mut open = self.open.lock().expect("subscriber slots lock");
        if open.0 >= max_total {
            return Err(SqlError::new(SqlState::ConfigurationLimitExceeded, format!("too many subscriptions: {} are open, the limit is {max_total}", open.0))
                .with_hint("close some, or raise --max-subscribers"));
        }
        if let Some(object) = object {
            let on_object = open.1.get(object).copied().unwrap_or(0);
            if on_object >= max_per_object {
                return Err(SqlError::new(SqlState::ConfigurationLimitExceeded, format!("too many subscriptions to \"{object}\": {on_object} are open, the limit per object is {max_per_object}"))
                    .with_hint("close some, or raise --max-subscribers-per-object"));
            }
            *open.1.entry(object.to_string()).or_insert(0) += 1;
        }
        open.0 += 1;
        Ok(SubscriberSlot { slots: self.clone(), object: object.map(str::to_string) })
    }

    /// Subscriptions open now.
    pub fn open(&self) -> usize {
        self.open.lock().expect("subscriber slots lock").0
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("subscriber slots lock");
        open.0 -= 1;
        if let Some(object) = &self.object {
            if let Some(n) = open.1.get_mut(object) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(object);
                }
            }
        }
    }
}

/// What stopping a subscription's dataflow takes.
struct Teardown {
    id: ObjectId,
    tasks: Vec<tokio::task::AbortHandle>,
    roots: Vec<openclaw_engine::coordinator::RootId>,
    column_families: Vec<String>,
    coordinator: Arc<openclaw_engine::Coordinator>,
    store: openclaw_storage::Store,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
        self.coordinator.unregister_sink(self.id);
        self.coordinator.unregister_external(self.id);
        self.roots.iter().for_each(|r| self.coordinator.unregister_root(*r));
        // Dropping column families touches files: off the async workers.
        let (store, families) = (self.store.clone(), std::mem::take(&mut self.column_families));
        let drop_families = move || families.iter().for_each(|cf| {
            let _ = store.drop_cf(cf);
        });
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(drop_families)),
            Err(_) => drop_families(),
        }
    }
}

impl Database {
    /// Starts a subscription: plans the query as a view would be, attaches its dataflow, and
    /// returns once the snapshot point is known.
    pub async fn subscribe(&self, vars: &SessionVars, stmt: SubscribeStmt) -> SqlResult<Subscription> {
        let (snapshot, progress) = stmt.settings()?;
        let object = stmt.object.as_ref().map(crate::database::object_name).transpose()?;
        let slot = self.subscribers.take(object.as_deref(), self.config.max_subscribers, self.config.max_subscribers_per_object)?;
        let mut subscription = self.subscribe_unlimited(vars, stmt, (snapshot, progress)).await?;
        subscription._slot = Some(slot);
        Ok(subscription)
    }

    async fn subscribe_unlimited(&self, vars: &SessionVars, stmt: SubscribeStmt, (snapshot, progress): (bool, bool)) -> SqlResult<Subscription> {
        if let Some(name) = &stmt.object {
            let name = crate::database::object_name(name)?;
            if let Some((feed, at)) = self.open_durable(&name, stmt.since, stmt.since_rows).await? {
                return Ok(Subscription::new(&at.schema, Feed::Durable(Box::new(feed)), at.start, (snapshot && at.snapshot, progress), None));
            }
        }
        if let Some(token) = stmt.since {
            return Err(SqlError::new(SqlState::FeatureNotSupported, format!("SUBSCRIBE ... SINCE {token} needs a durable subscription"))
                .with_hint("CREATE SUBSCRIPTION s FROM <view> keeps the view's changes; then SUBSCRIBE s SINCE <token>"));
        }
        if let Some(watched) = self.watch_view(&stmt, snapshot, progress).await? {
            return Ok(watched);
        }
        let mut catalog = self.catalog.lock().await;
        let id = catalog.next_id();
        let view = CreateView {
            name: datafusion::sql::sqlparser::ast::ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new(format!("subscribe_{id}"))]),
            if_not_exists: false,
            query: stmt.query.clone(),
            emit_on_window_close: false,
            options: Default::default(),
        };
        let (node, _deps, _progress) = self.plan_view(&catalog, &view).await?;
        let columns = node.schema();
        let parallelism = vars.streaming_parallelism()?.unwrap_or(self.config.parallelism);
        let queue = self.config.subscriber_queue();
        let sink = Box::new(SubscribeOperator::new(id, queue.clone()));
        let location = StateLocation { store: self.store.clone(), owner: id, prefix: format!("sub_{id}"), parallelism, resume: None, eval_errors: None };
        let dataflow = build_dataflow(node, sink, &location, &self.config, &self.coordinator)?;
        drop(catalog);
        let failure = Arc::new(std::sync::Mutex::new(None));
        let teardown = Teardown {
            id,
            tasks: dataflow.tasks.iter().map(|(_, t)| t.abort_handle()).collect(),
            roots: dataflow.roots.clone(),
            column_families: dataflow.state_tables.iter().flat_map(|t| t.column_families.clone()).collect(),
            coordinator: self.coordinator.clone(),
            store: self.store.clone(),
        };
        self.supervise(&format!("subscribe_{id}"), id, dataflow.tasks, dataflow.roots.clone(), failure.clone());
        let backfills: Vec<_> = dataflow.subscriptions.iter().filter_map(|s| s.progress.clone()).collect();
        let attach = (!dataflow.subscriptions.is_empty()).then(|| Mutation::Subscribe(dataflow.subscriptions));
        self.fill(id, attach, dataflow.pending_roots, &backfills, &failure).await?;
        // Every upstream has sent its rows before this barrier: the snapshot point.
        let start = self.coordinator.inject_and_wait(BarrierKind::Periodic, None).await?;
        Ok(Subscription::new(&columns, Feed::Queue(queue), start, (snapshot, progress), Some(teardown)))
    }
}

impl Database {
    /// A subscription to a materialized view by name, served by the view itself: at a barrier
    /// it queues its content, then at every barrier its epoch's consolidated changes (no
    /// dataflow per subscriber). `None` when the name is not a materialized view.
    async fn watch_view(&self, stmt: &SubscribeStmt, snapshot: bool, progress: bool) -> SqlResult<Option<Subscription>> {
        let Some(name) = &stmt.object else { return Ok(None) };
        let name = crate::database::object_name(name)?;
        let catalog = self.catalog.lock().await;
        let Some(entry) = catalog.get(&name) else { return Ok(None) };
        if entry.kind != crate::parser::ObjectKind::MaterializedView {
            return Ok(None);
        }
        if let crate::catalog::Detail::View(v) = &entry.detail {
            if v.backfilling() {
                return Err(crate::ddl::backfilling(&name));
            }
        }
        let (view, columns) = (entry.id, entry.schema.clone());
        drop(catalog);
        let queue = self.config.subscriber_queue();
        let watch = openclaw_engine::Watch { view, queue: queue.clone(), snapshot };
        let start = self.coordinator.inject_and_wait(BarrierKind::Periodic, Some(Mutation::Watch(vec![watch]))).await?;
        Ok(Some(Subscription::new(&columns, Feed::Queue(queue), start, (snapshot, progress), None)))
    }
}

/// `token`, `diff`, then the query's columns (all nullable: progress rows have none).
fn output_schema(columns: &SchemaRef) -> SchemaRef {
    let mut fields = vec![Field::new("token", DataType::Int64, false), Field::new("diff", DataType::Int64, true)];
    fields.extend(columns.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)));
    Arc::new(Schema::new(fields))
}

impl Subscription {
    /// A subscription to rows of `columns` read from `feed`, its snapshot at `start`.
    fn new(columns: &SchemaRef, feed: Feed, start: u64, (snapshot, progress): (bool, bool), teardown: Option<Teardown>) -> Self {
        Self { schema: output_schema(columns), feed, start, snapshot, progress, leftover: None, ended: false, _teardown: teardown, _slot: None }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The snapshot's token, when the subscription starts with one.
    pub fn snapshot_token(&self) -> Option<u64> {
        self.snapshot.then_some(self.start)
    }

    /// The first token: the snapshot's.
    pub fn start_token(&self) -> u64 {
        self.start
    }

    /// The next rows, waiting for them; `None` once the subscription ended. A client that fell
    /// too far behind gets an error that says by how much.
    pub async fn next_batch(&mut self) -> SqlResult<Option<RecordBatch>> {
        if let Some(rows) = self.leftover.take() {
            return Ok(Some(rows));
        }
        loop {
            if self.ended {
                return Ok(None);
            }
            let event = self.feed.next().await?;
            if let Some(rows) = self.rows_of(event)? {
                return Ok(Some(rows));
            }
        }
    }

    /// `FETCH`: up to `max_rows` rows, waiting at most `timeout` (`None`: until some come)
    /// for the first; then whatever else is already there. No rows after the timeout is an
    /// empty result, not an error.
    pub async fn fetch(&mut self, max_rows: usize, timeout: Option<Duration>) -> SqlResult<RecordBatch> {
        let max_rows = max_rows.clamp(1, MAX_FETCH_ROWS);
        let first = match timeout {
            None => self.next_batch().await?,
            Some(t) => match tokio::time::timeout(t, self.next_batch()).await {
                Ok(rows) => rows?,
                Err(_) => None,
            },
        };
        let Some(first) = first else { return Ok(RecordBatch::new_empty(self.schema.clone())) };
        let mut batches = vec![first];
        let mut rows = batches[0].num_rows();
        while rows < max_rows {
            let Some(event) = self.feed.try_next() else { break };
            if let Some(more) = self.rows_of(event)? {
                rows += more.num_rows();
                batches.push(more);
            }
        }
        let all = concat_batches(&self.schema, &batches)?;
        if all.num_rows() > max_rows {
            self.leftover = Some(all.slice(max_rows, all.num_rows() - max_rows));
            return Ok(all.slice(0, max_rows));
        }
        Ok(all)
    }

    /// The rows an event gives this client (none for a change it does not show).
    fn rows_of(&mut self, event: SubscriptionEvent) -> SqlResult<Option<RecordBatch>> {
        match event {
            SubscriptionEvent::Changes { token, rows, diffs } => {
                if token <= self.start && !self.snapshot {
                    return Ok(None);
                }
                Ok(Some(changes(&self.schema, token.max(self.start), &rows, diffs)?))
            }
            SubscriptionEvent::Progress { token } if self.progress && token >= self.start => Ok(Some(progress(&self.schema, token)?)),
            SubscriptionEvent::Progress { .. } => Ok(None),
            SubscriptionEvent::Overflow { behind_rows, max_rows, behind_bytes, max_bytes } => {
                self.ended = true;
                let (behind, limit, flag) = match behind_rows > max_rows {
                    true => (format!("{behind_rows} rows"), format!("{max_rows}"), "--subscriber-max-rows"),
                    false => (format!("{behind_bytes} bytes"), format!("{max_bytes} bytes"), "--subscriber-max-bytes"),
                };
                Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("the subscriber fell behind: {behind} were waiting for it, more than the limit of {limit}"))
                    .with_hint(format!("read faster, or raise {flag}")))
            }
            SubscriptionEvent::Ended => {
                self.ended = true;
                Err(SqlError::new(SqlState::QueryCanceled, "the subscription ended: what it reads was dropped or failed"))
            }
        }
    }
}

fn int64_column(value: Option<i64>, rows: usize) -> ArrayRef {
    Arc::new(Int64Array::from(vec![value; rows]))
}

/// Consolidated rows under `token`, each with its diff.
fn changes(schema: &SchemaRef, token: u64, rows: &RecordBatch, diffs: Int64Array) -> SqlResult<RecordBatch> {
    let mut columns = vec![int64_column(Some(token as i64), rows.num_rows()), Arc::new(diffs) as ArrayRef];
    columns.extend(rows.columns().iter().cloned());
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A progress row: the token, and nulls.
fn progress(schema: &SchemaRef, token: u64) -> SqlResult<RecordBatch> {
    let mut columns = vec![int64_column(Some(token as i64), 1), int64_column(None, 1)];
    columns.extend(schema.fields().iter().skip(2).map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1)));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl Database {
    /// `DECLARE name CURSOR FOR SUBSCRIBE ...`.
    pub(crate) async fn declare(&self, vars: &mut SessionVars, cursor: String, stmt: SubscribeStmt) -> SqlResult<crate::QueryOutput> {
        if vars.cursors.contains_key(&cursor) {
            return Err(SqlError::new(SqlState::DuplicateCursor, format!("cursor \"{cursor}\" already exists")));
        }
        if vars.cursors.len() >= MAX_CURSORS_PER_SESSION {
            return Err(SqlError::new(SqlState::ProgramLimitExceeded, format!("a session may hold at most {MAX_CURSORS_PER_SESSION} open cursors"))
                .with_hint("CLOSE the ones it no longer reads"));
        }
        let subscription = self.subscribe(vars, stmt).await?;
        vars.cursors.insert(cursor, subscription);
        Ok(crate::QueryOutput::command("DECLARE CURSOR"))
    }
}

/// `FETCH [n | ALL] cursor [WITH (timeout = ...)]`.
pub(crate) async fn fetch(vars: &mut SessionVars, cursor: &str, count: Option<u64>, options: &crate::Options) -> SqlResult<crate::QueryOutput> {
    let mut timeout = None;
    for (key, value) in options {
        match key.as_str() {
            // `0` waits not at all: what is there now.
            "timeout" => timeout = Some(crate::session::parse_timeout(value)?.unwrap_or(Duration::ZERO)),
            other => {
                return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unrecognized FETCH option \"{other}\""))
                    .with_hint("FETCH takes WITH (timeout = '1s')"))
            }
        }
    }
    let Some(subscription) = vars.cursors.get_mut(cursor) else {
        return Err(SqlError::new(SqlState::InvalidCursorName, format!("cursor \"{cursor}\" does not exist")));
    };
    let max_rows = count.map_or(MAX_FETCH_ROWS, |n| (n as usize).min(MAX_FETCH_ROWS));
    let rows = subscription.fetch(max_rows, timeout).await;
    if rows.is_err() {
        // An overflowed or ended subscription gives its error once; the cursor is gone.
        vars.cursors.remove(cursor);
    }
    let rows = rows?;
    Ok(crate::QueryOutput::rows(rows.schema(), vec![rows]))
}

/// `CLOSE cursor | ALL`.
pub(crate) fn close(vars: &mut SessionVars, cursor: Option<&str>) -> SqlResult<crate::QueryOutput> {
    match cursor {
        None => vars.cursors.clear(),
        Some(name) if vars.cursors.remove(name).is_none() => {
            return Err(SqlError::new(SqlState::InvalidCursorName, format!("cursor \"{name}\" does not exist")));
        }
        Some(_) => {}
    }
    Ok(crate::QueryOutput::command("CLOSE CURSOR"))
}
