//! loom models of every race the design depends on (issue #3).
//!
//! Run with `.ci/loom.sh`, which is
//! `RUSTFLAGS="--cfg value_watcher_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom`.
//!
//! Under `value_watcher_loom` the crate's lock is loom's `Mutex`, the cells of
//! every waiter node and matcher are loom cells (so loom flags any access the
//! lock does not order), the wake batch holds one waker (so two matching
//! waiters already take the queued-wake path), and blocking waits park through
//! loom's `park`/`unpark`. A lost wake-up shows up as loom's deadlock report
//! (every thread blocked); a waker a node never releases as a leaked loom
//! `Arc` (`loom::future::block_on` makes its wakers from loom `Arc`s).
//! loom does not see a read of freed memory as such, so every cancellation
//! model ends by checking that the list still works, and `.ci/loom.sh` turns
//! debug assertions on: the crate asserts each node's state at every
//! transition, which catches a node left in a list after it was freed (each
//! such mutation of `src/waiters.rs` tried while writing these models failed
//! a model this way). AddressSanitizer (`.ci/asan.sh`) covers the rest.
//!
//! Exploration: most models are small enough for loom to try every
//! interleaving (no preemption bound); the six largest run with the
//! preemption bound `LOOM_MAX_PREEMPTIONS` (2 if unset) plus 1, 2 or 3. Run with
//! `--nocapture` to see each model's interleaving count; `.ci/loom.sh`
//! records the measured times.
//!
//! Values are monotonic in every model that has more than one transition, so
//! "the first matching value after the wait started" is known exactly. Where
//! a waiter's first poll races the setters, its predicate records the first
//! value it is shown: that call is the first poll's check of the current
//! value, made under the lock in the same critical section that registers the
//! waiter, so it marks exactly where the wait started.
#![cfg(value_watcher_loom)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};

use futures_lite::StreamExt;
use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;
use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Conn {
    Connected,
    Closing,
    Closed,
}

/// How far loom explores a model.
#[derive(Clone, Copy)]
enum Bound {
    /// Every interleaving: no preemption bound (for models whose whole state
    /// space is small; measured in `.ci/loom.sh`).
    Exhaustive,
    /// `LOOM_MAX_PREEMPTIONS` (2 if unset) plus this many.
    Extra(usize),
}

/// Runs `f` under loom and reports how many interleavings it explored (with
/// `--nocapture`).
fn model(bound: Bound, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = match bound {
        Bound::Exhaustive => None,
        Bound::Extra(extra) => Some(builder.preemption_bound.unwrap_or(2) + extra),
    };
    let bound = builder.preemption_bound;
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, Relaxed);
        f();
    });
    let name = std::thread::current().name().map(str::to_owned);
    let bound = bound.map_or("none (exhaustive)".to_owned(), |b| b.to_string());
    eprintln!(
        "{}: {} interleavings, preemption bound {bound}",
        name.as_deref().unwrap_or("model"),
        runs.load(Relaxed)
    );
}

fn poll_noop<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Spawns a loom thread that runs `f` on a clone of `w`.
fn spawn_with<T, R>(
    w: &Arc<ValueWatcher<T>>,
    f: impl FnOnce(&ValueWatcher<T>) -> R + Send + 'static,
) -> thread::JoinHandle<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let w = w.clone();
    thread::spawn(move || f(&w))
}

/// Records the first value a predicate is shown (`u64::MAX` until then).
#[derive(Clone)]
struct FirstSeen(std::sync::Arc<AtomicU64>);

impl FirstSeen {
    fn new() -> Self {
        Self(std::sync::Arc::new(AtomicU64::new(u64::MAX)))
    }

    fn record(&self, v: u64) {
        let _ = self.0.compare_exchange(u64::MAX, v, Relaxed, Relaxed);
    }

    fn get(&self) -> u64 {
        let v = self.0.load(Relaxed);
        assert_ne!(v, u64::MAX, "the predicate was never called");
        v
    }
}

// === lost wake-ups (SPEC 3.4) ===

