#!/bin/sh
# Applies migrations/*.sql in lexical order, each at most once.
#
# Connection: whatever the caller set in the libpq variables PGHOST, PGPORT,
# PGUSER, PGDATABASE (and PGPASSWORD, ...); psql reads them itself.
# Each file runs in one transaction together with its schema_migrations row,
# so a failed migration leaves neither its changes nor its record behind.
set -eu

# Resolve migrations/ from this script, so it works from any cwd.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# No PG* set: the PostgreSQL of scripts/services-up.sh, if it runs.
if [ -z "${PGHOST:-}" ] && [ -f "${FULLSTACK_STATE:-$here/../.syncd}/services.env" ]; then
    . "${FULLSTACK_STATE:-$here/../.syncd}/services.env"
fi
migrations="$here/../migrations"

# -X: ignore ~/.psqlrc; -q: no command tags; ON_ERROR_STOP: fail on the first error.
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# client_min_messages hides the "already exists, skipping" NOTICE.
psql_ -c "SET client_min_messages = warning" -c "CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz DEFAULT now()
)"

for file in "$migrations"/*.sql; do
    [ -e "$file" ] || continue          # no migrations at all: the glob stayed literal
    name=$(basename "$file")
    # Names are file names we control, but quote them for SQL anyway.
    quoted=$(printf '%s' "$name" | sed "s/'/''/g")
    applied=$(psql_ -At -c "SELECT 1 FROM schema_migrations WHERE name = '$quoted'")
    if [ "$applied" = 1 ]; then
        echo "skipped $name (already applied)"
        continue
    fi
    psql_ --single-transaction -f "$file" \
        -c "INSERT INTO schema_migrations (name) VALUES ('$quoted')"
    echo "applied $name"
done
