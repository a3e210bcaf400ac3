//! The blocking waits (`wait`, `wait_timeout`, `wait_deadline`) against
//! SPEC §2 and §3.2, §3.3: the same semantics as awaiting.
//!
//! A blocked thread cannot be polled by hand, so the tests learn that it has
//! started watching from its predicate: a `wait_until` predicate runs for
//! the first time under the lock, in the same critical section that
//! registers the waiter, so once the predicate has run a set cannot be
//! missed.
#![cfg(feature = "std")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::Scope;
use std::time::{Duration, Instant};

use common::{Conn, GENEROUS, LIFE_CYCLE, Tracker, watchdog};
use value_watcher::ValueWatcher;

/// Counts threads whose waits have started watching.
#[derive(Clone, Default)]
struct Started(Arc<AtomicUsize>);

impl Started {
    /// Wraps `pred` so its first call marks the wait as started.
    fn hook<T>(
        &self,
        mut pred: impl FnMut(&T) -> bool + Send + 'static,
    ) -> impl FnMut(&T) -> bool + Send + 'static {
        let started = self.0.clone();
        let mut first = true;
        move |v| {
            if std::mem::take(&mut first) {
                started.fetch_add(1, Ordering::SeqCst);
            }
            pred(v)
        }
    }

    /// Waits (yielding) until `n` waits have started.
    fn until(&self, n: usize) {
        while self.0.load(Ordering::SeqCst) < n {
            std::thread::yield_now();
        }
    }
}

/// Spawns a thread blocking on `wait` with a generous limit.
fn blocked<'s, R: Send + 's>(
    s: &'s Scope<'s, '_>,
    wait: impl FnOnce() -> Option<R> + Send + 's,
) -> std::thread::ScopedJoinHandle<'s, R> {
    s.spawn(move || wait().expect("a blocking wait that must succeed timed out"))
}

// === §3.2 ===

#[test]
fn s3_2_blocking_wait_gets_transient_closing() {
    let _dog = watchdog("blocking transient closing", 120);
    let w = ValueWatcher::new(Conn::Disconnected);
    let started = Started::default();
    std::thread::scope(|s| {
        let closing = blocked(s, || {
            w.wait_until(started.hook(|c| *c == Conn::Closing))
                .wait_timeout(GENEROUS)
        });
        let wait = blocked(s, || {
            Some(w.wait_until(started.hook(|c| *c == Conn::Closing)).wait())
        });
        let deadline = blocked(s, || {
            w.wait_until(started.hook(|c| *c == Conn::Closing))
                .wait_deadline(Instant::now() + GENEROUS)
        });
        started.until(3);
        for state in LIFE_CYCLE {
            w.set(state);
        }
        assert_eq!(closing.join().unwrap(), Conn::Closing);
        assert_eq!(wait.join().unwrap(), Conn::Closing);
        assert_eq!(deadline.join().unwrap(), Conn::Closing);
    });
}

#[test]
fn s3_2_blocking_wait_for_gets_closing_whenever_it_started() {
    // No hook: the waiter starts at some point of a repeating cycle in which
    // Closing only lasts until the next set. Wherever it starts, the first
    // Closing after it is what it must get.
    let _dog = watchdog("blocking wait_for in a cycle", 120);
    let w = ValueWatcher::new(Conn::Disconnected);
    std::thread::scope(|s| {
        let waiter = blocked(s, || w.wait_for(Conn::Closing).wait_timeout(GENEROUS));
        while !waiter.is_finished() {
            for state in LIFE_CYCLE {
                w.set(state);
            }
            w.set(Conn::Disconnected);
        }
        assert_eq!(waiter.join().unwrap(), Conn::Closing);
    });
}

#[test]
fn s3_2_blocking_waiters_get_their_first_matching_value() {
    let _dog = watchdog("blocking first values", 120);
    let w = ValueWatcher::new(0u32);
    let o = ValueWatcher::new(None::<String>);
    let started = Started::default();
    std::thread::scope(|s| {
        let even = blocked(s, || {
            // (immediate(false) would not call the hook before a transition)
            w.wait_until(started.hook(|v| *v % 2 == 0 && *v > 0))
                .wait_timeout(GENEROUS)
        });
        let big = blocked(s, || {
            w.wait_until(started.hook(|v| *v >= 3))
                .wait_timeout(GENEROUS)
        });
        // Records what it is shown: the current value, then transitions.
        let seen = blocked(s, || {
            let mut values = Vec::new();
            w.wait_until(started.hook(move |v: &u32| {
                values.push(*v);
                values.len() == 4
            }))
            .wait_timeout(GENEROUS)
        });
        let some = blocked(s, || {
            o.wait_until(started.hook(|v: &Option<String>| v.is_some()))
                .wait_timeout(GENEROUS)
        });
        started.until(4);
        for v in 1..=9 {
            w.set(v);
        }
        w.set(0);
        o.set(Some("first".into()));
        o.set(None);
        assert_eq!(even.join().unwrap(), 2);
        assert_eq!(big.join().unwrap(), 3);
        assert_eq!(seen.join().unwrap(), 3, "current 0, then 1, 2, 3");
        assert_eq!(some.join().unwrap().as_deref(), Some("first"));
    });
}

