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
