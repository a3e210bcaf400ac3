//! The intrusive waiter list. All of the crate's pointer-based `unsafe` code
//! lives in this module.
//!
//! # Implementation notes
//!
//! Every wait future embeds a [`Waiter`]: a list [`Node`] followed by the
//! future's predicate (its [`Matcher`]). When a future is first polled and does
//! not complete at once, its node is appended to one of the watcher's `waiting`
//! lists (four lanes, filled round-robin; one on bare-metal targets).
//! The node lives inside the pinned future, so registering allocates nothing,
//! and a dropped future unlinks its node in O(1) through its own `prev`/`next`
//! links, without searching.
//!
//! A setter holds the watcher's lock for one whole transition: it stores the
//! value, then walks the `waiting` lanes (in lock-step, so the loads of four
//! nodes overlap) and asks each node's matcher about the new value.
//! A matcher that matches keeps its output (a clone of the value, what a
//! `wait_map` function extracted, nothing for a stream) inside itself, so the
//! output's type belongs to the waiter, not to the node; the node is
//! unlinked, marked chosen, and its waker is moved into the setter's
//! [`WakeBatch`]. Because the matcher sees the value *of that transition*
//! (and the one before it, for `wait_transition`), under the same lock that
//! stored it, no later transition can overwrite it first: this is how a
//! waiter for `Closing` gets `Closing` even if `Closed` follows at once.
//!
//! Wakers are never run under the lock. The batch is a fixed array on the
//! setter's stack; when more nodes match than it holds, the rest move to the
//! `queued` list with their wakers still inside, and the setter (after
//! unlocking and waking the first batch) takes them out batch by batch. A node
//! in `queued` already holds its output, so its future completes if polled
//! before the setter gets to it, and unlinks itself from `queued` if dropped.
//! In the small shape ([`crate::SMALL`]: bare metal) the batch has no slots
//! and the walk queues every node it chooses: the setter then wakes them one
//! critical section at a time (see [`WakeBatch`]).
//!
//! ## Node states
//!
//! | state     | in list   | `waker` | output or `panic` | who may touch it                |
//! |-----------|-----------|---------|-------------------|---------------------------------|
//! | `Idle`    | none      | none    | none              | the owning future only, no lock |
//! | `Waiting` | `waiting` | some    | none              | anyone holding the lock         |
//! | `Queued`  | `queued`  | some    | some              | anyone holding the lock         |
//! | `Ready`   | none      | none    | some              | its owner, lock or not (below)  |
//!
//! `Idle -> Waiting` happens in the future's poll; `Waiting -> Ready|Queued` in
//! a setter's walk; `Queued -> Ready` in a setter's drain; `Ready|Queued ->
//! Idle` when the future takes its outcome or is dropped. The node carries an
//! owner-only flag (`armed`) that is false exactly when the node is `Idle`, so
//! dropping a future that never registered needs no lock (in the small shape
//! the owner reads the state itself for this: only the owner moves a node
//! into or out of `Idle`).
//!
//! The owner's steps (take, register, cancel) need only the node
//! ([`RawWaiter`]), not the matcher's type, so one copy of them serves every
//! wait type of one `T`; the owner's first check calls the matcher through
//! the same type-erased pointer the setter uses (on bare-metal targets; on
//! hosts directly, inlined).
//!
//! The state is an atomic byte beside the lock-guarded fields. A setter
//! makes a node `Ready` with a `Release` store as its very last access to
//! the node (after unlinking it, writing its output and panic, and taking
//! its waker), and a `Ready` node is in no list, so no other setter can
//! reach it. A woken future that loads `Ready` with `Acquire` therefore
//! takes its outcome, and a dropped one returns, without the lock: the
//! setter has just written the lock's cache line, and the woken side no
//! longer pulls it back on the hand-off's critical path.
//!
//! ## The race that matters
//!
//! A future checks the current value and registers its node in one critical
//! section, and a setter stores a value and walks the list in one critical
//! section. So a transition either happens before the check (and the check
//! sees it) or after the registration (and the walk sees the node): there is
//! no window in which a wake-up can be lost.

use core::cell::Cell;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::ManuallyDrop;
#[cfg(not(any(target_os = "none", value_watcher_small)))]
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::Waker;

use core::sync::atomic::Ordering;

use crate::sync::{AtomicU8, UnsafeCell};
use crate::unwind::{self, Payload};

/// The predicate of one wait future, as the setter sees it, and the output
/// it keeps when it matches.
///
/// Implementors are the crate's private matcher types; `'static` because a
/// setter may call a leaked future's matcher at any later time. The output a
/// match captures (a clone of the value, what a `wait_map` function
/// extracted, nothing for a stream) lives in the matcher itself, so its type
/// belongs to the waiter and the node needs none: `T: Clone` is needed only
/// by the matchers that clone.
pub(crate) trait Matcher<T>: 'static {
    /// What the future yields.
    type Output;
    /// Is the transition from `old` to `new` one this waiter waits for? If
    /// so, keeps the output (for [`Matcher::take`]) and returns `true`. `old`
    /// is `None` for the first poll's check of the current value. Runs under
    /// the watcher's lock.
    fn offer(&mut self, old: Option<&T>, new: &T) -> bool;
    /// The output kept by the last matching [`Matcher::offer`].
    fn take(&mut self) -> Option<Self::Output>;
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum NodeState {
    Idle = 0,
    Waiting = 1,
    Queued = 2,
    Ready = 3,
}

/// The bits of [`Node::state`] that hold the [`NodeState`]; the lane is
/// above them.
const STATE_BITS: u8 = 0b11;

