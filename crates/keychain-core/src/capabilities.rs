//! What a backend can do, as data.

use std::borrow::{Borrow, Cow};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::algorithm::{HashAlg, KeyAlgorithm, SignatureScheme};
use crate::key::Protection;

/// What a backend supports. Callers and the conformance suite ask before they call; an
/// operation the backend does not declare returns [`crate::ErrorKind::Unsupported`].
///
/// Build one from [`Capabilities::new`] and set fields (the struct is `#[non_exhaustive]` so
/// fields can be added without breaking backends):
///
/// ```
/// use keychain_core::{Capabilities, KeyAlgorithm, Protection};
/// let mut caps = Capabilities::new("my-hsm", Protection::Hardware);
/// caps.algorithms = vec![KeyAlgorithm::EcP256];
/// caps.random = true;
/// assert!(caps.supports_algorithm(KeyAlgorithm::EcP256));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's type, as its configuration names it (`pkcs8`, `pkcs11`, `aws`, ...): the
    /// [`crate::BackendConfig::TYPE`] of its crate. Used in errors, logs and metrics.
    pub backend: BackendType,
    /// Where keys of this backend live.
    pub protection: Protection,
    /// Algorithms `generate_key` accepts.
    pub algorithms: Vec<KeyAlgorithm>,
    /// Signature schemes `sign` accepts (each with a key whose algorithm it fits).
    pub signature_schemes: Vec<SignatureScheme>,
    /// Whether `sign` accepts [`crate::SignInput::Message`] for hash-based schemes (Ed25519 always
    /// takes messages).
    pub sign_message: bool,
    /// Hashes for RSA-OAEP `decrypt`; empty when asymmetric decryption is unsupported.
    pub oaep_hashes: Vec<HashAlg>,
    /// AEAD `encrypt`/`decrypt_aead` with symmetric keys.
    pub aead: bool,
    /// `rotate_key`.
    pub rotate: bool,
    /// `import_key`.
    pub import: bool,
    /// `export_wrapped` (for keys created exportable).
    pub export_wrapped: bool,
    /// `import_wrapped`.
    pub import_wrapped: bool,
    /// `random`.
    pub random: bool,
    /// `attest_key`.
    pub attest: bool,
    /// `health` reports more than "reachable".
    pub health: bool,
    /// How many keys the backend can hold, if it has a known limit.
    pub max_keys: Option<usize>,
    /// The most bytes one `random` call returns (at least 1024 when `random` is set); `None`
    /// when unlimited. [`Capabilities::check_random`] enforces it.
    pub max_random: Option<usize>,
    /// The longest plaintext one `encrypt` call takes, when the provider limits it (AWS KMS:
    /// 4096 bytes); `None` when only memory limits it.
    pub max_plaintext: Option<usize>,
}

impl Capabilities {
    /// Nothing supported yet; set what the backend offers.
    pub fn new(backend: impl Into<BackendType>, protection: Protection) -> Self {
        Self {
            backend: backend.into(),
            protection,
            algorithms: Vec::new(),
            signature_schemes: Vec::new(),
            sign_message: false,
            oaep_hashes: Vec::new(),
            aead: false,
            rotate: false,
            import: false,
            export_wrapped: false,
            import_wrapped: false,
            random: false,
            attest: false,
            health: false,
            max_keys: None,
            max_random: None,
            max_plaintext: None,
        }
    }

    /// `Ok` when one `random` call may return `len` bytes.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when `len` exceeds [`Capabilities::max_random`].
    pub fn check_random(&self, len: usize) -> crate::Result<()> {
        match self.max_random {
            Some(max) if len > max => Err(crate::Error::invalid_input(format!(
                "random returns at most {max} bytes per call, asked for {len}"
            ))
            .with_backend(self.backend.clone())
            .with_operation(crate::Operation::Random)),
            _ => Ok(()),
        }
    }

    /// `Ok` when one `encrypt` call may take `len` bytes of plaintext.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when `len` exceeds [`Capabilities::max_plaintext`].
    pub fn check_plaintext(&self, len: usize) -> crate::Result<()> {
        match self.max_plaintext {
            Some(max) if len > max => Err(crate::Error::invalid_input(format!(
                "encrypt takes at most {max} bytes of plaintext per call, got {len}"
            ))
            .with_backend(self.backend.clone())
            .with_operation(crate::Operation::Encrypt)),
            _ => Ok(()),
        }
    }

    /// Whether `generate_key` accepts `algorithm`.
    pub fn supports_algorithm(&self, algorithm: KeyAlgorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }

    /// Whether `sign` accepts `scheme` for a key of `algorithm`.
    pub fn supports_scheme(&self, algorithm: KeyAlgorithm, scheme: SignatureScheme) -> bool {
        scheme.fits(algorithm) && self.signature_schemes.contains(&scheme)
    }

    /// Whether `decrypt` (RSA-OAEP) is supported with `hash`.
    pub fn supports_oaep(&self, hash: HashAlg) -> bool {
        self.oaep_hashes.contains(&hash)
    }
}

/// A backend's type name (`pkcs8`, `aws`, ...), as [`Capabilities::backend`] carries it: the
/// [`crate::BackendConfig::TYPE`] of the backend's crate, or any name a downstream backend
/// chooses. Compares with `&str`, prints as the name, serializes as a string.
///
/// ```
/// use keychain_core::BackendType;
/// let t = BackendType::from_static("pkcs8");
/// assert_eq!(t, "pkcs8");
/// assert_eq!(t.to_string(), "pkcs8");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackendType(Cow<'static, str>);

impl BackendType {
    /// A type name known at compile time (no allocation).
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackendType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for BackendType {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for BackendType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for BackendType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for BackendType {
    fn from(name: &'static str) -> Self {
        Self::from_static(name)
    }
}

impl From<String> for BackendType {
    fn from(name: String) -> Self {
        Self(Cow::Owned(name))
    }
}

impl From<BackendType> for Cow<'static, str> {
    fn from(t: BackendType) -> Self {
        t.0
    }
}

impl From<BackendType> for String {
    fn from(t: BackendType) -> Self {
        t.0.into_owned()
    }
}

impl PartialEq<str> for BackendType {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for BackendType {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<BackendType> for &str {
    fn eq(&self, other: &BackendType) -> bool {
        **self == *other.0
    }
}
