#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io if needed, start dockerd.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "no Docker engine and not root: install Docker, then retry" >&2; exit 1; }
  echo "installing Debian's docker.io ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
# A dockerd that runs but answered slowly (a loaded machine) is waited for, never joined by a
# second one: a second dockerd replaces the socket file before it finds the first one's pid
# file and exits, leaving the running engine unreachable.
if pgrep -x dockerd >/dev/null 2>&1; then
  echo "dockerd runs but did not answer yet; waiting for it ..." >&2
else
  echo "starting dockerd in the background (log: /tmp/syncd-dockerd.log) ..." >&2
  nohup dockerd >/tmp/syncd-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "Docker engine is up" >&2; exit 0; fi
  sleep 1
done
echo "dockerd did not answer within 60 s; see /tmp/syncd-dockerd.log:" >&2
tail -20 /tmp/syncd-dockerd.log >&2
exit 1
