//! `ValueWatcher<T>`: the value, its version, and the setters.

use alloc::boxed::Box;
use core::fmt;
use core::mem;

use crate::callbacks::{CallbackId, Callbacks, Firing};
use crate::lock::{Guard, Lock};
use crate::sync::loom_const_fn;
use crate::unwind::{self, Payload};
use crate::wait::{
    AnyChange, Changes, Edge, Equals, IsSome, Map, NotEquals, Until, WaitFor, WaitForChange,
    WaitForNot, WaitForSome, WaitMap, WaitTransition, WaitUntil,
};
use crate::waiters::{Waiters, WakeBatch};

/// A value that tasks and threads can wait on, without missing a state.
///
/// See the [crate documentation](crate) for the full story. In short:
///
/// * [`set`](Self::set), [`set_if`](Self::set_if) and [`modify`](Self::modify)
///   change the value from any thread, executor or interrupt-free context;
///   each change to a value that is not equal (`PartialEq`) to the old one is
///   a *transition* and bumps [`version`](Self::version) by one.
/// * [`wait_for`](Self::wait_for), [`wait_for_not`](Self::wait_for_not),
///   [`wait_until`](Self::wait_until), [`wait_for_change`](Self::wait_for_change)
///   and [`wait_for_some`](Self::wait_for_some) return futures that complete
///   with the *first* transition they see whose new value matches, even if
///   the value has moved on by the time the task runs. With the `std` feature
///   each future can also be waited on by blocking the thread.
/// * [`on_change`](Self::on_change) and [`on_value`](Self::on_value) register
///   callbacks that run on the setting thread; [`changes`](Self::changes) is a
///   `Stream` of new values.
///
/// # Locking
///
/// The value, the version and the waiter list sit under one lock (a spinlock,
/// or a critical section with the `critical-section` feature). It is held
/// only for short, bounded work: comparing, storing, cloning, and calling
/// each waiter's predicate once per transition. Under it run exactly:
/// `PartialEq`, `Clone` and `Debug` of `T`, wait predicates, the closures of
/// [`with`](Self::with), [`set_if`](Self::set_if) and [`modify`](Self::modify),
/// and `Waker::clone` when a future registers. They must be cheap and must
/// not use the same watcher: with the spinlock that deadlocks; with
/// `critical-section` the reentrant call panics, and dropping a registered
/// wait future or stream there aborts the process. Never under it, on any
/// path: the `Drop` of a `T`, a closure or a waker, `Waker::wake`, and
/// callbacks. The [hooks table](crate#hooks-where-your-code-runs) has the
/// details.
///
/// # Examples
///
/// A watcher in a `static`, a thread waiting on it, another setting it:
///
/// ```
/// use value_watcher::ValueWatcher;
///
/// static PROGRESS: ValueWatcher<u32> = ValueWatcher::new(0);
///
/// let done = std::thread::spawn(|| PROGRESS.wait_until(|p| *p >= 100).wait());
/// for p in (0..=100).step_by(10) {
///     PROGRESS.set(p);
/// }
/// // The waiter sees the first value >= 100 (here the only one).
/// assert_eq!(done.join().unwrap(), 100);
/// ```
///
/// # Values that are not `Clone`
///
/// A value that is only `PartialEq` (a state carrying an `io::Error`, a
/// channel end, a handle) works with [`new`](Self::new), [`with`](Self::with),
/// [`version`](Self::version), [`set`](Self::set), [`set_if`](Self::set_if),
/// [`on_value`](Self::on_value), [`remove_callback`](Self::remove_callback),
/// [`wait_map`](Self::wait_map) and `Debug`. Only what hands out a clone of
/// the value needs `Clone`: [`get`](Self::get), [`modify`](Self::modify)
/// (it keeps a copy to roll back), [`on_change`](Self::on_change),
/// [`changes`](Self::changes), and the waits whose output is the value.
///
/// ```
/// use value_watcher::ValueWatcher;
///
/// #[derive(PartialEq, Debug)]
/// struct Handle(u32); // not Clone
///
/// let w = ValueWatcher::new(Handle(1));
/// w.set(Handle(2));
/// let id = pollster::block_on(w.wait_map(|h| Some(h.0)));
/// assert_eq!(id, 2);
/// ```
///
/// ```compile_fail
/// use value_watcher::ValueWatcher;
///
/// #[derive(PartialEq)]
/// struct Handle(u32); // not Clone
///
/// let w = ValueWatcher::new(Handle(1));
/// let _ = w.get(); // error: `get` hands out a clone
/// ```
///
/// ```compile_fail
/// # use value_watcher::ValueWatcher;
/// # #[derive(PartialEq)]
/// # struct Handle(u32);
/// let w = ValueWatcher::new(Handle(1));
/// let _ = w.wait_for(Handle(2)); // error: its output is a clone of the value
/// ```
///
/// `ValueWatcher<T>` is `Send` and `Sync` when `T: Send` (like a mutex: the
/// value is only reached under the lock). A watcher of a non-`Send` value
/// cannot be shared between threads:
///
/// ```compile_fail
/// use std::rc::Rc;
/// use value_watcher::ValueWatcher;
///
/// fn share<T: Sync>(_: &T) {}
/// share(&ValueWatcher::new(Rc::new(0)));
/// ```
pub struct ValueWatcher<T> {
    pub(crate) state: Lock<State<T>>,
}

