#!/bin/sh
# Everything the example needs to run live under syncd, in one go (run from anywhere):
#   the runtime image (syncd-test/fullstack, built locally by the syncd repository's
#   scripts/build-test-images.sh when missing), the frontend's npm packages, PostgreSQL and Redis
#   (scripts/services-up.sh), and the two dev containers (scripts/up.sh).
# Then: syncd run -c config/fullstack.toml. Undo with scripts/dev-down.sh.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
image=${FULLSTACK_IMAGE:-syncd-test/fullstack:latest}
if ! docker image inspect "$image" >/dev/null 2>&1; then
  repo_script=$here/../../../scripts/build-test-images.sh
  [ -f "$repo_script" ] || { echo "dev-up.sh: no image $image; build it with the syncd repository's scripts/build-test-images.sh" >&2; exit 1; }
  bash "$repo_script"
fi
if [ ! -d "$here/../frontend/node_modules" ]; then
  (cd "$here/../frontend" && npm ci --no-audit --no-fund --loglevel=error)
fi
sh "$here/services-up.sh"
sh "$here/up.sh"