impl NodeState {
    fn from_u8(v: u8) -> Self {
        // With one lane the bits above the state are always zero: no mask
        // (two instructions at every load on Thumb).
        let v = if LANES == 1 { v } else { v & STATE_BITS };
        match v {
            0 => NodeState::Idle,
            1 => NodeState::Waiting,
            2 => NodeState::Queued,
            _ => NodeState::Ready,
        }
    }
}

type Link<T> = Option<NonNull<Node<T>>>;

/// The part of a node that the lock guards.
struct Inner<T> {
    prev: Link<T>,
    next: Link<T>,
    /// The owner's waker while the node is `Waiting` or `Queued`; `None`
    /// whenever it is `Idle` or `Ready`, because every step that leaves
    /// those states takes it (a setter's `offer` and drain, `cancel_locked`).
    /// So a node never has a waker to drop when its future is dropped (after
    /// `cancel_locked`), or when `push_waiting` stores one: `ManuallyDrop`
    /// spares every wait type's drop glue and the registration a waker drop
    /// that could never run. Were the invariant broken, a waker would leak;
    /// nothing unsound follows.
    waker: ManuallyDrop<Option<Waker>>,
    /// A panic of the matcher (or of a `Clone` it called) during a setter's
    /// walk, for the future to resume. Uninhabited without `std`.
    panic: Option<Payload>,
}

/// A list node, the first field of every [`Waiter`].
pub(crate) struct Node<T> {
    inner: UnsafeCell<Inner<T>>,
    /// A [`NodeState`] in the low two bits; while `Waiting`, the bits above
    /// say which of the `waiting` lanes holds the node (one byte for both
    /// keeps a node, and so every wait future, as small as before the state
    /// became atomic). Written only under the lock, except by the owner of
    /// an `Idle` or `Ready` node. The setter that makes a node `Ready` stores
    /// it last, with `Release`, after every other write to the node and its
    /// matcher, and never touches the node again; so an owner that loads
    /// `Ready` with `Acquire` may take the outcome without the lock.
    state: AtomicU8,
    /// Offers a value to the matcher of the `Waiter<T, M>` this node heads:
    /// a transition from `Some(old)` (a setter's walk), or the current value
    /// with `None` (the owner's first check, through this pointer on
    /// bare-metal targets, so that their poll needs no copy per matcher
    /// type).
    offer: Offer<T>,
    /// Owner-only: false exactly when the node is `Idle`. Never read by
    /// setters. Here rather than beside the matcher, so that the owner's
    /// steps ([`RawWaiter`]) need only the node's address. Unused in the
    /// small shape, where the owner reads `state` instead (see
    /// [`Node::is_armed`]): one field fewer to keep in step, at the price
    /// of an atomic load where hosts read a plain byte.
    armed: Cell<bool>,
    /// Owner-only, never read by setters: the wait checks the current value
    /// on its first poll. Here (in what would be padding) rather than in the
    /// future, so that the shared owner step reads it from the node it is
    /// handed, and every access is one short instruction on Thumb.
    immediate: bool,
    /// Owner-only: the wait completed, so a further poll is a bug in the
    /// caller. Beside `immediate` for the same reasons.
    done: Cell<bool>,
    /// Linked nodes are pointed to, so they must not move: this makes every
    /// future that embeds one `!Unpin`.
    _pinned: PhantomPinned,
}

impl<T> Node<T> {
    /// Whether the node is registered or holds an outcome: not `Idle`
    /// (owner-only view, see `armed`). In the small shape the state itself
    /// says so: only the owner makes a node `Idle` or takes it out of
    /// `Idle`, so its `Relaxed` load of its own node sees `Idle` exactly
    /// when it is (setters move a node only between the other states).
    fn is_armed(&self) -> bool {
        if crate::SMALL {
            return NodeState::from_u8(self.state.load(Ordering::Relaxed)) != NodeState::Idle;
        }
        self.armed.get()
    }

    /// Records what [`Node::is_armed`] returns from now on (owner only);
    /// nothing to do in the small shape, where the state says it.
    fn set_armed(&self, armed: bool) {
        if !crate::SMALL {
            self.armed.set(armed);
        }
    }
}

// SAFETY: the raw links are the only non-`Send` part of a node, and they are
// only read or written while holding the lock of the watcher whose list holds
// the node, whichever thread that is. The rest (waker, panic payload) is
// `Send`.
unsafe impl<T: Send> Send for Node<T> {}

/// Runs `f` on the lock-guarded part of `node`.
///
/// # Safety
///
/// `node` points to a live node, and the caller either holds the lock of the
/// watcher whose lists the node may be in, or owns the node while it is
/// `Idle`, or owns it and has loaded its `Ready` state with `Acquire` (see
/// [`Node::state`]). Calls must not nest on the same node.
unsafe fn with_inner<T, R>(node: NonNull<Node<T>>, f: impl FnOnce(&mut Inner<T>) -> R) -> R {
    // SAFETY: the caller guarantees the node is live; only a shared reference
    // to the node is formed, and the mutable access goes through its cell.
    let node = unsafe { node.as_ref() };
    // SAFETY: the caller's lock (or sole ownership) excludes every other
    // access to `inner`, and calls do not nest, so this `&mut` is unique.
    node.inner.with_mut(|inner| f(unsafe { &mut *inner }))
}

/// The state of `node`.
///
/// # Safety
///
/// `node` points to a live node.
#[inline]
unsafe fn state_of<T>(node: NonNull<Node<T>>, order: Ordering) -> NodeState {
    // SAFETY: the caller guarantees the node is live; `state` is atomic.
    NodeState::from_u8(unsafe { node.as_ref() }.state.load(order))
}

