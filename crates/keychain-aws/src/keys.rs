//! Key lifecycle: generate, describe, list, rotate and delete KMS keys and their aliases, and
//! the mapping between keychain's algorithms and usages and KMS's key specs and usages.

use aws_sdk_kms::types::{KeySpec as KmsKeySpec, KeyUsageType, Tag};
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyInfo, KeyName, KeySpec, KeyUsage, KeyUsages, KeyVersion,
    KeyVersionInfo, Protection, PublicKey, Result,
};

use crate::backend::AwsBackend;
use crate::error::{BACKEND, map, unexpected};
use crate::naming::{Parsed, key_alias, parse_alias, version_alias};
use crate::resolve::{Lookup, system_time};

/// The tag every key this backend creates carries: the alias it was made for, so keys left
/// behind by an interrupted generate or rotate can be found.
const TAG_ALIAS: &str = "keychain-alias";

pub(crate) fn kms_key_spec(algorithm: KeyAlgorithm) -> Option<KmsKeySpec> {
    Some(match algorithm {
        KeyAlgorithm::Rsa2048 => KmsKeySpec::Rsa2048,
        KeyAlgorithm::Rsa3072 => KmsKeySpec::Rsa3072,
        KeyAlgorithm::Rsa4096 => KmsKeySpec::Rsa4096,
        KeyAlgorithm::EcP256 => KmsKeySpec::EccNistP256,
        KeyAlgorithm::EcP384 => KmsKeySpec::EccNistP384,
        KeyAlgorithm::EcP521 => KmsKeySpec::EccNistP521,
        KeyAlgorithm::EcSecp256k1 => KmsKeySpec::EccSecgP256K1,
        KeyAlgorithm::Aes256Gcm => KmsKeySpec::SymmetricDefault,
        _ => return None,
    })
}

pub(crate) fn algorithm_of(spec: &KmsKeySpec) -> Option<KeyAlgorithm> {
    Some(match spec {
        KmsKeySpec::Rsa2048 => KeyAlgorithm::Rsa2048,
        KmsKeySpec::Rsa3072 => KeyAlgorithm::Rsa3072,
        KmsKeySpec::Rsa4096 => KeyAlgorithm::Rsa4096,
        KmsKeySpec::EccNistP256 => KeyAlgorithm::EcP256,
        KmsKeySpec::EccNistP384 => KeyAlgorithm::EcP384,
        KmsKeySpec::EccNistP521 => KeyAlgorithm::EcP521,
        KmsKeySpec::EccSecgP256K1 => KeyAlgorithm::EcSecp256k1,
        KmsKeySpec::SymmetricDefault => KeyAlgorithm::Aes256Gcm,
        _ => return None,
    })
}

/// The usages a KMS key of `algorithm` and `usage` has, in keychain's terms.
pub(crate) fn usages_of(algorithm: KeyAlgorithm, usage: &KeyUsageType) -> KeyUsages {
    match usage {
        KeyUsageType::SignVerify => KeyUsages::SIGN,
        KeyUsageType::EncryptDecrypt if algorithm.is_symmetric() => {
            KeyUsages::ENCRYPT | KeyUsages::DECRYPT | KeyUsages::WRAP
        }
        KeyUsageType::EncryptDecrypt => KeyUsages::DECRYPT | KeyUsages::WRAP,
        _ => KeyUsages::NONE,
    }
}

/// The one KMS key usage that covers `usages`: a KMS key signs or decrypts, never both.
fn kms_usage(algorithm: KeyAlgorithm, usages: KeyUsages) -> Result<KeyUsageType> {
    if algorithm.is_symmetric() {
        return Ok(KeyUsageType::EncryptDecrypt);
    }
    let sign = usages.contains(KeyUsage::Sign);
    let decrypt = usages.contains(KeyUsage::Decrypt) || usages.contains(KeyUsage::Wrap);
    match (sign, decrypt) {
        (true, true) => Err(Error::unsupported(
            "a KMS key either signs or decrypts (KeyUsage SIGN_VERIFY or ENCRYPT_DECRYPT); \
             create two keys for both",
        )),
        (false, true) => Ok(KeyUsageType::EncryptDecrypt),
        _ => Ok(KeyUsageType::SignVerify),
    }
}

impl AwsBackend {
    async fn public_key(&self, key_id: &str) -> Result<PublicKey> {
        let out = self
            .client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(map)?;
        let der = out
            .public_key()
            .ok_or_else(|| unexpected("GetPublicKey returned no key"))?;
        PublicKey::from_der(der.as_ref()).map_err(|e| e.with_backend(BACKEND))
    }

