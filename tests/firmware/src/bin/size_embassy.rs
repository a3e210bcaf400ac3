//! Size program: embassy-sync 0.7's `Watch<CriticalSectionRawMutex, u32, 1>`
//! doing step for step what src/size_job.rs does with value-watcher:
//!
//! 1. a `static` watch created with 0; read it (`try_get`);
//! 2. a receiver's `changed()` future, polled by hand (pending), one
//!    `send(1)`, polled again (ready with 1);
//! 3. the same receiver's `changed_and(|v| *v == 3)`, polled (pending),
//!    `send(2)`, `send(3)`, polled again (ready with 3);
//! 4. read the value (3).
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::watch::Watch;

static W: Watch<CriticalSectionRawMutex, u32, 1> = Watch::new_with(0);

fn run() -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    if W.try_get() != Some(0) {
        return false;
    }
    let Some(mut rx) = W.receiver() else {
        return false;
    };
    let tx = W.sender();

    {
        let mut changed = pin!(rx.changed());
        if changed.as_mut().poll(&mut cx).is_ready() {
            return false;
        }
        tx.send(black_box(1));
        if changed.as_mut().poll(&mut cx) != Poll::Ready(1) {
            return false;
        }
    }

    let mut three = pin!(rx.changed_and(|v| *v == 3));
    if three.as_mut().poll(&mut cx).is_ready() {
        return false;
    }
    tx.send(black_box(2));
    tx.send(black_box(3));
    if three.as_mut().poll(&mut cx) != Poll::Ready(3) {
        return false;
    }

    W.try_get() == Some(3)
}

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    rt::exit(run())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    rt::exit(false)
}
