//! Issue #5 item 3, SPEC §3.13: `changes()` is a `futures_core::Stream` of
//! the values of transitions made after it was created. A consumer that
//! falls behind gets only the latest value of a burst (never a buffer),
//! equal sets produce nothing, and it composes with both `StreamExt`s.
//!
//! Single-threaded tests poll by hand (no-op or counting wakers) or set the
//! next value from inside the consumer, so their item sequences are exact.
//! Cross-thread tests use real threads, hand-offs through channels and a
//! watchdog; no sleeps.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use common::{counting_waker, poll_noop as poll_fut_noop, reporting_pending, watchdog};
use futures_core::Stream;
use value_watcher::{Changes, ValueWatcher};

const LIMIT: Duration = Duration::from_secs(60);

/// Polls `stream` once with `waker`.
fn poll_next<S: Stream + Unpin>(stream: &mut S, waker: &Waker) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(waker))
}

/// Polls `stream` once with a no-op waker.
fn poll_noop<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
    poll_next(stream, Waker::noop())
}

// === what it yields ===

#[test]
fn yields_each_transition_made_after_creation() {
    let w = ValueWatcher::new(0u32);
    w.set(1); // before the stream: not an item
    let mut changes = w.changes();
    assert_eq!(poll_noop(&mut changes), Poll::Pending);
    for v in 2..=20 {
        w.set(v);
        assert_eq!(poll_noop(&mut changes), Poll::Ready(Some(v)));
        assert_eq!(poll_noop(&mut changes), Poll::Pending);
    }
}

#[test]
fn counts_from_creation_not_from_the_first_poll() {
    // Unlike the wait futures (which start at their first poll), the stream
    // takes the version when `changes()` is called.
    let w = ValueWatcher::new('a');
    let mut changes = w.changes();
    w.set('b');
    assert_eq!(poll_noop(&mut changes), Poll::Ready(Some('b')));
    assert_eq!(poll_noop(&mut changes), Poll::Pending);
}

#[test]
fn a_consumer_that_falls_behind_gets_only_the_latest() {
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    let (wakes, waker) = counting_waker();
    assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
    w.set(1);
    w.set(2);
    w.set(3);
    // One wake-up for the whole burst: the stream is woken, not queued.
    assert_eq!(wakes.get(), 1);
    assert_eq!(poll_next(&mut changes, &waker), Poll::Ready(Some(3)));
    assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
    assert_eq!(wakes.get(), 1);
}

#[test]
fn a_burst_that_returns_to_the_last_item_still_yields_it() {
    // Two transitions happened (3 -> 4 -> 3): the stream reports the latest
    // value, even though it equals the previous item.
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    w.set(3);
    assert_eq!(poll_noop(&mut changes), Poll::Ready(Some(3)));
    w.set(4);
    w.set(3);
    assert_eq!(poll_noop(&mut changes), Poll::Ready(Some(3)));
    assert_eq!(poll_noop(&mut changes), Poll::Pending);
}

#[test]
fn equal_sets_produce_no_item_and_no_wake_up() {
    let w = ValueWatcher::new(5u32);
    let mut changes = w.changes();
    let (wakes, waker) = counting_waker();
    assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
    for _ in 0..10 {
        assert!(!w.set(5));
        assert!(w.set_if(5, |_| true)); // condition held, value equal
        assert!(!w.modify(|v| *v += 0));
    }
    assert_eq!(wakes.get(), 0);
    assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
    assert!(w.modify(|v| *v += 1));
    assert_eq!(wakes.get(), 1);
    assert_eq!(poll_next(&mut changes, &waker), Poll::Ready(Some(6)));
}

#[test]
fn the_latest_waker_is_the_one_woken() {
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    let (old, old_waker) = counting_waker();
    let (new, new_waker) = counting_waker();
    assert_eq!(poll_next(&mut changes, &old_waker), Poll::Pending);
    assert_eq!(poll_next(&mut changes, &new_waker), Poll::Pending);
    w.set(1);
    assert_eq!((old.get(), new.get()), (0, 1));
    assert_eq!(poll_next(&mut changes, &new_waker), Poll::Ready(Some(1)));
}