/// A setter racing a waiter's first poll (check, then registration): the
/// waiter finishes with the value.
#[test]
fn lost_wakeup_wait_for() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let setter = spawn_with(&w, |w| w.set(1));
        assert_eq!(block_on(w.wait_for(1)), 1);
        assert!(setter.join().unwrap());
    });
}

/// The same race with the other future kinds.
#[test]
fn lost_wakeup_wait_for_not_and_some() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(None::<u8>));
        let setter = spawn_with(&w, |w| w.set(Some(5)));
        assert_eq!(block_on(w.wait_for_some()), 5);
        assert_eq!(block_on(w.wait_for_not(None)), Some(5));
        setter.join().unwrap();
    });
}

/// The waiter on a spawned thread, the setter on the main thread doing two
/// transitions; the waiter wants the second one.
#[test]
fn lost_wakeup_waiter_on_other_thread() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u64));
        let waiter = spawn_with(&w, |w| block_on(w.wait_for(2)));
        w.modify(|v| *v += 1);
        w.modify(|v| *v += 1);
        assert_eq!(waiter.join().unwrap(), 2);
    });
}

// === transient capture (SPEC 3.2) ===

/// A waiter for "Closing or later" whose first poll races a setter doing
/// Closing then Closed. If its first check already found Closed, the first
/// matching value after the wait started is Closed; in every other
/// interleaving it must be Closing, even when Closed was set before the
/// waiting thread ran again.
#[test]
fn transient_capture_racing_first_poll() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(Conn::Connected));
        let setter = spawn_with(&w, |w| {
            w.set(Conn::Closing);
            w.set(Conn::Closed);
        });
        let first = std::sync::Arc::new(StdMutex::new(None));
        let f = first.clone();
        let got = block_on(w.wait_until(move |c| {
            f.lock().unwrap().get_or_insert(*c);
            *c >= Conn::Closing
        }));
        let first = first.lock().unwrap().expect("predicate called");
        let expected = if first == Conn::Closed {
            Conn::Closed
        } else {
            Conn::Closing
        };
        assert_eq!(got, expected, "first check saw {first:?}");
        setter.join().unwrap();
    });
}

/// Waiters registered before the setter starts (three kinds, all matching
/// Closing, so with a wake batch of one, two of them go through the queued
/// list): every one gets Closing, whenever the waiting thread runs.
#[test]
fn transient_capture_registered_waiters() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(Conn::Connected));
        let mut exact = Box::pin(w.wait_for(Conn::Closing));
        let mut not_connected = Box::pin(w.wait_for_not(Conn::Connected));
        let mut at_least = Box::pin(w.wait_until(|c| *c >= Conn::Closing));
        assert!(poll_noop(exact.as_mut()).is_pending());
        assert!(poll_noop(not_connected.as_mut()).is_pending());
        assert!(poll_noop(at_least.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| {
            w.set(Conn::Closing);
            w.set(Conn::Closed);
        });
        // Re-polled with a new waker while the setter may be choosing them.
        assert_eq!(block_on(exact), Conn::Closing);
        assert_eq!(block_on(not_connected), Conn::Closing);
        assert_eq!(block_on(at_least), Conn::Closing);
        setter.join().unwrap();
        assert_eq!(w.version(), 2);
    });
}

/// `wait_for_some` keeps a transient `Some` that was reset to `None` at once.
#[test]
fn transient_capture_wait_for_some() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(None::<u8>));
        let mut some = Box::pin(w.wait_for_some());
        assert!(poll_noop(some.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| {
            w.set(Some(1));
            w.set(None);
        });
        assert_eq!(block_on(some), 1);
        setter.join().unwrap();
    });
}

// === cancellation (SPEC 3.7) ===

/// Polls a fresh `wait_for(target)` (must be pending), sets `target` from
/// this thread, and checks that the wait completes: the list still works.
fn list_still_works(w: &ValueWatcher<u8>, target: u8) {
    let mut fresh = pin!(w.wait_for(target));
    assert!(poll_noop(fresh.as_mut()).is_pending());
    assert!(w.set(target));
    assert_eq!(poll_noop(fresh.as_mut()), Poll::Ready(target));
}

