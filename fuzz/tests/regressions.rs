//! Fixed programs run through the differential harness: scenarios the fuzzer
//! must keep passing, and regressions it found.
#![cfg(panic = "unwind")]

use value_watcher_fuzz::{
    Block, Cond, CountingAllocator, EdgeFn, Inside, Kind, MapFn, Op, Outside, Pred, Program,
    Reentry, WakerChoice, run,
};

/// Turns on the harness's allocation checks (SPEC §3.8).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn program(init: u8, ops: &[Op]) -> Program {
    Program {
        init,
        init_opt: None,
        init_nc: 0,
        ops: ops.to_vec(),
    }
}

fn poll(slot: u8) -> Op {
    Op::Poll {
        slot,
        waker: WakerChoice::Same,
    }
}

/// The connection scenario (SPEC §3.2): a waiter polled once sees 3 although
/// the value has moved on to 4.
#[test]
fn transient_state_is_not_missed() {
    run(&program(
        0,
        &[
            Op::Wait {
                slot: 0,
                kind: Kind::For(3),
                immediate: true,
            },
            poll(0),
            Op::Set(1),
            Op::Set(2),
            Op::Set(3),
            Op::Set(4),
            poll(0),
        ],
    ));
}

/// 40 waiters match one transition, more than a wake batch holds: the
/// setter queues the rest. The first waker it wakes drops one queued waiter
/// and polls another before the setter drains the queue.
#[test]
fn queued_waiters_dropped_and_polled_from_a_waker() {
    let mut ops = vec![
        Op::WaitMany {
            slot: 0,
            count: 40,
            kind: Kind::Change,
            immediate: true,
        },
        Op::Poll {
            slot: 0,
            waker: WakerChoice::Acting(Outside::Drop(39)),
        },
        Op::Poll {
            slot: 1,
            waker: WakerChoice::Acting(Outside::Poll(35)),
        },
        Op::Poll {
            slot: 2,
            waker: WakerChoice::Acting(Outside::Drop(2)),
        },
        Op::Set(1),
    ];
    ops.extend((0..40).map(poll));
    run(&program(0, &ops));
}

/// 72 waiters match one transition: the setter wakes them in three batches,
/// draining its queue twice after unlocking; a waker of the first batch
/// drops a waiter queued for the third.
#[test]
fn three_wake_batches() {
    let mut ops = vec![
        Op::WaitMany {
            slot: 0,
            count: 72,
            kind: Kind::ForNot(0),
            immediate: true,
        },
        Op::Poll {
            slot: 3,
            waker: WakerChoice::Acting(Outside::Drop(70)),
        },
        Op::Set(5),
    ];
    ops.extend((0..72).map(poll));
    run(&program(0, &ops));
}

/// Found by the fuzzer: a `changes()` stream whose poll panicked in
/// `T::clone` (after a transition woke it) trips the debug assertion
/// `stale.is_none()` in `Changes::poll_next` (src/wait.rs) on its next poll.
/// `poll_next` records the new version as seen before cloning the value, so
/// the panic leaves the waiter's signal behind with the version already
/// consumed (and, without debug assertions, loses that item).
#[test]
fn stream_polled_again_after_a_clone_panic() {
    run(&program(
        0,
        &[
            Op::Stream(0),
            Op::PollStream(0),
            Op::Set(1),
            Op::ClonePanics(true),
            Op::PollStream(0),
            Op::ClonePanics(false),
            Op::PollStream(0),
        ],
    ));
}

/// Issue 9, the use-after-free under the `critical-section` lock: a
/// `wait_until` predicate, running under the lock during a setter's walk,
/// drops another wait future that is registered. Its `Drop` must lock to
/// unlink the node; the reentrant lock panicked, the panic unwound out of
/// `Drop` before the node was unlinked, the future's memory was freed while
/// linked, and the next `set` walked freed memory (AddressSanitizer:
/// heap-use-after-free in `notify_locked`).
///
/// The harness drops a registered future from under the lock only with the
/// `under-lock-drop` feature (since the fix, such a `Drop` aborts the
/// process by design); without it the predicate's drop is skipped, and this
/// checks that the rest of the scenario matches the model on both lock back
/// ends.
#[test]
fn predicate_drops_a_registered_future_during_a_walk() {
    run(&program(
        0,
        &[
            Op::Wait {
                slot: 0,
                kind: Kind::For(5),
                immediate: true,
            },
            poll(0),
            Op::Wait {
                slot: 1,
                kind: Kind::Until(Pred::Reenters(
                    1,
                    1,
                    Reentry {
                        act: Inside::DropWait(0),
                        propagate: false,
                    },
                )),
                immediate: true,
            },
            poll(1),
            Op::Set(1),
            Op::Set(2),
            Op::Set(5),
            poll(0),
            poll(1),
        ],
    ));
}

/// The same use-after-free reached without any under-lock drop in the
/// program: a waker whose `Drop` drops a registered wait future. Before the
/// fix, `register_locked` dropped the waker it replaced under the lock: with
/// `critical-section` the future's `Drop` panicked there (reentrant lock)
/// and left its freed node linked; with the spinlock it deadlocked. Since
/// the fix (SPEC §3.17) the old waker is dropped after unlocking, and the
/// future is unregistered normally.
#[test]
fn replaced_waker_drops_a_registered_future() {
    run(&program(
        0,
        &[
            Op::Wait {
                slot: 0,
                kind: Kind::For(5),
                immediate: true,
            },
            poll(0),
            Op::Wait {
                slot: 1,
                kind: Kind::For(6),
                immediate: true,
            },
            Op::Poll {
                slot: 1,
                waker: WakerChoice::DropActing(Outside::Drop(0)),
            },
            Op::Poll {
                slot: 1,
                waker: WakerChoice::Fresh,
            },
            Op::Set(5),
            Op::Set(6),
            poll(1),
        ],
    ));
}

