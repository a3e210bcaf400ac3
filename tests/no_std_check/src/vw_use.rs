//! The size programs' use of value-watcher, step for step the same as
//! `bin/size_embassy.rs` does with embassy-sync's `Watch`:
//!
//! 1. a `static` holding a `u32`, initially 0; read it;
//! 2. a "next change" future, polled by hand (pending), one set of 1, polled
//!    again (ready with 1);
//! 3. a "wait until the value is 3" future, polled (pending), sets of 2 and 3,
//!    polled again (ready with 3);
//! 4. read the value (3).
//!
//! Every step is checked; the exit status says which one failed.

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use value_watcher::ValueWatcher;

static W: ValueWatcher<u32> = ValueWatcher::new(0);

pub fn run() -> i32 {
    let mut cx = Context::from_waker(Waker::noop());
    if W.get() != 0 {
        return 1;
    }

    let mut changed = pin!(W.wait_for_change());
    if changed.as_mut().poll(&mut cx).is_ready() {
        return 2;
    }
    W.set(black_box(1));
    if changed.as_mut().poll(&mut cx) != Poll::Ready(1) {
        return 3;
    }

    let mut three = pin!(W.wait_until(|v| *v == 3));
    if three.as_mut().poll(&mut cx).is_ready() {
        return 4;
    }
    W.set(black_box(2));
    W.set(black_box(3));
    if three.as_mut().poll(&mut cx) != Poll::Ready(3) {
        return 5;
    }

    if W.get() != 3 {
        return 6;
    }
    0
}
