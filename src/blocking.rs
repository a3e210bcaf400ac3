//! Blocking waits: drive a wait future on the current thread by parking it.
//!
//! Each thread creates one waker that unparks it, the first time it blocks,
//! and reuses it afterwards (cloning a waker is a reference-count increment),
//! so a blocking wait allocates nothing. Spurious unparks (including a token
//! left over from an earlier wait) only cause one more poll.

use alloc::sync::Arc;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

#[cfg(not(value_watcher_loom))]
use std::{thread, thread_local};

#[cfg(value_watcher_loom)]
use loom::{thread, thread_local};

/// Wakes a parked thread.
struct Unparker(thread::Thread);

impl alloc::task::Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn new_waker() -> Waker {
    Waker::from(Arc::new(Unparker(thread::current())))
}

thread_local! {
    static WAKER: Waker = new_waker();
}

/// Polls `fut` to completion on this thread, parking between polls; `None`
/// if `deadline` passes first. The future is polled at least once, and once
/// more after the deadline, so a value it already holds is never dropped.
pub(crate) fn block_on<F: Future>(
    fut: F,
    #[cfg(not(value_watcher_loom))] deadline: Option<std::time::Instant>,
    #[cfg(value_watcher_loom)] deadline: Option<core::convert::Infallible>,
) -> Option<F::Output> {
    let waker = WAKER.try_with(Waker::clone).unwrap_or_else(|_| new_waker());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(output) = fut.as_mut().poll(&mut cx) {
            return Some(output);
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
