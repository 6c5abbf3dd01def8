//! The records on disk: `<name>/meta.json` for each key, `store.json` for the store. Key files
//! themselves are PKCS#8 PEM, written by `keychain_crypto::pkcs8`.

use std::time::{Duration, UNIX_EPOCH};

use keychain_core::{
    KeyAlgorithm, KeyInfo, KeyName, KeyUsage, KeyUsages, KeyVersion, KeyVersionInfo, Protection,
    PublicKey, Result,
};
use keychain_crypto::pkcs8::PasswordVerifier;
use serde::{Deserialize, Serialize};

use crate::error;

/// A key's metadata file, in its directory.
pub(crate) const META: &str = "meta.json";
/// The `format` of the metadata this version writes and reads.
pub(crate) const META_FORMAT: u32 = 1;
/// The store-wide record: the password verifier. Key names have no `.`, so no key's directory
/// can be called this.
pub(crate) const STORE_RECORD: &str = "store.json";
/// The `format` of the store record this version writes and reads.
pub(crate) const STORE_FORMAT: u32 = 1;

/// The per-key metadata file, `<name>/meta.json`. It is the commit point: a key exists exactly
/// when its metadata does, so creating, rotating and deleting are each one atomic file operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) format: u32,
    pub(crate) name: KeyName,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) usages: KeyUsages,
    pub(crate) exportable: bool,
    pub(crate) versions: Vec<VersionMeta>,
}

/// `store.json`: what the whole store shares.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoreRecord {
    pub(crate) format: u32,
    pub(crate) verifier: PasswordVerifier,
}

/// One version of a key, as its metadata lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VersionMeta {
    pub(crate) version: KeyVersion,
    /// Seconds since the Unix epoch.
    pub(crate) created: u64,
    /// The key file, relative to the key's directory.
    pub(crate) file: String,
    /// PEM; kept here so listing and `key_info` need no password.
    pub(crate) public_key: Option<PublicKey>,
}

/// `<name>/meta.json`.
pub(crate) fn meta_key(name: &KeyName) -> String {
    format!("{name}/{META}")
}

/// The store key of one of `name`'s files.
pub(crate) fn key_file(name: &KeyName, file: &str) -> String {
    format!("{name}/{file}")
}

/// A record as stored: pretty JSON.
pub(crate) fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| error::encoding(&e))
}

impl Meta {
    /// The metadata of `name` from its stored bytes.
    ///
    /// # Errors
    /// `Integrity` when they do not parse or do not [validate](Meta::validate).
    pub(crate) fn parse(name: &KeyName, bytes: &[u8]) -> Result<Self> {
        let meta: Self = serde_json::from_slice(bytes).map_err(|e| error::damaged_meta(name, e))?;
        meta.validate(name)
            .map_err(|why| error::damaged_meta(name, why))?;
        Ok(meta)
    }

    /// The newest version.
    pub(crate) fn current(&self) -> KeyVersion {
        self.versions.last().map_or(1, |v| v.version)
    }

    /// Checks what [`Meta::parse`] cannot leave to serde: versions from 1 up, strictly
    /// increasing, each naming a key file that is a plain name in the key's directory.
    fn validate(&self, name: &KeyName) -> std::result::Result<(), String> {
        if self.format != META_FORMAT {
            return Err(format!("unknown metadata format {}", self.format));
        }
        if &self.name != name {
            return Err(format!("metadata names the key '{}'", self.name));
        }
        if self.versions.is_empty() {
            return Err("metadata lists no versions".to_owned());
        }
        let mut previous = 0;
        for v in &self.versions {
            if v.version <= previous {
                return Err(format!("version {} follows version {previous}", v.version));
            }
            previous = v.version;
            if keychain_storage::validate_key(&v.file).is_err()
                || v.file.contains('/')
                || v.file == META
            {
                return Err(format!("version {} names the file {:?}", v.version, v.file));
            }
        }
        Ok(())
    }

    /// Version `v`, if the key has it.
    pub(crate) fn version(&self, v: KeyVersion) -> Option<&VersionMeta> {
        self.versions.iter().find(|m| m.version == v)
    }

    /// `Ok` when the key was created for `usage`.
    ///
    /// # Errors
    /// `InvalidInput` otherwise.
    pub(crate) fn require_usage(&self, usage: KeyUsage) -> Result<()> {
        if self.usages.contains(usage) {
            Ok(())
        } else {
            Err(error::missing_usage(&self.name, usage))
        }
    }

    /// What `key_info` and `list_keys` report.
    pub(crate) fn info(&self) -> KeyInfo {
        KeyInfo::new(
            self.name.clone(),
            self.algorithm,
            self.usages,
            Protection::Software,
            self.exportable,
            self.versions
                .iter()
                .map(|v| {
                    KeyVersionInfo::new(
                        v.version,
                        UNIX_EPOCH.checked_add(Duration::from_secs(v.created)),
                        v.public_key.clone(),
                    )
                })
                .collect(),
        )
    }
}

impl StoreRecord {
    /// The record from its stored bytes.
    ///
    /// # Errors
    /// `Integrity` when they do not parse or name an unknown format.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let record: Self = serde_json::from_slice(bytes).map_err(error::damaged_store_record)?;
        if record.format != STORE_FORMAT {
            return Err(error::unknown_store_format(record.format));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::{ErrorKind, KeyUsage};

    use super::*;

    fn meta(versions: &[(KeyVersion, &str)]) -> String {
        let versions: Vec<String> = versions
            .iter()
            .map(|(v, f)| {
                format!(r#"{{"version":{v},"created":0,"file":"{f}","public_key":null}}"#)
            })
            .collect();
        format!(
            r#"{{"format":1,"name":"k","algorithm":"aes256-gcm","usages":["encrypt","decrypt"],
                "exportable":false,"versions":[{}]}}"#,
            versions.join(",")
        )
    }

    #[test]
    fn metadata_is_checked_beyond_its_syntax() {
        let name = KeyName::new("k").unwrap();
        let good =
            Meta::parse(&name, meta(&[(1, "v1-a.pem"), (3, "v3-b.pem")]).as_bytes()).unwrap();
        assert_eq!(good.current(), 3);
        assert!(good.version(2).is_none());
        assert!(good.require_usage(KeyUsage::Encrypt).is_ok());
        assert_eq!(
            good.require_usage(KeyUsage::Sign).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let other = KeyName::new("other").unwrap();
        for (bad, on) in [
            (meta(&[]), &name),
            (meta(&[(2, "a"), (2, "b")]), &name),
            (meta(&[(0, "a")]), &name),
            (meta(&[(1, "../x")]), &name),
            (meta(&[(1, "meta.json")]), &name),
            (meta(&[(1, "a")]), &other),
            ("{".to_owned(), &name),
        ] {
            let e = Meta::parse(on, bad.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Integrity, "{bad}: {e}");
        }
    }
}
