//! The link proof's program: every part of value-watcher's API that exists
//! without `std`, each result checked. A failed check prints its line and the
//! process exits with status 1; a panic exits with 101; success with 0.
//!
//! Futures are polled by hand: with `Waker::noop()` where only the result
//! matters, and with counting wakers where the wake-ups themselves are the
//! point (a transition wakes exactly the waiters it matches).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use futures_core::Stream;
use value_watcher::ValueWatcher;

// === output and checks ===

/// A file descriptor, written with the raw `write` system call.
pub struct Fd(pub i32);

impl Write for Fd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let written: isize;
            // SAFETY: system call 1 (`write`) reads `rest.len()` bytes from
            // `rest`, which is valid for that long; it clobbers rcx and r11.
            unsafe {
                core::arch::asm!(
                    "syscall",
                    inlateout("rax") 1isize => written,
                    in("rdi") self.0 as isize,
                    in("rsi") rest.as_ptr(),
                    in("rdx") rest.len(),
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack),
                );
            }
            if written <= 0 {
                return Err(fmt::Error);
            }
            rest = &rest[written as usize..];
        }
        Ok(())
    }
}

static PASSED: AtomicUsize = AtomicUsize::new(0);

macro_rules! check {
    ($cond:expr) => {
        if $cond {
            PASSED.fetch_add(1, Ordering::Relaxed);
        } else {
            failed(line!(), stringify!($cond));
        }
    };
}

fn failed(line: u32, what: &str) -> ! {
    let _ = writeln!(
        Fd(2),
        "link proof: check failed at src/checks.rs:{line}: {what}"
    );
    crate::rt::exit(1)
}

// === wakers ===

fn poll<F: Future>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

fn poll_next<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(Waker::noop()))
}

/// A waker that counts its wake-ups in a static counter.
fn counting(counter: &'static AtomicUsize) -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);
    fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &VTABLE)
    }
    fn wake(data: *const ()) {
        // SAFETY: `data` always comes from a `&'static AtomicUsize` (below).
        unsafe { &*data.cast::<AtomicUsize>() }.fetch_add(1, Ordering::Relaxed);
    }
    fn drop(_: *const ()) {}
    // SAFETY: the vtable functions treat `data` as the `&'static AtomicUsize`
    // it is, and are thread-safe (an atomic increment).
    unsafe {
        Waker::from_raw(RawWaker::new(
            (counter as *const AtomicUsize).cast(),
            &VTABLE,
        ))
    }
}

fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::Relaxed)
}

// === the connection scenario, in a static ===

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Conn {
    Disconnected = 0,
    Connecting = 1,
    Connected = 2,
    Closing = 3,
    Closed = 4,
}

static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);

/// What `on_change` saw: `old * 16 + new` per transition.
static CHANGE_LOG: [AtomicU8; 8] = [const { AtomicU8::new(0) }; 8];
static CHANGES: AtomicUsize = AtomicUsize::new(0);
static ON_CONNECTED: AtomicUsize = AtomicUsize::new(0);
static ON_DISCONNECTED: AtomicUsize = AtomicUsize::new(0);
static REMOVED_RAN: AtomicUsize = AtomicUsize::new(0);

static WOKE_CONNECTED: AtomicUsize = AtomicUsize::new(0);
static WOKE_NOT_DISCONNECTED: AtomicUsize = AtomicUsize::new(0);
static WOKE_BACK: AtomicUsize = AtomicUsize::new(0);
static WOKE_DROPPED: AtomicUsize = AtomicUsize::new(0);
static WOKE_MANY: AtomicUsize = AtomicUsize::new(0);

fn logged() -> Vec<(Conn, Conn)> {
    let decode = |n: u8| match n {
        0 => Conn::Disconnected,
        1 => Conn::Connecting,
        2 => Conn::Connected,
        3 => Conn::Closing,
        _ => Conn::Closed,
    };
    CHANGE_LOG[..CHANGES.load(Ordering::Relaxed).min(8)]
        .iter()
        .map(|entry| {
            let entry = entry.load(Ordering::Relaxed);
            (decode(entry >> 4), decode(entry & 15))
        })
        .collect()
}