/// A registered wait dropped while a setter offers it the value it waits for.
#[test]
fn cancel_races_set() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut fut = Box::pin(w.wait_for(1));
        assert!(poll_noop(fut.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set(1));
        drop(fut);
        setter.join().unwrap();
        list_still_works(&w, 2);
    });
}

/// Waiters A and B for the same value and C for another, registered in that
/// order. With a batch of one, the setter wakes A from its batch and leaves B
/// in the queued list until it has unlocked; B is dropped meanwhile (before,
/// during or after the walk or the drain). A gets its value, C stays
/// registered and still works, and nothing touches B's freed node.
#[test]
fn cancel_races_queued_wake() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut a = Box::pin(w.wait_for(1));
        let mut b = Box::pin(w.wait_for(1));
        let mut c = Box::pin(w.wait_for(2));
        assert!(poll_noop(a.as_mut()).is_pending());
        assert!(poll_noop(b.as_mut()).is_pending());
        assert!(poll_noop(c.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set(1));
        drop(b);
        assert_eq!(block_on(a), 1);
        setter.join().unwrap();
        assert!(poll_noop(c.as_mut()).is_pending());
        assert!(w.set(2));
        assert_eq!(poll_noop(c.as_mut()), Poll::Ready(2));
        list_still_works(&w, 3);
    });
}

/// The batched waiter A is dropped while the setter still holds its waker
/// (and B is queued): the setter wakes a waker whose future is gone, which
/// must be harmless, and B still gets the value.
#[test]
fn cancel_batched_waiter_before_wake() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut a = Box::pin(w.wait_for(1));
        let mut b = Box::pin(w.wait_for(1));
        assert!(poll_noop(a.as_mut()).is_pending());
        assert!(poll_noop(b.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set(1));
        drop(a);
        assert_eq!(block_on(b), 1);
        setter.join().unwrap();
        list_still_works(&w, 2);
    });
}

/// Waiters A and B registered, then the setter runs while the main thread is
/// blocked on B: A is woken from the batch, B only by the setter's drain of
/// the queued list after it unlocked.
#[test]
fn queued_waiter_is_woken() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut a = Box::pin(w.wait_for(1));
        let mut b = Box::pin(w.wait_for(1));
        assert!(poll_noop(a.as_mut()).is_pending());
        assert!(poll_noop(b.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set(1));
        assert_eq!(block_on(b), 1);
        assert_eq!(block_on(a), 1);
        setter.join().unwrap();
        list_still_works(&w, 2);
    });
}

/// Two async waiters on two threads whose first polls race the setter:
/// when both registered first, one of them is woken through the queued list.
#[test]
fn two_async_waiters_on_two_threads() {
    model(Bound::Extra(2), || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let other = spawn_with(&w, |w| block_on(w.wait_for(1)));
        let setter = spawn_with(&w, |w| w.set(1));
        assert_eq!(block_on(w.wait_for(1)), 1);
        assert_eq!(other.join().unwrap(), 1);
        setter.join().unwrap();
    });
}

/// A queued waiter polled (spuriously, with another waker) before the setter
/// drains it takes its outcome early and is then dropped: the setter's drain
/// must not find it any more. The batched waiter still completes.
#[test]
fn queued_waiter_completes_before_drain() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut a = Box::pin(w.wait_for(1));
        let mut b = Box::pin(w.wait_for(1));
        assert!(poll_noop(a.as_mut()).is_pending());
        assert!(poll_noop(b.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set(1));
        match poll_noop(b.as_mut()) {
            Poll::Ready(v) => assert_eq!(v, 1),
            Poll::Pending => {}
        }
        drop(b);
        assert_eq!(block_on(a), 1);
        setter.join().unwrap();
        list_still_works(&w, 2);
    });
}

/// A wait on another thread registers and is dropped there, racing a
/// setter: the main thread's waiter (registered before) is unaffected.
#[test]
fn cancel_on_other_thread_races_set() {
    model(Bound::Extra(3), || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut kept = Box::pin(w.wait_for(1));
        assert!(poll_noop(kept.as_mut()).is_pending());
        let canceller = spawn_with(&w, |w| {
            let mut fut = pin!(w.wait_for(1));
            // Ready(1) if the set came first, else registered, then dropped.
            match poll_noop(fut.as_mut()) {
                Poll::Ready(v) => assert_eq!(v, 1),
                Poll::Pending => {}
            }
        });
        let setter = spawn_with(&w, |w| w.set(1));
        assert_eq!(block_on(kept), 1);
        canceller.join().unwrap();
        setter.join().unwrap();
        list_still_works(&w, 2);
    });
}

