//! Signing and verifying data that arrives as a stream or as a caller's digest: which scheme,
//! and what reaches the backend. [`crate::BackendExt`] builds on these; so can a caller that
//! verifies with a public key alone.

use std::io::Read;

use crate::algorithm::{HashAlg, KeyAlgorithm, SignatureScheme};
use crate::error::{Error, Result};
use crate::name::KeyVersion;
use crate::signature::SignInput;

/// The default for [`SignOptions::max_message`]: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// How [`crate::BackendExt::sign_reader`] and its siblings pick a scheme and read a message.
///
/// ```
/// use keychain_core::{HashAlg, SignOptions};
/// let options = SignOptions::new().with_hash(HashAlg::Sha384);
/// assert_eq!(options.hash, Some(HashAlg::Sha384));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignOptions {
    /// The scheme; `None` for the key's default (see [`SignatureScheme::select`]).
    pub scheme: Option<SignatureScheme>,
    /// The hash to use in place of the default scheme's (ignored when `scheme` is given and for
    /// Ed25519); for a caller's digest, the hash that made it.
    pub hash: Option<HashAlg>,
    /// The longest message read whole. Hash-based schemes stream any length through the hash;
    /// Ed25519 signs the whole message, which must fit in memory.
    pub max_message: u64,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            scheme: None,
            hash: None,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

impl SignOptions {
    /// The key's default scheme, messages up to [`DEFAULT_MAX_MESSAGE`] read whole.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signs with `scheme`.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Option<SignatureScheme>) -> Self {
        self.scheme = scheme;
        self
    }

    /// Uses `hash` (see [`SignOptions::hash`]).
    #[must_use]
    pub fn with_hash(mut self, hash: impl Into<Option<HashAlg>>) -> Self {
        self.hash = hash.into();
        self
    }

    /// Reads messages whole up to `max` bytes.
    #[must_use]
    pub fn with_max_message(mut self, max: u64) -> Self {
        self.max_message = max;
        self
    }

    /// The scheme for a key of `algorithm`.
    ///
    /// # Errors
    /// As [`SignatureScheme::select`].
    pub fn scheme_for(&self, algorithm: KeyAlgorithm) -> Result<SignatureScheme> {
        SignatureScheme::select(algorithm, self.scheme, self.hash)
    }
}

/// What a backend signs or a verifier checks, owned: a digest for hash-based schemes (made by
/// streaming the message through the hash), the whole message for Ed25519.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignPayload {
    /// A digest made with the hash.
    Digest(HashAlg, Vec<u8>),
    /// The whole message (Ed25519).
    Message(Vec<u8>),
}

impl SignPayload {
    /// Reads `reader` for `scheme`: through its hash, or whole (at most `max_message` bytes) for
    /// Ed25519. Reads on the calling thread.
    ///
    /// ```
    /// use keychain_core::{HashAlg, SignPayload, SignatureScheme};
    /// let mut message: &[u8] = b"hello";
    /// let p = SignPayload::read(SignatureScheme::Ecdsa(HashAlg::Sha256), &mut message, 1024).unwrap();
    /// assert_eq!(p, SignPayload::Digest(HashAlg::Sha256, HashAlg::Sha256.digest(b"hello")));
    /// ```
    ///
    /// # Errors
    /// The reader's errors as [`Error`]s (by I/O kind, with "cannot read the message");
    /// [`crate::ErrorKind::InvalidInput`] when an Ed25519 message exceeds `max_message`.
    pub fn read(scheme: SignatureScheme, reader: &mut dyn Read, max_message: u64) -> Result<Self> {
        let read_error = |e: std::io::Error| Error::from(e).with_context("cannot read the message");
        match scheme.hash() {
            Some(hash) => Ok(Self::Digest(
                hash,
                hash.digest_reader(reader).map_err(read_error)?,
            )),
            None => {
                let mut message = Vec::new();
                reader
                    .take(max_message.saturating_add(1))
                    .read_to_end(&mut message)
                    .map_err(read_error)?;
                if u64::try_from(message.len()).unwrap_or(u64::MAX) > max_message {
                    return Err(Error::invalid_input(format!(
                        "the message is larger than {}, the most read whole: Ed25519 signs the \
                         whole message in one piece (ECDSA and RSA keys stream messages of any \
                         size through their hash)",
                        size(max_message)
                    )));
                }
                Ok(Self::Message(message))
            }
        }
    }

    /// A digest a caller made, for `scheme`: made with `hash` when given, else with the scheme's
    /// hash; its length must fit the hash.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for Ed25519 (it signs messages, not digests) and for
    /// a digest of the wrong length.
    pub fn digest(scheme: SignatureScheme, hash: Option<HashAlg>, digest: Vec<u8>) -> Result<Self> {
        let hash = hash.or(scheme.hash()).ok_or_else(|| {
            Error::invalid_input(format!(
                "{scheme} signs whole messages, not digests: give the message"
            ))
        })?;
        if digest.len() != hash.output_len() {
            return Err(Error::invalid_input(format!(
                "a {hash} digest is {} bytes, got {}",
                hash.output_len(),
                digest.len()
            )));
        }
        Ok(Self::Digest(hash, digest))
    }

    /// As the [`SignInput`] that [`crate::Backend::sign`] and [`crate::verify`] take.
    pub fn as_input(&self) -> SignInput<'_> {
        match self {
            Self::Digest(hash, digest) => SignInput::digest(*hash, digest),
            Self::Message(message) => SignInput::message(message),
        }
    }
}

/// `n` bytes, in MiB when it is a whole number of them.
fn size(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// What [`crate::BackendExt::verify_reader`] found: the key version that made the signature and
/// the scheme it was checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The version whose public key verifies the signature.
    pub version: KeyVersion,
    /// The scheme.
    pub scheme: SignatureScheme,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn payloads_follow_the_scheme() {
        let mut m: &[u8] = b"message";
        assert_eq!(
            SignPayload::read(SignatureScheme::Ed25519, &mut m, 7).unwrap(),
            SignPayload::Message(b"message".to_vec())
        );
        let mut m: &[u8] = b"message";
        let e = SignPayload::read(SignatureScheme::Ed25519, &mut m, 6).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let s = SignatureScheme::RsaPss(HashAlg::Sha384);
        assert_eq!(
            SignPayload::digest(s, None, vec![0; 32])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert!(SignPayload::digest(s, Some(HashAlg::Sha256), vec![0; 32]).is_ok());
        assert_eq!(
            SignPayload::digest(SignatureScheme::Ed25519, None, vec![0; 32])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn options_pick_the_default_scheme_with_the_hash() {
        let o = SignOptions::new().with_hash(HashAlg::Sha512);
        assert_eq!(
            o.scheme_for(KeyAlgorithm::Rsa2048).unwrap(),
            SignatureScheme::RsaPkcs1v15(HashAlg::Sha512)
        );
        assert_eq!(
            o.scheme_for(KeyAlgorithm::Ed25519).unwrap(),
            SignatureScheme::Ed25519
        );
        assert_eq!(
            o.scheme_for(KeyAlgorithm::Aes256Gcm).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
