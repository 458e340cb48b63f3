#!/usr/bin/env bash
# Installs PyFlink 2.2.0 (once, in a virtualenv under ~/.cache/openclaw; Java 17 must be on
# the machine) and runs benches/peers/flink/nexmark.py with the given arguments.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${OPENCLAW_CACHE:-$HOME/.cache/openclaw}/flink-venv"
if ! "$venv/bin/python" -c "import pyflink" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet apache-flink==2.2.0
fi
exec "$venv/bin/python" "$here/nexmark.py" "$@"
