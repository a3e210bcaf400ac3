//! Minimal use of embassy-sync's `Watch`, the same as `size_vw.rs`.

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::watch::Watch;

static W: Watch<CriticalSectionRawMutex, u32, 1> = Watch::new_with(0);

pub(crate) fn run() -> i32 {
    let mut cx = Context::from_waker(Waker::noop());
    let Some(mut rx) = W.receiver() else { return 3 };
    let mut three = pin!(rx.changed_and(|v| *v == 3));
    if three.as_mut().poll(&mut cx).is_ready() {
        return 1;
    }
    let tx = W.sender();
    for v in 1..=3 {
        tx.send(black_box(v));
    }
    match three.as_mut().poll(&mut cx) {
        Poll::Ready(3) => 0,
        _ => 2,
    }
}
