#!/usr/bin/env bash
# Citus (distributed PostgreSQL) for the ledger's scaling work, on Debian's PostgreSQL 15 (docs/scaling.md).
#
#   scripts/citus/citus.sh build CITUS_TARBALL   # citus-13.2.2.tar.gz: build and install the extension (as root)
#   scripts/citus/citus.sh start                 # a coordinator and two workers as three local clusters
#   scripts/citus/citus.sh createdb NAME         # a database on every node, with Citus and the workers registered
#   scripts/citus/citus.sh status | stop | drop
#
# Citus is not in Debian's package lists: its source release is built here, with a one-line patch for Debian's 15
# headers (pg15-have-createdb-privilege.patch). The clusters listen on 127.0.0.1 with trust authentication, like the
# development server: ports CITUS_PORT (coordinator, default 5440), +1 and +2 (workers). Citus keeps its metadata per
# database and does not create a database on the workers: `createdb` makes one on every node, adds the extension to
# each, and registers the workers with the coordinator ("postgres" is set up so by `start`).
set -euo pipefail
CALLER=$(pwd)
cd "$(dirname "$0")"
HERE=$(pwd)
PG=15
PORT=${CITUS_PORT:-5440}
CLUSTERS=("citus-coord:$PORT" "citus-w1:$((PORT + 1))" "citus-w2:$((PORT + 2))")
PSQL="psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtA"

build() {
  local tarball=${1:?give the path of citus-13.2.2.tar.gz}
  case $tarball in /*) ;; *) tarball=$CALLER/$tarball ;; esac
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-server-dev-$PG libcurl4-openssl-dev liblz4-dev \
      libzstd-dev libkrb5-dev libssl-dev >/dev/null
  fi
  local work
  work=$(mktemp -d)
  tar xzf "$tarball" -C "$work"
  cd "$work"/citus-*
  patch -p1 < "$HERE/pg15-have-createdb-privilege.patch"
  ./configure --quiet >/dev/null
  make -s -j"$(nproc)" >/dev/null
  make -s install >/dev/null
  cd "$HERE"
  rm -rf "$work"
  echo "citus installed: $(ls /usr/lib/postgresql/$PG/lib/citus.so)"
}

start() {
  for entry in "${CLUSTERS[@]}"; do
    local name=${entry%%:*} port=${entry##*:}
    if ! pg_lsclusters -h | awk '{print $2}' | grep -qx "$name"; then
      pg_createcluster -q $PG "$name" -p "$port" -- --auth=trust >/dev/null
      local conf=/etc/postgresql/$PG/$name
      {
        echo "shared_preload_libraries = 'citus'"
        echo "listen_addresses = '127.0.0.1'"
        echo "max_connections = 200"
      } > "$conf/conf.d/citus.conf"
      printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' > "$conf/pg_hba.conf"
    fi
    pg_ctlcluster --skip-systemctl-redirect $PG "$name" start 2>/dev/null || true
  done
  for entry in "${CLUSTERS[@]}"; do
    local port=${entry##*:}
    until pg_isready -q -h 127.0.0.1 -p "$port"; do sleep 0.2; done
  done
  distribute postgres
  status
}

# Citus in DATABASE on every node, the workers registered with the coordinator (both idempotent).
distribute() {
  local database=$1
  for entry in "${CLUSTERS[@]}"; do
    $PSQL -p "${entry##*:}" -d "$database" -c "CREATE EXTENSION IF NOT EXISTS citus"
  done
  $PSQL -p "$PORT" -d "$database" -c "SELECT citus_set_coordinator_host('127.0.0.1', $PORT)" >/dev/null
  for entry in "${CLUSTERS[@]:1}"; do
    $PSQL -p "$PORT" -d "$database" -c "SELECT citus_add_node('127.0.0.1', ${entry##*:})" >/dev/null
  done
}

createdb() {
  local database=${1:?give the database name}
  for entry in "${CLUSTERS[@]}"; do
    $PSQL -p "${entry##*:}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1 ||
      $PSQL -p "${entry##*:}" -d postgres -c "CREATE DATABASE \"$database\""
  done
  distribute "$database"
}

status() {
  $PSQL -p "$PORT" -d postgres -c "SELECT 'citus ' || extversion FROM pg_extension WHERE extname = 'citus'"
  $PSQL -p "$PORT" -d postgres -c "SELECT 'node ' || nodename || ':' || nodeport || ' ' || noderole FROM pg_dist_node ORDER BY nodeport"
}

stop() {
  for entry in "${CLUSTERS[@]}"; do
    pg_ctlcluster --skip-systemctl-redirect $PG "${entry%%:*}" stop 2>/dev/null || true
  done
}

drop() {
  stop
  for entry in "${CLUSTERS[@]}"; do
    pg_dropcluster $PG "${entry%%:*}" 2>/dev/null || true
  done
}

command=${1:-}
shift || true
case "$command" in
  build) build "$@" ;;
  start) start ;;
  createdb) createdb "$@" ;;
  status) status ;;
  stop) stop ;;
  drop) drop ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
