//! PKCS#8 documents: PBES2 encryption and decryption, algorithm detection, and the PKCS#8
//! envelope for symmetric keys. Shared by the backends that import or export keys as (encrypted)
//! PKCS#8 — the software backend's files, password-wrapped exports of HSM keys.

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Encode as _};
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyMaterial, Result, SecretBytes, WrapFormat, WrappedKey,
    identify_key_algorithm,
};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use spki::AlgorithmIdentifierRef;

use serde::{Deserialize, Serialize};

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
// Symmetric keys are stored as a PrivateKeyInfo naming the cipher, so they get the same PBES2
// protection as private keys: the AES-GCM OIDs of NIST's CSOR, and RFC 8103's
// id-alg-AEADChaCha20Poly1305.
const OID_AES128_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6");
const OID_AES192_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.26");
const OID_AES256_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");
const OID_CHACHA20_POLY1305: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.18");

fn symmetric_oid(algorithm: KeyAlgorithm) -> Option<ObjectIdentifier> {
    match algorithm {
        KeyAlgorithm::Aes128Gcm => Some(OID_AES128_GCM),
        KeyAlgorithm::Aes192Gcm => Some(OID_AES192_GCM),
        KeyAlgorithm::Aes256Gcm => Some(OID_AES256_GCM),
        KeyAlgorithm::ChaCha20Poly1305 => Some(OID_CHACHA20_POLY1305),
        _ => None,
    }
}

/// The password-based key derivation used for PBES2 (PKCS#5 v2.1), AES-256-CBC encryption.
///
/// Both are read by OpenSSL (`openssl pkey -in FILE -passin pass:...`). Files written with
/// one KDF remain readable after the configuration changes to another: each file carries its
/// own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Kdf {
    /// PBKDF2-HMAC-SHA256.
    Pbkdf2 {
        /// Iteration count. The default, 600 000, is OWASP's 2023 figure for PBKDF2-SHA256.
        iterations: u32,
    },
    /// scrypt.
    #[serde(rename_all = "kebab-case")]
    Scrypt {
        /// log2 of the CPU/memory cost N. Keep ≤ 14 with r = 8 for OpenSSL's default memory limit.
        log_n: u8,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
}

impl Default for Kdf {
    fn default() -> Self {
        Self::Pbkdf2 {
            iterations: 600_000,
        }
    }
}

/// The fewest PBKDF2 iterations accepted for new files: NIST SP 800-132's minimum. OWASP's
/// figure for PBKDF2-HMAC-SHA256, 600 000, is the default; fewer (for tests) log a warning.
pub const MIN_PBKDF2_ITERATIONS: u32 = 1_000;
/// The smallest scrypt `log_n` accepted for new files (N = 1024).
pub const MIN_SCRYPT_LOG_N: u8 = 10;
/// OWASP's PBKDF2-HMAC-SHA256 iteration count (2023): below it, writing logs a warning.
const OWASP_PBKDF2_ITERATIONS: u32 = 600_000;

impl Kdf {
    /// Checks the parameters before anything is written with them: not below the floors
    /// ([`MIN_PBKDF2_ITERATIONS`], [`MIN_SCRYPT_LOG_N`], `r` and `p` at least 1) and not above
    /// `limits`, so that a file written now can be read back under the same limits (and by
    /// OpenSSL, which refuses a zero iteration count).
    ///
    /// # Errors
    /// `InvalidInput` naming the parameter and the bound it breaks.
    pub fn check(&self, limits: &KdfLimits) -> Result<()> {
        match *self {
            Self::Pbkdf2 { iterations } => {
                if iterations < MIN_PBKDF2_ITERATIONS {
                    return Err(Error::invalid_input(format!(
                        "PBKDF2 with {iterations} iterations is too weak; use at least \
                         {MIN_PBKDF2_ITERATIONS} (the default is {OWASP_PBKDF2_ITERATIONS})"
                    )));
                }
                limits.check_pbkdf2(u64::from(iterations))
            }
            Self::Scrypt { log_n, r, p } => {
                if log_n < MIN_SCRYPT_LOG_N || r == 0 || p == 0 {
                    return Err(Error::invalid_input(format!(
                        "scrypt with log-n = {log_n}, r = {r}, p = {p} is too weak; use log-n \
                         of at least {MIN_SCRYPT_LOG_N}, and r and p of at least 1"
                    )));
                }
                if log_n >= 64 {
                    return Err(Error::invalid_input(format!(
                        "scrypt log-n = {log_n} is out of range (N = 2^log-n must fit 64 bits)"
                    )));
                }
                limits.check_scrypt(1u64 << log_n, u64::from(r), u64::from(p))?;
                // The scrypt crate's own rules (N below 2^(16·r), p·r bounded); no allocation.
                scrypt::Params::new(log_n, r, p)
                    .map(drop)
                    .map_err(|e| Error::invalid_input(format!("invalid scrypt parameters: {e}")))
            }
        }
    }

