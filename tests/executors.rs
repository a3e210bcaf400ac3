//! Issue #5 item 1: value-watcher is first-class on every executor the crate
//! names: smol (`block_on` and a spawning `Executor`, on one and two threads),
//! async-std, tokio (current-thread and multi-thread), embassy's host
//! executor, `futures`' `ThreadPool`, `LocalPool` and `block_on`, and
//! `pollster`.
//!
//! Every round is the same scenario. Five waits on one
//! `ValueWatcher<Conn>` start watching (each reports its first `Pending`,
//! which the crate returns only after registering the waiter). Only then does
//! a foreign std thread run the whole life cycle `Connecting, Connected,
//! Closing, Closed` in one go. So:
//!
//! * the executor has parked (or is about to) on a `Pending` future, and only
//!   the setter's wake-up can make it poll again: a lost wake-up hangs the
//!   round, which a watchdog turns into a failure with a message;
//! * each wait must report the first state it matches, though the value is
//!   `Closed` by the time it runs: `wait_for(Closing)` returns `Closing`.
//!
//! No sleeps: the order is forced by channels, and timing only decides which
//! of the (all correct) interleavings a round exercises.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use common::{Conn, LIFE_CYCLE, poll_noop, reporting_pending, watchdog};
use futures::future::join_all;
use value_watcher::ValueWatcher;

/// Rounds per executor (each spawns one setter thread).
const ROUNDS: usize = 300;
/// Generous bound for any one hand-off between threads; never reached unless
/// something hangs.
const LIMIT: Duration = Duration::from_secs(60);
/// Per-test watchdog, in seconds.
const WATCHDOG: u64 = 240;

/// What the five waits of [`one_wait`] return when the life cycle runs after
/// they registered.
const EXPECTED: [Conn; WAITS] = [
    Conn::Closing,    // wait_for(Closing): the transient state
    Conn::Connected,  // wait_until(>= Connected): the first match
    Conn::Connecting, // wait_for_not(Disconnected)
    Conn::Connecting, // wait_for_change()
    Conn::Closed,     // wait_until(Disconnected | Closed).immediate(false)
];
const WAITS: usize = 5;

/// Wait number `which` (see [`EXPECTED`]) on `w`, reporting its registration.
/// `'static` and `Send`, so every executor can spawn it.
// The spelled-out `Send` bound checks at compile time that the wait futures
// are `Send`, which an `async fn` would leave implicit.
#[allow(clippy::manual_async_fn)]
fn one_wait(
    w: Arc<ValueWatcher<Conn>>,
    which: usize,
    registered: mpsc::Sender<()>,
) -> impl Future<Output = Conn> + Send + 'static {
    async move {
        match which {
            0 => reporting_pending(w.wait_for(Conn::Closing), registered).await,
            1 => reporting_pending(w.wait_until(|c| *c >= Conn::Connected), registered).await,
            2 => reporting_pending(w.wait_for_not(Conn::Disconnected), registered).await,
            3 => reporting_pending(w.wait_for_change(), registered).await,
            _ => {
                let wait = w
                    .wait_until(|c| matches!(c, Conn::Disconnected | Conn::Closed))
                    .immediate(false);
                reporting_pending(wait, registered).await
            }
        }
    }
}

/// All five waits in one task.
fn all_waits_joined(
    w: Arc<ValueWatcher<Conn>>,
    registered: mpsc::Sender<()>,
) -> impl Future<Output = Vec<Conn>> + Send + 'static {
    join_all((0..WAITS).map(move |which| one_wait(w.clone(), which, registered.clone())))
}

/// The five waits as separate futures, for executors that spawn them.
fn each_wait(
    w: &Arc<ValueWatcher<Conn>>,
    registered: &mpsc::Sender<()>,
) -> impl Iterator<Item = impl Future<Output = Conn> + Send + 'static> {
    let (w, registered) = (w.clone(), registered.clone());
    (0..WAITS).map(move |which| one_wait(w.clone(), which, registered.clone()))
}

