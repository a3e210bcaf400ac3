//! Shared test helpers: a counting waker and manual polling.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counting waker and the `Waker` that feeds it.
pub fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    (counter, waker)
}

impl CountingWaker {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `fut` once with `waker`.
pub fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Polls `fut` once with a no-op waker.
pub fn poll_noop<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_with(fut, Waker::noop())
}

/// Aborts the process with `what` if the returned guard is not dropped within
/// `secs` seconds: a hang fails CI with a message instead of stalling it.
pub fn watchdog(what: &'static str, secs: u64) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(std::time::Duration::from_secs(secs))
        {
            eprintln!("watchdog: `{what}` did not finish within {secs} s (hang)");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

/// Dropping it stops its watchdog.
pub struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

/// The connection life cycle of the SPEC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

pub const LIFE_CYCLE: [Conn; 4] = [
    Conn::Connecting,
    Conn::Connected,
    Conn::Closing,
    Conn::Closed,
];
