//! Queries of the extended protocol planned once: a session keeps the plan of each query it
//! executed with parameters (parsed, planned and optimized with its placeholders), and each
//! later Execute of the same text binds its parameters into that plan and goes straight to
//! physical planning, as PostgreSQL's generic plan does.
//!
//! A kept plan holds the relations it read as they were, so it is used only while the
//! catalog is unchanged (its version, [`crate::catalog::Catalog::version`]) and the session's
//! time zone is the one it was planned in; otherwise the query is planned again. At most
//! [`MAX_PREPARED_PLANS`] are kept per session, the least recently used going first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;

use crate::{QueryOutput, SessionVars, SqlResult};

/// Most plans one session keeps.
pub const MAX_PREPARED_PLANS: usize = 64;

/// A query's plan as optimized with its placeholders, and what it was planned under.
pub(crate) struct PreparedPlan {
    pub catalog_version: u64,
    pub time_zone: String,
    pub plan: LogicalPlan,
    /// PostgreSQL's names of its output columns ([`crate::naming::pg_column_names`]).
    pub names: Option<Vec<Option<String>>>,
}

/// A statement's parameter types and result columns, as Describe answers them.
pub(crate) type Description = (Vec<Option<DataType>>, Option<SchemaRef>);

/// One session's kept plans and descriptions, by statement text. A driver describes a
/// statement's parameters again at every Execute (to decode them), so both are kept.
#[derive(Default)]
pub struct PreparedPlans {
    plans: KeptByText<Arc<PreparedPlan>>,
    descriptions: KeptByText<Description>,
    /// Queries planned, and executions that used a kept plan (for tests).
    pub planned: u64,
    pub reused: u64,
}

impl PreparedPlans {
    /// The plan kept for `text`, if it was planned under `catalog_version` and `time_zone`.
    pub(crate) fn get(&mut self, text: &str, catalog_version: u64, time_zone: &str) -> Option<Arc<PreparedPlan>> {
        let plan = self.plans.get(text, catalog_version, time_zone)?;
        self.reused += 1;
        Some(plan)
    }

    /// Keeps `plan` for `text`, letting the least recently used plan go beyond the limit.
    pub(crate) fn insert(&mut self, text: &str, plan: Arc<PreparedPlan>) {
        self.planned += 1;
        let (version, zone) = (plan.catalog_version, plan.time_zone.clone());
        self.plans.insert(text, version, zone, plan);
    }

    pub(crate) fn described(&mut self, text: &str, catalog_version: u64, time_zone: &str) -> Option<Description> {
        self.descriptions.get(text, catalog_version, time_zone)
    }

    pub(crate) fn keep_description(&mut self, text: &str, catalog_version: u64, time_zone: String, description: Description) {
        self.descriptions.insert(text, catalog_version, time_zone, description);
    }
}

/// At most [`MAX_PREPARED_PLANS`] values by text, each valid under one catalog version and
/// time zone; the least recently used goes first.
struct KeptByText<T> {
    values: HashMap<String, (u64, String, T)>,
    /// Texts, least recently used first.
    order: VecDeque<String>,
}

impl<T> Default for KeptByText<T> {
    fn default() -> Self {
        Self { values: HashMap::new(), order: VecDeque::new() }
    }
}

impl<T: Clone> KeptByText<T> {
    fn get(&mut self, text: &str, catalog_version: u64, time_zone: &str) -> Option<T> {
        let (version, zone, value) = self.values.get(text)?;
        if *version != catalog_version || zone != time_zone {
            return None;
        }
        let value = value.clone();
        self.touch(text);
        Some(value)
    }

    fn insert(&mut self, text: &str, catalog_version: u64, time_zone: String, value: T) {
        if self.values.insert(text.to_string(), (catalog_version, time_zone, value)).is_some() {
            self.touch(text);
        } else {
            self.order.push_back(text.to_string());
        }
        while self.order.len() > MAX_PREPARED_PLANS {
            if let Some(oldest) = self.order.pop_front() {
                self.values.remove(&oldest);
            }
        }
        debug_assert_eq!(self.order.len(), self.values.len());
    }

    fn touch(&mut self, text: &str) {
        if let Some(at) = self.order.iter().position(|t| t == text) {
            let t = self.order.remove(at).expect("present");
            self.order.push_back(t);
        }
    }
}

