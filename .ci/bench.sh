#!/usr/bin/env bash
# Benchmarks (benches/README.md explains them and holds the results).
#
#   bash .ci/bench.sh           build every bench target; install the
#                               instruction-count runner if it is missing
#   bash .ci/bench.sh --smoke   ... and run each benchmark once (criterion's
#                               --test mode), the memory table and the
#                               instruction counts (about 30 s after the build)
#   bash .ci/bench.sh --full    ... and run the whole suite (a few minutes);
#                               peers' ratio tables are printed at the end
#
# Uses $CARGO_TARGET_DIR if set (criterion writes to $CARGO_TARGET_DIR/criterion).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s ===\n' "$*"; }

step "build benches"
cargo bench --locked --no-run --bench peers --bench memory --bench instructions --bench handoff

# The gungraun library and its runner binary must have the same version.
want=$(awk '$0 == "name = \"gungraun\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
have=$(gungraun-runner --version 2>/dev/null | awk '{ print $NF }' || true)
if [ "$have" != "$want" ]; then
    step "install gungraun-runner $want (found: ${have:-none})"
    cargo install gungraun-runner --version "$want" --locked
fi
command -v valgrind >/dev/null || { echo "valgrind is required for benches/instructions.rs" >&2; exit 1; }

case "$mode" in
    build) ;;
    --smoke)
        step "smoke: every criterion benchmark once"
        cargo bench --locked --bench peers -- --test
        step "smoke: the hand-off ping-pong, every harness once"
        cargo bench --locked --bench handoff -- --test
        step "memory"
        cargo bench --locked --bench memory
        step "instruction counts (valgrind)"
        cargo bench --locked --bench instructions
        ;;
    --full)
        step "machine"
        echo "nproc: $(nproc)"
        grep -m1 'model name' /proc/cpuinfo || true
        step "memory"
        cargo bench --locked --bench memory
        step "instruction counts (valgrind)"
        cargo bench --locked --bench instructions
        step "criterion: value-watcher and its peers"
        cargo bench --locked --bench peers
        step "hand-off ping-pong beside tokio on three harnesses"
        cargo bench --locked --bench handoff
        ;;
    *)
        echo "usage: $0 [--smoke | --full]" >&2
        exit 2
        ;;
esac
step "ok"
