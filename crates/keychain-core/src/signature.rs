//! Signing input, signatures, encoding converters and an independent verifier.

use signature::hazmat::PrehashVerifier as _;

use crate::algorithm::{HashAlg, KeyAlgorithm, SignatureScheme};
use crate::error::{Error, ErrorKind, Result};
use crate::name::KeyVersion;
use crate::public_key::PublicKey;

/// What to sign: a digest already computed (with the hash that made it), or a whole message.
///
/// HSMs and KMSes sign digests; Ed25519 signs messages only. [`SignInput::message`] works for
/// every scheme: backends that need a digest hash it with the scheme's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInput<'a> {
    /// A digest made with `hash`; its length must be `hash.output_len()`.
    Digest {
        /// The hash that produced `digest`.
        hash: HashAlg,
        /// The digest bytes.
        digest: &'a [u8],
    },
    /// The message itself.
    Message(&'a [u8]),
}

impl<'a> SignInput<'a> {
    /// A digest made with `hash`.
    pub fn digest(hash: HashAlg, digest: &'a [u8]) -> Self {
        Self::Digest { hash, digest }
    }

    /// A whole message.
    pub fn message(message: &'a [u8]) -> Self {
        Self::Message(message)
    }

    /// Checks this input against `scheme` and returns the digest to sign for hash-based schemes
    /// (hashing a message when needed). Ed25519 returns the message unchanged.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when a digest has the wrong length or was made with another
    /// hash than the scheme's, or when a digest is given for Ed25519.
    pub fn prepare(&self, scheme: SignatureScheme) -> Result<std::borrow::Cow<'a, [u8]>> {
        match (scheme.hash(), *self) {
            (None, SignInput::Message(m)) => Ok(m.into()),
            (None, SignInput::Digest { .. }) => Err(Error::invalid_input(
                "Ed25519 signs whole messages; pass SignInput::Message",
            )),
            (Some(h), SignInput::Message(m)) => Ok(h.digest(m).into()),
            (Some(h), SignInput::Digest { hash, digest }) => {
                if hash != h {
                    return Err(Error::invalid_input(format!(
                        "digest was made with {hash} but scheme {scheme} uses {h}"
                    )));
                }
                if digest.len() != h.output_len() {
                    return Err(Error::invalid_input(format!(
                        "{h} digest must be {} bytes, got {}",
                        h.output_len(),
                        digest.len()
                    )));
                }
                Ok(digest.into())
            }
        }
    }
}

/// A signature with the scheme and key version that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    bytes: Vec<u8>,
    scheme: SignatureScheme,
    key_version: KeyVersion,
}

impl Signature {
    /// Wraps signature bytes in their standard encoding (DER for ECDSA, raw for RSA/Ed25519).
    pub fn new(bytes: Vec<u8>, scheme: SignatureScheme, key_version: KeyVersion) -> Self {
        Self {
            bytes,
            scheme,
            key_version,
        }
    }

    /// The signature bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The scheme.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// The key version that made it.
    pub fn key_version(&self) -> KeyVersion {
        self.key_version
    }
}

/// Size in bytes of one ECDSA scalar (r or s) for `algorithm`.
///
/// # Errors
/// `InvalidInput` for a non-ECDSA algorithm.
pub fn ecdsa_scalar_len(algorithm: KeyAlgorithm) -> Result<usize> {
    match algorithm {
        KeyAlgorithm::EcP256 | KeyAlgorithm::EcSecp256k1 => Ok(32),
        KeyAlgorithm::EcP384 => Ok(48),
        KeyAlgorithm::EcP521 => Ok(66),
        other => Err(Error::invalid_input(format!("{other} is not an ECDSA key"))),
    }
}

