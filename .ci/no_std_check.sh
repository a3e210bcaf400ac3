#!/usr/bin/env bash
# Proves value-watcher is no_std + alloc, then compares its code size with
# embassy-sync's `Watch`. Needs only rustup's stable toolchain on x86_64 Linux
# (and binutils' `size` for the section table; without it, file sizes only).
#
# 1. Every crate in value-watcher's normal dependency tree (without default
#    features, and with `critical-section`) must be named by `extern crate` in
#    the link-proof binaries, so none can slip in unproven.
# 2. The link proofs (tests/no_std_check/src/checks.rs) are freestanding
#    `#![no_std]` binaries with their own `_start`, panic handler and
#    allocator. If anything in the tree linked `std`, the build would fail
#    with "found duplicate lang item `panic_impl`". They are built in the dev
#    profile (debug assertions on) and in release, run, and must exit with 0.
# 3. The size programs do the same small job with each crate (see
#    tests/no_std_check/src/vw_use.rs and src/bin/size_embassy.rs); each must
#    exit with 0, then their sections are printed, above a baseline binary
#    that holds only the runtime scaffolding.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# Our own target directory (under the caller's CARGO_TARGET_DIR if set), so
# this never shares build locks or binaries with the main crate's builds.
export CARGO_TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")/no_std_check"
cd "$repo/tests/no_std_check"

fail() {
    echo "no_std check FAILED: $*" >&2
    exit 1
}

# --- 1. every dependency is named ---
# usage: check_named <bin> [cargo features...]
check_named() {
    local bin=$1
    shift
    local deps
    # value-watcher's subtree in this package's tree: its line at depth 1
    # and the deeper lines under it.
    deps=$(cargo tree --locked -e normal --prefix depth "$@" |
        awk 'match($0, /^[0-9]+/) {
                 depth = substr($0, 1, RLENGTH) + 0
                 name = substr($1, RLENGTH + 1)
                 if (depth == 1) inside = (name == "value-watcher")
                 if (inside) print name
             }' | sort -u | tr - _) ||
        fail "cargo tree failed (if value-watcher's dependencies changed: cargo update in tests/no_std_check)"
    for dep in $deps; do
        grep -q "^extern crate $dep;" "src/bin/$bin.rs" ||
            fail "src/bin/$bin.rs does not name value-watcher's dependency '$dep' with extern crate"
    done
    echo "ok: $bin names all of value-watcher's dependencies: $(echo $deps | tr ' ' ,)"
}
check_named link_proof
check_named link_proof_cs --features cs

# --- 2. link proofs ---
# usage: run_bin <profile dir> <bin> [cargo args...]
run_bin() {
    local dir=$1 bin=$2
    shift 2
    cargo build --quiet --locked --bin "$bin" "$@" || fail "$bin did not build ($dir)"
    local status=0
    "$CARGO_TARGET_DIR/$dir/$bin" || status=$?
    [ "$status" -eq 0 ] || fail "$bin ($dir) exited with status $status"
}
for profile in debug release; do
    args=()
    [ "$profile" = release ] && args=(--release)
    run_bin "$profile" link_proof "${args[@]}"
    run_bin "$profile" link_proof_cs "${args[@]}" --features cs
    echo "ok: link proofs link without std and pass ($profile)"
done

# --- 3. sizes ---
run_bin release size_baseline --release
run_bin release size_vw --release
run_bin release size_vw_cs --release --features cs
run_bin release size_embassy --release --features embassy
echo "ok: size programs ran and exited with 0"

# usage: sections <binary> -> "text rodata eh data bss file"
sections() {
    local file
    file=$(wc -c <"$1")
    if command -v size >/dev/null; then
        size -A "$1" | awk -v file="$file" '
            $1 == ".text" { t += $2 }
            $1 == ".rodata" || $1 == ".data.rel.ro" { r += $2 }
            $1 == ".eh_frame" || $1 == ".eh_frame_hdr" { e += $2 }
            $1 == ".data" { d += $2 }
            $1 == ".bss" { b += $2 }
            END { print t + 0, r + 0, e + 0, d + 0, b + 0, file }'
    else
        echo "? ? ? ? ? $file"
    fi
}

echo
echo "Code size, release (opt-level s, LTO, 1 codegen unit, panic=abort, stripped), x86_64."
echo "Each size_* program does the same job: a static u32 watcher, a read, a next-change"
echo "future and a wait-until-3 future polled by hand around three sets, a read."
echo "rodata = .rodata + .data.rel.ro; eh = .eh_frame + .eh_frame_hdr (unwind tables);"
echo "\"above base\" = text + rodata + data minus the baseline's (file: whole file minus baseline's)."
command -v size >/dev/null || echo "(binutils' size not found: file sizes only)"
printf '%-15s %7s %7s %6s %6s %7s %7s %11s %11s\n' \
    binary text rodata eh data bss file "above base" "file above"
read -r bt br be bd bb bf < <(sections "$CARGO_TARGET_DIR/release/size_baseline")
for bin in size_baseline size_vw size_vw_cs size_embassy link_proof link_proof_cs; do
    read -r t r e d b f < <(sections "$CARGO_TARGET_DIR/release/$bin")
    if [ "$t" = "?" ]; then
        above="?"
    else
        above=$(((t + r + d) - (bt + br + bd)))
    fi
    printf '%-15s %7s %7s %6s %6s %7s %7s %11s %11s\n' \
        "$bin" "$t" "$r" "$e" "$d" "$b" "$f" "$above" "$((f - bf))"
done
echo "size_vw: value-watcher (spinlock); size_vw_cs: value-watcher (critical-section);"
echo "size_embassy: embassy-sync 0.8 Watch<CriticalSectionRawMutex, u32, 1>;"
echo "link_proof*: the whole checked API tour (bss: its 256 KiB heap arena)."
