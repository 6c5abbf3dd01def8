//! How key names and versions map to PKCS#11 object attributes:
//!
//! - `CKA_LABEL` = the name, exactly (so `pkcs11-tool --list-objects` shows it);
//! - `CKA_ID` = 16 bytes: the version as a big-endian `u32`, then 12 random bytes. The ID links
//!   the objects of one version; the random part keeps IDs unique on the token even when a name
//!   is deleted and created again.
//!
//! Objects whose label is not a valid key name or whose ID is not 16 bytes with a non-zero
//! version are not keychain's and are ignored.

use keychain_core::KeyVersion;

/// Length of a keychain `CKA_ID`.
pub(crate) const ID_LEN: usize = 16;

/// The `CKA_ID` of version `version`, with `random` (12 bytes from the token's generator).
pub(crate) fn make_id(version: KeyVersion, random: &[u8]) -> Vec<u8> {
    let mut id = Vec::with_capacity(ID_LEN);
    id.extend_from_slice(&version.to_be_bytes());
    id.extend_from_slice(&random[..ID_LEN - 4]);
    id
}

/// The version in a keychain `CKA_ID`, `None` for IDs that are not keychain's.
pub(crate) fn version_of(id: &[u8]) -> Option<KeyVersion> {
    if id.len() != ID_LEN {
        return None;
    }
    let v = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    (v != 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_versions() {
        let id = make_id(3, &[0xab; 12]);
        assert_eq!(id.len(), ID_LEN);
        assert_eq!(version_of(&id), Some(3));
        assert_eq!(version_of(&make_id(0, &[1; 12])), None);
        assert_eq!(version_of(&[1, 2, 3]), None);
    }
}
