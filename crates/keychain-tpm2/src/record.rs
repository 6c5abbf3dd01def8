//! The key blob record kept in the `BlobStore`: one JSON document per key, under
//! `keys/<name>.json`, with every version's TPM blobs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyInfo, KeyName, KeyUsages, KeyVersion, KeyVersionInfo,
    Protection, Result,
};
use serde::{Deserialize, Serialize};
use tss_esapi::structures::Public;

use crate::convert;

/// The record format this crate writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// The store key of a key's record.
pub(crate) fn store_key(name: &KeyName) -> String {
    format!("keys/{}.json", name.as_str())
}

/// The key name of a store key, if it is a record's.
pub(crate) fn name_of_store_key(key: &str) -> Option<KeyName> {
    let name = key.strip_prefix("keys/")?.strip_suffix(".json")?;
    KeyName::new(name).ok()
}

/// A key: its algorithm, usages and versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    pub(crate) format: u32,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) usages: KeyUsages,
    pub(crate) versions: Vec<Version>,
}

/// One version: the TPM's `TPM2B_PUBLIC` and `TPM2B_PRIVATE` (base64), as `tpm2_load -u/-r`
/// reads them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Version {
    pub(crate) version: KeyVersion,
    /// Seconds since the Unix epoch.
    pub(crate) created: u64,
    pub(crate) public: String,
    pub(crate) private: String,
}

/// A version decoded for use. (Debug shows only the public part.)
pub(crate) struct Blobs {
    pub(crate) public: Public,
    /// The `TPM2B_PRIVATE`'s contents.
    pub(crate) private: Vec<u8>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("key record is damaged: {what}"),
    )
}

impl Record {
    pub(crate) fn new(algorithm: KeyAlgorithm, usages: KeyUsages) -> Self {
        Self {
            format: FORMAT,
            algorithm,
            usages,
            versions: Vec::new(),
        }
    }

    /// Appends the next version.
    pub(crate) fn push(&mut self, public: &Public, private: &[u8]) -> Result<KeyVersion> {
        let version = self.current() + 1;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.versions.push(Version {
            version,
            created,
            public: Base64::encode_string(&convert::public_to_tpm2b(public)?),
            private: Base64::encode_string(&convert::tpm2b(private)),
        });
        Ok(version)
    }

    pub(crate) fn current(&self) -> KeyVersion {
        self.versions.last().map_or(0, |v| v.version)
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let record: Self = serde_json::from_slice(bytes).map_err(corrupt)?;
        if record.format != FORMAT {
            return Err(Error::unsupported(format!(
                "key record format {} (this version reads {FORMAT})",
                record.format
            )));
        }
        if record.versions.is_empty()
            || record
                .versions
                .windows(2)
                .any(|w| w[0].version >= w[1].version)
        {
            return Err(corrupt("versions missing or out of order"));
        }
        Ok(record)
    }

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("encoding key record: {e}")))
    }

    /// The blobs of `version` (the newest when `None`), checked against the record's algorithm.
    pub(crate) fn blobs(&self, version: Option<KeyVersion>) -> Result<(KeyVersion, Blobs)> {
        let v = match version {
            None => self.versions.last(),
            Some(n) => self.versions.iter().find(|v| v.version == n),
        }
        .ok_or_else(|| Error::not_found(format!("no version {}", version.unwrap_or_default())))?;
        Ok((v.version, self.decode(v)?))
    }

    fn decode(&self, v: &Version) -> Result<Blobs> {
        let public = Base64::decode_vec(&v.public).map_err(corrupt)?;
        let private = Base64::decode_vec(&v.private).map_err(corrupt)?;
        let public = convert::public_from_tpm2b(&public)?;
        let private = convert::from_tpm2b(&private, "TPM2B_PRIVATE")?.to_vec();
        let matches = if self.algorithm.is_symmetric() {
            matches!(public, Public::KeyedHash { .. })
        } else {
            convert::algorithm_of(&public) == Some(self.algorithm)
        };
        if !matches {
            return Err(corrupt(format!(
                "version {} is not a {} key",
                v.version, self.algorithm
            )));
        }
        Ok(Blobs { public, private })
    }

    /// Every version's private blob (to drop them from the loaded-key cache).
    pub(crate) fn privates(&self) -> Vec<Vec<u8>> {
        self.versions
            .iter()
            .filter_map(|v| self.decode(v).ok().map(|b| b.private))
            .collect()
    }

    pub(crate) fn info(&self, name: &KeyName) -> Result<KeyInfo> {
        let mut versions = Vec::with_capacity(self.versions.len());
        for v in &self.versions {
            let public_key = if self.algorithm.is_symmetric() {
                None
            } else {
                Some(convert::public_key(
                    self.algorithm,
                    &self.decode(v)?.public,
                )?)
            };
            versions.push(KeyVersionInfo::new(
                v.version,
                Some(UNIX_EPOCH + Duration::from_secs(v.created)),
                public_key,
            ));
        }
        Ok(KeyInfo::new(
            name.clone(),
            self.algorithm,
            self.usages,
            Protection::Hardware,
            false,
            versions,
        ))
    }
}

