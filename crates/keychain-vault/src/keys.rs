//! Key lifecycle: generate, describe, list, rotate and delete Transit keys, and what Transit
//! reports of a key (its type, versions and public keys) in keychain's terms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Error, ErrorKind, KeyAlgorithm, KeyInfo, KeyName, KeySpec, KeyUsages, KeyVersion,
    KeyVersionInfo, Protection, PublicKey, Result,
};
use serde_json::json;

use crate::api::{self, Call, KeyData, KeyVersionData};
use crate::backend::VaultBackend;
use crate::error::{BACKEND, map, unexpected};
use crate::naming;

/// The SubjectPublicKeyInfo DER prefix of an Ed25519 key (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (33 bytes: no unused bits + the 32-byte key) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Transit's key type for `algorithm`.
pub(crate) fn transit_type(algorithm: KeyAlgorithm) -> Option<&'static str> {
    Some(match algorithm {
        KeyAlgorithm::Rsa2048 => "rsa-2048",
        KeyAlgorithm::Rsa3072 => "rsa-3072",
        KeyAlgorithm::Rsa4096 => "rsa-4096",
        KeyAlgorithm::EcP256 => "ecdsa-p256",
        KeyAlgorithm::EcP384 => "ecdsa-p384",
        KeyAlgorithm::EcP521 => "ecdsa-p521",
        KeyAlgorithm::Ed25519 => "ed25519",
        KeyAlgorithm::Aes128Gcm => "aes128-gcm96",
        KeyAlgorithm::Aes256Gcm => "aes256-gcm96",
        KeyAlgorithm::ChaCha20Poly1305 => "chacha20-poly1305",
        _ => return None,
    })
}

fn algorithm_of(key_type: &str) -> Option<KeyAlgorithm> {
    KeyAlgorithm::ALL
        .into_iter()
        .find(|a| transit_type(*a) == Some(key_type))
}

/// What a Transit key of `algorithm` can do.
pub(crate) fn usages_of(algorithm: KeyAlgorithm) -> KeyUsages {
    if algorithm.is_symmetric() {
        KeyUsages::ENCRYPT | KeyUsages::DECRYPT | KeyUsages::WRAP
    } else if algorithm.is_rsa() {
        KeyUsages::SIGN | KeyUsages::DECRYPT | KeyUsages::WRAP
    } else {
        KeyUsages::SIGN
    }
}

/// Parses the RFC 3339 UTC or offset times Transit reports (`2026-12-01T08:50:00.123456789Z`).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let f = &frac[..digits];
        if f.is_empty() || f.len() > 9 {
            return None;
        }
        nanos = f.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(f.len()).ok()?);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The public key Transit reports for one version.
fn public_key(algorithm: KeyAlgorithm, text: &str) -> Result<PublicKey> {
    let key = if algorithm == KeyAlgorithm::Ed25519 {
        let raw = Base64::decode_vec(text.trim())
            .map_err(|_| unexpected("Transit reported an Ed25519 public key that is not base64"))?;
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        PublicKey::from_der(&der)?
    } else {
        PublicKey::from_pem(text)?
    };
    if key.algorithm() != algorithm {
        return Err(unexpected(format!(
            "Transit reported a {} public key for a {algorithm} key",
            key.algorithm()
        )));
    }
    Ok(key)
}

