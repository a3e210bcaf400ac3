//! The link proof: exercises every part of the API that works without `std`.

use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);
static CHANGES: AtomicUsize = AtomicUsize::new(0);
static CONNECTED: AtomicUsize = AtomicUsize::new(0);

fn check(ok: bool, code: i32) {
    if !ok {
        crate::exit(code);
    }
}

pub(crate) fn run() -> i32 {
    let mut cx = Context::from_waker(Waker::noop());

    CONN.on_change(|_, _| {
        CHANGES.fetch_add(1, Ordering::Relaxed);
    });
    CONN.on_value(Conn::Connected, || {
        CONNECTED.fetch_add(1, Ordering::Relaxed);
    });
    let mut changes = CONN.changes();

    // The promise: a waiter registered before a transient state gets it.
    let mut closing = pin!(CONN.wait_for(Conn::Closing));
    check(closing.as_mut().poll(&mut cx).is_pending(), 1);
    check(CONN.set(Conn::Connecting), 2);
    check(CONN.set_if(Conn::Connected, |c| *c == Conn::Connecting), 3);
    check(!CONN.set(Conn::Connected), 4);
    check(CONN.modify(|c| *c = Conn::Closing), 5);
    check(CONN.set(Conn::Closed), 6);
    check(
        closing.as_mut().poll(&mut cx) == Poll::Ready(Conn::Closing),
        7,
    );
    check(CONN.get() == Conn::Closed && CONN.version() == 4, 8);
    check(CHANGES.load(Ordering::Relaxed) == 4, 9);
    check(CONNECTED.load(Ordering::Relaxed) == 1, 10);

    // The stream yields the latest value of the burst.
    let next = futures_core::Stream::poll_next(core::pin::Pin::new(&mut changes), &mut cx);
    check(next == Poll::Ready(Some(Conn::Closed)), 11);

    let some = ValueWatcher::new(None::<u32>);
    let mut fut = pin!(some.wait_for_some());
    check(fut.as_mut().poll(&mut cx).is_pending(), 12);
    some.set(Some(7));
    some.set(None);
    check(fut.as_mut().poll(&mut cx) == Poll::Ready(7), 13);
    0
}
