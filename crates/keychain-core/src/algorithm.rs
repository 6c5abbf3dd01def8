//! Algorithms, hashes, signature schemes and usages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A key algorithm (type and size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    /// ECDSA over NIST P-256 (secp256r1).
    #[serde(rename = "ec-p256")]
    EcP256,
    /// ECDSA over NIST P-384 (secp384r1).
    #[serde(rename = "ec-p384")]
    EcP384,
    /// ECDSA over NIST P-521 (secp521r1).
    #[serde(rename = "ec-p521")]
    EcP521,
    /// ECDSA over secp256k1 (where a backend offers it).
    #[serde(rename = "ec-secp256k1")]
    EcSecp256k1,
    /// Ed25519 (EdDSA over Curve25519); signs whole messages.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// AES-128 in GCM mode.
    #[serde(rename = "aes128-gcm")]
    Aes128Gcm,
    /// AES-192 in GCM mode.
    #[serde(rename = "aes192-gcm")]
    Aes192Gcm,
    /// AES-256 in GCM mode.
    #[serde(rename = "aes256-gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439): a 256-bit key, 96-bit nonces, 128-bit tags.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl KeyAlgorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [KeyAlgorithm; 12] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EcP256,
        Self::EcP384,
        Self::EcP521,
        Self::EcSecp256k1,
        Self::Ed25519,
        Self::Aes128Gcm,
        Self::Aes192Gcm,
        Self::Aes256Gcm,
        Self::ChaCha20Poly1305,
    ];

    /// The configuration/URI spelling (`rsa-2048`, `ec-p256`, `ed25519`, `aes256-gcm`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
            Self::EcP256 => "ec-p256",
            Self::EcP384 => "ec-p384",
            Self::EcP521 => "ec-p521",
            Self::EcSecp256k1 => "ec-secp256k1",
            Self::Ed25519 => "ed25519",
            Self::Aes128Gcm => "aes128-gcm",
            Self::Aes192Gcm => "aes192-gcm",
            Self::Aes256Gcm => "aes256-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// RSA of any size.
    pub const fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// ECDSA on any curve.
    pub const fn is_ecdsa(self) -> bool {
        matches!(
            self,
            Self::EcP256 | Self::EcP384 | Self::EcP521 | Self::EcSecp256k1
        )
    }

    /// A symmetric (AEAD) key: AES-GCM or ChaCha20-Poly1305.
    pub const fn is_symmetric(self) -> bool {
        self.is_aes() || matches!(self, Self::ChaCha20Poly1305)
    }

    /// `Ok` for a symmetric key: the check every backend's `encrypt` and `decrypt_aead` make,
    /// with one message.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for an asymmetric algorithm.
    pub fn require_symmetric(self) -> Result<()> {
        if self.is_symmetric() {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "{self} keys do not do AEAD: encrypt and decrypt_aead need a symmetric key"
            )))
        }
    }

    /// AES-GCM of any key size.
    pub const fn is_aes(self) -> bool {
        matches!(self, Self::Aes128Gcm | Self::Aes192Gcm | Self::Aes256Gcm)
    }

    /// An asymmetric key (it has a public key).
    pub const fn is_asymmetric(self) -> bool {
        !self.is_symmetric()
    }

    /// Key size in bits (RSA modulus, curve order, symmetric key).
    pub const fn bits(self) -> u32 {
        match self {
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
            Self::EcP256
            | Self::EcSecp256k1
            | Self::Ed25519
            | Self::Aes256Gcm
            | Self::ChaCha20Poly1305 => 256,
            Self::EcP384 => 384,
            Self::EcP521 => 521,
            Self::Aes128Gcm => 128,
            Self::Aes192Gcm => 192,
        }
    }

    /// For symmetric keys, the key length in bytes.
    pub const fn symmetric_key_len(self) -> Option<usize> {
        match self {
            Self::Aes128Gcm => Some(16),
            Self::Aes192Gcm => Some(24),
            Self::Aes256Gcm | Self::ChaCha20Poly1305 => Some(32),
            _ => None,
        }
    }

    /// The usages a key of this algorithm gets when a spec asks for none.
    pub fn default_usages(self) -> KeyUsages {
        if self.is_symmetric() {
            KeyUsages::ENCRYPT | KeyUsages::DECRYPT
        } else {
            KeyUsages::SIGN
        }
    }

    /// The usages this algorithm can have at all.
    pub fn possible_usages(self) -> KeyUsages {
        if self.is_symmetric() {
            KeyUsages::ENCRYPT | KeyUsages::DECRYPT | KeyUsages::WRAP
        } else if self.is_rsa() {
            KeyUsages::SIGN | KeyUsages::DECRYPT | KeyUsages::WRAP
        } else {
            KeyUsages::SIGN
        }
    }

    /// The hash that goes with this key when the caller does not choose one
    /// (SHA-256 for RSA, P-256, secp256k1; SHA-384 for P-384; SHA-512 for P-521 and Ed25519).
    pub const fn default_hash(self) -> Option<HashAlg> {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 | Self::EcP256 | Self::EcSecp256k1 => {
                Some(HashAlg::Sha256)
            }
            Self::EcP384 => Some(HashAlg::Sha384),
            Self::EcP521 | Self::Ed25519 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The signature scheme a key of this algorithm uses by default, `None` for AES.
    pub const fn default_scheme(self) -> Option<SignatureScheme> {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => {
                Some(SignatureScheme::RsaPkcs1v15(HashAlg::Sha256))
            }
            Self::EcP256 | Self::EcSecp256k1 => Some(SignatureScheme::Ecdsa(HashAlg::Sha256)),
            Self::EcP384 => Some(SignatureScheme::Ecdsa(HashAlg::Sha384)),
            Self::EcP521 => Some(SignatureScheme::Ecdsa(HashAlg::Sha512)),
            Self::Ed25519 => Some(SignatureScheme::Ed25519),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;
    /// Parses the [`KeyAlgorithm::as_str`] spelling, case-insensitively; `InvalidInput` otherwise.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| Error::invalid_input(format!("unknown key algorithm {s:?}")))
    }
}