/// Everything the lock guards.
///
/// `repr(C)` with the waiters first: the lists are at the guarded data's
/// own address, so the setter's walk and the owner's steps reach them
/// through the pointer they already hold instead of computing and keeping
/// one more (on Thumb, 12 bytes less code for the size job; the field order
/// costs no padding there or on 64-bit hosts for a `u64` value).
#[repr(C)]
pub(crate) struct State<T> {
    pub(crate) waiters: Waiters<T>,
    pub(crate) value: T,
    pub(crate) version: u64,
    pub(crate) callbacks: Callbacks<T>,
}

// === impl ValueWatcher ===

impl<T> ValueWatcher<T> {
    loom_const_fn! {
        /// Creates a watcher holding `initial`, at version 0.
        ///
        /// `const`, so a watcher can live in a `static` (no lazy
        /// initialization, no allocation).
        ///
        /// # Examples
        ///
        /// ```
        /// use value_watcher::ValueWatcher;
        ///
        /// static READY: ValueWatcher<bool> = ValueWatcher::new(false);
        /// assert!(!READY.get());
        /// assert_eq!(READY.version(), 0);
        /// ```
        pub const fn new(initial: T) -> ValueWatcher<T> {
            ValueWatcher {
                state: Lock::new(State {
                    value: initial,
                    version: 0,
                    waiters: Waiters::new(),
                    callbacks: Callbacks::new(),
                }),
            }
        }
    }

