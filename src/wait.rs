//! The wait futures and the `changes()` stream.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use crate::unwind;
use crate::unwind::Payload;
use crate::waiters::{Leftover, Matcher, Offer, RawWaiter, Waiter};
use crate::watcher::ValueWatcher;

// === matchers ===

/// `wait_for`: the value equals the target.
pub(crate) struct Equals<T> {
    target: T,
    got: Option<T>,
}

impl<T> Equals<T> {
    pub(crate) fn new(target: T) -> Self {
        Self { target, got: None }
    }
}

impl<T: Clone + PartialEq + 'static> Matcher<T> for Equals<T> {
    type Output = T;
    fn offer(&mut self, _: Option<&T>, new: &T) -> bool {
        let hit = *new == self.target;
        if hit {
            self.got = Some(new.clone());
        }
        hit
    }
    fn take(&mut self) -> Option<T> {
        self.got.take()
    }
}

/// `wait_for_not`: the value differs from the target.
pub(crate) struct NotEquals<T> {
    target: T,
    got: Option<T>,
}

impl<T> NotEquals<T> {
    pub(crate) fn new(target: T) -> Self {
        Self { target, got: None }
    }
}

impl<T: Clone + PartialEq + 'static> Matcher<T> for NotEquals<T> {
    type Output = T;
    fn offer(&mut self, _: Option<&T>, new: &T) -> bool {
        let hit = *new != self.target;
        if hit {
            self.got = Some(new.clone());
        }
        hit
    }
    fn take(&mut self) -> Option<T> {
        self.got.take()
    }
}

/// `wait_until`: a user predicate.
pub(crate) struct Until<T, F> {
    f: F,
    got: Option<T>,
}

impl<T, F> Until<T, F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f, got: None }
    }
}

impl<T: Clone + 'static, F: FnMut(&T) -> bool + 'static> Matcher<T> for Until<T, F> {
    type Output = T;
    fn offer(&mut self, _: Option<&T>, new: &T) -> bool {
        let hit = (self.f)(new);
        if hit {
            self.got = Some(new.clone());
        }
        hit
    }
    fn take(&mut self) -> Option<T> {
        self.got.take()
    }
}

/// `wait_for_change`: every transition.
pub(crate) struct AnyChange<T> {
    got: Option<T>,
}

impl<T> AnyChange<T> {
    pub(crate) fn new() -> Self {
        Self { got: None }
    }
}

impl<T: Clone + 'static> Matcher<T> for AnyChange<T> {
    type Output = T;
    fn offer(&mut self, old: Option<&T>, new: &T) -> bool {
        // Never the current value alone (the future does not check it).
        let hit = old.is_some();
        if hit {
            self.got = Some(new.clone());
        }
        hit
    }
    fn take(&mut self) -> Option<T> {
        self.got.take()
    }
}

/// `wait_for_some`: the value is `Some`; yields a clone of what it holds.
pub(crate) struct IsSome<U> {
    got: Option<U>,
}

impl<U> IsSome<U> {
    pub(crate) fn new() -> Self {
        Self { got: None }
    }
}

impl<U: Clone + 'static> Matcher<Option<U>> for IsSome<U> {
    type Output = U;
    fn offer(&mut self, _: Option<&Option<U>>, new: &Option<U>) -> bool {
        match new {
            Some(u) => {
                self.got = Some(u.clone());
                true
            }
            None => false,
        }
    }
    fn take(&mut self) -> Option<U> {
        self.got.take()
    }
}

/// `wait_map`: what the user function extracts; the value is never cloned.
pub(crate) struct Map<U, F> {
    f: F,
    got: Option<U>,
}

impl<U, F> Map<U, F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f, got: None }
    }
}

impl<T, U: 'static, F: FnMut(&T) -> Option<U> + 'static> Matcher<T> for Map<U, F> {
    type Output = U;
    fn offer(&mut self, _: Option<&T>, new: &T) -> bool {
        self.got = (self.f)(new);
        self.got.is_some()
    }
    fn take(&mut self) -> Option<U> {
        self.got.take()
    }
}

