#!/usr/bin/env bash
# The whole test suite under AddressSanitizer (nightly): unit tests, every
# integration test binary and the doctests, then the library and integration
# tests again with the critical-section lock (whose reentrancy checks are what
# the use-after-free regression tests of tests/reentrancy.rs exercise), and
# those once more in the small shape. The
# explicit --target keeps build scripts and proc-macros uninstrumented;
# RUSTDOCFLAGS instruments the doctest binaries the same way (without it every
# doctest fails to link: undefined `__asan_*` symbols). Nothing is left out:
# tests/alloc.rs, with its own counting global allocator, runs fine on top of
# ASan's.
#
# Leak detection is off: several tests leak a watcher on purpose
# (`Box::leak` for a `'static` watcher that its own callback or a waker
# refers to, a cycle LeakSanitizer reports as a leak). Bounded memory is
# checked by tests/alloc.rs, and waker leaks by the loom models (loom
# reports every `Arc` still alive at the end of an interleaving).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS="detect_leaks=0:detect_stack_use_after_return=1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/asan"
cargo +nightly test --locked --target x86_64-unknown-linux-gnu
cargo +nightly test --locked --target x86_64-unknown-linux-gnu --features critical-section --lib --tests
# The small shape (`--cfg value_watcher_small`: what bare metal compiles) has
# unsafe paths of its own (the node's state read as the owner's armed flag,
# queued nodes popped one at a time): its lib and integration tests with the
# firmware's lock, in their own target directory.
RUSTFLAGS="$RUSTFLAGS --cfg value_watcher_small" CARGO_TARGET_DIR="$CARGO_TARGET_DIR-small" \
    cargo +nightly test --locked --target x86_64-unknown-linux-gnu --features critical-section --lib --tests
echo "ASan test suite: $(( $(date +%s) - start )) s"
