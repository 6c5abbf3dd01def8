//! A deadline per operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, Health, ImportSpec, KeyAttestation, KeyEntry, KeyInfo,
    KeyMaterial, KeyName, KeyRef, KeySpec, Operation, Result, RsaPadding, SecretBytes, SignInput,
    Signature, SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use serde::{Deserialize, Serialize};

/// How long [`timeout`] lets each operation run.
///
/// ```toml
/// operation-ms = 30000      # every operation but generate_key
/// generate-key-ms = 120000  # RSA key generation on a token can take a minute
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct TimeoutPolicy {
    /// The deadline of every operation except `generate_key`, in milliseconds.
    pub operation_ms: u64,
    /// The deadline of `generate_key`, in milliseconds.
    pub generate_key_ms: u64,
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        Self {
            operation_ms: 30_000,
            generate_key_ms: 120_000,
        }
    }
}

impl TimeoutPolicy {
    /// The same deadline for every operation, `generate_key` included.
    pub fn uniform(deadline: Duration) -> Self {
        let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        Self {
            operation_ms: ms,
            generate_key_ms: ms,
        }
    }

    /// Sets [`TimeoutPolicy::generate_key_ms`].
    #[must_use]
    pub fn with_generate_key(mut self, deadline: Duration) -> Self {
        self.generate_key_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// Wraps `inner` so that an operation that has not finished within its deadline fails with
/// [`ErrorKind::Timeout`] (retryable), naming the backend, the operation and the key.
///
/// The inner operation's future is dropped at the deadline. A backend that does its work on a
/// blocking thread (or in a remote service) may still complete it afterwards, so a timed-out
/// `generate_key`, `rotate_key`, `delete_key` or import may or may not have taken effect. Every
/// operation has a deadline, `close` included.
///
/// Uses tokio's timer: the backend must be used inside a tokio runtime with the time driver.
pub fn timeout(inner: Arc<dyn Backend>, policy: TimeoutPolicy) -> Arc<dyn Backend> {
    Arc::new(Timeout { inner, policy })
}

#[derive(Debug)]
struct Timeout {
    inner: Arc<dyn Backend>,
    policy: TimeoutPolicy,
}

impl Timeout {
    async fn run<T>(
        &self,
        op: Operation,
        key: Option<&KeyName>,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let ms = if op == Operation::GenerateKey {
            self.policy.generate_key_ms
        } else {
            self.policy.operation_ms
        };
        match tokio::time::timeout(Duration::from_millis(ms), call).await {
            Ok(result) => result,
            Err(_elapsed) => {
                let mut err = Error::new(ErrorKind::Timeout, format!("no answer within {ms} ms"))
                    .with_backend(self.inner.capabilities().backend.clone())
                    .with_operation(op)
                    .with_retryable(true);
                if let Some(key) = key {
                    err = err.with_key(key);
                }
                Err(err)
            }
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Timeout {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let call = self.inner.generate_key(name, spec);
        self.run(Operation::GenerateKey, Some(name), call).await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let call = self.inner.key_info(key);
        self.run(Operation::KeyInfo, Some(key.name()), call).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let call = self.inner.list_keys();
        self.run(Operation::ListKeys, None, call).await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        let call = self.inner.list_entries();
        self.run(Operation::ListKeys, None, call).await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let call = self.inner.delete_key(name);
        self.run(Operation::DeleteKey, Some(name), call).await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let call = self.inner.sign(key, input, scheme);
        self.run(Operation::Sign, Some(key.name()), call).await
    }

    async fn close(&self) -> Result<()> {
        let call = self.inner.close();
        self.run(Operation::Close, None, call).await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let call = self.inner.decrypt(key, ciphertext, padding);
        self.run(Operation::Decrypt, Some(key.name()), call).await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let call = self.inner.encrypt(key, plaintext, aad);
        self.run(Operation::Encrypt, Some(key.name()), call).await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let call = self.inner.decrypt_aead(name, ciphertext, aad);
        self.run(Operation::DecryptAead, Some(name), call).await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let call = self.inner.rotate_key(name);
        self.run(Operation::RotateKey, Some(name), call).await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let call = self.inner.import_key(name, material, spec);
        self.run(Operation::ImportKey, Some(name), call).await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let call = self.inner.export_wrapped(key, with);
        self.run(Operation::ExportWrapped, Some(key.name()), call)
            .await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let call = self.inner.import_wrapped(name, wrapped, unwrap_with, spec);
        self.run(Operation::ImportWrapped, Some(name), call).await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let call = self.inner.random(len);
        self.run(Operation::Random, None, call).await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        let call = self.inner.attest_key(key, nonce);
        self.run(Operation::AttestKey, Some(key.name()), call).await
    }

    async fn health(&self) -> Result<Health> {
        let call = self.inner.health();
        self.run(Operation::Health, None, call).await
    }
}
