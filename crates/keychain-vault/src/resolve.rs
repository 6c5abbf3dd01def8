//! What the backend knows of a key: reading it from Transit, the cached algorithm and versions
//! of each name, and which version a [`KeyRef`] targets.

use std::sync::Arc;

use keychain_core::{Error, ErrorKind, KeyAlgorithm, KeyInfo, KeyName, KeyRef, KeyVersion, Result};

use crate::api::{self, Call, KeyData};
use crate::backend::VaultBackend;
use crate::error::{BACKEND, map};
use crate::keys::key_info;

/// A key as this backend last read it.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) latest: KeyVersion,
    /// The oldest version still usable (`KeyInfo::versions`' first).
    pub(crate) lowest: KeyVersion,
}

impl VaultBackend {
    /// Drops the cached entry when `result` says the key may be gone or different.
    pub(crate) fn forget_on<T>(&self, name: &KeyName, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Integrity)
        {
            self.cache.remove(name);
        }
        result
    }

    /// `GET <mount>/keys/<name>`; `None` when the key does not exist.
    pub(crate) async fn read(&self, name: &KeyName) -> Result<Option<KeyData>> {
        let current = self.session.client().await?;
        match api::data::<KeyData>(&current.client, Call::get(self.path("keys", name))).await {
            Ok(data) => Ok(Some(data)),
            Err(e) => {
                let e = map(e);
                if e.kind() == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The key's metadata, read from the server (and cached), with what was cached. Not cached
    /// when a delete ran meanwhile: the answer may describe a key that is gone.
    pub(crate) async fn info_resolved(&self, name: &KeyName) -> Result<(KeyInfo, Arc<Resolved>)> {
        let ticket = self.cache.ticket();
        let data = self.read(name).await?.ok_or_else(|| {
            self.cache.remove(name);
            Error::not_found(format!("no Transit key {}", self.transit_name(name)))
                .with_backend(BACKEND)
        })?;
        let info = key_info(name, &data)?;
        let resolved = Arc::new(Resolved {
            algorithm: info.algorithm,
            latest: info.version,
            lowest: info.versions.first().map_or(1, |v| v.version),
        });
        self.cache
            .insert(name.clone(), Arc::clone(&resolved), ticket);
        Ok((info, resolved))
    }

    /// The key's metadata, read from the server (and cached).
    pub(crate) async fn info(&self, name: &KeyName) -> Result<KeyInfo> {
        Ok(self.info_resolved(name).await?.0)
    }

    /// The key as cached, else read from the server.
    pub(crate) async fn resolve(&self, name: &KeyName) -> Result<Arc<Resolved>> {
        match self.cache.get(name) {
            Some(r) => Ok(r),
            None => Ok(self.info_resolved(name).await?.1),
        }
    }

    /// The key and the version a call targets: the one `key` names (checked to exist, re-read
    /// when newer than the cached latest), else the newest.
    pub(crate) async fn target(&self, key: &KeyRef) -> Result<(Arc<Resolved>, Option<KeyVersion>)> {
        let mut resolved = self.resolve(key.name()).await?;
        if let Some(v) = key.version() {
            if v > resolved.latest || v < resolved.lowest {
                resolved = self.info_resolved(key.name()).await?.1;
            }
            if v > resolved.latest || v < resolved.lowest {
                return Err(Error::not_found(format!(
                    "key {} has no usable version {v} (versions {} to {})",
                    key.name(),
                    resolved.lowest,
                    resolved.latest
                ))
                .with_backend(BACKEND));
            }
        }
        Ok((resolved, key.version()))
    }
}