    /// Whether the parameters are below what OWASP recommends for new password hashes; the
    /// software backend logs a warning when it writes with such parameters.
    pub fn below_recommendation(&self) -> bool {
        match *self {
            Self::Pbkdf2 { iterations } => iterations < OWASP_PBKDF2_ITERATIONS,
            // OWASP: N = 2^17, r = 8, p = 1, or the same work spread as N = 2^14, r = 8, p = 5.
            Self::Scrypt { log_n, r, p } => {
                let n = 1u128.checked_shl(u32::from(log_n)).unwrap_or(u128::MAX);
                n.saturating_mul(u128::from(r))
                    .saturating_mul(u128::from(p))
                    < (1 << 19)
            }
        }
    }
}

/// Upper bounds on the work a password-based key derivation may demand, checked before any
/// derivation runs — on the parameters of a file being read or imported as well as on the
/// configuration — so that no key file, however hostile, can make keychain allocate unbounded
/// memory or spin for hours. Exceeding one is `InvalidInput`.
///
/// The defaults admit every setting OWASP or OpenSSL recommend with a wide margin (about 16×
/// OWASP's work factors) and refuse what is beyond reason:
///
/// ```toml
/// max-pbkdf2-iterations = 10000000   # OWASP: 600 000; about 3 s at 10 M
/// max-scrypt-memory = 268435456      # bytes (256 MiB); 128·r·N, OWASP's N = 2^17, r = 8 is 128 MiB
/// max-scrypt-work = 16777216         # N·r·p; OWASP's is 2^20
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct KdfLimits {
    /// The most PBKDF2 iterations a file may ask for.
    pub max_pbkdf2_iterations: u32,
    /// The most memory scrypt may use, in bytes (`128 · r · N`, plus `128 · r · p`).
    pub max_scrypt_memory: u64,
    /// The most scrypt work, `N · r · p`: its running time grows with this product.
    pub max_scrypt_work: u64,
}

impl Default for KdfLimits {
    fn default() -> Self {
        Self {
            max_pbkdf2_iterations: 10_000_000,
            max_scrypt_memory: 256 << 20,
            max_scrypt_work: 1 << 24,
        }
    }
}

impl KdfLimits {
    fn check_pbkdf2(&self, iterations: u64) -> Result<()> {
        if iterations == 0 {
            return Err(Error::invalid_input("PBKDF2 iteration count is zero"));
        }
        if iterations > u64::from(self.max_pbkdf2_iterations) {
            return Err(Error::invalid_input(format!(
                "PBKDF2 with {iterations} iterations exceeds the limit of {} \
                 (kdf-limits.max-pbkdf2-iterations)",
                self.max_pbkdf2_iterations
            )));
        }
        Ok(())
    }

