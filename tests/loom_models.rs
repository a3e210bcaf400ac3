//! loom models of the races that matter (issue #3). Run with
//! `.ci/loom.sh`, i.e.
//! `RUSTFLAGS="--cfg value_watcher_loom" cargo test --release --test loom_models`.
//!
//! Under `value_watcher_loom` the crate's lock is loom's mutex, every waiter
//! node's cell is a loom cell (so loom reports any access the lock does not
//! order), the wake batch holds one waker (so two matching waiters reach the
//! queued-wake path), and blocking waits park through loom.
#![cfg(value_watcher_loom)]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use loom::sync::Arc;
use loom::thread;
use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
enum Conn {
    Connected = 1,
    Closing = 2,
    Closed = 3,
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

fn poll_noop<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// A setter racing a waiter's first poll: the waiter always finishes.
#[test]
fn lost_wakeup_setter_races_first_poll() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(1);
            })
        };
        assert_eq!(loom::future::block_on(w.wait_for(1)), 1);
        setter.join().unwrap();
    });
}

/// A waiter for "Closing or later" racing a setter doing Closing then Closed:
/// it returns Closing in every interleaving, unless its very first check
/// already found Closed.
#[test]
fn transient_capture_closing_then_closed() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(Conn::Connected));
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(Conn::Closing);
                w.set(Conn::Closed);
            })
        };
        // The first call of the predicate is the first poll's check of the
        // current value (it runs under the watcher's lock).
        let first_check = Arc::new(AtomicU8::new(0));
        let fc = first_check.clone();
        let got = loom::future::block_on(w.wait_until(move |c| {
            let _ = fc.compare_exchange(0, *c as u8, Ordering::Relaxed, Ordering::Relaxed);
            *c >= Conn::Closing
        }));
        if first_check.load(Ordering::Relaxed) == Conn::Closed as u8 {
            assert_eq!(got, Conn::Closed);
        } else {
            assert_eq!(got, Conn::Closing, "a registered waiter skipped Closing");
        }
        setter.join().unwrap();
    });
}

/// A waiter registered before the setter starts, racing only its later
/// polls: it must get Closing.
#[test]
fn transient_capture_registered_waiter() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(Conn::Connected));
        let mut closing = Box::pin(w.wait_for(Conn::Closing));
        assert!(poll_noop(closing.as_mut()).is_pending());
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(Conn::Closing);
                w.set(Conn::Closed);
            })
        };
        assert_eq!(loom::future::block_on(closing), Conn::Closing);
        setter.join().unwrap();
    });
}

/// A registered wait dropped while a setter walks the list: no access loom
/// can flag, and the list still works afterwards.
#[test]
fn cancel_races_set() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut fut = Box::pin(w.wait_for(1));
        assert!(poll_noop(fut.as_mut()).is_pending());
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(1);
            })
        };
        drop(fut);
        setter.join().unwrap();
        let mut fresh = pin!(w.wait_for(2));
        assert!(poll_noop(fresh.as_mut()).is_pending());
        w.set(2);
        assert_eq!(poll_noop(fresh.as_mut()), Poll::Ready(2));
    });
}

/// Two matching waiters with a wake batch of one: the second goes through
/// the queued list; dropping it while the setter drains is safe, and the
/// first still gets its value.
#[test]
fn cancel_races_queued_wake() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut first = Box::pin(w.wait_for(1));
        let mut second = Box::pin(w.wait_for(1));
        assert!(poll_noop(first.as_mut()).is_pending());
        assert!(poll_noop(second.as_mut()).is_pending());
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(1);
            })
        };
        drop(second);
        assert_eq!(loom::future::block_on(first), 1);
        setter.join().unwrap();
        let mut fresh = pin!(w.wait_for(0));
        assert!(poll_noop(fresh.as_mut()).is_pending());
        w.set(0);
        assert_eq!(poll_noop(fresh.as_mut()), Poll::Ready(0));
    });
}

/// Waiters with different predicates, two setters incrementing: each gets
/// the first matching value of the serialized order (values are monotonic,
/// so that order is 1 then 2).
#[test]
fn several_waiters_two_setters() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut at_least_one = Box::pin(w.wait_until(|v| *v >= 1));
        let mut two = Box::pin(w.wait_for(2));
        let mut change = Box::pin(w.wait_for_change());
        assert!(poll_noop(at_least_one.as_mut()).is_pending());
        assert!(poll_noop(two.as_mut()).is_pending());
        assert!(poll_noop(change.as_mut()).is_pending());
        let setters: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    w.modify(|v| *v += 1);
                })
            })
            .collect();
        assert_eq!(loom::future::block_on(at_least_one), 1);
        assert_eq!(loom::future::block_on(change), 1);
        assert_eq!(loom::future::block_on(two), 2);
        for s in setters {
            s.join().unwrap();
        }
        assert_eq!(w.version(), 2);
    });
}

/// `set_if` is atomic: of two racing compare-and-sets, exactly one wins.
#[test]
fn set_if_is_atomic() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let wins = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = (1..=2u8)
            .map(|me| {
                let (w, wins) = (w.clone(), wins.clone());
                thread::spawn(move || {
                    if w.set_if(me, |v| *v == 0) {
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for r in racers {
            r.join().unwrap();
        }
        assert_eq!(wins.load(Ordering::Relaxed), 1);
        assert_eq!(w.version(), 1);
    });
}

/// `on_value` fires exactly once although two setters race into the value.
#[test]
fn on_value_fires_exactly_once() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        w.on_value(7, move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
        let a = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(7);
            })
        };
        let b = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(1);
                w.set(7);
            })
        };
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    });
}

/// A blocking `.wait()` (loom's park/unpark) racing a setter.
#[test]
fn blocking_wait_races_set() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(1);
            })
        };
        assert_eq!(w.wait_for_not(0).wait(), 1);
        setter.join().unwrap();
    });
}

/// The changes() stream registering while a setter runs never loses the
/// wake-up.
#[test]
fn changes_stream_races_set() {
    model(|| {
        let w = Arc::new(ValueWatcher::new(0u8));
        let mut changes = w.changes();
        let setter = {
            let w = w.clone();
            thread::spawn(move || {
                w.set(1);
            })
        };
        let next = loom::future::block_on(futures_lite::StreamExt::next(&mut changes));
        assert_eq!(next, Some(1));
        setter.join().unwrap();
    });
}