    /// Returns a clone of the current value.
    ///
    /// `T::clone` runs under the lock.
    ///
    /// # Panics
    ///
    /// If `T::clone` panics, the panic propagates; the watcher is unlocked and
    /// unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(String::from("hello"));
    /// assert_eq!(w.get(), "hello");
    /// ```
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        self.state.lock().value.clone()
    }

    /// Calls `f` with a reference to the current value and returns its result,
    /// without cloning.
    ///
    /// `f` runs under the lock: keep it short, and do not use this watcher
    /// inside it (see [Locking](ValueWatcher#locking)).
    ///
    /// # Panics
    ///
    /// A panic in `f` propagates; the watcher is unlocked and unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(vec![1, 2, 3]);
    /// assert_eq!(w.with(|v| v.len()), 3);
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.state.lock().value)
    }

    /// The number of transitions so far: 0 at creation, +1 per transition.
    ///
    /// Read under the lock (no 64-bit atomics needed), so it is consistent
    /// with the value that [`with`](Self::with) would show at that moment.
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(0);
    /// w.set(1);
    /// w.set(1); // equal: not a transition
    /// w.set(2);
    /// assert_eq!(w.version(), 2);
    /// ```
    pub fn version(&self) -> u64 {
        self.state.lock().version
    }

    /// Removes a callback registered with [`on_change`](Self::on_change) or
    /// [`on_value`](Self::on_value).
    ///
    /// Returns `true` if it was still registered: `false` for an unknown id,
    /// a second removal, or an `on_value` callback that has already fired (or
    /// ran at registration). A callback removed while a transition is being
    /// delivered on another thread may still run for that one transition.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(0);
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let c = calls.clone();
    /// let id = w.on_change(move |_, _| {
    ///     c.fetch_add(1, Ordering::Relaxed);
    /// });
    /// w.set(1);
    /// assert!(w.remove_callback(id));
    /// assert!(!w.remove_callback(id));
    /// w.set(2);
    /// assert_eq!(calls.load(Ordering::Relaxed), 1);
    /// ```
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let (removed, garbage) = self.state.lock().callbacks.remove_locked(id);
        drop(garbage);
        removed
    }

    /// Registers `f(old, new)` to run after every transition.
    ///
    /// `f` runs on the setting thread, after the value is stored and the
    /// matching waiters are woken, outside the lock (so it may read or set
    /// the watcher, or remove callbacks, itself included). For one transition,
    /// callbacks run in registration order (`on_change` and `on_value`
    /// together); callbacks of transitions made concurrently by different
    /// threads may interleave. Registering allocates; a set never allocates
    /// for callbacks (it clones the new value once if any `on_change`
    /// callback is registered). A callback removed while another thread's
    /// setter is running it finishes that run, and is dropped by that setter
    /// afterwards, outside the lock.
    ///
    /// Returns an id for [`remove_callback`](Self::remove_callback); dropping
    /// the id does not remove the callback.
    ///
    /// # Panics
    ///
    /// With `std`, a panicking callback does not stop the others: all run,
    /// then the first panic resumes in the setter (`set`, `set_if` or
    /// `modify`), after the value was stored and waiters were woken. Without
    /// `std`, the panic unwinds through the setter at once and the remaining
    /// callbacks of that transition are skipped; the watcher stays unlocked
    /// and consistent.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use std::sync::Arc;
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new("idle");
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let l = log.clone();
    /// w.on_change(move |old, new| l.lock().unwrap().push(format!("{old} -> {new}")));
    /// w.set("busy");
    /// w.set("idle");
    /// assert_eq!(*log.lock().unwrap(), ["idle -> busy", "busy -> idle"]);
    /// ```
    pub fn on_change<F>(&self, f: F) -> CallbackId
    where
        F: Fn(&T, &T) + Send + Sync + 'static,
        T: Clone,
    {
        let entry = Callbacks::change_entry(Box::new(f));
        let (id, garbage) = self.state.lock().callbacks.push_locked(entry);
        drop(garbage);
        id
    }

    /// Runs `f` once, when the value is (or becomes) `value`.
    ///
    /// If the current value already equals `value`, `f` runs at once on the
    /// calling thread, before `on_value` returns. Otherwise it runs on the
    /// setting thread of the first transition into `value` (a transient one
    /// included: it fires even if the value moves on immediately), outside
    /// the lock, in registration order with the other callbacks. No executor
    /// is needed. The comparison with each new value runs under the lock.
    ///
    /// Returns an id for [`remove_callback`](Self::remove_callback); once
    /// `f` has run (or started), removing returns `false`.
    ///
    /// # Panics
    ///
    /// A panic in `f` when it runs at once propagates to the caller. Later,
    /// it behaves like a panicking [`on_change`](Self::on_change) callback.
    /// With `std`, a panic in `T::eq` while a setter compares this target is
    /// resumed in that setter after its callbacks ran, and `f` never runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(0);
    /// let fired = Arc::new(AtomicBool::new(false));
    /// let f = fired.clone();
    /// w.on_value(2, move || f.store(true, Ordering::Relaxed));
    /// w.set(2); // fires, even though ...
    /// w.set(3); // ... the value moves on at once
    /// assert!(fired.load(Ordering::Relaxed));
    /// ```
    pub fn on_value<F>(&self, value: T, f: F) -> CallbackId
    where
        F: FnOnce() + Send + 'static,
        T: PartialEq,
    {
        // Allocated before locking; if `T::eq` panics, the guard (declared
        // last) is released before the entry, target and closure are dropped.
        let entry = Callbacks::once_entry(value, Box::new(f));
        let mut state = self.state.lock();
        if entry.target_equals(&state.value) {
            let id = state.callbacks.unregistered_id_locked();
            drop(state);
            entry.run_now();
            return id;
        }
        let (id, garbage) = state.callbacks.push_locked(entry);
        drop(state);
        drop(garbage);
        id
    }

    /// A [`Stream`](futures_core::Stream) of the values of transitions made
    /// after this call.
    ///
    /// Each item is the value after a transition. If several transitions
    /// happen before the stream is polled, it yields only the latest value
    /// once (it never buffers), so a slow consumer sees the newest state and
    /// memory stays constant. To see *every* state, use the wait futures,
    /// which never skip one. The stream never ends.
    ///
    /// Creating the stream allocates its waiter node once (so the stream is
    /// `Unpin`); polling it never allocates.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::StreamExt;
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(0);
    /// let mut changes = w.changes();
    /// w.set(1);
    /// w.set(2);
    /// // Both transitions happened before the poll: only the latest is seen.
    /// assert_eq!(futures_lite::future::block_on(changes.next()), Some(2));
    /// ```
    pub fn changes(&self) -> Changes<'_, T>
    where
        T: Clone,
    {
        Changes::new(self)
    }
    /// Waits until `f` extracts something from the value, and returns it.
    ///
    /// `f` runs where a predicate runs (under the lock, see
    /// [Locking](ValueWatcher#locking)): once against the current value at
    /// the first poll (unless [`immediate(false)`](WaitMap::immediate)), then
    /// once per transition on the setting thread, until it returns `Some(u)`.
    /// The future completes with that `u`, even if the value has moved on by
    /// the time the task runs, and the value itself is never cloned: this is
    /// how to wait on a value that is not `Clone`, or to keep only the part
    /// of it you need. Everything [`wait_until`](Self::wait_until) promises
    /// holds (no missed states, selective wake-up, O(1) cancel, no
    /// allocation). See [`WaitMap`].
    ///
    /// # Panics
    ///
    /// A panic in `f` during the first poll propagates from that poll. With
    /// `std`, a panic during a setter's check is caught there and resumed
    /// from this future's next poll (the setter and other waiters are
    /// unaffected).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1).
    ///
    /// # Examples
    ///
    /// A state carrying an `io::Error` cannot be cloned; a waiter extracts
    /// the error's kind:
    ///
    /// ```
    /// use std::io;
    /// use futures_lite::future::{block_on, poll_once};
    /// use value_watcher::ValueWatcher;
    ///
    /// #[derive(Debug)]
    /// enum Conn { Connecting, Connected, Failed(io::Error) }
    ///
    /// impl PartialEq for Conn {
    ///     fn eq(&self, other: &Self) -> bool {
    ///         match (self, other) {
    ///             (Conn::Failed(a), Conn::Failed(b)) => a.kind() == b.kind(),
    ///             _ => std::mem::discriminant(self) == std::mem::discriminant(other),
    ///         }
    ///     }
    /// }
    ///
    /// let conn = ValueWatcher::new(Conn::Connecting);
    /// let mut failure = Box::pin(conn.wait_map(|c| match c {
    ///     Conn::Failed(e) => Some(e.kind()),
    ///     _ => None,
    /// }));
    /// assert!(block_on(poll_once(&mut failure)).is_none());
    /// conn.set(Conn::Failed(io::Error::from(io::ErrorKind::ConnectionRefused)));
    /// conn.set(Conn::Connecting); // retrying already
    /// assert_eq!(block_on(failure), io::ErrorKind::ConnectionRefused);
    /// ```
    pub fn wait_map<U, F>(&self, f: F) -> WaitMap<'_, T, U, F>
    where
        F: FnMut(&T) -> Option<U> + Send + 'static,
        U: Send + 'static,
    {
        WaitMap::new(self, Map::new(f))
    }

    /// Waits for a transition whose edge `f(&old, &new)` accepts, and returns
    /// its new value.
    ///
    /// The future is offered every transition after its first poll, with the
    /// value before and after it; it completes with the new value of the
    /// first one `f` accepts, even a transient one the value has left again
    /// by the time the task runs. Only those transitions wake it. The current
    /// value alone never completes it (so there is no `immediate`). `f` runs
    /// under the lock on the setting thread, like a predicate. See
    /// [`WaitTransition`].
    ///
    /// # Panics
    ///
    /// With `std`, a panic in `f` during a setter's check is caught there and
    /// resumed from this future's next poll.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::future::{block_on, poll_once};
    /// use value_watcher::ValueWatcher;
    ///
    /// #[derive(Clone, Copy, PartialEq, Debug)]
    /// enum Conn { Connecting, Connected, Closing, Closed }
    ///
    /// let conn = ValueWatcher::new(Conn::Connected);
    /// // "Left Connected", whatever it went to.
    /// let mut left = Box::pin(conn.wait_transition(|old, _| *old == Conn::Connected));
    /// assert!(block_on(poll_once(&mut left)).is_none());
    /// conn.set(Conn::Closing);
    /// conn.set(Conn::Closed);
    /// assert_eq!(block_on(left), Conn::Closing);
    /// ```
    pub fn wait_transition<F>(&self, f: F) -> WaitTransition<'_, T, F>
    where
        F: FnMut(&T, &T) -> bool + Send + 'static,
        T: Clone + 'static,
    {
        WaitTransition::new(self, Edge::new(f))
    }
}

