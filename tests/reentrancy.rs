//! SPEC §3.17-3.19: where user code runs, what it may do to its own watcher,
//! and what happens if it does. One test (or a group) per cell of the hooks
//! table in the crate docs ("Hooks: where your code runs").
//!
//! Hooks that run *outside* the lock (the `Drop` of `T`, of wakers, of
//! predicates and callbacks; `Waker::wake`; callbacks) re-enter the watcher
//! with [`touch`]: read it, register and remove a callback, create, poll and
//! drop a wait future and a stream. That must work with both locks. Had the
//! hook run under the lock, the spinlock would deadlock (the watchdog turns
//! the hang into a failure with a message) and the critical section would
//! panic (caught here, so the test fails with the cell's name).
//!
//! Hooks that run *under* the lock (`PartialEq`, `Clone`, predicates, the
//! closures of `with`, `set_if` and `modify`, `Waker::clone`) may not use the
//! watcher. With the spinlock that deadlocks (documented, not tested); with
//! `critical-section` the reentrant call panics, and dropping a registered
//! wait future or stream there aborts the process instead of freeing a node
//! that is still linked (the use-after-free of issue 9). The abort tests run
//! in a child process: this test binary, re-run on the one test.
#![cfg(panic = "unwind")]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

#[cfg(feature = "critical-section")]
use common::counting_waker;
use common::{message, poll_noop, poll_with, watchdog};
use futures_lite::StreamExt;
use value_watcher::ValueWatcher;

// === the probe ===

/// Counts re-entries from one test's hooks, and which of them failed.
#[derive(Default)]
struct Probe {
    watcher: OnceLock<&'static ValueWatcher<Val>>,
    /// Re-entries that worked.
    ok: AtomicUsize,
    /// Re-entries that hit a held lock (critical-section panics).
    failed: Mutex<Vec<String>>,
    /// Whether `Val::eq` panics.
    eq_panics: AtomicBool,
    /// Whether `Val::clone` panics.
    clone_panics: AtomicBool,
    /// Whether `Val::eq`, `Val::clone`, `Val`'s `Debug` run the pending hook
    /// action (see `fire`).
    eq_fires: AtomicBool,
    clone_fires: AtomicBool,
    debug_fires: AtomicBool,
}

/// Uses `w` the way a hook might: read, callbacks, a future and a stream.
/// Leaves the value and version as they were.
fn touch(w: &ValueWatcher<Val>) {
    let version = w.version();
    w.with(|_| ());
    let id = w.on_change(|_, _| {});
    assert!(w.remove_callback(id));
    let mut fut = Box::pin(w.wait_for_change());
    assert!(poll_noop(fut.as_mut()).is_pending());
    drop(fut);
    let mut changes = w.changes();
    assert!(poll_noop(Pin::new(&mut changes.next())).is_pending());
    drop(changes);
    assert_eq!(w.version(), version);
}

impl Probe {
    fn new() -> &'static Probe {
        Box::leak(Box::default())
    }

    /// A leaked watcher holding the plain value `n`, known to the probe.
    fn watcher(&'static self, n: u32) -> &'static ValueWatcher<Val> {
        let w = Box::leak(Box::new(ValueWatcher::new(Val::plain(n))));
        assert!(self.watcher.set(w).is_ok());
        w
    }

    /// Re-enters the watcher from a hook named `hook`.
    fn reenter(&self, hook: &str) {
        let w = self.watcher.get().expect("probe has a watcher");
        match catch_unwind(AssertUnwindSafe(|| touch(w))) {
            Ok(()) => {
                self.ok.fetch_add(1, SeqCst);
            }
            Err(payload) => self
                .failed
                .lock()
                .unwrap()
                .push(format!("{hook}: {}", message(&*payload))),
        }
    }

    /// Asserts every re-entry so far worked, and returns how many there were.
    fn worked(&self) -> usize {
        let failed = self.failed.lock().unwrap();
        assert!(failed.is_empty(), "re-entries failed: {failed:?}");
        self.ok.load(SeqCst)
    }
}

/// A watched number. A probing value re-enters its watcher when dropped, and
/// its `PartialEq` and `Clone` panic (or run the pending hook action) when
/// the probe says so. Equality looks at the number only.
struct Val {
    n: u32,
    probe: Option<&'static Probe>,
}

impl Val {
    fn plain(n: u32) -> Val {
        Val { n, probe: None }
    }
}

