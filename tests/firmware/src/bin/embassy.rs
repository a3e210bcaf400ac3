//! value-watcher under embassy-executor on Cortex-M (QEMU): `static`
//! watchers shared by embassy tasks, set from the SysTick interrupt handler.
//!
//! Three tasks wait on one `static` connection state (for `Closing`, for the
//! next change, on a `changes()` stream); each reports its result through a
//! `static ValueWatcher<Option<Conn>>` that a supervisor task awaits with
//! `wait_for_some`. Once all three are registered (counted in another
//! watcher), the supervisor starts SysTick, whose first run sets
//! `Connecting, Connected, Closing, Closed` in one go. The waiter for
//! `Closing` must get `Closing`. Exit status 0 only if every check held.
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;
#[allow(dead_code)] // the executor sleeps by itself
#[path = "../ticks.rs"]
mod ticks;

use core::future::{Future, poll_fn};
use core::mem::MaybeUninit;
use core::pin::pin;

use embassy_executor::{Executor, Spawner};
use futures_core::Stream;
use value_watcher::ValueWatcher;

use rt::println;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
}

static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);
/// How many tasks have registered their wait (polled it once).
static REGISTERED: ValueWatcher<u32> = ValueWatcher::new(0);
static GOT_CLOSING: ValueWatcher<Option<Conn>> = ValueWatcher::new(None);
static GOT_CHANGE: ValueWatcher<Option<Conn>> = ValueWatcher::new(None);
static GOT_LATEST: ValueWatcher<Option<Conn>> = ValueWatcher::new(None);
static HANDLER_RUNS: ValueWatcher<u32> = ValueWatcher::new(0);

/// Called from SysTick (src/ticks.rs).
fn on_tick() {
    HANDLER_RUNS.modify(|n| *n += 1);
    if HANDLER_RUNS.get() == 1 {
        for state in [
            Conn::Connecting,
            Conn::Connected,
            Conn::Closing,
            Conn::Closed,
        ] {
            CONN.set(state);
        }
    }
}

/// Awaits `fut`, counting in `REGISTERED` once it was polled the first time
/// (so it is registered with the watcher).
async fn registered<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut first = true;
    poll_fn(|cx| {
        let out = fut.as_mut().poll(cx);
        if first {
            first = false;
            REGISTERED.modify(|n| *n += 1);
        }
        out
    })
    .await
}

#[embassy_executor::task]
async fn wait_closing() {
    let got = registered(CONN.wait_for(Conn::Closing)).await;
    GOT_CLOSING.set(Some(got));
}

#[embassy_executor::task]
async fn wait_change() {
    let got = registered(CONN.wait_for_change()).await;
    GOT_CHANGE.set(Some(got));
}

#[embassy_executor::task]
async fn watch_stream() {
    let mut changes = pin!(CONN.changes());
    let next = poll_fn(|cx| changes.as_mut().poll_next(cx));
    let got = registered(next).await;
    GOT_LATEST.set(got);
}

#[embassy_executor::task]
async fn supervisor() {
    REGISTERED.wait_for(3).await;
    ticks::start(20_000);
    let closing = GOT_CLOSING.wait_for_some().await;
    let change = GOT_CHANGE.wait_for_some().await;
    let latest = GOT_LATEST.wait_for_some().await;
    let expected = if cfg!(feature = "demo-failure") {
        Conn::Closed
    } else {
        Conn::Closing
    };
    let checks = [
        (
            closing == expected,
            "wait_for(Closing) got the transient Closing",
        ),
        (change == Conn::Connecting, "wait_for_change got Connecting"),
        (
            latest == Conn::Closed,
            "changes() yielded the latest value, Closed",
        ),
        (CONN.version() == 4, "four transitions"),
    ];
    let mut failed = 0;
    for (ok, what) in checks {
        if !ok {
            failed += 1;
            println!("FAILED: {}", what);
        }
    }
    println!(
        "embassy: {} passed, {} failed (got {:?}, {:?}, {:?})",
        checks.len() - failed,
        failed,
        closing,
        change,
        latest
    );
    rt::exit(failed == 0);
}

static mut EXECUTOR: MaybeUninit<Executor> = MaybeUninit::uninit();

#[cortex_m_rt::entry]
fn main() -> ! {
    // SAFETY: `main` runs once and is the only code that names EXECUTOR, so
    // this is the only reference to it, and it lives for the whole program.
    let executor: &'static mut Executor = unsafe { (*(&raw mut EXECUTOR)).write(Executor::new()) };
    executor.run(|spawner: Spawner| {
        // A task function hands out its one `SpawnToken`, or an error if its
        // task is already running.
        macro_rules! spawn {
            ($task:expr) => {
                match $task {
                    Ok(token) => spawner.spawn(token),
                    Err(_) => {
                        println!("FAILED: could not spawn a task");
                        rt::exit(false);
                    }
                }
            };
        }
        spawn!(wait_closing());
        spawn!(wait_change());
        spawn!(watch_stream());
        spawn!(supervisor());
    })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    rt::exit(false)
}
