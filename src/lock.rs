//! The one lock that guards a watcher's value, version and waiter list.
//!
//! Three back ends share one interface (`Lock::new`, `Lock::lock`,
//! `Lock::lock_for`, a guard that unlocks on drop, so a panic anywhere
//! under the lock still releases it):
//!
//! * default: a test-and-test-and-set spinlock (`spin::mutex::SpinMutex`) with
//!   bounded exponential back-off; with `std`, a waiter that has spun for a while
//!   yields its time slice instead, so a preempted lock holder on an
//!   oversubscribed machine gets the CPU back;
//! * `critical-section`: the data is only touched inside a critical section, so an
//!   interrupt handler on a single-core target can set a watcher without deadlock;
//! * loom (`--cfg value_watcher_loom`): loom's mutex, so loom explores every
//!   interleaving of the code around the lock.
//!
//! Re-entering a lock from the context that holds it (user code under the lock
//! that uses the same watcher) is a programming error. The spinlock deadlocks;
//! the critical section detects it: `lock` panics, and `lock_for(true)`, which
//! the destructors of wait futures and streams use, aborts the process,
//! because unwinding out of such a destructor would free a node that is still
//! linked in the watcher's list.
//!
//! Only one algorithm exists above this module; the back ends differ only in
//! how mutual exclusion is obtained.

// A target without atomic compare-and-swap (Cortex-M0/M0+, RISC-V without the
// A extension) cannot run a spinlock, and Cargo.toml does not even build `spin`
// there: say what to do, as the first error, before the unresolved `spin`
// import below that follows from it.
#[cfg(not(any(
    value_watcher_loom,
    feature = "critical-section",
    target_has_atomic = "8"
)))]
compile_error!(
    "value-watcher: this target has no atomic compare-and-swap, so the default \
     spinlock cannot work here; enable the `critical-section` feature \
     (`default-features = false, features = [\"critical-section\"]`) and link a \
     critical-section implementation (e.g. cortex-m's `critical-section-single-core` \
     or riscv's `critical-section-single-hart`)"
);

// === spinlock (default) ===

#[cfg(not(any(value_watcher_loom, feature = "critical-section")))]
mod imp {
    use spin::mutex::{SpinMutex, SpinMutexGuard};

    /// How many rounds of exponentially growing busy-waiting before yielding.
    const SPIN_ROUNDS: u32 = 6;

    pub(crate) struct Lock<T>(SpinMutex<T>);
    pub(crate) struct Guard<'a, T>(SpinMutexGuard<'a, T>);

    impl<T> Lock<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(SpinMutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> Guard<'_, T> {
            match self.0.try_lock() {
                Some(guard) => Guard(guard),
                None => self.lock_contended(),
            }
        }

        /// `lock`, or with `dropping` the lock of a destructor; with a
        /// spinlock a reentrant call deadlocks instead of returning, so the
        /// two are one.
        #[inline]
        pub(crate) fn lock_for(&self, _dropping: bool) -> Guard<'_, T> {
            self.lock()
        }

        #[cold]
        fn lock_contended(&self) -> Guard<'_, T> {
            let mut round = 0;
            loop {
                // Wait with plain loads until the lock looks free, so waiters do
                // not bounce the cache line with failed compare-exchanges.
                while self.0.is_locked() {
                    if round < SPIN_ROUNDS {
                        for _ in 0..(1u32 << round) {
                            core::hint::spin_loop();
                        }
                        round += 1;
                    } else {
                        relax_long();
                    }
                }
                if let Some(guard) = self.0.try_lock() {
                    return Guard(guard);
                }
            }
        }
    }

    #[cfg(feature = "std")]
    fn relax_long() {
        std::thread::yield_now();
    }

    #[cfg(not(feature = "std"))]
    fn relax_long() {
        core::hint::spin_loop();
    }

    impl<T> core::ops::Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl<T> core::ops::DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.0
        }
    }
}

// === critical section ===

#[cfg(all(not(value_watcher_loom), feature = "critical-section"))]
mod imp {
    use core::cell::{Cell, UnsafeCell};
    use core::mem::MaybeUninit;

    pub(crate) struct Lock<T> {
        data: UnsafeCell<T>,
        /// Set while a guard exists. Critical sections nest on the same thread
        /// (and the std implementation is reentrant), so without this a
        /// predicate that touched its own watcher would alias `&mut T`.
        held: Cell<bool>,
        /// While `held`, the state to restore when the guard is dropped
        /// (what `critical_section::acquire` returned); uninitialized until
        /// the first lock. Kept here rather than in the guard, so that a
        /// guard is one pointer: unlocking passes one argument, and no caller
        /// keeps the state in a register (or on its stack) across its
        /// critical section (code size). Not an `Option` instead of `held`:
        /// its `None` need not be zero bytes (it is not for a `bool` state),
        /// and a `static` watcher of a zero value must stay in `.bss`
        /// instead of taking its size in flash (`.data`).
        saved: Cell<MaybeUninit<critical_section::RestoreState>>,
    }

