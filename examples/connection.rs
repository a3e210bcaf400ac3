//! The flagship scenario: a connection's state, watched from two executors and
//! a blocking thread while another thread drives it through its life cycle.
//!
//! Every watcher waits for `Closing`. The setter moves on to `Closed` right
//! after, without giving anyone a chance to run in between, yet each of them
//! reports `Closing`: a waiter's predicate is checked against every
//! transition by the setter itself, so transient states are never missed.
//!
//! Run with `cargo run --example connection`.

use std::sync::Barrier;
use std::thread;

use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);

fn main() {
    // Log every transition from the setter's thread, as it happens.
    CONN.on_change(|old, new| println!("  [on_change] {old:?} -> {new:?}"));
    CONN.on_value(Conn::Connected, || {
        println!("  [on_value]  connected, once")
    });

    // Three watchers plus the setter start together.
    let ready = Barrier::new(4);

    thread::scope(|s| {
        // A smol task, waiting for Closing with a predicate.
        s.spawn(|| {
            smol::block_on(async {
                let mut closing = Box::pin(CONN.wait_until(|c| *c == Conn::Closing));
                // Start watching (first poll), then let the setter go.
                assert!(
                    futures_lite::future::poll_once(&mut closing)
                        .await
                        .is_none()
                );
                ready.wait();
                let seen = closing.await;
                println!("smol task     saw {seen:?} (value is now {:?})", CONN.get());
                assert_eq!(seen, Conn::Closing);
            })
        });

        // A tokio task on a current-thread runtime.
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut connected = Box::pin(CONN.wait_for(Conn::Connected));
                let mut closing = Box::pin(CONN.wait_for(Conn::Closing));
                assert!(
                    futures_lite::future::poll_once(&mut connected)
                        .await
                        .is_none()
                );
                assert!(
                    futures_lite::future::poll_once(&mut closing)
                        .await
                        .is_none()
                );
                ready.wait();
                let first = connected.await;
                let second = closing.await;
                println!("tokio task    saw {first:?}, then {second:?}");
                assert_eq!((first, second), (Conn::Connected, Conn::Closing));
            })
        });

        // A plain thread, blocking.
        s.spawn(|| {
            let mut closing = Box::pin(CONN.wait_for(Conn::Closing));
            // Register by polling once; then block on the same future.
            assert!(pollster::block_on(futures_lite::future::poll_once(&mut closing)).is_none());
            ready.wait();
            let seen = pollster::block_on(closing);
            println!("blocking thr  saw {seen:?}");
            assert_eq!(seen, Conn::Closing);
        });

        // The setter: the whole life cycle in one go.
        s.spawn(|| {
            ready.wait();
            for state in [
                Conn::Connecting,
                Conn::Connected,
                Conn::Closing,
                Conn::Closed,
            ] {
                CONN.set(state);
            }
            println!(
                "setter        done, value {:?}, version {}",
                CONN.get(),
                CONN.version()
            );
        });
    });

    assert_eq!(CONN.get(), Conn::Closed);
    println!("every waiter saw Closing, though the value went straight on to Closed");
}
