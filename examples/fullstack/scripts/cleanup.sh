#!/bin/sh
# Remove the example's exited containers and a trace file grown past 10 MB.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
ids=$(docker ps -aq --filter label=dev.syncd.example=fullstack --filter status=exited 2>/dev/null || true)
[ -z "$ids" ] || docker rm $ids >/dev/null
echo "removed $(echo "$ids" | grep -c . || true) exited container(s)"
trace=$here/config/.syncd/trace.jsonl
if [ -f "$trace" ] && [ "$(wc -c <"$trace")" -gt 10485760 ]; then
  : >"$trace"; echo "truncated $trace"
fi
