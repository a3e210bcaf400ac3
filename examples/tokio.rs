//! value-watcher on tokio, with timeouts.
//!
//! The crate has no timer of its own: a timeout is `tokio::time::timeout`
//! (or `tokio::select!` with a `sleep`) around a wait. If the timer wins, the
//! wait is dropped, which unregisters it; nothing is left behind.
//!
//! A download's progress and status are set by a plain std thread while
//! tasks wait on them with deadlines.
//!
//! Run with `cargo run --example tokio`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;
use value_watcher::ValueWatcher;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let progress = Arc::new(ValueWatcher::new(0u8));
    let status = Arc::new(ValueWatcher::new(Status::Queued));

    // A task that reports when half the download is done, or gives up.
    let halfway = tokio::spawn({
        let progress = progress.clone();
        async move {
            match timeout(Duration::from_secs(5), progress.wait_until(|p| *p >= 50)).await {
                Ok(p) => println!("[halfway task]  at least half done: {p}%"),
                Err(_) => println!("[halfway task]  not halfway within 5 s"),
            }
        }
    });

    // The downloader: a std thread outside the runtime.
    let downloader = std::thread::spawn({
        let (progress, status) = (progress.clone(), status.clone());
        move || {
            status.set(Status::Running);
            for p in (0..=100).step_by(10) {
                progress.set(p);
            }
            status.set(Status::Done);
        }
    });

    // A failure never comes: the timeout fires after 50 ms, and the dropped
    // wait is unregistered.
    match timeout(Duration::from_millis(50), status.wait_for(Status::Failed)).await {
        Ok(_) => println!("[main task]     the download failed"),
        Err(_) => println!("[main task]     no failure within 50 ms"),
    }

    // The same recipe with `select!`, here for a value that does come.
    tokio::select! {
        s = status.wait_for(Status::Done) => println!("[main task]     status {s:?}"),
        () = tokio::time::sleep(Duration::from_secs(5)) => println!("[main task]     not done within 5 s"),
    }

    halfway.await.unwrap();
    downloader.join().unwrap();
    println!(
        "done: progress {}%, {} status changes",
        progress.get(),
        status.version()
    );
}
