#!/bin/sh
# Undo dev-up.sh: the dev containers, then PostgreSQL (its data stays in .syncd/services/).
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
sh "$here/down.sh"
sh "$here/services-down.sh"
