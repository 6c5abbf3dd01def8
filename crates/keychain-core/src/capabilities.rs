//! What a backend can do, as data.

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
    /// The backend's kind (`pkcs8`, `pkcs11`, `awskms`, ...), used in errors and logs.
    pub backend: String,
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
}

impl Capabilities {
    /// Nothing supported yet; set what the backend offers.
    pub fn new(backend: impl Into<String>, protection: Protection) -> Self {
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
