//! `on_change` and `on_value` callbacks.
//!
//! The registered callbacks form an immutable, reference-counted snapshot in
//! registration order. A setter clones the `Arc` under the lock (no
//! allocation) and runs the snapshot after unlocking, so callbacks may use the
//! watcher freely; registering or removing builds a new snapshot (which may
//! allocate). An `on_value` target is also listed in the lock-guarded state,
//! where the setter compares it with each transition's new value under the
//! lock and marks it fired with that transition's version; the setter then
//! runs exactly the one-shots it marked, taking each out of its slot, so a
//! one-shot runs at most once even when setters race.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::lock::Lock;
use crate::unwind::{self, Payload};

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

type ChangeFn<T> = dyn Fn(&T, &T) + Send + Sync;
type OnceFn = Box<dyn FnOnce() + Send>;

/// `fired_at` value of a one-shot that will never run (removed, or its
/// target's `PartialEq` panicked).
const NEVER: u64 = u64::MAX;

/// The slot of one `on_value` callback.
struct OneShot {
    state: Lock<Shot>,
}

struct Shot {
    f: Option<OnceFn>,
    /// 0 while pending; else the version of the transition that fired it (or
    /// `NEVER`). Versions of transitions start at 1.
    fired_at: u64,
}

impl OneShot {
    fn is_pending(&self) -> bool {
        self.state.lock().fired_at == 0
    }
}

enum Entry<T> {
    Change(Arc<ChangeFn<T>>),
    Once(Arc<OneShot>),
}

struct Callback<T> {
    id: u64,
    entry: Entry<T>,
}

// Not derived: a derive would demand `T: Clone`, but only `Arc`s are cloned.
impl<T> Clone for Callback<T> {
    fn clone(&self) -> Self {
        let entry = match &self.entry {
            Entry::Change(f) => Entry::Change(f.clone()),
            Entry::Once(shot) => Entry::Once(shot.clone()),
        };
        Self { id: self.id, entry }
    }
}

/// An `on_value` target still waiting for its value (lock-guarded).
struct Target<T> {
    value: T,
    shot: Arc<OneShot>,
}

type Snapshot<T> = Arc<[Callback<T>]>;

/// Values to drop after the lock is released (user closures and values).
#[must_use = "drop this after releasing the lock"]
pub(crate) struct Garbage<T> {
    _snapshot: Option<Snapshot<T>>,
    _targets: Vec<Target<T>>,
    _f: Option<OnceFn>,
}

/// The callback registry of one watcher; lives in the lock-guarded state.
pub(crate) struct Callbacks<T> {
    snapshot: Option<Snapshot<T>>,
    targets: Vec<Target<T>>,
    /// How many `Change` entries the snapshot holds (they need a clone of the
    /// new value).
    changes: usize,
    next_id: u64,
}

impl<T> Callbacks<T> {
    pub(crate) const fn new() -> Self {
        Self {
            snapshot: None,
            targets: Vec::new(),
            changes: 0,
            next_id: 1,
        }
    }

    /// Whether no callback is registered.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.snapshot.is_none()
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// An id that is never registered (for `on_value` that ran at once).
    pub(crate) fn unregistered_id_locked(&mut self) -> CallbackId {
        CallbackId(self.next_id())
    }

    pub(crate) fn add_change_locked(&mut self, f: Arc<ChangeFn<T>>) -> (CallbackId, Garbage<T>) {
        let id = self.next_id();
        let garbage = self.rebuild_locked(
            None,
            Some(Callback {
                id,
                entry: Entry::Change(f),
            }),
        );
        (CallbackId(id), garbage)
    }

    pub(crate) fn add_once_locked(&mut self, value: T, f: OnceFn) -> (CallbackId, Garbage<T>) {
        let shot = Arc::new(OneShot {
            state: Lock::new(Shot {
                f: Some(f),
                fired_at: 0,
            }),
        });
        let id = self.next_id();
        self.targets.push(Target {
            value,
            shot: shot.clone(),
        });
        let garbage = self.rebuild_locked(
            None,
            Some(Callback {
                id,
                entry: Entry::Once(shot),
            }),
        );
        (CallbackId(id), garbage)
    }

    /// Unregisters `id`; returns whether it was still registered (an
    /// `on_value` that has fired is not).
    pub(crate) fn remove_locked(&mut self, id: CallbackId) -> (bool, Garbage<T>) {
        let Some(entry) = self
            .snapshot
            .iter()
            .flat_map(|s| s.iter())
            .find(|c| c.id == id.0)
        else {
            return (
                false,
                Garbage {
                    _snapshot: None,
                    _targets: Vec::new(),
                    _f: None,
                },
            );
        };
        let (was_live, f) = match &entry.entry {
            Entry::Change(_) => (true, None),
            Entry::Once(shot) => {
                let mut state = shot.state.lock();
                if state.fired_at == 0 {
                    state.fired_at = NEVER;
                    (true, state.f.take())
                } else {
                    (false, None)
                }
            }
        };
        let mut garbage = self.rebuild_locked(Some(id.0), None);
        garbage._f = f;
        (was_live, garbage)
    }

