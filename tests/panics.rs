//! SPEC §3.9 (panicking callbacks), §3.10 (panicking predicates and
//! `Clone`), §3.11 (panicking `modify`), a panicking `PartialEq`, and the
//! critical-section lock's re-entry panic. After every panic the watcher
//! must be unlocked and consistent: [`assert_usable`] checks it.
#![cfg(panic = "unwind")]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use common::{GENEROUS, counting_waker, message, poll_noop, poll_with, watchdog};
use value_watcher::ValueWatcher;

/// Runs `f`, expecting a panic; returns its message.
fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => message(&*payload),
    }
}

/// The switches of one test's `Flaky` values.
#[derive(Debug, Default)]
struct Switches {
    /// How many of the next clones panic.
    clones: AtomicUsize,
    /// Whether `eq` panics.
    eq: AtomicBool,
}

/// A number whose `Clone` and `PartialEq` panic on demand.
#[derive(Debug)]
struct Flaky {
    n: u32,
    sw: Arc<Switches>,
}

impl Flaky {
    fn new(n: u32, sw: &Arc<Switches>) -> Self {
        Self { n, sw: sw.clone() }
    }
}

impl Clone for Flaky {
    fn clone(&self) -> Self {
        let armed = self
            .sw
            .clones
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            panic!("clone panic");
        }
        Self {
            n: self.n,
            sw: self.sw.clone(),
        }
    }
}

impl PartialEq for Flaky {
    fn eq(&self, other: &Self) -> bool {
        if self.sw.eq.load(Ordering::SeqCst) {
            panic!("eq panic");
        }
        self.n == other.n
    }
}

fn flaky(n: u32) -> (ValueWatcher<Flaky>, Arc<Switches>) {
    let sw = Arc::new(Switches::default());
    (ValueWatcher::new(Flaky::new(n, &sw)), sw)
}

/// The watcher is unlocked and works: read, write, and a new waiter.
fn assert_usable(w: &ValueWatcher<Flaky>, sw: &Arc<Switches>) {
    assert_eq!(sw.clones.load(Ordering::SeqCst), 0, "switch still armed");
    let n = w.get().n;
    assert_eq!(w.with(|v| v.n), n);
    let version = w.version();
    let (woken, waker) = counting_waker();
    let mut next = pin!(w.wait_for_change());
    assert!(poll_with(next.as_mut(), &waker).is_pending());
    assert!(w.set(Flaky::new(n + 1000, sw)));
    assert_eq!(w.version(), version + 1);
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(next.as_mut()).map(|v| v.n), Poll::Ready(n + 1000));
}

fn u32_usable(w: &ValueWatcher<u32>) {
    let n = w.get();
    let (woken, waker) = counting_waker();
    let mut next = pin!(w.wait_for(n + 1));
    assert!(poll_with(next.as_mut(), &waker).is_pending());
    assert!(w.set(n + 1));
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(next.as_mut()), Poll::Ready(n + 1));
}

// === §3.10 predicates ===

#[test]
fn s3_10_predicate_panic_in_a_setters_walk_goes_to_its_own_waiter() {
    // The same for each setter.
    for setter in ["set", "set_if", "modify"] {
        let w = ValueWatcher::new(0u32);
        let wakers: Vec<_> = (0..4).map(|_| counting_waker()).collect();
        let mut before = pin!(w.wait_for(1));
        let mut bad = pin!(w.wait_until(|v| {
            assert!(*v != 1, "predicate panic");
            false
        }));
        let mut after = pin!(w.wait_for_change());
        let mut until = pin!(w.wait_until(|v| *v >= 1));
        assert!(poll_with(before.as_mut(), &wakers[0].1).is_pending());
        assert!(poll_with(bad.as_mut(), &wakers[1].1).is_pending());
        assert!(poll_with(after.as_mut(), &wakers[2].1).is_pending());
        assert!(poll_with(until.as_mut(), &wakers[3].1).is_pending());

        let changed = match setter {
            "set" => w.set(1),
            "set_if" => w.set_if(1, |v| *v == 0),
            _ => w.modify(|v| *v += 1),
        };
        assert!(changed, "{setter} returned normally");
        assert_eq!(w.get(), 1);
        for (i, (woken, _)) in wakers.iter().enumerate() {
            assert_eq!(woken.get(), 1, "{setter}: waiter {i} woken once");
        }
        assert_eq!(poll_noop(before.as_mut()), Poll::Ready(1));
        assert_eq!(poll_noop(after.as_mut()), Poll::Ready(1));
        assert_eq!(poll_noop(until.as_mut()), Poll::Ready(1));
        assert_eq!(
            panic_message(|| poll_noop(bad.as_mut())),
            "predicate panic",
            "{setter}: the panic resumes in its own future"
        );
        // Later transitions do not call the panicked predicate again.
        w.set(0);
        w.set(1);
        u32_usable(&w);
    }
}

