#!/usr/bin/env bash
# Runs the whole test suite (installing what the build needs): unit and fixture tests of every
# crate, the .slt files against a real server over pgwire, the tokio-postgres tests, and the
# console in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Debian's Chromium and playwright-core, for the console's browser test (tests/console.rs).
source scripts/install-browser.sh
source scripts/install-grpc-client.sh
# A Java runtime and pgJDBC, for the JDBC metadata test (tests/jdbc.rs).
source scripts/install-jdbc.sh
# Node.js and node-postgres, for its type and parameter test (tests/node_pg.rs).
source scripts/install-node-pg.sh
# Prometheus' promtool, which checks GET /metrics (tests/metrics.rs).
source scripts/install-promtool.sh
cargo test --workspace --all-targets "$@"
