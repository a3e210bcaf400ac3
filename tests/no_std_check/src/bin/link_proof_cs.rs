//! The no_std link proof with value-watcher's `critical-section` lock: the
//! same checks as `link_proof`, with a critical-section implementation
//! (src/rt.rs) instead of the spinlock.
#![no_std]
#![no_main]

// Every crate in value-watcher's normal dependency tree with the
// `critical-section` feature.
extern crate alloc;
extern crate critical_section;
extern crate futures_core;
extern crate spin;
extern crate value_watcher;

#[path = "../checks.rs"]
mod checks;
#[path = "../rt.rs"]
mod rt;

use checks::run;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let _ = writeln!(checks::Fd(2), "link proof: {info}");
    rt::exit(101)
}
