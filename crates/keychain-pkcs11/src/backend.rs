//! The PKCS#11 backend: keys as objects on a token, every operation inside it. This file holds
//! its state, how it opens, and the [`Backend`] implementation, each operation delegating to
//! the module of its concern (`keys`, `sign`, `aead`, `wrap`, `import`, `token`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Limit;
use keychain_core::support::KeyCache;
use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, Health, ImportSpec, KeyInfo, KeyMaterial, KeyName,
    KeyRef, KeySpec, Operation, Result, RsaPadding, SecretBytes, SignInput, Signature,
    SignatureScheme, WrappedKey, WrappingSpec, async_trait,
};
use keychain_crypto::pkcs8::Kdf;

use crate::config::Config;
use crate::error::{in_op, map};
use crate::module::{Lease, canonical, token_lock};
use crate::objects::KeyEntry;
use crate::pool::Pool;
use crate::token::{capabilities, find_slot, probe_oaep};

/// A key store on one PKCS#11 token. See the crate documentation.
pub struct Pkcs11Backend {
    pub(crate) inner: Arc<Inner>,
}

/// What the backend's operations share; the closures that run on the pool's sessions hold it.
pub(crate) struct Inner {
    pub(crate) pool: Arc<Pool>,
    lease: Mutex<Option<Lease>>,
    pub(crate) capabilities: Capabilities,
    /// What this backend has read of each key (object handles are stable within a process),
    /// valid for one pool generation (see `keys.rs`).
    pub(crate) cache: KeyCache<KeyEntry>,
    /// The pool generation the cache's entries were read in.
    pub(crate) cache_generation: AtomicU64,
    module: PathBuf,
    pub(crate) token_label: String,
    pub(crate) slot_id: u64,
    pub(crate) max_certificates: Option<usize>,
    pub(crate) export_kdf: Kdf,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("module", &self.inner.module)
            .field("token", &self.inner.token_label)
            .field("slot_id", &self.inner.slot_id)
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.close_now();
        if let Some(mut lease) = self.take_lease() {
            lease.release();
        }
    }
}

impl Inner {
    fn take_lease(&self) -> Option<Lease> {
        self.lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Pkcs11Backend {
    /// Loads the module (or joins the process's shared context), finds the token, reads what
    /// it can do and logs in.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`]: no module path, not exactly one of token label and slot id,
    ///   a file that is not a PKCS#11 module, several tokens with the label;
    /// - [`ErrorKind::NotFound`]: the module file, or a token with that label or slot id, does
    ///   not exist; the PIN's environment variable or file is missing;
    /// - [`ErrorKind::Unauthenticated`]: the PIN is wrong (tried once); [`ErrorKind::Locked`]:
    ///   the PIN is locked.
    pub async fn open(config: Config) -> Result<Self> {
        let fail = in_op(Operation::Open, None);
        config.validate().map_err(&fail)?;
        let module = config.module_path.clone().unwrap_or_default();
        let what = match (&config.token, config.slot_id) {
            (Some(label), _) => format!("PIN for PKCS#11 token {label:?}"),
            (None, id) => format!(
                "PIN for the PKCS#11 token in slot {}",
                id.unwrap_or_default()
            ),
        };
        let pin = config.pin.resolve(&what).map_err(&fail)?;
        let inner = tokio::task::spawn_blocking(move || Self::open_blocking(&config, &module, pin))
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("open failed: {e}")))
            .map_err(&fail)?
            .map_err(&fail)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    fn open_blocking(
        config: &Config,
        module: &Path,
        pin: keychain_core::SecretString,
    ) -> Result<Inner> {
        let module = canonical(module)?;
        let lease = Lease::acquire(&module, config.shared_context)?;
        let ctx = lease.ctx().clone();
        let (slot, token_label) = find_slot(&ctx, config)?;
        let info = ctx.get_token_info(slot).map_err(map)?;
        let mut max = config.max_sessions;
        if let Limit::Max(n) = info.max_rw_session_count()
            && n > 0
        {
            max = max.min(usize::try_from(n).unwrap_or(usize::MAX));
        }
        let pin = info.login_required().then_some(pin);
        let mut capabilities = capabilities(&ctx, slot, info.rng())?;
        let lock = token_lock(&module, slot.id());
        let pool = Arc::new(Pool::new(ctx, slot, pin, max, lock, config.dispatch));
        pool.login_now()?;
        let rsa = capabilities.algorithms.iter().any(|a| a.is_rsa());
        if rsa
            && pool
                .ctx()
                .get_mechanism_list(slot)
                .map_err(map)?
                .contains(&MechanismType::RSA_PKCS_OAEP)
        {
            capabilities.oaep_hashes = pool.run_here(probe_oaep)?;
        }
        let cache_generation = AtomicU64::new(pool.generation());
        Ok(Inner {
            pool,
            lease: Mutex::new(Some(lease)),
            capabilities,
            cache: KeyCache::new(),
            cache_generation,
            module,
            token_label,
            slot_id: slot.id(),
            max_certificates: config.max_certificates,
            export_kdf: config.export_kdf,
        })
    }

    /// The label of the token this backend uses.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// The id of the slot the token is in.
    pub fn slot_id(&self) -> u64 {
        self.inner.slot_id
    }

    /// The module's canonical path.
    pub fn module_path(&self) -> &Path {
        &self.inner.module
    }
}

#[async_trait]
impl Backend for Pkcs11Backend {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.generate(name, spec)
            .await
            .map_err(in_op(Operation::GenerateKey, Some(name)))
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.info(key)
            .await
            .map_err(in_op(Operation::KeyInfo, Some(key.name())))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.list().await.map_err(in_op(Operation::ListKeys, None))
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.delete(name)
            .await
            .map_err(in_op(Operation::DeleteKey, Some(name)))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.sign_with(key, input, scheme)
            .await
            .map_err(in_op(Operation::Sign, Some(key.name())))
    }

    async fn close(&self) -> Result<()> {
        self.inner.pool.close().await;
        if let Some(mut lease) = self.inner.take_lease() {
            // C_Finalize may block.
            let _ = tokio::task::spawn_blocking(move || lease.release()).await;
        }
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.decrypt_oaep(key, ciphertext, padding)
            .await
            .map_err(in_op(Operation::Decrypt, Some(key.name())))
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.encrypt_with(key, plaintext, aad)
            .await
            .map_err(in_op(Operation::Encrypt, Some(key.name())))
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.open_aead(name, ciphertext, aad)
            .await
            .map_err(in_op(Operation::DecryptAead, Some(name)))
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.rotate(name)
            .await
            .map_err(in_op(Operation::RotateKey, Some(name)))
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.import(name, material, spec)
            .await
            .map_err(in_op(Operation::ImportKey, Some(name)))
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.export(key, with)
            .await
            .map_err(in_op(Operation::ExportWrapped, Some(key.name())))
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.import_exported(name, wrapped, unwrap_with, spec)
            .await
            .map_err(in_op(Operation::ImportWrapped, Some(name)))
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.random_bytes(len)
            .await
            .map_err(in_op(Operation::Random, None))
    }

    async fn health(&self) -> Result<Health> {
        self.token_health()
            .await
            .map_err(in_op(Operation::Health, None))
    }
}
