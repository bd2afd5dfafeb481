#!/bin/sh
# Drops everything in the public schema (schema_migrations included), then
# migrates from scratch. Same PG* environment variables as migrate.sh.
# The new schema belongs to the connecting user and keeps PostgreSQL 15's
# default grant (USAGE for everyone).
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# No PG* set: the PostgreSQL of scripts/services-up.sh, if it runs.
if [ -z "${PGHOST:-}" ] && [ -f "${FULLSTACK_STATE:-$here/../.syncd}/services.env" ]; then
    . "${FULLSTACK_STATE:-$here/../.syncd}/services.env"
fi

psql -X -q -v ON_ERROR_STOP=1 --single-transaction \
    -c "SET client_min_messages = warning" \
    -c "DROP SCHEMA IF EXISTS public CASCADE" \
    -c "CREATE SCHEMA public" \
    -c "GRANT USAGE ON SCHEMA public TO PUBLIC"
echo "reset schema public"
exec sh "$here/migrate.sh"
