//! A periodic timer interrupt that calls the binary's `crate::on_tick()`:
//! SysTick on Cortex-M, the machine timer (CLINT `mtimecmp`) on QEMU's RISC-V
//! `virt`. Also how the main loop sleeps until an interrupt has run.

#[cfg(target_arch = "riscv32")]
use core::sync::atomic::AtomicU32;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set while the tick handler runs (plain loads and stores: no CAS needed).
static IN_TICK: AtomicBool = AtomicBool::new(false);

fn tick() {
    IN_TICK.store(true, Ordering::Relaxed);
    crate::on_tick();
    IN_TICK.store(false, Ordering::Relaxed);
}

/// True in the tick interrupt handler (on Cortex-M, read from the hardware:
/// the active exception number in IPSR).
pub fn in_interrupt() -> bool {
    #[cfg(target_arch = "arm")]
    {
        let hw = cortex_m::peripheral::SCB::vect_active()
            != cortex_m::peripheral::scb::VectActive::ThreadMode;
        hw && IN_TICK.load(Ordering::Relaxed)
    }
    #[cfg(target_arch = "riscv32")]
    {
        IN_TICK.load(Ordering::Relaxed)
    }
}

/// Sleeps (`wfi`) until `done()` holds. `done` is evaluated inside a critical
/// section (interrupts masked) and the core sleeps from there: `wfi` still
/// wakes on a pending interrupt, which then runs as soon as the section ends,
/// so a wake-up between the check and the sleep cannot be lost.
pub fn idle_until(mut done: impl FnMut() -> bool) {
    while !critical_section::with(|_| {
        if done() {
            return true;
        }
        wfi();
        false
    }) {}
}

fn wfi() {
    #[cfg(target_arch = "arm")]
    cortex_m::asm::wfi();
    #[cfg(target_arch = "riscv32")]
    riscv::asm::wfi();
}

// === Cortex-M: SysTick ===

/// Starts a tick every `period` core clock cycles (at most 2^24).
#[cfg(target_arch = "arm")]
pub fn start(period: u32) {
    use cortex_m::peripheral::syst::SystClkSource;
    // SAFETY: this module is the only user of SYST, and `start` runs once,
    // in thread mode, before the first tick; no other `Peripherals` exist.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(period - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[cfg(target_arch = "arm")]
#[cortex_m_rt::exception]
fn SysTick() {
    tick();
}

// === RISC-V: machine timer of QEMU's `virt` (CLINT, 10 MHz) ===

#[cfg(target_arch = "riscv32")]
const MTIME: usize = 0x0200_bff8;
#[cfg(target_arch = "riscv32")]
const MTIMECMP0: usize = 0x0200_4000;

#[cfg(target_arch = "riscv32")]
static PERIOD: AtomicU32 = AtomicU32::new(0);

/// Starts a tick every `period` timer ticks (10 MHz on `virt`).
#[cfg(target_arch = "riscv32")]
pub fn start(period: u32) {
    PERIOD.store(period, Ordering::Relaxed);
    schedule_next();
    // SAFETY: enabling the machine timer interrupt and interrupts globally
    // outside any critical section (`start` runs in the main loop); its
    // handler (below) is installed by riscv-rt.
    unsafe {
        riscv::register::mie::set_mtimer();
        riscv::interrupt::enable();
    }
}

#[cfg(target_arch = "riscv32")]
fn schedule_next() {
    let mtime = MTIME as *const u32;
    let cmp = MTIMECMP0 as *mut u32;
    // SAFETY: MTIME and MTIMECMP0 are the CLINT's 64-bit registers of hart 0
    // on QEMU's `virt` machine, mapped at these addresses, read and written as
    // aligned 32-bit halves (volatile: device memory).
    unsafe {
        // A consistent 64-bit read of a counter that may carry between halves.
        let now = loop {
            let hi = mtime.add(1).read_volatile();
            let lo = mtime.read_volatile();
            if mtime.add(1).read_volatile() == hi {
                break (u64::from(hi) << 32) | u64::from(lo);
            }
        };
        let next = now + u64::from(PERIOD.load(Ordering::Relaxed));
        // Never let the compare value be briefly below `next` (a spurious tick).
        cmp.add(1).write_volatile(u32::MAX);
        cmp.write_volatile(next as u32);
        cmp.add(1).write_volatile((next >> 32) as u32);
    }
}

#[cfg(target_arch = "riscv32")]
#[riscv_rt::core_interrupt(riscv::interrupt::Interrupt::MachineTimer)]
fn machine_timer() {
    schedule_next();
    tick();
}
