//! A pure-Rust provider on RustCrypto, for targets where AWS-LC cannot build.
//!
//! RSA private-key operations (keygen, sign, decrypt) are only compiled with the
//! `rustcrypto-rsa-insecure` feature: every release of the `rsa` crate carries RUSTSEC-2023-0071
//! (the Marvin timing side channel). Without it, RSA keys are `Unsupported` here.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};
use keychain_core::{
    Error, ErrorKind, HashAlg, KeyAlgorithm, PublicKey, Result, SecretBytes, SignatureScheme,
};
use p256::elliptic_curve::Generate as _;
use pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
#[cfg(feature = "rustcrypto-rsa-insecure")]
use rand_core::UnwrapErr;
use signature::hazmat::PrehashSigner as _;
use spki::EncodePublicKey as _;

use crate::provider::{AeadKey, CryptoProvider, PrivateKey};

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// The RustCrypto provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCryptoProvider;

impl RustCryptoProvider {
    /// The provider (stateless).
    pub fn new() -> Self {
        Self
    }
}

#[cfg(feature = "rustcrypto-rsa-insecure")]
fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn rng_failed(e: getrandom::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("random generator: {e}"))
}

fn rejected(algorithm: KeyAlgorithm) -> impl Fn(pkcs8::Error) -> Error {
    move |e| Error::invalid_input(format!("not a valid {algorithm} PKCS#8 key: {e}"))
}

fn encoding<E: std::fmt::Display>(e: E) -> Error {
    Error::new(ErrorKind::Unexpected, format!("key encoding failed: {e}"))
}

const EC: [KeyAlgorithm; 3] = [
    KeyAlgorithm::EcP256,
    KeyAlgorithm::EcP384,
    KeyAlgorithm::EcP521,
];
const AEAD: [KeyAlgorithm; 4] = [
    KeyAlgorithm::Aes128Gcm,
    KeyAlgorithm::Aes192Gcm,
    KeyAlgorithm::Aes256Gcm,
    KeyAlgorithm::ChaCha20Poly1305,
];
#[cfg(feature = "rustcrypto-rsa-insecure")]
const RSA: [KeyAlgorithm; 3] = [
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::Rsa3072,
    KeyAlgorithm::Rsa4096,
];

impl CryptoProvider for RustCryptoProvider {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn algorithms(&self) -> Vec<KeyAlgorithm> {
        let mut v = Vec::new();
        #[cfg(feature = "rustcrypto-rsa-insecure")]
        v.extend(RSA);
        v.extend(EC);
        v.push(KeyAlgorithm::Ed25519);
        v.extend(AEAD);
        v
    }

    fn signature_schemes(&self) -> Vec<SignatureScheme> {
        let mut v = Vec::new();
        for h in HashAlg::ALL {
            #[cfg(feature = "rustcrypto-rsa-insecure")]
            v.extend([SignatureScheme::RsaPkcs1v15(h), SignatureScheme::RsaPss(h)]);
            v.push(SignatureScheme::Ecdsa(h));
        }
        v.push(SignatureScheme::Ed25519);
        v
    }

    fn oaep_hashes(&self) -> Vec<HashAlg> {
        if cfg!(feature = "rustcrypto-rsa-insecure") {
            HashAlg::ALL.to_vec()
        } else {
            Vec::new()
        }
    }

    fn generate(&self, algorithm: KeyAlgorithm) -> Result<SecretBytes> {
        let doc = match algorithm {
            KeyAlgorithm::EcP256 => p256::SecretKey::try_generate_from_rng(&mut getrandom::SysRng)
                .map_err(rng_failed)?
                .to_pkcs8_der(),
            KeyAlgorithm::EcP384 => p384::SecretKey::try_generate_from_rng(&mut getrandom::SysRng)
                .map_err(rng_failed)?
                .to_pkcs8_der(),
            KeyAlgorithm::EcP521 => p521::SecretKey::try_generate_from_rng(&mut getrandom::SysRng)
                .map_err(rng_failed)?
                .to_pkcs8_der(),
            KeyAlgorithm::Ed25519 => {
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                self.fill_random(seed.as_mut())?;
                ed25519_dalek::SigningKey::from_bytes(&seed).to_pkcs8_der()
            }
            a if a.is_symmetric() => {
                let mut key = vec![0u8; a.symmetric_key_len().unwrap_or(32)];
                self.fill_random(&mut key)?;
                return Ok(SecretBytes::new(key));
            }
            #[cfg(feature = "rustcrypto-rsa-insecure")]
            a if a.is_rsa() => rsa::RsaPrivateKey::new(&mut rng(), a.bits() as usize)
                .map_err(|e| Error::new(ErrorKind::Unexpected, format!("RSA keygen: {e}")))?
                .to_pkcs8_der(),
            a => {
                return Err(Error::unsupported(format!(
                    "{a} keys in the rustcrypto provider{}",
                    if a.is_rsa() {
                        " (RSA needs the `rustcrypto-rsa-insecure` feature: RUSTSEC-2023-0071)"
                    } else {
                        ""
                    }
                )));
            }
        }
        .map_err(encoding)?;
        Ok(SecretBytes::from_slice(doc.as_bytes()))
    }

