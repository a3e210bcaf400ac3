//! value-watcher side by side with its peers and with a bare spinlock.
//!
//! Every scenario runs for every system that can express it, in one process,
//! one after the other, so the ratios printed at the end come from one run on
//! one machine state. See `benches/README.md` for the results and for what
//! each scenario counts.
//!
//! ```text
//! cargo bench --bench peers                    # the whole suite, a few minutes
//! cargo bench --bench peers -- selective_wake  # one scenario
//! cargo bench --bench peers -- --test          # smoke run: every benchmark once
//! ```
//!
//! The systems (all hold a `u64`, or a `String` for `get_string`):
//!
//! | name                   | what                                                                 |
//! |------------------------|----------------------------------------------------------------------|
//! | `value-watcher`        | this crate; blocking waits use `.wait()`                             |
//! | `value-watcher-blockon`| this crate, blocking waits through `futures_lite::future::block_on`   |
//! | `tokio`                | `tokio::sync::watch` (`send_replace`, `Receiver::wait_for`)          |
//! | `async-watch`          | `async_watch` (`send`, check + `changed()` loop)                     |
//! | `embassy-cs`           | `embassy_sync::watch::Watch` with `CriticalSectionRawMutex` (`get_and`) |
//! | `embassy-noop`         | the same with `NoopRawMutex` (single-thread only, not `Sync`)        |
//! | `futures-signals`      | `futures_signals::signal::Mutable` (`set_neq`, `signal_cloned().wait_for`) |
//! | `event-listener-mutex` | hand-rolled: value + version in a `std::sync::Mutex`, an `Event` notified on every transition; waiters check, listen, re-check |
//! | `spin`                 | a bare `spin::mutex::SpinMutex<T>`: the cost of a value behind a lock |

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};
use embassy_sync::watch::{Receiver as EmbassyReceiver, Watch};
use event_listener::{Event, listener};
use futures_signals::signal::{Mutable, SignalExt};
use value_watcher::ValueWatcher;

// ============================================================================
// The systems
// ============================================================================

/// A value behind some synchronization: create, set, read.
trait Cell<T>: Sized {
    /// The benchmark id (also criterion's directory name).
    const NAME: &'static str;
    fn new(init: T) -> Self;
    /// Store `v`, waking whoever the system wakes.
    fn set(&self, v: T);
    /// A clone of the current value.
    fn get(&self) -> T;
}

/// A [`Cell`] that tasks can wait on until it equals a value.
trait WaitCell<T: Clone + PartialEq + 'static>: Cell<T> {
    /// What one waiting task holds between waits (a receiver for channel-style
    /// peers, a plain reference for the others).
    type Rx<'a>
    where
        Self: 'a;
    fn rx(&self) -> Self::Rx<'_>;
    /// The system's idiomatic "wait until the value is `v`" future; it checks
    /// the current value first.
    fn wait_for<'a, 'b: 'a>(rx: &'a mut Self::Rx<'b>, v: T) -> impl Future<Output = T> + 'a
    where
        Self: 'b;
    /// Blocks the thread until the value is `v`.
    fn block_wait_for(rx: &mut Self::Rx<'_>, v: T) -> T {
        futures_lite::future::block_on(Self::wait_for(rx, v))
    }
}

// --- value-watcher ---

struct Ours<T>(ValueWatcher<T>);

impl<T: Clone + PartialEq> Cell<T> for Ours<T> {
    const NAME: &'static str = "value-watcher";
    fn new(init: T) -> Self {
        Self(ValueWatcher::new(init))
    }
    fn set(&self, v: T) {
        self.0.set(v);
    }
    fn get(&self) -> T {
        self.0.get()
    }
}

impl<T: Clone + PartialEq + 'static> WaitCell<T> for Ours<T> {
    type Rx<'a> = &'a ValueWatcher<T>;
    fn rx(&self) -> &ValueWatcher<T> {
        &self.0
    }
    fn wait_for<'a, 'b: 'a>(rx: &'a mut &'b ValueWatcher<T>, v: T) -> impl Future<Output = T> + 'a {
        rx.wait_for(v)
    }
    fn block_wait_for(rx: &mut &ValueWatcher<T>, v: T) -> T {
        rx.wait_for(v).wait()
    }
}

/// This crate again, but blocking through `futures_lite::future::block_on`
/// like the peers (only used in the ping-pong).
struct OursBlockOn<T>(ValueWatcher<T>);

