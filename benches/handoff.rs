//! Cross-thread hand-off: value-watcher beside tokio's `watch`, both driven
//! by the same executor or harness, in one process.
//!
//! Two tasks hand a counter back and forth through two cells: side A sets
//! `ping = i` and waits for `pong == i`; side B waits for `ping == i` and
//! sets `pong = i`. One iteration is one round trip. Three ways to run the
//! two sides, each used for both crates:
//!
//! * `spin-park`: two OS threads, each driving its side with the same
//!   `block_on` written below: poll; on `Pending`, spin up to 4,000
//!   `spin_loop` hints on a flag the waker sets, then park until woken.
//! * `tokio-rt`: tokio's multi-thread runtime with 2 workers, each side a
//!   spawned task.
//! * `smol`: a `smol::Executor` run by 2 threads, each side a spawned task.
//!
//! Every wait future is wrapped in a poll counter, so the table also gives
//! the polls per round trip (2 means every wait completed on its first poll).
//! Rounds are interleaved (round 1 of every harness and system, then round
//! 2, ...; within a round the two systems run back to back, in alternating
//! order), and the table gives medians over rounds. The ratio is the median
//! of the per-round ratios (each round's two runs are neighbours in time, so
//! a load change between rounds cancels out), with its spread: on this
//! shared 2-core VM a run lands in a ~200 ns or a ~450 ns regime for either
//! crate, depending on where the host puts the two vCPUs.
//!
//! ```text
//! cargo bench --bench handoff                            # 15 rounds, all harnesses
//! HANDOFF_ROUNDS=3 HANDOFF_HARNESS=spin-park cargo bench --bench handoff
//! HANDOFF_ONLY=spin-park:value-watcher:200000 cargo bench --bench handoff   # one run, for perf
//! HANDOFF_SET_PAUSE=8 cargo bench --bench handoff   # diagnostic: 8 hints after every set
//! ```

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use value_watcher::ValueWatcher;

// ============================================================================
// The two systems
// ============================================================================

/// One side's view of the two cells: what it sets and what it waits on.
trait Side: Send + 'static {
    /// Store `v` (waking whoever the system wakes).
    fn set(&self, v: u64);
    /// Wait until the watched cell equals `v`.
    fn wait(&mut self, v: u64) -> impl Future<Output = u64> + Send + '_;
}

trait System {
    const NAME: &'static str;
    type Side: Side;
    /// Side A (sets ping, waits on pong) and side B (sets pong, waits on ping).
    fn pair() -> (Self::Side, Self::Side);
}

struct Ours;

struct OursSide {
    set: Arc<ValueWatcher<u64>>,
    watch: Arc<ValueWatcher<u64>>,
}

impl Side for OursSide {
    fn set(&self, v: u64) {
        self.set.set(v);
    }
    fn wait(&mut self, v: u64) -> impl Future<Output = u64> + Send + '_ {
        self.watch.wait_for(v)
    }
}

impl System for Ours {
    const NAME: &'static str = "value-watcher";
    type Side = OursSide;
    fn pair() -> (OursSide, OursSide) {
        let ping = Arc::new(ValueWatcher::new(0));
        let pong = Arc::new(ValueWatcher::new(0));
        (
            OursSide {
                set: ping.clone(),
                watch: pong.clone(),
            },
            OursSide {
                set: pong,
                watch: ping,
            },
        )
    }
}

struct Tokio;

struct TokioSide {
    tx: tokio::sync::watch::Sender<u64>,
    rx: tokio::sync::watch::Receiver<u64>,
}

impl Side for TokioSide {
    fn set(&self, v: u64) {
        self.tx.send_replace(v);
    }
    // The trait's `Send` bound is spelled out; an `async fn` would hide it.
    #[allow(clippy::manual_async_fn)]
    fn wait(&mut self, v: u64) -> impl Future<Output = u64> + Send + '_ {
        async move { *self.rx.wait_for(|x| *x == v).await.expect("sender alive") }
    }
}

impl System for Tokio {
    const NAME: &'static str = "tokio";
    type Side = TokioSide;
    fn pair() -> (TokioSide, TokioSide) {
        let (ping_tx, ping_rx) = tokio::sync::watch::channel(0);
        let (pong_tx, pong_rx) = tokio::sync::watch::channel(0);
        (
            TokioSide {
                tx: ping_tx,
                rx: pong_rx,
            },
            TokioSide {
                tx: pong_tx,
                rx: ping_rx,
            },
        )
    }
}

