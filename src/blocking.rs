//! Blocking waits: drive a wait future on the current thread by parking it.
//!
//! Each thread creates one waker that unparks it, the first time it blocks,
//! and reuses it afterwards (cloning a waker is a reference-count increment),
//! so a blocking wait allocates nothing. Before parking, a thread spins
//! briefly watching a flag that every wake sets, so a wake-up that comes at
//! once costs no sleep. Spurious unparks (including a token left over from a
//! wake-up caught while spinning) only cause one more poll.

use alloc::sync::Arc;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

#[cfg(not(value_watcher_loom))]
use std::{thread, thread_local};

#[cfg(value_watcher_loom)]
use loom::{thread, thread_local};

/// Wakes a parked thread.
struct Unparker {
    thread: thread::Thread,
    /// Set by every wake, cleared before every poll: lets the waiting thread
    /// notice a wake-up while it spins, before it parks.
    #[cfg(not(value_watcher_loom))]
    woken: core::sync::atomic::AtomicBool,
}

impl Unparker {
    fn notify(&self) {
        #[cfg(not(value_watcher_loom))]
        self.woken
            .store(true, core::sync::atomic::Ordering::Release);
        self.thread.unpark();
    }
}

impl alloc::task::Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notify();
    }
}

fn new_parker() -> (Arc<Unparker>, Waker) {
    let unparker = Arc::new(Unparker {
        thread: thread::current(),
        #[cfg(not(value_watcher_loom))]
        woken: core::sync::atomic::AtomicBool::new(false),
    });
    let waker = Waker::from(unparker.clone());
    (unparker, waker)
}

thread_local! {
    static PARKER: (Arc<Unparker>, Waker) = new_parker();
}

/// How many `spin_loop` hints a blocked thread spends watching for a wake-up
/// before it parks: a few microseconds, the same count std's `Mutex` spins
/// before it sleeps. When the setter answers at once (two threads handing a
/// value back and forth), the wake-up lands in this window and neither
/// thread sleeps in the kernel; when it does not, the thread parks, having
/// spent little next to the cost of a park and an unpark. Measured in
/// benches/README.md ("ping-pong").
#[cfg(not(value_watcher_loom))]
const SPIN: u32 = 100;

/// Spins up to [`SPIN`] times; true if a wake-up arrived meanwhile.
#[cfg(not(value_watcher_loom))]
fn spin_for_wake(unparker: &Unparker) -> bool {
    use core::sync::atomic::Ordering;
    for _ in 0..SPIN {
        if unparker.woken.load(Ordering::Acquire) {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Polls `fut` to completion on this thread, parking between polls; `None`
/// if `deadline` passes first. The future is polled at least once, and once
/// more after the deadline, so a value it already holds is never dropped.
pub(crate) fn block_on<F: Future>(
    fut: F,
    #[cfg(not(value_watcher_loom))] deadline: Option<std::time::Instant>,
    #[cfg(value_watcher_loom)] deadline: Option<core::convert::Infallible>,
) -> Option<F::Output> {
    #[cfg_attr(value_watcher_loom, allow(unused_variables))]
    let (unparker, waker) = PARKER
        .try_with(|(unparker, waker)| (unparker.clone(), waker.clone()))
        .unwrap_or_else(|_| new_parker());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        #[cfg(not(value_watcher_loom))]
        unparker
            .woken
            .store(false, core::sync::atomic::Ordering::Relaxed);
        if let Poll::Ready(output) = fut.as_mut().poll(&mut cx) {
            return Some(output);
        }
        #[cfg(not(value_watcher_loom))]
        if spin_for_wake(&unparker) {
            continue;
        }
        match deadline {
            None => thread::park(),
            #[cfg(not(value_watcher_loom))]
            Some(deadline) => {
                let now = std::time::Instant::now();
                if now >= deadline {
                    return match fut.as_mut().poll(&mut cx) {
                        Poll::Ready(output) => Some(output),
                        Poll::Pending => None,
                    };
                }
                thread::park_timeout(deadline - now);
            }
            #[cfg(value_watcher_loom)]
            Some(never) => match never {},
        }
    }
}
