//! value-watcher on smol: two tasks on a `smol::Executor` watch a connection
//! that a plain std thread drives through its whole life cycle.
//!
//! The clean-up task waits for `Closing` and gets it, although the setter
//! moves straight on to `Closed`. The metrics task reads the `changes()`
//! stream, which yields only the latest value of each burst, so what it sees
//! depends on how the threads interleave (it always ends with `Closed`).
//!
//! Run with `cargo run --example smol`.

use std::pin::pin;
use std::thread;

use futures_lite::StreamExt;
use futures_lite::future::poll_once;
use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

/// The connection's state, shared by the tasks and the setter thread.
static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);
/// How many tasks are watching `CONN`; the setter starts when both are.
static WATCHING: ValueWatcher<u32> = ValueWatcher::new(0);

async fn cleanup_task() -> Conn {
    // A wait starts watching at its first poll: poll once, then report.
    let mut closing = pin!(CONN.wait_for(Conn::Closing));
    assert!(poll_once(closing.as_mut()).await.is_none());
    WATCHING.modify(|n| *n += 1);

    let seen = closing.await;
    println!(
        "[cleanup task]  woke up for {seen:?} (the connection is {:?} by now)",
        CONN.get()
    );
    seen
}

async fn metrics_task() {
    // A stream counts transitions from its creation on.
    let mut changes = CONN.changes();
    WATCHING.modify(|n| *n += 1);

    let mut seen = Vec::new();
    while let Some(state) = changes.next().await {
        seen.push(state);
        if state == Conn::Closed {
            break;
        }
    }
    println!("[metrics task]  the stream yielded {seen:?}");
}

fn main() {
    let ex = smol::Executor::new();
    let cleanup = ex.spawn(cleanup_task());
    let metrics = ex.spawn(metrics_task());

    // A foreign thread, not part of any executor, drives the connection.
    let setter = thread::spawn(|| {
        WATCHING.wait_for(2).wait(); // blocks this thread until both watch
        for state in [
            Conn::Connecting,
            Conn::Connected,
            Conn::Closing,
            Conn::Closed,
        ] {
            println!("[setter thread] {state:?}");
            CONN.set(state);
        }
    });

    let seen = smol::block_on(ex.run(async {
        metrics.await;
        cleanup.await
    }));
    setter.join().unwrap();
    assert_eq!(seen, Conn::Closing);
    println!(
        "done: the clean-up ran for Closing; the value is {:?}",
        CONN.get()
    );
}