    // SAFETY: `data`, `held` and `saved` are only accessed inside a critical
    // section, which excludes every other core, thread and interrupt handler,
    // and `held` rejects a nested access from the same context. So at most one
    // `&mut T` exists at a time, which is what sharing a `T: Send` needs (the
    // same argument as `Mutex<T>: Sync`).
    unsafe impl<T: Send> Sync for Lock<T> {}

    pub(crate) struct Guard<'a, T> {
        lock: &'a Lock<T>,
    }

    impl<T> Lock<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self {
                data: UnsafeCell::new(value),
                held: Cell::new(false),
                saved: Cell::new(MaybeUninit::uninit()),
            }
        }

        /// Enters the critical section; a reentrant call (this context holds
        /// the lock already) panics with a message that says so.
        #[inline]
        pub(crate) fn lock(&self) -> Guard<'_, T> {
            self.lock_for(false)
        }

        /// `lock`, or with `dropping` the lock of a destructor that must
        /// unregister a node before its memory goes away: then a reentrant
        /// call aborts the process instead of unwinding out of the
        /// destructor (which would free a node that is still linked; SPEC
        /// §3.18). One function for both, so that a wait's poll and its drop
        /// can share one owner step (code size); `lock` is this with `false`,
        /// so that a small target links one copy of the lock.
        #[cfg_attr(any(target_os = "none", value_watcher_small), inline(never))]
        pub(crate) fn lock_for(&self, dropping: bool) -> Guard<'_, T> {
            match self.try_lock() {
                Some(guard) => guard,
                None if dropping => reentered_in_drop(),
                None => reentered(),
            }
        }

        /// Enters the critical section; `None` (having left it again) if
        /// this context already holds the lock.
        #[inline]
        fn try_lock(&self) -> Option<Guard<'_, T>> {
            // SAFETY: the matching `release` runs in `Guard::drop` (or just
            // below), and guards are dropped in reverse order of creation
            // because they are never leaked or moved out of the stack frame
            // that made them (the guard type is crate-private). So the state
            // `Guard::drop` finds in `saved` is the one acquired here.
            let restore = unsafe { critical_section::acquire() };
            if self.held.get() {
                // SAFETY: releases the section acquired above, innermost first.
                unsafe { critical_section::release(restore) };
                return None;
            }
            self.held.set(true);
            self.saved.set(MaybeUninit::new(restore));
            Some(Guard { lock: self })
        }
    }

    #[cold]
    #[inline(never)]
    fn reentered_in_drop() -> ! {
        crate::unwind::abort!(
            "value-watcher: a registered wait was dropped inside its own watcher's lock; aborting"
        )
    }

    #[cold]
    #[inline(never)]
    fn reentered() -> ! {
        panic!("value-watcher: a watcher was used from inside its own lock")
    }

    impl<T> Drop for Guard<'_, T> {
        #[cfg_attr(any(target_os = "none", value_watcher_small), inline(never))]
        fn drop(&mut self) {
            self.lock.held.set(false);
            // SAFETY: `saved` was written by the `try_lock` that made this
            // guard (it sets `held` and `saved` together), and no other
            // guard of this lock has existed since, so it still holds the
            // state that `acquire` returned for this guard; this is the
            // innermost live section (see there).
            unsafe { critical_section::release(self.lock.saved.get().assume_init()) };
        }
    }

    impl<T> core::ops::Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the guard proves we are inside the critical section with
            // `held` set, so no other reference to the data exists.
            unsafe { &*self.lock.data.get() }
        }
    }

    impl<T> core::ops::DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
            unsafe { &mut *self.lock.data.get() }
        }
    }
}

// === loom ===

#[cfg(value_watcher_loom)]
mod imp {
    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);
    pub(crate) struct Guard<'a, T>(loom::sync::MutexGuard<'a, T>);

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> Guard<'_, T> {
            Guard(
                self.0
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            )
        }

        pub(crate) fn lock_for(&self, _dropping: bool) -> Guard<'_, T> {
            self.lock()
        }
    }

    impl<T> core::ops::Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl<T> core::ops::DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.0
        }
    }
}

pub(crate) use imp::{Guard, Lock};

impl<T> Guard<'_, T> {
    /// Releases the lock: `drop(guard)`, but always inlined. A firmware at
    /// `opt-level = "z"` otherwise keeps an out-of-line `mem::drop` for the
    /// guard that only calls its `Drop`.
    #[inline(always)]
    pub(crate) fn unlock(self) {}
}