impl<T: Clone + PartialEq> Cell<T> for OursBlockOn<T> {
    const NAME: &'static str = "value-watcher-blockon";
    fn new(init: T) -> Self {
        Self(ValueWatcher::new(init))
    }
    fn set(&self, v: T) {
        self.0.set(v);
    }
    fn get(&self) -> T {
        self.0.get()
    }
}

impl<T: Clone + PartialEq + 'static> WaitCell<T> for OursBlockOn<T> {
    type Rx<'a> = &'a ValueWatcher<T>;
    fn rx(&self) -> &ValueWatcher<T> {
        &self.0
    }
    fn wait_for<'a, 'b: 'a>(rx: &'a mut &'b ValueWatcher<T>, v: T) -> impl Future<Output = T> + 'a {
        rx.wait_for(v)
    }
}

// --- tokio::sync::watch ---

struct Tokio<T> {
    tx: tokio::sync::watch::Sender<T>,
    rx: tokio::sync::watch::Receiver<T>,
}

impl<T: Clone> Cell<T> for Tokio<T> {
    const NAME: &'static str = "tokio";
    fn new(init: T) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(init);
        Self { tx, rx }
    }
    fn set(&self, v: T) {
        drop(self.tx.send_replace(v));
    }
    fn get(&self) -> T {
        self.rx.borrow().clone()
    }
}

impl<T: Clone + PartialEq + 'static> WaitCell<T> for Tokio<T> {
    type Rx<'a> = tokio::sync::watch::Receiver<T>;
    fn rx(&self) -> Self::Rx<'_> {
        self.tx.subscribe()
    }
    #[allow(clippy::manual_async_fn)] // same signature as the trait's
    fn wait_for<'a, 'b: 'a>(
        rx: &'a mut tokio::sync::watch::Receiver<T>,
        v: T,
    ) -> impl Future<Output = T> + 'a {
        async move {
            let found = rx.wait_for(|x| *x == v).await.expect("sender alive");
            T::clone(&found)
        }
    }
}

// --- async-watch ---

struct AsyncWatch<T> {
    tx: async_watch::Sender<T>,
    rx: async_watch::Receiver<T>,
}

impl<T: Clone> Cell<T> for AsyncWatch<T> {
    const NAME: &'static str = "async-watch";
    fn new(init: T) -> Self {
        let (tx, rx) = async_watch::channel(init);
        Self { tx, rx }
    }
    fn set(&self, v: T) {
        assert!(self.tx.send(v).is_ok(), "a receiver is alive");
    }
    fn get(&self) -> T {
        self.rx.borrow().clone()
    }
}

impl<T: Clone + PartialEq + 'static> WaitCell<T> for AsyncWatch<T> {
    type Rx<'a> = async_watch::Receiver<T>;
    fn rx(&self) -> Self::Rx<'_> {
        self.rx.clone()
    }
    #[allow(clippy::manual_async_fn)] // same signature as the trait's
    fn wait_for<'a, 'b: 'a>(
        rx: &'a mut async_watch::Receiver<T>,
        v: T,
    ) -> impl Future<Output = T> + 'a {
        async move {
            loop {
                {
                    let current = rx.borrow();
                    if *current == v {
                        return T::clone(&current);
                    }
                }
                rx.changed().await.expect("sender alive");
            }
        }
    }
}

// --- embassy-sync Watch ---

/// Receiver slots: enough for the 1,000-waiter scenarios.
const EMBASSY_N: usize = 1024;

struct Embassy<M: RawMutex, T: Clone>(Watch<M, T, EMBASSY_N>);

/// Names the two mutex flavours.
trait EmbassyFlavour: RawMutex {
    const NAME: &'static str;
}
impl EmbassyFlavour for CriticalSectionRawMutex {
    const NAME: &'static str = "embassy-cs";
}
impl EmbassyFlavour for NoopRawMutex {
    const NAME: &'static str = "embassy-noop";
}

impl<M: EmbassyFlavour, T: Clone> Cell<T> for Embassy<M, T> {
    const NAME: &'static str = M::NAME;
    fn new(init: T) -> Self {
        Self(Watch::new_with(init))
    }
    fn set(&self, v: T) {
        self.0.sender().send(v);
    }
    fn get(&self) -> T {
        self.0.try_get().expect("initialized")
    }
}

