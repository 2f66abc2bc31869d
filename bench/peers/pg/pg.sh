#!/usr/bin/env bash
# pg.sh: start a throw-away PostgreSQL 15 (Debian's postgresql package) on loopback, load the
# peer's schema (schema.sql, ledger.sql), run a command against it, then stop it and remove
# everything, whatever happens (trap on exit).
#
# Usage: bash bench/peers/pg/pg.sh COMMAND [ARGS...]
#   COMMAND runs with TALLY_PG_CONNINFO (a libpq connection string), TALLY_PG_PSQL (a psql
#   command line for that server) and TALLY_PG_DIR (the temporary directory) in its
#   environment; pg.sh exits with its status. Exit 77: PostgreSQL cannot run here (not
#   installed, or no way to run it as a non-root user); 3: the server did not start.
#
# Durability is PostgreSQL's default and is not negotiable here: fsync = on,
# synchronous_commit = on, full_page_writes = on (an acknowledged commit is on disk). The
# other settings are the tuning a careful operator would do for a write-heavy ledger on this
# machine (docs/BENCHMARKS.md, "The PostgreSQL peer", says why each one):
set -euo pipefail

PG_BIN=${TALLY_PG_BIN:-/usr/lib/postgresql/15/bin}
here=$(cd "$(dirname "$0")" && pwd)
SETTINGS=(
    -c fsync=on -c synchronous_commit=on -c full_page_writes=on
    -c shared_buffers=2GB            # the whole working set of the benchmark stays in memory
    -c wal_buffers=64MB              # a 1,000-posting batch writes a few MB of WAL
    -c max_wal_size=8GB -c min_wal_size=1GB
    -c checkpoint_timeout=30min -c checkpoint_completion_target=0.9
    -c wal_compression=lz4           # full-page images after a checkpoint, compressed
    -c max_locks_per_transaction=512 # one advisory lock per member of a batch
    -c max_connections=100
    -c jit=off                       # every statement is small: compiling would only cost
    -c listen_addresses=127.0.0.1
)

if [ $# -eq 0 ]; then
    echo "usage: bash $0 COMMAND [ARGS...]" >&2
    exit 2
fi
if [ ! -x "$PG_BIN/postgres" ] || ! command -v psql >/dev/null; then
    echo "pg.sh: PostgreSQL 15 is not installed ($PG_BIN/postgres, psql): apt-get install postgresql" >&2
    exit 77
fi
# initdb and postgres refuse to run as root: run them as the postgres user of the package.
as_pg=()
if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "pg.sh: running as root and there is no postgres user to run the server as" >&2
        exit 77
    fi
    as_pg=(runuser -u postgres --)
fi

dir=$(mktemp -d /tmp/tally-pg.XXXXXX)
cleanup() {
    if [ -f "$dir/data/postmaster.pid" ]; then
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"

# A free port: the first of a few candidates nobody listens on (bounded).
port=""
for try in $(seq 1 50); do
    p=$((20000 + (RANDOM % 20000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "pg.sh: no free port found" >&2; exit 3; }

"${as_pg[@]}" "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 3; }
if ! "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir ${SETTINGS[*]}" start >/dev/null; then
    echo "pg.sh: postgres did not start; its log:" >&2
    tail -20 "$dir/postgres.log" >&2
    exit 3
fi

export TALLY_PG_DIR=$dir
export TALLY_PG_CONNINFO="host=127.0.0.1 port=$port user=postgres dbname=postgres"
export TALLY_PG_PSQL="psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $port -U postgres -d postgres"
$TALLY_PG_PSQL -f "$here/schema.sql" >/dev/null
$TALLY_PG_PSQL -f "$here/ledger.sql" >/dev/null

set +e
"$@"
status=$?
set -e
exit $status
