//! `TpmBackend`: keychain's `Backend` over a TPM 2.0.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use keychain_core::support::{CloseGuard, KeyCache};
use keychain_core::{
    AttestationFormat, Backend, Capabilities, Error, ErrorKind, HashAlg, Health, KeyAlgorithm,
    KeyAttestation, KeyInfo, KeyName, KeyRef, KeySpec, KeyUsage, Operation, Protection, Result,
    RsaPadding, SecretBytes, SecretSource, SignInput, Signature, SignatureScheme,
};
use keychain_crypto::{AeadCiphertext, AeadKey, CryptoProvider, HEADER_LEN, NONCE_LEN, TAG_LEN};
use keychain_storage::{BlobStore, FileStore, FileStoreOptions};
use tss_esapi::structures::{Auth, SensitiveData};

use crate::config::Config;
use crate::device::{Probe, Settings};
use crate::record::{self, Blobs, Entry, Record};
use crate::worker::Worker;

const BACKEND: &str = "tpm2";

/// The most bytes one [`Backend::random`] call returns (the TPM hands out 32 per command), as
/// [`Capabilities::max_random`] declares it.
const MAX_RANDOM: usize = 4096;

/// How long a key's record read from the store is used without reading it again: changes
/// another process makes to the key directory (rotation, deletion) are seen within this time;
/// this process's own changes at once.
pub const RECORD_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest nonce [`Backend::attest_key`] takes (a TPM2B_DATA).
pub const MAX_NONCE: usize = 64;

/// The longest auth value: the digest size of SHA-256, the keys' name algorithm.
pub const MAX_AUTH_LEN: usize = 32;

/// keychain's backend for a TPM 2.0: keys are non-duplicable children of the storage root key,
/// their blobs kept in a [`BlobStore`]; see the crate documentation.
pub struct TpmBackend {
    worker: Worker,
    store: Arc<dyn BlobStore>,
    caps: Capabilities,
    probe: Probe,
    provider: Arc<dyn CryptoProvider>,
    key_auth: Auth,
    key_auths: HashMap<String, Auth>,
    /// Serializes read-modify-write of records (rotate) within this process.
    writer: tokio::sync::Mutex<()>,
    /// Decoded records by name, for at most [`RECORD_TTL`]; a change in this process removes
    /// the entry, and a read that raced it is not cached (see `entry`).
    cache: KeyCache<Entry>,
    closed: CloseGuard,
}

impl std::fmt::Debug for TpmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmBackend")
            .field("store", &self.store)
            .field("manufacturer", &self.probe.manufacturer)
            .field("loaded_keys", &self.probe.loaded_keys)
            .field("parameter_encryption", &self.probe.parameter_encryption)
            .finish_non_exhaustive()
    }
}

fn auth_of(source: Option<&SecretSource>, what: &str) -> Result<Option<Auth>> {
    let Some(source) = source else {
        return Ok(None);
    };
    let secret = source.resolve(what)?;
    let bytes = secret.expose().as_bytes();
    if bytes.len() > MAX_AUTH_LEN {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes; a TPM auth value has at most {MAX_AUTH_LEN}",
            bytes.len()
        )));
    }
    Auth::try_from(bytes.to_vec())
        .map(Some)
        .map_err(|e| Error::invalid_input(format!("{what}: {e}")))
}

fn capabilities(probe: &Probe) -> Capabilities {
    let mut caps = Capabilities::new(BACKEND, Protection::Hardware);
    caps.algorithms = probe.algorithms.clone();
    for h in &probe.hashes {
        if probe.rsassa {
            caps.signature_schemes
                .push(SignatureScheme::RsaPkcs1v15(*h));
        }
        if probe.rsapss {
            caps.signature_schemes.push(SignatureScheme::RsaPss(*h));
        }
        if probe.ecdsa {
            caps.signature_schemes.push(SignatureScheme::Ecdsa(*h));
        }
    }
    // Messages are hashed on the host (TPM2_Sign takes digests).
    caps.sign_message = true;
    if probe.oaep && probe.algorithms.iter().any(|a| a.is_rsa()) {
        caps.oaep_hashes = probe.hashes.clone();
    }
    caps.aead = probe.algorithms.iter().any(|a| a.is_symmetric());
    caps.rotate = true;
    caps.random = true;
    caps.max_random = Some(MAX_RANDOM);
    caps.health = true;
    caps.attest = probe.algorithms.contains(&KeyAlgorithm::EcP256);
    caps
}

