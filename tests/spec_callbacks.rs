//! SPEC §3.9: `on_change`, `on_value`, `remove_callback`.

mod support;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use support::{Conn, LIFE_CYCLE, counting_waker, poll_with};
use value_watcher::ValueWatcher;

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

#[test]
fn s3_9_on_change_sees_old_and_new_in_order() {
    let w = ValueWatcher::new(Conn::Disconnected);
    let seen = log();
    let s = seen.clone();
    w.on_change(move |old, new| s.lock().unwrap().push(format!("{old:?}->{new:?}")));
    for state in LIFE_CYCLE {
        w.set(state);
    }
    w.set(Conn::Closed); // equal: no call
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Disconnected->Connecting",
            "Connecting->Connected",
            "Connected->Closing",
            "Closing->Closed"
        ]
    );
}

#[test]
fn s3_9_callbacks_run_on_the_setter_thread_after_store_and_wake_outside_the_lock() {
    let w = Arc::new(ValueWatcher::new(0));
    let (count, waker) = counting_waker();
    let mut fut = pin!(w.wait_for(1));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    let count2 = count.clone();
    let w2 = Arc::downgrade(&w);
    let observed = Arc::new(Mutex::new(None));
    let o = observed.clone();
    w.on_change(move |_, new| {
        let w = w2.upgrade().unwrap();
        // Reading the watcher would deadlock if the lock were held.
        *o.lock().unwrap() = Some((std::thread::current().id(), w.get(), *new, count2.count()));
    });
    let setter = {
        let w = w.clone();
        std::thread::spawn(move || {
            w.set(1);
            std::thread::current().id()
        })
    };
    let setter_id = setter.join().unwrap();
    let (thread, stored, new, wakes) = observed.lock().unwrap().take().unwrap();
    assert_eq!(thread, setter_id, "ran on the setting thread");
    assert_eq!((stored, new), (1, 1), "ran after the value was stored");
    assert_eq!(wakes, 1, "ran after the waiter was woken");
}

#[test]
fn s3_9_a_callback_may_set_the_watcher_and_remove_callbacks_itself_included() {
    let w = Arc::new(ValueWatcher::new(0));
    let seen = log();
    let id_cell = Arc::new(Mutex::new(None));
    let (w2, s2, id2) = (Arc::downgrade(&w), seen.clone(), id_cell.clone());
    let id = w.on_change(move |_, new| {
        s2.lock().unwrap().push(format!("self-removing saw {new}"));
        let w = w2.upgrade().unwrap();
        let me = id2.lock().unwrap().take().expect("runs once");
        assert!(w.remove_callback(me));
        w.set(new + 100); // a nested transition from inside a callback
    });
    *id_cell.lock().unwrap() = Some(id);
    let s3 = seen.clone();
    w.on_change(move |old, new| s3.lock().unwrap().push(format!("{old}->{new}")));
    w.set(1);
    assert_eq!(w.get(), 101);
    assert_eq!(
        *seen.lock().unwrap(),
        // The nested set runs the (remaining) callbacks first, then the outer
        // call continues with the second callback for 0->1.
        ["self-removing saw 1", "1->101", "0->1"]
    );
    w.set(2);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "101->2");
    assert!(!w.remove_callback(id), "already removed");
}

#[test]
fn s3_9_registration_order_spans_on_change_and_on_value() {
    let w = ValueWatcher::new(0);
    let seen = log();
    let (a, b, c) = (seen.clone(), seen.clone(), seen.clone());
    w.on_change(move |_, _| a.lock().unwrap().push("change-1".into()));
    w.on_value(1, move || b.lock().unwrap().push("value-1".into()));
    w.on_change(move |_, _| c.lock().unwrap().push("change-2".into()));
    w.set(1);
    assert_eq!(*seen.lock().unwrap(), ["change-1", "value-1", "change-2"]);
}

#[test]
fn s3_9_on_value_runs_at_once_if_equal() {
    let w = ValueWatcher::new(3);
    let ran_on = Arc::new(Mutex::new(None));
    let r = ran_on.clone();
    let id = w.on_value(3, move || {
        *r.lock().unwrap() = Some(std::thread::current().id())
    });
    assert_eq!(*ran_on.lock().unwrap(), Some(std::thread::current().id()));
    assert!(!w.remove_callback(id), "already fired");
}

#[test]
fn s3_9_on_value_fires_once_on_a_transient_value() {
    let w = ValueWatcher::new(Conn::Disconnected);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let id = w.on_value(Conn::Closing, move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    for _ in 0..3 {
        for state in LIFE_CYCLE {
            w.set(state);
        }
        w.set(Conn::Disconnected);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!w.remove_callback(id));
}

#[test]
fn s3_9_on_value_fires_exactly_once_with_racing_setters() {
    let _dog = support::watchdog("on_value race", 120);
    for _ in 0..500 {
        let w = ValueWatcher::new(0u32);
        let calls = AtomicUsize::new(0);
        let calls = Arc::new(calls);
        let c = calls.clone();
        w.on_value(7, move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let start = Barrier::new(3);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    start.wait();
                    for v in [7, 1, 7, 2, 7] {
                        w.set(v);
                    }
                });
            }
            start.wait();
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn s3_9_remove_callback_results_and_dropped_ids() {
    let w = ValueWatcher::new(0);
    let calls = Arc::new(AtomicUsize::new(0));
    let (c1, c2) = (calls.clone(), calls.clone());
    let change = w.on_change(move |_, _| {
        c1.fetch_add(1, Ordering::SeqCst);
    });
    let pending = w.on_value(9, move || {
        c2.fetch_add(100, Ordering::SeqCst);
    });
    {
        let c3 = calls.clone();
        // Dropping the id removes nothing.
        let _ = w.on_change(move |_, _| {
            c3.fetch_add(10, Ordering::SeqCst);
        });
    }
    w.set(1);
    assert_eq!(calls.load(Ordering::SeqCst), 11);
    assert!(w.remove_callback(pending), "pending on_value is registered");
    assert!(!w.remove_callback(pending));
    assert!(w.remove_callback(change));
    assert!(!w.remove_callback(change));
    w.set(9); // the removed on_value must not fire
    assert_eq!(calls.load(Ordering::SeqCst), 21);
}

#[test]
fn s3_9_many_fired_on_values_do_not_accumulate() {
    // Fired one-shots are compacted away at the next registration: the
    // watcher keeps working and every one-shot fires once.
    let w = ValueWatcher::new(0u32);
    let calls = Arc::new(AtomicUsize::new(0));
    for i in 1..=1_000 {
        let c = calls.clone();
        w.on_value(i, move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        w.set(i);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1_000);
}
