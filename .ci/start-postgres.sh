#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1:55432 for the store tests; print its URL.
set -euo pipefail
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get install -y -qq postgresql >/dev/null 2>&1) || { echo "postgres unavailable" >&2; exit 1; }
fi
bin=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")")
data=/tmp/dlbench-pg
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
# a server left by an earlier run on this machine holds the port: stop it before reusing its folder
[ -f "$data/postmaster.pid" ] && { run "$bin/pg_ctl -D $data stop -m fast >/dev/null" || true; }
rm -rf "$data"; mkdir -p "$data"; chown postgres "$data"
run "$bin/initdb -D $data -A trust -U dlbench >/dev/null"
run "$bin/pg_ctl -D $data -o '-p 55432 -k /tmp -c listen_addresses=127.0.0.1' -l $data/log -w start >/dev/null"
run "$bin/createdb -h 127.0.0.1 -p 55432 -U dlbench dlbench_test"
echo "postgresql+psycopg://dlbench@127.0.0.1:55432/dlbench_test"
