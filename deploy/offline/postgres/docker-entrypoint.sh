#!/usr/bin/env bash
# The official postgres image's entrypoint contract, for Debian's postgresql-15:
# - as root: hand PGDATA and the socket directory to `postgres`, then re-run this script as `postgres`;
# - on an empty PGDATA: initdb (UTF8; POSTGRES_USER with POSTGRES_PASSWORD; POSTGRES_INITDB_ARGS), listen on all
#   addresses with scram-sha-256 for remote hosts, create POSTGRES_DB, run /docker-entrypoint-initdb.d/*
#   (*.sh executed when executable, else sourced; *.sql, *.sql.gz, *.sql.xz through psql) on a temporary
#   server bound to the Unix socket only;
# - exec the command (default `postgres`).
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
: "${PGDATA:=/var/lib/postgresql/data}"

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chown postgres:postgres /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "postgres entrypoint: POSTGRES_PASSWORD is not set; refusing to initialise the database" >&2
    exit 1
  fi
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") --encoding=UTF8 \
    $POSTGRES_INITDB_ARGS -D "$PGDATA"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql_init=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then echo "postgres entrypoint: running $f"; "$f"
        else echo "postgres entrypoint: sourcing $f"; . "$f"; fi ;;
      *.sql) echo "postgres entrypoint: running $f"; "${psql_init[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "postgres entrypoint: running $f"; gunzip -c "$f" | "${psql_init[@]}" --dbname "$POSTGRES_DB" ;;
      *.sql.xz) echo "postgres entrypoint: running $f"; xz -dc "$f" | "${psql_init[@]}" --dbname "$POSTGRES_DB" ;;
      *) if [ -e "$f" ]; then echo "postgres entrypoint: ignoring $f"; fi ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "postgres entrypoint: initialised $PGDATA (UTF8); ready for start up"
fi

exec "$@"
