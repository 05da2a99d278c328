#!/usr/bin/env bash
# Long coverage-guided fuzzing of the response and config parsers with
# cargo-fuzz (libFuzzer). CI runs only the stable smoke test
# (tests/fuzz_smoke.rs); this is the documented longer run.
#
# Usage: scripts/fuzz-long.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600
#   TARGET              parse_response, parse_config (default: both)
#
# The machine has only the stable toolchain. cargo-fuzz's sanitizers need
# nightly (-Zsanitizer), so the sanitizer is off (-s none); the coverage
# instrumentation libFuzzer needs uses stable rustc flags, and scanwatch has
# no unsafe code in the parsers for AddressSanitizer to watch. A panic is still
# a crash. Crashing inputs land in fuzz/artifacts/TARGET/; replay one with:
#   cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/FILE
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_response parse_config)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/${target}"
    echo "fuzzing ${target} for ${seconds}s"
    cargo fuzz run -s none "$target" "fuzz/corpus/${target}" "fuzz/seeds/${target}" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1
done
