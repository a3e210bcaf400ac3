//! `on_change` and `on_value` callbacks.
//!
//! # Implementation notes
//!
//! The callbacks of one watcher form a singly linked list of heap entries in
//! registration order, guarded by the watcher's own lock: no atomic reference
//! count, no compare-and-swap, so the list works on targets without either
//! (Cortex-M0, RISC-V `imc`). Registering allocates the entry; setting never
//! allocates.
//!
//! A setter that has callbacks to run does three things:
//!
//! 1. Under the lock, in the same critical section that stored the value, it
//!    compares each pending `on_value` target with the new value and *claims*
//!    the ones that match, by writing its own token (the address of a local
//!    of its `deliver` frame, unique among live setters) into the entry's
//!    `state`. It counts itself in `running` and remembers the first and last
//!    entry of the list as it is now.
//! 2. After unlocking (and waking the waiters), it walks from the first to the
//!    last entry it saw: it calls each live `on_change` callback, and each
//!    `on_value` entry that carries its own token, whose payload (target value
//!    and closure) it takes out: once claimed, nobody else touches the payload.
//! 3. It locks again to leave `running`. The last setter to leave frees the
//!    entries that are no longer live (removed or fired), after unlocking.
//!
//! ## Why the walk needs no lock
//!
//! While `running > 0` no entry is unlinked or freed, so the entries between a
//! setter's first and last are all alive. Each of them except the last had its
//! `next` link written before the setter looked, under the lock (only the
//! list's tail gets a new `next`, when something is appended), so the setter
//! reads links that nobody writes any more. An entry's closure and kind never
//! change after it is linked; the only field that does, `state`, is an atomic
//! that is only loaded and stored. A removal during a walk marks the entry
//! dead, and the walk skips it if it has not reached it yet.
//!
//! ## Entry states
//!
//! | `state`  | meaning                              | payload owned by        |
//! |----------|--------------------------------------|-------------------------|
//! | `LIVE`   | registered, can run                  | the list (lock)         |
//! | a token  | `on_value` claimed by that setter    | that setter, no lock    |
//! | `DEAD`   | removed, fired, or its target's `PartialEq` panicked | the list |
//!
//! With no setter running, a token can only be left by a setter that unwound
//! (without `std`), so every entry that is not `LIVE` is freed then.

use alloc::boxed::Box;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;

use crate::lock::Lock;
use crate::sync::{AtomicUsize, UnsafeCell};
use crate::unwind::{self, Payload};
use crate::watcher::State;

/// Identifies a callback registered with
/// [`on_change`](crate::ValueWatcher::on_change) or
/// [`on_value`](crate::ValueWatcher::on_value).
///
/// Pass it to [`remove_callback`](crate::ValueWatcher::remove_callback) to
/// unregister the callback. Dropping a `CallbackId` does nothing: the callback
/// stays registered. Ids are unique within one watcher; an id used with a
/// different watcher refers to nothing there (or to an unrelated callback),
/// so keep ids next to the watcher they came from.
///
/// # Examples
///
/// ```
/// use value_watcher::{CallbackId, ValueWatcher};
///
/// let w = ValueWatcher::new(0);
/// let id: CallbackId = w.on_change(|old, new| println!("{old} -> {new}"));
/// let copy = id; // `Copy`: keep one wherever it is convenient
/// assert!(w.remove_callback(copy));
/// assert!(!w.remove_callback(id)); // already removed
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackId(u64);

impl fmt::Debug for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CallbackId").field(&self.0).finish()
    }
}

pub(crate) type ChangeFn<T> = Box<dyn Fn(&T, &T) + Send + Sync>;
pub(crate) type OnceFn = Box<dyn FnOnce() + Send>;

/// `state` of an entry that can run.
const LIVE: usize = 0;
/// `state` of an entry that will never run again. No object can sit at the
/// last address, so no token equals it.
const DEAD: usize = usize::MAX;

/// Identifies one setter's claims: the address of a local in its frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token(usize);

impl Token {
    /// The token of the setter whose frame holds `anchor`. Distinct live
    /// frames (on any thread, or nested on one) give distinct tokens.
    pub(crate) fn of<A>(anchor: &A) -> Self {
        Token(core::ptr::from_ref(anchor) as usize)
    }
}

