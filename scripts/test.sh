#!/usr/bin/env bash
# The whole test suite on a fresh machine: Python deps, a Docker engine, test images, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# Bytecode once, as an installed copy has it: under PYTHONDONTWRITEBYTECODE each of the suite's
# syncd processes would compile every module again (~0.14 s a start).
python3 -m compileall -q syncd
bash scripts/ensure-docker.sh
bash scripts/build-test-images.sh
# The example app's tools (tests/test_fullstack.py): PostgreSQL from Debian for its
# migrations, the frontend's npm packages (installed now: tests never reach a registry).
# The backend's crates come from Debian (a cargo directory source, backend/.cargo/config.toml),
# Redis is the warm-cache action's store. One `apt-get update`, one install, only when missing.
need=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)  # tests/test_status_page.py
command -v redis-server >/dev/null || need+=(redis-server)
for pkg in librust-tokio-dev librust-hyper-dev librust-tokio-postgres-dev librust-serde-json-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian's ${need[*]} ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for tool in cargo npm psql redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || echo "warning: no $tool on PATH: the example-app tests need it and fail under CI" >&2
done
(cd examples/fullstack/frontend && npm ci --no-audit --no-fund --loglevel=error)
# The backend's one from-scratch build (~35 s on two cores): tests and benchmarks copy this
# target/ into their copies of the example (benchmarks/example_app.py), so none repeats it.
if command -v cargo >/dev/null 2>&1; then (cd examples/fullstack/backend && cargo build --all-targets --quiet); fi
command -v kubectl >/dev/null 2>&1 || echo "warning: no kubectl (v1.30+) on PATH: the Kubernetes fixture tests need it and fail under CI" >&2
# Gates: lint and types (the rule set and why: pyproject.toml), before the slow part.
python3 -m ruff check syncd
python3 -m mypy
exec python3 -m pytest -q -p no:cacheprovider "$@"
