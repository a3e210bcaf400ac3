//! Issue #5 item 2: the seed's `timeout=` argument. The crate has no timer of
//! its own; a timeout is the executor's timer raced against a wait, and the
//! losing wait is dropped, which unregisters it. These are the recipes, one
//! per timer (tokio, smol/async-io, async-std, `futures::select!`, embassy),
//! plus the blocking `wait_timeout` / `wait_deadline`.
//!
//! Each recipe is tested both ways:
//!
//! * **the value arrives**: it is set before the wait, or from a foreign
//!   thread once the wait has registered, under a generous timeout (30 s), so
//!   timing never decides the result. The transient-state promise holds
//!   through the timeout wrapper: waiting for 11 while the setter goes
//!   10, 11, 12 returns 11. A value the wait has already captured beats an
//!   expired timer, because every recipe polls the wait first.
//! * **it never comes**: a short timeout (20 ms) fires; timing only decides
//!   when. Then the dropped wait is shown to be gone: a transition into the
//!   value it wanted neither runs its predicate nor wakes its waker, and a
//!   new wait on the same watcher still works.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::{GENEROUS, counting_waker, poll_with, watchdog};
use futures_lite::FutureExt as _;
use value_watcher::ValueWatcher;

/// Only decides how long a "never comes" case takes.
const SHORT: Duration = Duration::from_millis(20);
/// The transitions a foreign setter makes; waits target the transient 11.
const TRANSIENT: [u32; 3] = [10, 11, 12];

// === observing a wait from outside ===

/// What one wait did, seen from outside: how often its predicate ran, and
/// how often the waker it registered was woken.
#[derive(Default)]
struct Probe {
    checks: AtomicUsize,
    wakes: AtomicUsize,
    /// The task's own waker, which the probe's waker forwards to.
    task: Mutex<Option<Waker>>,
}

impl Probe {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A `wait_until` predicate for `target` that counts its calls.
    fn equals(self: &Arc<Self>, target: u32) -> impl FnMut(&u32) -> bool + Send + 'static {
        let probe = self.clone();
        move |v| {
            probe.checks.fetch_add(1, Ordering::SeqCst);
            *v == target
        }
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }

    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

/// The waker a probed wait registers: counts, then wakes the real task.
struct ProbeWaker(Arc<Probe>);

impl Wake for ProbeWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wakes.fetch_add(1, Ordering::SeqCst);
        if let Some(task) = &*self.0.task.lock().unwrap() {
            task.wake_by_ref();
        }
    }
}

/// Runs `fut` with the probe's waker, and sends on `registered` the first
/// time it returns `Pending` (by then a wait future is registered).
async fn probed<F: Future>(
    fut: F,
    probe: Arc<Probe>,
    registered: Option<mpsc::Sender<()>>,
) -> F::Output {
    let waker = Waker::from(Arc::new(ProbeWaker(probe.clone())));
    let mut fut = pin!(fut);
    let mut registered = registered;
    std::future::poll_fn(move |cx| {
        *probe.task.lock().unwrap() = Some(cx.waker().clone());
        let poll = fut.as_mut().poll(&mut Context::from_waker(&waker));
        if poll.is_pending() {
            if let Some(tx) = registered.take() {
                let _ = tx.send(());
            }
        }
        poll
    })
    .await
}

/// After a wait on `w` for `value` timed out and was dropped: a transition
/// into `value` does not reach it, and the watcher still serves new waits.
fn assert_forgotten(w: &ValueWatcher<u32>, probe: &Probe, value: u32) {
    let (checks, wakes) = (probe.checks(), probe.wakes());
    assert!(checks >= 1, "the timed-out wait did check the value");
    assert!(w.set(value), "a transition into the value it wanted");
    assert_eq!(
        probe.checks(),
        checks,
        "a dropped wait's predicate never runs"
    );
    assert_eq!(probe.wakes(), wakes, "a dropped wait is never woken");

    let (count, waker) = counting_waker();
    let mut fresh = pin!(w.wait_for(value + 1));
    assert!(poll_with(fresh.as_mut(), &waker).is_pending());
    assert!(w.set(value + 1));
    assert_eq!(count.get(), 1, "the new wait is woken");
    assert_eq!(poll_with(fresh.as_mut(), &waker), Poll::Ready(value + 1));
}

/// Runs `body` with a scoped foreign thread that makes the [`TRANSIENT`]
/// transitions on `w` once `body`'s wait has registered.
fn with_foreign_setter<R>(w: &ValueWatcher<u32>, body: impl FnOnce(mpsc::Sender<()>) -> R) -> R {
    let (registered_tx, registered) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(move || {
            registered
                .recv_timeout(GENEROUS)
                .expect("the wait registers before the setter runs");
            for v in TRANSIENT {
                assert!(w.set(v));
            }
        });
        body(registered_tx)
    })
}