    /// Full metadata of a key: every version with its creation time and public key.
    pub(crate) async fn info(&self, name: &KeyName, want: Option<KeyVersion>) -> Result<KeyInfo> {
        let r = self.refresh(name).await?;
        if let Some(v) = want
            && (v == 0 || v > r.version)
        {
            return Err(
                Error::not_found(format!("key has versions 1 to {}, not {v}", r.version))
                    .with_backend(BACKEND),
            );
        }
        let mut versions = Vec::with_capacity(r.version as usize);
        if r.algorithm.is_symmetric() {
            versions.push(KeyVersionInfo::new(1, r.created, None));
            for (i, date) in self.rotations(&r.key_id).await?.into_iter().enumerate() {
                let v = KeyVersion::try_from(i + 2).unwrap_or(KeyVersion::MAX);
                versions.push(KeyVersionInfo::new(v, date, None));
            }
        } else {
            for v in 1..r.version {
                let alias = version_alias(&self.prefix, name, v);
                let meta = self
                    .client
                    .describe_key()
                    .key_id(&alias)
                    .send()
                    .await
                    .map_err(map)?
                    .key_metadata;
                let created = meta.as_ref().and_then(|m| system_time(m.creation_date()));
                let public = self.public_key(&alias).await?;
                versions.push(KeyVersionInfo::new(v, created, Some(public)));
            }
            let public = self.public_key(&r.key_id).await?;
            versions.push(KeyVersionInfo::new(r.version, r.created, Some(public)));
        }
        Ok(KeyInfo::new(
            name.clone(),
            r.algorithm,
            r.usages,
            Protection::CloudHsm,
            false,
            versions,
        ))
    }

    pub(crate) async fn rotate(&self, name: &KeyName) -> Result<()> {
        let _admin = self.admin.lock().await;
        let r = self.refresh(name).await?;
        if r.algorithm.is_symmetric() {
            self.client
                .rotate_key_on_demand()
                .key_id(&r.key_id)
                .send()
                .await
                .map_err(map)?;
            return Ok(());
        }
        let next = r.version + 1;
        let spec = kms_key_spec(r.algorithm)
            .ok_or_else(|| Error::unsupported(format!("rotating a {} key", r.algorithm)))?;
        let usage = if r.usages.contains(KeyUsage::Sign) {
            KeyUsageType::SignVerify
        } else {
            KeyUsageType::EncryptDecrypt
        };
        let new_key = self.create_kms_key(name, spec, usage).await?;
        let result = async {
            if r.version == 1 {
                self.point_alias(&version_alias(&self.prefix, name, 1), &r.key_id)
                    .await?;
            }
            let next_alias = version_alias(&self.prefix, name, next);
            self.client
                .create_alias()
                .alias_name(&next_alias)
                .target_key_id(&new_key)
                .send()
                .await
                .map_err(map)
                .map_err(|e| {
                    if e.kind() == ErrorKind::AlreadyExists {
                        e.with_context(format!(
                            "another rotation made version {next} at the same time"
                        ))
                    } else {
                        e
                    }
                })?;
            self.client
                .update_alias()
                .alias_name(key_alias(&self.prefix, name))
                .target_key_id(&new_key)
                .send()
                .await
                .map_err(map)
        }
        .await;
        if let Err(e) = result {
            self.discard_kms_key(&new_key).await;
            return Err(e);
        }
        Ok(())
    }

