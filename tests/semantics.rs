//! SPEC §2 (API facts) and §3.1, 3.2, 3.3, 3.5, 3.6, 3.7, on one thread by
//! manual polling with counting wakers, so every result is deterministic.
//! (Blocking waits: tests/blocking.rs; threads: tests/threads.rs.)

mod common;

use std::cell::Cell;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Poll, Wake, Waker};

use common::{Conn, LIFE_CYCLE, Tracker, counting_waker, poll_noop, poll_with};
use value_watcher::{ValueWatcher, WaitFor};

/// Counts calls of a predicate.
fn calls() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let c = Arc::new(AtomicUsize::new(0));
    (c.clone(), c)
}

// === §3.1 transitions and versions ===

#[test]
fn s3_1_equal_set_is_no_transition() {
    let w = ValueWatcher::new(5u32);
    let (woken, waker) = counting_waker();
    let mut change = pin!(w.wait_for_change());
    assert!(poll_with(change.as_mut(), &waker).is_pending());
    let (pred_calls, p) = calls();
    let mut until = pin!(w.wait_until(move |v| {
        p.fetch_add(1, Ordering::SeqCst);
        *v == 100
    }));
    assert!(poll_with(until.as_mut(), &waker).is_pending());
    assert_eq!(
        pred_calls.load(Ordering::SeqCst),
        1,
        "first poll checks once"
    );
    let (cb_calls, c) = calls();
    w.on_change(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });

    assert!(!w.set(5), "set of an equal value returns false");
    assert!(
        w.set_if(5, |_| true),
        "set_if reports that its condition held"
    );
    assert!(!w.modify(|v| *v = 5), "modify to an equal value");
    assert!(!w.modify(|v| {
        *v += 10;
        *v -= 10;
    }));

    assert_eq!(w.version(), 0, "no version bump");
    assert_eq!(woken.get(), 0, "no wake-up");
    assert_eq!(cb_calls.load(Ordering::SeqCst), 0, "no callback");
    assert_eq!(pred_calls.load(Ordering::SeqCst), 1, "no predicate call");
    assert!(poll_with(change.as_mut(), &waker).is_pending());

    // The first real transition is seen by all of them.
    assert!(w.set(6));
    assert_eq!(w.version(), 1);
    assert_eq!(woken.get(), 1, "only wait_for_change matches 6");
    assert_eq!(cb_calls.load(Ordering::SeqCst), 1);
    assert_eq!(pred_calls.load(Ordering::SeqCst), 2);
    assert_eq!(poll_with(change.as_mut(), &waker), Poll::Ready(6));
}

#[test]
fn s3_1_return_values_of_set_set_if_modify() {
    let w = ValueWatcher::new(1u32);
    assert!(w.set(2));
    assert!(!w.set(2));

    // set_if: the condition decides the result, not the change.
    assert!(!w.set_if(3, |v| *v == 1), "condition false");
    assert_eq!(w.get(), 2, "nothing stored when the condition fails");
    assert!(w.set_if(3, |v| *v == 2));
    assert_eq!(w.get(), 3);
    assert!(w.set_if(3, |v| *v == 3), "condition true, equal value");

    assert!(w.modify(|v| *v *= 2));
    assert_eq!(w.get(), 6);
    assert!(!w.modify(|_| {}));
    assert_eq!(w.version(), 3, "2, 3 and 6 were the transitions");
}

#[test]
fn s3_1_version_is_plus_one_per_transition_of_every_setter() {
    let w = ValueWatcher::new(0u64);
    let mut transitions = 0;
    for i in 1..=1_000u64 {
        let changed = match i % 3 {
            0 => w.set(i),
            1 => w.set_if(i, |v| *v + 1 == i),
            _ => w.modify(|v| *v = i),
        };
        assert!(changed);
        transitions += 1;
        assert_eq!(w.version(), transitions);
        // An equal write of each kind in between changes nothing.
        assert!(!w.set(i));
        assert!(w.set_if(i, |_| true));
        assert!(!w.modify(|v| *v = i));
        assert_eq!(w.version(), transitions);
    }
}

