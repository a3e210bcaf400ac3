//! Issue #5 item 2: the seed's `timeout=` argument as recipes with each
//! executor's timer, plus the blocking `wait_timeout`. Both outcomes are
//! tested: the value arrives in time (generous timeouts: timing never decides
//! the result), and it never comes (short timeouts: timing only decides when
//! the test ends), after which the dropped wait is unregistered.

mod support;

use std::pin::pin;
use std::sync::mpsc;
use std::time::Duration;

use futures_lite::FutureExt;
use support::{counting_waker, poll_with};
use value_watcher::ValueWatcher;

const GENEROUS: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

/// After a timed-out wait was dropped, a transition wakes only a new waiter.
fn assert_unregistered(w: &ValueWatcher<u32>, value: u32) {
    let (count, waker) = counting_waker();
    let mut fresh = pin!(w.wait_for(value));
    assert!(poll_with(fresh.as_mut(), &waker).is_pending());
    w.set(value);
    assert_eq!(count.count(), 1);
    assert_eq!(
        poll_with(fresh.as_mut(), &waker),
        std::task::Poll::Ready(value)
    );
}

#[test]
fn tokio_time_timeout() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let w = ValueWatcher::new(0u32);
    rt.block_on(async {
        assert!(tokio::time::timeout(SHORT, w.wait_for(1)).await.is_err());
        std::thread::scope(|s| {
            s.spawn(|| w.set(2));
        });
        assert_eq!(tokio::time::timeout(GENEROUS, w.wait_for(2)).await, Ok(2));
    });
    assert_unregistered(&w, 1);
}

#[test]
fn smol_timer_raced_with_or() {
    let w = ValueWatcher::new(0u32);
    let with_timeout = |value, after| {
        let w = &w;
        async move { Some(w.wait_for(value).await) }.or(async move {
            smol::Timer::after(after).await;
            None
        })
    };
    assert_eq!(smol::block_on(with_timeout(1, SHORT)), None);
    std::thread::scope(|s| {
        s.spawn(|| w.set(2));
        assert_eq!(smol::block_on(with_timeout(2, GENEROUS)), Some(2));
    });
    assert_unregistered(&w, 1);
}

static EMBASSY_W: ValueWatcher<u32> = ValueWatcher::new(0);

#[embassy_executor::task]
async fn embassy_timeouts(report: mpsc::Sender<(bool, Option<u32>)>) {
    use embassy_time::{Duration, with_timeout};
    let missed = with_timeout(Duration::from_millis(20), EMBASSY_W.wait_for(1)).await;
    let arrived = with_timeout(Duration::from_secs(60), EMBASSY_W.wait_for(2)).await;
    report.send((missed.is_err(), arrived.ok())).unwrap();
}

#[test]
fn embassy_time_with_timeout() {
    let _dog = support::watchdog("embassy timeouts", 120);
    let (report, results) = mpsc::channel();
    std::thread::spawn(move || {
        let executor = Box::leak(Box::new(embassy_executor::Executor::new()));
        executor.run(|spawner| spawner.spawn(embassy_timeouts(report).unwrap()));
    });
    // Set 2 from this foreign thread until the task has seen it.
    let (missed, arrived) = loop {
        EMBASSY_W.set(2);
        if let Ok(result) = results.recv_timeout(Duration::from_millis(10)) {
            break result;
        }
    };
    assert!(missed, "nobody set 1: the timeout fires");
    assert_eq!(arrived, Some(2));
    assert_unregistered(&EMBASSY_W, 1);
}

#[test]
fn blocking_wait_timeout_and_deadline() {
    let w = ValueWatcher::new(0u32);
    assert_eq!(w.wait_for(1).wait_timeout(SHORT), None);
    assert_eq!(
        w.wait_for(1)
            .wait_deadline(std::time::Instant::now() + SHORT),
        None
    );
    std::thread::scope(|s| {
        s.spawn(|| w.set(2));
        assert_eq!(w.wait_for(2).wait_timeout(GENEROUS), Some(2));
    });
    assert_unregistered(&w, 1);
}
