//! A table's log is on disk (`table_<id>_log`) and read after a restart to resume views, so
//! its entries must decode in every future build: `tests/fixtures/table_log_v1.txt` holds an
//! entry of each format (a changelog; rows appended to a table without a primary key) as
//! written today. A change needs a new entry format and a new fixture, never an edited one.
//! `OPENCLAW_BLESS=1` writes the fixture.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use openclaw_engine::operators::materialize::Layout;
use openclaw_engine::operators::MaterializedState;
use openclaw_engine::table_log::TableLog;
use openclaw_engine::{Op, StreamChunk};
use openclaw_storage::{StateWrite, Store};

const FIXTURE: &str = "tests/fixtures/table_log_v1.txt";

fn rows(ids: &[i64], names: &[Option<&str>]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
    let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn log_entries_equal_the_checked_in_bytes_and_replay() {
    let dir = std::env::temp_dir().join(format!("openclaw-golden-table-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let appended = rows(&[10, 11, 12], &[Some("a"), None, Some("é")]);
    let table = MaterializedState::new(store.clone(), "table_1", appended.schema(), Layout::RowId).unwrap();
    let mut log = TableLog::open(&store, "table_1").unwrap();
    let mut write = StateWrite::default();
    // A changelog entry: an update pair and a delete, as a keyed table writes them.
    let changes = StreamChunk::new(vec![Op::UpdateDelete, Op::UpdateInsert, Op::Delete], rows(&[1, 1, 2], &[Some("x"), Some("y"), None]));
    log.append(&mut write, &[changes.clone()], table.row_codec()).unwrap();
    // An appended-rows entry, for rows stored in the table itself.
    let next = openclaw_engine::table_blocks::append(&table, &mut write, &appended, 1, 2).unwrap();
    assert_eq!(next, 4);
    log.append_rows(&mut write, 1, 3);
    store.write_durable(write).unwrap();

    let mut lines = vec![];
    store
        .scan("table_1_log", None, |key, value| {
            lines.push(format!("{} {}", hex(key), hex(value)));
            true
        })
        .unwrap();
    let path = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join(FIXTURE);
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let fixture = std::fs::read_to_string(&path).expect("the checked-in fixture");
    assert_eq!(lines, fixture.lines().collect::<Vec<_>>(), "the table log's entries changed: add an entry format and a fixture");

    // The checked-in entries replay, whatever append writes: rewrite the log from the fixture.
    let store = {
        drop(log);
        drop(table);
        store
    };
    let mut write = StateWrite::default();
    let log_cf: Arc<str> = Arc::from("table_1_log");
    for line in fixture.lines() {
        let (key, value) = line.split_once(' ').unwrap();
        write.put(&log_cf, unhex(key), unhex(value));
    }
    store.write_durable(write).unwrap();
    let table = MaterializedState::new(store.clone(), "table_1", appended.schema(), Layout::RowId).unwrap();
    let log = TableLog::open(&store, "table_1").unwrap();
    assert_eq!(log.position(), 3);
    let replayed = log.read_from(&table, 1, 1024).unwrap();
    let expected = [changes, StreamChunk::inserts(appended.slice(0, 2)), StreamChunk::inserts(appended.slice(2, 1))];
    assert_eq!(replayed.len(), expected.len());
    for (got, want) in replayed.iter().zip(&expected) {
        assert_eq!(got.ops(), want.ops());
        assert_eq!(got.batch(), want.batch());
    }
    // From the second entry on: only the appended rows.
    assert_eq!(log.read_from(&table, 2, 1024).unwrap().iter().map(|c| c.num_rows()).sum::<usize>(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