/// Converts an ECDSA signature from DER (`Ecdsa-Sig-Value`) to fixed-size `r || s`
/// (the PKCS#11, JWS and WebCrypto form).
///
/// # Errors
/// `InvalidInput` for malformed DER or a scalar too large for the curve.
pub fn ecdsa_der_to_fixed(der: &[u8], algorithm: KeyAlgorithm) -> Result<Vec<u8>> {
    let n = ecdsa_scalar_len(algorithm)?;
    let sig = EcdsaSigValue::from_der(der)?;
    let mut out = vec![0u8; 2 * n];
    for (i, int) in [sig.r, sig.s].iter().enumerate() {
        let bytes = strip_leading_zeros(int);
        if bytes.len() > n {
            return Err(Error::invalid_input("ECDSA scalar larger than the curve"));
        }
        out[i * n + n - bytes.len()..(i + 1) * n].copy_from_slice(bytes);
    }
    Ok(out)
}

/// Converts an ECDSA signature from fixed-size `r || s` to DER.
///
/// # Errors
/// `InvalidInput` when the length is not twice the curve's scalar size.
pub fn ecdsa_fixed_to_der(fixed: &[u8], algorithm: KeyAlgorithm) -> Result<Vec<u8>> {
    let n = ecdsa_scalar_len(algorithm)?;
    if fixed.len() != 2 * n {
        return Err(Error::invalid_input(format!(
            "fixed ECDSA signature for {algorithm} must be {} bytes, got {}",
            2 * n,
            fixed.len()
        )));
    }
    let (r, s) = fixed.split_at(n);
    EcdsaSigValue {
        r: r.to_vec(),
        s: s.to_vec(),
    }
    .to_der()
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

struct EcdsaSigValue {
    r: Vec<u8>,
    s: Vec<u8>,
}

impl EcdsaSigValue {
    fn from_der(der: &[u8]) -> Result<Self> {
        use der::Decode as _;
        #[derive(der::Sequence)]
        struct Sig<'a> {
            r: der::asn1::UintRef<'a>,
            s: der::asn1::UintRef<'a>,
        }
        let sig = Sig::from_der(der)
            .map_err(|e| Error::invalid_input(format!("malformed ECDSA DER signature: {e}")))?;
        Ok(Self {
            r: sig.r.as_bytes().to_vec(),
            s: sig.s.as_bytes().to_vec(),
        })
    }

    fn to_der(&self) -> Result<Vec<u8>> {
        use der::Encode as _;
        #[derive(der::Sequence)]
        struct Sig<'a> {
            r: der::asn1::UintRef<'a>,
            s: der::asn1::UintRef<'a>,
        }
        let map =
            |e: der::Error| Error::invalid_input(format!("cannot encode ECDSA signature: {e}"));
        Sig {
            r: der::asn1::UintRef::new(strip_leading_zeros(&self.r)).map_err(map)?,
            s: der::asn1::UintRef::new(strip_leading_zeros(&self.s)).map_err(map)?,
        }
        .to_der()
        .map_err(map)
    }
}

fn bad_signature() -> Error {
    Error::new(ErrorKind::InvalidSignature, "signature does not verify")
}

