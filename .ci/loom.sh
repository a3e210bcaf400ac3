#!/usr/bin/env bash
# loom models of the crate's races (tests/loom_models.rs). The crate-specific
# cfg swaps the lock and the waiter cells for loom's; a global `--cfg loom`
# would also switch event-listener and concurrent-queue (dev-dependencies)
# into their own loom modes and break the build.
#
# Preemption bound 5: every model finishes in seconds on 2 cores (bound 6
# took 17 s for all ten models when measured; bound 4, 2 s).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
RUSTFLAGS="--cfg value_watcher_loom" \
LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-5}" \
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
    cargo test --release --locked --test loom_models
echo "loom models: $(( $(date +%s) - start )) s (preemption bound ${LOOM_MAX_PREEMPTIONS:-5})"
