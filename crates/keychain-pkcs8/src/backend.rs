//! The software backend: its state, how it opens, and the [`Backend`] implementation, each
//! operation delegating to the module of its concern (`keys`, `sign`, `aead`, `wrap`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use keychain_core::support::{CloseGuard, KeyCache};
use keychain_core::{
    Backend, Capabilities, Error, Health, ImportSpec, KeyEntry, KeyInfo, KeyMaterial, KeyName,
    KeyRef, KeySpec, Operation, Protection, Result, RsaPadding, SecretBytes, SecretString,
    SignInput, Signature, SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use keychain_crypto::CryptoProvider;
use keychain_storage::{BlobStore, FileStore, FileStoreOptions, MemoryStore};

use crate::cache::Entry;
use crate::config::{Config, ProviderKind};
use crate::error::{BACKEND, in_op, task_failed};
use keychain_crypto::pkcs8::{Kdf, KdfLimits};

/// The most bytes one `random` call returns ([`Capabilities::max_random`]).
const MAX_RANDOM: usize = 1 << 20;

/// Keys as password-encrypted PKCS#8 files (or in memory), used through a software crypto
/// provider. See the crate documentation for the file layout and guarantees.
pub struct Pkcs8Backend {
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) password: SecretString,
    pub(crate) kdf: Kdf,
    pub(crate) limits: KdfLimits,
    pub(crate) provider: Arc<dyn CryptoProvider>,
    pub(crate) capabilities: Capabilities,
    /// Each key's metadata and decrypted versions, checked against the store before use
    /// (see `cache.rs`).
    pub(crate) cache: KeyCache<Entry>,
    /// Set once the password matched the store's verifier (or became it): it cannot change
    /// afterwards, since no one can write a verifier over an existing one.
    pub(crate) password_verified: AtomicBool,
    pub(crate) closed: CloseGuard,
}

impl std::fmt::Debug for Pkcs8Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs8Backend")
            .field("store", &self.store)
            .field("provider", &self.provider.name())
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

/// The provider a configuration names, or `Unsupported` naming the feature to enable.
fn provider(kind: ProviderKind) -> Result<Arc<dyn CryptoProvider>> {
    match kind {
        #[cfg(feature = "aws-lc-rs")]
        ProviderKind::AwsLcRs => Ok(Arc::new(keychain_crypto::AwsLcProvider::new())),
        #[cfg(feature = "rustcrypto")]
        ProviderKind::RustCrypto => Ok(Arc::new(keychain_crypto::RustCryptoProvider::new())),
        #[allow(
            unreachable_patterns,
            reason = "reachable when a provider feature is off"
        )]
        other => Err(Error::unsupported(format!(
            "crypto provider {other:?} is not compiled in; enable keychain-pkcs8's `{}` feature",
            match other {
                ProviderKind::RustCrypto => "rustcrypto",
                _ => "aws-lc-rs",
            }
        ))),
    }
}

/// Runs CPU-heavy work (KDFs, key generation) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| task_failed(what, &e))?
}

impl Pkcs8Backend {
    /// Opens the backend described by `config`: resolves the password, opens (or creates, 0700)
    /// the key directory, or uses memory when `config.dir` is `None`.
    ///
    /// # Errors
    /// - the password source's errors (`NotFound` for an unset variable, ...);
    /// - `PermissionDenied` for a group/world-accessible directory (unless allowed);
    /// - `InvalidInput` for an empty password.
    pub async fn open(config: Config) -> Result<Self> {
        let ctx = |e: Error| in_op(e, Operation::Open, None);
        let what = match &config.dir {
            Some(d) => format!("password for the key directory {}", d.display()),
            None => "password for the in-memory key store".to_owned(),
        };
        let password = config.password.resolve(&what).map_err(ctx)?;
        let store: Arc<dyn BlobStore> = match &config.dir {
            Some(dir) => {
                let mut options = FileStoreOptions::default();
                options.allow_insecure_permissions = config.allow_insecure_permissions;
                Arc::new(FileStore::open(dir.clone(), options).map_err(ctx)?)
            }
            None => Arc::new(MemoryStore::new()),
        };
        let provider = provider(config.provider).map_err(ctx)?;
        Self::build(store, password, config.kdf, config.kdf_limits, provider).map_err(ctx)
    }

    /// Builds a backend over any [`BlobStore`] and [`CryptoProvider`], with the default
    /// [`KdfLimits`].
    ///
    /// # Errors
    /// `InvalidInput` for an empty password or KDF parameters [`Kdf::check`] refuses.
    pub fn with_store(
        store: Arc<dyn BlobStore>,
        password: SecretString,
        kdf: Kdf,
        provider: Arc<dyn CryptoProvider>,
    ) -> Result<Self> {
        Self::build(store, password, kdf, KdfLimits::default(), provider)
    }