#[test]
fn streams_are_independent_of_each_other_and_of_waits() {
    let w = ValueWatcher::new(0u32);
    let mut eager = w.changes();
    let mut lazy = w.changes();
    let mut wait = pin!(w.wait_for(2));
    assert!(poll_fut_noop(wait.as_mut()).is_pending());
    let mut eager_items = Vec::new();
    for v in 1..=4 {
        w.set(v);
        if let Poll::Ready(item) = poll_noop(&mut eager) {
            eager_items.push(item.unwrap());
        }
    }
    assert_eq!(eager_items, [1, 2, 3, 4]);
    assert_eq!(poll_noop(&mut lazy), Poll::Ready(Some(4)));
    // The streams took nothing from the wait, which saw the transient 2.
    assert_eq!(poll_fut_noop(wait.as_mut()), Poll::Ready(2));
    drop(eager);
    w.set(5);
    assert_eq!(poll_noop(&mut lazy), Poll::Ready(Some(5)));
}

#[test]
fn never_ends() {
    let w = ValueWatcher::new(0u8);
    let mut changes = w.changes();
    for v in 1..=255 {
        w.set(v);
        assert_eq!(poll_noop(&mut changes), Poll::Ready(Some(v)));
    }
    assert_eq!(changes.size_hint().1, None, "no upper bound on items");
}

// === the StreamExt adaptors ===

#[test]
fn futures_lite_stream_ext() {
    use futures_lite::StreamExt;
    use futures_lite::future::block_on;

    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    w.set(1);
    // `Unpin`: `next()` needs no pinning.
    assert_eq!(block_on(changes.next()), Some(1));

    // Each item sets the next value from inside the pipeline, so every
    // transition is seen on its own: exactly 2..=6.
    w.set(2);
    let seen: Vec<u32> = block_on(
        (&mut changes)
            .map(|v| {
                w.set(v + 1);
                v
            })
            .take(5)
            .collect(),
    );
    assert_eq!(seen, [2, 3, 4, 5, 6]);
    // The last `map` set 7; the stream is still usable after `&mut`.
    assert_eq!(block_on(changes.next()), Some(7));

    w.set(10);
    let evens: Vec<u32> = block_on(
        changes
            .inspect(|v| {
                if *v < 20 {
                    w.set(v + 1);
                }
            })
            .filter(|v| v % 2 == 0)
            .take_while(|v| *v < 20)
            .collect(),
    );
    assert_eq!(evens, [10, 12, 14, 16, 18]);
}

#[test]
fn futures_stream_ext() {
    use futures::StreamExt;
    use futures::executor::block_on;

    let w = ValueWatcher::new(String::new());
    let mut changes = w.changes();
    w.set("a".into());
    assert_eq!(block_on(changes.next()).as_deref(), Some("a"));

    w.set("b".into());
    let seen: Vec<(usize, usize)> = block_on(
        changes
            .map(|s| {
                if s.len() < 4 {
                    w.set(format!("{s}b"));
                }
                s.len()
            })
            .enumerate()
            .take(3)
            .collect(),
    );
    assert_eq!(seen, [(0, 1), (1, 2), (2, 3)]);
}

#[test]
fn select_two_streams_with_futures() {
    use futures::StreamExt;

    let left = ValueWatcher::new(0u32);
    let right = ValueWatcher::new(0u32);
    let mut both = futures::stream::select(left.changes(), right.changes().map(|v| v + 100));
    left.set(1);
    right.set(2);
    let mut items = vec![
        futures::executor::block_on(both.next()).unwrap(),
        futures::executor::block_on(both.next()).unwrap(),
    ];
    items.sort_unstable();
    assert_eq!(items, [1, 102]);
    assert_eq!(poll_noop(&mut both), Poll::Pending);
}

// === across threads ===

#[test]
fn a_setter_on_another_thread_wakes_a_pending_next() {
    use futures_lite::StreamExt;
    let _dog = watchdog("changes: foreign setter wakes next()", 120);
    type BlockOn = for<'a> fn(Pin<Box<dyn Future<Output = Option<u32>> + 'a>>) -> Option<u32>;
    let executors: [(&str, BlockOn); 4] = [
        ("smol", |f| smol::block_on(f)),
        ("pollster", |f| pollster::block_on(f)),
        ("futures", |f| futures::executor::block_on(f)),
        ("async-std", |f| async_std::task::block_on(f)),
    ];
    for (name, block_on) in executors {
        for round in 0..100u32 {
            let w = ValueWatcher::new(0u32);
            let mut changes = w.changes();
            let (registered_tx, registered) = mpsc::channel();
            let item = thread::scope(|s| {
                let w = &w;
                s.spawn(move || {
                    registered.recv_timeout(LIMIT).expect("next() registers");
                    w.set(round + 1);
                });
                block_on(Box::pin(reporting_pending(changes.next(), registered_tx)))
            });
            assert_eq!(item, Some(round + 1), "{name}, round {round}");
        }
    }
}

