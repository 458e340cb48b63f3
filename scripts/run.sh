#!/usr/bin/env bash
# Builds OpenClaw (installing what the build needs) and runs the server on embedded defaults:
# pgwire on 127.0.0.1:5433, HTTP on 127.0.0.1:8080, state in ./openclaw-data.
# Extra arguments go to `openclaw serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# The same build as scripts/test.sh (dev profile, optimised at opt-level 1, every target), so
# that running and testing share one set of compiled dependencies.
cargo build --workspace --all-targets
exec "$CARGO_TARGET_DIR/debug/openclaw" serve "$@"