/// What an `on_value` entry holds until it runs or is removed.
struct OneShot<T> {
    target: T,
    f: OnceFn,
}

enum Kind<T> {
    Change(ChangeFn<T>),
    /// `None` once taken by the setter that claimed it or by a removal.
    Once(UnsafeCell<Option<OneShot<T>>>),
}

struct Entry<T> {
    id: u64,
    /// Written under the lock; see "Why the walk needs no lock".
    next: UnsafeCell<Link<T>>,
    /// `LIVE`, `DEAD` or a setter's token; loaded and stored, never swapped.
    state: AtomicUsize,
    kind: Kind<T>,
}

type Link<T> = Option<NonNull<Entry<T>>>;

impl<T> Entry<T> {
    fn new(kind: Kind<T>) -> Box<Self> {
        Box::new(Entry {
            id: 0,
            next: UnsafeCell::new(None),
            state: AtomicUsize::new(LIVE),
            kind,
        })
    }

    /// # Safety
    ///
    /// `entry` is alive, and no one writes its `next` concurrently: the caller
    /// holds the lock, or is a running setter and `entry` is not the last
    /// entry it saw.
    unsafe fn next(entry: NonNull<Self>) -> Link<T> {
        // SAFETY: alive per the caller; the read does not race (see above).
        unsafe { entry.as_ref().next.with(|next| *next) }
    }

    /// # Safety
    ///
    /// `entry` is alive, the caller holds the lock, and no running setter
    /// reads this link (it is the tail's, or no setter is running).
    unsafe fn set_next(entry: NonNull<Self>, next: Link<T>) {
        // SAFETY: as the caller guarantees, this write races with nothing.
        unsafe { entry.as_ref().next.with_mut(|slot| *slot = next) }
    }
}

/// Entries taken out of the list, freed (closures and target values dropped)
/// when this is dropped, which callers do after releasing the lock.
#[must_use = "drop this after releasing the lock"]
pub(crate) struct Garbage<T> {
    head: Link<T>,
    /// A payload taken out of an entry that stays linked for now.
    payload: Option<OneShot<T>>,
}

impl<T> Garbage<T> {
    const NONE: Self = Self {
        head: None,
        payload: None,
    };

    /// The chain alone (for a garbage that carries no payload), to keep it
    /// in a smaller place; [`Garbage::from_head`] turns it back.
    fn into_head(self) -> Link<T> {
        debug_assert!(self.payload.is_none());
        let head = self.head;
        core::mem::forget(self);
        head
    }

    fn from_head(head: Link<T>) -> Self {
        Self {
            head,
            payload: None,
        }
    }
}

impl<T> Drop for Garbage<T> {
    fn drop(&mut self) {
        while let Some(entry) = self.head {
            // SAFETY: the entries of a garbage chain were unlinked from the
            // list with no setter running, so this chain owns them; each came
            // from `Box::into_raw` in `push_locked`.
            let entry = unsafe { Box::from_raw(entry.as_ptr()) };
            self.head = entry.next.with(|next| {
                // SAFETY: we own the entry now.
                unsafe { *next }
            });
            drop(entry);
        }
    }
}

/// The callback registry of one watcher; lives in the lock-guarded state.
pub(crate) struct Callbacks<T> {
    head: Link<T>,
    tail: Link<T>,
    /// Live `on_change` entries (they need a clone of the new value).
    changes: usize,
    /// `on_value` entries still waiting for their value.
    pending: usize,
    /// Linked entries that are not live.
    dead: usize,
    /// Setters walking the list outside the lock right now.
    running: usize,
    /// How many ids were handed out; ids start at 1. Zero at first, like
    /// every other field, so a `static` watcher of a zero value is all zero
    /// bytes and lives in `.bss`, not in flash (`.data`).
    ids: u64,
    /// The code a setter runs for callbacks, set by the first registration:
    /// a program that never registers one does not link it (SPEC §5 code
    /// size). `T::clone` (for `on_change`) and `T::eq` (for `on_value`) are
    /// reached the same way, so neither bound is needed to fire callbacks.
    fire: Option<FireFn<T>>,
    clone: Option<fn(&T) -> T>,
    eq: Option<fn(&T, &T) -> bool>,
}

