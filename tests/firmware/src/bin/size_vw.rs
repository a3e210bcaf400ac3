//! Size program: value-watcher doing src/size_job.rs (spinlock by default,
//! the critical-section lock with `--features cs`).
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;
#[path = "../size_job.rs"]
mod size_job;

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    rt::exit(size_job::run())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    rt::exit(false)
}
