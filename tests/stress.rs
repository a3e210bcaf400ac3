//! Stress (issue #3): setter threads and waiters on smol, tokio
//! (multi-thread), async-std, a `futures` thread pool and blocking threads,
//! all on one watcher at once.
//!
//! `STRESS_TRANSITIONS` sets how many transitions the setters make (default
//! 50,000, which keeps the debug `cargo test` run short; CI's release run
//! uses 1,000,000). `STRESS_WATCHDOG_SECS` (default 600) bounds the run: a
//! hang aborts the process with a message instead of stalling CI.
//! `STRESS_EXECUTORS=threads` leaves the executors out (blocking waiter
//! threads only): `.ci/tsan.sh` uses it, because the executors' own
//! synchronization goes through the uninstrumented standard library and
//! ThreadSanitizer reports it as races.
//!
//! # Why every assertion is exact
//!
//! Every setter adds exactly one (`modify(|v| *v += 1)`, or a
//! `set_if(v + 1, |c| *c == v)` loop), so the transitions are 1, 2, 3, ...
//! in this order, whichever thread makes them. A wait's predicate runs under
//! the watcher's lock: first at the wait's first poll on the current value
//! (the immediate check, in the same critical section as the registration),
//! then once per transition (with `immediate(false)`, only the transitions).
//! Each predicate here is a [`Probe`] that records every value it is shown.
//! So, without knowing when the waiter registered:
//!
//! * the values it is shown must be consecutive (a gap is a skipped state);
//! * it must not be called again after it accepted a value;
//! * the wait must return exactly the value it accepted, which is the first
//!   value at or after the first one it was shown that satisfies it.
//!
//! The first value shown is at least the value read before the wait was
//! created (values only grow). Nothing depends on timing.
//!
//! # Termination
//!
//! Every probe also accepts any value `>= last` (the setters' final value),
//! and once the setters are done the main thread keeps adding one until every
//! waiter loop has ended, so no wait can be left waiting for a value that
//! was passed before it registered. The total number of transitions is the
//! setters' `last` plus those final ones, checked against `version()`.

mod common;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use futures_lite::future::poll_once;
use value_watcher::ValueWatcher;

/// Setter threads; the last one uses a `set_if` compare-and-set loop, the
/// others `modify`.
const SETTERS: u64 = 3;
/// `on_value` targets spread over `1..=last`; each must fire exactly once.
const ON_VALUE_TARGETS: u64 = 16;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}

// === predicates that record what they are shown ===

/// What a wait waits for (besides any value `>= last`).
#[derive(Clone, Copy, Debug)]
enum Kind {
    AtLeast(u64),
    Modulo(u64, u64),
}

impl Kind {
    fn matches(self, v: u64) -> bool {
        match self {
            Kind::AtLeast(t) => v >= t,
            Kind::Modulo(m, r) => v % m == r,
        }
    }
}

const NONE: u64 = u64::MAX;

/// A predicate that records every value it is shown. All calls happen under
/// the watcher's lock, one at a time; the waiter reads the record after its
/// wait completed, which the lock orders after every call, so relaxed
/// atomics suffice.
struct Probe {
    kind: Kind,
    last: u64,
    calls: AtomicU64,
    first: AtomicU64,
    prev: AtomicU64,
    accepted: AtomicU64,
    /// Calls whose value was not the previous one plus one.
    gaps: AtomicU64,
    /// Calls after the predicate had accepted a value.
    late: AtomicU64,
}

impl Probe {
    fn new(kind: Kind, last: u64) -> Arc<Self> {
        Arc::new(Self {
            kind,
            last,
            calls: AtomicU64::new(0),
            first: AtomicU64::new(NONE),
            prev: AtomicU64::new(NONE),
            accepted: AtomicU64::new(NONE),
            gaps: AtomicU64::new(0),
            late: AtomicU64::new(0),
        })
    }

    fn accepts(&self, v: u64) -> bool {
        self.kind.matches(v) || v >= self.last
    }

