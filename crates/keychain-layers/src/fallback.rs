//! Primary, then secondary when the primary cannot be reached.

use std::future::Future;
use std::sync::Arc;

use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, Health, HealthStatus, ImportSpec, KeyAttestation,
    KeyEntry, KeyInfo, KeyMaterial, KeyName, KeyRef, KeySpec, Operation, Result, RsaPadding,
    SecretBytes, SignInput, Signature, SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};

/// Whether an error of the primary sends the call to the secondary: the primary could not be
/// reached or did not answer in time. Every other error (`NotFound`, `InvalidInput`,
/// `Unauthenticated`, ...) is the primary's answer and is returned as is.
fn falls_back(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
}

/// Wraps two backends into one that sends each call to `primary` and, when that fails with
/// [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`], to `secondary` (the "hybrid keystore":
/// a cloud KMS with a local replica for offline use).
///
/// - **Falls back:** `key_info`, `list_keys`, `sign`, `decrypt`, `encrypt`, `decrypt_aead`,
///   `export_wrapped`, `random`, `health`. For these to make sense the secondary must hold the
///   same keys under the same names (a replica); the layer does not copy keys.
/// - **Primary only:** `generate_key`, `delete_key`, `rotate_key`, `import_key`,
///   `import_wrapped`. Creating, changing or removing a key on the secondary while the primary
///   is down would make the two diverge silently; such calls fail with the primary's error.
/// - **Both:** `close` closes both and returns the primary's error, else the secondary's.
/// - **Capabilities** are the primary's: callers plan against the backend that normally
///   answers. An operation the secondary lacks fails there with `Unsupported`, which, like any
///   failure of the secondary, yields the primary's error.
/// - When the secondary fails too, the **primary's** error is returned (kind `Unavailable` or
///   `Timeout`, retryable), so an outer retry layer retries the pair.
/// - `health` answered by the secondary is reported as [`HealthStatus::Degraded`] (unless the
///   secondary itself reports worse) with a `fallback` detail naming the primary's error kind.
///
/// Each fallback emits a `WARN` event with target `keychain::fallback` (both backends, the
/// operation, the key, the primary's error kind, and the secondary's outcome).
pub fn fallback(primary: Arc<dyn Backend>, secondary: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(Fallback { primary, secondary })
}

#[derive(Debug)]
struct Fallback {
    primary: Arc<dyn Backend>,
    secondary: Arc<dyn Backend>,
}

impl Fallback {
    async fn run<T, Fut>(
        &self,
        op: Operation,
        key: Option<&KeyName>,
        primary: impl Future<Output = Result<T>> + Send,
        secondary: impl FnOnce() -> Fut + Send,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>> + Send,
    {
        let primary_err = match primary.await {
            Err(e) if falls_back(&e) => e,
            done => return done,
        };
        let result = secondary().await;
        tracing::warn!(
            target: "keychain::fallback",
            primary = self.primary.capabilities().backend.as_str(),
            secondary = self.secondary.capabilities().backend.as_str(),
            operation = op.as_str(),
            key = key.map(KeyName::as_str),
            primary_error_kind = primary_err.kind().as_str(),
            secondary_outcome = if result.is_ok() { "ok" } else { "error" },
            secondary_error_kind = result.as_ref().err().map(|e| e.kind().as_str()),
            "primary backend failed; used the secondary"
        );
        result.map_err(|_| primary_err)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Fallback {
    fn capabilities(&self) -> &Capabilities {
        self.primary.capabilities()
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.primary.generate_key(name, spec).await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.run(
            Operation::KeyInfo,
            Some(key.name()),
            self.primary.key_info(key),
            || self.secondary.key_info(key),
        )
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.run(Operation::ListKeys, None, self.primary.list_keys(), || {
            self.secondary.list_keys()
        })
        .await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.run(
            Operation::ListKeys,
            None,
            self.primary.list_entries(),
            || self.secondary.list_entries(),
        )
        .await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.primary.delete_key(name).await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.run(
            Operation::Sign,
            Some(key.name()),
            self.primary.sign(key, input, scheme),
            || self.secondary.sign(key, input, scheme),
        )
        .await
    }

    async fn close(&self) -> Result<()> {
        let primary = self.primary.close().await;
        let secondary = self.secondary.close().await;
        primary.and(secondary)
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.run(
            Operation::Decrypt,
            Some(key.name()),
            self.primary.decrypt(key, ciphertext, padding),
            || self.secondary.decrypt(key, ciphertext, padding),
        )
        .await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.run(
            Operation::Encrypt,
            Some(key.name()),
            self.primary.encrypt(key, plaintext, aad),
            || self.secondary.encrypt(key, plaintext, aad),
        )
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
            Some(name),
            self.primary.decrypt_aead(name, ciphertext, aad),
            || self.secondary.decrypt_aead(name, ciphertext, aad),
        )
        .await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.primary.rotate_key(name).await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.primary.import_key(name, material, spec).await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.run(
            Operation::ExportWrapped,
            Some(key.name()),
            self.primary.export_wrapped(key, with),
            || self.secondary.export_wrapped(key, with),
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
        self.primary
            .import_wrapped(name, wrapped, unwrap_with, spec)
            .await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.run(Operation::Random, None, self.primary.random(len), || {
            self.secondary.random(len)
        })
        .await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        self.run(
            Operation::AttestKey,
            Some(key.name()),
            self.primary.attest_key(key, nonce),
            || self.secondary.attest_key(key, nonce),
        )
        .await
    }

    async fn health(&self) -> Result<Health> {
        let primary_err = match self.primary.health().await {
            Err(e) if falls_back(&e) => e,
            done => return done,
        };
        let kind = primary_err.kind();
        let mut health = self
            .run(
                Operation::Health,
                None,
                std::future::ready(Err(primary_err)),
                || self.secondary.health(),
            )
            .await?;
        if health.status == HealthStatus::Ok {
            health.status = HealthStatus::Degraded;
        }
        Ok(health.with_detail(
            "fallback",
            format!("primary {kind}; answered by the secondary"),
        ))
    }
}
