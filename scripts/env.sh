# Sourced by scripts/run.sh and scripts/test.sh: installs what the build needs (idempotently)
# and points cargo at a shared, incremental target directory outside the clone.

need_apt=""
command -v clang >/dev/null 2>&1 || need_apt="$need_apt clang"
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need_apt="$need_apt libclang-dev"
command -v mold >/dev/null 2>&1 || need_apt="$need_apt mold"
command -v psql >/dev/null 2>&1 || need_apt="$need_apt postgresql-client"
# kcat produces and consumes in the Kafka end-to-end test; librdkafka itself is built from
# source by rdkafka-sys (./configure and make), with the system's OpenSSL and zlib.
command -v kcat >/dev/null 2>&1 || need_apt="$need_apt kcat"
[ -e /usr/include/openssl/ssl.h ] || need_apt="$need_apt libssl-dev"
[ -e /usr/include/zlib.h ] || need_apt="$need_apt zlib1g-dev"
command -v pkg-config >/dev/null 2>&1 || need_apt="$need_apt pkg-config"
if [ -n "$need_apt" ]; then
    echo "openclaw: installing build prerequisites:$need_apt" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    # mold is an optimisation; the rest is required (RocksDB's bindgen needs libclang).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need_apt >&2 \
        || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev libssl-dev zlib1g-dev pkg-config kcat >&2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/openclaw/target}"
# Added once even when sourced twice: a changed RUSTFLAGS rebuilds every dependency.
if command -v mold >/dev/null 2>&1 && [[ "${RUSTFLAGS:-}" != *fuse-ld=mold* ]]; then
    export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold"
fi