impl<M: EmbassyFlavour, T: Clone + PartialEq + 'static> WaitCell<T> for Embassy<M, T> {
    type Rx<'a>
        = EmbassyReceiver<'a, M, T, EMBASSY_N>
    where
        Self: 'a;
    fn rx(&self) -> Self::Rx<'_> {
        self.0.receiver().expect("a free receiver slot")
    }
    fn wait_for<'a, 'b: 'a>(
        rx: &'a mut EmbassyReceiver<'b, M, T, EMBASSY_N>,
        v: T,
    ) -> impl Future<Output = T> + 'a
    where
        Self: 'b,
    {
        rx.get_and(move |x| *x == v)
    }
}

type EmbassyCs<T> = Embassy<CriticalSectionRawMutex, T>;
type EmbassyNoop<T> = Embassy<NoopRawMutex, T>;

// --- futures-signals Mutable ---

struct Signals<T>(Mutable<T>);

impl<T: Clone + PartialEq> Cell<T> for Signals<T> {
    const NAME: &'static str = "futures-signals";
    fn new(init: T) -> Self {
        Self(Mutable::new(init))
    }
    fn set(&self, v: T) {
        self.0.set_neq(v);
    }
    fn get(&self) -> T {
        self.0.get_cloned()
    }
}

impl<T: Clone + PartialEq + 'static> WaitCell<T> for Signals<T> {
    type Rx<'a> = &'a Mutable<T>;
    fn rx(&self) -> &Mutable<T> {
        &self.0
    }
    fn wait_for<'a, 'b: 'a>(rx: &'a mut &'b Mutable<T>, v: T) -> impl Future<Output = T> + 'a {
        let signal = rx.signal_cloned();
        async move { signal.wait_for(v).await.expect("mutable alive") }
    }
    /// Across threads futures-signals 0.3.34 can lose a wake-up:
    /// `MutableSignalState::poll_change` tests `changed` and only then
    /// stores the waker, without testing again, so a set in between finds no
    /// waker and the waiter sleeps forever (our ping-pong hung that way).
    /// So its blocking wait re-polls after 10 ms without a wake-up and
    /// counts the lost wake-ups it recovers; the time lost stays measured.
    fn block_wait_for(rx: &mut &Mutable<T>, v: T) -> T {
        block_on_rescuing(Self::wait_for(rx, v))
    }
}

/// Wake-ups a peer lost, recovered by `block_on_rescuing`.
static LOST_WAKEUPS: AtomicUsize = AtomicUsize::new(0);