// === several waiters, two setters (SPEC 3.2, 3.5) ===

/// Waiters registered before two setters race `modify(|v| *v += 1)`: the
/// transitions are 1 then 2, whichever setter makes which, and every waiter
/// gets the first value of that order that matches it. Five matching
/// waiters and a batch of one: both setters overflow, and one setter's drain
/// may hand out nodes the other queued.
#[test]
fn several_waiters_two_setters() {
    model(Bound::Extra(2), || {
        let w = Arc::new(ValueWatcher::new(0u64));
        let mut at_least_one = Box::pin(w.wait_until(|v| *v >= 1));
        let mut two = Box::pin(w.wait_for(2));
        let mut even = Box::pin(w.wait_until(|v| *v % 2 == 0).immediate(false));
        let mut change = Box::pin(w.wait_for_change());
        let mut not_zero = Box::pin(w.wait_for_not(0));
        assert!(poll_noop(at_least_one.as_mut()).is_pending());
        assert!(poll_noop(two.as_mut()).is_pending());
        assert!(poll_noop(even.as_mut()).is_pending());
        assert!(poll_noop(change.as_mut()).is_pending());
        assert!(poll_noop(not_zero.as_mut()).is_pending());
        let setters = [
            spawn_with(&w, |w| w.modify(|v| *v += 1)),
            spawn_with(&w, |w| w.modify(|v| *v += 1)),
        ];
        assert_eq!(block_on(at_least_one), 1);
        assert_eq!(block_on(two), 2);
        assert_eq!(block_on(even), 2);
        assert_eq!(block_on(change), 1);
        assert_eq!(block_on(not_zero), 1);
        for s in setters {
            assert!(s.join().unwrap());
        }
        assert_eq!((w.get(), w.version()), (2, 2));
    });
}

/// A waiter whose first poll races two incrementing setters: it returns the
/// first value >= 1 from the point its first check saw, i.e. 1 unless that
/// check already saw 2, even if both transitions happened before it ran
/// again.
#[test]
fn racing_waiter_two_setters() {
    model(Bound::Extra(3), || {
        let w = Arc::new(ValueWatcher::new(0u64));
        let setters = [
            spawn_with(&w, |w| w.modify(|v| *v += 1)),
            spawn_with(&w, |w| w.modify(|v| *v += 1)),
        ];
        let first = FirstSeen::new();
        let f = first.clone();
        let got = block_on(w.wait_until(move |v| {
            f.record(*v);
            *v >= 1
        }));
        assert_eq!(got, first.get().max(1), "first check saw {}", first.get());
        for s in setters {
            s.join().unwrap();
        }
        assert_eq!(w.version(), 2);
    });
}

// === set_if, modify, callbacks (SPEC 2, 3.9, 3.11) ===

/// `set_if` is atomic: of two racing compare-and-sets from 0, exactly one
/// wins; the value is the winner's, there was one transition, and a waiter
/// registered before sees exactly that transition.
#[test]
fn set_if_is_atomic() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut change = Box::pin(w.wait_for_change());
        assert!(poll_noop(change.as_mut()).is_pending());
        let racers = [1u8, 2].map(|me| spawn_with(&w, move |w| w.set_if(me, |v| *v == 0)));
        let wins = racers.map(|r| r.join().unwrap());
        assert_eq!(wins.iter().filter(|won| **won).count(), 1, "{wins:?}");
        let winner = if wins[0] { 1 } else { 2 };
        assert_eq!((w.get(), w.version()), (winner, 1));
        assert_eq!(poll_noop(change.as_mut()), Poll::Ready(winner));
    });
}

/// `modify` is an atomic read-modify-write: two racing increments never
/// lose one, and each reports a transition.
#[test]
fn modify_is_atomic() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u64));
        let other = spawn_with(&w, |w| w.modify(|v| *v += 1));
        assert!(w.modify(|v| *v += 1));
        assert!(other.join().unwrap());
        assert_eq!((w.get(), w.version()), (2, 2));
    });
}

