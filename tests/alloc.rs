//! SPEC §3.8: waiting, waking and setting do not allocate (beyond what
//! `T::clone` allocates). A counting global allocator counts the
//! allocations of the current thread only, so tests running in parallel
//! (and the test harness) do not disturb each other's counts.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use common::{counting_waker, poll_noop, poll_with};
use futures_core::Stream;
use value_watcher::ValueWatcher;

struct Counting;

thread_local! {
    /// Allocations made by this thread (const-initialized and without a
    /// destructor, so reading it never allocates).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // During thread teardown the slot may be gone: those are not counted.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; counting touches only a thread-local `Cell<usize>`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as in `alloc`; `ptr` came from this allocator, i.e. `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations this thread made in it.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (result, ALLOCATIONS.with(Cell::get) - before)
}

/// Asserts that `f` allocates nothing on this thread.
#[track_caller]
fn assert_no_alloc<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (result, n) = allocations(f);
    assert_eq!(n, 0, "{what}: {n} allocation(s)");
    result
}

#[test]
fn the_counter_counts() {
    let (v, n) = allocations(|| vec![1u8; 3]);
    assert_eq!(n, 1);
    drop(v);
    let (_, n) = allocations(|| Arc::new(5));
    assert_eq!(n, 1);
}

#[test]
fn s3_8_set_without_waiters_allocates_nothing() {
    let w = ValueWatcher::new(0u64);
    assert_no_alloc("set, set_if, modify, get, version", || {
        for i in 1..=1_000 {
            assert!(w.set(i));
            assert!(!w.set(i));
            assert!(w.set_if(i + 1, |v| *v == i));
            assert!(w.modify(|v| *v -= 1));
            assert_eq!(w.get(), i);
            assert_eq!(w.with(|v| *v), i);
            assert_eq!(w.version(), 3 * i);
        }
    });
}

#[test]
fn s3_8_a_wait_from_creation_to_drop_allocates_nothing() {
    let w = ValueWatcher::new(0u32);
    let o = ValueWatcher::new(None::<u32>);
    let (woken, waker) = counting_waker();
    let limit = Arc::new(AtomicU32::new(3));
    assert_no_alloc("waits", || {
        for i in 1..=200u32 {
            // Completes at once.
            assert_eq!(poll_noop(pin!(w.wait_for(i - 1))), Poll::Ready(i - 1));
            // Registers, is woken by a set, completes.
            let mut eq = pin!(w.wait_for(i));
            let mut ne = pin!(w.wait_for_not(i - 1));
            let l = limit.clone();
            let mut until = pin!(w.wait_until(move |v| *v >= l.load(Ordering::Relaxed)));
            let mut change = pin!(w.wait_for_change());
            let mut later = pin!(w.wait_for(i).immediate(false));
            let mut some = pin!(o.wait_for_some());
            assert!(poll_with(eq.as_mut(), &waker).is_pending());
            assert!(poll_with(ne.as_mut(), &waker).is_pending());
            let _ = poll_with(until.as_mut(), &waker);
            assert!(poll_with(change.as_mut(), &waker).is_pending());
            assert!(poll_with(later.as_mut(), &waker).is_pending());
            assert!(poll_with(some.as_mut(), &waker).is_pending());
            // Polled again with the same waker: still registered once.
            assert!(poll_with(eq.as_mut(), &waker).is_pending());
            // A registered wait dropped before any set.
            {
                let mut dropped = pin!(w.wait_for(u32::MAX));
                assert!(poll_with(dropped.as_mut(), &waker).is_pending());
            }
            w.set(i);
            o.set(Some(i));
            assert_eq!(poll_noop(eq.as_mut()), Poll::Ready(i));
            assert_eq!(poll_noop(ne.as_mut()), Poll::Ready(i));
            assert_eq!(poll_noop(change.as_mut()), Poll::Ready(i));
            assert_eq!(poll_noop(later.as_mut()), Poll::Ready(i));
            assert_eq!(poll_noop(some.as_mut()), Poll::Ready(i));
            o.set(None);
            // `until` is dropped pending or after matching, either way.
        }
    });
    assert!(woken.get() >= 200 * 5);
}