/// A hash function used with signatures and OAEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Every hash, in a stable order.
    pub const ALL: [HashAlg; 3] = [Self::Sha256, Self::Sha384, Self::Sha512];

    /// Digest length in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// `sha256`, `sha384`, `sha512`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The digest of everything `reader` yields, read in 64 KiB chunks: memory stays the same
    /// for any length. Reads on the calling thread.
    ///
    /// ```
    /// use keychain_core::HashAlg;
    /// let mut input: &[u8] = b"abc";
    /// assert_eq!(HashAlg::Sha256.digest_reader(&mut input).unwrap(), HashAlg::Sha256.digest(b"abc"));
    /// ```
    ///
    /// # Errors
    /// The reader's errors (an interrupted read is retried).
    pub fn digest_reader(self, reader: &mut dyn std::io::Read) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Sha256 => stream::<sha2::Sha256>(reader),
            Self::Sha384 => stream::<sha2::Sha384>(reader),
            Self::Sha512 => stream::<sha2::Sha512>(reader),
        }
    }
}

fn stream<D: sha2::Digest>(reader: &mut dyn std::io::Read) -> std::io::Result<Vec<u8>> {
    const CHUNK: usize = 64 * 1024;
    let mut hasher = D::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize().to_vec()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a signature is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with the given hash.
    RsaPkcs1v15(HashAlg),
    /// RSASSA-PSS with the given hash, MGF1 with the same hash, salt length = hash length.
    RsaPss(HashAlg),
    /// ECDSA with the given hash; signatures are ASN.1 DER (`Ecdsa-Sig-Value`).
    Ecdsa(HashAlg),
    /// Ed25519 (pure EdDSA, RFC 8032) over the whole message.
    Ed25519,
}

