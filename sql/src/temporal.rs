//! `now()` in a materialized view. An ad-hoc query reads `now()` once, as PostgreSQL does
//! (DataFusion folds it into a constant), but a view is maintained for ever: folded at
//! `CREATE`, `WHERE ts > now() - INTERVAL '1 hour'` would keep the hour before the view was
//! created, silently. So before a view's plan is optimised, `now()` becomes [`ViewNow`], which
//! nothing folds, and the lowering turns each `WHERE` conjunct comparing a row's expression
//! with it into a temporal filter (`openclaw_engine::operators::temporal_filter`): the row
//! passes until its expiry, then is retracted. Anywhere else in a view, `now()` and the other
//! clock functions are refused.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{SqlError, SqlResult};

/// `now()` as a view sees it: the wall clock as the view is maintained. Never evaluated; the
/// lowering replaces every comparison with it by a temporal filter.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ViewNow {
    signature: Signature,
    timezone: Option<Arc<str>>,
}

impl ScalarUDFImpl for ViewNow {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> datafusion::common::Result<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), DataType::Timestamp(TimeUnit::Nanosecond, self.timezone.clone()), false)))
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, self.timezone.clone()))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        datafusion::common::internal_err!("now() in a view is maintained by a temporal filter, never evaluated")
    }
}

/// Clock functions a view cannot keep up to date (they would be folded at `CREATE`).
const REFUSED_CLOCKS: &[&str] = &["current_date", "current_time", "localtime", "localtimestamp", "today"];

fn is_view_now(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if f.func.inner().is::<ViewNow>())
}

/// Whether `e` reads the clock of a view.
pub(crate) fn mentions_now(e: &Expr) -> bool {
    e.exists(|e| Ok(is_view_now(e))).unwrap_or(true)
}

/// The view's plan with every `now()` (and `current_timestamp`) replaced by [`ViewNow`];
/// the other clock functions are refused.
pub(crate) fn mark_now(plan: LogicalPlan, timezone: Option<&str>) -> SqlResult<LogicalPlan> {
    let now = Arc::new(ScalarUDF::new_from_impl(ViewNow { signature: Signature::nullary(Volatility::Volatile), timezone: timezone.map(Arc::from) }));
    let marked = plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|e| {
            e.transform_up(|e| match &e {
                Expr::ScalarFunction(f) if f.func.name() == "now" && !is_view_now(&e) => Ok(Transformed::yes(Expr::ScalarFunction(
                    datafusion::logical_expr::expr::ScalarFunction::new_udf(now.clone(), vec![]),
                ))),
                Expr::ScalarFunction(f) if REFUSED_CLOCKS.contains(&f.func.name()) => {
                    datafusion::common::plan_err!("{} cannot be kept up to date in a materialized view", f.func.name())
                }
                _ => Ok(Transformed::no(e)),
            })
        })
    });
    match marked {
        Ok(t) => Ok(t.data),
        Err(e) => Err(SqlError::not_supported(e.strip_backtrace().trim_start_matches("Error during planning: ").to_string())
            .with_hint("compare a column with now() in WHERE, as in WHERE ts > now() - INTERVAL '1 hour'")),
    }
}

/// A `WHERE` conjunct on the clock: the expression of the instant from which a row no longer
/// passes, and whether it still passes at that instant. `None`: not a conjunct on `now()`.
/// A conjunct on `now()` of another shape is refused.
pub(crate) fn expiry(conjunct: &Expr) -> Option<SqlResult<(Expr, bool)>> {
    if !mentions_now(conjunct) {
        return None;
    }
    Some(expiry_of(conjunct).ok_or_else(|| {
        SqlError::not_supported(format!("the condition {conjunct} on now() is not supported in a materialized view"))
            .with_hint("a view keeps rows while the clock is before a bound: WHERE ts > now() - INTERVAL '1 hour' (or >=)")
    }))
}

fn expiry_of(conjunct: &Expr) -> Option<(Expr, bool)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else { return None };
    // The row's side on the left, the clock's on the right.
    let (row, op, clock) = match (mentions_now(left), mentions_now(right)) {
        (false, true) => (left.as_ref(), *op, right.as_ref()),
        (true, false) => (right.as_ref(), op.swap()?, left.as_ref()),
        _ => return None,
    };
    // `row > now() ± c` holds while `now() < row ∓ c`: the expiry is `row ∓ c`.
    let inclusive = match op {
        Operator::Gt => false,
        Operator::GtEq => true,
        _ => return None,
    };
    let expiry = match clock {
        e if is_view_now(e) => row.clone(),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) if is_view_now(left) && !mentions_now(right) => {
            Expr::BinaryExpr(BinaryExpr::new(Box::new(row.clone()), Operator::Plus, right.clone()))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Plus, right }) if is_view_now(left) && !mentions_now(right) => {
            Expr::BinaryExpr(BinaryExpr::new(Box::new(row.clone()), Operator::Minus, right.clone()))
        }
        _ => return None,
    };
    Some((expiry, inclusive))
}
