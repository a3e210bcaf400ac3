//! SPEC §3.9–3.11 panics: a panic in a predicate, `Clone`, `PartialEq`, a
//! callback or a `modify` closure never leaves a watcher locked, corrupted or
//! leaking, and with `std` it reaches the right place.
#![cfg(all(panic = "unwind", feature = "std"))]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use support::{counting_waker, poll_noop, poll_with};
use value_watcher::ValueWatcher;

/// Checks that `w` is unlocked and fully working.
fn assert_usable(w: &ValueWatcher<Flaky>) {
    let v = w.get().0;
    let mut next = pin!(w.wait_for(Flaky(v + 1)));
    assert!(poll_noop(next.as_mut()).is_pending());
    assert!(w.set(Flaky(v + 1)));
    assert_eq!(poll_noop(next.as_mut()), Poll::Ready(Flaky(v + 1)));
}

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

static CLONE_PANICS: AtomicBool = AtomicBool::new(false);
static EQ_PANICS: AtomicBool = AtomicBool::new(false);
/// Tests in this binary share the switches above: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A value whose `Clone` and `PartialEq` panic on demand.
#[derive(Debug)]
struct Flaky(u32);

impl Clone for Flaky {
    fn clone(&self) -> Self {
        if CLONE_PANICS.load(Ordering::SeqCst) {
            panic!("clone panicked");
        }
        Flaky(self.0)
    }
}

impl PartialEq for Flaky {
    fn eq(&self, other: &Self) -> bool {
        if EQ_PANICS.load(Ordering::SeqCst) {
            panic!("eq panicked");
        }
        self.0 == other.0
    }
}

struct Switch(&'static AtomicBool);
impl Switch {
    fn on(flag: &'static AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Switch(flag)
    }
}
impl Drop for Switch {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn s3_10_predicate_panic_in_a_setter_goes_to_its_own_waiter() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let (bad_count, bad_waker) = counting_waker();
    let (good_count, good_waker) = counting_waker();
    let mut bad = pin!(w.wait_until(|v: &Flaky| if v.0 == 2 {
        panic!("predicate panicked")
    } else {
        false
    }));
    let mut before = pin!(w.wait_for(Flaky(2)));
    assert!(poll_with(bad.as_mut(), &bad_waker).is_pending());
    assert!(poll_with(before.as_mut(), &good_waker).is_pending());
    let mut after = pin!(w.wait_for(Flaky(2)));
    assert!(poll_noop(after.as_mut()).is_pending());

    assert!(w.set(Flaky(1)));
    assert!(w.set(Flaky(2)), "the setter returns normally");
    assert_eq!(w.version(), 2);
    assert_eq!((bad_count.count(), good_count.count()), (1, 1));
    assert_eq!(poll_noop(before.as_mut()), Poll::Ready(Flaky(2)));
    assert_eq!(poll_noop(after.as_mut()), Poll::Ready(Flaky(2)));
    let err = catch_unwind(AssertUnwindSafe(|| poll_noop(bad.as_mut()))).unwrap_err();
    assert_eq!(message(err), "predicate panicked");
    assert_usable(&w);
}

#[test]
fn s3_10_predicate_panic_reaches_a_blocking_waiter() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            catch_unwind(AssertUnwindSafe(|| {
                w.wait_until(|v: &Flaky| {
                    if v.0 >= 1 {
                        panic!("blocking predicate")
                    } else {
                        false
                    }
                })
                .wait()
            }))
        });
        while !waiter.is_finished() {
            w.modify(|v| v.0 += 1);
            std::thread::yield_now();
        }
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(message(err), "blocking predicate");
    });
    assert_usable(&w);
}

#[test]
fn s3_10_predicate_panic_in_its_own_first_poll() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let mut fut = pin!(w.wait_until(|_: &Flaky| panic!("first poll")));
    let err = catch_unwind(AssertUnwindSafe(|| poll_noop(fut.as_mut()))).unwrap_err();
    assert_eq!(message(err), "first poll");
    assert_usable(&w);
}

#[test]
fn s3_10_clone_panic_while_capturing_goes_to_that_waiter() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let mut capturing = pin!(w.wait_for(Flaky(1)));
    let mut other = pin!(w.wait_for_not(Flaky(0)));
    assert!(poll_noop(capturing.as_mut()).is_pending());
    assert!(poll_noop(other.as_mut()).is_pending());
    {
        let _on = Switch::on(&CLONE_PANICS);
        assert!(w.set(Flaky(1)), "the setter returns normally");
    }
    let err = catch_unwind(AssertUnwindSafe(|| poll_noop(capturing.as_mut()))).unwrap_err();
    assert_eq!(message(err), "clone panicked");
    let err = catch_unwind(AssertUnwindSafe(|| poll_noop(other.as_mut()))).unwrap_err();
    assert_eq!(message(err), "clone panicked");
    assert_usable(&w);
}

