#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and the demo.
#
#   hack/postgres.sh start DIR     initdb into DIR (if new), start on 127.0.0.1 (if stopped), print its DATABASE_URL
#   hack/postgres.sh stop DIR      stop the server, keep DIR
#   hack/postgres.sh destroy DIR   stop the server and remove DIR
#
# The port is chosen free at the first start and kept in DIR/port, so a
# restarted server comes back on the same URL.  When run as root the server
# runs as the 'postgres' user (initdb refuses root).
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

pg_bindir() {
  local d
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then pg_config --bindir; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null && { dirname "$(readlink -f "$(command -v initdb)")"; return; }
  die "no PostgreSQL server found: install it (Debian: apt-get install postgresql)"
}

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd="${1:-}"; dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || die "usage: hack/postgres.sh start|stop|destroy DIR"
bin="$(pg_bindir)"

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [[ $(id -u) -eq 0 ]]; then
      id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the server"
      runuser -u postgres -- test -x "$(dirname "$dir")" \
        || die "user 'postgres' cannot reach $(dirname "$dir"): make it world-searchable (chmod o+x) or pick another directory"
      chown postgres "$dir"
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_owner "$bin/initdb" -D "$dir/data" -U headwater -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || die "initdb failed: $(tail -5 "$dir/initdb.log")"
      free_port >"$dir/port"
    fi
    port="$(cat "$dir/port")"
    as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null \
      || die "the server did not start: $(tail -5 "$dir/server.log")"
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U headwater -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='headwater'" | grep -q 1; then
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U headwater headwater
    fi
    echo "postgresql://headwater@127.0.0.1:$port/headwater"
    ;;
  stop)
    [[ -f "$dir/data/postmaster.pid" ]] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    true
    ;;
  destroy)
    [[ -f "$dir/data/postmaster.pid" ]] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    rm -rf "$dir"
    ;;
  *) die "unknown command '$cmd' (start|stop|destroy)" ;;
esac
