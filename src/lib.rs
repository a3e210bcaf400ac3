//! An observable value for async and blocking Rust: wait until it becomes X,
//! without ever missing a state on the way.
//!
//! A [`ValueWatcher<T>`] holds a value and a version counter. Any thread, task
//! or executor-less code can [`set`](ValueWatcher::set) it; tasks on any
//! executor (smol, async-std, tokio, embassy, `futures`, `pollster`) and
//! blocking threads wait for it to reach a value or satisfy a predicate.
//!
//! # The promise: no missed states
//!
//! Picture a connection going `Disconnected -> Connecting -> Connected ->
//! Closing -> Closed`, and a task that must run its clean-up when the
//! connection is `Closing`. With a watch channel that keeps only the latest
//! value (tokio's `watch`, embassy-sync's `Watch`, futures-signals), a task
//! that wakes up late sees `Closed` and never learns it was `Closing`. Here, a
//! waiter's predicate is evaluated by the *setter*, against each transition's
//! new value, under the lock that stores it; a matching waiter keeps a clone of
//! that value. So the task gets `Closing`, even if `Closed` was set before it
//! ran:
//!
//! ```
//! use futures_lite::future::{block_on, poll_once};
//! use value_watcher::ValueWatcher;
//!
//! #[derive(Clone, Copy, PartialEq, Debug)]
//! enum Conn { Disconnected, Connecting, Connected, Closing, Closed }
//!
//! let conn = ValueWatcher::new(Conn::Disconnected);
//!
//! // A waiter starts watching at its first poll.
//! let mut closing = Box::pin(conn.wait_for(Conn::Closing));
//! assert!(block_on(poll_once(&mut closing)).is_none());
//!
//! // Another thread runs the whole life cycle before the waiter runs again.
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         for state in [Conn::Connecting, Conn::Connected, Conn::Closing, Conn::Closed] {
//!             conn.set(state);
//!         }
//!     });
//! });
//! assert_eq!(conn.get(), Conn::Closed);
//! assert_eq!(block_on(closing), Conn::Closing); // not missed
//! ```
//!
//! And it keeps the promise in constant memory: each waiter holds at most one
//! captured value, there is no per-consumer queue, and nothing is allocated per
//! wait, per wake-up or per set (for a `Copy` type; a `String` is cloned once
//! per matching waiter).
//!
//! # Semantics in brief
//!
//! * A **transition** is a change to a value not equal (`PartialEq`) to the old
//!   one; each one bumps [`version`](ValueWatcher::version) by one. Setting an
//!   equal value does nothing at all.
//! * A wait future starts watching at its **first poll** (like every lazy
//!   future). By default it first checks the current value; with
//!   `.immediate(false)` it only considers transitions.
//! * From then on it sees every transition, in order, and completes with the
//!   first matching one. A setter racing the first poll is never lost: the
//!   check and the registration happen under the same lock as the store.
//! * A transition wakes **only** the waiters it matches. A thousand waiters
//!   for other values cost a setter one predicate call each, and no wake-up.
//! * Dropping a wait future at any point unregisters it in O(1) (**cancel
//!   safety**); no other waiter is affected.
//! * [Callbacks](ValueWatcher::on_change) run on the setting thread, outside
//!   the lock, after the waiters are woken.
//! * [`changes`](ValueWatcher::changes) is a `Stream` that yields the latest
//!   value after each burst of transitions (it never buffers).
//!
//! # Executors, threads and timeouts
//!
//! The futures need no runtime, timer or reactor: they work on any executor,
//! and a setter may run on any thread. With `std`, every wait future can also
//! block the calling thread ([`WaitFor::wait`], [`WaitFor::wait_timeout`],
//! [`WaitFor::wait_deadline`]; the same methods exist on every wait type).
//!
//! A timeout is your executor's timer racing the wait; the wait that loses is
//! dropped, which unregisters it. On tokio:
//!
//! ```
//! use std::time::Duration;
//! use value_watcher::ValueWatcher;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let w = ValueWatcher::new(0);
//! let late = tokio::time::timeout(Duration::from_millis(10), w.wait_for(1)).await;
//! assert!(late.is_err()); // nobody set 1
//! w.set(1);
//! let now = tokio::time::timeout(Duration::from_secs(30), w.wait_for(1)).await;
//! assert_eq!(now.unwrap(), 1);
//! # });
//! ```
//!
//! On smol (or anything with async-io's `Timer`):
//!
//! ```
//! use std::time::Duration;
//! use futures_lite::FutureExt;
//! use value_watcher::ValueWatcher;
//!
//! let w = ValueWatcher::new(0);
//! let result = smol::block_on(async {
//!     let timeout = async {
//!         smol::Timer::after(Duration::from_millis(10)).await;
//!         None
//!     };
//!     async { Some(w.wait_for(1).await) }.or(timeout).await
//! });
//! assert_eq!(result, None);
//! ```
//!
//! On embassy, inside an embassy task (embassy-time's timer queue needs
//! the embassy executor's wakers):
//! `embassy_time::with_timeout(Duration::from_millis(10), w.wait_for(1)).await`
//! returns `Err(TimeoutError)` if the value did not come in time
//! (`tests/timeouts.rs` runs it on the host executor).
//!
//! On a thread:
//!
//! ```
//! use std::time::Duration;
//! use value_watcher::ValueWatcher;
//!
//! let w = ValueWatcher::new(0);
//! assert_eq!(w.wait_for(1).wait_timeout(Duration::from_millis(10)), None);
//! assert_eq!(w.wait_for(0).wait_timeout(Duration::ZERO), Some(0)); // current value
//! ```
//!
//! # Memory ordering
//!
//! Everything is ordered by the watcher's lock: a set *happens-before* the
//! completion of every wait it satisfies, and before every callback it runs,
//! so data written before a `set` is visible to the task that wakes up from
//! it.
//!
//! # Hooks: where your code runs
//!
//! The value, version and waiter list are guarded by one lock, held only for
//! short, bounded work. This table lists every place the crate calls code of
//! yours, whether the lock is held, and what that code may do to *the same*
//! watcher (other watchers are always fine). `tests/reentrancy.rs` has a test
//! for each row, with both locks.
//!
//! | your code | lock held? | runs on | may use the same watcher? |
//! |-----------|------------|---------|---------------------------|
//! | `PartialEq::eq` of `T` | yes | the thread calling `set`, `set_if`, `modify`, `on_value` | no (†) |
//! | `Clone::clone` of `T` | yes | the caller of `get`, a polling task, a setter (for waiters and `on_change`) | no (†) |
//! | `Debug::fmt` of `T`, in the watcher's `Debug` | yes | the formatting thread | no (†) |
//! | wait predicates (`wait_until`) | yes | the first poll, then each setter | no (†) |
//! | closures of `with`, `set_if`, `modify` (consumed by the call, so what they captured by value is dropped there too) | yes | the caller | no (†) |
//! | `Waker::clone`, when a future registers or changes wakers | yes | the polling task | no (†) |
//! | `Drop` of `T` (old, rejected, rolled-back, captured or target values) | **no** | whoever lets go of the value: a setter after unlocking, a future's poll or drop, `remove_callback` | yes |
//! | `Drop` of predicates and callbacks | **no** | the future's drop; `remove_callback` or the setter that ran or fired it | yes |
//! | `Drop` of a waker | **no** | the poll that replaced it or completed its wait, the future's drop, the setter that woke it | yes |
//! | `Waker::wake` | **no** | the setter, after unlocking | yes |
//! | `on_change` and `on_value` callbacks | **no** | the setter, after unlocking and waking; `on_value` at once in its caller if the value already matches | yes: read, set, register and remove callbacks (itself included) |
//! | `Drop` of a wait future or `changes()` stream | takes the lock itself, unless a setter already chose it (then it needs none) | the dropping thread | from code outside the lock, yes; from a row marked (†) see below |
//!
//! (†) Using the watcher from inside its own lock is a programming error, and
//! never undefined behaviour. With the default spinlock it deadlocks. With
//! `critical-section` the reentrant call panics with a message that says so
//! (`value-watcher: a watcher was used from inside its own lock`), and that
//! panic travels like any other panic of that hook (see [Panics](#panics)).
//! Creating a wait future needs no lock and works there, as does dropping one
//! that was never polled; creating a `changes()` stream reads the version, so
//! it panics. A wait future or stream that a setter has already chosen and
//! woken needs no lock either (the setter left it in no list): polling such a
//! wait future there completes with its captured output, and dropping either
//! just works. Dropping a wait future or stream that is still registered
//! cannot unregister from there and must not unwind either (its memory would
//! be freed while still linked), so it aborts the process with a message.
//!
//! Nothing else of yours ever runs under the lock, on any path, panics
//! included.
//!
//! The default lock is a spinlock with bounded back-off (then, with `std`,
//! yielding the thread). Like every spinlock it can waste CPU time if the
//! holder is preempted, which the short critical sections make rare. It is
//! not interrupt-safe: on an embedded target where an interrupt handler sets
//! the value, enable the `critical-section` feature.
//!
//! # Panics
//!
//! A panic in user code never leaves a watcher locked or inconsistent. With
//! `std`, a setter isolates panics of other people's code: a waiter whose
//! predicate (or `T::clone` for it) panics gets that panic when its future is
//! next polled, and every callback runs even if one panics (the first panic is
//! resumed in the setter afterwards). Without `std` (no `catch_unwind`), a
//! panic unwinds through the setter; waiters already chosen are still woken,
//! waiters not yet checked miss that one transition. A waker's `Drop` that
//! panics in the poll completing its wait leaves that wait spent: the poll
//! panics, and a further poll panics as for any completed future. See each
//! method's `# Panics` section.
//!
//! # Features
//!
//! | feature            | default | what it does |
//! |--------------------|---------|--------------|
//! | `std`              | yes     | blocking `wait`, `wait_timeout`, `wait_deadline`; panic isolation in setters; yielding back-off |
//! | `critical-section` | no      | guard the core with a [`critical-section`](https://docs.rs/critical-section) instead of a spinlock, so interrupt handlers may set values |
//!
//! Without `std` the crate is `#![no_std]` and needs only `alloc` (for the
//! callback list; waiting and setting never allocate).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
mod blocking;
mod callbacks;
mod lock;
mod sync;
mod unwind;
mod wait;
mod waiters;
mod watcher;

/// The code shape for small targets: bare metal (`target_os = "none"`), or
/// any target built with `--cfg value_watcher_small` (CI runs the host test
/// suite and the loom models that way too, so the shape the firmware runs is
/// the shape the tests prove). It trades speed on many cores for flash: one
/// waiter lane, one copy of the wait futures' poll and drop step per `T`
/// (the matcher called through a pointer), a node's state read as its
/// owner's armed flag, chosen waiters woken one critical section at a time
/// (a wake batch without slots) instead of in batches of 32, and one
/// out-of-line copy each of the critical-section lock and its release.
/// Semantics do not change.
const SMALL: bool = cfg!(any(target_os = "none", value_watcher_small));

pub use callbacks::CallbackId;
pub use wait::{
    Changes, WaitFor, WaitForChange, WaitForNot, WaitForSome, WaitMap, WaitTransition, WaitUntil,
};
pub use watcher::ValueWatcher;

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// A value type that is `PartialEq` and nothing else.
#[allow(dead_code)]
#[derive(PartialEq)]
struct NotClone(u8);

/// Compile-time checks of the auto traits the docs promise.
#[allow(dead_code)]
fn assert_auto_traits() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ValueWatcher<alloc::string::String>>();
    send_sync::<ValueWatcher<core::cell::Cell<u8>>>();
    send::<WaitFor<'static, alloc::string::String>>();
    send::<WaitForNot<'static, u8>>();
    send::<WaitUntil<'static, u8, fn(&u8) -> bool>>();
    send::<WaitForChange<'static, u8>>();
    send::<WaitForSome<'static, u8>>();
    send::<Changes<'static, u8>>();
    send::<WaitMap<'static, u8, u16, fn(&u8) -> Option<u16>>>();
    send::<WaitTransition<'static, u8, fn(&u8, &u8) -> bool>>();
    // Values that are only `PartialEq` (no `Clone`).
    send_sync::<ValueWatcher<NotClone>>();
    send::<WaitMap<'static, NotClone, u8, fn(&NotClone) -> Option<u8>>>();
    send_sync::<CallbackId>();
    let _ = sync::<ValueWatcher<u8>>;
}