/// Unparks a thread and records that it was woken.
struct Unparker {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

thread_local! {
    static UNPARKER: Arc<Unparker> = Arc::new(Unparker {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
}

/// `block_on` (park until woken, like futures-lite's), except that after
/// 10 ms without a wake-up it polls again; if the future is then ready, a
/// wake-up was lost and `LOST_WAKEUPS` counts it.
fn block_on_rescuing<F: Future>(fut: F) -> F::Output {
    let unparker = UNPARKER.with(Arc::clone);
    let waker = Waker::from(unparker.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut timed_out = false;
    loop {
        unparker.woken.store(false, Ordering::Relaxed);
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            if timed_out {
                LOST_WAKEUPS.fetch_add(1, Ordering::Relaxed);
            }
            return out;
        }
        let deadline = Instant::now() + Duration::from_millis(10);
        loop {
            std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            if unparker.woken.load(Ordering::Acquire) {
                timed_out = false;
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
        }
    }
}

// --- hand-rolled: std Mutex + event-listener ---

struct ElMutex<T> {
    /// The value and its version.
    state: Mutex<(T, u64)>,
    changed: Event,
}

impl<T: Clone + PartialEq> ElMutex<T> {
    fn matching(&self, v: &T) -> Option<T> {
        let state = self.state.lock().unwrap();
        (state.0 == *v).then(|| state.0.clone())
    }
}

impl<T: Clone + PartialEq> Cell<T> for ElMutex<T> {
    const NAME: &'static str = "event-listener-mutex";
    fn new(init: T) -> Self {
        Self {
            state: Mutex::new((init, 0)),
            changed: Event::new(),
        }
    }
    fn set(&self, v: T) {
        let old = {
            let mut state = self.state.lock().unwrap();
            if state.0 == v {
                return;
            }
            state.1 += 1;
            std::mem::replace(&mut state.0, v)
        };
        drop(old);
        self.changed.notify(usize::MAX);
    }
    fn get(&self) -> T {
        self.state.lock().unwrap().0.clone()
    }
}

impl<T: Clone + PartialEq + 'static> WaitCell<T> for ElMutex<T> {
    type Rx<'a> = &'a ElMutex<T>;
    fn rx(&self) -> &ElMutex<T> {
        self
    }
    fn wait_for<'a, 'b: 'a>(rx: &'a mut &'b ElMutex<T>, v: T) -> impl Future<Output = T> + 'a {
        let this: &'b ElMutex<T> = rx;
        async move {
            loop {
                if let Some(found) = this.matching(&v) {
                    return found;
                }
                // A stack listener: no allocation per wait (the cheapest way
                // to use event-listener).
                listener!(this.changed => changed);
                if let Some(found) = this.matching(&v) {
                    return found;
                }
                changed.await;
            }
        }
    }
}

// --- the limit: a bare spinlock ---

struct Spin<T>(spin::mutex::SpinMutex<T>);

impl<T: Clone> Cell<T> for Spin<T> {
    const NAME: &'static str = "spin";
    fn new(init: T) -> Self {
        Self(spin::mutex::SpinMutex::new(init))
    }
    fn set(&self, v: T) {
        *self.0.lock() = v;
    }
    fn get(&self) -> T {
        self.0.lock().clone()
    }
}

// ============================================================================
// Wakers and a tiny run queue
// ============================================================================

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

/// One task of the 1,000-waiter scenarios: its waker pushes its id onto the
/// run queue once per wake-up, as an executor schedules a task.
struct Task {
    id: usize,
    scheduled: AtomicBool,
    queue: Arc<Mutex<Vec<usize>>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.queue.lock().unwrap().push(self.id);
        }
    }
}

/// `n` tasks sharing one run queue (capacity reserved up front, so waking
/// never allocates).
struct Executor {
    tasks: Vec<Arc<Task>>,
    wakers: Vec<Waker>,
    queue: Arc<Mutex<Vec<usize>>>,
    /// The batch being run; swapped with the queue.
    running: Vec<usize>,
}

impl Executor {
    fn new(n: usize) -> Self {
        let queue = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let tasks: Vec<_> = (0..n)
            .map(|id| {
                Arc::new(Task {
                    id,
                    scheduled: AtomicBool::new(false),
                    queue: queue.clone(),
                })
            })
            .collect();
        let wakers = tasks.iter().map(|t| Waker::from(t.clone())).collect();
        Self {
            tasks,
            wakers,
            queue,
            running: Vec::with_capacity(n),
        }
    }

    /// Polls `slot`'s future as task `id`; takes it out when ready.
    fn poll<F: Future>(&self, id: usize, slot: &mut Option<Pin<Box<F>>>) -> Option<F::Output> {
        self.tasks[id].scheduled.store(false, Ordering::Release);
        let fut = slot.as_mut()?;
        match fut
            .as_mut()
            .poll(&mut Context::from_waker(&self.wakers[id]))
        {
            Poll::Ready(out) => {
                *slot = None;
                Some(out)
            }
            Poll::Pending => None,
        }
    }

    /// Installs a new future in `slot` and polls it once; it must not be ready.
    fn arm<F: Future>(&self, id: usize, slot: &mut Option<Pin<Box<F>>>, fut: Pin<Box<F>>) {
        *slot = Some(fut);
        assert!(
            self.poll(id, slot).is_none(),
            "a new waiter completed at once"
        );
    }

