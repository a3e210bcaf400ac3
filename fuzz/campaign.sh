#!/usr/bin/env bash
# A long fuzzing campaign: both lock back ends one after the other, two
# libFuzzer workers each (this machine's 2 cores), under AddressSanitizer
# with the target's defaults (no stack-use-after-return detection) and
# without -trace-compares (both for speed: fuzz/README.md, "Speed"),
# starting from the checked-in corpus. The grown corpora and the workers'
# logs stay in OUT; a crash leaves its input in fuzz/artifacts/ops/.
#
#   SECONDS_PER_LOCK=1800 bash fuzz/campaign.sh /tmp/campaign
#   LOCKS=critical-section SECONDS_PER_LOCK=1500 bash fuzz/campaign.sh /tmp/campaign
#
# Afterwards, merge what grew into a minimized corpus (the named seeds stay):
#   cargo +nightly fuzz run ops NEW fuzz/corpus/ops OUT/spinlock OUT/critical-section -- -merge=1
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
out="${1:?usage: campaign.sh OUT}"
mkdir -p "$out"
out="$(realpath "$out")"
status=0
for lock in ${LOCKS:-spinlock critical-section}; do
    features=()
    [ "$lock" = critical-section ] && features=(--features critical-section)
    mkdir -p "$out/$lock" "$out/logs-$lock"
    cp -n fuzz/corpus/ops/* "$out/$lock/"
    cargo +nightly fuzz build --no-trace-compares ops "${features[@]}"
    echo "== $lock: start $(date +%T), commit $(git rev-parse --short HEAD)"
    (cd "$out/logs-$lock" &&
        cargo +nightly fuzz run --no-trace-compares --fuzz-dir "$root/fuzz" ops "${features[@]}" "$out/$lock" -- \
            -jobs=2 -workers=2 -max_total_time="${SECONDS_PER_LOCK:-1800}" -timeout=20 \
            -print_final_stats=1 >run.out 2>&1) || status=1
    echo "== $lock: end $(date +%T)"
    # Each worker's last status line: its execution count.
    for log in "$out/logs-$lock"/fuzz-*.log; do
        grep -h '^#[0-9]' "$log" | tail -1 | awk -v f="$(basename "$log")" '{ print f ": " substr($1, 2) " executions" }'
    done
    if grep -l -E 'ERROR|panicked' "$out/logs-$lock"/fuzz-*.log; then status=1; fi
done
exit $status
