//! The self-describing AEAD ciphertext format shared by software backends, on keychain's one
//! ciphertext frame ([`CiphertextFrame`]).

use keychain_core::support::CiphertextFrame;
use keychain_core::{Error, ErrorKind, KeyVersion, Result};

/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;

const MAGIC: u8 = 0x4b; // 'K'
/// Format 1: the whole header (nonce included) is the AAD prefix. Still opened, never written.
const FORMAT_V1: u8 = 1;
/// Format 2: the AAD prefix is the magic, format and key version; the nonce is left out of it
/// because AES-GCM authenticates its nonce already. One GHASH block less per message than
/// format 1 for AADs up to 10 bytes.
const FORMAT_V2: u8 = 2;
/// The frame: `0x4b ‖ format ‖ key version (u32 BE) ‖ payload`, the payload being the nonce,
/// the ciphertext and the tag.
const FRAME: CiphertextFrame = CiphertextFrame {
    magic: Some(MAGIC),
    formats: &[FORMAT_V1, FORMAT_V2],
    min_payload: NONCE_LEN + TAG_LEN,
};
/// Length of the part of a format-2 header that is authenticated as the AAD prefix: the frame's
/// header (magic, format, key version).
pub const AUTHENTICATED_LEN: usize = FRAME.header_len();
/// Length of the ciphertext header (format bytes, key version, nonce).
pub const HEADER_LEN: usize = AUTHENTICATED_LEN + NONCE_LEN;

/// A parsed self-describing ciphertext: `0x4b 0x02 | key version (u32 BE) | nonce (12) | ct || tag`
/// (format 2, written) or `0x4b 0x01 | ...` (format 1, opened).
///
/// The header is authenticated: its first six bytes (format 2; the whole header in format 1)
/// are prepended to the caller's AAD when sealing, so changing the version or format byte makes
/// decryption fail with `Integrity`, and the nonce is authenticated by AES-GCM itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AeadCiphertext<'a> {
    /// The key version that sealed it.
    pub key_version: KeyVersion,
    /// The nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub body: &'a [u8],
    header: &'a [u8],
}

impl<'a> AeadCiphertext<'a> {
    /// The header bytes for `key_version` and `nonce`.
    pub fn header(key_version: KeyVersion, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        Self::write_header(&mut h, key_version, nonce);
        h
    }

    /// Appends the header for `key_version` and `nonce` to `out`.
    pub fn write_header(out: &mut Vec<u8>, key_version: KeyVersion, nonce: &[u8; NONCE_LEN]) {
        out.extend_from_slice(&Self::header_array(key_version, nonce));
    }

    /// The header for `key_version` and `nonce`, on the stack: the frame's header (format 2)
    /// followed by the nonce.
    #[inline]
    pub fn header_array(key_version: KeyVersion, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
        let framed = FRAME.header(FORMAT_V2, key_version);
        let mut h = [0u8; HEADER_LEN];
        h[..AUTHENTICATED_LEN].copy_from_slice(&framed[..AUTHENTICATED_LEN]);
        h[AUTHENTICATED_LEN..].copy_from_slice(nonce);
        h
    }

    /// The part of `header` (a whole header, as written or parsed) that is authenticated: the
    /// first [`AUTHENTICATED_LEN`] bytes in format 2, all of it in format 1.
    pub fn authenticated(header: &[u8]) -> &[u8] {
        match header.get(1) {
            Some(&FORMAT_V2) if header.len() >= AUTHENTICATED_LEN => &header[..AUTHENTICATED_LEN],
            _ => header,
        }
    }

