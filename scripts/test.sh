#!/usr/bin/env bash
# Runs the whole test suite (installing what the build needs): unit and fixture tests of every
# crate, the .slt files against a real server over pgwire, and the tokio-postgres tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo test --workspace --all-targets "$@"
