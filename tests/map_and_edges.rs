//! SPEC §3.15 (`wait_map`), §3.16 (`wait_transition`), values that are not
//! `Clone` (SPEC §2), and `Changes::version`.
#![cfg(panic = "unwind")]

mod common;

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;

use common::{Conn, GENEROUS, counting_waker, message, poll_noop, poll_with};
use futures_lite::StreamExt;
use value_watcher::ValueWatcher;

/// A connection state that carries an `io::Error`: `PartialEq` (by error
/// kind), not `Clone`.
#[derive(Debug)]
enum Link {
    Down,
    Up(u32),
    Failed(io::Error),
}

impl PartialEq for Link {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Link::Down, Link::Down) => true,
            (Link::Up(a), Link::Up(b)) => a == b,
            (Link::Failed(a), Link::Failed(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

fn failed(kind: io::ErrorKind) -> Link {
    Link::Failed(io::Error::from(kind))
}

fn failure_kind(link: &Link) -> Option<io::ErrorKind> {
    match link {
        Link::Failed(e) => Some(e.kind()),
        _ => None,
    }
}

fn panic_message<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => message(&*payload),
    }
}

// === values that are not Clone ===

#[test]
fn s2_a_partial_eq_only_value_supports_the_listed_methods() {
    let w = ValueWatcher::new(Link::Down);
    assert_eq!(w.version(), 0);
    assert!(w.set(Link::Up(1)));
    assert!(!w.set(Link::Up(1)));
    assert!(w.set_if(Link::Up(2), |l| *l == Link::Up(1)));
    assert!(w.with(|l| matches!(l, Link::Up(2))));
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    w.on_value(failed(io::ErrorKind::TimedOut), move || {
        f.fetch_add(1, SeqCst);
    });
    let id = w.on_value(Link::Down, || {});
    assert!(w.remove_callback(id));
    assert!(w.set(failed(io::ErrorKind::TimedOut)));
    assert_eq!(fired.load(SeqCst), 1);
    assert_eq!(
        pollster::block_on(w.wait_map(failure_kind)),
        io::ErrorKind::TimedOut
    );
    let debug = format!("{w:?}");
    assert!(
        debug.contains("Failed") && debug.contains("version: 3"),
        "{debug}"
    );
}

// === wait_map (SPEC 3.15) ===

#[test]
fn s3_15_wait_map_completes_at_once_with_what_f_extracts() {
    let w = ValueWatcher::new(failed(io::ErrorKind::NotFound));
    let mut fut = Box::pin(w.wait_map(failure_kind));
    assert_eq!(
        poll_noop(fut.as_mut()),
        Poll::Ready(io::ErrorKind::NotFound)
    );
}

#[test]
fn s3_15_wait_map_immediate_false_ignores_the_current_value() {
    let w = ValueWatcher::new(failed(io::ErrorKind::NotFound));
    let mut fut = Box::pin(w.wait_map(failure_kind).immediate(false));
    assert!(poll_noop(fut.as_mut()).is_pending());
    w.set(Link::Down);
    assert!(poll_noop(fut.as_mut()).is_pending());
    w.set(failed(io::ErrorKind::BrokenPipe));
    assert_eq!(
        poll_noop(fut.as_mut()),
        Poll::Ready(io::ErrorKind::BrokenPipe)
    );
}

/// SPEC 3.2: the first `Some` wins, even if the value left it at once.
#[test]
fn s3_15_wait_map_captures_a_transient_state() {
    let w = ValueWatcher::new(Link::Down);
    let mut fut = Box::pin(w.wait_map(failure_kind));
    assert!(poll_noop(fut.as_mut()).is_pending());
    w.set(Link::Up(1));
    w.set(failed(io::ErrorKind::ConnectionReset));
    w.set(failed(io::ErrorKind::TimedOut)); // a later failure does not replace it
    w.set(Link::Up(2));
    assert_eq!(
        poll_noop(fut.as_mut()),
        Poll::Ready(io::ErrorKind::ConnectionReset)
    );
}

#[test]
fn s3_15_wait_map_captures_a_transient_state_set_on_another_thread() {
    for _ in 0..200 {
        let w = ValueWatcher::new(0u32);
        let mut fut = Box::pin(w.wait_map(|v| (*v % 10 == 7).then_some(*v * 100)));
        assert!(poll_noop(fut.as_mut()).is_pending());
        std::thread::scope(|s| {
            s.spawn(|| {
                for v in [1, 17, 2, 27, 3] {
                    w.set(v);
                }
            });
            let got = futures_lite::future::block_on(fut.as_mut());
            assert_eq!(got, 1700);
        });
        assert_eq!(w.get(), 3);
    }
}