#[test]
fn s3_1_equal_by_partial_eq_keeps_the_stored_value() {
    // Equal but distinguishable: an equal write must not replace anything.
    #[derive(Clone, Debug)]
    struct Tagged(u8, &'static str);
    impl PartialEq for Tagged {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }
    let w = ValueWatcher::new(Tagged(1, "stored"));
    assert!(!w.set(Tagged(1, "other")));
    assert!(w.set_if(Tagged(1, "other"), |_| true));
    assert!(!w.modify(|t| t.1 = "mutated"));
    assert_eq!(w.with(|t| t.1), "stored");
    assert_eq!(w.version(), 0);
}

// === §3.2 no missed states ===

#[test]
fn s3_2_transient_closing_is_not_missed() {
    let w = ValueWatcher::new(Conn::Disconnected);
    let (woken, waker) = counting_waker();
    let mut closing = pin!(w.wait_for(Conn::Closing));
    assert!(poll_with(closing.as_mut(), &waker).is_pending());
    // Closing, then Closed, before the waiter runs again.
    for state in LIFE_CYCLE {
        w.set(state);
    }
    assert_eq!(w.get(), Conn::Closed);
    assert_eq!(woken.get(), 1, "woken once, by Closing");
    assert_eq!(
        poll_with(closing.as_mut(), &waker),
        Poll::Ready(Conn::Closing)
    );
}

#[test]
fn s3_2_every_waiter_gets_its_first_matching_value() {
    let w = ValueWatcher::new(0u32);
    let mut even = pin!(w.wait_until(|v| *v % 2 == 0).immediate(false));
    let mut at_least_3 = pin!(w.wait_until(|v| *v >= 3));
    let mut four = pin!(w.wait_for(4));
    let mut not_zero = pin!(w.wait_for_not(0));
    let mut change = pin!(w.wait_for_change());
    assert!(poll_noop(even.as_mut()).is_pending());
    assert!(poll_noop(at_least_3.as_mut()).is_pending());
    assert!(poll_noop(four.as_mut()).is_pending());
    assert!(poll_noop(not_zero.as_mut()).is_pending());
    assert!(poll_noop(change.as_mut()).is_pending());
    for v in 1..=9 {
        w.set(v);
    }
    w.set(0);
    assert_eq!(poll_noop(even.as_mut()), Poll::Ready(2));
    assert_eq!(poll_noop(at_least_3.as_mut()), Poll::Ready(3));
    assert_eq!(poll_noop(four.as_mut()), Poll::Ready(4));
    assert_eq!(poll_noop(not_zero.as_mut()), Poll::Ready(1));
    assert_eq!(poll_noop(change.as_mut()), Poll::Ready(1));
}

#[test]
fn s3_2_wait_for_some_gets_a_transient_some() {
    let w = ValueWatcher::new(None::<String>);
    let mut some = pin!(w.wait_for_some());
    assert!(poll_noop(some.as_mut()).is_pending());
    w.set(Some("first".into()));
    w.set(Some("second".into()));
    w.set(None);
    assert_eq!(poll_noop(some.as_mut()), Poll::Ready("first".to_string()));
}

#[test]
fn s3_2_a_waiter_sees_every_transition_in_order() {
    let w = ValueWatcher::new(0u32);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut fut = pin!(w.wait_until(move |v| {
        s.lock().unwrap().push(*v);
        *v == 99
    }));
    assert!(poll_noop(fut.as_mut()).is_pending());
    for v in [3, 1, 1, 4, 1, 5, 9, 2, 6, 6] {
        w.set(v);
    }
    w.set(99);
    w.set(7);
    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(99));
    // The current value at the first poll, then each transition once, in
    // order, equal writes skipped; nothing after the match.
    assert_eq!(
        *seen.lock().unwrap(),
        [0, 3, 1, 4, 1, 5, 9, 2, 6, 99],
        "the predicate's view of the value"
    );
}