    fn predicate(self: &Arc<Self>) -> impl FnMut(&u64) -> bool + Send + 'static {
        let probe = self.clone();
        move |v| probe.call(*v)
    }

    fn call(&self, v: u64) -> bool {
        if self.calls.fetch_add(1, Relaxed) == 0 {
            self.first.store(v, Relaxed);
        } else if v != self.prev.load(Relaxed).wrapping_add(1) {
            self.gaps.fetch_add(1, Relaxed);
        }
        if self.accepted.load(Relaxed) != NONE {
            self.late.fetch_add(1, Relaxed);
        }
        self.prev.store(v, Relaxed);
        let accepted = self.accepts(v);
        if accepted {
            self.accepted.store(v, Relaxed);
        }
        accepted
    }

    /// Checks a completed wait that returned `got`; `before` is the value
    /// read before the wait was created.
    fn check(&self, got: u64, before: u64, immediate: bool, who: &str) {
        let kind = self.kind;
        let first = self.first.load(Relaxed);
        let calls = self.calls.load(Relaxed);
        assert_ne!(first, NONE, "{who}: {kind:?} completed without a check");
        assert_eq!(
            self.gaps.load(Relaxed),
            0,
            "{who}: {kind:?} skipped a state (first shown {first}, got {got})"
        );
        assert_eq!(
            self.late.load(Relaxed),
            0,
            "{who}: {kind:?} was asked again after it matched"
        );
        assert_eq!(
            self.accepted.load(Relaxed),
            got,
            "{who}: {kind:?} returned another value than the one it matched"
        );
        let earliest = if immediate { before } else { before + 1 };
        assert!(
            first >= earliest,
            "{who}: {kind:?} shown {first}, before the wait began at {before} (immediate: {immediate})"
        );
        let expected = (first..).find(|v| self.accepts(*v)).unwrap();
        assert_eq!(
            got, expected,
            "{who}: {kind:?} first shown {first} (immediate: {immediate})"
        );
        assert_eq!(calls, got - first + 1, "{who}: {kind:?} call count");
    }
}

/// xorshift64: a deterministic sequence per waiter.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn kind(&mut self, before: u64) -> Kind {
        let x = self.next();
        if x % 2 == 0 {
            Kind::AtLeast(before + 1 + (x >> 8) % 64)
        } else {
            let m = 2 + (x >> 8) % 16;
            Kind::Modulo(m, (x >> 20) % m)
        }
    }
}

// === shared state ===

struct Shared {
    w: ValueWatcher<u64>,
    /// The value the setters stop at.
    last: u64,
    /// Waiter loops and stream consumers still running.
    active: AtomicUsize,
    /// Long-lived waits and streams set up before the setters start.
    ready: AtomicUsize,
    checked: AtomicU64,
    cancelled: AtomicU64,
    stream_items: AtomicU64,
    /// Set once the setters are joined and the value has stopped moving.
    finished: AtomicBool,
}

/// Counts a running waiter loop; dropped (also when it panics) it lets the
/// main thread stop making transitions.
struct Active(Arc<Shared>);

impl Active {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.active.fetch_add(1, SeqCst);
        Self(shared.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, SeqCst);
    }
}

/// One wait of a waiter loop.
enum Step {
    /// `wait_until(probe)`, awaited (or `.wait()`ed) to completion.
    Until(Kind, bool),
    /// `wait_until(probe)` polled once, then dropped if still pending.
    Cancel(Kind),
    /// `wait_for_change()`.
    Change,
    /// `wait_for_not(before)`.
    Not,
}

fn step(rng: &mut Rng, before: u64) -> Step {
    match rng.next() % 16 {
        0..=1 => Step::Cancel(rng.kind(before)),
        2 => Step::Change,
        3 => Step::Not,
        4..=6 => Step::Until(rng.kind(before), false),
        _ => Step::Until(rng.kind(before), true),
    }
}