/// A `KeyInfo` from what Transit reports: versions from the lowest one still usable
/// (`min_decryption_version`, and `min_available_version` after a trim) to the latest.
pub(crate) fn key_info(name: &KeyName, data: &KeyData) -> Result<KeyInfo> {
    let algorithm = algorithm_of(&data.key_type).ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "Transit key type {} is not one keychain uses",
                data.key_type
            ),
        )
        .with_backend(BACKEND)
        .with_key(name)
    })?;
    let latest = if data.latest_version > 0 {
        data.latest_version
    } else {
        data.keys
            .keys()
            .filter_map(|k| k.parse::<KeyVersion>().ok())
            .max()
            .unwrap_or(0)
    };
    let lowest = data
        .min_decryption_version
        .max(data.min_available_version)
        .max(1);
    let mut versions = Vec::new();
    for v in lowest..=latest {
        let Some(entry) = data.keys.get(&v.to_string()) else {
            continue;
        };
        let (created, public) = match entry {
            KeyVersionData::Created(secs) => {
                (UNIX_EPOCH.checked_add(Duration::from_secs(*secs)), None)
            }
            KeyVersionData::Public {
                creation_time,
                public_key: pk,
            } => (
                creation_time.as_deref().and_then(parse_rfc3339),
                match pk {
                    Some(text) if algorithm.is_asymmetric() => {
                        Some(public_key(algorithm, text).map_err(|e| e.with_key(name))?)
                    }
                    _ => None,
                },
            ),
        };
        versions.push(KeyVersionInfo::new(v, created, public));
    }
    if versions.is_empty() {
        return Err(unexpected(format!(
            "Transit reports no usable version of key {name} (latest {latest}, lowest {lowest})"
        ))
        .with_key(name));
    }
    Ok(KeyInfo::new(
        name.clone(),
        algorithm,
        usages_of(algorithm),
        Protection::Software,
        data.exportable,
        versions,
    ))
}