    fn check_scrypt(&self, n: u64, r: u64, p: u64) -> Result<()> {
        if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
            return Err(Error::invalid_input(format!(
                "invalid scrypt parameters N = {n}, r = {r}, p = {p}"
            )));
        }
        // u128 holds every product of these u64s but the last: saturating is exact here.
        let block = u128::from(r).saturating_mul(128);
        let memory = block
            .saturating_mul(u128::from(n))
            .saturating_add(block.saturating_mul(u128::from(p)));
        if memory > u128::from(self.max_scrypt_memory) {
            return Err(Error::invalid_input(format!(
                "scrypt with N = {n}, r = {r}, p = {p} needs {} MiB, over the limit of {} MiB \
                 (kdf-limits.max-scrypt-memory)",
                memory >> 20,
                self.max_scrypt_memory >> 20
            )));
        }
        let work = u128::from(n)
            .saturating_mul(u128::from(r))
            .saturating_mul(u128::from(p));
        if work > u128::from(self.max_scrypt_work) {
            return Err(Error::invalid_input(format!(
                "scrypt with N = {n}, r = {r}, p = {p} is N·r·p = {work}, over the limit of {} \
                 (kdf-limits.max-scrypt-work)",
                self.max_scrypt_work
            )));
        }
        Ok(())
    }

    /// Checks the key derivation an encrypted PKCS#8 document names against these limits.
    fn check_scheme(&self, scheme: &pkcs5::EncryptionScheme) -> Result<()> {
        match scheme {
            pkcs5::EncryptionScheme::Pbes2(params) => match &params.kdf {
                pkcs5::pbes2::Kdf::Pbkdf2(k) => self.check_pbkdf2(u64::from(k.iteration_count)),
                pkcs5::pbes2::Kdf::Scrypt(k) => self.check_scrypt(
                    k.cost_parameter,
                    u64::from(k.block_size),
                    u64::from(k.parallelization),
                ),
                _ => Err(Error::unsupported("password-based key derivation function")),
            },
            pkcs5::EncryptionScheme::Pbes1(params) => {
                self.check_pbkdf2(u64::from(params.parameters.iteration_count))
            }
            // A scheme this version of pkcs5 does not know cannot be decrypted either.
            #[allow(unreachable_patterns, reason = "the enum is non-exhaustive")]
            _ => Err(Error::unsupported("password-based encryption scheme")),
        }
    }
}

/// A check value that tells whether a password is the one a store was created with, without
/// holding the password or a fast hash of it: the salted output of the same slow KDF that
/// protects the key files (like a SmartCard-HSM's key check value, but for a password).
/// Guessing a password against it costs as much as against a key file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PasswordVerifier {
    kdf: Kdf,
    /// 16 random bytes, hex.
    salt: String,
    /// 32 bytes of KDF output, hex.
    check: String,
}

impl std::fmt::Debug for PasswordVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordVerifier")
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

impl PasswordVerifier {
    /// A verifier for `password`, derived with `kdf` (checked against `limits` first). Runs the
    /// KDF: call it off the async executor.
    ///
    /// # Errors
    /// `InvalidInput` for KDF parameters [`Kdf::check`] refuses.
    pub fn new(password: &[u8], kdf: Kdf, limits: &KdfLimits) -> Result<Self> {
        kdf.check(limits)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("random generator: {e}")))?;
        let check = derive_check(password, &salt, kdf)?;
        Ok(Self {
            kdf,
            salt: hex::encode(salt),
            check: hex::encode(check.expose()),
        })
    }

    /// Whether `password` is the verifier's password. Runs the KDF: call it off the async
    /// executor.
    ///
    /// # Errors
    /// `Integrity` for a verifier that does not parse (a damaged store file); `InvalidInput` for
    /// KDF parameters over `limits` (a hostile one).
    pub fn verify(&self, password: &[u8], limits: &KdfLimits) -> Result<bool> {
        let damaged = || Error::new(ErrorKind::Integrity, "the password verifier is damaged");
        let salt = hex::decode(&self.salt).map_err(|_| damaged())?;
        let expected = hex::decode(&self.check).map_err(|_| damaged())?;
        if salt.len() != 16 || expected.len() != 32 {
            return Err(damaged());
        }
        match self.kdf {
            Kdf::Pbkdf2 { iterations } => limits.check_pbkdf2(u64::from(iterations))?,
            Kdf::Scrypt { log_n, r, p } => limits.check_scrypt(
                1u64.checked_shl(u32::from(log_n))
                    .filter(|_| log_n < 64)
                    .ok_or_else(damaged)?,
                u64::from(r),
                u64::from(p),
            )?,
        }
        let actual = derive_check(password, &salt, self.kdf)?;
        Ok(subtle::ConstantTimeEq::ct_eq(actual.expose(), expected.as_slice()).into())
    }
}

