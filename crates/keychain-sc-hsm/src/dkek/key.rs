//! The DKEK, its shares and its key check value.

use std::fmt;
use std::str::FromStr;

use keychain_core::{Error, ErrorKind, Result, SecretBytes};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a DKEK and of each DKEK share, in bytes.
pub const DKEK_LEN: usize = 32;

/// A key check value: the first 8 bytes of SHA-256 of a DKEK (or of a single share taken as a
/// DKEK). Not secret: the card and `sc-hsm-tool` show it so custodians can compare.
///
/// Displays (and parses) as 16 uppercase hex digits, as the tool prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv([u8; 8]);

impl Kcv {
    /// The KCV of 32 key bytes.
    pub fn of(key: &[u8; DKEK_LEN]) -> Self {
        let digest = Sha256::digest(key);
        let mut kcv = [0u8; 8];
        kcv.copy_from_slice(&digest[..8]);
        Self(kcv)
    }

    /// Wraps 8 bytes read from a blob or a device response.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// The 8 bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kcv({self})")
    }
}

impl FromStr for Kcv {
    type Err = Error;

    /// Accepts 16 hex digits in either case, optionally separated by spaces or colons.
    fn from_str(s: &str) -> Result<Self> {
        let digits: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | ':' | '-'))
            .collect();
        let mut kcv = [0u8; 8];
        hex::decode_to_slice(&digits, &mut kcv)
            .map_err(|_| Error::invalid_input("a KCV is 16 hexadecimal digits"))?;
        Ok(Self(kcv))
    }
}

/// One 32-byte DKEK share, as imported into the card with IMPORT DKEK SHARE and stored (encrypted)
/// in a share file. Zeroized on drop, `[redacted]` in `Debug`, not `Clone`.
///
/// The DKEK is the XOR of all shares the device was initialised for (see [`Dkek::combine`]).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DkekShare([u8; DKEK_LEN]);

impl DkekShare {
    /// A fresh random share from the operating system's generator.
    ///
    /// # Errors
    /// [`ErrorKind::Unexpected`] if the generator fails.
    pub fn generate() -> Result<Self> {
        let mut share = Self([0u8; DKEK_LEN]);
        crate::dkek::fill_random(&mut share.0)?;
        Ok(share)
    }

    /// Takes the 32 share bytes.
    pub fn from_bytes(bytes: [u8; DKEK_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies 32 share bytes from a slice.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; DKEK_LEN] = bytes
            .try_into()
            .map_err(|_| Error::invalid_input("a DKEK share is 32 bytes"))?;
        Ok(Self(bytes))
    }

    /// The share bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; DKEK_LEN] {
        &self.0
    }

    /// The KCV of this share alone (what a device initialised for one share would show).
    pub fn kcv(&self) -> Kcv {
        Kcv::of(&self.0)
    }

    /// An explicit copy.
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl fmt::Debug for DkekShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The Device Key Encryption Key: 32 bytes, the XOR of all imported shares. Zeroized on drop,
/// `[redacted]` in `Debug`, not `Clone`, and deliberately without any serialisation: a DKEK is
/// assembled in memory when needed and never written anywhere.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Dkek([u8; DKEK_LEN]);

impl Dkek {
    /// Takes 32 DKEK bytes.
    pub fn from_bytes(bytes: [u8; DKEK_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies 32 DKEK bytes from a slice.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; DKEK_LEN] = bytes
            .try_into()
            .map_err(|_| Error::invalid_input("a DKEK is 32 bytes"))?;
        Ok(Self(bytes))
    }

