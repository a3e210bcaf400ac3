//! Issue #5 item 5: the crate driven by manual polling, as a fuzz harness of
//! a user's own state machine drives it: no executor, no threads, no timers,
//! `Waker::noop()` or a counting waker, and every outcome deterministic.
//!
//! The harness of `examples/fuzz_harness.rs` (a connection whose events come
//! from a byte slice, with waits started, polled and dropped as the bytes
//! say, checked against a model) is compiled in here and run over fixed and
//! pseudo-random inputs; the tests below it pin down, by hand, the pieces
//! such a harness relies on.

mod common;

#[allow(dead_code)] // its `main` is the example's entry point, unused here
#[path = "../examples/fuzz_harness.rs"]
mod fuzz_harness;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use common::{counting_waker, poll_noop, poll_with};
use fuzz_harness::{Event, State, Stats};
use value_watcher::ValueWatcher;

/// A fixed-seed xorshift generator: the same inputs on every run.
struct XorShift(u64);

impl XorShift {
    fn byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

fn add(total: &mut Stats, stats: Stats) {
    total.steps += stats.steps;
    total.transitions += stats.transitions;
    total.started += stats.started;
    total.completed += stats.completed;
    total.completed_transient += stats.completed_transient;
    total.dropped += stats.dropped;
}

// === the example's harness ===

#[test]
fn harness_over_edge_inputs() {
    assert_eq!(fuzz_harness::run(&[]), Stats::default());
    assert_eq!(fuzz_harness::run(&[7]).steps, 0, "an odd byte is ignored");
    for byte in 0..=u8::MAX {
        let stats = fuzz_harness::run(&[byte, 0xFF]);
        assert_eq!(stats.steps, 1);
        for mask in [0, 0xFF] {
            fuzz_harness::run(&[byte, mask, byte, mask, byte, mask]);
        }
    }
}

#[test]
fn harness_over_pseudo_random_inputs() {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let mut total = Stats::default();
    for _ in 0..3_000 {
        let len = usize::from(rng.byte()) * 2;
        add(&mut total, fuzz_harness::run(&rng.bytes(len)));
    }
    // The inputs reach the interesting paths, not just the easy ones.
    assert!(total.transitions > 20_000, "{total:?}");
    assert!(total.completed > 15_000, "{total:?}");
    assert!(total.completed_transient > 1_000, "{total:?}");
    assert!(total.dropped > 20_000, "{total:?}");
}

#[test]
fn harness_is_deterministic() {
    let mut rng = XorShift(42);
    for _ in 0..200 {
        let input = rng.bytes(200);
        assert_eq!(fuzz_harness::run(&input), fuzz_harness::run(&input));
    }
}

/// Inputs biased towards valid events, so that waits see long runs of
/// transitions (whole life cycles) between their polls.
#[test]
fn harness_over_long_life_cycles() {
    let event = |e: Event| {
        let index = [
            Event::Dial,
            Event::Established,
            Event::Fail,
            Event::Close,
            Event::Finished,
            Event::Reset,
        ]
        .iter()
        .position(|&x| x == e)
        .unwrap();
        (index << 2) as u8
    };
    let cycle = [
        Event::Dial,
        Event::Established,
        Event::Close,
        Event::Finished,
        Event::Reset,
    ];
    let mut rng = XorShift(7);
    let mut total = Stats::default();
    for _ in 0..500 {
        let mut input = Vec::new();
        for _ in 0..20 {
            // Start (or replace) a random wait, polling nothing ...
            input.extend([(rng.byte() & !3) | 2, 0]);
            // ... then part of a life cycle, then poll some slots.
            let n = usize::from(rng.byte() % 6);
            for &e in cycle.iter().take(n) {
                input.extend([event(e), 0]);
            }
            input.extend([event(Event::Fail), rng.byte()]);
        }
        add(&mut total, fuzz_harness::run(&input));
    }
    assert!(total.completed_transient > 1_500, "{total:?}");
}

// === the pieces, by hand ===

#[test]
fn every_wait_kind_runs_on_a_noop_waker() {
    let w = ValueWatcher::new(State::Disconnected);
    let peer = ValueWatcher::new(None::<u8>);

    let mut closing = pin!(w.wait_for(State::Closing));
    let mut not_down = pin!(w.wait_for_not(State::Disconnected));
    let mut open = pin!(w.wait_until(|s| matches!(s, State::Connected | State::Closing)));
    let mut change = pin!(w.wait_for_change());
    let mut down_again = pin!(w.wait_for(State::Disconnected).immediate(false));
    let mut address = pin!(peer.wait_for_some());

    assert!(poll_noop(closing.as_mut()).is_pending());
    assert!(poll_noop(not_down.as_mut()).is_pending());
    assert!(poll_noop(open.as_mut()).is_pending());
    assert!(poll_noop(change.as_mut()).is_pending());
    assert!(
        poll_noop(down_again.as_mut()).is_pending(),
        "current value ignored"
    );
    assert!(poll_noop(address.as_mut()).is_pending());

    for state in [
        State::Connecting,
        State::Connected,
        State::Closing,
        State::Closed,
        State::Disconnected,
        State::Connecting,
    ] {
        assert!(w.set(state));
    }
    peer.set(Some(9));
    peer.set(None);

    assert_eq!(poll_noop(closing.as_mut()), Poll::Ready(State::Closing));
    assert_eq!(poll_noop(not_down.as_mut()), Poll::Ready(State::Connecting));
    assert_eq!(poll_noop(open.as_mut()), Poll::Ready(State::Connected));
    assert_eq!(poll_noop(change.as_mut()), Poll::Ready(State::Connecting));
    assert_eq!(
        poll_noop(down_again.as_mut()),
        Poll::Ready(State::Disconnected)
    );
    assert_eq!(poll_noop(address.as_mut()), Poll::Ready(9));
}

#[test]
fn a_transition_wakes_exactly_the_waits_it_matches_once() {
    let w = ValueWatcher::new(State::Disconnected);
    let mut waits = [
        (pin!(w.wait_for(State::Connected)), counting_waker()),
        (pin!(w.wait_for(State::Closing)), counting_waker()),
        (pin!(w.wait_for(State::Closed)), counting_waker()),
    ];
    for (fut, (_, waker)) in &mut waits {
        assert!(poll_with(fut.as_mut(), waker).is_pending());
    }
    let counts = |waits: &[(_, (Arc<common::Counter>, Waker)); 3]| {
        waits.iter().map(|(_, (c, _))| c.get()).collect::<Vec<_>>()
    };
    w.set(State::Connecting);
    assert_eq!(counts(&waits), [0, 0, 0]);
    w.set(State::Connected);
    assert_eq!(counts(&waits), [1, 0, 0]);
    w.set(State::Closing);
    assert_eq!(counts(&waits), [1, 1, 0]);
    w.set(State::Connected); // matches the first wait's target again
    assert_eq!(
        counts(&waits),
        [1, 1, 0],
        "a chosen wait is not woken twice"
    );
    w.set(State::Closed);
    assert_eq!(counts(&waits), [1, 1, 1]);
    let expected = [State::Connected, State::Closing, State::Closed];
    for ((fut, (_, waker)), expected) in waits.iter_mut().zip(expected) {
        assert_eq!(poll_with(fut.as_mut(), waker), Poll::Ready(expected));
    }
}

#[test]
fn polls_that_find_nothing_new_stay_pending_and_cost_no_wake_up() {
    let w = ValueWatcher::new(0u8);
    let (count, waker) = counting_waker();
    let mut wait = pin!(w.wait_for(3));
    for _ in 0..100 {
        assert!(poll_with(wait.as_mut(), &waker).is_pending());
    }
    w.set(1);
    w.set(2);
    assert_eq!(count.get(), 0);
    assert!(poll_with(wait.as_mut(), &waker).is_pending());
    w.set(3);
    assert_eq!(count.get(), 1);
    assert_eq!(poll_with(wait.as_mut(), &waker), Poll::Ready(3));
}

#[test]
fn a_wait_polled_with_a_new_waker_wakes_only_that_one() {
    let w = ValueWatcher::new(0u8);
    let (first, first_waker) = counting_waker();
    let (second, second_waker) = counting_waker();
    let mut wait = pin!(w.wait_for(1));
    assert!(poll_with(wait.as_mut(), &first_waker).is_pending());
    // A harness (or an executor) may move a future between tasks.
    assert!(poll_with(wait.as_mut(), &second_waker).is_pending());
    w.set(1);
    assert_eq!((first.get(), second.get()), (0, 1));
    assert_eq!(poll_noop(wait.as_mut()), Poll::Ready(1));
}

#[test]
fn dropping_waits_in_every_state_leaves_the_others_exact() {
    let w = ValueWatcher::new(0u32);
    let (count, waker) = counting_waker();
    let mut keeper = pin!(w.wait_for(5));
    assert!(poll_with(keeper.as_mut(), &waker).is_pending());

    // Never polled.
    drop(w.wait_for(5));
    // Registered, then dropped.
    {
        let mut wait = Box::pin(w.wait_for(5));
        assert!(poll_noop(wait.as_mut()).is_pending());
    }
    // Chosen by a transition (holding its value), then dropped unpolled.
    {
        let mut wait = Box::pin(w.wait_for(1));
        assert!(poll_noop(wait.as_mut()).is_pending());
        w.set(1);
    }
    // Completed, then dropped.
    {
        let mut wait = Box::pin(w.wait_for(1));
        assert_eq!(poll_noop(wait.as_mut()), Poll::Ready(1));
    }
    w.set(5);
    w.set(6);
    assert_eq!(count.get(), 1);
    assert_eq!(poll_with(keeper.as_mut(), &waker), Poll::Ready(5));
}

#[test]
fn a_user_state_machine_step_by_step() {
    // What a harness does per input: apply an event, then poll.
    let conn = fuzz_harness::Connection {
        state: ValueWatcher::new(State::Disconnected),
    };
    let mut connected = pin!(conn.state.wait_for(State::Connected));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(connected.as_mut().poll(&mut cx).is_pending());
    assert!(
        !conn.handle(Event::Established),
        "ignored while disconnected"
    );
    assert!(conn.handle(Event::Dial));
    assert!(connected.as_mut().poll(&mut cx).is_pending());
    assert!(conn.handle(Event::Established));
    assert!(conn.handle(Event::Fail)); // Connected -> Closed before the poll
    assert_eq!(conn.state.get(), State::Closed);
    assert_eq!(
        connected.as_mut().poll(&mut cx),
        Poll::Ready(State::Connected)
    );
    assert_eq!(conn.state.version(), 3);
}

// === every waker clone is given back ===

/// A node holds a clone of its owner's waker only while it waits; every way
/// out (woken, cancelled, re-registered with another waker, queued past a
/// full wake batch, a stream's item) must give that clone back, because the
/// node itself never drops one (`ManuallyDrop` in `src/waiters.rs`). The
/// waker's reference count shows a leak on any of those paths.
#[test]
fn every_waker_clone_is_given_back() {
    let (counter, waker) = counting_waker();
    // `counter` and `waker` themselves.
    let baseline = Arc::strong_count(&counter);
    let w = ValueWatcher::new(0u32);

    // Registered, then dropped while waiting.
    {
        let mut fut = pin!(w.wait_for(1));
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
        assert_eq!(
            Arc::strong_count(&counter),
            baseline + 1,
            "one clone in the node"
        );
    }
    assert_eq!(Arc::strong_count(&counter), baseline, "cancelled");

    // Registered, chosen by a setter, woken, then ready.
    {
        let mut fut = pin!(w.wait_for(1));
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
        w.set(1);
        assert_eq!(counter.get(), 1, "woken once");
        assert_eq!(
            Arc::strong_count(&counter),
            baseline,
            "the setter woke it by value"
        );
        assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));
    }
    assert_eq!(Arc::strong_count(&counter), baseline);

    // Re-polled with another waker: the first clone is replaced and dropped.
    {
        let (other, other_waker) = counting_waker();
        let mut fut = Box::pin(w.wait_for(2));
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
        assert!(poll_with(fut.as_mut(), &other_waker).is_pending());
        assert_eq!(
            Arc::strong_count(&counter),
            baseline,
            "replaced clone dropped"
        );
        assert_eq!(Arc::strong_count(&other), 3, "the new clone is in the node");
        drop(fut);
        assert_eq!(Arc::strong_count(&other), 2);
    }

    // More matching waiters than one wake batch holds (32 on hosts): the
    // rest wait in the queue and are woken in later batches.
    {
        let mut futs: Vec<_> = (0..80).map(|_| Box::pin(w.wait_for(3))).collect();
        for fut in &mut futs {
            assert!(poll_with(fut.as_mut(), &waker).is_pending());
        }
        assert_eq!(Arc::strong_count(&counter), baseline + 80);
        let woken = counter.get();
        w.set(3);
        assert_eq!(counter.get(), woken + 80, "every waiter woken");
        assert_eq!(Arc::strong_count(&counter), baseline);
        for fut in &mut futs {
            assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(3));
        }
    }
    assert_eq!(Arc::strong_count(&counter), baseline);

    // A stream: registered, an item, registered again, dropped.
    {
        use futures_core::Stream;
        let mut changes = pin!(w.changes());
        let mut cx = Context::from_waker(&waker);
        assert!(changes.as_mut().poll_next(&mut cx).is_pending());
        assert_eq!(Arc::strong_count(&counter), baseline + 1);
        w.set(4);
        assert_eq!(Arc::strong_count(&counter), baseline);
        assert_eq!(changes.as_mut().poll_next(&mut cx), Poll::Ready(Some(4)));
        assert!(changes.as_mut().poll_next(&mut cx).is_pending());
        assert_eq!(Arc::strong_count(&counter), baseline + 1);
    }
    assert_eq!(Arc::strong_count(&counter), baseline, "stream dropped");
}
