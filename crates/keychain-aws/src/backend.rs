//! The AWS KMS backend: keys are KMS keys behind aliases; every private-key and AES operation
//! runs in KMS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    EncryptionAlgorithmSpec, KeySpec as KmsKeySpec, KeyState, KeyUsageType, MessageType,
    SigningAlgorithmSpec, Tag,
};
use base64ct::{Base64, Encoding as _};
use keychain_core::{
    Backend, Capabilities, Error, ErrorKind, HashAlg, KeyAlgorithm, KeyInfo, KeyName, KeyRef,
    KeySpec, KeyUsage, KeyUsages, KeyVersion, KeyVersionInfo, Operation, Protection, PublicKey,
    Result, RsaPadding, SecretBytes, SignInput, Signature, SignatureScheme, async_trait,
};
use tokio::sync::Mutex as AsyncMutex;

use crate::config::Config;
use crate::error::{BACKEND, map};
use crate::naming::{Parsed, key_alias, parse_alias, version_alias};

/// The most bytes [`Backend::random`] returns per call (KMS `GenerateRandom`'s limit).
pub const MAX_RANDOM: usize = 1024;

/// The largest plaintext [`Backend::encrypt`] takes (KMS `Encrypt`'s limit).
pub const MAX_PLAINTEXT: usize = 4096;

/// The largest message signed as `MessageType=RAW`; longer ones are hashed here and signed as
/// a digest (KMS `Sign`'s limit).
const MAX_RAW_MESSAGE: usize = 4096;

/// First byte of a ciphertext whose KMS blob holds the plaintext as it is.
const FORMAT_PLAIN: u8 = 1;
/// First byte of a ciphertext of the empty plaintext (KMS refuses to encrypt nothing, so the
/// blob holds one zero byte).
const FORMAT_EMPTY: u8 = 2;
/// Format byte + key version (u32 big-endian).
const HEADER_LEN: usize = 5;

/// Encryption-context entries; see the README's "AAD and the encryption context".
const CTX_FORMAT: &str = "keychain-format";
const CTX_VERSION: &str = "keychain-key-version";
const CTX_AAD: &str = "keychain-aad";
/// The tag every key this backend creates carries: the alias it was made for, so keys left
/// behind by an interrupted generate or rotate can be found.
const TAG_ALIAS: &str = "keychain-alias";

/// A key as this backend last resolved it: its newest version's KMS key and what it is.
#[derive(Debug)]
struct Resolved {
    key_id: String,
    arn: String,
    algorithm: KeyAlgorithm,
    usages: KeyUsages,
    version: KeyVersion,
    created: Option<SystemTime>,
}

/// What an alias lookup found.
enum Lookup {
    Missing,
    /// The alias points at a key scheduled for deletion (a `delete_key` that stopped half-way).
    PendingDeletion,
    Present(Resolved),
}

/// A data key from [`AwsBackend::generate_data_key`]: the plaintext to use now, and the
/// same key encrypted under the KMS key in keychain's ciphertext format.
#[derive(Debug)]
#[non_exhaustive]
pub struct DataKey {
    /// The data key itself. Use it, then drop it (it is zeroized).
    pub plaintext: SecretBytes,
    /// The data key encrypted under the KMS key, with the AAD bound; opened by
    /// [`Backend::decrypt_aead`] with the key's name and the same AAD.
    pub ciphertext: Vec<u8>,
}

/// The AWS KMS backend. Open with [`AwsBackend::open`]; see the crate docs for how keys map
/// to KMS keys and aliases.
#[derive(Debug)]
pub struct AwsBackend {
    client: Client,
    prefix: String,
    deletion_window_days: i32,
    caps: Capabilities,
    /// Name → newest version, so `sign`/`encrypt` cost one KMS call; `key_info`, `list_keys`
    /// and `rotate_key` always read KMS and refresh it.
    cache: Mutex<HashMap<KeyName, Arc<Resolved>>>,
    /// Serializes generate/rotate/delete within this backend, keeping "does the alias exist?"
    /// and "create it" together.
    admin: AsyncMutex<()>,
    closed: AtomicBool,
}

fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new(BACKEND, Protection::CloudHsm);
    caps.algorithms = vec![
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
        KeyAlgorithm::EcP521,
        KeyAlgorithm::EcSecp256k1,
        KeyAlgorithm::Aes256Gcm,
    ];
    for h in HashAlg::ALL {
        caps.signature_schemes.extend([
            SignatureScheme::RsaPkcs1v15(h),
            SignatureScheme::RsaPss(h),
            SignatureScheme::Ecdsa(h),
        ]);
    }
    caps.sign_message = true;
    caps.oaep_hashes = vec![HashAlg::Sha256];
    caps.aead = true;
    caps.rotate = true;
    caps.random = true;
    caps
}

fn kms_key_spec(algorithm: KeyAlgorithm) -> Option<KmsKeySpec> {
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

fn algorithm_of(spec: &KmsKeySpec) -> Option<KeyAlgorithm> {
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
fn usages_of(algorithm: KeyAlgorithm, usage: &KeyUsageType) -> KeyUsages {
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

/// The KMS signing algorithm for `scheme` on a key of `algorithm`, and the digest length KMS
/// expects with `MessageType=DIGEST`.
fn signing_algorithm(
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
) -> Result<(SigningAlgorithmSpec, HashAlg)> {
    use SigningAlgorithmSpec as S;
    scheme.check_fits(algorithm)?;
    Ok(match scheme {
        SignatureScheme::RsaPkcs1v15(h) => (
            match h {
                HashAlg::Sha256 => S::RsassaPkcs1V15Sha256,
                HashAlg::Sha384 => S::RsassaPkcs1V15Sha384,
                _ => S::RsassaPkcs1V15Sha512,
            },
            h,
        ),
        SignatureScheme::RsaPss(h) => (
            match h {
                HashAlg::Sha256 => S::RsassaPssSha256,
                HashAlg::Sha384 => S::RsassaPssSha384,
                _ => S::RsassaPssSha512,
            },
            h,
        ),
        // KMS pairs each curve with one hash; see `fit_digest` for other hashes.
        SignatureScheme::Ecdsa(_) => match algorithm {
            KeyAlgorithm::EcP384 => (S::EcdsaSha384, HashAlg::Sha384),
            KeyAlgorithm::EcP521 => (S::EcdsaSha512, HashAlg::Sha512),
            _ => (S::EcdsaSha256, HashAlg::Sha256),
        },
        other => return Err(Error::unsupported(format!("signature scheme {other}"))),
    })
}

/// ECDSA uses the leftmost bits of the hash as an integer (FIPS 186-5 §6.4.1), so a digest
/// of another length than the one KMS pairs with the curve gives the same signature when it is
/// cut to that length (longer) or left-padded with zeros (shorter: the integer is unchanged).
fn fit_digest(digest: &[u8], len: usize) -> Vec<u8> {
    if digest.len() >= len {
        digest[..len].to_vec()
    } else {
        let mut out = vec![0u8; len - digest.len()];
        out.extend_from_slice(digest);
        out
    }
}

fn system_time(dt: Option<&aws_sdk_kms::primitives::DateTime>) -> Option<SystemTime> {
    dt.and_then(|d| SystemTime::try_from(*d).ok())
}

fn unexpected(what: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Unexpected, what).with_backend(BACKEND)
}

fn integrity(what: &'static str) -> Error {
    Error::new(ErrorKind::Integrity, what).with_backend(BACKEND)
}

/// The encryption context of a keychain ciphertext.
fn context(format: u8, version: KeyVersion, aad: &[u8]) -> HashMap<String, String> {
    let mut ctx = HashMap::with_capacity(3);
    ctx.insert(CTX_FORMAT.to_owned(), format.to_string());
    ctx.insert(CTX_VERSION.to_owned(), version.to_string());
    if !aad.is_empty() {
        ctx.insert(CTX_AAD.to_owned(), Base64::encode_string(aad));
    }
    ctx
}

impl AwsBackend {
    /// Opens the backend: resolves static credentials (if configured) and builds the SDK
    /// client. Makes no KMS call; the first operation shows whether KMS is reachable.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid configuration or no region anywhere;
    /// errors of [`keychain_core::SecretSource::resolve`] for the credentials.
    pub async fn open(config: Config) -> Result<Self> {
        let err = |e: Error| e.with_backend(BACKEND).with_operation(Operation::Open);
        config.validate().map_err(err)?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts));
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let mut timeouts = TimeoutConfig::builder();
        if let Some(ms) = config.connect_timeout_ms {
            timeouts = timeouts.connect_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = config.operation_timeout_ms {
            timeouts = timeouts.operation_timeout(Duration::from_millis(ms));
        }
        loader = loader.timeout_config(timeouts.build());
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            let id = id.resolve("AWS access key id").map_err(err)?;
            let secret = secret.resolve("AWS secret access key").map_err(err)?;
            let token = config
                .session_token
                .as_ref()
                .map(|t| t.resolve("AWS session token"))
                .transpose()
                .map_err(err)?;
            loader = loader.credentials_provider(Credentials::new(
                id.expose(),
                secret.expose(),
                token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "keychain-aws static credentials",
            ));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(err(Error::invalid_input(
                "no AWS region: set `region` in the configuration, or AWS_REGION",
            )));
        }
        Ok(Self {
            client: Client::new(&sdk),
            prefix: config.alias_prefix,
            deletion_window_days: i32::from(config.deletion_window_days),
            caps: capabilities(),
            cache: Mutex::new(HashMap::new()),
            admin: AsyncMutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// The SDK client this backend uses (for calls keychain does not wrap).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The alias namespace (`alias/<prefix><name>`).
    pub fn alias_prefix(&self) -> &str {
        &self.prefix
    }

    /// The alias of key `name` in this backend's namespace.
    pub fn alias_of(&self, name: &KeyName) -> String {
        key_alias(&self.prefix, name)
    }

    /// A fresh data key of `len` bytes (1 to 1024; 32 for AES-256) from KMS `GenerateDataKey`
    /// under the symmetric key `key`, for envelope encryption: the plaintext to use now, and
    /// the data key encrypted in keychain's ciphertext format with `aad` bound, which
    /// [`Backend::decrypt_aead`] opens later with the key's name and the same AAD.
    ///
    /// # Errors
    /// As [`Backend::encrypt`]; [`ErrorKind::InvalidInput`] for a length outside 1..=1024.
    pub async fn generate_data_key(&self, key: &KeyRef, len: usize, aad: &[u8]) -> Result<DataKey> {
        let op = Operation::Encrypt;
        let ctx = |e: Error| e.with_operation(op).with_key(key.name());
        self.check_open(op)?;
        if !(1..=MAX_RANDOM).contains(&len) {
            return Err(ctx(Error::invalid_input(format!(
                "a data key is 1 to {MAX_RANDOM} bytes, not {len}"
            ))));
        }
        let (key_id, version) = self.symmetric_target(key).await.map_err(ctx)?;
        let len = i32::try_from(len).map_err(|_| ctx(Error::invalid_input("length")))?;
        let out = self
            .client
            .generate_data_key()
            .key_id(&key_id)
            .number_of_bytes(len)
            .set_encryption_context(Some(context(FORMAT_PLAIN, version, aad)))
            .send()
            .await
            .map_err(|e| ctx(map(e)))?;
        let plaintext = out
            .plaintext
            .map(|b| SecretBytes::new(b.into_inner()))
            .ok_or_else(|| ctx(unexpected("GenerateDataKey returned no plaintext")))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| ctx(unexpected("GenerateDataKey returned no ciphertext")))?;
        Ok(DataKey {
            plaintext,
            ciphertext: frame(FORMAT_PLAIN, version, blob.as_ref()),
        })
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

    fn remember(&self, name: &KeyName, resolved: Resolved) -> Arc<Resolved> {
        let resolved = Arc::new(resolved);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), Arc::clone(&resolved));
        resolved
    }

    fn forget(&self, name: &KeyName) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// The key as cached, else read from KMS.
    async fn resolve(&self, name: &KeyName) -> Result<Arc<Resolved>> {
        match self.cached(name) {
            Some(r) => Ok(r),
            None => self.refresh(name).await,
        }
    }

    /// Reads the key from KMS and caches it.
    async fn refresh(&self, name: &KeyName) -> Result<Arc<Resolved>> {
        match self.lookup(name).await? {
            Lookup::Present(r) => Ok(self.remember(name, r)),
            Lookup::Missing => {
                self.forget(name);
                Err(Error::not_found("no such key").with_backend(BACKEND))
            }
            Lookup::PendingDeletion => {
                self.forget(name);
                Err(Error::not_found("the key is scheduled for deletion").with_backend(BACKEND))
            }
        }
    }

    /// DescribeKey on the key's alias, and its newest version: for symmetric keys 1 + the
    /// number of rotations (ListKeyRotations), for asymmetric ones the `/v<n>` alias that
    /// points at the same KMS key (ListAliases for that key), 1 when there is none.
    async fn lookup(&self, name: &KeyName) -> Result<Lookup> {
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
    async fn aliases(&self, key_id: Option<&str>) -> Result<Vec<String>> {
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
    async fn rotations(&self, key_id: &str) -> Result<Vec<Option<SystemTime>>> {
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
    async fn info(&self, name: &KeyName, want: Option<KeyVersion>) -> Result<KeyInfo> {
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

    /// The KMS key id (or version alias) for `key` and the version it is: the cached newest
    /// version's key, or the `/v<n>` alias of an older one. A version newer than the cached
    /// one is looked up again before it is `NotFound`.
    async fn target(&self, key: &KeyRef) -> Result<(Arc<Resolved>, String, KeyVersion)> {
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

    async fn symmetric_target(&self, key: &KeyRef) -> Result<(String, KeyVersion)> {
        let (r, id, version) = self.target(key).await?;
        if !r.algorithm.is_symmetric() {
            return Err(Error::invalid_input(format!(
                "{} is a {} key; AEAD needs a symmetric key",
                key.name(),
                r.algorithm
            )));
        }
        if !r.usages.contains(KeyUsage::Encrypt) {
            return Err(Error::invalid_input("the key lacks the encrypt usage"));
        }
        Ok((id, version))
    }

    /// Runs `call`; when it fails with `NotFound` or `Locked` on a cached resolution (the key
    /// was deleted or rotated by someone else), drops the cache entry and tries once more.
    async fn with_fresh<T, F, Fut>(&self, name: &KeyName, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let was_cached = self.cached(name).is_some();
        match call().await {
            Err(e) if was_cached && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Locked) => {
                self.forget(name);
                call().await
            }
            other => other,
        }
    }

    async fn sign_once(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let (r, id, version) = self.target(key).await?;
        if r.algorithm.is_symmetric() {
            return Err(Error::invalid_input(format!(
                "{} is a symmetric key; symmetric keys do not sign",
                key.name()
            )));
        }
        if !r.usages.contains(KeyUsage::Sign) {
            return Err(Error::invalid_input(
                "the key lacks the sign usage (its KMS KeyUsage is ENCRYPT_DECRYPT)",
            ));
        }
        let (algorithm, kms_hash) = signing_algorithm(r.algorithm, scheme)?;
        let (message, message_type) = match input {
            SignInput::Message(m)
                if scheme.hash() == Some(kms_hash) && m.len() <= MAX_RAW_MESSAGE =>
            {
                (m.to_vec(), MessageType::Raw)
            }
            _ => {
                let digest = input.prepare(scheme)?;
                (
                    fit_digest(&digest, kms_hash.output_len()),
                    MessageType::Digest,
                )
            }
        };
        let out = self
            .client
            .sign()
            .key_id(&id)
            .message(Blob::new(message))
            .message_type(message_type)
            .signing_algorithm(algorithm)
            .send()
            .await
            .map_err(map)?;
        let signature = out
            .signature
            .ok_or_else(|| unexpected("Sign returned no signature"))?;
        Ok(Signature::new(signature.into_inner(), scheme, version))
    }

    async fn rotate(&self, name: &KeyName) -> Result<()> {
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

    async fn generate(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
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
        self.forget(name);
        self.info(name, None).await
    }

    async fn delete(&self, name: &KeyName) -> Result<()> {
        let _admin = self.admin.lock().await;
        self.forget(name);
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

    async fn list(&self) -> Result<Vec<KeyInfo>> {
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

    async fn encrypt_inner(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::invalid_input(format!(
                "KMS encrypts at most {MAX_PLAINTEXT} bytes; use envelope encryption \
                 (generate_data_key) for {} bytes",
                plaintext.len()
            )));
        }
        let (id, version) = self.symmetric_target(key).await?;
        let (format, body): (u8, &[u8]) = if plaintext.is_empty() {
            (FORMAT_EMPTY, &[0])
        } else {
            (FORMAT_PLAIN, plaintext)
        };
        let out = self
            .client
            .encrypt()
            .key_id(&id)
            .plaintext(Blob::new(body))
            .set_encryption_context(Some(context(format, version, aad)))
            .send()
            .await
            .map_err(map)?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| unexpected("Encrypt returned no ciphertext"))?;
        Ok(frame(format, version, blob.as_ref()))
    }

    async fn decrypt_aead_inner(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let r = self.resolve(name).await?;
        if !r.algorithm.is_symmetric() {
            return Err(Error::invalid_input(format!(
                "{name} is a {} key; AEAD needs a symmetric key",
                r.algorithm
            )));
        }
        if ciphertext.len() <= HEADER_LEN {
            return Err(integrity("the ciphertext is too short"));
        }
        let format = ciphertext[0];
        if format != FORMAT_PLAIN && format != FORMAT_EMPTY {
            return Err(integrity("not a keychain awskms ciphertext (format byte)"));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&ciphertext[1..HEADER_LEN]);
        let version = KeyVersion::from_be_bytes(v);
        // No KeyId: KMS finds the key in the blob, and the answer's KeyId is checked below, so
        // another key's ciphertext is an integrity failure the same way everywhere.
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(&ciphertext[HEADER_LEN..]))
            .set_encryption_context(Some(context(format, version, aad)))
            .send()
            .await
            .map_err(map)?;
        let plaintext = out
            .plaintext
            .map(|b| SecretBytes::new(b.into_inner()))
            .ok_or_else(|| unexpected("Decrypt returned no plaintext"))?;
        let used = out.key_id.unwrap_or_default();
        if used != r.arn && used != r.key_id {
            return Err(integrity("the ciphertext was made with another key"));
        }
        if format == FORMAT_EMPTY {
            if plaintext.expose() != [0] {
                return Err(integrity("malformed empty-plaintext ciphertext"));
            }
            return Ok(SecretBytes::new(Vec::new()));
        }
        Ok(plaintext)
    }

    async fn decrypt_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let (r, id, _) = self.target(key).await?;
        if !r.algorithm.is_rsa() {
            return Err(Error::invalid_input(format!(
                "{} is a {} key; RSA-OAEP needs an RSA key",
                key.name(),
                r.algorithm
            )));
        }
        if !r.usages.contains(KeyUsage::Decrypt) {
            return Err(Error::invalid_input(
                "the key lacks the decrypt usage (its KMS KeyUsage is SIGN_VERIFY)",
            ));
        }
        let algorithm = match padding {
            RsaPadding::Oaep(HashAlg::Sha256) => EncryptionAlgorithmSpec::RsaesOaepSha256,
            RsaPadding::Oaep(h) => {
                return Err(Error::unsupported(format!(
                    "RSA-OAEP with {h} (KMS offers SHA-256, and SHA-1 which keychain does not)"
                )));
            }
            other => return Err(Error::unsupported(format!("RSA padding {other:?}"))),
        };
        let out = self
            .client
            .decrypt()
            .key_id(&id)
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_algorithm(algorithm)
            .send()
            .await
            .map_err(map)?;
        out.plaintext
            .map(|b| SecretBytes::new(b.into_inner()))
            .ok_or_else(|| unexpected("Decrypt returned no plaintext"))
    }
}

/// Format byte ‖ key version (big-endian) ‖ KMS ciphertext blob.
fn frame(format: u8, version: KeyVersion, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + blob.len());
    out.push(format);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(blob);
    out
}

#[async_trait]
impl Backend for AwsBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// CreateKey (KeySpec and KeyUsage from `spec`, tagged `keychain-alias`) + CreateAlias
    /// `alias/<prefix><name>`. `AlreadyExists` when the alias exists; a KMS key whose alias
    /// could not be created is scheduled for deletion again. `Unsupported` for exportable keys
    /// and for an RSA key that both signs and decrypts (a KMS key has one usage).
    async fn generate_key(&self, name: &KeyName, spec: &KeySpec) -> Result<KeyInfo> {
        self.check_open(Operation::GenerateKey)?;
        self.generate(name, spec).await.map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(Operation::GenerateKey)
                .with_key(name)
        })
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        self.check_open(Operation::KeyInfo)?;
        self.info(key.name(), key.version()).await.map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(Operation::KeyInfo)
                .with_key(key.name())
        })
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.check_open(Operation::ListKeys)?;
        self.list()
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(Operation::ListKeys))
    }

    /// ScheduleKeyDeletion of every version's KMS key with the configured waiting period,
    /// then DeleteAlias of the version aliases and the key's alias. The name is free at once;
    /// the KMS keys are destroyed by AWS when the period ends and can be restored until then
    /// (CancelKeyDeletion + CreateAlias), which keychain does not do.
    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        self.check_open(Operation::DeleteKey)?;
        self.delete(name).await.map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(Operation::DeleteKey)
                .with_key(name)
        })
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        self.check_open(Operation::Sign)?;
        self.with_fresh(key.name(), || self.sign_once(key, input, scheme))
            .await
            .map_err(|e| {
                e.with_backend(BACKEND)
                    .with_operation(Operation::Sign)
                    .with_key(key.name())
            })
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        self.check_open(Operation::Decrypt)?;
        self.with_fresh(key.name(), || self.decrypt_inner(key, ciphertext, padding))
            .await
            .map_err(|e| {
                e.with_backend(BACKEND)
                    .with_operation(Operation::Decrypt)
                    .with_key(key.name())
            })
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.check_open(Operation::Encrypt)?;
        self.with_fresh(key.name(), || self.encrypt_inner(key, plaintext, aad))
            .await
            .map_err(|e| {
                e.with_backend(BACKEND)
                    .with_operation(Operation::Encrypt)
                    .with_key(key.name())
            })
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        self.check_open(Operation::DecryptAead)?;
        self.with_fresh(name, || self.decrypt_aead_inner(name, ciphertext, aad))
            .await
            .map_err(|e| {
                e.with_backend(BACKEND)
                    .with_operation(Operation::DecryptAead)
                    .with_key(name)
            })
    }

    /// Symmetric keys: RotateKeyOnDemand (new key material in the same KMS key; KMS decrypts
    /// every earlier version's ciphertexts). Asymmetric keys: a new KMS key of the same spec
    /// and usage becomes the alias's target, and every version keeps an alias
    /// `alias/<prefix><name>/v<n>`.
    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        self.check_open(Operation::RotateKey)?;
        let result = async {
            self.rotate(name).await?;
            self.info(name, None).await
        }
        .await;
        result.map_err(|e| {
            e.with_backend(BACKEND)
                .with_operation(Operation::RotateKey)
                .with_key(name)
        })
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        self.check_open(Operation::Random)?;
        let err = |e: Error| e.with_backend(BACKEND).with_operation(Operation::Random);
        if len == 0 {
            return Ok(Vec::new());
        }
        if len > MAX_RANDOM {
            return Err(err(Error::invalid_input(format!(
                "KMS returns at most {MAX_RANDOM} random bytes per call, not {len}"
            ))));
        }
        let n = i32::try_from(len).map_err(|_| err(Error::invalid_input("length")))?;
        let out = self
            .client
            .generate_random()
            .number_of_bytes(n)
            .send()
            .await
            .map_err(|e| err(map(e)))?;
        let bytes = out
            .plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| err(unexpected("GenerateRandom returned no bytes")))?;
        if bytes.len() != len {
            return Err(err(unexpected(format!(
                "GenerateRandom returned {} bytes, not {len}",
                bytes.len()
            ))));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn specs_round_trip() {
        for alg in capabilities().algorithms {
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

    #[test]
    fn ecdsa_digests_fit_the_curve() {
        let (alg, h) = signing_algorithm(
            KeyAlgorithm::EcP256,
            SignatureScheme::Ecdsa(HashAlg::Sha384),
        )
        .unwrap();
        assert_eq!(
            (alg, h),
            (SigningAlgorithmSpec::EcdsaSha256, HashAlg::Sha256)
        );
        assert_eq!(fit_digest(&[1; 48], 32), vec![1; 32]);
        let padded = fit_digest(&[7; 32], 48);
        assert_eq!(&padded[..16], &[0; 16]);
        assert_eq!(&padded[16..], &[7; 32]);
        let e = signing_algorithm(
            KeyAlgorithm::EcP256,
            SignatureScheme::RsaPss(HashAlg::Sha256),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn ciphertext_frame_and_context() {
        let ct = frame(FORMAT_PLAIN, 3, b"blob");
        assert_eq!(ct, [1, 0, 0, 0, 3, b'b', b'l', b'o', b'b']);
        let ctx = context(FORMAT_PLAIN, 3, b"hi");
        assert_eq!(ctx.get(CTX_FORMAT).map(String::as_str), Some("1"));
        assert_eq!(ctx.get(CTX_VERSION).map(String::as_str), Some("3"));
        assert_eq!(ctx.get(CTX_AAD).map(String::as_str), Some("aGk="));
        assert!(!context(FORMAT_EMPTY, 1, b"").contains_key(CTX_AAD));
    }
}
