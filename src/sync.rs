//! The synchronization facade: the only place that chooses between `core`
//! types and loom's model-checked copies.
//!
//! Under `--cfg value_watcher_loom` every cell the waiter list touches is a
//! loom cell, so loom reports any access the lock does not serialize. Outside
//! loom the wrappers compile to the plain `core` types and `model` just runs
//! its closure once, so loom tests double as ordinary tests.

#[cfg(value_watcher_loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(value_watcher_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicUsize};

/// Only `load` and `store` are used, which every target has, also those
/// without compare-and-swap (Cortex-M0, RISC-V `imc`).
#[cfg(not(value_watcher_loom))]
pub(crate) use core::sync::atomic::{AtomicU8, AtomicUsize};

/// `core::cell::UnsafeCell` with loom's closure-based access shape.
#[cfg(not(value_watcher_loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(value_watcher_loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Gives `f` a pointer for shared (read-only) access.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Gives `f` a pointer for exclusive access.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Declares a function that is `const` except under loom, whose types have no
/// `const` constructors.
macro_rules! loom_const_fn {
    ($(#[$meta:meta])* $vis:vis const fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[cfg(not(value_watcher_loom))]
        $vis const fn $name($($arg: $ty),*) -> $ret $body

        $(#[$meta])*
        #[cfg(value_watcher_loom)]
        $vis fn $name($($arg: $ty),*) -> $ret $body
    };
}
pub(crate) use loom_const_fn;
