#!/usr/bin/env bash
# Sourced by scripts/test.sh: the Python clients the tests drive (idempotently): grpcio and
# grpcio-tools (stubs generated from proto/ by the test, not by hand) and pyarrow (Flight) for
# the gRPC and Flight ingest tests, DuckDB, the independent reader of history's Parquet files,
# moto's S3-compatible server (`moto_server`), the cold tier of the history tests, and psycopg
# (interval parameters over the extended protocol, tests/pg_types.rs); pinned,
# from PyPI, in a venv under ~/.cache/openclaw/grpc-venv.
# Exports OPENCLAW_GRPC_PYTHON (that venv's python).
grpc_venv="$HOME/.cache/openclaw/grpc-venv"
if [ ! -e "$grpc_venv/.installed-v4" ]; then
    echo "openclaw: installing grpcio, grpcio-tools, pyarrow, duckdb, moto and psycopg into $grpc_venv" >&2
    python3 -m venv "$grpc_venv" >&2
    "$grpc_venv/bin/pip" install --quiet --disable-pip-version-check \
        grpcio==1.76.0 grpcio-tools==1.76.0 pyarrow==22.0.0 duckdb==2.0.1 "moto[server]==5.2.5" "psycopg[binary]==3.3.9" >&2
    touch "$grpc_venv/.installed-v4"
fi
export OPENCLAW_GRPC_PYTHON="$grpc_venv/bin/python"
