//! SPEC §3.8: waiting, waking and setting do not allocate.
//!
//! Its own test binary with a counting global allocator. Counts are per
//! thread (a thread-local counter), so the test harness's own threads cannot
//! pollute them; the single test below runs every scenario in sequence.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::pin;
use std::task::Poll;

use futures_lite::StreamExt;
use support::{counting_waker, poll_noop, poll_with};
use value_watcher::ValueWatcher;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn s3_8_no_allocation_per_wait_wake_or_set() {
    let w = ValueWatcher::new(0u64);
    let (count, waker) = counting_waker(); // allocated once, outside the counts

    assert_eq!(
        allocations(|| for v in 1..=1_000 {
            w.set(v);
        }),
        0,
        "set with nobody listening"
    );

    assert_eq!(
        allocations(|| {
            for v in 1_001..=2_000u64 {
                let mut fut = pin!(w.wait_for(v));
                assert!(poll_with(fut.as_mut(), &waker).is_pending());
                w.set(v);
                assert_eq!(poll_with(fut.as_mut(), &waker), Poll::Ready(v));
            }
        }),
        0,
        "wait_for: register, wake, complete"
    );

    assert_eq!(
        allocations(|| drop(std::hint::black_box(Box::new(1u8)))),
        1,
        "sanity: the counter sees this thread's allocations"
    );

    // 100 waiters (several wake batches), some dropped while queued.
    let mut futs: Vec<_> = (0..100).map(|_| Box::pin(w.wait_for_change())).collect();
    let mut stream = w.changes();
    assert_eq!(
        allocations(|| {
            for fut in &mut futs {
                assert!(poll_with(fut.as_mut(), &waker).is_pending());
            }
            let mut cx = std::task::Context::from_waker(&waker);
            assert!(stream.poll_next(&mut cx).is_pending());
            w.set(5_000);
            for fut in futs.iter_mut().take(50) {
                assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(5_000));
            }
            assert_eq!(stream.poll_next(&mut cx), Poll::Ready(Some(5_000)));
            let mut until = pin!(w.wait_until(|v| *v % 7 == 0).immediate(false));
            assert!(poll_noop(until.as_mut()).is_pending());
            let mut not = pin!(w.wait_for_not(5_000));
            assert!(poll_noop(not.as_mut()).is_pending());
            w.modify(|v| *v += 1);
            w.set_if(7_000, |_| true);
            assert_eq!(poll_noop(until.as_mut()), Poll::Ready(7_000));
            assert_eq!(poll_noop(not.as_mut()), Poll::Ready(5_001));
        }),
        0,
        "many waiters, stream, wait_until, wait_for_not, modify, set_if"
    );
    drop(futs);
    assert!(count.count() >= 100);

    // Blocking waits: the thread's parker is created once per thread.
    let _ = w.wait_for(7_000).wait();
    assert_eq!(
        allocations(|| {
            for _ in 0..100 {
                assert_eq!(w.wait_for(7_000).wait(), 7_000);
                assert_eq!(w.wait_for(1).wait_timeout(std::time::Duration::ZERO), None);
            }
        }),
        0,
        "blocking waits after the first one on this thread"
    );

    // Callbacks may allocate when registered, never when a Copy value is set.
    w.on_change(|_, _| {});
    w.on_value(9_999_999, || {});
    assert_eq!(
        allocations(|| for v in 0..1_000 {
            w.set(v);
        }),
        0,
        "set with callbacks registered"
    );

    let o = ValueWatcher::new(None::<u32>);
    assert_eq!(
        allocations(|| {
            let mut some = pin!(o.wait_for_some());
            assert!(poll_noop(some.as_mut()).is_pending());
            o.set(Some(3));
            assert_eq!(poll_noop(some.as_mut()), Poll::Ready(3));
        }),
        0,
        "wait_for_some"
    );
}
