//! The default provider: AWS-LC through `aws-lc-rs` (constant-time RSA, FIPS-grade primitives).

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use keychain_core::{
    Error, ErrorKind, HashAlg, KeyAlgorithm, PublicKey, Result, SecretBytes, SignatureScheme,
};

use crate::provider::{AeadKey, CryptoProvider, PrivateKey};

/// The aws-lc-rs provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsLcProvider;

impl AwsLcProvider {
    /// The provider (stateless).
    pub fn new() -> Self {
        Self
    }
}

fn internal(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> Error + '_ {
    move |_| Error::new(ErrorKind::Unexpected, format!("aws-lc: {what} failed"))
}

fn rejected(algorithm: KeyAlgorithm) -> impl Fn(aws_lc_rs::error::KeyRejected) -> Error {
    move |e| Error::invalid_input(format!("not a valid {algorithm} PKCS#8 key: {e}"))
}

fn ecdsa_alg(algorithm: KeyAlgorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match algorithm {
        KeyAlgorithm::EcP256 => Some(&sig::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyAlgorithm::EcP384 => Some(&sig::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeyAlgorithm::EcP521 => Some(&sig::ECDSA_P521_SHA512_ASN1_SIGNING),
        KeyAlgorithm::EcSecp256k1 => Some(&sig::ECDSA_P256K1_SHA256_ASN1_SIGNING),
        _ => None,
    }
}

fn digest_alg(hash: HashAlg) -> Result<&'static digest::Algorithm> {
    match hash {
        HashAlg::Sha256 => Ok(&digest::SHA256),
        HashAlg::Sha384 => Ok(&digest::SHA384),
        HashAlg::Sha512 => Ok(&digest::SHA512),
        h => Err(Error::unsupported(format!(
            "hash {h} in the aws-lc-rs provider"
        ))),
    }
}

fn public_key(der: &[u8]) -> Result<PublicKey> {
    PublicKey::from_der(der)
}

const ALGORITHMS: [KeyAlgorithm; 11] = [
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::Rsa3072,
    KeyAlgorithm::Rsa4096,
    KeyAlgorithm::EcP256,
    KeyAlgorithm::EcP384,
    KeyAlgorithm::EcP521,
    KeyAlgorithm::Ed25519,
    KeyAlgorithm::Aes128Gcm,
    KeyAlgorithm::Aes192Gcm,
    KeyAlgorithm::Aes256Gcm,
    KeyAlgorithm::ChaCha20Poly1305,
];

impl CryptoProvider for AwsLcProvider {
    fn name(&self) -> &'static str {
        "aws-lc-rs"
    }

    fn algorithms(&self) -> Vec<KeyAlgorithm> {
        ALGORITHMS.to_vec()
    }

    fn signature_schemes(&self) -> Vec<SignatureScheme> {
        let mut v = Vec::new();
        for h in HashAlg::ALL {
            v.extend([
                SignatureScheme::RsaPkcs1v15(h),
                SignatureScheme::RsaPss(h),
                SignatureScheme::Ecdsa(h),
            ]);
        }
        v.push(SignatureScheme::Ed25519);
        v
    }

    fn oaep_hashes(&self) -> Vec<HashAlg> {
        HashAlg::ALL.to_vec()
    }

    fn generate(&self, algorithm: KeyAlgorithm) -> Result<SecretBytes> {
        let pkcs8 = |d: Pkcs8V1Der<'static>| SecretBytes::from_slice(d.as_ref());
        match algorithm {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let size = match algorithm {
                    KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
                    KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
                    _ => KeySize::Rsa4096,
                };
                let kp = RsaKeyPair::generate(size).map_err(internal("RSA key generation"))?;
                Ok(pkcs8(kp.as_der().map_err(internal("PKCS#8 encoding"))?))
            }
            KeyAlgorithm::Ed25519 => {
                let kp = Ed25519KeyPair::generate().map_err(internal("Ed25519 key generation"))?;
                let doc = kp.to_pkcs8v1().map_err(internal("PKCS#8 encoding"))?;
                Ok(SecretBytes::from_slice(doc.as_ref()))
            }
            a if a.is_symmetric() => {
                let mut key = vec![0u8; a.symmetric_key_len().unwrap_or(32)];
                self.fill_random(&mut key)?;
                Ok(SecretBytes::new(key))
            }
            a => match ecdsa_alg(a) {
                Some(alg) if ALGORITHMS.contains(&a) => {
                    let kp = EcdsaKeyPair::generate(alg).map_err(internal("EC key generation"))?;
                    let doc = kp.to_pkcs8v1().map_err(internal("PKCS#8 encoding"))?;
                    Ok(SecretBytes::from_slice(doc.as_ref()))
                }
                _ => Err(Error::unsupported(format!(
                    "{a} keys in the aws-lc-rs provider"
                ))),
            },
        }
    }

    fn private_key(&self, algorithm: KeyAlgorithm, der: &[u8]) -> Result<Box<dyn PrivateKey>> {
        match algorithm {
            a if a.is_rsa() => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(rejected(a))?;
                let bits = kp.public_modulus_len().saturating_mul(8);
                if bits as u32 != a.bits() {
                    return Err(Error::invalid_input(format!(
                        "key is RSA-{bits}, expected {a}"
                    )));
                }
                let decrypt = PrivateDecryptingKey::from_pkcs8(der).map_err(rejected(a))?;
                let decrypt =
                    OaepPrivateDecryptingKey::new(decrypt).map_err(internal("OAEP key"))?;
                let public = public_key(
                    kp.public_key()
                        .as_der()
                        .map_err(internal("public key encoding"))?
                        .as_ref(),
                )?;
                Ok(Box::new(RsaKey {
                    algorithm: a,
                    kp,
                    decrypt,
                    public,
                }))
            }
            KeyAlgorithm::Ed25519 => {
                let kp =
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected(algorithm))?;
                let public = public_key(
                    kp.public_key()
                        .as_der()
                        .map_err(internal("public key encoding"))?
                        .as_ref(),
                )?;
                Ok(Box::new(Ed25519Key { kp, public }))
            }
            a => {
                let alg = ecdsa_alg(a)
                    .filter(|_| ALGORITHMS.contains(&a))
                    .ok_or_else(|| {
                        Error::unsupported(format!("{a} keys in the aws-lc-rs provider"))
                    })?;
                let kp = EcdsaKeyPair::from_pkcs8(alg, der).map_err(rejected(a))?;
                let public = public_key(
                    kp.public_key()
                        .as_der()
                        .map_err(internal("public key encoding"))?
                        .as_ref(),
                )?;
                if public.algorithm() != a {
                    return Err(Error::invalid_input(format!("key is not {a}")));
                }
                Ok(Box::new(EcKey {
                    algorithm: a,
                    kp,
                    public,
                }))
            }
        }
    }

    fn aead_key(&self, algorithm: KeyAlgorithm, key: &[u8]) -> Result<Box<dyn AeadKey>> {
        let alg = match algorithm {
            KeyAlgorithm::Aes128Gcm => &aead::AES_128_GCM,
            KeyAlgorithm::Aes192Gcm => &aead::AES_192_GCM,
            KeyAlgorithm::Aes256Gcm => &aead::AES_256_GCM,
            KeyAlgorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            a => {
                return Err(Error::invalid_input(format!(
                    "{a} is not an AEAD algorithm"
                )));
            }
        };
        if Some(key.len()) != algorithm.symmetric_key_len() {
            return Err(Error::invalid_input(format!(
                "{algorithm} key must be {} bytes",
                algorithm.symmetric_key_len().unwrap_or_default()
            )));
        }
        let unbound = UnboundKey::new(alg, key).map_err(internal("AEAD key setup"))?;
        Ok(Box::new(GcmKey(LessSafeKey::new(unbound))))
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        aws_lc_rs::rand::fill(buf).map_err(internal("random generator"))
    }
}