impl<T: PartialEq> ValueWatcher<T> {
    /// Stores `value`; returns `true` if that was a transition.
    ///
    /// If `value` equals the current value nothing happens: no version bump,
    /// no wake-up, no callback, and `value` is dropped. Otherwise the value
    /// is stored, the version bumped, every waiter whose predicate matches
    /// `value` gets a clone of it and is woken, and then callbacks run on
    /// this thread. Never allocates (beyond what `T::clone` allocates).
    ///
    /// # Panics
    ///
    /// A panic in `T::eq` propagates with nothing changed. With `std`, panics
    /// in waiters' predicates or in `T::clone` for a waiter are delivered to
    /// those waiters, and a panicking callback or waker (`Waker::wake` of a
    /// chosen waiter) is resumed here after every chosen waiter was woken and
    /// every callback ran (the value is stored). Without
    /// `std` such a panic unwinds from here at once: the value is stored and
    /// the waiters already chosen are woken, but waiters not yet checked miss
    /// this transition. In every case the watcher is left unlocked and
    /// consistent.
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(1);
    /// assert!(w.set(2));
    /// assert!(!w.set(2));
    /// ```
    pub fn set(&self, value: T) -> bool {
        // `value` stays in this frame: whether it is rejected (equal) or ends
        // up holding the old value, it is dropped here, after the lock is
        // released, also when `T::eq` panics.
        let mut value = value;
        self.update(
            &mut value,
            |current, value| {
                if *current == *value {
                    (false, false)
                } else {
                    mem::swap(current, value);
                    (true, true)
                }
            },
            |old| old,
        )
    }

