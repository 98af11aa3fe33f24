#!/bin/bash
# First start of an empty data directory: initdb with POSTGRES_PASSWORD for
# the postgres user over the network, as the official image does. Later
# starts keep what the volume holds.
set -euo pipefail
install -d -o postgres -g postgres -m 0700 "$PGDATA"
install -d -o postgres -g postgres /run/postgresql
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    runuser -u postgres -- initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*'