    /// Runs every woken task, and those they wake, until none is scheduled.
    /// Calls `ready` with the id and output of each future that completes.
    fn run<F: Future>(
        &mut self,
        slots: &mut [Option<Pin<Box<F>>>],
        mut ready: impl FnMut(usize, F::Output),
    ) {
        loop {
            std::mem::swap(&mut *self.queue.lock().unwrap(), &mut self.running);
            if self.running.is_empty() {
                return;
            }
            let mut batch = std::mem::take(&mut self.running);
            for &id in &batch {
                if let Some(out) = self.poll(id, &mut slots[id]) {
                    ready(id, out);
                }
            }
            batch.clear();
            self.running = batch;
        }
    }
}

/// A waiter as a task: owns its receiver and hands it back when done.
fn task<'c, C: WaitCell<u64> + 'c>(
    mut rx: C::Rx<'c>,
    v: u64,
) -> Pin<Box<impl Future<Output = (u64, C::Rx<'c>)> + 'c>> {
    Box::pin(async move {
        let out = C::wait_for(&mut rx, v).await;
        (out, rx)
    })
}

// ============================================================================
// Scenarios
// ============================================================================

const WAITERS: usize = 1000;

fn bench_set<C: Cell<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let cell = C::new(0);
    let mut i = 0u64;
    g.bench_function(C::NAME, |b| {
        b.iter(|| {
            i += 1;
            cell.set(black_box(i));
        })
    });
}

fn bench_get<T: Clone, C: Cell<T>>(g: &mut BenchmarkGroup<'_, WallTime>, init: T) {
    let cell = C::new(init);
    g.bench_function(C::NAME, |b| b.iter(|| black_box(cell.get())));
}

/// Create a wait, poll it once (it registers), set the value it waits for,
/// poll it to ready: one waiter, one wake, one thread.
fn bench_wait_wake<C: WaitCell<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    let cell = C::new(0);
    let mut rx = cell.rx();
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut i = 0u64;
    let mut cycle = |i: u64| {
        let mut fut = pin!(C::wait_for(&mut rx, i));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        cell.set(i);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => assert_eq!(v, i),
            Poll::Pending => panic!("{}: not ready after the set", C::NAME),
        }
    };
    // Check once that the set really woke the waiter.
    i += 1;
    cycle(i);
    assert!(count.0.load(Ordering::Relaxed) > 0, "{}: no wake", C::NAME);
    g.bench_function(C::NAME, |b| {
        b.iter(|| {
            i += 1;
            cycle(i);
        })
    });
}

/// 1,000 waiters for 1,000 distinct values (plus one value nobody waits for:
/// the current one). Timed: one set that matches exactly one waiter, then
/// running every task the set woke (and anything they woke) until the run
/// queue is empty. Untimed between iterations: a new waiter for the value
/// just left, so each iteration starts from the same state.
fn bench_selective_wake<C: WaitCell<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let cell = C::new(0);
            let mut exec = Executor::new(WAITERS + 1);
            let mut rxs: Vec<Option<C::Rx<'_>>> = (0..=WAITERS).map(|_| Some(cell.rx())).collect();
            let mut slots: Vec<_> = (0..=WAITERS).map(|_| None).collect();
            for v in 1..=WAITERS {
                let fut = task::<C>(rxs[v].take().unwrap(), v as u64);
                exec.arm(v, &mut slots[v], fut);
            }
            let mut current = 0usize;
            let mut polls = 0u64;
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = (current + 337) % (WAITERS + 1);
                let mut done = None;
                let start = Instant::now();
                cell.set(target as u64);
                exec.run(&mut slots, |id, (out, rx)| {
                    done = Some((id, out));
                    rxs[id] = Some(rx);
                });
                total += start.elapsed();
                polls += 1;
                assert_eq!(done, Some((target, target as u64)), "{}", C::NAME);
                let fut = task::<C>(rxs[current].take().unwrap(), current as u64);
                exec.arm(current, &mut slots[current], fut);
                current = target;
            }
            black_box(polls);
            total
        })
    });
}

/// 1,000 waiters all waiting for the same value. Timed: the set, then running
/// every woken task until all 1,000 are ready. Untimed: arming 1,000 new
/// waiters for the other value.
fn bench_broadcast_wake<C: WaitCell<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let cell = C::new(0);
            let mut exec = Executor::new(WAITERS);
            let mut rxs: Vec<Option<C::Rx<'_>>> = (0..WAITERS).map(|_| Some(cell.rx())).collect();
            let mut slots: Vec<_> = (0..WAITERS).map(|_| None).collect();
            let mut current = 0u64;
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = 1 - current;
                for id in 0..WAITERS {
                    let fut = task::<C>(rxs[id].take().unwrap(), target);
                    exec.arm(id, &mut slots[id], fut);
                }
                let mut ready = 0;
                let start = Instant::now();
                cell.set(target);
                exec.run(&mut slots, |id, (out, rx)| {
                    debug_assert_eq!(out, target);
                    ready += usize::from(out == target);
                    rxs[id] = Some(rx);
                });
                total += start.elapsed();
                assert_eq!(ready, WAITERS, "{}", C::NAME);
                current = target;
            }
            total
        })
    });
}