/// A waiter loop on any executor: waits one after another until the setters
/// are done. A long-lived `wait_for(last)` is registered before the setters
/// start and must return exactly `last`.
async fn async_waiter(shared: Arc<Shared>, seed: u64, who: &'static str) {
    let _active = Active::new(&shared);
    let w = &shared.w;
    let mut at_last = pin!(w.wait_for(shared.last));
    assert!(poll_once(at_last.as_mut()).await.is_none());
    shared.ready.fetch_add(1, SeqCst);

    let mut rng = Rng::new(seed);
    loop {
        let before = w.get();
        if before >= shared.last {
            break;
        }
        match step(&mut rng, before) {
            Step::Until(kind, immediate) => {
                let probe = Probe::new(kind, shared.last);
                let got = w.wait_until(probe.predicate()).immediate(immediate).await;
                probe.check(got, before, immediate, who);
            }
            Step::Cancel(kind) => {
                let probe = Probe::new(kind, shared.last);
                let mut fut = pin!(w.wait_until(probe.predicate()));
                match poll_once(fut.as_mut()).await {
                    Some(got) => probe.check(got, before, true, who),
                    None => {
                        shared.cancelled.fetch_add(1, Relaxed);
                        continue;
                    }
                }
            }
            Step::Change => {
                let got = w.wait_for_change().await;
                assert!(
                    got > before && got <= w.get(),
                    "{who}: change {got} from {before}"
                );
            }
            Step::Not => {
                let got = w.wait_for_not(before).await;
                assert!(
                    got > before && got <= w.get(),
                    "{who}: not {before} gave {got}"
                );
            }
        }
        shared.checked.fetch_add(1, Relaxed);
    }
    assert_eq!(at_last.await, shared.last, "{who}: wait_for(last)");
}

/// The same loop on a thread, with the blocking waits.
fn blocking_waiter(shared: &Arc<Shared>, seed: u64) {
    let who = "blocking thread";
    let _active = Active::new(shared);
    let w = &shared.w;
    let mut at_last = pin!(w.wait_for(shared.last));
    assert!(common::poll_noop(at_last.as_mut()).is_pending());
    shared.ready.fetch_add(1, SeqCst);

    // Generous, and only there to exercise the deadline path: every wait
    // here completes because the main thread keeps the value moving.
    let limit = Duration::from_secs(3600);
    let mut rng = Rng::new(seed);
    loop {
        let before = w.get();
        if before >= shared.last {
            break;
        }
        match step(&mut rng, before) {
            Step::Until(kind, immediate) => {
                let probe = Probe::new(kind, shared.last);
                let fut = w.wait_until(probe.predicate()).immediate(immediate);
                let got = if immediate {
                    fut.wait()
                } else {
                    fut.wait_timeout(limit).expect("wait_timeout gave up")
                };
                probe.check(got, before, immediate, who);
            }
            Step::Cancel(kind) => {
                // Registers (or completes at once), then is dropped.
                let probe = Probe::new(kind, shared.last);
                let mut fut = pin!(w.wait_until(probe.predicate()));
                match common::poll_noop(fut.as_mut()) {
                    std::task::Poll::Ready(got) => probe.check(got, before, true, who),
                    std::task::Poll::Pending => {
                        shared.cancelled.fetch_add(1, Relaxed);
                        continue;
                    }
                }
            }
            Step::Change => {
                let deadline = Instant::now() + limit;
                let got = w.wait_for_change().wait_deadline(deadline);
                let got = got.expect("wait_deadline gave up");
                assert!(
                    got > before && got <= w.get(),
                    "{who}: change {got} from {before}"
                );
            }
            Step::Not => {
                let got = w.wait_for_not(before).wait();
                assert!(
                    got > before && got <= w.get(),
                    "{who}: not {before} gave {got}"
                );
            }
        }
        shared.checked.fetch_add(1, Relaxed);
    }
    // Re-polled with this thread's real waker until it completes.
    let got = futures_lite::future::block_on(at_last);
    assert_eq!(got, shared.last, "{who}: wait_for(last)");
}