/// A `fmt::Write` into a fixed buffer, to check `Debug` output.
struct Buf {
    bytes: [u8; 128],
    len: usize,
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn debug_string(value: &impl fmt::Debug) -> Buf {
    let mut buf = Buf {
        bytes: [0; 128],
        len: 0,
    };
    let _ = write!(buf, "{value:?}");
    buf
}

impl PartialEq<&str> for Buf {
    fn eq(&self, other: &&str) -> bool {
        &self.bytes[..self.len] == other.as_bytes()
    }
}

pub fn run() -> i32 {
    let noop = Waker::noop();

    // Reading.
    check!(CONN.get() == Conn::Disconnected);
    check!(CONN.version() == 0);
    check!(CONN.with(|c| *c as u8) == 0);
    check!(debug_string(&CONN) == "ValueWatcher { value: Disconnected, version: 0, .. }");

    // Callbacks (registering may allocate).
    CONN.on_change(|old, new| {
        let n = CHANGES.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = CHANGE_LOG.get(n) {
            slot.store((*old as u8) << 4 | *new as u8, Ordering::Relaxed);
        }
    });
    CONN.on_value(Conn::Connected, || {
        ON_CONNECTED.fetch_add(1, Ordering::Relaxed);
    });
    // Already the current value: runs at once, in this call.
    let at_once = CONN.on_value(Conn::Disconnected, || {
        ON_DISCONNECTED.fetch_add(1, Ordering::Relaxed);
    });
    check!(count(&ON_DISCONNECTED) == 1);
    check!(!CONN.remove_callback(at_once));
    let removed = CONN.on_change(|_, _| {
        REMOVED_RAN.fetch_add(1, Ordering::Relaxed);
    });
    check!(CONN.remove_callback(removed));
    check!(!CONN.remove_callback(removed));

    // The stream allocates its node once, here.
    let mut changes = CONN.changes();
    check!(poll_next(&mut changes).is_pending());

    // A waiter that is dropped while registered is never woken (it is boxed
    // only so that it can be dropped in the middle of this function).
    let mut dropped = Box::pin(CONN.wait_for(Conn::Disconnected).immediate(false));
    check!(poll(dropped.as_mut(), &counting(&WOKE_DROPPED)).is_pending());

    // From here on nothing may allocate: waiting, waking, setting and running
    // registered callbacks do not.
    let allocations = crate::rt::allocations();

    // The promise: a waiter registered before a transient state gets it.
    let mut closing = pin!(CONN.wait_for(Conn::Closing));
    check!(poll(closing.as_mut(), noop).is_pending());
    let mut connected = pin!(CONN.wait_for(Conn::Connected));
    check!(poll(connected.as_mut(), &counting(&WOKE_CONNECTED)).is_pending());
    let mut not_disconnected = pin!(CONN.wait_for_not(Conn::Disconnected));
    check!(poll(not_disconnected.as_mut(), &counting(&WOKE_NOT_DISCONNECTED)).is_pending());
    let mut back = pin!(CONN.wait_for(Conn::Disconnected).immediate(false));
    check!(poll(back.as_mut(), &counting(&WOKE_BACK)).is_pending());
    let mut late_state = pin!(CONN.wait_until(|c| *c as u8 >= Conn::Closing as u8));
    check!(poll(late_state.as_mut(), noop).is_pending());
    let mut first_change = pin!(CONN.wait_for_change());
    check!(poll(first_change.as_mut(), noop).is_pending());
    // The current value completes a default wait at once.
    check!(poll(pin!(CONN.wait_for(Conn::Disconnected)), noop) == Poll::Ready(Conn::Disconnected));

    // The life cycle, with every kind of setter and some non-transitions.
    check!(CONN.set_if(Conn::Connecting, |c| *c == Conn::Disconnected));
    check!(!CONN.set_if(Conn::Connected, |c| *c == Conn::Disconnected));
    check!(!CONN.set(Conn::Connecting));
    check!(CONN.version() == 1);
    check!(count(&WOKE_NOT_DISCONNECTED) == 1);
    check!(count(&WOKE_CONNECTED) == 0);
    check!(CONN.modify(|c| *c = Conn::Connected));
    check!(!CONN.modify(|c| *c = Conn::Connected));
    check!(count(&WOKE_CONNECTED) == 1);
    check!(count(&ON_CONNECTED) == 1);
    check!(CONN.set(Conn::Closing));
    check!(CONN.set(Conn::Closed));
    check!(CONN.get() == Conn::Closed);
    check!(CONN.version() == 4);

    // Each waiter got the first value that matched it, though the value has
    // moved on since.
    check!(poll(closing.as_mut(), noop) == Poll::Ready(Conn::Closing));
    check!(poll(connected.as_mut(), noop) == Poll::Ready(Conn::Connected));
    check!(poll(not_disconnected.as_mut(), noop) == Poll::Ready(Conn::Connecting));
    check!(poll(late_state.as_mut(), noop) == Poll::Ready(Conn::Closing));
    check!(poll(first_change.as_mut(), noop) == Poll::Ready(Conn::Connecting));
    // Only matching transitions woke anyone.
    check!(count(&WOKE_CONNECTED) == 1);
    check!(count(&WOKE_NOT_DISCONNECTED) == 1);
    check!(count(&WOKE_BACK) == 0);
    check!(poll(back.as_mut(), &counting(&WOKE_BACK)).is_pending());

    // The stream yields only the latest value of the burst, once.
    check!(poll_next(&mut changes) == Poll::Ready(Some(Conn::Closed)));
    check!(poll_next(&mut changes).is_pending());

    check!(crate::rt::allocations() == allocations);
    drop(dropped);

    // Back to the start: wakes `back`, not the dropped waiter.
    check!(CONN.set(Conn::Disconnected));
    check!(count(&WOKE_BACK) == 1);
    check!(count(&WOKE_DROPPED) == 0);
    check!(poll(back.as_mut(), noop) == Poll::Ready(Conn::Disconnected));
    check!(poll_next(&mut changes) == Poll::Ready(Some(Conn::Disconnected)));
    check!(CONN.version() == 5);
    check!(debug_string(&CONN) == "ValueWatcher { value: Disconnected, version: 5, .. }");

    // Callbacks ran once per transition, in order; `on_value` fired once;
    // the removed one never ran.
    check!(
        logged()
            == [
                (Conn::Disconnected, Conn::Connecting),
                (Conn::Connecting, Conn::Connected),
                (Conn::Connected, Conn::Closing),
                (Conn::Closing, Conn::Closed),
                (Conn::Closed, Conn::Disconnected),
            ]
    );
    check!(count(&ON_CONNECTED) == 1);
    check!(count(&ON_DISCONNECTED) == 1);
    check!(count(&REMOVED_RAN) == 0);

    // More waiters than one setter's wake batch holds: all are woken, once.
    let many_watcher = ValueWatcher::new(0u32);
    let mut many: Vec<_> = (0..70)
        .map(|_| Box::pin(many_watcher.wait_for(1)))
        .collect();
    let many_waker = counting(&WOKE_MANY);
    for fut in &mut many {
        check!(poll(fut.as_mut(), &many_waker).is_pending());
    }
    check!(many_watcher.set(1));
    check!(many_watcher.set(2));
    check!(count(&WOKE_MANY) == 70);
    for fut in &mut many {
        check!(poll(fut.as_mut(), noop) == Poll::Ready(1));
    }

    // An owned, heap-allocated value, and the `Option` helpers.
    let name = ValueWatcher::new(String::new());
    let mut b = pin!(name.wait_for(String::from("b")));
    check!(poll(b.as_mut(), noop).is_pending());
    for s in ["a", "b", "c"] {
        check!(name.set(String::from(s)));
    }
    check!(poll(b.as_mut(), noop) == Poll::Ready(String::from("b")));
    check!(name.get() == "c");

    let session: ValueWatcher<Option<u32>> = ValueWatcher::default();
    let mut token = pin!(session.wait_for_some());
    check!(poll(token.as_mut(), noop).is_pending());
    check!(session.set(Some(7)));
    check!(session.set(None));
    check!(poll(token.as_mut(), noop) == Poll::Ready(7));
    check!(ValueWatcher::from(5u8).get() == 5);

    let _ = writeln!(
        Fd(1),
        "link proof ({}): {} checks passed",
        if cfg!(feature = "cs") {
            "critical-section lock"
        } else {
            "spinlock"
        },
        PASSED.load(Ordering::Relaxed)
    );
    0
}
