//! The durable catalog: each table, source and view as the statement that created it, in the
//! `catalog` column family keyed by object id, plus what was resolved at creation and must not
//! change on a restart (a Nexmark source's base time, a view's parallelism). A restart replays
//! the records in id order, so every object keeps its id and so its column families.

use std::collections::BTreeMap;

use openclaw_engine::ObjectId;
use openclaw_storage::{CfKind, StateWrite, Store};
use serde_json::{json, Value};

use crate::error::{SqlError, SqlResult, SqlState};
use crate::parser::ObjectKind;

pub const CATALOG_CF: &str = "catalog";

/// Whether column family `cf` keeps its live content when a restart rolls state back to a
/// checkpoint: tables (acknowledged writes), the catalog, what sinks committed outside, and
/// the idempotency keys of acknowledged API writes.
pub fn lives_across_rollbacks(cf: &str) -> bool {
    cf == CATALOG_CF || cf == openclaw_connectors::two_phase::SINK_COMMITS_CF || cf == crate::write_api::WRITE_KEYS_CF || cf.starts_with("table_")
}

/// One catalog object as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DdlRecord {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub name: String,
    /// The `CREATE …` statement as the user wrote it.
    pub sql: String,
    /// Settings resolved at creation that the statement alone does not fix.
    pub resolved: BTreeMap<String, String>,
}

impl DdlRecord {
    fn key(id: ObjectId) -> Vec<u8> {
        id.to_be_bytes().to_vec()
    }

    fn encode(&self) -> Vec<u8> {
        let value = json!({
            "kind": self.kind.sql_name(),
            "name": self.name,
            "sql": self.sql,
            "resolved": self.resolved,
        });
        value.to_string().into_bytes()
    }

    fn decode(key: &[u8], bytes: &[u8]) -> SqlResult<Self> {
        let corrupt = |what: &str| SqlError::new(SqlState::Internal, format!("catalog record is corrupt: {what}"));
        let id = ObjectId::from_be_bytes(key.try_into().map_err(|_| corrupt("key"))?);
        let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(&e.to_string()))?;
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_string).ok_or_else(|| corrupt(field));
        let kind = ObjectKind::from_sql_name(&text("kind")?).ok_or_else(|| corrupt("kind"))?;
        let resolved = value
            .get("resolved")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        Ok(Self { id, kind, name: text("name")?, sql: text("sql")?, resolved })
    }
}

/// Makes sure the catalog column family exists.
pub fn open(store: &Store) -> SqlResult<()> {
    store.create_cf(CATALOG_CF, CfKind::Plain)?;
    Ok(())
}

/// Stores `record`, synced to disk before it returns: a created object survives a crash.
pub fn save(store: &Store, record: &DdlRecord) -> SqlResult<()> {
    let mut write = StateWrite::default();
    write.put(&CATALOG_CF.into(), DdlRecord::key(record.id), record.encode());
    store.write_durable(write)?;
    Ok(())
}

/// Forgets object `id`.
pub fn remove(store: &Store, id: ObjectId) -> SqlResult<()> {
    let mut write = StateWrite::default();
    write.delete(&CATALOG_CF.into(), DdlRecord::key(id));
    store.write_durable(write)?;
    Ok(())
}

/// Every stored object, in id order (the order they were created in, so dependencies first).
pub fn load(store: &Store) -> SqlResult<Vec<DdlRecord>> {
    let mut records = vec![];
    let mut failure = None;
    store.scan(CATALOG_CF, None, |k, v| match DdlRecord::decode(k, v) {
        Ok(r) => {
            records.push(r);
            true
        }
        Err(e) => {
            failure = Some(e);
            false
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(records),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = DdlRecord {
            id: 42,
            kind: ObjectKind::Source,
            name: "bid".into(),
            sql: "CREATE SOURCE bid WITH (connector = 'nexmark', \"x\" = 'it''s')".into(),
            resolved: [("nexmark.base.time".to_string(), "1700000000000".to_string())].into(),
        };
        assert_eq!(DdlRecord::decode(&DdlRecord::key(42), &record.encode()).unwrap(), record);
        assert!(DdlRecord::decode(&DdlRecord::key(1), b"{\"kind\":").is_err());
    }
}
