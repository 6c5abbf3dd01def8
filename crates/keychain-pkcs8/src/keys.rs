//! Key lifecycle: generate, import, rotate, delete, describe and list. Every change happens
//! under the key's record lock, re-reads the metadata there, and commits by writing it.

use keychain_core::{
    Error, ErrorKind, ImportSpec, KeyAlgorithm, KeyEntry, KeyInfo, KeyMaterial, KeyName, KeyRef,
    KeySpec, KeyUsages, Result, SecretBytes,
};
use keychain_crypto::pkcs8 as format;

use crate::backend::{Pkcs8Backend, blocking};
use crate::error;
use crate::meta::{META_FORMAT, Meta, encode_json, key_file, meta_key};

/// How often a rotation re-prepares when the key changed algorithm under it (deleted and
/// re-created by another process between preparing and committing).
const ROTATE_ATTEMPTS: usize = 3;

impl Pkcs8Backend {
    /// `generate_key`.
    pub(crate) async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        if !self.capabilities.supports_algorithm(spec.algorithm) {
            return Err(Error::unsupported(format!("{} keys", spec.algorithm)));
        }
        let usages = Self::usages_for(spec.algorithm, spec.usages)?;
        let provider = self.provider.clone();
        let algorithm = spec.algorithm;
        let material = blocking("key generation", move || provider.generate(algorithm)).await?;
        self.create_key(name, algorithm, usages, spec.exportable, material)
            .await
    }

    /// `import_key`.
    pub(crate) async fn import(
        &self,
        name: &KeyName,
        material: &KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let (algorithm, bytes) = self.material_from_import(material, spec)?;
        let usages = Self::usages_for(algorithm, spec.usages)?;
        self.create_key(name, algorithm, usages, spec.exportable, bytes)
            .await
    }

    /// `key_info`: read from the metadata, never from the cache.
    pub(crate) async fn info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let meta = self
            .read_meta(key.name())
            .await?
            .ok_or_else(|| error::not_found(key.name()))?;
        if let Some(v) = key.version()
            && meta.version(v).is_none()
        {
            return Err(Error::not_found(format!("key has no version {v}")));
        }
        Ok(meta.info())
    }

    /// `list_keys`: the healthy keys; damaged ones are logged.
    pub(crate) async fn list_healthy(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for entry in self.scan().await? {
            match entry {
                KeyEntry::Healthy(info) => out.push(info),
                KeyEntry::Damaged(damaged) => tracing::warn!(
                    key = %damaged.name,
                    error = %damaged.error,
                    "not listing a damaged key"
                ),
            }
        }
        Ok(out)
    }

    /// `delete_key`.
    pub(crate) async fn delete(&self, name: &KeyName) -> Result<()> {
        self.ensure_password().await?;
        let _lock = self.store.lock(name.as_str()).await?;
        // Deleting the metadata is the commit point: after it the key is gone whatever happens
        // to its files. The metadata is not parsed, so a damaged key deletes too.
        let existed = self.store.delete(&meta_key(name)).await?;
        self.cache.remove(name);
        self.remove_orphans(name, None).await;
        if existed {
            Ok(())
        } else {
            Err(error::not_found(name))
        }
    }

    /// `rotate_key`.
    pub(crate) async fn rotate(&self, name: &KeyName) -> Result<KeyInfo> {
        self.ensure_password().await?;
        let mut algorithm = self
            .read_meta(name)
            .await?
            .ok_or_else(|| error::not_found(name))?
            .algorithm;
        for _ in 0..ROTATE_ATTEMPTS {
            // Key generation and the KDF happen before the lock, so concurrent rotations hold
            // it only for the writes.
            let provider = self.provider.clone();
            let material = blocking("key generation", move || provider.generate(algorithm)).await?;
            let prepared = self.prepare_version(algorithm, &material).await?;
            let _lock = self.store.lock(name.as_str()).await?;
            // Re-read under the lock: another process may have rotated or deleted it.
            let mut meta = self
                .read_meta(name)
                .await?
                .ok_or_else(|| error::not_found(name))?;
            if meta.algorithm != algorithm {
                // Deleted and re-created as another kind of key meanwhile.
                algorithm = meta.algorithm;
                continue;
            }
            let version = meta.current().checked_add(1).ok_or_else(|| {
                Error::new(
                    ErrorKind::CapacityExceeded,
                    format!("key '{name}' has used up its version numbers"),
                )
            })?;
            self.remove_orphans(name, Some(&meta)).await;
            let vm = self.write_version(name, version, &prepared).await?;
            let file = key_file(name, &vm.file);
            meta.versions.push(vm);
            if let Err(e) = self.store.put(&meta_key(name), &encode_json(&meta)?).await {
                let _ = self.store.delete(&file).await;
                return Err(e);
            }
            // The next use re-reads the metadata (its stamp changed) and keeps the versions
            // already decrypted.
            return Ok(meta.info());
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("key '{name}' kept changing while it was being rotated; try again"),
        ))
    }

    /// Creates a key from material; `AlreadyExists` leaves the existing key untouched.
    pub(crate) async fn create_key(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
        usages: KeyUsages,
        exportable: bool,
        material: SecretBytes,
    ) -> Result<KeyInfo> {
        if !self.capabilities.supports_algorithm(algorithm) {
            return Err(Error::unsupported(format!("{algorithm} keys")));
        }
        self.ensure_password().await?;
        // Cheap early answer; the check under the lock below is the one that counts.
        if self.store.stamp(&meta_key(name))?.is_some() {
            return Err(error::already_exists(name));
        }
        let prepared = self.prepare_version(algorithm, &material).await?;
        let _lock = self.store.lock(name.as_str()).await?;
        if self.store.stamp(&meta_key(name))?.is_some() {
            return Err(error::already_exists(name));
        }
        // Files without metadata are a killed creator's leftovers.
        self.remove_orphans(name, None).await;
        let vm = self.write_version(name, 1, &prepared).await?;
        let file = key_file(name, &vm.file);
        let meta = Meta {
            format: META_FORMAT,
            name: name.clone(),
            algorithm,
            usages,
            exportable,
            versions: vec![vm],
        };
        if let Err(e) = self
            .store
            .create(&meta_key(name), &encode_json(&meta)?)
            .await
        {
            let _ = self.store.delete(&file).await;
            return Err(e);
        }
        self.cache.remove(name);
        Ok(meta.info())
    }

    /// The algorithm and key bytes of imported material, checked now so a bad key is refused
    /// at import, not at first use.
    pub(crate) fn material_from_import(
        &self,
        material: &KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<(KeyAlgorithm, SecretBytes)> {
        let plain = format::from_material(material, spec.algorithm)?;
        let (algorithm, bytes) = (plain.algorithm, plain.material);
        if algorithm.is_asymmetric() {
            self.provider.private_key(algorithm, bytes.expose())?;
        }
        Ok((algorithm, bytes))
    }

    /// The usages a key of `algorithm` gets when `usages` are asked for.
    pub(crate) fn usages_for(algorithm: KeyAlgorithm, usages: KeyUsages) -> Result<KeyUsages> {
        let spec = KeySpec::new(algorithm).with_usages(usages);
        spec.validate()?;
        Ok(spec.effective_usages())
    }
}
