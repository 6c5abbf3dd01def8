//! The 64-byte DKEK share file `sc-hsm-tool --create-dkek-share` writes.

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use keychain_core::{Error, ErrorKind, Result};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::dkek::kdf::Kdf;
use crate::dkek::key::{DKEK_LEN, DkekShare};

const MAGIC: &[u8; 8] = b"Salted__";
/// The last plaintext block: PKCS#7 padding of a 32-byte share is always one full block.
const PAD_BLOCK: [u8; 16] = [0x10; 16];

/// A DKEK share file: `Salted__` ‖ salt(8) ‖ AES-256-CBC(share ‖ 16 × 0x10), 64 bytes in all,
/// with key and IV from [`Kdf`] over the password and salt.
///
/// The file is OpenSSL's `enc` format, so with a KDF count of 1 `openssl enc -d -aes-256-cbc
/// -md md5 -pass pass:PW` decrypts it; files made by the tool use 10,000,000 rounds.
///
/// The bytes are encrypted and may be stored and printed; the share inside is secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareFile {
    salt: [u8; 8],
    ciphertext: [u8; 48],
}

impl std::fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareFile")
            .field("salt", &hex::encode(self.salt))
            .finish_non_exhaustive()
    }
}

impl ShareFile {
    /// The length of every share file.
    pub const LEN: usize = 64;

    /// Checks the layout of a share file read from disk.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `bytes` is not 64 bytes long or does not start with
    /// `Salted__`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != Self::LEN {
            return Err(Error::invalid_input(format!(
                "a DKEK share file is {} bytes, this one has {}",
                Self::LEN,
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(Error::invalid_input(
                "not a DKEK share file: it does not start with \"Salted__\"",
            ));
        }
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&bytes[8..16]);
        let mut ciphertext = [0u8; 48];
        ciphertext.copy_from_slice(&bytes[16..]);
        Ok(Self { salt, ciphertext })
    }

    /// The 64 file bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.salt);
        out[16..].copy_from_slice(&self.ciphertext);
        out
    }

    /// The random salt.
    pub fn salt(&self) -> [u8; 8] {
        self.salt
    }

    /// Encrypts `share` under `password` with a fresh random salt.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty password; [`ErrorKind::Unexpected`] if the random
    /// generator fails.
    pub fn seal(share: &DkekShare, password: &[u8], kdf: &Kdf) -> Result<Self> {
        let mut salt = [0u8; 8];
        crate::dkek::fill_random(&mut salt)?;
        Self::seal_with_salt(share, password, salt, kdf)
    }

    /// Encrypts `share` under `password` with the given salt (for test vectors; use
    /// [`ShareFile::seal`] otherwise).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty password.
    pub fn seal_with_salt(
        share: &DkekShare,
        password: &[u8],
        salt: [u8; 8],
        kdf: &Kdf,
    ) -> Result<Self> {
        if password.is_empty() {
            return Err(Error::invalid_input(
                "a share file password cannot be empty",
            ));
        }
        let key_iv = kdf.derive(password, &salt);
        let mut buf = Zeroizing::new([0u8; 48]);
        buf[..DKEK_LEN].copy_from_slice(share.expose());
        buf[DKEK_LEN..].copy_from_slice(&PAD_BLOCK);
        let enc = cbc::Encryptor::<Aes256>::new_from_slices(&key_iv[..32], &key_iv[32..])
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC key or IV length"))?;
        enc.encrypt_padded::<NoPadding>(&mut buf[..], 48)
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC block length"))?;
        let mut ciphertext = [0u8; 48];
        ciphertext.copy_from_slice(&buf[..]);
        Ok(Self { salt, ciphertext })
    }

    /// Decrypts the share with `password`; `kdf` must use the count the file was made with
    /// (10,000,000 for the tool's files, see [`Kdf::default`]).
    ///
    /// # Errors
    /// [`ErrorKind::Unauthenticated`] if the password (or the count) is wrong: the decrypted
    /// padding block is not 16 × 0x10, which a wrong key produces with probability 1 − 2⁻¹²⁸.
    /// A file altered after writing is indistinguishable from a wrong password.
    pub fn open(&self, password: &[u8], kdf: &Kdf) -> Result<DkekShare> {
        let key_iv = kdf.derive(password, &self.salt);
        let mut buf = Zeroizing::new(self.ciphertext);
        let dec = cbc::Decryptor::<Aes256>::new_from_slices(&key_iv[..32], &key_iv[32..])
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC key or IV length"))?;
        dec.decrypt_padded::<NoPadding>(&mut buf[..])
            .map_err(|_| Error::new(ErrorKind::Unexpected, "AES-256-CBC block length"))?;
        if !bool::from(buf[DKEK_LEN..].ct_eq(&PAD_BLOCK)) {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "wrong password for the DKEK share file (or a damaged file)",
            ));
        }
        DkekShare::from_slice(&buf[..DKEK_LEN])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn counting() -> DkekShare {
        DkekShare::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn count_one_vector() {
        let kdf = Kdf::with_rounds(1).unwrap();
        let file =
            ShareFile::seal_with_salt(&counting(), b"testpw", [1, 2, 3, 4, 5, 6, 7, 8], &kdf)
                .unwrap();
        let bytes = file.to_bytes();
        assert_eq!(&bytes[..8], b"Salted__");
        assert_eq!(hex::encode(&bytes[8..16]), "0102030405060708");
        assert_eq!(
            hex::encode_upper(&bytes[16..]),
            "AFB20DADE6D26FE9DA281EA4B2B1D4850EE1E0CC9046237C43F632A39200C3B4\
             AB7A881F6715052AEBFD866A39C92BCD"
        );
        let back = ShareFile::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.open(b"testpw", &kdf).unwrap().expose(),
            counting().expose()
        );
    }

    #[test]
    fn wrong_password_is_unauthenticated() {
        let kdf = Kdf::with_rounds(10).unwrap();
        let file = ShareFile::seal(&counting(), b"right", &kdf).unwrap();
        let err = file.open(b"wrong", &kdf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        let err = file
            .open(b"right", &Kdf::with_rounds(11).unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }

    #[test]
    fn bad_layout_is_invalid_input() {
        let kdf = Kdf::with_rounds(1).unwrap();
        let bytes = ShareFile::seal(&counting(), b"pw", &kdf)
            .unwrap()
            .to_bytes();
        assert_eq!(
            ShareFile::from_bytes(&bytes[..63]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            ShareFile::from_bytes(&long).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let mut bad = bytes;
        bad[0] = b's';
        assert_eq!(
            ShareFile::from_bytes(&bad).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(ShareFile::seal(&counting(), b"", &kdf).is_err());
    }
}
