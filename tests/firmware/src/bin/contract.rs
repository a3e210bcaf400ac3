//! value-watcher's contract on a microcontroller, under QEMU: a real
//! interrupt handler (SysTick on Cortex-M, the machine timer on RISC-V) sets
//! watchers while the main loop waits on futures and `changes()` streams,
//! polled by the tiny executor of src/exec.rs with counting wakers.
//!
//! Checked (every check is counted, then the run exits 0 only if all held):
//! * a state that one handler run sets and overwrites (`Connecting,
//!   Connected, Closing, Closed` in one go) is not missed by a waiter for it;
//! * only matching waiters are woken, each exactly once; a dropped waiter
//!   never is;
//! * `on_change` and `on_value` callbacks run in the interrupt handler, in
//!   order, once each; a removed callback no longer runs;
//! * a `changes()` stream yields strictly newer values and ends on the last;
//! * the main loop and the handler modify one watcher without losing an
//!   update, and nothing deadlocks (the run ends; CI runs it under a timeout);
//! * neither the handler's sets nor the waits allocate.
//!
//! With the `demo-failure` feature one expectation is flipped, to show that a
//! failing check fails the run.
#![no_std]
#![no_main]

#[cfg(not(feature = "cs"))]
compile_error!("`contract` sets watchers from an interrupt handler: build it with `--features cs`");

#[path = "../exec.rs"]
mod exec;
#[path = "../rt.rs"]
mod rt;
#[path = "../ticks.rs"]
mod ticks;

use core::cell::{Cell, RefCell};
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Poll;

use critical_section::Mutex;
use value_watcher::ValueWatcher;

use exec::{WakeCounter, block_on, block_on_next, poll_next_once, poll_once};
use rt::println;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Conn {
    Disconnected,
    Connecting,
    Connected,
    Closing,
    Closed,
    Failed,
}

/// Set in one handler run: Connecting, Connected, Closing, Closed.
static CONN: ValueWatcher<Conn> = ValueWatcher::new(Conn::Disconnected);
/// Set by the handler to 1, 2, ..., LAST_TICK, one per tick.
static TICKS: ValueWatcher<u32> = ValueWatcher::new(0);
/// Incremented by the handler (by 1) and by the main loop (by 1000) at once.
static SHARED: ValueWatcher<u32> = ValueWatcher::new(0);

const LAST_TICK: u32 = 20;

// === the interrupt handler's script ===

/// Handler runs so far (only the handler writes it).
static RUNS: Mutex<Cell<u32>> = Mutex::new(Cell::new(0));

fn handler_runs() -> u32 {
    critical_section::with(|cs| RUNS.borrow(cs).get())
}

/// Called from the tick interrupt (src/ticks.rs).
fn on_tick() {
    let run = critical_section::with(|cs| {
        let runs = RUNS.borrow(cs);
        runs.set(runs.get() + 1);
        runs.get()
    });
    match run {
        1 => {
            for state in [
                Conn::Connecting,
                Conn::Connected,
                Conn::Closing,
                Conn::Closed,
            ] {
                CONN.set(state);
            }
        }
        2..=21 => {
            TICKS.set(run - 1);
        }
        _ => {}
    }
    // While the main loop hammers SHARED, each run adds 1, CONTENDED times.
    if CONTEND.load(Ordering::Relaxed) {
        critical_section::with(|cs| {
            let incs = HANDLER_INCS.borrow(cs);
            if incs.get() < CONTENDED {
                SHARED.modify(|v| *v += 1);
                incs.set(incs.get() + 1);
            }
        });
    }
}

/// Set by the main loop while it modifies SHARED (plain load and store).
static CONTEND: AtomicBool = AtomicBool::new(false);
/// How often the handler modified SHARED.
static HANDLER_INCS: Mutex<Cell<u32>> = Mutex::new(Cell::new(0));
const CONTENDED: u32 = 20;

fn handler_incs() -> u32 {
    critical_section::with(|cs| HANDLER_INCS.borrow(cs).get())
}

// === what the callbacks saw ===

/// `on_change` calls on CONN: (old, new, in the interrupt handler?).
static CHANGES: Mutex<RefCell<([(Conn, Conn, bool); 8], usize)>> =
    Mutex::new(RefCell::new(([(Conn::Failed, Conn::Failed, false); 8], 0)));

fn changes_seen() -> ([(Conn, Conn, bool); 8], usize) {
    critical_section::with(|cs| *CHANGES.borrow_ref(cs))
}

/// One-shot calls: (calls, calls made in the interrupt handler).
struct Fired(Mutex<Cell<(u32, u32)>>);

impl Fired {
    const fn new() -> Self {
        Self(Mutex::new(Cell::new((0, 0))))
    }
    fn fire(&self) {
        let in_isr = u32::from(ticks::in_interrupt());
        critical_section::with(|cs| {
            let cell = self.0.borrow(cs);
            let (calls, isr) = cell.get();
            cell.set((calls + 1, isr + in_isr));
        });
    }
    fn get(&self) -> (u32, u32) {
        critical_section::with(|cs| self.0.borrow(cs).get())
    }
}

