//! A tiny executor for the firmware checks: wakers that only count, and a
//! `block_on` that polls a future whenever its waker was woken and sleeps
//! until the next interrupt otherwise.

use core::cell::Cell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use critical_section::Mutex;
use futures_core::Stream;

use crate::ticks;

/// Counts how often its wakers were woken (from any context: the count is
/// kept under a critical section).
pub struct WakeCounter(Mutex<Cell<u32>>);

impl WakeCounter {
    pub const fn new() -> Self {
        Self(Mutex::new(Cell::new(0)))
    }

    pub fn count(&self) -> u32 {
        critical_section::with(|cs| self.0.borrow(cs).get())
    }

    pub fn waker(&'static self) -> Waker {
        let data = (self as *const Self).cast::<()>();
        // SAFETY: the vtable's functions treat `data` as a `&'static
        // WakeCounter`, which it is; they are thread- and interrupt-safe
        // (the count is only touched under a critical section), and cloning
        // or dropping needs no bookkeeping for a `'static` reference.
        unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);

unsafe fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: every waker of this vtable is made by `WakeCounter::waker`
    // from a `&'static WakeCounter`.
    let counter = unsafe { &*data.cast::<WakeCounter>() };
    critical_section::with(|cs| {
        let count = counter.0.borrow(cs);
        count.set(count.get() + 1);
    });
}

unsafe fn drop(_: *const ()) {}

/// Polls `fut` once with `counter`'s waker.
pub fn poll_once<F: Future + ?Sized>(
    fut: Pin<&mut F>,
    counter: &'static WakeCounter,
) -> Poll<F::Output> {
    let waker = counter.waker();
    fut.poll(&mut Context::from_waker(&waker))
}

/// Polls `stream` once with `counter`'s waker.
pub fn poll_next_once<S: Stream + ?Sized>(
    stream: Pin<&mut S>,
    counter: &'static WakeCounter,
) -> Poll<Option<S::Item>> {
    let waker = counter.waker();
    stream.poll_next(&mut Context::from_waker(&waker))
}

/// Runs `fut` to completion: polls it, then sleeps until `counter` moves
/// (an interrupt handler woke it) before polling again.
pub fn block_on<F: Future + ?Sized>(
    mut fut: Pin<&mut F>,
    counter: &'static WakeCounter,
) -> F::Output {
    loop {
        let seen = counter.count();
        if let Poll::Ready(out) = poll_once(fut.as_mut(), counter) {
            return out;
        }
        ticks::idle_until(|| counter.count() != seen);
    }
}

/// The next item of `stream`, as `block_on` does for a future.
pub fn block_on_next<S: Stream + ?Sized>(
    mut stream: Pin<&mut S>,
    counter: &'static WakeCounter,
) -> Option<S::Item> {
    loop {
        let seen = counter.count();
        if let Poll::Ready(item) = poll_next_once(stream.as_mut(), counter) {
            return item;
        }
        ticks::idle_until(|| counter.count() != seen);
    }
}
