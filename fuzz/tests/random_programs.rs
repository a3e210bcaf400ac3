//! Runs a few thousand pseudo-random programs through the differential
//! harness with a fixed seed: the fuzz target's checks on stable, without
//! libFuzzer, in a plain `cargo test`.
#![cfg(panic = "unwind")]

use arbitrary::{Arbitrary, Unstructured};
use value_watcher_fuzz::{CountingAllocator, Program, run};

/// Turns on the harness's allocation checks (SPEC §3.8).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// xorshift64*: deterministic bytes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_programs_match_the_model() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ops = 0;
    for _ in 0..3000 {
        let len = 16 + (rng.next() % 400) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let program = Program::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        ops += program.ops.len().min(value_watcher_fuzz::MAX_OPS);
        run(&program);
    }
    // The programs are not trivially empty.
    assert!(ops > 3000 * 10, "only {ops} operations ran");
}
