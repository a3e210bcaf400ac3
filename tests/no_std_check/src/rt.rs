//! The runtime scaffolding every binary shares, and nothing else: an entry
//! point, process exit, a heap, and (with the `cs` or `embassy` feature) a
//! critical-section implementation. x86_64 Linux only; no libc start-up code
//! runs (the binaries link with `-nostartfiles`, see build.rs).
//!
//! Each binary defines its own `#[panic_handler]` and a `fn run() -> i32`,
//! whose result becomes the exit status.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

// === process ===

/// Ends the process with `status`, by the raw `exit` system call.
pub fn exit(status: i32) -> ! {
    // SAFETY: system call 60 (`exit`) takes the status in `rdi` and does not
    // return; nothing is left to clean up in a program with no libc runtime.
    unsafe {
        core::arch::asm!("syscall", in("rax") 60, in("rdi") status as isize, options(noreturn, nostack));
    }
}

/// The process entry point. The kernel enters it with `rsp` 16-byte aligned,
/// whereas a function expects `rsp + 8` aligned (as a `call` leaves it), so
/// this stays a naked shim that `call`s the Rust code with the alignment the
/// ABI promises.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",  // mark the outermost frame
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym entry,
    )
}

extern "C" fn entry() -> ! {
    exit(crate::run())
}

/// The precompiled `alloc` and `core` are built to unwind, so their objects
/// refer to this symbol even though these programs abort on panic; it is
/// never called.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

// === heap ===

const ARENA_SIZE: usize = 256 * 1024;

/// A bump allocator over a static arena: never frees, returns null when the
/// arena is used up. Also counts allocations, so the link proof can check
/// that waiting and setting do not allocate.
struct Bump {
    arena: UnsafeCell<[u8; ARENA_SIZE]>,
    used: AtomicUsize,
    count: AtomicUsize,
}

// SAFETY: the arena is only reached through `alloc`, which hands out each
// byte at most once (the `used` bump is atomic).
unsafe impl Sync for Bump {}

// SAFETY: every block returned lies inside the arena, is aligned to
// `layout.align()`, is `layout.size()` bytes long and overlaps no other block.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get().cast::<u8>();
        let mut start = 0;
        let reserved = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                start =
                    (base.addr() + used).checked_next_multiple_of(layout.align())? - base.addr();
                let end = start.checked_add(layout.size())?;
                (end <= ARENA_SIZE).then_some(end)
            });
        if reserved.is_err() {
            return core::ptr::null_mut();
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `start + layout.size() <= ARENA_SIZE`, checked above.
        unsafe { base.add(start) }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static HEAP: Bump = Bump {
    arena: UnsafeCell::new([0; ARENA_SIZE]),
    used: AtomicUsize::new(0),
    count: AtomicUsize::new(0),
};

/// How many allocations (including reallocations) the program made so far.
#[allow(dead_code)] // the size programs do not look
pub fn allocations() -> usize {
    HEAP.count.load(Ordering::Relaxed)
}

// === critical section ===

/// These programs run one thread and take no signals, so a critical section
/// only has to keep the compiler from moving memory accesses across its ends.
/// On a real single-core target this is where interrupts are disabled and
/// restored (cortex-m's `critical-section-single-core` feature, for example).
#[cfg(any(feature = "cs", feature = "embassy"))]
mod single_threaded_cs {
    use core::sync::atomic::{Ordering, compiler_fence};

    struct SingleThreaded;
    critical_section::set_impl!(SingleThreaded);

    // SAFETY: with one thread and no signal handlers nothing can run between
    // `acquire` and `release` except the code inside the section; the fences
    // keep the compiler from moving accesses out of it. Nesting is trivially
    // supported (there is no state to restore).
    unsafe impl critical_section::Impl for SingleThreaded {
        unsafe fn acquire() -> critical_section::RawRestoreState {
            compiler_fence(Ordering::SeqCst);
        }

        unsafe fn release(_: critical_section::RawRestoreState) {
            compiler_fence(Ordering::SeqCst);
        }
    }
}
