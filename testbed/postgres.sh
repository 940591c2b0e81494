#!/bin/bash
# Start a private PostgreSQL server for tests: testbed/postgres.sh DIR PORT
# Runs as the `postgres` system user (initdb refuses root), listens on 127.0.0.1:PORT only,
# and prints the database URL. Stop it with: testbed/postgres.sh --stop DIR
# Restart it (every client's connection is cut, as in a database fail-over): testbed/postgres.sh --restart DIR
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_postgres() { runuser -u postgres -- "$@"; }

if [ "${1:-}" = "--stop" ]; then
    as_postgres "$bin/pg_ctl" -D "$2/data" -m immediate stop >/dev/null
    exit 0
fi
if [ "${1:-}" = "--restart" ]; then
    as_postgres "$bin/pg_ctl" -D "$2/data" -l "$2/server.log" -m immediate -w restart >/dev/null
    exit 0
fi
dir=$1 port=$2
mkdir -p "$dir"
chown postgres: "$dir"
as_postgres "$bin/initdb" -D "$dir/data" -U rosetta --auth=trust -E UTF8 >/dev/null
as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start >/dev/null
as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U rosetta rosetta
echo "postgres://rosetta@127.0.0.1:$port/rosetta"
