//! The software backend.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, Health, ImportSpec, KeyAlgorithm, KeyInfo,
    KeyMaterial, KeyName, KeyRef, KeySpec, KeyUsage, KeyUsages, KeyVersion, KeyVersionInfo,
    Operation, Protection, PublicKey, Result, RsaPadding, SecretBytes, SecretString, SignInput,
    Signature, SignatureScheme, WrapFormat, WrappedKey, WrappingSpec, async_trait,
};
use keychain_crypto::{
    AUTHENTICATED_LEN, AeadCiphertext, AeadKey, CryptoProvider, HEADER_LEN, NONCE_LEN, PrivateKey,
    TAG_LEN,
};
use keychain_storage::{BlobStore, FileStore, FileStoreOptions, MemoryStore};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ProviderKind};
use keychain_crypto::pkcs8::{self as format, Kdf};

const BACKEND: &str = "pkcs8";
const META: &str = "meta.json";
const META_FORMAT: u32 = 1;
/// Largest `random` request.
pub const MAX_RANDOM: usize = 1 << 20;

/// The per-key metadata file, `<name>/meta.json`. It is the commit point: a key exists exactly
/// when its metadata does, so creating, rotating and deleting are each one atomic file operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format: u32,
    name: KeyName,
    algorithm: KeyAlgorithm,
    usages: KeyUsages,
    exportable: bool,
    versions: Vec<VersionMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionMeta {
    version: KeyVersion,
    /// Seconds since the Unix epoch.
    created: u64,
    /// The key file, relative to the key's directory.
    file: String,
    /// PEM; kept here so listing and `key_info` need no password.
    public_key: Option<PublicKey>,
}

impl Meta {
    fn current(&self) -> KeyVersion {
        self.versions.last().map_or(1, |v| v.version)
    }

    fn version(&self, v: KeyVersion) -> Option<&VersionMeta> {
        self.versions.iter().find(|m| m.version == v)
    }

    fn info(&self) -> KeyInfo {
        KeyInfo::new(
            self.name.clone(),
            self.algorithm,
            self.usages,
            Protection::Software,
            self.exportable,
            self.versions
                .iter()
                .map(|v| {
                    KeyVersionInfo::new(
                        v.version,
                        Some(UNIX_EPOCH + Duration::from_secs(v.created)),
                        v.public_key.clone(),
                    )
                })
                .collect(),
        )
    }
}

#[derive(Clone)]
enum Loaded {
    Private(Arc<dyn PrivateKey>),
    Aead(Arc<dyn AeadKey>),
}

/// A key's metadata plus the versions decrypted so far.
struct Entry {
    meta: Meta,
    /// The newest version once decrypted: the hot path of sign/encrypt takes no lock.
    current: OnceLock<Loaded>,
    loaded: Mutex<HashMap<KeyVersion, Loaded>>,
}

impl Entry {
    fn new(meta: Meta, loaded: HashMap<KeyVersion, Loaded>) -> Self {
        let current = OnceLock::new();
        if let Some(l) = loaded.get(&meta.current()) {
            let _ = current.set(l.clone());
        }
        Self {
            meta,
            current,
            loaded: Mutex::new(loaded),
        }
    }
}

/// Keys as password-encrypted PKCS#8 files (or in memory), used through a software crypto
/// provider. See the crate documentation for the file layout and guarantees.
pub struct Pkcs8Backend {
    store: Arc<dyn BlobStore>,
    password: SecretString,
    kdf: Kdf,
    provider: Arc<dyn CryptoProvider>,
    capabilities: Capabilities,
    cache: RwLock<HashMap<KeyName, Arc<Entry>, foldhash::quality::RandomState>>,
    /// Serializes create/rotate/delete within this process.
    writer: tokio::sync::Mutex<()>,
    closed: AtomicBool,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

fn meta_key(name: &KeyName) -> String {
    format!("{name}/{META}")
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
        let ctx = |e: Error| e.with_backend(BACKEND).with_operation(Operation::Open);
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
        Self::with_store(store, password, config.kdf, provider).map_err(ctx)
    }

