//! What every firmware binary shares: semihosting output and exit status, and
//! a small heap. Cortex-M (cortex-m-rt) and RISC-V (riscv-rt) alike.
//!
//! Each binary brings its own entry point (`#[entry]`), panic handler and,
//! where it needs one, the tick interrupt of src/ticks.rs.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};

use critical_section::Mutex;

#[cfg(target_arch = "arm")]
pub use cortex_m_semihosting::debug::{EXIT_FAILURE, EXIT_SUCCESS, exit as semihosting_exit};
#[cfg(target_arch = "arm")]
#[allow(unused_imports)] // the size programs print nothing
pub use cortex_m_semihosting::hprintln as println;
#[cfg(target_arch = "riscv32")]
pub use riscv_semihosting::debug::{EXIT_FAILURE, EXIT_SUCCESS, exit as semihosting_exit};
#[cfg(target_arch = "riscv32")]
#[allow(unused_imports)]
pub use riscv_semihosting::hprintln as println;

/// Ends the QEMU run: exit status 0 if `ok`, else 1 (semihosting
/// `SYS_EXIT` with "application exit" or "run-time error").
pub fn exit(ok: bool) -> ! {
    semihosting_exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
    // Without a debugger or QEMU's semihosting nothing listens: stop here.
    loop {
        core::hint::spin_loop();
    }
}

// === heap ===

const ARENA_SIZE: usize = 4 * 1024;

/// A bump allocator over a static arena: never reuses memory, returns null
/// when the arena is used up. Counts allocations and frees, so the firmware
/// can check that waiting and setting (in an interrupt handler, too) do not
/// allocate. Guarded by a critical section (no compare-and-swap needed).
struct Bump {
    arena: UnsafeCell<[u8; ARENA_SIZE]>,
    /// (bytes used, allocations, frees)
    state: Mutex<Cell<(usize, u32, u32)>>,
}

// SAFETY: the arena is only reached through `alloc`, which hands out each
// byte at most once (its bookkeeping is updated inside a critical section).
unsafe impl Sync for Bump {}

// SAFETY: every block returned lies inside the arena, is aligned to
// `layout.align()`, is `layout.size()` bytes long and overlaps no other block
// (`used` only grows, under the critical section).
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get().cast::<u8>();
        critical_section::with(|cs| {
            let cell = self.state.borrow(cs);
            let (used, allocs, frees) = cell.get();
            let Some(start) = (base as usize + used)
                .checked_next_multiple_of(layout.align())
                .map(|addr| addr - base as usize)
            else {
                return core::ptr::null_mut();
            };
            match start.checked_add(layout.size()) {
                Some(end) if end <= ARENA_SIZE => {
                    cell.set((end, allocs + 1, frees));
                    // SAFETY: `start + layout.size() <= ARENA_SIZE` (checked just above).
                    unsafe { base.add(start) }
                }
                _ => core::ptr::null_mut(),
            }
        })
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        critical_section::with(|cs| {
            let cell = self.state.borrow(cs);
            let (used, allocs, frees) = cell.get();
            cell.set((used, allocs, frees + 1));
        });
    }
}

#[global_allocator]
static HEAP: Bump = Bump {
    arena: UnsafeCell::new([0; ARENA_SIZE]),
    state: Mutex::new(Cell::new((0, 0, 0))),
};

/// How many allocations (reallocations included) the program made so far.
#[allow(dead_code)] // the size programs do not look
pub fn allocations() -> u32 {
    critical_section::with(|cs| HEAP.state.borrow(cs).get().1)
}

/// How many blocks were freed so far.
#[allow(dead_code)]
pub fn frees() -> u32 {
    critical_section::with(|cs| HEAP.state.borrow(cs).get().2)
}