/// [`Callbacks::fire_locked`], through a pointer.
pub(crate) type FireFn<T> = fn(&mut Callbacks<T>, &T, &mut Option<T>, &mut Option<Firing<T>>);

/// [`Firing::run`], through a pointer.
type RunFn<T> = fn(&mut Firing<T>, &Lock<State<T>>, &T, &Option<T>, Option<Payload>);

// SAFETY: the entries behind the raw links are only reached under the lock
// that guards this registry, or by running setters as the module notes
// explain. An entry holds a `T` (moved between threads: `T: Send`), closures
// that are `Send` (a `FnOnce` runs on one thread) and `Send + Sync`
// (`on_change` callbacks may run on several setters' threads at once).
unsafe impl<T: Send> Send for Callbacks<T> {}

impl<T> Callbacks<T> {
    pub(crate) const fn new() -> Self {
        Self {
            head: None,
            tail: None,
            changes: 0,
            pending: 0,
            dead: 0,
            running: 0,
            ids: 0,
            fire: None,
            clone: None,
            eq: None,
        }
    }

    /// Prepares the callbacks of a transition, if any was ever registered:
    /// see [`Callbacks::fire_locked`].
    ///
    /// The result goes to `firing`, a slot in the setter's frame (written in
    /// place: returning it by value made a small target link `memcpy`).
    #[inline]
    pub(crate) fn fire(
        &mut self,
        new_value: &T,
        new: &mut Option<T>,
        firing: &mut Option<Firing<T>>,
    ) {
        if let Some(fire) = self.fire {
            fire(self, new_value, new, firing);
        }
    }