#[test]
fn s3_2_wait_for_change_gets_the_first_transition_after_its_first_poll() {
    let w = ValueWatcher::new(1u32);
    let mut next = pin!(w.wait_for_change());
    w.set(2); // before the first poll: not seen
    assert!(poll_noop(next.as_mut()).is_pending());
    w.set(2); // equal: not a transition
    w.set(3);
    w.set(4);
    assert_eq!(poll_noop(next.as_mut()), Poll::Ready(3));
}

#[test]
fn s3_2_lazy_start_transitions_before_the_first_poll_are_not_seen() {
    let w = ValueWatcher::new(0u32);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut two = pin!(w.wait_until(move |v| {
        s.lock().unwrap().push(*v);
        *v == 2
    }));
    let mut closing = pin!(w.wait_for(2));
    w.set(1);
    w.set(2); // matches, but nobody polled yet
    w.set(3);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing runs before a poll"
    );
    assert!(poll_noop(two.as_mut()).is_pending());
    assert!(poll_noop(closing.as_mut()).is_pending());
    assert_eq!(*seen.lock().unwrap(), [3]);
    w.set(2);
    assert_eq!(poll_noop(two.as_mut()), Poll::Ready(2));
    assert_eq!(poll_noop(closing.as_mut()), Poll::Ready(2));
}

#[test]
fn s3_2_a_repolled_waiter_wakes_its_latest_waker_only() {
    let w = ValueWatcher::new(0u32);
    let (first, first_waker) = counting_waker();
    let (second, second_waker) = counting_waker();
    let mut fut = pin!(w.wait_for(1));
    assert!(poll_with(fut.as_mut(), &first_waker).is_pending());
    assert!(poll_with(fut.as_mut(), &second_waker).is_pending());
    w.set(1);
    assert_eq!((first.get(), second.get()), (0, 1));
    assert_eq!(poll_with(fut.as_mut(), &second_waker), Poll::Ready(1));
}

// === §3.3 immediate ===

#[test]
fn s3_3_default_checks_the_current_value() {
    let w = ValueWatcher::new(Some(1u8));
    assert_eq!(poll_noop(pin!(w.wait_for(Some(1)))), Poll::Ready(Some(1)));
    assert_eq!(poll_noop(pin!(w.wait_for_not(None))), Poll::Ready(Some(1)));
    assert_eq!(
        poll_noop(pin!(w.wait_until(|v| *v == Some(1)))),
        Poll::Ready(Some(1))
    );
    assert_eq!(poll_noop(pin!(w.wait_for_some())), Poll::Ready(1));
    // Explicitly asking for it is the same.
    assert_eq!(
        poll_noop(pin!(w.wait_for_some().immediate(false).immediate(true))),
        Poll::Ready(1)
    );
    // wait_for_change never looks at the current value.
    assert!(poll_noop(pin!(w.wait_for_change())).is_pending());
    assert_eq!(w.version(), 0);
}

#[test]
fn s3_3_immediate_false_needs_a_transition_into_a_match() {
    // Some(1) -> None -> Some(2): the old value already matched; only the
    // transition into Some(2) counts.
    let w = ValueWatcher::new(Some(1u8));
    let mut some = pin!(w.wait_for_some().immediate(false));
    let mut until = pin!(w.wait_until(|v| v.is_some()).immediate(false));
    let mut eq = pin!(w.wait_for(Some(1)).immediate(false));
    let mut ne = pin!(w.wait_for_not(None).immediate(false));
    for fut in [
        poll_noop(some.as_mut()).map(Some),
        poll_noop(until.as_mut()),
        poll_noop(eq.as_mut()),
        poll_noop(ne.as_mut()),
    ] {
        assert!(fut.is_pending(), "the current value must be ignored");
    }
    w.set(None);
    assert!(poll_noop(some.as_mut()).is_pending());
    assert!(poll_noop(until.as_mut()).is_pending());
    assert!(poll_noop(ne.as_mut()).is_pending());
    w.set(Some(2));
    w.set(Some(1));
    assert_eq!(poll_noop(some.as_mut()), Poll::Ready(2));
    assert_eq!(poll_noop(until.as_mut()), Poll::Ready(Some(2)));
    assert_eq!(poll_noop(ne.as_mut()), Poll::Ready(Some(2)));
    assert_eq!(poll_noop(eq.as_mut()), Poll::Ready(Some(1)));
}

