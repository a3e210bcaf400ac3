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
/// * stack-use-after-return detection stays on, with the smallest fake
///   stack (2^16 bytes per thread instead of 2^20): every panic (the
///   harness injects many) makes ASan sweep the whole fake stack, which
///   took 40% of the time; a blocking wait's pinned node outliving its
///   frame is still caught;
/// * a 16 MB quarantine instead of 256 MB: one program allocates well under
///   1 MB, so freed memory stays poisoned for the rest of its run and
///   beyond, while the allocator reuses warm pages instead of faulting in
///   new ones.
#[unsafe(no_mangle)]
pub extern "C" fn __asan_default_options() -> *const std::ffi::c_char {
    c"max_uar_stack_size_log=16:quarantine_size_mb=16".as_ptr()
}

fuzz_target!(|program: Program| run(&program));
