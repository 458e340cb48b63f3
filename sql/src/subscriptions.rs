//! Durable subscriptions: `CREATE SUBSCRIPTION s FROM v WITH (retention = '1 day')` keeps
//! view `v`'s changelog (`openclaw_engine::operators::change_log`) for the retention period,
//! and `SUBSCRIBE s [SINCE token]` reads it: with `SINCE`, every change after the token, once;
//! without, the view's content and then every change, as `SUBSCRIBE v` does.
//!
//! A durable subscription's reader ([`DurableFeed`]) is given a token only once the checkpoint
//! that holds it is durable (`Coordinator::committed_checkpoints`): a restart rolls the view
//! and its log back to that checkpoint and makes the later epochs again, so an earlier token
//! could name changes that a crash undoes. Changes therefore arrive up to a
//! `--checkpoint-interval` later than over `SUBSCRIBE v`.
//!
//! Resuming: a reader catches up from the log up to the barrier at which it started watching
//! the view, then reads the view's live changes. When its client falls more than
//! `--subscriber-max-rows` behind, it does not fail as an ephemeral subscriber does: it drops
//! its queue, starts watching again, and catches up from the log.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::ObjectName;
use openclaw_engine::operators::{ChangeLog, SubscriberQueue, SubscriptionEvent};
use openclaw_engine::{BarrierKind, Coordinator, Mutation, ObjectId};
use openclaw_storage::RowCodec;
use tokio::sync::watch;

