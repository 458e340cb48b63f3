#!/usr/bin/env bash
# Sourced by scripts/test.sh: the Python clients the gRPC and Flight ingest tests drive
# (idempotently): grpcio and grpcio-tools (stubs generated from proto/ by the test, not by
# hand) and pyarrow (Flight), pinned, from PyPI, in a venv under ~/.cache/openclaw/grpc-venv.
# Exports OPENCLAW_GRPC_PYTHON.
grpc_venv="$HOME/.cache/openclaw/grpc-venv"
if [ ! -e "$grpc_venv/.installed-v1" ]; then
    echo "openclaw: installing grpcio, grpcio-tools and pyarrow into $grpc_venv" >&2
    python3 -m venv "$grpc_venv" >&2
    "$grpc_venv/bin/pip" install --quiet --disable-pip-version-check \
        grpcio==1.76.0 grpcio-tools==1.76.0 pyarrow==22.0.0 >&2
    touch "$grpc_venv/.installed-v1"
fi
export OPENCLAW_GRPC_PYTHON="$grpc_venv/bin/python"
