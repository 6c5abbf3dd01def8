//! `ScHsmBackend`: a SmartCard-HSM / Nitrokey HSM through its PKCS#11 module (OpenSC's), with
//! key backups in the card's DKEK blob format.

use async_trait::async_trait;
use keychain_core::{
    Backend, Capabilities, Error, Health, ImportSpec, KeyAttestation, KeyInfo, KeyMaterial,
    KeyName, KeyRef, KeySpec, Result, RsaPadding, SecretBytes, SignInput, Signature,
    SignatureScheme, WrappedKey, WrappingSpec,
};
use keychain_pkcs11::Pkcs11Backend;

use crate::dkek::{self, Dkek, WrapOptions};

/// How [`ScHsmBackend::backup_key`] makes a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupPath {
    /// The token wraps the key for the host (`C_WrapKey` under a session key, as for a password
    /// export), and keychain encodes it as a card blob under the DKEK: the key material passes
    /// through this process's memory (zeroized after). The only path on tokens without the
    /// card's own commands — SoftHSM in CI — and today's path everywhere.
    Host,
    // `Card`: the SmartCard-HSM's WRAP KEY / UNWRAP KEY over PC/SC with the DKEK the card holds
    // (INITIALIZE with DKEK shares, IMPORT DKEK SHARE), so the key never reaches the host. A
    // later issue; it produces the same blobs, so `restore_into` reads both.
}

/// keychain's backend for a SmartCard-HSM / Nitrokey HSM: every key operation is the PKCS#11
/// backend's, plus [`ScHsmBackend::backup_key`] and [`ScHsmBackend::restore_key`] in the card's
/// DKEK blob format (see the crate docs).
#[derive(Debug)]
pub struct ScHsmBackend {
    inner: Pkcs11Backend,
    caps: Capabilities,
}

impl ScHsmBackend {
    /// Opens the token the PKCS#11 configuration names (for a real card: OpenSC's
    /// `opensc-pkcs11.so` and the card's token label).
    ///
    /// # Errors
    /// As [`Pkcs11Backend::open`].
    pub async fn open(config: keychain_pkcs11::Config) -> Result<Self> {
        Ok(Self::from_pkcs11(Pkcs11Backend::open(config).await?))
    }

    /// Wraps an open PKCS#11 backend.
    pub fn from_pkcs11(inner: Pkcs11Backend) -> Self {
        let mut caps = inner.capabilities().clone();
        caps.backend = keychain_core::BackendType::from_static("sc-hsm");
        Self { inner, caps }
    }

    /// The PKCS#11 backend underneath.
    pub fn pkcs11(&self) -> &Pkcs11Backend {
        &self.inner
    }

    /// How this backend makes backups.
    pub fn backup_path(&self) -> BackupPath {
        BackupPath::Host
    }

    /// A backup of `key` (the given version, newest when none) as a card blob under `dkek`:
    /// the bytes the card's WRAP KEY returns for it, which its UNWRAP KEY (and
    /// [`restore_into`], into any backend) takes back. RSA keys below 4096 bits are written in
    /// CRT form, as the card writes them.
    ///
    /// # Errors
    /// `PermissionDenied` for a key not created exportable; `Unsupported` for a key the card
    /// format cannot carry (Ed25519) or the token cannot wrap; `NotFound` for a missing key.
    pub async fn backup_key(&self, key: &KeyRef, dkek: &Dkek) -> Result<Vec<u8>> {
        let err = |e: Error| {
            e.with_backend("sc-hsm")
                .with_operation(keychain_core::Operation::ExportWrapped)
                .with_key(key.name())
        };
        let info = self.inner.key_info(key).await?;
        if info.algorithm == keychain_core::KeyAlgorithm::Ed25519 {
            return Err(err(Error::unsupported(
                "Ed25519 keys: the SmartCard-HSM blob format has no Edwards curves",
            )));
        }
        let material = self.inner.extract_key(key).await?;
        dkek::wrap_key(dkek, &material, &WrapOptions::new()).map_err(err)
    }

    /// Restores a card blob made under `dkek` as the new key `name` in this token.
    ///
    /// # Errors
    /// As [`restore_into`].
    pub async fn restore_key(
        &self,
        name: &KeyName,
        blob: &[u8],
        dkek: &Dkek,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        restore_into(&self.inner, name, blob, dkek, spec).await
    }
}

/// Restores a SmartCard-HSM backup blob (from the card's WRAP KEY, `sc-hsm-tool --wrap-key`'s
/// file body, or [`ScHsmBackend::backup_key`]) into **any** backend that imports keys — the
/// software backend, another HSM, a cloud KMS with import: the way off a SmartCard-HSM.
/// The blob's MAC is checked before anything is decrypted; the key material passes through this
/// process's memory (zeroized after). `spec.algorithm` is taken from the blob.
///
/// # Errors
/// - `Integrity`: the blob was altered (its MAC does not verify) or is malformed;
/// - `Unauthenticated`: the blob was made under another DKEK (the error names the blob's KCV
///   and the DKEK's);
/// - `Unsupported`: a key only the card uses (AES for CBC/CMAC with no GCM counterpart, a curve
///   keychain has no algorithm for), or a backend that cannot import;
/// - the backend's `import_key` errors (`AlreadyExists`, ...).
pub async fn restore_into(
    backend: &dyn Backend,
    name: &KeyName,
    blob: &[u8],
    dkek: &Dkek,
    spec: &ImportSpec,
) -> Result<KeyInfo> {
    let err = |e: Error| {
        e.with_backend("sc-hsm")
            .with_operation(keychain_core::Operation::ImportWrapped)
            .with_key(name)
    };
    let unwrapped = dkek::unwrap_key(dkek, blob).map_err(err)?;
    let algorithm = unwrapped.algorithm.ok_or_else(|| {
        err(Error::unsupported(
            "a key type keychain has no algorithm for (the blob holds a card-only key)",
        ))
    })?;
    let spec = spec.clone().algorithm(algorithm);
    backend.import_key(name, unwrapped.material, &spec).await
}

/// Every key operation is the PKCS#11 backend's.
#[async_trait]
impl Backend for ScHsmBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.inner.generate_key(name, spec).await
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.inner.key_info(key).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.inner.list_keys().await
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.inner.delete_key(name).await
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.inner.sign(key, input, scheme).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.inner.decrypt(key, ciphertext, padding).await
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.inner.encrypt(key, plaintext, aad).await
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.inner.decrypt_aead(name, ciphertext, aad).await
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.inner.rotate_key(name).await
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.inner.import_key(name, material, spec).await
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        self.inner.export_wrapped(key, with).await
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        self.inner
            .import_wrapped(name, wrapped, unwrap_with, spec)
            .await
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.inner.random(len).await
    }

    async fn attest_key(&self, key: &KeyRef, nonce: &[u8]) -> Result<KeyAttestation> {
        self.inner.attest_key(key, nonce).await
    }

    async fn health(&self) -> Result<Health> {
        self.inner.health().await
    }
}