/// `on_value` fires exactly once although two setters race into the value
/// (one sets 7, the other 1 then 7: two transitions into 7 are possible).
#[test]
fn on_value_fires_exactly_once() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        w.on_value(7, move || {
            c.fetch_add(1, Relaxed);
        });
        let a = spawn_with(&w, |w| w.set(7));
        let b = spawn_with(&w, |w| {
            w.set(1);
            w.set(7);
        });
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(calls.load(Relaxed), 1);
    });
}

/// Registering `on_value(1, ..)` while another thread sets 1: the callback
/// runs exactly once, either at once in `on_value` or in the setter.
#[test]
fn on_value_registration_races_set() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let setter = spawn_with(&w, |w| w.set(1));
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        w.on_value(1, move || {
            c.fetch_add(1, Relaxed);
        });
        setter.join().unwrap();
        assert_eq!(calls.load(Relaxed), 1);
    });
}

/// Removing an `on_value` callback while another thread sets its value: it
/// runs exactly when the removal reported it as no longer registered.
#[test]
fn remove_callback_races_set() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let id = w.on_value(1, move || {
            c.fetch_add(1, Relaxed);
        });
        let setter = spawn_with(&w, |w| w.set(1));
        let removed = w.remove_callback(id);
        setter.join().unwrap();
        assert_eq!(
            calls.load(Relaxed),
            usize::from(!removed),
            "removed: {removed}"
        );
        assert!(!w.remove_callback(id));
    });
}

/// `on_change` under two racing incrementing setters sees each transition
/// once, with the right old and new values (the two calls may run in
/// either order).
#[test]
fn on_change_sees_every_transition() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u64));
        let seen = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let s = seen.clone();
        w.on_change(move |old, new| s.lock().unwrap().push((*old, *new)));
        let setters = [
            spawn_with(&w, |w| w.modify(|v| *v += 1)),
            spawn_with(&w, |w| w.modify(|v| *v += 1)),
        ];
        for s in setters {
            s.join().unwrap();
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, [(0, 1), (1, 2)]);
    });
}

/// Counts its drops and fails if dropped while its callback runs. The flag
/// is a loom atomic, so loom may switch threads inside the callback.
struct DropCheck {
    running: Arc<loom::sync::atomic::AtomicBool>,
    drops: std::sync::Arc<AtomicUsize>,
}

impl Drop for DropCheck {
    fn drop(&mut self) {
        assert!(
            !self.running.load(Relaxed),
            "callback freed while a setter runs it"
        );
        self.drops.fetch_add(1, Relaxed);
    }
}

/// The callback list is walked outside the lock. A setter walking it races
/// the removal of the callback it is about to run and the registration of a
/// new one (which links itself behind the walk's last entry): loom checks
/// every access to the entries' links, the removed closure is freed exactly
/// once and never while it runs, and the new one runs at most once.
#[test]
fn callback_walk_races_remove_and_register() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let running = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let check = DropCheck {
            running: running.clone(),
            drops: drops.clone(),
        };
        let (r, c) = (running.clone(), calls.clone());
        let id = w.on_change(move |_, _| {
            let _ = &check;
            r.store(true, Relaxed);
            c.fetch_add(1, Relaxed);
            r.store(false, Relaxed);
        });
        let setter = spawn_with(&w, |w| w.set(1));
        assert!(w.remove_callback(id));
        let later = std::sync::Arc::new(AtomicUsize::new(0));
        let l = later.clone();
        w.on_change(move |_, _| {
            l.fetch_add(1, Relaxed);
        });
        setter.join().unwrap();
        assert!(calls.load(Relaxed) <= 1);
        assert!(later.load(Relaxed) <= 1);
        assert_eq!(drops.load(Relaxed), 1, "removed closure freed once");
    });
}

