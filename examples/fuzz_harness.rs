//! Fuzzing *your* state machine with value-watcher waits, by manual polling.
//!
//! A fuzz harness wants every run to be deterministic, single-threaded and
//! executor-free, so that a crash found by the fuzzer replays exactly. The
//! wait futures need nothing but `poll`: here a small user state machine (a
//! connection) takes its events from the fuzzer's bytes, a few waits of
//! different kinds are started, polled and dropped as the bytes say, and a
//! plain model checks after every poll that each wait completed with the
//! *first* state it matched since it started watching (even if the state
//! has moved on), that it was woken exactly once, and that waits which did
//! not match, or were dropped, were never woken.
//!
//! Run it over a few fixed inputs with `cargo run --example fuzz_harness`.
//!
//! To fuzz it with cargo-fuzz, copy `run` (and what it uses) into a fuzz
//! crate that depends on `value-watcher`, and call it from the target:
//!
//! ```text
//! // fuzz/fuzz_targets/connection.rs
//! #![no_main]
//! libfuzzer_sys::fuzz_target!(|data: &[u8]| {
//!     connection_harness::run(data);
//! });
//! ```
//!
//! then `cargo fuzz run connection` (or `cargo fuzz run -s none connection`
//! on stable). Any assertion that fails is a crash with a replayable input.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use value_watcher::ValueWatcher;

// === the user's state machine ===

/// The connection's states.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

/// What can happen to a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    Dial,
    Established,
    Fail,
    Close,
    Finished,
    Reset,
}

const EVENTS: [Event; 6] = [
    Event::Dial,
    Event::Established,
    Event::Fail,
    Event::Close,
    Event::Finished,
    Event::Reset,
];

/// The transition function; events that make no sense in a state are ignored.
pub fn next(state: State, event: Event) -> State {
    use {Event::*, State::*};
    match (state, event) {
        (Disconnected, Dial) => Connecting,
        (Connecting, Established) => Connected,
        (Connecting, Fail) => Disconnected,
        (Connected, Close) => Closing,
        (Connected, Fail) => Closed,
        (Closing, Finished) => Closed,
        (Closed, Reset) => Disconnected,
        (state, _) => state,
    }
}

/// The user's connection, whose state tasks wait on.
pub struct Connection {
    pub state: ValueWatcher<State>,
}

impl Connection {
    /// Applies `event`; returns whether the state changed.
    pub fn handle(&self, event: Event) -> bool {
        self.state.modify(|state| *state = next(*state, event))
    }
}

// === the waits the harness starts ===

/// The kinds of wait the harness starts, with the predicate the model uses.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `wait_for(s)`
    For(State),
    /// `wait_for_not(s)`
    ForNot(State),
    /// `wait_until(is_open)`
    Open,
    /// `wait_for_change()`
    Change,
    /// `wait_for(s).immediate(false)`: only a transition into `s`.
    Into(State),
}

const KINDS: [Kind; 6] = [
    Kind::For(State::Closing),
    Kind::For(State::Connected),
    Kind::ForNot(State::Disconnected),
    Kind::Open,
    Kind::Change,
    Kind::Into(State::Disconnected),
];

fn is_open(state: &State) -> bool {
    matches!(state, State::Connected | State::Closing)
}

impl Kind {
    fn matches(self, state: State) -> bool {
        match self {
            Kind::For(s) | Kind::Into(s) => state == s,
            Kind::ForNot(s) => state != s,
            Kind::Open => is_open(&state),
            Kind::Change => true,
        }
    }

    /// Whether the first poll may complete with the current state.
    fn checks_current(self) -> bool {
        !matches!(self, Kind::Change | Kind::Into(_))
    }

    /// The wait future itself. Boxed only because the slots hold different
    /// future types; each one is pinned where it lives.
    fn start(self, w: &ValueWatcher<State>) -> Pin<Box<dyn Future<Output = State> + '_>> {
        match self {
            Kind::For(s) => Box::pin(w.wait_for(s)),
            Kind::ForNot(s) => Box::pin(w.wait_for_not(s)),
            Kind::Open => Box::pin(w.wait_until(is_open)),
            Kind::Change => Box::pin(w.wait_for_change()),
            Kind::Into(s) => Box::pin(w.wait_for(s).immediate(false)),
        }
    }
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counter {
    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One started wait and what the model expects of it.
struct Slot<'a> {
    kind: Kind,
    fut: Pin<Box<dyn Future<Output = State> + 'a>>,
    wakes: Arc<Counter>,
    waker: Waker,
    /// The first matching state since the wait started watching, if any.
    expected: Option<State>,
}

/// What one run did (for the summary, and to check determinism).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Stats {
    pub steps: usize,
    pub transitions: usize,
    pub started: usize,
    pub completed: usize,
    /// Completed with a state that was no longer current: a transient state
    /// that a "latest value only" channel would have lost.
    pub completed_transient: usize,
    pub dropped: usize,
}

const SLOTS: usize = 5;

