//! Output column names as PostgreSQL gives them: an unaliased expression is named after its
//! function (`count`, `upper`), and anything else is `?column?`, where DataFusion would print
//! the expression (`Int64(1)`).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};

use crate::database::QueryOutput;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;

/// PostgreSQL's name for each output column of `stmt`, where it differs from DataFusion's
/// (`None` keeps DataFusion's). `None` overall when the select list has a wildcard.
pub fn pg_column_names(stmt: &Statement) -> Option<Vec<Option<String>>> {
    let Statement::Query(q) = stmt else { return None };
    let SetExpr::Select(select) = q.body.as_ref() else { return None };
    select
        .projection
        .iter()
        .zip(repeated_columns(&select.projection))
        .map(|(item, repeated)| match item {
            SelectItem::UnnamedExpr(e) if repeated => Some(column_name(e)),
            SelectItem::UnnamedExpr(e) => Some(name_of(e)),
            SelectItem::ExprWithAlias { .. } => Some(None),
            _ => None,
        })
        .collect()
}

/// Which items of a select list name a column that an earlier item names too (`SELECT i, i`):
/// PostgreSQL allows it, DataFusion refuses equal expressions, so those get an alias.
fn repeated_columns(projection: &[SelectItem]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    projection
        .iter()
        .map(|item| match item {
            // By name: `t.i` and `i` may be the same column. Aliasing two that are not costs nothing.
            SelectItem::UnnamedExpr(e) => column_name(e).is_some_and(|name| !seen.insert(name)),
            _ => false,
        })
        .collect()
}

/// PostgreSQL's name of a column reference: its last part, folded to lower case unless quoted.
fn column_name(e: &Expr) -> Option<String> {
    let ident = match e {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    Some(if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() })
}

/// Aliases every unnamed, non-column expression of the top-level select list, so that two
/// equal expressions do not collide in DataFusion (PostgreSQL allows `SELECT 1, 1`); the
/// output is renamed to PostgreSQL's names afterwards by [`relabel`].
pub fn alias_unnamed(stmt: &mut Statement) {
    let q = match stmt {
        Statement::Query(q) => q,
        Statement::Insert(insert) => match insert.source.as_mut() {
            Some(q) => q,
            None => return,
        },
        _ => return,
    };
    let SetExpr::Select(select) = q.body.as_mut() else { return };
    let repeated = repeated_columns(&select.projection);
    for (i, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(e) = item {
            if name_of(e).is_some() || repeated[i] {
                let alias = datafusion::sql::sqlparser::ast::Ident::new(format!("__openclaw_column_{i}"));
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias };
            }
        }
    }
}

fn name_of(e: &Expr) -> Option<String> {
    let mut e = e;
    // Parentheses and casts keep the name of what they wrap; the depth is the user's, so walk
    // it in a loop rather than recursively.
    loop {
        match e {
            Expr::Nested(inner) => e = inner,
            Expr::Cast { expr, .. } => e = expr,
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => return None,
            Expr::Function(f) => return f.name.0.last().map(|p| p.to_string().trim_matches('"').to_lowercase()),
            Expr::Case { .. } => return Some("case".into()),
            Expr::Extract { .. } => return Some("extract".into()),
            Expr::Substring { .. } => return Some("substring".into()),
            Expr::Position { .. } => return Some("position".into()),
            Expr::Ceil { .. } => return Some("ceil".into()),
            Expr::Floor { .. } => return Some("floor".into()),
            _ => return Some("?column?".into()),
        }
    }
}

/// `schema` with PostgreSQL's names where `names` has them.
pub fn rename_schema(schema: SchemaRef, names: &Option<Vec<Option<String>>>) -> SchemaRef {
    let Some(names) = names.as_ref().filter(|n| n.len() == schema.fields().len() && n.iter().any(Option::is_some)) else {
        return schema;
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names.iter())
        .map(|(f, n)| match n {
            Some(n) => f.as_ref().clone().with_name(n),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Relabels every batch of `stream` with `schema` (same columns, PostgreSQL's names).
pub fn relabel(schema: SchemaRef, stream: SendableRecordBatchStream) -> QueryOutput {
    use futures::StreamExt;
    let target = schema.clone();
    let stream = stream.map(move |batch| {
        let batch = batch?;
        if batch.schema().fields().iter().map(|f| f.name()).eq(target.fields().iter().map(|f| f.name())) {
            return Ok(batch);
        }
        Ok(RecordBatch::try_new(target.clone(), batch.columns().to_vec())?)
    });
    QueryOutput::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) }
}