    /// Whether a transition has nothing to do here: no live callback and no
    /// entry left to free. A watcher whose one-shots have all fired is idle.
    ///
    /// The same as `changes == 0 && pending == 0 && dead == 0` (every linked
    /// entry is live or dead, and dead ones are unlinked when collected), in
    /// one load for the setter's fast path.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        debug_assert_eq!(
            self.head.is_none(),
            self.changes == 0 && self.pending == 0 && self.dead == 0
        );
        self.head.is_none()
    }

    fn next_id(&mut self) -> u64 {
        self.ids += 1;
        self.ids
    }

    /// An id that is never registered (for `on_value` that ran at once).
    pub(crate) fn unregistered_id_locked(&mut self) -> CallbackId {
        CallbackId(self.next_id())
    }

    /// Allocates an `on_change` entry (call without the lock).
    pub(crate) fn change_entry(f: ChangeFn<T>) -> NewEntry<T>
    where
        T: Clone,
    {
        NewEntry {
            entry: Entry::new(Kind::Change(f)),
            clone: Some(T::clone),
            eq: None,
        }
    }

    /// Allocates an `on_value` entry (call without the lock).
    pub(crate) fn once_entry(target: T, f: OnceFn) -> NewEntry<T>
    where
        T: PartialEq,
    {
        NewEntry {
            entry: Entry::new(Kind::Once(UnsafeCell::new(Some(OneShot { target, f })))),
            clone: None,
            eq: Some(T::eq),
        }
    }

    /// Appends an entry; also frees what is left to free.
    pub(crate) fn push_locked(&mut self, entry: NewEntry<T>) -> (CallbackId, Garbage<T>) {
        self.fire = Some(Self::fire_locked);
        self.clone = self.clone.or(entry.clone);
        self.eq = self.eq.or(entry.eq);
        let mut entry = entry.entry;
        let id = self.next_id();
        entry.id = id;
        match entry.kind {
            Kind::Change(_) => self.changes += 1,
            Kind::Once(_) => self.pending += 1,
        }
        let entry = NonNull::from(Box::leak(entry));
        match self.tail {
            // SAFETY: the tail is alive (linked), we hold the lock, and no
            // running setter reads the tail's link.
            Some(tail) => unsafe { Entry::set_next(tail, Some(entry)) },
            None => self.head = Some(entry),
        }
        self.tail = Some(entry);
        (CallbackId(id), self.collect_locked())
    }

    /// Unregisters `id`; returns whether it was still registered (an
    /// `on_value` that has fired is not).
    pub(crate) fn remove_locked(&mut self, id: CallbackId) -> (bool, Garbage<T>) {
        let mut cursor = self.head;
        while let Some(entry) = cursor {
            // SAFETY: linked entries are alive; we hold the lock.
            let e = unsafe { entry.as_ref() };
            if e.id == id.0 {
                if e.state.load(Relaxed) != LIVE {
                    break;
                }
                e.state.store(DEAD, Relaxed);
                self.dead += 1;
                let payload = match &e.kind {
                    Kind::Change(_) => {
                        self.changes -= 1;
                        None
                    }
                    Kind::Once(cell) => {
                        self.pending -= 1;
                        // SAFETY: a live one-shot's payload is only reached
                        // under the lock, which we hold.
                        cell.with_mut(|p| unsafe { (*p).take() })
                    }
                };
                let mut garbage = self.collect_locked();
                garbage.payload = payload;
                return (true, garbage);
            }
            // SAFETY: we hold the lock.
            cursor = unsafe { Entry::next(entry) };
        }
        (false, Garbage::NONE)
    }

    /// With no setter running, unlinks every entry that is not live, into a
    /// chain to free after unlocking.
    fn collect_locked(&mut self) -> Garbage<T> {
        if self.running > 0 || self.dead == 0 {
            return Garbage::NONE;
        }
        let mut garbage = Garbage::NONE;
        let mut garbage_tail: Link<T> = None;
        let mut prev: Link<T> = None;
        let mut cursor = self.head;
        while let Some(entry) = cursor {
            // SAFETY: linked entries are alive; we hold the lock, and no
            // setter is running, so no one else reads or writes any link.
            let next = unsafe { Entry::next(entry) };
            // SAFETY: as above.
            if unsafe { entry.as_ref() }.state.load(Relaxed) == LIVE {
                prev = Some(entry);
            } else {
                match prev {
                    // SAFETY: as above; `prev` is linked, hence alive.
                    Some(prev) => unsafe { Entry::set_next(prev, next) },
                    None => self.head = next,
                }
                // SAFETY: as above.
                unsafe { Entry::set_next(entry, None) };
                match garbage_tail {
                    // SAFETY: the garbage chain is ours alone.
                    Some(tail) => unsafe { Entry::set_next(tail, Some(entry)) },
                    None => garbage.head = Some(entry),
                }
                garbage_tail = Some(entry);
            }
            cursor = next;
        }
        self.tail = prev;
        self.dead = 0;
        garbage
    }

    /// Prepares the callbacks of one transition to `new_value`: claims the
    /// `on_value` entries it reaches and, if an `on_change` callback is live,
    /// clones the new value into `new` (a slot in the setter's frame, so that
    /// the clone is never dropped under the lock). Returns `None` if there is
    /// nothing to run or free.
    ///
    /// With `std`, a panic in a target's `PartialEq` or in the clone is
    /// caught, and resumed by [`Firing::run`] after the other callbacks ran
    /// (a target whose `PartialEq` panicked is dropped and never runs).
    /// Without `std` it unwinds from here with the registry consistent: after
    /// a panicking clone nothing is claimed; after a panicking `PartialEq` the
    /// entries claimed before it are dropped by a later setter, unrun.
    fn fire_locked(&mut self, new_value: &T, new: &mut Option<T>, firing: &mut Option<Firing<T>>) {
        if self.is_idle() {
            return;
        }
        // The setter's `new` slot marks the `on_value` entries it claims: a
        // slot in its frame, distinct for every live setter.
        let token = Token::of(new);
        let mut panic = None;
        // Clone first: without `std` a panicking clone then leaves every
        // target pending. (`changes > 0` only after an `on_change`
        // registration, which set `clone`.)
        if let (true, Some(clone)) = (self.changes > 0, self.clone) {
            match unwind::catch(|| clone(new_value)) {
                Ok(value) => *new = Some(value),
                Err(payload) => panic = Some(payload),
            }
        }
        let mut claimed = false;
        // `pending > 0` only after an `on_value` registration, which set `eq`.
        if let (true, Some(eq)) = (self.pending > 0, self.eq) {
            let mut cursor = self.head;
            while let Some(entry) = cursor {
                // SAFETY: linked entries are alive; we hold the lock.
                let e = unsafe { entry.as_ref() };
                // SAFETY: we hold the lock.
                cursor = unsafe { Entry::next(entry) };
                let Kind::Once(cell) = &e.kind else { continue };
                if e.state.load(Relaxed) != LIVE {
                    continue;
                }
                // SAFETY: a live one-shot's payload is only reached under the
                // lock, which we hold; the reference ends with this statement.
                let hit = cell.with(|p| match unsafe { &*p } {
                    Some(shot) => unwind::catch(|| eq(&shot.target, new_value)),
                    None => Ok(false),
                });
                match hit {
                    Ok(false) => continue,
                    Ok(true) => {
                        e.state.store(token.0, Relaxed);
                        claimed = true;
                    }
                    Err(payload) => {
                        e.state.store(DEAD, Relaxed);
                        panic.get_or_insert(payload);
                    }
                }
                self.pending -= 1;
                self.dead += 1;
            }
        }
        // Walk the list only if something runs; the walk's end frees what
        // is dead, else it is freed now (or by the setter still running).
        let walk = if self.changes > 0 || claimed {
            self.running += 1;
            Some((self.head, self.tail))
        } else {
            None
        };
        *firing = Some(Firing {
            walk,
            garbage: self.collect_locked().into_head(),
            token,
            panic,
            run: Firing::run_impl,
        });
    }
}