/// The lane of a `Waiting` node.
///
/// # Safety
///
/// `node` points to a live `Waiting` node, and the caller holds the lock.
#[inline]
unsafe fn lane_of<T>(node: NonNull<Node<T>>) -> usize {
    if LANES == 1 {
        // No load: there is only one lane (an atomic load stays even when
        // its value is unused).
        return 0;
    }
    // SAFETY: the caller guarantees the node is live; `state` is atomic, and
    // under the lock `Relaxed` sees the last store (made under the lock too).
    let lane = usize::from(unsafe { node.as_ref() }.state.load(Ordering::Relaxed) >> 2);
    // Always below `LANES` already; the modulo lets the compiler see it (one
    // `and`, or with a single lane a constant 0), so no bounds check follows.
    wrap_lane(lane)
}

/// Sets the state of `node` (and clears its lane).
///
/// # Safety
///
/// `node` points to a live node, and the caller may write its state (see
/// [`Node::state`]).
#[inline]
unsafe fn set_state<T>(node: NonNull<Node<T>>, state: NodeState, order: Ordering) {
    // SAFETY: the caller guarantees the node is live; `state` is atomic.
    unsafe { node.as_ref() }.state.store(state as u8, order);
}

/// Makes a node that a drain just took out of `queued` `Ready` and gives
/// back its waker, for the caller to wake after unlocking.
///
/// # Safety
///
/// `node` was linked in `queued` until just now (so it is live and
/// `Queued`), and the caller holds the lock. This is the caller's last
/// access to the node, as in `Waiters::offer`.
#[inline(always)]
unsafe fn release_queued<T>(node: NonNull<Node<T>>) -> Option<Waker> {
    // SAFETY: the caller guarantees the node is live and the lock held.
    let waker = unsafe {
        debug_assert_eq!(state_of(node, Ordering::Relaxed), NodeState::Queued);
        with_inner(node, |n| n.waker.take())
    };
    // SAFETY: as above; the `Release` store publishes the outcome to an
    // owner that takes it without the lock, and nothing touches the node
    // after it.
    unsafe { set_state(node, NodeState::Ready, Ordering::Release) };
    waker
}

// === impl List ===

/// A doubly linked list of nodes, guarded by the watcher's lock (every method
/// that changes it takes `&mut self`, which only the lock guard hands out).
///
/// Hosted shape: appended at the tail, so nodes are offered a value in
/// registration order. Small shape ([`crate::SMALL`]): no tail, and nodes
/// are pushed at the head (newest first), which takes the tail's upkeep out
/// of every push and unlink (flash); the order was never promised.
pub(crate) struct List<T> {
    head: Link<T>,
    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    tail: Link<T>,
}

// SAFETY: see `Node`: the pointers are only followed under the lock that
// guards the list itself.
unsafe impl<T: Send> Send for List<T> {}