struct RsaKey {
    algorithm: KeyAlgorithm,
    kp: RsaKeyPair,
    decrypt: OaepPrivateDecryptingKey,
    public: PublicKey,
}

impl PrivateKey for RsaKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>> {
        let encoding: &'static dyn sig::RsaEncoding = match scheme {
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha256) => &sig::RSA_PKCS1_SHA256,
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha384) => &sig::RSA_PKCS1_SHA384,
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha512) => &sig::RSA_PKCS1_SHA512,
            SignatureScheme::RsaPss(HashAlg::Sha256) => &sig::RSA_PSS_SHA256,
            SignatureScheme::RsaPss(HashAlg::Sha384) => &sig::RSA_PSS_SHA384,
            SignatureScheme::RsaPss(HashAlg::Sha512) => &sig::RSA_PSS_SHA512,
            s => {
                s.check_fits(self.algorithm)?;
                return Err(Error::unsupported(format!("{s}")));
            }
        };
        let hash = scheme.hash().unwrap_or(HashAlg::Sha256);
        let digest = Digest::import_less_safe(data, digest_alg(hash)?).map_err(|_| {
            Error::invalid_input(format!("{hash} digest must be {} bytes", hash.output_len()))
        })?;
        let mut out = vec![0u8; self.kp.public_modulus_len()];
        self.kp
            .sign_digest(encoding, &digest, &mut out)
            .map_err(internal("RSA signing"))?;
        Ok(out)
    }

    fn decrypt_oaep(&self, ciphertext: &[u8], hash: HashAlg) -> Result<SecretBytes> {
        let alg = match hash {
            HashAlg::Sha256 => &OAEP_SHA256_MGF1SHA256,
            HashAlg::Sha384 => &OAEP_SHA384_MGF1SHA384,
            HashAlg::Sha512 => &OAEP_SHA512_MGF1SHA512,
            h => return Err(Error::unsupported(format!("RSA-OAEP with {h}"))),
        };
        let mut out = vec![0u8; self.decrypt.min_output_size()];
        let n = self
            .decrypt
            .decrypt(alg, ciphertext, &mut out, None)
            .map_err(|_| Error::new(ErrorKind::Integrity, "RSA-OAEP decryption failed"))?
            .len();
        out.truncate(n);
        Ok(SecretBytes::new(out))
    }
}