/// `wait_transition`: an edge `old -> new` the user function accepts.
pub(crate) struct Edge<T, F> {
    f: F,
    got: Option<T>,
}

impl<T, F> Edge<T, F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f, got: None }
    }
}

impl<T: Clone + 'static, F: FnMut(&T, &T) -> bool + 'static> Matcher<T> for Edge<T, F> {
    type Output = T;
    fn offer(&mut self, old: Option<&T>, new: &T) -> bool {
        // The current value alone is no edge.
        let hit = old.is_some_and(|old| (self.f)(old, new));
        if hit {
            self.got = Some(new.clone());
        }
        hit
    }
    fn take(&mut self) -> Option<T> {
        self.got.take()
    }
}

/// `changes()`: wake on every transition, capture nothing.
pub(crate) struct ChangeSignal;

impl<T> Matcher<T> for ChangeSignal {
    type Output = ();
    fn offer(&mut self, _: Option<&T>, _: &T) -> bool {
        true
    }
    fn take(&mut self) -> Option<()> {
        Some(())
    }
}

// === the shared wait future ===

/// The future behind every public wait type.
///
/// Whether the first poll checks the current value, and whether the wait
/// completed, are kept in the node (see [`Waiter::immediate`]).
struct Wait<'a, T, M> {
    watcher: &'a ValueWatcher<T>,
    waiter: Waiter<T, M>,
}

impl<'a, T, M: Matcher<T>> Wait<'a, T, M> {
    fn new(watcher: &'a ValueWatcher<T>, matcher: M, immediate: bool) -> Self {
        Self {
            watcher,
            waiter: Waiter::new(matcher, immediate),
        }
    }
}

impl<T, M> Wait<'_, T, M> {
    fn waiter(self: Pin<&Self>) -> Pin<&Waiter<T, M>> {
        // SAFETY: `waiter` is structurally pinned: it is never moved out of a
        // pinned `Wait`, and `Wait` is `!Unpin` because the waiter is.
        unsafe { self.map_unchecked(|wait| &wait.waiter) }
    }
}

impl<T, M: Matcher<T>> Future for Wait<'_, T, M> {
    type Output = M::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        // From here on only shared access: the node inside is reachable by
        // setters through the watcher's list.
        let this = self.into_ref();
        let waiter = this.waiter();
        // The matcher call for the first check: on hosted targets the
        // constant one, so that the matcher inlines into this poll; on
        // bare-metal targets `None`, the node's copy, so that every wait
        // type of one `T` shares one `owner_step` and one `poll`.
        let offer = if crate::SMALL {
            None
        } else {
            Some(Waiter::<T, M>::OFFER)
        };
        // SAFETY: `offer`, if any, is this waiter's.
        let over = unsafe { owner_step(this.watcher, waiter.raw(), offer, Some(cx.waker())) };
        if matches!(over, Ok(false)) {
            return Poll::Pending;
        }
        // The node is `Idle` now and only ours, so its output is taken
        // without the lock.
        if let Err(payload) = over {
            unwind::resume(payload);
        }
        match waiter.take_output_idle() {
            Some(output) => Poll::Ready(output),
            None => unreachable!("a finished waiter holds its output"),
        }
    }
}