/// SPEC §3.15-3.16 with §3.8: `wait_map` and `wait_transition` allocate
/// nothing either, `wait_map` on a value that is not even `Clone`.
#[test]
fn s3_8_wait_map_and_wait_transition_allocate_nothing() {
    #[derive(PartialEq)]
    struct Reading(u32);
    let w = ValueWatcher::new(Reading(0));
    let e = ValueWatcher::new(0u32);
    let (woken, waker) = counting_waker();
    assert_no_alloc("wait_map and wait_transition", || {
        for i in 1..=200u32 {
            // Completes at once against the current value.
            let now = pin!(w.wait_map(move |r: &Reading| (r.0 == i - 1).then_some(r.0 * 2)));
            assert_eq!(poll_noop(now), Poll::Ready((i - 1) * 2));
            let mut map = pin!(w.wait_map(move |r: &Reading| (r.0 == i).then_some(r.0)));
            let mut later = pin!(w.wait_map(|r: &Reading| Some(r.0)).immediate(false));
            // An edge (its output is the value, so this watcher is `Clone`).
            let mut edge = pin!(e.wait_transition(|old, new| new > old));
            assert!(poll_with(map.as_mut(), &waker).is_pending());
            assert!(poll_with(later.as_mut(), &waker).is_pending());
            assert!(poll_with(edge.as_mut(), &waker).is_pending());
            // A registered wait dropped before any set.
            {
                let mut dropped = pin!(w.wait_map(|_: &Reading| None::<u8>));
                assert!(poll_with(dropped.as_mut(), &waker).is_pending());
            }
            w.set(Reading(i));
            e.set(i);
            assert_eq!(poll_noop(map.as_mut()), Poll::Ready(i));
            assert_eq!(poll_noop(later.as_mut()), Poll::Ready(i));
            assert_eq!(poll_noop(edge.as_mut()), Poll::Ready(i));
        }
    });
    assert_eq!(woken.get(), 200 * 3);
}

#[test]
fn s3_8_a_set_that_wakes_many_waiters_allocates_nothing() {
    let w = ValueWatcher::new(0u32);
    // Distinct wakers, more than one wake batch (32) of them matching.
    let wakers: Vec<_> = (0..100).map(|_| counting_waker()).collect();
    for round in 1..=20u32 {
        let mut futs: Vec<_> = (0..100u32)
            .map(|k| Box::pin(w.wait_for(if k % 4 == 0 { u32::MAX } else { round })))
            .collect();
        let waiting: Vec<_> = (0..60)
            .map(|_| Box::pin(w.wait_until(|v| *v == u32::MAX - 1)))
            .collect();
        let mut waiting = waiting;
        assert_no_alloc("registering and setting", || {
            for (fut, (_, waker)) in futs.iter_mut().zip(&wakers) {
                assert!(poll_with(fut.as_mut(), waker).is_pending());
            }
            for fut in &mut waiting {
                assert!(poll_noop(fut.as_mut()).is_pending());
            }
            // Drop some in the middle of the list.
            futs.truncate(90);
            assert!(w.set(round));
            for (k, fut) in futs.iter_mut().enumerate() {
                if k % 4 != 0 {
                    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(round));
                }
            }
            // Dropping the rest (registered or completed) frees, never allocates.
            futs.clear();
            waiting.clear();
        });
    }
    for (k, (woken, _)) in wakers.iter().enumerate().take(90) {
        let expected = if k % 4 == 0 { 0 } else { 20 };
        assert_eq!(woken.get(), expected, "waiter {k}");
    }
}