impl Probe {
    fn val(&'static self, n: u32) -> Val {
        Val {
            n,
            probe: Some(self),
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if let Some(probe) = self.probe {
            probe.reenter("Drop of T");
        }
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        for p in [self.probe, other.probe].into_iter().flatten() {
            if p.eq_panics.load(SeqCst) {
                panic!("eq panic");
            }
            if p.eq_fires.load(SeqCst) {
                fire();
            }
        }
        self.n == other.n
    }
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.probe.is_some_and(|p| p.debug_fires.load(SeqCst)) {
            fire();
        }
        write!(f, "Val({})", self.n)
    }
}

impl Clone for Val {
    fn clone(&self) -> Val {
        if self.probe.is_some_and(|p| p.clone_panics.load(SeqCst)) {
            panic!("clone panic");
        }
        if self.probe.is_some_and(|p| p.clone_fires.load(SeqCst)) {
            fire();
        }
        Val {
            n: self.n,
            probe: self.probe,
        }
    }
}

/// Fails the test (by aborting with a message) if it hangs: with the
/// spinlock, a hook that ran under the lock and re-entered would spin forever.
fn guard(what: &'static str) -> common::Watchdog {
    watchdog(what, 60)
}

fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => message(&*payload),
    }
}

// === Drop of T: never under the lock ===

#[test]
fn drop_of_t_rejected_by_set_is_outside_the_lock() {
    let _g = guard("drop of a rejected value");
    let p = Probe::new();
    let w = p.watcher(1);
    assert!(!w.set(p.val(1))); // equal: dropped by `set`
    assert!(!w.set_if(p.val(2), |_| false)); // condition false
    assert_eq!(p.worked(), 2);
}

#[test]
fn drop_of_t_replaced_by_a_transition_is_outside_the_lock() {
    let _g = guard("drop of the old value");
    let p = Probe::new();
    let w = p.watcher(0);
    assert!(w.set(p.val(1)));
    assert!(w.set(Val::plain(2))); // drops the probing 1
    assert!(w.set_if(p.val(3), |_| true));
    // The old value of a `modify` is its backup clone, dropped unlocked. (A
    // closure that assigns `*v = ..` drops the value it overwrites itself,
    // under the lock: that is the closure's own code.)
    assert!(w.modify(|v| v.n = 4));
    assert_eq!(p.worked(), 2);
    w.set(p.val(5)); // drops the probing 4
    assert_eq!(p.worked(), 3);
    // `modify` that changes nothing keeps the old value and drops the equal
    // result, unlocked.
    assert!(!w.modify(|v| v.n = 5));
    assert_eq!(p.worked(), 4);
}

/// Defect 3 of issue 9: a panicking `T::eq` in `set` unwound with the
/// moved-in value still inside the closure that ran under the lock.
#[test]
fn drop_of_t_after_a_panicking_eq_in_set_is_outside_the_lock() {
    let _g = guard("drop after a panicking eq");
    let p = Probe::new();
    let w = p.watcher(0);
    p.eq_panics.store(true, SeqCst);
    assert_eq!(panic_message(|| w.set(p.val(1))), "eq panic");
    assert_eq!(panic_message(|| w.set_if(p.val(1), |_| true)), "eq panic");
    p.eq_panics.store(false, SeqCst);
    assert_eq!(p.worked(), 2);
    assert_eq!(w.version(), 0);
}

#[test]
fn drop_of_t_after_a_panicking_set_if_condition_is_outside_the_lock() {
    let _g = guard("drop after a panicking condition");
    let p = Probe::new();
    let w = p.watcher(0);
    let msg = panic_message(|| w.set_if(p.val(1), |_| panic!("condition panic")));
    assert_eq!(msg, "condition panic");
    assert_eq!(p.worked(), 1);
    assert_eq!(w.version(), 0);
}

/// `modify`'s restore used to drop the half-modified value under the lock.
#[test]
fn drop_of_t_half_modified_by_a_panicking_modify_is_outside_the_lock() {
    let _g = guard("drop of a half-modified value");
    let p = Probe::new();
    let w = p.watcher(0);
    let msg = panic_message(|| {
        w.modify(|v| {
            *v = p.val(9);
            panic!("modify panic");
        })
    });
    assert_eq!(msg, "modify panic");
    assert_eq!(p.worked(), 1);
    assert_eq!(w.with(|v| v.n), 0, "the old value is back");
    // A panicking `eq` after the closure: the result is dropped outside too.
    w.set(p.val(1));
    p.eq_panics.store(true, SeqCst);
    assert_eq!(panic_message(|| w.modify(|v| v.n = 2)), "eq panic");
    p.eq_panics.store(false, SeqCst);
    assert_eq!(w.with(|v| v.n), 1);
    // The half-modified probing value (and the clone of the backup that
    // became the current value again) re-entered from its drop.
    assert!(p.worked() >= 2);
}

