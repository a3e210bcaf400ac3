#!/usr/bin/env bash
# Differential fuzzing (fuzz/, target `ops`): random programs of operations
# run against the crate and against a model of SPEC section 3, under
# AddressSanitizer (nightly), for FUZZ_SECONDS in total (default 60), split
# between the two lock back ends: the spinlock (default) and
# `critical-section`, where the reentrant operations from under the lock are
# generated too.
#
# The checked-in seeds (fuzz/corpus/ops) are read but never written: new
# inputs go to a temporary corpus directory per back end, deleted on exit.
# A crash leaves its input in fuzz/artifacts/ops/ (git-ignored) and fails
# this script; `cargo +nightly fuzz run ops [--features critical-section]
# <file>` replays it, and `cargo +nightly fuzz tmin ops ... <file>`
# minimizes it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
first=$(( (seconds + 1) / 2 ))
second=$(( seconds - first ))
(( second > 0 )) || second=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT

fuzz() {
    local name="$1" budget="$2"
    shift 2
    mkdir -p "$corpus/$name"
    local start
    start=$(date +%s)
    # --no-trace-compares: see fuzz/README.md, "Speed". The stack-use-after-
    # return detection the target turns off for speed is on here (the
    # blocking waits' stack nodes; the campaign runs without it).
    # -timeout: one input running this long is a hang (a lost wake-up or a
    # deadlock), reported as a crash.
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_stack_use_after_return=1}" \
        cargo +nightly fuzz run --no-trace-compares ops "$@" "$corpus/$name" fuzz/corpus/ops -- \
        -max_total_time="$budget" \
        -timeout=20 \
        -print_final_stats=1
    echo "fuzz ($name): $(( $(date +%s) - start )) s," \
        "$(find "$corpus/$name" -type f | wc -l) new corpus entries (discarded)"
}

fuzz spinlock "$first"
fuzz critical-section "$second" --features critical-section
