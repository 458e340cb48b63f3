use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{ConnectorError, Options};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableType {
    Person,
    Auction,
    Bid,
}

impl TableType {
    pub fn from_options(options: &Options) -> Result<Self, ConnectorError> {
        let t = options.get("nexmark.table.type").ok_or_else(|| {
            ConnectorError::new("nexmark source needs option \"nexmark.table.type\"")
                .with_hint("add 'nexmark.table.type' = 'bid' (or 'auction', 'person')")
        })?;
        match t.to_ascii_lowercase().as_str() {
            "person" => Ok(Self::Person),
            "auction" => Ok(Self::Auction),
            "bid" => Ok(Self::Bid),
            other => Err(ConnectorError::new(format!("invalid nexmark.table.type \"{other}\""))
                .with_hint("use 'person', 'auction' or 'bid'")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }
}

/// The columns each Nexmark table has, as RisingWave declares them.
pub fn table_schema(t: TableType) -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
    let f = |n: &str, dt: DataType| Field::new(n, dt, false);
    let fields = match t {
        TableType::Person => vec![
            f("id", DataType::Int64),
            f("name", DataType::Utf8),
            f("email_address", DataType::Utf8),
            f("credit_card", DataType::Utf8),
            f("city", DataType::Utf8),
            f("state", DataType::Utf8),
            f("date_time", ts()),
            f("extra", DataType::Utf8),
        ],
        TableType::Auction => vec![
            f("id", DataType::Int64),
            f("item_name", DataType::Utf8),
            f("description", DataType::Utf8),
            f("initial_bid", DataType::Int64),
            f("reserve", DataType::Int64),
            f("date_time", ts()),
            f("expires", ts()),
            f("seller", DataType::Int64),
            f("category", DataType::Int64),
            f("extra", DataType::Utf8),
        ],
        TableType::Bid => vec![
            f("auction", DataType::Int64),
            f("bidder", DataType::Int64),
            f("price", DataType::Int64),
            f("channel", DataType::Utf8),
            f("url", DataType::Utf8),
            f("date_time", ts()),
            f("extra", DataType::Utf8),
        ],
    };
    Arc::new(Schema::new(fields))
}