    /// Builds a backend over any [`BlobStore`] and [`CryptoProvider`].
    ///
    /// # Errors
    /// `InvalidInput` for an empty password.
    pub fn with_store(
        store: Arc<dyn BlobStore>,
        password: SecretString,
        kdf: Kdf,
        provider: Arc<dyn CryptoProvider>,
    ) -> Result<Self> {
        if password.expose().is_empty() {
            return Err(Error::invalid_input("the password is empty").with_backend(BACKEND));
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
        capabilities.health = true;
        Ok(Self {
            store,
            password,
            kdf,
            provider,
            capabilities,
            cache: RwLock::new(HashMap::default()),
            writer: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs `f` with the backend/operation/key context added to its error.
    async fn ctx<T>(
        &self,
        op: Operation,
        key: Option<&KeyName>,
        f: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = if self.closed.load(Ordering::Acquire) {
            Err(Error::new(ErrorKind::Unavailable, "the backend is closed").with_retryable(false))
        } else {
            f.await
        };
        result.map_err(|e| {
            let e = e.with_backend(BACKEND).with_operation(op);
            match key {
                Some(k) => e.with_key(k),
                None => e,
            }
        })
    }

    async fn read_meta(&self, name: &KeyName) -> Result<Option<Meta>> {
        let Some(bytes) = self.store.get(&meta_key(name)).await? else {
            return Ok(None);
        };
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Integrity,
                format!("key metadata is corrupt: {e}"),
            )
        })?;
        if meta.format != META_FORMAT || &meta.name != name || meta.versions.is_empty() {
            return Err(Error::new(
                ErrorKind::Integrity,
                "key metadata is inconsistent (format, name or versions)",
            ));
        }
        Ok(Some(meta))
    }

    fn not_found(name: &KeyName) -> Error {
        Error::not_found(format!("no key named '{name}'"))
    }

    /// The cached entry for `name`, reading its metadata on first use.
    async fn entry(&self, name: &KeyName) -> Result<Arc<Entry>> {
        if let Some(e) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(e.clone());
        }
        let meta = self
            .read_meta(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        let entry = Arc::new(Entry::new(meta, HashMap::new()));
        Ok(write(&self.cache)
            .entry(name.clone())
            .or_insert(entry)
            .clone())
    }

    /// Decrypts and parses one version of a key (KDF work off the async threads), cached.
    async fn loaded(&self, entry: &Entry, version: KeyVersion) -> Result<Loaded> {
        let is_current = version == entry.meta.current();
        if is_current && let Some(l) = entry.current.get() {
            return Ok(l.clone());
        }
        if let Some(l) = lock(&entry.loaded).get(&version) {
            return Ok(l.clone());
        }
        let vm = entry.meta.version(version).ok_or_else(|| {
            Error::not_found(format!(
                "key '{}' has no version {version}",
                entry.meta.name
            ))
        })?;
        let data = self
            .store
            .get(&format!("{}/{}", entry.meta.name, vm.file))
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Integrity,
                    format!("key file {} of version {version} is missing", vm.file),
                )
            })?;
        let password = self.password.duplicate();
        let provider = self.provider.clone();
        let algorithm = entry.meta.algorithm;
        let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded> {
            let der = format::decrypt(&data, password.expose().as_bytes())?;
            let plain = format::inspect(der.expose())?;
            if plain.algorithm != algorithm {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "key file holds a {} key, metadata says {algorithm}",
                        plain.algorithm
                    ),
                ));
            }
            if algorithm.is_symmetric() {
                Ok(Loaded::Aead(
                    provider
                        .aead_key(algorithm, plain.material.expose())?
                        .into(),
                ))
            } else {
                Ok(Loaded::Private(
                    provider
                        .private_key(algorithm, plain.material.expose())?
                        .into(),
                ))
            }
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("key loading task failed: {e}"),
            )
        })??;
        lock(&entry.loaded).insert(version, loaded.clone());
        if is_current {
            let _ = entry.current.set(loaded.clone());
        }
        Ok(loaded)
    }

    /// Seals `plaintext` into the self-describing ciphertext format under `version`.
    fn seal(
        &self,
        k: &dyn AeadKey,
        version: KeyVersion,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.provider.fill_random(&mut nonce)?;
        let header = AeadCiphertext::header_array(version, &nonce);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&header);
        // The header's first bytes are authenticated as a prefix of the caller's AAD; short
        // AADs (the common case) are assembled on the stack.
        let mut small = [0u8; 64];
        let full_aad: std::borrow::Cow<'_, [u8]> = if AUTHENTICATED_LEN + aad.len() <= small.len() {
            small[..AUTHENTICATED_LEN].copy_from_slice(&header[..AUTHENTICATED_LEN]);
            small[AUTHENTICATED_LEN..AUTHENTICATED_LEN + aad.len()].copy_from_slice(aad);
            std::borrow::Cow::Borrowed(&small[..AUTHENTICATED_LEN + aad.len()])
        } else {
            AeadCiphertext::full_aad(&header, aad).into()
        };
        k.seal_append(&nonce, &full_aad, plaintext, &mut out)?;
        Ok(out)
    }

    fn require_usage(meta: &Meta, usage: KeyUsage) -> Result<()> {
        if meta.usages.contains(usage) {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "key '{}' does not have the {usage:?} usage",
                meta.name
            )))
        }
    }

    /// Encrypts the material and writes it as a new, uniquely named version file.
    async fn write_version(
        &self,
        name: &KeyName,
        version: KeyVersion,
        algorithm: KeyAlgorithm,
        material: &SecretBytes,
    ) -> Result<VersionMeta> {
        let (der, public_key) = if algorithm.is_symmetric() {
            (
                format::symmetric_to_pkcs8(algorithm, material.expose())?,
                None,
            )
        } else {
            let key = self.provider.private_key(algorithm, material.expose())?;
            (material.duplicate(), Some(key.public_key().clone()))
        };
        let password = self.password.duplicate();
        let kdf = self.kdf;
        let pem = tokio::task::spawn_blocking(move || {
            format::encrypt(der.expose(), password.expose().as_bytes(), kdf)
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("encryption task failed: {e}"),
            )
        })??;
        let mut id = [0u8; 6];
        self.provider.fill_random(&mut id)?;
        let file = format!("v{version}-{}.pem", hex::encode(id));
        self.store
            .create(&format!("{name}/{file}"), pem.as_bytes())
            .await?;
        Ok(VersionMeta {
            version,
            created: now_secs(),
            file,
            public_key,
        })
    }

    /// Creates a key from material; `AlreadyExists` leaves the existing key untouched.
    async fn create_key(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        usages: KeyUsages,
        exportable: bool,
        material: SecretBytes,
    ) -> Result<KeyInfo> {
        if !self.capabilities.supports_algorithm(algorithm) {
            return Err(Error::unsupported(format!("{algorithm} keys")));
        }
        let _w = self.writer.lock().await;
        if self.store.get(&meta_key(name)).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a key named '{name}' already exists"),
            ));
        }
        let vm = self.write_version(name, 1, algorithm, &material).await?;
        let file = format!("{name}/{}", vm.file);
        let meta = Meta {
            format: META_FORMAT,
            name: name.clone(),
            algorithm,
            usages,
            exportable,
            versions: vec![vm],
        };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("metadata encoding: {e}")))?;
        if let Err(e) = self.store.create(&meta_key(name), &json).await {
            // Another process created the key meanwhile: drop our orphan file, keep theirs.
            let _ = self.store.delete(&file).await;
            return Err(e);
        }
        write(&self.cache).remove(name);
        Ok(meta.info())
    }

    fn material_from_import(
        &self,
        material: &KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<(KeyAlgorithm, SecretBytes)> {
        let plain = format::from_material(material, spec.algorithm)?;
        let (algorithm, bytes) = (plain.algorithm, plain.material);
        if algorithm.is_asymmetric() {
            // Parse once now so a bad key is refused at import, not at first use.
            self.provider.private_key(algorithm, bytes.expose())?;
        }
        Ok((algorithm, bytes))
    }

    fn usages_for(algorithm: KeyAlgorithm, usages: KeyUsages) -> Result<KeyUsages> {
        let spec = KeySpec::new(algorithm).with_usages(usages);
        spec.validate()?;
        Ok(spec.effective_usages())
    }
}

