#!/usr/bin/env bash
# Print the URL of a PostgreSQL server the tests can use, starting one when needed:
#   1. PACER_TEST_DATABASE_URL when set;
#   2. a server already answering on 127.0.0.1:5432;
#   3. the machine's cluster (Debian's pg_ctlcluster), started if it is installed but stopped;
#   4. a throwaway cluster in var/pgtest on port 55432, made with initdb from the PostgreSQL binaries.
# Prints nothing when none of these works; the tests then skip PostgreSQL, or fail under CI=true.
set -u
if [ -n "${PACER_TEST_DATABASE_URL:-}" ]; then echo "$PACER_TEST_DATABASE_URL"; exit 0; fi
default_url="postgresql://postgres@127.0.0.1:5432/postgres"
ready() { pg_isready -q -h 127.0.0.1 -p "$1" 2>/dev/null; }
wait_ready() { for _ in $(seq 1 30); do ready "$1" && return 0; sleep 1; done; return 1; }

if command -v pg_isready >/dev/null && ready 5432; then echo "$default_url"; exit 0; fi

if command -v pg_ctlcluster >/dev/null && command -v pg_lsclusters >/dev/null; then
  cluster=$(pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 {print $1" "$2; exit}')
  if [ -n "$cluster" ]; then
    # shellcheck disable=SC2086
    pg_ctlcluster --skip-systemctl-redirect $cluster start >&2 2>/dev/null || true
    if wait_ready 5432; then echo "$default_url"; exit 0; fi
  fi
fi

bindir=""
if command -v initdb >/dev/null; then bindir=$(dirname "$(readlink -f "$(command -v initdb)")");
else bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); fi
if [ -n "$bindir" ] && [ -x "$bindir/initdb" ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  data="$root/var/pgtest"
  as=()
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || { echo "no 'postgres' user to run a throwaway cluster as" >&2; exit 0; }
    as=(runuser -u postgres --)
  fi
  mkdir -p "$data"
  [ "$(id -u)" = "0" ] && chown postgres "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    "${as[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust >/dev/null 2>&1 || { echo "initdb failed" >&2; exit 0; }
  fi
  if ! ready 55432; then
    "${as[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -o "-p 55432 -k /tmp -c listen_addresses=127.0.0.1" \
      start >/dev/null 2>&1 || true
  fi
  if wait_ready 55432; then echo "postgresql://postgres@127.0.0.1:55432/postgres"; exit 0; fi
fi
echo "no PostgreSQL server could be found or started" >&2
exit 0