#[test]
fn s3_3_immediate_can_be_turned_back_on() {
    let w = ValueWatcher::new(3);
    let fut = w.wait_for(3).immediate(false).immediate(true);
    assert_eq!(poll_noop(pin!(fut)), Poll::Ready(3));
}

#[test]
fn s3_3_immediate_false_matches_a_transition_between_two_matching_values() {
    // The old value matched too: Some(1) -> Some(2) is still a transition
    // into a matching value.
    let w = ValueWatcher::new(Some(1u8));
    let mut some = pin!(w.wait_for_some().immediate(false));
    let mut ne = pin!(w.wait_for_not(None).immediate(false));
    assert!(poll_noop(some.as_mut()).is_pending());
    assert!(poll_noop(ne.as_mut()).is_pending());
    w.set(Some(2));
    assert_eq!(poll_noop(some.as_mut()), Poll::Ready(2));
    assert_eq!(poll_noop(ne.as_mut()), Poll::Ready(Some(2)));
}

// === §3.5 wake only who matches ===

#[test]
fn s3_5_one_set_wakes_exactly_the_one_matching_waiter_of_a_thousand() {
    const N: u32 = 1_000;
    let w = ValueWatcher::new(0u32);
    let counters: Vec<_> = (0..N).map(|_| counting_waker()).collect();
    let checks: Vec<_> = (0..N).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut waits: Vec<_> = (1..=N)
        .map(|target| {
            let c = checks[target as usize - 1].clone();
            Box::pin(w.wait_until(move |v| {
                c.fetch_add(1, Ordering::SeqCst);
                *v == target
            }))
        })
        .collect();
    for (fut, (_, waker)) in waits.iter_mut().zip(&counters) {
        assert!(poll_with(fut.as_mut(), waker).is_pending());
    }
    let (changed, change_waker) = counting_waker();
    let mut changes: Vec<_> = (0..10).map(|_| Box::pin(w.wait_for_change())).collect();
    for fut in &mut changes {
        assert!(poll_with(fut.as_mut(), &change_waker).is_pending());
    }

    w.set(500);
    let woken: Vec<usize> = (0..N as usize)
        .filter(|&i| counters[i].0.get() > 0)
        .collect();
    assert_eq!(woken, [499], "exactly the waiter for 500");
    assert_eq!(counters[499].0.get(), 1);
    assert_eq!(changed.get(), 10, "every wait_for_change waiter is woken");
    // A predicate check each: the first poll and this one transition.
    assert!(checks.iter().all(|c| c.load(Ordering::SeqCst) == 2));
    assert_eq!(poll_noop(waits[499].as_mut()), Poll::Ready(500));
    for fut in &mut changes {
        assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(500));
    }

    // The next transition wakes the next one only; 500's waiter is done.
    w.set(7);
    let woken: Vec<usize> = (0..N as usize)
        .filter(|&i| counters[i].0.get() > 0)
        .collect();
    assert_eq!(woken, [6, 499]);
    assert_eq!(counters[499].0.get(), 1);
    assert_eq!(
        checks[499].load(Ordering::SeqCst),
        2,
        "completed: unchecked"
    );
    assert_eq!(checks[0].load(Ordering::SeqCst), 3);
    assert_eq!(poll_noop(waits[6].as_mut()), Poll::Ready(7));
    assert!(poll_noop(waits[7].as_mut()).is_pending());
}

// === §3.6 bounded memory ===