/// SPEC 3.5: only transitions for which `f` returns `Some` wake it.
#[test]
fn s3_15_wait_map_is_woken_only_by_a_match() {
    let w = ValueWatcher::new(Link::Down);
    let (woken, waker) = counting_waker();
    let mut fut = Box::pin(w.wait_map(failure_kind));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    for n in 1..=10 {
        w.set(Link::Up(n));
    }
    assert_eq!(woken.get(), 0);
    w.set(failed(io::ErrorKind::Other));
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(io::ErrorKind::Other));
}

/// SPEC 3.7: cancel in every state; a dropped waiter is never woken and
/// leaves the others alone.
#[test]
fn s3_15_wait_map_cancels_in_every_state() {
    let w = ValueWatcher::new(0u32);
    let drops = Arc::new(AtomicUsize::new(0));
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    // Never polled.
    drop(w.wait_map(|v| (*v == 1).then_some(())));
    // Registered.
    let (woken, waker) = counting_waker();
    let mut registered = Box::pin(w.wait_map(|v| (*v == 1).then_some(())));
    assert!(poll_with(registered.as_mut(), &waker).is_pending());
    drop(registered);
    // Chosen by a setter, output not taken: the extracted value is dropped.
    let d = drops.clone();
    let mut chosen = Box::pin(w.wait_map(move |v| (*v == 1).then(|| Counted(d.clone()))));
    assert!(poll_noop(chosen.as_mut()).is_pending());
    let mut other = Box::pin(w.wait_map(|v| (*v == 1).then_some(*v)));
    assert!(poll_noop(other.as_mut()).is_pending());
    w.set(1);
    assert_eq!(woken.get(), 0, "the dropped waiter was not woken");
    assert_eq!(drops.load(SeqCst), 0);
    drop(chosen);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(poll_noop(other.as_mut()), Poll::Ready(1));
}

/// SPEC 3.10: a panic in `f` at the first poll panics there; in a setter's
/// walk it is resumed by the waiter, and the setter and others go on.
#[test]
fn s3_15_wait_map_panics_are_delivered_to_their_waiter() {
    let w = ValueWatcher::new(0u32);
    let mut first = Box::pin(w.wait_map(|_: &u32| -> Option<()> { panic!("map panic") }));
    assert_eq!(panic_message(|| poll_noop(first.as_mut())), "map panic");
    let mut later = Box::pin(w.wait_map(|v: &u32| -> Option<u32> {
        if *v == 5 {
            panic!("map panic at 5")
        }
        None
    }));
    assert!(poll_noop(later.as_mut()).is_pending());
    let mut bystander = Box::pin(w.wait_map(|v| (*v == 5).then_some(*v)));
    assert!(poll_noop(bystander.as_mut()).is_pending());
    assert!(w.set(5)); // returns normally
    assert_eq!(poll_noop(bystander.as_mut()), Poll::Ready(5));
    assert_eq!(
        panic_message(|| poll_noop(later.as_mut())),
        "map panic at 5"
    );
    assert!(w.set(6));
}

#[test]
fn s3_15_wait_map_blocking_waits() {
    let w = ValueWatcher::new(Link::Down);
    assert_eq!(
        w.wait_map(failure_kind)
            .wait_timeout(std::time::Duration::ZERO),
        None
    );
    std::thread::scope(|s| {
        s.spawn(|| w.set(failed(io::ErrorKind::Interrupted)));
        assert_eq!(
            w.wait_map(failure_kind).wait_timeout(GENEROUS),
            Some(io::ErrorKind::Interrupted)
        );
    });
    assert_eq!(w.wait_map(failure_kind).wait(), io::ErrorKind::Interrupted);
}

// === wait_transition (SPEC 3.16) ===

#[test]
fn s3_16_wait_transition_catches_a_transient_edge() {
    let w = ValueWatcher::new(Conn::Connecting);
    let mut left = Box::pin(w.wait_transition(|old, _| *old == Conn::Connected));
    assert!(poll_noop(left.as_mut()).is_pending());
    w.set(Conn::Connected);
    w.set(Conn::Closing); // the edge: left Connected
    w.set(Conn::Closed);
    assert_eq!(poll_noop(left.as_mut()), Poll::Ready(Conn::Closing));
}

