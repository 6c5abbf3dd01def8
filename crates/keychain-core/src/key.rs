//! What a key is: its spec at creation, its metadata afterwards, and the forms it travels in.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::algorithm::{KeyAlgorithm, KeyUsages};
use crate::error::{Error, Result};
use crate::name::{KeyName, KeyVersion};
use crate::public_key::PublicKey;
use crate::secret::{SecretBytes, SecretString};

/// What to create with [`crate::Backend::generate_key`].
///
/// ```
/// use keychain_core::{KeyAlgorithm, KeySpec, KeyUsages};
/// let spec = KeySpec::new(KeyAlgorithm::Rsa3072).with_usages(KeyUsages::SIGN | KeyUsages::DECRYPT);
/// assert!(!spec.exportable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeySpec {
    /// Type and size.
    pub algorithm: KeyAlgorithm,
    /// What the key may do; empty means [`KeyAlgorithm::default_usages`].
    #[serde(default)]
    pub usages: KeyUsages,
    /// Whether the private/secret key may ever leave the backend (wrapped). Default `false`.
    #[serde(default)]
    pub exportable: bool,
}

impl KeySpec {
    /// A non-exportable key of `algorithm` with its default usages.
    pub fn new(algorithm: KeyAlgorithm) -> Self {
        Self {
            algorithm,
            usages: algorithm.default_usages(),
            exportable: false,
        }
    }

    /// Sets the usages.
    #[must_use]
    pub fn with_usages(mut self, usages: KeyUsages) -> Self {
        self.usages = usages;
        self
    }

    /// Makes the key exportable.
    #[must_use]
    pub fn exportable(mut self, exportable: bool) -> Self {
        self.exportable = exportable;
        self
    }

    /// The usages, with the algorithm's defaults filled in for an empty set.
    pub fn effective_usages(&self) -> KeyUsages {
        if self.usages.is_empty() {
            self.algorithm.default_usages()
        } else {
            self.usages
        }
    }

    /// Checks the usages against the algorithm.
    ///
    /// # Errors
    /// `InvalidInput` when a usage is impossible for the algorithm (an EC key that decrypts).
    pub fn validate(&self) -> Result<()> {
        let usages = self.effective_usages();
        if !self.algorithm.possible_usages().contains_all(usages) {
            return Err(Error::invalid_input(format!(
                "a {} key cannot have usages {usages:?}",
                self.algorithm
            )));
        }
        Ok(())
    }
}

/// Where a key's secret half lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Protection {
    /// In process memory and (encrypted) on disk.
    Software,
    /// Inside a local hardware device (HSM, smart card, TPM).
    Hardware,
    /// Inside a cloud provider's HSM-backed service.
    CloudHsm,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyVersionInfo {
    /// The version number (1-based).
    pub version: KeyVersion,
    /// When this version was created, if the backend knows.
    pub created: Option<SystemTime>,
    /// The public key of this version (asymmetric keys).
    pub public_key: Option<PublicKey>,
}

impl KeyVersionInfo {
    /// A version record.
    pub fn new(
        version: KeyVersion,
        created: Option<SystemTime>,
        public_key: Option<PublicKey>,
    ) -> Self {
        Self {
            version,
            created,
            public_key,
        }
    }
}

/// One key in [`Backend::list_entries`](crate::Backend::list_entries): readable, or damaged.
#[derive(Debug)]
pub enum KeyEntry {
    /// A key whose record reads back whole.
    Healthy(KeyInfo),
    /// A key whose stored record cannot be read. It can still be deleted.
    Damaged(DamagedKey),
}

impl KeyEntry {
    /// The key's name.
    pub fn name(&self) -> &KeyName {
        match self {
            Self::Healthy(info) => &info.name,
            Self::Damaged(damaged) => &damaged.name,
        }
    }
}

/// A key whose stored record cannot be read, and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct DamagedKey {
    /// The name the key is stored under.
    pub name: KeyName,
    /// What reading it gives (usually [`ErrorKind::Integrity`](crate::ErrorKind::Integrity)).
    pub error: Error,
}

impl DamagedKey {
    /// A damaged key's report.
    pub fn new(name: KeyName, error: Error) -> Self {
        Self { name, error }
    }
}

/// What a backend knows about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The name it was created under.
    pub name: KeyName,
    /// Type and size.
    pub algorithm: KeyAlgorithm,
    /// What it may do.
    pub usages: KeyUsages,
    /// Where the secret half lives.
    pub protection: Protection,
    /// Whether it can be exported (wrapped).
    pub exportable: bool,
    /// The newest version: the one `sign` and `encrypt` use without an explicit version.
    pub version: KeyVersion,
    /// Every version still usable, oldest first; the last is `version`.
    pub versions: Vec<KeyVersionInfo>,
}

impl KeyInfo {
    /// The public key of the newest version (asymmetric keys only).
    pub fn public_key(&self) -> Option<&PublicKey> {
        self.version_info(self.version)?.public_key.as_ref()
    }

    /// The record of one version.
    pub fn version_info(&self, version: KeyVersion) -> Option<&KeyVersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// When the key (its first version) was created.
    pub fn created(&self) -> Option<SystemTime> {
        self.versions.first().and_then(|v| v.created)
    }