impl<T> List<T> {
    const fn new() -> Self {
        Self {
            head: None,
            #[cfg(not(any(target_os = "none", value_watcher_small)))]
            tail: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Links `node` in: at the tail (hosted shape) or at the head (small
    /// shape).
    ///
    /// # Safety
    ///
    /// `node` is live, in no list, and stays at its address until it has been
    /// unlinked again (it is pinned, and its owner unlinks it before dropping).
    unsafe fn push(&mut self, node: NonNull<Node<T>>) {
        #[cfg(not(any(target_os = "none", value_watcher_small)))]
        let (prev, next) = (self.tail, None);
        #[cfg(any(target_os = "none", value_watcher_small))]
        let (prev, next) = (None, self.head);
        // SAFETY: the node is live and unlinked, and we hold the lock (`&mut self`).
        unsafe {
            with_inner(node, |n| {
                debug_assert!(n.prev.is_none() && n.next.is_none());
                n.prev = prev;
                n.next = next;
            });
        }
        #[cfg(not(any(target_os = "none", value_watcher_small)))]
        {
            match prev {
                // SAFETY: `prev` is the tail, linked in this list, hence live.
                Some(tail) => unsafe { with_inner(tail, |t| t.next = Some(node)) },
                None => self.head = Some(node),
            }
            self.tail = Some(node);
        }
        #[cfg(any(target_os = "none", value_watcher_small))]
        {
            if let Some(head) = next {
                // SAFETY: `next` is the head, linked in this list, hence live.
                unsafe { with_inner(head, |h| h.prev = Some(node)) };
            }
            self.head = Some(node);
        }
    }

    /// Unlinks `node` in O(1).
    ///
    /// # Safety
    ///
    /// `node` is linked in this list.
    unsafe fn unlink(&mut self, node: NonNull<Node<T>>) {
        // SAFETY: linked nodes are live; we hold the lock.
        let (prev, next) = unsafe { with_inner(node, |n| (n.prev.take(), n.next.take())) };
        match prev {
            // SAFETY: a linked node's neighbours are linked, hence live.
            Some(prev) => unsafe { with_inner(prev, |p| p.next = next) },
            None => {
                debug_assert_eq!(self.head, Some(node), "unlinked node not in this list");
                self.head = next;
            }
        }
        if let Some(next) = next {
            // SAFETY: as above.
            unsafe { with_inner(next, |x| x.prev = prev) };
        } else {
            // The last node: only the hosted list keeps a tail.
            #[cfg(not(any(target_os = "none", value_watcher_small)))]
            {
                debug_assert_eq!(self.tail, Some(node), "unlinked node not in this list");
                self.tail = prev;
            }
        }
    }

    fn pop_front(&mut self) -> Link<T> {
        let head = self.head?;
        // SAFETY: `head` is linked in this list.
        unsafe { self.unlink(head) };
        Some(head)
    }
}

// === impl Waiters ===

/// How many lists hold the waiting nodes. A setter walks them in lock-step,
/// so this many independent pointer chains are in flight at once: with
/// hundreds of waiters, whose nodes sit in separately allocated futures, the
/// walk is bound by the latency of loading each node, not by the predicate
/// calls. A power of two.
///
/// One in the small shape ([`crate::SMALL`], bare-metal targets): a
/// microcontroller without a data cache gains nothing from overlapping
/// loads, and one lane takes the lane bookkeeping out of its flash.
const LANES: usize = if crate::SMALL { 1 } else { 4 };

/// `lane % LANES`: with one lane a constant 0, which the compiler sees.
#[allow(clippy::modulo_one)] // `LANES` is 1 in the small shape
#[inline(always)]
fn wrap_lane(lane: usize) -> usize {
    lane % LANES
}

// A lane number lives in the six bits of `Node::state` above the state.
const _: () = assert!(LANES <= 1 << 6);

/// The lists of one watcher: nodes waiting for a transition, spread over
/// [`LANES`] lanes round-robin (one lane, newest first, in the small shape:
/// see [`List`]), and nodes a setter
/// has chosen but not woken yet (its wake batch was full).
///
/// `repr(C)`: the first lane's head is at offset 0, and `State` puts the
/// waiters first, so they sit at the guarded data's own address (see
/// `State`).
#[repr(C)]
pub(crate) struct Waiters<T> {
    waiting: [List<T>; LANES],
    /// The lane the next registered node goes to (with one lane there is
    /// no choice, and no byte spent on it).
    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    next_lane: u8,
    queued: List<T>,
}

impl<T> Waiters<T> {
    pub(crate) const fn new() -> Self {
        Self {
            waiting: [const { List::new() }; LANES],
            #[cfg(not(any(target_os = "none", value_watcher_small)))]
            next_lane: 0,
            queued: List::new(),
        }
    }

    /// Whether no node waits for a transition (nodes a setter has already
    /// chosen do not count).
    #[inline]
    pub(crate) fn is_waiting_empty(&self) -> bool {
        // One lane: one load (`opt-level = "z"` keeps even a one-round loop).
        if LANES == 1 {
            return self.waiting[0].is_empty();
        }
        self.waiting.iter().all(List::is_empty)
    }

    /// Offers one transition to `value` to every waiting node.
    ///
    /// Each matching node is unlinked, receives its outcome, and has its waker
    /// moved into `batch`, or, once `batch` is full, is moved to the `queued`
    /// list and `batch` is flagged (see [`WakeBatch::take_overflow`]): the
    /// caller must then call [`Waiters::drain_queued_locked`] after unlocking.
    ///
    /// The lanes are walked in lock-step: one node of each lane per round, so
    /// nodes are offered the value in registration order as long as none was
    /// cancelled; the small shape's one lane is walked newest first (the
    /// order is not promised).
    ///
    /// With `std`, a panic in a matcher or in `T::clone` is caught and
    /// delivered to that node's future; without `std` it unwinds out of here
    /// with the lists consistent (the node being checked is still linked).
    pub(crate) fn notify_locked(&mut self, old: &T, value: &T, batch: &mut WakeBatch) {
        if LANES == 1 {
            // One lane: a plain walk, without the lock-step bookkeeping.
            let mut cursor = self.waiting[0].head;
            while let Some(node) = cursor {
                // SAFETY: as below.
                cursor = unsafe { with_inner(node, |n| n.next) };
                // SAFETY: as below.
                unsafe { self.offer(0, node, old, value, batch) };
            }
            return;
        }
        let mut cursors: [Link<T>; LANES] = core::array::from_fn(|lane| self.waiting[lane].head);
        let mut live = cursors.iter().filter(|c| c.is_some()).count();
        let mut lane = 0;
        while live > 0 {
            if let Some(node) = cursors[lane] {
                // SAFETY: `node` is linked in `waiting[lane]` and we hold the
                // lock. Its successor is read before `offer` may unlink it.
                let next = unsafe { with_inner(node, |n| n.next) };
                cursors[lane] = next;
                live -= usize::from(next.is_none());
                // SAFETY: as above.
                unsafe { self.offer(lane, node, old, value, batch) };
            }
            lane = wrap_lane(lane + 1);
        }
    }

    /// Asks one waiting node about `value`; see [`Waiters::notify_locked`].
    ///
    /// # Safety
    ///
    /// `node` is linked in `self.waiting[lane]`, and the caller holds the lock.
    #[inline]
    unsafe fn offer(
        &mut self,
        lane: usize,
        node: NonNull<Node<T>>,
        old: &T,
        value: &T,
        batch: &mut WakeBatch,
    ) {
        // SAFETY: linked nodes are live.
        let offer = unsafe { node.as_ref().offer };
        // SAFETY: `node` heads the `Waiter` whose matcher `offer` was built
        // for, and the lock we hold is what serializes matcher calls.
        let panic = match unwind::catch(|| unsafe { offer(node, Some(old), value) }) {
            Ok(false) => return,
            Ok(true) => None,
            Err(payload) => Some(payload),
        };
        // SAFETY: the node is linked in this lane (the caller guarantees it).
        debug_assert_eq!(unsafe { lane_of(node) }, lane);
        // SAFETY: the caller guarantees `node` is linked in this lane.
        unsafe { self.waiting[lane].unlink(node) };
        debug_assert_eq!(
            // SAFETY: the node was linked, so it is live.
            unsafe { state_of(node, Ordering::Relaxed) },
            NodeState::Waiting,
        );
        // The small shape's batch is always full: it queues every chosen
        // node (see `WakeBatch`).
        let queue = batch.is_full();
        // SAFETY: we hold the lock; the node is now in no list.
        let waker = unsafe {
            with_inner(node, |n| {
                n.panic = panic;
                if queue { None } else { n.waker.take() }
            })
        };
        if queue {
            // SAFETY: lock held. A `Queued` node is touched only under the lock.
            unsafe { set_state(node, NodeState::Queued, Ordering::Relaxed) };
            // SAFETY: the node is live, pinned, and was just unlinked.
            unsafe { self.queued.push(node) };
            batch.overflowed = true;
        } else {
            // SAFETY: lock held. This is the last access to the node (its
            // output and panic are written above): from here on its owner may
            // take them without the lock.
            unsafe { set_state(node, NodeState::Ready, Ordering::Release) };
            if let Some(waker) = waker {
                batch.push(waker);
            }
        }
    }

    /// Appends an `Idle` node to the next lane and marks it `Waiting`.
    ///
    /// # Safety
    ///
    /// As [`List::push`], and the caller holds the lock.
    unsafe fn push_waiting(&mut self, node: NonNull<Node<T>>, waker: Waker) {
        // `% LANES` as in `lane_of`: always in range already, but this way
        // the compiler sees it and the index below needs no bounds check.
        #[cfg(not(any(target_os = "none", value_watcher_small)))]
        let lane = {
            let lane = wrap_lane(usize::from(self.next_lane));
            self.next_lane = wrap_lane(lane + 1) as u8;
            lane
        };
        #[cfg(any(target_os = "none", value_watcher_small))]
        let lane = 0;
        // SAFETY: the caller guarantees the node is live and in no list.
        unsafe {
            debug_assert_eq!(state_of(node, Ordering::Relaxed), NodeState::Idle);
            node.as_ref().state.store(
                NodeState::Waiting as u8 | (lane as u8) << 2,
                Ordering::Relaxed,
            );
            with_inner(node, |n| {
                debug_assert!(n.waker.is_none(), "an idle node holds no waker");
                // Not an assignment: that would drop the old `None` through a
                // waker drop call (see `Inner::waker`).
                core::mem::forget(n.waker.replace(waker));
            });
            self.waiting[lane].push(node);
        }
    }

    /// Unlinks a `Waiting` node from its lane.
    ///
    /// # Safety
    ///
    /// `node` is `Waiting` in these lists, and the caller holds the lock.
    unsafe fn unlink_waiting(&mut self, node: NonNull<Node<T>>) {
        // SAFETY: the caller guarantees the node is `Waiting`; lock held.
        let lane = unsafe { lane_of(node) };
        // SAFETY: a `Waiting` node is linked in the lane it records.
        unsafe { self.waiting[lane].unlink(node) };
    }

    /// Takes the first queued node out of `queued`, makes it `Ready` and
    /// returns its waker, for the caller to wake after unlocking; flags
    /// `batch` if queued nodes remain (small shape: see [`WakeBatch`]).
    #[cfg(any(target_os = "none", value_watcher_small))]
    pub(crate) fn pop_queued_locked(&mut self, batch: &mut WakeBatch) -> Option<Waker> {
        let node = self.queued.pop_front()?;
        // SAFETY: just taken out of `queued`; lock held.
        let waker = unsafe { release_queued(node) };
        batch.overflowed = !self.queued.is_empty();
        waker
    }

    /// Moves wakers of queued nodes into `batch` until it is full, and flags
    /// `batch` if queued nodes remain (hosted shape).
    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    pub(crate) fn drain_queued_locked(&mut self, batch: &mut WakeBatch) {
        // The batch was woken; if its last waker panicked, `wake_all` did not
        // get to rewind it, so rewind here.
        debug_assert!(batch.is_empty());
        batch.rewind();
        while !batch.is_full() {
            let Some(node) = self.queued.pop_front() else {
                return;
            };
            // SAFETY: just taken out of `queued`; lock held.
            let waker = unsafe { release_queued(node) };
            if let Some(waker) = waker {
                batch.push(waker);
            }
        }
        batch.overflowed = !self.queued.is_empty();
    }
}

// === impl Waiter ===

/// The part of a wait future that a setter can reach: a node and a matcher.
///
/// `repr(C)` puts `node` at offset 0, so a pointer to the node, derived from a
/// pointer to the whole `Waiter`, can be cast back to reach the matcher.
#[repr(C)]
pub(crate) struct Waiter<T, M> {
    node: Node<T>,
    matcher: UnsafeCell<M>,
}

/// A type-erased matcher call: [`offer`] of one `Waiter<T, M>`.
pub(crate) type Offer<T> = unsafe fn(NonNull<Node<T>>, Option<&T>, &T) -> bool;

/// The type-erased matcher call stored in every node.
///
/// # Safety
///
/// `node` was obtained from [`Waiter::node_ptr`] of a live `Waiter<T, M>`, and
/// the caller holds the lock of the watcher the node is registered with, or
/// of the watcher it will register with while it is still `Idle` (every
/// other user of the matcher either holds that lock too or owns an `Idle`
/// node, which no setter reaches).
unsafe fn offer<T, M: Matcher<T>>(node: NonNull<Node<T>>, old: Option<&T>, new: &T) -> bool {
    let waiter = node.cast::<Waiter<T, M>>().as_ptr();
    // SAFETY: `node` is at offset 0 of a `repr(C)` `Waiter<T, M>` and carries
    // the provenance of the whole waiter (see `node_ptr`), so the cast pointer
    // is valid; only the matcher field is borrowed.
    let matcher = unsafe { &(*waiter).matcher };
    // SAFETY: the lock serializes all matcher accesses (see above).
    matcher.with_mut(|m| unsafe { (*m).offer(old, new) })
}

impl<T, M: Matcher<T>> Waiter<T, M> {
    /// A waiter for `matcher`; `immediate`: its first poll checks the
    /// current value.
    pub(crate) fn new(matcher: M, immediate: bool) -> Self {
        Self {
            node: Node {
                inner: UnsafeCell::new(Inner {
                    prev: None,
                    next: None,
                    waker: ManuallyDrop::new(None),
                    panic: None,
                }),
                state: AtomicU8::new(NodeState::Idle as u8),
                offer: offer::<T, M>,
                armed: Cell::new(false),
                immediate,
                done: Cell::new(false),
                _pinned: PhantomPinned,
            },
            matcher: UnsafeCell::new(matcher),
        }
    }
}

impl<T, M> Waiter<T, M> {
    /// A pointer to the node with the provenance of the whole waiter.
    fn node_ptr(self: Pin<&Self>) -> NonNull<Node<T>> {
        NonNull::from(self.get_ref()).cast()
    }

    /// Whether the node is registered or holds an outcome (owner-only view).
    pub(crate) fn is_armed(&self) -> bool {
        self.node.is_armed()
    }

    /// The owner's handle on this waiter for the steps that do not depend
    /// on the matcher's type.
    pub(crate) fn raw(self: Pin<&Self>) -> RawWaiter<'_, T> {
        RawWaiter {
            node: self.node_ptr(),
            _waiter: PhantomData,
        }
    }

    /// Whether the first poll checks the current value.
    pub(crate) fn immediate(&self) -> bool {
        self.node.immediate
    }

    /// Sets [`Waiter::immediate`]; by `&mut`, so only before the first poll
    /// pins the waiter.
    pub(crate) fn set_immediate(&mut self, immediate: bool) {
        self.node.immediate = immediate;
    }
}

impl<T, M: Matcher<T>> Waiter<T, M> {
    /// This waiter type's matcher call, known at compile time.
    pub(crate) const OFFER: Offer<T> = offer::<T, M>;

    /// Takes the output a setter (or the owner's own first check,
    /// [`RawWaiter::check_current_locked`]) left in the matcher, after
    /// [`RawWaiter::take_ready`] (without the lock) or
    /// [`RawWaiter::take_outcome_locked`] (with it) returned the chosen node
    /// to `Idle`.
    pub(crate) fn take_output_idle(self: Pin<&Self>) -> Option<M::Output> {
        debug_assert!(!self.node.is_armed());
        // SAFETY: the node is `Idle` (not armed): no setter can reach it, so
        // the owner, holding `Pin<&Self>` of the only future that embeds it,
        // is the matcher's only user; a setter's writes to it happened
        // before its `Release` store that `take_ready` acquired (or before
        // it released the lock that `take_outcome_locked` held).
        self.matcher.with_mut(|m| unsafe { (*m).take() })
    }
}

/// What a node gives back when it leaves the lists: whether a setter chose
/// it, a panic payload, and the waker it still held. The payload and the
/// waker are user code to drop, so the caller drops this after releasing the
/// lock (SPEC §3.17).
///
/// A setter's output itself stays in the matcher, which the owner takes
/// under the lock or drops with the future (after unlocking).
#[must_use = "drop this after releasing the lock"]
pub(crate) struct Leftover {
    /// A setter chose the node: its output (or `panic`) is there to take.
    pub(crate) ready: bool,
    pub(crate) panic: Option<Payload>,
    pub(crate) waker: Option<Waker>,
}

impl Leftover {
    const NONE: Self = Self {
        ready: false,
        panic: None,
        waker: None,
    };

    /// Stores the waker a registration replaced, in a leftover that holds
    /// none (a node that was not chosen gives back none): not an
    /// assignment, which would compile a waker drop under the lock that
    /// could never run. Were it broken, a waker would leak; nothing unsound
    /// follows.
    pub(crate) fn set_replaced(&mut self, waker: Option<Waker>) {
        debug_assert!(self.waker.is_none());
        core::mem::forget(core::mem::replace(&mut self.waker, waker));
    }
}

/// A pinned [`Waiter`] seen by its owner without its matcher's type: its
/// node, with the provenance of the whole waiter (so that `offer` can reach
/// the matcher). The owner's steps live here, generic over `T` only, so
/// that every wait type of one `T` can share one copy of them (code size
/// on small targets).
///
/// Made only by [`Waiter::raw`], so for `'a` the node is live and pinned,
/// and the holder is its owner (the node's `armed` flag is its to use).
pub(crate) struct RawWaiter<'a, T> {
    node: NonNull<Node<T>>,
    _waiter: PhantomData<&'a Node<T>>,
}

// Not derived: the derive would require `T: Copy`.
impl<T> Clone for RawWaiter<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RawWaiter<'_, T> {}

impl<T> RawWaiter<'_, T> {
    /// Whether the node is registered or holds an outcome (owner-only view).
    pub(crate) fn is_armed(self) -> bool {
        // SAFETY: the node is live for `'a` (see `RawWaiter`).
        unsafe { self.node.as_ref() }.is_armed()
    }

