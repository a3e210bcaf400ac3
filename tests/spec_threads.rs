//! SPEC §3.2 across threads: waiters on other threads and executors, all
//! registered before a setter thread runs the whole connection life cycle,
//! each must get `Closing`, in every one of thousands of iterations.

mod support;

use std::pin::Pin;
use std::sync::Barrier;

use futures_lite::future::{block_on, poll_once};
use support::{Conn, LIFE_CYCLE};
use value_watcher::{ValueWatcher, WaitFor};

/// Registers `fut` (first poll), then meets the others at `barrier`, then
/// finishes it with `block_on`.
fn register_then_finish<'a>(barrier: &Barrier, mut fut: Pin<Box<WaitFor<'a, Conn>>>) -> Conn {
    assert!(block_on(poll_once(&mut fut)).is_none(), "not Closing yet");
    barrier.wait();
    block_on(fut)
}

#[test]
fn s3_2_every_waiter_on_every_thread_sees_closing() {
    let _dog = support::watchdog("cross-thread transient loop", 300);
    let iterations = 5_000;
    for i in 0..iterations {
        let w = ValueWatcher::new(Conn::Disconnected);
        let barrier = Barrier::new(4);
        std::thread::scope(|s| {
            let waiters = [
                // futures-lite's block_on on a plain thread
                s.spawn(|| register_then_finish(&barrier, Box::pin(w.wait_for(Conn::Closing)))),
                // smol's executor
                s.spawn(|| {
                    smol::block_on(async {
                        let mut fut = Box::pin(w.wait_until(|c| *c == Conn::Closing));
                        assert!(poll_once(&mut fut).await.is_none());
                        barrier.wait();
                        fut.await
                    })
                }),
                // pollster
                s.spawn(|| {
                    let mut fut = Box::pin(w.wait_for(Conn::Closing));
                    assert!(pollster::block_on(poll_once(&mut fut)).is_none());
                    barrier.wait();
                    pollster::block_on(fut)
                }),
            ];
            barrier.wait();
            for state in LIFE_CYCLE {
                w.set(state);
            }
            for waiter in waiters {
                assert_eq!(waiter.join().unwrap(), Conn::Closing, "iteration {i}");
            }
        });
    }
}

#[test]
fn s3_2_blocking_threads_registered_mid_cycle_never_skip_closing() {
    // Blocking waiters start at arbitrary points of a repeating cycle. Each
    // waits for Closing from wherever it starts; Closing is always followed
    // at once by Closed, so returning anything but Closing would be a miss.
    let _dog = support::watchdog("blocking mid-cycle", 300);
    let w = ValueWatcher::new(Conn::Disconnected);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for state in LIFE_CYCLE {
                    w.set(state);
                }
                w.set(Conn::Disconnected);
            }
        });
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..1_000)
                        .map(|_| w.wait_for(Conn::Closing).wait())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for waiter in waiters {
            assert!(waiter.join().unwrap().iter().all(|c| *c == Conn::Closing));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