/// The owner's step of every wait future, whatever its matcher: one copy
/// per `T`, shared by every wait type (code size on small targets), for
/// both the poll (`waker` is the task's) and the drop (`waker` is `None`).
///
/// Poll: `Ok(true)` when the wait is over: a setter chose the node or the
/// current value matched; either way the node is `Idle` and the output is
/// in the matcher. `Ok(false)` when the node is registered with `waker`.
/// `Err` with the payload of the matcher's panic during a setter's walk (the
/// node is `Idle`), for the caller to resume.
///
/// Drop: the node is unregistered (`Idle`, in no list), whatever its state
/// was; a payload comes back for the caller to drop. The lock is taken with
/// [`lock_for(true)`](crate::lock::Lock::lock_for): a reentrant drop (from
/// user code under this watcher's lock) aborts with the critical-section
/// lock and deadlocks with the spinlock, because the destructor must unlink
/// the node before its memory goes away, so it must neither unwind nor
/// return early.
///
/// What the node gives back (a replaced or unused waker) is dropped here,
/// after the lock is released.
///
/// Inlined into each caller on hosted targets, where speed matters more
/// than bytes (and the constant `waker` of each caller folds the other form
/// away); one shared copy on bare-metal targets.
///
/// The first check calls `offer`, or the node's own copy of its matcher
/// call if `None` (bare metal: then every wait type of one `T` passes the
/// same arguments and shares one `poll`).
///
/// # Safety
///
/// `offer`, if given, is the matcher call of the waiter `waiter` came from.
#[cfg_attr(not(any(target_os = "none", value_watcher_small)), inline(always))]
unsafe fn owner_step<T>(
    watcher: &ValueWatcher<T>,
    waiter: RawWaiter<'_, T>,
    offer: Option<Offer<T>>,
    waker: Option<&Waker>,
) -> Result<bool, Payload> {
    let dropping = waker.is_none();
    // The drop form of a node that never registered needs no lock. Checked
    // here, not in each destructor: on bare metal, where the step is one
    // shared copy, each destructor is then just a call.
    if dropping && !waiter.is_armed() {
        return Ok(false);
    }
    if !dropping {
        assert!(
            !waiter.is_done(),
            "value-watcher: wait future polled after it completed"
        );
    }
    // Declared before the guard, so that on every path, panics included
    // (a panicking matcher or waker `clone` below), what it holds is
    // dropped after the lock is released.
    let mut leftover;
    let registered = 'locked: {
        // Woken by a setter that chose this waiter: its outcome is taken
        // without the lock (the setter published it with `Release`).
        if let Some(ready) = waiter.take_ready() {
            leftover = ready;
            break 'locked false;
        }
        let mut guard = watcher.state.lock_for(dropping);
        let state = &mut *guard;
        // A node chosen between the check above and the lock; on drop, any
        // registered node.
        leftover = waiter.take_outcome_locked(&mut state.waiters, dropping);
        let Some(waker) = waker else {
            break 'locked false;
        };
        if leftover.ready
            || (waiter.immediate()
                && !waiter.is_armed()
                // SAFETY: the caller guarantees that `offer` is this
                // waiter's; the stored one is by construction.
                && unsafe {
                    waiter.check_current_locked(
                        offer.unwrap_or_else(|| waiter.stored_offer()),
                        &mut state.waiters,
                        &state.value,
                    )
                })
        {
            break 'locked false;
        }
        // The check above and this registration share one critical
        // section: no transition can fall between.
        leftover.set_replaced(waiter.register_locked(&mut state.waiters, waker));
        true
    };
    let Leftover { panic, waker, .. } = leftover;
    // Done before the waker's `Drop` (user code) runs: if it panics, the
    // wait is spent, and a further poll panics instead of starting over
    // and missing the transition it captured.
    if !registered && !dropping {
        waiter.set_done();
    }
    drop(waker);
    match panic {
        Some(payload) => Err(payload),
        None => Ok(!registered),
    }
}

impl<T, M> Drop for Wait<'_, T, M> {
    fn drop(&mut self) {
        // SAFETY: the node is armed only after a poll, which pinned `self`;
        // pinned values are dropped in place, so this is the same address.
        // An unarmed node was perhaps never pinned, but `self` is being
        // dropped, so it does not move before this returns, and the step
        // returns at once for it (without the lock or touching any list).
        let this = unsafe { Pin::new_unchecked(&*self) };
        // The step's drop form; a panic payload it hands back is dropped
        // here, without the lock.
        // SAFETY: no `offer` is passed (and the drop form calls none).
        let _ = unsafe { owner_step(this.watcher, this.waiter().raw(), None, None) };
    }
}

