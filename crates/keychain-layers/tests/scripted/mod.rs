//! A **test double**, not a backend: every operation succeeds with a canned answer unless a
//! script says otherwise. Per operation it holds a queue of steps (fail with this error, or
//! answer after this delay), consumed one per call, and it counts calls.
//!
//! The canned payloads (signature, ciphertext, plaintext, wrapped key, random bytes) are fixed
//! byte patterns, so tests can search logs for them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use keychain_core::{
    Backend, Capabilities, DamagedKey, Error, ErrorKind, HashAlg, Health, ImportSpec, KeyAlgorithm,
    KeyAttestation, KeyEntry, KeyInfo, KeyMaterial, KeyName, KeyRef, KeySpec, KeyUsages,
    KeyVersionInfo, Operation, Protection, Result, RsaPadding, SecretBytes, SignInput, Signature,
    SignatureScheme, WrapFormat, WrappedKey, WrappingSpec, async_trait,
};

/// What `sign` returns.
pub(crate) const SIGNATURE: [u8; 8] = [0xd1, 0x9e, 0x57, 0x5e, 0xc2, 0xe7, 0xb1, 0x7e];
/// What `encrypt` returns.
pub(crate) const CIPHERTEXT: [u8; 8] = [0xc1, 0xf3, 0xe2, 0x7e, 0x8b, 0x9d, 0xa4, 0x66];
/// What `decrypt` and `decrypt_aead` return.
pub(crate) const PLAINTEXT: &[u8] = b"the launch codes are 0000";
/// What `export_wrapped` returns.
pub(crate) const WRAPPED: [u8; 8] = [0x3a, 0x77, 0x9c, 0x11, 0xfe, 0x42, 0x6d, 0x08];
/// The byte `random` repeats.
pub(crate) const RANDOM_BYTE: u8 = 0x5a;

enum Step {
    Fail(Error),
    Delay(Duration),
}

#[derive(Debug)]
pub(crate) struct Scripted {
    caps: Capabilities,
    script: Mutex<HashMap<Operation, VecDeque<Step>>>,
    calls: Mutex<HashMap<Operation, usize>>,
    /// Current version of every key; bumped by `rotate_key`.
    version: AtomicU32,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fail(e) => write!(f, "Fail({})", e.kind()),
            Self::Delay(d) => write!(f, "Delay({d:?})"),
        }
    }
}

impl Scripted {
    /// A backend whose `Capabilities::backend` is `name` and that declares every operation.
    pub(crate) fn new(name: &str) -> Self {
        let mut caps = Capabilities::new(name.to_owned(), Protection::Hardware);
        caps.algorithms = vec![KeyAlgorithm::EcP256, KeyAlgorithm::Aes256Gcm];
        caps.signature_schemes = vec![SignatureScheme::Ecdsa(HashAlg::Sha256)];
        caps.aead = true;
        caps.rotate = true;
        caps.import = true;
        caps.export_wrapped = true;
        caps.import_wrapped = true;
        caps.random = true;
        caps.health = true;
        Self {
            caps,
            script: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            version: AtomicU32::new(1),
        }
    }

    /// The next `times` calls of `op` fail with an error of `kind`, flagged retryable as
    /// `retryable` says.
    pub(crate) fn fail(&self, op: Operation, times: usize, kind: ErrorKind, retryable: bool) {
        let mut script = self.script.lock().unwrap();
        let queue = script.entry(op).or_default();
        for _ in 0..times {
            let e = Error::new(kind, "scripted failure")
                .with_backend(self.caps.backend.clone())
                .with_operation(op)
                .with_retryable(retryable);
            queue.push_back(Step::Fail(e));
        }
    }

    /// The next call of `op` answers only after `delay` (on tokio's clock).
    pub(crate) fn delay(&self, op: Operation, delay: Duration) {
        let mut script = self.script.lock().unwrap();
        script.entry(op).or_default().push_back(Step::Delay(delay));
    }

