//! node-postgres (the `pg` package, `scripts/install-node-pg.sh`) reads every type as its
//! type parsers expect, chosen by the OIDs OpenClaw describes, over the simple and the
//! extended protocol; looks types up in `pg_type` by name with an array parameter
//! (`typname = ANY($1)`) as libraries registering parsers do; binds parameters of an insert
//! and runs a named prepared statement twice. `tests/node/types.js` prints what it got;
//! `tests/node/types.out` holds what PostgreSQL gives.

mod common;

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_reads_types_and_binds_parameters() {
    let modules = std::env::var("OPENCLAW_NODE_MODULES").expect("OPENCLAW_NODE_MODULES: run through scripts/test.sh, which installs node-postgres");
    let server = TestServer::start("node-pg");
    let url = format!("postgresql://openclaw@127.0.0.1:{}/openclaw", server.pg_port);
    let program = common::repo_path("tests/node/types.js");
    let out = tokio::task::spawn_blocking(move || {
        let run = std::process::Command::new("node").arg(program).arg(&url).env("NODE_PATH", &modules).env("TZ", "UTC").output().expect("run node");
        (run, server)
    })
    .await
    .unwrap()
    .0;
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "node failed: {printed}{}", String::from_utf8_lossy(&out.stderr));
    let expected_path = &common::repo_path("tests/node/types.out");
    if std::env::var_os("OPENCLAW_BLESS").is_some() {
        std::fs::write(expected_path, &printed).unwrap();
    }
    assert_eq!(printed, std::fs::read_to_string(expected_path).unwrap(), "node-postgres' values differ from {expected_path}");
}