#[test]
fn s3_10_predicate_panic_reaches_a_blocking_waiter() {
    let _dog = watchdog("blocking predicate panic", 120);
    let w = ValueWatcher::new(0u32);
    let registered = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        let r = registered.clone();
        let bad = s.spawn(|| {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                w.wait_until(move |v| {
                    r.fetch_add(1, Ordering::SeqCst);
                    assert!(*v != 1, "blocking predicate panic");
                    false
                })
                .wait_timeout(GENEROUS)
            }));
            outcome.map_err(|payload| message(&*payload))
        });
        let r = registered.clone();
        let good = s.spawn(|| {
            w.wait_until(move |v| {
                r.fetch_add(1, Ordering::SeqCst);
                *v == 1
            })
            .wait_timeout(GENEROUS)
        });
        // Both checked the current value under the lock, so both are
        // registered before this set.
        while registered.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        assert!(w.set(1), "the setter returns normally");
        assert_eq!(
            bad.join().unwrap(),
            Err("blocking predicate panic".to_string())
        );
        assert_eq!(good.join().unwrap(), Some(1));
    });
    u32_usable(&w);
}

#[test]
fn s3_10_predicate_panic_in_its_own_first_poll_panics_in_that_poll() {
    let w = ValueWatcher::new(0u32);
    let mut fut = pin!(w.wait_until(|_| panic!("first poll panic")));
    assert_eq!(
        panic_message(|| poll_noop(fut.as_mut())),
        "first poll panic"
    );
    // Blocking: the same, in the caller.
    assert_eq!(
        panic_message(|| w.wait_until(|_| panic!("blocking first poll")).wait()),
        "blocking first poll"
    );
    u32_usable(&w);
    // The panicked future was never registered: sets do not reach it.
    w.set(5);
    w.set(6);
    u32_usable(&w);
}

// === §3.10 Clone ===

#[test]
fn s3_10_clone_panic_in_get_leaves_the_watcher_usable() {
    let (w, sw) = flaky(3);
    sw.clones.store(1, Ordering::SeqCst);
    assert_eq!(panic_message(|| w.get()), "clone panic");
    assert_eq!(w.with(|v| v.n), 3);
    assert_eq!(w.version(), 0);
    assert_usable(&w, &sw);
}

