#!/usr/bin/env bash
# The whole test suite on a fresh machine: Python deps, a Docker engine, test images, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
bash scripts/ensure-docker.sh
bash scripts/build-test-images.sh
command -v kubectl >/dev/null 2>&1 || echo "warning: no kubectl (v1.30+) on PATH: the Kubernetes fixture tests need it and fail under CI" >&2
exec python3 -m pytest -q -p no:cacheprovider "$@"
