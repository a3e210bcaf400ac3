//! Differential fuzz target: random programs of operations on a
//! `ValueWatcher`, checked step by step against a model of SPEC section 3
//! (see `src/lib.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use value_watcher_fuzz::{CountingAllocator, Program, run};

/// Counts allocations, so the harness checks that setting, waiting and
/// waking never allocate (SPEC §3.8).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// AddressSanitizer's defaults for this target (`ASAN_OPTIONS` still
/// overrides them; unused without a sanitizer):
///
/// * no stack-use-after-return detection: its fake stack (a heap frame for
///   every function with addressable locals, swept after every panic, and
///   the harness injects many) took a third of the time, and it guards
///   only memory the fuzzer barely has: the one node that lives on a stack
///   is a blocking wait's, and the harness uses blocking waits only where
///   they complete or time out at once. Heap use-after-free (a freed wait
///   future's node still linked, issue 9) is detected as before.
///   `.ci/fuzz.sh` turns the detection back on
///   (`ASAN_OPTIONS=detect_stack_use_after_return=1`), with the smallest
///   fake stack (2^16 bytes per thread instead of 2^20), and so does
///   `.ci/asan.sh` for the test suite, whose blocking waits park;
/// * a 16 MB quarantine instead of 256 MB: one program allocates well under
///   1 MB, so freed memory stays poisoned for the rest of its run and
///   beyond, while the allocator reuses warm pages instead of faulting in
///   new ones.
#[unsafe(no_mangle)]
pub extern "C" fn __asan_default_options() -> *const std::ffi::c_char {
    c"detect_stack_use_after_return=0:max_uar_stack_size_log=16:quarantine_size_mb=16".as_ptr()
}

fuzz_target!(|program: Program| run(&program));
