#!/bin/sh
# initdb on first start (user, password, database from the environment), then
# PostgreSQL in the foreground on every address with password authentication.
set -eu
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pw"
  "$bin/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile="$pw" \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ]; then
    "$bin/postgres" -D "$PGDATA" -c listen_addresses='' -k /tmp &
    until "$bin/pg_isready" -h /tmp -q; do sleep 0.2; done
    "$bin/createdb" -h /tmp -U "${POSTGRES_USER:-postgres}" "$POSTGRES_DB"
    kill -INT $! && wait $! || true
  fi
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -k /tmp
