//! SPEC §2 and §3.1–3.8, §3.13, §3.14: one or more tests per numbered item,
//! driven by manual polling with counting wakers (deterministic, one thread)
//! unless the item is about threads.

mod support;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use support::{Conn, LIFE_CYCLE, counting_waker, poll_noop, poll_with};
use value_watcher::ValueWatcher;

// === §3.1 transitions ===

#[test]
fn s3_1_equal_set_is_not_a_transition() {
    let w = ValueWatcher::new(5);
    let (count, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });

    assert!(!w.set(5));
    assert!(
        w.set_if(5, |_| true),
        "set_if reports the condition, not the change"
    );
    assert!(!w.modify(|v| *v += 0));
    assert_eq!(w.version(), 0);
    assert_eq!(count.count(), 0, "no wake-up without a transition");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no callback without a transition"
    );
    assert!(poll_with(change.as_mut(), &waker).is_pending());

    assert!(w.set(6));
    assert_eq!(w.version(), 1);
    assert_eq!(count.count(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(poll_with(change.as_mut(), &waker), Poll::Ready(6));
}

#[test]
fn s3_1_version_counts_transitions_of_every_setter() {
    let w = ValueWatcher::new(0u32);
    assert!(w.set(1));
    assert!(w.set_if(2, |v| *v == 1));
    assert!(!w.set_if(3, |v| *v == 1), "condition false");
    assert!(w.modify(|v| *v *= 10));
    assert_eq!(w.get(), 20);
    assert_eq!(w.version(), 3);
}

#[test]
fn s3_1_modify_that_ends_equal_keeps_the_old_value() {
    // Equal by PartialEq but distinguishable: keep the stored one.
    #[derive(Clone, Debug)]
    struct Tagged(u8, &'static str);
    impl PartialEq for Tagged {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }
    let w = ValueWatcher::new(Tagged(1, "original"));
    assert!(!w.modify(|t| t.1 = "mutated"));
    assert_eq!(w.with(|t| t.1), "original");
    assert!(!w.set(Tagged(1, "replacement")));
    assert_eq!(w.with(|t| t.1), "original");
    assert_eq!(w.version(), 0);
}

// === §3.2 no missed states ===

#[test]
fn s3_2_transient_closing_is_not_missed_manual_polling() {
    let w = ValueWatcher::new(Conn::Disconnected);
    let (count, waker) = counting_waker();
    let mut closing = pin!(w.wait_for(Conn::Closing));
    assert!(poll_with(closing.as_mut(), &waker).is_pending());
    for state in LIFE_CYCLE {
        w.set(state);
    }
    assert_eq!(w.get(), Conn::Closed);
    assert_eq!(
        count.count(),
        1,
        "woken exactly once, by the Closing transition"
    );
    assert_eq!(
        poll_with(closing.as_mut(), &waker),
        Poll::Ready(Conn::Closing)
    );
}

#[test]
fn s3_2_each_waiter_gets_the_first_matching_value() {
    let w = ValueWatcher::new(0u32);
    let mut even = pin!(w.wait_until(|v| *v % 2 == 0).immediate(false));
    let mut big = pin!(w.wait_until(|v| *v >= 3));
    let mut change = pin!(w.wait_for_change());
    let mut not_zero = pin!(w.wait_for_not(0));
    assert!(poll_noop(even.as_mut()).is_pending());
    assert!(poll_noop(big.as_mut()).is_pending());
    assert!(poll_noop(change.as_mut()).is_pending());
    assert!(poll_noop(not_zero.as_mut()).is_pending());
    for v in [1, 2, 3, 4, 5, 6] {
        w.set(v);
    }
    assert_eq!(poll_noop(even.as_mut()), Poll::Ready(2));
    assert_eq!(poll_noop(big.as_mut()), Poll::Ready(3));
    assert_eq!(poll_noop(change.as_mut()), Poll::Ready(1));
    assert_eq!(poll_noop(not_zero.as_mut()), Poll::Ready(1));
}

#[test]
fn s3_2_transitions_before_the_first_poll_are_not_seen() {
    let w = ValueWatcher::new(0);
    let mut two = pin!(w.wait_for(2));
    w.set(2); // before the first poll...
    w.set(3); // ... and gone again
    assert!(
        poll_noop(two.as_mut()).is_pending(),
        "lazy: starts at first poll"
    );
    w.set(2);
    assert_eq!(poll_noop(two.as_mut()), Poll::Ready(2));
}

#[test]
fn s3_2_wait_for_some_captures_a_transient_some() {
    let w = ValueWatcher::new(None::<String>);
    let mut some = pin!(w.wait_for_some());
    assert!(poll_noop(some.as_mut()).is_pending());
    w.set(Some("first".to_string()));
    w.set(Some("second".to_string()));
    w.set(None);
    assert_eq!(poll_noop(some.as_mut()), Poll::Ready("first".to_string()));
}

#[test]
fn s3_2_blocking_wait_sees_a_transient_state() {
    let _dog = support::watchdog("blocking transient", 60);
    let w = ValueWatcher::new(Conn::Disconnected);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| w.wait_for(Conn::Closing).wait());
        // Closing is only ever transient here (Closed follows at once), yet
        // the blocked thread must return it; keep cycling until it returns.
        while !waiter.is_finished() {
            for state in LIFE_CYCLE {
                w.set(state);
            }
            w.set(Conn::Disconnected);
        }
        assert_eq!(waiter.join().unwrap(), Conn::Closing);
    });
}