    fn set_armed(self, armed: bool) {
        // SAFETY: as above.
        unsafe { self.node.as_ref() }.set_armed(armed);
    }

    /// The node's own copy of its matcher call (the same function as
    /// [`Waiter::OFFER`], read from memory).
    pub(crate) fn stored_offer(self) -> Offer<T> {
        // SAFETY: the node is live for `'a` (see `RawWaiter`); `offer` is
        // never written after construction.
        unsafe { self.node.as_ref().offer }
    }

    /// Whether the first poll checks the current value.
    pub(crate) fn immediate(self) -> bool {
        // SAFETY: as in `stored_offer`; written only before pinning.
        unsafe { self.node.as_ref().immediate }
    }

    /// Whether the wait completed: a further poll is a bug in the caller.
    pub(crate) fn is_done(self) -> bool {
        // SAFETY: the node is live for `'a` (see `RawWaiter`); `done` is a
        // field only the owner, which we are, ever reads or writes.
        unsafe { self.node.as_ref().done.get() }
    }

    /// Marks the wait completed.
    pub(crate) fn set_done(self) {
        // SAFETY: as in `is_done`.
        unsafe { self.node.as_ref().done.set(true) }
    }

    /// If a setter has made the node `Ready`, returns it to `Idle` without
    /// the lock and gives back its panic (`ready` set; no waker: the setter
    /// took it). `None` if the node is not armed or not `Ready` (`Waiting`,
    /// or `Queued` with its waker still inside): then the caller takes the
    /// lock.
    ///
    /// This is the woken future's fast path: it does not touch the watcher's
    /// lock, whose cache line the setter that woke it has just written.
    pub(crate) fn take_ready(self) -> Option<Leftover> {
        // An `Idle` node is not `Ready` either: in the small shape, where
        // `is_armed` is this same load, it is skipped.
        if !crate::SMALL && !self.is_armed() {
            return None;
        }
        let node = self.node;
        // SAFETY: the node is live (see `RawWaiter`: the caller's own
        // waiter). `Acquire` pairs with the setter's `Release` store of
        // `Ready`, its last access to the node.
        if unsafe { state_of(node, Ordering::Acquire) } != NodeState::Ready {
            return None;
        }
        // SAFETY: `Ready` was loaded with `Acquire`: the node is in no list,
        // no setter touches it again, and we own it (see `Node::state`).
        unsafe { set_state(node, NodeState::Idle, Ordering::Relaxed) };
        self.set_armed(false);
        // SAFETY: as above; the node is now `Idle` and owned by us.
        let panic = unsafe { with_inner(node, |n| n.panic.take()) };
        Some(Leftover {
            ready: true,
            panic,
            waker: None,
        })
    }