impl SignatureScheme {
    /// The scheme to sign or verify with for a key of `algorithm`: `asked` when given, else the
    /// algorithm's [default](KeyAlgorithm::default_scheme) with `hash` in place of its hash.
    ///
    /// ```
    /// use keychain_core::{HashAlg, KeyAlgorithm, SignatureScheme};
    /// let s = SignatureScheme::select(KeyAlgorithm::EcP384, None, Some(HashAlg::Sha512)).unwrap();
    /// assert_eq!(s, SignatureScheme::Ecdsa(HashAlg::Sha512));
    /// assert!(SignatureScheme::select(KeyAlgorithm::Ed25519, Some(s), None).is_err());
    /// ```
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when the scheme does not fit the key, or the key is
    /// symmetric.
    pub fn select(
        algorithm: KeyAlgorithm,
        asked: Option<Self>,
        hash: Option<HashAlg>,
    ) -> Result<Self> {
        let scheme = match asked {
            Some(s) => s,
            None => algorithm
                .default_scheme()
                .ok_or_else(|| {
                    Error::invalid_input(format!("{algorithm} keys do not make signatures"))
                })?
                .with_hash(hash),
        };
        scheme.check_fits(algorithm)?;
        Ok(scheme)
    }

    /// This scheme with `hash` in place of its own, when it has one and `hash` is given.
    #[must_use]
    pub const fn with_hash(self, hash: Option<HashAlg>) -> Self {
        match (self, hash) {
            (Self::RsaPkcs1v15(_), Some(h)) => Self::RsaPkcs1v15(h),
            (Self::RsaPss(_), Some(h)) => Self::RsaPss(h),
            (Self::Ecdsa(_), Some(h)) => Self::Ecdsa(h),
            (s, _) => s,
        }
    }

    /// The hash this scheme uses on the message, `None` for Ed25519.
    pub const fn hash(self) -> Option<HashAlg> {
        match self {
            Self::RsaPkcs1v15(h) | Self::RsaPss(h) | Self::Ecdsa(h) => Some(h),
            Self::Ed25519 => None,
        }
    }

    /// Whether a key of `algorithm` can make signatures of this scheme.
    pub const fn fits(self, algorithm: KeyAlgorithm) -> bool {
        match self {
            Self::RsaPkcs1v15(_) | Self::RsaPss(_) => algorithm.is_rsa(),
            Self::Ecdsa(_) => algorithm.is_ecdsa(),
            Self::Ed25519 => matches!(algorithm, KeyAlgorithm::Ed25519),
        }
    }

    /// A stable name such as `rsa-pss-sha256` or `ecdsa-sha384`.
    pub fn name(self) -> String {
        match self {
            Self::RsaPkcs1v15(h) => format!("rsa-pkcs1-{h}"),
            Self::RsaPss(h) => format!("rsa-pss-{h}"),
            Self::Ecdsa(h) => format!("ecdsa-{h}"),
            Self::Ed25519 => "ed25519".to_owned(),
        }
    }

    /// Checks that a key of `algorithm` can make this scheme.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming both when they do not fit.
    pub fn check_fits(self, algorithm: KeyAlgorithm) -> Result<()> {
        if self.fits(algorithm) {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "signature scheme {} does not fit a {algorithm} key",
                self.name()
            )))
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for SignatureScheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        if lower == "ed25519" {
            return Ok(Self::Ed25519);
        }
        for h in HashAlg::ALL {
            for scheme in [Self::RsaPkcs1v15(h), Self::RsaPss(h), Self::Ecdsa(h)] {
                if scheme.name() == lower {
                    return Ok(scheme);
                }
            }
        }
        Err(Error::invalid_input(format!(
            "unknown signature scheme {s:?}"
        )))
    }
}

/// Padding for asymmetric (RSA) decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RsaPadding {
    /// RSAES-OAEP with the given hash for both the label hash and MGF1, empty label.
    Oaep(HashAlg),
}

/// One thing a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyUsage {
    /// Make signatures.
    Sign,
    /// Decrypt (RSA-OAEP for asymmetric keys, AEAD open for symmetric keys).
    Decrypt,
    /// Encrypt (AEAD seal).
    Encrypt,
    /// Wrap and unwrap other keys.
    Wrap,
}

