#!/usr/bin/env bash
# Runs the same Nexmark queries on OpenClaw (`openclaw bench nexmark`, blackhole sinks) and on
# Flink (benches/peers/flink, PyFlink's MiniCluster, blackhole sinks), one engine after the
# other on the whole machine, and prints both side by side with the ratio.
#
#   benches/peers/compare.sh [QUERIES] [EVENTS]      e.g. benches/peers/compare.sh q0,q1,q2,q5,q7 5000000
#
# OpenClaw runs the build scripts/run.sh runs; results also go to target-dir JSON files.
set -euo pipefail
cd "$(dirname "$0")/../.."
queries="${1:-q0,q1,q2,q5,q7}"
events="${2:-5000000}"
source scripts/env.sh
cargo build --workspace --all-targets
out="$CARGO_TARGET_DIR/nexmark-compare"
mkdir -p "$out"
workers="$(nproc)"
"$CARGO_TARGET_DIR/debug/openclaw" bench nexmark --query "$queries" --events "$events" --workers "$workers" --json "$out/openclaw.json"
benches/peers/flink/run.sh --queries "$queries" --events "$events" --parallelism "$workers" --json "$out/flink.json"
python3 - "$out/openclaw.json" "$out/flink.json" <<'PY'
import json, sys
ours = {r["query"]: r for r in json.load(open(sys.argv[1]))}
theirs = {r["query"]: r for r in json.load(open(sys.argv[2]))}
print()
print("| query | events | OpenClaw events/s | per core | peak RSS MiB | Flink events/s | OpenClaw / Flink |")
print("|---|---|---|---|---|---|---|")
for q, r in ours.items():
    f = theirs.get(q)
    flink = f"{f['events_per_s']:,.0f}" if f else "n/a"
    ratio = f"{r['events_per_s'] / f['events_per_s']:.2f}x" if f else "n/a"
    print(f"| {q} | {r['events']:,} | {r['events_per_s']:,.0f} | {r['events_per_s_per_core']:,.0f} | {r['peak_rss_mb']:,.0f} | {flink} | {ratio} |")
PY
