#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the store tests and print its URL (the only stdout line).
#
#   bash .ci/start-postgres.sh [--owner PID]   start one; with --owner, it stops itself (and its
#                                              folder is removed) once process PID has exited
#   bash .ci/start-postgres.sh --stop DIR      stop the server this script started in DIR
#
# Every call gets a private folder (mktemp -d) and a free port, so jobs on one machine never share
# or clobber a server; it only ever stops or removes a server it started itself (its folder holds
# the mark .dlbench-pg). The folder is named on stderr.
set -euo pipefail
MARK=.dlbench-pg
self=$(readlink -f "$0")

if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get install -y -qq postgresql >/dev/null 2>&1) || { echo "postgres unavailable" >&2; exit 1; }
fi
bin=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")")
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

stop() {  # stop and remove a server this script started in folder $1; anything else is left alone
  local dir=$1
  [ -f "$dir/$MARK" ] || { echo "$dir was not made by start-postgres.sh: left alone" >&2; return 1; }
  [ -f "$dir/data/postmaster.pid" ] && { as_pg "'$bin/pg_ctl' -D '$dir/data' stop -m fast >/dev/null" || true; }
  rm -rf "$dir"
}

if [ "${1:-}" = --stop ]; then
  stop "${2:?usage: start-postgres.sh --stop DIR}"
  exit
fi
owner=
if [ "${1:-}" = --owner ]; then owner=${2:?usage: start-postgres.sh --owner PID}; fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/dlbench-pg.XXXXXX")
touch "$dir/$MARK"
trap 'stop "$dir" >/dev/null 2>&1 || true' ERR INT TERM  # a failed start leaves nothing behind
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
as_pg "'$bin/initdb' -D '$dir/data' -A trust -U dlbench >/dev/null"
started=
for _ in 1 2 3 4 5; do  # a free port now may be taken by the time the server binds it: retry
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if as_pg "'$bin/pg_ctl' -D '$dir/data' -o '-p $port -k $dir -c listen_addresses=127.0.0.1' -l '$dir/log' -w start >/dev/null"; then
    started=1
    break
  fi
done
[ -n "$started" ] || { echo "postgres did not start (see $dir/log)" >&2; false; }
as_pg "'$bin/createdb' -h 127.0.0.1 -p $port -U dlbench dlbench_test"
trap - ERR INT TERM
if [ -n "$owner" ]; then  # a watchdog, detached from this script's stdout, outlives it
  setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; bash '$self' --stop '$dir'" \
    </dev/null >/dev/null 2>&1 &
fi
echo "postgres: $dir, port $port (stop: bash $self --stop $dir)" >&2
echo "postgresql+psycopg://dlbench@127.0.0.1:$port/dlbench_test"
