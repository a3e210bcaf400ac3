//! Every checked-in seed of the fuzz corpus (`corpus/ops`) decodes to a
//! program and passes the differential harness.
#![cfg(panic = "unwind")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use value_watcher_fuzz::{CountingAllocator, Program, run};

/// Turns on the harness's allocation checks (SPEC §3.8).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn seed_corpus_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/ops");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 20,
        "only {} seeds in {}",
        seeds.len(),
        dir.display()
    );
    // Run them all, then name every failing seed (each failure's message
    // is printed by the panic hook as it happens).
    let mut failed = Vec::new();
    for seed in &seeds {
        let bytes = std::fs::read(seed).expect("readable seed");
        let program = Program::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        assert!(!program.ops.is_empty(), "{}: no operations", seed.display());
        if catch_unwind(AssertUnwindSafe(|| run(&program))).is_err() {
            failed.push(
                seed.file_name()
                    .expect("file")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