/// value-watcher only: one set offered to `n` registered waiters that do
/// not match it (no wake-up), each future in its own box and registered in a
/// shuffled order, as tasks would be. This is the setter's walk that
/// `selective_wake` pays for; its cost per waiter shows whether the walk is
/// bound by instructions or by memory latency.
fn bench_walk(g: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let w = ValueWatcher::new(0u64);
    let mut futs: Vec<_> = (0..n)
        .map(|i| Box::pin(w.wait_for(u64::MAX - i as u64)))
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut cx = Context::from_waker(Waker::noop());
    for &i in &order {
        assert!(futs[i].as_mut().poll(&mut cx).is_pending());
    }
    let mut i = 0u64;
    g.bench_function(Ours::<u64>::NAME, |b| {
        b.iter(|| {
            i += 1;
            w.set(i)
        })
    });
}

/// Two threads hand a counter back and forth through two cells, each
/// blocking until the other has set the next number. Time per round trip.
fn bench_ping_pong<C: WaitCell<u64> + Sync>(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.bench_function(C::NAME, |b| b.iter_custom(ping_pong::<C>));
}

/// `iters` round trips; the time from the first set to the last reply.
fn ping_pong<C: WaitCell<u64> + Sync>(iters: u64) -> Duration {
    let ping = C::new(0);
    let pong = C::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rx = ping.rx();
            for i in 1..=iters {
                assert_eq!(C::block_wait_for(&mut rx, i), i);
                pong.set(i);
            }
        });
        let mut rx = pong.rx();
        let start = Instant::now();
        for i in 1..=iters {
            ping.set(i);
            assert_eq!(C::block_wait_for(&mut rx, i), i);
        }
        start.elapsed()
    })
}

/// `PEERS_PING_PONG=<system>:<round trips>`: run only that many round trips
/// of one system, without criterion, and print the time per round trip (for
/// `valgrind --tool=callgrind` or `strace -f -c`, see benches/README.md).
fn ping_pong_only(spec: &str) {
    let (system, n) = spec.split_once(':').expect("PEERS_PING_PONG=<system>:<n>");
    let n: u64 = n.parse().expect("a number of round trips");
    let t = match system {
        "value-watcher" => ping_pong::<Ours<u64>>(n),
        "value-watcher-blockon" => ping_pong::<OursBlockOn<u64>>(n),
        "tokio" => ping_pong::<Tokio<u64>>(n),
        "async-watch" => ping_pong::<AsyncWatch<u64>>(n),
        "embassy-cs" => ping_pong::<EmbassyCs<u64>>(n),
        "futures-signals" => ping_pong::<Signals<u64>>(n),
        "event-listener-mutex" => ping_pong::<ElMutex<u64>>(n),
        other => panic!("unknown system {other}"),
    };
    println!("{system}: {n} round trips, {:?} each", t / n as u32);
    report_lost_wakeups();
}

/// `threads` threads, each setting a value no other thread sets and reading
/// the value back, in a loop. One iteration is one set and one get on every
/// thread.
fn bench_contention<C: Cell<u64> + Sync>(g: &mut BenchmarkGroup<'_, WallTime>, threads: usize) {
    g.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let cell = C::new(0);
            let start_line = Barrier::new(threads + 1);
            std::thread::scope(|s| {
                for t in 0..threads as u64 {
                    let (cell, start_line) = (&cell, &start_line);
                    s.spawn(move || {
                        start_line.wait();
                        for i in 0..iters {
                            cell.set(i * threads as u64 + t + 1);
                            black_box(cell.get());
                        }
                    });
                }
                start_line.wait();
                Instant::now()
            })
            .elapsed()
        })
    });
}

/// Create a wait, poll it once (it registers), drop it (it unregisters); no
/// set. Every 1,024 waits one set runs (timed too), so peers that clean up
/// abandoned registrations lazily on the next set pay for it here.
fn bench_wait_churn<C: WaitCell<u64>>(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let cell = C::new(0);
            let mut rx = cell.rx();
            let (_count, waker) = counting_waker();
            let mut cx = Context::from_waker(&waker);
            let start = Instant::now();
            for i in 0..iters {
                {
                    let mut fut = pin!(C::wait_for(&mut rx, u64::MAX));
                    assert!(fut.as_mut().poll(&mut cx).is_pending());
                }
                if i % 1024 == 1023 {
                    cell.set(i);
                }
            }
            start.elapsed()
        })
    });
}