struct EcKey {
    algorithm: KeyAlgorithm,
    kp: EcdsaKeyPair,
    public: PublicKey,
}

impl PrivateKey for EcKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>> {
        scheme.check_fits(self.algorithm)?;
        // Each aws-lc signing algorithm is bound to one hash. ECDSA uses only the leftmost
        // curve-size bits of a digest (SEC1 §4.1.3 step 5), so a digest of another hash is
        // re-labelled to the key's hash: truncated when longer, left-padded with zeros (the same
        // integer) when shorter. The signature is identical to one over the original digest.
        let own = self.algorithm.default_hash().unwrap_or(HashAlg::Sha256);
        let n = own.output_len();
        let mut buf = vec![0u8; n];
        if data.len() >= n {
            buf.copy_from_slice(&data[..n]);
        } else {
            // Shorter, by the branch: the subtraction cannot wrap.
            buf[n.saturating_sub(data.len())..].copy_from_slice(data);
        }
        let digest = Digest::import_less_safe(&buf, digest_alg(own)?)
            .map_err(|_| Error::invalid_input("bad digest length"))?;
        let s = self
            .kp
            .sign_digest(&digest)
            .map_err(internal("ECDSA signing"))?;
        Ok(s.as_ref().to_vec())
    }
}

struct Ed25519Key {
    kp: Ed25519KeyPair,
    public: PublicKey,
}

impl PrivateKey for Ed25519Key {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::Ed25519
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>> {
        scheme.check_fits(KeyAlgorithm::Ed25519)?;
        Ok(self.kp.sign(data).as_ref().to_vec())
    }
}

struct GcmKey(LessSafeKey);

/// The part of a buffer after `start`, as aws-lc-rs's in-place sealing wants it: it encrypts
/// what `as_mut` shows and appends the tag through `extend`, so a header before `start` stays
/// in the same allocation, untouched.
struct Tail<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl AsMut<[u8]> for Tail<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
}

impl<'b> Extend<&'b u8> for Tail<'_> {
    fn extend<I: IntoIterator<Item = &'b u8>>(&mut self, iter: I) {
        self.buf.extend(iter);
    }
}

