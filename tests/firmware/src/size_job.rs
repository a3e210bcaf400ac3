//! The size programs' job, step for step the job of tests/no_std_check
//! (src/vw_use.rs there), with value-watcher; `bin/size_embassy.rs` does the
//! same with embassy-sync's `Watch`:
//!
//! 1. a `static` holding a `u32`, initially 0; read it;
//! 2. a "next change" future, polled by hand (pending), one set of 1, polled
//!    again (ready with 1);
//! 3. a "wait until the value is 3" future, polled (pending), sets of 2 and 3,
//!    polled again (ready with 3);
//! 4. read the value (3).
//!
//! Every step is checked; the program exits 0 only if all held.

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use value_watcher::ValueWatcher;

static W: ValueWatcher<u32> = ValueWatcher::new(0);

pub fn run() -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    if W.get() != 0 {
        return false;
    }

    let mut changed = pin!(W.wait_for_change());
    if changed.as_mut().poll(&mut cx).is_ready() {
        return false;
    }
    W.set(black_box(1));
    if changed.as_mut().poll(&mut cx) != Poll::Ready(1) {
        return false;
    }

    let mut three = pin!(W.wait_until(|v| *v == 3));
    if three.as_mut().poll(&mut cx).is_ready() {
        return false;
    }
    W.set(black_box(2));
    W.set(black_box(3));
    if three.as_mut().poll(&mut cx) != Poll::Ready(3) {
        return false;
    }

    W.get() == 3
}
