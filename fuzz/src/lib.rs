//! Differential harness for `value-watcher`.
//!
//! [`run`] executes a small program of [`Op`]s twice over: against the real
//! crate, and against a model of SPEC section 3 that is kept as plain as
//! possible. After every operation it compares everything it can observe
//! (return values, the value and version, poll results, wake-up counts,
//! callback runs, panics and allocations) and panics on the first difference.
//!
//! # The model
//!
//! Each watcher is its current value plus the log of its transitions (SPEC
//! §3.1); the version is the log's length (plus the version the run started
//! at). A wait future remembers the log position of its first poll; what it
//! must return follows from §3.2–3.3 alone: if it is immediate and the value
//! at its first poll matches, that value, else the first log entry from its
//! start on that matches. A log entry also records the value before the
//! transition (for `wait_transition`, §3.16) and whether `Clone` was set to
//! panic at that moment, which decides whether a matching waiter got the
//! value or the panic (§3.10; a `wait_map` never clones, §3.15, and gets
//! what its function extracted from that entry's value).
//!
//! Where the SPEC leaves the behaviour open, the harness asserts only what it
//! does say (see `Harness::settle_callbacks` and `WaitState::Poisoned`).
//!
//! # Wakers that act
//!
//! A waker may carry one action, run inside its first `wake`: poll or drop
//! another wait. Wakers run on the setter's thread after it unlocked, while
//! it may still hold matched waiters in its queued list (more than a wake
//! batch matched), so this reaches the paths where a queued waiter is
//! completed or dropped before the setter gets to it. The waits therefore
//! live in a thread-local the waker can reach, and the watchers are statics
//! (so the waits are `'static`), reset at the start of each run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, PoisonError};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use futures_core::Stream;
use value_watcher::{CallbackId, Changes, ValueWatcher};

/// Values live in `0..DOMAIN`, so that programs revisit them often.
const DOMAIN: u8 = 8;
/// Longest program run; the rest of the input is ignored.
pub const MAX_OPS: usize = 64;
/// Wait-future slots; more than two of a setter's wake batches (32 wakers
/// each), so that one transition can leave matched waiters queued for a
/// second and a third batch.
const WAIT_SLOTS: usize = 72;
/// `changes()` stream slots.
const STREAM_SLOTS: usize = 2;

fn d(x: u8) -> u8 {
    x % DOMAIN
}

// === the program ===

/// One fuzz input: initial values and the operations.
#[derive(Debug, Clone)]
pub struct Program {
    /// Initial value of the main watcher (`ValueWatcher<V>`).
    pub init: u8,
    /// Initial value of the second watcher (`ValueWatcher<Option<V>>`).
    pub init_opt: Option<u8>,
    /// Initial value of the third watcher (`ValueWatcher<Nc>`, not `Clone`).
    pub init_nc: u8,
    /// The operations (only the first [`MAX_OPS`] run).
    pub ops: Vec<Op>,
}

/// Decodes operations until the input or [`MAX_OPS`] runs out (the derived
/// `Vec` decoding spends a "keep going" byte per element, which makes most
/// random programs one or two operations long).
impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let init = u.arbitrary()?;
        let init_opt = u.arbitrary()?;
        let init_nc = u.arbitrary()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(u.arbitrary()?);
        }
        Ok(Program {
            init,
            init_opt,
            init_nc,
            ops,
        })
    }
}

/// One operation. Numbers are reduced modulo the value domain or slot count.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Op {
    /// `w.set(v)`.
    Set(u8),
    /// `w.set_if(v, cond)`.
    SetIf(u8, Cond),
    /// `w.modify(f)`.
    Modify(Modify),
    /// Creates a wait future in a slot (dropping what was there), unpolled.
    Wait {
        /// Slot index.
        slot: u8,
        /// Which wait.
        kind: Kind,
        /// `.immediate(..)` (ignored by `wait_for_change`).
        immediate: bool,
    },
    /// Creates `count` waits of one kind in consecutive slots and polls each
    /// once, each with its own waker.
    WaitMany {
        /// First slot.
        slot: u8,
        /// How many (up to the slot count).
        count: u8,
        /// Which wait.
        kind: Kind,
        /// `.immediate(..)`.
        immediate: bool,
    },
    /// Polls the wait in a slot.
    Poll {
        /// Slot index.
        slot: u8,
        /// Which waker.
        waker: WakerChoice,
    },
    /// Drops the wait in a slot.
    DropWait(u8),
    /// `w.on_change(..)`.
    OnChange {
        /// The callback panics after recording its call.
        panics: bool,
        /// The callback reads the watcher's value and version.
        reads: bool,
        /// The callback removes itself with `remove_callback`.
        removes_self: bool,
        /// What the callback does to the watchers each time it runs
        /// (after recording its call, outside the lock).
        action: Option<Outside>,
        /// What the callback's `Drop` does (when the watcher lets it go).
        drop_action: Option<Outside>,
    },
    /// `w.on_value(v, ..)`.
    OnValue {
        /// The target value.
        value: u8,
        /// The callback panics after recording its call.
        panics: bool,
    },
    /// `w.remove_callback(id)` for one of the ids handed out so far.
    Remove(u8),
    /// `w.get()` on both watchers, and their `Debug` output.
    Get,
    /// Makes `V::clone` panic (or stop panicking) from now on.
    ClonePanics(bool),
    /// `w2.set(..)` on the `Option` watcher.
    SetOpt(Option<u8>),
    /// A blocking wait (`wait_timeout`, `wait_deadline`, `wait`) that can
    /// only complete at once: the forms that would block are used only when
    /// the model says the current value matches.
    Blocking {
        /// Which wait.
        kind: Kind,
        /// `.immediate(..)`.
        immediate: bool,
        /// Which blocking method.
        how: Block,
    },
    /// Creates a `changes()` stream in a slot (dropping what was there).
    Stream(u8),
    /// Polls the stream in a slot.
    PollStream(u8),
    /// Drops the stream in a slot.
    DropStream(u8),
    /// `w.with(f)` whose closure re-enters the watcher under its lock.
    With(Reentry),
    /// `format!("{w:?}")` whose `V::fmt` re-enters the watcher under its
    /// lock.
    DebugReenters(Reentry),
    /// `w.set(v)` with a `v` whose `Drop` runs an action (SPEC §3.17: a
    /// `T` is never dropped under the lock).
    SetActing(u8, Outside),
    /// `nc.set(v)` on the non-`Clone` watcher; `v`'s `Drop` may run an
    /// action (when it is rejected as equal, or replaced later).
    NcSet(u8, Option<Outside>),
    /// `nc.set_if(v, cond)`.
    NcSetIf(u8, Cond),
    /// `nc.with(f)`, whose closure reads the value and may re-enter.
    NcWith(Option<Reentry>),
    /// `nc.on_value(v, ..)`.
    NcOnValue {
        /// The target value.
        value: u8,
        /// The callback panics after recording its call.
        panics: bool,
    },
    /// `format!("{nc:?}")`, whose `Nc::fmt` may re-enter the watcher.
    NcDebug(Option<Reentry>),
}

/// A hook that runs under a watcher's lock (SPEC §3.17) and re-enters that
/// same watcher (§3.18).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Reentry {
    /// What it does.
    pub act: Inside,
    /// A rejected reentrant call's panic leaves the hook (`true`), or the
    /// hook catches it and goes on (`false`).
    pub propagate: bool,
}

/// What a hook running under a watcher's lock does to that watcher.
///
/// The calls that take the lock (all but the last three) are a programming
/// error there: with the spinlock they deadlock, so they are only made in the
/// `critical-section` build, where they must panic with the crate's
/// reentrancy message. The last three need no lock and must just work.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Inside {
    /// `set(v)`.
    Set(u8),
    /// `get()`.
    Get,
    /// `with(..)`.
    With,
    /// `version()`.
    Version,
    /// `on_change(..)`.
    OnChange,
    /// `remove_callback(..)`.
    Remove,
    /// Polls the wait in a slot (if it is one of this watcher's and may be
    /// polled; else `version()`).
    PollWait(u8),
    /// Polls the stream in a slot (if any, and this is the main watcher; else
    /// `version()`).
    PollStream(u8),
    /// `format!("{w:?}")`.
    Debug,
    /// Creates a `wait_for(v)` (`wait_for_some()` on the `Option` watcher,
    /// `wait_map` on the non-`Clone` one) in a slot, if the slot is empty.
    CreateWait(u8, u8),
    /// Drops the wait in a slot if it is not registered (never polled,
    /// completed, or its first poll panicked).
    DropWait(u8),
    /// Drops the stream in a slot if it is not registered.
    DropStream(u8),
}

/// What a hook running outside the lock (a waker's `wake` or `Drop`, a
/// callback, a `Drop` of a value or callback) does; all of it must work
/// (SPEC §3.9, §3.17).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Outside {
    /// Polls the wait in a slot with its last waker.
    Poll(u8),
    /// Drops the wait in a slot.
    Drop(u8),
    /// Creates a `wait_for(v)` in an empty slot.
    Create(u8, u8),
    /// Reads the main watcher's value and version.
    Read,
    /// Reads the non-`Clone` watcher's value and version.
    ReadNc,
    /// Sets the `Option` watcher.
    SetOpt(Option<u8>),
    /// Polls the stream in a slot.
    PollStream(u8),
    /// Drops the stream in a slot.
    DropStream(u8),
}

/// The waker a poll passes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum WakerChoice {
    /// The one passed last time (a new one the first time).
    Same,
    /// A new one, with its own wake counter.
    Fresh,
    /// A new one that runs an action when first woken.
    Acting(Outside),
    /// A new one that runs an action when the watcher drops (or wakes by
    /// value) its copy of it.
    DropActing(Outside),
    /// A new one whose `clone` (made under the lock when the future
    /// registers) re-enters the future's watcher.
    CloneActing(Reentry),
}

/// A blocking method of a wait future.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Block {
    /// `wait_timeout(Duration::ZERO)`.
    TimeoutZero,
    /// `wait_deadline(now)`.
    DeadlinePassed,
    /// `wait_timeout(Duration::MAX)` (too large to add to `Instant::now()`).
    TimeoutMax,
    /// `wait()`.
    Wait,
}

/// The condition of a `set_if`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Cond {
    /// Always true.
    Always,
    /// Always false.
    Never,
    /// Re-enters the watcher, then holds (`true`) or not.
    Reenters(Reentry, bool),
    /// The current value equals this one.
    Equals(u8),
    /// The current value is below this one.
    Below(u8),
    /// Panics.
    Panics,
}

impl Cond {
    /// The condition handed to the crate, for a value of `watcher`.
    fn real(self, v: u8, watcher: usize) -> bool {
        match self {
            Cond::Always => true,
            Cond::Never => false,
            Cond::Reenters(reentry, holds) => {
                reenter(reentry, watcher);
                holds
            }
            Cond::Equals(a) => v == d(a),
            Cond::Below(a) => v < d(a),
            Cond::Panics => panic::panic_any(Injected::Condition),
        }
    }
}

/// The closure of a `modify`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Modify {
    /// `v = (v + k) % 8`.
    Add(u8),
    /// `v ^= k % 8`.
    Xor(u8),
    /// `v = k % 8`.
    Assign(u8),
    /// `v = k % 8`, then panic.
    Panics(u8),
    /// `v = k % 8`, then re-enter the watcher.
    Reenters(u8, Reentry),
}

