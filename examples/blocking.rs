//! value-watcher without async: plain threads block on `.wait()` and
//! `.wait_timeout()` (every wait future has them, with the default `std`
//! feature). A blocked thread parks, and the setting thread unparks it.
//!
//! A worker thread processes a job; other threads wait for its progress and
//! status.
//!
//! Run with `cargo run --example blocking`.

use std::thread;
use std::time::Duration;

use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Idle,
    Running,
    Done,
    Failed,
}

static STATUS: ValueWatcher<Status> = ValueWatcher::new(Status::Idle);
static PROGRESS: ValueWatcher<u32> = ValueWatcher::new(0);

fn main() {
    thread::scope(|s| {
        // Waits with no deadline.
        s.spawn(|| {
            let status = STATUS.wait_for_not(Status::Idle).wait();
            println!("[reporter] the job left Idle: {status:?}");
            let p = PROGRESS.wait_until(|p| *p >= 50).wait();
            println!("[reporter] at least half done: {p}%");
        });

        // Waits with a deadline: `None` if it passed.
        s.spawn(|| {
            match STATUS
                .wait_for(Status::Failed)
                .wait_timeout(Duration::from_millis(50))
            {
                Some(_) => println!("[watchdog] the job failed"),
                None => println!("[watchdog] no failure within 50 ms"),
            }
            match STATUS
                .wait_for(Status::Done)
                .wait_timeout(Duration::from_secs(5))
            {
                Some(_) => println!("[watchdog] the job is done"),
                None => println!("[watchdog] not done within 5 s"),
            }
        });

        // The worker.
        s.spawn(|| {
            STATUS.set(Status::Running);
            for _ in 0..10 {
                PROGRESS.modify(|p| *p += 10);
            }
            STATUS.set(Status::Done);
        });
    });
    println!(
        "done: status {:?}, progress {}%",
        STATUS.get(),
        PROGRESS.get()
    );
}