static SPAWNED: ValueWatcher<u32> = ValueWatcher::new(0);

#[test]
fn a_stream_of_a_static_watcher_moves_into_a_spawned_task() {
    use futures_lite::StreamExt;
    let _dog = watchdog("changes in a tokio task", 120);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (registered_tx, registered) = mpsc::channel();
    // `Changes<'static, u32>` is `Send`: the task owns it.
    let task = rt.spawn(async move {
        let mut changes = SPAWNED.changes();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let next = reporting_pending(changes.next(), registered_tx.clone());
            seen.push(next.await.unwrap());
        }
        seen
    });
    for v in 1..=3 {
        registered.recv_timeout(LIMIT).expect("next() registers");
        SPAWNED.set(v);
    }
    assert_eq!(rt.block_on(task).unwrap(), [1, 2, 3]);
}

#[test]
fn a_slow_consumer_on_another_thread_sees_increasing_values_and_the_last() {
    use futures_lite::StreamExt;
    let _dog = watchdog("changes: slow consumer", 120);
    const N: u32 = 20_000;
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    let items = thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..N {
                w.modify(|v| *v += 1);
            }
        });
        smol::block_on(async {
            let mut items = 0u32;
            let mut last = 0;
            while let Some(v) = changes.next().await {
                assert!(v > last, "items only move forward: {v} after {last}");
                last = v;
                items += 1;
                if v == N {
                    break;
                }
            }
            items
        })
    });
    assert!(
        (1..=N).contains(&items),
        "{items} items for {N} transitions"
    );
}

// === dropping ===

#[test]
fn dropping_a_registered_stream_unregisters_it() {
    let w = ValueWatcher::new(0u32);
    let (wakes, waker) = counting_waker();

    let mut registered = w.changes();
    assert_eq!(poll_next(&mut registered, &waker), Poll::Pending);
    drop(registered);
    w.set(1);
    assert_eq!(wakes.get(), 0, "a dropped stream is never woken");

    // Signalled but never polled again, then dropped.
    let mut signalled = w.changes();
    assert_eq!(poll_next(&mut signalled, &waker), Poll::Pending);
    w.set(2);
    assert_eq!(wakes.get(), 1);
    drop(signalled);

    // Created, never polled, dropped.
    drop(w.changes());

    // The watcher is unaffected: a new stream and a new wait work.
    let mut fresh = w.changes();
    let mut wait = pin!(w.wait_for(3));
    assert!(poll_fut_noop(wait.as_mut()).is_pending());
    assert_eq!(poll_noop(&mut fresh), Poll::Pending);
    w.set(3);
    assert_eq!(poll_noop(&mut fresh), Poll::Ready(Some(3)));
    assert_eq!(poll_fut_noop(wait.as_mut()), Poll::Ready(3));
    assert_eq!(wakes.get(), 1);
}

#[test]
fn a_dropped_next_future_loses_nothing() {
    use futures_lite::StreamExt;
    let w = ValueWatcher::new(0u32);
    let mut changes = w.changes();
    {
        let mut next = changes.next();
        assert!(poll_fut_noop(Pin::new(&mut next)).is_pending());
    } // cancelled while registered
    w.set(1);
    w.set(2);
    assert_eq!(futures_lite::future::block_on(changes.next()), Some(2));
}

#[test]
fn dropping_streams_while_another_thread_sets() {
    let _dog = watchdog("changes: drop while setting", 120);
    let w = ValueWatcher::new(0u64);
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                w.modify(|v| *v += 1);
            }
        });
        for _ in 0..5_000 {
            let mut changes = w.changes();
            let _ = poll_noop(&mut changes); // registers, or takes an item
            let _ = poll_noop(&mut changes);
            drop(changes); // registered or signalled, racing the setter
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // Nothing is left registered: a further transition wakes nobody, and a
    // new stream works.
    let mut changes = w.changes();
    let v = w.get();
    w.set(v + 1);
    assert_eq!(poll_noop(&mut changes), Poll::Ready(Some(v + 1)));
}