/// Which wait future (the last three are the waits of issue 10).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Kind {
    /// `w.wait_for(v)`.
    For(u8),
    /// `w.wait_for_not(v)`.
    ForNot(u8),
    /// `w.wait_until(pred)`.
    Until(Pred),
    /// `w.wait_for_change()`.
    Change,
    /// `w2.wait_for_some()`.
    Some,
    /// `w2.wait_for_change()`.
    OptChange,
    /// `w.wait_map(f)`.
    Map(MapFn),
    /// `w.wait_transition(f)`.
    Transition(EdgeFn),
    /// `nc.wait_map(f)` on the non-`Clone` watcher.
    NcMap(MapFn),
}

/// The function of a `wait_map`: `Some(Mapped(mapped(v)))` where `pred`
/// holds (it panics or re-enters where `pred` does).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct MapFn {
    /// Where it returns `Some`.
    pub pred: Pred,
    /// What the `Drop` of each output it returns does (SPEC §3.17: an
    /// output is never dropped under the lock).
    pub drop_action: Option<Outside>,
}

/// The function of a `wait_transition`, of `(old, new)`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum EdgeFn {
    /// `old == a` ("left `a`").
    From(u8),
    /// `old == a && new == b`.
    FromTo(u8, u8),
    /// `new < old`.
    Down,
    /// `new > old`.
    Up,
    /// Panics if `old == a`, else `new == b`.
    PanicsOn(u8, u8),
    /// Re-enters the watcher if `old == a`; then `new == b`.
    Reenters(u8, u8, Reentry),
}

/// The predicate of a `wait_until`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Pred {
    /// `v == a`.
    Equals(u8),
    /// `v != a`.
    NotEquals(u8),
    /// `a <= v <= b`.
    Range(u8, u8),
    /// `v` is even (`true`) or odd.
    Even(bool),
    /// Panics if `v == a`, else `v == b`.
    PanicsOn(u8, u8),
    /// Re-enters the watcher if `v == a`; then `v == b`.
    Reenters(u8, u8, Reentry),
}

// === injected panics ===

/// The payload of every panic the harness injects. Any other panic is a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// `V::clone`.
    Clone,
    /// A `wait_until` predicate or `wait_map` function, on this value.
    Predicate(u8),
    /// A `wait_transition` function, on this edge.
    Edge(u8, u8),
    /// A callback, by registration index.
    Callback(usize),
    /// A `set_if` condition.
    Condition,
    /// A `modify` closure.
    Modify,
    /// The crate's panic for a reentrant call from under the lock (its
    /// message starts with [`REENTRANT`]).
    Reentrant,
}

/// How the crate's panic for a use of a watcher from inside its own lock
/// begins (SPEC §3.18).
pub const REENTRANT: &str = "value-watcher: a watcher was used from inside its own lock";

/// The lock back end under test.
pub const CRITICAL_SECTION: bool = cfg!(feature = "critical-section");

fn is_reentrant(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    message.is_some_and(|m| m.starts_with(REENTRANT))
}

thread_local! {
    static CLONE_PANICS: Cell<bool> = const { Cell::new(false) };
    /// Callback runs, in order.
    static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
    /// Injected panics raised or caught so far.
    static INJECTED_PANICS: Cell<u64> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// The wait futures, with their model state (reachable from hooks).
    static SLOTS: RefCell<Vec<Option<WaitSlot>>> = const { RefCell::new(Vec::new()) };
    /// The `changes()` streams, with their model state.
    static STREAMS: RefCell<Vec<Option<StreamSlot>>> = const { RefCell::new(Vec::new()) };
    /// What hooks did during the current step, in order.
    static ACTIONS: RefCell<Vec<Action>> = const { RefCell::new(Vec::new()) };
    /// What `V::fmt` does (once) in a [`Op::DebugReenters`].
    static DEBUG_HOOK: Cell<Option<Reentry>> = const { Cell::new(None) };
    /// An id registered nowhere, per watcher, for reentrant
    /// `remove_callback` calls.
    static NO_ID: Cell<[Option<CallbackId>; 3]> = const { Cell::new([None; 3]) };
    /// Numbers wait and stream slots, so that actions recorded for one that
    /// was replaced since are recognized.
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// Hooks act only while a program's steps run (not while the harness sets
/// up or cleans up, when an acting value of the last run may be dropped).
static ACTING: AtomicBool = AtomicBool::new(false);

fn acting() -> bool {
    ACTING.load(Ordering::Relaxed)
}

fn next_id() -> u64 {
    let id = NEXT_ID.get();
    NEXT_ID.set(id + 1);
    id
}

/// Keeps injected panics quiet; every other panic goes to the previous hook
/// (under libFuzzer, that one aborts: a crash).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Injected>().is_some() || is_reentrant(info.payload()) {
                INJECTED_PANICS.set(INJECTED_PANICS.get() + 1);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; an injected panic (or the crate's reentrancy panic) becomes
/// `Err`, any other panic continues.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Injected> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let injected = match payload.downcast::<Injected>() {
            Ok(injected) => *injected,
            Err(other) if is_reentrant(&*other) => Injected::Reentrant,
            Err(other) => panic::resume_unwind(other),
        };
        // A resumed panic does not run the hook; count it here.
        INJECTED_PANICS.set(INJECTED_PANICS.get() + 1);
        injected
    })
}

// === allocation counting ===

/// A global allocator that counts the allocations of each thread. A binary
/// that installs it (`#[global_allocator]`) turns on the checks of SPEC §3.8:
/// setting, waiting and waking do not allocate.
pub struct CountingAllocator;

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.get()
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees carry over; counting touches only a thread-local
// `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as above; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` under [`catch`] and counts its allocations on this thread:
/// `None` if an injected panic happened in it (a panic allocates) or an
/// acting waker ran (the harness's own work).
fn measured<R>(f: impl FnOnce() -> R) -> (Result<R, Injected>, Option<u64>) {
    let actions = ACTIONS.with(|a| a.borrow().len());
    let allocs = allocations();
    let panics = INJECTED_PANICS.get();
    let result = catch(f);
    let count = allocations() - allocs;
    let clean = INJECTED_PANICS.get() == panics && ACTIONS.with(|a| a.borrow().len()) == actions;
    (result, clean.then_some(count))
}

// === values and predicates ===

/// The watched value: a `u8` whose `Clone` panics on demand, and which may
/// carry an action for its `Drop` (only the value a [`Op::SetActing`]
/// hands to `set`; clones never do). The harness itself never clones it (it
/// rebuilds values from their `u8`). Equality and `Debug` look at the `u8`
/// only.
pub struct V(pub u8, Option<Outside>);

/// A plain value.
const fn val(x: u8) -> V {
    V(x, None)
}

impl Clone for V {
    fn clone(&self) -> V {
        if CLONE_PANICS.get() {
            panic::panic_any(Injected::Clone);
        }
        val(self.0)
    }
}

impl PartialEq for V {
    fn eq(&self, other: &V) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for V {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reentry) = DEBUG_HOOK.take() {
            reenter(reentry, 0);
        }
        write!(f, "V({})", self.0)
    }
}

impl Drop for V {
    fn drop(&mut self) {
        if let Some(action) = self.1.take() {
            act(action);
        }
    }
}

/// Runs an action when dropped (captured by callbacks, carried by `Nc`
/// values and `wait_map` outputs). Not `Clone`.
pub struct DropActor(Option<Outside>);

impl Drop for DropActor {
    fn drop(&mut self) {
        if let Some(action) = self.0.take() {
            act(action);
        }
    }
}

/// The value of the third watcher: `PartialEq` (on the `u8`) but not
/// `Clone` (SPEC §2: a first-class citizen for the methods that need no
/// `Clone`). Its `DropActor` may run an action when the value is dropped.
pub struct Nc(pub u8, #[allow(dead_code)] DropActor);

/// A plain `Nc`.
const fn nc(x: u8) -> Nc {
    Nc(x, DropActor(None))
}

impl PartialEq for Nc {
    fn eq(&self, other: &Nc) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for Nc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reentry) = DEBUG_HOOK.take() {
            reenter(reentry, 2);
        }
        write!(f, "Nc({})", self.0)
    }
}

/// What a `wait_map` function extracts from `v`: `mapped(v)` (not `v`
/// itself, so the model sees it is the function's output), with a
/// `DropActor`. Neither `Clone` nor `PartialEq`.
pub struct Mapped(u8, #[allow(dead_code)] DropActor);

/// The number a `wait_map` function extracts from the value `v`.
fn mapped(v: u8) -> u8 {
    100 + v
}

/// The main watcher.
static MAIN: ValueWatcher<V> = ValueWatcher::new(val(0));
/// The `Option` watcher, for `wait_for_some`.
static OPT: ValueWatcher<Option<V>> = ValueWatcher::new(None);
/// The watcher of a non-`Clone` value.
static NCW: ValueWatcher<Nc> = ValueWatcher::new(nc(0));
/// One run at a time uses the watchers (tests run on several threads).
static RUN: Mutex<()> = Mutex::new(());
/// Callbacks registered by the current run, removed at its end (or at the
/// start of the next run, if it panicked).
static REGISTERED: Mutex<Vec<(usize, CallbackId)>> = Mutex::new(Vec::new());

/// `remove_callback` on watcher 0 or 2.
fn remove_callback(watcher: usize, id: CallbackId) -> bool {
    if watcher == 0 {
        MAIN.remove_callback(id)
    } else {
        NCW.remove_callback(id)
    }
}

/// A model value: the main watcher's `V(x)` is `Some(x)`; the `Option`
/// watcher's values are themselves.
type MV = Option<u8>;

/// What the predicate of a wait says about a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    No,
    Yes,
    Panics(Injected),
}

impl Pred {
    fn verdict(self, v: u8) -> Verdict {
        let yes = match self {
            Pred::Equals(a) => v == d(a),
            Pred::NotEquals(a) => v != d(a),
            Pred::Range(a, b) => d(a) <= v && v <= d(b),
            Pred::Even(even) => v.is_multiple_of(2) == even,
            Pred::PanicsOn(a, _) if v == d(a) => return Verdict::Panics(Injected::Predicate(v)),
            Pred::PanicsOn(_, b) => v == d(b),
            Pred::Reenters(a, _, reentry) if v == d(a) && reentry.panics() => {
                return Verdict::Panics(Injected::Reentrant);
            }
            Pred::Reenters(_, b, _) => v == d(b),
        };
        if yes { Verdict::Yes } else { Verdict::No }
    }

    /// The predicate handed to the crate, for a value of `watcher` (whose
    /// lock it runs under).
    fn real(self, v: u8, watcher: usize) -> bool {
        if let Pred::Reenters(a, b, reentry) = self {
            if v == d(a) {
                reenter(reentry, watcher);
            }
            return v == d(b);
        }
        match self.verdict(v) {
            Verdict::No => false,
            Verdict::Yes => true,
            Verdict::Panics(payload) => panic::panic_any(payload),
        }
    }
}

impl MapFn {
    /// The function handed to the crate's `wait_map`.
    fn real(self, v: u8, watcher: usize) -> Option<Mapped> {
        self.pred
            .real(v, watcher)
            .then(|| Mapped(mapped(v), DropActor(self.drop_action)))
    }
}

impl EdgeFn {
    fn verdict(self, old: u8, new: u8) -> Verdict {
        let yes = match self {
            EdgeFn::From(a) => old == d(a),
            EdgeFn::FromTo(a, b) => old == d(a) && new == d(b),
            EdgeFn::Down => new < old,
            EdgeFn::Up => new > old,
            EdgeFn::PanicsOn(a, _) if old == d(a) => {
                return Verdict::Panics(Injected::Edge(old, new));
            }
            EdgeFn::PanicsOn(_, b) => new == d(b),
            EdgeFn::Reenters(a, _, reentry) if old == d(a) && reentry.panics() => {
                return Verdict::Panics(Injected::Reentrant);
            }
            EdgeFn::Reenters(_, b, _) => new == d(b),
        };
        if yes { Verdict::Yes } else { Verdict::No }
    }