#[test]
fn s3_6_a_waiter_holds_one_value_however_many_transitions() {
    let tracker = Tracker::new();
    let w = ValueWatcher::new(tracker.make(0));
    let mut change = pin!(w.wait_for_change());
    let mut never = pin!(w.wait_for(tracker.make(u32::MAX)));
    assert!(poll_noop(change.as_mut()).is_pending());
    assert!(poll_noop(never.as_mut()).is_pending());
    let mut changes = w.changes();
    assert_eq!(tracker.live(), 2, "the value and never's target");
    for n in 1..=10_000 {
        w.set(tracker.make(n));
        // The value, never's target, and change's one captured value.
        assert_eq!(tracker.live(), 3, "after transition {n}");
    }
    assert_eq!(poll_noop(change.as_mut()).map(|t| t.n), Poll::Ready(1));
    assert!(poll_noop(never.as_mut()).is_pending());
    // The stream buffers nothing either: one item, the latest.
    let mut cx = std::task::Context::from_waker(Waker::noop());
    let item = futures_core::Stream::poll_next(Pin::new(&mut changes), &mut cx);
    assert!(matches!(item, Poll::Ready(Some(ref t)) if t.n == 10_000));
    drop(item);
    assert!(futures_core::Stream::poll_next(Pin::new(&mut changes), &mut cx).is_pending());
    assert_eq!(tracker.live(), 2);
}

#[test]
fn s3_6_abandoned_waits_do_not_accumulate() {
    let tracker = Tracker::new();
    let w = ValueWatcher::new(tracker.make(0));
    let (woken, waker) = counting_waker();
    for i in 0..100_000u32 {
        let mut fut = pin!(w.wait_for(tracker.make(1 + i % 7)));
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
        if i % 3 == 0 {
            // Polled twice: still one registration.
            assert!(poll_with(fut.as_mut(), &waker).is_pending());
        }
    }
    assert_eq!(tracker.live(), 1, "dropped waits left no value behind");
    for n in 1..=7 {
        w.set(tracker.make(n));
    }
    assert_eq!(woken.get(), 0, "no abandoned wait is woken");
    let mut fresh = pin!(w.wait_for(tracker.make(1)));
    assert!(poll_with(fresh.as_mut(), &waker).is_pending());
    w.set(tracker.make(1));
    assert_eq!(woken.get(), 1);
    assert_eq!(poll_noop(fresh.as_mut()).map(|t| t.n), Poll::Ready(1));
}

// === §3.7 cancel safety ===

#[test]
fn s3_7_a_dropped_waiter_is_never_woken_others_still_are() {
    let w = ValueWatcher::new(0u32);
    let (a_woken, a) = counting_waker();
    let (b_woken, b) = counting_waker();
    let (c_woken, c) = counting_waker();
    let mut fa = Box::pin(w.wait_for(1));
    let mut fb = Box::pin(w.wait_for(1));
    let mut fc = Box::pin(w.wait_until(|v| *v >= 1));
    assert!(poll_with(fa.as_mut(), &a).is_pending());
    assert!(poll_with(fb.as_mut(), &b).is_pending());
    assert!(poll_with(fc.as_mut(), &c).is_pending());
    drop(fb);
    w.set(1);
    w.set(0);
    w.set(1);
    assert_eq!((a_woken.get(), b_woken.get(), c_woken.get()), (1, 0, 1));
    assert_eq!(poll_noop(fa.as_mut()), Poll::Ready(1));
    assert_eq!(poll_noop(fc.as_mut()), Poll::Ready(1));
}

#[test]
fn s3_7_dropping_a_chosen_waiter_drops_its_captured_value() {
    let tracker = Tracker::new();
    let w = ValueWatcher::new(tracker.make(0));
    let (woken, waker) = counting_waker();
    let mut chosen = Box::pin(w.wait_for(tracker.make(1)));
    assert!(poll_with(chosen.as_mut(), &waker).is_pending());
    w.set(tracker.make(1));
    assert_eq!(woken.get(), 1);
    // The value, the target, and the clone captured for the waiter.
    assert_eq!(tracker.live(), 3);
    drop(chosen); // woken, never polled again
    assert_eq!(tracker.live(), 1, "target and captured value dropped");
    // Nothing of it is left in the watcher.
    w.set(tracker.make(0));
    w.set(tracker.make(1));
    assert_eq!(woken.get(), 1);
    assert_eq!(tracker.live(), 1);
    let mut next = pin!(w.wait_for_change());
    assert!(poll_noop(next.as_mut()).is_pending());
    w.set(tracker.make(2));
    assert_eq!(poll_noop(next.as_mut()).map(|t| t.n), Poll::Ready(2));
}