#[test]
fn s3_2_blocking_lazy_start_ignores_transitions_before_the_call() {
    let w = ValueWatcher::new(0u32);
    let one = w.wait_for(1);
    let change = w.wait_for_change();
    w.set(1); // after creation, before the first poll (inside the wait)
    w.set(2);
    assert_eq!(one.wait_deadline(Instant::now()), None);
    assert_eq!(change.wait_timeout(Duration::ZERO), None);
}

// === §3.3 ===

#[test]
fn s3_3_blocking_waits_return_a_current_match_even_past_the_deadline() {
    let w = ValueWatcher::new(Some(5u8));
    let past = Instant::now();
    assert_eq!(w.wait_for(Some(5)).wait(), Some(5));
    assert_eq!(w.wait_for(Some(5)).wait_deadline(past), Some(Some(5)));
    assert_eq!(
        w.wait_for(Some(5)).wait_timeout(Duration::ZERO),
        Some(Some(5))
    );
    assert_eq!(w.wait_for_not(None).wait_deadline(past), Some(Some(5)));
    assert_eq!(
        w.wait_until(|v| v.is_some()).wait_timeout(Duration::ZERO),
        Some(Some(5))
    );
    assert_eq!(w.wait_for_some().wait_deadline(past), Some(5));
    // immediate(false) ignores the match, so the deadline decides.
    assert_eq!(w.wait_for_some().immediate(false).wait_deadline(past), None);
    assert_eq!(
        w.wait_for(Some(5))
            .immediate(false)
            .wait_timeout(Duration::ZERO),
        None
    );
    assert_eq!(w.wait_for_change().wait_deadline(past), None);
}

#[test]
fn s3_3_blocking_immediate_false_ignores_the_current_match() {
    // The value starts at Some(1) and never returns to it: a waiter that
    // took the current value would return 1.
    let _dog = watchdog("blocking immediate(false)", 120);
    let w = ValueWatcher::new(Some(1u32));
    std::thread::scope(|s| {
        let some = blocked(s, || {
            w.wait_for_some().immediate(false).wait_timeout(GENEROUS)
        });
        let until = blocked(s, || {
            w.wait_until(|v| v.is_some())
                .immediate(false)
                .wait_timeout(GENEROUS)
        });
        let mut next = 1;
        while !(some.is_finished() && until.is_finished()) {
            next += 1;
            w.set(Some(next));
            std::thread::yield_now();
        }
        let some = some.join().unwrap();
        let until = until.join().unwrap().unwrap();
        assert!((2..=next).contains(&some), "{some}");
        assert!((2..=next).contains(&until), "{until}");
    });
}

// === §2 timeouts and deadlines ===

#[test]
fn s2_wait_timeout_too_large_for_instant_waits_without_a_deadline() {
    let _dog = watchdog("wait_timeout(Duration::MAX)", 120);
    let w = ValueWatcher::new(0u32);
    let started = Started::default();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            w.wait_until(started.hook(|v| *v == 1))
                .wait_timeout(Duration::MAX)
        });
        started.until(1);
        w.set(1);
        assert_eq!(waiter.join().unwrap(), Some(1));
    });
}

#[test]
fn s2_wait_deadline_in_the_past_without_a_match_returns_none_and_unregisters() {
    let _dog = watchdog("past deadline", 60);
    let tracker = Tracker::new();
    let w = ValueWatcher::new(tracker.make(0));
    let past = Instant::now();
    assert!(w.wait_for(tracker.make(1)).wait_deadline(past).is_none());
    assert!(
        w.wait_for_not(tracker.make(0))
            .wait_deadline(past)
            .is_none()
    );
    assert!(
        w.wait_until(|t| t.n == 9)
            .wait_timeout(Duration::ZERO)
            .is_none()
    );
    assert!(
        w.wait_for_change()
            .wait_timeout(Duration::from_millis(1))
            .is_none()
    );
    assert_eq!(tracker.live(), 1, "the timed-out waits left nothing behind");
    // Their registrations are gone: a set captures nothing for them.
    w.set(tracker.make(1));
    assert_eq!(tracker.live(), 1);
}

#[test]
fn s2_wait_timeout_returns_the_value_set_in_time() {
    let _dog = watchdog("wait_timeout in time", 120);
    let w = ValueWatcher::new(0u32);
    let started = Started::default();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            w.wait_until(started.hook(|v| *v == 2))
                .wait_timeout(GENEROUS)
        });
        started.until(1);
        w.set(1);
        w.set(2);
        w.set(3);
        assert_eq!(waiter.join().unwrap(), Some(2));
    });
}

#[test]
fn blocking_waits_in_a_row_on_one_thread_reuse_their_parker() {
    // Leftover unpark tokens from earlier waits must not make a later wait
    // return early or wrong.
    let _dog = watchdog("blocking waits in a row", 120);
    let w = ValueWatcher::new(0u32);
    let started = Started::default();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut got = Vec::new();
            for i in 1..=500u32 {
                let v = w
                    .wait_until(started.hook(move |v| *v == i))
                    .wait_timeout(GENEROUS);
                got.push(v);
            }
            got
        });
        for i in 1..=500u32 {
            started.until(i as usize);
            w.set(i);
        }
        let got = waiter.join().unwrap();
        assert!(got.iter().zip(1..).all(|(v, i)| *v == Some(i)), "{got:?}");
    });
}
