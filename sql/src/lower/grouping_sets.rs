//! `GROUP BY GROUPING SETS (...)`, `ROLLUP (...)` and `CUBE (...)`: one aggregate per grouping
//! set, each projected to the full output (NULL for the columns it does not group by, and the
//! `__grouping_id` DataFusion's `GROUPING()` reads), under a union. Each set's groups are its
//! own state, kept right under deletes as any `GROUP BY`'s.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Aggregate, Expr, GroupingSet};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::expressions::{Column, Literal};
use openclaw_engine::operators::AggregateSpec;
use openclaw_engine::plan::StreamNode;

use super::{project, Lowering};
use crate::error::{SqlError, SqlResult, SqlState};

/// Most grouping sets one `GROUP BY` may expand to (a `CUBE` of 6 columns has 64); each is an
/// aggregate with its own state.
pub const MAX_GROUPING_SETS: usize = 64;

/// For each grouping set, in DataFusion's order: which of the distinct group expressions it
/// leaves out (NULL in its rows).
fn sets(grouping: &GroupingSet) -> SqlResult<Vec<Vec<bool>>> {
    let distinct = grouping.distinct_expr();
    let n = distinct.len();
    let out: Vec<Vec<bool>> = match grouping {
        GroupingSet::Rollup(exprs) => (0..=exprs.len()).rev().map(|kept| (0..n).map(|j| j >= kept).collect()).collect(),
        GroupingSet::Cube(_) => {
            if n > 6 {
                return Err(too_many(1 << n.min(63)));
            }
            (0..1usize << n).map(|mask| (0..n).map(|j| mask & (1 << (n - 1 - j)) != 0).collect()).collect()
        }
        GroupingSet::GroupingSets(sets) => sets.iter().map(|set| distinct.iter().map(|e| !set.contains(e)).collect()).collect(),
    };
    if out.len() > MAX_GROUPING_SETS {
        return Err(too_many(out.len()));
    }
    Ok(out)
}

fn too_many(n: usize) -> SqlError {
    SqlError::new(SqlState::ProgramLimitExceeded, format!("GROUP BY expands to {n} grouping sets"))
        .with_hint(format!("a materialized view may group by at most {MAX_GROUPING_SETS} grouping sets"))
}

/// DataFusion's `__grouping_id` of a set: a bit per group expression, the first the highest,
/// set where the expression is left out; above them, the set's ordinal among equal sets.
fn grouping_id(left_out: &[bool], ordinal: usize) -> u64 {
    let semantic = left_out.iter().fold(0u64, |acc, &out| (acc << 1) | u64::from(out));
    semantic | ((ordinal as u64) << left_out.len())
}

impl Lowering<'_> {
    pub(super) fn grouping_sets(&mut self, agg: &Aggregate, grouping: &GroupingSet, depth: usize) -> SqlResult<StreamNode> {
        let input_schema = agg.input.schema();
        let distinct: Vec<&Expr> = grouping.distinct_expr();
        let n = distinct.len();
        let output = Arc::new(agg.schema.as_arrow().clone());
        let calls = self.calls(agg)?;
        let mut ordinals: HashMap<Vec<bool>, usize> = HashMap::new();
        let mut inputs = vec![];
        for left_out in sets(grouping)? {
            let ordinal = ordinals.entry(left_out.clone()).or_insert(0);
            let id = grouping_id(&left_out, *ordinal);
            *ordinal += 1;
            let kept: Vec<usize> = (0..n).filter(|&j| !left_out[j]).collect();
            let group_exprs = kept.iter().map(|&j| self.expr(distinct[j], input_schema)).collect::<SqlResult<Vec<_>>>()?;
            let mut fields: Vec<Arc<Field>> = kept.iter().map(|&j| output.fields()[j].clone()).collect();
            fields.extend(output.fields()[n + 1..].iter().cloned());
            let spec = AggregateSpec { group_exprs, calls: calls.clone(), schema: Arc::new(Schema::new(fields)), emit_on_close: None, clean_by: None };
            let node = StreamNode::Aggregate { spec, input: Box::new(self.lower(&agg.input, depth + 1)?) };
            // Its rows in the full output's columns.
            let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(output.fields().len());
            for j in 0..n {
                exprs.push(match kept.iter().position(|&k| k == j) {
                    Some(at) => Arc::new(Column::new(output.field(j).name(), at)),
                    None => Arc::new(Literal::new(ScalarValue::try_from(output.field(j).data_type())?)),
                });
            }
            exprs.push(Arc::new(Literal::new(ScalarValue::UInt64(Some(id)).cast_to(output.field(n).data_type())?)));
            for (i, field) in output.fields()[n + 1..].iter().enumerate() {
                exprs.push(Arc::new(Column::new(field.name(), kept.len() + i)));
            }
            inputs.push(project(exprs, output.clone(), node));
        }
        Ok(StreamNode::Union { inputs, schema: output })
    }
}
