#!/usr/bin/env bash
# Proves value-watcher is no_std + alloc: links and runs a freestanding
# `#![no_std]` binary against it (tests/no_std_link). Any `std` in the
# dependency tree makes the link fail with "duplicate lang item `panic_impl`".
# Then prints code sizes against the same minimal use of embassy-sync's Watch.
set -euo pipefail
cd "$(dirname "$0")/../tests/no_std_link"

run() { # features label
    cargo build --quiet --release --locked ${1:+--features "$1"}
    local status=0
    ./target/release/no-std-link || status=$?
    if [ "$status" -ne 0 ]; then
        echo "no_std check failed: $2 exited with status $status (see the check numbers in src/full.rs)" >&2
        exit 1
    fi
    echo "ok: $2 links without std and passes its checks"
}
run "" "value-watcher (spinlock)"
run "cs" "value-watcher (critical-section)"

text_data() { # features -> text+data bytes of the release binary
    cargo build --quiet --release --locked --features "$1"
    ./target/release/no-std-link || { echo "size binary $1 failed" >&2; exit 1; }
    size -A target/release/no-std-link | awk '$1 ~ /^\.(text|rodata|data)/ {s += $2} END {print s}'
}
base=$(text_data size-baseline)
echo
echo "code size above the runtime scaffolding (.text + .rodata + .data, opt-level s, LTO)"
echo "same program each: a static watcher, one waiter for 3 polled by hand, three sends"
for f in size-vw size-vw,cs size-embassy; do
    printf '  %-14s %6d bytes\n' "$f" $(( $(text_data "$f") - base ))
done
