#!/usr/bin/env bash
# Provide a local PostgreSQL for the ledger tests: install Debian's `postgresql` if missing, start the newest
# installed cluster, create the test role and database (idempotently), and print the SQLAlchemy URL on stdout.
#
#   export AUTONOMY_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"
#
# Everything else goes to stderr, so the command substitution captures only the URL. Safe to run repeatedly.
# Overridable: AUTONOMY_PG_ROLE, AUTONOMY_PG_PASSWORD, AUTONOMY_PG_DB.
set -euo pipefail

ROLE="${AUTONOMY_PG_ROLE:-autonomy}"
PASSWORD="${AUTONOMY_PG_PASSWORD:-autonomy}"
DB="${AUTONOMY_PG_DB:-autonomy_test}"
HOST=127.0.0.1

log() { echo "postgres.sh: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi; }

newest_major() { ls /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1; }

if [ -z "$(newest_major)" ] || ! command -v pg_ctlcluster >/dev/null; then
    log "installing Debian postgresql"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
fi
MAJOR="$(newest_major)"
[ -n "$MAJOR" ] || { log "no PostgreSQL server found under /usr/lib/postgresql after installing"; exit 1; }

if ! pg_lsclusters -h | awk -v v="$MAJOR" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
    log "creating cluster $MAJOR/main"
    as_root pg_createcluster "$MAJOR" main >&2
fi
PORT="$(pg_lsclusters -h | awk -v v="$MAJOR" '$1 == v && $2 == "main" { print $3 }')"
STATUS="$(pg_lsclusters -h | awk -v v="$MAJOR" '$1 == v && $2 == "main" { print $4 }')"
if [ "$STATUS" != "online" ]; then
    log "starting cluster $MAJOR/main on port $PORT"
    as_root pg_ctlcluster "$MAJOR" main start >&2
fi
for _ in $(seq 1 60); do
    pg_isready -q -h "$HOST" -p "$PORT" && break
    sleep 0.5
done
pg_isready -q -h "$HOST" -p "$PORT" || { log "PostgreSQL $MAJOR did not accept connections on $HOST:$PORT"; exit 1; }

# Not a superuser on purpose: tests prove the append-only trigger binds the application role, and that
# verify still catches the table owner dropping it. CREATEDB lets a developer make scratch databases.
as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -v role="$ROLE" -v pw="$PASSWORD" -v db="$DB" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L LC_COLLATE %L LC_CTYPE %L TEMPLATE template0',
              :'db', :'role', 'UTF8', 'C', 'C')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL

URL="postgresql+psycopg://${ROLE}:${PASSWORD}@${HOST}:${PORT}/${DB}"
PGPASSWORD="$PASSWORD" psql -X -q -h "$HOST" -p "$PORT" -U "$ROLE" -d "$DB" -c 'SELECT 1' >/dev/null \
    || { log "cannot log in as $ROLE to $DB over TCP"; exit 1; }
log "ready: PostgreSQL $MAJOR on $HOST:$PORT, database $DB, role $ROLE"
echo "$URL"