/// Found by the fuzzer (critical-section build with `under-lock-drop`, on
/// the code before the fix of issue 9; AddressSanitizer: heap-use-after-free
/// in `List::unlink`): `with` closures drop registered wait futures. Each
/// `Drop` panicked on the reentrant lock and left its freed node linked in a
/// lane; unlinking a neighbour later wrote to freed memory. Without
/// `under-lock-drop` the drops of registered futures are skipped (since the
/// fix they abort by design), and the program must match the model.
#[test]
fn with_closures_drop_registered_futures() {
    run(&program(
        2,
        &[
            Op::Set(0),
            Op::Set(0),
            Op::WaitMany {
                slot: 62,
                count: 62,
                kind: Kind::ForNot(62),
                immediate: false,
            },
            Op::With(Reentry {
                act: Inside::DropWait(220),
                propagate: false,
            }),
            Op::With(Reentry {
                act: Inside::DropWait(0),
                propagate: true,
            }),
            Op::Set(3),
        ],
    ));
}

/// Found by the campaign (a harness bug, not the crate's): a wait whose
/// first poll panicked is polled twice in one step by hooks (a dropped
/// acting value's action, then a callback's), and the second poll found the
/// model state already `Dead`, which the harness took for "never polled
/// again".
#[test]
fn poisoned_wait_polled_twice_by_hooks_in_one_step() {
    run(&program(
        13,
        &[
            Op::WaitMany {
                slot: 0,
                count: 101,
                kind: Kind::Until(Pred::PanicsOn(5, 29)),
                immediate: true,
            },
            Op::DropWait(205),
            Op::Set(11),
            Op::Set(0),
            Op::SetActing(1, Outside::Poll(0)),
            Op::Wait {
                slot: 255,
                kind: Kind::OptChange,
                immediate: false,
            },
            Op::OnChange {
                panics: false,
                reads: false,
                removes_self: true,
                action: Some(Outside::Poll(0)),
                drop_action: None,
            },
            Op::Set(45),
            Op::Set(0),
        ],
    ));
}

/// Found by the campaign with `critical-section` (a harness bug, not the
/// crate's): 45 `wait_transition` waiters whose function, on the edge from
/// 89, polls another wait from under the lock and lets the crate's
/// reentrancy panic leave it. The setter stores each such panic in its
/// waiter; when a later function polls one of those waiters, the crate
/// resumes the stored panic without the lock and the future is finished,
/// but the harness took that panic, which carried the crate's message, for
/// a fresh reentrancy panic of a lock it had not taken, and polled the
/// finished future again. A propagated reentrancy panic now leaves the hook
/// as `Injected::Reentrant`, so the two are told apart.
#[test]
fn stored_reentrancy_panic_resumed_from_under_the_lock() {
    run(&Program {
        init: 0,
        init_opt: None,
        init_nc: 42,
        ops: vec![
            Op::WaitMany {
                slot: 192,
                count: 45,
                kind: Kind::Transition(EdgeFn::Reenters(
                    89,
                    0,
                    Reentry {
                        act: Inside::PollWait(141),
                        propagate: true,
                    },
                )),
                immediate: true,
            },
            Op::Set(181),
            Op::SetActing(202, Outside::PollStream(202)),
            Op::SetActing(202, Outside::Poll(0)),
            Op::Set(1),
            Op::Blocking {
                kind: Kind::Some,
                immediate: true,
                how: Block::Wait,
            },
            Op::SetActing(202, Outside::PollStream(202)),
            Op::SetActing(0, Outside::Poll(0)),
        ],
    });
}

/// Found by the campaign with `critical-section` (a harness bug): a hook
/// under the lock polls a `wait_map` that a setter already chose, which
/// completes without the lock and hands the hook its output, whose `Drop`
/// polls another wait. The harness dropped that output at once, under the
/// lock, where the poll it acts must panic; outputs handed out under the
/// lock are now dropped when the step's actions are settled, as the user's
/// code would have to.
#[test]
fn output_handed_out_under_the_lock_dropped_outside() {
    let map = |pred, drop_action| Kind::Map(MapFn { pred, drop_action });
    run(&Program {
        init: 0,
        init_opt: None,
        init_nc: 128,
        ops: vec![
            Op::WaitMany {
                slot: 45,
                count: 45,
                kind: map(
                    Pred::Reenters(
                        216,
                        216,
                        Reentry {
                            act: Inside::PollWait(2),
                            propagate: false,
                        },
                    ),
                    Some(Outside::Poll(0)),
                ),
                immediate: false,
            },
            Op::Set(0),
            poll(1),
            Op::PollStream(153),
            Op::SetIf(15, Cond::Always),
            Op::Get,
            Op::WaitMany {
                slot: 164,
                count: 194,
                kind: Kind::NcMap(MapFn {
                    pred: Pred::Reenters(
                        255,
                        255,
                        Reentry {
                            act: Inside::With,
                            propagate: true,
                        },
                    ),
                    drop_action: None,
                }),
                immediate: true,
            },
            Op::Poll {
                slot: 115,
                waker: WakerChoice::Fresh,
            },
            Op::SetActing(0, Outside::Drop(44)),
        ],
    });
}