/// A foreign std thread that waits until all `WAITS` waits are registered,
/// then runs the whole life cycle without pausing.
fn foreign_setter(
    w: Arc<ValueWatcher<Conn>>,
    registered: mpsc::Receiver<()>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..WAITS {
            registered
                .recv_timeout(LIMIT)
                .expect("every wait registers (returns Pending) before the life cycle");
        }
        for state in LIFE_CYCLE {
            assert!(w.set(state));
        }
    })
}

/// Runs `rounds` rounds; `drive` runs the waits on the executor under test
/// (their outputs in wait order) while a foreign thread sets the value.
fn rounds(
    name: &'static str,
    rounds: usize,
    mut drive: impl FnMut(Arc<ValueWatcher<Conn>>, mpsc::Sender<()>) -> Vec<Conn>,
) {
    let _dog = watchdog(name, WATCHDOG);
    for round in 0..rounds {
        let w = Arc::new(ValueWatcher::new(Conn::Disconnected));
        let (registered_tx, registered_rx) = mpsc::channel();
        let setter = foreign_setter(w.clone(), registered_rx);
        let seen = drive(w.clone(), registered_tx);
        assert_eq!(seen, EXPECTED, "{name}, round {round}");
        setter.join().expect("setter thread");
        assert_eq!(w.get(), Conn::Closed);
        assert_eq!(w.version(), 4);
    }
}

// === smol / async-io ===

#[test]
fn smol_block_on() {
    rounds("smol::block_on", ROUNDS, |w, registered| {
        smol::block_on(all_waits_joined(w, registered))
    });
}

#[test]
fn smol_executor_spawned_tasks() {
    let ex = smol::Executor::new();
    rounds("smol::Executor", ROUNDS, |w, registered| {
        let tasks: Vec<_> = each_wait(&w, &registered).map(|f| ex.spawn(f)).collect();
        smol::block_on(ex.run(join_all(tasks)))
    });
}

#[test]
fn smol_executor_on_two_threads() {
    let ex = smol::Executor::new();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    thread::scope(|s| {
        // A second thread runs the same executor until `stop` is dropped.
        let helper = s.spawn(|| smol::block_on(ex.run(stopped.recv())));
        rounds("smol::Executor, two threads", ROUNDS, |w, registered| {
            let tasks: Vec<_> = each_wait(&w, &registered).map(|f| ex.spawn(f)).collect();
            smol::block_on(ex.run(join_all(tasks)))
        });
        drop(stop);
        assert!(helper.join().unwrap().is_err(), "closed, not sent");
    });
}

// === async-std ===

#[test]
fn async_std_block_on() {
    rounds("async_std::task::block_on", ROUNDS, |w, registered| {
        async_std::task::block_on(all_waits_joined(w, registered))
    });
}

#[test]
fn async_std_spawned_tasks() {
    rounds("async_std::task::spawn", ROUNDS, |w, registered| {
        let tasks: Vec<_> = each_wait(&w, &registered)
            .map(async_std::task::spawn)
            .collect();
        async_std::task::block_on(join_all(tasks))
    });
}

// === tokio ===

#[test]
fn tokio_current_thread_block_on() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rounds("tokio current-thread block_on", ROUNDS, |w, registered| {
        rt.block_on(all_waits_joined(w, registered))
    });
}

#[test]
fn tokio_current_thread_spawned_tasks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rounds("tokio current-thread spawn", ROUNDS, |w, registered| {
        let tasks: Vec<_> = each_wait(&w, &registered).map(|f| rt.spawn(f)).collect();
        rt.block_on(join_all(tasks))
            .into_iter()
            .map(|joined| joined.expect("task did not panic"))
            .collect()
    });
}

