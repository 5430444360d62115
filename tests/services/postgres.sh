#!/usr/bin/env bash
# A private PostgreSQL server for the tests: `tests/services/postgres.sh [start|stop|restart|status|url]`.
#
# start (the default) is idempotent: it installs Debian's `postgresql` package when no server binaries are
# found, creates a cluster in /var/tmp/vqclip-pgdata-PORT with initdb, starts it with pg_ctl listening only on
# 127.0.0.1:$VQCLIP_PG_PORT (default 55432), creates the role `vqclip` and the database `vqclip_test`, and
# prints the SQLAlchemy URL on stdout (everything else goes to stderr). Run as root, the server runs as the
# `postgres` user. restart stops and starts the server (the worker tests use it to simulate an outage).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd /  # the server and psql run as `postgres`, which may not be allowed into the checkout
PORT=${VQCLIP_PG_PORT:-55432}
# Outside the checkout: the server runs as `postgres`, which cannot enter a checkout under a private folder
# (a CI clone in a 0700 temporary directory, say). One cluster per port, shared by checkouts on this machine.
PGDATA=${VQCLIP_PGDATA:-/var/tmp/vqclip-pgdata-$PORT}
ROLE=vqclip
PASSWORD=vqclip
DATABASE=vqclip_test
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=tests/services/apt.sh
source "$ROOT/tests/services/apt.sh"

find_bindir() {
    # Newest installed major version, e.g. /usr/lib/postgresql/15/bin.
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_server() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
    # The Debian package would create and start a system cluster on 5432; we only want the binaries.
    # (Documented switch of postgresql-common; confold keeps this file when the package brings its own.)
    mkdir -p /etc/postgresql-common
    [[ -e /etc/postgresql-common/createcluster.conf ]] || echo "create_main_cluster = false" \
        > /etc/postgresql-common/createcluster.conf
    apt_install postgresql -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql
}

BINDIR=$(find_bindir)
if [[ -z $BINDIR && ${1:-start} == start ]]; then
    install_server
    BINDIR=$(find_bindir)
fi
[[ -n $BINDIR ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"

# As root the server runs as `postgres` (initdb refuses root); otherwise as the current user.
if [[ $EUID -eq 0 ]]; then
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

running() { [[ -d $PGDATA ]] && as_owner "$BINDIR/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; }

# psql as the cluster owner over the Unix socket, which lives inside the private data directory.
owner_psql() { as_owner "$BINDIR/psql" -h "$PGDATA" -p "$PORT" -U "$OWNER" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

init_cluster() {
    [[ -f $PGDATA/PG_VERSION ]] && return
    log "initdb $PGDATA"
    mkdir -p "$PGDATA"
    chown "$OWNER" "$PGDATA"
    chmod 700 "$PGDATA"
    # Local socket: only the owner can reach it (0700 directory). TCP: password, 127.0.0.1 only.
    local out
    out=$(as_owner "$BINDIR/initdb" -D "$PGDATA" -U "$OWNER" --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 2>&1) || { echo "$out" >&2; die "initdb failed"; }
    cat >>"$PGDATA/postgresql.conf" <<EOF

# vqclip test server (tests/services/postgres.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGDATA'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start() {
    init_cluster
    if running; then
        log "already running on 127.0.0.1:$PORT"
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            die "port $PORT is taken by another server; set VQCLIP_PG_PORT to a free port"
        fi
        log "starting on 127.0.0.1:$PORT"
        as_owner "$BINDIR/pg_ctl" start -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 >&2 \
            || { tail -n 20 "$PGDATA/server.log" >&2; die "pg_ctl start failed (log: $PGDATA/server.log)"; }
    fi
    if [[ $(owner_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") != 1 ]]; then
        owner_psql -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
    fi
    if [[ $(owner_psql -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") != 1 ]]; then
        owner_psql -c "CREATE DATABASE $DATABASE OWNER $ROLE"
    fi
    echo "$URL"
}

stop() {
    if running; then
        log "stopping"
        as_owner "$BINDIR/pg_ctl" stop -D "$PGDATA" -m fast -w >&2
    else
        log "not running"
    fi
}

case ${1:-start} in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) if running; then log "running on 127.0.0.1:$PORT"; else log "stopped"; exit 3; fi ;;
    url) echo "$URL" ;;
    *) die "usage: $0 [start|stop|restart|status|url]" ;;
esac
