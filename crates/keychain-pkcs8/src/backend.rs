//! The software backend.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keychain_core::{
    Backend, Capabilities, DamagedKey, Error, ErrorKind, Health, ImportSpec, KeyAlgorithm,
    KeyEntry, KeyInfo, KeyMaterial, KeyName, KeyRef, KeySpec, KeyUsage, KeyUsages, KeyVersion,
    KeyVersionInfo, Operation, Protection, PublicKey, Result, RsaPadding, SecretBytes,
    SecretString, SignInput, Signature, SignatureScheme, WrapFormat, WrappedKey, WrappingSpec,
    async_trait,
};
use keychain_crypto::{
    AUTHENTICATED_LEN, AeadCiphertext, AeadKey, CryptoProvider, HEADER_LEN, NONCE_LEN, PrivateKey,
    TAG_LEN,
};
use keychain_storage::{BlobStore, FileStore, FileStoreOptions, MemoryStore, Stamp};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ProviderKind};
use keychain_crypto::pkcs8::{self as format, Kdf, KdfLimits, PasswordVerifier};

const BACKEND: &str = "pkcs8";
const META: &str = "meta.json";
const META_FORMAT: u32 = 1;
/// The store-wide record: the password verifier. Key names have no `.`, so no key's directory
/// can be called this.
const STORE_RECORD: &str = "store.json";
const STORE_FORMAT: u32 = 1;
/// How often a rotation re-prepares when the key changed algorithm under it (deleted and
/// re-created by another process between preparing and committing).
const ROTATE_ATTEMPTS: usize = 3;
/// [`Entry::generation`] of an entry from a store that keeps no generation.
const NO_GENERATION: u64 = u64::MAX;
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

/// `store.json`: what the whole store shares.
#[derive(Debug, Serialize, Deserialize)]
struct StoreRecord {
    format: u32,
    verifier: PasswordVerifier,
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

    /// Checks what [`Pkcs8Backend::read_meta`] cannot leave to serde: versions from 1 up,
    /// strictly increasing, each naming a key file that is a plain name in the key's directory.
    fn validate(&self, name: &KeyName) -> std::result::Result<(), String> {
        if self.format != META_FORMAT {
            return Err(format!("unknown metadata format {}", self.format));
        }
        if &self.name != name {
            return Err(format!("metadata names the key '{}'", self.name));
        }
        if self.versions.is_empty() {
            return Err("metadata lists no versions".to_owned());
        }
        let mut previous = 0;
        for v in &self.versions {
            if v.version <= previous {
                return Err(format!("version {} follows version {previous}", v.version));
            }
            previous = v.version;
            if keychain_storage::validate_key(&v.file).is_err()
                || v.file.contains('/')
                || v.file == META
            {
                return Err(format!("version {} names the file {:?}", v.version, v.file));
            }
        }
        Ok(())
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
                        UNIX_EPOCH.checked_add(Duration::from_secs(v.created)),
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
    /// The store's generation when the entry was last known current ([`NO_GENERATION`] for
    /// stores without one): while the store's generation is unchanged, nothing was written and
    /// the stamp need not be looked up.
    generation: AtomicU64,
    /// The stamp of `meta.json` taken before it was read: the entry is current while the stamp
    /// is unchanged.
    stamp: Stamp,
    /// `<name>/meta.json`.
    meta_key: String,
    meta: Meta,
    /// The newest version once decrypted: the hot path of sign/encrypt takes no lock.
    current: OnceLock<Loaded>,
    loaded: Mutex<HashMap<KeyVersion, Loaded>>,
}

impl Entry {
    fn new(
        generation: Option<u64>,
        stamp: Stamp,
        meta: Meta,
        loaded: HashMap<KeyVersion, Loaded>,
    ) -> Self {
        let current = OnceLock::new();
        if let Some(l) = loaded.get(&meta.current()) {
            let _ = current.set(l.clone());
        }
        Self {
            generation: AtomicU64::new(generation.unwrap_or(NO_GENERATION)),
            stamp,
            meta_key: meta_key(&meta.name),
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
    limits: KdfLimits,
    provider: Arc<dyn CryptoProvider>,
    capabilities: Capabilities,
    cache: RwLock<HashMap<KeyName, Arc<Entry>, foldhash::quality::RandomState>>,
    /// Set once the password matched the store's verifier (or became it): it cannot change
    /// afterwards, since no one can write a verifier over an existing one.
    password_verified: AtomicBool,
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

/// A key file's content, encrypted and ready to be stored as some version.
struct PreparedVersion {
    pem: String,
    public_key: Option<PublicKey>,
}

fn wrong_password() -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "wrong password: this key store was created with another password",
    )
}

fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("metadata encoding: {e}")))
}