    /// The function handed to the crate's `wait_transition`.
    fn real(self, old: &V, new: &V) -> bool {
        if let EdgeFn::Reenters(a, b, reentry) = self {
            if old.0 == d(a) {
                reenter(reentry, 0);
            }
            return new.0 == d(b);
        }
        match self.verdict(old.0, new.0) {
            Verdict::No => false,
            Verdict::Yes => true,
            Verdict::Panics(payload) => panic::panic_any(payload),
        }
    }
}

impl Kind {
    /// Which watcher: 0 (the main one), 1 (the `Option` one) or 2 (the
    /// non-`Clone` one).
    fn watcher(self) -> usize {
        match self {
            Kind::Some | Kind::OptChange => 1,
            Kind::NcMap(_) => 2,
            _ => 0,
        }
    }

    /// SPEC §3.3, §3.16: whether the first poll looks at the current value.
    fn checks_current(self, immediate: bool) -> bool {
        immediate && !matches!(self, Kind::Change | Kind::OptChange | Kind::Transition(_))
    }

    /// Whether its output is a clone of the value (SPEC §3.15: a `wait_map`
    /// never clones).
    fn clones(self) -> bool {
        !matches!(self, Kind::Map(_) | Kind::NcMap(_))
    }

    /// What the future yields for the value `v` it accepted.
    fn output(self, v: MV) -> MV {
        match self {
            Kind::Map(_) | Kind::NcMap(_) => v.map(mapped),
            _ => v,
        }
    }

    /// What the wait says about the value `new`, which the transition from
    /// `old` made (`old: None`: the current value at the first poll).
    fn verdict(self, old: Option<MV>, new: MV) -> Verdict {
        let yes = match (self, new) {
            (Kind::Change | Kind::OptChange, _) => old.is_some(),
            (Kind::Some, v) => v.is_some(),
            (Kind::For(a), Some(v)) => v == d(a),
            (Kind::ForNot(a), Some(v)) => v != d(a),
            (Kind::Until(pred), Some(v)) => return pred.verdict(v),
            (Kind::Map(f) | Kind::NcMap(f), Some(v)) => return f.pred.verdict(v),
            (Kind::Transition(f), Some(v)) => match old {
                Some(Some(old)) => return f.verdict(old, v),
                _ => false,
            },
            (_, None) => unreachable!("only the Option watcher holds None"),
        };
        if yes { Verdict::Yes } else { Verdict::No }
    }

    /// Creates the crate's future for this wait.
    fn future(self, immediate: bool) -> Fut {
        match self {
            Kind::For(a) => Fut::Main(Box::pin(MAIN.wait_for(val(d(a))).immediate(immediate))),
            Kind::ForNot(a) => {
                Fut::Main(Box::pin(MAIN.wait_for_not(val(d(a))).immediate(immediate)))
            }
            Kind::Until(pred) => Fut::Main(Box::pin(
                MAIN.wait_until(move |v: &V| pred.real(v.0, 0))
                    .immediate(immediate),
            )),
            Kind::Change => Fut::Main(Box::pin(MAIN.wait_for_change())),
            Kind::Some => Fut::Main(Box::pin(OPT.wait_for_some().immediate(immediate))),
            Kind::OptChange => Fut::Opt(Box::pin(OPT.wait_for_change())),
            Kind::Map(f) => Fut::Mapped(Box::pin(
                MAIN.wait_map(move |v: &V| f.real(v.0, 0))
                    .immediate(immediate),
            )),
            Kind::Transition(f) => Fut::Main(Box::pin(
                MAIN.wait_transition(move |old: &V, new: &V| f.real(old, new)),
            )),
            Kind::NcMap(f) => Fut::Mapped(Box::pin(
                NCW.wait_map(move |v: &Nc| f.real(v.0, 2))
                    .immediate(immediate),
            )),
        }
    }
}

// === wakers ===

/// A waker that counts its wake-ups, and may act on its first `wake`, on
/// the first `Drop` (or wake by value) of a copy the watcher made, or on
/// every `clone` (made under the lock, when a future registers).
///
/// Built on its own `RawWakerVTable` (over an `Arc<Counter>`) so that `clone`
/// and `drop` are observable; every copy shares one vtable, so `will_wake`
/// recognizes the waker a future is already registered with.
struct Counter {
    count: AtomicUsize,
    on_wake: Option<Outside>,
    woke: AtomicBool,
    on_drop: Option<Outside>,
    dropped: AtomicBool,
    /// With the index of the watcher whose lock the clone runs under.
    on_clone: Option<(Reentry, usize)>,
    clones: AtomicUsize,
}

impl Counter {
    fn new(choice: Option<WakerChoice>, watcher: usize) -> Arc<Counter> {
        let (on_wake, on_drop, on_clone) = match choice {
            Some(WakerChoice::Acting(a)) => (Some(a), None, None),
            Some(WakerChoice::DropActing(a)) => (None, Some(a), None),
            Some(WakerChoice::CloneActing(r)) => (None, None, Some((r, watcher))),
            _ => (None, None, None),
        };
        Arc::new(Counter {
            count: AtomicUsize::new(0),
            on_wake,
            woke: AtomicBool::new(false),
            on_drop,
            dropped: AtomicBool::new(false),
            on_clone,
            clones: AtomicUsize::new(0),
        })
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn clones(&self) -> usize {
        self.clones.load(Ordering::SeqCst)
    }

    /// A waker for the harness to pass to a poll; give it back with
    /// [`release`] (which runs no drop action: only the watcher's copies do).
    fn waker(self: &Arc<Self>) -> Waker {
        let data = Arc::into_raw(self.clone()).cast::<()>();
        // SAFETY: `data` is an `Arc<Counter>` reference the waker now owns,
        // which is what every function of `VTABLE` expects.
        unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
    }
}

/// Gives back a waker made by [`Counter::waker`] without running its drop
/// action.
fn release(waker: Waker) {
    let waker = ManuallyDrop::new(waker);
    // SAFETY: the waker owns one `Arc<Counter>` reference (see `VTABLE`),
    // and is never used again.
    unsafe { Arc::decrement_strong_count(waker.data().cast::<Counter>()) };
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(vt_clone, vt_wake, vt_wake_by_ref, vt_drop);

/// # Safety
/// `data` is an `Arc<Counter>` reference owned by a live waker.
unsafe fn counter<'a>(data: *const ()) -> &'a Counter {
    // SAFETY: the caller's guarantee.
    unsafe { &*data.cast::<Counter>() }
}

unsafe fn vt_clone(data: *const ()) -> RawWaker {
    // SAFETY: called on a live waker of `VTABLE`.
    let c = unsafe { counter(data) };
    c.clones.fetch_add(1, Ordering::SeqCst);
    if let Some((reentry, watcher)) = c.on_clone {
        // May panic: before the count below, so nothing leaks.
        reenter(reentry, watcher);
    }
    // SAFETY: the new waker owns a new reference.
    unsafe { Arc::increment_strong_count(data.cast::<Counter>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn vt_wake(data: *const ()) {
    // SAFETY: waking by value is waking by reference, then dropping.
    unsafe {
        vt_wake_by_ref(data);
        vt_drop(data);
    }
}

unsafe fn vt_wake_by_ref(data: *const ()) {
    // SAFETY: called on a live waker of `VTABLE`.
    let c = unsafe { counter(data) };
    c.count.fetch_add(1, Ordering::SeqCst);
    if let Some(action) = c.on_wake
        && !c.woke.swap(true, Ordering::SeqCst)
    {
        act(action);
    }
}

unsafe fn vt_drop(data: *const ()) {
    // SAFETY: called on a live waker of `VTABLE`, which owns a reference.
    let c = unsafe { counter(data) };
    if let Some(action) = c.on_drop
        && !c.dropped.swap(true, Ordering::SeqCst)
    {
        act(action);
    }
    // SAFETY: this waker's reference, given up.
    unsafe { Arc::decrement_strong_count(data.cast::<Counter>()) };
}

/// What a hook did, for the harness to check after the step, in order.
enum Action {
    Polled {
        slot: usize,
        id: u64,
        result: PollResult,
        clone_hook: Option<Reentry>,
    },
    /// The future is gone; the slot is removed when the step is settled.
    Dropped {
        slot: usize,
        id: u64,
    },
    /// Something was created (and allocated).
    Created,
    /// A watcher's value and version, read by a hook.
    Read {
        watcher: usize,
        value: u8,
        version: u64,
    },
    /// `OPT.set(x)` by a hook; recorded before the call (its own hooks come
    /// after it), its result filled in after.
    SetOpt {
        x: Option<u8>,
        result: Option<Result<bool, Injected>>,
    },
    StreamPolled {
        slot: usize,
        id: u64,
        result: Result<Poll<Option<u8>>, Injected>,
    },
    StreamDropped {
        waker: Arc<Counter>,
    },
}

fn record_action(action: Action) -> usize {
    ACTIONS.with(|a| {
        let mut a = a.borrow_mut();
        a.push(action);
        a.len() - 1
    })
}

/// Runs an action of a hook that runs outside the lock.
fn act(action: Outside) {
    if !acting() {
        return;
    }
    match action {
        Outside::Poll(t) => {
            let slot = usize::from(t) % WAIT_SLOTS;
            if let Some(polled) = poll_slot(slot, None) {
                record_action(Action::Polled {
                    slot,
                    id: polled.id,
                    result: polled.result,
                    clone_hook: None,
                });
            }
        }
        Outside::Drop(t) => drop_in_place(usize::from(t) % WAIT_SLOTS, false),
        Outside::Create(t, target) => create_in_empty(usize::from(t) % WAIT_SLOTS, 0, target),
        Outside::Read => {
            let value = MAIN.with(|v| v.0);
            let version = MAIN.version();
            record_action(Action::Read {
                watcher: 0,
                value,
                version,
            });
        }
        Outside::ReadNc => {
            let value = NCW.with(|v| v.0);
            let version = NCW.version();
            record_action(Action::Read {
                watcher: 2,
                value,
                version,
            });
        }
        Outside::SetOpt(x) => {
            let x = x.map(d);
            let i = record_action(Action::SetOpt { x, result: None });
            let result = catch(|| OPT.set(x.map(val)));
            ACTIONS.with(|a| {
                if let Action::SetOpt { result: r, .. } = &mut a.borrow_mut()[i] {
                    *r = Some(result);
                }
            });
        }
        Outside::PollStream(t) => {
            let slot = usize::from(t) % STREAM_SLOTS;
            if let Some((id, result, _)) = poll_stream_slot(slot) {
                record_action(Action::StreamPolled { slot, id, result });
            }
        }
        Outside::DropStream(t) => drop_stream_in_place(usize::from(t) % STREAM_SLOTS, false),
    }
}

/// Drops the future in a slot, keeping its model state until the step is
/// settled; `unregistered_only`: only if it is not registered.
fn drop_in_place(slot: usize, unregistered_only: bool) {
    let taken = with_slots(|slots| {
        let wait = slots[slot].as_mut()?;
        if unregistered_only && wait.armed && !cfg!(feature = "under-lock-drop") {
            return None;
        }
        Some((wait.fut.take()?, wait.id))
    });
    if let Some((fut, id)) = taken {
        if cfg!(feature = "under-lock-drop") && unregistered_only {
            // Before the fix of issue 9 this `Drop` panicked (reentrant lock)
            // and left the freed node linked: let the program go on, so the
            // next walk shows the sanitizer that memory.
            match panic::catch_unwind(AssertUnwindSafe(|| drop(fut))) {
                Err(payload) if !is_reentrant(&*payload) => panic::resume_unwind(payload),
                _ => {}
            }
        } else {
            drop(fut);
        }
        record_action(Action::Dropped { slot, id });
    }
}

/// Creates `wait_for(v)` (`wait_for_some()` on the `Option` watcher, a
/// `wait_map` for `v` on the non-`Clone` one) in a slot if it is empty.
fn create_in_empty(slot: usize, watcher: usize, target: u8) {
    let kind = match watcher {
        0 => Kind::For(target),
        1 => Kind::Some,
        _ => Kind::NcMap(MapFn {
            pred: Pred::Equals(target),
            drop_action: None,
        }),
    };
    let fut = with_slots(|slots| slots[slot].is_none()).then(|| kind.future(true));
    if let Some(fut) = fut {
        with_slots(|slots| slots[slot] = Some(WaitSlot::new(fut, kind, true)));
        record_action(Action::Created);
    }
}

fn drop_stream_in_place(slot: usize, unregistered_only: bool) {
    let taken = STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        let s = streams[slot].as_ref()?;
        if unregistered_only && s.armed && !cfg!(feature = "under-lock-drop") {
            return None;
        }
        streams[slot].take()
    });
    if let Some(s) = taken {
        let StreamSlot { stream, waker, .. } = s;
        drop(stream);
        record_action(Action::StreamDropped { waker });
    }
}

impl Reentry {
    /// Whether the hook panics with the crate's reentrancy panic.
    fn panics(self) -> bool {
        CRITICAL_SECTION && self.act.locks() && self.propagate
    }
}

impl Inside {
    fn locks(self) -> bool {
        !matches!(
            self,
            Inside::CreateWait(..) | Inside::DropWait(_) | Inside::DropStream(_)
        )
    }
}

/// Runs a hook's reentrant action on the watcher (0: main, 1: `Option`, 2:
/// non-`Clone`) whose lock it runs under.
fn reenter(reentry: Reentry, watcher: usize) {
    let act = reentry.act;
    if !act.locks() {
        match act {
            Inside::CreateWait(slot, target) => {
                create_in_empty(usize::from(slot) % WAIT_SLOTS, watcher, target)
            }
            Inside::DropWait(slot) => drop_in_place(usize::from(slot) % WAIT_SLOTS, true),
            Inside::DropStream(slot) if watcher == 0 => {
                drop_stream_in_place(usize::from(slot) % STREAM_SLOTS, true)
            }
            _ => {}
        }
        return;
    }
    if !CRITICAL_SECTION {
        // With the spinlock this would deadlock, as documented.
        return;
    }
    if reentry.propagate {
        // The crate's panic leaves the hook, as `Injected::Reentrant`: a
        // waiter's function that panics this way has its panic stored and
        // resumed by its own future's later poll, and a poll from under the
        // lock must tell that resumed panic (the future is finished) from
        // the crate's fresh reentrancy panic (the future is untouched).
        match panic::catch_unwind(AssertUnwindSafe(|| locking_call(act, watcher))) {
            Err(payload) if is_reentrant(&*payload) => panic::panic_any(Injected::Reentrant),
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => {}
        }
    } else {
        match panic::catch_unwind(AssertUnwindSafe(|| locking_call(act, watcher))) {
            Err(payload) if is_reentrant(&*payload) => return,
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => {}
        }
    }
    panic!("value-watcher-fuzz: reentrant {act:?} from under the lock returned");
}

/// Polls, from under the lock, the wait in `slot` if it belongs to
/// `watcher`; `false` if there is none. The poll either takes the lock (and
/// panics with the crate's reentrancy message, before it changes the future
/// or clones the waker: the panic is resumed after the future is put back),
/// or, for a wait a setter already chose (its node `Ready`), completes
/// without the lock: the crate's lock-free take. That poll is recorded as
/// the wait's final poll, which the model checks like any other (it must
/// have matched, with that value or panic), and then this hook panics with
/// the reentrancy message itself, so that the hook has the same visible
/// outcome in both cases and the model's prediction of it holds.
fn poll_under_lock(slot: usize, watcher: usize) -> bool {
    let Some((mut fut, id)) = with_slots(|slots| {
        let wait = slots[slot].as_mut()?;
        if wait.finished || wait.kind.watcher() != watcher {
            return None;
        }
        Some((wait.fut.take()?, wait.id))
    }) else {
        return false;
    };
    // The output is handed out under the lock; its `Drop` (which may act on
    // a watcher) runs when the step is settled.
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        fut.poll_deferring_drop(&mut Context::from_waker(Waker::noop()))
    }));
    let result = match result {
        Err(payload) if is_reentrant(&*payload) => {
            with_slots(|slots| slots[slot].as_mut().expect("a polled slot stays").fut = Some(fut));
            panic::resume_unwind(payload)
        }
        Err(payload) => match payload.downcast::<Injected>() {
            Ok(injected) => {
                INJECTED_PANICS.set(INJECTED_PANICS.get() + 1);
                Err(*injected)
            }
            Err(other) => panic::resume_unwind(other),
        },
        Ok(Poll::Pending) => {
            panic!("value-watcher-fuzz: a poll from under the lock registered")
        }
        Ok(ready) => Ok(ready),
    };
    with_slots(|slots| {
        let wait = slots[slot].as_mut().expect("a polled slot stays");
        wait.fut = Some(fut);
        wait.finished = true;
        wait.armed = false;
    });
    record_action(Action::Polled {
        slot,
        id,
        result,
        clone_hook: None,
    });
    panic::panic_any(format!(
        "{REENTRANT} (the harness, after a poll that needed no lock)"
    ))
}

