#!/bin/sh
# Time what an edit costs locally: an incremental cargo build after touching a source file,
# and an esbuild bundle. Prints milliseconds; exits non-zero if a build fails.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
ms() { date +%s%3N; }
cd "$here/backend"
cargo build --bin api -q
touch src/version.rs
t0=$(ms); cargo build --bin api -q; t1=$(ms)
echo "cargo incremental build: $((t1 - t0)) ms"
cd "$here/frontend"
t0=$(ms); npm run --silent build >/dev/null; t1=$(ms)
echo "esbuild bundle: $((t1 - t0)) ms"