// === tokio ===

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The tokio recipe, `tokio::time::timeout(after, wait)`, run on `rt` (the
/// timeout must be created inside the runtime).
fn tokio_timeout<F: Future>(
    rt: &tokio::runtime::Runtime,
    after: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    rt.block_on(async { tokio::time::timeout(after, fut).await })
}

#[test]
fn tokio_timeout_fires_and_the_wait_is_unregistered() {
    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    let wait = probed(w.wait_until(probe.equals(1)), probe.clone(), None);
    let result = tokio_timeout(&tokio_rt(), SHORT, wait);
    assert!(result.is_err(), "nobody set 1");
    assert_forgotten(&w, &probe, 1);
}

#[test]
fn tokio_timeout_value_set_before() {
    let w = ValueWatcher::new(7u32);
    let rt = tokio_rt();
    assert_eq!(tokio_timeout(&rt, GENEROUS, w.wait_for(7)), Ok(7));
    // Even a zero timeout: the wait is polled before the timer.
    assert_eq!(tokio_timeout(&rt, Duration::ZERO, w.wait_for(7)), Ok(7));
}

#[test]
fn tokio_timeout_value_from_a_foreign_thread_transient_kept() {
    let _dog = watchdog("tokio timeout, foreign setter", 120);
    let rt = tokio_rt();
    for _ in 0..100 {
        let w = ValueWatcher::new(0u32);
        let probe = Probe::new();
        let result = with_foreign_setter(&w, |registered| {
            let wait = probed(w.wait_for(11), probe.clone(), Some(registered));
            tokio_timeout(&rt, GENEROUS, wait)
        });
        assert_eq!(result, Ok(11), "the transient value, though it is 12 now");
        assert_eq!(probe.wakes(), 1);
        assert_eq!(w.get(), 12);
    }
}

#[test]
fn tokio_expired_timeout_loses_to_a_captured_value() {
    let w = ValueWatcher::new(0u32);
    tokio_rt().block_on(async {
        let mut wait = Box::pin(w.wait_for(11));
        assert!(futures_lite::future::poll_once(&mut wait).await.is_none());
        for v in TRANSIENT {
            w.set(v);
        }
        // The deadline has passed, but the wait holds 11 already.
        let expired = tokio::time::Instant::now() - Duration::from_secs(1);
        assert_eq!(tokio::time::timeout_at(expired, wait).await, Ok(11));
    });
}

#[test]
fn tokio_select_with_sleep() {
    let w = ValueWatcher::new(0u32);
    let rt = tokio_rt();
    let probe = Probe::new();
    let missed = rt.block_on(async {
        tokio::select! {
            v = probed(w.wait_until(probe.equals(1)), probe.clone(), None) => Some(v),
            () = tokio::time::sleep(SHORT) => None,
        }
    });
    assert_eq!(missed, None);
    assert_forgotten(&w, &probe, 1);

    let arrived = with_foreign_setter(&w, |registered| {
        rt.block_on(async {
            tokio::select! {
                v = probed(w.wait_for(11), Probe::new(), Some(registered)) => Some(v),
                () = tokio::time::sleep(GENEROUS) => None,
            }
        })
    });
    assert_eq!(arrived, Some(11));
}

#[test]
fn tokio_many_timed_out_waits_leave_nothing_registered() {
    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    let rt = tokio_rt();
    for _ in 0..50 {
        let wait = probed(w.wait_until(probe.equals(1)), probe.clone(), None);
        assert!(tokio_timeout(&rt, Duration::from_millis(1), wait).is_err());
    }
    assert_eq!(probe.checks(), 50, "each wait checked the value once");
    assert_forgotten(&w, &probe, 1);
}

// === smol / async-io ===

/// The smol recipe: the wait raced against async-io's `Timer` with
/// `futures_lite::FutureExt::or`, which prefers the wait if both are ready.
async fn smol_timeout<F: Future>(after: Duration, fut: F) -> Option<F::Output> {
    async { Some(fut.await) }
        .or(async {
            smol::Timer::after(after).await;
            None
        })
        .await
}

#[test]
fn smol_timer_fires_and_the_wait_is_unregistered() {
    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    let wait = probed(w.wait_until(probe.equals(1)), probe.clone(), None);
    assert_eq!(smol::block_on(smol_timeout(SHORT, wait)), None);
    assert_forgotten(&w, &probe, 1);
}

#[test]
fn smol_timer_value_set_before_and_from_a_foreign_thread() {
    let _dog = watchdog("smol timeout, foreign setter", 120);
    let w = ValueWatcher::new(5u32);
    assert_eq!(
        smol::block_on(smol_timeout(GENEROUS, w.wait_for(5))),
        Some(5)
    );
    for _ in 0..100 {
        let w = ValueWatcher::new(0u32);
        let result = with_foreign_setter(&w, |registered| {
            let wait = probed(w.wait_for(11), Probe::new(), Some(registered));
            smol::block_on(smol_timeout(GENEROUS, wait))
        });
        assert_eq!(result, Some(11));
    }
}

#[test]
fn smol_expired_timer_loses_to_a_captured_value() {
    let w = ValueWatcher::new(0u32);
    smol::block_on(async {
        let mut wait = Box::pin(w.wait_for(11));
        assert!(futures_lite::future::poll_once(&mut wait).await.is_none());
        for v in TRANSIENT {
            w.set(v);
        }
        let expired = async {
            smol::Timer::at(Instant::now() - Duration::from_secs(1)).await;
            None
        };
        assert_eq!(async { Some(wait.await) }.or(expired).await, Some(11));
    });
}

// === async-std ===

#[test]
fn async_std_future_timeout() {
    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    let wait = probed(w.wait_until(probe.equals(1)), probe.clone(), None);
    assert!(async_std::task::block_on(async_std::future::timeout(SHORT, wait)).is_err());
    assert_forgotten(&w, &probe, 1);

    let w = ValueWatcher::new(0u32);
    let result = with_foreign_setter(&w, |registered| {
        let wait = probed(w.wait_for(11), Probe::new(), Some(registered));
        async_std::task::block_on(async_std::future::timeout(GENEROUS, wait))
    });
    assert_eq!(result.ok(), Some(11));
}

// === futures::select! ===

/// `futures::select!` takes `Unpin + FusedFuture`s: the wait futures are
/// `!Unpin` (their waiter node is linked by address), so they are fused and
/// pinned on the stack first.
async fn select_timeout<F: Future>(after: Duration, fut: F) -> Option<F::Output> {
    use futures::FutureExt as _;
    let mut wait = pin!(fut.fuse());
    let mut timer = pin!(async_io::Timer::after(after).fuse());
    futures::select! {
        v = wait => Some(v),
        _ = timer => None,
    }
}

#[test]
fn futures_select_with_async_io_timer() {
    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    let wait = probed(w.wait_until(probe.equals(1)), probe.clone(), None);
    assert_eq!(
        futures::executor::block_on(select_timeout(SHORT, wait)),
        None
    );
    assert_forgotten(&w, &probe, 1);

    let w = ValueWatcher::new(0u32);
    let result = with_foreign_setter(&w, |registered| {
        let wait = probed(w.wait_for(11), Probe::new(), Some(registered));
        futures::executor::block_on(select_timeout(GENEROUS, wait))
    });
    assert_eq!(result, Some(11));
}

// === embassy-time ===

static EMBASSY_W: ValueWatcher<u32> = ValueWatcher::new(0);
static EMBASSY_DONE: AtomicBool = AtomicBool::new(false);

/// An "arrives" case's name and result, as the embassy task reports it.
type EmbassyArrived = (&'static str, Result<u32, embassy_time::TimeoutError>);

/// Runs the embassy recipes in order; the test thread sets values between
/// them. embassy-time's timer queue needs embassy's own task wakers, so this
/// must run as an embassy task.
#[embassy_executor::task]
async fn embassy_timeouts(
    registered: mpsc::Sender<()>,
    missed_report: mpsc::Sender<(bool, Arc<Probe>)>,
    report: mpsc::Sender<EmbassyArrived>,
    resume: mpsc::Receiver<()>,
) {
    use embassy_time::{Duration, Instant, with_deadline, with_timeout};

    // 1. Nothing comes: the timeout fires.
    let probe = Probe::new();
    let wait = probed(EMBASSY_W.wait_until(probe.equals(1)), probe.clone(), None);
    let missed = with_timeout(Duration::from_millis(20), wait).await;
    missed_report.send((missed.is_err(), probe)).unwrap();
    // The test thread checks the wait was forgotten (value is 2 after it).
    EMBASSY_W.wait_for(2).await;

    // 2. Set from a foreign thread after registration, transient kept.
    let wait = probed(
        EMBASSY_W.wait_for(11),
        Probe::new(),
        Some(registered.clone()),
    );
    let arrived = with_timeout(Duration::from_secs(30), wait).await;
    report.send(("foreign", arrived)).unwrap();

    // 3. Already there (the value is 12 now).
    let already = with_timeout(Duration::from_secs(30), EMBASSY_W.wait_for(12)).await;
    report.send(("already", already)).unwrap();

    // 4. Captured while nobody polled, then raced against a passed deadline.
    let mut wait = Box::pin(EMBASSY_W.wait_for(21));
    assert!(futures_lite::future::poll_once(&mut wait).await.is_none());
    registered.send(()).unwrap();
    // Blocks this executor thread until the test thread made 20, 21, 22.
    resume
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap();
    let captured = with_deadline(Instant::now(), wait).await;
    report.send(("captured", captured)).unwrap();

    EMBASSY_DONE.store(true, Ordering::SeqCst);
}

#[test]
fn embassy_time_with_timeout_and_with_deadline() {
    let _dog = watchdog("embassy timeouts", 120);
    let (registered_tx, registered) = mpsc::channel();
    let (missed_tx, missed) = mpsc::channel();
    let (report_tx, reports) = mpsc::channel();
    let (resume_tx, resume) = mpsc::channel();
    let executor_thread = thread::spawn(move || {
        let executor: &'static mut _ = Box::leak(Box::new(embassy_executor::Executor::new()));
        executor.run_until(
            |spawner| {
                let task = embassy_timeouts(registered_tx, missed_tx, report_tx, resume);
                spawner.spawn(task.unwrap());
            },
            || EMBASSY_DONE.load(Ordering::SeqCst),
        );
    });
    let next = || {
        reports
            .recv_timeout(GENEROUS)
            .expect("the embassy task reports")
    };

    let (timed_out, probe) = missed
        .recv_timeout(GENEROUS)
        .expect("the embassy task reports");
    assert!(timed_out, "nobody set 1");
    assert_forgotten(&EMBASSY_W, &probe, 1); // leaves the value at 2

    registered.recv_timeout(GENEROUS).unwrap();
    for v in TRANSIENT {
        assert!(EMBASSY_W.set(v));
    }
    assert_eq!(next(), ("foreign", Ok(11)));
    assert_eq!(next(), ("already", Ok(12)));

    registered.recv_timeout(GENEROUS).unwrap();
    for v in [20, 21, 22] {
        assert!(EMBASSY_W.set(v));
    }
    resume_tx.send(()).unwrap();
    assert_eq!(next(), ("captured", Ok(21)));
    executor_thread
        .join()
        .expect("the executor stops when the task is done");
}

// === blocking ===

#[test]
fn blocking_wait_timeout_and_deadline_time_out_and_unregister() {
    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    assert_eq!(w.wait_until(probe.equals(1)).wait_timeout(SHORT), None);
    assert_forgotten(&w, &probe, 1);

    let w = ValueWatcher::new(0u32);
    let probe = Probe::new();
    let deadline = Instant::now() + SHORT;
    assert_eq!(w.wait_until(probe.equals(1)).wait_deadline(deadline), None);
    assert!(Instant::now() >= deadline, "did not return early");
    assert_forgotten(&w, &probe, 1);
}

#[test]
fn blocking_value_set_before_beats_any_deadline() {
    let w = ValueWatcher::new(Some(3u32));
    assert_eq!(w.wait_for(Some(3)).wait_timeout(GENEROUS), Some(Some(3)));
    assert_eq!(w.wait_for_some().wait_timeout(Duration::ZERO), Some(3));
    let past = Instant::now() - Duration::from_secs(1);
    assert_eq!(w.wait_for_not(None).wait_deadline(past), Some(Some(3)));
}

/// The predicate also runs at the wait's first poll, under the lock, right
/// before the waiter registers in the same critical section. The setter
/// waits for that first call, so its transitions come after registration:
/// the blocking thread really parks and must be unparked by the setter.
#[test]
fn blocking_value_from_a_foreign_thread_transient_kept() {
    let _dog = watchdog("blocking timeouts, foreign setter", 120);
    for round in 0..200 {
        let w = ValueWatcher::new(0u32);
        let checked = Arc::new(AtomicBool::new(false));
        let seen = thread::scope(|s| {
            let checked2 = checked.clone();
            s.spawn(|| {
                while !checked.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                for v in TRANSIENT {
                    assert!(w.set(v));
                }
            });
            let wait = w.wait_until(move |v| {
                checked2.store(true, Ordering::SeqCst);
                *v == 11
            });
            match round % 3 {
                0 => wait.wait_timeout(GENEROUS),
                1 => wait.wait_deadline(Instant::now() + GENEROUS),
                // Too large to add to `Instant::now()`: no deadline at all.
                _ => wait.wait_timeout(Duration::MAX),
            }
        });
        assert_eq!(seen, Some(11), "round {round}");
    }
}