// ============================================================================
// Driver and report
// ============================================================================

/// Calls `f::<System>(args)` for each listed system.
macro_rules! each {
    ($f:ident::<$($sys:ty),+ $(,)?> $args:tt) => {
        $( $f::<$sys> $args; )+
    };
}

/// Opens a criterion group and records it for the report.
fn group<'c>(
    c: &'c mut Criterion,
    log: &mut Vec<Group>,
    name: &'static str,
    elements: u64,
    what: &'static str,
) -> BenchmarkGroup<'c, WallTime> {
    log.push(Group {
        name,
        elements,
        what,
    });
    let mut g = c.benchmark_group(name);
    if elements > 1 {
        g.throughput(Throughput::Elements(elements));
    }
    g
}

fn groups(c: &mut Criterion, log: &mut Vec<Group>) {
    let mut g = group(c, log, "set_u64", 1, "one transition, nobody waiting");
    each!(bench_set::<
        Ours<u64>,
        Tokio<u64>,
        AsyncWatch<u64>,
        EmbassyCs<u64>,
        EmbassyNoop<u64>,
        Signals<u64>,
        ElMutex<u64>,
        Spin<u64>,
    >(&mut g));
    g.finish();

    let mut g = group(c, log, "get_u64", 1, "clone of a u64");
    for_get(&mut g, 7u64);
    g.finish();

    let mut g = group(
        c,
        log,
        "get_string",
        1,
        "clone of a 9-byte String (allocates)",
    );
    for_get(&mut g, String::from("connected"));
    g.finish();

    let mut g = group(
        c,
        log,
        "wait_wake",
        1,
        "create, poll, set, poll to ready (one thread)",
    );
    each!(bench_wait_wake::<
        Ours<u64>,
        Tokio<u64>,
        AsyncWatch<u64>,
        EmbassyCs<u64>,
        EmbassyNoop<u64>,
        Signals<u64>,
        ElMutex<u64>,
    >(&mut g));
    g.finish();

    let mut g = group(
        c,
        log,
        "selective_wake",
        1,
        "1,000 waiters for distinct values; one set matching one, run the woken tasks",
    );
    g.sample_size(10);
    each!(bench_selective_wake::<
        Ours<u64>,
        Tokio<u64>,
        AsyncWatch<u64>,
        EmbassyCs<u64>,
        EmbassyNoop<u64>,
        Signals<u64>,
        ElMutex<u64>,
    >(&mut g));
    g.finish();

    for (name, n) in [
        ("walk_100", 100),
        ("walk_1000", 1000),
        ("walk_10000", 10_000),
    ] {
        let mut g = group(
            c,
            log,
            name,
            n as u64,
            "value-watcher only: one set offered to n non-matching waiters (elements = waiters)",
        );
        bench_walk(&mut g, n);
        g.finish();
    }

    let mut g = group(
        c,
        log,
        "broadcast_wake",
        1,
        "1,000 waiters for one value; one set, run until all are ready",
    );
    each!(bench_broadcast_wake::<
        Ours<u64>,
        Tokio<u64>,
        AsyncWatch<u64>,
        EmbassyCs<u64>,
        EmbassyNoop<u64>,
        Signals<u64>,
        ElMutex<u64>,
    >(&mut g));
    g.finish();

    let mut g = group(
        c,
        log,
        "ping_pong",
        1,
        "round trip between two threads, blocking waits",
    );
    each!(bench_ping_pong::<
        Ours<u64>,
        OursBlockOn<u64>,
        Tokio<u64>,
        AsyncWatch<u64>,
        EmbassyCs<u64>,
        Signals<u64>,
        ElMutex<u64>,
    >(&mut g));
    g.finish();

    for (name, threads) in [
        ("contention_2t", 2),
        ("contention_4t", 4),
        ("contention_8t", 8),
    ] {
        let mut g = group(
            c,
            log,
            name,
            2 * threads as u64,
            "every thread: set a fresh value, read (elements = sets + gets)",
        );
        each!(bench_contention::<
            Ours<u64>,
            Tokio<u64>,
            AsyncWatch<u64>,
            EmbassyCs<u64>,
            Signals<u64>,
            ElMutex<u64>,
            Spin<u64>,
        >(&mut g, threads));
        g.finish();
    }

    let mut g = group(c, log, "wait_churn", 1, "create, poll once, drop a wait");
    each!(bench_wait_churn::<
        Ours<u64>,
        Tokio<u64>,
        AsyncWatch<u64>,
        EmbassyCs<u64>,
        EmbassyNoop<u64>,
        Signals<u64>,
        ElMutex<u64>,
    >(&mut g));
    g.finish();
}