/// Verifies `signature` over `input` with `public_key`, using RustCrypto only — independent of
/// any backend's own code.
///
/// # Errors
/// - [`ErrorKind::InvalidSignature`]: the signature does not verify (including malformed bytes);
/// - [`ErrorKind::InvalidInput`]: the scheme does not fit the key, or the input is wrong for the
///   scheme (digest length, digest for Ed25519);
/// - [`ErrorKind::Unsupported`]: secp256k1 (no verifier compiled in).
pub fn verify(
    public_key: &PublicKey,
    input: SignInput<'_>,
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<()> {
    scheme.check_fits(public_key.algorithm())?;
    let data = input.prepare(scheme)?;
    let invalid = |_: signature::Error| bad_signature();
    match (public_key.algorithm(), scheme) {
        (KeyAlgorithm::EcP256, _) => {
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(invalid)?;
            public_key
                .to_p256()?
                .verify_prehash(&data, &sig)
                .map_err(invalid)
        }
        (KeyAlgorithm::EcP384, _) => {
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(invalid)?;
            public_key
                .to_p384()?
                .verify_prehash(&data, &sig)
                .map_err(invalid)
        }
        (KeyAlgorithm::EcP521, _) => {
            let sig = p521::ecdsa::Signature::from_der(signature).map_err(invalid)?;
            public_key
                .to_p521()?
                .verify_prehash(&data, &sig)
                .map_err(invalid)
        }
        (KeyAlgorithm::Ed25519, _) => {
            let sig = ed25519_dalek::Signature::from_slice(signature).map_err(invalid)?;
            public_key
                .to_ed25519()?
                .verify_strict(&data, &sig)
                .map_err(invalid)
        }
        (a, SignatureScheme::RsaPkcs1v15(h)) if a.is_rsa() => {
            let key = public_key.to_rsa()?;
            let padding = match h {
                HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            };
            key.verify(padding, &data, signature)
                .map_err(|_| bad_signature())
        }
        (a, SignatureScheme::RsaPss(h)) if a.is_rsa() => {
            let key = public_key.to_rsa()?;
            let result = match h {
                HashAlg::Sha256 => key.verify(rsa::Pss::<sha2::Sha256>::new(), &data, signature),
                HashAlg::Sha384 => key.verify(rsa::Pss::<sha2::Sha384>::new(), &data, signature),
                HashAlg::Sha512 => key.verify(rsa::Pss::<sha2::Sha512>::new(), &data, signature),
            };
            result.map_err(|_| bad_signature())
        }
        (a, s) => Err(Error::unsupported(format!("verifying {s} with a {a} key"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_fixed_round_trip() {
        let mut fixed = vec![0u8; 64];
        fixed[0] = 0x80; // high bit set: DER needs a leading zero
        fixed[31] = 1;
        fixed[63] = 7; // s small: DER strips leading zeros
        let der = ecdsa_fixed_to_der(&fixed, KeyAlgorithm::EcP256).unwrap();
        assert_eq!(
            ecdsa_der_to_fixed(&der, KeyAlgorithm::EcP256).unwrap(),
            fixed
        );
        assert!(ecdsa_fixed_to_der(&fixed[..63], KeyAlgorithm::EcP256).is_err());
        assert!(ecdsa_der_to_fixed(b"\x30\x00", KeyAlgorithm::EcP256).is_err());
        assert!(ecdsa_der_to_fixed(&der, KeyAlgorithm::Rsa2048).is_err());
    }

    #[test]
    fn prepare_checks_digests() {
        let scheme = SignatureScheme::Ecdsa(HashAlg::Sha256);
        let d = [0u8; 31];
        let e = SignInput::digest(HashAlg::Sha256, &d)
            .prepare(scheme)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let d = [0u8; 48];
        assert!(
            SignInput::digest(HashAlg::Sha384, &d)
                .prepare(scheme)
                .is_err()
        );
        assert_eq!(
            SignInput::message(b"abc").prepare(scheme).unwrap().len(),
            32
        );
        assert!(
            SignInput::digest(HashAlg::Sha512, &[0; 64])
                .prepare(SignatureScheme::Ed25519)
                .is_err()
        );
    }

    #[test]
    fn p256_signature_verifies_and_tamper_fails() {
        use p256::ecdsa::{SigningKey, signature::hazmat::PrehashSigner};
        use spki::EncodePublicKey as _;
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = PublicKey::from_der(sk.verifying_key().to_public_key_der().unwrap().as_bytes())
            .unwrap();
        let digest = HashAlg::Sha256.digest(b"hello");
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let der = sig.to_der().as_bytes().to_vec();
        let scheme = SignatureScheme::Ecdsa(HashAlg::Sha256);
        verify(&pk, SignInput::message(b"hello"), scheme, &der).unwrap();
        verify(
            &pk,
            SignInput::digest(HashAlg::Sha256, &digest),
            scheme,
            &der,
        )
        .unwrap();
        let e = verify(&pk, SignInput::message(b"hellO"), scheme, &der).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSignature);
        let e = verify(
            &pk,
            SignInput::message(b"hello"),
            SignatureScheme::RsaPss(HashAlg::Sha256),
            &der,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