#[test]
fn drop_of_t_in_on_value_is_outside_the_lock() {
    let _g = guard("drop of on_value targets");
    let p = Probe::new();
    let w = p.watcher(0);
    // Ran at once: the target is dropped before the closure runs.
    w.on_value(p.val(0), || {});
    assert_eq!(p.worked(), 1);
    // Fired by a set: the target is dropped by that set.
    w.on_value(p.val(1), || {});
    w.set(Val::plain(1));
    assert_eq!(p.worked(), 2);
    // Removed: dropped by `remove_callback`.
    let id = w.on_value(p.val(7), || {});
    assert!(w.remove_callback(id));
    assert_eq!(p.worked(), 3);
    // `eq` panicking at registration: target and closure dropped unlocked.
    w.set(p.val(2));
    p.eq_panics.store(true, SeqCst);
    assert_eq!(panic_message(|| w.on_value(p.val(3), || {})), "eq panic");
    p.eq_panics.store(false, SeqCst);
    assert_eq!(p.worked(), 4);
}

#[test]
fn drop_of_t_captured_by_a_wait_future_is_outside_the_lock() {
    let _g = guard("drop of a captured value");
    let p = Probe::new();
    let w = p.watcher(0);
    // A wait_for target, dropped with its future.
    drop(w.wait_for(p.val(5)));
    assert_eq!(p.worked(), 1);
    // A captured outcome the future never handed out.
    let mut fut = Box::pin(w.wait_for_change());
    assert!(poll_noop(fut.as_mut()).is_pending());
    w.set(p.val(1)); // the waiter captures a probing clone
    let before = p.worked();
    drop(fut);
    assert_eq!(p.worked(), before + 1);
}

/// What a `wait_map` function extracted and the future never handed out is
/// dropped with the future, outside the lock.
#[test]
fn drop_of_a_wait_map_output_is_outside_the_lock() {
    let _g = guard("drop of a wait_map output");
    let p = Probe::new();
    let w = p.watcher(0);
    let mut fut = Box::pin(w.wait_map(move |v| (v.n == 1).then(|| Tripwire(p))));
    assert!(poll_noop(fut.as_mut()).is_pending());
    w.set(Val::plain(1)); // the function's output is kept for the future
    assert_eq!(p.worked(), 0);
    drop(fut);
    assert_eq!(p.worked(), 1);
}

// === Drop of wakers: never under the lock (defect 2) ===