// === the public future types ===

/// Forwards `Future`, adds the blocking waits and `Debug` to a public wait type.
macro_rules! wait_future {
    (
        $name:ident [$($gen:tt)*] [$($arg:tt)*] where [$($bound:tt)*] => $out:ty,
        setup: $setup:literal,
        wait: $wait_ex:literal,
        never: $never:literal,
    ) => {
        impl<$($gen)*> Future for $name<$($arg)*>
        where
            $($bound)*
        {
            type Output = $out;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<$out> {
                // SAFETY: `inner` is structurally pinned (never moved out).
                unsafe { self.map_unchecked_mut(|fut| &mut fut.inner) }.poll(cx)
            }
        }

        #[cfg(feature = "std")]
        impl<$($gen)*> $name<$($arg)*>
        where
            $($bound)*
        {
            /// Blocks the current thread until the future completes.
            ///
            /// The same semantics as awaiting it: the current value is checked
            /// first (unless `immediate(false)`), then the first matching
            /// transition is returned even if the value has moved on since.
            /// The thread watches for a wake-up for a few microseconds (100
            /// `spin_loop` hints), then parks; a setter on another thread
            /// unparks it. No allocation (the thread's waker is created once
            /// per thread).
            ///
            /// Do not call this from an async task: it blocks the executor
            /// thread.
            ///
            /// Like any wait, it starts watching when it first runs, here
            /// when `wait` is called. To start watching before an action
            /// whose transitions must not be missed, pin the future and poll
            /// it once (it registers), act, then block on the pinned future
            /// with any `block_on` (`pollster`, `futures-lite`): see
            /// "Blocking threads" in the README.
            ///
            /// # Panics
            ///
            /// Resumes a panic of the predicate or of `T::clone` (see
            /// [`ValueWatcher::wait_until`]).
            ///
            /// # Examples
            ///
            #[doc = concat!("```\nuse value_watcher::ValueWatcher;\n\n", $setup, "\n", $wait_ex, "\n```")]
            pub fn wait(self) -> $out {
                match crate::blocking::block_on(self, None) {
                    Some(output) => output,
                    None => unreachable!("no deadline"),
                }
            }

            /// Blocks the current thread until the future completes or
            /// `timeout` has passed; `None` on timeout.
            ///
            /// A current value that matches is returned even with a zero
            /// timeout. A `timeout` too large to add to `Instant::now()` waits
            /// without a deadline. Dropping the wait on timeout unregisters it.
            ///
            /// # Panics
            ///
            /// As [`wait`](Self::wait).
            ///
            /// # Examples
            ///
            #[doc = concat!("```\nuse std::time::Duration;\nuse value_watcher::ValueWatcher;\n\n", $setup, "\n// Nothing matches within 5 ms:\nassert!(", $never, ".wait_timeout(Duration::from_millis(5)).is_none());\n```")]
            #[cfg(not(value_watcher_loom))]
            pub fn wait_timeout(self, timeout: std::time::Duration) -> Option<$out> {
                let deadline = std::time::Instant::now().checked_add(timeout);
                crate::blocking::block_on(self, deadline)
            }

            /// Blocks the current thread until the future completes or
            /// `deadline` is reached; `None` if it was reached first.
            ///
            /// A current value that matches is returned even if `deadline`
            /// has already passed.
            ///
            /// # Panics
            ///
            /// As [`wait`](Self::wait).
            ///
            /// # Examples
            ///
            #[doc = concat!("```\nuse std::time::{Duration, Instant};\nuse value_watcher::ValueWatcher;\n\n", $setup, "\nlet deadline = Instant::now() + Duration::from_millis(5);\nassert!(", $never, ".wait_deadline(deadline).is_none());\n```")]
            #[cfg(not(value_watcher_loom))]
            pub fn wait_deadline(self, deadline: std::time::Instant) -> Option<$out> {
                crate::blocking::block_on(self, Some(deadline))
            }
        }

        impl<$($gen)*> fmt::Debug for $name<$($arg)*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("immediate", &self.inner.waiter.immediate())
                    .field("registered", &self.inner.waiter.is_armed())
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Adds `immediate` to a public wait type.
macro_rules! immediate {
    ($name:ident [$($gen:tt)*] [$($arg:tt)*]) => {
        impl<$($gen)*> $name<$($arg)*> {
            /// Whether the first poll checks the current value (the default,
            /// `true`) or only transitions count (`false`).
            ///
            /// With `false` the future ignores the current value and waits for
            /// a transition whose new value matches, whatever the old value
            /// was. Takes and returns the future by value, so it is set before
            /// the first poll.
            ///
            /// # Examples
            ///
            /// ```
            /// use futures_lite::future::{block_on, poll_once};
            /// use value_watcher::ValueWatcher;
            ///
            /// let w = ValueWatcher::new(Some(1));
            /// let mut fut = Box::pin(w.wait_until(|v| v.is_some()).immediate(false));
            /// assert!(block_on(poll_once(&mut fut)).is_none()); // Some(1) is ignored
            /// w.set(None);
            /// w.set(Some(2));
            /// assert_eq!(block_on(fut), Some(2));
            /// ```
            pub fn immediate(mut self, check_current: bool) -> Self {
                self.inner.waiter.set_immediate(check_current);
                self
            }
        }
    };
}

/// Future of [`ValueWatcher::wait_for`]: completes with the first value equal
/// to the target.
///
/// Does nothing until polled. Awaiting, [`wait`](Self::wait) and friends
/// behave the same way.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1); a dropped waiter is never
/// chosen by a later transition.
///
/// # Examples
///
/// ```
/// use value_watcher::{ValueWatcher, WaitFor};
///
/// let w = ValueWatcher::new(1);
/// let fut: WaitFor<'_, i32> = w.wait_for(1);
/// assert_eq!(pollster::block_on(fut), 1);
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitFor<'a, T> {
    inner: Wait<'a, T, Equals<T>>,
}

impl<'a, T: Clone + PartialEq + 'static> WaitFor<'a, T> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: Equals<T>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, true),
        }
    }
}