/// A record with its versions decoded, as the backend caches it.
pub(crate) struct Entry {
    pub(crate) record: Record,
    /// Each version's blobs; `None` for one that does not decode (its error comes from
    /// [`Record::blobs`] again when it is asked for).
    versions: Vec<(KeyVersion, Option<Arc<Blobs>>)>,
    pub(crate) read_at: Instant,
}

impl Entry {
    pub(crate) fn new(record: Record) -> Self {
        let versions = record
            .versions
            .iter()
            .map(|v| (v.version, record.decode(v).ok().map(Arc::new)))
            .collect();
        Self {
            record,
            versions,
            read_at: Instant::now(),
        }
    }

    /// The blobs of `version` (the newest when `None`).
    pub(crate) fn blobs(&self, version: Option<KeyVersion>) -> Result<(KeyVersion, Arc<Blobs>)> {
        let found = match version {
            None => self.versions.last(),
            Some(n) => self.versions.iter().find(|(v, _)| *v == n),
        };
        match found {
            Some((v, Some(blobs))) => Ok((*v, Arc::clone(blobs))),
            _ => self.record.blobs(version).map(|(v, b)| (v, Arc::new(b))),
        }
    }
}

#[cfg(test)]
mod tests {
    use keychain_core::KeyUsage;

    use super::*;

    #[test]
    fn store_keys_round_trip() {
        let name = KeyName::new("signer_1").unwrap();
        assert_eq!(store_key(&name), "keys/signer_1.json");
        assert_eq!(name_of_store_key(&store_key(&name)), Some(name));
        assert_eq!(name_of_store_key("keys/x.tmp"), None);
        assert_eq!(name_of_store_key("other/x.json"), None);
    }

    #[test]
    fn damaged_records_are_integrity_errors() {
        let template = convert::key_template(KeyAlgorithm::EcP256, KeyUsage::Sign.into()).unwrap();
        let mut record = Record::new(KeyAlgorithm::EcP256, KeyUsage::Sign.into());
        record.push(&template, b"private").unwrap();
        let bytes = record.to_bytes().unwrap();
        let parsed = Record::parse(&bytes).unwrap();
        let (v, blobs) = parsed.blobs(None).unwrap();
        assert_eq!(v, 1);
        assert_eq!(blobs.private, b"private");
        assert_eq!(
            parsed.blobs(Some(2)).unwrap_err().kind(),
            ErrorKind::NotFound
        );

        assert_eq!(
            Record::parse(&bytes[..bytes.len() / 2]).unwrap_err().kind(),
            ErrorKind::Integrity
        );
        let mut other = parsed.clone();
        other.algorithm = KeyAlgorithm::EcP384;
        assert_eq!(other.blobs(None).unwrap_err().kind(), ErrorKind::Integrity);
        let mut bad = parsed.clone();
        bad.versions[0].public = "!!".into();
        assert_eq!(bad.blobs(None).unwrap_err().kind(), ErrorKind::Integrity);
        let mut future = parsed;
        future.format = 9;
        assert_eq!(
            Record::parse(&future.to_bytes().unwrap())
                .unwrap_err()
                .kind(),
            ErrorKind::Unsupported
        );
        let mut empty = Record::new(KeyAlgorithm::EcP256, KeyUsage::Sign.into());
        empty.versions.clear();
        assert_eq!(
            Record::parse(&empty.to_bytes().unwrap())
                .unwrap_err()
                .kind(),
            ErrorKind::Integrity
        );
    }
}
