//! PKCS#8 documents: PBES2 encryption and decryption, algorithm detection, and the PKCS#8
//! envelope for AES keys. Shared by the backends that import or export keys as (encrypted)
//! PKCS#8 — the software backend's files, password-wrapped exports of HSM keys.

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Encode as _};
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyMaterial, Result, SecretBytes, identify_key_algorithm,
};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use spki::AlgorithmIdentifierRef;

use serde::{Deserialize, Serialize};

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
// AES-GCM key OIDs (NIST CSOR): symmetric keys are stored as a PrivateKeyInfo naming the
// cipher, so they get the same PBES2 protection as private keys.
const OID_AES128_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6");
const OID_AES192_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.26");
const OID_AES256_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");

fn aes_oid(algorithm: KeyAlgorithm) -> Option<ObjectIdentifier> {
    match algorithm {
        KeyAlgorithm::Aes128Gcm => Some(OID_AES128_GCM),
        KeyAlgorithm::Aes192Gcm => Some(OID_AES192_GCM),
        KeyAlgorithm::Aes256Gcm => Some(OID_AES256_GCM),
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

/// The PKCS#8 DER that holds an AES key.
pub fn symmetric_to_pkcs8(algorithm: KeyAlgorithm, key: &[u8]) -> Result<SecretBytes> {
    let oid = aes_oid(algorithm)
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
    if let Some(a) = [
        KeyAlgorithm::Aes128Gcm,
        KeyAlgorithm::Aes192Gcm,
        KeyAlgorithm::Aes256Gcm,
    ]
    .into_iter()
    .find(|a| aes_oid(*a) == Some(oid))
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
    Ok(encrypt_document(der, password, kdf)?.as_bytes().to_vec())
}

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
    let doc = info.decrypt(password).map_err(|_| {
        Error::new(
            ErrorKind::Unauthenticated,
            "wrong password (the key file does not decrypt)",
        )
    })?;
    Ok(SecretBytes::from_slice(doc.as_bytes()))
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