#[test]
fn s3_10_clone_panic_while_capturing_goes_to_that_waiter_only() {
    let (w, sw) = flaky(0);
    let wakers: Vec<_> = (0..3).map(|_| counting_waker()).collect();
    let mut first = pin!(w.wait_for(Flaky::new(1, &sw)));
    let mut second = pin!(w.wait_for(Flaky::new(1, &sw)));
    let mut third = pin!(w.wait_for_change());
    assert!(poll_with(first.as_mut(), &wakers[0].1).is_pending());
    assert!(poll_with(second.as_mut(), &wakers[1].1).is_pending());
    assert!(poll_with(third.as_mut(), &wakers[2].1).is_pending());

    // The clone for the first waiter the setter checks panics, later ones
    // do not. Which waiter that is, is not promised (registration order on
    // hosts, newest first in the small shape), so each future says.
    sw.clones.store(1, Ordering::SeqCst);
    assert!(w.set(Flaky::new(1, &sw)), "the setter returns normally");
    assert_eq!(sw.clones.load(Ordering::SeqCst), 0);
    for (i, (woken, _)) in wakers.iter().enumerate() {
        assert_eq!(woken.get(), 1, "waiter {i}");
    }
    /// The outcome of one waiter's next poll: its value, or its panic.
    fn outcome<F: std::future::Future<Output = Flaky>>(fut: Pin<&mut F>) -> Result<u32, String> {
        match catch_unwind(AssertUnwindSafe(|| poll_noop(fut))) {
            Ok(Poll::Ready(v)) => Ok(v.n),
            Ok(Poll::Pending) => panic!("a woken waiter is still pending"),
            Err(payload) => Err(message(&*payload)),
        }
    }
    let mut outcomes = vec![
        outcome(first.as_mut()),
        outcome(second.as_mut()),
        outcome(third.as_mut()),
    ];
    outcomes.sort();
    assert_eq!(outcomes, [Ok(1), Ok(1), Err("clone panic".to_owned())]);
    assert_usable(&w, &sw);
}

#[test]
fn s3_10_clone_panic_while_capturing_reaches_a_blocking_waiter() {
    let _dog = watchdog("blocking clone panic", 120);
    let sw = Arc::new(Switches::default());
    let w = ValueWatcher::new(Flaky::new(0, &sw));
    let registered = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let r = registered.clone();
        let waiter = s.spawn(|| {
            catch_unwind(AssertUnwindSafe(|| {
                w.wait_until(move |v| {
                    r.store(true, Ordering::SeqCst);
                    v.n == 1
                })
                .wait_timeout(GENEROUS)
            }))
            .map(|v| v.map(|v| v.n))
            .map_err(|payload| message(&*payload))
        });
        while !registered.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        sw.clones.store(1, Ordering::SeqCst);
        assert!(w.set(Flaky::new(1, &sw)));
        assert_eq!(waiter.join().unwrap(), Err("clone panic".to_string()));
    });
    assert_usable(&w, &sw);
}

#[test]
fn s3_10_clone_panic_in_an_immediate_match_panics_in_that_poll() {
    let (w, sw) = flaky(4);
    sw.clones.store(1, Ordering::SeqCst);
    let mut fut = pin!(w.wait_for(Flaky::new(4, &sw)));
    assert_eq!(panic_message(|| poll_noop(fut.as_mut())), "clone panic");
    assert_usable(&w, &sw);
}

#[test]
fn s3_10_clone_panic_in_modify_backup_changes_nothing() {
    let (w, sw) = flaky(2);
    let (woken, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });

    sw.clones.store(1, Ordering::SeqCst);
    assert_eq!(panic_message(|| w.modify(|v| v.n = 50)), "clone panic");
    assert_eq!(w.with(|v| v.n), 2);
    assert_eq!(w.version(), 0);
    assert_eq!(woken.get(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    // The registered waiter still works.
    assert!(w.modify(|v| v.n = 51));
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(change.as_mut()).map(|v| v.n), Poll::Ready(51));
    assert_usable(&w, &sw);
}

#[test]
fn s3_10_clone_panic_for_on_change_still_runs_on_value_then_resumes() {
    let (w, sw) = flaky(0);
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    w.on_change(move |_, _| {
        f.fetch_add(1, Ordering::SeqCst);
    });
    let f = fired.clone();
    w.on_value(Flaky::new(1, &sw), move || {
        f.fetch_add(10, Ordering::SeqCst);
    });
    // The only clone in this set is the new value for on_change.
    sw.clones.store(1, Ordering::SeqCst);
    assert_eq!(panic_message(|| w.set(Flaky::new(1, &sw))), "clone panic");
    assert_eq!(w.with(|v| v.n), 1, "the value is stored");
    assert_eq!(w.version(), 1);
    assert_eq!(fired.load(Ordering::SeqCst), 10, "on_value ran");
    assert_usable(&w, &sw);
    assert_eq!(fired.load(Ordering::SeqCst), 11, "on_change runs again");
}

