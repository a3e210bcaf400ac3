//! SPEC §3.9: `on_change`, `on_value` and `remove_callback`.

mod common;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::Poll;
use std::thread::ThreadId;

use common::{counting_waker, poll_noop, poll_with};
use value_watcher::{CallbackId, ValueWatcher};

/// A shared log of what the callbacks saw.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(log: &Log<T>) -> Vec<T> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// A watcher that lives for the rest of the test process, so callbacks
/// (which are `'static`) can use it.
fn leaked<T: Send + 'static>(value: T) -> &'static ValueWatcher<T> {
    Box::leak(Box::new(ValueWatcher::new(value)))
}

#[test]
fn s3_9_on_change_gets_old_and_new_in_order() {
    let w = ValueWatcher::new(0u32);
    let seen = log();
    let s = seen.clone();
    w.on_change(move |old, new| s.lock().unwrap().push((*old, *new)));
    w.set(1);
    w.set(1); // equal: no call
    w.set_if(5, |v| *v == 1);
    w.set_if(6, |v| *v == 1); // condition false: no call
    w.modify(|v| *v *= 3);
    w.modify(|_| {}); // unchanged: no call
    w.set(0);
    assert_eq!(taken(&seen), [(0, 1), (1, 5), (5, 15), (15, 0)]);
}

#[test]
fn s3_9_callbacks_run_on_the_setter_thread_after_store_and_wake() {
    let w = leaked(0u32);
    let (woken, waker) = counting_waker();
    let mut fut = pin!(w.wait_for(1));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());

    // What each callback observes while it runs.
    let seen: Log<(ThreadId, u32, u64, usize)> = log();
    let s = seen.clone();
    let counter = woken.clone();
    w.on_change(move |_, new| {
        // Reading the watcher here would deadlock (or panic with
        // critical-section) if the lock were held.
        let entry = (
            std::thread::current().id(),
            w.get(),
            w.version(),
            counter.get(),
        );
        assert_eq!(*new, entry.1);
        s.lock().unwrap().push(entry);
    });
    let s = seen.clone();
    let counter = woken.clone();
    w.on_value(1, move || {
        let entry = (
            std::thread::current().id(),
            w.get(),
            w.version(),
            counter.get(),
        );
        s.lock().unwrap().push(entry);
    });

    let setter = std::thread::spawn(|| {
        w.set(1);
        std::thread::current().id()
    });
    let setter_id = setter.join().unwrap();
    assert_ne!(setter_id, std::thread::current().id());
    assert_eq!(
        taken(&seen),
        [(setter_id, 1, 1, 1), (setter_id, 1, 1, 1)],
        "both ran on the setter thread, saw the stored value, after the wake-up"
    );
    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));
}

#[test]
fn s3_9_a_callback_may_set_the_watcher() {
    let w = leaked(0u32);
    let seen = log();
    let s = seen.clone();
    w.on_change(move |old, new| {
        s.lock().unwrap().push((*old, *new));
        if *new < 3 {
            assert!(w.set(new + 1));
        }
    });
    let (woken, waker) = counting_waker();
    let mut two = pin!(w.wait_for(2));
    assert!(poll_with(two.as_mut(), &waker).is_pending());
    assert!(w.set(1));
    assert_eq!(w.get(), 3);
    assert_eq!(w.version(), 3);
    assert_eq!(taken(&seen), [(0, 1), (1, 2), (2, 3)]);
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(two.as_mut()), Poll::Ready(2));
}

#[test]
fn s3_9_a_callback_may_remove_itself_and_others() {
    let w = leaked(0u32);
    let calls = log();
    let own: Arc<Mutex<Option<CallbackId>>> = Arc::default();
    let victim: Arc<Mutex<Option<CallbackId>>> = Arc::default();

    let (c, me, other) = (calls.clone(), own.clone(), victim.clone());
    let id = w.on_change(move |_, new| {
        c.lock().unwrap().push(("self-remover", *new));
        let me = me.lock().unwrap().take().expect("runs once");
        assert!(w.remove_callback(me), "removing itself");
        if let Some(other) = other.lock().unwrap().take() {
            assert!(w.remove_callback(other), "removing a later callback");
        }
    });
    *own.lock().unwrap() = Some(id);
    let c = calls.clone();
    let later = w.on_change(move |_, new| c.lock().unwrap().push(("victim", *new)));
    *victim.lock().unwrap() = Some(later);
    let c = calls.clone();
    let survivor = w.on_change(move |_, new| c.lock().unwrap().push(("survivor", *new)));

    w.set(1);
    // The victim was removed while this transition was in flight: it may or
    // may not run for it (SPEC §3.9), so only look at the others.
    let first: Vec<_> = taken(&calls)
        .into_iter()
        .filter(|(who, _)| *who != "victim")
        .collect();
    assert_eq!(first, [("self-remover", 1), ("survivor", 1)]);
    w.set(2);
    assert_eq!(taken(&calls), [("survivor", 2)]);
    assert!(!w.remove_callback(id));
    assert!(!w.remove_callback(later));
    assert!(w.remove_callback(survivor));
    w.set(3);
    assert!(taken(&calls).is_empty());
}

#[test]
fn s3_9_one_registration_order_across_on_change_and_on_value() {
    let w = ValueWatcher::new(0u32);
    let order = log();
    let o = order.clone();
    w.on_change(move |_, _| o.lock().unwrap().push("change A"));
    let o = order.clone();
    w.on_value(1, move || o.lock().unwrap().push("value B"));
    let o = order.clone();
    w.on_change(move |_, _| o.lock().unwrap().push("change C"));
    let o = order.clone();
    w.on_value(1, move || o.lock().unwrap().push("value D"));
    let o = order.clone();
    w.on_value(2, move || o.lock().unwrap().push("value E (not 1)"));
    let o = order.clone();
    w.on_change(move |_, _| o.lock().unwrap().push("change F"));
    w.set(1);
    assert_eq!(
        taken(&order),
        ["change A", "value B", "change C", "value D", "change F"]
    );
    w.set(2);
    assert_eq!(
        taken(&order),
        ["change A", "change C", "value E (not 1)", "change F"]
    );
}