    fn private_key(&self, algorithm: KeyAlgorithm, der: &[u8]) -> Result<Box<dyn PrivateKey>> {
        fn public(der: spki::Result<spki::Document>) -> Result<PublicKey> {
            PublicKey::from_der(der.map_err(encoding)?.as_bytes())
        }
        match algorithm {
            KeyAlgorithm::EcP256 => {
                let k =
                    p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(rejected(algorithm))?;
                let public = public(k.verifying_key().to_public_key_der())?;
                Ok(Box::new(Ec {
                    key: EcKey::P256(k),
                    public,
                }))
            }
            KeyAlgorithm::EcP384 => {
                let k =
                    p384::ecdsa::SigningKey::from_pkcs8_der(der).map_err(rejected(algorithm))?;
                let public = public(k.verifying_key().to_public_key_der())?;
                Ok(Box::new(Ec {
                    key: EcKey::P384(k),
                    public,
                }))
            }
            KeyAlgorithm::EcP521 => {
                let k =
                    p521::ecdsa::SigningKey::from_pkcs8_der(der).map_err(rejected(algorithm))?;
                let public = public(k.verifying_key().to_public_key_der())?;
                Ok(Box::new(Ec {
                    key: EcKey::P521(k),
                    public,
                }))
            }
            KeyAlgorithm::Ed25519 => {
                let k =
                    ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(rejected(algorithm))?;
                let public = public(k.verifying_key().to_public_key_der())?;
                Ok(Box::new(Ed { key: k, public }))
            }
            #[cfg(feature = "rustcrypto-rsa-insecure")]
            a if a.is_rsa() => {
                let k = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(rejected(a))?;
                let public = public(k.to_public_key().to_public_key_der())?;
                if public.algorithm() != a {
                    return Err(Error::invalid_input(format!("key is not {a}")));
                }
                Ok(Box::new(Rsa {
                    key: k,
                    algorithm: a,
                    public,
                }))
            }
            a => Err(Error::unsupported(format!(
                "{a} keys in the rustcrypto provider"
            ))),
        }
    }

    fn aead_key(&self, algorithm: KeyAlgorithm, key: &[u8]) -> Result<Box<dyn AeadKey>> {
        let bad_len = |_| Error::invalid_input(format!("wrong key length for {algorithm}"));
        Ok(match algorithm {
            KeyAlgorithm::Aes128Gcm => {
                Box::new(Gcm(Aes128Gcm::new_from_slice(key).map_err(bad_len)?))
            }
            KeyAlgorithm::Aes192Gcm => {
                Box::new(Gcm(Aes192Gcm::new_from_slice(key).map_err(bad_len)?))
            }
            KeyAlgorithm::Aes256Gcm => {
                Box::new(Gcm(Aes256Gcm::new_from_slice(key).map_err(bad_len)?))
            }
            KeyAlgorithm::ChaCha20Poly1305 => Box::new(Gcm(
                chacha20poly1305::ChaCha20Poly1305::new_from_slice(key).map_err(bad_len)?,
            )),
            a => {
                return Err(Error::invalid_input(format!(
                    "{a} is not an AEAD algorithm"
                )));
            }
        })
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(rng_failed)
    }
}

enum EcKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

struct Ec {
    key: EcKey,
    public: PublicKey,
}

