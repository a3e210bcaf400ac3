//! SPEC §3.2 and §3.4 across real threads: transient states and setters
//! racing a waiter's first poll, thousands of rounds each. Barriers order
//! the rounds; no result depends on timing. A lost wake-up shows up as a
//! blocking wait returning `None` after a generous limit, or (for futures)
//! as a hang that the watchdog turns into an abort with a message.
#![cfg(feature = "std")]

mod common;

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use common::{Conn, GENEROUS, LIFE_CYCLE, watchdog};
use futures_lite::future::poll_once;
use value_watcher::ValueWatcher;

const ROUNDS: u64 = 5_000;

/// Every waiter on every thread and executor registers first, then another
/// thread runs the whole life cycle: each must get `Closing`, though
/// `Closed` follows it at once.
#[test]
fn s3_2_every_waiter_on_every_thread_gets_transient_closing() {
    let _dog = watchdog("cross-thread transient states", 300);
    let w = ValueWatcher::new(Conn::Disconnected);
    // Setter and the three waiter threads.
    let start = Barrier::new(4);
    // Setter and the two executor threads, after their first poll.
    let polled = Barrier::new(3);
    let finished = Barrier::new(4);
    // The round in which the blocking waiter's predicate first ran.
    let blocking_started = Arc::new(AtomicU64::new(0));

    let results: Vec<Vec<Option<Conn>>> = std::thread::scope(|s| {
        let blocking = s.spawn(|| {
            let mut got = Vec::new();
            for round in 1..=ROUNDS {
                start.wait();
                let hook = blocking_started.clone();
                let mut first = true;
                got.push(
                    w.wait_until(move |c| {
                        if std::mem::take(&mut first) {
                            hook.store(round, Ordering::SeqCst);
                        }
                        *c == Conn::Closing
                    })
                    .wait_timeout(GENEROUS),
                );
                finished.wait();
            }
            got
        });
        let pollster = s.spawn(|| {
            let mut got = Vec::new();
            for _ in 0..ROUNDS {
                start.wait();
                let mut fut = Box::pin(w.wait_for(Conn::Closing));
                let first = pollster::block_on(poll_once(fut.as_mut()));
                assert!(first.is_none(), "Closing before the cycle started");
                polled.wait();
                got.push(Some(pollster::block_on(fut)));
                finished.wait();
            }
            got
        });
        let smol = s.spawn(|| {
            let mut got = Vec::new();
            for _ in 0..ROUNDS {
                start.wait();
                got.push(Some(smol::block_on(async {
                    let mut fut = pin!(w.wait_for(Conn::Closing));
                    assert!(poll_once(fut.as_mut()).await.is_none());
                    polled.wait();
                    fut.await
                })));
                finished.wait();
            }
            got
        });
        let setter = s.spawn(|| {
            for round in 1..=ROUNDS {
                start.wait();
                polled.wait();
                while blocking_started.load(Ordering::SeqCst) != round {
                    std::thread::yield_now();
                }
                for state in LIFE_CYCLE {
                    w.set(state);
                }
                finished.wait();
                w.set(Conn::Disconnected);
            }
        });
        setter.join().unwrap();
        [blocking, pollster, smol]
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    for (who, got) in ["blocking", "pollster", "smol"].iter().zip(&results) {
        assert_eq!(got.len() as u64, ROUNDS);
        let wrong: Vec<_> = got
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != Some(Conn::Closing))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{who}: rounds with another result: {wrong:?}"
        );
    }
    assert_eq!(w.version(), ROUNDS * 5);
}

/// A setter races the waiter's first poll (check, then registration) from
/// another thread; the wait must always complete.
#[test]
fn s3_4_a_setter_racing_the_first_poll_is_never_lost_blocking() {
    let _dog = watchdog("setter racing a blocking first poll", 300);
    let w = ValueWatcher::new(0u64);
    let go = Barrier::new(2);
    // Set by the waiter on its first failure, so both threads stop at the
    // next barrier instead of waiting out every round.
    let failed = AtomicBool::new(false);
    let lost = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut lost = Vec::new();
            for i in 1..=ROUNDS {
                go.wait();
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                // Three kinds of wait, each must see the set of this round.
                let got = match i % 3 {
                    0 => w.wait_for(i).wait_timeout(GENEROUS),
                    1 => w.wait_until(move |v| *v >= i).wait_timeout(GENEROUS),
                    _ => w.wait_for_not(i - 1).wait_timeout(GENEROUS),
                };
                if got != Some(i) {
                    lost.push((i, got));
                    failed.store(true, Ordering::SeqCst);
                }
            }
            lost
        });
        s.spawn(|| {
            for i in 1..=ROUNDS {
                go.wait();
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                w.set(i);
            }
        });
        waiter.join().unwrap()
    });
    assert!(lost.is_empty(), "lost wake-ups: {lost:?}");
}

#[test]
fn s3_4_a_setter_racing_the_first_poll_is_never_lost_async() {
    let _dog = watchdog("setter racing an async first poll", 300);
    let w = ValueWatcher::new(0u64);
    let go = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=ROUNDS {
                go.wait();
                // pollster parks its thread; a lost wake-up hangs here.
                let got = if i % 2 == 0 {
                    pollster::block_on(w.wait_for(i))
                } else {
                    futures_lite::future::block_on(w.wait_until(move |v| *v >= i))
                };
                assert_eq!(got, i);
            }
        });
        s.spawn(|| {
            for i in 1..=ROUNDS {
                go.wait();
                w.set(i);
            }
        });
    });
}

/// Many threads each wait for their own value while one thread sets them
/// all in turn; no barrier per value, so registrations and sets overlap
/// freely. Each value stays set until its waiter is done, so every waiter
/// must finish however late it started.
#[test]
fn s3_4_many_threads_waiting_while_one_sets() {
    const WAITERS: u64 = 8;
    const EACH: u64 = 300;
    let _dog = watchdog("many waiting threads", 300);
    let w = ValueWatcher::new(0u64);
    let done = ValueWatcher::new(0u64);
    std::thread::scope(|s| {
        for t in 0..WAITERS {
            let (w, done) = (&w, &done);
            s.spawn(move || {
                for k in 0..EACH {
                    let target = k * WAITERS + t + 1;
                    let got = w.wait_until(move |v| *v >= target).wait_timeout(GENEROUS);
                    assert_eq!(got, Some(target), "thread {t} round {k}");
                    done.modify(|d| *d += 1);
                }
            });
        }
        for target in 1..=WAITERS * EACH {
            w.set(target);
            // The waiter of `target` finishes before it moves on.
            let got = done
                .wait_until(move |d| *d >= target)
                .wait_timeout(GENEROUS);
            assert_eq!(got, Some(target));
        }
    });
}

#[test]
fn s3_2_blocking_threads_registered_mid_cycle_never_hang() {
    // Blocking waiters start at arbitrary points of a repeating cycle. Each
    // waits for Closing from wherever it starts: with immediate checking,
    // a waiter that registers just after Closing must still catch the next
    // cycle's, so a missed registration shows as a hang (the watchdog).
    let _dog = watchdog("blocking mid-cycle", 300);
    let w = ValueWatcher::new(Conn::Disconnected);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
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
                        .filter(|_| w.wait_for(Conn::Closing).wait() == Conn::Closing)
                        .count()
                })
            })
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), 1_000);
        }
        done.store(true, Ordering::Relaxed);
    });
}