/// A call that takes the lock of `watcher` (or panics as if it had: see
/// [`poll_under_lock`]).
fn locking_call(act: Inside, watcher: usize) {
    let no_id = NO_ID.get()[watcher].expect("set at the start of the run");
    match (act, watcher) {
        (Inside::Set(x), 0) => {
            let _ = MAIN.set(val(d(x)));
        }
        (Inside::Set(x), 1) => {
            let _ = OPT.set(Some(val(d(x))));
        }
        (Inside::Set(x), _) => {
            let _ = NCW.set(nc(d(x)));
        }
        (Inside::Get, 0) => {
            let _ = MAIN.get();
        }
        (Inside::Get, 1) => {
            let _ = OPT.get();
        }
        // No `get` without `Clone`.
        (Inside::Get | Inside::With, 2) => {
            let _ = NCW.with(|v| v.0);
        }
        (Inside::With, 0) => {
            let _ = MAIN.with(|v| v.0);
        }
        (Inside::With, _) => {
            let _ = OPT.with(|v| v.is_some());
        }
        (Inside::OnChange, 0) => {
            let _ = MAIN.on_change(|_, _| {});
        }
        (Inside::OnChange, 1) => {
            let _ = OPT.on_change(|_, _| {});
        }
        // No `on_change` without `Clone`: `on_value` takes the lock too.
        (Inside::OnChange, _) => {
            let _ = NCW.on_value(nc(0), || {});
        }
        (Inside::Remove, 0) => {
            let _ = MAIN.remove_callback(no_id);
        }
        (Inside::Remove, 1) => {
            let _ = OPT.remove_callback(no_id);
        }
        (Inside::Remove, _) => {
            let _ = NCW.remove_callback(no_id);
        }
        (Inside::Debug, 0) => {
            let _ = format!("{MAIN:?}");
        }
        (Inside::Debug, 1) => {
            let _ = format!("{OPT:?}");
        }
        (Inside::Debug, _) => {
            let _ = format!("{NCW:?}");
        }
        (Inside::PollWait(slot), _) => {
            if !poll_under_lock(usize::from(slot) % WAIT_SLOTS, watcher) {
                version_of(watcher);
            }
        }
        (Inside::PollStream(slot), 0) => {
            let slot = usize::from(slot) % STREAM_SLOTS;
            let polled = STREAMS.with(|streams| {
                let mut streams = streams.borrow_mut();
                let stream = streams[slot].as_mut()?.stream.as_mut()?;
                let _ = Pin::new(stream).poll_next(&mut Context::from_waker(Waker::noop()));
                Some(())
            });
            if polled.is_none() {
                version_of(0);
            }
        }
        (_, _) => version_of(watcher),
    }
}

fn version_of(watcher: usize) {
    let _ = match watcher {
        0 => MAIN.version(),
        1 => OPT.version(),
        _ => NCW.version(),
    };
}

// === callbacks ===

/// What a callback records when it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Change {
        tag: usize,
        old: u8,
        new: u8,
        /// `(value, version)` read from inside the callback.
        seen: Option<(u8, u64)>,
        /// What `remove_callback` of its own id returned.
        removed_self: Option<bool>,
    },
    Value {
        tag: usize,
    },
}

fn record(event: Event) {
    EVENTS.with(|events| events.borrow_mut().push(event));
}

/// Takes the recorded events, keeping the buffer's capacity (so recording
/// does not allocate while a setter is measured).
fn take_events() -> Vec<Event> {
    EVENTS.with(|events| events.borrow_mut().drain(..).collect())
}

fn event_tag(event: &Event) -> usize {
    match event {
        Event::Change { tag, .. } | Event::Value { tag } => *tag,
    }
}

#[derive(Debug, Clone, Copy)]
enum CbKind {
    Change { reads: bool, removes_self: bool },
    Value { target: u8 },
}

struct MCallback {
    /// The watcher it is registered with (0, or 2 for `on_value`).
    watcher: usize,
    id: Option<CallbackId>,
    kind: CbKind,
    panics: bool,
    /// Registered and (for `on_value`) not fired yet.
    live: bool,
}

/// A callback run the model expects from one transition.
struct Expected {
    event: Event,
    panics: bool,
    /// May be missing: an `on_change` whose clone of the new value panicked.
    optional: bool,
}

// === model state ===

#[derive(Clone, Copy)]
struct Entry {
    /// The value before the transition (for `wait_transition`).
    old: MV,
    value: MV,
    /// `Clone` panicked at this transition.
    clone_panics: bool,
}

struct MWatcher {
    value: MV,
    /// The crate's version when the run started.
    base: u64,
    log: Vec<Entry>,
}

impl MWatcher {
    fn version(&self) -> u64 {
        self.base + self.log.len() as u64
    }
}

/// How a wait ends in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ready(MV),
    Panics(Injected),
}

/// The model state of a wait future.
#[derive(Debug, Clone, Copy)]
enum WaitState {
    /// Created, never polled.
    Fresh,
    /// First polled when the log had `start` entries; pending.
    Watching { start: usize },
    /// Completed (returned or resumed its panic); its wake count was `frozen`.
    Done { frozen: usize },
    /// Its first poll panicked. The SPEC says nothing more about it, so
    /// nothing more is checked (it is still polled and dropped, for the
    /// sanitizer's sake).
    Poisoned,
    /// A poisoned wait that returned or panicked again: never polled again.
    Dead,
}

/// What polling a wait gave: its output as a model value, or a panic.
type PollResult = Result<Poll<MV>, Injected>;

/// A wait future of either watcher, its output turned into a model value.
enum Fut {
    Main(Pin<Box<dyn Future<Output = V>>>),
    Opt(Pin<Box<dyn Future<Output = Option<V>>>>),
    /// A `wait_map` of either the main or the non-`Clone` watcher.
    Mapped(Pin<Box<dyn Future<Output = Mapped>>>),
}