#[test]
fn s3_16_wait_transition_across_threads() {
    for _ in 0..200 {
        let w = ValueWatcher::new(0i32);
        let mut fell = Box::pin(w.wait_transition(|old, new| new < old));
        assert!(poll_noop(fell.as_mut()).is_pending());
        std::thread::scope(|s| {
            s.spawn(|| {
                for v in [1, 5, 3, 8, 9] {
                    w.set(v);
                }
            });
            assert_eq!(futures_lite::future::block_on(fell.as_mut()), 3);
        });
    }
}

/// The current value alone never completes it, even if an edge into it
/// would match, and it sees the old value of each transition.
#[test]
fn s3_16_wait_transition_never_looks_at_the_current_value_alone() {
    let w = ValueWatcher::new(Conn::Closed);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut into_closed = Box::pin(w.wait_transition(move |old, new| {
        s.lock().unwrap().push((*old, *new));
        *new == Conn::Closed
    }));
    assert!(poll_noop(into_closed.as_mut()).is_pending());
    assert!(
        seen.lock().unwrap().is_empty(),
        "f ran without a transition"
    );
    w.set(Conn::Connecting);
    w.set(Conn::Closed);
    assert_eq!(poll_noop(into_closed.as_mut()), Poll::Ready(Conn::Closed));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Conn::Closed, Conn::Connecting),
            (Conn::Connecting, Conn::Closed)
        ]
    );
}

#[test]
fn s3_16_wait_transition_is_woken_only_by_its_edge() {
    let w = ValueWatcher::new(0u32);
    let (woken, waker) = counting_waker();
    let mut up_by_ten = Box::pin(w.wait_transition(|old, new| *new >= old + 10));
    assert!(poll_with(up_by_ten.as_mut(), &waker).is_pending());
    for v in 1..=20 {
        w.set(v); // steps of one
    }
    assert_eq!(woken.get(), 0);
    w.set(35);
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(up_by_ten.as_mut()), Poll::Ready(35));
}

#[test]
fn s3_16_wait_transition_cancel_and_panics() {
    let w = ValueWatcher::new(0u32);
    let (woken, waker) = counting_waker();
    let mut dropped = Box::pin(w.wait_transition(|_, _| true));
    assert!(poll_with(dropped.as_mut(), &waker).is_pending());
    drop(dropped);
    let mut panicking = Box::pin(w.wait_transition(|_, new| {
        if *new == 2 {
            panic!("edge panic");
        }
        false
    }));
    assert!(poll_noop(panicking.as_mut()).is_pending());
    let mut other = Box::pin(w.wait_transition(|old, new| *old == 1 && *new == 2));
    assert!(poll_noop(other.as_mut()).is_pending());
    w.set(1);
    assert!(w.set(2));
    assert_eq!(woken.get(), 0);
    assert_eq!(poll_noop(other.as_mut()), Poll::Ready(2));
    assert_eq!(
        panic_message(|| poll_noop(panicking.as_mut())),
        "edge panic"
    );
}

#[test]
fn s3_16_wait_transition_blocking() {
    let w = ValueWatcher::new(1u32);
    assert_eq!(
        w.wait_transition(|_, _| true)
            .wait_timeout(std::time::Duration::ZERO),
        None,
        "no transition, no result, even with a zero timeout"
    );
    std::thread::scope(|s| {
        let mut fut = Box::pin(w.wait_transition(|old, new| old > new));
        assert!(poll_noop(fut.as_mut()).is_pending());
        s.spawn(|| {
            w.set(3);
            w.set(2);
        });
        assert_eq!(pollster::block_on(fut), 2);
    });
}

// === Changes::version ===

#[test]
fn changes_version_counts_what_the_stream_skipped() {
    let w = ValueWatcher::new(0u32);
    w.set(1);
    let mut changes = w.changes();
    assert_eq!(changes.version(), 1, "the version at creation");
    let mut last = changes.version();
    let mut skipped = 0;
    for burst in 1..=5u32 {
        for _ in 0..burst {
            w.modify(|v| *v += 1);
        }
        let item = poll_noop(Pin::new(&mut changes.next()));
        assert_eq!(item, Poll::Ready(Some(w.get())));
        skipped += changes.version() - last - 1;
        last = changes.version();
    }
    // 15 transitions in bursts of 1..=5: one item each, 10 skipped.
    assert_eq!(last, 16);
    assert_eq!(skipped, 10);
    assert!(poll_noop(Pin::new(&mut changes.next())).is_pending());
    assert_eq!(changes.version(), 16);
}
