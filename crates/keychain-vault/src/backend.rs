//! The Transit backend: every private-key and AES operation runs in Vault / OpenBao.
//!
//! This file is the type, its constructor and the [`Backend`] impl, which checks that the
//! backend is open, delegates, forgets what it cached of a key the server says is gone, and
//! names the backend, operation and key in errors. The work is in one module per concern:
//! `resolve` (what the backend knows of a key), `keys`, `sign`, `aead`, `decrypt`, `wrap`,
//! `random` and `health`; `session` keeps the login and `api` the requests.

use keychain_core::support::{CloseGuard, KeyCache};
use keychain_core::{
    Backend, Capabilities, Error, HashAlg, Health, ImportSpec, KeyAlgorithm, KeyInfo, KeyMaterial,
    KeyName, KeyRef, KeySpec, Operation, Protection, Result, RsaPadding, SecretBytes, SignInput,
    Signature, SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use keychain_crypto::pkcs8::Kdf;
use serde_json::Value;
use tokio::sync::RwLock as AsyncRwLock;

use crate::api::{self, Call};
use crate::config::Config;
use crate::error::{BACKEND, map};
use crate::naming;
use crate::resolve::Resolved;
use crate::session::Session;

/// The HashiCorp Vault / OpenBao Transit backend. Open with [`VaultBackend::open`]; see the
/// crate docs for how names, versions and ciphertexts map to Transit's.
#[derive(Debug)]
pub struct VaultBackend {
    pub(crate) session: Session,
    pub(crate) mount: String,
    pub(crate) prefix: String,
    pub(crate) caps: Capabilities,
    /// Name → algorithm and newest version, so `sign`/`encrypt` cost one request. `key_info`,
    /// `list_keys` and `rotate_key` always read the server and refresh it; a read that a delete
    /// overtook is not cached (the cache's tickets).
    pub(crate) cache: KeyCache<Resolved>,
    /// Generate and delete hold it exclusively, keeping "does it exist?" and "create it"
    /// together (Transit's create is idempotent and would not say); encrypt holds it shared, so
    /// that no encrypt of a key this backend is deleting reaches Transit, whose encrypt would
    /// create the key again ("upsert").
    pub(crate) admin: AsyncRwLock<()>,
    guard: CloseGuard,
    /// PBES2 parameters of password exports.
    pub(crate) export_kdf: Kdf,
}

pub(crate) fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new(BACKEND, Protection::Software);
    caps.algorithms = vec![
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::EcP521,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Aes128Gcm,
        KeyAlgorithm::Aes256Gcm,
        KeyAlgorithm::ChaCha20Poly1305,
    ];
    for h in HashAlg::ALL {
        caps.signature_schemes.extend([
            SignatureScheme::RsaPkcs1v15(h),
            SignatureScheme::RsaPss(h),
            SignatureScheme::Ecdsa(h),
        ]);
    }
    caps.signature_schemes.push(SignatureScheme::Ed25519);
    caps.sign_message = true;
    caps.oaep_hashes = vec![HashAlg::Sha256];
    caps.aead = true;
    caps.rotate = true;
    caps.random = true;
    caps.max_random = Some(65_536);
    caps.health = true;
    caps.import = true;
    caps.export_wrapped = true;
    caps.import_wrapped = true;
    caps
}

impl VaultBackend {
    /// Opens the backend: resolves the credentials, logs in (AppRole, Kubernetes) or looks the
    /// token up (to learn when to renew it). Makes no Transit call: the first operation shows
    /// whether the mount exists.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid configuration or TLS files that are no PEM
    /// certificate and key; [`ErrorKind::NotFound`] for TLS files that do not exist; errors of
    /// [`keychain_core::SecretSource::resolve`] for the credentials; [`ErrorKind::PermissionDenied`]
    /// when the server refuses the token, [`ErrorKind::Unauthenticated`] when it refuses an
    /// AppRole or Kubernetes login; non-retryable [`ErrorKind::Unavailable`] when the server's
    /// TLS certificate is not trusted.
    ///
    /// [`ErrorKind::InvalidInput`]: keychain_core::ErrorKind::InvalidInput
    /// [`ErrorKind::NotFound`]: keychain_core::ErrorKind::NotFound
    /// [`ErrorKind::PermissionDenied`]: keychain_core::ErrorKind::PermissionDenied
    /// [`ErrorKind::Unauthenticated`]: keychain_core::ErrorKind::Unauthenticated
    /// [`ErrorKind::Unavailable`]: keychain_core::ErrorKind::Unavailable
    pub async fn open(config: Config) -> Result<Self> {
        config
            .validate()
            .map_err(|e| e.with_backend(BACKEND).with_operation(Operation::Open))?;
        let settings = crate::session::Settings::from_config(&config)
            .map_err(|e| e.with_backend(BACKEND).with_operation(Operation::Open))?;
        let Config {
            auth,
            mount,
            key_prefix,
            export_kdf,
            ..
        } = config;
        let session = Session::open(settings, auth).await?;
        Ok(Self {
            session,
            mount,
            prefix: key_prefix,
            caps: capabilities(),
            cache: KeyCache::new(),
            admin: AsyncRwLock::new(()),
            guard: CloseGuard::new(),
            export_kdf,
        })
    }