thread_local! {
    /// Outputs handed out by a poll from under a watcher's lock (see
    /// [`poll_under_lock`]): the `Drop` of a `wait_map` output may act, and
    /// an action that takes a lock must run outside it, so they are dropped
    /// when the step's actions are settled.
    static DEFERRED_DROPS: RefCell<Vec<Box<dyn std::any::Any>>> = const { RefCell::new(Vec::new()) };
}

fn defer_drop<O: 'static>(output: O) {
    DEFERRED_DROPS.with(|d| d.borrow_mut().push(Box::new(output)));
}

/// Drops the deferred outputs (outside any lock); their actions are
/// recorded like any hook's.
fn drop_deferred() {
    let outputs = DEFERRED_DROPS.with(|d| std::mem::take(&mut *d.borrow_mut()));
    drop(outputs);
}

impl Fut {
    /// [`Fut::poll`], keeping a ready output alive until [`drop_deferred`].
    fn poll_deferring_drop(&mut self, cx: &mut Context<'_>) -> Poll<MV> {
        match self {
            Fut::Main(fut) => fut.as_mut().poll(cx).map(|v| {
                let x = Some(v.0);
                defer_drop(v);
                x
            }),
            Fut::Opt(fut) => fut.as_mut().poll(cx).map(|v| {
                let x = v.as_ref().map(|v| v.0);
                defer_drop(v);
                x
            }),
            Fut::Mapped(fut) => fut.as_mut().poll(cx).map(|u| {
                let x = Some(u.0);
                defer_drop(u);
                x
            }),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<MV> {
        match self {
            Fut::Main(fut) => fut.as_mut().poll(cx).map(|v| Some(v.0)),
            Fut::Opt(fut) => fut.as_mut().poll(cx).map(|v| v.map(|v| v.0)),
            Fut::Mapped(fut) => fut.as_mut().poll(cx).map(|u| Some(u.0)),
        }
    }
}

struct WaitSlot {
    /// `None` once a hook dropped it (until the step is settled), and while
    /// it is being polled.
    fut: Option<Fut>,
    /// Tells this future from one created in the same slot later.
    id: u64,
    kind: Kind,
    immediate: bool,
    state: WaitState,
    wakers: Vec<Arc<Counter>>,
    /// The crate's future returned or resumed a panic: polling it again
    /// would be the caller's bug.
    finished: bool,
    /// Registered or holding an outcome, as its owner can tell from its poll
    /// results: dropping it takes the lock.
    armed: bool,
    /// How far the model's log was scanned for the first match since the
    /// wait started watching, and what was found.
    scan: Cell<(usize, Option<Outcome>)>,
}

/// One poll of a wait slot.
struct Polled {
    id: u64,
    result: PollResult,
    allocs: Option<u64>,
}

impl WaitSlot {
    fn new(fut: Fut, kind: Kind, immediate: bool) -> WaitSlot {
        WaitSlot {
            fut: Some(fut),
            id: next_id(),
            kind,
            immediate,
            state: WaitState::Fresh,
            wakers: Vec::new(),
            finished: false,
            armed: false,
            scan: Cell::new((0, None)),
        }
    }

    fn wake_count(&self) -> usize {
        self.wakers.iter().map(|c| c.count()).sum()
    }
}

/// Polls the wait in `slot` with its last waker (`new_waker: None`) or a new
/// one, unless finished or absent. The future leaves its slot while it is
/// polled, so that hooks that run meanwhile can use the other slots.
fn poll_slot(slot: usize, new_waker: Option<WakerChoice>) -> Option<Polled> {
    let (mut fut, counter, id) = with_slots(|slots| {
        let wait = slots[slot].as_mut()?;
        if wait.finished || matches!(wait.state, WaitState::Done { .. } | WaitState::Dead) {
            return None;
        }
        let fut = wait.fut.take()?;
        if new_waker.is_some() || wait.wakers.is_empty() {
            wait.wakers
                .push(Counter::new(new_waker, wait.kind.watcher()));
        }
        let counter = wait.wakers.last().expect("just ensured").clone();
        Some((fut, counter, wait.id))
    })?;
    let clones = counter.clones();
    let waker = counter.waker();
    let (result, allocs) = measured(|| fut.poll(&mut Context::from_waker(&waker)));
    release(waker);
    let clone_failed = result.is_err() && counter.clones() != clones;
    with_slots(|slots| {
        let wait = slots[slot].as_mut().expect("a polled slot stays");
        wait.fut = Some(fut);
        if clone_failed {
            // Registering panicked in the waker's `clone`: the future is as
            // it was (a first registration did not happen; a new waker was
            // not stored).
        } else {
            // A panic resumes an outcome of a registered future; an
            // unregistered one panicked in its own check of the value.
            let was_armed = wait.armed;
            wait.finished = match result {
                Ok(Poll::Pending) => false,
                Ok(Poll::Ready(_)) => true,
                Err(_) => was_armed,
            };
            wait.armed = result == Ok(Poll::Pending);
        }
    });
    Some(Polled { id, result, allocs })
}

struct StreamSlot {
    /// `None` while it is polled.
    stream: Option<Changes<'static, V>>,
    id: u64,
    waker: Arc<Counter>,
    /// The version the stream has reported up to.
    seen: u64,
    /// `Some(version)` while registered by a pending poll at that version.
    registered: Option<u64>,
    /// The wake count at the last poll.
    base: usize,
    /// A poll panicked (a panicking `Clone`): the SPEC says nothing more.
    poisoned: bool,
    /// Registered, as far as the owner can tell.
    armed: bool,
}

/// Polls the stream in `slot`; its id, result and allocation count.
#[allow(clippy::type_complexity)]
fn poll_stream_slot(slot: usize) -> Option<(u64, Result<Poll<Option<u8>>, Injected>, Option<u64>)> {
    let (mut stream, waker, id) = STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        let s = streams[slot].as_mut()?;
        Some((s.stream.take()?, s.waker.clone(), s.id))
    })?;
    let w = waker.waker();
    let (result, allocs) = measured(|| {
        Pin::new(&mut stream)
            .poll_next(&mut Context::from_waker(&w))
            .map(|item| item.map(|v| v.0))
    });
    release(w);
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        let s = streams[slot].as_mut().expect("a polled stream stays");
        s.stream = Some(stream);
        match result {
            Ok(Poll::Pending) => s.armed = true,
            Ok(Poll::Ready(_)) => s.armed = false,
            Err(_) => {}
        }
    });
    Some((id, result, allocs))
}

// === the harness ===

struct Harness {
    /// The main, `Option` and non-`Clone` watchers.
    model: [MWatcher; 3],
    clone_panics: bool,
    callbacks: Vec<MCallback>,
    /// A [`CountingAllocator`] is installed: check SPEC §3.8.
    counting: bool,
}

/// Runs `program` against the crate and the model; panics on a difference.
pub fn run(program: &Program) {
    install_panic_hook();
    let _one_at_a_time = RUN.lock().unwrap_or_else(PoisonError::into_inner);
    ACTING.store(false, Ordering::Relaxed);
    // Leftovers of a run that panicked (in a test); not acting now.
    drop_deferred();
    CLONE_PANICS.set(false);
    DEBUG_HOOK.set(None);
    take_events();
    ACTIONS.with(|a| a.borrow_mut().clear());
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        slots.clear();
        slots.resize_with(WAIT_SLOTS, || None);
    });
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        streams.clear();
        streams.resize_with(STREAM_SLOTS, || None);
    });
    // Leftovers of a run that panicked (in a test).
    for (watcher, id) in REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
    {
        remove_callback(watcher, id);
    }
    // Room for every callback run and waker action of one step, so recording
    // them never allocates.
    EVENTS.with(|events| events.borrow_mut().reserve(4 * MAX_OPS));
    ACTIONS.with(|a| a.borrow_mut().reserve(4 * WAIT_SLOTS));
    let counting = {
        let before = allocations();
        drop(std::hint::black_box(Box::new(0u8)));
        allocations() != before
    };

    let init = d(program.init);
    let init_opt = program.init_opt.map(d);
    let init_nc = d(program.init_nc);
    MAIN.set(val(init));
    OPT.set(init_opt.map(val));
    NCW.set(nc(init_nc));
    // `on_value` for the current value runs at once and registers nothing.
    NO_ID.set([
        Some(MAIN.on_value(val(init), || {})),
        Some(OPT.on_value(init_opt.map(val), || {})),
        Some(NCW.on_value(nc(init_nc), || {})),
    ]);
    let mut h = Harness {
        model: [
            MWatcher {
                value: Some(init),
                base: MAIN.version(),
                log: Vec::new(),
            },
            MWatcher {
                value: init_opt,
                base: OPT.version(),
                log: Vec::new(),
            },
            MWatcher {
                value: Some(init_nc),
                base: NCW.version(),
                log: Vec::new(),
            },
        ],
        clone_panics: false,
        callbacks: Vec::new(),
        counting,
    };
    h.check_at(&"start");
    ACTING.store(true, Ordering::Relaxed);
    for (step, op) in program.ops.iter().take(MAX_OPS).enumerate() {
        h.step(step, *op);
    }
    ACTING.store(false, Ordering::Relaxed);
    for slot in 0..WAIT_SLOTS {
        h.drop_wait(slot);
    }
    for slot in 0..STREAM_SLOTS {
        h.drop_stream(slot);
    }
    CLONE_PANICS.set(false);
    for (tag, cb) in h.callbacks.iter().enumerate() {
        if let Some(id) = cb.id {
            assert_eq!(
                remove_callback(cb.watcher, id),
                cb.live,
                "end: remove_callback of #{tag} ({:?})",
                cb.kind
            );
        }
    }
    REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    assert_eq!(take_events(), [], "end: callbacks ran");
}

/// Prints the failing step with the assertion.
struct Step(usize, Op);

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {:?}", self.0, self.1)
    }
}

fn with_slots<R>(f: impl FnOnce(&mut Vec<Option<WaitSlot>>) -> R) -> R {
    SLOTS.with(|slots| f(&mut slots.borrow_mut()))
}

impl Harness {
    fn step(&mut self, step: usize, op: Op) {
        let at = Step(step, op);
        match op {
            Op::Set(x) => self.set(d(x), &at),
            Op::SetIf(x, cond) => self.set_if(0, d(x), cond, &at),
            Op::Modify(m) => self.modify(m, &at),
            Op::Wait {
                slot,
                kind,
                immediate,
            } => self.create_wait(usize::from(slot) % WAIT_SLOTS, kind, immediate),
            Op::WaitMany {
                slot,
                count,
                kind,
                immediate,
            } => {
                for i in 0..usize::from(count) % (WAIT_SLOTS + 1) {
                    let slot = (usize::from(slot) + i) % WAIT_SLOTS;
                    self.create_wait(slot, kind, immediate);
                    // Dropping what was there may run hooks (a waker's
                    // `Drop`): they act before this poll.
                    self.settle_actions(&at);
                    self.poll_wait(slot, WakerChoice::Fresh, &at);
                    // Hooks of this poll act now; settle before the next
                    // one replaces what they touched.
                    self.settle_actions(&at);
                }
            }
            Op::Poll { slot, waker } => self.poll_wait(usize::from(slot) % WAIT_SLOTS, waker, &at),
            Op::DropWait(slot) => self.drop_wait(usize::from(slot) % WAIT_SLOTS),
            Op::OnChange {
                panics,
                reads,
                removes_self,
                action,
                drop_action,
            } => self.on_change(panics, reads, removes_self, action, drop_action),
            Op::OnValue { value, panics } => self.on_value(d(value), panics, &at),
            Op::Remove(i) => self.remove(i, &at),
            Op::Get => self.get(&at),
            Op::ClonePanics(on) => {
                CLONE_PANICS.set(on);
                self.clone_panics = on;
            }
            Op::SetOpt(x) => self.set_opt(x.map(d), &at),
            Op::Blocking {
                kind,
                immediate,
                how,
            } => self.blocking(kind, immediate, how, &at),
            Op::Stream(slot) => self.create_stream(usize::from(slot) % STREAM_SLOTS),
            Op::PollStream(slot) => self.poll_stream(usize::from(slot) % STREAM_SLOTS, &at),
            Op::DropStream(slot) => self.drop_stream(usize::from(slot) % STREAM_SLOTS),
            Op::With(reentry) => self.with_reentering(reentry, &at),
            Op::DebugReenters(reentry) => self.debug_reentering(reentry, &at),
            Op::SetActing(x, action) => self.set_value(V(d(x), Some(action)), &at),
            Op::NcSet(x, action) => self.nc_set(d(x), action, &at),
            Op::NcSetIf(x, cond) => self.set_if(2, d(x), cond, &at),
            Op::NcWith(reentry) => self.nc_with(reentry, &at),
            Op::NcOnValue { value, panics } => self.nc_on_value(d(value), panics, &at),
            Op::NcDebug(reentry) => self.nc_debug(reentry, &at),
        }
        self.settle_actions(&at);
        assert_eq!(
            take_events(),
            [],
            "{at}: callbacks ran outside a transition"
        );
        self.check_at(&at);
    }

