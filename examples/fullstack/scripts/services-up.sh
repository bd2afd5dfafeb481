#!/bin/sh
# Start what the example app needs besides its containers, from Debian's packages, with its data
# under the example's .syncd/services/ (FULLSTACK_STATE overrides .syncd):
#   PostgreSQL: the migrations' database; data and a unix socket in .syncd/services/pg (no TCP
#               port to collide on). Installed with apt-get when missing and running as root.
#   Redis:      the warm-cache action's store; a unix socket only, data in .syncd/services/redis.
# Writes .syncd/services.env (PGHOST, PGPORT, PGUSER, PGDATABASE, REDIS_SOCKET), which
# scripts/migrate.sh, db-reset.sh and warm-cache.sh read when unset, so `syncd run` needs no exports.
# Idempotent: what already runs is kept. Stop with scripts/services-down.sh.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
state=${FULLSTACK_STATE:-$here/../.syncd}
mkdir -p "$state/services"
state=$(CDPATH= cd -- "$state" && pwd)
pg=$state/services/pg

pg_bin() {
  for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
    [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
  done
  return 1
}
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's redis-server ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "services-up.sh: no redis-server; install it: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi
if ! pg_bin initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's postgresql ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "services-up.sh: no PostgreSQL server binaries (initdb); install them: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi
initdb=$(pg_bin initdb); pg_ctl=$(pg_bin pg_ctl)

# PostgreSQL refuses to run as root: as root, the server runs as Debian's `postgres` user,
# which must be able to reach its directory. Under a private one (/root, a 0700 temp dir) the
# server's files go to $TMPDIR instead; .syncd/services/pg.dir says where they are.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$pg"
if [ "$(id -u)" = 0 ]; then
  chown postgres "$pg"
  if ! runuser -u postgres -- test -w "$pg"; then
    pg=${TMPDIR:-/tmp}/syncd-fullstack-$(printf '%s' "$pg" | cksum | cut -d' ' -f1)
    mkdir -p "$pg" && chown postgres "$pg" && chmod 700 "$pg"
  fi
fi
echo "$pg" > "$state/services/pg.dir"
if [ ! -f "$pg/data/PG_VERSION" ]; then
  as_pg "$initdb" -D "$pg/data" -U postgres --auth=trust -E UTF8 >"$pg/initdb.log" 2>&1 \
    || { cat "$pg/initdb.log" >&2; exit 1; }
fi
# A unix socket path may not exceed ~100 bytes: a deep checkout gets its socket in $TMPDIR.
sock=$pg
if [ ${#sock} -gt 80 ]; then
  sock=${TMPDIR:-/tmp}/syncd-fullstack-$(printf '%s' "$pg" | cksum | cut -d' ' -f1)
  mkdir -p "$sock" && { [ "$(id -u)" != 0 ] || chown postgres "$sock"; }
fi
if as_pg "$pg_ctl" -D "$pg/data" status >/dev/null 2>&1; then
  echo "PostgreSQL already running (socket in $sock)"
else
  as_pg "$pg_ctl" -D "$pg/data" -l "$pg/server.log" -w \
    -o "-k $sock -p 5432 -c listen_addresses='' -c fsync=off" start >/dev/null \
    || { tail -20 "$pg/server.log" >&2; exit 1; }
  echo "PostgreSQL started (socket in $sock, log $pg/server.log)"
fi
redis=$state/services/redis
mkdir -p "$redis"
rsock=$redis/redis.sock
[ ${#rsock} -le 100 ] || rsock=${TMPDIR:-/tmp}/syncd-fullstack-redis-$(printf '%s' "$redis" | cksum | cut -d' ' -f1).sock
if redis-cli -s "$rsock" ping >/dev/null 2>&1; then
  echo "Redis already running (socket $rsock)"
else
  redis-server --port 0 --unixsocket "$rsock" --unixsocketperm 700 --dir "$redis" --daemonize yes \
    --pidfile "$redis/redis.pid" --logfile "$redis/redis.log" --save "" --appendonly no
  i=0; until redis-cli -s "$rsock" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 100 ] || { tail -20 "$redis/redis.log" >&2; exit 1; }; sleep 0.05
  done
  echo "Redis started (socket $rsock, log $redis/redis.log)"
fi
cat > "$state/services.env" <<ENV
PGHOST=$sock
PGPORT=5432
PGUSER=postgres
PGDATABASE=postgres
REDIS_SOCKET=$rsock
export PGHOST PGPORT PGUSER PGDATABASE REDIS_SOCKET
ENV
echo "wrote $state/services.env"
