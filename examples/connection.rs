//! The flagship scenario: a connection's state, watched from two executors and
//! a blocking thread while another thread drives it through its life cycle.
//!
//! Three watchers wait for `Closing`. The setter moves on to `Closed` right
//! after, without giving anyone a chance to run in between, yet each of them
//! reports `Closing`: a waiter's predicate is checked against every
//! transition by the setter itself, so transient states are never missed.
//! Two more waiters show the waits no watch channel has: one for the *edge*
//! "left `Connected`" (`wait_transition`), and one that extracts the error
//! kind from a transient `Failed(io::Error)` state (`wait_map`), without
//! cloning the error.
//!
//! Run with `cargo run --example connection`.

use std::io;
use std::sync::Barrier;
use std::thread;

use value_watcher::ValueWatcher;

#[derive(PartialEq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    /// A failure on the way: the connection retries at once.
    Failed(ErrorKindEq),
    Closing,
    Closed,
}

/// An `io::Error`, compared by kind (`io::Error` is neither `Clone` nor
/// `PartialEq`).
#[derive(Debug)]
struct ErrorKindEq(io::Error);

impl PartialEq for ErrorKindEq {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind()
    }
}

/// The waits that hand out the value itself need a clone; an error clones
/// as a new error of the same kind.
impl Clone for Conn {
    fn clone(&self) -> Self {
        match self {
            Conn::Disconnected => Conn::Disconnected,
            Conn::Connecting => Conn::Connecting,
            Conn::Connected => Conn::Connected,
            Conn::Failed(e) => Conn::Failed(ErrorKindEq(io::Error::from(e.0.kind()))),
            Conn::Closing => Conn::Closing,
            Conn::Closed => Conn::Closed,
        }
    }
}

static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);

fn main() {
    // Log every transition from the setter's thread, as it happens.
    CONN.on_change(|old, new| println!("  [on_change] {old:?} -> {new:?}"));
    CONN.on_value(Conn::Connected, || {
        println!("  [on_value]  connected, once")
    });

    // Four watchers plus the setter start together.
    let ready = Barrier::new(5);

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

        // A futures-lite task: an edge and an extracted error.
        s.spawn(|| {
            futures_lite::future::block_on(async {
                // "Left Connected", whatever it went to: needs the old value.
                let mut left = Box::pin(CONN.wait_transition(|old, _| *old == Conn::Connected));
                // The kind of the first failure, taken out under the lock.
                let mut failure = Box::pin(CONN.wait_map(|c| match c {
                    Conn::Failed(e) => Some(e.0.kind()),
                    _ => None,
                }));
                assert!(futures_lite::future::poll_once(&mut left).await.is_none());
                assert!(
                    futures_lite::future::poll_once(&mut failure)
                        .await
                        .is_none()
                );
                ready.wait();
                let after = left.await;
                let kind = failure.await;
                println!("edge task     saw Connected -> {after:?}, and a {kind:?} failure");
                assert!(matches!(after, Conn::Failed(_)));
                assert_eq!(kind, io::ErrorKind::ConnectionReset);
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
                Conn::Failed(ErrorKindEq(io::ErrorKind::ConnectionReset.into())),
                Conn::Connecting, // retried at once
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
    println!("every Closing waiter saw Closing, though the value went straight on to Closed");
}