    /// Creates `alias` → `key_id`, or re-points it if an interrupted rotation left it behind.
    async fn point_alias(&self, alias: &str, key_id: &str) -> Result<()> {
        match self
            .client
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = map(e);
                if e.kind() != ErrorKind::AlreadyExists {
                    return Err(e);
                }
                self.client
                    .update_alias()
                    .alias_name(alias)
                    .target_key_id(key_id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(map)
            }
        }
    }

    async fn create_kms_key(
        &self,
        name: &KeyName,
        spec: KmsKeySpec,
        usage: KeyUsageType,
    ) -> Result<String> {
        let alias = key_alias(&self.prefix, name);
        let tag = Tag::builder()
            .tag_key(TAG_ALIAS)
            .tag_value(&alias)
            .build()
            .map_err(|e| unexpected(format!("tag: {e}")))?;
        let out = self
            .client
            .create_key()
            .key_spec(spec)
            .key_usage(usage)
            .description(format!("keychain key {alias}"))
            .tags(tag)
            .send()
            .await
            .map_err(map)?;
        out.key_metadata
            .map(|m| m.key_id)
            .ok_or_else(|| unexpected("CreateKey returned no key metadata"))
    }

    /// Schedules a KMS key this backend created but could not attach for deletion; the
    /// original error is what the caller sees, so a failure here is only logged.
    async fn discard_kms_key(&self, key_id: &str) {
        if let Err(e) = self
            .client
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(self.deletion_window_days)
            .send()
            .await
        {
            tracing::warn!(
                key_id,
                error = %map(e),
                "keychain-aws: could not schedule an unattached KMS key for deletion"
            );
        }
    }

    pub(crate) async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        spec.validate()?;
        let kms_spec = kms_key_spec(spec.algorithm)
            .ok_or_else(|| Error::unsupported(format!("{} keys in KMS", spec.algorithm)))?;
        if spec.exportable {
            return Err(Error::unsupported(
                "KMS keys never leave KMS; exportable keys are not offered",
            ));
        }
        let usage = kms_usage(spec.algorithm, spec.effective_usages())?;
        let _admin = self.admin.lock().await;
        let alias = key_alias(&self.prefix, name);
        match self.lookup(name).await? {
            Lookup::Present(_) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{alias} exists"),
                ));
            }
            // A delete_key that stopped after scheduling the deletion: finish it.
            Lookup::PendingDeletion => {
                self.client
                    .delete_alias()
                    .alias_name(&alias)
                    .send()
                    .await
                    .map_err(map)?;
            }
            Lookup::Missing => {}
        }
        let key_id = self.create_kms_key(name, kms_spec, usage).await?;
        if let Err(e) = self
            .client
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&key_id)
            .send()
            .await
        {
            // Another process created the alias between the lookup and here: its key stays.
            self.discard_kms_key(&key_id).await;
            return Err(map(e));
        }
        self.cache.remove(name);
        self.info(name, None).await
    }

    pub(crate) async fn delete(&self, name: &KeyName) -> Result<()> {
        let _admin = self.admin.lock().await;
        self.cache.remove(name);
        let alias = key_alias(&self.prefix, name);
        let r = match self.lookup(name).await? {
            Lookup::Missing => return Err(Error::not_found("no such key")),
            Lookup::PendingDeletion => None,
            Lookup::Present(r) => Some(r),
        };
        // Schedule every version's deletion first, then remove the aliases: a delete that
        // stops half-way leaves aliases to scheduled keys, which read as missing and which the
        // next generate_key or delete_key of the name clears.
        let mut aliases = Vec::new();
        if let Some(r) = &r {
            let mut key_ids = vec![r.key_id.clone()];
            if !r.algorithm.is_symmetric() && r.version > 1 {
                for v in 1..=r.version {
                    let alias = version_alias(&self.prefix, name, v);
                    // ScheduleKeyDeletion takes key ids, not aliases.
                    match self.client.describe_key().key_id(&alias).send().await {
                        Ok(out) => key_ids.extend(out.key_metadata.map(|m| m.key_id)),
                        Err(e) => {
                            let e = map(e);
                            if e.kind() != ErrorKind::NotFound {
                                return Err(e);
                            }
                        }
                    }
                    aliases.push(alias);
                }
            }
            key_ids.sort();
            key_ids.dedup();
            for id in &key_ids {
                self.schedule_deletion(id).await?;
            }
        }
        for version in &aliases {
            match self.client.delete_alias().alias_name(version).send().await {
                Ok(_) => {}
                Err(e) => {
                    let e = map(e);
                    if e.kind() != ErrorKind::NotFound {
                        return Err(e);
                    }
                }
            }
        }
        self.client
            .delete_alias()
            .alias_name(&alias)
            .send()
            .await
            .map_err(map)?;
        // A lookup that started after the first removal may have cached the key meanwhile.
        self.cache.remove(name);
        Ok(())
    }

    /// ScheduleKeyDeletion; a key already scheduled is fine.
    async fn schedule_deletion(&self, key_id: &str) -> Result<()> {
        match self
            .client
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(self.deletion_window_days)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = map(e);
                if e.kind() == ErrorKind::Locked {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<KeyInfo>> {
        let mut names: Vec<KeyName> = self
            .aliases(None)
            .await?
            .iter()
            .filter_map(|a| match parse_alias(&self.prefix, a) {
                Some(Parsed::Key(name)) => Some(name),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.info(&name, None).await {
                Ok(info) => out.push(info),
                // Deleted (or being deleted) since the listing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.with_key(&name)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn specs_round_trip() {
        for alg in crate::backend::capabilities().algorithms {
            let spec = kms_key_spec(alg).unwrap();
            assert_eq!(algorithm_of(&spec), Some(alg));
        }
        assert!(kms_key_spec(KeyAlgorithm::Ed25519).is_none());
        assert!(kms_key_spec(KeyAlgorithm::Aes128Gcm).is_none());
    }

    #[test]
    fn one_kms_usage_per_key() {
        let rsa = KeyAlgorithm::Rsa2048;
        assert_eq!(
            kms_usage(rsa, KeyUsages::SIGN).unwrap(),
            KeyUsageType::SignVerify
        );
        assert_eq!(
            kms_usage(rsa, KeyUsages::DECRYPT).unwrap(),
            KeyUsageType::EncryptDecrypt
        );
        let both = kms_usage(rsa, KeyUsages::SIGN | KeyUsages::DECRYPT).unwrap_err();
        assert_eq!(both.kind(), ErrorKind::Unsupported);
        assert_eq!(
            kms_usage(KeyAlgorithm::Aes256Gcm, KeyUsages::ENCRYPT).unwrap(),
            KeyUsageType::EncryptDecrypt
        );
        let u = usages_of(rsa, &KeyUsageType::EncryptDecrypt);
        assert!(u.contains(KeyUsage::Decrypt) && !u.contains(KeyUsage::Sign));
    }
}
