#!/usr/bin/env bash
# value-watcher on embedded targets (SPEC section 5, issue 11):
#
# 1. installs what it needs (Debian's rustc 1.85 with the standard library's
#    source, lld-16, QEMU), unless it is there already;
# 2. builds tests/firmware for the five targets, each with the lock it can
#    use: the critical-section lock everywhere (the firmware sets watchers
#    from an interrupt handler), the default spinlock too where there is
#    atomic compare-and-swap;
# 3. runs the firmware on QEMU, each run under a timeout (a hang fails):
#    `contract` on Cortex-M0, M3, M4 and RISC-V rv32, the embassy-executor
#    run on Cortex-M3, the size programs everywhere they are built; then one
#    build with a deliberately wrong expectation, which must exit non-zero;
# 4. builds the library with exactly rustc 1.85 (rust-version) on the host;
# 5. prints the code-size table (value-watcher beside embassy-sync's Watch).
#
# Run from anywhere; as root on a fresh machine it installs the packages.
# VW_EMBEDDED_TARGETS="thumbv7m-none-eabi ..." limits step 2-3 and 5 to those
# targets (for a quick local run); CI runs all five. VW_EMBEDDED_SIZES_ONLY=1
# builds and runs only the size programs and prints the table (no contract or
# embassy firmware, no MSRV step): for measuring an experiment such as
# tests/firmware/without-extras.patch. CI sets neither.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target_root="$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")"
fw_target="$target_root/firmware"
all_targets="thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf riscv32imac-unknown-none-elf"
targets=${VW_EMBEDDED_TARGETS:-$all_targets}
sizes_only=${VW_EMBEDDED_SIZES_ONLY:-}
start=$(date +%s)

fail() {
    echo "embedded check FAILED: $*" >&2
    exit 1
}
phase() {
    printf '\n--- %s (%s s so far) ---\n' "$*" "$(($(date +%s) - start))"
}

# === 1. tools ===
phase "tools"
# The pins of shared/TOOLING.md: rustc 1.85 is the crate's rust-version and
# the one whose library source -Zbuild-std compiles here.
rust_pkgs="rustc-web=1.85.0+dfsg3-1~deb12u3 libstd-rust-web-dev=1.85.0+dfsg3-1~deb12u3
    libstd-rust-web-1.85=1.85.0+dfsg3-1~deb12u3 rust-web-src=1.85.0+dfsg3-1~deb12u3 lld-16"
apt_updated=
apt_update() {
    [ -n "$apt_updated" ] || apt-get update -qq
    apt_updated=1
}
if ! /usr/bin/rustc --version 2>/dev/null | grep -q '^rustc 1\.85\.0 ' ||
    [ ! -d /usr/lib/rustlib/src/rust/library ] || ! command -v ld.lld-16 >/dev/null; then
    apt_update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $rust_pkgs >/dev/null
fi
/usr/bin/rustc --version

# QEMU 7.2 from Debian. On machines whose image carries qemu-utils from
# bookworm-backports (10.x), apt refuses qemu-system-* 7.2 ("qemu-utils:
# Breaks: qemu-system-common (< 8.0)"); then the two packages are unpacked
# into our target directory instead (with their libraries installed by apt),
# which leaves the installed qemu-utils alone.
qemu_dir=$target_root/embedded-qemu
if command -v qemu-system-arm >/dev/null && command -v qemu-system-riscv32 >/dev/null; then
    qemu_bin=$(dirname "$(command -v qemu-system-arm)")
elif [ -x "$qemu_dir/usr/bin/qemu-system-arm" ] && [ -x "$qemu_dir/usr/bin/qemu-system-riscv32" ]; then
    qemu_bin=$qemu_dir/usr/bin