#[test]
fn s3_9_on_value_runs_at_once_if_equal() {
    let w = ValueWatcher::new(7u32);
    let ran_on = Arc::new(Mutex::new(None));
    let r = ran_on.clone();
    let id = w.on_value(7, move || {
        *r.lock().unwrap() = Some(std::thread::current().id());
    });
    assert_eq!(
        *ran_on.lock().unwrap(),
        Some(std::thread::current().id()),
        "ran in the caller, before on_value returned"
    );
    assert!(!w.remove_callback(id), "it has already run");
    // It does not run again.
    *ran_on.lock().unwrap() = None;
    w.set(8);
    w.set(7);
    assert_eq!(*ran_on.lock().unwrap(), None);
    assert_eq!(w.version(), 2);
}

#[test]
fn s3_9_on_value_fires_once_on_the_first_transition_into_v_even_transient() {
    let w = ValueWatcher::new(0u32);
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let id = w.on_value(2, move || {
        f.fetch_add(1, Ordering::SeqCst);
    });
    w.set(1);
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    w.set(2); // transient: 3 follows at once
    w.set(3);
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    w.set(2);
    w.set(0);
    w.set(2);
    assert_eq!(fired.load(Ordering::SeqCst), 1, "one-shot");
    assert!(!w.remove_callback(id), "fired: no longer registered");
    // Through set_if and modify as well.
    let f = fired.clone();
    w.on_value(10, move || {
        f.fetch_add(1, Ordering::SeqCst);
    });
    let f = fired.clone();
    w.on_value(11, move || {
        f.fetch_add(1, Ordering::SeqCst);
    });
    assert!(w.set_if(10, |_| true));
    assert!(w.modify(|v| *v += 1));
    assert_eq!(fired.load(Ordering::SeqCst), 3);
}

#[test]
fn s3_9_on_value_fires_exactly_once_with_two_racing_setters() {
    for round in 0..2_000 {
        let w = ValueWatcher::new(0u32);
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        let id = w.on_value(1, move || {
            f.fetch_add(1, Ordering::SeqCst);
        });
        let go = Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    go.wait();
                    for _ in 0..3 {
                        w.set(1);
                        w.set(0);
                    }
                });
            }
        });
        assert_eq!(fired.load(Ordering::SeqCst), 1, "round {round}");
        assert!(!w.remove_callback(id));
    }
}

#[test]
fn s3_9_remove_callback_results() {
    let w = ValueWatcher::new(0u32);
    let calls = Arc::new(AtomicUsize::new(0));

    let c = calls.clone();
    let change = w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let c = calls.clone();
    let pending = w.on_value(5, move || {
        c.fetch_add(100, Ordering::SeqCst);
    });
    let c = calls.clone();
    let fired = w.on_value(1, move || {
        c.fetch_add(10, Ordering::SeqCst);
    });
    let at_once = w.on_value(0, || {});
    w.set(1);
    assert_eq!(calls.load(Ordering::SeqCst), 11);

    assert!(w.remove_callback(change), "registered on_change");
    assert!(!w.remove_callback(change), "second removal");
    assert!(w.remove_callback(pending), "pending on_value");
    assert!(!w.remove_callback(pending));
    assert!(!w.remove_callback(fired), "fired on_value");
    assert!(!w.remove_callback(at_once), "on_value that ran at once");

    w.set(5);
    w.set(0);
    assert_eq!(calls.load(Ordering::SeqCst), 11, "removed ones never run");
    // Ids stay distinct.
    let ids = [change, pending, fired, at_once];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn s3_9_dropping_a_callback_id_removes_nothing() {
    let w = ValueWatcher::new(0u32);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    {
        // The id goes out of scope here.
        let _id = w.on_change(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        });
    }
    let c = calls.clone();
    let _ = w.on_value(2, move || {
        c.fetch_add(10, Ordering::SeqCst);
    });
    w.set(1);
    w.set(2);
    assert_eq!(calls.load(Ordering::SeqCst), 12);
}

#[test]
fn s3_9_callbacks_registered_from_a_callback_start_with_the_next_transition() {
    let w = leaked(0u32);
    let seen = log();
    let s = seen.clone();
    w.on_change(move |_, new| {
        if *new == 1 {
            let s = s.clone();
            w.on_change(move |_, new| s.lock().unwrap().push(*new));
        }
    });
    w.set(1);
    w.set(2);
    assert_eq!(taken(&seen), [2]);
}

#[test]
fn s3_9_many_fired_on_values_leave_nothing_behind() {
    let w = ValueWatcher::new(0u32);
    let token = Arc::new(());
    for i in 1..=10_000u32 {
        let t = token.clone();
        w.on_value(i, move || drop(t));
        w.set(i);
    }
    w.set(0);
    assert_eq!(Arc::strong_count(&token), 1, "every one-shot was dropped");
    // Removed and never-fired ones are released too.
    let ids: Vec<_> = (0..1_000)
        .map(|_| {
            let t = token.clone();
            w.on_value(u32::MAX, move || drop(t))
        })
        .collect();
    for id in ids {
        assert!(w.remove_callback(id));
    }
    assert_eq!(Arc::strong_count(&token), 1);
}
