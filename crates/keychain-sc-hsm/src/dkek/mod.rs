//! The device-free DKEK toolkit: everything about the SmartCard-HSM's key backup formats that
//! needs no card.
//!
//! - [`Dkek`], [`DkekShare`], [`Kcv`]: the key, its N-of-N XOR shares, its check value;
//! - [`ShareFile`] with [`Kdf`]: the 64-byte password-encrypted share files of `sc-hsm-tool`;
//! - [`split_password`], [`parse_sheets`], [`reconstruct_password`]: the tool's t-of-n protection
//!   of one share file's password;
//! - [`unwrap_key`], [`wrap_key`], [`inspect`], [`WrapFile`]: wrapped-key blobs and the
//!   `--wrap-key` file;
//! - [`split_dkek`], [`reconstruct_dkek`]: M-of-N custody of a whole DKEK.

mod blob;
mod custody;
mod kdf;
mod key;
mod password_shares;
mod share_file;
mod wrap_file;

pub use self::blob::{
    BlobHeader, BlobKeyType, OID_AES, OID_EC, OID_RSA, RsaForm, UnwrappedKey, WrapOptions, inspect,
    unwrap_key, wrap_key,
};
pub use self::custody::{CustodyShare, reconstruct_dkek, split_dkek};
pub use self::kdf::{DEFAULT_KDF_ROUNDS, Kdf, KdfProgress};
pub use self::key::{DKEK_LEN, Dkek, DkekShare, Kcv};
pub use self::password_shares::{
    PASSWORD_LEN, PasswordShare, ShareIdRadix, format_sheets, parse_sheets, reconstruct_password,
    split_password, split_with,
};
pub use self::share_file::ShareFile;
pub use self::wrap_file::WrapFile;

/// Fills `buf` from the operating system's generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> keychain_core::Result<()> {
    getrandom::fill(buf).map_err(|e| {
        keychain_core::Error::new(
            keychain_core::ErrorKind::Unexpected,
            format!("the system random generator failed: {e}"),
        )
    })
}