    /// Compares everything observable without side effects.
    fn check_at(&self, at: &dyn fmt::Display) {
        assert_eq!(MAIN.version(), self.model[0].version(), "{at}: version");
        assert_eq!(Some(MAIN.with(|v| v.0)), self.model[0].value, "{at}: value");
        assert_eq!(
            OPT.version(),
            self.model[1].version(),
            "{at}: version (Option watcher)"
        );
        assert_eq!(
            OPT.with(|v| v.as_ref().map(|v| v.0)),
            self.model[1].value,
            "{at}: value (Option watcher)"
        );
        assert_eq!(
            NCW.version(),
            self.model[2].version(),
            "{at}: version (non-Clone watcher)"
        );
        assert_eq!(
            Some(NCW.with(|v| v.0)),
            self.model[2].value,
            "{at}: value (non-Clone watcher)"
        );
        with_slots(|slots| {
            for (i, slot) in slots.iter().enumerate() {
                let Some(slot) = slot else { continue };
                let total = slot.wake_count();
                match slot.state {
                    WaitState::Fresh => {
                        assert_eq!(total, 0, "{at}: unpolled wait {i} was woken")
                    }
                    // SPEC §3.5: woken once matched, not before.
                    WaitState::Watching { start } => {
                        if self.first_match_of(slot, start).is_some() {
                            let last = slot.wakers.last().expect("polled with a waker").count();
                            assert!(
                                last >= 1,
                                "{at}: wait {i} ({:?}) matched but not woken",
                                slot.kind
                            );
                        } else {
                            assert_eq!(
                                total, 0,
                                "{at}: wait {i} ({:?}) woken without a match",
                                slot.kind
                            );
                        }
                    }
                    WaitState::Done { frozen } => {
                        assert_eq!(total, frozen, "{at}: wait {i} woken after it completed")
                    }
                    WaitState::Poisoned | WaitState::Dead => {}
                }
            }
        });
        STREAMS.with(|streams| {
            for (i, slot) in streams.borrow().iter().enumerate() {
                let Some(s) = slot else { continue };
                if s.poisoned {
                    continue;
                }
                // SPEC §2: the version of the value it yielded last (at
                // creation, the version then).
                let version = s.stream.as_ref().map(Changes::version);
                assert_eq!(version, Some(s.seen), "{at}: stream {i} version()");
                let count = s.waker.count();
                match s.registered {
                    Some(at_version) if self.model[0].version() > at_version => {
                        assert!(count > s.base, "{at}: stream {i} not woken by a transition")
                    }
                    _ => assert_eq!(count, s.base, "{at}: stream {i} woken without a transition"),
                }
            }
        });
    }

    /// Whether cloning `value` panics now (`None` clones without `V::clone`).
    fn clone_panics_for(&self, value: MV) -> bool {
        self.clone_panics && value.is_some()
    }

    /// The first transition from `start` on that ends a wait of `kind`, and
    /// how it ends it (SPEC §3.2, §3.10).
    /// [`Harness::first_match`] for a watching wait, remembering how far it
    /// scanned the log (which only grows), so checking every wait after every
    /// step does not rescan the whole log each time.
    fn first_match_of(&self, wait: &WaitSlot, start: usize) -> Option<Outcome> {
        let (scanned, found) = wait.scan.get();
        if found.is_some() {
            return found;
        }
        let log = &self.model[wait.kind.watcher()].log;
        let found = self.first_match(wait.kind, scanned.max(start));
        wait.scan.set((log.len(), found));
        found
    }

    fn first_match(&self, kind: Kind, start: usize) -> Option<Outcome> {
        self.model[kind.watcher()].log[start..]
            .iter()
            .find_map(|entry| match kind.verdict(Some(entry.old), entry.value) {
                Verdict::No => None,
                Verdict::Panics(payload) => Some(Outcome::Panics(payload)),
                Verdict::Yes if entry.clone_panics && kind.clones() => {
                    Some(Outcome::Panics(Injected::Clone))
                }
                Verdict::Yes => Some(Outcome::Ready(kind.output(entry.value))),
            })
    }

    // --- setters ---

    fn set(&mut self, x: u8, at: &Step) {
        self.set_value(val(x), at);
    }

    /// `MAIN.set(v)`: an acting `v` changes nothing the model predicts but
    /// what its action does (checked with the other actions).
    fn set_value(&mut self, v: V, at: &Step) {
        let x = v.0;
        let (result, allocs) = measured(|| MAIN.set(v));
        let transition = self.model[0].value != Some(x);
        let expected = if transition {
            self.transition(0, x)
        } else {
            Vec::new()
        };
        let removed = self.settle_callbacks(expected, result, transition, at);
        self.assert_no_allocation(allocs.filter(|_| !removed), at);
    }

    /// `NCW.set(v)` on the non-`Clone` watcher.
    fn nc_set(&mut self, x: u8, action: Option<Outside>, at: &Step) {
        let (result, allocs) = measured(|| NCW.set(Nc(x, DropActor(action))));
        let transition = self.model[2].value != Some(x);
        let expected = if transition {
            self.transition(2, x)
        } else {
            Vec::new()
        };
        let removed = self.settle_callbacks(expected, result, transition, at);
        self.assert_no_allocation(allocs.filter(|_| !removed), at);
    }

    /// `set_if` on the main watcher (`w == 0`) or the non-`Clone` one.
    fn set_if(&mut self, w: usize, x: u8, cond: Cond, at: &Step) {
        let (result, allocs) = if w == 0 {
            measured(|| MAIN.set_if(val(x), |v| cond.real(v.0, 0)))
        } else {
            measured(|| NCW.set_if(nc(x), |v| cond.real(v.0, 2)))
        };
        let current = self.model[w].value.expect("watchers 0 and 2 hold Some");
        let holds = match cond {
            Cond::Always => true,
            Cond::Never => false,
            Cond::Reenters(reentry, _) if reentry.panics() => {
                // Like any panic of the condition (SPEC §3.18).
                assert_eq!(result, Err(Injected::Reentrant), "{at}: set_if result");
                return;
            }
            Cond::Reenters(_, holds) => holds,
            Cond::Equals(a) => current == d(a),
            Cond::Below(a) => current < d(a),
            Cond::Panics => {
                // The condition's panic propagates; nothing changes.
                assert_eq!(result, Err(Injected::Condition), "{at}: set_if result");
                return;
            }
        };
        let expected = if holds && current != x {
            self.transition(w, x)
        } else {
            Vec::new()
        };
        let removed = self.settle_callbacks(expected, result, holds, at);
        self.assert_no_allocation(allocs.filter(|_| !removed), at);
    }

    fn modify(&mut self, m: Modify, at: &Step) {
        let (result, allocs) = measured(|| {
            MAIN.modify(|v| match m {
                Modify::Add(k) => v.0 = (v.0 + d(k)) % DOMAIN,
                Modify::Xor(k) => v.0 ^= d(k),
                Modify::Assign(k) => v.0 = d(k),
                Modify::Panics(k) => {
                    v.0 = d(k);
                    panic::panic_any(Injected::Modify);
                }
                Modify::Reenters(k, reentry) => {
                    v.0 = d(k);
                    reenter(reentry, 0);
                }
            })
        });
        let current = self.model[0].value.expect("main watcher holds Some");
        let new = match m {
            Modify::Add(k) => (current + d(k)) % DOMAIN,
            Modify::Xor(k) => current ^ d(k),
            Modify::Assign(k) => d(k),
            Modify::Reenters(k, reentry) if !reentry.panics() => d(k),
            Modify::Panics(_) | Modify::Reenters(..) => {
                // SPEC §3.11: old value kept, nothing notified, panic
                // propagates. With `Clone` panicking, the panic may be that one.
                let own = if matches!(m, Modify::Panics(_)) {
                    Injected::Modify
                } else {
                    Injected::Reentrant
                };
                let allowed = [Some(own), self.clone_panics.then_some(Injected::Clone)];
                assert!(
                    matches!(result, Err(p) if allowed.contains(&Some(p))),
                    "{at}: modify result {result:?}"
                );
                return;
            }
        };
        // A `Clone` panic may stop `modify` before it changed anything (the
        // SPEC only promises a usable watcher): accept that outcome as a
        // whole, checked by the version staying put.
        if self.clone_panics
            && result == Err(Injected::Clone)
            && MAIN.version() == self.model[0].version()
        {
            return;
        }
        let transition = new != current;
        let expected = if transition {
            self.transition(0, new)
        } else {
            Vec::new()
        };
        let removed = self.settle_callbacks(expected, result, transition, at);
        self.assert_no_allocation(allocs.filter(|_| !removed), at);
    }

    fn set_opt(&mut self, x: Option<u8>, at: &Step) {
        let (result, allocs) = measured(|| OPT.set(x.map(val)));
        self.settle_set_opt(x, result, at);
        self.assert_no_allocation(allocs, at);
    }

    /// Applies `OPT.set(x)` to the model and checks its result.
    fn settle_set_opt(
        &mut self,
        x: Option<u8>,
        result: Result<bool, Injected>,
        at: &dyn fmt::Display,
    ) {
        let transition = self.model[1].value != x;
        if transition {
            let old = self.model[1].value;
            self.model[1].value = x;
            let clone_panics = self.clone_panics_for(x);
            self.model[1].log.push(Entry {
                old,
                value: x,
                clone_panics,
            });
        }
        // No callbacks on this watcher; waiters' panics stay with them.
        assert_eq!(result, Ok(transition), "{at}: set on the Option watcher");
    }