impl TpmBackend {
    /// Opens the TPM named by `config.tcti` with key blobs in `config.key_dir`.
    ///
    /// Resolves the auth values, connects, flushes objects a crashed process left behind
    /// (`flush-stale-objects`), finds the SRK (or creates and persists it, or creates a transient
    /// one), reads the TPM's algorithms and curves, and starts the salted session.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid configuration, an unparsable TCTI, an auth
    /// value over [`MAX_AUTH_LEN`] bytes, or an SRK handle holding something other than a storage
    /// key; [`ErrorKind::Unavailable`] (retryable) when the TPM cannot be reached;
    /// [`ErrorKind::NotFound`] when the SRK is absent and `create-srk` is off;
    /// [`ErrorKind::Unauthenticated`] for a wrong owner auth; errors of
    /// [`SecretSource::resolve`] and of `FileStore::open`.
    pub async fn open(config: Config) -> Result<Self> {
        let dir = config.key_dir.clone().ok_or_else(|| {
            Error::invalid_input("key-dir is required (or use TpmBackend::open_with_store)")
                .with_backend(BACKEND)
                .with_operation(Operation::Open)
        })?;
        let options = FileStoreOptions::default()
            .with_allow_insecure_permissions(config.allow_insecure_permissions);
        let store = FileStore::open(dir, options)
            .map_err(|e| e.with_backend(BACKEND).with_operation(Operation::Open))?;
        Self::open_with_store(config, Arc::new(store)).await
    }

    /// Opens the TPM with key blobs in `store` (`key-dir` is ignored).
    ///
    /// # Errors
    /// As [`TpmBackend::open`].
    pub async fn open_with_store(config: Config, store: Arc<dyn BlobStore>) -> Result<Self> {
        let err = |e: Error| e.with_backend(BACKEND).with_operation(Operation::Open);
        config.validate().map_err(err)?;
        let provider = keychain_crypto::default_provider().ok_or_else(|| {
            err(Error::unsupported(
                "no software crypto provider for the sealed AES keys (enable aws-lc-rs or rustcrypto)",
            ))
        })?;
        let key_auth = auth_of(config.key_auth.as_ref(), "key-auth")
            .map_err(err)?
            .unwrap_or_default();
        let mut key_auths = HashMap::new();
        for (name, source) in &config.key_auths {
            let auth = auth_of(Some(source), &format!("key-auths.{name}")).map_err(err)?;
            key_auths.insert(name.clone(), auth.unwrap_or_default());
        }
        let settings = Settings {
            tcti: config.tcti.clone(),
            srk_handle: config.srk_handle,
            create_srk: config.create_srk,
            transient_srk: config.transient_srk,
            owner_auth: auth_of(config.owner_auth.as_ref(), "owner-auth").map_err(err)?,
            endorsement_auth: auth_of(config.endorsement_auth.as_ref(), "endorsement-auth")
                .map_err(err)?,
            parameter_encryption: config.parameter_encryption,
            loaded_keys: config.loaded_keys,
            flush_stale_objects: config.flush_stale_objects,
        };
        let (worker, probe) = Worker::start(settings).await.map_err(err)?;
        tracing::debug!(
            manufacturer = %probe.manufacturer,
            algorithms = ?probe.algorithms,
            loaded_keys = probe.loaded_keys,
            "opened TPM"
        );
        Ok(Self {
            worker,
            store,
            caps: capabilities(&probe),
            probe,
            provider,
            key_auth,
            key_auths,
            writer: tokio::sync::Mutex::new(()),
            cache: KeyCache::new(),
            closed: CloseGuard::new(),
        })
    }

