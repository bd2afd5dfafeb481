#!/usr/bin/env bash
# Build the local test images (no registry): syncd-test/busybox, notar, nosh, nodd and
# fullstack (the example app's runtime: busybox + syncd-supervise).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
busybox_bin() {
  for p in /bin/busybox /usr/bin/busybox; do
    if [ -x "$p" ] && ! ldd "$p" >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  return 1
}
if ! bb=$(busybox_bin); then
  echo "installing Debian's busybox-static ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  bb=$(busybox_bin)
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for img in busybox notar nosh nodd fullstack; do
  rm -rf "$ctx/$img" && mkdir -p "$ctx/$img"
  cp "$here/deploy/images/$img/Dockerfile" "$ctx/$img/"
  cp "$bb" "$ctx/$img/busybox"
  if [ "$img" = fullstack ]; then
    cp "$here/examples/fullstack/runtime/syncd-supervise" "$ctx/$img/"
  fi
  if [ "$img" = notar ] || [ "$img" = nodd ]; then
    # dash as /bin/sh, with the shared libraries it links against, at their own paths
    mkdir -p "$ctx/$img/extra/bin"
    cp "$(readlink -f /bin/dash)" "$ctx/$img/extra/bin/sh"
    for lib in $(ldd /bin/dash | grep -o '/[^ ]*'); do
      mkdir -p "$ctx/$img/extra$(dirname "$lib")"
      cp "$(readlink -f "$lib")" "$ctx/$img/extra$lib"
    done
  fi
  if ! DOCKER_BUILDKIT=0 docker build -q -t "syncd-test/$img:latest" "$ctx/$img" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2; exit 1
  fi
  echo "built syncd-test/$img:latest" >&2
done
