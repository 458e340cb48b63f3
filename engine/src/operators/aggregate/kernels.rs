//! Aggregate calls computed over every group of a chunk at once: one pass over the chunk's
//! rows (each knows its group's index among the chunk's groups) and arrow kernels over the
//! groups' old states, with no accumulator object or scalar per group.
//!
//! - `count` and `sum` retract: each row adds its value with the sign of its op, so one
//!   signed pass gives every group's change, added to its old state. The states are exactly
//!   those of DataFusion's sliding accumulators (`count`: `[count]`; `sum`: `[sum, count of
//!   values]`), which is what the group rows stored before these kernels existed.
//! - `min`/`max` over an append-only input go through DataFusion's own `GroupsAccumulator`,
//!   fed the groups' old extremes and then the chunk's rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array, PrimitiveArray, UInt64Array};
use datafusion::arrow::datatypes::{ArrowNativeTypeOp, DataType, Decimal128Type, Float64Type, Int64Type, UInt64Type};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::{internal_err, EngineResult};

/// A call that a kernel of this module computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kernel {
    /// `count(args)` with retraction: the rows whose arguments are all non-null.
    Count,
    /// `sum(arg)` with retraction, in the call's result type.
    Sum(DataType),
    /// `min`/`max` of an append-only input, through DataFusion's `GroupsAccumulator`.
    Extreme,
}

impl Kernel {
    /// The kernel for a retractable call, if one fits it (else the call is computed group by
    /// group with DataFusion's sliding accumulator).
    pub fn for_retract(expr: &AggregateFunctionExpr) -> Option<Self> {
        if expr.is_distinct() {
            return None;
        }
        match expr.fun().name() {
            "count" => Some(Kernel::Count),
            "sum" if expr.expressions().len() == 1 => {
                let dt = expr.field().data_type().clone();
                matches!(dt, DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Decimal128(_, _)).then_some(Kernel::Sum(dt))
            }
            _ => None,
        }
    }

    /// The kernel for `min`/`max` over an append-only input, if DataFusion has a groups
    /// accumulator for its type.
    pub fn for_append_extreme(expr: &AggregateFunctionExpr) -> Option<Self> {
        expr.groups_accumulator_supported().then_some(Kernel::Extreme)
    }
}

/// The rows of one chunk as the kernels see them.
pub struct ChunkRows<'a> {
    /// Per row: the index of its group among the chunk's groups.
    pub group_of_row: &'a [usize],
    /// Per row: +1 (insert) or -1 (delete).
    pub signs: &'a [i64],
    pub n_groups: usize,
}

/// What a kernel computed for every group: its new state columns and its value.
pub struct GroupsResult {
    pub states: Vec<ArrayRef>,
    pub value: ArrayRef,
}

