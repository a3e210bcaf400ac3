//! The no_std link proof (spinlock): value-watcher without default features,
//! in a freestanding binary. Exit status 0 when every check in
//! src/checks.rs passes.
#![no_std]
#![no_main]

// Every crate in value-watcher's normal dependency tree, named so the link
// has to resolve each of them without `std`.
extern crate alloc;
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