wait_future!(WaitFor ['a, T] ['a, T] where [T: Clone + PartialEq + 'static] => T,
    setup: "let w = ValueWatcher::new(0);",
    wait: "std::thread::scope(|s| {\n    s.spawn(|| w.set(1));\n    assert_eq!(w.wait_for(1).wait(), 1);\n});",
    never: "w.wait_for(1)",
);
immediate!(WaitFor ['a, T] ['a, T]);

/// Future of [`ValueWatcher::wait_for_not`]: completes with the first value
/// not equal to the target.
///
/// Does nothing until polled.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1).
///
/// # Examples
///
/// ```
/// use value_watcher::ValueWatcher;
///
/// let w = ValueWatcher::new("idle");
/// let busy = w.wait_for_not("idle");
/// w.set("busy");
/// assert_eq!(pollster::block_on(busy), "busy");
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitForNot<'a, T> {
    inner: Wait<'a, T, NotEquals<T>>,
}

impl<'a, T: Clone + PartialEq + 'static> WaitForNot<'a, T> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: NotEquals<T>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, true),
        }
    }
}

wait_future!(WaitForNot ['a, T] ['a, T] where [T: Clone + PartialEq + 'static] => T,
    setup: "let w = ValueWatcher::new(0);",
    wait: "std::thread::scope(|s| {\n    s.spawn(|| w.set(1));\n    assert_eq!(w.wait_for_not(0).wait(), 1);\n});",
    never: "w.wait_for_not(0)",
);
immediate!(WaitForNot ['a, T] ['a, T]);

/// Future of [`ValueWatcher::wait_until`]: completes with the first value the
/// predicate accepts.
///
/// Does nothing until polled.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1).
///
/// # Examples
///
/// ```
/// use value_watcher::ValueWatcher;
///
/// let queue_len = ValueWatcher::new(3usize);
/// let drained = queue_len.wait_until(|n| *n == 0);
/// queue_len.set(0);
/// assert_eq!(pollster::block_on(drained), 0);
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitUntil<'a, T, F> {
    inner: Wait<'a, T, Until<T, F>>,
}