// === §3.9 panicking callbacks ===

#[test]
fn s3_9_a_panicking_callback_skips_no_other_and_resumes_the_first_panic() {
    let w = ValueWatcher::new(0u32);
    let (woken, waker) = counting_waker();
    let mut fut = pin!(w.wait_for(1));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    let ran = Arc::new(Mutex::new(Vec::new()));

    let r = ran.clone();
    w.on_change(move |_, _| r.lock().unwrap().push("a"));
    let bad_first = w.on_change(|_, new| assert!(*new != 1, "first callback panic"));
    let r = ran.clone();
    w.on_change(move |_, _| r.lock().unwrap().push("c"));
    let bad_second = w.on_change(|_, new| assert!(*new != 1, "second callback panic"));
    let r = ran.clone();
    w.on_value(1, move || r.lock().unwrap().push("e"));
    let r = ran.clone();
    w.on_change(move |_, _| r.lock().unwrap().push("f"));

    assert_eq!(panic_message(|| w.set(1)), "first callback panic");
    assert_eq!(*ran.lock().unwrap(), ["a", "c", "e", "f"]);
    assert_eq!(w.get(), 1, "the value is set");
    assert_eq!(w.version(), 1);
    assert_eq!(woken.get(), 1, "waiters were woken");
    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));

    assert!(w.remove_callback(bad_first));
    assert!(w.remove_callback(bad_second));
    u32_usable(&w);
}

#[test]
fn s3_9_a_panicking_on_value_behaves_like_any_callback() {
    let w = ValueWatcher::new(0u32);
    // Running at once: the panic goes to the caller.
    assert_eq!(
        panic_message(|| w.on_value(0, || panic!("at once"))),
        "at once"
    );
    u32_usable(&w);
    let later = Arc::new(AtomicBool::new(false));
    let l = later.clone();
    w.on_value(5, || panic!("on value panic"));
    w.on_value(5, move || l.store(true, Ordering::SeqCst));
    assert_eq!(panic_message(|| w.set(5)), "on value panic");
    assert!(later.load(Ordering::SeqCst));
    assert_eq!(w.get(), 5);
    // One-shot: it does not panic again.
    w.set(0);
    w.set(5);
    u32_usable(&w);
}

// === §3.11 modify ===