    /// How many times `op` was called.
    pub(crate) fn calls(&self, op: Operation) -> usize {
        self.calls.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    async fn step(&self, op: Operation) -> Result<()> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        let step = self
            .script
            .lock()
            .unwrap()
            .get_mut(&op)
            .and_then(VecDeque::pop_front);
        match step {
            None => Ok(()),
            Some(Step::Fail(e)) => Err(e),
            Some(Step::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    fn info(&self, name: &KeyName) -> KeyInfo {
        let current = self.version.load(Ordering::SeqCst);
        let versions = (1..=current)
            .map(|v| KeyVersionInfo::new(v, None, None))
            .collect();
        KeyInfo::new(
            name.clone(),
            KeyAlgorithm::EcP256,
            KeyUsages::SIGN,
            Protection::Hardware,
            false,
            versions,
        )
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for Scripted {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, _spec: &KeySpec) -> Result<KeyInfo> {
        self.step(Operation::GenerateKey).await?;
        Ok(self.info(name))
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.step(Operation::KeyInfo).await?;
        Ok(self.info(key.name()))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.step(Operation::ListKeys).await?;
        Ok(vec![self.info(&KeyName::new("listed").unwrap())])
    }

    /// The listed key and a damaged one, which only a layer that forwards `list_entries`
    /// (rather than falling back to `list_keys`) passes on.
    async fn list_entries(&self) -> Result<Vec<KeyEntry>> {
        self.step(Operation::ListKeys).await?;
        Ok(vec![
            KeyEntry::Healthy(self.info(&KeyName::new("listed").unwrap())),
            KeyEntry::Damaged(DamagedKey::new(
                KeyName::new("damaged").unwrap(),
                Error::new(ErrorKind::Integrity, "scripted damage"),
            )),
        ])
    }

    async fn delete_key(&self, _name: &KeyName) -> Result<()> {
        self.step(Operation::DeleteKey).await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        _input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.step(Operation::Sign).await?;
        let version = key
            .version()
            .unwrap_or_else(|| self.version.load(Ordering::SeqCst));
        Ok(Signature::new(SIGNATURE.to_vec(), scheme, version))
    }

    async fn close(&self) -> Result<()> {
        self.step(Operation::Close).await
    }

    async fn decrypt(
        &self,
        _key: &KeyRef,
        _ciphertext: &[u8],
        _padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.step(Operation::Decrypt).await?;
        Ok(SecretBytes::from_slice(PLAINTEXT))
    }

    async fn encrypt(&self, _key: &KeyRef, _plaintext: &[u8], _aad: &[u8]) -> Result<Vec<u8>> {
        self.step(Operation::Encrypt).await?;
        Ok(CIPHERTEXT.to_vec())
    }

    async fn decrypt_aead(
        &self,
        _name: &KeyName,
        _ciphertext: &[u8],
        _aad: &[u8],
    ) -> Result<SecretBytes> {
        self.step(Operation::DecryptAead).await?;
        Ok(SecretBytes::from_slice(PLAINTEXT))
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.step(Operation::RotateKey).await?;
        self.version.fetch_add(1, Ordering::SeqCst);
        Ok(self.info(name))
    }

    async fn import_key(
        &self,
        name: &KeyName,
        _material: KeyMaterial,
        _spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.step(Operation::ImportKey).await?;
        Ok(self.info(name))
    }

    async fn export_wrapped(&self, _key: &KeyRef, _with: &WrappingSpec) -> Result<WrappedKey> {
        self.step(Operation::ExportWrapped).await?;
        Ok(WrappedKey::new(
            WrapFormat::EncryptedPkcs8,
            KeyAlgorithm::EcP256,
            WRAPPED.to_vec(),
        ))
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        _wrapped: &WrappedKey,
        _unwrap_with: &WrappingSpec,
        _spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.step(Operation::ImportWrapped).await?;
        Ok(self.info(name))
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.step(Operation::Random).await?;
        Ok(vec![RANDOM_BYTE; len])
    }

    async fn attest_key(&self, _key: &KeyRef, _nonce: &[u8]) -> Result<KeyAttestation> {
        self.step(Operation::AttestKey).await?;
        Err(Error::unsupported(
            "scripted backends have no attestation key",
        ))
    }

    async fn health(&self) -> Result<Health> {
        self.step(Operation::Health).await?;
        Ok(Health::ok())
    }
}
