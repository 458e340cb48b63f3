//! When a stored join row can never match again: the time bounds of an interval join.
//!
//! A conjunct of the join condition of the form `P <= Q + c` (or `<`, or written the other
//! way round, with `c` a constant interval, `BETWEEN` included), where `P` is a column of one
//! side and `Q` a column of the other, means that a stored row of `Q`'s side matches a future
//! row of `P`'s side only if that row's `P` is at most `Q + c`. Every future row of `P`'s side
//! has `P` at or above that side's watermark on `P`, so a stored row whose `Q + c` is below it
//! can be deleted. Nexmark's q4 (`B.date_time BETWEEN A.date_time AND A.expires`) frees bids
//! behind the auctions' watermark and auctions that expired behind the bids'.
//!
//! Only inner joins: an outer join would have to emit a row padded with NULLs when its
//! partner can no longer come, which is not built.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator as BinOp;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::expressions::{BinaryExpr, Column, Literal};

/// How stored rows of one side expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The column of this side's rows (`Q`), a timestamp.
    pub column: usize,
    /// The other side's column (`P`) whose watermark expires them.
    pub other_column: usize,
    /// `c`, in microseconds: a row expires once `Q + c` is below the watermark.
    pub offset_us: i64,
}

/// The expiry of each side's rows: from the time bounds in `filter` (over left columns, then
/// right columns), else from an equi-key pair of time columns, `pairs` (a window join on
/// `window_start`: a row expires once the other side's watermark on its pair passes it).
pub fn expiries(filter: Option<&Arc<dyn PhysicalExpr>>, pairs: &[(usize, usize)], schemas: &[SchemaRef; 2], left_width: usize) -> [Option<Expiry>; 2] {
    let mut out = filter.map(|f| bounds(f, left_width)).unwrap_or([None, None]);
    let is_time = |side: usize, c: usize| matches!(schemas[side].field(c).data_type(), DataType::Timestamp(..) | DataType::Date32);
    if let Some(&(l, r)) = pairs.iter().find(|&&(l, r)| is_time(0, l) && is_time(1, r)) {
        out[0].get_or_insert(Expiry { column: l, other_column: r, offset_us: 0 });
        out[1].get_or_insert(Expiry { column: r, other_column: l, offset_us: 0 });
    }
    out
}

/// The expiries that the time bounds among `filter`'s conjuncts give.
fn bounds(filter: &Arc<dyn PhysicalExpr>, left_width: usize) -> [Option<Expiry>; 2] {
    let mut out = [None, None];
    for ((p, p_off), (q, q_off)) in conjuncts(filter).into_iter().filter_map(time_bound) {
        let (p_side, q_side) = (usize::from(p >= left_width), usize::from(q >= left_width));
        if p_side == q_side {
            continue;
        }
        let local = |c: usize| if c >= left_width { c - left_width } else { c };
        // p + p_off <= q + q_off  ⇔  p <= q + (q_off - p_off)
        let expiry = Expiry { column: local(q), other_column: local(p), offset_us: q_off - p_off };
        out[q_side].get_or_insert(expiry);
    }
    out
}

/// An output column of an inner join that every joined row holds at or above a column of each
/// side: `output >= column + offset`, by the condition's time bounds (and their chains: q4's
/// `B.date_time BETWEEN A.date_time AND A.expires` puts `A.expires` above `B.date_time`, and
/// so above `A.date_time`). A joined row comes from a new row of one side, whose bound column
/// is at or above that side's watermark, so the output column's watermark is the smaller of the
/// two sides' (each the largest its bounds give).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedWatermark {
    /// The column of the joined row (left columns, then right columns).
    pub output: usize,
    /// Per side: that side's columns and offsets (µs) below the output column.
    pub bounds: [Vec<(usize, i64)>; 2],
}

/// The output columns that the time bounds among `filter`'s conjuncts put above a column of
/// each side.
pub fn derived_watermarks(filter: Option<&Arc<dyn PhysicalExpr>>, left_width: usize) -> Vec<DerivedWatermark> {
    let Some(filter) = filter else { return vec![] };
    // `big >= small + d`, from each conjunct `small + s <= big + b` (`d = s - b`).
    let mut edges: Vec<(usize, usize, i64)> = vec![];
    for ((s, s_off), (g, g_off)) in conjuncts(filter).into_iter().filter_map(time_bound) {
        edges.push((g, s, s_off.saturating_sub(g_off)));
    }
    let mut columns: Vec<usize> = edges.iter().flat_map(|&(g, s, _)| [g, s]).collect();
    columns.sort_unstable();
    columns.dedup();
    // For each column, the largest offset by which it stands above each other column: chains
    // of bounds, relaxed once per column (a longer chain would repeat a column).
    let mut lower: std::collections::BTreeMap<usize, std::collections::BTreeMap<usize, i64>> =
        columns.iter().map(|&c| (c, [(c, 0)].into())).collect();
    for _ in 0..columns.len() {
        for &(g, s, d) in &edges {
            let below: Vec<(usize, i64)> = lower[&s].iter().map(|(&c, &o)| (c, o.saturating_add(d))).collect();
            let entry = lower.get_mut(&g).expect("every edge's column is listed");
            for (c, o) in below {
                let best = entry.entry(c).or_insert(o);
                *best = (*best).max(o);
            }
        }
    }
    let local = |c: usize| if c >= left_width { c - left_width } else { c };
    lower
        .into_iter()
        .filter_map(|(output, below)| {
            let mut bounds: [Vec<(usize, i64)>; 2] = [vec![], vec![]];
            for (c, o) in below {
                bounds[usize::from(c >= left_width)].push((local(c), o));
            }
            (!bounds[0].is_empty() && !bounds[1].is_empty()).then_some(DerivedWatermark { output, bounds })
        })
        .collect()
}