fn for_get<T: Clone + PartialEq + 'static>(g: &mut BenchmarkGroup<'_, WallTime>, init: T) {
    bench_get::<T, Ours<T>>(g, init.clone());
    bench_get::<T, Tokio<T>>(g, init.clone());
    bench_get::<T, AsyncWatch<T>>(g, init.clone());
    bench_get::<T, EmbassyCs<T>>(g, init.clone());
    bench_get::<T, EmbassyNoop<T>>(g, init.clone());
    bench_get::<T, Signals<T>>(g, init.clone());
    bench_get::<T, ElMutex<T>>(g, init.clone());
    bench_get::<T, Spin<T>>(g, init);
}

/// A group as registered, for the report.
struct Group {
    name: &'static str,
    /// Operations per iteration (for throughput).
    elements: u64,
    what: &'static str,
}

/// Every system in report order.
const SYSTEMS: &[&str] = &[
    "value-watcher",
    "value-watcher-blockon",
    "tokio",
    "async-watch",
    "embassy-cs",
    "embassy-noop",
    "futures-signals",
    "event-listener-mutex",
    "spin",
];

/// Peers that count for "fastest peer": thread-safe systems other than ours
/// and the bare lock.
const PEERS: &[&str] = &[
    "tokio",
    "async-watch",
    "embassy-cs",
    "futures-signals",
    "event-listener-mutex",
];

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // target/release/deps/peers-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median time per iteration (ns) criterion stored for one benchmark, if
/// it was written by this process.
fn median_ns(group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let json = std::fs::read_to_string(&path).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let estimate = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = estimate.find([',', '}'])?;
    estimate[..end].trim().parse().ok()
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    b.map_or_else(|| "–".to_owned(), |b| format!("{:.2}", a / b))
}

/// Prints, for every group run by this process, a markdown table of median
/// times and ratios.
fn report(groups: &[Group], since: SystemTime) {
    let mut out = String::new();
    for group in groups {
        let rows: Vec<(&str, f64)> = SYSTEMS
            .iter()
            .filter_map(|&s| median_ns(group.name, s, since).map(|t| (s, t)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let get = |name: &str| rows.iter().find(|(s, _)| *s == name).map(|&(_, t)| t);
        let tokio = get("tokio");
        let spin = get("spin");
        let fastest = rows
            .iter()
            .filter(|(s, _)| PEERS.contains(s))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        out += &format!("\n#### `{}`: {}\n\n", group.name, group.what);
        let thrpt = group.elements > 1;
        out += "| system | median time/iter |";
        if thrpt {
            out += " M elements/s | ns/element |";
        }
        out += " × tokio | × fastest peer | × spin |\n|---|---:|";
        if thrpt {
            out += "---:|---:|";
        }
        out += "---:|---:|---:|\n";
        for &(system, t) in &rows {
            let marker = if fastest.is_some_and(|f| f.0 == system) {
                " (fastest peer)"
            } else {
                ""
            };
            out += &format!("| {system}{marker} | {} |", fmt_time(t));
            if thrpt {
                let per = t / group.elements as f64;
                out += &format!(" {:.2} | {per:.2} |", 1e3 / per);
            }
            out += &format!(
                " {} | {} | {} |\n",
                ratio(t, tokio),
                ratio(t, fastest.map(|f| f.1)),
                ratio(t, spin)
            );
        }
    }
    if !out.is_empty() {
        println!("\n=== ratios from this run (median of criterion's samples) ===");
        println!("{out}");
    }
}

fn main() {
    if let Ok(spec) = std::env::var("PEERS_PING_PONG") {
        return ping_pong_only(&spec);
    }
    let since = SystemTime::now();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();
    let mut log = Vec::new();
    groups(&mut c, &mut log);
    c.final_summary();
    report(&log, since);
    report_lost_wakeups();
}

fn report_lost_wakeups() {
    let lost = LOST_WAKEUPS.load(Ordering::Relaxed);
    if lost > 0 {
        println!(
            "futures-signals lost {lost} wake-up(s) in ping_pong (each recovered after 10 ms; see `Signals::block_wait_for`)"
        );
    }
}