// === memory ===

struct Counting;

thread_local! {
    /// Allocations by this thread (tests run on several threads at once).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCS.with(Cell::get);
    let result = f();
    (ALLOCS.with(Cell::get) - before, result)
}

#[test]
fn memory_stays_bounded() {
    let w = ValueWatcher::new(0u64);
    let (wakes, waker) = counting_waker();

    let (allocs, mut changes) = allocations(|| w.changes());
    assert!(
        allocs <= 1,
        "creating a stream allocates its node at most once"
    );

    let (allocs, ()) = allocations(|| {
        for v in 1..=10_000 {
            assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
            w.set(v);
            assert_eq!(poll_next(&mut changes, &waker), Poll::Ready(Some(v)));
        }
    });
    assert_eq!(allocs, 0, "polling and setting never allocate");
    assert_eq!(wakes.get(), 10_000);

    // A consumer that never polls: 100,000 transitions are not buffered.
    let (allocs, ()) = allocations(|| {
        assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
        for v in 10_001..=110_000 {
            w.set(v);
        }
    });
    assert_eq!(allocs, 0, "nothing is stored per transition");
    assert_eq!(poll_next(&mut changes, &waker), Poll::Ready(Some(110_000)));
    assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);

    // Abandoned `next()` futures leave nothing behind.
    let (allocs, ()) = allocations(|| {
        use futures_lite::StreamExt;
        for _ in 0..1_000 {
            let mut next = changes.next();
            assert!(poll_fut_noop(Pin::new(&mut next)).is_pending());
        }
    });
    assert_eq!(allocs, 0);
}

// === types ===

#[test]
fn changes_is_an_unpin_send_stream() {
    fn unpin_send_stream<S: Stream + Unpin + Send>(_: &S) {}
    let w = ValueWatcher::new(0u32);
    let changes: Changes<'_, u32> = w.changes();
    unpin_send_stream(&changes);
    assert!(format!("{changes:?}").contains("Changes"));
}

// === panics ===

/// A value whose `Clone` panics while `PANIC_ON_CLONE` is set (this thread).
#[cfg(panic = "unwind")]
mod panicky {
    use std::cell::Cell;

    thread_local! {
        pub static PANIC_ON_CLONE: Cell<bool> = const { Cell::new(false) };
    }

    #[derive(PartialEq, Debug)]
    pub struct Fragile(pub u32);

    impl Clone for Fragile {
        fn clone(&self) -> Self {
            if PANIC_ON_CLONE.with(Cell::get) {
                panic!("clone of Fragile({})", self.0);
            }
            Fragile(self.0)
        }
    }
}

/// SPEC §3.10: "A panicking `Clone` anywhere leaves the watcher usable". The
/// stream clones the value in `poll_next`; after that clone panics, the same
/// stream (and the watcher) must keep working.
#[cfg(panic = "unwind")]
#[test]
fn a_panicking_clone_in_poll_next_leaves_the_stream_usable() {
    use panicky::{Fragile, PANIC_ON_CLONE};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let w = ValueWatcher::new(Fragile(0));
    let mut changes = w.changes();
    let (wakes, waker) = counting_waker();
    assert_eq!(poll_next(&mut changes, &waker), Poll::Pending);
    w.set(Fragile(1));
    assert_eq!(wakes.get(), 1);

    PANIC_ON_CLONE.with(|p| p.set(true));
    let panicked = catch_unwind(AssertUnwindSafe(|| poll_next(&mut changes, &waker)));
    PANIC_ON_CLONE.with(|p| p.set(false));
    assert!(panicked.is_err(), "the clone's panic reaches the consumer");

    // The stream may or may not yield Fragile(1) again, but it must not
    // panic, and it must report the next transition.
    let after = catch_unwind(AssertUnwindSafe(|| poll_next(&mut changes, &waker)));
    assert!(
        matches!(after, Ok(Poll::Pending | Poll::Ready(Some(Fragile(1))))),
        "poll after a panicking clone: {after:?}"
    );
    w.set(Fragile(2));
    let next = catch_unwind(AssertUnwindSafe(|| poll_next(&mut changes, &waker)));
    assert!(
        matches!(next, Ok(Poll::Ready(Some(Fragile(2))))),
        "next transition: {next:?}"
    );
    assert_eq!(w.get(), Fragile(2));
}
