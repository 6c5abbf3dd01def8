//! Side by side throughput of two synchronous batches, for in-process benches where one call
//! takes microseconds (the software backend against its crypto crates).
//!
//! A round runs a side in batches, doubling the batch until one batch lasts a whole round. A
//! row's rounds are spread over the whole run: every pass measures every row once, keychain and
//! baseline back to back (which goes first alternates), and the best round of each side counts,
//! so a busy stretch of a shared machine costs a row one round, not its result.

use std::time::{Duration, Instant};

/// `n` operations in a row; the harness picks `n`.
pub type Batch<'a> = Box<dyn FnMut(usize) + 'a>;

/// One row: the same operation through keychain and through the raw crate.
pub struct Case<'a> {
    /// Which table the row belongs to (a bench may print several).
    pub table: &'static str,
    /// The operation, as the table shows it.
    pub label: &'static str,
    /// Bytes per operation, for MiB/s rows.
    pub bytes: Option<usize>,
    keychain: Batch<'a>,
    baseline: Batch<'a>,
    best: (f64, f64),
}

impl<'a> Case<'a> {
    /// A row not measured yet.
    pub fn new(
        table: &'static str,
        label: &'static str,
        bytes: Option<usize>,
        keychain: Batch<'a>,
        baseline: Batch<'a>,
    ) -> Self {
        Self {
            table,
            label,
            bytes,
            keychain,
            baseline,
            best: (0.0, 0.0),
        }
    }

    /// The best rounds so far, operations per second: (keychain, baseline).
    pub fn best(&self) -> (f64, f64) {
        self.best
    }

    /// The row as Markdown, `| label | keychain | baseline | ratio |` (see [`crate::row_with`]).
    pub fn row(&self) -> String {
        let (k, b) = self.best;
        crate::row_with(self.label, k, b, self.bytes)
    }
}

impl std::fmt::Debug for Case<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("table", &self.table)
            .field("label", &self.label)
            .field("bytes", &self.bytes)
            .field("best", &self.best)
            .finish_non_exhaustive()
    }
}

/// How long a round lasts, how many passes over all rows, how many warm-up calls.
#[derive(Debug, Clone, Copy)]
pub struct Passes {
    /// Length of one round of one side.
    pub round: Duration,
    /// Passes over all rows; each gives every row one round per side.
    pub passes: usize,
    /// Untimed calls per side before the first pass.
    pub warmup: usize,
}

impl Default for Passes {
    /// Twenty passes of 100 ms rounds after 16 warm-up calls.
    fn default() -> Self {
        Self {
            round: Duration::from_millis(100),
            passes: 20,
            warmup: 16,
        }
    }
}

/// Runs `op` in growing batches until one batch lasts `length`; returns operations per second
/// of that batch.
pub fn round(op: &mut dyn FnMut(usize), length: Duration) -> f64 {
    let mut batch = 1usize;
    loop {
        let start = Instant::now();
        op(batch);
        let elapsed = start.elapsed();
        if elapsed >= length {
            return batch as f64 / elapsed.as_secs_f64();
        }
        batch = (batch * 2).max(
            ((batch as f64) * length.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)) as usize,
        );
    }
}

/// Warms every case up, then runs the passes; each case keeps its best round per side.
pub fn measure(cases: &mut [Case<'_>], plan: Passes) {
    for c in cases.iter_mut() {
        (c.keychain)(plan.warmup);
        (c.baseline)(plan.warmup);
    }
    for pass in 0..plan.passes {
        for c in cases.iter_mut() {
            let (k, b) = if pass % 2 == 0 {
                let k = round(&mut c.keychain, plan.round);
                (k, round(&mut c.baseline, plan.round))
            } else {
                let b = round(&mut c.baseline, plan.round);
                (round(&mut c.keychain, plan.round), b)
            };
            c.best = (c.best.0.max(k), c.best.1.max(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_round_lasts_at_least_its_length_and_counts_every_call() {
        let calls = Cell::new(0usize);
        let mut op = |n: usize| {
            calls.set(calls.get() + n);
            std::thread::sleep(Duration::from_micros(50 * n as u64));
        };
        let start = Instant::now();
        let rate = round(&mut op, Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(20));
        // Calls from every batch, the last one (the measured one) included.
        assert!(calls.get() >= 1 && rate > 0.0, "{rate} ops/s");
    }

    #[test]
    fn measure_warms_up_then_keeps_the_best_round_of_each_side() {
        let (k_calls, b_calls) = (Cell::new(0usize), Cell::new(0usize));
        let mut cases = vec![Case::new(
            "t",
            "row",
            Some(1024),
            Box::new(|n| {
                for i in 0..n {
                    std::hint::black_box(i);
                    k_calls.set(k_calls.get() + 1);
                }
            }),
            Box::new(|n| {
                b_calls.set(b_calls.get() + n);
                std::thread::sleep(Duration::from_micros(n as u64));
            }),
        )];
        let plan = Passes {
            round: Duration::from_millis(2),
            passes: 2,
            warmup: 3,
        };
        measure(&mut cases, plan);
        let (k, b) = cases[0].best();
        assert!(k > b && b > 0.0, "keychain {k}, baseline {b}");
        assert!(k_calls.get() > 3 && b_calls.get() > 3);
        assert!(cases[0].row().starts_with("| row | "), "{}", cases[0].row());
        assert!(cases[0].row().contains("MiB/s"), "{}", cases[0].row());
    }
}
