//! Retry with jittered exponential backoff, a maximum number of attempts and a time budget.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, Health, ImportSpec, KeyAttestation, KeyEntry, KeyInfo,
    KeyMaterial, KeyName, KeyRef, KeySpec, Operation, Result, RsaPadding, SecretBytes, SignInput,
    Signature, SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How [`retry`] retries.
///
/// ```toml
/// max-attempts = 3          # first try included
/// initial-backoff-ms = 100  # before the second attempt, then doubled
/// max-backoff-ms = 2000     # cap of one wait
/// budget-ms = 10000         # no new attempt once this much time has passed since the first
/// retry-mutations = false   # generate_key, delete_key, rotate_key, import_wrapped
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. `0` counts as `1` (no retry).
    pub max_attempts: u32,
    /// The wait before the second attempt; each later wait doubles, up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// The longest single wait.
    pub max_backoff_ms: u64,
    /// Total time from the first attempt after which no further attempt starts. A wait that would
    /// end past the budget is not begun: the last error is returned at once. The budget does not
    /// cut an attempt short; put a [`crate::timeout`] layer inside the retry layer for that.
    pub budget_ms: u64,
    /// Whether operations that create, change or remove keys are retried too. Default `false`.
    ///
    /// A retryable failure of a mutation is ambiguous: a timed-out `generate_key` may have
    /// created the key. Retrying it then fails with `AlreadyExists` for a key this very call
    /// made; a retried `delete_key` may fail with `NotFound` for a key it deleted; a retried
    /// `rotate_key` may add two versions. Turn this on only when the caller handles those
    /// outcomes.
    pub retry_mutations: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 2_000,
            budget_ms: 10_000,
            retry_mutations: false,
        }
    }
}

impl RetryPolicy {
    /// Sets [`RetryPolicy::max_attempts`].
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`RetryPolicy::initial_backoff_ms`] and [`RetryPolicy::max_backoff_ms`].
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff_ms = millis(initial);
        self.max_backoff_ms = millis(max);
        self
    }

    /// Sets [`RetryPolicy::budget_ms`].
    #[must_use]
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget_ms = millis(budget);
        self
    }

    /// Sets [`RetryPolicy::retry_mutations`].
    #[must_use]
    pub fn with_retry_mutations(mut self, retry_mutations: bool) -> Self {
        self.retry_mutations = retry_mutations;
        self
    }

    /// The un-jittered wait before attempt `attempt + 1` (`attempt` ≥ 1 attempts have failed).
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let ms = self
            .initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms);
        Duration::from_millis(ms)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// "Equal jitter": half the backoff plus a random part of the other half, so concurrent callers
/// spread out but none retries immediately. Without randomness the wait is the full backoff.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let span = u64::try_from((backoff - half).as_micros()).unwrap_or(u64::MAX);
    match getrandom::u64() {
        Ok(r) if span > 0 => half + Duration::from_micros(r % (span + 1)),
        _ => backoff,
    }
}

/// Whether an error may be retried: its [`Error::retryable`] flag, except that a rejected or
/// locked credential never is (a wrong PIN tried twice can lock a token).
fn may_retry(e: &Error) -> bool {
    e.retryable() && !matches!(e.kind(), ErrorKind::Unauthenticated | ErrorKind::Locked)
}

/// Wraps `inner` so that failed operations whose error is [`Error::retryable`] are tried again,
/// with jittered exponential backoff, at most [`RetryPolicy::max_attempts`] times in all and not
/// after [`RetryPolicy::budget_ms`].
///
/// - Errors not flagged retryable are returned after the first attempt.
/// - `Unauthenticated` and `Locked` are never retried, even when flagged retryable.
/// - Retried: `key_info`, `list_keys`, `sign`, `decrypt`, `encrypt`, `decrypt_aead`,
///   `export_wrapped`, `random` (repeating them changes nothing; `encrypt` draws a fresh nonce
///   each time anyway).
/// - Retried only with [`RetryPolicy::retry_mutations`]: `generate_key`, `delete_key`,
///   `rotate_key`, `import_wrapped` (see there for why).
/// - Never retried: `import_key` (it takes its key material by value and secrets are not
///   copied to make a second attempt possible), `health` (it reports the state as it is) and
///   `close`.
///
/// The wait between attempts uses tokio's timer, so the backend must be used inside a tokio
/// runtime with the time driver enabled. The last error is returned unchanged; each retry
/// emits a `DEBUG` event with target `keychain::retry` (operation, key, attempt, error kind,
/// wait).
pub fn retry(inner: Arc<dyn Backend>, policy: RetryPolicy) -> Arc<dyn Backend> {
    Arc::new(Retry { inner, policy })
}

