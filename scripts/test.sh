#!/usr/bin/env bash
# The whole test suite on a fresh machine: Python deps, a Docker engine, test images, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
bash scripts/ensure-docker.sh
bash scripts/build-test-images.sh
# The example app's tools (tests/test_fullstack.py): PostgreSQL from Debian for its
# migrations, the frontend's npm packages (installed now: tests never reach a registry).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing Debian's postgresql ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)  # tests/test_status_page.py
for tool in cargo npm psql; do
  command -v "$tool" >/dev/null 2>&1 || echo "warning: no $tool on PATH: the example-app tests need it and fail under CI" >&2
done
(cd examples/fullstack/frontend && npm ci --no-audit --no-fund --loglevel=error)
command -v kubectl >/dev/null 2>&1 || echo "warning: no kubectl (v1.30+) on PATH: the Kubernetes fixture tests need it and fail under CI" >&2
# Gates: lint and types (the rule set and why: pyproject.toml), before the slow part.
python3 -m ruff check syncd
python3 -m mypy
exec python3 -m pytest -q -p no:cacheprovider "$@"