    /// Stores `value` if `condition(&current)` holds, atomically; returns
    /// whether the condition held.
    ///
    /// The check and the store happen under one lock, so no other setter can
    /// come between them. `condition` runs under the lock on this thread (no
    /// `Send` needed); it is consumed by the call, so what it captured by
    /// value is dropped there too, under the lock. A `true` result with
    /// `value` equal to the current value is not a transition.
    ///
    /// # Panics
    ///
    /// A panic in `condition` propagates with nothing changed (`value` is
    /// dropped after the lock is released); otherwise as [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// #[derive(Clone, PartialEq, Debug)]
    /// enum Conn { Disconnected, Connecting, Connected }
    ///
    /// let w = ValueWatcher::new(Conn::Disconnected);
    /// // Only one caller wins the right to connect.
    /// assert!(w.set_if(Conn::Connecting, |c| *c == Conn::Disconnected));
    /// assert!(!w.set_if(Conn::Connecting, |c| *c == Conn::Disconnected));
    /// ```
    pub fn set_if(&self, value: T, condition: impl FnOnce(&T) -> bool) -> bool {
        let mut value = value;
        self.update(
            &mut value,
            |current, value| {
                if !condition(current) {
                    (false, false)
                } else if *current == *value {
                    (false, true)
                } else {
                    mem::swap(current, value);
                    (true, true)
                }
            },
            |old| old,
        )
    }