/// Two setters race into an `on_value` target while a third thread's
/// `on_change` keeps a walk going: the one-shot runs once, and its target is
/// dropped by the time both setters returned (SPEC 3.19).
#[test]
fn one_shot_claimed_once_and_freed_by_its_setters() {
    #[derive(Clone)]
    struct Target(u8, std::sync::Arc<AtomicUsize>);
    impl PartialEq for Target {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }
    impl Drop for Target {
        fn drop(&mut self) {
            self.1.fetch_add(1, Relaxed);
        }
    }
    model(Bound::Extra(1), || {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let plain = std::sync::Arc::new(AtomicUsize::new(0));
        let w = Arc::new(ValueWatcher::new(Target(0, plain.clone())));
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        w.on_value(Target(7, drops.clone()), move || {
            c.fetch_add(1, Relaxed);
        });
        w.on_change(|_, _| {});
        let p = plain.clone();
        let a = spawn_with(&w, move |w| w.set(Target(7, p)));
        let p = plain.clone();
        let b = spawn_with(&w, move |w| {
            w.set(Target(1, p.clone()));
            w.set(Target(7, p));
        });
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(calls.load(Relaxed), 1);
        assert_eq!(drops.load(Relaxed), 1, "the target went with its setter");
    });
}

/// SPEC 3.16: a `wait_transition` edge raced by two setters. Setter A goes
/// 0 -> 5 -> 1, setter B sets 3; whether a drop to 3 happened (`5 -> 3`) or
/// only `5 -> 1`, `0 -> 3`, `3 -> 5` ... depends on the interleaving. The
/// waiter for "the value dropped" must report the first drop of the actual
/// history, which `on_change` records exactly (each transition's pair).
#[test]
fn transition_edge_raced_by_two_setters() {
    model(Bound::Extra(1), || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let history = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let h = history.clone();
        w.on_change(move |old, new| h.lock().unwrap().push((*old, *new)));
        let mut fell = Box::pin(w.wait_transition(|old, new| new < old));
        assert!(poll_noop(fell.as_mut()).is_pending());
        let a = spawn_with(&w, |w| {
            w.set(5);
            w.set(1);
        });
        let b = spawn_with(&w, |w| w.set(3));
        a.join().unwrap();
        b.join().unwrap();
        // Callbacks of concurrent setters may run out of order: sort the
        // pairs into the chain the transitions formed, from 0.
        let mut pairs = history.lock().unwrap().clone();
        let mut chain = Vec::new();
        let mut at = 0u8;
        while let Some(i) = pairs.iter().position(|(old, _)| *old == at) {
            let (_, new) = pairs.swap_remove(i);
            chain.push((at, new));
            at = new;
        }
        assert!(
            pairs.is_empty(),
            "history is not one chain: {chain:?} + {pairs:?}"
        );
        let first_drop = chain.iter().find(|(old, new)| new < old).map(|p| p.1);
        match first_drop {
            Some(v) => assert_eq!(poll_noop(fell.as_mut()), Poll::Ready(v), "{chain:?}"),
            None => assert!(poll_noop(fell.as_mut()).is_pending(), "{chain:?}"),
        }
    });
}

// === the woken future's lock-free take (issue 12) ===

/// The owner polls, without a waker that could block it, while a setter on
/// another thread chooses its node: each poll either finds the node still
/// `Waiting` (and takes the lock) or finds it `Ready` and takes the captured
/// `String` without the lock. The setter's writes to the matcher (the clone)
/// and to the node must happen before that take: loom reports the access to
/// the matcher's cell otherwise (checked by weakening the setter's `Release`
/// store of `Ready` to `Relaxed`: this model then fails).
#[test]
fn lock_free_take_races_publish() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(String::new()));
        let mut fut = Box::pin(w.wait_until(|s: &String| !s.is_empty()));
        assert!(poll_noop(fut.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set("ready".to_owned()));
        let got = loop {
            match poll_noop(fut.as_mut()) {
                Poll::Ready(v) => break v,
                Poll::Pending => thread::yield_now(),
            }
        };
        assert_eq!(got, "ready");
        setter.join().unwrap();
        // The node went back to idle without the lock: the list is intact.
        let mut next = Box::pin(w.wait_for("again".to_owned()));
        assert!(poll_noop(next.as_mut()).is_pending());
        assert!(w.set("again".to_owned()));
        assert_eq!(poll_noop(next.as_mut()), Poll::Ready("again".to_owned()));
    });
}

