#!/usr/bin/env bash
# The long leak run: tests/leaks.rs with more polls than CI's 60,000.
# `scanwatch run` polls the simulator at the shortest interval; open file
# descriptors at 10% of the polls and at the end must be equal, and RSS
# within max(5%, 2 MiB) (see docs/reliability.md).
#
# Usage: scripts/leak-soak.sh [POLLS] [CUSTOMERS]
#   POLLS      polls to run (default 500000: about 25 minutes in a debug
#              build on 2 cores, at roughly 350 polls a second)
#   CUSTOMERS  simulated customers, each polled once a second (default 400;
#              more than the machine can poll per second only adds lag)
set -euo pipefail
cd "$(dirname "$0")/.."

polls=${1:-500000}
customers=${2:-400}
echo "leak soak: ${polls} polls over ${customers} customers"
SCANWATCH_LEAK_POLLS="$polls" SCANWATCH_LEAK_CUSTOMERS="$customers" \
    cargo test --locked --test leaks -- --nocapture
