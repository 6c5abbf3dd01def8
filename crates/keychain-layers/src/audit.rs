//! One `tracing` event per operation, without payloads.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use keychain_core::{
    Backend, Capabilities, Health, ImportSpec, KeyAttestation, KeyEntry, KeyInfo, KeyMaterial,
    KeyName, KeyRef, KeySpec, KeyVersion, Operation, Result, RsaPadding, SecretBytes, SignInput,
    Signature, SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use serde::{Deserialize, Serialize};

/// The `tracing` target of every audit event; filter on it to route the audit trail
/// (`RUST_LOG=keychain::audit=info` with `tracing-subscriber`'s `EnvFilter`).
pub const AUDIT_TARGET: &str = "keychain::audit";

/// Options of [`audit`].
///
/// ```toml
/// name = "prod-hsm"   # the `backend` field; default: the backend's kind (`pkcs11`, ...)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct AuditConfig {
    /// The value of the events' `backend` field, typically the name the backend is registered
    /// under. `None` uses [`Capabilities::backend`].
    pub name: Option<String>,
}

impl AuditConfig {
    /// Events name the backend `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
        }
    }
}

/// Wraps `inner` so that every operation emits one `tracing` event with target
/// [`AUDIT_TARGET`] when it ends: `INFO` on success, `WARN` on failure.
///
/// Fields: `backend`, `operation` (the [`Operation::as_str`] name), `key` and `version` (when
/// the operation names a key, and the version when the caller gave one), `outcome` (`ok` or
/// `error`), `error_kind` (on failure, [`keychain_core::ErrorKind::as_str`]) and `latency_us`.
///
/// Nothing else is recorded: no digest, message, signature, plaintext, ciphertext, AAD, key
/// material, wrapped key, password or PIN, and not the error's message either. The layer only
/// sees whether a call succeeded, so it cannot leak what the call returned.
pub fn audit(inner: Arc<dyn Backend>, config: AuditConfig) -> Arc<dyn Backend> {
    let backend = config
        .name
        .unwrap_or_else(|| inner.capabilities().backend.to_string());
    Arc::new(Audit { inner, backend })
}

#[derive(Debug)]
struct Audit {
    inner: Arc<dyn Backend>,
    backend: String,
}

/// The key an operation is about, as far as the audit trail records it.
#[derive(Clone, Copy)]
struct Subject<'a> {
    name: Option<&'a KeyName>,
    version: Option<KeyVersion>,
}

const NO_KEY: Subject<'static> = Subject {
    name: None,
    version: None,
};

impl<'a> From<&'a KeyName> for Subject<'a> {
    fn from(name: &'a KeyName) -> Self {
        Self {
            name: Some(name),
            version: None,
        }
    }
}

impl<'a> From<&'a KeyRef> for Subject<'a> {
    fn from(key: &'a KeyRef) -> Self {
        Self {
            name: Some(key.name()),
            version: key.version(),
        }
    }
}

impl Audit {
    async fn run<T>(
        &self,
        op: Operation,
        subject: Subject<'_>,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let key = subject.name.map(KeyName::as_str);
        let version = subject.version;
        match &result {
            Ok(_) => tracing::info!(
                target: AUDIT_TARGET,
                backend = self.backend.as_str(),
                operation = op.as_str(),
                key,
                version,
                outcome = "ok",
                latency_us,
            ),
            Err(e) => tracing::warn!(
                target: AUDIT_TARGET,
                backend = self.backend.as_str(),
                operation = op.as_str(),
                key,
                version,
                outcome = "error",
                error_kind = e.kind().as_str(),
                latency_us,
            ),
        }
        result
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Audit {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let call = self.inner.generate_key(name, spec);
        self.run(Operation::GenerateKey, name.into(), call).await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let call = self.inner.key_info(key);
        self.run(Operation::KeyInfo, key.into(), call).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let call = self.inner.list_keys();
        self.run(Operation::ListKeys, NO_KEY, call).await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        let call = self.inner.list_entries();
        self.run(Operation::ListKeys, NO_KEY, call).await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let call = self.inner.delete_key(name);
        self.run(Operation::DeleteKey, name.into(), call).await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let call = self.inner.sign(key, input, scheme);
        self.run(Operation::Sign, key.into(), call).await
    }

    async fn close(&self) -> Result<()> {
        let call = self.inner.close();
        self.run(Operation::Close, NO_KEY, call).await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let call = self.inner.decrypt(key, ciphertext, padding);
        self.run(Operation::Decrypt, key.into(), call).await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let call = self.inner.encrypt(key, plaintext, aad);
        self.run(Operation::Encrypt, key.into(), call).await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let call = self.inner.decrypt_aead(name, ciphertext, aad);
        self.run(Operation::DecryptAead, name.into(), call).await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let call = self.inner.rotate_key(name);
        self.run(Operation::RotateKey, name.into(), call).await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let call = self.inner.import_key(name, material, spec);
        self.run(Operation::ImportKey, name.into(), call).await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let call = self.inner.export_wrapped(key, with);
        self.run(Operation::ExportWrapped, key.into(), call).await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let call = self.inner.import_wrapped(name, wrapped, unwrap_with, spec);
        self.run(Operation::ImportWrapped, name.into(), call).await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let call = self.inner.random(len);
        self.run(Operation::Random, NO_KEY, call).await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        let call = self.inner.attest_key(key, nonce);
        self.run(Operation::AttestKey, key.into(), call).await
    }

    async fn health(&self) -> Result<Health> {
        let call = self.inner.health();
        self.run(Operation::Health, NO_KEY, call).await
    }
}
