//! Which partition owns a key is on disk too (each partition has its own state), so the
//! routing must never change: `tests/fixtures/partitions_v2.txt` holds keys and their
//! partitions among 2, 4, 7 and 64. `OPENCLAW_BLESS=1` writes it for a new format.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray};
use openclaw_engine::operators::exchange::partition_of_rows;

const FIXTURE: &str = "tests/fixtures/partitions_v2.txt";
const WIDTHS: [usize; 4] = [2, 4, 7, 64];

fn keys() -> Vec<(&'static str, Vec<ArrayRef>)> {
    let ids: Vec<Option<i64>> = (0..40).map(Some).chain([None, Some(-1), Some(i64::MAX), Some(1_000_000_007)]).collect();
    let names: Vec<Option<String>> = (0..20).map(|i| Some(format!("bidder-{i}"))).chain([None, Some(String::new())]).collect();
    let n = names.len();
    vec![
        ("bigint", vec![Arc::new(Int64Array::from(ids)) as ArrayRef]),
        ("varchar", vec![Arc::new(StringArray::from(names.clone())) as ArrayRef]),
        (
            "int,varchar",
            vec![Arc::new(Int32Array::from_iter((0..n as i32).map(|i| Some(i % 3)))) as ArrayRef, Arc::new(StringArray::from(names)) as ArrayRef],
        ),
        ("timestamp", vec![Arc::new(TimestampMicrosecondArray::from_iter_values((0..10).map(|i| 1_700_000_000_000_000 + i * 2_000_000))) as ArrayRef]),
    ]
}

#[test]
fn keys_route_to_the_checked_in_partitions() {
    let mut lines = vec![];
    for (name, cols) in keys() {
        let rows = cols[0].len();
        for width in WIDTHS {
            let owners = partition_of_rows(&cols, rows, width).unwrap();
            lines.push(format!("{name} {width} {}", owners.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")));
        }
    }
    let path = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join(FIXTURE);
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let fixture = std::fs::read_to_string(&path).expect("the checked-in fixture");
    assert_eq!(lines, fixture.lines().collect::<Vec<_>>(), "partition routing changed: bump FORMAT_VERSION and write a new fixture");
}

#[test]
fn string_types_route_alike() {
    let values = ["a", "bb", "", "auction-7"];
    let utf8: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
    let view: ArrayRef = Arc::new(StringViewArray::from(values.to_vec()));
    assert_eq!(partition_of_rows(&[utf8], 4, 7).unwrap(), partition_of_rows(&[view], 4, 7).unwrap());
}