    /// Builds a `KeyInfo`; `versions` must be non-empty and sorted, the last one is current.
    pub fn new(
        name: KeyName,
        algorithm: KeyAlgorithm,
        usages: KeyUsages,
        protection: Protection,
        exportable: bool,
        versions: Vec<KeyVersionInfo>,
    ) -> Self {
        let version = versions.last().map_or(1, |v| v.version);
        Self {
            name,
            algorithm,
            usages,
            protection,
            exportable,
            version,
            versions,
        }
    }
}

/// Key material handed to [`crate::Backend::import_key`].
#[non_exhaustive]
pub enum KeyMaterial {
    /// A PKCS#8 private key, DER or PEM (`PRIVATE KEY` or `ENCRYPTED PRIVATE KEY`).
    Pkcs8 {
        /// The DER or PEM bytes.
        data: SecretBytes,
        /// The password, for an encrypted PKCS#8.
        password: Option<SecretString>,
    },
    /// Raw symmetric key bytes (16, 24 or 32 for AES).
    Symmetric(SecretBytes),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pkcs8 { .. } => f.write_str("KeyMaterial::Pkcs8([redacted])"),
            Self::Symmetric(_) => f.write_str("KeyMaterial::Symmetric([redacted])"),
        }
    }
}

/// Options for [`crate::Backend::import_key`] and [`crate::Backend::import_wrapped`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImportSpec {
    /// The algorithm the material must have (checked), or `None` to take it from the material.
    /// Required for raw symmetric keys of ambiguous use.
    pub algorithm: Option<KeyAlgorithm>,
    /// Usages; empty means the algorithm's defaults.
    #[serde(default)]
    pub usages: KeyUsages,
    /// Whether the imported key may be exported again.
    #[serde(default)]
    pub exportable: bool,
}

impl ImportSpec {
    /// Default options: algorithm from the material, default usages, not exportable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `algorithm`.
    #[must_use]
    pub fn algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// Sets the usages.
    #[must_use]
    pub fn with_usages(mut self, usages: KeyUsages) -> Self {
        self.usages = usages;
        self
    }

    /// Makes the key exportable.
    #[must_use]
    pub fn exportable(mut self, exportable: bool) -> Self {
        self.exportable = exportable;
        self
    }
}

/// How [`crate::Backend::export_wrapped`] protects the exported key.
#[derive(Debug)]
#[non_exhaustive]
pub enum WrappingSpec {
    /// Encrypted PKCS#8 (PBES2) under a password; symmetric keys as a PKCS#8-style envelope the
    /// same backend family can import.
    Password(SecretString),
    /// Under another key in the same backend (AES key wrap with padding, RFC 5649, or RSA-OAEP).
    Key(crate::name::KeyRef),
}

/// The format of a [`WrappedKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WrapFormat {
    /// DER `EncryptedPrivateKeyInfo` (PKCS#8 with PBES2).
    EncryptedPkcs8,
    /// AES key wrap with padding (RFC 5649) under a wrapping key.
    AesKeyWrapPad,
    /// RSA-OAEP under a wrapping key.
    RsaOaep,
}

/// An exported, wrapped key: safe to store or move; useless without the wrapping secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WrappedKey {
    /// How `bytes` is encoded and protected.
    pub format: WrapFormat,
    /// The algorithm of the wrapped key.
    pub algorithm: KeyAlgorithm,
    /// The wrapped key.
    pub bytes: Vec<u8>,
    /// The public key of an asymmetric key, as SubjectPublicKeyInfo DER, when the format does
    /// not carry it: a token that unwraps an EC private key (PKCS#11 `C_UnwrapKey`) cannot
    /// derive the public point, so the importer needs it alongside. Not secret; the importer
    /// checks that it belongs to the private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Vec<u8>>,
}

impl WrappedKey {
    /// A wrapped key record.
    pub fn new(format: WrapFormat, algorithm: KeyAlgorithm, bytes: Vec<u8>) -> Self {
        Self {
            format,
            algorithm,
            bytes,
            public_key: None,
        }
    }

    /// Carries the wrapped key's public key (SubjectPublicKeyInfo DER).
    #[must_use]
    pub fn with_public_key(mut self, public_key: &crate::PublicKey) -> Self {
        self.public_key = Some(public_key.der().to_vec());
        self
    }
}

/// The result of [`crate::Backend::health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// Overall state.
    pub status: HealthStatus,
    /// Details worth showing an operator (never secrets): `("pin", "final try")`, ...
    pub details: Vec<(String, String)>,
}

impl Health {
    /// A healthy report with no details.
    pub fn ok() -> Self {
        Self {
            status: HealthStatus::Ok,
            details: Vec::new(),
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((key.into(), value.into()));
        self
    }
}

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Working.
    Ok,
    /// Working, with a warning (PIN count low, nearly full).
    Degraded,
    /// Not working.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::KeyUsage;

    #[test]
    fn spec_validation() {
        assert!(KeySpec::new(KeyAlgorithm::EcP256).validate().is_ok());
        let bad = KeySpec::new(KeyAlgorithm::EcP256).with_usages(KeyUsages::DECRYPT);
        assert!(bad.validate().is_err());
        let empty = KeySpec::new(KeyAlgorithm::Aes256Gcm).with_usages(KeyUsages::NONE);
        assert!(empty.effective_usages().contains(KeyUsage::Encrypt));
    }

    #[test]
    fn key_material_debug_is_redacted() {
        let m = KeyMaterial::Symmetric(SecretBytes::from_slice(&[0x42; 32]));
        assert!(!format!("{m:?}").contains("42"));
    }
}