// === §3.3 immediate ===

#[test]
fn s3_3_immediate_by_default_checks_the_current_value() {
    let w = ValueWatcher::new(Some(1));
    assert_eq!(poll_noop(pin!(w.wait_for(Some(1)))), Poll::Ready(Some(1)));
    assert_eq!(poll_noop(pin!(w.wait_for_not(None))), Poll::Ready(Some(1)));
    assert_eq!(
        poll_noop(pin!(w.wait_until(|v| v.is_some()))),
        Poll::Ready(Some(1))
    );
    assert_eq!(poll_noop(pin!(w.wait_for_some())), Poll::Ready(1));
    assert!(
        poll_noop(pin!(w.wait_for_change())).is_pending(),
        "never immediate"
    );
}

#[test]
fn s3_3_immediate_false_needs_a_transition_into_a_match() {
    let w = ValueWatcher::new(Some(1));
    let mut for_some = pin!(w.wait_for_some().immediate(false));
    let mut until = pin!(w.wait_until(|v| v.is_some()).immediate(false));
    let mut eq = pin!(w.wait_for(Some(1)).immediate(false));
    let mut ne = pin!(w.wait_for_not(None).immediate(false));
    assert!(poll_noop(for_some.as_mut()).is_pending());
    assert!(poll_noop(until.as_mut()).is_pending());
    assert!(poll_noop(eq.as_mut()).is_pending());
    assert!(poll_noop(ne.as_mut()).is_pending());
    w.set(None);
    assert!(poll_noop(for_some.as_mut()).is_pending());
    w.set(Some(2));
    w.set(Some(1));
    assert_eq!(poll_noop(for_some.as_mut()), Poll::Ready(2));
    assert_eq!(poll_noop(until.as_mut()), Poll::Ready(Some(2)));
    assert_eq!(poll_noop(eq.as_mut()), Poll::Ready(Some(1)));
    assert_eq!(poll_noop(ne.as_mut()), Poll::Ready(Some(2)));
}

#[test]
fn s3_3_immediate_can_be_turned_back_on() {
    let w = ValueWatcher::new(3);
    let fut = w.wait_for(3).immediate(false).immediate(true);
    assert_eq!(poll_noop(pin!(fut)), Poll::Ready(3));
}

#[test]
fn s3_3_blocking_waits_return_a_current_match_past_their_deadline() {
    let w = ValueWatcher::new(7);
    let past = Instant::now() - Duration::from_secs(1);
    assert_eq!(w.wait_for(7).wait_deadline(past), Some(7));
    assert_eq!(w.wait_for(7).wait_timeout(Duration::ZERO), Some(7));
    assert_eq!(w.wait_for(8).wait_deadline(past), None);
    assert_eq!(w.wait_for(8).wait_timeout(Duration::ZERO), None);
    assert_eq!(w.wait_for_change().wait_timeout(Duration::ZERO), None);
}

