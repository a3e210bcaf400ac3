//! Helpers shared by the SPEC §2/§3 test files: counting wakers, manual
//! polling, a hang watchdog, a value type that counts its live copies, and
//! the connection life cycle of the SPEC.
//!
//! Every test binary uses a different subset, hence the `allow`.
#![allow(dead_code)]

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

// === wakers and polling ===

/// Counts how often it was woken (by value or by reference).
#[derive(Default)]
pub struct Counter(AtomicUsize);

impl Counter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker and the counter behind it.
pub fn counting_waker() -> (Arc<Counter>, Waker) {
    let counter = Arc::new(Counter::default());
    (counter.clone(), Waker::from(counter))
}

/// Polls `fut` once with `waker`.
pub fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Polls `fut` once with a waker that does nothing.
pub fn poll_noop<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_with(fut, Waker::noop())
}

/// Runs `fut`, sending one message on `registered` the first time it returns
/// `Pending`: the wait future (or stream) is registered with its watcher by
/// then, so another thread may start setting.
pub async fn reporting_pending<F: Future>(
    fut: F,
    registered: std::sync::mpsc::Sender<()>,
) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut registered = Some(registered);
    std::future::poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if poll.is_pending() {
            if let Some(tx) = registered.take() {
                // The receiver only disappears if the test already failed.
                let _ = tx.send(());
            }
        }
        poll
    })
    .await
}

// === hangs ===

/// Aborts the whole test process with a message if the returned guard is
/// still alive after `secs` seconds, so a lost wake-up fails CI instead of
/// stalling it. Only a hang trips it: no result depends on timing.
#[must_use = "the watchdog stops when this guard is dropped"]
pub fn watchdog(what: &'static str, secs: u64) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(secs))
        {
            eprintln!("watchdog: `{what}` still running after {secs} s: a hang");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

/// Dropping it disarms its watchdog.
pub struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

/// A limit for blocking waits that must succeed: generous, so only a lost
/// wake-up can reach it.
pub const GENEROUS: Duration = Duration::from_secs(30);

// === values ===

/// The connection life cycle of the SPEC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

/// The transitions out of `Disconnected`, in order.
pub const LIFE_CYCLE: [Conn; 4] = [
    Conn::Connecting,
    Conn::Connected,
    Conn::Closing,
    Conn::Closed,
];

/// A `u32` that counts its live copies in a counter of its own test, so a
/// leaked or duplicated value shows up. Equality looks at the number only.
#[derive(Debug)]
pub struct Tracked {
    pub n: u32,
    live: Arc<AtomicIsize>,
}

/// Makes `Tracked` values that share one live counter.
#[derive(Clone, Default)]
pub struct Tracker(Arc<AtomicIsize>);

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn make(&self, n: u32) -> Tracked {
        self.0.fetch_add(1, Ordering::SeqCst);
        Tracked {
            n,
            live: self.0.clone(),
        }
    }

    /// How many values made by this tracker (or cloned from them) exist.
    pub fn live(&self) -> isize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.live.fetch_add(1, Ordering::SeqCst);
        Self {
            n: self.n,
            live: self.live.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

// === panics ===

/// The message of a panic payload (`panic!` with a literal or a format).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_string()
    }
}