#[test]
fn s3_11_modify_panic_restores_and_notifies_nothing() {
    let w = ValueWatcher::new(vec![1, 2, 3]);
    let (woken, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });

    let msg = panic_message(|| {
        w.modify(|v| {
            v.clear();
            v.push(99);
            panic!("modify panic");
        })
    });
    assert_eq!(msg, "modify panic");
    assert_eq!(w.get(), [1, 2, 3], "old value restored");
    assert_eq!(w.version(), 0);
    assert_eq!(woken.get(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(poll_with(change.as_mut(), &waker).is_pending());

    assert!(w.modify(|v| v.push(4)));
    assert_eq!(woken.get(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(poll_noop(change.as_mut()), Poll::Ready(vec![1, 2, 3, 4]));
}

// === PartialEq and conditions ===

#[test]
fn eq_panic_in_a_setter_leaves_everything_unchanged() {
    let (w, sw) = flaky(0);
    let (woken, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });

    sw.eq.store(true, Ordering::SeqCst);
    assert_eq!(panic_message(|| w.set(Flaky::new(1, &sw))), "eq panic");
    assert_eq!(
        panic_message(|| w.set_if(Flaky::new(1, &sw), |_| true)),
        "eq panic"
    );
    assert_eq!(panic_message(|| w.modify(|v| v.n = 1)), "eq panic");
    assert_eq!(
        panic_message(|| w.on_value(Flaky::new(1, &sw), || {})),
        "eq panic"
    );
    sw.eq.store(false, Ordering::SeqCst);

    assert_eq!(w.with(|v| v.n), 0, "modify restored the old value");
    assert_eq!(w.version(), 0);
    assert_eq!(woken.get(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    assert_usable(&w, &sw);
    assert_eq!(woken.get(), 1);
}

#[test]
fn set_if_condition_panic_leaves_everything_unchanged() {
    let w = ValueWatcher::new(0u32);
    let (woken, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    assert_eq!(
        panic_message(|| w.set_if(1, |_| panic!("condition panic"))),
        "condition panic"
    );
    assert_eq!((w.get(), w.version(), woken.get()), (0, 0, 0));
    u32_usable(&w);
}

#[test]
fn with_closure_panic_leaves_the_watcher_unlocked() {
    let w = ValueWatcher::new(0u32);
    assert_eq!(
        panic_message(|| w.with(|_| panic!("with panic"))),
        "with panic"
    );
    u32_usable(&w);
}

// === critical-section: re-entry panics instead of deadlocking ===

#[cfg(feature = "critical-section")]
mod critical_section_reentry {
    use super::*;

    #[test]
    fn using_the_watcher_inside_its_own_with_panics() {
        let w = ValueWatcher::new(0u32);
        let msg = panic_message(|| w.with(|_| w.get()));
        assert!(msg.contains("value-watcher"), "{msg}");
        let msg = panic_message(|| w.with(|_| w.set(1)));
        assert!(msg.contains("value-watcher"), "{msg}");
        assert_eq!(w.version(), 0);
        u32_usable(&w);
    }

    #[test]
    fn a_predicate_using_its_watcher_panics_in_first_poll_or_in_its_own_future() {
        let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
        // First poll: the predicate runs in the poll, which panics.
        let mut fut = pin!(w.wait_until(|_| w.get() == 7));
        let msg = panic_message(|| poll_noop(fut.as_mut()));
        assert!(msg.contains("value-watcher"), "{msg}");
        u32_usable(w);
        // In a setter's walk: delivered to that waiter; the setter returns.
        let (woken, waker) = counting_waker();
        let mut later = pin!(w.wait_until(|_| w.version() > 100).immediate(false));
        assert!(poll_with(later.as_mut(), &waker).is_pending());
        assert!(w.set(100));
        assert_eq!(woken.get(), 1);
        let msg = panic_message(|| poll_noop(later.as_mut()));
        assert!(msg.contains("value-watcher"), "{msg}");
        u32_usable(w);
    }
}

// === a panicking waker ===

/// A waker that panics when woken.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("waker panic");
    }
}

/// Registered waits, and the counting wakers they were polled with.
type Registered<'a> = (
    Vec<Pin<Box<value_watcher::WaitFor<'a, u32>>>>,
    Vec<(Arc<common::Counter>, std::task::Waker)>,
);

/// Registers `n` waiters for 1, the first with a panicking waker.
fn waiters_behind_a_panicking_waker(w: &ValueWatcher<u32>, n: usize) -> Registered<'_> {
    let bad = std::task::Waker::from(Arc::new(PanickingWaker));
    let wakers: Vec<_> = (0..n).map(|_| counting_waker()).collect();
    let mut futs: Vec<_> = (0..n).map(|_| Box::pin(w.wait_for(1))).collect();
    for (i, fut) in futs.iter_mut().enumerate() {
        let waker = if i == 0 { &bad } else { &wakers[i].1 };
        assert!(poll_with(fut.as_mut(), waker).is_pending());
    }
    (futs, wakers)
}

/// A waker is the executor's code, run by the setter after unlocking. If
/// one panics, the other waiters the same transition chose must still be
/// woken, also those past the first wake batch (32): nothing else will
/// ever wake them.
#[test]
fn a_panicking_waker_loses_no_other_wake_up() {
    const N: usize = 40;
    let w = ValueWatcher::new(0u32);
    let (mut futs, wakers) = waiters_behind_a_panicking_waker(&w, N);
    // Whether the setter resumes the waker's panic is not specified.
    let _ = catch_unwind(AssertUnwindSafe(|| w.set(1)));
    // Later transitions do not help either.
    w.set(2);
    w.set(1);
    let missed: Vec<usize> = (1..N).filter(|&i| wakers[i].0.get() != 1).collect();
    assert!(missed.is_empty(), "waiters never woken: {missed:?}");
    for fut in &mut futs[1..] {
        assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));
    }
    u32_usable(&w);
}

