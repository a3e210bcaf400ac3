//! Issue #5: the same scenario on every executor. A waiter task registers
//! (first poll), then a setter on a foreign std thread runs the connection
//! life cycle; the waiter must be woken and must report the transient
//! `Closing`, not the final `Closed`.

mod support;

use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use futures_lite::future::poll_once;
use support::{Conn, LIFE_CYCLE};
use value_watcher::ValueWatcher;

const ROUNDS: usize = 200;

/// The waiter's side: register, release the setter, await.
async fn wait_for_closing(w: &ValueWatcher<Conn>, go: &Barrier) -> Conn {
    let mut closing = Box::pin(w.wait_for(Conn::Closing));
    assert!(
        poll_once(&mut closing).await.is_none(),
        "registered, not ready"
    );
    go.wait(); // blocks this executor thread only until the setter starts
    closing.await
}

/// Starts a foreign thread that, once released, runs the life cycle.
fn foreign_setter(w: Arc<ValueWatcher<Conn>>, go: Arc<Barrier>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        go.wait();
        for state in LIFE_CYCLE {
            w.set(state);
        }
    })
}

/// Runs `ROUNDS` rounds, each driven by `drive` (which runs the waiter's
/// future to completion on the executor under test).
fn rounds(
    name: &'static str,
    mut drive: impl FnMut(Arc<ValueWatcher<Conn>>, Arc<Barrier>) -> Conn,
) {
    let _dog = support::watchdog(name, 120);
    for round in 0..ROUNDS {
        let w = Arc::new(ValueWatcher::new(Conn::Disconnected));
        let go = Arc::new(Barrier::new(2));
        let setter = foreign_setter(w.clone(), go.clone());
        assert_eq!(drive(w, go), Conn::Closing, "{name}, round {round}");
        setter.join().unwrap();
    }
}

#[test]
fn smol_block_on() {
    rounds("smol::block_on", |w, go| {
        smol::block_on(wait_for_closing(&w, &go))
    });
}

#[test]
fn smol_executor_spawned_task() {
    let ex = smol::Executor::new();
    rounds("smol::Executor", |w, go| {
        let task = ex.spawn(async move { wait_for_closing(&w, &go).await });
        smol::block_on(ex.run(task))
    });
}

#[test]
fn async_std_spawned_task() {
    rounds("async-std", |w, go| {
        async_std::task::block_on(async_std::task::spawn(async move {
            wait_for_closing(&w, &go).await
        }))
    });
}

#[test]
fn tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rounds("tokio current-thread", |w, go| {
        rt.block_on(wait_for_closing(&w, &go))
    });
}

#[test]
fn tokio_multi_thread_spawned_task() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rounds("tokio multi-thread", |w, go| {
        rt.block_on(async move {
            tokio::spawn(async move { wait_for_closing(&w, &go).await })
                .await
                .unwrap()
        })
    });
}

#[test]
fn futures_thread_pool() {
    use futures::task::SpawnExt;
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    rounds("futures ThreadPool", |w, go| {
        let handle = pool
            .spawn_with_handle(async move { wait_for_closing(&w, &go).await })
            .unwrap();
        futures::executor::block_on(handle)
    });
}

#[test]
fn futures_local_pool() {
    use futures::task::LocalSpawnExt;
    let mut pool = futures::executor::LocalPool::new();
    let spawner = pool.spawner();
    rounds("futures LocalPool", |w, go| {
        let handle = spawner
            .spawn_local_with_handle(async move { wait_for_closing(&w, &go).await })
            .unwrap();
        pool.run_until(handle)
    });
}

#[test]
fn pollster() {
    rounds("pollster", |w, go| {
        pollster::block_on(wait_for_closing(&w, &go))
    });
}

// === embassy ===

/// A `static` watcher shared by embassy tasks and a foreign thread.
static EMBASSY_CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);

#[embassy_executor::task]
async fn embassy_waiter(go: &'static Barrier, report: mpsc::Sender<Conn>) {
    for _ in 0..ROUNDS {
        // Each round starts from Disconnected (the test resets it after the
        // previous round's Closed).
        EMBASSY_CONN.wait_for(Conn::Disconnected).await;
        report
            .send(wait_for_closing(&EMBASSY_CONN, go).await)
            .unwrap();
    }
}

#[test]
fn embassy_executor_with_a_static_watcher() {
    let _dog = support::watchdog("embassy", 120);
    let go: &'static Barrier = Box::leak(Box::new(Barrier::new(2)));
    let (report, results) = mpsc::channel();
    // The host executor's `run` never returns: it gets its own thread, which
    // ends with the test process.
    std::thread::spawn(move || {
        let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
        executor.run(|spawner| spawner.spawn(embassy_waiter(go, report).unwrap()));
    });
    for round in 0..ROUNDS {
        go.wait();
        for state in LIFE_CYCLE {
            EMBASSY_CONN.set(state);
        }
        let seen = results
            .recv_timeout(Duration::from_secs(60))
            .expect("embassy task reports");
        assert_eq!(seen, Conn::Closing, "embassy, round {round}");
        EMBASSY_CONN.set(Conn::Disconnected);
    }
}
