#!/bin/sh
# Runs every benchmark program in BUILD/bench (BUILD is the first argument, else $IMAPQ_BUILD_DIR,
# else ./build at the repository root) one after another, output to stdout. Builds nothing.
# Exits non-zero when a benchmark is missing or any of them failed; the others still run.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${IMAPQ_BUILD_DIR:-$root/build}}

found=0
status=0
for bin in "$build"/bench/bench_*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    found=1
    echo "== $(basename "$bin")"
    if ! "$bin"; then
        echo "== $(basename "$bin") FAILED" >&2
        status=1
    fi
    echo
done

if [ "$found" -eq 0 ]; then
    echo "no benchmark programs in $build/bench (build first: cmake --build $build)" >&2
    exit 1
fi
exit "$status"