    /// Changes the value in place, atomically; returns `true` if the result
    /// differs from the old value (a transition).
    ///
    /// The old value is cloned first (under the lock) so the result can be
    /// compared and restored. If the result equals the old value, the old
    /// value is kept and nothing is notified.
    ///
    /// # Panics
    ///
    /// If `f` (or `T::eq`) panics, the old value is restored, nothing is
    /// notified, and the panic propagates; the half-modified value is dropped
    /// after the lock is released. Otherwise as [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let counter = ValueWatcher::new(0u32);
    /// assert!(counter.modify(|n| *n += 1));
    /// assert!(!counter.modify(|n| *n += 0));
    /// assert_eq!(counter.get(), 1);
    /// ```
    pub fn modify(&self, f: impl FnOnce(&mut T)) -> bool
    where
        T: Clone,
    {
        /// Unless disarmed, swaps the backup back in, so a panic in `f` or
        /// `T::eq` leaves the old value in place and the half-modified one
        /// in the caller's slot (dropped there, after unlocking).
        struct Restore<'a, T> {
            slot: &'a mut T,
            backup: &'a mut T,
            armed: bool,
        }
        impl<T> Drop for Restore<'_, T> {
            fn drop(&mut self) {
                if self.armed {
                    mem::swap(self.slot, self.backup);
                }
            }
        }

        // The backup (afterwards: the old value, or the equal result that
        // is discarded) lives in this frame, outside the lock.
        let mut spill: Option<T> = None;
        self.update(
            &mut spill,
            |current, spill| {
                let backup = spill.insert(current.clone());
                let mut restore = Restore {
                    slot: current,
                    backup,
                    armed: true,
                };
                f(restore.slot);
                let changed = *restore.slot != *restore.backup;
                // Unchanged: keep the old value, discard the equal result.
                restore.armed = !changed;
                drop(restore);
                (changed, changed)
            },
            |old| match old {
                Some(old) => old,
                None => unreachable!("modify made a transition without a backup"),
            },
        )
    }

    /// Runs `f` on the value under the lock and, if it made a transition (its
    /// first result), notifies.
    ///
    /// `spill` belongs to the caller's frame: whatever `T` the update leaves
    /// there (the old value after a transition, a rejected or discarded one
    /// otherwise) is dropped by the caller after this returns or unwinds, so
    /// never under the lock (SPEC §3.17). After a transition `old(spill)` is
    /// the old value, which the callbacks see.
    #[inline]
    fn update<S, R>(
        &self,
        spill: &mut S,
        f: impl FnOnce(&mut T, &mut S) -> (bool, R),
        old: impl FnOnce(&S) -> &T,
    ) -> R {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let (changed, result) = f(&mut state.value, spill);
        if !changed {
            guard.unlock();
            return result;
        }
        state.version += 1;
        if state.waiters.is_waiting_empty() && state.callbacks.is_idle() {
            // Nobody to tell: the common uncontended set ends here.
            guard.unlock();
        } else {
            self.deliver(guard, old(spill));
        }
        result
    }

    /// Offers the transition just stored to the waiters and callbacks, then
    /// releases the lock, wakes the chosen waiters and runs the callbacks.
    ///
    /// Never inlined on hosts: its frame holds the wake batch (hundreds of
    /// bytes), and inlined into `set` it would make every uncontended set
    /// pay for saving registers and reserving that frame (49 instructions
    /// instead of 33). The small shape's batch is one flag, so there the
    /// compiler decides: it inlines this into `set`, which makes the size
    /// job 20 bytes smaller on Thumb and the contract firmware 24.
    #[cfg_attr(not(any(target_os = "none", value_watcher_small)), inline(never))]
    fn deliver(&self, guard: Guard<'_, State<T>>, old: &T) {
        // Drop order is the point: the guard is declared last, so on every
        // path, panics included, the lock is released before the notifier
        // wakes what the batch collected.
        let mut batch = WakeBatch::new();
        // The clone of the new value that `on_change` callbacks see; in this
        // frame, before the guard, so it is never dropped under the lock.
        // Its address is also the token that marks the `on_value` entries
        // this call claims (see callbacks.rs).
        let mut new: Option<T> = None;
        // What the callbacks of this transition need, filled under the lock;
        // also before the guard, as the entries it may free are user code.
        let mut firing = None;
        let notifier = Notifier {
            watcher: self,
            batch: &mut batch,
        };
        let mut guard = guard;
        let state = &mut *guard;
        state
            .waiters
            .notify_locked(old, &state.value, notifier.batch);
        state.callbacks.fire(&state.value, &mut new, &mut firing);
        guard.unlock();
        // If a waker's panic unwinds from here (without `std`), the claimed
        // callbacks are given up cleanly instead of leaving `running` counted.
        // Only then: the guard borrows the slot and is forgotten once the
        // wakers are done, so the callbacks are not moved into it and out
        // again (with `panic = "abort"` it costs no code at all).
        let abandon = Abandon {
            firing: &mut firing,
            lock: &self.state,
        };
        // A waker that panics (with `std`) neither keeps the other chosen
        // waiters asleep nor skips the callbacks: everything is delivered,
        // then the first panic resumes here.
        let wake_panic = notifier.finish();
        mem::forget(abandon);
        if let Some(firing) = &mut firing {
            firing.run(&self.state, old, &new, wake_panic);
        } else if let Some(payload) = wake_panic {
            unwind::resume(payload);
        }
    }

    /// Waits until the value equals `value`.
    ///
    /// The future first checks the current value (unless
    /// [`immediate(false)`](WaitFor::immediate)), then completes with the
    /// first transition into `value`, even if the value changed again before
    /// the task ran. See [`WaitFor`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1); nothing is
    /// lost for other waiters.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::future::{block_on, poll_once};
    /// use value_watcher::ValueWatcher;
    ///
    /// #[derive(Clone, PartialEq, Debug)]
    /// enum Conn { Connecting, Connected, Closing, Closed }
    ///
    /// let conn = ValueWatcher::new(Conn::Connecting);
    /// let mut closing = Box::pin(conn.wait_for(Conn::Closing));
    /// // The first poll starts the watch (the value is not Closing yet).
    /// assert!(block_on(poll_once(&mut closing)).is_none());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         conn.set(Conn::Connected);
    ///         conn.set(Conn::Closing);
    ///         conn.set(Conn::Closed);
    ///     });
    /// });
    /// // The value is Closed by now, but the waiter reports Closing.
    /// assert_eq!(block_on(closing), Conn::Closing);
    /// ```
    pub fn wait_for(&self, value: T) -> WaitFor<'_, T>
    where
        T: Clone + 'static,
    {
        WaitFor::new(self, Equals::new(value))
    }

    /// Waits until the value is not equal to `value`.
    ///
    /// Completes at once if the current value already differs (unless
    /// [`immediate(false)`](WaitForNot::immediate)); otherwise with the first
    /// transition away from `value`. See [`WaitForNot`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(0);
    /// let fut = w.wait_for_not(0);
    /// w.set(7);
    /// assert_eq!(pollster::block_on(fut), 7);
    /// ```
    pub fn wait_for_not(&self, value: T) -> WaitForNot<'_, T>
    where
        T: Clone + 'static,
    {
        WaitForNot::new(self, NotEquals::new(value))
    }

    /// Waits until `predicate(&value)` holds.
    ///
    /// The predicate runs under the lock: once on the first poll (unless
    /// [`immediate(false)`](WaitUntil::immediate)), then once per transition
    /// on the setting thread, until it returns `true`. It must be cheap and
    /// must not use this watcher. See [`WaitUntil`].
    ///
    /// # Panics
    ///
    /// A panic in the predicate during the first poll propagates from that
    /// poll. With `std`, a panic during a setter's check is caught there and
    /// resumed from this future's next poll (the setter and other waiters are
    /// unaffected).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::future::{block_on, poll_once};
    /// use value_watcher::ValueWatcher;
    ///
    /// let temperature = ValueWatcher::new(20);
    /// let mut hot = Box::pin(temperature.wait_until(|t| *t >= 30));
    /// assert!(block_on(poll_once(&mut hot)).is_none()); // watching from here
    /// temperature.set(25);
    /// temperature.set(31);
    /// temperature.set(22);
    /// assert_eq!(block_on(hot), 31); // the first match, though it is 22 now
    /// ```
    ///
    /// Like any future it watches nothing until first polled: had `hot` been
    /// polled only after the three sets, it would have seen 22, not matched,
    /// and waited for the next transition.
    pub fn wait_until<F>(&self, predicate: F) -> WaitUntil<'_, T, F>
    where
        F: FnMut(&T) -> bool + Send + 'static,
        T: Clone + 'static,
    {
        WaitUntil::new(self, Until::new(predicate))
    }

    /// Waits for the next transition and returns its new value.
    ///
    /// It never looks at the current value: it completes with the first
    /// transition after its first poll. See [`WaitForChange`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_lite::future::{block_on, poll_once};
    /// use value_watcher::ValueWatcher;
    ///
    /// let w = ValueWatcher::new(1);
    /// let mut next = Box::pin(w.wait_for_change());
    /// assert!(block_on(poll_once(&mut next)).is_none());
    /// w.set(1); // equal: not a transition
    /// w.set(2);
    /// w.set(3);
    /// assert_eq!(block_on(next), 2);
    /// ```
    pub fn wait_for_change(&self) -> WaitForChange<'_, T>
    where
        T: Clone + 'static,
    {
        WaitForChange::new(self, AnyChange::new())
    }
}