impl PrivateKey for Ec {
    fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>> {
        scheme.check_fits(self.algorithm())?;
        let failed =
            |e: signature::Error| Error::new(ErrorKind::Unexpected, format!("ECDSA signing: {e}"));
        // `sign_prehash` applies bits2int: a longer digest is truncated, a shorter one used as is.
        Ok(match &self.key {
            EcKey::P256(k) => {
                let s: p256::ecdsa::DerSignature = k.sign_prehash(data).map_err(failed)?;
                s.as_bytes().to_vec()
            }
            EcKey::P384(k) => {
                let s: p384::ecdsa::DerSignature = k.sign_prehash(data).map_err(failed)?;
                s.as_bytes().to_vec()
            }
            EcKey::P521(k) => {
                let s: p521::ecdsa::DerSignature = k.sign_prehash(data).map_err(failed)?;
                s.as_bytes().to_vec()
            }
        })
    }
}

struct Ed {
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl PrivateKey for Ed {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::Ed25519
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>> {
        use ed25519_dalek::Signer as _;
        scheme.check_fits(KeyAlgorithm::Ed25519)?;
        Ok(self.key.sign(data).to_bytes().to_vec())
    }
}

#[cfg(feature = "rustcrypto-rsa-insecure")]
struct Rsa {
    key: rsa::RsaPrivateKey,
    algorithm: KeyAlgorithm,
    public: PublicKey,
}

#[cfg(feature = "rustcrypto-rsa-insecure")]
impl PrivateKey for Rsa {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>> {
        use sha2::{Sha256, Sha384, Sha512};
        scheme.check_fits(self.algorithm)?;
        let k = &self.key;
        let mut r = rng();
        let result = match scheme {
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha256) => {
                k.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), data)
            }
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha384) => {
                k.sign(rsa::Pkcs1v15Sign::new::<Sha384>(), data)
            }
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha512) => {
                k.sign(rsa::Pkcs1v15Sign::new::<Sha512>(), data)
            }
            SignatureScheme::RsaPss(HashAlg::Sha256) => {
                k.sign_with_rng(&mut r, rsa::Pss::<Sha256>::new(), data)
            }
            SignatureScheme::RsaPss(HashAlg::Sha384) => {
                k.sign_with_rng(&mut r, rsa::Pss::<Sha384>::new(), data)
            }
            SignatureScheme::RsaPss(HashAlg::Sha512) => {
                k.sign_with_rng(&mut r, rsa::Pss::<Sha512>::new(), data)
            }
            s => return Err(Error::unsupported(format!("{s}"))),
        };
        result.map_err(|e| Error::new(ErrorKind::Unexpected, format!("RSA signing: {e}")))
    }

    fn decrypt_oaep(&self, ciphertext: &[u8], hash: HashAlg) -> Result<SecretBytes> {
        use sha2::{Sha256, Sha384, Sha512};
        let mut r = rng();
        let k = &self.key;
        let result = match hash {
            HashAlg::Sha256 => k.decrypt_blinded(&mut r, rsa::Oaep::<Sha256>::new(), ciphertext),
            HashAlg::Sha384 => k.decrypt_blinded(&mut r, rsa::Oaep::<Sha384>::new(), ciphertext),
            HashAlg::Sha512 => k.decrypt_blinded(&mut r, rsa::Oaep::<Sha512>::new(), ciphertext),
            h => return Err(Error::unsupported(format!("RSA-OAEP with {h}"))),
        };
        result
            .map(SecretBytes::new)
            .map_err(|_| Error::new(ErrorKind::Integrity, "RSA-OAEP decryption failed"))
    }
}

/// An AEAD of RustCrypto's `aead` traits (AES-GCM, ChaCha20-Poly1305).
struct Gcm<C>(C);

