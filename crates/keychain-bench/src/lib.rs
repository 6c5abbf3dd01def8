#![doc = include_str!("../README.md")]

pub mod batch;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One operation to measure, callable from many tasks at once.
pub type Op = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Wraps an async closure as an [`Op`].
///
/// ```
/// let op = keychain_bench::op(|| async { std::hint::black_box(1 + 1); });
/// # let _ = op;
/// ```
pub fn op<F, Fut>(f: F) -> Op
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// Whether this binary runs as a benchmark: `cargo bench` passes `--bench`; `cargo test
/// --all-targets` runs bench binaries without it, and a benchmark is not a test.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The runtime the service benches measure on: multi-threaded with two workers (the build
/// machines have two cores).
///
/// # Panics
/// When tokio cannot start its runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

/// How long one round lasts and how many rounds each side gets.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Length of one round.
    pub round: Duration,
    /// Rounds per side; the best one counts.
    pub rounds: usize,
    /// Untimed calls per side before the first round.
    pub warmup: usize,
}

impl Default for Plan {
    /// Five rounds of 1.5 s after 20 warm-up calls: enough for a service on loopback.
    fn default() -> Self {
        Self {
            round: Duration::from_millis(1500),
            rounds: 5,
            warmup: 20,
        }
    }
}

/// Operations per second over one round with `tasks` tasks running `op` in a loop.
///
/// # Panics
/// When a task panics (an operation that fails should panic: a benchmark of errors is wrong).
pub async fn round(op: &Op, tasks: usize, length: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + length;
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks.max(1) {
        let op = Arc::clone(op);
        let done = Arc::clone(&done);
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                op().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        if let Err(e) = h.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Best-of-rounds ops/s of `keychain` and of `baseline`, with `tasks` concurrent tasks each,
/// rounds alternating.
pub async fn compare(keychain: &Op, baseline: &Op, tasks: usize, plan: Plan) -> (f64, f64) {
    for _ in 0..plan.warmup {
        keychain().await;
        baseline().await;
    }
    let (mut k, mut b) = (0f64, 0f64);
    for _ in 0..plan.rounds {
        k = k.max(round(keychain, tasks, plan.round).await);
        b = b.max(round(baseline, tasks, plan.round).await);
    }
    (k, b)
}

/// One Markdown table row: `| label | k ops/s | b ops/s | k/b |`.
pub fn row(label: &str, keychain: f64, baseline: f64) -> String {
    row_with(label, keychain, baseline, None)
}

/// One Markdown table row of two rates (as [`rate`] prints them) and their ratio `k/b`.
pub fn row_with(label: &str, keychain: f64, baseline: f64, bytes: Option<usize>) -> String {
    format!(
        "| {label} | {} | {} | {:.3} |",
        rate(keychain, bytes),
        rate(baseline, bytes),
        keychain / baseline
    )
}

/// `ops` operations per second as `N ops/s`, or, when each operation handles `bytes` bytes, as
/// `N.N MiB/s`.
pub fn rate(ops: f64, bytes: Option<usize>) -> String {
    match bytes {
        None => format!("{ops:.0} ops/s"),
        Some(n) => format!("{:.1} MiB/s", ops * n as f64 / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_the_operations_of_every_task() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&calls);
        let op = op(move || {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let rate = round(&op, 4, Duration::from_millis(100)).await;
        let n = calls.load(Ordering::Relaxed) as f64;
        // Every finished call is counted once, over at least the round's length (however
        // loaded the machine is).
        assert!(n >= 1.0, "no call ran");
        assert!(rate > 0.0 && rate <= n / 0.1, "{rate} ops/s from {n} calls");
        assert_eq!(row("x", 3.0, 2.0), "| x | 3 ops/s | 2 ops/s | 1.500 |");
        assert_eq!(
            row_with("y", 2.0, 4.0, Some(1 << 20)),
            "| y | 2.0 MiB/s | 4.0 MiB/s | 0.500 |"
        );
    }
}