use crate::catalog::{Detail, Entry};
use crate::database::{object_name, Database, QueryOutput};
use crate::error::{quote, SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;
use crate::Options;

/// How long a subscription keeps changes when `retention` is not given.
pub const DEFAULT_RETENTION_MS: u64 = 86_400_000;
/// The longest retention a subscription may ask for (30 days).
pub const MAX_RETENTION_MS: u64 = 30 * 86_400_000;

/// The column family of subscription `id`'s log of view `view`: under the view's prefix, so it
/// is exported with the view's state and rolled back with it.
fn log_cf(view: ObjectId, id: ObjectId) -> String {
    format!("mv_{view}_sub_{id}")
}

/// `'1 day'`, `'12 hours'`, `'30 min'`, `'90s'`: a number and a unit.
fn parse_retention(text: &str) -> SqlResult<u64> {
    let text = text.trim();
    match openclaw_connectors::parse_duration_ms(text) {
        Some(ms) if (1_000..=MAX_RETENTION_MS).contains(&ms) => Ok(ms),
        _ => Err(SqlError::new(SqlState::InvalidParameterValue, format!("invalid retention \"{text}\""))
            .with_hint("give a number and a unit (seconds, minutes, hours or days), from 1 second to 30 days, e.g. retention = '1 day'")),
    }
}

fn retention_of(options: &Options) -> SqlResult<u64> {
    let mut retention_ms = DEFAULT_RETENTION_MS;
    for (key, value) in options {
        match key.as_str() {
            "retention" => retention_ms = parse_retention(value)?,
            other => {
                return Err(SqlError::new(SqlState::InvalidParameterValue, format!("unrecognized subscription option \"{other}\""))
                    .with_hint("CREATE SUBSCRIPTION takes WITH (retention = '1 day')"))
            }
        }
    }
    Ok(retention_ms)
}

fn describe_ms(ms: u64) -> String {
    let (n, unit) = match ms {
        ms if ms % 86_400_000 == 0 => (ms / 86_400_000, "day"),
        ms if ms % 3_600_000 == 0 => (ms / 3_600_000, "hour"),
        ms if ms % 60_000 == 0 => (ms / 60_000, "minute"),
        ms => (ms / 1_000, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl Database {
    /// `CREATE SUBSCRIPTION name FROM view [WITH (retention = ...)]`: the view logs its
    /// changes from the next barrier on; returns once it does.
    pub(crate) async fn create_subscription(&self, name: &ObjectName, view: &ObjectName, options: &Options, sql: &str) -> SqlResult<QueryOutput> {
        let retention_ms = retention_of(options)?;
        let (name, view_name) = (object_name(name)?, object_name(view)?);
        let mut catalog = self.catalog.lock().await;
        if let Some(e) = catalog.get(&name) {
            return Err(SqlError::new(SqlState::DuplicateTable, format!("{} {} already exists", e.kind.sql_name(), quote(&name))));
        }
        let Some(view) = catalog.get(&view_name) else { return Err(crate::database::undefined(&view_name)) };
        let (Detail::View(runtime), ObjectKind::MaterializedView) = (&view.detail, view.kind) else {
            return Err(SqlError::new(SqlState::WrongObjectType, format!("{} is not a materialized view", quote(&view_name)))
                .with_hint("a subscription keeps the changes of a materialized view"));
        };
        if runtime.backfilling() {
            return Err(crate::ddl::backfilling(&view_name));
        }
        let (view_id, schema, logs) = (view.id, view.schema.clone(), runtime.logs.clone());
        let codec = RowCodec::new(runtime.state.schema().clone())?;
        let view_name_for_detail = view_name.clone();
        let id = catalog.next_id();
        let log = ChangeLog::open(self.store.clone(), &log_cf(view_id, id), codec, retention_ms)?;
        logs.lock().expect("change logs lock").push(log.clone());
        if let Err(e) = self.persist(id, ObjectKind::Subscription, &name, sql, Default::default()) {
            logs.lock().expect("change logs lock").retain(|l| !Arc::ptr_eq(l, &log));
            return Err(e);
        }
        catalog.insert(Entry {
            id,
            name: name.clone(),
            kind: ObjectKind::Subscription,
            schema,
            definition: format!("FROM {view_name} WITH (retention = '{}')", describe_ms(retention_ms)),
            depends_on: vec![view_name],
            watermark_columns: vec![],
            detail: Detail::Subscription { view: view_name_for_detail, log },
        });
        drop(catalog);
        // The view adopts the log at this barrier: every change after it is kept.
        self.coordinator.inject_and_wait(BarrierKind::Periodic, None).await?;
        tracing::info!(subscription = %name, retention_ms, "created");
        Ok(QueryOutput::command("CREATE SUBSCRIPTION"))
    }

    /// Stops logging for a dropped subscription: the view lets the log go at its next barrier,
    /// and its column family goes after that barrier.
    pub(crate) fn drop_subscription(&self, catalog: &crate::catalog::Catalog, view: &str, log: &Arc<ChangeLog>) {
        if let Some(Detail::View(runtime)) = catalog.get(view).map(|e| &e.detail) {
            runtime.logs.lock().expect("change logs lock").retain(|l| !Arc::ptr_eq(l, log));
        }
        let (coordinator, store, cf) = (self.coordinator.clone(), self.store.clone(), log.cf.to_string());
        tokio::spawn(async move {
            let _ = coordinator.inject_and_wait(BarrierKind::Periodic, None).await;
            let _ = tokio::task::spawn_blocking(move || store.drop_cf(&cf)).await;
        });
    }

    /// After a restart: drops the logs of subscriptions that no longer exist (dropped after
    /// the checkpoint they were restored from).
    pub(crate) async fn drop_orphan_logs(&self) -> SqlResult<()> {
        let catalog = self.catalog.lock().await;
        let live: std::collections::HashSet<String> = catalog
            .of_kind(ObjectKind::Subscription)
            .filter_map(|e| match &e.detail {
                Detail::Subscription { log, .. } => Some(log.cf.to_string()),
                _ => None,
            })
            .collect();
        for cf in self.store.opened_with().iter().filter(|cf| cf.starts_with("mv_") && cf.contains("_sub_") && !live.contains(*cf)) {
            if self.store.has_cf(cf) {
                tracing::debug!(column_family = %cf, "dropping the log of a dropped subscription");
                self.store.drop_cf(cf)?;
            }
        }
        Ok(())
    }

    /// `SHOW SUBSCRIPTIONS`.
    pub(crate) async fn show_subscriptions(&self) -> SqlResult<QueryOutput> {
        let catalog = self.catalog.lock().await;
        let committed = *self.coordinator.committed_checkpoints().borrow();
        let rows = catalog
            .of_kind(ObjectKind::Subscription)
            .filter_map(|e| match &e.detail {
                Detail::Subscription { view, log } => {
                    Some(vec![e.name.clone(), view.clone(), describe_ms(log.retention_ms), log.oldest().to_string(), committed.max(log.oldest()).to_string()])
                }
                _ => None,
            })
            .collect();
        QueryOutput::text_rows(&["name", "view", "retention", "oldest_token", "newest_token"], rows)
    }

    /// A reader of durable subscription `name` from after `since` (skipping `since_rows` rows
    /// of the token after it), or from a snapshot; `None` when `name` is no subscription.
    pub(crate) async fn open_durable(&self, name: &str, since: Option<u64>, since_rows: usize) -> SqlResult<Option<(DurableFeed, SchemaAndStart)>> {
        let catalog = self.catalog.lock().await;
        let Some(entry) = catalog.get(name) else { return Ok(None) };
        let Detail::Subscription { view, log } = &entry.detail else { return Ok(None) };
        let Some(view_id) = catalog.get(view).map(|v| v.id) else { return Err(crate::database::undefined(view)) };
        let (log, schema) = (log.clone(), entry.schema.clone());
        drop(catalog);
        let mut feed = DurableFeed {
            name: name.to_string(),
            log,
            view: view_id,
            coordinator: self.coordinator.clone(),
            config: self.config.clone(),
            committed: self.coordinator.committed_checkpoints(),
            after: 0,
            into: None,
            catch_up: None,
            // Replaced by `watch` below, before anything reads it.
            queue: SubscriberQueue::new(1),
            snapshot_at: None,
            held: None,
        };
        let start = match since {
            Some(token) => {
                feed.check_held(token)?;
                let newest = self.coordinator.last_epoch();
                if token > newest {
                    return Err(SqlError::new(SqlState::InvalidParameterValue, format!("token {token} is ahead of subscription {}: its newest token is {newest}", quote(name))));
                }
                feed.after = token;
                feed.into = (since_rows > 0).then_some((token + 1, since_rows));
                feed.watch(false).await?;
                token
            }
            None => {
                let at = feed.watch(true).await?;
                feed.catch_up = None;
                feed.snapshot_at = Some(at);
                at
            }
        };
        Ok(Some((feed, SchemaAndStart { schema, start, snapshot: since.is_none() })))
    }
}

/// What a subscription's rows look like and where they start.
pub(crate) struct SchemaAndStart {
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    pub start: u64,
    pub snapshot: bool,
}

/// Where the catch-up from the log stands.
struct CatchUp {
    /// The last entry read (`None`: start after [`DurableFeed::after`]).
    cursor: Option<(u64, u32)>,
    /// Read entries up to this token (the barrier the queue started at).
    until: u64,
    /// Rows of the current token read from the log so far.
    token_rows: (u64, usize),
}

/// Reads one durable subscription: the log, then the view's live changes, each token only
/// once its checkpoint is durable. Cancel-safe: whatever it took from the log or the queue
/// and has not returned yet waits in `held`, so a `FETCH` timeout loses nothing.
pub(crate) struct DurableFeed {
    name: String,
    log: Arc<ChangeLog>,
    view: ObjectId,
    coordinator: Arc<Coordinator>,
    config: Arc<openclaw_engine::EngineConfig>,
    committed: watch::Receiver<u64>,
    /// Every change up to this token has been returned.
    after: u64,
    /// Rows of this token (the first after `after`) already returned.
    into: Option<(u64, usize)>,
    catch_up: Option<CatchUp>,
    queue: Arc<SubscriberQueue>,
    /// While the snapshot (of this token) is being read: a snapshot cannot be read again from
    /// the log, so falling behind during it ends the subscription.
    snapshot_at: Option<u64>,
    held: Option<SubscriptionEvent>,
}

impl DurableFeed {
    /// Refuses a position the log no longer holds.
    fn check_held(&self, after: u64) -> SqlResult<()> {
        let oldest = self.log.oldest();
        if after < oldest {
            return Err(SqlError::new(SqlState::InvalidParameterValue, format!("token {after} is older than subscription {} holds", quote(&self.name)))
                .with_detail(format!("the oldest token it can resume after is {oldest}"))
                .with_hint("subscribe without SINCE for the view's content and every change after it"));
        }
        Ok(())
    }

    /// Starts watching the view (again) with a new queue; the log is read up to the barrier
    /// it starts at. Returns that barrier's epoch.
    async fn watch(&mut self, snapshot: bool) -> SqlResult<u64> {
        let queue = self.config.subscriber_queue();
        let watch = openclaw_engine::Watch { view: self.view, queue: queue.clone(), snapshot };
        let at = self.coordinator.inject_and_wait(BarrierKind::Periodic, Some(Mutation::Watch(vec![watch]))).await?;
        self.queue = queue;
        self.catch_up = Some(CatchUp { cursor: None, until: at, token_rows: (0, 0) });
        Ok(at)
    }

    /// The next event for the client, once its token's checkpoint is durable.
    pub(crate) async fn next_event(&mut self) -> SqlResult<SubscriptionEvent> {
        loop {
            if self.held.is_none() {
                self.held = self.take_next().await?;
            }
            let Some(event) = &self.held else { continue };
            let token = match event {
                SubscriptionEvent::Changes { token, .. } | SubscriptionEvent::Progress { token } => Some(*token),
                SubscriptionEvent::Overflow { .. } | SubscriptionEvent::Ended => None,
            };
            if let Some(token) = token {
                if self.committed.wait_for(|c| *c >= token).await.is_err() {
                    return Ok(SubscriptionEvent::Ended);
                }
            }
            let event = self.held.take().expect("held above");
            self.advance(&event);
            return Ok(event);
        }
    }

    /// Moves the position past `event`, which the client now has.
    fn advance(&mut self, event: &SubscriptionEvent) {
        match event {
            SubscriptionEvent::Changes { token, rows, .. } => {
                let before = match self.into {
                    Some((t, n)) if t == *token => n,
                    Some((t, _)) => {
                        // A later token started: every change of `t` is out.
                        self.after = self.after.max(t);
                        0
                    }
                    None => 0,
                };
                self.into = Some((*token, before + rows.num_rows()));
            }
            SubscriptionEvent::Progress { token } => {
                self.after = self.after.max(*token);
                if self.into.is_some_and(|(t, _)| t <= *token) {
                    self.into = None;
                }
                if self.snapshot_at.is_some_and(|at| at <= *token) {
                    self.snapshot_at = None;
                }
            }
            _ => {}
        }
    }

    /// The next event from the log or the queue (`None`: none to give yet, look again).
    async fn take_next(&mut self) -> SqlResult<Option<SubscriptionEvent>> {
        if self.catch_up.is_some() {
            return self.next_from_log();
        }
        match self.queue.pop().await {
            SubscriptionEvent::Changes { token, .. } | SubscriptionEvent::Progress { token } if token <= self.after => Ok(None),
            SubscriptionEvent::Overflow { .. } if self.snapshot_at.is_none() => {
                // Fall back to the log from where the client is, and watch anew.
                tracing::debug!(subscription = %self.name, after = self.after, "fell behind; catching up from the log");
                self.watch(false).await?;
                Ok(None)
            }
            event => Ok(Some(event)),
        }
    }

    /// The next entry of the catch-up (only what the client does not have), or the progress
    /// mark that ends it.
    fn next_from_log(&mut self) -> SqlResult<Option<SubscriptionEvent>> {
        self.check_held(self.after)?;
        let catch_up = self.catch_up.as_mut().expect("catching up");
        let cursor = catch_up.cursor.or(Some((self.after, u32::MAX)));
        let Some(entry) = self.log.next_entry(cursor, catch_up.until)? else {
            let until = catch_up.until;
            self.catch_up = None;
            return Ok((until > self.after).then_some(SubscriptionEvent::Progress { token: until }));
        };
        catch_up.cursor = Some((entry.token, entry.seq));
        let base = match catch_up.token_rows {
            (t, n) if t == entry.token => n,
            _ => 0,
        };
        let len = entry.rows.num_rows();
        catch_up.token_rows = (entry.token, base + len);
        // Rows of a token the client had in part (a resume from `T:k`, or a fall-back).
        let had = match self.into {
            Some((t, n)) if t == entry.token => n.saturating_sub(base).min(len),
            _ => 0,
        };
        if had == len {
            return Ok(None);
        }
        let (rows, diffs) = (entry.rows.slice(had, len - had), entry.diffs.slice(had, len - had));
        if had > 0 {
            // `advance` counts from what the client had.
            self.into = Some((entry.token, base + had));
        }
        Ok(Some(SubscriptionEvent::Changes { token: entry.token, rows, diffs }))
    }
}
