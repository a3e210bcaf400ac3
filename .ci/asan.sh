#!/usr/bin/env bash
# The test suite under AddressSanitizer (nightly). The explicit --target keeps
# build scripts and proc-macros uninstrumented. Covers the library's unit
# tests and every integration test binary; the doctests are left out because
# rustdoc would need the same sanitizer flags for each doctest binary, and
# they exercise nothing the integration tests do not.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
RUSTFLAGS="-Zsanitizer=address" \
ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1" \
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/asan" \
    cargo +nightly test --locked --target x86_64-unknown-linux-gnu --lib --tests
echo "ASan test suite: $(( $(date +%s) - start )) s"
