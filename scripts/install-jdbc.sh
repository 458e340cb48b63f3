#!/usr/bin/env bash
# Sourced by scripts/test.sh: what the JDBC metadata test (tests/jdbc.rs) needs
# (idempotently): a Java runtime and Debian's pgJDBC driver. Exports OPENCLAW_JDBC_JAR.
need_apt=""
command -v java >/dev/null 2>&1 || need_apt="$need_apt default-jdk-headless"
[ -e /usr/share/java/postgresql.jar ] || need_apt="$need_apt libpostgresql-jdbc-java"
if [ -n "$need_apt" ]; then
    echo "openclaw: installing the JDBC test's prerequisites:$need_apt" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need_apt >&2
fi
export OPENCLAW_JDBC_JAR=/usr/share/java/postgresql.jar