    /// Offers the current value to the matcher from the owning future (the
    /// first poll's check), through `offer`; true if it matches, and then
    /// the output is in the matcher ([`Waiter::take_output_idle`]).
    ///
    /// Only while the node is `Idle` (not armed), with the lock held.
    ///
    /// # Safety
    ///
    /// `offer` is this waiter's matcher call ([`Waiter::OFFER`] or
    /// [`RawWaiter::stored_offer`] of the waiter this handle came from).
    pub(crate) unsafe fn check_current_locked(
        self,
        offer: Offer<T>,
        _waiters: &mut Waiters<T>,
        value: &T,
    ) -> bool {
        debug_assert!(!self.is_armed());
        // SAFETY: `offer` belongs to this waiter (the caller guarantees it),
        // whose node is live (see `RawWaiter`) and has the provenance of the
        // whole waiter; it is `Idle`, so no setter reaches its matcher, and
        // the `&mut Waiters` proves the lock.
        unsafe { offer(self.node, None, value) }
    }

    /// If a setter chose the node, returns it to `Idle` and says so (`ready`,
    /// with a panic if the matcher panicked; the output is in the matcher).
    /// A node still `Waiting` gives back nothing, unless `cancel`: then it is
    /// unregistered too, and its waker given back (see
    /// [`RawWaiter::cancel_locked`]).
    pub(crate) fn take_outcome_locked(self, waiters: &mut Waiters<T>, cancel: bool) -> Leftover {
        // In the small shape the state is the armed flag: one load for both.
        if !crate::SMALL && !self.is_armed() {
            return Leftover::NONE;
        }
        let node = self.node;
        // SAFETY: the node is live (see `RawWaiter`); lock held.
        let state = unsafe { state_of(node, Ordering::Relaxed) };
        if crate::SMALL && state == NodeState::Idle {
            return Leftover::NONE;
        }
        debug_assert_ne!(state, NodeState::Idle, "armed node is idle");
        // Armed, so `Waiting`, `Queued` or `Ready`: tests rather than a
        // `match`, whose arms become a jump table on Thumb.
        let ready = state != NodeState::Waiting;
        if !ready {
            if !cancel {
                return Leftover::NONE;
            }
            // SAFETY: the state says which list holds the node.
            unsafe { waiters.unlink_waiting(node) };
        } else if state == NodeState::Queued {
            // SAFETY: as above.
            unsafe { waiters.queued.unlink(node) };
        }
        self.set_armed(false);
        // SAFETY: lock held; the node is now in no list.
        unsafe {
            set_state(node, NodeState::Idle, Ordering::Relaxed);
            with_inner(node, |n| Leftover {
                ready,
                panic: n.panic.take(),
                waker: n.waker.take(),
            })
        }
    }

