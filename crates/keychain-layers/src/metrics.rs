//! Per-operation counts, errors and latency percentiles, readable in process.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keychain_core::{
    Backend, Capabilities, Health, ImportSpec, KeyAttestation, KeyEntry, KeyInfo, KeyMaterial,
    KeyName, KeyRef, KeySpec, Operation, Result, RsaPadding, SecretBytes, SignInput, Signature,
    SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};

/// The operations of [`Backend`], in trait order; the index is the slot in [`Shared::ops`].
const OPS: [Operation; 15] = [
    Operation::GenerateKey,
    Operation::KeyInfo,
    Operation::ListKeys,
    Operation::DeleteKey,
    Operation::Sign,
    Operation::Close,
    Operation::Decrypt,
    Operation::Encrypt,
    Operation::DecryptAead,
    Operation::RotateKey,
    Operation::ImportKey,
    Operation::ExportWrapped,
    Operation::ImportWrapped,
    Operation::Random,
    Operation::Health,
];

/// Sub-buckets per power of two: a reported percentile is at most 25 % above the true value.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` µs get one bucket each; above, `SUB` buckets per power of two up to 2^64.
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

fn bucket_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let msb = 63 - us.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (us >> shift) & (SUB - 1);
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The largest value (µs) that falls in bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    let upper = (u128::from(SUB + sub + 1) << shift) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
}

/// A fixed-size log-bucketed latency histogram (about 2 KiB), lock-free to record.
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    max_us: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max_us: AtomicU64::new(0),
        }
    }

    fn record(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// `(p50, p99, max)`, each the upper bound of its bucket capped at the maximum seen.
    fn summary(&self) -> (Duration, Duration, Duration) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let max = self.max_us.load(Ordering::Relaxed);
        let total: u64 = counts.iter().sum();
        let quantile = |q_percent: u64| -> Duration {
            if total == 0 {
                return Duration::ZERO;
            }
            let rank = (total * q_percent).div_ceil(100).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(bucket_upper(i).min(max));
                }
            }
            Duration::from_micros(max)
        };
        (quantile(50), quantile(99), Duration::from_micros(max))
    }
}

struct OpStats {
    count: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

struct Shared {
    ops: [OpStats; OPS.len()],
}

/// A handle on the counters of one [`metrics`] layer; cheap to clone, shared with the layer.
#[derive(Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                ops: std::array::from_fn(|_| OpStats {
                    count: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    latency: Histogram::new(),
                }),
            }),
        }
    }

    fn record(&self, op: Operation, latency: Duration, ok: bool) {
        let Some(slot) = OPS.iter().position(|o| *o == op) else {
            return;
        };
        let stats = &self.shared.ops[slot];
        stats.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stats.latency.record(us);
    }

    /// The counters now, for every operation called at least once. Taken without a lock while
    /// calls go on, so counts and percentiles may differ by the calls that ended meanwhile.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let ops = OPS
            .iter()
            .zip(&self.shared.ops)
            .filter_map(|(op, stats)| {
                let count = stats.count.load(Ordering::Relaxed);
                if count == 0 {
                    return None;
                }
                let (p50, p99, max) = stats.latency.summary();
                Some(OpMetrics {
                    operation: *op,
                    count,
                    errors: stats.errors.load(Ordering::Relaxed),
                    p50,
                    p99,
                    max,
                })
            })
            .collect();
        MetricsSnapshot { ops }
    }
}

/// The counters of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpMetrics {
    /// Which operation.
    pub operation: Operation,
    /// Calls that ended (successfully or not).
    pub count: u64,
    /// Calls that returned an error (of any kind, `NotFound` included).
    pub errors: u64,
    /// Median latency; the upper bound of its histogram bucket, at most 25 % above the truth.
    pub p50: Duration,
    /// 99th-percentile latency, with the same precision as `p50`.
    pub p99: Duration,
    /// The longest call (exact, microsecond resolution).
    pub max: Duration,
}