fn derive_check(password: &[u8], salt: &[u8], kdf: Kdf) -> Result<SecretBytes> {
    let mut out = vec![0u8; 32];
    match kdf {
        Kdf::Pbkdf2 { iterations } => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
        }
        Kdf::Scrypt { log_n, r, p } => {
            let params = scrypt::Params::new(log_n, r, p)
                .map_err(|e| Error::invalid_input(format!("invalid scrypt parameters: {e}")))?;
            scrypt::scrypt(password, salt, &params, &mut out).map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("scrypt derivation: {e}"))
            })?;
        }
    }
    Ok(SecretBytes::new(out))
}

/// The PKCS#8 DER that holds a symmetric key (AES-GCM or ChaCha20-Poly1305).
pub fn symmetric_to_pkcs8(algorithm: KeyAlgorithm, key: &[u8]) -> Result<SecretBytes> {
    let oid = symmetric_oid(algorithm)
        .ok_or_else(|| Error::invalid_input(format!("{algorithm} is not a symmetric algorithm")))?;
    let octets = OctetStringRef::new(key).map_err(encoding)?;
    let info = PrivateKeyInfoRef::new(
        AlgorithmIdentifierRef {
            oid,
            parameters: None,
        },
        octets,
    );
    Ok(SecretBytes::new(info.to_der().map_err(encoding)?))
}

/// The PKCS#8 DER of a SEC1 `EC PRIVATE KEY` (RFC 5915) on P-256, P-384 or P-521: the form
/// OpenSSL's `ec` and several KMS exports use.
///
/// # Errors
/// `InvalidInput` when `der` is not a SEC1 key on one of those curves.
pub fn sec1_to_pkcs8(der: &[u8]) -> Result<SecretBytes> {
    use pkcs8::EncodePrivateKey as _;
    let doc = if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der()
    } else if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der()
    } else if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der()
    } else {
        return Err(Error::invalid_input(
            "not a SEC1 EC private key on P-256, P-384 or P-521",
        ));
    };
    let doc =
        doc.map_err(|e| Error::new(ErrorKind::Unexpected, format!("PKCS#8 encoding: {e}")))?;
    Ok(SecretBytes::from_slice(doc.as_bytes()))
}

/// The PKCS#8 DER of a PKCS#1 `RSA PRIVATE KEY` (RFC 8017 `RSAPrivateKey`).
///
/// # Errors
/// `InvalidInput` when `der` is not a PKCS#1 RSA private key.
pub fn pkcs1_to_pkcs8(der: &[u8]) -> Result<SecretBytes> {
    pkcs1::RsaPrivateKey::<der::asn1::UintRef<'_>>::from_der(der)
        .map_err(|e| Error::invalid_input(format!("not a PKCS#1 RSA private key: {e}")))?;
    let octets = OctetStringRef::new(der).map_err(encoding)?;
    let info = PrivateKeyInfoRef::new(
        AlgorithmIdentifierRef {
            oid: OID_RSA,
            parameters: Some(der::AnyRef::NULL),
        },
        octets,
    );
    Ok(SecretBytes::new(info.to_der().map_err(encoding)?))
}

/// The PKCS#8 DER (RFC 8410) of an Ed25519 key given as its 32-byte seed, or as the 64 bytes
/// seed ‖ public key that Go's `ed25519.PrivateKey` (and so Vault/OpenBao Transit) exports, in
/// which case the public half must match the seed.
///
/// # Errors
/// `InvalidInput` for another length or a public half that does not belong to the seed.
pub fn ed25519_to_pkcs8(key: &[u8]) -> Result<SecretBytes> {
    let seed: [u8; 32] = key
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .filter(|_| key.len() == 32 || key.len() == 64)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "an Ed25519 private key has 32 or 64 bytes, not {}",
                key.len()
            ))
        })?;
    let seed = zeroize::Zeroizing::new(seed);
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    if key.len() == 64 && signing.verifying_key().as_bytes() != &key[32..] {
        return Err(Error::invalid_input(
            "the Ed25519 key's public half does not belong to its seed",
        ));
    }
    drop(signing);
    // Version 1 (the seed only): OpenSSL 3.0 does not read the version 2 form with the public
    // key attached.
    let curve_private_key = zeroize::Zeroizing::new(
        OctetStringRef::new(seed.as_slice())
            .map_err(encoding)?
            .to_der()
            .map_err(encoding)?,
    );
    let info = PrivateKeyInfoRef::new(
        AlgorithmIdentifierRef {
            oid: OID_ED25519,
            parameters: None,
        },
        OctetStringRef::new(&curve_private_key).map_err(encoding)?,
    );
    Ok(SecretBytes::new(info.to_der().map_err(encoding)?))
}

