//! The Transit backend: every private-key and AES operation runs in Vault / OpenBao.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, HashAlg, Health, HealthStatus, ImportSpec,
    KeyAlgorithm, KeyInfo, KeyMaterial, KeyName, KeyRef, KeySpec, KeyUsages, KeyVersion,
    KeyVersionInfo, Operation, Protection, PublicKey, Result, RsaPadding, SecretBytes, SignInput,
    Signature, SignatureScheme, WrapFormat, WrappedKey, WrappingSpec, async_trait,
};
use keychain_crypto::pkcs8::Kdf;
use serde_json::{Value, json};
use tokio::sync::RwLock as AsyncRwLock;
use zeroize::Zeroizing;

use crate::api::{self, Call, KeyData, KeyVersionData};
use crate::config::Config;
use crate::error::{BACKEND, map};
use crate::naming;
use crate::session::Session;

/// The most bytes [`Backend::random`] returns per call.
pub const MAX_RANDOM: usize = 65_536;

/// First byte of a keychain Transit ciphertext: the Transit ciphertext's bytes follow the
/// 4-byte key version.
const FORMAT_TRANSIT: u8 = 1;
/// Format byte + key version (u32 big-endian).
const HEADER_LEN: usize = 5;

/// The SubjectPublicKeyInfo DER prefix of an Ed25519 key (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (33 bytes: no unused bits + the 32-byte key) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key as this backend last read it.
#[derive(Debug)]
struct Resolved {
    algorithm: KeyAlgorithm,
    latest: KeyVersion,
    /// The oldest version still usable (`KeyInfo::versions`' first).
    lowest: KeyVersion,
}

/// The HashiCorp Vault / OpenBao Transit backend. Open with [`VaultBackend::open`]; see the
/// crate docs for how names, versions and ciphertexts map to Transit's.
#[derive(Debug)]
pub struct VaultBackend {
    session: Session,
    mount: String,
    prefix: String,
    caps: Capabilities,
    /// Name → algorithm and newest version, so `sign`/`encrypt` cost one request. `key_info`,
    /// `list_keys` and `rotate_key` always read the server and refresh it.
    cache: Mutex<HashMap<KeyName, Arc<Resolved>>>,
    /// Generate and delete hold it exclusively, keeping "does it exist?" and "create it"
    /// together (Transit's create is idempotent and would not say); encrypt holds it shared, so
    /// that no encrypt of a key this backend is deleting reaches Transit, whose encrypt would
    /// create the key again ("upsert").
    admin: AsyncRwLock<()>,
    /// Bumped by every delete: a key read that started before one is not cached.
    deletions: AtomicU64,
    closed: AtomicBool,
    /// PBES2 parameters of password exports.
    export_kdf: Kdf,
}

fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new(BACKEND, Protection::Software);
    caps.algorithms = vec![
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::EcP521,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Aes128Gcm,
        KeyAlgorithm::Aes256Gcm,
        KeyAlgorithm::ChaCha20Poly1305,
    ];
    for h in HashAlg::ALL {
        caps.signature_schemes.extend([
            SignatureScheme::RsaPkcs1v15(h),
            SignatureScheme::RsaPss(h),
            SignatureScheme::Ecdsa(h),
        ]);
    }
    caps.signature_schemes.push(SignatureScheme::Ed25519);
    caps.sign_message = true;
    caps.oaep_hashes = vec![HashAlg::Sha256];
    caps.aead = true;
    caps.rotate = true;
    caps.random = true;
    caps.health = true;
    caps.import = true;
    caps.export_wrapped = true;
    caps.import_wrapped = true;
    caps
}

/// Transit's key type for `algorithm`.
fn transit_type(algorithm: KeyAlgorithm) -> Option<&'static str> {
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
fn usages_of(algorithm: KeyAlgorithm) -> KeyUsages {
    if algorithm.is_symmetric() {
        KeyUsages::ENCRYPT | KeyUsages::DECRYPT | KeyUsages::WRAP
    } else if algorithm.is_rsa() {
        KeyUsages::SIGN | KeyUsages::DECRYPT | KeyUsages::WRAP
    } else {
        KeyUsages::SIGN
    }
}

fn transit_hash(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha256 => "sha2-256",
        HashAlg::Sha384 => "sha2-384",
        _ => "sha2-512",
    }
}

fn unexpected(what: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Unexpected, what).with_backend(BACKEND)
}

