#!/bin/sh
# Start (or re-create) the example app's dev containers: the ones config/fullstack.toml
# finds by label. Usage: up.sh [backend|frontend ...]   (default: both)
#   BACKEND_PORT / FRONTEND_PORT: host ports on 127.0.0.1 (default 18080 / 18081; 0 = any free)
# The image comes from scripts/build-test-images.sh in the syncd repo (syncd-test/fullstack).
set -eu
image=${FULLSTACK_IMAGE:-syncd-test/fullstack:latest}
services=${*:-backend frontend}
for svc in $services; do
  name=fullstack-$svc
  docker rm -f "$name" >/dev/null 2>&1 || true
  case $svc in
    backend)  port=${BACKEND_PORT:-18080}; inner=8080
              set -- syncd-supervise /app/bin/api ;;
    frontend) port=${FRONTEND_PORT:-18081}; inner=8081
              set -- httpd -f -p 8081 -h /srv/www ;;
    *) echo "up.sh: unknown service '$svc' (backend or frontend)" >&2; exit 2 ;;
  esac
  if [ "$port" = 0 ]; then publish=127.0.0.1::$inner; else publish=127.0.0.1:$port:$inner; fi
  docker run -d --name "$name" -p "$publish" \
    --label dev.syncd.example=fullstack --label "dev.syncd.service=$svc" \
    "$image" "$@" >/dev/null
  echo "started $name ($(docker port "$name" "$inner" | head -1))"
done