impl<'a, T: Clone + 'static, F: FnMut(&T) -> bool + 'static> WaitUntil<'a, T, F> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: Until<T, F>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, true),
        }
    }
}

wait_future!(WaitUntil ['a, T, F] ['a, T, F] where [T: Clone + 'static, F: FnMut(&T) -> bool + 'static] => T,
    setup: "let w = ValueWatcher::new(0);",
    wait: "std::thread::scope(|s| {\n    s.spawn(|| for i in 1..=10 { w.set(i); });\n    // 5 if the wait started before 5 was set, else the value it found.\n    assert!(w.wait_until(|v| *v >= 5).wait() >= 5);\n});",
    never: "w.wait_until(|v| *v > 100)",
);
immediate!(WaitUntil ['a, T, F] ['a, T, F]);

/// Future of [`ValueWatcher::wait_for_change`]: completes with the new value
/// of the first transition after its first poll.
///
/// Does nothing until polled.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1).
///
/// # Examples
///
/// ```
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
/// use value_watcher::ValueWatcher;
///
/// let w = ValueWatcher::new('a');
/// let mut next = pin!(w.wait_for_change());
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(next.as_mut().poll(&mut cx), Poll::Pending); // never looks at 'a'
/// w.set('b');
/// w.set('c');
/// assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready('b'));
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitForChange<'a, T> {
    inner: Wait<'a, T, AnyChange<T>>,
}

impl<'a, T: Clone + 'static> WaitForChange<'a, T> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: AnyChange<T>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, false),
        }
    }
}

wait_future!(WaitForChange ['a, T] ['a, T] where [T: Clone + 'static] => T,
    setup: "let w = ValueWatcher::new(0);",
    wait: "use std::sync::atomic::{AtomicBool, Ordering};\n\nlet done = AtomicBool::new(false);\nstd::thread::scope(|s| {\n    s.spawn(|| while !done.load(Ordering::Relaxed) {\n        w.modify(|v| *v += 1);\n        std::thread::yield_now();\n    });\n    let next = w.wait_for_change().wait();\n    done.store(true, Ordering::Relaxed);\n    assert!(next > 0);\n});",
    never: "w.wait_for_change()",
);

/// Future of [`ValueWatcher::wait_for_some`]: completes with the contents of
/// the first `Some` value.
///
/// Does nothing until polled.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1).
///
/// # Examples
///
/// ```
/// use value_watcher::ValueWatcher;
///
/// use futures_lite::future::{block_on, poll_once};
///
/// let peer = ValueWatcher::new(None);
/// let mut addr = Box::pin(peer.wait_for_some());
/// assert!(block_on(poll_once(&mut addr)).is_none()); // watching from here
/// peer.set(Some("10.0.0.2"));
/// peer.set(None); // gone again before the waiter ran
/// assert_eq!(block_on(addr), "10.0.0.2");
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitForSome<'a, U> {
    inner: Wait<'a, Option<U>, IsSome<U>>,
}

impl<'a, U: Clone + 'static> WaitForSome<'a, U> {
    pub(crate) fn new(watcher: &'a ValueWatcher<Option<U>>, matcher: IsSome<U>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, true),
        }
    }
}