/// The PKCS#8 DER of an unencrypted PEM private key in any of its three common forms:
/// `PRIVATE KEY` (PKCS#8, checked and returned as is), `EC PRIVATE KEY` (SEC1) or
/// `RSA PRIVATE KEY` (PKCS#1).
///
/// # Errors
/// `InvalidInput` for text that is not PEM, another label, or a body that does not parse.
pub fn private_key_pem_to_pkcs8(pem: &[u8]) -> Result<SecretBytes> {
    let (label, der) = der::pem::decode_vec(pem.trim_ascii())
        .map_err(|e| Error::invalid_input(format!("not a PEM private key: {e}")))?;
    let der = zeroize::Zeroizing::new(der);
    match label {
        "PRIVATE KEY" => {
            inspect(&der)?;
            Ok(SecretBytes::from_slice(&der))
        }
        "EC PRIVATE KEY" => sec1_to_pkcs8(&der),
        "RSA PRIVATE KEY" => pkcs1_to_pkcs8(&der),
        other => Err(Error::invalid_input(format!(
            "PEM label {other:?}; expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY"
        ))),
    }
}

fn encoding(e: der::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("DER encoding failed: {e}"))
}

/// What a decrypted PKCS#8 document holds.
pub struct Plain {
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// PKCS#8 DER for asymmetric keys; the raw key for AES.
    pub material: SecretBytes,
}

/// Detects the algorithm of a PKCS#8 DER `PrivateKeyInfo` and extracts what the provider needs.
pub fn inspect(der: &[u8]) -> Result<Plain> {
    let info = PrivateKeyInfoRef::from_der(der)
        .map_err(|e| Error::invalid_input(format!("not a PKCS#8 private key: {e}")))?;
    let oid = info.algorithm.oid;
    if let Some(a) = KeyAlgorithm::ALL
        .into_iter()
        .find(|a| symmetric_oid(*a) == Some(oid))
    {
        let key = info.private_key.as_bytes();
        if Some(key.len()) != a.symmetric_key_len() {
            return Err(Error::invalid_input(format!(
                "{a} key has {} bytes",
                key.len()
            )));
        }
        return Ok(Plain {
            algorithm: a,
            material: SecretBytes::from_slice(key),
        });
    }
    let modulus = if oid == OID_RSA {
        let key =
            pkcs1::RsaPrivateKey::<der::asn1::UintRef<'_>>::from_der(info.private_key.as_bytes())
                .map_err(|e| Error::invalid_input(format!("malformed RSA key: {e}")))?;
        Some(key.modulus.as_bytes())
    } else {
        None
    };
    let algorithm = identify_key_algorithm(oid, info.algorithm.parameters, modulus)?;
    Ok(Plain {
        algorithm,
        material: SecretBytes::from_slice(der),
    })
}

/// Encrypts a PKCS#8 DER document with PBES2 under `password`; returns PEM
/// (`ENCRYPTED PRIVATE KEY`).
///
/// # Errors
/// `InvalidInput` for a document that is not PKCS#8 or invalid KDF parameters.
pub fn encrypt(der: &[u8], password: &[u8], kdf: Kdf) -> Result<String> {
    encrypt_with_limits(der, password, kdf, &KdfLimits::default())
}

/// As [`encrypt`], with `kdf` checked against `limits` rather than the default limits.
///
/// # Errors
/// As [`encrypt`]; `InvalidInput` for KDF parameters [`Kdf::check`] refuses.
pub fn encrypt_with_limits(
    der: &[u8],
    password: &[u8],
    kdf: Kdf,
    limits: &KdfLimits,
) -> Result<String> {
    kdf.check(limits)?;
    let doc = encrypt_document(der, password, kdf)?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", der::pem::LineEnding::LF)
        .map_err(encoding)?;
    Ok(pem.to_string())
}

