//! Deterministic instruction counts under valgrind (callgrind, through
//! gungraun): value-watcher against `tokio::sync::watch` and a bare spinlock
//! for `set`, `get` and one wait/wake cycle.
//!
//! Needs valgrind and the `gungraun-runner` binary of the same version as the
//! `gungraun` dev-dependency (`.ci/bench.sh` installs it):
//!
//! ```text
//! cargo bench --bench instructions
//! ```
//!
//! Each benchmark function runs once in its own process; only the function
//! body is counted. Setup (in the `#[bench]` argument) creates the watcher,
//! leaks it so its drop is not counted, and runs the measured operation once
//! first, so one-time lazy initialization is not counted either.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use gungraun::{library_benchmark, library_benchmark_group, main};
use value_watcher::ValueWatcher;

type TokioTx = tokio::sync::watch::Sender<u64>;
type TokioRx = tokio::sync::watch::Receiver<u64>;

struct Counting(std::sync::atomic::AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn waker() -> &'static Waker {
    Box::leak(Box::new(Waker::from(Arc::new(Counting(
        std::sync::atomic::AtomicUsize::new(0),
    )))))
}

// === setup ===

fn ours() -> &'static ValueWatcher<u64> {
    let w = Box::leak(Box::new(ValueWatcher::new(0)));
    w.set(1);
    black_box(w.get());
    w
}

fn tokio_tx() -> &'static TokioTx {
    let (tx, rx) = tokio::sync::watch::channel(0);
    let tx = Box::leak(Box::new(tx));
    Box::leak(Box::new(rx));
    tx.send_replace(1);
    black_box(*tx.borrow());
    tx
}

fn spin() -> &'static spin::mutex::SpinMutex<u64> {
    let m = Box::leak(Box::new(spin::mutex::SpinMutex::new(0)));
    *m.lock() = 1;
    m
}

fn ours_with_waker() -> (&'static ValueWatcher<u64>, &'static Waker) {
    let w = ours();
    let waker = waker();
    ours_cycle(w, waker, 2);
    (w, waker)
}

fn tokio_with_waker() -> (&'static TokioTx, &'static mut TokioRx, &'static Waker) {
    let tx = tokio_tx();
    let rx = Box::leak(Box::new(tx.subscribe()));
    let waker = waker();
    tokio_cycle(tx, rx, waker, 2);
    (tx, rx, waker)
}

/// A watcher with `n` registered waiters that never match (their futures are
/// leaked, pinned on the heap).
fn ours_with_waiters(n: u64) -> &'static ValueWatcher<u64> {
    let w = ours();
    let waker = waker();
    for i in 0..n {
        let fut = Box::leak(Box::new(w.wait_for(u64::MAX - i)));
        // SAFETY: leaked, so it never moves again and is never dropped.
        let fut = unsafe { std::pin::Pin::new_unchecked(fut) };
        assert!(fut.poll(&mut Context::from_waker(waker)).is_pending());
    }
    w.set(2);
    w
}

/// A watcher whose only callback was an `on_value` one-shot that has fired:
/// SPEC 3.19 says a set then costs what it costs with no callbacks at all.
fn ours_with_spent_one_shot() -> &'static ValueWatcher<u64> {
    let w = ours();
    w.on_value(2, || {});
    w.set(2);
    w.set(1);
    w
}

/// A watcher with one `on_change` callback that does nothing.
fn ours_with_on_change() -> &'static ValueWatcher<u64> {
    let w = ours();
    w.on_change(|_, _| {});
    w.set(2);
    w
}

// === the measured operations ===

fn ours_cycle(w: &ValueWatcher<u64>, waker: &Waker, v: u64) {
    let mut cx = Context::from_waker(waker);
    let mut fut = pin!(w.wait_for(v));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    w.set(v);
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(v));
}

fn tokio_cycle(tx: &TokioTx, rx: &mut TokioRx, waker: &Waker, v: u64) {
    let mut cx = Context::from_waker(waker);
    let mut fut = pin!(async { *rx.wait_for(|x| *x == v).await.unwrap() });
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    tx.send_replace(v);
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(v));
}

#[library_benchmark]
#[bench::value_watcher(ours())]
#[bench::spent_one_shot(ours_with_spent_one_shot())]
#[bench::one_on_change(ours_with_on_change())]
fn set_ours(w: &'static ValueWatcher<u64>) -> bool {
    w.set(black_box(7))
}

#[library_benchmark]
#[bench::tokio_send_replace(tokio_tx())]
fn set_tokio(tx: &'static TokioTx) -> u64 {
    tx.send_replace(black_box(7))
}

#[library_benchmark]
#[bench::spin(spin())]
fn set_spin(m: &'static spin::mutex::SpinMutex<u64>) {
    *m.lock() = black_box(7);
}

#[library_benchmark]
#[bench::value_watcher(ours())]
fn get_ours(w: &'static ValueWatcher<u64>) -> u64 {
    black_box(w.get())
}

#[library_benchmark]
#[bench::tokio_borrow_clone(tokio_tx())]
fn get_tokio(tx: &'static TokioTx) -> u64 {
    black_box(*tx.borrow())
}

#[library_benchmark]
#[bench::spin(spin())]
fn get_spin(m: &'static spin::mutex::SpinMutex<u64>) -> u64 {
    black_box(*m.lock())
}

#[library_benchmark]
#[bench::value_watcher(ours_with_waker())]
fn wait_wake_ours((w, waker): (&'static ValueWatcher<u64>, &'static Waker)) {
    ours_cycle(w, waker, black_box(3));
}

#[library_benchmark]
#[bench::tokio(tokio_with_waker())]
fn wait_wake_tokio((tx, rx, waker): (&'static TokioTx, &'static mut TokioRx, &'static Waker)) {
    tokio_cycle(tx, rx, waker, black_box(3));
}

// A transition offered to `n` waiters that do not match it: the setter's
// walk, one predicate call per waiter and no wake-up.
#[library_benchmark]
#[bench::waiters_0(ours_with_waiters(0))]
#[bench::waiters_1(ours_with_waiters(1))]
#[bench::waiters_1000(ours_with_waiters(1000))]
fn set_nonmatching_ours(w: &'static ValueWatcher<u64>) -> bool {
    w.set(black_box(7))
}

library_benchmark_group!(name = set; benchmarks = set_ours, set_tokio, set_spin);
library_benchmark_group!(name = get; benchmarks = get_ours, get_tokio, get_spin);
library_benchmark_group!(name = wait_wake; benchmarks = wait_wake_ours, wait_wake_tokio);
library_benchmark_group!(name = walk; benchmarks = set_nonmatching_ours);

main!(library_benchmark_groups = set, get, wait_wake, walk);