// === §3.4 no lost wake-ups ===

#[test]
fn s3_4_a_setter_racing_the_first_poll_is_never_lost() {
    let _dog = support::watchdog("lost wake-up race", 120);
    for i in 0..3_000u32 {
        let w = ValueWatcher::new(0u32);
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                w.set(1);
            });
            start.wait();
            let got = w.wait_for(1).wait_timeout(Duration::from_secs(30));
            assert_eq!(got, Some(1), "iteration {i}: wake-up lost");
        });
    }
}

#[test]
fn s3_4_async_waiter_racing_a_foreign_setter() {
    let _dog = support::watchdog("async lost wake-up race", 120);
    for _ in 0..2_000 {
        let w = ValueWatcher::new(0u32);
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                w.set(1);
            });
            start.wait();
            assert_eq!(futures_lite::future::block_on(w.wait_for_not(0)), 1);
        });
    }
}

// === §3.5 wake only who matches ===

#[test]
fn s3_5_one_set_wakes_only_the_matching_waiter() {
    let w = ValueWatcher::new(u32::MAX);
    let wakers: Vec<_> = (0..1_000).map(|_| counting_waker()).collect();
    let mut futs: Vec<_> = (0..1_000u32).map(|v| Box::pin(w.wait_for(v))).collect();
    for (fut, (_, waker)) in futs.iter_mut().zip(&wakers) {
        assert!(poll_with(fut.as_mut(), waker).is_pending());
    }
    let (change_count, change_waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &change_waker).is_pending());

    w.set(421);
    for (v, (count, _)) in wakers.iter().enumerate() {
        assert_eq!(count.count(), usize::from(v == 421), "waiter for {v}");
    }
    assert_eq!(
        change_count.count(),
        1,
        "wait_for_change waiters always wake"
    );
    assert_eq!(
        poll_with(futs[421].as_mut(), &wakers[421].1),
        Poll::Ready(421)
    );
    assert!(poll_with(futs[420].as_mut(), &wakers[420].1).is_pending());
}

// === §3.6 bounded memory ===

#[test]
fn s3_6_a_waiter_holds_only_the_first_value() {
    // Count live values: each waiter may hold one captured clone at most.
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq)]
    struct Counted(u32);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Counted(self.0)
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let make = |v| {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted(v)
    };
    let w = ValueWatcher::new(make(0));
    let mut change = pin!(w.wait_for_change());
    assert!(poll_noop(change.as_mut()).is_pending());
    for v in 1..=10_000 {
        w.set(make(v));
    }
    // The stored value plus the single captured clone.
    assert_eq!(LIVE.load(Ordering::SeqCst), 2);
    assert_eq!(poll_noop(change.as_mut()), Poll::Ready(Counted(1)));
}

#[test]
fn s3_6_abandoned_waits_leave_nothing_behind() {
    let w = ValueWatcher::new(0u32);
    let (count, waker) = counting_waker();
    for v in 0..100_000u32 {
        let mut fut = Box::pin(w.wait_for(v + 1));
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
    }
    for v in 1..=1_000 {
        w.set(v);
    }
    assert_eq!(count.count(), 0, "dropped waiters are never woken");
    let mut fresh = pin!(w.wait_for(5_000));
    assert!(poll_noop(fresh.as_mut()).is_pending());
    w.set(5_000);
    assert_eq!(poll_noop(fresh.as_mut()), Poll::Ready(5_000));
}

// === §3.7 cancel safety ===

#[test]
fn s3_7_dropped_waiters_are_never_woken_and_others_still_are() {
    let w = ValueWatcher::new(0u32);
    let mut entries: Vec<_> = (0..5)
        .map(|_| {
            let (count, waker) = counting_waker();
            let mut fut = Box::pin(w.wait_for(1));
            assert!(poll_with(fut.as_mut(), &waker).is_pending());
            (Some(fut), count, waker)
        })
        .collect();
    // Drop the first, a middle and the last registered waiter.
    for i in [0, 2, 4] {
        entries[i].0 = None;
    }
    w.set(1);
    for (i, (fut, count, waker)) in entries.iter_mut().enumerate() {
        match fut {
            None => assert_eq!(count.count(), 0, "dropped waiter {i} was woken"),
            Some(fut) => {
                assert_eq!(count.count(), 1);
                assert_eq!(poll_with(fut.as_mut(), waker), Poll::Ready(1));
            }
        }
    }
    // The list is still usable after the removals.
    let mut again = pin!(w.wait_for(2));
    assert!(poll_noop(again.as_mut()).is_pending());
    w.set(2);
    assert_eq!(poll_noop(again.as_mut()), Poll::Ready(2));
}