/// A new entry, allocated before the lock is taken, with what firing it
/// needs of `T`.
pub(crate) struct NewEntry<T> {
    entry: Box<Entry<T>>,
    clone: Option<fn(&T) -> T>,
    eq: Option<fn(&T, &T) -> bool>,
}

impl<T> NewEntry<T> {
    /// Whether an `on_value` entry's target equals `value` (runs `T::eq`).
    pub(crate) fn target_equals(&self, value: &T) -> bool
    where
        T: PartialEq,
    {
        match &self.entry.kind {
            // SAFETY: the entry is not linked yet: this is its only user.
            Kind::Once(cell) => cell.with(|p| match unsafe { &*p } {
                Some(shot) => *value == shot.target,
                None => false,
            }),
            Kind::Change(_) => false,
        }
    }

    /// Runs an `on_value` entry's closure at once, having dropped its target.
    pub(crate) fn run_now(self) {
        if let Kind::Once(cell) = &self.entry.kind {
            // SAFETY: not linked: this is its only user.
            if let Some(OneShot { target, f }) = cell.with_mut(|p| unsafe { (*p).take() }) {
                drop(target);
                drop(self);
                f();
            }
        }
    }
}

/// The callbacks of one transition, run by the setter after unlocking. The
/// setter counts in `running` until [`Firing::run`] (or its unwinding) ends.
#[must_use = "run the callbacks"]
pub(crate) struct Firing<T> {
    /// The first and last entries to visit, if anything runs.
    walk: Option<(Link<T>, Link<T>)>,
    /// A chain of entries unlinked under the lock, freed after it (see
    /// [`Garbage::into_head`]).
    garbage: Link<T>,
    token: Token,
    panic: Option<Payload>,
    run: RunFn<T>,
}

impl<T> Firing<T> {
    /// Gives up on running the callbacks (something unwound first, without
    /// `std`): frees what was unlinked, drops this setter's claims and leaves
    /// `running`, as an unwinding walk does.
    pub(crate) fn abandon(mut self, lock: &Lock<State<T>>) {
        drop(Garbage::from_head(self.garbage.take()));
        if let Some((first, last)) = self.walk {
            drop(Walk {
                lock,
                cursor: first,
                last,
                token: self.token,
            });
        }
    }

    /// Runs the callbacks; see [`Firing::run_impl`]. By reference: moving
    /// the callbacks into the call cost a small target a `memcpy`.
    #[inline]
    pub(crate) fn run(
        &mut self,
        lock: &Lock<State<T>>,
        old: &T,
        new: &Option<T>,
        earlier: Option<Payload>,
    ) {
        (self.run)(self, lock, old, new, earlier);
    }

