//! The seam: what a software crypto provider offers.

use std::fmt::Debug;
use std::sync::Arc;

use keychain_core::{
    Error, HashAlg, KeyAlgorithm, PublicKey, Result, SecretBytes, SignatureScheme,
};

/// A software cryptography implementation. Backends that keep keys in software
/// (`keychain-pkcs8`, the TPM's sealed AES keys, envelope DEKs) call through this trait only,
/// so the implementation underneath can be swapped without touching them.
///
/// Keys cross this seam as PKCS#8 v1 DER (asymmetric) or raw bytes (AES), always in
/// [`SecretBytes`].
pub trait CryptoProvider: Send + Sync + Debug + 'static {
    /// A short name (`aws-lc-rs`, `rustcrypto`).
    fn name(&self) -> &'static str;

    /// The algorithms this provider can generate and use.
    fn algorithms(&self) -> Vec<KeyAlgorithm>;

    /// The signature schemes this provider can make (each with the keys it fits).
    fn signature_schemes(&self) -> Vec<SignatureScheme>;

    /// The hashes RSA-OAEP decryption supports (empty without RSA).
    fn oaep_hashes(&self) -> Vec<HashAlg>;

    /// Generates a key: PKCS#8 v1 DER for asymmetric algorithms, raw key bytes for AES.
    ///
    /// # Errors
    /// `Unsupported` for an algorithm not in [`CryptoProvider::algorithms`].
    fn generate(&self, algorithm: KeyAlgorithm) -> Result<SecretBytes>;

    /// Parses a PKCS#8 DER private key of `algorithm` into a ready-to-use key. Parsing is the
    /// expensive part; callers cache the result.
    ///
    /// # Errors
    /// `InvalidInput` when the DER is not a valid key of `algorithm`; `Unsupported` for an
    /// algorithm the provider lacks.
    fn private_key(&self, algorithm: KeyAlgorithm, pkcs8_der: &[u8])
    -> Result<Box<dyn PrivateKey>>;

    /// Prepares an AEAD key: AES-GCM or ChaCha20-Poly1305.
    ///
    /// # Errors
    /// `InvalidInput` when `key` has the wrong length for `algorithm`.
    fn aead_key(&self, algorithm: KeyAlgorithm, key: &[u8]) -> Result<Box<dyn AeadKey>>;

    /// Fills `buf` from a cryptographically secure generator.
    ///
    /// # Errors
    /// `Unexpected` when the generator fails.
    fn fill_random(&self, buf: &mut [u8]) -> Result<()>;
}

/// A parsed asymmetric private key.
pub trait PrivateKey: Send + Sync {
    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm;

    /// The matching public key.
    fn public_key(&self) -> &PublicKey;

    /// Signs `data`: the digest for hash-based schemes (already checked against the scheme's hash
    /// length by [`keychain_core::SignInput::prepare`]), the message for Ed25519. ECDSA output is DER.
    ///
    /// # Errors
    /// `InvalidInput` for a scheme that does not fit the key; `Unsupported` for a scheme the
    /// provider lacks.
    fn sign(&self, data: &[u8], scheme: SignatureScheme) -> Result<Vec<u8>>;

    /// Decrypts an RSA-OAEP ciphertext (label empty, MGF1 with the same hash).
    ///
    /// # Errors
    /// `Integrity` when decryption fails; `InvalidInput` for a non-RSA key.
    fn decrypt_oaep(&self, ciphertext: &[u8], hash: HashAlg) -> Result<SecretBytes> {
        let _ = (ciphertext, hash);
        Err(Error::invalid_input(format!(
            "{} keys do not decrypt",
            self.algorithm()
        )))
    }
}

/// A prepared AEAD key (AES-GCM or ChaCha20-Poly1305; both take 12-byte nonces and 16-byte
/// tags).
pub trait AeadKey: Send + Sync {
    /// Encrypts `buf[start..]` in place with `nonce` (unique per key!) and `aad`, then appends
    /// the tag, so callers can put a header in front without another copy.
    ///
    /// # Errors
    /// `InvalidInput` when `start > buf.len()`; `Unexpected` on an internal failure.
    fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()>;

    /// Encrypts `plaintext` and appends ciphertext || tag to `out`, which may already hold a
    /// header. Providers that can encrypt from one buffer into another override this to skip
    /// the copy (and to read the caller's plaintext at its own alignment).
    ///
    /// # Errors
    /// As [`AeadKey::seal_in_place`].
    fn seal_append(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        out.reserve(plaintext.len().saturating_add(crate::TAG_LEN));
        out.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, out, start)
    }

    /// Encrypts `plaintext`; returns ciphertext || tag.
    ///
    /// # Errors
    /// As [`AeadKey::seal_in_place`].
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(plaintext.len().saturating_add(crate::TAG_LEN));
        self.seal_append(nonce, aad, plaintext, &mut buf)?;
        Ok(buf)
    }

    /// Decrypts ciphertext || tag.
    ///
    /// # Errors
    /// `Integrity` when the tag does not verify.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], ciphertext_and_tag: &[u8]) -> Result<SecretBytes>;
}

/// The default provider compiled in: aws-lc-rs when its feature is on.
///
/// # Panics
/// Never when the `aws-lc-rs` feature is enabled (the default). Without it, there is no
/// default provider and this returns `None`.
pub fn default_provider() -> Option<Arc<dyn CryptoProvider>> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Some(Arc::new(crate::AwsLcProvider::new()))
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        None
    }
}

/// Checks a provider's `seal_append` against its `seal_in_place` for AES-128/256-GCM and
/// ChaCha20-Poly1305: the same bytes after the caller's prefix, the prefix untouched, for
/// empty, odd and block-multiple lengths; and the result opens.
///
/// # Panics
/// When they differ (a test helper).
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test helper")]
pub(crate) fn assert_seal_append_matches_in_place(provider: &dyn CryptoProvider) {
    use keychain_core::KeyAlgorithm;
    for (alg, len) in [
        (KeyAlgorithm::Aes128Gcm, 16),
        (KeyAlgorithm::Aes256Gcm, 32),
        (KeyAlgorithm::ChaCha20Poly1305, 32),
    ] {
        let key = provider.aead_key(alg, &vec![9u8; len]).unwrap();
        assert_one_seal_append(key.as_ref(), alg.as_str());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test helper")]
fn assert_one_seal_append(key: &dyn AeadKey, what: &str) {
    let nonce = [3u8; 12];
    for size in [0usize, 1, 17, 1024] {
        let plaintext: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut appended = b"HEADER".to_vec();
        key.seal_append(&nonce, b"aad", &plaintext, &mut appended)
            .unwrap();
        let mut in_place = b"HEADER".to_vec();
        in_place.extend_from_slice(&plaintext);
        key.seal_in_place(&nonce, b"aad", &mut in_place, 6).unwrap();
        assert_eq!(appended, in_place, "{what} {size}");
        assert_eq!(&appended[..6], b"HEADER");
        assert_eq!(appended.len(), 6 + size + crate::TAG_LEN);
        let opened = key.open(&nonce, b"aad", &appended[6..]).unwrap();
        assert_eq!(opened.expose(), plaintext.as_slice());
    }
}