else
    apt_update
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm qemu-system-misc >/dev/null 2>&1; then
        qemu_bin=/usr/bin
    else
        echo "apt cannot install qemu-system-arm/-misc here; unpacking them into $qemu_dir"
        qemu_version=$(apt-cache policy qemu-system-arm | awk '$1 == "Candidate:" { print $2 }')
        libs=$(apt-cache depends "qemu-system-arm=$qemu_version" "qemu-system-misc=$qemu_version" |
            awk '$1 == "Depends:" && $2 !~ /^qemu-/ { print $2 }' | sort -u)
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $libs >/dev/null
        rm -rf "$qemu_dir.tmp" && mkdir -p "$qemu_dir.tmp/deb"
        (cd "$qemu_dir.tmp/deb" &&
            apt-get download -qq "qemu-system-arm=$qemu_version" "qemu-system-misc=$qemu_version" 2>/dev/null)
        for deb in "$qemu_dir.tmp"/deb/*.deb; do dpkg -x "$deb" "$qemu_dir.tmp"; done
        rm -rf "$qemu_dir.tmp/deb" "$qemu_dir" && mv "$qemu_dir.tmp" "$qemu_dir"
        qemu_bin=$qemu_dir/usr/bin
    fi
fi
"$qemu_bin/qemu-system-arm" --version | head -1

# === 2. builds ===
cd "$repo/tests/firmware"
export RUSTC_BOOTSTRAP=1 # for -Zbuild-std with a stable rustc
export CARGO_TARGET_DIR=$fw_target
# usage: build <target> <bin> <name to keep it under> [features]
# Each binary is built with exactly its features (cargo unifies features per
# build), then copied aside, since the next build overwrites it.
build() {
    local target=$1 bin=$2 name=$3 features=${4:-}
    RUSTC=/usr/bin/rustc nice cargo build --quiet --locked --release \
        -Zbuild-std=core,alloc --target "$target" --bin "$bin" --features "$features" ||
        fail "$bin ($target, features '$features') did not build"
    mkdir -p "$fw_target/out/$target"
    cp "$fw_target/$target/release/$bin" "$fw_target/out/$target/$name"
}

# usage: qemu_cmd <target> -> the QEMU command line that runs its firmware
qemu_cmd() {
    local semi=(-nographic -semihosting-config enable=on,target=native)
    case $1 in
    thumbv6m-none-eabi) echo "$qemu_bin/qemu-system-arm -machine microbit ${semi[*]}" ;;
    thumbv7m-none-eabi) echo "$qemu_bin/qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb ${semi[*]}" ;;
    thumbv7em-none-eabihf) echo "$qemu_bin/qemu-system-arm -machine mps2-an386 ${semi[*]}" ;;
    riscv32*) echo "$qemu_bin/qemu-system-riscv32 -machine virt -bios none ${semi[*]}" ;;
    *) fail "no QEMU machine for $1" ;;
    esac
}

# usage: run <target> <name> -> exit status of the firmware (fails on hang)
run() {
    local target=$1 name=$2 status=0
    # shellcheck disable=SC2046
    timeout 60 $(qemu_cmd "$target") -kernel "$fw_target/out/$target/$name" </dev/null || status=$?
    [ "$status" -ne 124 ] || fail "$name on $target did not finish within 60 s (a hang)"
    return "$status"
}
must_pass() {
    run "$@" || fail "$2 on $1 exited with status $?"
    echo "ok: $2 on $1"
}

has_cas() {
    case $1 in thumbv6m-* | riscv32imc-*) return 1 ;; *) return 0 ;; esac
}

for target in $targets; do
    phase "$target: build"
    # `cs` everywhere but for the spinlock build: the package always depends
    # on value-watcher, which (without `cs`) does not build where there is no
    # compare-and-swap. The baseline and embassy programs do not use it, so
    # nothing of it is linked into them.
    [ -n "$sizes_only" ] || build "$target" contract contract cs
    build "$target" size_baseline size_baseline cs
    build "$target" size_vw size_vw_cs cs
    build "$target" size_embassy size_embassy cs,embassy-sync
    if has_cas "$target"; then
        build "$target" size_vw size_vw_spin
    fi
    if [ "$target" = thumbv7m-none-eabi ] && [ -z "$sizes_only" ]; then
        build "$target" embassy embassy embassy
        build "$target" contract contract_demo_failure cs,demo-failure
    fi

    phase "$target: run on QEMU"
    [ -n "$sizes_only" ] || must_pass "$target" contract
    for name in size_baseline size_vw_cs size_embassy; do must_pass "$target" "$name"; done
    if has_cas "$target"; then must_pass "$target" size_vw_spin; fi
    if [ "$target" = thumbv7m-none-eabi ] && [ -z "$sizes_only" ]; then
        must_pass "$target" embassy
        echo "(the next run must fail: a check expects what a latest-value watch would give)"
        if run "$target" contract_demo_failure; then
            fail "contract with a wrong expectation exited with 0: failing checks would go unnoticed"
        fi
        echo "ok: a failing check makes the firmware exit non-zero"
    fi
done

# === 4. MSRV ===
cd "$repo"
if [ -z "$sizes_only" ]; then
    phase "MSRV: the library with exactly rustc 1.85"
    msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
    /usr/bin/rustc --version | grep -q "^rustc $msrv\.0 " || fail "rust-version is $msrv, but /usr/bin/rustc is $(/usr/bin/rustc --version)"
    for features in "" "--no-default-features" "--no-default-features --features critical-section"; do
        # shellcheck disable=SC2086
        # Without RUSTC_BOOTSTRAP: an unstable feature must fail here as on a real 1.85.
        env -u RUSTC_BOOTSTRAP RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$target_root/msrv" \
            nice cargo build --quiet --locked --lib $features ||
            fail "the library does not build with rustc $msrv ($features)"
        echo "ok: cargo build --lib ${features:-(default features)} with rustc $msrv"
    done
fi

# === 5. sizes ===
phase "code size"
# usage: image <elf> -> bytes of the flash image: vector table, code,
# read-only data and the initial values of .data
image() {
    size -A "$1" | awk '$1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { n += $2 }
                        END { print n + 0 }'
}
echo "Code size of the job of tests/no_std_check (a static u32 watcher, a read, a next-change"
echo "future and a wait-until-3 future polled by hand around three sets, a read), in bytes of"
echo "flash (.vector_table + .text + .rodata + .data) above the same target's scaffolding-only"
echo "baseline; release: opt-level \"z\", LTO, 1 codegen unit, panic = \"abort\"; rustc 1.85."
printf '%-30s %-18s %8s %14s %6s\n' target lock value-watcher "embassy-sync" ratio
for target in $targets; do
    out=$fw_target/out/$target
    base=$(image "$out/size_baseline")
    emb=$(($(image "$out/size_embassy") - base))
    locks=critical-section
    has_cas "$target" && locks="spinlock critical-section"
    for lock in $locks; do
        name=size_vw_cs
        [ "$lock" = spinlock ] && name=size_vw_spin
        vw=$(($(image "$out/$name") - base))
        printf '%-30s %-18s %8s %14s %6s\n' "$target" "$lock" "$vw" "$emb" \
            "$(awk -v a="$vw" -v b="$emb" 'BEGIN { printf "%.2fx", a / b }')"
    done
done
echo "embassy-sync: 0.7 Watch<CriticalSectionRawMutex, u32, 1> (0.8 needs rustc 1.88)."

phase "ok: embedded targets, QEMU firmware, MSRV and sizes done"