    /// Applies a transition of watcher `w` (the main one, 0, or the
    /// non-`Clone` one, 2) to `x` in the model and returns the callback runs
    /// it should cause, in order (SPEC §3.9).
    fn transition(&mut self, w: usize, x: u8) -> Vec<Expected> {
        let model = &mut self.model[w];
        let old = model.value.expect("watchers 0 and 2 hold Some");
        model.value = Some(x);
        model.log.push(Entry {
            old: Some(old),
            value: Some(x),
            // A non-`Clone` value is never cloned.
            clone_panics: w == 0 && self.clone_panics,
        });
        let version = model.version();
        let mut expected = Vec::new();
        for (tag, cb) in self.callbacks.iter_mut().enumerate() {
            if !cb.live || cb.watcher != w {
                continue;
            }
            match cb.kind {
                CbKind::Change {
                    reads,
                    removes_self,
                } => expected.push(Expected {
                    event: Event::Change {
                        tag,
                        old,
                        new: x,
                        seen: reads.then_some((x, version)),
                        removed_self: removes_self.then_some(true),
                    },
                    panics: cb.panics,
                    optional: self.clone_panics,
                }),
                CbKind::Value { target } if target == x => {
                    cb.live = false;
                    expected.push(Expected {
                        event: Event::Value { tag },
                        panics: cb.panics,
                        optional: false,
                    });
                }
                CbKind::Value { .. } => {}
            }
        }
        expected
    }

    /// SPEC §3.8: setting, waiting and waking do not allocate (for `V`, whose
    /// `Clone` does not). `allocs` is `None` where that does not apply.
    fn assert_no_allocation(&self, allocs: Option<u64>, at: &dyn fmt::Display) {
        if let (true, Some(n)) = (self.counting, allocs) {
            assert_eq!(n, 0, "{at}: allocated {n} times");
        }
    }

    /// Checks the callbacks a setter ran and what it returned; returns
    /// whether a callback removed itself (which may allocate).
    ///
    /// SPEC §3.9: the callbacks run in registration order, all of them even
    /// if some panic, and then the first panic resumes in the setter. The
    /// SPEC does not say what happens to an `on_change` callback when `Clone`
    /// panics while the setter copies the new value for it: such runs may be
    /// missing (but never reordered or wrong), and the setter may then resume
    /// that `Clone` panic.
    fn settle_callbacks(
        &mut self,
        expected: Vec<Expected>,
        result: Result<bool, Injected>,
        returns: bool,
        at: &Step,
    ) -> bool {
        let actual = take_events();
        let removed = actual.iter().any(|e| {
            matches!(
                e,
                Event::Change {
                    removed_self: Some(_),
                    ..
                }
            )
        });
        let mut actual_iter = actual.iter().peekable();
        let mut first_panic = None;
        let mut clone_may_panic = false;
        for e in &expected {
            clone_may_panic |= e.optional;
            if actual_iter.peek() == Some(&&e.event) {
                actual_iter.next();
                if e.panics && first_panic.is_none() {
                    first_panic = Some(Injected::Callback(event_tag(&e.event)));
                }
                if let Event::Change {
                    tag,
                    removed_self: Some(_),
                    ..
                } = e.event
                {
                    self.callbacks[tag].live = false;
                }
            } else {
                assert!(
                    e.optional,
                    "{at}: missing callback run {:?}; ran: {actual:?}",
                    e.event
                );
            }
        }
        assert!(
            actual_iter.next().is_none(),
            "{at}: callback runs {actual:?}, expected {:?}",
            expected.iter().map(|e| &e.event).collect::<Vec<_>>()
        );
        match result {
            Ok(r) => {
                assert_eq!(
                    first_panic, None,
                    "{at}: a callback panicked but the setter returned"
                );
                assert_eq!(r, returns, "{at}: setter result");
            }
            Err(payload) => assert!(
                Some(payload) == first_panic || (clone_may_panic && payload == Injected::Clone),
                "{at}: setter panicked with {payload:?}, expected {first_panic:?}"
            ),
        }
        removed
    }

    // --- reads ---

    fn get(&mut self, at: &Step) {
        let got = catch(|| MAIN.get().0);
        let got2 = catch(|| OPT.get().map(|v| v.0));
        if self.clone_panics {
            // A panicking `Clone` propagates from `get` (the watcher is
            // checked usable after every step).
            assert_eq!(got, Err(Injected::Clone), "{at}: get");
            let expected2 = if self.model[1].value.is_some() {
                Err(Injected::Clone)
            } else {
                Ok(None)
            };
            assert_eq!(got2, expected2, "{at}: get (Option watcher)");
        } else {
            assert_eq!(got.ok(), self.model[0].value, "{at}: get");
            assert_eq!(got2, Ok(self.model[1].value), "{at}: get (Option watcher)");
        }
        // SPEC §3.14: Debug shows the value and the version.
        let shown = format!("{MAIN:?}");
        let value = format!("{:?}", val(self.model[0].value.expect("Some")));
        let version = self.model[0].version().to_string();
        assert!(
            shown.contains(&value) && shown.contains(&version),
            "{at}: Debug {shown:?} lacks {value} or version {version}"
        );
    }

    // --- waits ---

    fn create_wait(&mut self, slot: usize, kind: Kind, immediate: bool) {
        self.drop_wait(slot);
        let fut = kind.future(immediate);
        let old = with_slots(|slots| slots[slot].replace(WaitSlot::new(fut, kind, immediate)));
        // Only a fresh future a hook created can be here (dropping it runs
        // nothing).
        drop(old);
    }

    fn poll_wait(&mut self, slot: usize, choice: WakerChoice, at: &Step) {
        let new_waker = match choice {
            WakerChoice::Same => None,
            WakerChoice::CloneActing(_) if !CRITICAL_SECTION => Some(WakerChoice::Fresh),
            choice => Some(choice),
        };
        let clone_hook = match new_waker {
            Some(WakerChoice::CloneActing(reentry)) => Some(reentry),
            _ => None,
        };
        let Some(polled) = poll_slot(slot, new_waker) else {
            return;
        };
        let what = self.settle_poll(slot, polled.id, polled.result, clone_hook, at);
        if let Some(what) = what {
            self.assert_no_allocation(polled.allocs, &format_args!("{at}: {what}"));
        }
    }

    /// Checks one poll result of the wait in `slot` against the model and
    /// advances its state; returns a description for messages.
    /// `clone_hook`: this poll passed a new waker whose `clone` re-enters.
    fn settle_poll(
        &self,
        slot: usize,
        id: u64,
        result: PollResult,
        clone_hook: Option<Reentry>,
        at: &dyn fmt::Display,
    ) -> Option<PollOf> {
        with_slots(|slots| {
            let wait = slots[slot].as_mut().filter(|w| w.id == id)?;
            let (kind, immediate, state) = (wait.kind, wait.immediate, wait.state);
            let total = wait.wake_count();
            let model = &self.model[kind.watcher()];
            let (expected, next) = match state {
                WaitState::Poisoned => {
                    let next = match result {
                        Ok(Poll::Pending) => WaitState::Poisoned,
                        _ => WaitState::Dead,
                    };
                    (result, next)
                }
                WaitState::Fresh => {
                    // SPEC §3.2/3.3: starts watching now; checks the current
                    // value first if immediate.
                    let start = model.log.len();
                    let verdict = if kind.checks_current(immediate) {
                        kind.verdict(None, model.value)
                    } else {
                        Verdict::No
                    };
                    match verdict {
                        // §3.10: a predicate panicking in its own first poll
                        // panics in that poll.
                        Verdict::Panics(p) => (Err(p), WaitState::Poisoned),
                        // Returning the current value needs a clone of it
                        // (not for a `wait_map`, §3.15).
                        Verdict::Yes if kind.clones() && self.clone_panics_for(model.value) => {
                            (Err(Injected::Clone), WaitState::Poisoned)
                        }
                        Verdict::Yes => (
                            Ok(Poll::Ready(kind.output(model.value))),
                            WaitState::Done { frozen: total },
                        ),
                        Verdict::No => (Ok(Poll::Pending), WaitState::Watching { start }),
                    }
                }
                WaitState::Watching { start } => match self.first_match_of(wait, start) {
                    None => (Ok(Poll::Pending), WaitState::Watching { start }),
                    Some(Outcome::Ready(v)) => {
                        (Ok(Poll::Ready(v)), WaitState::Done { frozen: total })
                    }
                    Some(Outcome::Panics(p)) => (Err(p), WaitState::Done { frozen: total }),
                },
                // A poisoned wait that panicked again is not polled by the
                // harness, but hooks of one step may poll it twice before
                // the step is settled: nothing is promised about it.
                WaitState::Dead => return None,
                WaitState::Done { .. } => unreachable!("finished waits are not polled"),
            };
            // A poll that registers clones a new waker under the lock; a
            // `clone` that panics makes the poll panic (SPEC §3.18), and the
            // SPEC says nothing more about that future.
            let (expected, next) = match clone_hook {
                Some(reentry) if reentry.panics() && expected == Ok(Poll::Pending) => {
                    (Err(Injected::Reentrant), WaitState::Poisoned)
                }
                _ => (expected, next),
            };
            let what = PollOf {
                slot,
                kind,
                immediate,
                state,
            };
            assert_eq!(result, expected, "{at}: {what}");
            wait.state = next;
            Some(what)
        })
    }

