//! M-of-N custody of a whole DKEK: Shamir over GF(2⁸) (`vsss-rs`), for distribution to
//! administrators. Unlike the card's XOR shares, any M of the N custody shares rebuild the DKEK.

use std::fmt;

use keychain_core::{Error, ErrorKind, Result, SecretString};
use vsss_rs::{Gf256, IdentifierGf256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::dkek::key::{DKEK_LEN, Dkek, Kcv};

const PREFIX: &str = "keychain-dkek-custody-v1";

/// One administrator's custody share of a DKEK: its threshold M, its ID (1..=N), the KCV of the
/// DKEK it belongs to, and 32 secret bytes. Zeroized on drop, `[redacted]` in `Debug`.
///
/// As text (for paper, a password manager, a sealed envelope):
/// `keychain-dkek-custody-v1:M:ID:KCV:64-hex-digits`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct CustodyShare {
    threshold: u8,
    id: u8,
    kcv: [u8; 8],
    value: [u8; DKEK_LEN],
}

impl fmt::Debug for CustodyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodyShare")
            .field("threshold", &self.threshold)
            .field("id", &self.id)
            .field("kcv", &self.kcv())
            .field("value", &format_args!("[redacted]"))
            .finish()
    }
}

impl CustodyShare {
    /// How many shares rebuild the DKEK.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// This share's ID, 1..=N.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The KCV of the DKEK this share belongs to.
    pub fn kcv(&self) -> Kcv {
        Kcv::from_bytes(self.kcv)
    }

    /// The share as one line of text. Secret: hand it to its administrator only.
    pub fn to_text(&self) -> SecretString {
        let value = Zeroizing::new(hex::encode(self.value));
        SecretString::new(format!(
            "{PREFIX}:{}:{}:{}:{}",
            self.threshold,
            self.id,
            self.kcv(),
            value.as_str()
        ))
    }

    /// Reads the text form (surrounding whitespace is ignored).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if it is not a custody share.
    pub fn from_text(text: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_input(format!(
                "not a DKEK custody share (expected {PREFIX}:M:ID:KCV:HEX)"
            ))
        };
        let mut parts = text.trim().split(':');
        if parts.next() != Some(PREFIX) {
            return Err(bad());
        }
        let threshold: u8 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let id: u8 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let kcv: Kcv = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let hex_value = parts.next().ok_or_else(bad)?;
        if parts.next().is_some() || threshold < 2 || id == 0 {
            return Err(bad());
        }
        let mut share = Self {
            threshold,
            id,
            kcv: kcv.to_bytes(),
            value: [0; DKEK_LEN],
        };
        hex::decode_to_slice(hex_value, &mut share.value).map_err(|_| bad())?;
        Ok(share)
    }
}

/// Splits `dkek` into `total` custody shares, any `threshold` of which rebuild it. Share IDs are
/// 1..=total; each share carries the DKEK's KCV so a rebuild can be checked.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] unless `2 <= threshold <= total <= 255`.
pub fn split_dkek(dkek: &Dkek, threshold: u8, total: u8) -> Result<Vec<CustodyShare>> {
    if threshold < 2 || threshold > total {
        return Err(Error::invalid_input(format!(
            "a {threshold}-of-{total} split is not possible: need 2 <= threshold <= total <= 255"
        )));
    }
    let rng = rand_core::UnwrapErr(getrandom::SysRng);
    let ids = (1..=total).map(|i| IdentifierGf256(Gf256(i)));
    let mut raw = Gf256::split_bytes_with_participant_ids_iter(
        usize::from(threshold),
        usize::from(total),
        dkek.expose(),
        rng,
        ids,
    )
    .map_err(|e| Error::new(ErrorKind::Unexpected, format!("Shamir split failed: {e:?}")))?;
    let kcv = dkek.kcv().to_bytes();
    let shares = raw
        .iter()
        .map(|r| {
            let mut value = [0u8; DKEK_LEN];
            value.copy_from_slice(&r[1..]);
            CustodyShare {
                threshold,
                id: r[0],
                kcv,
                value,
            }
        })
        .collect();
    raw.iter_mut().for_each(|r| r.zeroize());
    Ok(shares)
}