#[test]
fn tokio_multi_thread_spawned_tasks() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rounds("tokio multi-thread spawn", ROUNDS, |w, registered| {
        let tasks: Vec<_> = each_wait(&w, &registered).map(|f| rt.spawn(f)).collect();
        rt.block_on(join_all(tasks))
            .into_iter()
            .map(|joined| joined.expect("task did not panic"))
            .collect()
    });
}

// === futures ===

#[test]
fn futures_thread_pool() {
    use futures::task::SpawnExt;
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    rounds("futures ThreadPool", ROUNDS, |w, registered| {
        let tasks: Vec<_> = each_wait(&w, &registered)
            .map(|f| pool.spawn_with_handle(f).unwrap())
            .collect();
        futures::executor::block_on(join_all(tasks))
    });
}

#[test]
fn futures_local_pool() {
    use futures::task::LocalSpawnExt;
    let mut pool = futures::executor::LocalPool::new();
    let spawner = pool.spawner();
    rounds("futures LocalPool", ROUNDS, |w, registered| {
        let tasks: Vec<_> = each_wait(&w, &registered)
            .map(|f| spawner.spawn_local_with_handle(f).unwrap())
            .collect();
        pool.run_until(join_all(tasks))
    });
}

#[test]
fn futures_block_on() {
    rounds("futures::executor::block_on", ROUNDS, |w, registered| {
        futures::executor::block_on(all_waits_joined(w, registered))
    });
}

// === pollster ===

#[test]
fn pollster_block_on() {
    rounds("pollster::block_on", ROUNDS, |w, registered| {
        pollster::block_on(all_waits_joined(w, registered))
    });
}

// === embassy ===

/// Rounds on the embassy executor.
const EMBASSY_ROUNDS: usize = 200;

/// Shared by the embassy tasks and the test thread, as on a device.
static EMBASSY_CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);

/// Embassy tasks that have returned; the executor stops when all have.
static EMBASSY_FINISHED: AtomicUsize = AtomicUsize::new(0);