/// As [`encrypt`], returning the DER `EncryptedPrivateKeyInfo`.
///
/// # Errors
/// As [`encrypt`].
pub fn encrypt_der(der: &[u8], password: &[u8], kdf: Kdf) -> Result<Vec<u8>> {
    kdf.check(&KdfLimits::default())?;
    Ok(encrypt_document(der, password, kdf)?.as_bytes().to_vec())
}

/// Callers have checked `kdf` ([`Kdf::check`]).
fn encrypt_document(der: &[u8], password: &[u8], kdf: Kdf) -> Result<pkcs8::SecretDocument> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    getrandom::fill(&mut salt)
        .and_then(|()| getrandom::fill(&mut iv))
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("random generator: {e}")))?;
    let bad_kdf = |e: pkcs5::Error| Error::invalid_input(format!("invalid KDF parameters: {e}"));
    let params = match kdf {
        Kdf::Pbkdf2 { iterations } => {
            pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(iterations, &salt, iv)
                .map_err(bad_kdf)?
        }
        Kdf::Scrypt { log_n, r, p } => {
            let sp = pkcs5::scrypt::Params::new(log_n, r, p)
                .map_err(|e| Error::invalid_input(format!("invalid scrypt parameters: {e}")))?;
            pkcs5::pbes2::Parameters::generate_scrypt_aes256cbc(sp, &salt, iv).map_err(bad_kdf)?
        }
    };
    let info = PrivateKeyInfoRef::from_der(der)
        .map_err(|e| Error::invalid_input(format!("not a PKCS#8 private key: {e}")))?;
    info.encrypt_with_params(params, password).map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            format!("PKCS#8 encryption failed: {e}"),
        )
    })
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` (PEM or DER) with `password`; returns the PKCS#8 DER.
///
/// A document that does not parse is `Integrity` (a torn or corrupted file); one that parses
/// but does not decrypt is `Unauthenticated`: PBES2 with CBC cannot tell a wrong password from
/// a tampered ciphertext body, and the wrong password is by far the common case.
pub fn decrypt(data: &[u8], password: &[u8]) -> Result<SecretBytes> {
    decrypt_with_limits(data, password, &KdfLimits::default())
}

/// As [`decrypt`], refusing (`InvalidInput`, before any derivation runs) a document whose key
/// derivation exceeds `limits`.
///
/// # Errors
/// As [`decrypt`], plus `InvalidInput` for KDF parameters over `limits`.
pub fn decrypt_with_limits(
    data: &[u8],
    password: &[u8],
    limits: &KdfLimits,
) -> Result<SecretBytes> {
    let corrupt = |what: String| Error::new(ErrorKind::Integrity, what);
    let der_owned;
    let der: &[u8] = if data.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(data)
            .map_err(|e| corrupt(format!("key file is not valid PEM: {e}")))?;
        if label != "ENCRYPTED PRIVATE KEY" {
            return Err(corrupt(format!(
                "key file holds {label:?}, not an encrypted key"
            )));
        }
        der_owned = der;
        &der_owned
    } else {
        data
    };
    let info = EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| corrupt(format!("key file is not an encrypted PKCS#8 document: {e}")))?;
    limits.check_scheme(&info.encryption_algorithm)?;
    let doc = info.decrypt(password).map_err(|_| {
        Error::new(
            ErrorKind::Unauthenticated,
            "wrong password (the key file does not decrypt)",
        )
    })?;
    Ok(SecretBytes::from_slice(doc.as_bytes()))
}

/// The key in a password export (`WrapFormat::EncryptedPkcs8`, what every backend's
/// `export_wrapped` with `WrappingSpec::Password` makes), checked to be `want` — the importer's
/// `ImportSpec::algorithm` — or else the algorithm the `WrappedKey` names. Runs the PBES2 KDF:
/// call it off the async executor.
///
/// # Errors
/// `Unsupported` for another format; `Unauthenticated` for a wrong password; `Integrity` for a
/// document that does not parse; `InvalidInput` for a key of another algorithm.
pub fn open_password_export(
    wrapped: &WrappedKey,
    password: &[u8],
    want: Option<KeyAlgorithm>,
) -> Result<Plain> {
    if wrapped.format != WrapFormat::EncryptedPkcs8 {
        return Err(Error::unsupported(format!(
            "wrapped key format {:?} with a password",
            wrapped.format
        )));
    }
    let der = decrypt(&wrapped.bytes, password)?;
    let plain = inspect(der.expose())?;
    let want = want.unwrap_or(wrapped.algorithm);
    if plain.algorithm != want {
        return Err(Error::invalid_input(format!(
            "the wrapped key is a {} key, expected {want}",
            plain.algorithm
        )));
    }
    Ok(plain)
}

/// Reads PKCS#8 given for import: PEM or DER, encrypted or not.
pub fn import(data: &[u8], password: Option<&[u8]>) -> Result<SecretBytes> {
    let trimmed = data.trim_ascii_start();
    let (label, der) = if trimmed.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(trimmed)
            .map_err(|e| Error::invalid_input(format!("not valid PEM: {e}")))?;
        (Some(label.to_owned()), SecretBytes::new(der))
    } else {
        (None, SecretBytes::from_slice(data))
    };
    let encrypted = match label.as_deref() {
        Some("ENCRYPTED PRIVATE KEY") => true,
        Some("PRIVATE KEY") => false,
        Some(other) => {
            return Err(Error::invalid_input(format!(
                "PEM label {other:?}; expected PRIVATE KEY or ENCRYPTED PRIVATE KEY"
            )));
        }
        None => EncryptedPrivateKeyInfoRef::from_der(der.expose()).is_ok(),
    };
    if encrypted {
        let password = password.ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthenticated,
                "the key is encrypted and no password was given",
            )
        })?;
        decrypt(der.expose(), password).map_err(|e| {
            if e.kind() == ErrorKind::Integrity {
                Error::invalid_input(e.message().to_owned())
            } else {
                e
            }
        })
    } else {
        Ok(der)
    }
}

/// The key an import hands over, as [`Plain`]: PKCS#8 (PEM or DER, encrypted with its own
/// password or not) or raw AES bytes, checked against `want` (the algorithm the caller asked
/// for, if any). A raw key without `want` is AES-128/192/256-GCM by its length.
///
/// # Errors
/// `InvalidInput` for material that does not parse, is no AES key, or is not `want`;
/// `Unauthenticated` for a wrong or missing password; `Unsupported` for other material.
pub fn from_material(material: &KeyMaterial, want: Option<KeyAlgorithm>) -> Result<Plain> {
    let plain = match material {
        KeyMaterial::Pkcs8 { data, password } => {
            let pw = password.as_ref().map(|p| p.expose().as_bytes());
            let der = import(data.expose(), pw)?;
            inspect(der.expose())?
        }
        KeyMaterial::Symmetric(key) => {
            let algorithm = match (want, key.len()) {
                (Some(a), _) => a,
                (None, 16) => KeyAlgorithm::Aes128Gcm,
                (None, 24) => KeyAlgorithm::Aes192Gcm,
                (None, 32) => KeyAlgorithm::Aes256Gcm,
                (None, n) => {
                    return Err(Error::invalid_input(format!(
                        "a {n}-byte symmetric key is not an AES key"
                    )));
                }
            };
            if algorithm.symmetric_key_len() != Some(key.len()) {
                return Err(Error::invalid_input(format!(
                    "{algorithm} needs a {}-byte key, got {}",
                    algorithm.symmetric_key_len().unwrap_or_default(),
                    key.len()
                )));
            }
            Plain {
                algorithm,
                material: key.duplicate(),
            }
        }
        _ => return Err(Error::unsupported("this kind of key material")),
    };
    if let Some(want) = want
        && want != plain.algorithm
    {
        return Err(Error::invalid_input(format!(
            "the material is a {} key, the spec asks for {want}",
            plain.algorithm
        )));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn legacy_private_keys_become_pkcs8() {
        use pkcs8::EncodePrivateKey as _;
        // SEC1 on each curve: the PKCS#8 document names the curve and keeps the scalar.
        let p256 = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        let sec1 = p256.to_sec1_der().unwrap();
        let der = sec1_to_pkcs8(&sec1).unwrap();
        assert_eq!(
            inspect(der.expose()).unwrap().algorithm,
            KeyAlgorithm::EcP256
        );
        assert_eq!(der.expose(), p256.to_pkcs8_der().unwrap().as_bytes());
        let p384 = p384::SecretKey::from_slice(&[0x22; 48]).unwrap();
        let der = sec1_to_pkcs8(&p384.to_sec1_der().unwrap()).unwrap();
        assert_eq!(
            inspect(der.expose()).unwrap().algorithm,
            KeyAlgorithm::EcP384
        );
        assert_eq!(
            sec1_to_pkcs8(b"not der").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // PKCS#1: the PKCS#8 wrapper around the same RSAPrivateKey.
        let openssl = |args: &[&str], input: &[u8]| {
            use std::io::Write as _;
            let mut child = std::process::Command::new("openssl")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("openssl (the unit cell installs it)");
            child.stdin.take().unwrap().write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "openssl {args:?}");
            out.stdout
        };
        let pem = openssl(&["genrsa", "-traditional", "2048"], b"");
        let pkcs1 = openssl(&["rsa", "-traditional", "-outform", "DER"], &pem);
        let expected = openssl(&["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"], &pem);
        let der = pkcs1_to_pkcs8(&pkcs1).unwrap();
        assert_eq!(
            inspect(der.expose()).unwrap().algorithm,
            KeyAlgorithm::Rsa2048
        );
        assert_eq!(der.expose(), expected.as_slice());
        assert_eq!(
            private_key_pem_to_pkcs8(&pem).unwrap().expose(),
            expected.as_slice()
        );
        let sec1_pem = p256.to_sec1_pem(Default::default()).unwrap();
        assert_eq!(
            private_key_pem_to_pkcs8(sec1_pem.as_bytes())
                .unwrap()
                .expose(),
            p256.to_pkcs8_der().unwrap().as_bytes()
        );
        assert_eq!(
            private_key_pem_to_pkcs8(
                b"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"
            )
            .unwrap_err()
            .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            pkcs1_to_pkcs8(&sec1).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // Ed25519: the seed alone, or seed ‖ public as Go exports it.
        use pkcs8::DecodePrivateKey as _;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
        let mut go = [0x33u8; 64];
        go[32..].copy_from_slice(signing.verifying_key().as_bytes());
        let der = ed25519_to_pkcs8(&go).unwrap();
        assert_eq!(
            ed25519_to_pkcs8(&[0x33; 32]).unwrap().expose(),
            der.expose()
        );
        // Version 1, as OpenSSL writes it: 30 2e 02 01 00 30 05 06 03 2b 65 70 04 22 04 20 ‖ seed.
        assert_eq!(
            &der.expose()[..16],
            &hex::decode("302e020100300506032b657004220420").unwrap()[..]
        );
        assert_eq!(&der.expose()[16..], &[0x33; 32]);
        let back = ed25519_dalek::SigningKey::from_pkcs8_der(der.expose()).unwrap();
        assert_eq!(back.verifying_key(), signing.verifying_key());
        assert_eq!(
            inspect(der.expose()).unwrap().algorithm,
            KeyAlgorithm::Ed25519
        );
        go[40] ^= 1;
        assert_eq!(
            ed25519_to_pkcs8(&go).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            ed25519_to_pkcs8(&[1; 31]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn aes_envelope_encrypts_and_decrypts() {
        let der = symmetric_to_pkcs8(KeyAlgorithm::Aes256Gcm, &[7; 32]).unwrap();
        let kdf = Kdf::Pbkdf2 { iterations: 1000 };
        let pem = encrypt(der.expose(), b"pw", kdf).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = decrypt(pem.as_bytes(), b"pw").unwrap();
        let plain = inspect(back.expose()).unwrap();
        assert_eq!(plain.algorithm, KeyAlgorithm::Aes256Gcm);
        assert_eq!(plain.material.expose(), &[7; 32]);
        assert_eq!(
            decrypt(pem.as_bytes(), b"wrong").unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            decrypt(b"-----BEGIN NOTHING-----", b"pw")
                .unwrap_err()
                .kind(),
            ErrorKind::Integrity
        );
        // import: the encrypted PEM with and without a password.
        assert_eq!(
            import(pem.as_bytes(), None).unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            import(pem.as_bytes(), Some(b"pw")).unwrap().expose(),
            der.expose()
        );
        assert!(symmetric_to_pkcs8(KeyAlgorithm::EcP256, &[1; 32]).is_err());
    }
}
