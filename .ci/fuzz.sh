#!/usr/bin/env bash
# Differential fuzzing (fuzz/, target `ops`): random programs of operations
# run against the crate and against a model of SPEC section 3, under
# AddressSanitizer (nightly), for FUZZ_SECONDS (default 60).
#
# The checked-in seeds (fuzz/corpus/ops) are read but never written: new
# inputs go to a temporary corpus directory, deleted on exit. A crash leaves
# its input in fuzz/artifacts/ops/ (git-ignored) and fails this script;
# `cargo +nightly fuzz run ops <file>` replays it, and `cargo +nightly fuzz
# tmin ops <file>` minimizes it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT

start=$(date +%s)
# -timeout: one input running this long is a hang (a lost wake-up or a
# deadlock), reported as a crash.
cargo +nightly fuzz run ops "$corpus" fuzz/corpus/ops -- \
    -max_total_time="$seconds" \
    -timeout=20 \
    -print_final_stats=1
echo "fuzz: $(( $(date +%s) - start )) s, $(find "$corpus" -type f | wc -l) new corpus entries (discarded)"