/// Likewise the callbacks of that transition: an `on_value` one-shot is
/// marked fired before the wake-ups, so if it does not run then, it never
/// runs.
#[test]
fn a_panicking_waker_loses_no_callback() {
    let w = ValueWatcher::new(0u32);
    let (_futs, _wakers) = waiters_behind_a_panicking_waker(&w, 2);
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let id = w.on_value(1, move || {
        f.fetch_add(1, Ordering::SeqCst);
    });
    let f = fired.clone();
    w.on_change(move |_, _| {
        f.fetch_add(10, Ordering::SeqCst);
    });
    let _ = catch_unwind(AssertUnwindSafe(|| w.set(1)));
    w.set(2);
    w.set(1);
    assert!(!w.remove_callback(id), "the one-shot counts as fired");
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1 + 3 * 10,
        "on_value ran once and on_change for each transition"
    );
}

// === a panicking waker drop ===

/// A waker whose last copy panics when dropped.
struct PanicsOnDrop;

impl std::task::Wake for PanicsOnDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("waker drop panic");
    }
}

type Slot = Arc<Mutex<Option<Pin<Box<value_watcher::WaitFor<'static, u32>>>>>>;

/// A waker that, when woken, polls the wait in `slot` and records whether
/// that poll panicked.
struct PollsTarget {
    slot: Slot,
    poll_panicked: AtomicBool,
}

impl std::task::Wake for PollsTarget {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let mut slot = self.slot.lock().unwrap();
        let target = slot.as_mut().expect("target in its slot");
        let polled = catch_unwind(AssertUnwindSafe(|| poll_noop(target.as_mut())));
        self.poll_panicked.store(polled.is_err(), Ordering::SeqCst);
    }
}

/// The `Drop` of a waker runs after the lock is released, also where a poll
/// completes a wait that a setter chose but has not woken yet (queued) and
/// hands back the waker the node still held. If that drop panics, the poll
/// panics, and the wait is spent: polled again, it panics as a completed
/// future does. It must not start over and wait for the next transition
/// into its target while the one it captured is dropped.
#[test]
fn a_panicking_waker_drop_in_a_completing_poll_leaves_the_wait_completed() {
    const N: usize = 40;
    let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
    // The first waiter's waker polls the last waiter, which every shape has
    // queued (beyond the 32-waker batch on hosts; every chosen waiter in the
    // small shape) when the first is woken.
    let slot: Slot = Arc::new(Mutex::new(None));
    let first = Arc::new(PollsTarget {
        slot: slot.clone(),
        poll_panicked: AtomicBool::new(false),
    });
    let first_waker = std::task::Waker::from(first.clone());
    let mut futs: Vec<_> = (0..N - 1).map(|_| Box::pin(w.wait_for(1))).collect();
    for (i, fut) in futs.iter_mut().enumerate() {
        let waker = if i == 0 {
            first_waker.clone()
        } else {
            counting_waker().1
        };
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
    }
    let mut target = Box::pin(w.wait_for(1));
    // The node keeps the only other copy of this waker: its drop, in the
    // completing poll, is the last one.
    let bad = std::task::Waker::from(Arc::new(PanicsOnDrop));
    assert!(poll_with(target.as_mut(), &bad).is_pending());
    drop(bad);
    *slot.lock().unwrap() = Some(target);

    assert!(w.set(1));
    assert!(
        first.poll_panicked.load(Ordering::SeqCst),
        "the completing poll drops the queued node's waker"
    );
    w.set(2);
    let mut target = slot.lock().unwrap().take().expect("target in its slot");
    let msg = panic_message(|| poll_noop(target.as_mut()));
    assert!(msg.contains("polled after it completed"), "{msg}");
    drop(target);
    drop(futs);
    u32_usable(w);
}
