#!/usr/bin/env bash
# One command for the cycle benchmark: builds scanwatch, then runs
# bench/cycle.py against it (see BENCHMARKS.md). Every argument is passed on;
# --debug uses the debug build instead of release (for a quick smoke run).
#
#   bench/cycle.sh                                   # 10,000 x 20, 50 ms, 64
#   bench/cycle.sh --debug --customers 50 --latency 5ms --smoke
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
for arg in "$@"; do
    if [ "$arg" = "--debug" ]; then
        profile=debug
    fi
done
if [ "$profile" = release ]; then
    cargo build --release --locked --bin scanwatch
else
    cargo build --locked --bin scanwatch
fi
exec python3 bench/cycle.py --binary "target/${profile}/scanwatch" "$@"
