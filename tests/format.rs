//! A data directory written by the predecessor storage format (1: Arrow's row format and
//! DataFusion's partition hash) is refused at start with a message that says what to do, and
//! is left as it was. `tests/fixtures/format1-datadir.tar.gz` was written by the release before
//! format 2 (commit cb53ff9): a table of two rows, a view over it, a checkpoint.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_format_1_data_dir_is_refused_clearly_and_left_untouched() {
    let dir = std::env::temp_dir().join(format!("openclaw-test-format1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = common::repo_path("tests/fixtures/format1-datadir.tar.gz");
    let status = Command::new("tar").arg("xzf").arg(&fixture).arg("-C").arg(&dir).status().expect("tar");
    assert!(status.success());
    let data = dir.join("openclaw-data");
    let listing = |d: &std::path::Path| -> Vec<String> {
        let mut out = vec![];
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(format!("{} {}", e.path().strip_prefix(d).unwrap().display(), e.metadata().unwrap().len()));
                }
            }
        }
        out.sort();
        out
    };
    let before = listing(&data);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_openclaw"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run openclaw");
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a format-1 data dir was opened: {stderr}");
    assert!(stderr.contains("storage format 1"), "{stderr}");
    assert!(stderr.contains("does not convert older formats"), "{stderr}");
    assert_eq!(listing(&data), before, "the refused data dir was changed");
    let _ = std::fs::remove_dir_all(&dir);
}
