//! `unnest(list)` (in the select list or in `FROM`), which DataFusion plans as an `Unnest` node
//! under a projection: the stateless unnest operator, each output row carrying its input
//! row's change, so deleting or updating a row retracts every row its list made. `unnest` of
//! a struct spreads its fields into columns, row for row.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::Unnest;
use datafusion::physical_plan::unnest::ListUnnest;
use openclaw_engine::operators::unnest::UnnestSpec;
use openclaw_engine::plan::StreamNode;

use super::Lowering;
use crate::error::{SqlError, SqlResult};

impl Lowering<'_> {
    pub(super) fn unnest(&mut self, u: &Unnest, depth: usize) -> SqlResult<StreamNode> {
        // One output column per input column, or per field of an unnested struct: no list
        // unnested at two depths at once.
        let struct_width = |i: &usize| match u.input.schema().field(*i).data_type() {
            DataType::Struct(fields) => fields.len(),
            _ => 1,
        };
        let expected = u.input.schema().fields().len() + u.struct_type_columns.iter().map(|i| struct_width(i) - 1).sum::<usize>();
        if u.schema.fields().len() != expected {
            return Err(SqlError::not_supported("unnest of one list at several depths in one SELECT is not supported in materialized views")
                .with_hint("unnest it in a subquery, then unnest the result"));
        }
        let lists = u.list_type_columns.iter().map(|(index, list)| ListUnnest { index_in_input_schema: *index, depth: list.depth }).collect();
        let input = self.lower(&u.input, depth + 1)?;
        let structs = u.struct_type_columns.clone();
        let spec = UnnestSpec { lists, structs, options: u.options.clone(), schema: Arc::new(u.schema.as_arrow().clone()), input_schema: input.schema() };
        Ok(StreamNode::Unnest { spec, input: Box::new(input) })
    }
}