#[test]
fn s3_7_dropping_first_middle_or_last_keeps_the_list_working() {
    const N: usize = 5;
    // Every subset of five registered waiters, dropped in both orders.
    for subset in 0u32..(1 << N) {
        for reverse in [false, true] {
            let w = ValueWatcher::new(0u32);
            let wakers: Vec<_> = (0..N).map(|_| counting_waker()).collect();
            let mut futs: Vec<_> = (0..N)
                .map(|_| Some(Box::pin(w.wait_for_change())))
                .collect();
            for (fut, (_, waker)) in futs.iter_mut().zip(&wakers) {
                assert!(poll_with(fut.as_mut().unwrap().as_mut(), waker).is_pending());
            }
            let mut order: Vec<usize> = (0..N).filter(|i| subset & (1 << i) != 0).collect();
            if reverse {
                order.reverse();
            }
            for i in order {
                futs[i] = None;
            }
            // New waiters go to the tail, wherever it now is.
            let (late_woken, late_waker) = counting_waker();
            let mut late = Box::pin(w.wait_for_change());
            assert!(poll_with(late.as_mut(), &late_waker).is_pending());

            w.set(1);
            for (i, (woken, _)) in wakers.iter().enumerate() {
                let expected = usize::from(subset & (1 << i) == 0);
                assert_eq!(woken.get(), expected, "subset {subset:05b}, waiter {i}");
            }
            assert_eq!(late_woken.get(), 1, "subset {subset:05b}");
            for fut in futs.iter_mut().flatten() {
                assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));
            }
            assert_eq!(poll_noop(late.as_mut()), Poll::Ready(1));
            // And the emptied list takes waiters again.
            let (again_woken, again) = counting_waker();
            let mut fut = pin!(w.wait_for(2));
            assert!(poll_with(fut.as_mut(), &again).is_pending());
            w.set(2);
            assert_eq!(again_woken.get(), 1);
        }
    }
}

#[test]
fn s3_7_more_matches_than_a_wake_batch_all_wake() {
    // The setter wakes at most 32 wakers per batch; around and past it.
    for n in [31, 32, 33, 64, 65, 100, 500] {
        let w = ValueWatcher::new(0u32);
        let wakers: Vec<_> = (0..n).map(|_| counting_waker()).collect();
        let mut futs: Vec<_> = (0..n).map(|_| Box::pin(w.wait_for(1))).collect();
        for (fut, (_, waker)) in futs.iter_mut().zip(&wakers) {
            assert!(poll_with(fut.as_mut(), waker).is_pending());
        }
        w.set(1);
        w.set(2);
        for (i, (woken, _)) in wakers.iter().enumerate() {
            assert_eq!(woken.get(), 1, "{n} waiters: waiter {i}");
        }
        for fut in &mut futs {
            assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1));
        }
    }
}

