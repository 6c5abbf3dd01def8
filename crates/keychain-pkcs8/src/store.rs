//! The key directory through the [`keychain_storage::BlobStore`]: reading metadata, listing
//! keys, writing key files, and removing what a killed writer left behind.

use std::time::{SystemTime, UNIX_EPOCH};

use keychain_core::{
    DamagedKey, KeyAlgorithm, KeyEntry, KeyName, KeyVersion, PublicKey, Result, SecretBytes,
};
use keychain_crypto::pkcs8 as format;

use crate::backend::{Pkcs8Backend, blocking};
use crate::meta::{META, Meta, VersionMeta, key_file, meta_key};

/// A key file's content, encrypted and ready to be stored as some version.
pub(crate) struct PreparedVersion {
    pem: String,
    public_key: Option<PublicKey>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Pkcs8Backend {
    /// The metadata of `name`, `None` when the key does not exist.
    ///
    /// # Errors
    /// The store's; `Integrity` for damaged metadata.
    pub(crate) async fn read_meta(&self, name: &KeyName) -> Result<Option<Meta>> {
        let Some(bytes) = self.store.get(&meta_key(name)).await? else {
            return Ok(None);
        };
        Meta::parse(name, &bytes).map(Some)
    }

    /// Every key with a metadata file, read back: healthy, or damaged with the reason.
    pub(crate) async fn scan(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        for name in self.key_names().await? {
            match self.read_meta(&name).await {
                Ok(Some(meta)) => out.push(KeyEntry::Healthy(meta.info())),
                // Deleted between the listing and the read: not listed.
                Ok(None) => {}
                // Unreadable for any reason (damage, permissions): reported, never hiding the
                // keys after it.
                Err(e) => out.push(KeyEntry::Damaged(DamagedKey::new(name, e))),
            }
        }
        Ok(out)
    }

    /// The names of every key with a metadata file, healthy or not, sorted.
    pub(crate) async fn key_names(&self) -> Result<Vec<KeyName>> {
        let suffix = format!("/{META}");
        Ok(self
            .store
            .list("")
            .await?
            .iter()
            .filter_map(|path| path.strip_suffix(&suffix))
            .filter_map(|name| KeyName::new(name).ok())
            .collect())
    }

    /// How many metadata files the store holds (for `health`).
    pub(crate) async fn count_keys(&self) -> Result<usize> {
        Ok(self
            .store
            .list("")
            .await?
            .iter()
            .filter(|p| p.ends_with(META))
            .count())
    }

    /// Removes the files in `name`'s directory that `meta` does not list: left by a process
    /// killed between writing a key file and committing the metadata. Only call it holding the
    /// key's record lock, under which every writer of the directory works.
    pub(crate) async fn remove_orphans(&self, name: &KeyName, meta: Option<&Meta>) {
        let prefix = format!("{name}/");
        let files = match self.store.list(&prefix).await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "could not list a key's files");
                return;
            }
        };
        for path in files {
            let file = &path[prefix.len()..];
            let listed =
                file == META || meta.is_some_and(|m| m.versions.iter().any(|v| v.file == file));
            if !listed {
                match self.store.delete(&path).await {
                    Ok(_) => tracing::debug!(key = %name, file, "removed an orphaned key file"),
                    Err(e) => {
                        tracing::warn!(key = %name, file, error = %e, "could not remove an orphaned key file");
                    }
                }
            }
        }
    }

    /// Encrypts the material into a key file's content (the slow KDF, done before any lock is
    /// taken); [`Pkcs8Backend::write_version`] stores it.
    pub(crate) async fn prepare_version(
        &self,
        algorithm: KeyAlgorithm,
        material: &SecretBytes,
    ) -> Result<PreparedVersion> {
        let (der, public_key) = if algorithm.is_symmetric() {
            (
                format::symmetric_to_pkcs8(algorithm, material.expose())?,
                None,
            )
        } else {
            let key = self.provider.private_key(algorithm, material.expose())?;
            (material.duplicate(), Some(key.public_key().clone()))
        };
        let password = self.password.duplicate();
        let (kdf, limits) = (self.kdf, self.limits);
        let pem = blocking("encryption", move || {
            format::encrypt_with_limits(der.expose(), password.expose().as_bytes(), kdf, &limits)
        })
        .await?;
        Ok(PreparedVersion { pem, public_key })
    }

    /// Stores a prepared key file as `version` under a fresh unique name. Call it holding the
    /// key's record lock.
    pub(crate) async fn write_version(
        &self,
        name: &KeyName,
        version: KeyVersion,
        prepared: &PreparedVersion,
    ) -> Result<VersionMeta> {
        let mut id = [0u8; 6];
        self.provider.fill_random(&mut id)?;
        let file = format!("v{version}-{}.pem", hex::encode(id));
        self.store
            .create(&key_file(name, &file), prepared.pem.as_bytes())
            .await?;
        Ok(VersionMeta {
            version,
            created: now_secs(),
            file,
            public_key: prepared.public_key.clone(),
        })
    }
}
