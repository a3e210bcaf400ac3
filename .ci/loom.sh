#!/usr/bin/env bash
# loom models of the crate's races (tests/loom.rs).
#
# The crate-specific cfg swaps the lock and the waiter cells for loom's; a
# global `--cfg loom` would also switch event-listener and concurrent-queue
# (dev-dependencies) into their own loom modes and break the build. Debug
# assertions are on (in release, for speed) so the crate's `debug_assert!`s
# of every node state transition run in every interleaving.
#
# 25 of the 31 models run exhaustively (no preemption bound); the six
# largest use LOOM_MAX_PREEMPTIONS (default 2) plus 1, 2 or 3. Measured on the
# 2-core machine, shared with other builds: the models run in 10 s at the
# default (several_waiters_two_setters, 115,000 interleavings, is most of
# it), 44 s with LOOM_MAX_PREEMPTIONS=3; the build takes 1-3.5 min.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
export RUSTFLAGS="--cfg value_watcher_loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
# --nocapture shows each model's interleaving count.
cargo test --release --locked --test loom -- --nocapture
echo "loom models: $(( $(date +%s) - start )) s (base preemption bound ${LOOM_MAX_PREEMPTIONS})"

# Then the same models in the small shape (src/lib.rs, `SMALL`: what
# bare-metal targets compile), where every chosen waiter goes through the
# `queued` list and is woken in its own critical section. That shape has
# many more interleavings (several_waiters_two_setters: 875,000 at base
# bound 2, 60 s), so it runs at base bound 1 (14 s for all 31), which keeps
# the 25 exhaustive models exhaustive. LOOM_SMALL_PREEMPTIONS overrides.
start=$(date +%s)
RUSTFLAGS="$RUSTFLAGS --cfg value_watcher_small" CARGO_TARGET_DIR="$CARGO_TARGET_DIR-small" \
    LOOM_MAX_PREEMPTIONS="${LOOM_SMALL_PREEMPTIONS:-1}" \
    cargo test --release --locked --test loom -- --nocapture
echo "loom models, small shape: $(( $(date +%s) - start )) s (base preemption bound ${LOOM_SMALL_PREEMPTIONS:-1})"