impl crate::Database {
    /// [`Self::select`] of a query with parameters, through the session's kept plan of `text`
    /// when it holds ([`crate::prepared`]): the parameters are bound into the optimized plan,
    /// which goes straight to physical planning.
    pub(crate) async fn select_prepared(
        &self,
        vars: &mut SessionVars,
        text: &str,
        stmt: Statement,
        params: Vec<ScalarValue>,
        overlays: Option<crate::relation::TxnOverlays>,
    ) -> SqlResult<QueryOutput> {
        let catalog_version = self.catalog.lock().await.version();
        let time_zone = vars.time_zone();
        let (mut state, _) = self.query_state_with(overlays);
        vars.configure(&mut state);
        let prepared = match vars.prepared.get(text, catalog_version, &time_zone) {
            Some(kept) => kept,
            None => {
                let names = crate::naming::pg_column_names(&stmt);
                let mut stmt = stmt;
                crate::naming::alias_unnamed(&mut stmt);
                let plan = state.optimize(&self.plan(&state, stmt).await?)?;
                let kept = Arc::new(crate::prepared::PreparedPlan { catalog_version, time_zone, plan, names });
                vars.prepared.insert(text, kept.clone());
                kept
            }
        };
        self.check_readable(&prepared.plan).await?;
        let plan = crate::database::bind(prepared.plan.clone(), Some(cast_params(&prepared.plan, params)?))?;
        let schema = crate::naming::rename_schema(Arc::new(plan.schema().as_arrow().clone()), &prepared.names);
        let physical = state.query_planner().create_physical_plan(&plan, &state).await?;
        let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
        Ok(crate::naming::relabel(schema, stream))
    }
}

/// `params` cast to the types the analyzer gave their placeholders in `plan` (a parameter the
/// client sent untyped, as text, takes the type its use implies, as in PostgreSQL).
fn cast_params(plan: &LogicalPlan, params: Vec<ScalarValue>) -> SqlResult<Vec<ScalarValue>> {
    let types = plan.get_parameter_types()?;
    params
        .into_iter()
        .enumerate()
        .map(|(i, value)| match types.get(&format!("${}", i + 1)) {
            Some(Some(t)) if value.data_type() != *t => crate::parameters::cast_param(value, t),
            _ => Ok(value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(version: u64) -> Arc<PreparedPlan> {
        let empty = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation { produce_one_row: true, schema: Arc::new(datafusion::common::DFSchema::empty()) });
        Arc::new(PreparedPlan { catalog_version: version, time_zone: "UTC".into(), plan: empty, names: None })
    }

    #[test]
    fn a_plan_is_reused_only_under_its_catalog_version_and_zone() {
        let mut plans = PreparedPlans::default();
        plans.insert("q", plan(1));
        assert!(plans.get("q", 1, "UTC").is_some());
        assert!(plans.get("q", 2, "UTC").is_none());
        assert!(plans.get("q", 1, "Europe/Paris").is_none());
        assert_eq!((plans.planned, plans.reused), (1, 1));
    }

    async fn rows(db: &crate::Database, vars: &mut crate::SessionVars, sql: &str, param: datafusion::common::ScalarValue) -> Vec<String> {
        let Ok(crate::QueryOutput::Rows { stream, .. }) = db.execute_one(vars, sql, Some(vec![param])).await else { panic!("{sql} returns rows") };
        let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        text.lines().skip(3).filter(|l| !l.starts_with('+')).map(|l| l.trim_matches(|c| c == '|' || c == ' ').to_string()).collect()
    }

    /// Over the real database: Execute after Execute of one query plans it once, binds each
    /// parameter (a text one cast to the type its use implies), and plans again once the
    /// catalog changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_with_parameters_is_planned_once_while_the_catalog_holds() {
        use datafusion::common::ScalarValue;
        let dir = std::env::temp_dir().join(format!("openclaw-prepared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = openclaw_storage::Store::open(&dir).unwrap();
        let db = crate::Database::open(store, openclaw_engine::EngineConfig::default(), None).await.unwrap();
        let mut vars = crate::SessionVars::default();
        for out in db.execute(&mut vars, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b')").await {
            out.unwrap();
        }
        let q = "SELECT v FROM t WHERE id = $1";
        assert_eq!(rows(&db, &mut vars, q, ScalarValue::Int64(Some(1))).await, ["a"]);
        assert_eq!(rows(&db, &mut vars, q, ScalarValue::Int64(Some(2))).await, ["b"]);
        assert_eq!(rows(&db, &mut vars, q, ScalarValue::Utf8(Some("1".into()))).await, ["a"]);
        assert_eq!((vars.prepared.planned, vars.prepared.reused), (1, 2));
        // A new table changes the catalog: the query is planned again, then kept again.
        for out in db.execute(&mut vars, "DROP TABLE t; CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'new')").await {
            out.unwrap();
        }
        assert_eq!(rows(&db, &mut vars, q, ScalarValue::Int64(Some(1))).await, ["new"]);
        assert_eq!(rows(&db, &mut vars, q, ScalarValue::Int64(Some(2))).await, Vec::<String>::new());
        assert_eq!((vars.prepared.planned, vars.prepared.reused), (2, 3));
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn at_most_the_limit_is_kept_least_recently_used_first_out() {
        let mut plans = PreparedPlans::default();
        for i in 0..MAX_PREPARED_PLANS {
            plans.insert(&format!("q{i}"), plan(1));
        }
        assert!(plans.get("q0", 1, "UTC").is_some()); // q0 is now the most recent
        plans.insert("new", plan(1));
        assert_eq!(plans.plans.values.len(), MAX_PREPARED_PLANS);
        assert!(plans.get("q0", 1, "UTC").is_some());
        assert!(plans.get("q1", 1, "UTC").is_none());
    }
}
