//! A freestanding x86_64 Linux binary that exercises value-watcher with only
//! `core` + `alloc`. Exit status 0 means every check passed.
#![no_std]
#![no_main]

extern crate alloc;
#[cfg(any(feature = "cs", feature = "size-embassy"))]
extern crate critical_section;
// Every normal dependency of the crate without default features, named so
// that linking proves none of them needs `std`.
extern crate futures_core;
extern crate spin;
extern crate value_watcher;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

// What the binary does: the full link proof by default, or one of the
// minimal programs whose sizes `.ci/no_std_check.sh` compares.
#[cfg(not(any(
    feature = "size-vw",
    feature = "size-embassy",
    feature = "size-baseline"
)))]
#[path = "full.rs"]
mod mode;
#[cfg(feature = "size-vw")]
#[path = "size_vw.rs"]
mod mode;
#[cfg(feature = "size-embassy")]
#[path = "size_embassy.rs"]
mod mode;
#[cfg(feature = "size-baseline")]
#[path = "size_baseline.rs"]
mod mode;

// === runtime scaffolding ===

/// A bump allocator over a static arena; never frees.
struct Bump {
    arena: UnsafeCell<[u8; 1 << 16]>,
    next: AtomicUsize,
}

// SAFETY: `next` hands out disjoint ranges of the arena, atomically.
unsafe impl Sync for Bump {}

// SAFETY: returned blocks are in bounds, aligned and never handed out twice.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get() as usize;
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + next).next_multiple_of(layout.align()) - base;
            let end = start + layout.size();
            if end > 1 << 16 {
                return core::ptr::null_mut();
            }
            match self
                .next
                .compare_exchange(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(seen) => next = seen,
            }
        }
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump {
    arena: UnsafeCell::new([0; 1 << 16]),
    next: AtomicUsize::new(0),
};

fn exit(code: i32) -> ! {
    // SAFETY: the `exit_group` syscall (231) takes one integer and never returns.
    unsafe {
        core::arch::asm!("syscall", in("rax") 231, in("rdi") code, options(noreturn));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(101)
}

#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

#[cfg(any(feature = "cs", feature = "size-embassy"))]
mod cs {
    //! This binary is single-threaded and takes no interrupts, so an empty
    //! critical section is a correct implementation here.
    struct SingleThreaded;
    critical_section::set_impl!(SingleThreaded);
    // SAFETY: nothing can preempt this single-threaded, interrupt-free program.
    unsafe impl critical_section::Impl for SingleThreaded {
        unsafe fn acquire() -> critical_section::RawRestoreState {
            false
        }
        unsafe fn release(_: critical_section::RawRestoreState) {}
    }
}

/// The process entry point. The kernel starts it with the stack 16-byte
/// aligned, but Rust functions expect the alignment a `call` leaves behind,
/// so this naked shim calls `main` properly.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    core::arch::naked_asm!("xor rbp, rbp", "and rsp, -16", "call {main}", "ud2", main = sym main)
}

extern "C" fn main() -> ! {
    exit(mode::run())
}