    /// The Transit key name of `name`: `<key-prefix><name>` (a leading or trailing `-` escaped
    /// with a `.`, see the crate docs).
    pub fn transit_name(&self, name: &KeyName) -> String {
        naming::transit_name(&self.prefix, name)
    }

    /// The Transit mount path.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// `<mount>/<what>/<transit name>`.
    pub(crate) fn path(&self, what: &str, name: &KeyName) -> String {
        format!("{}/{what}/{}", self.mount, self.transit_name(name))
    }

    /// POST with the current client.
    pub(crate) async fn post<R>(&self, path: String, body: &Value) -> Result<R>
    where
        R: serde::de::DeserializeOwned + Send + Sync,
    {
        let current = self.session.client().await?;
        api::data(&current.client, Call::post(path, body))
            .await
            .map_err(map)
    }
}

/// Names this backend, `op` and `key` in an error.
fn context(op: Operation, key: &KeyName) -> impl Fn(Error) -> Error + '_ {
    move |e| e.with_backend(BACKEND).with_operation(op).with_key(key)
}

#[async_trait]
impl Backend for VaultBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let op = Operation::GenerateKey;
        self.guard.check(BACKEND, op)?;
        self.generate(name, spec).await.map_err(context(op, name))
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let op = Operation::KeyInfo;
        self.guard.check(BACKEND, op)?;
        let info = self
            .info(key.name())
            .await
            .map_err(context(op, key.name()))?;
        if let Some(v) = key.version()
            && info.version_info(v).is_none()
        {
            return Err(context(op, key.name())(Error::not_found(format!(
                "key {} has no usable version {v}",
                key.name()
            ))));
        }
        Ok(info)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let op = Operation::ListKeys;
        self.guard.check(BACKEND, op)?;
        self.list()
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let op = Operation::DeleteKey;
        self.guard.check(BACKEND, op)?;
        self.delete(name).await.map_err(context(op, name))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let op = Operation::Sign;
        self.guard.check(BACKEND, op)?;
        let result = self.sign_inner(key, input, scheme).await;
        self.forget_on(key.name(), result)
            .map_err(context(op, key.name()))
    }

    async fn close(&self) -> Result<()> {
        if !self.guard.close() {
            return Ok(());
        }
        self.cache.clear();
        if self.session.owns_token()
            && let Ok(current) = self.session.client().await
        {
            // The token came from this backend's login: nobody else will use it.
            let _ = vaultrs::token::revoke_self(&current.client).await;
        }
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let op = Operation::Decrypt;
        self.guard.check(BACKEND, op)?;
        let result = self.decrypt_rsa(key, ciphertext, padding).await;
        self.forget_on(key.name(), result)
            .map_err(context(op, key.name()))
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let op = Operation::Encrypt;
        self.guard.check(BACKEND, op)?;
        let result = self.encrypt_inner(key, plaintext, aad).await;
        self.forget_on(key.name(), result)
            .map_err(context(op, key.name()))
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let op = Operation::DecryptAead;
        self.guard.check(BACKEND, op)?;
        let result = self.decrypt_aead_inner(name, ciphertext, aad).await;
        self.forget_on(name, result).map_err(context(op, name))
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let op = Operation::RotateKey;
        self.guard.check(BACKEND, op)?;
        self.rotate(name).await.map_err(context(op, name))
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let op = Operation::ImportKey;
        self.guard.check(BACKEND, op)?;
        self.import_material(name, material, spec)
            .await
            .map_err(context(op, name))
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let op = Operation::ExportWrapped;
        self.guard.check(BACKEND, op)?;
        let result = self.export_inner(key, with).await;
        self.forget_on(key.name(), result)
            .map_err(context(op, key.name()))
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let op = Operation::ImportWrapped;
        self.guard.check(BACKEND, op)?;
        self.import_password_export(name, wrapped, unwrap_with, spec)
            .await
            .map_err(context(op, name))
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let op = Operation::Random;
        self.guard.check(BACKEND, op)?;
        self.random_inner(len)
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }

    async fn health(&self) -> Result<Health> {
        let op = Operation::Health;
        self.guard.check(BACKEND, op)?;
        self.health_inner()
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::BackendConfig as _;

    use super::*;

    #[test]
    fn capabilities_name_the_config_type_and_the_limit() {
        let caps = capabilities();
        assert_eq!(caps.backend, Config::TYPE);
        assert_eq!(caps.max_random, Some(65_536));
        assert_eq!(caps.max_plaintext, None);
        assert!(caps.check_random(65_536).is_ok());
        let e = caps.check_random(65_537).unwrap_err();
        assert_eq!(e.kind(), keychain_core::ErrorKind::InvalidInput);
        assert_eq!(e.backend(), Some("vault"));
    }
}