wait_future!(WaitForSome ['a, U] ['a, U] where [U: Clone + 'static] => U,
    setup: "let w = ValueWatcher::<Option<u8>>::new(None);",
    wait: "std::thread::scope(|s| {\n    s.spawn(|| w.set(Some(7)));\n    assert_eq!(w.wait_for_some().wait(), 7);\n});",
    never: "w.wait_for_some()",
);
immediate!(WaitForSome ['a, U] ['a, U]);

/// Future of [`ValueWatcher::wait_map`]: completes with what the function
/// extracts from the first value it accepts.
///
/// Does nothing until polled. The value is never cloned: the function runs
/// under the lock, against the current value at the first poll (unless
/// [`immediate(false)`](Self::immediate)) and then against each transition's
/// new value, and the first `Some(u)` it returns is kept for the future.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1); an extracted `u` it
/// never handed out is dropped with it.
///
/// # Examples
///
/// ```
/// use futures_lite::future::{block_on, poll_once};
/// use value_watcher::ValueWatcher;
///
/// let status = ValueWatcher::new((0u16, "starting"));
/// let mut code = Box::pin(status.wait_map(|(code, _)| (*code >= 400).then_some(*code)));
/// assert!(block_on(poll_once(&mut code)).is_none()); // watching from here
/// status.set((503, "unavailable"));
/// status.set((200, "ok")); // already recovered: the waiter still sees 503
/// assert_eq!(block_on(code), 503);
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitMap<'a, T, U, F> {
    inner: Wait<'a, T, Map<U, F>>,
}

impl<'a, T, U: 'static, F: FnMut(&T) -> Option<U> + 'static> WaitMap<'a, T, U, F> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: Map<U, F>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, true),
        }
    }
}

wait_future!(WaitMap ['a, T, U, F] ['a, T, U, F] where [U: 'static, F: FnMut(&T) -> Option<U> + 'static] => U,
    setup: "let w = ValueWatcher::new(0);",
    wait: "std::thread::scope(|s| {\n    s.spawn(|| w.set(21));\n    assert_eq!(w.wait_map(|v| (*v > 0).then_some(v * 2)).wait(), 42);\n});",
    never: "w.wait_map(|v| (*v > 100).then_some(()))",
);
immediate!(WaitMap ['a, T, U, F] ['a, T, U, F]);

/// Future of [`ValueWatcher::wait_transition`]: completes with the new value
/// of the first transition whose edge `(old, new)` the function accepts.
///
/// Does nothing until polled. It never looks at the current value alone: an
/// edge needs a transition, so there is no `immediate`.
///
/// # Cancel safety
///
/// Dropping it at any point unregisters it in O(1).
///
/// # Examples
///
/// ```
/// use futures_lite::future::{block_on, poll_once};
/// use value_watcher::ValueWatcher;
///
/// let level = ValueWatcher::new(10u32);
/// let mut dropped = Box::pin(level.wait_transition(|old, new| new < old));
/// assert!(block_on(poll_once(&mut dropped)).is_none());
/// level.set(12);
/// level.set(7); // the edge: 12 -> 7
/// level.set(9);
/// assert_eq!(block_on(dropped), 7);
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitTransition<'a, T, F> {
    inner: Wait<'a, T, Edge<T, F>>,
}

impl<'a, T: Clone + 'static, F: FnMut(&T, &T) -> bool + 'static> WaitTransition<'a, T, F> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: Edge<T, F>) -> Self {
        Self {
            inner: Wait::new(watcher, matcher, false),
        }
    }
}

wait_future!(WaitTransition ['a, T, F] ['a, T, F] where [T: Clone + 'static, F: FnMut(&T, &T) -> bool + 'static] => T,
    setup: "let w = ValueWatcher::new(5);",
    wait: "use std::sync::atomic::{AtomicBool, Ordering};\n\nlet done = AtomicBool::new(false);\nstd::thread::scope(|s| {\n    s.spawn(|| while !done.load(Ordering::Relaxed) {\n        w.modify(|v| *v = if *v == 5 { 6 } else { 5 });\n        std::thread::yield_now();\n    });\n    // The first 5 -> 6 edge after the wait started.\n    assert_eq!(w.wait_transition(|old, new| *old == 5 && *new == 6).wait(), 6);\n    done.store(true, Ordering::Relaxed);\n});",
    never: "w.wait_transition(|old, new| old > new)",
);