static ON_CLOSING: Fired = Fired::new();
static ON_FAILED: Fired = Fired::new();
static ON_LAST_TICK: Fired = Fired::new();

// === wakers ===

static W_CLOSING: WakeCounter = WakeCounter::new();
static W_FAILED: WakeCounter = WakeCounter::new();
static W_CHANGE: WakeCounter = WakeCounter::new();
static W_CONNECTED: WakeCounter = WakeCounter::new();
static W_NOT_DISCONNECTED: WakeCounter = WakeCounter::new();
static W_CONN_STREAM: WakeCounter = WakeCounter::new();
static W_TICK7: WakeCounter = WakeCounter::new();
static W_TICK_STREAM: WakeCounter = WakeCounter::new();
static W_LAST: WakeCounter = WakeCounter::new();

// === checks ===

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            println!("FAILED: {}", what);
        }
    }
}

/// Tick period: SysTick counts core cycles; the RISC-V `virt` timer 10 MHz.
#[cfg(target_arch = "arm")]
const PERIOD: u32 = 20_000;
#[cfg(target_arch = "riscv32")]
const PERIOD: u32 = 20_000;

fn run() -> bool {
    let mut t = Tally {
        passed: 0,
        failed: 0,
    };

    // Callbacks, registered before anything happens.
    let on_change = CONN.on_change(|old, new| {
        let in_isr = ticks::in_interrupt();
        critical_section::with(|cs| {
            let mut log = CHANGES.borrow_ref_mut(cs);
            let (entries, len) = &mut *log;
            if *len < entries.len() {
                entries[*len] = (*old, *new, in_isr);
            }
            *len += 1;
        });
    });
    CONN.on_value(Conn::Closing, || ON_CLOSING.fire());
    CONN.on_value(Conn::Failed, || ON_FAILED.fire());
    TICKS.on_value(LAST_TICK, || ON_LAST_TICK.fire());

    // Waiters, each polled once (so registered) before the first tick.
    let mut closing = pin!(CONN.wait_for(Conn::Closing));
    let mut failed = alloc_pinned(CONN.wait_for(Conn::Failed));
    let mut change = pin!(CONN.wait_for_change());
    let mut connected = pin!(CONN.wait_until(|c| *c == Conn::Connected));
    let mut not_disconnected = pin!(CONN.wait_for_not(Conn::Disconnected).immediate(false));
    let mut conn_stream = pin!(CONN.changes());
    let mut tick7 = pin!(TICKS.wait_for(7));
    let mut tick_stream = pin!(TICKS.changes());

    let pending = poll_once(closing.as_mut(), &W_CLOSING).is_pending()
        && poll_once(failed.as_mut(), &W_FAILED).is_pending()
        && poll_once(change.as_mut(), &W_CHANGE).is_pending()
        && poll_once(connected.as_mut(), &W_CONNECTED).is_pending()
        && poll_once(not_disconnected.as_mut(), &W_NOT_DISCONNECTED).is_pending()
        && poll_next_once(conn_stream.as_mut(), &W_CONN_STREAM).is_pending()
        && poll_once(tick7.as_mut(), &W_TICK7).is_pending()
        && poll_next_once(tick_stream.as_mut(), &W_TICK_STREAM).is_pending();
    t.check(pending, "every waiter is pending before the first tick");
    let allocations = rt::allocations();
    let frees = rt::frees();

    ticks::start(PERIOD);

    // 1. One handler run went Connecting, Connected, Closing, Closed.
    let got = block_on(closing.as_mut(), &W_CLOSING);
    let expected = if cfg!(feature = "demo-failure") {
        Conn::Closed // what a latest-value-only watch would give
    } else {
        Conn::Closing
    };
    t.check(
        got == expected,
        "wait_for(Closing) gets the transient Closing",
    );
    t.check(
        W_CLOSING.count() == 1,
        "wait_for(Closing) woken exactly once",
    );
    t.check(handler_runs() >= 1, "the handler ran");
    t.check(CONN.get() == Conn::Closed, "the value is Closed");
    t.check(CONN.version() == 4, "four transitions, four versions");
    t.check(
        poll_once(change.as_mut(), &W_CHANGE) == Poll::Ready(Conn::Connecting),
        "wait_for_change gets the first transition's value",
    );
    t.check(W_CHANGE.count() == 1, "wait_for_change woken exactly once");
    t.check(
        poll_once(connected.as_mut(), &W_CONNECTED) == Poll::Ready(Conn::Connected),
        "wait_until(Connected) gets the transient Connected",
    );
    t.check(
        W_CONNECTED.count() == 1,
        "wait_until(Connected) woken exactly once",
    );
    t.check(
        poll_once(not_disconnected.as_mut(), &W_NOT_DISCONNECTED) == Poll::Ready(Conn::Connecting),
        "wait_for_not(Disconnected).immediate(false) gets Connecting",
    );
    t.check(
        W_NOT_DISCONNECTED.count() == 1,
        "wait_for_not woken exactly once",
    );
    t.check(
        poll_next_once(conn_stream.as_mut(), &W_CONN_STREAM) == Poll::Ready(Some(Conn::Closed)),
        "changes() yields the latest value, Closed",
    );
    t.check(W_CONN_STREAM.count() >= 1, "changes() was woken");
    t.check(
        poll_next_once(conn_stream.as_mut(), &W_CONN_STREAM).is_pending(),
        "changes() has nothing more",
    );
    t.check(
        poll_once(failed.as_mut(), &W_FAILED).is_pending(),
        "wait_for(Failed) still pending",
    );
    t.check(W_FAILED.count() == 0, "wait_for(Failed) never woken");

    let (log, len) = changes_seen();
    let transitions = [
        (Conn::Disconnected, Conn::Connecting),
        (Conn::Connecting, Conn::Connected),
        (Conn::Connected, Conn::Closing),
        (Conn::Closing, Conn::Closed),
    ];
    t.check(len == 4, "on_change ran once per transition");
    for (i, &(old, new)) in transitions.iter().enumerate() {
        t.check(
            log[i] == (old, new, true),
            "on_change saw (old, new) in order, in the interrupt handler",
        );
    }
    t.check(
        ON_CLOSING.get() == (1, 1),
        "on_value(Closing) ran once, in the interrupt handler",
    );
    t.check(ON_FAILED.get() == (0, 0), "on_value(Failed) did not run");
    t.check(
        rt::allocations() == allocations,
        "the handler's sets and the waits did not allocate",
    );
    let frees_in_handler = rt::frees() - frees;

    // 2. A dropped waiter is never woken; main-loop sets run callbacks too.
    drop(failed);
    CONN.set(Conn::Failed);
    t.check(W_FAILED.count() == 0, "a dropped waiter is not woken");
    t.check(
        ON_FAILED.get() == (1, 0),
        "on_value(Failed) ran once, in the main loop",
    );
    let (log, len) = changes_seen();
    t.check(
        len == 5 && log[4] == (Conn::Closed, Conn::Failed, false),
        "on_change ran for the main loop's set",
    );
    t.check(
        rt::allocations() == allocations,
        "the main loop's set did not allocate",
    );
    t.check(CONN.remove_callback(on_change), "on_change removed");
    // (Removing a callback may allocate; setting and waiting may not.)
    let allocations = rt::allocations();
    CONN.set(Conn::Disconnected);
    t.check(changes_seen().1 == 5, "a removed on_change does not run");

    // 3. TICKS goes 1..=20, one value per handler run.
    t.check(
        block_on(tick7.as_mut(), &W_TICK7) == 7,
        "wait_for(7) gets 7",
    );
    t.check(
        W_TICK7.count() == 1,
        "wait_for(7) woken once, by the matching tick only",
    );
    let mut last = 0;
    let mut yields = 0;
    let mut increasing = true;
    while last < LAST_TICK {
        match block_on_next(tick_stream.as_mut(), &W_TICK_STREAM) {
            Some(v) => {
                increasing &= v > last;
                last = v;
                yields += 1;
            }
            None => break,
        }
    }
    t.check(increasing, "changes() yields strictly newer values");
    t.check(
        last == LAST_TICK && yields >= 1,
        "changes() ends on the last tick's value",
    );

    // 4. The main loop and the handler modify SHARED at once: the handler
    // only while the main loop is inside this loop, so they do overlap.
    let mut mine = 0u32;
    CONTEND.store(true, Ordering::Relaxed);
    while handler_incs() < CONTENDED {
        SHARED.modify(|v| *v += 1000);
        mine += 1;
    }
    CONTEND.store(false, Ordering::Relaxed);
    t.check(
        SHARED.get() == CONTENDED + 1000 * mine,
        "no update lost between the main loop and the handler",
    );
    let mut last_tick = pin!(TICKS.wait_for(LAST_TICK));
    t.check(
        block_on(last_tick.as_mut(), &W_LAST) == LAST_TICK,
        "wait_for(20) is immediate",
    );
    t.check(
        ON_LAST_TICK.get() == (1, 1),
        "on_value(20) ran once, in the interrupt handler",
    );
    t.check(
        rt::allocations() == allocations,
        "the ticks and the main loop's modifies did not allocate",
    );

    println!(
        "contract: {} passed, {} failed ({} handler runs, {} main-loop modifies, \
         {} frees in the first handler run)",
        t.passed,
        t.failed,
        handler_runs(),
        mine,
        frees_in_handler
    );
    t.failed == 0
}

/// A pinned future on the heap, so that it can be dropped half-way.
fn alloc_pinned<F>(fut: F) -> core::pin::Pin<alloc::boxed::Box<F>> {
    alloc::boxed::Box::pin(fut)
}

extern crate alloc;

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    rt::exit(run())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    rt::exit(false)
}
