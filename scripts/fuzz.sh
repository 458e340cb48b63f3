#!/usr/bin/env bash
# Runs one cargo-fuzz target (fuzz/fuzz_targets/) for a while:
#   scripts/fuzz.sh <target> [seconds]      targets: sql_parse pgwire_messages http_ingest_body grpc_write_request
# cargo fuzz needs nightly's -Z flags; the machine has one stable toolchain, so RUSTC_BOOTSTRAP=1
# lets it pass them (the sanitizer is off: the Rust code is memory-safe and what we look for
# is panics, hangs and runaway memory). Builds in a target dir of its own (~40 min cold on
# 2 cores: DataFusion and RocksDB, instrumented). Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh <target> [seconds]}
seconds=${2:-600}
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${OPENCLAW_FUZZ_TARGET_DIR:-$HOME/.cache/openclaw/fuzz-target}
corpus=fuzz/corpus/$target
mkdir -p "$corpus"
if [ "$target" = sql_parse ] && [ -z "$(ls -A "$corpus")" ]; then
  # Seeds: every statement of the .slt files, one file each.
  python3 - "$corpus" <<'PY'
import glob, hashlib, os, sys
out = sys.argv[1]
for path in sorted(glob.glob("tests/slt/*.slt")):
    lines, stmt = open(path).read().split("\n"), []
    for line in lines + [""]:
        if line.startswith(("statement", "query")):
            stmt = []
        elif line.strip() == "" or line.startswith("----"):
            if stmt:
                text = "\n".join(stmt).encode()
                open(os.path.join(out, hashlib.sha1(text).hexdigest()), "wb").write(text)
            stmt = [] if line.strip() == "" else None
        elif stmt is not None and not line.startswith("#"):
            stmt.append(line)
PY
fi
cargo fuzz build --fuzz-dir fuzz -s none -O "$target"
cargo fuzz run --fuzz-dir fuzz -s none -O "$target" "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -max_len=65536 -print_final_stats=1