    /// Makes sure the node is waiting and will wake `waker`; returns the
    /// waker it replaced, for the caller to drop after unlocking.
    ///
    /// Must not be called while the node holds an outcome (take it first).
    /// `Waker::clone` runs here, under the lock, only if the node has no
    /// waker yet or its waker would not wake the same task.
    pub(crate) fn register_locked(self, waiters: &mut Waiters<T>, waker: &Waker) -> Option<Waker> {
        let node = self.node;
        let armed = self.is_armed();
        if armed {
            // SAFETY: armed, so the node is live and registered; lock held.
            let same = unsafe {
                debug_assert_eq!(state_of(node, Ordering::Relaxed), NodeState::Waiting);
                with_inner(
                    node,
                    |n| matches!(&*n.waker, Some(old) if old.will_wake(waker)),
                )
            };
            if same {
                return None;
            }
        }
        // One clone call for both cases (code size). A panicking `clone`
        // changes nothing: the node keeps its old waker, or stays `Idle`.
        let waker = waker.clone();
        if armed {
            // SAFETY: as above.
            return unsafe { with_inner(node, |n| n.waker.replace(waker)) };
        }
        // SAFETY: not armed, so the node is `Idle` and in no list; it is
        // pinned (see `RawWaiter`), and the owning future's `Drop` calls
        // `cancel_locked` before its memory goes away. The `&mut Waiters`
        // proves the lock.
        unsafe { waiters.push_waiting(node, waker) };
        self.set_armed(true);
        None
    }

