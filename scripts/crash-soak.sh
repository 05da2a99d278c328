#!/usr/bin/env bash
# The long crash-consistency run: tests/crash.rs with more kills than CI's 50.
# `scanwatch run` is killed with SIGKILL at seeded random moments while the
# simulator mutates, restarted each time, and the history is checked at the
# end (see docs/reliability.md).
#
# Usage: scripts/crash-soak.sh [KILLS] [SEED]
#   KILLS  how many kills (default 200; about 0.5 s each)
#   SEED   seeds the kill moments and the simulated data (default: the time)
# A failure prints the seed; the same seed replays the same kill moments.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=${1:-200}
seed=${2:-$(date +%s)}
echo "crash soak: ${kills} kills, seed ${seed}"
SCANWATCH_CRASH_KILLS="$kills" SCANWATCH_CRASH_SEED="$seed" \
    cargo test --locked --test crash -- --nocapture
