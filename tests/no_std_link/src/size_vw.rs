//! Minimal use of value-watcher, the same as `size_embassy.rs` does with
//! embassy-sync's `Watch`: a static watcher, a waiter for 3 polled by hand,
//! three sends.

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use value_watcher::ValueWatcher;

static W: ValueWatcher<u32> = ValueWatcher::new(0);

pub(crate) fn run() -> i32 {
    let mut cx = Context::from_waker(Waker::noop());
    let mut three = pin!(W.wait_for(3));
    if three.as_mut().poll(&mut cx).is_ready() {
        return 1;
    }
    for v in 1..=3 {
        W.set(black_box(v));
    }
    match three.as_mut().poll(&mut cx) {
        Poll::Ready(3) => 0,
        _ => 2,
    }
}