    /// Checks what hooks did during this step, in the order they did it.
    /// Polls ran after the step's transition was stored and matched (hooks
    /// run after the setter's walk, or without a transition), so the model's
    /// expectations are those of a poll right after the step, plus the
    /// transitions of the `Option` watcher that hooks made before it; wake
    /// counts are frozen only now, since the setter may still have woken a
    /// waiter after another waker completed it.
    fn settle_actions(&mut self, at: &Step) {
        loop {
            drop_deferred();
            let actions: Vec<Action> = ACTIONS.with(|a| a.borrow_mut().drain(..).collect());
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.settle_action(action, at);
            }
        }
    }

    fn settle_action(&mut self, action: Action, at: &Step) {
        match action {
            Action::Polled {
                slot,
                id,
                result,
                clone_hook,
            } => {
                self.settle_poll(slot, id, result, clone_hook, at);
            }
            Action::Dropped { slot, id } => {
                let wait = with_slots(|slots| {
                    if slots[slot].as_ref().is_some_and(|w| w.id == id) {
                        slots[slot].take()
                    } else {
                        // Replaced since (and checked then).
                        None
                    }
                });
                if let Some(wait) = wait {
                    assert_released(
                        &wait.wakers,
                        &format_args!("{at}: wait {slot} dropped by a hook"),
                    );
                }
            }
            Action::Created => {}
            Action::Read {
                watcher,
                value,
                version,
            } => {
                // SPEC §3.9/3.17: outside the lock, a hook may read the
                // watcher, and sees the step's transition.
                let model = &self.model[watcher];
                assert_eq!(
                    (Some(value), version),
                    (model.value, model.version()),
                    "{at}: value and version of watcher {watcher} read by a hook"
                );
            }
            Action::SetOpt { x, result } => {
                let result = result.expect("the hook's set returned");
                self.settle_set_opt(x, result, &format_args!("{at}: a hook's set"));
            }
            Action::StreamPolled { slot, id, result } => {
                self.settle_stream_poll(slot, id, result, None, at);
            }
            Action::StreamDropped { waker } => {
                assert_released(&[waker], &format_args!("{at}: stream dropped by a hook"));
            }
        }
    }

    fn blocking(&mut self, kind: Kind, immediate: bool, how: Block, at: &Step) {
        let model = &self.model[kind.watcher()];
        let verdict = if kind.checks_current(immediate) {
            kind.verdict(None, model.value)
        } else {
            Verdict::No
        };
        // SPEC §3.3: a matching current value completes a blocking wait at
        // once, even past its deadline; §2: a timeout too large for
        // `Instant` means no deadline.
        let expected = match verdict {
            Verdict::Panics(p) => Err(p),
            Verdict::Yes if kind.clones() && self.clone_panics_for(model.value) => {
                Err(Injected::Clone)
            }
            Verdict::Yes => Ok(Some(kind.output(model.value))),
            Verdict::No => Ok(None),
        };
        let how = match (how, verdict) {
            // These would block for good.
            (Block::TimeoutMax | Block::Wait, Verdict::No) => Block::TimeoutZero,
            (how, _) => how,
        };
        macro_rules! block {
            ($fut:expr) => {{
                let fut = $fut;
                match how {
                    Block::TimeoutZero => fut.wait_timeout(Duration::ZERO),
                    Block::DeadlinePassed => fut.wait_deadline(Instant::now()),
                    Block::TimeoutMax => fut.wait_timeout(Duration::MAX),
                    Block::Wait => Some(fut.wait()),
                }
            }};
        }
        let result = catch(|| match kind {
            Kind::For(a) => {
                block!(MAIN.wait_for(val(d(a))).immediate(immediate)).map(|v| Some(v.0))
            }
            Kind::ForNot(a) => {
                block!(MAIN.wait_for_not(val(d(a))).immediate(immediate)).map(|v| Some(v.0))
            }
            Kind::Until(pred) => block!(
                MAIN.wait_until(move |v: &V| pred.real(v.0, 0))
                    .immediate(immediate)
            )
            .map(|v| Some(v.0)),
            Kind::Change => block!(MAIN.wait_for_change()).map(|v| Some(v.0)),
            Kind::Some => block!(OPT.wait_for_some().immediate(immediate)).map(|v| Some(v.0)),
            Kind::OptChange => block!(OPT.wait_for_change()).map(|v| v.map(|v| v.0)),
            Kind::Map(f) => block!(
                MAIN.wait_map(move |v: &V| f.real(v.0, 0))
                    .immediate(immediate)
            )
            .map(|u| Some(u.0)),
            Kind::Transition(f) => {
                block!(MAIN.wait_transition(move |old: &V, new: &V| f.real(old, new)))
                    .map(|v| Some(v.0))
            }
            Kind::NcMap(f) => block!(
                NCW.wait_map(move |v: &Nc| f.real(v.0, 2))
                    .immediate(immediate)
            )
            .map(|u| Some(u.0)),
        });
        assert_eq!(
            result, expected,
            "{at}: blocking {how:?} on {kind:?} (immediate {immediate})"
        );
    }

    fn drop_wait(&mut self, slot: usize) {
        let Some(wait) = with_slots(|slots| slots[slot].take()) else {
            return;
        };
        let WaitSlot {
            fut, kind, wakers, ..
        } = wait;
        drop(fut);
        assert_released(&wakers, &format_args!("dropped wait {slot} ({kind:?})"));
    }

    // --- hooks under the lock ---

    fn with_reentering(&mut self, reentry: Reentry, at: &Step) {
        let result = catch(|| {
            MAIN.with(|v| {
                reenter(reentry, 0);
                v.0
            })
        });
        // SPEC §3.18: the reentrant call panics, and the panic leaves `with`
        // like any panic of its closure (the watcher is checked after the
        // step); a caught one changes nothing.
        let expected = if reentry.panics() {
            Err(Injected::Reentrant)
        } else {
            Ok(self.model[0].value.expect("Some"))
        };
        assert_eq!(result, expected, "{at}: with");
    }

    fn debug_reentering(&mut self, reentry: Reentry, at: &Step) {
        DEBUG_HOOK.set(Some(reentry));
        let shown = catch(|| format!("{MAIN:?}"));
        DEBUG_HOOK.set(None);
        if reentry.panics() {
            assert_eq!(shown, Err(Injected::Reentrant), "{at}: Debug");
            return;
        }
        let shown = shown.expect("Debug does not panic");
        let value = format!("V({})", self.model[0].value.expect("Some"));
        let version = self.model[0].version().to_string();
        assert!(
            shown.contains(&value) && shown.contains(&version),
            "{at}: Debug {shown:?} lacks {value} or version {version}"
        );
    }

    /// `NCW.with(f)`: `f` reads the value, after re-entering if asked to.
    fn nc_with(&mut self, reentry: Option<Reentry>, at: &Step) {
        let result = catch(|| {
            NCW.with(|v| {
                if let Some(reentry) = reentry {
                    reenter(reentry, 2);
                }
                v.0
            })
        });
        let expected = if reentry.is_some_and(Reentry::panics) {
            Err(Injected::Reentrant)
        } else {
            Ok(self.model[2].value.expect("Some"))
        };
        assert_eq!(result, expected, "{at}: with (non-Clone watcher)");
    }

    /// SPEC §3.14 for the non-`Clone` watcher: `Debug` needs no `Clone`.
    fn nc_debug(&mut self, reentry: Option<Reentry>, at: &Step) {
        DEBUG_HOOK.set(reentry);
        let shown = catch(|| format!("{NCW:?}"));
        DEBUG_HOOK.set(None);
        if reentry.is_some_and(Reentry::panics) {
            assert_eq!(shown, Err(Injected::Reentrant), "{at}: Debug");
            return;
        }
        let shown = shown.expect("Debug does not panic");
        let value = format!("Nc({})", self.model[2].value.expect("Some"));
        let version = self.model[2].version().to_string();
        assert!(
            shown.contains(&value) && shown.contains(&version),
            "{at}: Debug {shown:?} lacks {value} or version {version}"
        );
    }

    // --- callbacks ---

    fn on_change(
        &mut self,
        panics: bool,
        reads: bool,
        removes_self: bool,
        action: Option<Outside>,
        drop_action: Option<Outside>,
    ) {
        let tag = self.callbacks.len();
        let own: Arc<OnceLock<CallbackId>> = Arc::new(OnceLock::new());
        let own2 = own.clone();
        let on_drop = DropActor(drop_action);
        let id = MAIN.on_change(move |old: &V, new: &V| {
            let _moved_in = &on_drop;
            // SPEC §3.9: after the value is stored, outside the lock.
            let seen = reads.then(|| (MAIN.with(|v| v.0), MAIN.version()));
            let removed_self =
                removes_self.then(|| MAIN.remove_callback(*own2.get().expect("id stored")));
            record(Event::Change {
                tag,
                old: old.0,
                new: new.0,
                seen,
                removed_self,
            });
            if let Some(action) = action {
                act(action);
            }
            if panics {
                panic::panic_any(Injected::Callback(tag));
            }
        });
        own.set(id).expect("set once");
        REGISTERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((0, id));
        self.callbacks.push(MCallback {
            watcher: 0,
            id: Some(id),
            kind: CbKind::Change {
                reads,
                removes_self,
            },
            panics,
            live: true,
        });
    }

    fn on_value(&mut self, target: u8, panics: bool, at: &Step) {
        self.on_value_of(0, target, panics, at);
    }

    fn nc_on_value(&mut self, target: u8, panics: bool, at: &Step) {
        self.on_value_of(2, target, panics, at);
    }

    /// `on_value` on watcher `w` (0 or 2).
    fn on_value_of(&mut self, w: usize, target: u8, panics: bool, at: &Step) {
        let tag = self.callbacks.len();
        let f = move || {
            record(Event::Value { tag });
            if panics {
                panic::panic_any(Injected::Callback(tag));
            }
        };
        let result = if w == 0 {
            catch(|| MAIN.on_value(val(target), f))
        } else {
            catch(|| NCW.on_value(nc(target), f))
        };
        // SPEC §3.9: runs at once in the caller if the value is already the
        // target (a panic then propagates to the caller).
        let at_once = self.model[w].value == Some(target);
        let events = take_events();
        if at_once {
            assert_eq!(events, [Event::Value { tag }], "{at}: on_value at once");
            assert_eq!(
                result.is_err(),
                panics,
                "{at}: on_value at once: panic {panics}, got {result:?}"
            );
        } else {
            assert_eq!(events, [], "{at}: on_value ran early");
            assert!(result.is_ok(), "{at}: on_value panicked: {result:?}");
        }
        if let Err(payload) = result {
            assert_eq!(payload, Injected::Callback(tag), "{at}: on_value panic");
        }
        if let Ok(id) = result {
            REGISTERED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((w, id));
        }
        self.callbacks.push(MCallback {
            watcher: w,
            id: result.ok(),
            kind: CbKind::Value { target },
            panics,
            live: !at_once,
        });
    }

    fn remove(&mut self, i: u8, at: &Step) {
        if self.callbacks.is_empty() {
            return;
        }
        let tag = usize::from(i) % self.callbacks.len();
        let cb = &mut self.callbacks[tag];
        let Some(id) = cb.id else { return };
        // SPEC §2: true if it was still registered.
        let removed = remove_callback(cb.watcher, id);
        assert_eq!(
            removed, cb.live,
            "{at}: remove_callback of #{tag} ({:?})",
            cb.kind
        );
        cb.live = false;
    }

    // --- changes() ---

    fn create_stream(&mut self, slot: usize) {
        self.drop_stream(slot);
        let s = StreamSlot {
            stream: Some(MAIN.changes()),
            id: next_id(),
            waker: Counter::new(None, 0),
            seen: self.model[0].version(),
            registered: None,
            base: 0,
            poisoned: false,
            armed: false,
        };
        STREAMS.with(|streams| streams.borrow_mut()[slot] = Some(s));
    }

    fn drop_stream(&mut self, slot: usize) {
        if let Some(s) = STREAMS.with(|streams| streams.borrow_mut()[slot].take()) {
            let StreamSlot { stream, waker, .. } = s;
            drop(stream);
            assert_released(&[waker], &format_args!("dropped stream {slot}"));
        }
    }

    fn poll_stream(&mut self, slot: usize, at: &Step) {
        if let Some((id, result, allocs)) = poll_stream_slot(slot) {
            self.settle_stream_poll(slot, id, result, allocs, at);
        }
    }

    fn settle_stream_poll(
        &mut self,
        slot: usize,
        id: u64,
        result: Result<Poll<Option<u8>>, Injected>,
        allocs: Option<u64>,
        at: &Step,
    ) {
        let model = &self.model[0];
        let clone_panics = self.clone_panics;
        let checked = STREAMS.with(|streams| {
            let mut streams = streams.borrow_mut();
            let s = streams[slot].as_mut().filter(|s| s.id == id)?;
            if s.poisoned {
                // After a panicking poll the SPEC promises only a usable
                // watcher: the poll must not fail in any other way.
                return None;
            }
            s.base = s.waker.count();
            // SPEC §3.13: the latest value if there was a transition since
            // the last item (or creation), else pending.
            if model.version() != s.seen {
                if clone_panics && result == Err(Injected::Clone) {
                    s.poisoned = true;
                    return None;
                }
                assert_eq!(result, Ok(Poll::Ready(model.value)), "{at}: stream {slot}");
                s.seen = model.version();
                s.registered = None;
            } else {
                assert_eq!(result, Ok(Poll::Pending), "{at}: stream {slot}");
                s.registered = Some(model.version());
            }
            Some(())
        });
        if checked.is_some() {
            self.assert_no_allocation(allocs, at);
        }
    }
}

/// Names a poll in messages (formatted only when one is printed).
struct PollOf {
    slot: usize,
    kind: Kind,
    immediate: bool,
    state: WaitState,
}

impl fmt::Display for PollOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "poll of wait {} ({:?}, immediate {}) in state {:?}",
            self.slot, self.kind, self.immediate, self.state
        )
    }
}

/// SPEC §3.6/3.7: a dropped wait is unregistered and never woken; the
/// watcher keeps nothing of it, its wakers included.
fn assert_released(wakers: &[Arc<Counter>], what: &dyn fmt::Display) {
    for waker in wakers {
        assert_eq!(
            Arc::strong_count(waker),
            1,
            "{what}: the watcher still holds its waker"
        );
    }
}