/// One of the five waits, once per round, on the `static` watcher.
#[embassy_executor::task(pool_size = WAITS)]
async fn embassy_waiter(
    which: usize,
    registered: mpsc::Sender<()>,
    report: mpsc::Sender<(usize, Conn)>,
) {
    for _ in 0..EMBASSY_ROUNDS {
        // A round starts when the test thread has reset the value.
        EMBASSY_CONN.wait_for(Conn::Disconnected).await;
        let seen = match which {
            0 => reporting_pending(EMBASSY_CONN.wait_for(Conn::Closing), registered.clone()).await,
            1 => {
                let wait = EMBASSY_CONN.wait_until(|c| *c >= Conn::Connected);
                reporting_pending(wait, registered.clone()).await
            }
            2 => {
                let wait = EMBASSY_CONN.wait_for_not(Conn::Disconnected);
                reporting_pending(wait, registered.clone()).await
            }
            3 => reporting_pending(EMBASSY_CONN.wait_for_change(), registered.clone()).await,
            _ => {
                let wait = EMBASSY_CONN
                    .wait_until(|c| matches!(c, Conn::Disconnected | Conn::Closed))
                    .immediate(false);
                reporting_pending(wait, registered.clone()).await
            }
        };
        report.send((which, seen)).unwrap();
    }
    EMBASSY_FINISHED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn embassy_executor_tasks_share_a_static_watcher() {
    let _dog = watchdog("embassy executor", WATCHDOG);
    let (registered_tx, registered) = mpsc::channel();
    let (report_tx, reports) = mpsc::channel();
    // The host executor runs on its own thread; `run_until` returns once all
    // tasks have finished, so the thread can be joined.
    let executor_thread = thread::spawn(move || {
        let executor: &'static mut _ = Box::leak(Box::new(embassy_executor::Executor::new()));
        executor.run_until(
            |spawner| {
                for which in 0..WAITS {
                    let task = embassy_waiter(which, registered_tx.clone(), report_tx.clone());
                    spawner.spawn(task.expect("task pool has room"));
                }
            },
            || EMBASSY_FINISHED.load(Ordering::SeqCst) == WAITS,
        );
    });
    for round in 0..EMBASSY_ROUNDS {
        for _ in 0..WAITS {
            registered
                .recv_timeout(LIMIT)
                .expect("every embassy wait registers");
        }
        // This thread is foreign to the executor.
        for state in LIFE_CYCLE {
            assert!(EMBASSY_CONN.set(state));
        }
        let mut seen = [None; WAITS];
        for _ in 0..WAITS {
            let (which, value) = reports.recv_timeout(LIMIT).expect("embassy task reports");
            assert!(seen[which].replace(value).is_none());
        }
        assert_eq!(seen.map(Option::unwrap), EXPECTED, "embassy, round {round}");
        assert!(EMBASSY_CONN.set(Conn::Disconnected));
    }
    executor_thread.join().expect("embassy executor thread");
}

// === across executors ===

/// Waiters on five executors at once, the setter a task on a sixth: any
/// executor may set, and every waiter is woken on its own.
#[test]
fn waiters_on_five_executors_setter_on_tokio() {
    let _dog = watchdog("across executors", WATCHDOG);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(1)
        .create()
        .unwrap();
    for round in 0..100 {
        let w = Arc::new(ValueWatcher::new(Conn::Disconnected));
        let (registered_tx, registered) = mpsc::channel();
        let results: Vec<Vec<Conn>> = thread::scope(|s| {
            let waiters = [
                s.spawn({
                    let f = all_waits_joined(w.clone(), registered_tx.clone());
                    || smol::block_on(f)
                }),
                s.spawn({
                    let f = all_waits_joined(w.clone(), registered_tx.clone());
                    || async_std::task::block_on(f)
                }),
                s.spawn({
                    let f = all_waits_joined(w.clone(), registered_tx.clone());
                    || pollster::block_on(f)
                }),
                s.spawn({
                    use futures::task::SpawnExt;
                    let f = all_waits_joined(w.clone(), registered_tx.clone());
                    let handle = pool.spawn_with_handle(f).unwrap();
                    || futures::executor::block_on(handle)
                }),
                s.spawn({
                    let f = all_waits_joined(w.clone(), registered_tx.clone());
                    || futures::executor::LocalPool::new().run_until(f)
                }),
            ];
            for _ in 0..waiters.len() * WAITS {
                registered
                    .recv_timeout(LIMIT)
                    .expect("every wait registers");
            }
            // The setter: a tokio task on a worker thread, started once all
            // 25 waits are registered.
            let w = w.clone();
            let setter = rt.spawn(async move {
                for state in LIFE_CYCLE {
                    assert!(w.set(state));
                }
            });
            rt.block_on(setter).expect("setter task");
            waiters.map(|h| h.join().unwrap()).into()
        });
        for seen in results {
            assert_eq!(seen, EXPECTED, "across executors, round {round}");
        }
    }
}

/// The reporting wrapper is transparent: a wait that can complete at once
/// does so on the first poll and never reports `Pending` (guards the harness
/// above against passing for the wrong reason).
#[test]
fn harness_reports_pending_only_for_registered_waits() {
    let w = ValueWatcher::new(Conn::Closing);
    let (tx, rx) = mpsc::channel();
    let mut ready = pin!(reporting_pending(w.wait_for(Conn::Closing), tx.clone()));
    assert_eq!(poll_noop(ready.as_mut()), Poll::Ready(Conn::Closing));
    assert!(rx.try_recv().is_err());
    let mut pending = pin!(reporting_pending(w.wait_for(Conn::Closed), tx));
    assert!(poll_noop(pending.as_mut()).is_pending());
    assert!(rx.try_recv().is_ok());
    assert!(poll_noop(pending.as_mut()).is_pending());
    assert!(rx.try_recv().is_err(), "reports once");
}