    /// The DKEK of a device initialised with exactly these shares: their XOR (N-of-N; the order
    /// does not matter, and every share is needed).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `shares` is empty.
    pub fn combine<'a>(shares: impl IntoIterator<Item = &'a DkekShare>) -> Result<Self> {
        let mut dkek = Self([0u8; DKEK_LEN]);
        let mut count = 0usize;
        for share in shares {
            for (d, s) in dkek.0.iter_mut().zip(share.0.iter()) {
                *d ^= s;
            }
            count += 1;
        }
        if count == 0 {
            return Err(Error::invalid_input("at least one DKEK share is needed"));
        }
        Ok(dkek)
    }

    /// The DKEK bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; DKEK_LEN] {
        &self.0
    }

    /// The key check value: the first 8 bytes of SHA-256(DKEK).
    pub fn kcv(&self) -> Kcv {
        Kcv::of(&self.0)
    }

    /// Checks the KCV in constant time.
    ///
    /// # Errors
    /// [`ErrorKind::Unauthenticated`] naming both KCVs if they differ (the shares do not make the
    /// DKEK that was expected).
    pub fn check_kcv(&self, expected: Kcv) -> Result<()> {
        let actual = self.kcv();
        if bool::from(actual.0.ct_eq(&expected.0)) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("the DKEK has KCV {actual}, but {expected} was expected"),
            ))
        }
    }

    /// KENC = SHA-256(DKEK ‖ 00 00 00 01): the AES-256 key that encrypts wrapped keys.
    pub fn kenc(&self) -> SecretBytes {
        SecretBytes::from_slice(self.derive(1).as_slice())
    }

    /// KMAC = SHA-256(DKEK ‖ 00 00 00 02): the AES-256 CMAC key over wrapped keys.
    pub fn kmac(&self) -> SecretBytes {
        SecretBytes::from_slice(self.derive(2).as_slice())
    }

    pub(crate) fn derive(&self, counter: u32) -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(counter.to_be_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&h.finalize());
        out
    }
}

impl From<DkekShare> for Dkek {
    /// A device initialised for one share has that share as its DKEK.
    fn from(share: DkekShare) -> Self {
        Self(share.0)
    }
}

impl fmt::Debug for Dkek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn counting() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn kcv_vectors() {
        assert_eq!(
            Dkek::from_bytes([0; 32]).kcv().to_string(),
            "66687AADF862BD77"
        );
        assert_eq!(
            Dkek::from_bytes(counting()).kcv().to_string(),
            "630DCD2966C43366"
        );
    }

    #[test]
    fn kenc_kmac_vectors() {
        let dkek = Dkek::from_bytes(counting());
        assert_eq!(
            hex::encode_upper(dkek.kenc().expose()),
            "04A6950A06D3E3308AD7D3606EF810EB124E3943404CA746A12C51C7BF776839"
        );
        assert_eq!(
            hex::encode_upper(dkek.kmac().expose()),
            "0F8D842AC9CB62349779A7537A78327D545AAEB33B2D42C7D1DC3680A4B23628"
        );
    }

    #[test]
    fn same_share_twice_is_zero() {
        let s = DkekShare::from_bytes(counting());
        let dkek = Dkek::combine([&s, &s]).unwrap();
        assert_eq!(dkek.kcv().to_string(), "66687AADF862BD77");
    }

    #[test]
    fn combine_is_order_independent() {
        let a = DkekShare::generate().unwrap();
        let b = DkekShare::generate().unwrap();
        let c = DkekShare::generate().unwrap();
        let x = Dkek::combine([&a, &b, &c]).unwrap();
        let y = Dkek::combine([&c, &a, &b]).unwrap();
        assert_eq!(x.expose(), y.expose());
        assert_eq!(
            Dkek::combine([]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn kcv_parses_and_checks() {
        let kcv: Kcv = "63:0d:cd:29:66:c4:33:66".parse().unwrap();
        let dkek = Dkek::from_bytes(counting());
        dkek.check_kcv(kcv).unwrap();
        let err = dkek
            .check_kcv("66687AADF862BD77".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(err.to_string().contains("630DCD2966C43366"));
        assert!(err.to_string().contains("66687AADF862BD77"));
    }

    #[test]
    fn secrets_are_redacted() {
        let dkek = Dkek::from_bytes([0x42; 32]);
        assert_eq!(format!("{dkek:?}"), "[redacted]");
        let share = DkekShare::from_bytes([0x42; 32]);
        assert_eq!(format!("{share:?}"), "[redacted]");
    }
}