#[async_trait]
impl Backend for Pkcs8Backend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.ctx(Operation::GenerateKey, Some(name), async {
            if !self.capabilities.supports_algorithm(spec.algorithm) {
                return Err(Error::unsupported(format!("{} keys", spec.algorithm)));
            }
            let usages = Self::usages_for(spec.algorithm, spec.usages)?;
            let provider = self.provider.clone();
            let algorithm = spec.algorithm;
            let material = tokio::task::spawn_blocking(move || provider.generate(algorithm))
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Unexpected, format!("keygen task failed: {e}"))
                })??;
            self.create_key(name, algorithm, usages, spec.exportable, material)
                .await
        })
        .await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.ctx(Operation::KeyInfo, Some(key.name()), async {
            let meta = self
                .read_meta(key.name())
                .await?
                .ok_or_else(|| Self::not_found(key.name()))?;
            if let Some(v) = key.version()
                && meta.version(v).is_none()
            {
                return Err(Error::not_found(format!("key has no version {v}")));
            }
            Ok(meta.info())
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.ctx(Operation::ListKeys, None, async {
            let mut out = Vec::new();
            for path in self.store.list("").await? {
                let Some(name) = path.strip_suffix(&format!("/{META}")) else {
                    continue;
                };
                let Ok(name) = KeyName::new(name) else {
                    continue;
                };
                // A key deleted between list and read is simply not listed.
                if let Some(meta) = self.read_meta(&name).await? {
                    out.push(meta.info());
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.ctx(Operation::DeleteKey, Some(name), async {
            let _w = self.writer.lock().await;
            let meta = self.read_meta(name).await?;
            // Deleting the metadata is the commit point: after it the key is gone whatever
            // happens to the version files.
            if !self.store.delete(&meta_key(name)).await? {
                return Err(Self::not_found(name));
            }
            write(&self.cache).remove(name);
            for vm in meta.iter().flat_map(|m| m.versions.iter()) {
                if let Err(e) = self.store.delete(&format!("{name}/{}", vm.file)).await {
                    tracing::warn!(key = %name, error = %e, "could not remove a deleted key's file");
                }
            }
            Ok(())
        })
        .await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.ctx(Operation::Sign, Some(key.name()), async {
            let entry = self.entry(key.name()).await?;
            let meta = &entry.meta;
            scheme.check_fits(meta.algorithm)?;
            if !self.capabilities.signature_schemes.contains(&scheme) {
                return Err(Error::unsupported(format!("signature scheme {scheme}")));
            }
            Self::require_usage(meta, KeyUsage::Sign)?;
            let data = input.prepare(scheme)?;
            let version = key.version().unwrap_or_else(|| meta.current());
            let Loaded::Private(pk) = self.loaded(&entry, version).await? else {
                return Err(Error::invalid_input("symmetric keys do not sign"));
            };
            let bytes = pk.sign(&data, scheme)?;
            Ok(Signature::new(bytes, scheme, version))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        write(&self.cache).clear();
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.ctx(Operation::Decrypt, Some(key.name()), async {
            let entry = self.entry(key.name()).await?;
            if !entry.meta.algorithm.is_rsa() {
                return Err(Error::invalid_input(format!(
                    "{} keys do not decrypt with RSA-OAEP",
                    entry.meta.algorithm
                )));
            }
            Self::require_usage(&entry.meta, KeyUsage::Decrypt)?;
            let version = key.version().unwrap_or_else(|| entry.meta.current());
            let Loaded::Private(pk) = self.loaded(&entry, version).await? else {
                return Err(Error::invalid_input("not an RSA key"));
            };
            match padding {
                RsaPadding::Oaep(hash) => pk.decrypt_oaep(ciphertext, hash),
                other => Err(Error::unsupported(format!("padding {other:?}"))),
            }
        })
        .await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        // Hot path: the key's current version is decrypted and cached; nothing to await. The
        // seal runs under the cache's read lock (microseconds, shared) rather than paying for an
        // `Arc` clone and drop per call.
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = cache.get(key.name())
                && key.version().is_none_or(|v| v == entry.meta.current())
                && let Some(Loaded::Aead(k)) = entry.current.get()
                && entry.meta.usages.contains(KeyUsage::Encrypt)
                && !self.closed.load(Ordering::Acquire)
            {
                return self
                    .seal(k.as_ref(), entry.meta.current(), plaintext, aad)
                    .map_err(|e| {
                        e.with_backend(BACKEND)
                            .with_operation(Operation::Encrypt)
                            .with_key(key.name())
                    });
            }
        }
        self.ctx(Operation::Encrypt, Some(key.name()), async {
            let entry = self.entry(key.name()).await?;
            if !entry.meta.algorithm.is_symmetric() {
                return Err(Error::invalid_input(format!(
                    "{} keys do not do AEAD encryption",
                    entry.meta.algorithm
                )));
            }
            Self::require_usage(&entry.meta, KeyUsage::Encrypt)?;
            let version = key.version().unwrap_or_else(|| entry.meta.current());
            let Loaded::Aead(k) = self.loaded(&entry, version).await? else {
                return Err(Error::invalid_input("not a symmetric key"));
            };
            self.seal(k.as_ref(), version, plaintext, aad)
        })
        .await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.ctx(Operation::DecryptAead, Some(name), async {
            let entry = self.entry(name).await?;
            if !entry.meta.algorithm.is_symmetric() {
                return Err(Error::invalid_input(format!(
                    "{} keys do not do AEAD decryption",
                    entry.meta.algorithm
                )));
            }
            Self::require_usage(&entry.meta, KeyUsage::Decrypt)?;
            let ct = AeadCiphertext::parse(ciphertext)?;
            if ct.key_version == 0 || ct.key_version > entry.meta.current() {
                // A version that never existed: the header was altered.
                return Err(Error::new(
                    ErrorKind::Integrity,
                    "ciphertext names a key version that never existed",
                ));
            }
            let Loaded::Aead(k) = self.loaded(&entry, ct.key_version).await? else {
                return Err(Error::invalid_input("not a symmetric key"));
            };
            k.open(
                &ct.nonce,
                &AeadCiphertext::full_aad(ct.header_bytes(), aad),
                ct.body,
            )
        })
        .await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.ctx(Operation::RotateKey, Some(name), async {
            let _w = self.writer.lock().await;
            let mut meta = self
                .read_meta(name)
                .await?
                .ok_or_else(|| Self::not_found(name))?;
            let provider = self.provider.clone();
            let algorithm = meta.algorithm;
            let material = tokio::task::spawn_blocking(move || provider.generate(algorithm))
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Unexpected, format!("keygen task failed: {e}"))
                })??;
            let version = meta.current() + 1;
            let vm = self
                .write_version(name, version, algorithm, &material)
                .await?;
            let file = format!("{name}/{}", vm.file);
            meta.versions.push(vm);
            let json = serde_json::to_vec_pretty(&meta).map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("metadata encoding: {e}"))
            })?;
            if let Err(e) = self.store.put(&meta_key(name), &json).await {
                let _ = self.store.delete(&file).await;
                return Err(e);
            }
            // Keep already-decrypted versions; the new one loads on first use.
            let old = write(&self.cache).remove(name);
            let loaded = old.map(|e| lock(&e.loaded).clone()).unwrap_or_default();
            let info = meta.info();
            write(&self.cache).insert(name.clone(), Arc::new(Entry::new(meta, loaded)));
            Ok(info)
        })
        .await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.ctx(Operation::ImportKey, Some(name), async {
            let (algorithm, bytes) = self.material_from_import(&material, spec)?;
            let usages = Self::usages_for(algorithm, spec.usages)?;
            self.create_key(name, algorithm, usages, spec.exportable, bytes)
                .await
        })
        .await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.ctx(Operation::ExportWrapped, Some(key.name()), async {
            let WrappingSpec::Password(password) = with else {
                return Err(Error::unsupported(
                    "wrapping under another key; use WrappingSpec::Password",
                ));
            };
            if password.expose().is_empty() {
                return Err(Error::invalid_input("the export password is empty"));
            }
            let entry = self.entry(key.name()).await?;
            let meta = &entry.meta;
            if !meta.exportable {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    "the key was not created exportable",
                ));
            }
            let version = key.version().unwrap_or_else(|| meta.current());
            let vm = meta
                .version(version)
                .ok_or_else(|| Error::not_found(format!("key has no version {version}")))?;
            let data = self
                .store
                .get(&format!("{}/{}", meta.name, vm.file))
                .await?
                .ok_or_else(|| Error::new(ErrorKind::Integrity, "key file is missing"))?;
            let own = self.password.duplicate();
            let theirs = password.duplicate();
            let kdf = self.kdf;
            let pem = tokio::task::spawn_blocking(move || {
                let der = format::decrypt(&data, own.expose().as_bytes())?;
                format::encrypt(der.expose(), theirs.expose().as_bytes(), kdf)
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("export task failed: {e}")))??;
            let (_, der) = der::pem::decode_vec(pem.as_bytes())
                .map_err(|e| Error::new(ErrorKind::Unexpected, format!("PEM: {e}")))?;
            Ok(WrappedKey::new(
                WrapFormat::EncryptedPkcs8,
                meta.algorithm,
                der,
            ))
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
        self.ctx(Operation::ImportWrapped, Some(name), async {
            let WrappingSpec::Password(password) = unwrap_with else {
                return Err(Error::unsupported(
                    "unwrapping with another key; use WrappingSpec::Password",
                ));
            };
            let (w, pw, want) = (wrapped.clone(), password.duplicate(), spec.algorithm);
            let plain = tokio::task::spawn_blocking(move || {
                format::open_password_export(&w, pw.expose().as_bytes(), want)
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("import task failed: {e}")))??;
            let material = if plain.algorithm.is_symmetric() {
                KeyMaterial::Symmetric(plain.material)
            } else {
                KeyMaterial::Pkcs8 {
                    data: plain.material,
                    password: None,
                }
            };
            let mut spec = spec.clone();
            spec.algorithm = Some(spec.algorithm.unwrap_or(wrapped.algorithm));
            let (algorithm, bytes) = self.material_from_import(&material, &spec)?;
            let usages = Self::usages_for(algorithm, spec.usages)?;
            self.create_key(name, algorithm, usages, spec.exportable, bytes)
                .await
        })
        .await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.ctx(Operation::Random, None, async {
            if len > MAX_RANDOM {
                return Err(Error::invalid_input(format!(
                    "at most {MAX_RANDOM} random bytes per call"
                )));
            }
            let mut buf = vec![0u8; len];
            self.provider.fill_random(&mut buf)?;
            Ok(buf)
        })
        .await
    }

    async fn health(&self) -> Result<Health> {
        self.ctx(Operation::Health, None, async {
            let n = self
                .store
                .list("")
                .await?
                .iter()
                .filter(|p| p.ends_with(META))
                .count();
            Ok(Health::ok()
                .with_detail("provider", self.provider.name())
                .with_detail("keys", n.to_string()))
        })
        .await
    }
}