/// A `changes()` consumer: strictly increasing items, ending with a value
/// `>= last` (the final wake-up is never lost).
async fn consume_changes(shared: Arc<Shared>, who: &'static str) {
    let _active = Active::new(&shared);
    let mut changes = shared.w.changes();
    shared.ready.fetch_add(1, SeqCst);
    let mut prev = 0;
    while prev < shared.last {
        let item = changes.next().await.expect("changes() never ends");
        assert!(item > prev, "{who}: changes() gave {item} after {prev}");
        prev = item;
        shared.stream_items.fetch_add(1, Relaxed);
    }
}

/// Runs `n` increments: `modify` or a `set_if` compare-and-set loop.
fn setter(w: &ValueWatcher<u64>, n: u64, use_set_if: bool) {
    for _ in 0..n {
        if use_set_if {
            loop {
                let v = w.get();
                if w.set_if(v + 1, |c| *c == v) {
                    break;
                }
            }
        } else {
            assert!(w.modify(|v| *v += 1));
        }
        // Give the waiters' threads a turn now and then (scheduling only:
        // no assertion depends on it).
        std::thread::yield_now();
    }
}

/// Starts the setters once `expected_ready` long-lived waits and streams are
/// in place, joins them, then keeps the value moving until every waiter loop
/// has ended (even if a setter panicked, so a failure reports instead of
/// hanging). Runs inside `scope`.
fn run_setters<'s>(s: &'s std::thread::Scope<'s, '_>, shared: &Arc<Shared>, expected_ready: usize) {
    let last = shared.last;
    let setters: Vec<_> = (0..SETTERS)
        .map(|i| {
            let shared = shared.clone();
            let n = last / SETTERS + if i == 0 { last % SETTERS } else { 0 };
            s.spawn(move || {
                while shared.ready.load(SeqCst) < expected_ready {
                    std::thread::yield_now();
                }
                setter(&shared.w, n, i == SETTERS - 1);
            })
        })
        .collect();
    let setter_results: Vec<_> = setters.into_iter().map(|h| h.join()).collect();
    while shared.active.load(SeqCst) > 0 {
        shared.w.modify(|v| *v += 1);
        std::thread::yield_now();
    }
    for result in setter_results {
        result.expect("a setter panicked");
    }
}