#[derive(Debug)]
struct Retry {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl Retry {
    async fn run<T, F, Fut>(&self, op: Operation, key: Option<&KeyName>, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        let start = Instant::now();
        let budget = Duration::from_millis(self.policy.budget_ms);
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let err = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if attempt >= max_attempts || !may_retry(&err) {
                return Err(err);
            }
            let wait = jittered(self.policy.backoff(attempt));
            if start.elapsed().saturating_add(wait) > budget {
                return Err(err);
            }
            tracing::debug!(
                target: "keychain::retry",
                backend = self.inner.capabilities().backend.as_str(),
                operation = op.as_str(),
                key = key.map(KeyName::as_str),
                attempt,
                error_kind = err.kind().as_str(),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn run_mutation<T, F, Fut>(
        &self,
        op: Operation,
        key: Option<&KeyName>,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        if self.policy.retry_mutations {
            self.run(op, key, call).await
        } else {
            call().await
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Retry {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.run_mutation(Operation::GenerateKey, Some(name), || {
            self.inner.generate_key(name, spec)
        })
        .await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.run(Operation::KeyInfo, Some(key.name()), || {
            self.inner.key_info(key)
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.run(Operation::ListKeys, None, || self.inner.list_keys())
            .await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.run(Operation::ListKeys, None, || self.inner.list_entries())
            .await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.run_mutation(Operation::DeleteKey, Some(name), || {
            self.inner.delete_key(name)
        })
        .await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.run(Operation::Sign, Some(key.name()), || {
            self.inner.sign(key, input, scheme)
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.run(Operation::Decrypt, Some(key.name()), || {
            self.inner.decrypt(key, ciphertext, padding)
        })
        .await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.run(Operation::Encrypt, Some(key.name()), || {
            self.inner.encrypt(key, plaintext, aad)
        })
        .await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.run(Operation::DecryptAead, Some(name), || {
            self.inner.decrypt_aead(name, ciphertext, aad)
        })
        .await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.run_mutation(Operation::RotateKey, Some(name), || {
            self.inner.rotate_key(name)
        })
        .await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.inner.import_key(name, material, spec).await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.run(Operation::ExportWrapped, Some(key.name()), || {
            self.inner.export_wrapped(key, with)
        })
        .await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.run_mutation(Operation::ImportWrapped, Some(name), || {
            self.inner.import_wrapped(name, wrapped, unwrap_with, spec)
        })
        .await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.run(Operation::Random, None, || self.inner.random(len))
            .await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        self.run(Operation::AttestKey, Some(key.name()), || {
            self.inner.attest_key(key, nonce)
        })
        .await
    }

    async fn health(&self) -> Result<Health> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default()
            .with_backoff(Duration::from_millis(100), Duration::from_millis(500));
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(500));
        assert_eq!(p.backoff(200), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let b = Duration::from_millis(100);
        for _ in 0..1000 {
            let j = jittered(b);
            assert!(j >= b / 2 && j <= b, "{j:?}");
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn credentials_are_never_retried() {
        for kind in [ErrorKind::Unauthenticated, ErrorKind::Locked] {
            assert!(!may_retry(&Error::new(kind, "").with_retryable(true)));
        }
        assert!(may_retry(&Error::new(ErrorKind::Unavailable, "")));
        assert!(!may_retry(&Error::new(ErrorKind::NotFound, "")));
    }
}
