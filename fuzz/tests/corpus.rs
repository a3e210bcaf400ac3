//! Every input of the checked-in fuzz corpus (`corpus/ops`: the named seeds
//! and the minimized corpus of the last campaign) decodes to a program and
//! passes the differential harness.
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

/// Every program of `seeds.txt` is the named seed's decoding, so the seeds
/// keep meaning what their names say when the operation types change
/// (`python3 seeds.py` rewrites them from `seeds.txt`).
#[test]
fn named_seeds_decode_to_their_programs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("seeds.txt")).expect("seeds.txt");
    let mut named = 0;
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, expected) = line.split_once(" => ").expect("NAME => PROGRAM");
        let bytes = std::fs::read(root.join("corpus/ops").join(name))
            .unwrap_or_else(|e| panic!("seed {name}: {e} (run `python3 seeds.py`)"));
        let program = Program::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        assert!(!program.ops.is_empty(), "seed {name}: no operations");
        assert_eq!(
            format!("{program:?}"),
            expected,
            "seed {name} does not decode to its program in seeds.txt (run `python3 seeds.py`)"
        );
        named += 1;
    }
    assert!(named >= 40, "only {named} named seeds");
}
