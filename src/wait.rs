//! The wait futures and the `changes()` stream.

use alloc::boxed::Box;
use core::cell::Cell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::unwind;
use crate::waiters::{Matcher, Outcome, Waiter};
use crate::watcher::ValueWatcher;

// === matchers ===

/// `wait_for`: the value equals the target.
pub(crate) struct Equals<T>(pub(crate) T);

impl<T: PartialEq + 'static> Matcher<T> for Equals<T> {
    type Output = T;
    fn matches(&mut self, value: &T) -> bool {
        *value == self.0
    }
    fn finish(value: T) -> T {
        value
    }
}

/// `wait_for_not`: the value differs from the target.
pub(crate) struct NotEquals<T>(pub(crate) T);

impl<T: PartialEq + 'static> Matcher<T> for NotEquals<T> {
    type Output = T;
    fn matches(&mut self, value: &T) -> bool {
        *value != self.0
    }
    fn finish(value: T) -> T {
        value
    }
}

/// `wait_until`: a user predicate.
pub(crate) struct Until<F>(pub(crate) F);

impl<T, F: FnMut(&T) -> bool + 'static> Matcher<T> for Until<F> {
    type Output = T;
    fn matches(&mut self, value: &T) -> bool {
        (self.0)(value)
    }
    fn finish(value: T) -> T {
        value
    }
}

/// `wait_for_change`: every transition.
pub(crate) struct AnyChange;

impl<T> Matcher<T> for AnyChange {
    type Output = T;
    fn matches(&mut self, _: &T) -> bool {
        true
    }
    fn finish(value: T) -> T {
        value
    }
}

/// `wait_for_some`: the value is `Some`; yields what it holds.
pub(crate) struct IsSome;

impl<U> Matcher<Option<U>> for IsSome {
    type Output = U;
    fn matches(&mut self, value: &Option<U>) -> bool {
        value.is_some()
    }
    fn finish(value: Option<U>) -> U {
        match value {
            Some(value) => value,
            None => unreachable!("IsSome captured None"),
        }
    }
}

/// `changes()`: wake on every transition, capture nothing.
pub(crate) struct ChangeSignal;

impl<T> Matcher<T> for ChangeSignal {
    type Output = T;
    const CAPTURES: bool = false;
    fn matches(&mut self, _: &T) -> bool {
        true
    }
    fn finish(value: T) -> T {
        value
    }
}

// === the shared wait future ===

/// The future behind every public wait type.
struct Wait<'a, T, M> {
    watcher: &'a ValueWatcher<T>,
    waiter: Waiter<T, M>,
    /// Check the current value on the first poll.
    immediate: bool,
    /// Completed: a further poll is a bug in the caller.
    done: Cell<bool>,
}

impl<'a, T, M: Matcher<T>> Wait<'a, T, M> {
    fn new(watcher: &'a ValueWatcher<T>, matcher: M, immediate: bool) -> Self {
        Self {
            watcher,
            waiter: Waiter::new(matcher),
            immediate,
            done: Cell::new(false),
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

impl<T: Clone, M: Matcher<T>> Future for Wait<'_, T, M> {
    type Output = M::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        // From here on only shared access: the node inside is reachable by
        // setters through the watcher's list.
        let this = self.into_ref();
        assert!(
            !this.done.get(),
            "value-watcher: wait future polled after it completed"
        );
        let waiter = this.waiter();
        // Declared before the guard, so that on every path, panics included,
        // the waker it may hold is dropped after the lock is released.
        let mut leftover;
        let outcome = {
            let mut guard = this.watcher.state.lock();
            let state = &mut *guard;
            leftover = waiter.take_outcome_locked(&mut state.waiters);
            if let Some(outcome) = leftover.outcome.take() {
                outcome
            } else if this.immediate
                && !waiter.is_armed()
                && waiter.matches_locked(&mut state.waiters, &state.value)
            {
                Outcome::Value(state.value.clone())
            } else {
                leftover.waker = waiter.register_locked(&mut state.waiters, cx.waker());
                drop(guard);
                drop(leftover);
                return Poll::Pending;
            }
        };
        drop(leftover);
        this.done.set(true);
        match outcome {
            Outcome::Value(value) => Poll::Ready(M::finish(value)),
            Outcome::Panicked(payload) => unwind::resume(payload),
            Outcome::Signal => unreachable!("capturing matcher got a bare signal"),
        }
    }
}

impl<T, M> Drop for Wait<'_, T, M> {
    fn drop(&mut self) {
        if !self.waiter.is_armed() {
            return;
        }
        // SAFETY: the node is armed only after a poll, which pinned `self`;
        // pinned values are dropped in place, so this is the same address.
        let this = unsafe { Pin::new_unchecked(&*self) };
        // `lock_for_drop`: this destructor must unlink the node before the
        // memory goes away, so it must neither unwind nor return early. A
        // reentrant drop (from user code under this watcher's lock) aborts
        // with the critical-section lock and deadlocks with the spinlock.
        let leftover = this
            .waiter()
            .cancel_locked(&mut this.watcher.state.lock_for_drop().waiters);
        // A captured value, panic payload or waker is dropped without the lock.
        drop(leftover);
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
                    .field("immediate", &self.inner.immediate)
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
                self.inner.immediate = check_current;
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

impl<'a, T: PartialEq + 'static> WaitFor<'a, T> {
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

impl<'a, T: PartialEq + 'static> WaitForNot<'a, T> {
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
    inner: Wait<'a, T, Until<F>>,
}

impl<'a, T, F: FnMut(&T) -> bool + 'static> WaitUntil<'a, T, F> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: Until<F>) -> Self {
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
    inner: Wait<'a, T, AnyChange>,
}

impl<'a, T> WaitForChange<'a, T> {
    pub(crate) fn new(watcher: &'a ValueWatcher<T>, matcher: AnyChange) -> Self {
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
    inner: Wait<'a, Option<U>, IsSome>,
}

impl<'a, U> WaitForSome<'a, U> {
    pub(crate) fn new(watcher: &'a ValueWatcher<Option<U>>, matcher: IsSome) -> Self {
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
            waiter: Box::pin(Waiter::new(ChangeSignal)),
            seen,
        }
    }
}

impl<T: Clone> futures_core::Stream for Changes<'_, T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        let waiter = this.waiter.as_ref();
        // Declared before the guard: dropped after the lock is released.
        let mut leftover;
        let value = {
            let mut guard = this.watcher.state.lock();
            let state = &mut *guard;
            if state.version == this.seen {
                leftover = waiter.take_outcome_locked(&mut state.waiters);
                // Any signal comes with a version bump, so none is pending here.
                debug_assert!(leftover.outcome.is_none());
                leftover.waker = waiter.register_locked(&mut state.waiters, cx.waker());
                drop(guard);
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
        if self.waiter.is_armed() {
            // As in `Wait::drop`: the node must be unlinked before the `Box`
            // is freed, so a reentrant drop aborts rather than unwinds.
            let leftover = self
                .waiter
                .as_ref()
                .cancel_locked(&mut self.watcher.state.lock_for_drop().waiters);
            drop(leftover);
        }
    }
}

impl<T> fmt::Debug for Changes<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("seen_version", &self.seen)
            .finish_non_exhaustive()
    }
}
