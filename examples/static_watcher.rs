//! Embedded style, on the host: a `static` watcher that an interrupt handler
//! sets and the firmware's main loop waits on.
//!
//! The "interrupt handler" is a plain function, `adc_conversion_done`, called
//! from another thread that plays the ADC: it delivers five samples back to
//! back. One of them is a single-sample spike above the alarm threshold, and
//! the main loop still reports it (with its exact value), although the level
//! is back to normal by the time the main loop runs: the setter checks the
//! waiting predicate against every sample, inside the "interrupt".
//!
//! The main loop is a tiny executor of the kind firmware runs: poll the main
//! future, then sleep until an interrupt wakes the core (`wfi` on Arm; here
//! the thread parks, and a waker unparks it).
//!
//! # On a real single-core target
//!
//! Depend on the crate without `std` and with the `critical-section` lock:
//!
//! ```toml
//! value-watcher = { version = "0.1", default-features = false, features = ["critical-section"] }
//! # and one critical-section implementation, for example on Cortex-M:
//! cortex-m = { version = "0.7", features = ["critical-section-single-core"] }
//! ```
//!
//! The default spinlock is not interrupt-safe: if the handler interrupted the
//! main loop while it held the watcher's lock, the handler would spin forever
//! on one core. With `critical-section` the lock is held with interrupts
//! masked, so a handler can never preempt a lock holder, and `set` from the
//! handler is safe. The watcher still needs `alloc` (a `#[global_allocator]`)
//! only for callbacks; waiting and setting never allocate.
//!
//! Everything the setter runs, runs in the handler: the waiting predicates
//! (under the lock, with interrupts masked, so keep them as cheap as these),
//! the wakers (an embassy waker just marks a task ready), and any
//! `on_change`/`on_value` callbacks.
//!
//! Run with `cargo run --example static_watcher`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};

use value_watcher::ValueWatcher;

/// The latest ADC reading. `const` construction: no lazy initialization, no
/// `Mutex<RefCell<..>>` around it, usable from the handler and the main loop.
static LEVEL: ValueWatcher<u16> = ValueWatcher::new(0);

const ALARM_ABOVE: u16 = 3000;
const CALM_BELOW: u16 = 100;

/// The interrupt handler: store the sample and return. Waking whoever waits
/// for it happens inside `set`; an equal sample is not a transition and
/// wakes nobody.
fn adc_conversion_done(sample: u16) {
    LEVEL.set(sample);
}

/// The simulated peripheral: five conversions, each "raising the interrupt"
/// at once, without waiting for the main loop to run in between.
fn enable_adc_interrupts() -> JoinHandle<()> {
    thread::spawn(|| {
        for sample in [120, 180, 3900, 140, 90] {
            adc_conversion_done(sample);
        }
    })
}

/// The firmware's application: wait for an over-threshold sample, then for
/// the level to calm down.
async fn app() -> (u16, u16) {
    // The wait is armed at the first poll, before interrupts are enabled
    // (see `main_loop`), so no sample can slip past it.
    let peak = LEVEL.wait_until(|v| *v > ALARM_ABOVE).await;
    println!("alarm: level reached {peak} (now {})", LEVEL.get());
    // Checks the current value first: if the level is already low, this is
    // ready at once.
    let calm = LEVEL.wait_until(|v| *v < CALM_BELOW).await;
    println!("calm again at {calm}");
    (peak, calm)
}

/// Polls `app`; after its first poll enables the interrupts; then sleeps
/// until woken, like `loop { poll(); wfi(); }`.
fn main_loop<F: Future>(app: F, enable_interrupts: impl FnOnce() -> JoinHandle<()>) -> F::Output {
    /// Waking the main loop = the pending interrupt that ends `wfi`.
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut app = pin!(app);
    let mut enable = Some(enable_interrupts);
    let mut peripheral = None;
    loop {
        if let Poll::Ready(out) = app.as_mut().poll(&mut cx) {
            if let Some(peripheral) = peripheral {
                JoinHandle::join(peripheral).expect("the ADC thread panicked");
            }
            return out;
        }
        if let Some(enable) = enable.take() {
            peripheral = Some(enable());
        }
        // `wfi`: returns at once if a wake-up came since the last poll, and
        // may return spuriously; either way the loop just polls again.
        thread::park();
    }
}

fn main() {
    let (peak, calm) = main_loop(app(), enable_adc_interrupts);
    assert_eq!(
        peak, 3900,
        "the one-sample spike is reported, not a later value"
    );
    assert_eq!(calm, 90);
    // Five samples, all different from the one before: five transitions.
    assert_eq!(LEVEL.version(), 5);
    println!("{} samples, main loop done", LEVEL.version());
}