impl<U: Clone + 'static> ValueWatcher<Option<U>> {
    /// Waits until the value is `Some`, and returns what it holds.
    ///
    /// Completes at once if the value is already `Some` (unless
    /// [`immediate(false)`](WaitForSome::immediate)); otherwise with the first
    /// transition to `Some(_)`, even if it is reset to `None` before the task
    /// runs. See [`WaitForSome`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point unregisters it in O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// use value_watcher::ValueWatcher;
    ///
    /// let session = ValueWatcher::new(None);
    /// let fut = session.wait_for_some();
    /// session.set(Some("token-1"));
    /// assert_eq!(pollster::block_on(fut), "token-1");
    /// ```
    pub fn wait_for_some(&self) -> WaitForSome<'_, U> {
        WaitForSome::new(self, IsSome::new())
    }
}

/// Gives up a setter's callbacks if dropped: armed while the setter wakes
/// its batch, so that a waker's panic unwinding without `std` leaves the
/// registry consistent, and forgotten once the wakers are done.
struct Abandon<'a, T> {
    firing: &'a mut Option<Firing<T>>,
    lock: &'a Lock<State<T>>,
}

impl<T> Drop for Abandon<'_, T> {
    fn drop(&mut self) {
        if let Some(firing) = self.firing.take() {
            firing.abandon(self.lock);
        }
    }
}

