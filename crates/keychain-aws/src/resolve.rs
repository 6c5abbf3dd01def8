//! What the backend knows of a key: the cached resolution of a name to its newest version's KMS
//! key, how it is read from KMS, and which KMS key a [`KeyRef`] targets.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_kms::types::{KeyState, KeyUsageType};
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyName, KeyRef, KeyUsages, KeyVersion, Result,
};

use crate::backend::AwsBackend;
use crate::error::{BACKEND, map, unexpected};
use crate::keys::{algorithm_of, usages_of};
use crate::naming::{Parsed, key_alias, parse_alias, version_alias};

/// A key as this backend last resolved it: its newest version's KMS key and what it is.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) key_id: String,
    pub(crate) arn: String,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) usages: KeyUsages,
    pub(crate) version: KeyVersion,
    pub(crate) created: Option<SystemTime>,
}

/// What an alias lookup found.
pub(crate) enum Lookup {
    Missing,
    /// The alias points at a key scheduled for deletion (a `delete_key` that stopped half-way).
    PendingDeletion,
    Present(Resolved),
}

pub(crate) fn system_time(dt: Option<&aws_sdk_kms::primitives::DateTime>) -> Option<SystemTime> {
    dt.and_then(|d| SystemTime::try_from(*d).ok())
}

impl AwsBackend {
    /// The key as cached, else read from KMS.
    pub(crate) async fn resolve(&self, name: &KeyName) -> Result<Arc<Resolved>> {
        match self.cache.get(name) {
            Some(r) => Ok(r),
            None => self.refresh(name).await,
        }
    }

    /// Reads the key from KMS and caches it (unless it was forgotten meanwhile).
    pub(crate) async fn refresh(&self, name: &KeyName) -> Result<Arc<Resolved>> {
        let ticket = self.cache.ticket();
        match self.lookup(name).await? {
            Lookup::Present(r) => {
                let r = Arc::new(r);
                self.cache.insert(name.clone(), Arc::clone(&r), ticket);
                Ok(r)
            }
            Lookup::Missing => {
                self.cache.remove(name);
                Err(Error::not_found("no such key").with_backend(BACKEND))
            }
            Lookup::PendingDeletion => {
                self.cache.remove(name);
                Err(Error::not_found("the key is scheduled for deletion").with_backend(BACKEND))
            }
        }
    }

    /// DescribeKey on the key's alias, and its newest version: for symmetric keys 1 + the
    /// number of rotations (ListKeyRotations), for asymmetric ones the `/v<n>` alias that
    /// points at the same KMS key (ListAliases for that key), 1 when there is none.
    pub(crate) async fn lookup(&self, name: &KeyName) -> Result<Lookup> {
        let alias = key_alias(&self.prefix, name);
        let described = match self.client.describe_key().key_id(&alias).send().await {
            Ok(out) => out,
            Err(e) => {
                let e = map(e);
                return if e.kind() == ErrorKind::NotFound {
                    Ok(Lookup::Missing)
                } else {
                    Err(e)
                };
            }
        };
        let meta = described
            .key_metadata
            .ok_or_else(|| unexpected("DescribeKey returned no key metadata"))?;
        if meta.key_state() == Some(&KeyState::PendingDeletion) {
            return Ok(Lookup::PendingDeletion);
        }
        let spec = meta
            .key_spec()
            .ok_or_else(|| unexpected("DescribeKey returned no KeySpec"))?;
        let algorithm = algorithm_of(spec).ok_or_else(|| {
            Error::unsupported(format!(
                "{alias} is a KMS key of spec {}, which keychain does not handle",
                spec.as_str()
            ))
            .with_backend(BACKEND)
        })?;
        let usage = meta
            .key_usage()
            .cloned()
            .unwrap_or(KeyUsageType::SignVerify);
        let key_id = meta.key_id().to_owned();
        let arn = meta.arn().unwrap_or_default().to_owned();
        let version = if algorithm.is_symmetric() {
            let rotations = self.rotations(&key_id).await?;
            KeyVersion::try_from(rotations.len() + 1).unwrap_or(KeyVersion::MAX)
        } else {
            let mut version = 1;
            for alias in self.aliases(Some(&key_id)).await? {
                if let Some(Parsed::Version(n, v)) = parse_alias(&self.prefix, &alias)
                    && n == *name
                {
                    version = version.max(v);
                }
            }
            version
        };
        Ok(Lookup::Present(Resolved {
            usages: usages_of(algorithm, &usage),
            created: system_time(meta.creation_date()),
            key_id,
            arn,
            algorithm,
            version,
        }))
    }

    /// Every alias name in the account (paginated), or those of one KMS key.
    pub(crate) async fn aliases(&self, key_id: Option<&str>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_aliases()
                .set_key_id(key_id.map(str::to_owned))
                .set_marker(marker.take())
                .send()
                .await
                .map_err(map)?;
            out.extend(
                page.aliases()
                    .iter()
                    .filter_map(|a| a.alias_name().map(str::to_owned)),
            );
            match page.next_marker() {
                Some(m) if page.truncated() && !m.is_empty() => marker = Some(m.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// The rotation dates of a symmetric key, oldest first (paginated).
    pub(crate) async fn rotations(&self, key_id: &str) -> Result<Vec<Option<SystemTime>>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_key_rotations()
                .key_id(key_id)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(map)?;
            out.extend(
                page.rotations()
                    .iter()
                    .map(|r| system_time(r.rotation_date())),
            );
            match page.next_marker() {
                Some(m) if page.truncated() && !m.is_empty() => marker = Some(m.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// The KMS key id (or version alias) for `key` and the version it is: the cached newest
    /// version's key, or the `/v<n>` alias of an older one. A version newer than the cached
    /// one is looked up again before it is `NotFound`.
    pub(crate) async fn target(&self, key: &KeyRef) -> Result<(Arc<Resolved>, String, KeyVersion)> {
        let name = key.name();
        let mut r = self.resolve(name).await?;
        let Some(v) = key.version() else {
            let id = r.key_id.clone();
            let version = r.version;
            return Ok((r, id, version));
        };
        if v > r.version {
            r = self.refresh(name).await?;
        }
        if v == 0 || v > r.version {
            return Err(
                Error::not_found(format!("key has versions 1 to {}, not {v}", r.version))
                    .with_backend(BACKEND),
            );
        }
        let id = if v == r.version || r.algorithm.is_symmetric() {
            // A symmetric key's versions are KMS key materials of one key; KMS always
            // encrypts with the newest (see the README).
            r.key_id.clone()
        } else {
            version_alias(&self.prefix, name, v)
        };
        let version = if r.algorithm.is_symmetric() {
            r.version
        } else {
            v
        };
        Ok((r, id, version))
    }

    /// Runs `call`; when it fails with `NotFound` or `Locked` on a cached resolution (the key
    /// was deleted or rotated by someone else), drops the cache entry and tries once more.
    pub(crate) async fn with_fresh<T, F, Fut>(&self, name: &KeyName, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let was_cached = self.cache.get(name).is_some();
        match call().await {
            Err(e) if was_cached && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Locked) => {
                self.cache.remove(name);
                call().await
            }
            other => other,
        }
    }
}
