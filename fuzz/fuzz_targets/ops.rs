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

fuzz_target!(|program: Program| run(&program));