    /// Builds the next snapshot: the current one without `remove` and without
    /// one-shots that can no longer run, plus `add`. Also drops targets of
    /// such one-shots.
    fn rebuild_locked(&mut self, remove: Option<u64>, add: Option<Callback<T>>) -> Garbage<T> {
        let old = self.snapshot.take();
        let kept = old.iter().flat_map(|s| s.iter()).filter(|c| {
            Some(c.id) != remove
                && match &c.entry {
                    Entry::Change(_) => true,
                    Entry::Once(shot) => shot.is_pending(),
                }
        });
        let next: Snapshot<T> = kept.cloned().chain(add).collect();
        self.changes = next
            .iter()
            .filter(|c| matches!(c.entry, Entry::Change(_)))
            .count();
        self.snapshot = (!next.is_empty()).then_some(next);

        let mut spent = Vec::new();
        let mut i = 0;
        while i < self.targets.len() {
            if self.targets[i].shot.is_pending() {
                i += 1;
            } else {
                spent.push(self.targets.swap_remove(i));
            }
        }
        Garbage {
            _snapshot: old,
            _targets: spent,
            _f: None,
        }
    }

    /// Prepares the callbacks of one transition to `new_value` (`version`):
    /// marks the `on_value` targets it reaches and clones what the callbacks
    /// need. Returns `None` if no callback has to run.
    ///
    /// With `std`, a panic in a target's `PartialEq` or in the clone of `new`
    /// is caught and resumed by [`Firing::run`] after the other callbacks ran;
    /// without `std` it unwinds from here: after a panicking clone nothing is
    /// marked; after a panicking `PartialEq` the targets compared before it are
    /// marked but do not run.
    pub(crate) fn fire_locked(&mut self, new_value: &T, version: u64) -> Option<Firing<T>>
    where
        T: Clone + PartialEq,
    {
        let snapshot = self.snapshot.as_ref()?;
        let mut panic = None;
        // Clone first: without `std` a panicking clone then leaves every
        // target pending instead of marked for a firing that never runs.
        let new = if self.changes > 0 {
            match unwind::catch(|| new_value.clone()) {
                Ok(new) => Some(new),
                Err(payload) => {
                    panic = Some(payload);
                    None
                }
            }
        } else {
            None
        };
        let mut fired = false;
        for target in &self.targets {
            let mut shot = target.shot.state.lock();
            if shot.fired_at != 0 {
                continue;
            }
            match unwind::catch(|| target.value == *new_value) {
                Ok(false) => {}
                Ok(true) => {
                    shot.fired_at = version;
                    fired = true;
                }
                Err(payload) => {
                    shot.fired_at = NEVER;
                    panic.get_or_insert(payload);
                }
            }
        }
        if !fired && new.is_none() && panic.is_none() {
            return None;
        }
        Some(Firing {
            snapshot: snapshot.clone(),
            new,
            version,
            panic,
        })
    }
}

/// The callbacks of one transition, run by the setter after unlocking.
pub(crate) struct Firing<T> {
    snapshot: Snapshot<T>,
    new: Option<T>,
    version: u64,
    panic: Option<Payload>,
}

impl<T> Firing<T> {
    /// Runs the callbacks in registration order. With `std`, every callback
    /// runs even if an earlier one panicked, and the first panic is resumed
    /// at the end (`panic`, caught under the lock, comes first, then `earlier`, a
    /// waker's panic the setter caught).
    pub(crate) fn run(self, old: &T, earlier: Option<Payload>) {
        let Firing {
            snapshot,
            new,
            version,
            mut panic,
        } = self;
        if panic.is_none() {
            panic = earlier;
        }
        for callback in snapshot.iter() {
            let result = match &callback.entry {
                Entry::Change(f) => match &new {
                    Some(new) => unwind::catch(|| f(old, new)),
                    None => Ok(()),
                },
                Entry::Once(shot) => {
                    let f = {
                        let mut state = shot.state.lock();
                        if state.fired_at == version {
                            state.f.take()
                        } else {
                            None
                        }
                    };
                    match f {
                        Some(f) => unwind::catch(f),
                        None => Ok(()),
                    }
                }
            };
            if let Err(payload) = result {
                panic.get_or_insert(payload);
            }
        }
        drop((snapshot, new));
        if let Some(payload) = panic {
            unwind::resume(payload);
        }
    }
}
