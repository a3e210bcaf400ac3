//! Size program: embassy-sync's `Watch`, doing step for step what
//! src/vw_use.rs does with value-watcher (see there):
//!
//! 1. a `static Watch<CriticalSectionRawMutex, u32, 1>` created with 0; read
//!    it (`try_get`);
//! 2. a receiver's `changed()` future, polled by hand (pending), one `send(1)`,
//!    polled again (ready with 1);
//! 3. the same receiver's `changed_and(|v| *v == 3)`, polled (pending),
//!    `send(2)`, `send(3)`, polled again (ready with 3);
//! 4. read the value (3).
//!
//! A `static` needs a `Sync` watch, hence `CriticalSectionRawMutex` (with the
//! critical-section implementation of src/rt.rs); `NoopRawMutex` is not
//! `Sync`.
#![no_std]
#![no_main]

extern crate embassy_sync;

#[path = "../rt.rs"]
mod rt;

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::watch::Watch;

static W: Watch<CriticalSectionRawMutex, u32, 1> = Watch::new_with(0);

fn run() -> i32 {
    let mut cx = Context::from_waker(Waker::noop());
    if W.try_get() != Some(0) {
        return 1;
    }
    let Some(mut rx) = W.receiver() else {
        return 7;
    };
    let tx = W.sender();

    {
        let mut changed = pin!(rx.changed());
        if changed.as_mut().poll(&mut cx).is_ready() {
            return 2;
        }
        tx.send(black_box(1));
        if changed.as_mut().poll(&mut cx) != Poll::Ready(1) {
            return 3;
        }
    }

    let mut three = pin!(rx.changed_and(|v| *v == 3));
    if three.as_mut().poll(&mut cx).is_ready() {
        return 4;
    }
    tx.send(black_box(2));
    tx.send(black_box(3));
    if three.as_mut().poll(&mut cx) != Poll::Ready(3) {
        return 5;
    }

    if W.try_get() != Some(3) {
        return 6;
    }
    0
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    rt::exit(101)
}
