//! Fixed programs run through the differential harness: scenarios the fuzzer
//! must keep passing, and regressions it found.
#![cfg(panic = "unwind")]

use value_watcher_fuzz::{CountingAllocator, Kind, Op, Outside, Program, WakerChoice, run};

/// Turns on the harness's allocation checks (SPEC §3.8).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn program(init: u8, ops: &[Op]) -> Program {
    Program {
        init,
        init_opt: None,
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
