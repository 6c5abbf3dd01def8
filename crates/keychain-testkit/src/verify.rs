//! The independent verifier: RustCrypto directly, not `keychain_core::verify`, so a bug shared by
//! core and a backend cannot hide itself.

use keychain_core::{HashAlg, KeyAlgorithm, SignatureScheme};
use sha2::Digest as _;
use signature::hazmat::PrehashVerifier as _;
use spki::DecodePublicKey as _;

/// `hash(message)` computed with sha2; `None` for a hash this testkit does not know.
pub(crate) fn digest(hash: HashAlg, message: &[u8]) -> Option<Vec<u8>> {
    match hash {
        HashAlg::Sha256 => Some(sha2::Sha256::digest(message).to_vec()),
        HashAlg::Sha384 => Some(sha2::Sha384::digest(message).to_vec()),
        HashAlg::Sha512 => Some(sha2::Sha512::digest(message).to_vec()),
        _ => None,
    }
}

/// A public key parsed by RustCrypto from its SubjectPublicKeyInfo DER.
#[derive(Debug, Clone)]
pub(crate) enum Verifier {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl Verifier {
    /// Whether the testkit can verify signatures of `algorithm` keys (not secp256k1).
    pub(crate) fn available(algorithm: KeyAlgorithm) -> bool {
        matches!(
            algorithm,
            KeyAlgorithm::EcP256
                | KeyAlgorithm::EcP384
                | KeyAlgorithm::EcP521
                | KeyAlgorithm::Ed25519
                | KeyAlgorithm::Rsa2048
                | KeyAlgorithm::Rsa3072
                | KeyAlgorithm::Rsa4096
        )
    }

    /// Parses `spki_der` as a key of `algorithm`. `Ok(None)` when no verifier is compiled in for
    /// it; `Err` when the DER is not a valid key of that algorithm.
    pub(crate) fn new(algorithm: KeyAlgorithm, spki_der: &[u8]) -> Result<Option<Self>, String> {
        let bad = |e: &dyn std::fmt::Display| format!("not a valid {algorithm} public key: {e}");
        let v = match algorithm {
            KeyAlgorithm::EcP256 => Self::P256(
                p256::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(|e| bad(&e))?,
            ),
            KeyAlgorithm::EcP384 => Self::P384(
                p384::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(|e| bad(&e))?,
            ),
            KeyAlgorithm::EcP521 => Self::P521(
                p521::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(|e| bad(&e))?,
            ),
            KeyAlgorithm::Ed25519 => Self::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(spki_der).map_err(|e| bad(&e))?,
            ),
            a if a.is_rsa() => {
                let key = rsa::RsaPublicKey::from_public_key_der(spki_der).map_err(|e| bad(&e))?;
                let bits = rsa::traits::PublicKeyParts::n(&key).bits();
                if bits != a.bits() {
                    return Err(format!("{a} key has a {bits}-bit modulus"));
                }
                Self::Rsa(key)
            }
            _ => return Ok(None),
        };
        Ok(Some(v))
    }

    /// Verifies `signature` over `message` with `scheme`; hash-based schemes hash `message` here.
    pub(crate) fn verify(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let hashed = match scheme.hash() {
            Some(h) => digest(h, message).ok_or_else(|| format!("no implementation of {h}"))?,
            None => Vec::new(),
        };
        let invalid = |e: signature::Error| format!("invalid signature ({e})");
        match (self, scheme) {
            (Self::P256(k), SignatureScheme::Ecdsa(_)) => {
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(invalid)?;
                k.verify_prehash(&hashed, &sig).map_err(invalid)
            }
            (Self::P384(k), SignatureScheme::Ecdsa(_)) => {
                let sig = p384::ecdsa::Signature::from_der(signature).map_err(invalid)?;
                k.verify_prehash(&hashed, &sig).map_err(invalid)
            }
            (Self::P521(k), SignatureScheme::Ecdsa(_)) => {
                let sig = p521::ecdsa::Signature::from_der(signature).map_err(invalid)?;
                k.verify_prehash(&hashed, &sig).map_err(invalid)
            }
            (Self::Ed25519(k), SignatureScheme::Ed25519) => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(invalid)?;
                k.verify_strict(message, &sig).map_err(invalid)
            }
            (Self::Rsa(k), SignatureScheme::RsaPkcs1v15(h)) => {
                let padding = match h {
                    HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                    other => return Err(format!("no implementation of {other}")),
                };
                k.verify(padding, &hashed, signature)
                    .map_err(|e| format!("invalid signature ({e})"))
            }
            (Self::Rsa(k), SignatureScheme::RsaPss(h)) => match h {
                HashAlg::Sha256 => k.verify(rsa::Pss::<sha2::Sha256>::new(), &hashed, signature),
                HashAlg::Sha384 => k.verify(rsa::Pss::<sha2::Sha384>::new(), &hashed, signature),
                HashAlg::Sha512 => k.verify(rsa::Pss::<sha2::Sha512>::new(), &hashed, signature),
                other => return Err(format!("no implementation of {other}")),
            }
            .map_err(|e| format!("invalid signature ({e})")),
            (_, scheme) => Err(format!("scheme {scheme} does not fit this key")),
        }
    }
}