impl<C> AeadKey for Gcm<C>
where
    C: AeadInOut<NonceSize = U12, TagSize = U16> + Send + Sync,
{
    fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        let body = buf
            .get_mut(start..)
            .ok_or_else(|| Error::invalid_input("seal start is past the buffer"))?;
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::<U12>::from(*nonce), aad, body.into())
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AEAD seal failed"))?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    fn seal_append(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        out.reserve(plaintext.len().saturating_add(crate::TAG_LEN));
        out.resize(start.saturating_add(plaintext.len()), 0);
        let body = out
            .get_mut(start..)
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "AEAD buffer"))?;
        let inout = aes_gcm::aead::inout::InOutBuf::new(plaintext, body)
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AEAD buffer lengths differ"))?;
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::<U12>::from(*nonce), aad, inout)
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AEAD seal failed"))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], ciphertext_and_tag: &[u8]) -> Result<SecretBytes> {
        let integrity = || Error::new(ErrorKind::Integrity, "AEAD authentication failed");
        let split = ciphertext_and_tag
            .len()
            .checked_sub(crate::TAG_LEN)
            .ok_or_else(integrity)?;
        let (ct, tag) = ciphertext_and_tag.split_at(split);
        let mut plain = ct.to_vec();
        let tag = Tag::<U16>::try_from(tag).map_err(|_| integrity())?;
        match self.0.decrypt_inout_detached(
            &Nonce::<U12>::from(*nonce),
            aad,
            plain.as_mut_slice().into(),
            &tag,
        ) {
            Ok(()) => Ok(SecretBytes::new(plain)),
            Err(_) => {
                zeroize::Zeroize::zeroize(&mut plain);
                Err(integrity())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keychain_core::{SignInput, verify};

    #[test]
    fn ec_and_ed25519_sign_and_verify() {
        let p = RustCryptoProvider::new();
        for (alg, scheme) in [
            (
                KeyAlgorithm::EcP256,
                SignatureScheme::Ecdsa(HashAlg::Sha384),
            ),
            (
                KeyAlgorithm::EcP521,
                SignatureScheme::Ecdsa(HashAlg::Sha256),
            ),
            (KeyAlgorithm::Ed25519, SignatureScheme::Ed25519),
        ] {
            let der = p.generate(alg).unwrap();
            let key = p.private_key(alg, der.expose()).unwrap();
            let input = match scheme.hash() {
                Some(h) => SignInput::digest(h, &h.digest(b"m"))
                    .prepare(scheme)
                    .unwrap()
                    .into_owned(),
                None => b"m".to_vec(),
            };
            let sig = key.sign(&input, scheme).unwrap();
            verify(key.public_key(), SignInput::message(b"m"), scheme, &sig).unwrap();
        }
    }

    #[test]
    fn seal_append_matches_in_place_and_keeps_the_prefix() {
        crate::provider::assert_seal_append_matches_in_place(&RustCryptoProvider::new());
    }

    #[test]
    fn rsa_follows_the_opt_in() {
        let p = RustCryptoProvider::new();
        let result = p.generate(KeyAlgorithm::Rsa2048);
        if cfg!(feature = "rustcrypto-rsa-insecure") {
            let der = result.unwrap();
            let key = p.private_key(KeyAlgorithm::Rsa2048, der.expose()).unwrap();
            for scheme in [
                SignatureScheme::RsaPss(HashAlg::Sha256),
                SignatureScheme::RsaPkcs1v15(HashAlg::Sha512),
            ] {
                let h = scheme.hash().unwrap();
                let sig = key.sign(&h.digest(b"m"), scheme).unwrap();
                verify(key.public_key(), SignInput::message(b"m"), scheme, &sig).unwrap();
            }
            let public = key.public_key().to_rsa().unwrap();
            let ct = public
                .encrypt(
                    &mut rand_core::UnwrapErr(getrandom::SysRng),
                    rsa::Oaep::<sha2::Sha256>::new(),
                    b"secret",
                )
                .unwrap();
            assert_eq!(
                key.decrypt_oaep(&ct, HashAlg::Sha256).unwrap().expose(),
                b"secret"
            );
            let mut bad = ct.clone();
            bad[10] ^= 1;
            assert_eq!(
                key.decrypt_oaep(&bad, HashAlg::Sha256)
                    .err()
                    .unwrap()
                    .kind(),
                ErrorKind::Integrity
            );
        } else {
            assert_eq!(result.err().unwrap().kind(), ErrorKind::Unsupported);
            assert!(p.oaep_hashes().is_empty());
        }
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        let p = RustCryptoProvider::new();
        for alg in AEAD {
            let key = p
                .aead_key(alg, &vec![5u8; alg.symmetric_key_len().unwrap()])
                .unwrap();
            let nonce = [1u8; 12];
            let mut ct = key.seal(&nonce, b"aad", b"hello").unwrap();
            assert_eq!(key.open(&nonce, b"aad", &ct).unwrap().expose(), b"hello");
            assert_eq!(
                key.open(&nonce, b"x", &ct).err().unwrap().kind(),
                ErrorKind::Integrity
            );
            ct[2] ^= 1;
            assert_eq!(
                key.open(&nonce, b"aad", &ct).err().unwrap().kind(),
                ErrorKind::Integrity
            );
            assert_eq!(
                key.open(&nonce, b"aad", &ct[..3]).err().unwrap().kind(),
                ErrorKind::Integrity
            );
        }
    }
}