/// A set of [`KeyUsage`]s.
///
/// ```
/// use keychain_core::{KeyUsage, KeyUsages};
/// let u = KeyUsages::SIGN | KeyUsages::DECRYPT;
/// assert!(u.contains(KeyUsage::Sign));
/// assert!(!u.contains(KeyUsage::Encrypt));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyUsages(u8);

impl KeyUsages {
    /// No usage.
    pub const NONE: Self = Self(0);
    /// [`KeyUsage::Sign`].
    pub const SIGN: Self = Self(1);
    /// [`KeyUsage::Decrypt`].
    pub const DECRYPT: Self = Self(2);
    /// [`KeyUsage::Encrypt`].
    pub const ENCRYPT: Self = Self(4);
    /// [`KeyUsage::Wrap`].
    pub const WRAP: Self = Self(8);

    const fn bit(u: KeyUsage) -> u8 {
        match u {
            KeyUsage::Sign => 1,
            KeyUsage::Decrypt => 2,
            KeyUsage::Encrypt => 4,
            KeyUsage::Wrap => 8,
        }
    }

    /// Whether `usage` is in the set.
    pub const fn contains(self, usage: KeyUsage) -> bool {
        self.0 & Self::bit(usage) != 0
    }

    /// Whether every usage of `other` is in the set.
    pub const fn contains_all(self, other: KeyUsages) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `usage`.
    pub fn insert(&mut self, usage: KeyUsage) {
        self.0 |= Self::bit(usage);
    }

    /// The usages in the set, in a stable order.
    pub fn iter(self) -> impl Iterator<Item = KeyUsage> {
        [
            KeyUsage::Sign,
            KeyUsage::Decrypt,
            KeyUsage::Encrypt,
            KeyUsage::Wrap,
        ]
        .into_iter()
        .filter(move |u| self.contains(*u))
    }
}

impl std::ops::BitOr for KeyUsages {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl From<KeyUsage> for KeyUsages {
    fn from(u: KeyUsage) -> Self {
        Self(Self::bit(u))
    }
}

impl FromIterator<KeyUsage> for KeyUsages {
    fn from_iter<I: IntoIterator<Item = KeyUsage>>(iter: I) -> Self {
        let mut set = Self::NONE;
        for u in iter {
            set.insert(u);
        }
        set
    }
}

impl fmt::Debug for KeyUsages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for KeyUsages {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for KeyUsages {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Vec::<KeyUsage>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for a in KeyAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<KeyAlgorithm>().unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
        }
        assert!("rsa-1024".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn scheme_names_round_trip() {
        for h in HashAlg::ALL {
            for s in [
                SignatureScheme::RsaPkcs1v15(h),
                SignatureScheme::RsaPss(h),
                SignatureScheme::Ecdsa(h),
            ] {
                assert_eq!(s.name().parse::<SignatureScheme>().unwrap(), s);
            }
        }
        assert!("dsa-sha1".parse::<SignatureScheme>().is_err());
    }

    #[test]
    fn schemes_fit_keys() {
        assert!(SignatureScheme::RsaPss(HashAlg::Sha256).fits(KeyAlgorithm::Rsa2048));
        assert!(!SignatureScheme::Ecdsa(HashAlg::Sha256).fits(KeyAlgorithm::Rsa2048));
        assert!(!SignatureScheme::Ed25519.fits(KeyAlgorithm::EcP256));
        for a in KeyAlgorithm::ALL {
            if let Some(s) = a.default_scheme() {
                assert!(s.fits(a));
            }
        }
    }

    #[test]
    fn usages_set_ops_and_serde() {
        let u = KeyUsages::SIGN | KeyUsages::WRAP;
        assert!(u.contains(KeyUsage::Wrap) && !u.contains(KeyUsage::Decrypt));
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, r#"["sign","wrap"]"#);
        assert_eq!(serde_json::from_str::<KeyUsages>(&json).unwrap(), u);
    }

    #[test]
    fn hash_lengths() {
        for h in HashAlg::ALL {
            assert_eq!(h.digest(b"x").len(), h.output_len());
        }
    }
}