#[test]
fn s3_8_a_set_with_callbacks_allocates_nothing() {
    let w = ValueWatcher::new(0u64);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    w.on_change(move |old, new| {
        assert_ne!(old, new);
        c.fetch_add(1, Ordering::Relaxed);
    });
    let c = calls.clone();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    w.on_value(500, move || f.store(true, Ordering::Relaxed));
    w.on_value(u64::MAX, || {});
    assert_no_alloc("sets with on_change and on_value registered", || {
        for i in 1..=1_000 {
            assert!(w.set(i));
            assert!(!w.set(i));
            assert!(w.modify(|v| *v += 1));
            assert!(w.set_if(i, |_| true));
        }
    });
    assert!(fired.load(Ordering::Relaxed), "the on_value fired in there");
    assert_eq!(calls.load(Ordering::Relaxed), 2 * 3 * 1_000);
}

#[test]
fn s3_8_changes_polling_allocates_nothing_after_creation() {
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes(); // creation may allocate (its waiter node)
    let (woken, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert_no_alloc("changes()", || {
        for i in 1..=1_000 {
            assert!(Pin::new(&mut changes).poll_next(&mut cx).is_pending());
            w.set(i);
            w.set(i + 1_000_000);
            assert_eq!(
                Pin::new(&mut changes).poll_next(&mut cx),
                Poll::Ready(Some(i + 1_000_000))
            );
        }
    });
    assert_eq!(woken.get(), 1_000);
}

#[test]
fn s3_8_blocking_wait_allocates_nothing_after_one_warm_up_per_thread() {
    let w = ValueWatcher::new(0u32);
    let registered = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            // The first blocking wait of a thread creates its parker's waker.
            assert_eq!(w.wait_for(0).wait(), 0);
            let mut total = 0;
            for i in 1..=200u32 {
                let r = registered.clone();
                let (got, n) = allocations(|| {
                    let mut first = true;
                    let pred = move |v: &u32| {
                        if std::mem::take(&mut first) {
                            r.store(i as usize, Ordering::SeqCst);
                        }
                        *v == i
                    };
                    if i % 2 == 0 {
                        Some(w.wait_until(pred).wait())
                    } else {
                        w.wait_until(pred).wait_timeout(common::GENEROUS)
                    }
                });
                assert_eq!(got, Some(i));
                total += n;
            }
            total
        });
        let mut total = 0;
        for i in 1..=200u32 {
            // Set only once the waiter is registered (and about to park).
            while registered.load(Ordering::SeqCst) != i as usize {
                std::thread::yield_now();
            }
            total += allocations(|| assert!(w.set(i))).1;
        }
        assert_eq!(total, 0, "setter allocations");
        assert_eq!(waiter.join().unwrap(), 0, "blocking waiter allocations");
    });
}

#[test]
fn s3_8_string_values_allocate_only_their_clones() {
    // Beyond T::clone nothing: one clone per matching waiter.
    let w = ValueWatcher::new(String::from("idle"));
    let busy = String::from("busy");
    let mut a = pin!(w.wait_for(busy.clone()));
    let mut b = pin!(w.wait_for_change());
    let mut c = pin!(w.wait_until(|s| s.len() > 100));
    let ((), n) = allocations(|| {
        assert!(poll_noop(a.as_mut()).is_pending());
        assert!(poll_noop(b.as_mut()).is_pending());
        assert!(poll_noop(c.as_mut()).is_pending());
    });
    assert_eq!(n, 0, "registering");
    let new = busy.clone();
    let (changed, n) = allocations(|| w.set(new));
    assert!(changed);
    assert_eq!(n, 2, "one clone for each of the two matching waiters");
    let (got, n) = allocations(|| poll_noop(a.as_mut()));
    assert_eq!(n, 0, "completing hands over the captured clone");
    assert_eq!(got, Poll::Ready(busy));
    assert_eq!(poll_noop(b.as_mut()), Poll::Ready("busy".to_string()));
    // `c` is still registered but does not match: no clone.
    let other = String::from("done");
    let (changed, n) = allocations(|| w.set(other));
    assert!(changed);
    assert_eq!(n, 0, "no matching waiter, no clone");
    assert!(poll_noop(c.as_mut()).is_pending());
}