// ============================================================================
// The two sides, as async code any executor can run
// ============================================================================

/// A poll counter on its own cache lines (each side has one, so counting
/// adds no sharing between the sides).
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

/// Counts the polls of the future it wraps.
struct Counted<'c, F> {
    fut: F,
    polls: &'c Counter,
}

impl<F: Future> Future for Counted<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: never moved out of `self`.
        let this = unsafe { self.get_unchecked_mut() };
        this.polls.0.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx)
    }
}

async fn side_a<S: Side>(mut side: S, n: u64, polls: Arc<Counter>) -> Duration {
    let start = Instant::now();
    let pause = set_pause();
    for i in 1..=n {
        side.set(i);
        after_set(pause);
        let got = Counted {
            fut: side.wait(i),
            polls: &polls,
        }
        .await;
        assert_eq!(got, i);
    }
    start.elapsed()
}

async fn side_b<S: Side>(mut side: S, n: u64, polls: Arc<Counter>) {
    let pause = set_pause();
    for i in 1..=n {
        let got = Counted {
            fut: side.wait(i),
            polls: &polls,
        }
        .await;
        assert_eq!(got, i);
        side.set(i);
        after_set(pause);
    }
}

/// `HANDOFF_SET_PAUSE`: `spin_loop` hints each side spends after every set,
/// before it waits (default 0). A diagnostic, not part of the measurement:
/// it gives the other side time to answer before the setter's own wait
/// starts, the way a setter that is slow after storing does, and shows how
/// the polls per round trip and the round trip follow.
fn set_pause() -> u32 {
    env("HANDOFF_SET_PAUSE").unwrap_or(0)
}

fn after_set(pause: u32) {
    for _ in 0..pause {
        std::hint::spin_loop();
    }
}

// ============================================================================
// The harnesses
// ============================================================================

/// The waker of [`spin_park_block_on`]: a flag and the thread to unpark.
struct Signal {
    woken: AtomicBool,
    thread: std::thread::Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls; on `Pending`, spins up to 4,000 `spin_loop` hints on the waker's
/// flag, then parks until it is set. One waker per call, created up front.
fn spin_park_block_on<F: Future>(fut: F) -> F::Output {
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let mut spins = 0;
        while !signal.woken.swap(false, Ordering::Acquire) {
            if spins < 4_000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Harness {
    SpinPark,
    TokioRt,
    Smol,
}

impl Harness {
    const ALL: [Harness; 3] = [Harness::SpinPark, Harness::TokioRt, Harness::Smol];

    fn name(self) -> &'static str {
        match self {
            Harness::SpinPark => "spin-park",
            Harness::TokioRt => "tokio-rt",
            Harness::Smol => "smol",
        }
    }

    /// Round trips per run (each harness's round trip differs by 10x).
    fn round_trips(self) -> u64 {
        match self {
            Harness::SpinPark => 30_000,
            Harness::TokioRt => 2_000,
            Harness::Smol => 15_000,
        }
    }
}

/// What one run measured.
struct Run {
    per_round_trip: Duration,
    polls_per_round_trip: f64,
}

/// Runs `n` round trips of system `S` on harness `h`.
fn run<S: System>(h: Harness, n: u64) -> Run {
    let (a, b) = S::pair();
    let pa = Arc::new(Counter::default());
    let pb = Arc::new(Counter::default());
    let elapsed = match h {
        Harness::SpinPark => std::thread::scope(|s| {
            let pb = pb.clone();
            s.spawn(move || spin_park_block_on(side_b(b, n, pb)));
            spin_park_block_on(side_a(a, n, pa.clone()))
        }),
        Harness::TokioRt => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("tokio runtime");
            let (pa, pb) = (pa.clone(), pb.clone());
            rt.block_on(async move {
                let tb = tokio::spawn(side_b(b, n, pb));
                let ta = tokio::spawn(side_a(a, n, pa));
                let elapsed = ta.await.expect("side A");
                tb.await.expect("side B");
                elapsed
            })
        }
        Harness::Smol => {
            let ex = smol::Executor::new();
            let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let (ex, stop_rx) = (&ex, stop_rx.clone());
                    s.spawn(move || smol::block_on(ex.run(stop_rx.recv())));
                }
                let tb = ex.spawn(side_b(b, n, pb.clone()));
                let ta = ex.spawn(side_a(a, n, pa.clone()));
                let elapsed = smol::block_on(async {
                    let elapsed = ta.await;
                    tb.await;
                    elapsed
                });
                drop(stop_tx);
                elapsed
            })
        }
    };
    let polls = pa.0.load(Ordering::Relaxed) + pb.0.load(Ordering::Relaxed);
    Run {
        per_round_trip: elapsed / u32::try_from(n).expect("round trips fit u32"),
        polls_per_round_trip: polls as f64 / n as f64,
    }
}

