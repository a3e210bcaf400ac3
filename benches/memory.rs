//! Memory of value-watcher and its peers: inline sizes, heap bytes per
//! waiter, allocations per wait and per set, and what abandoned waits leave
//! behind. Prints markdown tables; run with
//!
//! ```text
//! cargo bench --bench memory
//! ```
//!
//! A counting global allocator measures live heap bytes and allocation
//! calls. The program is single-threaded, so the process-wide counters see
//! only the code under measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::hint::black_box;
use std::mem::{size_of, size_of_val};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::watch::Watch;
use event_listener::{Event, listener};
use futures_signals::signal::{Mutable, SignalExt};
use value_watcher::ValueWatcher;

// === counting allocator ===

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which we forward.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocation calls, change in live heap bytes) while running `f`.
fn heap<R>(f: impl FnOnce() -> R) -> (usize, isize, R) {
    let (a0, l0) = (ALLOCS.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
    let r = f();
    (
        ALLOCS.load(Ordering::Relaxed) - a0,
        LIVE.load(Ordering::Relaxed) - l0,
        r,
    )
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

// === one row per system ===

const N: usize = 1000;
const EMBASSY_N: usize = 1024;

type EmbassyWatch = Watch<CriticalSectionRawMutex, u64, EMBASSY_N>;

/// The hand-rolled peer: value + version under a std Mutex, an Event.
struct ElMutex {
    state: Mutex<(u64, u64)>,
    changed: Event,
}

impl ElMutex {
    fn new(v: u64) -> Self {
        Self {
            state: Mutex::new((v, 0)),
            changed: Event::new(),
        }
    }
    fn set(&self, v: u64) {
        {
            let mut s = self.state.lock().unwrap();
            if s.0 == v {
                return;
            }
            s.0 = v;
            s.1 += 1;
        }
        self.changed.notify(usize::MAX);
    }
    async fn wait_for(&self, v: u64) -> u64 {
        loop {
            if self.state.lock().unwrap().0 == v {
                return v;
            }
            listener!(self.changed => l);
            if self.state.lock().unwrap().0 == v {
                return v;
            }
            l.await;
        }
    }
}

async fn async_watch_wait_for(rx: &mut async_watch::Receiver<u64>, v: u64) -> u64 {
    loop {
        if *rx.borrow() == v {
            return v;
        }
        rx.changed().await.unwrap();
    }
}

struct Row {
    system: &'static str,
    /// Inline size of the watcher (what a `static` or a struct field holds).
    watcher_inline: usize,
    /// Heap bytes allocated by creating the watcher (live afterwards).
    watcher_heap: isize,
    /// Size of what one waiting task keeps between waits (a receiver).
    handle: usize,
    /// Size of the system's own "wait for value" future.
    future: usize,
    /// Live heap bytes per registered waiter (1,000 waiters, each with its
    /// handle, polled once), beyond the future's own memory.
    heap_per_waiter: f64,
    /// Allocation calls per wait in a steady create/poll/set/poll cycle.
    allocs_per_wait: f64,
    /// Allocation calls per set with nobody waiting.
    allocs_per_set: f64,
    /// Allocation calls of one set that wakes 1,000 waiters.
    broadcast_allocs: usize,
    /// Live heap bytes left after 10,000 waits were polled once and dropped
    /// without any set.
    abandoned: isize,
}

/// Creates `N` waiters with `make`, pins each in a pre-allocated vector,
/// polls each once; returns live heap bytes per waiter.
fn waiters_heap<F: Future>(mut make: impl FnMut(usize) -> F) -> f64 {
    let mut futs: Vec<F> = Vec::with_capacity(N);
    let (_, live, ()) = heap(|| {
        for i in 0..N {
            futs.push(make(i));
            let fut = futs.last_mut().unwrap();
            // SAFETY: the vector never reallocates (capacity reserved) and
            // drops its elements in place, so the future never moves again.
            let fut = unsafe { Pin::new_unchecked(fut) };
            assert!(poll_once(fut).is_pending());
        }
    });
    drop(futs);
    live as f64 / N as f64
}

/// Allocation calls per cycle of: create a wait (`$make`, using `$i`), poll
/// it, set `$i` (`$set`), poll it to ready. A macro rather than a function so
/// that `$make` may borrow a receiver mutably for one wait at a time.
macro_rules! allocs_per_wait {
    (|$i:ident| $make:expr, |$j:ident| $set:expr $(,)?) => {{
        #[allow(unused_mut)] // `FnMut` only when `$make` borrows a receiver
        let mut cycle = |$i: u64| {
            let $j = $i;
            let mut fut = std::pin::pin!($make);
            assert!(poll_once(fut.as_mut()).is_pending());
            $set;
            assert!(poll_once(fut.as_mut()).is_ready());
        };
        // Warm up (lazy initialization, first listener slots).
        for i in 1..=10 {
            cycle(i);
        }
        let (allocs, _, ()) = heap(|| {
            for i in 11..=1010 {
                cycle(i);
            }
        });
        allocs as f64 / 1000.0
    }};
}

/// Allocation calls of one set that wakes `N` waiters created with `make`
/// (all waiting for `v`) and polled once.
fn broadcast_allocs<F: Future>(make: impl Fn() -> F, set: impl FnOnce()) -> usize {
    let mut futs: Vec<F> = Vec::with_capacity(N);
    for _ in 0..N {
        futs.push(make());
        let fut = futs.last_mut().unwrap();
        // SAFETY: as in `waiters_heap`: no reallocation, dropped in place.
        let fut = unsafe { Pin::new_unchecked(fut) };
        assert!(poll_once(fut).is_pending());
    }
    let (allocs, _, ()) = heap(set);
    for fut in &mut futs {
        // SAFETY: as above.
        let fut = unsafe { Pin::new_unchecked(fut) };
        assert!(poll_once(fut).is_ready());
    }
    allocs
}

fn allocs_per_set(mut set: impl FnMut(u64)) -> f64 {
    for i in 1..=10 {
        set(i);
    }
    let (allocs, _, ()) = heap(|| {
        for i in 11..=1010 {
            set(i);
        }
    });
    allocs as f64 / 1000.0
}

/// Live heap left after 10,000 waits were created (`$make`), polled once and
/// dropped, with no set in between.
macro_rules! abandoned {
    ($make:expr) => {{
        let (_, live, ()) = heap(|| {
            for _ in 0..10_000 {
                let mut fut = std::pin::pin!($make);
                assert!(poll_once(fut.as_mut()).is_pending());
            }
        });
        live
    }};
}

fn ours() -> Row {
    let (_, watcher_heap, w) = heap(|| ValueWatcher::new(0u64));
    let future = size_of_val(&w.wait_for(1));
    let heap_per_waiter = waiters_heap(|i| w.wait_for(N as u64 + i as u64));
    let w2 = ValueWatcher::new(0u64);
    let allocs_per_wait = allocs_per_wait!(|i| w2.wait_for(i), |i| assert!(w2.set(i)));
    let allocs_per_set = allocs_per_set(|i| assert!(w2.set(i)));
    let w3 = ValueWatcher::new(0u64);
    let broadcast_allocs = broadcast_allocs(|| w3.wait_for(9), || assert!(w3.set(9)));
    let abandoned = abandoned!(w.wait_for(u64::MAX));
    Row {
        system: "value-watcher",
        watcher_inline: size_of::<ValueWatcher<u64>>(),
        watcher_heap,
        handle: size_of::<&ValueWatcher<u64>>(),
        future,
        heap_per_waiter,
        allocs_per_wait,
        allocs_per_set,
        broadcast_allocs,
        abandoned,
    }
}

fn tokio() -> Row {
    use tokio::sync::watch;
    let (_, watcher_heap, (tx, rx)) = heap(|| watch::channel(0u64));
    let mut rx1 = rx.clone();
    let future = size_of_val(&rx1.wait_for(|x| *x == 1));
    let heap_per_waiter = waiters_heap(|i| {
        let mut rx = tx.subscribe();
        let v = (N + i) as u64;
        async move { *rx.wait_for(|x| *x == v).await.unwrap() }
    });
    let (tx2, mut rx2) = watch::channel(0u64);
    let allocs_per_wait = allocs_per_wait!(
        |i| async { *rx2.wait_for(|x| *x == i).await.unwrap() },
        |i| {
            tx2.send_replace(i);
        },
    );
    let allocs_per_set = allocs_per_set(|i| {
        tx2.send_replace(i);
    });
    let mut rx3 = rx.clone();
    let (tx3, rx3b) = watch::channel(0u64);
    let broadcast_allocs = broadcast_allocs(
        || {
            let mut rx = rx3b.clone();
            async move { *rx.wait_for(|x| *x == 9).await.unwrap() }
        },
        || {
            tx3.send_replace(9);
        },
    );
    let abandoned = abandoned!(rx3.wait_for(|x| *x == u64::MAX));
    drop(rx);
    Row {
        system: "tokio::sync::watch",
        watcher_inline: size_of::<watch::Sender<u64>>() + size_of::<watch::Receiver<u64>>(),
        watcher_heap,
        handle: size_of::<watch::Receiver<u64>>(),
        future,
        heap_per_waiter,
        allocs_per_wait,
        allocs_per_set,
        broadcast_allocs,
        abandoned,
    }
}

fn async_watch() -> Row {
    let (_, watcher_heap, (tx, rx)) = heap(|| async_watch::channel(0u64));
    let mut rx1 = rx.clone();
    let future = size_of_val(&async_watch_wait_for(&mut rx1, 1));
    let heap_per_waiter = waiters_heap(|i| {
        let mut rx = rx.clone();
        let v = (N + i) as u64;
        async move { async_watch_wait_for(&mut rx, v).await }
    });
    let (tx2, mut rx2) = async_watch::channel(0u64);
    let allocs_per_wait = allocs_per_wait!(|i| async_watch_wait_for(&mut rx2, i), |i| tx2
        .send(i)
        .unwrap(),);
    let allocs_per_set = allocs_per_set(|i| tx2.send(i).unwrap());
    let mut rx3 = rx.clone();
    let (tx3, rx3b) = async_watch::channel(0u64);
    let broadcast_allocs = broadcast_allocs(
        || {
            let mut rx = rx3b.clone();
            async move { async_watch_wait_for(&mut rx, 9).await }
        },
        || tx3.send(9).unwrap(),
    );
    let abandoned = abandoned!(async_watch_wait_for(&mut rx3, u64::MAX));
    drop((tx, rx));
    Row {
        system: "async-watch",
        watcher_inline: size_of::<async_watch::Sender<u64>>()
            + size_of::<async_watch::Receiver<u64>>(),
        watcher_heap,
        handle: size_of::<async_watch::Receiver<u64>>(),
        future,
        heap_per_waiter,
        allocs_per_wait,
        allocs_per_set,
        broadcast_allocs,
        abandoned,
    }
}

fn embassy() -> Row {
    let (_, watcher_heap, w) = heap(|| Box::new(EmbassyWatch::new_with(0u64)));
    let watcher_heap = watcher_heap - size_of::<EmbassyWatch>() as isize;
    let mut rx1 = w.receiver().unwrap();
    let future = size_of_val(&rx1.get_and(|x| *x == 1));
    drop(rx1);
    let heap_per_waiter = waiters_heap(|i| {
        let mut rx = w.receiver().unwrap();
        let v = (N + i) as u64;
        async move { rx.get_and(|x| *x == v).await }
    });
    let w2 = Box::new(EmbassyWatch::new_with(0u64));
    let mut rx2 = w2.receiver().unwrap();
    let sender = w2.sender();
    let allocs_per_wait = allocs_per_wait!(|i| rx2.get_and(move |x| *x == i), |i| sender.send(i),);
    let allocs_per_set = allocs_per_set(|i| sender.send(i));
    let mut rx3 = w.receiver().unwrap();
    let w3 = Box::new(EmbassyWatch::new_with(0u64));
    let broadcast_allocs = broadcast_allocs(
        || {
            let mut rx = w3.receiver().unwrap();
            async move { rx.get_and(|x| *x == 9).await }
        },
        || w3.sender().send(9),
    );
    let abandoned = abandoned!(rx3.get_and(|x| *x == u64::MAX));
    Row {
        system: "embassy-sync Watch (N=1024)",
        watcher_inline: size_of::<EmbassyWatch>(),
        watcher_heap,
        handle: size_of_val(&rx3),
        future,
        heap_per_waiter,
        allocs_per_wait,
        allocs_per_set,
        broadcast_allocs,
        abandoned,
    }
}

fn signals() -> Row {
    let (_, watcher_heap, m) = heap(|| Mutable::new(0u64));
    let future = size_of_val(&m.signal().wait_for(1));
    let heap_per_waiter = waiters_heap(|i| m.signal().wait_for((N + i) as u64));
    let m2 = Mutable::new(0u64);
    let allocs_per_wait = allocs_per_wait!(|i| m2.signal().wait_for(i), |i| m2.set_neq(i));
    let allocs_per_set = allocs_per_set(|i| m2.set_neq(i));
    let m3 = Mutable::new(0u64);
    let broadcast_allocs = broadcast_allocs(|| m3.signal().wait_for(9), || m3.set_neq(9));
    let abandoned = abandoned!(m.signal().wait_for(u64::MAX));
    Row {
        system: "futures-signals Mutable",
        watcher_inline: size_of::<Mutable<u64>>(),
        watcher_heap,
        handle: size_of::<&Mutable<u64>>(),
        future,
        heap_per_waiter,
        allocs_per_wait,
        allocs_per_set,
        broadcast_allocs,
        abandoned,
    }
}

fn el_mutex() -> Row {
    let (_, watcher_heap, w) = heap(|| ElMutex::new(0));
    let future = size_of_val(&w.wait_for(1));
    let heap_per_waiter = waiters_heap(|i| w.wait_for((N + i) as u64));
    let w2 = ElMutex::new(0);
    let allocs_per_wait = allocs_per_wait!(|i| w2.wait_for(i), |i| w2.set(i));
    let allocs_per_set = allocs_per_set(|i| w2.set(i));
    let w3 = ElMutex::new(0);
    let broadcast_allocs = broadcast_allocs(|| w3.wait_for(9), || w3.set(9));
    let abandoned = abandoned!(w.wait_for(u64::MAX));
    Row {
        system: "event-listener + Mutex",
        watcher_inline: size_of::<ElMutex>(),
        watcher_heap,
        handle: size_of::<&ElMutex>(),
        future,
        heap_per_waiter,
        allocs_per_wait,
        allocs_per_set,
        broadcast_allocs,
        abandoned,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `--test` (smoke run) is accepted too.
    let rows = [
        ours(),
        tokio(),
        async_watch(),
        embassy(),
        signals(),
        el_mutex(),
    ];
    println!("### Memory (T = u64; heap counted by a global allocator)\n");
    println!(
        "| system | watcher inline bytes | watcher heap bytes | per-waiter handle bytes | wait future bytes | heap bytes per waiting waiter | allocations per wait (create, poll, set, poll) | allocations per set, nobody waiting | allocations in one set waking 1,000 waiters | heap left by 10,000 abandoned waits |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {} |",
            r.system,
            r.watcher_inline,
            r.watcher_heap,
            r.handle,
            r.future,
            r.heap_per_waiter,
            r.allocs_per_wait,
            r.allocs_per_set,
            r.broadcast_allocs,
            r.abandoned
        );
    }
    println!(
        "\n* value-watcher future sizes (T = u64): `WaitFor` {}, `WaitForNot` {}, `WaitUntil` (closure capturing a u64) {}, `WaitForChange` {}; `WaitForSome<u64>` {}; `Changes` {} (+ its boxed node)",
        size_of::<value_watcher::WaitFor<'static, u64>>(),
        size_of::<value_watcher::WaitForNot<'static, u64>>(),
        {
            let w = ValueWatcher::new(0u64);
            let k = black_box(3u64);
            size_of_val(&w.wait_until(move |v| *v == k))
        },
        size_of::<value_watcher::WaitForChange<'static, u64>>(),
        size_of::<value_watcher::WaitForSome<'static, u64>>(),
        size_of::<value_watcher::Changes<'static, u64>>(),
    );
    println!(
        "* embassy-sync `Watch<CriticalSectionRawMutex, u64, N>` inline: N=1 {}, N=4 {}, N=1024 {} (a waker slot per receiver)",
        size_of::<Watch<CriticalSectionRawMutex, u64, 1>>(),
        size_of::<Watch<CriticalSectionRawMutex, u64, 4>>(),
        size_of::<EmbassyWatch>(),
    );
    println!(
        "* value-watcher with T = String: `ValueWatcher` {}, `WaitFor` {}",
        size_of::<ValueWatcher<String>>(),
        size_of::<value_watcher::WaitFor<'static, String>>()
    );
}