/// A conjunct `small + s <= big + b` (or `<`, or written the other way round) over two
/// columns: `((small, s), (big, b))`, offsets in µs.
fn time_bound(conjunct: &Arc<dyn PhysicalExpr>) -> Option<((usize, i64), (usize, i64))> {
    let b = conjunct.downcast_ref::<BinaryExpr>()?;
    let (small, big) = match b.op() {
        BinOp::LtEq | BinOp::Lt => (b.left(), b.right()),
        BinOp::GtEq | BinOp::Gt => (b.right(), b.left()),
        _ => return None,
    };
    Some((column_plus(small)?, column_plus(big)?))
}

fn conjuncts(e: &Arc<dyn PhysicalExpr>) -> Vec<&Arc<dyn PhysicalExpr>> {
    match e.downcast_ref::<BinaryExpr>() {
        Some(b) if *b.op() == BinOp::And => {
            let mut out = conjuncts(b.left());
            out.extend(conjuncts(b.right()));
            out
        }
        _ => vec![e],
    }
}

/// `column`, `column + interval` or `column - interval`: the column and the offset in µs.
fn column_plus(e: &Arc<dyn PhysicalExpr>) -> Option<(usize, i64)> {
    if let Some(c) = e.downcast_ref::<Column>() {
        return Some((c.index(), 0));
    }
    let b = e.downcast_ref::<BinaryExpr>()?;
    let c = b.left().downcast_ref::<Column>()?;
    let offset = interval_us(b.right().downcast_ref::<Literal>()?.value())?;
    match b.op() {
        BinOp::Plus => Some((c.index(), offset)),
        BinOp::Minus => Some((c.index(), offset.checked_neg()?)),
        _ => None,
    }
}

/// A fixed-length interval in microseconds; `None` for months (their length varies).
fn interval_us(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => Some(i64::from(d.days) * 86_400_000_000 + i64::from(d.milliseconds) * 1_000),
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => Some(i64::from(i.days) * 86_400_000_000 + i.nanoseconds / 1_000),
        ScalarValue::DurationMicrosecond(Some(us)) => Some(*us),
        ScalarValue::DurationMillisecond(Some(ms)) => ms.checked_mul(1_000),
        ScalarValue::DurationSecond(Some(s)) => s.checked_mul(1_000_000),
        _ => None,
    }
}

/// The order-preserving 8-byte form of a time in µs that prefixes a side's expiry index keys.
pub fn time_key(us: i64) -> [u8; 8] {
    ((us as u64) ^ (1 << 63)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::{binary, col, lit};

    /// q4's condition: auction (id, date_time, expires) joined with bid (auction, date_time)
    /// on `B.date_time BETWEEN A.date_time AND A.expires + INTERVAL '1' SECOND`; the joined
    /// row's schema and the condition over it.
    fn q4_condition() -> (Schema, Arc<dyn PhysicalExpr>) {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Schema::new(vec![
            Field::new("a_id", DataType::Int64, true),
            Field::new("a_dt", ts.clone(), true),
            Field::new("a_exp", ts.clone(), true),
            Field::new("b_auction", DataType::Int64, true),
            Field::new("b_dt", ts, true),
        ]);
        let c = |n: &str| col(n, &schema).unwrap();
        let one_second = lit(ScalarValue::IntervalMonthDayNano(Some(datafusion::arrow::datatypes::IntervalMonthDayNano::new(0, 0, 1_000_000_000))));
        let lower = binary(c("b_dt"), BinOp::GtEq, c("a_dt"), &schema).unwrap();
        let upper = binary(c("b_dt"), BinOp::LtEq, binary(c("a_exp"), BinOp::Plus, one_second, &schema).unwrap(), &schema).unwrap();
        let filter = binary(lower, BinOp::And, upper, &schema).unwrap();
        (schema, filter)
    }

    #[test]
    fn between_bounds_expire_both_sides() {
        let (schema, filter) = q4_condition();
        let c = |n: &str| col(n, &schema).unwrap();
        let [auctions, bids] = bounds(&filter, 3);
        // An auction expires once expires + 1 s is below the bids' watermark.
        assert_eq!(auctions, Some(Expiry { column: 2, other_column: 1, offset_us: 1_000_000 }));
        // A bid expires once its date_time is below the auctions' watermark on date_time.
        assert_eq!(bids, Some(Expiry { column: 1, other_column: 1, offset_us: 0 }));
        // An equality or a condition within one side gives nothing.
        let same_side = binary(c("a_dt"), BinOp::LtEq, c("a_exp"), &schema).unwrap();
        assert_eq!(bounds(&same_side, 3), [None, None]);
    }

    /// q4's condition puts `A.expires` above both sides' `date_time`, and `B.date_time` above
    /// `A.date_time` (and itself); `A.date_time` is above nothing of the bids'.
    #[test]
    fn between_bounds_derive_watermarks_through_chains() {
        let (_, filter) = q4_condition();
        let derived = derived_watermarks(Some(&filter), 3);
        assert_eq!(
            derived,
            vec![
                // a_exp + 1 s >= b_dt >= a_dt, so a_exp >= b_dt - 1 s and a_exp >= a_dt - 1 s.
                DerivedWatermark { output: 2, bounds: [vec![(1, -1_000_000), (2, 0)], vec![(1, -1_000_000)]] },
                DerivedWatermark { output: 4, bounds: [vec![(1, 0)], vec![(1, 0)]] },
            ]
        );
        assert_eq!(derived_watermarks(None, 3), vec![]);
    }

    #[test]
    fn time_keys_sort_like_times() {
        let times = [i64::MIN, -5, 0, 7, i64::MAX];
        assert!(times.windows(2).all(|w| time_key(w[0]) < time_key(w[1])));
    }
}