/// Wakes what a setter collected, after its lock guard is gone.
struct Notifier<'a, T> {
    watcher: &'a ValueWatcher<T>,
    batch: &'a mut WakeBatch,
}

impl<T> Notifier<'_, T> {
    /// Wakes every waiter the setter chose. With `std`, a panicking waker is
    /// caught so the rest are still woken; its payload is returned.
    fn finish(mut self) -> Option<Payload> {
        let mut panic = None;
        self.deliver_all(&mut panic);
        // Everything is delivered: skip `Drop`, which would find nothing to do.
        mem::forget(self);
        panic
    }

    /// Small shape: the walk queued every chosen waiter (the batch has no
    /// slots); take them out one critical section at a time and wake each
    /// after unlocking. A waker consumed by a `wake` that panics is gone, so
    /// after a caught panic (or, without `std`, in `Drop`) this goes on with
    /// the next queued waiter.
    #[cfg(any(target_os = "none", value_watcher_small))]
    fn deliver_all(&mut self, panic: &mut Option<Payload>) {
        while self.batch.take_overflow() {
            // The guard is a temporary of this statement: unlocked before
            // the wake below.
            let waker = self
                .watcher
                .state
                .lock()
                .waiters
                .pop_queued_locked(self.batch);
            if let Some(waker) = waker {
                if let Err(payload) = unwind::catch(|| waker.wake()) {
                    panic.get_or_insert(payload);
                }
            }
        }
    }

    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    fn deliver_all(&mut self, panic: &mut Option<Payload>) {
        loop {
            // `wake_all` consumes each slot before waking it, so after a
            // caught panic the next call goes on with the following slot.
            while !self.batch.is_empty() {
                if let Err(payload) = unwind::catch(|| self.batch.wake_all()) {
                    panic.get_or_insert(payload);
                }
            }
            // More waiters matched than one batch holds: hand the rest out
            // batch by batch, never waking under the lock.
            if !self.batch.take_overflow() {
                return;
            }
            self.watcher
                .state
                .lock()
                .waiters
                .drain_queued_locked(self.batch);
        }
    }
}

impl<T> Drop for Notifier<'_, T> {
    /// Only reached with work left when something unwound before
    /// [`Notifier::finish`] (without `std`: a predicate, `Clone` or waker
    /// panic): the chosen waiters are still woken on the way out.
    fn drop(&mut self) {
        // A waker's panic caught here is discarded: another panic is already
        // unwinding, and it is the one the caller sees.
        let mut _discarded = None;
        self.deliver_all(&mut _discarded);
    }
}

impl<T: Default> Default for ValueWatcher<T> {
    /// A watcher holding `T::default()`.
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for ValueWatcher<T> {
    /// A watcher holding `value`.
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueWatcher<T> {
    /// Shows the current value and version (formatted under the lock).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("ValueWatcher")
            .field("value", &state.value)
            .field("version", &state.version)
            .finish_non_exhaustive()
    }
}