impl VaultBackend {
    pub(crate) async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        spec.validate()?;
        let key_type = transit_type(spec.algorithm)
            .filter(|_| self.caps.supports_algorithm(spec.algorithm))
            .ok_or_else(|| Error::unsupported(format!("Transit has no {} keys", spec.algorithm)))?;
        let usages = spec.effective_usages();
        let possible = usages_of(spec.algorithm);
        if !possible.contains_all(usages) {
            return Err(Error::invalid_input(format!(
                "a Transit {key_type} key can have the usages {possible:?}, not {usages:?}"
            )));
        }
        let _admin = self.admin.write().await;
        if self.read(name).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("Transit key {} exists", self.transit_name(name)),
            )
            .with_backend(BACKEND));
        }
        // Transit's `exportable` is irreversible: any token that may read
        // `<mount>/export/...` can then read the raw key (see the crate docs).
        let body = json!({ "type": key_type, "exportable": spec.exportable });
        let current = self.session.client().await?;
        api::empty(&current.client, Call::post(self.path("keys", name), &body))
            .await
            .map_err(map)?;
        let info = self.info(name).await?;
        if info.algorithm != spec.algorithm
            || info.version != 1
            || info.exportable != spec.exportable
        {
            // Another client created the same name at the same moment (Transit's create is
            // idempotent, so neither request failed): the key is theirs.
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "Transit key {} was created concurrently by another client",
                    self.transit_name(name)
                ),
            )
            .with_backend(BACKEND));
        }
        Ok(info)
    }

    pub(crate) async fn delete(&self, name: &KeyName) -> Result<()> {
        let _admin = self.admin.write().await;
        self.cache.remove(name);
        let Some(data) = self.read(name).await? else {
            return Err(
                Error::not_found(format!("no Transit key {}", self.transit_name(name)))
                    .with_backend(BACKEND),
            );
        };
        let current = self.session.client().await?;
        let config = format!("{}/config", self.path("keys", name));
        api::empty(
            &current.client,
            Call::post(config.clone(), &json!({ "deletion_allowed": true })),
        )
        .await
        .map_err(map)?;
        let deleted = api::empty(&current.client, Call::delete(self.path("keys", name)))
            .await
            .map_err(map);
        if deleted.is_err() && !data.deletion_allowed {
            // The key stays: do not leave it deletable by anyone who may delete.
            let _ = api::empty(
                &current.client,
                Call::post(config, &json!({ "deletion_allowed": false })),
            )
            .await;
        }
        deleted?;
        // Also drops what reads that started before the delete would cache.
        self.cache.remove(name);
        Ok(())
    }

    pub(crate) async fn list(&self) -> Result<Vec<KeyInfo>> {
        let current = self.session.client().await?;
        let names = match api::data::<api::KeyList>(
            &current.client,
            Call::list(format!("{}/keys", self.mount)),
        )
        .await
        {
            Ok(list) => list.keys,
            Err(e) => {
                let e = map(e);
                if e.kind() == ErrorKind::NotFound {
                    Vec::new()
                } else {
                    return Err(e);
                }
            }
        };
        let mut names: Vec<KeyName> = names
            .iter()
            .filter_map(|n| naming::key_name(&self.prefix, n))
            .collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.info(&name).await {
                Ok(info) => out.push(info),
                // Deleted since the listing, or a Transit key type keychain does not use.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Unsupported) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(crate) async fn rotate(&self, name: &KeyName) -> Result<KeyInfo> {
        self.cache.remove(name);
        if self.read(name).await?.is_none() {
            return Err(
                Error::not_found(format!("no Transit key {}", self.transit_name(name)))
                    .with_backend(BACKEND),
            );
        }
        let current = self.session.client().await?;
        api::empty(
            &current.client,
            Call::post(format!("{}/rotate", self.path("keys", name)), &json!({})),
        )
        .await
        .map_err(map)?;
        self.info(name).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn types_round_trip() {
        for a in crate::backend::capabilities().algorithms {
            let t = transit_type(a).unwrap();
            assert_eq!(algorithm_of(t), Some(a), "{t}");
        }
        assert_eq!(transit_type(KeyAlgorithm::Aes192Gcm), None);
        assert_eq!(
            algorithm_of("chacha20-poly1305"),
            Some(KeyAlgorithm::ChaCha20Poly1305)
        );
        assert_eq!(algorithm_of("hmac"), None);
    }

    #[test]
    fn rfc3339_times() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_nanos());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2000-03-01T00:00:00Z"), Some(951_868_800_000_000_000));
        assert_eq!(
            t("2026-12-01T08:50:00.123456789Z"),
            Some(1_796_115_000_123_456_789)
        );
        assert_eq!(
            t("2026-12-01T09:50:00.5+01:00"),
            Some(1_796_115_000_500_000_000)
        );
        assert_eq!(
            t("2026-12-01T07:50:00-01:00"),
            Some(1_796_115_000_000_000_000)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-12-01 08:50:00Z",
            "2026-12-01T08:50:00",
            "2026-12-01T08:50:00.Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn ed25519_spki_prefix_makes_a_key() {
        // RFC 8032 test 1's public key.
        let real = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        let key = public_key(KeyAlgorithm::Ed25519, real).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(key.raw_bytes(), Base64::decode_vec(real).unwrap());
        assert!(public_key(KeyAlgorithm::Ed25519, "not base64!").is_err());
    }

    #[test]
    fn key_info_uses_the_usable_versions() {
        let data: KeyData = serde_json::from_value(json!({
            "type": "aes256-gcm96",
            "exportable": false,
            "latest_version": 3,
            "min_decryption_version": 2,
            "min_available_version": 0,
            "keys": { "1": 1_796_113_664u64, "2": 1_796_113_665u64, "3": 1_796_113_666u64 },
            "name": "k", "deletion_allowed": false
        }))
        .unwrap();
        let name = KeyName::new("k").unwrap();
        let info = key_info(&name, &data).unwrap();
        assert_eq!(info.algorithm, KeyAlgorithm::Aes256Gcm);
        assert_eq!(info.version, 3);
        let versions: Vec<_> = info.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, [2, 3]);
        assert_eq!(
            info.usages,
            KeyUsages::ENCRYPT | KeyUsages::DECRYPT | KeyUsages::WRAP
        );
        let hmac: KeyData = serde_json::from_value(json!({
            "type": "hmac", "latest_version": 1, "keys": { "1": 1u64 }
        }))
        .unwrap();
        assert_eq!(
            key_info(&name, &hmac).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }
}
