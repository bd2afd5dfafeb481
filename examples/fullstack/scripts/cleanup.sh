#!/bin/sh
# Remove the example's exited containers. (The trace file bounds itself: syncd rotates it at
# daemon.trace_max_mb; truncating it here would race the daemon's appends.)
set -eu
ids=$(docker ps -aq --filter label=dev.syncd.example=fullstack --filter status=exited 2>/dev/null || true)
[ -z "$ids" ] || docker rm $ids >/dev/null
echo "removed $(echo "$ids" | grep -c . || true) exited container(s)"