#[test]
fn s3_7_dropping_a_chosen_waiter_drops_its_captured_value() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Clone, PartialEq, Debug)]
    struct D(u8);
    impl Drop for D {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let w = ValueWatcher::new(D(0));
    let mut fut = Box::pin(w.wait_for(D(1)));
    assert!(poll_noop(fut.as_mut()).is_pending());
    let before = DROPS.load(Ordering::SeqCst);
    w.set(D(1)); // drops the old D(0); the waiter captures a clone of D(1)
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 1);
    drop(fut); // drops the captured clone and the target D(1)
    assert_eq!(DROPS.load(Ordering::SeqCst), before + 3);
}

#[test]
fn s3_7_more_matches_than_a_wake_batch_all_wake_and_queued_ones_can_drop() {
    let w = ValueWatcher::new(0u32);
    let n = 200; // several wake batches
    let mut entries: Vec<_> = (0..n)
        .map(|_| {
            let (count, waker) = counting_waker();
            let mut fut = Box::pin(w.wait_for(1));
            assert!(poll_with(fut.as_mut(), &waker).is_pending());
            (Some(fut), count, waker)
        })
        .collect();
    w.set(1);
    for (fut, count, waker) in &mut entries {
        assert_eq!(count.count(), 1);
        assert_eq!(
            poll_with(fut.as_mut().unwrap().as_mut(), waker),
            Poll::Ready(1)
        );
    }
    // Drop chosen-but-unpolled waiters, from all positions.
    let mut entries: Vec<_> = (0..n)
        .map(|_| {
            let mut fut = Box::pin(w.wait_for(2));
            assert!(poll_noop(fut.as_mut()).is_pending());
            fut
        })
        .collect();
    w.set(2);
    entries.retain(|_| false);
    let mut fresh = pin!(w.wait_for(3));
    assert!(poll_noop(fresh.as_mut()).is_pending());
    w.set(3);
    assert_eq!(poll_noop(fresh.as_mut()), Poll::Ready(3));
}

#[test]
fn s3_7_the_waker_of_the_latest_poll_is_the_one_woken() {
    let w = ValueWatcher::new(0);
    let (first, first_waker) = counting_waker();
    let (second, second_waker) = counting_waker();
    let mut fut = pin!(w.wait_for(1));
    assert!(poll_with(fut.as_mut(), &first_waker).is_pending());
    assert!(poll_with(fut.as_mut(), &second_waker).is_pending());
    w.set(1);
    assert_eq!((first.count(), second.count()), (0, 1));
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn polling_a_completed_wait_panics() {
    let w = ValueWatcher::new(1);
    let mut fut = pin!(w.wait_for(1));
    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));
    let _ = poll_noop(fut.as_mut());
}

// === §3.13 changes() ===

#[test]
fn s3_13_changes_yields_the_latest_value_of_each_burst() {
    let w = ValueWatcher::new(0);
    w.set(1); // before creation: not an item
    let mut changes = w.changes();
    let (count, waker) = counting_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert_eq!(changes.poll_next(&mut cx), Poll::Pending);
    w.set(2);
    w.set(3);
    w.set(3); // equal: nothing
    assert_eq!(count.count(), 1);
    assert_eq!(changes.poll_next(&mut cx), Poll::Ready(Some(3)));
    assert_eq!(changes.poll_next(&mut cx), Poll::Pending);
    w.set(4);
    assert_eq!(changes.poll_next(&mut cx), Poll::Ready(Some(4)));
    assert_eq!(changes.poll_next(&mut cx), Poll::Pending);
    drop(changes); // registered: must unlink
    w.set(5);
    assert_eq!(count.count(), 2);
}

