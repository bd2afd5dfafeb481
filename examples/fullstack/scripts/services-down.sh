#!/bin/sh
# Stop what services-up.sh started (PostgreSQL, Redis) (the data stays in .syncd/services/; remove it to start over).
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
state=${FULLSTACK_STATE:-$here/../.syncd}
pg=$state/services/pg
[ -f "$state/services/pg.dir" ] && pg=$(cat "$state/services/pg.dir")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
  [ -x "$d/pg_ctl" ] && { pg_ctl=$d/pg_ctl; break; }
done
if [ -f "$pg/data/postmaster.pid" ] && [ -n "${pg_ctl:-}" ]; then
  as_pg "$pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null && echo "PostgreSQL stopped"
else
  echo "PostgreSQL was not running"
fi
redis=$state/services/redis
if [ -f "$redis/redis.pid" ] && kill "$(cat "$redis/redis.pid")" 2>/dev/null; then
  echo "Redis stopped"
else
  echo "Redis was not running"
fi
rm -f "$state/services.env"