/// What [`Metrics::snapshot`] returns: one [`OpMetrics`] per operation called at least once, in
/// the order of the [`Backend`] trait's methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Per-operation counters.
    pub ops: Vec<OpMetrics>,
}

impl MetricsSnapshot {
    /// The counters of `op`, if it was called.
    pub fn get(&self, op: Operation) -> Option<&OpMetrics> {
        self.ops.iter().find(|m| m.operation == op)
    }

    /// Calls of every operation.
    pub fn total_count(&self) -> u64 {
        self.ops.iter().map(|m| m.count).sum()
    }

    /// Errors of every operation.
    pub fn total_errors(&self) -> u64 {
        self.ops.iter().map(|m| m.errors).sum()
    }
}

/// Wraps `inner` so that every operation is counted, with its errors and latency, and returns
/// the handle to read the counters with.
///
/// Memory is fixed: per operation two counters and a log-bucketed histogram (4 buckets per
/// power of two of microseconds), so percentiles are approximate (at most 25 % high) and no
/// sample is kept. Recording is lock-free.
pub fn metrics(inner: Arc<dyn Backend>) -> (Arc<dyn Backend>, Metrics) {
    let handle = Metrics::new();
    let layer = Arc::new(MetricsLayer {
        inner,
        metrics: handle.clone(),
    });
    (layer, handle)
}

#[derive(Debug)]
struct MetricsLayer {
    inner: Arc<dyn Backend>,
    metrics: Metrics,
}

impl MetricsLayer {
    async fn run<T>(
        &self,
        op: Operation,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        self.metrics.record(op, start.elapsed(), result.is_ok());
        result
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for MetricsLayer {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.run(Operation::GenerateKey, self.inner.generate_key(name, spec))
            .await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.run(Operation::KeyInfo, self.inner.key_info(key)).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.run(Operation::ListKeys, self.inner.list_keys()).await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.run(Operation::ListKeys, self.inner.list_entries())
            .await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.run(Operation::DeleteKey, self.inner.delete_key(name))
            .await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.run(Operation::Sign, self.inner.sign(key, input, scheme))
            .await
    }

    async fn close(&self) -> Result<()> {
        self.run(Operation::Close, self.inner.close()).await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.run(
            Operation::Decrypt,
            self.inner.decrypt(key, ciphertext, padding),
        )
        .await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.run(Operation::Encrypt, self.inner.encrypt(key, plaintext, aad))
            .await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.run(
            Operation::DecryptAead,
            self.inner.decrypt_aead(name, ciphertext, aad),
        )
        .await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.run(Operation::RotateKey, self.inner.rotate_key(name))
            .await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.run(
            Operation::ImportKey,
            self.inner.import_key(name, material, spec),
        )
        .await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.run(
            Operation::ExportWrapped,
            self.inner.export_wrapped(key, with),
        )
        .await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.run(
            Operation::ImportWrapped,
            self.inner.import_wrapped(name, wrapped, unwrap_with, spec),
        )
        .await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.run(Operation::Random, self.inner.random(len)).await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        self.run(Operation::AttestKey, self.inner.attest_key(key, nonce))
            .await
    }

    async fn health(&self) -> Result<Health> {
        self.run(Operation::Health, self.inner.health()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for us in (0..10_000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(us);
            assert!(b < BUCKETS, "{us} -> {b}");
            assert!(us <= bucket_upper(b), "{us} above bucket {b}");
            if b > 0 {
                assert!(us > bucket_upper(b - 1), "{us} fits bucket {}", b - 1);
            }
        }
    }

    #[test]
    fn percentiles_are_within_a_quarter() {
        let h = Histogram::new();
        for us in 1..=1000 {
            h.record(us);
        }
        let (p50, p99, max) = h.summary();
        assert!((500..=625).contains(&p50.as_micros()), "{p50:?}");
        assert!((990..=1000).contains(&p99.as_micros()), "{p99:?}");
        assert_eq!(max, Duration::from_micros(1000));
    }

    #[test]
    fn empty_histogram_reports_zero() {
        assert_eq!(Histogram::new().summary().0, Duration::ZERO);
    }
}
