//! Size program: the scaffolding alone (reset handler and vector table,
//! semihosting exit, panic handler; the allocator is linked only where
//! something allocates). The other size programs are measured above it.
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    rt::exit(core::hint::black_box(true))
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    rt::exit(false)
}
