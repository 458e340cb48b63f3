#!/usr/bin/env bash
# Sourced by scripts/test.sh: what the node-postgres test (tests/node_pg.rs) needs
# (idempotently): Node.js with npm, and node-postgres at the version tests/node's lockfile
# pins, installed under ~/.cache/openclaw/node-pg. Exports OPENCLAW_NODE_MODULES.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "openclaw: installing Node.js for the node-postgres test" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >&2
fi
node_dir="$HOME/.cache/openclaw/node-pg"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! cmp -s "$here/tests/node/package-lock.json" "$node_dir/package-lock.json" || [ ! -e "$node_dir/node_modules/pg/package.json" ]; then
    mkdir -p "$node_dir"
    cp "$here/tests/node/package.json" "$here/tests/node/package-lock.json" "$node_dir/"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
export OPENCLAW_NODE_MODULES="$node_dir/node_modules"
