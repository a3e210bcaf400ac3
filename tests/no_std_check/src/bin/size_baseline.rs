//! Size program: the runtime scaffolding alone (entry point, exit, panic
//! handler; the allocator is linked only where something allocates). The
//! other size programs are measured above this one.
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

fn run() -> i32 {
    core::hint::black_box(0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    rt::exit(101)
}