    /// The AAD actually given to AES-GCM: the authenticated part of `header` || caller's AAD.
    pub fn full_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
        let prefix = Self::authenticated(header);
        let mut full = Vec::with_capacity(prefix.len().saturating_add(aad.len()));
        full.extend_from_slice(prefix);
        full.extend_from_slice(aad);
        full
    }

    /// Parses a ciphertext.
    ///
    /// # Errors
    /// `Integrity` for anything that is not a whole format-1 or format-2 ciphertext, or that
    /// names key version 0.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let framed = FRAME.parse(bytes)?;
        // The frame checked the payload holds a nonce and a tag.
        let Some((nonce, body)) = framed.payload.split_first_chunk::<NONCE_LEN>() else {
            return Err(Error::new(ErrorKind::Integrity, "ciphertext is too short"));
        };
        Ok(Self {
            key_version: framed.key_version,
            nonce: *nonce,
            body,
            header: &bytes[..HEADER_LEN],
        })
    }

    /// The header bytes of this ciphertext that are authenticated as the AAD prefix (see
    /// [`AeadCiphertext::authenticated`]); [`AeadCiphertext::full_aad`] takes them as they are.
    pub fn header_bytes(&self) -> &'a [u8] {
        Self::authenticated(self.header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects() {
        let nonce = [9u8; NONCE_LEN];
        let mut ct = AeadCiphertext::header(7, &nonce);
        ct.extend_from_slice(&[0u8; TAG_LEN]);
        let parsed = AeadCiphertext::parse(&ct).unwrap();
        assert_eq!(parsed.key_version, 7);
        assert_eq!(parsed.nonce, nonce);
        assert_eq!(parsed.body.len(), TAG_LEN);
        assert_eq!(
            AeadCiphertext::parse(&ct[..ct.len() - 1])
                .unwrap_err()
                .kind(),
            ErrorKind::Integrity
        );
        // Written as format 2: six authenticated bytes.
        assert_eq!(ct[1], FORMAT_V2);
        assert_eq!(parsed.header_bytes(), &ct[..AUTHENTICATED_LEN]);
        assert_eq!(
            AeadCiphertext::full_aad(&ct[..HEADER_LEN], b"aad"),
            [&ct[..AUTHENTICATED_LEN], b"aad"].concat()
        );
        // Format 1 is still read, with the whole header authenticated.
        ct[1] = FORMAT_V1;
        let v1 = AeadCiphertext::parse(&ct).unwrap();
        assert_eq!(v1.header_bytes(), &ct[..HEADER_LEN]);
        for unknown in [0u8, 3, 0xff] {
            ct[1] = unknown;
            assert_eq!(
                AeadCiphertext::parse(&ct).unwrap_err().kind(),
                ErrorKind::Integrity
            );
        }
    }

    /// A format-2 ciphertext as written, byte for byte, and a format-1 one as still read: the
    /// layout may not change under stored ciphertexts.
    #[test]
    #[cfg(any(feature = "aws-lc-rs", feature = "rustcrypto"))]
    fn fixed_ciphertexts() {
        const V2: &str = "4b0201020304000102030405060708090a0b\
                          6ebbe8bed94d9b65d02813e0b0a3bb42d49f79cbb24cfdab";
        const V1: &str = "4b0101020304000102030405060708090a0b\
                          6ebbe8bed94d9b655d7b14d9c36ce8b6a2cbb4b24bc7b555";
        #[cfg(feature = "aws-lc-rs")]
        let provider = crate::AwsLcProvider::new();
        #[cfg(not(feature = "aws-lc-rs"))]
        let provider = crate::RustCryptoProvider::new();
        let key = crate::CryptoProvider::aead_key(
            &provider,
            keychain_core::KeyAlgorithm::Aes256Gcm,
            &[0x42; 32],
        )
        .unwrap();
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| i as u8);

        // Written: format 2, the six frame bytes authenticated.
        let header = AeadCiphertext::header_array(0x0102_0304, &nonce);
        assert_eq!(
            header[..],
            [0x4b, 2, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
        assert_eq!(AeadCiphertext::header(0x0102_0304, &nonce), header);
        let mut ct = header.to_vec();
        key.seal_append(
            &nonce,
            &AeadCiphertext::full_aad(&header, b"aad"),
            b"keychain",
            &mut ct,
        )
        .unwrap();
        assert_eq!(hex::encode(&ct), V2);

        // Read: both formats, each with its own authenticated prefix.
        for (vector, authenticated) in [(V2, AUTHENTICATED_LEN), (V1, HEADER_LEN)] {
            let bytes = hex::decode(vector).unwrap();
            let parsed = AeadCiphertext::parse(&bytes).unwrap();
            assert_eq!(parsed.key_version, 0x0102_0304);
            assert_eq!(parsed.nonce, nonce);
            assert_eq!(parsed.body, &bytes[HEADER_LEN..]);
            assert_eq!(parsed.header_bytes(), &bytes[..authenticated]);
            let aad = AeadCiphertext::full_aad(parsed.header_bytes(), b"aad");
            let opened = key.open(&parsed.nonce, &aad, parsed.body).unwrap();
            assert_eq!(opened.expose(), b"keychain");
        }

        // Key version 0 was never written.
        let mut zero = hex::decode(V2).unwrap();
        zero[2..6].fill(0);
        assert_eq!(
            AeadCiphertext::parse(&zero).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }
}