/// Runs CPU-heavy work (KDFs, key generation) off the async threads.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("{what} task failed: {e}")))?
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
        capabilities.health = true;
        Ok(Self {
            store,
            password,
            kdf,
            limits,
            provider,
            capabilities,
            cache: RwLock::new(HashMap::default()),
            password_verified: AtomicBool::new(false),
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
        Self::parse_meta(name, &bytes).map(Some)
    }

    fn parse_meta(name: &KeyName, bytes: &[u8]) -> Result<Meta> {
        let damaged = |why: String| {
            Error::new(
                ErrorKind::Integrity,
                format!("the metadata of key '{name}' is damaged: {why}"),
            )
        };
        let meta: Meta = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        meta.validate(name).map_err(damaged)?;
        Ok(meta)
    }

    fn not_found(name: &KeyName) -> Error {
        Error::not_found(format!("no key named '{name}'"))
    }

    /// The entry for `name`: the cached one while its metadata is unchanged on disk (its
    /// stamp), else read afresh, keeping the decrypted versions whose key files are the same.
    async fn entry(&self, name: &KeyName) -> Result<Arc<Entry>> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        if let Some(e) = &cached
            && self.is_current(e)
        {
            return Ok(Arc::clone(e));
        }
        // Both taken before the read: a change after them makes the next check reload.
        let generation = self.store.generation();
        let Some(stamp) = self.store.stamp(&meta_key(name))? else {
            write(&self.cache).remove(name);
            return Err(Self::not_found(name));
        };
        let meta = self
            .read_meta(name)
            .await?
            .ok_or_else(|| Self::not_found(name))?;
        let mut loaded = HashMap::new();
        if let Some(old) = cached {
            // A version number is only the same key if it names the same file: the key may
            // have been deleted and re-created under the same name by another process.
            for (version, key) in lock(&old.loaded).iter() {
                if old.meta.version(*version).map(|v| &v.file)
                    == meta.version(*version).map(|v| &v.file)
                {
                    loaded.insert(*version, key.clone());
                }
            }
        }
        let entry = Arc::new(Entry::new(generation, stamp, meta, loaded));
        write(&self.cache).insert(name.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Whether a cached entry still describes the key on disk: the store's generation is the
    /// one it was last checked at, or else its metadata's stamp is unchanged (another process,
    /// or another backend on the same store, may have rotated, deleted or re-created it).
    fn is_current(&self, entry: &Entry) -> bool {
        // Taken first: a write after it changes the generation the next check sees.
        let generation = self.store.generation();
        if let Some(g) = generation
            && entry.generation.load(Ordering::Acquire) == g
        {
            return true;
        }
        if self
            .store
            .stamp(&entry.meta_key)
            .is_ok_and(|s| s == Some(entry.stamp))
        {
            if let Some(g) = generation {
                entry.generation.store(g, Ordering::Release);
            }
            return true;
        }
        false
    }

    /// Proves the password before anything is written: checks it against the store's
    /// verifier, or, in a store that has none yet, makes it the verifier once it opens an
    /// existing key (or the store has no key). Afterwards it is never checked again.
    ///
    /// # Errors
    /// `Unauthenticated` for a password that is not the store's; `Integrity` for a damaged
    /// verifier.
    async fn ensure_password(&self) -> Result<()> {
        if self.password_verified.load(Ordering::Acquire) {
            return Ok(());
        }
        loop {
            if let Some(verifier) = self.read_verifier().await? {
                if !self.check_verifier(verifier).await? {
                    return Err(wrong_password());
                }
                self.password_verified.store(true, Ordering::Release);
                return Ok(());
            }
            self.prove_with_existing_key().await?;
            let record = self.new_store_record().await?;
            match self.store.create(STORE_RECORD, &record).await {
                Ok(()) => {
                    self.password_verified.store(true, Ordering::Release);
                    return Ok(());
                }
                // Another process made the verifier first: check against theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_verifier(&self) -> Result<Option<PasswordVerifier>> {
        let Some(bytes) = self.store.get(STORE_RECORD).await? else {
            return Ok(None);
        };
        let record: StoreRecord = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "the store record {STORE_RECORD} is damaged ({e}); remove it, and the next \
                     key opened with the password records a new one"
                ),
            )
        })?;
        if record.format != STORE_FORMAT {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the store record {STORE_RECORD} has the unknown format {}",
                    record.format
                ),
            ));
        }
        Ok(Some(record.verifier))
    }

    async fn check_verifier(&self, verifier: PasswordVerifier) -> Result<bool> {
        let password = self.password.duplicate();
        let limits = self.limits;
        blocking("password check", move || {
            verifier.verify(password.expose().as_bytes(), &limits)
        })
        .await
        .map_err(|e| match e.kind() {
            // Parameters over the limits in the store's own record: damage, not input.
            ErrorKind::InvalidInput => Error::new(
                ErrorKind::Integrity,
                format!(
                    "the store record {STORE_RECORD} is unusable: {}",
                    e.message()
                ),
            ),
            _ => e,
        })
    }

    async fn new_store_record(&self) -> Result<Vec<u8>> {
        let password = self.password.duplicate();
        let (kdf, limits) = (self.kdf, self.limits);
        let verifier = blocking("password verifier", move || {
            PasswordVerifier::new(password.expose().as_bytes(), kdf, &limits)
        })
        .await?;
        encode_json(&StoreRecord {
            format: STORE_FORMAT,
            verifier,
        })
    }

    /// In a store without a verifier (made before there was one): the password must open one
    /// of the existing keys, newest version first. A store with no key proves nothing, and any
    /// password may become its verifier.
    async fn prove_with_existing_key(&self) -> Result<()> {
        let mut tried = false;
        for name in self.key_names().await? {
            let Ok(Some(meta)) = self.read_meta(&name).await else {
                continue;
            };
            let Some(vm) = meta.versions.last() else {
                continue;
            };
            let Some(data) = self.store.get(&format!("{name}/{}", vm.file)).await? else {
                continue;
            };
            tried = true;
            let password = self.password.duplicate();
            let limits = self.limits;
            let opened = blocking("password check", move || {
                let der =
                    format::decrypt_with_limits(&data, password.expose().as_bytes(), &limits)?;
                format::inspect(der.expose()).map(drop)
            })
            .await;
            if opened.is_ok() {
                return Ok(());
            }
        }
        if tried { Err(wrong_password()) } else { Ok(()) }
    }

    /// Every key with a metadata file, read back: healthy, or damaged with the reason.
    async fn scan(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        for name in self.key_names().await? {
            match self.read_meta(&name).await {
                Ok(Some(meta)) => out.push(KeyEntry::Healthy(meta.info())),
                // Deleted between the listing and the read: not listed.
                Ok(None) => {}
                // Unreadable for any reason (damage, permissions): reported, never hiding the
                // keys after it.
                Err(e) => out.push(KeyEntry::Damaged(DamagedKey::new(name, e))),
            }
        }
        Ok(out)
    }

    /// The names of every key with a metadata file, healthy or not, sorted.
    async fn key_names(&self) -> Result<Vec<KeyName>> {
        let suffix = format!("/{META}");
        Ok(self
            .store
            .list("")
            .await?
            .iter()
            .filter_map(|path| path.strip_suffix(&suffix))
            .filter_map(|name| KeyName::new(name).ok())
            .collect())
    }

    /// The error for a stored key file that did not decrypt: `Unauthenticated` when the
    /// password is not the store's (or the store cannot tell), `Integrity` when it is — the
    /// file is then damaged or was written under another password — and `Integrity` for a file
    /// that is no usable encrypted key at all.
    async fn undecryptable(&self, name: &KeyName, version: KeyVersion, error: Error) -> Error {
        match error.kind() {
            ErrorKind::Unauthenticated => {}
            ErrorKind::Integrity => return error,
            // A stored file asking for too much work, or naming a scheme nobody writes, was
            // damaged or planted: it is the store's integrity that failed, not the caller's
            // input.
            _ => {
                return Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "version {version} of key '{name}' is an unusable key file: {}",
                        error.message()
                    ),
                );
            }
        }
        match self.read_verifier().await {
            Ok(Some(verifier)) => match self.check_verifier(verifier).await {
                Ok(true) => {
                    self.password_verified.store(true, Ordering::Release);
                    Error::new(
                        ErrorKind::Integrity,
                        format!(
                            "version {version} of key '{name}' does not decrypt although the \
                             password is the store's: its key file is damaged or was written \
                             under another password"
                        ),
                    )
                }
                Ok(false) => wrong_password(),
                Err(e) => e,
            },
            Ok(None) => error,
            Err(e) => e,
        }
    }

    /// Removes the files in `name`'s directory that `meta` does not list: left by a process
    /// killed between writing a key file and committing the metadata. Only call it holding the
    /// key's record lock, under which every writer of the directory works.
    async fn remove_orphans(&self, name: &KeyName, meta: Option<&Meta>) {
        let prefix = format!("{name}/");
        let files = match self.store.list(&prefix).await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "could not list a key's files");
                return;
            }
        };
        for path in files {
            let file = &path[prefix.len()..];
            let listed =
                file == META || meta.is_some_and(|m| m.versions.iter().any(|v| v.file == file));
            if !listed {
                match self.store.delete(&path).await {
                    Ok(_) => tracing::debug!(key = %name, file, "removed an orphaned key file"),
                    Err(e) => {
                        tracing::warn!(key = %name, file, error = %e, "could not remove an orphaned key file");
                    }
                }
            }
        }
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
        let limits = self.limits;
        let decrypted = blocking("key loading", move || {
            format::decrypt_with_limits(&data, password.expose().as_bytes(), &limits)
        })
        .await;
        let der = match decrypted {
            Ok(der) => der,
            Err(e) => return Err(self.undecryptable(&entry.meta.name, version, e).await),
        };
        let name = entry.meta.name.clone();
        let loaded = blocking("key loading", move || -> Result<Loaded> {
            // The file decrypted, so whatever is wrong with its content is damage, not input.
            let damaged = |e: Error| {
                Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "version {version} of key '{name}' holds a damaged key: {}",
                        e.message()
                    ),
                )
            };
            let plain = format::inspect(der.expose()).map_err(damaged)?;
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
                        .aead_key(algorithm, plain.material.expose())
                        .map_err(damaged)?
                        .into(),
                ))
            } else {
                Ok(Loaded::Private(
                    provider
                        .private_key(algorithm, plain.material.expose())
                        .map_err(damaged)?
                        .into(),
                ))
            }
        })
        .await?;
        if !self.password_verified.load(Ordering::Acquire) {
            self.adopt_password_after_unlock().await;
        }
        lock(&entry.loaded).insert(version, loaded.clone());
        if is_current {
            let _ = entry.current.set(loaded.clone());
        }
        Ok(loaded)
    }

    /// After a key file opened in a store that has no verifier yet (one made before there were
    /// verifiers), makes the password that opened it the verifier. Best effort: a read must not
    /// fail because the store is read-only.
    async fn adopt_password_after_unlock(&self) {
        match self.read_verifier().await {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
        let created = match self.new_store_record().await {
            Ok(record) => self.store.create(STORE_RECORD, &record).await,
            Err(e) => Err(e),
        };
        match created {
            Ok(()) => {
                self.password_verified.store(true, Ordering::Release);
                tracing::info!("recorded a password verifier for a store that had none");
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => tracing::warn!(error = %e, "could not record a password verifier"),
        }
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
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(HEADER_LEN + TAG_LEN));
        out.extend_from_slice(&header);
        // The header's first bytes are authenticated as a prefix of the caller's AAD; short
        // AADs (the common case) are assembled on the stack.
        let mut small = [0u8; 64];
        let full_len = aad.len().saturating_add(AUTHENTICATED_LEN);
        let full_aad: std::borrow::Cow<'_, [u8]> = if full_len <= small.len() {
            small[..AUTHENTICATED_LEN].copy_from_slice(&header[..AUTHENTICATED_LEN]);
            small[AUTHENTICATED_LEN..full_len].copy_from_slice(aad);
            std::borrow::Cow::Borrowed(&small[..full_len])
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

    /// Encrypts the material into a key file's content (the slow KDF, done before any lock is
    /// taken); [`Pkcs8Backend::write_version`] stores it.
    async fn prepare_version(
        &self,
        algorithm: KeyAlgorithm,
        material: &SecretBytes,
    ) -> Result<PreparedVersion> {
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
        let (kdf, limits) = (self.kdf, self.limits);
        let pem = blocking("encryption", move || {
            format::encrypt_with_limits(der.expose(), password.expose().as_bytes(), kdf, &limits)
        })
        .await?;
        Ok(PreparedVersion { pem, public_key })
    }

    /// Stores a prepared key file as `version` under a fresh unique name. Call it holding the
    /// key's record lock.
    async fn write_version(
        &self,
        name: &KeyName,
        version: KeyVersion,
        prepared: &PreparedVersion,
    ) -> Result<VersionMeta> {
        let mut id = [0u8; 6];
        self.provider.fill_random(&mut id)?;
        let file = format!("v{version}-{}.pem", hex::encode(id));
        self.store
            .create(&format!("{name}/{file}"), prepared.pem.as_bytes())
            .await?;
        Ok(VersionMeta {
            version,
            created: now_secs(),
            file,
            public_key: prepared.public_key.clone(),
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
        self.ensure_password().await?;
        let already_exists = || {
            Error::new(
                ErrorKind::AlreadyExists,
                format!("a key named '{name}' already exists"),
            )
        };
        // Cheap early answer; the check under the lock below is the one that counts.
        if self.store.stamp(&meta_key(name))?.is_some() {
            return Err(already_exists());
        }
        let prepared = self.prepare_version(algorithm, &material).await?;
        let _lock = self.store.lock(name.as_str()).await?;
        if self.store.stamp(&meta_key(name))?.is_some() {
            return Err(already_exists());
        }
        // Files without metadata are a killed creator's leftovers.
        self.remove_orphans(name, None).await;
        let vm = self.write_version(name, 1, &prepared).await?;
        let file = format!("{name}/{}", vm.file);
        let meta = Meta {
            format: META_FORMAT,
            name: name.clone(),
            algorithm,
            usages,
            exportable,
            versions: vec![vm],
        };
        if let Err(e) = self
            .store
            .create(&meta_key(name), &encode_json(&meta)?)
            .await
        {
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
            let material = blocking("key generation", move || provider.generate(algorithm)).await?;
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
            for entry in self.scan().await? {
                match entry {
                    KeyEntry::Healthy(info) => out.push(info),
                    KeyEntry::Damaged(damaged) => tracing::warn!(
                        key = %damaged.name,
                        error = %damaged.error,
                        "not listing a damaged key"
                    ),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.ctx(Operation::ListKeys, None, self.scan()).await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.ctx(Operation::DeleteKey, Some(name), async {
            self.ensure_password().await?;
            let _lock = self.store.lock(name.as_str()).await?;
            // Deleting the metadata is the commit point: after it the key is gone whatever
            // happens to its files. The metadata is not parsed, so a damaged key deletes too.
            let existed = self.store.delete(&meta_key(name)).await?;
            write(&self.cache).remove(name);
            self.remove_orphans(name, None).await;
            if existed {
                Ok(())
            } else {
                Err(Self::not_found(name))
            }
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
        // Hot path: the key's current version is decrypted and cached, and its metadata is
        // unchanged on disk (same stamp); nothing to await. The seal runs under the cache's
        // read lock (microseconds, shared) rather than paying for an `Arc` clone and drop per
        // call.
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = cache.get(key.name())
                && self.is_current(entry)
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
            self.ensure_password().await?;
            let mut algorithm = self
                .read_meta(name)
                .await?
                .ok_or_else(|| Self::not_found(name))?
                .algorithm;
            for _ in 0..ROTATE_ATTEMPTS {
                // Key generation and the KDF happen before the lock, so concurrent rotations
                // hold it only for the writes.
                let provider = self.provider.clone();
                let material =
                    blocking("key generation", move || provider.generate(algorithm)).await?;
                let prepared = self.prepare_version(algorithm, &material).await?;
                let _lock = self.store.lock(name.as_str()).await?;
                // Re-read under the lock: another process may have rotated or deleted it.
                let mut meta = self
                    .read_meta(name)
                    .await?
                    .ok_or_else(|| Self::not_found(name))?;
                if meta.algorithm != algorithm {
                    // Deleted and re-created as another kind of key meanwhile.
                    algorithm = meta.algorithm;
                    continue;
                }
                let version = meta.current().checked_add(1).ok_or_else(|| {
                    Error::new(
                        ErrorKind::CapacityExceeded,
                        format!("key '{name}' has used up its version numbers"),
                    )
                })?;
                self.remove_orphans(name, Some(&meta)).await;
                let vm = self.write_version(name, version, &prepared).await?;
                let file = format!("{name}/{}", vm.file);
                meta.versions.push(vm);
                if let Err(e) = self.store.put(&meta_key(name), &encode_json(&meta)?).await {
                    let _ = self.store.delete(&file).await;
                    return Err(e);
                }
                // The next use re-reads the metadata (its stamp changed) and keeps the
                // versions already decrypted.
                return Ok(meta.info());
            }
            Err(Error::new(
                ErrorKind::Unavailable,
                format!("key '{name}' kept changing while it was being rotated; try again"),
            ))
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
            let limits = self.limits;
            let decrypted = blocking("export", move || {
                format::decrypt_with_limits(&data, own.expose().as_bytes(), &limits)
            })
            .await;
            let der = match decrypted {
                Ok(der) => der,
                Err(e) => return Err(self.undecryptable(&meta.name, version, e).await),
            };
            let theirs = password.duplicate();
            let kdf = self.kdf;
            let pem = blocking("export", move || {
                format::encrypt_with_limits(der.expose(), theirs.expose().as_bytes(), kdf, &limits)
            })
            .await?;
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
            let plain = blocking("import", move || {
                format::open_password_export(&w, pw.expose().as_bytes(), want)
            })
            .await?;
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