impl AeadKey for GcmKey {
    fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        if start > buf.len() {
            return Err(Error::invalid_input("seal start is past the buffer"));
        }
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut Tail { buf, start },
            )
            .map_err(internal("AEAD seal"))
    }

    /// Out of place: the plaintext is read where it is and the ciphertext written straight
    /// into `out`, so the plaintext is never copied.
    fn seal_append(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        out.resize(
            start
                .saturating_add(plaintext.len())
                .saturating_add(crate::TAG_LEN),
            0,
        );
        let (ciphertext, tag) = out[start..].split_at_mut(plaintext.len());
        let sealed = self.0.seal_out_of_place_scatter(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            plaintext,
            ciphertext,
            &[],
            tag,
        );
        if sealed.is_err() {
            out.truncate(start);
            return Err(Error::new(ErrorKind::Unexpected, "AEAD seal failed"));
        }
        Ok(())
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], ciphertext_and_tag: &[u8]) -> Result<SecretBytes> {
        let mut buf = ciphertext_and_tag.to_vec();
        let result = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map(|p| p.len());
        match result {
            Ok(len) => {
                buf.truncate(len);
                Ok(SecretBytes::new(buf))
            }
            Err(_) => {
                zeroize::Zeroize::zeroize(&mut buf);
                Err(Error::new(
                    ErrorKind::Integrity,
                    "AEAD authentication failed",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keychain_core::{SignInput, verify};

    #[test]
    fn ec_cross_hash_signatures_verify() {
        let p = AwsLcProvider::new();
        for alg in [
            KeyAlgorithm::EcP256,
            KeyAlgorithm::EcP384,
            KeyAlgorithm::EcP521,
        ] {
            let der = p.generate(alg).unwrap();
            let key = p.private_key(alg, der.expose()).unwrap();
            for h in HashAlg::ALL {
                let scheme = SignatureScheme::Ecdsa(h);
                let digest = h.digest(b"message");
                let s = key.sign(&digest, scheme).unwrap();
                verify(key.public_key(), SignInput::digest(h, &digest), scheme, &s)
                    .unwrap_or_else(|e| panic!("{alg} {h}: {e}"));
            }
        }
    }

    #[test]
    fn wrong_algorithm_der_is_rejected() {
        let p = AwsLcProvider::new();
        let der = p.generate(KeyAlgorithm::EcP256).unwrap();
        let e = p
            .private_key(KeyAlgorithm::EcP384, der.expose())
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = p
            .private_key(KeyAlgorithm::Rsa2048, der.expose())
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        let p = AwsLcProvider::new();
        let key = p.aead_key(KeyAlgorithm::Aes192Gcm, &[1u8; 24]).unwrap();
        let nonce = [3u8; 12];
        let mut ct = key.seal(&nonce, b"aad", b"hello").unwrap();
        assert_eq!(key.open(&nonce, b"aad", &ct).unwrap().expose(), b"hello");
        assert_eq!(
            key.open(&nonce, b"aaD", &ct).err().unwrap().kind(),
            ErrorKind::Integrity
        );
        ct[0] ^= 1;
        assert_eq!(
            key.open(&nonce, b"aad", &ct).err().unwrap().kind(),
            ErrorKind::Integrity
        );
        assert!(p.aead_key(KeyAlgorithm::Aes256Gcm, &[0u8; 16]).is_err());
    }

    /// The out-of-place `seal_append` writes exactly what sealing in place writes.
    #[test]
    fn seal_append_matches_in_place_and_keeps_the_prefix() {
        crate::provider::assert_seal_append_matches_in_place(&AwsLcProvider::new());
    }

    /// RFC 8439 §2.8.2: the ChaCha20-Poly1305 AEAD test vector.
    #[test]
    fn chacha20_poly1305_rfc8439_vector() {
        let key: Vec<u8> = (0x80u8..=0x9f).collect();
        let nonce: [u8; 12] = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only \
one tip for the future, sunscreen would be it.";
        let expected_tag = hex::decode("1ae10b594f09e26a7e902ecbd0600691").unwrap();
        let expected_start = hex::decode("d31a8d34648e60db7b86afbc53ef7ec2").unwrap();
        let p = AwsLcProvider::new();
        let k = p.aead_key(KeyAlgorithm::ChaCha20Poly1305, &key).unwrap();
        let ct = k.seal(&nonce, &aad, plaintext).unwrap();
        assert_eq!(ct.len(), plaintext.len() + 16);
        assert_eq!(&ct[..16], expected_start.as_slice());
        assert_eq!(&ct[ct.len() - 16..], expected_tag.as_slice());
        assert_eq!(k.open(&nonce, &aad, &ct).unwrap().expose(), plaintext);
        #[cfg(feature = "rustcrypto")]
        {
            let r = crate::RustCryptoProvider::new();
            let rk = r.aead_key(KeyAlgorithm::ChaCha20Poly1305, &key).unwrap();
            assert_eq!(rk.seal(&nonce, &aad, plaintext).unwrap(), ct);
            assert_eq!(rk.open(&nonce, &aad, &ct).unwrap().expose(), plaintext);
        }
        assert!(
            p.aead_key(KeyAlgorithm::ChaCha20Poly1305, &[0u8; 16])
                .is_err()
        );
    }
}
