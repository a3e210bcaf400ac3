//! value-watcher on embassy's executor, here on the host (`platform-std`).
//!
//! Two embassy tasks share a `static` watcher, the way tasks on a device
//! share state: a driver task runs the connection's life cycle, a monitor
//! task waits for states in it, and gets the transient `Closing` although the
//! driver sets `Closed` right after, in the same poll. The monitor then shows
//! the timeout recipe (`embassy_time::with_timeout`) and ends the program.
//!
//! Run with `cargo run --example embassy`.

use core::pin::pin;

use embassy_executor::Spawner;
use embassy_time::{Duration, with_timeout};
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

/// `ValueWatcher::new` is `const`: no lazy init, no allocation.
static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);
/// Set by the monitor once its waits are watching.
static MONITORING: ValueWatcher<bool> = ValueWatcher::new(false);

#[embassy_executor::task]
async fn driver() {
    MONITORING.wait_for(true).await;
    for state in [
        Conn::Connecting,
        Conn::Connected,
        Conn::Closing,
        Conn::Closed,
    ] {
        println!("[driver]  {state:?}");
        CONN.set(state);
    }
}

#[embassy_executor::task]
async fn monitor() {
    // Waits start watching at their first poll.
    let mut connected = pin!(CONN.wait_for(Conn::Connected));
    let mut closing = pin!(CONN.wait_for(Conn::Closing));
    assert!(poll_once(connected.as_mut()).await.is_none());
    assert!(poll_once(closing.as_mut()).await.is_none());
    MONITORING.set(true);

    println!("[monitor] saw {:?}", connected.await);
    let seen = closing.await;
    println!(
        "[monitor] saw {seen:?} (the connection is {:?} by now)",
        CONN.get()
    );
    assert_eq!(seen, Conn::Closing);

    // Nobody reconnects: the timer wins and the wait is dropped.
    match with_timeout(Duration::from_millis(50), CONN.wait_for(Conn::Connecting)).await {
        Ok(_) => println!("[monitor] reconnecting"),
        Err(_) => println!("[monitor] no reconnect within 50 ms"),
    }

    // The host executor never returns from `run`: end the program here.
    println!("done");
    std::process::exit(0);
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    spawner.spawn(monitor().unwrap());
    spawner.spawn(driver().unwrap());
}