/// Waiters that a setter has chosen but not woken yet (past its first wake
/// batch) are dropped or completed from inside the first waker it wakes.
#[test]
fn s3_7_dropping_waiters_while_they_are_queued_for_wake_up() {
    const N: usize = 130; // four batches of 32 and two more
    const DROPPED: [usize; 6] = [32, 33, 50, 64, 100, 129];
    const POLLED: usize = 70;
    type Slot = Option<Pin<Box<WaitFor<'static, u32>>>>;

    struct Gate {
        slots: Mutex<Vec<Slot>>,
        early: Mutex<Option<Poll<u32>>>,
        fired: AtomicUsize,
    }
    impl Wake for Gate {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.fired.fetch_add(1, Ordering::SeqCst);
            let mut slots = self.slots.lock().unwrap();
            for i in DROPPED {
                slots[i] = None;
            }
            let fut = slots[POLLED].as_mut().unwrap();
            *self.early.lock().unwrap() = Some(poll_noop(fut.as_mut()));
        }
    }

    let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
    let gate = Arc::new(Gate {
        slots: Mutex::new((0..N).map(|_| Some(Box::pin(w.wait_for(1)))).collect()),
        early: Mutex::new(None),
        fired: AtomicUsize::new(0),
    });
    let gate_waker = Waker::from(gate.clone());
    let wakers: Vec<_> = (0..N).map(|_| counting_waker()).collect();
    {
        let mut slots = gate.slots.lock().unwrap();
        for (i, slot) in slots.iter_mut().enumerate() {
            let waker = if i == 0 { &gate_waker } else { &wakers[i].1 };
            assert!(poll_with(slot.as_mut().unwrap().as_mut(), waker).is_pending());
        }
    }

    w.set(1);

    assert_eq!(gate.fired.load(Ordering::SeqCst), 1);
    assert_eq!(
        *gate.early.lock().unwrap(),
        Some(Poll::Ready(1)),
        "a queued waiter completes if polled before its wake-up"
    );
    for (i, (woken, _)) in wakers.iter().enumerate().skip(1) {
        if DROPPED.contains(&i) {
            assert_eq!(woken.get(), 0, "dropped waiter {i} was woken");
        } else if i != POLLED {
            assert_eq!(woken.get(), 1, "waiter {i}");
        }
    }
    let mut slots = gate.slots.lock().unwrap();
    for (i, slot) in slots.iter_mut().enumerate() {
        if i == POLLED {
            continue;
        }
        if let Some(fut) = slot {
            assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1), "waiter {i}");
        }
    }
    drop(slots);
    // The watcher's lists are intact.
    let (woken, waker) = counting_waker();
    let mut next = pin!(w.wait_for_change());
    assert!(poll_with(next.as_mut(), &waker).is_pending());
    w.set(2);
    assert_eq!(woken.get(), 1);
}

#[test]
fn s3_7_dropping_a_completed_or_never_polled_wait_is_harmless() {
    let w = ValueWatcher::new(0u32);
    drop(w.wait_for(1)); // never polled
    drop(w.wait_for_change());
    let mut done = Box::pin(w.wait_for(0));
    assert_eq!(poll_noop(done.as_mut()), Poll::Ready(0));
    drop(done);
    let (woken, waker) = counting_waker();
    let mut fut = pin!(w.wait_for(1));
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    w.set(1);
    assert_eq!(woken.get(), 1);
}

// === §2 API ===

#[test]
fn s2_debug_shows_value_and_version() {
    let w = ValueWatcher::new("idle");
    w.set("busy");
    w.set("done");
    let shown = format!("{w:?}");
    assert!(shown.contains("\"done\""), "{shown}");
    assert!(shown.contains("version: 2"), "{shown}");
    assert!(shown.starts_with("ValueWatcher"), "{shown}");
}

#[test]
fn s2_default_and_from() {
    let d: ValueWatcher<Vec<u8>> = ValueWatcher::default();
    assert!(d.get().is_empty());
    assert_eq!(d.version(), 0);
    let f = ValueWatcher::from(Conn::Connected);
    assert_eq!(f.get(), Conn::Connected);
    assert_eq!(f.version(), 0);
    let g: ValueWatcher<u8> = 3.into();
    assert_eq!(g.get(), 3);
}

#[test]
fn s2_new_is_usable_in_a_static() {
    static STATE: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);
    const fn make() -> ValueWatcher<u8> {
        ValueWatcher::new(9)
    }
    static NINE: ValueWatcher<u8> = make();
    assert_eq!(NINE.get(), 9);
    let mut fut = pin!(STATE.wait_for(Conn::Connected));
    assert!(poll_noop(fut.as_mut()).is_pending());
    STATE.set(Conn::Connected);
    assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(Conn::Connected));
}

#[test]
fn s2_with_returns_the_closures_value_without_cloning() {
    #[derive(PartialEq)]
    struct NoClone(Vec<u32>);
    let w = ValueWatcher::new(NoClone(vec![1, 2, 3]));
    assert_eq!(w.with(|v| v.0.iter().sum::<u32>()), 6);
    let first: Option<u32> = w.with(|v| v.0.first().copied());
    assert_eq!(first, Some(1));
}