    /// Unregisters the node, whatever its state, and returns whether a setter
    /// had chosen it, its panic and the waker it held (for the caller to use,
    /// or to drop after unlocking).
    pub(crate) fn cancel_locked(self, waiters: &mut Waiters<T>) -> Leftover {
        self.take_outcome_locked(waiters, true)
    }
}

// === impl WakeBatch ===

/// How many wakers a setter collects under the lock before it must queue the
/// rest (hosted shape). Small under loom so models reach the queued path.
#[cfg(not(any(target_os = "none", value_watcher_small)))]
const BATCH: usize = if cfg!(value_watcher_loom) { 1 } else { 32 };

/// Wakers collected under the lock, woken after it is released. Dropping the
/// batch wakes what it holds, so a panic between collecting and waking
/// cannot lose a wake-up.
///
/// Hosted shape: up to [`BATCH`] wakers, collected by the walk itself; only
/// the matches beyond them wait in the `queued` list. The slots are
/// uninitialized until pushed (a setter creates a batch on every
/// transition, so zeroing 32 wakers each time would cost more than the rest
/// of an uncontended `set`).
///
/// Small shape ([`crate::SMALL`]): no slots, so the batch is always full.
/// The walk queues every node it chooses, and the setter then takes them out
/// of `queued` one at a time (`Waiters::pop_queued_locked`), each in its
/// own short critical section, waking each after releasing the lock. That
/// is one path through the walk instead of two and no slot bookkeeping
/// (flash), one flag of stack instead of a 32-waker array, and with
/// `critical-section`, interrupts are enabled between any two wakes.
/// The drain makes each node `Ready` before waking it, so its woken future
/// still takes the outcome without the lock; one polled before the setter
/// gets to it takes it from `queued` under the lock.
pub(crate) struct WakeBatch {
    /// Slots `start..len` hold wakers not yet woken.
    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    wakers: [MaybeUninit<Waker>; BATCH],
    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    start: usize,
    #[cfg(not(any(target_os = "none", value_watcher_small)))]
    len: usize,
    /// Set when matching nodes were left in the `queued` list (for lack of
    /// room, or in the small shape always).
    overflowed: bool,
}

impl WakeBatch {
    /// Whether the last walk or drain left nodes in the `queued` list; clears
    /// the flag.
    pub(crate) fn take_overflow(&mut self) -> bool {
        core::mem::take(&mut self.overflowed)
    }
}

#[cfg(any(target_os = "none", value_watcher_small))]
impl WakeBatch {
    #[inline]
    pub(crate) const fn new() -> Self {
        Self { overflowed: false }
    }

    /// Always: there are no slots.
    fn is_full(&self) -> bool {
        true
    }

    /// Always: nothing is ever collected.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        true
    }

    /// Never called: the batch is always full, so the walk queues instead.
    fn push(&mut self, _: Waker) {
        unreachable!("a batch without slots is always full")
    }

    /// Nothing to wake.
    pub(crate) fn wake_all(&mut self) {}
}

#[cfg(not(any(target_os = "none", value_watcher_small)))]
impl WakeBatch {
    #[inline]
    pub(crate) const fn new() -> Self {
        Self {
            wakers: [const { MaybeUninit::uninit() }; BATCH],
            start: 0,
            len: 0,
            overflowed: false,
        }
    }

    /// Empties the slots (all woken, or consumed by a `wake` that panicked).
    fn rewind(&mut self) {
        self.start = 0;
        self.len = 0;
    }

    fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// Whether no waker is waiting to be woken.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.len
    }

    fn push(&mut self, waker: Waker) {
        // `<` rather than `!is_full()`, so the index below needs no check.
        assert!(self.len < BATCH, "wake batch overflow");
        self.wakers[self.len].write(waker);
        self.len += 1;
    }

    /// Wakes and empties the batch. Call only without the lock held.
    pub(crate) fn wake_all(&mut self) {
        while self.start < self.len {
            // `len <= BATCH` always; `get` says so without a panic path.
            let Some(slot) = self.wakers.get(self.start) else {
                break;
            };
            // Advance first: if `wake` panics, this slot is already consumed
            // and `Drop` wakes only the rest.
            self.start += 1;
            // SAFETY: slots `start..len` were written by `push` and not read
            // since; advancing `start` above makes this the only read.
            let waker = unsafe { slot.assume_init_read() };
            waker.wake();
        }
        self.rewind();
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        // Normally empty already; after a panic it holds wakers to deliver.
        if !self.is_empty() {
            self.wake_all();
        }
    }
}