/// Blocking waiter threads only (`STRESS_EXECUTORS=threads`).
///
/// Each waiter thread stays until the setters are done: a setter may still
/// hold a clone of a waiter thread's waker, and if the thread exited first,
/// the setter would free that waker's `Arc`, a correct hand-over that
/// ThreadSanitizer cannot follow (the precompiled `Arc` synchronizes with a
/// fence, which it does not model). Waiting here orders every such drop
/// before the thread's own, through atomics it does see.
fn run_on_threads(shared: &Arc<Shared>, threads: u64) {
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..threads)
            .map(|seed| {
                let shared = shared.clone();
                s.spawn(move || {
                    blocking_waiter(&shared, 100 + seed);
                    while !shared.finished.load(SeqCst) {
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        run_setters(s, shared, threads as usize);
        shared.finished.store(true, SeqCst);
        for t in waiters {
            t.join().expect("a blocking waiter panicked");
        }
    });
}

/// Waiters on tokio, async-std, a `futures` thread pool, smol and blocking
/// threads; `changes()` consumers on tokio and smol.
fn run_with_executors(shared: &Arc<Shared>) {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();

    let tokio_tasks = [
        tokio_rt.spawn(async_waiter(shared.clone(), 1, "tokio")),
        tokio_rt.spawn(async_waiter(shared.clone(), 2, "tokio")),
        tokio_rt.spawn(consume_changes(shared.clone(), "tokio")),
    ];
    let async_std_tasks = [
        async_std::task::spawn(async_waiter(shared.clone(), 3, "async-std")),
        async_std::task::spawn(async_waiter(shared.clone(), 4, "async-std")),
    ];
    let pool_tasks: Vec<_> = (5..7)
        .map(|seed| {
            use futures::task::SpawnExt;
            pool.spawn_with_handle(async_waiter(shared.clone(), seed, "thread pool"))
                .unwrap()
        })
        .collect();

    std::thread::scope(|s| {
        let smol_thread = {
            let shared = shared.clone();
            s.spawn(move || {
                let ex = smol::Executor::new();
                let tasks = [
                    ex.spawn(async_waiter(shared.clone(), 7, "smol")),
                    ex.spawn(async_waiter(shared.clone(), 8, "smol")),
                    ex.spawn(consume_changes(shared, "smol")),
                ];
                smol::block_on(ex.run(async {
                    for task in tasks {
                        task.await;
                    }
                }));
            })
        };
        let blocking_threads: Vec<_> = (9..11)
            .map(|seed| {
                let shared = shared.clone();
                s.spawn(move || blocking_waiter(&shared, seed))
            })
            .collect();
        // tokio 3, async-std 2, pool 2, smol 3, blocking 2.
        run_setters(s, shared, 12);
        smol_thread.join().expect("a smol task panicked");
        for t in blocking_threads {
            t.join().expect("a blocking waiter panicked");
        }
    });
    for task in tokio_tasks {
        tokio_rt.block_on(task).expect("a tokio task panicked");
    }
    for task in async_std_tasks {
        async_std::task::block_on(task);
    }
    for task in pool_tasks {
        futures::executor::block_on(task);
    }
}

#[test]
fn stress_every_wait_gets_exactly_the_first_match() {
    let last = env_u64("STRESS_TRANSITIONS", 50_000).max(SETTERS);
    let _dog = common::watchdog("stress", env_u64("STRESS_WATCHDOG_SECS", 600));
    let executors = match std::env::var("STRESS_EXECUTORS").as_deref() {
        Err(_) | Ok("all") => true,
        Ok("threads") => false,
        Ok(other) => panic!("STRESS_EXECUTORS={other:?}: expected `all` or `threads`"),
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        w: ValueWatcher::new(0),
        last,
        active: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        checked: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        stream_items: AtomicU64::new(0),
        finished: AtomicBool::new(false),
    });

    // Callbacks: every transition is +1, seen once; every target fires once.
    let change_calls = Arc::new(AtomicU64::new(0));
    let change_errors = Arc::new(AtomicU64::new(0));
    {
        let (calls, errors) = (change_calls.clone(), change_errors.clone());
        shared.w.on_change(move |old, new| {
            calls.fetch_add(1, Relaxed);
            if *new != *old + 1 {
                errors.fetch_add(1, Relaxed);
            }
        });
    }
    let targets: Vec<u64> = (1..=ON_VALUE_TARGETS)
        .map(|i| (i * last / ON_VALUE_TARGETS).max(1))
        .collect();
    let fired: Arc<Vec<AtomicU64>> = Arc::new(targets.iter().map(|_| AtomicU64::new(0)).collect());
    for (i, target) in targets.iter().enumerate() {
        let fired = fired.clone();
        shared.w.on_value(*target, move || {
            fired[i].fetch_add(1, Relaxed);
        });
    }

    if executors {
        run_with_executors(&shared);
    } else {
        run_on_threads(&shared, 4);
    }

    let w = &shared.w;
    let (value, version) = (w.get(), w.version());
    assert_eq!(version, value, "every transition was +1 from 0");
    assert!(value >= last);
    assert_eq!(change_calls.load(Relaxed), version, "on_change calls");
    assert_eq!(
        change_errors.load(Relaxed),
        0,
        "on_change saw a non +1 step"
    );
    for (target, count) in targets.iter().zip(fired.iter()) {
        assert_eq!(count.load(Relaxed), 1, "on_value({target})");
    }
    let checked = shared.checked.load(Relaxed);
    assert!(checked > 0, "no wait completed");
    eprintln!(
        "stress: {version} transitions ({last} by {SETTERS} setters), {checked} waits checked, \
         {} cancelled, {} stream items, {:.1} s",
        shared.cancelled.load(Relaxed),
        shared.stream_items.load(Relaxed),
        started.elapsed().as_secs_f64()
    );
}