#[test]
fn s3_13_changes_counts_transitions_after_creation_even_before_first_poll() {
    let w = ValueWatcher::new(0);
    let mut changes = w.changes();
    w.set(1);
    assert_eq!(futures_lite::future::block_on(changes.next()), Some(1));
}

// === §3.14 and §2 ===

#[test]
fn s3_14_debug_shows_value_and_version() {
    let w = ValueWatcher::new("on");
    w.set("off");
    let shown = format!("{w:?}");
    assert!(
        shown.contains("\"off\"") && shown.contains("version: 1"),
        "{shown}"
    );
}

#[test]
fn s2_default_from_static_with() {
    static FLAG: ValueWatcher<bool> = ValueWatcher::new(false);
    assert!(!FLAG.get());
    let d: ValueWatcher<Vec<u8>> = ValueWatcher::default();
    assert!(d.with(Vec::is_empty));
    let f = ValueWatcher::from(String::from("x"));
    assert_eq!(f.with(|s| s.len()), 1);
    assert_eq!(f.get(), "x");
}

#[test]
fn s2_auto_traits() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let w = ValueWatcher::new(String::new());
    send_sync(&w);
    send(&w.wait_for(String::new()));
    send(&w.wait_for_not(String::new()));
    send(&w.wait_until(|s: &String| s.is_empty()));
    send(&w.wait_for_change());
    send(&w.changes());
    let o = ValueWatcher::new(None::<u8>);
    send(&o.wait_for_some());
}

#[test]
fn s2_set_if_is_atomic_between_threads() {
    let w = ValueWatcher::new(0u32);
    let wins = AtomicUsize::new(0);
    let threads = 4;
    let per = 5_000;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = 0;
                while mine < per {
                    let seen = w.get();
                    if w.set_if(seen + 1, |v| *v == seen) {
                        mine += 1;
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // Every win moved the value by exactly one: no two threads won the same step.
    assert_eq!(w.get() as usize, threads * per);
    assert_eq!(wins.load(Ordering::Relaxed), threads * per);
    assert_eq!(w.version() as usize, threads * per);
}

#[test]
fn s2_wait_timeout_too_large_for_instant_waits_without_deadline() {
    let w = ValueWatcher::new(0);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| w.wait_for(1).wait_timeout(Duration::MAX));
        while !waiter.is_finished() {
            w.set(1);
            w.set(0);
            std::thread::yield_now();
        }
        assert_eq!(waiter.join().unwrap(), Some(1));
    });
}

#[test]
fn s2_wait_deadline_with_no_match_returns_none_and_unregisters() {
    let w = ValueWatcher::new(0);
    assert_eq!(w.wait_for(1).wait_timeout(Duration::from_millis(20)), None);
    // Nothing is left registered: a later set has nobody to choose, and a
    // new waiter works.
    let (count, waker) = counting_waker();
    let mut fresh = pin!(w.wait_for(1));
    assert!(poll_with(fresh.as_mut(), &waker).is_pending());
    w.set(1);
    assert_eq!(count.count(), 1);
}

/// In its own module: `futures::StreamExt` and `futures_lite::StreamExt`
/// both have `map`.
mod with_futures_stream_ext {
    use super::support;
    use value_watcher::ValueWatcher;

    #[test]
    fn s3_13_changes_with_futures_stream_ext_and_a_foreign_setter() {
        use futures::StreamExt as _;
        let _dog = support::watchdog("changes with futures", 60);
        let w = ValueWatcher::new(0u32);
        let changes = w.changes();
        std::thread::scope(|s| {
            s.spawn(|| {
                // Each value is set only after the consumer has seen the previous
                // one, so no burst is merged and the items are exactly 1..=5.
                for v in 1..=5 {
                    w.set(v);
                    w.wait_for(v + 100).wait();
                }
            });
            let seen: Vec<u32> = futures::executor::block_on(
                changes
                    .map(|v| {
                        w.set(v + 100); // tell the setter we saw v
                        v
                    })
                    .filter(|v| std::future::ready(*v < 100))
                    .take(5)
                    .collect(),
            );
            assert_eq!(seen, [1, 2, 3, 4, 5]);
        });
    }
}
