//! The self-describing AEAD ciphertext format shared by software backends.

use keychain_core::{Error, ErrorKind, KeyVersion, Result};

/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;

const MAGIC: u8 = 0x4b; // 'K'
const FORMAT_V1: u8 = 1;
/// Length of the ciphertext header (format bytes, key version, nonce).
pub const HEADER_LEN: usize = 2 + 4 + NONCE_LEN;

/// A parsed self-describing ciphertext: `0x4b 0x01 | key version (u32 BE) | nonce (12) | ct || tag`.
///
/// The header is authenticated: it is prepended to the caller's AAD when sealing, so changing
/// the version or format byte makes decryption fail with `Integrity`.
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
        out.extend_from_slice(&[MAGIC, FORMAT_V1]);
        out.extend_from_slice(&key_version.to_be_bytes());
        out.extend_from_slice(nonce);
    }

    /// The AAD actually given to AES-GCM: header || caller's AAD.
    pub fn full_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(header.len() + aad.len());
        full.extend_from_slice(header);
        full.extend_from_slice(aad);
        full
    }

    /// Parses a ciphertext.
    ///
    /// # Errors
    /// `Integrity` for anything that is not a whole v1 ciphertext.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let corrupt = |what: &str| Error::new(ErrorKind::Integrity, format!("ciphertext {what}"));
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(corrupt("is too short"));
        }
        if bytes[0] != MAGIC || bytes[1] != FORMAT_V1 {
            return Err(corrupt("has an unknown format"));
        }
        let key_version = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[6..HEADER_LEN]);
        Ok(Self {
            key_version,
            nonce,
            body: &bytes[HEADER_LEN..],
            header: &bytes[..HEADER_LEN],
        })
    }

    /// The header bytes of this ciphertext (authenticated as AAD prefix).
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header
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
        ct[1] = 2;
        assert_eq!(
            AeadCiphertext::parse(&ct).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }
}