/// A waker whose last reference re-enters the probe's watcher when dropped.
struct ProbingWaker(&'static Probe);

impl Wake for ProbingWaker {
    fn wake(self: Arc<Self>) {}
}

impl Drop for ProbingWaker {
    fn drop(&mut self) {
        self.0.reenter("Drop of a waker");
    }
}

#[test]
fn drop_of_a_waker_held_by_a_cancelled_future_is_outside_the_lock() {
    let _g = guard("drop of a stored waker");
    let p = Probe::new();
    let w = p.watcher(0);
    let mut fut = Box::pin(w.wait_for(Val::plain(1)));
    let waker = Waker::from(Arc::new(ProbingWaker(p)));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    drop(waker); // the node holds the last reference now
    assert_eq!(p.worked(), 0);
    drop(fut);
    assert_eq!(p.worked(), 1);
}

#[test]
fn drop_of_a_waker_replaced_at_a_later_poll_is_outside_the_lock() {
    let _g = guard("drop of a replaced waker");
    let p = Probe::new();
    let w = p.watcher(0);
    let mut fut = Box::pin(w.wait_for(Val::plain(1)));
    let first = Waker::from(Arc::new(ProbingWaker(p)));
    assert!(poll_with(fut.as_mut(), &first).is_pending());
    drop(first);
    assert!(poll_noop(fut.as_mut()).is_pending()); // replaces it
    assert_eq!(p.worked(), 1);
    // The same for a stream.
    let mut changes = w.changes();
    let first = Waker::from(Arc::new(ProbingWaker(p)));
    let next =
        futures_core::Stream::poll_next(Pin::new(&mut changes), &mut Context::from_waker(&first));
    assert!(next.is_pending());
    drop(first);
    assert!(poll_noop(Pin::new(&mut changes.next())).is_pending());
    assert_eq!(p.worked(), 2);
    drop(changes);
}

#[test]
fn drop_of_a_waker_woken_by_a_setter_is_outside_the_lock() {
    let _g = guard("drop of a woken waker");
    let p = Probe::new();
    let w = p.watcher(0);
    let mut fut = Box::pin(w.wait_for(Val::plain(1)));
    let waker = Waker::from(Arc::new(ProbingWaker(p)));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    drop(waker);
    w.set(Val::plain(1)); // wakes (and so drops) the last reference
    assert_eq!(p.worked(), 1);
    assert_eq!(poll_noop(fut.as_mut()).map(|v| v.n), Poll::Ready(1));
}

/// A future that became ready and is then polled to completion gives back
/// nothing under the lock either (its waker went with the wake).
#[test]
fn drop_of_a_waker_taken_with_an_outcome_is_outside_the_lock() {
    let _g = guard("drop of a waker taken with the outcome");
    let p = Probe::new();
    let w = p.watcher(0);
    // 40 waiters: more than a wake batch, so some stay queued with their
    // wakers until the setter drains them; one of those is polled first,
    // from the first waker woken (the queued path of `take_outcome`).
    type Futs = Arc<Mutex<Vec<Pin<Box<value_watcher::WaitFor<'static, Val>>>>>>;
    let futs: Futs = Arc::new(Mutex::new(
        (0..40)
            .map(|_| Box::pin(w.wait_for(Val::plain(1))))
            .collect(),
    ));
    struct PollLast(Futs);
    impl Wake for PollLast {
        fn wake(self: Arc<Self>) {
            let mut futs = self.0.lock().unwrap();
            let last = futs.last_mut().unwrap();
            assert!(poll_noop(last.as_mut()).is_ready());
        }
    }
    let first = Waker::from(Arc::new(PollLast(futs.clone())));
    {
        let mut list = futs.lock().unwrap();
        assert!(poll_with(list[0].as_mut(), &first).is_pending());
        for fut in list[1..39].iter_mut() {
            assert!(poll_noop(fut.as_mut()).is_pending());
        }
        let probing = Waker::from(Arc::new(ProbingWaker(p)));
        assert!(poll_with(list[39].as_mut(), &probing).is_pending());
    }
    drop(first);
    w.set(Val::plain(1));
    assert_eq!(
        p.worked(),
        1,
        "the queued node's waker was dropped, unlocked"
    );
}

// === Waker::wake: outside the lock ===

struct TouchingWaker(&'static Probe);

impl Wake for TouchingWaker {
    fn wake(self: Arc<Self>) {
        self.0.reenter("Waker::wake");
    }
}

#[test]
fn waker_wake_runs_outside_the_lock() {
    let _g = guard("wake");
    let p = Probe::new();
    let w = p.watcher(0);
    let mut fut = Box::pin(w.wait_for(Val::plain(1)));
    let waker = Waker::from(Arc::new(TouchingWaker(p)));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    w.set(Val::plain(1));
    assert_eq!(p.worked(), 1);
    // A wake may also set the watcher: the next transition happens there.
    let mut fut = Box::pin(w.wait_for(Val::plain(2)));
    struct Setting(&'static ValueWatcher<Val>);
    impl Wake for Setting {
        fn wake(self: Arc<Self>) {
            self.0.set(Val::plain(3));
        }
    }
    let waker = Waker::from(Arc::new(Setting(w)));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    w.set(Val::plain(2));
    assert_eq!(w.with(|v| v.n), 3);
    assert_eq!(poll_noop(fut.as_mut()).map(|v| v.n), Poll::Ready(2));
}

// === callbacks: outside the lock ===

#[test]
fn callbacks_run_outside_the_lock_and_may_use_the_watcher() {
    let _g = guard("callbacks");
    let p = Probe::new();
    let w = p.watcher(0);
    let id = w.on_change(move |_, _| p.reenter("on_change"));
    w.on_value(Val::plain(1), move || p.reenter("on_value"));
    w.set(Val::plain(1));
    assert_eq!(p.worked(), 2);
    // A callback that sets: the nested transition runs its own callbacks.
    assert!(w.remove_callback(id));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    w.on_change(move |old, new| {
        s.lock().unwrap().push((old.n, new.n));
        if new.n == 2 {
            w.set(Val::plain(3));
        }
    });
    w.set(Val::plain(2));
    assert_eq!(*seen.lock().unwrap(), [(1, 2), (2, 3)]);
}

#[test]
fn on_value_run_at_once_runs_outside_the_lock() {
    let _g = guard("on_value at once");
    let p = Probe::new();
    let w = p.watcher(4);
    w.on_value(Val::plain(4), move || p.reenter("on_value at once"));
    assert_eq!(p.worked(), 1);
}

// === Drop of predicates and callbacks: outside the lock ===

/// Re-enters the probe's watcher when dropped.
struct Tripwire(&'static Probe);

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.0.reenter("Drop of a closure");
    }
}

#[test]
fn drop_of_predicates_and_callbacks_is_outside_the_lock() {
    let _g = guard("drop of closures");
    let p = Probe::new();
    let w = p.watcher(0);
    // A registered predicate, dropped with its future.
    let t = Tripwire(p);
    let mut fut = Box::pin(w.wait_until(move |v| {
        let _ = &t;
        v.n == 9
    }));
    assert!(poll_noop(fut.as_mut()).is_pending());
    drop(fut);
    assert_eq!(p.worked(), 1);
    // A removed `on_change` callback.
    let t = Tripwire(p);
    let id = w.on_change(move |_, _| {
        let _ = &t;
    });
    assert!(w.remove_callback(id));
    assert_eq!(p.worked(), 2);
    // A fired `on_value` closure (consumed when it runs).
    let t = Tripwire(p);
    w.on_value(Val::plain(1), move || drop(t));
    w.set(Val::plain(1));
    assert_eq!(p.worked(), 3);
    // A removed `on_value` closure.
    let t = Tripwire(p);
    let id = w.on_value(Val::plain(8), move || drop(t));
    assert!(w.remove_callback(id));
    assert_eq!(p.worked(), 4);
}

/// A callback removed while a setter on another thread is running it is
/// dropped only after that run ended, and then outside the lock.
#[test]
fn a_callback_removed_while_running_is_dropped_after_it_ran() {
    let _g = guard("removal during a run");
    let p = Probe::new();
    let w = p.watcher(0);
    let running = Arc::new(std::sync::Barrier::new(2));
    let release = Arc::new(std::sync::Barrier::new(2));
    let in_call = Arc::new(AtomicBool::new(false));
    struct Checked(Arc<AtomicBool>, &'static Probe);
    impl Drop for Checked {
        fn drop(&mut self) {
            assert!(!self.0.load(SeqCst), "callback dropped while running");
            self.1.reenter("Drop of a removed callback");
        }
    }
    let checked = Checked(in_call.clone(), p);
    let (r, l, c) = (running.clone(), release.clone(), in_call.clone());
    let id = w.on_change(move |_, _| {
        let _ = &checked;
        c.store(true, SeqCst);
        r.wait();
        l.wait();
        c.store(false, SeqCst);
    });
    let setter = std::thread::spawn(move || w.set(Val::plain(1)));
    running.wait(); // the callback is running on the setter thread
    assert!(w.remove_callback(id));
    assert_eq!(p.worked(), 0, "not dropped while it runs");
    release.wait();
    setter.join().unwrap();
    assert_eq!(p.worked(), 1, "dropped by the setter when it finished");
}

// === SPEC §3.19: spent one-shots ===

#[test]
fn a_fired_one_shot_is_freed_by_the_setter_that_fired_it() {
    let tracker = common::Tracker::new();
    let w = ValueWatcher::new(common::Tracker::new().make(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    w.on_value(tracker.make(1), move || {
        f.fetch_add(1, SeqCst);
    });
    assert_eq!(tracker.live(), 1);
    w.set(tracker.make(1));
    assert_eq!(fired.load(SeqCst), 1);
    // Only the current value is left: the target went with the set.
    assert_eq!(tracker.live(), 1);
}

/// A spent one-shot costs later sets no work: they compare nothing.
#[test]
fn a_spent_one_shot_is_never_compared_again() {
    let eqs = Arc::new(AtomicUsize::new(0));
    #[derive(Clone, Debug)]
    struct Counted(u32, Arc<AtomicUsize>);
    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            self.1.fetch_add(1, SeqCst);
            self.0 == other.0
        }
    }
    let w = ValueWatcher::new(Counted(0, eqs.clone()));
    w.on_value(Counted(1, eqs.clone()), || {});
    let id = w.on_value(Counted(5, eqs.clone()), || {});
    w.set(Counted(1, eqs.clone())); // fires the first
    assert!(w.remove_callback(id)); // removes the second
    let before = eqs.load(SeqCst);
    for n in 2..10 {
        w.set(Counted(n, eqs.clone()));
    }
    // One comparison per set (the new value against the old), nothing else.
    assert_eq!(eqs.load(SeqCst) - before, 8);
}

// === hooks under the lock, critical-section: a re-entry panics ===

thread_local! {
    /// The action the next hook call runs (see `fire`).
    static ACTION: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Called by the hooks under test: runs the pending action, if any.
fn fire() {
    if let Some(action) = ACTION.with(|a| a.borrow_mut().take()) {
        action();
    }
}

#[cfg(feature = "critical-section")]
mod under_the_lock {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    const REENTERED: &str = "value-watcher: a watcher was used from inside its own lock";

    /// From inside `hook` (which must call [`fire`] under the lock), every
    /// reentrant action panics with the message; creating a wait future,
    /// and dropping one that never registered, needs no lock and works. The watcher is usable afterwards.
    fn each_action_panics(w: &'static ValueWatcher<Val>, mut hook: impl FnMut()) {
        type Action = fn(&'static ValueWatcher<Val>);
        let actions: [(&str, Action); 10] = [
            ("get", |w| drop(w.get())),
            ("version", |w| {
                w.version();
            }),
            ("with", |w| w.with(|_| ())),
            ("set", |w| {
                w.set(Val::plain(77));
            }),
            ("on_change", |w| {
                w.on_change(|_, _| {});
            }),
            ("on_value", |w| {
                w.on_value(Val::plain(77), || {});
            }),
            ("remove_callback", |w| {
                let id = value_watcher::ValueWatcher::new(0).on_change(|_, _| {});
                w.remove_callback(id);
            }),
            ("poll a future", |w| {
                drop(poll_noop(Box::pin(w.wait_for(Val::plain(77))).as_mut()))
            }),
            ("create a stream (it reads the version)", |w| {
                drop(w.changes())
            }),
            ("poll a stream", |w| {
                drop(poll_noop(Pin::new(&mut w.changes().next())))
            }),
        ];
        for (name, action) in actions {
            let msg: Rc<RefCell<Option<String>>> = Rc::default();
            let m = msg.clone();
            ACTION.with(|a| {
                *a.borrow_mut() = Some(Box::new(move || {
                    *m.borrow_mut() = Some(panic_message(|| action(w)));
                }))
            });
            hook();
            let msg = msg.borrow_mut().take();
            let msg = msg.unwrap_or_else(|| panic!("{name}: the hook did not run"));
            assert!(msg.starts_with(REENTERED), "{name}: {msg}");
        }
        let ran = Rc::new(std::cell::Cell::new(false));
        let r = ran.clone();
        ACTION.with(|a| {
            *a.borrow_mut() = Some(Box::new(move || {
                drop(w.wait_for(Val::plain(1)));
                drop(w.wait_until(|_| true).immediate(false));
                r.set(true);
            }))
        });
        hook();
        assert!(ran.get(), "the hook did not run");
        ACTION.with(|a| a.borrow_mut().take());
        touch(w);
    }

    #[test]
    fn with_closure() {
        let w = Probe::new().watcher(0);
        each_action_panics(w, || w.with(|_| fire()));
    }

    #[test]
    fn set_if_condition() {
        let w = Probe::new().watcher(0);
        each_action_panics(w, || {
            w.set_if(Val::plain(0), |_| {
                fire();
                false
            });
        });
    }

    #[test]
    fn modify_closure() {
        let w = Probe::new().watcher(0);
        each_action_panics(w, || {
            w.modify(|_| fire());
        });
    }

    #[test]
    fn predicate_at_first_poll() {
        let w = Probe::new().watcher(0);
        each_action_panics(w, || {
            let mut fut = Box::pin(w.wait_until(|_| {
                fire();
                false
            }));
            assert!(poll_noop(fut.as_mut()).is_pending());
        });
    }

    #[test]
    fn wait_map_function_at_first_poll() {
        let w = Probe::new().watcher(0);
        each_action_panics(w, || {
            let mut fut = Box::pin(w.wait_map(|_| {
                fire();
                None::<u8>
            }));
            assert!(poll_noop(fut.as_mut()).is_pending());
        });
    }

    #[test]
    fn wait_map_and_wait_transition_functions_in_a_setters_walk() {
        let w = Probe::new().watcher(0);
        let mut map = Box::pin(
            w.wait_map(|_| {
                fire();
                None::<u8>
            })
            .immediate(false),
        );
        assert!(poll_noop(map.as_mut()).is_pending());
        let mut n = 0;
        each_action_panics(w, || {
            n += 1;
            assert!(w.set(Val::plain(n)));
        });
        drop(map);
        let mut edge = Box::pin(w.wait_transition(|_, _| {
            fire();
            false
        }));
        assert!(poll_noop(edge.as_mut()).is_pending());
        each_action_panics(w, || {
            n += 1;
            assert!(w.set(Val::plain(n)));
        });
    }

    #[test]
    fn predicate_in_a_setters_walk() {
        let w = Probe::new().watcher(0);
        let mut fut = Box::pin(
            w.wait_until(|_| {
                fire();
                false
            })
            .immediate(false),
        );
        assert!(poll_noop(fut.as_mut()).is_pending());
        let mut n = 0;
        each_action_panics(w, || {
            n += 1;
            // The reentrant call's panic is caught in the setter and kept
            // for this waiter; the setter returns normally.
            assert!(w.set(Val::plain(n)));
        });
        // What the waiter resumes is the panic of the last action, which
        // did not panic (it only created futures): the predicate returned
        // false, so the waiter is still waiting.
        assert!(poll_noop(fut.as_mut()).is_pending());
        // A re-entry in the walk is resumed by the waiter's next poll.
        ACTION.with(|a| {
            *a.borrow_mut() = Some(Box::new(move || {
                w.version();
            }))
        });
        let (woken, waker) = counting_waker();
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
        assert!(w.set(Val::plain(100)));
        assert_eq!(woken.get(), 1);
        let msg = panic_message(|| poll_noop(fut.as_mut()));
        assert!(msg.starts_with(REENTERED), "{msg}");
        touch(w);
    }

    #[test]
    fn partial_eq_of_t() {
        let p = Probe::new();
        let w = p.watcher(0);
        w.set(p.val(1));
        p.eq_fires.store(true, SeqCst);
        // `set` compares the new value with the current one under the lock.
        each_action_panics(w, || {
            let _ = w.set(Val::plain(1));
        });
        // `on_value` compares its target with the current value.
        each_action_panics(w, || {
            let id = w.on_value(Val::plain(3), || {});
            w.remove_callback(id);
        });
        p.eq_fires.store(false, SeqCst);
    }

    #[test]
    fn clone_of_t() {
        let p = Probe::new();
        let w = p.watcher(0);
        w.set(p.val(1));
        p.clone_fires.store(true, SeqCst);
        each_action_panics(w, || drop(w.get()));
        p.clone_fires.store(false, SeqCst);
    }

    #[test]
    fn debug_of_t() {
        let p = Probe::new();
        let w = p.watcher(0);
        w.set(p.val(1));
        p.debug_fires.store(true, SeqCst);
        each_action_panics(w, || drop(format!("{w:?}")));
        p.debug_fires.store(false, SeqCst);
    }

    #[test]
    fn waker_clone() {
        use std::task::{RawWaker, RawWakerVTable};
        fn clone(_: *const ()) -> RawWaker {
            fire();
            RawWaker::new(std::ptr::null(), &VTABLE)
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        let w = Probe::new().watcher(0);
        each_action_panics(w, || {
            // SAFETY: the vtable's functions ignore the data pointer.
            let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
            let mut fut = Box::pin(w.wait_for(Val::plain(1)));
            // Registering clones the waker under the lock.
            assert!(poll_with(fut.as_mut(), &waker).is_pending());
        });
    }
}

// === dropping a registered future under the lock: abort (critical-section) ===

/// Runs the test `name` of this binary in a child process with
/// `VW_ABORT_CHILD` set, and returns its exit status and stderr.
#[cfg(feature = "critical-section")]
fn run_child(name: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("VW_ABORT_CHILD", name)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// In the child: runs `body`, which must abort. In the parent: checks the
/// child died of `SIGABRT` with the crate's message, not of a use-after-free
/// or by finishing.
#[cfg(feature = "critical-section")]
fn expect_abort(name: &str, body: impl FnOnce()) {
    if std::env::var("VW_ABORT_CHILD").as_deref() == Ok(name) {
        body();
        // Reaching here means the drop did not abort.
        std::process::exit(0);
    }
    let (status, stderr) = run_child(name);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "expected SIGABRT, got {status}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("a registered wait was dropped inside its own watcher's lock"),
        "stderr:\n{stderr}"
    );
}

#[cfg(feature = "critical-section")]
mod abort {
    use super::*;

    /// Defect 1 of issue 9, first way in: a registered future dropped inside
    /// a `with` closure. The destructor's lock panicked and unwound before
    /// unlinking; the `Box` was freed while linked; the next set read it.
    #[test]
    fn registered_future_dropped_in_with() {
        expect_abort("abort::registered_future_dropped_in_with", || {
            let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
            let mut fut = Box::pin(w.wait_for(1));
            assert!(poll_noop(fut.as_mut()).is_pending());
            let _ = catch_unwind(AssertUnwindSafe(|| w.with(move |_| drop(fut))));
            w.set(1); // walks the list: freed memory if the node stayed
        });
    }

    /// Second way in: a predicate that drops another registered future of
    /// the same watcher during a setter's walk (the setter's own
    /// `catch_unwind` used to swallow the destructor's panic).
    #[test]
    fn registered_future_dropped_by_a_predicate_in_a_walk() {
        expect_abort(
            "abort::registered_future_dropped_by_a_predicate_in_a_walk",
            || {
                let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
                let victim = Arc::new(Mutex::new(Some(Box::pin(w.wait_for(5)))));
                assert!(poll_noop(victim.lock().unwrap().as_mut().unwrap().as_mut()).is_pending());
                let v = victim.clone();
                let mut killer = Box::pin(w.wait_until(move |n| {
                    if *n == 1 {
                        drop(v.lock().unwrap().take());
                    }
                    false
                }));
                assert!(poll_noop(killer.as_mut()).is_pending());
                // The victim registered first, the killer second: the walk
                // reaches the killer, which frees the victim it already passed,
                // so the next walk would read it.
                w.set(1);
                w.set(2);
            },
        );
    }

    #[test]
    fn registered_stream_dropped_in_with() {
        expect_abort("abort::registered_stream_dropped_in_with", || {
            let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
            let mut changes = w.changes();
            assert!(poll_noop(Pin::new(&mut changes.next())).is_pending());
            let _ = catch_unwind(AssertUnwindSafe(|| w.with(move |_| drop(changes))));
            w.set(1);
        });
    }
}

/// A future that a setter has chosen and woken is in no list, so its drop
/// needs no lock (issue 12's lock-free take): dropped from under the lock it
/// just works, with either lock, and the watcher is intact. (Before the
/// lock-free take this aborted with `critical-section`.)
#[test]
fn chosen_future_dropped_in_set_if() {
    let w = ValueWatcher::new(String::from("a"));
    let mut fut = Box::pin(w.wait_for("b".to_owned()));
    assert!(poll_noop(fut.as_mut()).is_pending());
    assert!(w.set("b".to_owned())); // the future now holds its captured "b"
    assert!(w.set_if("c".to_owned(), move |_| {
        drop(fut);
        true
    }));
    assert_eq!(w.get(), "c");
    let mut next = Box::pin(w.wait_for("d".to_owned()));
    assert!(poll_noop(next.as_mut()).is_pending());
    assert!(w.set("d".to_owned()));
    assert_eq!(poll_noop(next.as_mut()), Poll::Ready("d".to_owned()));
}

/// A `changes()` stream that a setter has chosen (woken, not polled since)
/// is in no list either, so since its `Drop` takes the outcome lock-free
/// like a wait future's, dropping it from under the lock just works, with
/// either lock (before, it took the lock: a deadlock with the spinlock, an
/// abort with `critical-section`), and the watcher is intact.
#[test]
fn chosen_stream_dropped_in_with() {
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    assert!(poll_noop(Pin::new(&mut changes.next())).is_pending());
    assert!(w.set(1)); // chooses the stream's node
    w.with(move |current| {
        assert_eq!(*current, 1);
        drop(changes);
    });
    let mut other = w.changes();
    assert!(poll_noop(Pin::new(&mut other.next())).is_pending());
    assert!(w.set(2));
    assert_eq!(poll_noop(Pin::new(&mut other.next())), Poll::Ready(Some(2)));
}

/// A chosen future polled from under its watcher's lock (inside `with`)
/// takes its outcome without the lock, so it completes there with the value
/// its setter captured, with either lock, and the watcher is intact.
#[test]
fn chosen_future_polled_in_with() {
    let w = ValueWatcher::new(String::from("a"));
    let mut fut = Box::pin(w.wait_for("b".to_owned()));
    assert!(poll_noop(fut.as_mut()).is_pending());
    assert!(w.set("b".to_owned()));
    assert!(w.set("c".to_owned())); // the captured "b" is what it must yield
    let got = w.with(|current| {
        assert_eq!(current, "c");
        poll_noop(fut.as_mut())
    });
    assert_eq!(got, Poll::Ready("b".to_owned()));
    drop(fut);
    let mut next = Box::pin(w.wait_for("d".to_owned()));
    assert!(poll_noop(next.as_mut()).is_pending());
    assert!(w.set("d".to_owned()));
    assert_eq!(poll_noop(next.as_mut()), Poll::Ready("d".to_owned()));
}
