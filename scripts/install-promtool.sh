#!/usr/bin/env bash
# Sourced by scripts/test.sh: Prometheus' promtool, which checks `GET /metrics` (tests/metrics.rs),
# from Debian's prometheus package (idempotently; the server it ships is not started).
# Exports OPENCLAW_PROMTOOL.
if ! command -v promtool >/dev/null 2>&1; then
    echo "openclaw: installing promtool (Debian's prometheus package)" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
fi
export OPENCLAW_PROMTOOL="$(command -v promtool)"