fn run_named(h: Harness, system: &str, n: u64) -> Run {
    match system {
        "value-watcher" => run::<Ours>(h, n),
        "tokio" => run::<Tokio>(h, n),
        other => panic!("unknown system {other}"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let s = std::env::var(name).ok()?;
    Some(
        s.parse()
            .unwrap_or_else(|_| panic!("{name}={s} does not parse")),
    )
}

fn main() {
    // `cargo bench` passes `--bench`. Without it (`cargo test --benches`),
    // or with `-- --test` (`.ci/bench.sh --smoke`), run every combination
    // once with 200 round trips: a check that it runs, not a measurement.
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");

    if let Ok(spec) = std::env::var("HANDOFF_ONLY") {
        let mut it = spec.split(':');
        let (h, system, n) = (it.next(), it.next(), it.next());
        let h = Harness::ALL
            .into_iter()
            .find(|x| Some(x.name()) == h)
            .expect("HANDOFF_ONLY=<harness>:<system>:<round trips>");
        let n = n.map_or(h.round_trips(), |n| n.parse().expect("round trips"));
        let r = run_named(h, system.expect("system"), n);
        println!(
            "{} {}: {n} round trips, {:?} each, {:.2} polls each",
            h.name(),
            system.unwrap_or_default(),
            r.per_round_trip,
            r.polls_per_round_trip
        );
        return;
    }

    let rounds: usize = if smoke {
        1
    } else {
        env("HANDOFF_ROUNDS").unwrap_or(15)
    };
    let only: Option<String> = env("HANDOFF_HARNESS");
    let harnesses: Vec<Harness> = Harness::ALL
        .into_iter()
        .filter(|h| only.as_deref().is_none_or(|o| o == h.name()))
        .collect();
    let systems = [Ours::NAME, Tokio::NAME];
    // [harness][system] -> (ns per round trip, polls per round trip) per round
    let mut results = vec![vec![(Vec::new(), Vec::new()); systems.len()]; harnesses.len()];

    for round in 0..rounds {
        for (hi, &h) in harnesses.iter().enumerate() {
            let n = if smoke { 200 } else { h.round_trips() };
            for k in 0..systems.len() {
                // Alternate which system goes first.
                let si = if round % 2 == 0 {
                    k
                } else {
                    systems.len() - 1 - k
                };
                let system = systems[si];
                if round == 0 && !smoke {
                    // Warm-up: thread creation, page faults, the runtimes.
                    run_named(h, system, n / 10);
                }
                let r = run_named(h, system, n);
                results[hi][si].0.push(r.per_round_trip.as_nanos() as f64);
                results[hi][si].1.push(r.polls_per_round_trip);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }

    println!(
        "\nhand-off ping-pong, {rounds} interleaved round(s); medians (min-max) per round trip\n"
    );
    println!(
        "| harness | system | round trip, ns | polls per round trip | ratio to tokio, per round |"
    );
    println!("|---|---|---:|---:|---:|");
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        (median(&mut v.to_vec()), lo, hi)
    };
    for (hi, h) in harnesses.iter().enumerate() {
        for (si, system) in systems.iter().enumerate() {
            let (ns, polls) = &results[hi][si];
            let (m, lo, hi_) = spread(ns);
            let p = median(&mut polls.clone());
            let ratios: Vec<f64> = ns
                .iter()
                .zip(&results[hi][1].0)
                .map(|(ours, tokio)| ours / tokio)
                .collect();
            let (r, rlo, rhi) = spread(&ratios);
            println!(
                "| {} | {system} | {m:.0} ({lo:.0}-{hi_:.0}) | {p:.2} | {r:.2}x ({rlo:.2}-{rhi:.2}) |",
                h.name(),
            );
        }
    }
}