/// A registered future dropped while a setter chooses it: the drop either
/// unlinks the node under the lock, or finds it `Ready` and frees the
/// captured `String` (and the future) without the lock, after the setter's
/// last access. The other waiter still gets the value, and the list works.
#[test]
fn drop_races_publish() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(String::new()));
        let mut gone = Box::pin(w.wait_until(|s: &String| !s.is_empty()));
        let mut kept = Box::pin(w.wait_for("x".to_owned()));
        assert!(poll_noop(gone.as_mut()).is_pending());
        assert!(poll_noop(kept.as_mut()).is_pending());
        let setter = spawn_with(&w, |w| w.set("x".to_owned()));
        drop(gone);
        assert_eq!(block_on(kept), "x");
        setter.join().unwrap();
        let mut next = Box::pin(w.wait_for("y".to_owned()));
        assert!(poll_noop(next.as_mut()).is_pending());
        assert!(w.set("y".to_owned()));
        assert_eq!(poll_noop(next.as_mut()), Poll::Ready("y".to_owned()));
    });
}

// === blocking waits (loom's park/unpark) ===

/// A blocking `.wait()` racing a setter.
#[test]
fn blocking_wait_races_set() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let setter = spawn_with(&w, |w| w.set(1));
        assert_eq!(w.wait_for_not(0).wait(), 1);
        setter.join().unwrap();
    });
}

/// A blocking wait for "Closing or later" racing Closing then Closed: as
/// the async case, exact from the value its first check saw.
#[test]
fn blocking_wait_transient_capture() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(Conn::Connected));
        let setter = spawn_with(&w, |w| {
            w.set(Conn::Closing);
            w.set(Conn::Closed);
        });
        let first = std::sync::Arc::new(StdMutex::new(None));
        let f = first.clone();
        let got = w
            .wait_until(move |c| {
                f.lock().unwrap().get_or_insert(*c);
                *c >= Conn::Closing
            })
            .wait();
        let first = first.lock().unwrap().expect("predicate called");
        let expected = if first == Conn::Closed {
            Conn::Closed
        } else {
            Conn::Closing
        };
        assert_eq!(got, expected, "first check saw {first:?}");
        setter.join().unwrap();
    });
}

/// Two threads blocked on the same value and one setter: with a batch of
/// one, one waiter is unparked from the batch and the other from the
/// queued list after the setter unlocked.
#[test]
fn blocking_waiters_through_queued_list() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let other = spawn_with(&w, |w| w.wait_for(1).wait());
        let setter = spawn_with(&w, |w| w.set(1));
        assert_eq!(w.wait_for(1).wait(), 1);
        assert_eq!(other.join().unwrap(), 1);
        setter.join().unwrap();
    });
}

// === changes() (SPEC 3.13) ===

/// The stream registering while a setter does 1 then 2: it yields strictly
/// increasing values and always reaches 2 (no lost wake-up between its
/// version check and its registration).
#[test]
fn changes_stream_races_set() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut changes = w.changes();
        let setter = spawn_with(&w, |w| {
            w.set(1);
            w.set(2);
        });
        let mut items = Vec::new();
        while items.last() != Some(&2) {
            let item = block_on(changes.next()).expect("changes() never ends");
            assert!(
                items.last().is_none_or(|last| item > *last),
                "{items:?} then {item}"
            );
            items.push(item);
        }
        setter.join().unwrap();
        assert_eq!(w.version(), 2);
    });
}

/// Two registered streams and a setter (batch of one: one stream is
/// queued); one stream is dropped meanwhile, the other still gets the value.
#[test]
fn changes_stream_dropped_while_queued() {
    model(Bound::Exhaustive, || {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut kept = w.changes();
        let mut dropped = w.changes();
        assert!(poll_noop(pin!(kept.next())).is_pending());
        assert!(poll_noop(pin!(dropped.next())).is_pending());
        let setter = spawn_with(&w, |w| w.set(1));
        drop(dropped);
        assert_eq!(block_on(kept.next()), Some(1));
        setter.join().unwrap();
        list_still_works(&w, 2);
    });
}