fn integrity(what: &'static str) -> Error {
    Error::new(ErrorKind::Integrity, what).with_backend(BACKEND)
}

/// Splits Transit's `vault:v<N>:<base64>` into the version and the bytes.
pub(crate) fn parse_transit(text: &str) -> Option<(KeyVersion, Vec<u8>)> {
    let rest = text.strip_prefix("vault:v")?;
    let (version, b64) = rest.split_once(':')?;
    if version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version: KeyVersion = version.parse().ok()?;
    let bytes = Base64::decode_vec(b64).ok()?;
    Some((version, bytes))
}

/// keychain's ciphertext: format byte, key version, Transit's ciphertext bytes.
fn frame(version: KeyVersion, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + blob.len());
    out.push(FORMAT_TRANSIT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(blob);
    out
}

/// Converts a ciphertext made by [`Backend::encrypt`] on this backend into Transit's own text
/// form (`vault:v<N>:<base64>`), which `bao write transit/decrypt/<key> ciphertext=...` and other
/// Transit clients accept.
///
/// ```
/// let ct = [1u8, 0, 0, 0, 3, 0xde, 0xad];
/// assert_eq!(keychain_vault::to_transit_ciphertext(&ct)?, "vault:v3:3q0=");
/// # Ok::<(), keychain_core::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::Integrity`] when `ciphertext` is not one of this backend's.
pub fn to_transit_ciphertext(ciphertext: &[u8]) -> Result<String> {
    let (version, blob) = unframe(ciphertext)?;
    Ok(format!("vault:v{version}:{}", Base64::encode_string(blob)))
}

/// The inverse of [`to_transit_ciphertext`]: a Transit ciphertext made by any Transit client, as
/// a ciphertext [`Backend::decrypt_aead`] on this backend takes.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when `text` is not `vault:v<N>:<base64>`.
pub fn from_transit_ciphertext(text: &str) -> Result<Vec<u8>> {
    let (version, blob) = parse_transit(text).ok_or_else(|| {
        Error::invalid_input("not a Transit ciphertext (vault:v<N>:<base64>)").with_backend(BACKEND)
    })?;
    Ok(frame(version, &blob))
}

fn unframe(ciphertext: &[u8]) -> Result<(KeyVersion, &[u8])> {
    if ciphertext.len() <= HEADER_LEN {
        return Err(integrity("ciphertext is too short"));
    }
    if ciphertext[0] != FORMAT_TRANSIT {
        return Err(integrity(
            "ciphertext was not made by this backend (unknown format byte)",
        ));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&ciphertext[1..HEADER_LEN]);
    let version = KeyVersion::from_be_bytes(v);
    if version == 0 {
        return Err(integrity("ciphertext names key version 0"));
    }
    Ok((version, &ciphertext[HEADER_LEN..]))
}

