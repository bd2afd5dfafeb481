#!/bin/sh
# Remove the example app's dev containers (whatever up.sh started).
set -eu
ids=$(docker ps -aq --filter label=dev.syncd.example=fullstack)
[ -z "$ids" ] || docker rm -f $ids >/dev/null
echo "removed $(echo "$ids" | grep -c . || true) container(s)"