#[test]
fn s3_10_clone_panic_in_get_and_in_modify_backup() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(5));
    {
        let _on = Switch::on(&CLONE_PANICS);
        assert!(catch_unwind(AssertUnwindSafe(|| w.get())).is_err());
        let ran = AtomicBool::new(false);
        assert!(
            catch_unwind(AssertUnwindSafe(
                || w.modify(|_| ran.store(true, Ordering::SeqCst))
            ))
            .is_err()
        );
        assert!(!ran.load(Ordering::SeqCst), "the closure never ran");
    }
    assert_eq!(w.get(), Flaky(5));
    assert_eq!(w.version(), 0);
    assert_usable(&w);
}

#[test]
fn s3_10_clone_panic_for_on_change_still_runs_on_value_and_resumes() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    w.on_change(|_, _| unreachable!("needs the clone that panicked"));
    w.on_value(Flaky(1), move || f.store(true, Ordering::SeqCst));
    let err = {
        let _on = Switch::on(&CLONE_PANICS);
        catch_unwind(AssertUnwindSafe(|| w.set(Flaky(1)))).unwrap_err()
    };
    assert_eq!(message(err), "clone panicked");
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(w.version(), 1);
}

#[test]
fn s3_10_eq_panic_in_set_changes_nothing() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let (count, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    {
        let _on = Switch::on(&EQ_PANICS);
        assert!(catch_unwind(AssertUnwindSafe(|| w.set(Flaky(1)))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| w.modify(|v| v.0 = 9))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| w.set_if(Flaky(1), |_| true))).is_err());
    }
    assert_eq!(w.get(), Flaky(0), "modify restored the old value");
    assert_eq!((w.version(), count.count()), (0, 0));
    assert_usable(&w);
}

#[test]
fn s3_11_modify_panic_restores_and_notifies_nothing() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(1));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let err = catch_unwind(AssertUnwindSafe(|| {
        w.modify(|v| {
            v.0 = 100;
            panic!("modify panicked");
        })
    }))
    .unwrap_err();
    assert_eq!(message(err), "modify panicked");
    assert_eq!(w.get(), Flaky(1));
    assert_eq!((w.version(), calls.load(Ordering::SeqCst)), (0, 0));
    assert_usable(&w);
}

#[test]
fn s3_9_panicking_callback_does_not_skip_the_others() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (r1, r2, r3) = (ran.clone(), ran.clone(), ran.clone());
    let (count, waker) = counting_waker();
    let mut waiter = pin!(w.wait_for(Flaky(1)));
    assert!(poll_with(waiter.as_mut(), &waker).is_pending());
    w.on_change(move |_, _| {
        r1.lock().unwrap().push(1);
        panic!("first callback");
    });
    w.on_value(Flaky(1), move || {
        r2.lock().unwrap().push(2);
        panic!("second callback");
    });
    w.on_change(move |_, _| r3.lock().unwrap().push(3));
    let err = catch_unwind(AssertUnwindSafe(|| w.set(Flaky(1)))).unwrap_err();
    assert_eq!(message(err), "first callback", "the first panic resumes");
    assert_eq!(*ran.lock().unwrap(), [1, 2, 3], "all callbacks ran");
    assert_eq!(w.get(), Flaky(1), "the value is set");
    assert_eq!(count.count(), 1, "the waiter was woken");
    assert_eq!(poll_noop(waiter.as_mut()), Poll::Ready(Flaky(1)));
    assert_usable_after_callback_panics(&w);
}

fn assert_usable_after_callback_panics(w: &ValueWatcher<Flaky>) {
    // The first callback still panics on every transition; the watcher stays
    // consistent across them.
    let v = w.get().0;
    assert!(catch_unwind(AssertUnwindSafe(|| w.set(Flaky(v + 1)))).is_err());
    assert_eq!(w.get(), Flaky(v + 1));
}

#[test]
fn panic_in_with_leaves_the_watcher_unlocked() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    assert!(catch_unwind(AssertUnwindSafe(|| w.with(|_| panic!("with")))).is_err());
    assert!(
        catch_unwind(AssertUnwindSafe(
            || w.set_if(Flaky(3), |_| panic!("condition"))
        ))
        .is_err()
    );
    assert_eq!(w.version(), 0);
    assert_usable(&w);
}

#[test]
#[cfg(feature = "critical-section")]
fn critical_section_lock_panics_on_reentry_instead_of_deadlocking() {
    let _s = serial();
    let w = ValueWatcher::new(Flaky(0));
    let err = catch_unwind(AssertUnwindSafe(|| w.with(|_| w.version()))).unwrap_err();
    assert!(message(err).contains("inside its own lock"));
    assert_usable(&w);
}