/// Rebuilds a DKEK from at least M custody shares and checks it against the KCV they carry.
/// The result lives in memory only: [`Dkek`] has no way to be written out.
///
/// # Errors
/// - [`ErrorKind::InvalidInput`]: fewer shares than the threshold, shares of different DKEKs or
///   thresholds, or a repeated ID;
/// - [`ErrorKind::Integrity`]: the rebuilt DKEK does not have the KCV (a share is damaged).
pub fn reconstruct_dkek(shares: &[CustodyShare]) -> Result<Dkek> {
    let first = shares
        .first()
        .ok_or_else(|| Error::invalid_input("no custody shares given"))?;
    for (i, s) in shares.iter().enumerate() {
        if s.kcv != first.kcv || s.threshold != first.threshold {
            return Err(Error::invalid_input(format!(
                "custody shares of different DKEKs or splits given (KCV {} and {})",
                first.kcv(),
                s.kcv()
            )));
        }
        if shares[..i].iter().any(|o| o.id == s.id) {
            return Err(Error::invalid_input(format!(
                "custody share {} is given twice",
                s.id
            )));
        }
    }
    if shares.len() < usize::from(first.threshold) {
        return Err(Error::invalid_input(format!(
            "{} custody shares given, {} needed",
            shares.len(),
            first.threshold
        )));
    }
    let mut raw: Vec<Vec<u8>> = shares
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(DKEK_LEN + 1);
            v.push(s.id);
            v.extend_from_slice(&s.value);
            v
        })
        .collect();
    let combined = Gf256::combine_bytes(&raw);
    raw.iter_mut().for_each(|r| r.zeroize());
    let bytes =
        Zeroizing::new(combined.map_err(|e| {
            Error::invalid_input(format!("the custody shares do not combine: {e:?}"))
        })?);
    let dkek = Dkek::from_slice(&bytes)?;
    let expected = first.kcv();
    if dkek.kcv() != expected {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "the rebuilt DKEK has KCV {}, the shares say {expected}: a share is damaged",
                dkek.kcv()
            ),
        ));
    }
    Ok(dkek)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn dkek() -> Dkek {
        Dkek::from_bytes(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn any_m_rebuild() {
        let shares = split_dkek(&dkek(), 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        assert_eq!(
            shares.iter().map(CustodyShare::id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        for pick in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let some: Vec<CustodyShare> = pick
                .iter()
                .map(|&i| CustodyShare::from_text(shares[i].to_text().expose()).unwrap())
                .collect();
            let back = reconstruct_dkek(&some).unwrap();
            assert_eq!(back.kcv().to_string(), "630DCD2966C43366");
        }
        let two: Vec<CustodyShare> = shares[..2]
            .iter()
            .map(|s| CustodyShare::from_text(s.to_text().expose()).unwrap())
            .collect();
        assert_eq!(
            reconstruct_dkek(&two).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn damaged_share_fails_kcv() {
        let shares = split_dkek(&dkek(), 2, 3).unwrap();
        let mut a = CustodyShare::from_text(shares[0].to_text().expose()).unwrap();
        a.value[5] ^= 1;
        let b = CustodyShare::from_text(shares[1].to_text().expose()).unwrap();
        assert_eq!(
            reconstruct_dkek(&[a, b]).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }

    #[test]
    fn bad_parameters_and_text() {
        assert!(split_dkek(&dkek(), 1, 3).is_err());
        assert!(split_dkek(&dkek(), 4, 3).is_err());
        assert!(CustodyShare::from_text("keychain-dkek-custody-v1:2:1:00").is_err());
        assert!(CustodyShare::from_text("").is_err());
        let shares = split_dkek(&dkek(), 2, 2).unwrap();
        assert!(format!("{:?}", shares[0]).contains("[redacted]"));
        assert!(!format!("{:?}", shares[0]).contains(&hex::encode(shares[0].value)));
    }
}
