#!/bin/sh
# The warm-cache action: fill cargo's incremental cache (binary and tests) and esbuild's output,
# then record what was built in Redis (hash fullstack:warm-cache: each output's checksum and
# when), so a teammate's tooling (or `redis-cli -s $REDIS_SOCKET hgetall fullstack:warm-cache`)
# sees which build the caches hold.
# Redis: REDIS_SOCKET (a unix socket path) or REDIS_URL; else scripts/services-up.sh's, from
# .syncd/services.env.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if [ -z "${REDIS_SOCKET:-}${REDIS_URL:-}" ] && [ -f "${FULLSTACK_STATE:-$here/.syncd}/services.env" ]; then
  . "${FULLSTACK_STATE:-$here/.syncd}/services.env"
fi
if [ -n "${REDIS_SOCKET:-}" ]; then set -- -s "$REDIS_SOCKET"
elif [ -n "${REDIS_URL:-}" ]; then set -- -u "$REDIS_URL"
else
  echo "warm-cache.sh: no Redis: start one with scripts/services-up.sh, or set REDIS_SOCKET or REDIS_URL" >&2
  exit 1
fi
(cd "$here/backend" && cargo build --all-targets --quiet)
(cd "$here/frontend" && npm run --silent build >/dev/null)
binary=$(ls "$here"/backend/target/*/debug/api | head -1)
sum() { cksum < "$1" | cut -d' ' -f1; }
redis-cli "$@" hset fullstack:warm-cache backend "$(sum "$binary")" frontend "$(sum "$here/frontend/dist/app.js")" \
  at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
echo "warm: backend $(basename "$binary") $(sum "$binary"), frontend app.js $(sum "$here/frontend/dist/app.js") (recorded in Redis: fullstack:warm-cache)"