    /// Runs the callbacks in registration order, then leaves `running`. With
    /// `std`, every callback runs even if an earlier one panicked, and the
    /// first panic is resumed at the end (`panic`, caught under the lock,
    /// comes first, then `earlier`, a waker's panic the setter caught).
    fn run_impl(
        &mut self,
        lock: &Lock<State<T>>,
        old: &T,
        new: &Option<T>,
        earlier: Option<Payload>,
    ) {
        let new = new.as_ref();
        let mut panic = self.panic.take().or(earlier);
        drop(Garbage::from_head(self.garbage.take()));
        let Some((first, last)) = self.walk else {
            if let Some(payload) = panic {
                unwind::resume(payload);
            }
            return;
        };
        // Leaves `running` however the walk ends; after an unwind it also
        // gives up the claims the walk did not reach.
        let mut walk = Walk {
            lock,
            cursor: first,
            last,
            token: self.token,
        };
        while let Some(entry) = walk.cursor {
            // SAFETY: `entry` lies between the first and last entries this
            // setter saw while `running` counts it, so it is alive.
            let e = unsafe { entry.as_ref() };
            // Advance first, so an unwind from the callback resumes after it.
            walk.cursor = if Some(entry) == walk.last {
                None
            } else {
                // SAFETY: alive (above), and not the last entry seen, so its
                // link was written before this setter looked and is stable.
                unsafe { Entry::next(entry) }
            };
            let result = match &e.kind {
                Kind::Change(f) => match new {
                    Some(new) if e.state.load(Relaxed) == LIVE => unwind::catch(|| f(old, new)),
                    _ => Ok(()),
                },
                Kind::Once(cell) if e.state.load(Relaxed) == self.token.0 => {
                    // SAFETY: the entry carries this setter's token, so this
                    // setter alone owns the payload (module notes).
                    let shot = cell.with_mut(|p| unsafe { (*p).take() });
                    e.state.store(DEAD, Relaxed);
                    match shot {
                        Some(OneShot { target, f }) => {
                            drop(target);
                            unwind::catch(f)
                        }
                        None => Ok(()),
                    }
                }
                Kind::Once(_) => Ok(()),
            };
            if let Err(payload) = result {
                panic.get_or_insert(payload);
            }
        }
        drop(walk);
        if let Some(payload) = panic {
            unwind::resume(payload);
        }
    }
}

/// A setter's walk over the callback list, as a guard.
struct Walk<'a, T> {
    lock: &'a Lock<State<T>>,
    /// The next entry to visit; `None` once past the last one.
    cursor: Link<T>,
    last: Link<T>,
    token: Token,
}

impl<T> Drop for Walk<'_, T> {
    fn drop(&mut self) {
        // After an unwind (without `std`), the claims not reached yet will
        // never run: mark them dead, so no later setter with an equal token
        // takes them for its own. Only this setter writes its token's
        // entries, so no lock is needed for that.
        while let Some(entry) = self.cursor {
            // SAFETY: as in `Firing::run`.
            let e = unsafe { entry.as_ref() };
            if e.state.load(Relaxed) == self.token.0 {
                e.state.store(DEAD, Relaxed);
            }
            self.cursor = if Some(entry) == self.last {
                None
            } else {
                // SAFETY: as in `Firing::run`.
                unsafe { Entry::next(entry) }
            };
        }
        let garbage = {
            let mut state = self.lock.lock();
            let callbacks = &mut state.callbacks;
            callbacks.running -= 1;
            callbacks.collect_locked()
        };
        drop(garbage);
    }
}

impl<T> Drop for Callbacks<T> {
    fn drop(&mut self) {
        // The watcher is going away: nobody runs or holds the list.
        self.running = 0;
        let mut cursor = self.head;
        while let Some(entry) = cursor {
            // SAFETY: linked entries are alive and ours alone now.
            cursor = unsafe { Entry::next(entry) };
            // SAFETY: as above.
            unsafe { entry.as_ref() }.state.store(DEAD, Relaxed);
            self.dead += 1;
        }
        drop(self.collect_locked());
    }
}
