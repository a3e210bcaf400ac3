use arbitrary::{Arbitrary, Unstructured};
use value_watcher_fuzz::{CountingAllocator, Program, run};
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;
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
fn find() {
    let mut rng = Rng(std::env::var("SEED")
        .map(|s| s.parse().unwrap())
        .unwrap_or(0x9e37_79b9_7f4a_7c15));
    let n: usize = std::env::var("N")
        .map(|s| s.parse().unwrap())
        .unwrap_or(3000);
    for k in 0..n {
        let len = 16 + (rng.next() % 400) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let program = Program::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        if std::panic::catch_unwind(|| run(&program)).is_err() {
            println!(
                "program {k}: init {} opt {:?}",
                program.init, program.init_opt
            );
            for (i, op) in program.ops.iter().enumerate().take(64) {
                println!("{i}: {op:?}");
            }
            std::fs::write("/tmp/fz/failing.bin", &bytes).unwrap();
            panic!("failed");
        }
    }
}