/// Parses the RFC 3339 UTC or offset times Transit reports (`2026-12-01T08:50:00.123456789Z`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
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
fn key_info(name: &KeyName, data: &KeyData) -> Result<KeyInfo> {
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

/// The PKCS#8 DER of a key as Transit exports it: base64 raw bytes for AES, base64 seed ‖
/// public key for Ed25519, PEM (`EC PRIVATE KEY`, `RSA PRIVATE KEY`) for ECDSA and RSA.
fn exported_pkcs8(algorithm: KeyAlgorithm, text: &str) -> Result<SecretBytes> {
    use keychain_crypto::pkcs8;
    let raw = || {
        Base64::decode_vec(text.trim())
            .map(Zeroizing::new)
            .map_err(|_| unexpected("Transit exported a key that is not base64"))
    };
    let der = if algorithm.is_symmetric() {
        pkcs8::symmetric_to_pkcs8(algorithm, &raw()?)?
    } else if algorithm == KeyAlgorithm::Ed25519 {
        pkcs8::ed25519_to_pkcs8(&raw()?)?
    } else {
        pkcs8::private_key_pem_to_pkcs8(text.as_bytes())?
    };
    let found = pkcs8::inspect(der.expose())?.algorithm;
    if found != algorithm {
        return Err(unexpected(format!(
            "Transit exported a {found} key for a {algorithm} key"
        )));
    }
    Ok(der)
}

impl VaultBackend {
    /// Opens the backend: resolves the credentials, logs in (AppRole, Kubernetes) or looks the
    /// token up (to learn when to renew it). Makes no Transit call: the first operation shows
    /// whether the mount exists.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid configuration or TLS files that are no PEM
    /// certificate and key; [`ErrorKind::NotFound`] for TLS files that do not exist; errors of
    /// [`keychain_core::SecretSource::resolve`] for the credentials; [`ErrorKind::PermissionDenied`]
    /// when the server refuses the token, [`ErrorKind::Unauthenticated`] when it refuses an
    /// AppRole or Kubernetes login; non-retryable [`ErrorKind::Unavailable`] when the server's
    /// TLS certificate is not trusted.
    pub async fn open(config: Config) -> Result<Self> {
        config
            .validate()
            .map_err(|e| e.with_backend(BACKEND).with_operation(Operation::Open))?;
        let settings = crate::session::Settings::from_config(&config)
            .map_err(|e| e.with_backend(BACKEND).with_operation(Operation::Open))?;
        let Config {
            auth,
            mount,
            key_prefix,
            export_kdf,
            ..
        } = config;
        let session = Session::open(settings, auth).await?;
        Ok(Self {
            session,
            mount,
            prefix: key_prefix,
            caps: capabilities(),
            cache: Mutex::new(HashMap::new()),
            admin: AsyncRwLock::new(()),
            deletions: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            export_kdf,
        })
    }

    /// The Transit key name of `name`: `<key-prefix><name>` (a leading or trailing `-` escaped
    /// with a `.`, see the crate docs).
    pub fn transit_name(&self, name: &KeyName) -> String {
        naming::transit_name(&self.prefix, name)
    }

    /// The Transit mount path.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    fn path(&self, what: &str, name: &KeyName) -> String {
        format!("{}/{what}/{}", self.mount, self.transit_name(name))
    }

    fn check_open(&self, op: Operation) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Unavailable, "the backend is closed")
                .with_backend(BACKEND)
                .with_operation(op)
                .with_retryable(false));
        }
        Ok(())
    }

    fn cached(&self, name: &KeyName) -> Option<Arc<Resolved>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Caches what `info` says of `name`, unless a delete ran since `seen` (the deletion count
    /// when the read started): then the answer may describe a key that is gone.
    fn remember(&self, name: &KeyName, info: &KeyInfo, seen: u64) -> Arc<Resolved> {
        let resolved = Arc::new(Resolved {
            algorithm: info.algorithm,
            latest: info.version,
            lowest: info.versions.first().map_or(1, |v| v.version),
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.deletions.load(Ordering::Acquire) == seen {
            cache.insert(name.clone(), Arc::clone(&resolved));
        }
        resolved
    }

    /// Drops the cached entry when `result` says the key may be gone or different.
    fn forget_on<T>(&self, name: &KeyName, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Integrity)
        {
            self.forget(name);
        }
        result
    }

    fn forget(&self, name: &KeyName) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// `GET <mount>/keys/<name>`; `None` when the key does not exist.
    async fn read(&self, name: &KeyName) -> Result<Option<KeyData>> {
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

    /// The key's metadata, read from the server (and cached), with what was cached.
    async fn info_resolved(&self, name: &KeyName) -> Result<(KeyInfo, Arc<Resolved>)> {
        let seen = self.deletions.load(Ordering::Acquire);
        let data = self.read(name).await?.ok_or_else(|| {
            self.forget(name);
            Error::not_found(format!("no Transit key {}", self.transit_name(name)))
                .with_backend(BACKEND)
        })?;
        let info = key_info(name, &data)?;
        let resolved = self.remember(name, &info, seen);
        Ok((info, resolved))
    }

    /// The key's metadata, read from the server (and cached).
    async fn info(&self, name: &KeyName) -> Result<KeyInfo> {
        Ok(self.info_resolved(name).await?.0)
    }

    /// The key as cached, else read from the server.
    async fn resolve(&self, name: &KeyName) -> Result<Arc<Resolved>> {
        match self.cached(name) {
            Some(r) => Ok(r),
            None => Ok(self.info_resolved(name).await?.1),
        }
    }

    /// The key and the version a call targets: the one `key` names (checked to exist, re-read
    /// when newer than the cached latest), else the newest.
    async fn target(&self, key: &KeyRef) -> Result<(Arc<Resolved>, Option<KeyVersion>)> {
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

    /// POST with the current client.
    async fn post<R>(&self, path: String, body: &Value) -> Result<R>
    where
        R: serde::de::DeserializeOwned + Send + Sync,
    {
        let current = self.session.client().await?;
        api::data(&current.client, Call::post(path, body))
            .await
            .map_err(map)
    }

    async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
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

    /// `export_wrapped` with a password: Transit's export of one version, converted to PKCS#8
    /// and encrypted with PBES2 here.
    async fn export_inner(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let WrappingSpec::Password(password) = with else {
            return Err(Error::unsupported(
                "wrapping under another key; Transit exports with WrappingSpec::Password \
                 (its BYOK export to another Transit mount is not offered)",
            ));
        };
        if password.expose().is_empty() {
            return Err(Error::invalid_input("the export password is empty"));
        }
        let data = self.read(key.name()).await?.ok_or_else(|| {
            Error::not_found(format!("no Transit key {}", self.transit_name(key.name())))
        })?;
        let info = key_info(key.name(), &data)?;
        if !data.exportable {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "Transit key {} was not created exportable (Transit sets that once, at \
                     creation or import)",
                    self.transit_name(key.name())
                ),
            ));
        }
        let version = key.version().unwrap_or(info.version);
        if info.version_info(version).is_none() {
            return Err(Error::not_found(format!(
                "key {} has no usable version {version}",
                key.name()
            )));
        }
        let kind = if info.algorithm.is_symmetric() {
            "encryption-key"
        } else {
            "signing-key"
        };
        let path = format!(
            "{}/export/{kind}/{}/{version}",
            self.mount,
            self.transit_name(key.name())
        );
        let current = self.session.client().await?;
        let exported: api::Exported = api::data(&current.client, Call::get(path))
            .await
            .map_err(map)?;
        let text = exported
            .keys
            .get(&version.to_string())
            .ok_or_else(|| unexpected(format!("Transit exported no version {version}")))?;
        let der = exported_pkcs8(info.algorithm, text.0.as_str())?;
        let (password, kdf) = (password.duplicate(), self.export_kdf);
        let bytes = tokio::task::spawn_blocking(move || {
            keychain_crypto::pkcs8::encrypt_der(der.expose(), password.expose().as_bytes(), kdf)
        })
        .await
        .map_err(|e| unexpected(format!("export task failed: {e}")))??;
        Ok(WrappedKey::new(
            WrapFormat::EncryptedPkcs8,
            info.algorithm,
            bytes,
        ))
    }

    /// Imports key material through Transit's BYOK import: the key is wrapped with a one-time
    /// AES key (KWP), which is wrapped with the mount's RSA-4096 wrapping key (OAEP SHA-256).
    async fn import_inner(
        &self,
        name: &KeyName,
        plain: keychain_crypto::pkcs8::Plain,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let algorithm = plain.algorithm;
        let key_type = transit_type(algorithm)
            .filter(|_| self.caps.supports_algorithm(algorithm))
            .ok_or_else(|| Error::unsupported(format!("Transit has no {algorithm} keys")))?;
        let possible = usages_of(algorithm);
        if !possible.contains_all(spec.usages) {
            return Err(Error::invalid_input(format!(
                "a Transit {key_type} key can have the usages {possible:?}, not {:?}",
                spec.usages
            )));
        }
        let _admin = self.admin.write().await;
        if self.read(name).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("Transit key {} exists", self.transit_name(name)),
            ));
        }
        let current = self.session.client().await?;
        let wrapping: api::WrappingKey = api::data(
            &current.client,
            Call::get(format!("{}/wrapping_key", self.mount)),
        )
        .await
        .map_err(map)?;
        let wrapping = PublicKey::from_pem(&wrapping.public_key)
            .map_err(|e| unexpected(format!("Transit's wrapping key: {e}")))?;
        let blob = keychain_crypto::wrap::rsa_aes_key_wrap(
            &wrapping,
            HashAlg::Sha256,
            plain.material.expose(),
        )?;
        drop(plain);
        let body = json!({
            "ciphertext": Base64::encode_string(&blob),
            "type": key_type,
            "hash_function": "SHA256",
            "exportable": spec.exportable,
        });
        api::empty(
            &current.client,
            Call::post(format!("{}/import", self.path("keys", name)), &body),
        )
        .await
        .map_err(map)?;
        let info = self.info(name).await?;
        if info.algorithm != algorithm || info.version != 1 || info.exportable != spec.exportable {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "Transit key {} was created concurrently by another client",
                    self.transit_name(name)
                ),
            ));
        }
        Ok(info)
    }

    async fn delete(&self, name: &KeyName) -> Result<()> {
        let _admin = self.admin.write().await;
        self.forget(name);
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
        self.deletions.fetch_add(1, Ordering::AcqRel);
        self.forget(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<KeyInfo>> {
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

    async fn sign_inner(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let (resolved, version) = self.target(key).await?;
        scheme.check_fits(resolved.algorithm)?;
        if !self.caps.signature_schemes.contains(&scheme) {
            return Err(Error::unsupported(format!("signature scheme {scheme}")));
        }
        let mut body = match scheme {
            SignatureScheme::Ed25519 => {
                let SignInput::Message(m) = input else {
                    return Err(Error::invalid_input(
                        "Ed25519 signs whole messages; pass SignInput::Message",
                    ));
                };
                json!({ "input": Base64::encode_string(m) })
            }
            _ => {
                let digest = input.prepare(scheme)?;
                let hash = scheme.hash().unwrap_or(HashAlg::Sha256);
                let mut body = json!({
                    "input": Base64::encode_string(&digest),
                    "prehashed": true,
                    "hash_algorithm": transit_hash(hash),
                });
                match scheme {
                    SignatureScheme::RsaPkcs1v15(_) => {
                        body["signature_algorithm"] = "pkcs1v15".into();
                    }
                    SignatureScheme::RsaPss(_) => {
                        body["signature_algorithm"] = "pss".into();
                        // The salt as long as the hash (RFC 8017's recommendation, what
                        // verifiers assume); Transit's default would be the longest possible.
                        body["salt_length"] = "hash".into();
                    }
                    _ => body["marshaling_algorithm"] = "asn1".into(),
                }
                body
            }
        };
        if let Some(v) = version {
            body["key_version"] = v.into();
        }
        let signed: api::Signed = self.post(self.path("sign", key.name()), &body).await?;
        let (made_by, bytes) = parse_transit(&signed.signature)
            .ok_or_else(|| unexpected("Transit returned a signature not in vault:v<N>: form"))?;
        Ok(Signature::new(bytes, scheme, made_by))
    }

    async fn encrypt_inner(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        // Shared with other encrypts, exclusive of this backend's deletes (see `admin`).
        let _admin = self.admin.read().await;
        let (resolved, version) = self.target(key).await?;
        if !resolved.algorithm.is_symmetric() {
            return Err(Error::invalid_input(format!(
                "{} is a {} key; AEAD needs a symmetric key",
                key.name(),
                resolved.algorithm
            )));
        }
        let encoded = Zeroizing::new(Base64::encode_string(plaintext));
        let mut body = json!({ "plaintext": encoded.as_str() });
        if !aad.is_empty() {
            body["associated_data"] = Base64::encode_string(aad).into();
        }
        if let Some(v) = version {
            body["key_version"] = v.into();
        }
        let result: Result<api::Encrypted> =
            self.post(self.path("encrypt", key.name()), &body).await;
        zeroize_json(&mut body);
        let (made_by, blob) = parse_transit(&result?.ciphertext)
            .ok_or_else(|| unexpected("Transit returned a ciphertext not in vault:v<N>: form"))?;
        Ok(frame(made_by, &blob))
    }

    async fn decrypt_aead_inner(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let resolved = self.resolve(name).await?;
        if !resolved.algorithm.is_symmetric() {
            return Err(Error::invalid_input(format!(
                "{name} is a {} key; AEAD needs a symmetric key",
                resolved.algorithm
            )));
        }
        let text = to_transit_ciphertext(ciphertext)?;
        let mut body = json!({ "ciphertext": text });
        if !aad.is_empty() {
            body["associated_data"] = Base64::encode_string(aad).into();
        }
        self.transit_decrypt(name, &body).await
    }

    async fn decrypt_rsa(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let (resolved, version) = self.target(key).await?;
        if !resolved.algorithm.is_rsa() {
            return Err(Error::invalid_input(format!(
                "{} is a {} key; RSA-OAEP needs an RSA key",
                key.name(),
                resolved.algorithm
            )));
        }
        match padding {
            RsaPadding::Oaep(HashAlg::Sha256) => {}
            other => {
                return Err(Error::unsupported(format!(
                    "Transit decrypts RSA-OAEP with SHA-256 only, not {other:?}"
                )));
            }
        }
        let pinned = version.is_some();
        let version = version.unwrap_or(resolved.latest);
        let result = self.decrypt_oaep(key.name(), version, ciphertext).await;
        match result {
            // Another client may have rotated the key: the ciphertext may be for the newer
            // public key. Read the key again and try its latest version once.
            Err(e) if !pinned && e.kind() == ErrorKind::Integrity => {
                let fresh = self.info_resolved(key.name()).await?.1;
                if fresh.latest == version {
                    return Err(e);
                }
                self.decrypt_oaep(key.name(), fresh.latest, ciphertext)
                    .await
            }
            other => other,
        }
    }

    async fn decrypt_oaep(
        &self,
        name: &KeyName,
        version: KeyVersion,
        ciphertext: &[u8],
    ) -> Result<SecretBytes> {
        let body = json!({
            "ciphertext": format!("vault:v{version}:{}", Base64::encode_string(ciphertext)),
        });
        self.transit_decrypt(name, &body).await
    }

    async fn transit_decrypt(&self, name: &KeyName, body: &Value) -> Result<SecretBytes> {
        let decrypted: api::Decrypted = self.post(self.path("decrypt", name), body).await?;
        let bytes = Base64::decode_vec(decrypted.plaintext.as_str())
            .map_err(|_| unexpected("Transit returned a plaintext that is not base64"))?;
        Ok(SecretBytes::new(bytes))
    }

    async fn rotate(&self, name: &KeyName) -> Result<KeyInfo> {
        self.forget(name);
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

    async fn random_inner(&self, len: usize) -> Result<Vec<u8>> {
        if len > MAX_RANDOM {
            return Err(Error::invalid_input(format!(
                "random returns at most {MAX_RANDOM} bytes per call, asked for {len}"
            )));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let random: api::RandomBytes = self
            .post(
                format!("sys/tools/random/{len}"),
                &json!({ "format": "base64" }),
            )
            .await?;
        let bytes = Base64::decode_vec(&random.random_bytes)
            .map_err(|_| unexpected("sys/tools/random returned bytes that are not base64"))?;
        if bytes.len() != len {
            return Err(unexpected(format!(
                "sys/tools/random returned {} bytes, asked for {len}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn health_inner(&self) -> Result<Health> {
        let current = self.session.client().await?;
        let status: api::SealStatus =
            api::raw(&current.client, Call::get("sys/seal-status".into()))
                .await
                .map_err(map)?;
        let mut health = Health::ok().with_detail("auth", self.session.method());
        if let Some(v) = status.version {
            health = health.with_detail("version", v);
        }
        if let Some(c) = status.cluster_name {
            health = health.with_detail("cluster", c);
        }
        if status.sealed {
            health.status = HealthStatus::Unavailable;
            return Ok(health.with_detail("sealed", "true"));
        }
        // The mount answers (and the token may read it), and whether Transit's encrypt creates
        // missing keys ("upsert") — which it should not for applications (see the crate docs).
        match api::data::<api::KeysConfig>(
            &current.client,
            Call::get(format!("{}/config/keys", self.mount)),
        )
        .await
        .map_err(map)
        {
            Ok(config) => {
                Ok(health.with_detail("disable-upsert", config.disable_upsert.to_string()))
            }
            Err(e) => {
                health.status = HealthStatus::Degraded;
                Ok(health.with_detail("transit", e.to_string()))
            }
        }
    }
}

/// Overwrites the plaintext in a request body once it has been sent.
fn zeroize_json(body: &mut Value) {
    if let Some(Value::String(s)) = body.get_mut("plaintext") {
        zeroize::Zeroize::zeroize(s);
    }
}

#[async_trait]
impl Backend for VaultBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        let op = Operation::GenerateKey;
        self.check_open(op)?;
        self.generate(name, spec)
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op).with_key(name))
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let op = Operation::KeyInfo;
        self.check_open(op)?;
        let err = |e: Error| {
            e.with_backend(BACKEND)
                .with_operation(op)
                .with_key(key.name())
        };
        let info = self.info(key.name()).await.map_err(err)?;
        if let Some(v) = key.version()
            && info.version_info(v).is_none()
        {
            return Err(err(Error::not_found(format!(
                "key {} has no usable version {v}",
                key.name()
            ))));
        }
        Ok(info)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let op = Operation::ListKeys;
        self.check_open(op)?;
        self.list()
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }

    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let op = Operation::DeleteKey;
        self.check_open(op)?;
        self.delete(name)
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op).with_key(name))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let op = Operation::Sign;
        self.check_open(op)?;
        let result = self.sign_inner(key, input, scheme).await;
        self.forget_on(key.name(), result).map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(op)
                .with_key(key.name())
        })
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if self.session.owns_token()
            && let Ok(current) = self.session.client().await
        {
            // The token came from this backend's login: nobody else will use it.
            let _ = vaultrs::token::revoke_self(&current.client).await;
        }
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let op = Operation::Decrypt;
        self.check_open(op)?;
        let result = self.decrypt_rsa(key, ciphertext, padding).await;
        self.forget_on(key.name(), result).map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(op)
                .with_key(key.name())
        })
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let op = Operation::Encrypt;
        self.check_open(op)?;
        let result = self.encrypt_inner(key, plaintext, aad).await;
        self.forget_on(key.name(), result).map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(op)
                .with_key(key.name())
        })
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let op = Operation::DecryptAead;
        self.check_open(op)?;
        let result = self.decrypt_aead_inner(name, ciphertext, aad).await;
        self.forget_on(name, result)
            .map_err(|e| e.with_backend(BACKEND).with_operation(op).with_key(name))
    }

    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let op = Operation::RotateKey;
        self.check_open(op)?;
        self.rotate(name)
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op).with_key(name))
    }

    async fn import_key(
        &self,
        name: &KeyName,
        material: KeyMaterial,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let op = Operation::ImportKey;
        self.check_open(op)?;
        let err = |e: Error| e.with_backend(BACKEND).with_operation(op).with_key(name);
        let plain =
            keychain_crypto::pkcs8::from_material(&material, spec.algorithm).map_err(err)?;
        drop(material);
        self.import_inner(name, plain, spec).await.map_err(err)
    }

    async fn export_wrapped(&self, key: &KeyRef, with: &WrappingSpec) -> Result<WrappedKey> {
        let op = Operation::ExportWrapped;
        self.check_open(op)?;
        let result = self.export_inner(key, with).await;
        self.forget_on(key.name(), result).map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(op)
                .with_key(key.name())
        })
    }

    async fn import_wrapped(
        &self,
        name: &KeyName,
        wrapped: &WrappedKey,
        unwrap_with: &WrappingSpec,
        spec: &ImportSpec,
    ) -> Result<KeyInfo> {
        let op = Operation::ImportWrapped;
        self.check_open(op)?;
        let err = |e: Error| e.with_backend(BACKEND).with_operation(op).with_key(name);
        let WrappingSpec::Password(password) = unwrap_with else {
            return Err(err(Error::unsupported(
                "unwrapping with another key; Transit imports with WrappingSpec::Password",
            )));
        };
        let (wrapped2, pw, want) = (wrapped.clone(), password.duplicate(), spec.algorithm);
        let plain = tokio::task::spawn_blocking(move || {
            keychain_crypto::pkcs8::open_password_export(&wrapped2, pw.expose().as_bytes(), want)
        })
        .await
        .map_err(|e| err(unexpected(format!("import task failed: {e}"))))?
        .map_err(err)?;
        self.import_inner(name, plain, spec).await.map_err(err)
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let op = Operation::Random;
        self.check_open(op)?;
        self.random_inner(len)
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }

    async fn health(&self) -> Result<Health> {
        let op = Operation::Health;
        self.check_open(op)?;
        self.health_inner()
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn types_round_trip() {
        for a in capabilities().algorithms {
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
    fn transit_text_and_frames() {
        assert_eq!(
            parse_transit("vault:v12:3q0="),
            Some((12, vec![0xde, 0xad]))
        );
        for bad in [
            "vault:v0:AA==",
            "vault:v01:AA==",
            "vault:v:AA==",
            "vault:vx:AA==",
            "v1:AA==",
            "vault:v1:*",
        ] {
            assert_eq!(parse_transit(bad), None, "{bad}");
        }
        let ct = from_transit_ciphertext("vault:v7:AQIDBA==").unwrap();
        assert_eq!(ct, [1, 0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(to_transit_ciphertext(&ct).unwrap(), "vault:v7:AQIDBA==");
        for bad in [
            &[][..],
            &[1, 0, 0, 0, 7],
            &[2, 0, 0, 0, 7, 1],
            &[1, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(
                to_transit_ciphertext(bad).unwrap_err().kind(),
                ErrorKind::Integrity,
                "{bad:?}"
            );
        }
        assert_eq!(
            from_transit_ciphertext("nope").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
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