    fn auth(&self, name: &KeyName) -> Auth {
        self.key_auths
            .get(name.as_str())
            .unwrap_or(&self.key_auth)
            .clone()
    }

    /// The record of `name`, read from the store now.
    async fn record(&self, name: &KeyName) -> Result<Record> {
        let bytes = self
            .store
            .get(&record::store_key(name))
            .await?
            .ok_or_else(|| Error::not_found(format!("no key named {name}")))?;
        Record::parse(&bytes)
    }

    /// The record of `name` for an operation: from the cache when read less than
    /// [`RECORD_TTL`] ago, else from the store (and then cached).
    async fn entry(&self, name: &KeyName) -> Result<Arc<Entry>> {
        if let Some(entry) = self.cache.get(name)
            && entry.read_at.elapsed() < RECORD_TTL
        {
            return Ok(entry);
        }
        // A change in this process since the read started makes what was read stale: the
        // ticket refuses the insert then.
        let ticket = self.cache.ticket();
        let entry = Arc::new(Entry::new(self.record(name).await?));
        self.cache.insert(name.clone(), Arc::clone(&entry), ticket);
        Ok(entry)
    }

    /// Drops the cached record of `name` (after a change, or a blob the TPM refused).
    fn forget(&self, name: &KeyName) {
        self.cache.remove(name);
    }

    /// Forgets `name`'s cached record when `result` says the blob is bad or gone.
    fn forget_on<T>(&self, name: &KeyName, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && matches!(e.kind(), ErrorKind::Integrity | ErrorKind::NotFound)
        {
            self.forget(name);
        }
        result
    }