// === changes() ===

/// Stream of [`ValueWatcher::changes`]: the latest value after each burst of
/// transitions.
///
/// Yields the current value whenever the version has moved since the last
/// item (or since the stream was created); several transitions between two
/// polls yield one item, the latest value. Never ends. `Unpin`: its waiter
/// node is allocated once, when the stream is created.
///
/// # Cancel safety
///
/// `next()` is cancel-safe: a dropped `next()` future loses nothing, the next
/// one yields the latest value.
///
/// # Examples
///
/// ```
/// use futures_lite::StreamExt;
/// use value_watcher::ValueWatcher;
///
/// let w = ValueWatcher::new(0);
/// let mut changes = w.changes();
/// std::thread::scope(|s| {
///     s.spawn(|| w.set(1));
///     // 1, whenever the setter ran: the stream only counts transitions
///     // after `changes()` was called.
///     assert_eq!(futures_lite::future::block_on(changes.next()), Some(1));
/// });
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Changes<'a, T> {
    watcher: &'a ValueWatcher<T>,
    waiter: Pin<Box<Waiter<T, ChangeSignal>>>,
    seen: u64,
}

impl<'a, T> Changes<'a, T> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>) -> Self {
        let seen = watcher.version();
        Self {
            watcher,
            waiter: Box::pin(Waiter::new(ChangeSignal, false)),
            seen,
        }
    }
}

impl<T> Changes<'_, T> {
    /// The version of the value the stream yielded last, or, before its
    /// first item, the watcher's version when the stream was created.
    ///
    /// Versions count transitions, so a consumer sees how many it skipped:
    /// if an item comes with version `v` after one with version `u`, then
    /// `v - u - 1` transitions happened in between that it never saw (the
    /// stream yields only the latest value of a burst).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::StreamExt;
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(0);
    /// let mut changes = w.changes();
    /// assert_eq!(changes.version(), 0);
    /// let before = changes.version();
    /// for v in 1..=5 {
    ///     w.set(v);
    /// }
    /// assert_eq!(futures_lite::future::block_on(changes.next()), Some(5));
    /// assert_eq!(changes.version(), 5);
    /// let skipped = changes.version() - before - 1;
    /// assert_eq!(skipped, 4); // 1, 2, 3 and 4 were never yielded
    /// ```
    pub fn version(&self) -> u64 {
        self.seen
    }
}

impl<T: Clone> futures_core::Stream for Changes<'_, T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        let waiter = this.waiter.as_ref().raw();
        // Declared before the guard: dropped after the lock is released.
        let mut leftover;
        let value = {
            let mut guard = this.watcher.state.lock();
            let state = &mut *guard;
            if state.version == this.seen {
                leftover = waiter.take_outcome_locked(&mut state.waiters, false);
                // Any signal comes with a version bump, so none is pending here.
                debug_assert!(!leftover.ready);
                leftover.set_replaced(waiter.register_locked(&mut state.waiters, cx.waker()));
                guard.unlock();
                drop(leftover);
                return Poll::Pending;
            }
            // Clone before recording the version: if `T::clone` panics, the
            // stream has not consumed this transition and yields it on the
            // next poll.
            let value = state.value.clone();
            this.seen = state.version;
            leftover = waiter.cancel_locked(&mut state.waiters);
            value
        };
        drop(leftover);
        Poll::Ready(Some(value))
    }
}

impl<T> Drop for Changes<'_, T> {
    fn drop(&mut self) {
        // As in `Wait::drop`: the node must be unlinked before the `Box` is
        // freed, so a reentrant drop aborts rather than unwinds; the step
        // returns at once, without the lock, if it never registered.
        // SAFETY: no `offer` is passed (and the drop form calls none).
        let _ = unsafe { owner_step(self.watcher, self.waiter.as_ref().raw(), None, None) };
    }
}

impl<T> fmt::Debug for Changes<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("seen_version", &self.seen)
            .finish_non_exhaustive()
    }
}
