//! Panic isolation for user code run by a setter.
//!
//! With `std`, a setter catches a panic from a predicate, a `Clone` or a
//! callback so that one faulty user function cannot make other waiters miss a
//! transition; the payload is handed to whoever should see it. Without `std`
//! there is no `catch_unwind`: [`catch`] just runs the function, the payload
//! type is uninhabited, and a panic unwinds through the setter (the lock guard
//! and the wake batch still clean up on the way out).

/// What a caught panic carries.
#[cfg(feature = "std")]
pub(crate) type Payload = alloc::boxed::Box<dyn core::any::Any + Send + 'static>;

/// Without `std` nothing is ever caught, so there is no payload.
#[cfg(not(feature = "std"))]
pub(crate) type Payload = core::convert::Infallible;

/// Runs `f`, catching a panic where the platform allows it.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Payload> {
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(f))
}

/// Runs `f`; without `std` a panic is not caught.
#[cfg(not(feature = "std"))]
#[inline(always)]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Payload> {
    Ok(f())
}

/// Continues a panic caught by [`catch`] on the current thread.
#[cfg(feature = "std")]
pub(crate) fn resume(payload: Payload) -> ! {
    std::panic::resume_unwind(payload)
}

/// Uninhabited without `std`: nothing was caught, so nothing resumes.
#[cfg(not(feature = "std"))]
pub(crate) fn resume(payload: Payload) -> ! {
    match payload {}
}

/// Ends the process with a message: for a destructor that cannot finish its
/// job safely and must not unwind either (SPEC §3.18). With `std` the message
/// goes to stderr and the process aborts. Without `std`, with `panic =
/// "abort"` the panic itself does; with unwinding, [`PanicAgain`]'s second
/// panic, raised while the first one unwinds, is a panic in a destructor
/// during clean-up, which aborts.
///
/// A macro so that the message stays a literal at the `panic!`: a panic
/// handler that prints it gets it as before, and one that ignores it (a
/// size-conscious firmware's) lets the linker drop the string.
#[cfg_attr(not(feature = "critical-section"), allow(unused_macros))]
macro_rules! abort {
    ($message:literal) => {{
        #[cfg(feature = "std")]
        {
            std::eprintln!($message);
            std::process::abort()
        }
        #[cfg(not(feature = "std"))]
        {
            let _guard = $crate::unwind::PanicAgain;
            panic!($message)
        }
    }};
}
#[cfg_attr(not(feature = "critical-section"), allow(unused_imports))]
pub(crate) use abort;

/// Panics when dropped: [`abort`]'s way to end the process without `std`.
#[cfg(not(feature = "std"))]
#[cfg_attr(not(feature = "critical-section"), allow(dead_code))]
pub(crate) struct PanicAgain;

#[cfg(not(feature = "std"))]
impl Drop for PanicAgain {
    fn drop(&mut self) {
        panic!("value-watcher: aborting");
    }
}