    /// The record and the blobs of the version `key` names.
    async fn target(&self, key: &KeyRef) -> Result<(Arc<Entry>, u32, Arc<Blobs>)> {
        let entry = self.entry(key.name()).await?;
        let (version, blobs) = entry.blobs(key.version()).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found(format!(
                    "key {} has no version {}",
                    key.name(),
                    key.version().unwrap_or_default()
                ))
            } else {
                e
            }
        })?;
        Ok((entry, version, blobs))
    }

    async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        spec.validate()?;
        if !self.caps.supports_algorithm(spec.algorithm) {
            return Err(Error::unsupported(format!(
                "{} keys: this TPM does not offer them",
                spec.algorithm
            )));
        }
        if spec.exportable {
            return Err(Error::unsupported(
                "exportable keys: TPM keys are created non-duplicable (fixedTPM, fixedParent)",
            ));
        }
        let store_key = record::store_key(name);
        if self.store.get(&store_key).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a key named {name} exists"),
            ));
        }
        let usages = spec.effective_usages();
        let mut record = Record::new(spec.algorithm, usages);
        let (public, private) = self.create_version(spec.algorithm, usages, name).await?;
        record.push(&public, &private)?;
        // `create` is atomic: of two racing generates exactly one stores its key; the other's
        // TPM key was never persisted and is simply gone.
        self.store.create(&store_key, &record.to_bytes()?).await?;
        self.forget(name);
        record.info(name)
    }

    /// Creates a new TPM key (or sealed AES key) for `name` under the SRK.
    async fn create_version(
        &self,
        algorithm: KeyAlgorithm,
        usages: keychain_core::KeyUsages,
        name: &KeyName,
    ) -> Result<(tss_esapi::structures::Public, Vec<u8>)> {
        let template = crate::convert::key_template(algorithm, usages)?;
        let auth = self.auth(name);
        let aes_len = crate::convert::aes_len(algorithm);
        self.worker
            .run(move |device| {
                let sealed = match aes_len {
                    Some(len) => {
                        let key = device.random(len)?;
                        Some(SensitiveData::try_from(key.to_vec()).map_err(|e| {
                            Error::new(ErrorKind::Unexpected, format!("sealing: {e}"))
                        })?)
                    }
                    None => None,
                };
                device.create(template, &auth, sealed)
            })
            .await
    }

    async fn sign_inner(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let (entry, version, blobs) = self.target(key).await?;
        let record = &entry.record;
        scheme.check_fits(record.algorithm)?;
        if !record.usages.contains(KeyUsage::Sign) {
            return Err(Error::invalid_input("the key does not have the sign usage"));
        }
        if !self.caps.signature_schemes.contains(&scheme) {
            return Err(Error::unsupported(format!("{scheme} on this TPM")));
        }
        let digest = input.prepare(scheme)?.into_owned();
        let auth = self.auth(key.name());
        let algorithm = record.algorithm;
        let bytes = self
            .worker
            .run(move |device| {
                let handle = device.key(&blobs.public, &blobs.private, &auth)?;
                device.sign(handle, algorithm, &digest, scheme)
            })
            .await?;
        Ok(Signature::new(bytes, scheme, version))
    }

    async fn decrypt_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let (entry, _, blobs) = self.target(key).await?;
        let record = &entry.record;
        if !record.algorithm.is_rsa() {
            return Err(Error::invalid_input(format!(
                "{} keys do not do RSA-OAEP",
                record.algorithm
            )));
        }
        if !record.usages.contains(KeyUsage::Decrypt) {
            return Err(Error::invalid_input(
                "the key does not have the decrypt usage",
            ));
        }
        let RsaPadding::Oaep(hash) = padding else {
            return Err(Error::unsupported("this padding"));
        };
        if !self.caps.supports_oaep(hash) {
            return Err(Error::unsupported(format!(
                "RSA-OAEP with {hash} on this TPM"
            )));
        }
        let modulus_len = record.algorithm.bits() as usize / 8;
        if ciphertext.len() != modulus_len {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "an RSA-{} ciphertext is {modulus_len} bytes, got {}",
                    record.algorithm.bits(),
                    ciphertext.len()
                ),
            ));
        }
        let auth = self.auth(key.name());
        let ciphertext = ciphertext.to_vec();
        let plain = self
            .worker
            .run(move |device| {
                let handle = device.key(&blobs.public, &blobs.private, &auth)?;
                device.decrypt_oaep(handle, &ciphertext, hash)
            })
            .await?;
        Ok(SecretBytes::from_slice(&plain))
    }

    fn check_symmetric(record: &Record, usage: KeyUsage) -> Result<()> {
        record.algorithm.require_symmetric()?;
        if !record.usages.contains(usage) {
            return Err(Error::invalid_input(format!(
                "the key does not have the {usage:?} usage"
            )));
        }
        Ok(())
    }

    async fn encrypt_inner(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (entry, version, blobs) = self.target(key).await?;
        let record = &entry.record;
        Self::check_symmetric(record, KeyUsage::Encrypt)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.provider.fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        AeadCiphertext::write_header(&mut out, version, &nonce);
        let full_aad = AeadCiphertext::full_aad(&out, aad);
        out.extend_from_slice(plaintext);
        self.with_aes_key(key.name(), record.algorithm, blobs, move |k| {
            k.seal_in_place(&nonce, &full_aad, &mut out, HEADER_LEN)?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` with the AES key sealed in `blobs`: unsealed on the worker thread, used there,
    /// and zeroized there when `f` returns.
    async fn with_aes_key<T, F>(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        blobs: Arc<Blobs>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn AeadKey) -> Result<T> + Send + 'static,
    {
        let auth = self.auth(name);
        let provider = Arc::clone(&self.provider);
        self.worker
            .run(move |device| {
                let handle = device.key(&blobs.public, &blobs.private, &auth)?;
                let material = device.unseal(handle)?;
                let k = provider.aead_key(algorithm, &material)?;
                drop(material);
                f(k.as_ref())
            })
            .await
    }

    async fn decrypt_aead_inner(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let entry = self.entry(name).await?;
        let record = &entry.record;
        Self::check_symmetric(record, KeyUsage::Decrypt)?;
        let ct = AeadCiphertext::parse(ciphertext)?;
        if ct.key_version == 0 || ct.key_version > record.current() {
            return Err(Error::new(
                ErrorKind::Integrity,
                "ciphertext names a key version that never existed",
            ));
        }
        let (_, blobs) = entry.blobs(Some(ct.key_version))?;
        let nonce = ct.nonce;
        let full_aad = AeadCiphertext::full_aad(ct.header_bytes(), aad);
        let body = ct.body.to_vec();
        self.with_aes_key(name, record.algorithm, blobs, move |k| {
            k.open(&nonce, &full_aad, &body)
        })
        .await
    }

    async fn rotate(&self, name: &KeyName) -> Result<KeyInfo> {
        let _w = self.writer.lock().await;
        self.forget(name);
        let mut record = self.record(name).await?;
        let (public, private) = self
            .create_version(record.algorithm, record.usages, name)
            .await?;
        record.push(&public, &private)?;
        let store_key = record::store_key(name);
        // Re-check under the lock that the key was not deleted meanwhile (put would revive it).
        if self.store.get(&store_key).await?.is_none() {
            return Err(Error::not_found(format!("no key named {name}")));
        }
        self.store.put(&store_key, &record.to_bytes()?).await?;
        self.forget(name);
        record.info(name)
    }

    async fn delete(&self, name: &KeyName) -> Result<()> {
        let _w = self.writer.lock().await;
        let store_key = record::store_key(name);
        let privates = match self.store.get(&store_key).await? {
            Some(bytes) => Record::parse(&bytes)
                .map(|r| r.privates())
                .unwrap_or_default(),
            None => return Err(Error::not_found(format!("no key named {name}"))),
        };
        let deleted = self.store.delete(&store_key).await;
        self.forget(name);
        if !deleted? {
            return Err(Error::not_found(format!("no key named {name}")));
        }
        // The TPM holds no copy but loaded ones: with the blobs gone, the key is gone.
        self.worker
            .run(move |device| {
                device.forget(&privates);
                Ok(())
            })
            .await
    }

    async fn list(&self) -> Result<Vec<KeyInfo>> {
        let mut infos = Vec::new();
        for key in self.store.list("keys/").await? {
            let Some(name) = record::name_of_store_key(&key) else {
                continue;
            };
            let Some(bytes) = self.store.get(&key).await? else {
                continue; // deleted meanwhile
            };
            match Record::parse(&bytes).and_then(|r| r.info(&name)) {
                Ok(info) => infos.push(info),
                Err(e) => {
                    tracing::warn!(key = %name, error = %e, "skipping an unreadable key record")
                }
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    async fn random_inner(&self, len: usize) -> Result<Vec<u8>> {
        self.caps.check_random(len)?;
        let bytes = self.worker.run(move |device| device.random(len)).await?;
        Ok(bytes.to_vec())
    }

    async fn attest_inner(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        let (entry, version, blobs) = self.target(key).await?;
        if entry.record.algorithm.is_symmetric() {
            return Err(Error::invalid_input(
                "sealed AES keys cannot be certified (they are no TPM keys of their own)",
            ));
        }
        if nonce.len() > MAX_NONCE {
            return Err(Error::invalid_input(format!(
                "the nonce is {} bytes; a TPM takes at most {MAX_NONCE}",
                nonce.len()
            )));
        }
        let auth = self.auth(key.name());
        let nonce = nonce.to_vec();
        let (statement, signature, ak_public, key_public) = self
            .worker
            .run(move |device| {
                let handle = device.key(&blobs.public, &blobs.private, &auth)?;
                let (statement, signature, ak) = device.certify(handle, &nonce)?;
                Ok((statement, signature, ak, blobs.public.clone()))
            })
            .await?;
        let signature = crate::convert::signature_bytes(KeyAlgorithm::EcP256, &signature)?;
        let attestation_key = crate::convert::public_key(KeyAlgorithm::EcP256, &ak_public)?;
        let key_description = tss_esapi::traits::Marshall::marshall(&key_public)
            .map_err(|e| crate::error::map(e, "encoding the key's public area"))?;
        Ok(KeyAttestation::new(
            AttestationFormat::Tpm2Certify,
            statement,
            signature,
            SignatureScheme::Ecdsa(HashAlg::Sha256),
            attestation_key,
            key_description,
            version,
        ))
    }

    async fn health_inner(&self) -> Result<Health> {
        let loaded = self.worker.run(|device| Ok(device.loaded_count())).await?;
        Ok(Health::ok()
            .with_detail("manufacturer", self.probe.manufacturer.clone())
            .with_detail("transient-slots", self.probe.transient_slots.to_string())
            .with_detail(
                "loaded-keys",
                format!("{loaded}/{}", self.probe.loaded_keys),
            )
            .with_detail(
                "parameter-encryption",
                self.probe.parameter_encryption.to_string(),
            )
            .with_detail(
                "stale-objects-flushed",
                self.probe.stale_flushed.to_string(),
            ))
    }

    /// The hashes the TPM offers.
    pub fn hashes(&self) -> &[HashAlg] {
        &self.probe.hashes
    }
}

/// Runs `body` with the open check and the error context every method adds.
macro_rules! op {
    ($self:ident, $op:expr, $key:expr, $body:expr) => {{
        let op = $op;
        let key: Option<&KeyName> = $key;
        let result = match $self.closed.check(BACKEND, op) {
            Ok(()) => $body.await,
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            let e = e.with_backend(BACKEND).with_operation(op);
            match key {
                Some(k) => e.with_key(k),
                None => e,
            }
        })
    }};
}

#[async_trait]
impl Backend for TpmBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        op!(
            self,
            Operation::GenerateKey,
            Some(name),
            self.generate(name, spec)
        )
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        op!(self, Operation::KeyInfo, Some(key.name()), async {
            let record = self.record(key.name()).await?;
            let info = record.info(key.name())?;
            if let Some(v) = key.version()
                && info.version_info(v).is_none()
            {
                return Err(Error::not_found(format!(
                    "key {} has no version {v}",
                    key.name()
                )));
            }
            Ok(info)
        })
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        op!(self, Operation::ListKeys, None, self.list())
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        op!(self, Operation::DeleteKey, Some(name), self.delete(name))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        op!(self, Operation::Sign, Some(key.name()), async {
            self.forget_on(key.name(), self.sign_inner(key, input, scheme).await)
        })
    }

    async fn close(&self) -> Result<()> {
        if self.closed.close() {
            self.worker.stop().await;
        }
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        op!(self, Operation::Decrypt, Some(key.name()), async {
            self.forget_on(
                key.name(),
                self.decrypt_inner(key, ciphertext, padding).await,
            )
        })
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        op!(self, Operation::Encrypt, Some(key.name()), async {
            self.forget_on(key.name(), self.encrypt_inner(key, plaintext, aad).await)
        })
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        op!(self, Operation::DecryptAead, Some(name), async {
            self.forget_on(name, self.decrypt_aead_inner(name, ciphertext, aad).await)
        })
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        op!(self, Operation::RotateKey, Some(name), self.rotate(name))
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        op!(self, Operation::Random, None, self.random_inner(len))
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        op!(self, Operation::AttestKey, Some(key.name()), async {
            self.forget_on(key.name(), self.attest_inner(key, nonce).await)
        })
    }

    async fn health(&self) -> Result<Health> {
        op!(self, Operation::Health, None, self.health_inner())
    }
}