/// Compile-time checks: these only build if the auto traits hold.
#[test]
fn s2_send_sync_and_send_futures() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    fn send_future<F: std::future::Future + Send>(f: F) -> F {
        f
    }
    static W: ValueWatcher<String> = ValueWatcher::new(String::new());
    // Sync even when T is only Send.
    let cell = ValueWatcher::new(Cell::new(1u8));
    send_sync(&cell);
    send_sync(&W);
    let wf = W.wait_for(String::from("x"));
    send(&wf);
    send(&W.wait_for_not(String::new()));
    send(&W.wait_until(|s| s.len() > 3));
    send(&W.wait_for_change());
    send(&W.changes());
    let opt = ValueWatcher::new(None::<String>);
    send(&opt.wait_for_some());
    let id = W.on_change(|_, _| {});
    send_sync(&id);
    // An async block holding a wait across an await is Send, so it can be
    // spawned on a multi-threaded executor.
    let task = send_future(async move {
        let a = W.wait_for_change().await;
        let b = W.wait_until(|s| s.is_empty()).await;
        (a, b)
    });
    drop(task);
    drop(wf);
    assert!(W.remove_callback(id));
}

#[test]
fn s2_set_if_is_atomic_between_threads() {
    // Each thread increments by set_if(x + 1 if value == x); exactly one
    // thread wins each step, however they interleave.
    const THREADS: usize = 4;
    const TARGET: u32 = 4_000;
    let w = ValueWatcher::new(0u32);
    let go = Barrier::new(THREADS);
    let won: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    go.wait();
                    loop {
                        let x = w.get();
                        if x >= TARGET {
                            return mine;
                        }
                        if w.set_if(x + 1, |v| *v == x) {
                            mine.push(x);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u32> = won.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..TARGET).collect::<Vec<_>>(), "one winner per step");
    assert_eq!(w.get(), TARGET);
    assert_eq!(w.version(), u64::from(TARGET));
}

#[test]
fn s2_modify_is_atomic_between_threads() {
    const THREADS: u32 = 4;
    const EACH: u32 = 5_000;
    let w = ValueWatcher::new(0u32);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..EACH {
                    assert!(w.modify(|v| *v += 1));
                }
            });
        }
    });
    assert_eq!(w.get(), THREADS * EACH);
    assert_eq!(w.version(), u64::from(THREADS * EACH));
}

/// Wakers run after the setter released the lock, so a waker may use the
/// watcher (read it, set it, start a new wait) without deadlocking.
#[test]
fn wakers_run_outside_the_lock_and_may_use_the_watcher() {
    struct Reentrant {
        w: &'static ValueWatcher<u32>,
        seen: Mutex<Vec<(u32, u64)>>,
    }
    impl Wake for Reentrant {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let now = self.w.get();
            self.seen.lock().unwrap().push((now, self.w.version()));
            if now < 3 {
                let mut next = pin!(self.w.wait_for(now + 1));
                assert!(poll_noop(next.as_mut()).is_pending());
                assert!(self.w.set(now + 1));
                assert_eq!(poll_noop(next.as_mut()), Poll::Ready(now + 1));
            }
        }
    }
    let _dog = common::watchdog("re-entrant waker", 60);
    let w: &'static ValueWatcher<u32> = Box::leak(Box::new(ValueWatcher::new(0)));
    let probe = Arc::new(Reentrant {
        w,
        seen: Mutex::new(Vec::new()),
    });
    let waker = Waker::from(probe.clone());
    let mut futs: Vec<_> = (0..40).map(|_| Box::pin(w.wait_for_change())).collect();
    for fut in &mut futs {
        assert!(poll_with(fut.as_mut(), &waker).is_pending());
    }
    assert!(w.set(1));
    // Each of the first two wake-ups moved the value on by one (sets from
    // inside a wake); the other wakers of the first transition then saw 3.
    let seen = probe.seen.lock().unwrap().clone();
    let mut expected = vec![(1, 1), (2, 2)];
    expected.resize(40, (3, 3));
    assert_eq!(seen, expected);
    assert_eq!(w.get(), 3);
    assert_eq!(w.version(), 3);
    for fut in &mut futs {
        assert_eq!(poll_noop(fut.as_mut()), Poll::Ready(1), "first transition");
    }
}
