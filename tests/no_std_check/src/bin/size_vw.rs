//! Size program: value-watcher (spinlock), doing what src/vw_use.rs says.
#![no_std]
#![no_main]

extern crate value_watcher;

#[path = "../rt.rs"]
mod rt;
#[path = "../vw_use.rs"]
mod vw_use;

use vw_use::run;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    rt::exit(101)
}