/// Computes `kernel` for every group. `args` are the call's argument columns, `mask` its
/// `FILTER` (a row passes where it is true), `old` the groups' old state columns (`None`
/// where no group existed before; a new group's entries are null).
pub fn compute(kernel: &Kernel, expr: &AggregateFunctionExpr, rows: &ChunkRows, args: &[ArrayRef], mask: Option<&BooleanArray>, old: Option<&[ArrayRef]>) -> EngineResult<GroupsResult> {
    match kernel {
        Kernel::Count => {
            let weights = weights(rows, args, mask);
            let mut counts = old.map_or_else(|| vec![0; rows.n_groups], |o| int64_or_zero(&o[0]));
            for (row, &w) in weights.iter().enumerate() {
                counts[rows.group_of_row[row]] += w;
            }
            if let Some(c) = counts.iter().find(|&&c| c < 0) {
                internal_err!("a group's count went negative ({c}): a row was retracted that was never added");
            }
            let counts: ArrayRef = Arc::new(Int64Array::from(counts));
            Ok(GroupsResult { states: vec![counts.clone()], value: counts })
        }
        Kernel::Sum(dt) => {
            let arg = datafusion::arrow::compute::cast(&args[0], dt)?;
            let weights = weights(rows, &[arg.clone()], mask);
            match dt {
                DataType::Int64 => signed_sum::<Int64Type>(rows, &weights, &arg, old, dt),
                DataType::UInt64 => signed_sum::<UInt64Type>(rows, &weights, &arg, old, dt),
                DataType::Float64 => signed_sum::<Float64Type>(rows, &weights, &arg, old, dt),
                DataType::Decimal128(_, _) => signed_sum::<Decimal128Type>(rows, &weights, &arg, old, dt),
                other => internal_err!("no sum kernel for {other}"),
            }
        }
        Kernel::Extreme => {
            let mut acc = expr.create_groups_accumulator()?;
            if let Some(old) = old {
                let all: Vec<usize> = (0..rows.n_groups).collect();
                acc.update_batch(&old[..1], &all, None, rows.n_groups)?;
            }
            // No argument columns: the empty group of a global aggregate at start.
            if !args.is_empty() {
                acc.update_batch(args, rows.group_of_row, mask, rows.n_groups)?;
            }
            let value = if old.is_none() && args.is_empty() {
                datafusion::arrow::array::new_null_array(expr.field().data_type(), rows.n_groups)
            } else {
                acc.evaluate(EmitTo::All)?
            };
            Ok(GroupsResult { states: vec![value.clone()], value })
        }
    }
}

/// Per row: its sign where it passes the filter and every argument is non-null, else 0.
fn weights(rows: &ChunkRows, args: &[ArrayRef], mask: Option<&BooleanArray>) -> Vec<i64> {
    let mut weights = rows.signs.to_vec();
    for arg in args {
        if let Some(nulls) = arg.logical_nulls() {
            for (w, valid) in weights.iter_mut().zip(nulls.iter()) {
                *w *= i64::from(valid);
            }
        }
    }
    if let Some(mask) = mask {
        for (row, w) in weights.iter_mut().enumerate() {
            *w *= i64::from(mask.is_valid(row) && mask.value(row));
        }
    }
    weights
}

fn int64_or_zero(col: &ArrayRef) -> Vec<i64> {
    col.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(0)).collect()
}

/// `sum` with retraction: old sums and counts plus the chunk's signed values.
fn signed_sum<T: ArrowPrimitiveType>(rows: &ChunkRows, weights: &[i64], arg: &ArrayRef, old: Option<&[ArrayRef]>, dt: &DataType) -> EngineResult<GroupsResult> {
    let (mut sums, mut counts): (Vec<T::Native>, Vec<i64>) = match old {
        Some(old) => (
            old[0].as_primitive::<T>().iter().map(|v| v.unwrap_or(T::Native::ZERO)).collect(),
            old[1].as_primitive::<UInt64Type>().iter().map(|v| v.unwrap_or(0) as i64).collect(),
        ),
        None => (vec![T::Native::ZERO; rows.n_groups], vec![0; rows.n_groups]),
    };
    let values = arg.as_primitive::<T>().values();
    for (row, &w) in weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        let g = rows.group_of_row[row];
        sums[g] = if w > 0 { sums[g].add_wrapping(values[row]) } else { sums[g].sub_wrapping(values[row]) };
        counts[g] += w;
    }
    if let Some(c) = counts.iter().find(|&&c| c < 0) {
        internal_err!("a group's sum counts {c} values: a value was retracted that was never added");
    }
    let sum: PrimitiveArray<T> = sums.iter().zip(&counts).map(|(&s, &c)| (c > 0).then_some(s)).collect();
    let sum: ArrayRef = Arc::new(sum.with_data_type(dt.clone()));
    let counts: ArrayRef = Arc::new(UInt64Array::from_iter_values(counts.iter().map(|&c| c as u64)));
    Ok(GroupsResult { states: vec![sum.clone(), counts], value: sum })
}