/// The fuzz target: runs the connection and its waits as `data` says, and
/// panics if a wait misbehaves.
///
/// `data` is read two bytes per step. The first byte is an action (low two
/// bits): apply an event (0 or 1), start a wait in a slot (2, replacing
/// the wait there), or drop a slot's wait (3); the other bits pick the event,
/// slot and kind. The second byte is a mask of the slots to poll afterwards.
pub fn run(data: &[u8]) -> Stats {
    let conn = Connection {
        state: ValueWatcher::new(State::Disconnected),
    };
    let mut model = State::Disconnected;
    let mut slots: [Option<Slot<'_>>; SLOTS] = Default::default();
    // Wakers of dropped waits, and their count when dropped.
    let mut dropped: Vec<(Arc<Counter>, usize)> = Vec::new();
    let mut stats = Stats::default();

    for step in data.chunks_exact(2) {
        let (action, poll_mask) = (step[0], step[1]);
        stats.steps += 1;
        let pick = usize::from(action >> 2);
        match action & 3 {
            0 | 1 => {
                let event = EVENTS[pick % EVENTS.len()];
                let new = next(model, event);
                let version = conn.state.version();
                let changed = conn.handle(event);
                assert_eq!(changed, new != model, "{event:?} in {model:?}");
                assert_eq!(conn.state.get(), new);
                assert_eq!(conn.state.version(), version + u64::from(changed));
                if changed {
                    stats.transitions += 1;
                    // The model: each waiting slot takes the first match.
                    for slot in slots.iter_mut().flatten() {
                        if slot.expected.is_none() && slot.kind.matches(new) {
                            slot.expected = Some(new);
                        }
                    }
                }
                model = new;
            }
            2 => {
                let index = pick % SLOTS;
                let kind = KINDS[(pick / SLOTS) % KINDS.len()];
                if let Some(old) = slots[index].take() {
                    dropped.push((old.wakes.clone(), old.wakes.get()));
                    stats.dropped += 1;
                }
                let wakes = Arc::new(Counter::default());
                let mut slot = Slot {
                    kind,
                    fut: kind.start(&conn.state),
                    waker: Waker::from(wakes.clone()),
                    wakes,
                    expected: None,
                };
                stats.started += 1;
                // The first poll starts the watch: at once ready if the
                // current state matches (for kinds that check it).
                let poll = slot
                    .fut
                    .as_mut()
                    .poll(&mut Context::from_waker(&slot.waker));
                if kind.checks_current() && kind.matches(model) {
                    assert_eq!(poll, Poll::Ready(model), "{kind:?} in {model:?}");
                    stats.completed += 1;
                } else {
                    assert_eq!(poll, Poll::Pending, "{kind:?} in {model:?}");
                    slots[index] = Some(slot);
                }
            }
            _ => {
                if let Some(old) = slots[pick % SLOTS].take() {
                    dropped.push((old.wakes.clone(), old.wakes.get()));
                    stats.dropped += 1;
                }
            }
        }

        for (index, entry) in slots.iter_mut().enumerate() {
            let Some(slot) = entry else { continue };
            // Woken exactly once if (and only if) a transition matched.
            let wakes = usize::from(slot.expected.is_some());
            assert_eq!(slot.wakes.get(), wakes, "{:?}: wake-ups", slot.kind);
            if poll_mask & (1 << index) == 0 {
                continue;
            }
            let poll = slot
                .fut
                .as_mut()
                .poll(&mut Context::from_waker(&slot.waker));
            match slot.expected {
                Some(first) => {
                    assert_eq!(poll, Poll::Ready(first), "{:?}: first match", slot.kind);
                    stats.completed += 1;
                    stats.completed_transient += usize::from(first != model);
                    *entry = None;
                }
                None => assert_eq!(poll, Poll::Pending, "{:?}: no match yet", slot.kind),
            }
        }
        for (wakes, at_drop) in &dropped {
            assert_eq!(wakes.get(), *at_drop, "a dropped wait was woken");
        }
    }
    stats
}

fn main() {
    // The bytes of a whole life cycle, with five waits started first and
    // polled only at the end, when the state is `Closed`.
    let start = |slot: usize, kind: usize| (((kind * SLOTS + slot) << 2) | 2) as u8;
    let event = |e: Event| (EVENTS.iter().position(|&x| x == e).unwrap() << 2) as u8;
    let poll_all = (1 << SLOTS) - 1;
    let life = [
        [start(0, 0), 0], // wait_for(Closing)
        [start(1, 1), 0], // wait_for(Connected)
        [start(2, 2), 0], // wait_for_not(Disconnected)
        [start(3, 3), 0], // wait_until(is_open)
        [start(4, 4), 0], // wait_for_change()
        [event(Event::Dial), 0],
        [event(Event::Established), 0],
        [event(Event::Close), 0],
        [event(Event::Finished), poll_all],
    ];
    let stats = run(life.as_flattened());
    println!("a whole life cycle:  {stats:?}");
    assert_eq!((stats.completed, stats.completed_transient), (5, 5));

    // Pseudo-random inputs, as a fuzzer would produce them (xorshift, fixed
    // seed, so this is the same run every time).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut total = Stats::default();
    for _ in 0..1_000 {
        let input: Vec<u8> = (0..128)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let stats = run(&input);
        total.steps += stats.steps;
        total.transitions += stats.transitions;
        total.started += stats.started;
        total.completed += stats.completed;
        total.completed_transient += stats.completed_transient;
        total.dropped += stats.dropped;
    }
    println!("1,000 random inputs: {total:?}");
    println!("every wait completed with its first match; none was woken in vain");
}