    fn build(
        store: Arc<dyn BlobStore>,
        password: SecretString,
        kdf: Kdf,
        limits: KdfLimits,
        provider: Arc<dyn CryptoProvider>,
    ) -> Result<Self> {
        if password.expose().is_empty() {
            return Err(Error::invalid_input("the password is empty").with_backend(BACKEND));
        }
        kdf.check(&limits).map_err(|e| e.with_backend(BACKEND))?;
        if kdf.below_recommendation() {
            tracing::warn!(
                ?kdf,
                "key files will be written with KDF parameters below OWASP's recommendation"
            );
        }
        let mut capabilities = Capabilities::new(BACKEND, Protection::Software);
        capabilities.algorithms = provider.algorithms();
        capabilities.signature_schemes = provider.signature_schemes();
        capabilities.sign_message = true;
        capabilities.oaep_hashes = provider.oaep_hashes();
        capabilities.aead = true;
        capabilities.rotate = true;
        capabilities.import = true;
        capabilities.export_wrapped = true;
        capabilities.import_wrapped = true;
        capabilities.random = true;
        capabilities.max_random = Some(MAX_RANDOM);
        capabilities.health = true;
        Ok(Self {
            store,
            password,
            kdf,
            limits,
            provider,
            capabilities,
            cache: KeyCache::new(),
            password_verified: AtomicBool::new(false),
            closed: CloseGuard::new(),
        })
    }

    /// Runs `f` unless the backend is closed, with the backend/operation/key context added to
    /// its error.
    async fn ctx<T>(
        &self,
        op: Operation,
        key: Option<&KeyName>,
        f: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = match self.closed.check(BACKEND, op) {
            Ok(()) => f.await,
            Err(e) => Err(e),
        };
        result.map_err(|e| in_op(e, op, key))
    }
}

#[async_trait]
impl Backend for Pkcs8Backend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let op = Operation::GenerateKey;
        self.ctx(op, Some(name), self.generate(name, spec)).await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.ctx(Operation::KeyInfo, Some(key.name()), self.info(key))
            .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.ctx(Operation::ListKeys, None, self.list_healthy())
            .await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.ctx(Operation::ListKeys, None, self.scan()).await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.ctx(Operation::DeleteKey, Some(name), self.delete(name))
            .await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let f = self.sign_with(key, input, scheme);
        self.ctx(Operation::Sign, Some(key.name()), f).await
    }

    async fn close(&self) -> Result<()> {
        self.closed.close();
        self.cache.clear();
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let f = self.decrypt_oaep(key, ciphertext, padding);
        self.ctx(Operation::Decrypt, Some(key.name()), f).await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        if let Some(sealed) = self.encrypt_cached(key, plaintext, aad) {
            return sealed;
        }
        let f = self.encrypt_with(key, plaintext, aad);
        self.ctx(Operation::Encrypt, Some(key.name()), f).await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let f = self.open_aead(name, ciphertext, aad);
        self.ctx(Operation::DecryptAead, Some(name), f).await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.ctx(Operation::RotateKey, Some(name), self.rotate(name))
            .await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let f = self.import(name, &material, spec);
        self.ctx(Operation::ImportKey, Some(name), f).await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let f = self.export(key, with);
        self.ctx(Operation::ExportWrapped, Some(key.name()), f)
            .await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let f = self.import_exported(name, wrapped, unwrap_with, spec);
        self.ctx(Operation::ImportWrapped, Some(name), f).await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.ctx(Operation::Random, None, async {
            self.capabilities.check_random(len)?;
            let mut buf = vec![0u8; len];
            self.provider.fill_random(&mut buf)?;
            Ok(buf)
        })
        .await
    }

    async fn health(&self) -> Result<Health> {
        self.ctx(Operation::Health, None, async {
            let keys = self.count_keys().await?;
            Ok(Health::ok()
                .with_detail("provider", self.provider.name())
                .with_detail("keys", keys.to_string()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::{BackendConfig as _, ErrorKind, SecretSource};

    use super::*;

    #[tokio::test]
    async fn declares_its_type_and_random_limit_and_closes() {
        let config =
            Config::in_memory(SecretSource::value("pw")).with_kdf(Kdf::Pbkdf2 { iterations: 1000 });
        let backend = Pkcs8Backend::open(config).await.unwrap();
        let caps = backend.capabilities();
        assert_eq!(caps.backend, Config::TYPE);
        let max = caps.max_random.unwrap();
        assert_eq!(backend.random(max).await.unwrap().len(), max);
        let e = backend.random(max + 1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.operation(), Some(Operation::Random));
        backend.close().await.unwrap();
        backend.close().await.unwrap();
        let e = backend.random(1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.retryable());
    }
}
