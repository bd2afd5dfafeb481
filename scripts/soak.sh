#!/usr/bin/env bash
# Soak: the randomized stateful convergence machine of tests/test_stateful.py, run long.
#
# Hypothesis interleaves file operations on the local tree (create, edit, same-bytes rewrite,
# delete, rename, mkdir, rm -r, chmod +x, symlinks, file <-> directory swaps; odd names) with
# daemon events (batch cut, session drop, container restart, pod replacement, API-server
# outage, daemon stop/start) and compares whole trees at every quiescence, against a local
# directory, a Docker container and a pod of the Kubernetes API-server fixture
# (`pytest -m soak`; excluded from the default run by pyproject's addopts).
#
#   bash scripts/soak.sh                      # 40 sequences x 60 steps per target, a random seed
#   bash scripts/soak.sh -k local             # extra pytest arguments are passed on
#   python scripts/reliability.py --soak      # the same run, recorded as rows of docs/RELIABILITY.md
#
# Environment (all optional):
#   SYNCD_STATEFUL_EXAMPLES   sequences per target         (default here: 40)
#   SYNCD_STATEFUL_STEPS      steps per sequence           (default here: 60)
#   SYNCD_STATEFUL_SEED       the seed; printed at the end of each target's run, set it to
#                             replay a failing soak exactly (default: random)
#   SYNCD_STATEFUL_SHRINK=0   report the first failing sequence without shrinking it
#                             (shrinking a long sequence can take hypothesis 5 minutes)
#   SYNCD_STATEFUL_TIMEOUT    pytest-timeout per target, seconds (default 21600)
#   SYNCD_STATEFUL_REPORT     file the per-target summary lines are appended to (default: a
#                             temp file; printed at the end: sequences, operations, events, seed)
# Needs what the test suite needs (Docker and the test images: scripts/test.sh sets them up);
# under CI=true a missing Docker engine fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export SYNCD_STATEFUL_EXAMPLES="${SYNCD_STATEFUL_EXAMPLES:-40}"
export SYNCD_STATEFUL_STEPS="${SYNCD_STATEFUL_STEPS:-60}"
if [ -z "${SYNCD_STATEFUL_SEED:-}" ]; then
  SYNCD_STATEFUL_SEED="$(python3 -c 'import random; print(random.SystemRandom().randrange(1 << 32))')"
fi
export SYNCD_STATEFUL_SEED
export SYNCD_STATEFUL_REPORT="${SYNCD_STATEFUL_REPORT:-$(mktemp -t syncd-soak.XXXXXX)}"
echo "soak: ${SYNCD_STATEFUL_EXAMPLES} sequences x ${SYNCD_STATEFUL_STEPS} steps per target, seed ${SYNCD_STATEFUL_SEED}" >&2
rc=0
python3 -m pytest -m soak -p no:cacheprovider tests/test_stateful.py "$@" || rc=$?
echo "--- soak summary (seed ${SYNCD_STATEFUL_SEED}; also in ${SYNCD_STATEFUL_REPORT}) ---" >&2
cat "$SYNCD_STATEFUL_REPORT" >&2 || true
exit "$rc"
