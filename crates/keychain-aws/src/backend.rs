//! The AWS KMS backend: keys are KMS keys behind aliases; every private-key and AES operation
//! runs in KMS.
//!
//! This file is the type, its constructor and the [`Backend`] impl, which checks that the
//! backend is open, delegates, and names the backend, operation and key in errors. The work is
//! in one module per concern: `resolve` (what the backend knows of a key), `keys`, `sign`,
//! `aead`, `decrypt` and `random`.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use keychain_core::support::{CloseGuard, KeyCache};
use keychain_core::{
    Backend, Capabilities, Error, HashAlg, KeyAlgorithm, KeyInfo, KeyName, KeyRef, KeySpec,
    Operation, Protection, Result, RsaPadding, SecretBytes, SignInput, Signature, SignatureScheme,
    async_trait,
};
use tokio::sync::Mutex as AsyncMutex;

use crate::aead::DataKey;
use crate::config::Config;
use crate::error::BACKEND;
use crate::naming::key_alias;
use crate::resolve::Resolved;

/// The AWS KMS backend. Open with [`AwsBackend::open`]; see the crate docs for how keys map
/// to KMS keys and aliases.
#[derive(Debug)]
pub struct AwsBackend {
    pub(crate) client: Client,
    pub(crate) prefix: String,
    pub(crate) deletion_window_days: i32,
    pub(crate) caps: Capabilities,
    /// Name → newest version, so `sign`/`encrypt` cost one KMS call; `key_info`, `list_keys`
    /// and `rotate_key` always read KMS and refresh it.
    pub(crate) cache: KeyCache<Resolved>,
    /// Serializes generate/rotate/delete within this backend, keeping "does the alias exist?"
    /// and "create it" together.
    pub(crate) admin: AsyncMutex<()>,
    guard: CloseGuard,
}

pub(crate) fn capabilities() -> Capabilities {
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
    // KMS `GenerateRandom`'s and `Encrypt`'s limits.
    caps.max_random = Some(1024);
    caps.max_plaintext = Some(4096);
    caps
}

impl AwsBackend {
    /// Opens the backend: resolves static credentials (if configured) and builds the SDK
    /// client. Makes no KMS call; the first operation shows whether KMS is reachable.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid configuration or no region anywhere;
    /// errors of [`keychain_core::SecretSource::resolve`] for the credentials.
    ///
    /// [`ErrorKind::InvalidInput`]: keychain_core::ErrorKind::InvalidInput
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
            cache: KeyCache::new(),
            admin: AsyncMutex::new(()),
            guard: CloseGuard::new(),
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
    ///
    /// [`ErrorKind::InvalidInput`]: keychain_core::ErrorKind::InvalidInput
    pub async fn generate_data_key(&self, key: &KeyRef, len: usize, aad: &[u8]) -> Result<DataKey> {
        let op = Operation::Encrypt;
        self.guard.check(BACKEND, op)?;
        self.data_key(key, len, aad)
            .await
            .map_err(context(op, key.name()))
    }
}

/// Names this backend, `op` and `key` in an error.
fn context(op: Operation, key: &KeyName) -> impl Fn(Error) -> Error + '_ {
    move |e| e.with_backend(BACKEND).with_operation(op).with_key(key)
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
        let op = Operation::GenerateKey;
        self.guard.check(BACKEND, op)?;
        self.generate(name, spec).await.map_err(context(op, name))
    }

    async fn key_info(&self, key: &KeyRef) -> Result<KeyInfo> {
        let op = Operation::KeyInfo;
        self.guard.check(BACKEND, op)?;
        self.info(key.name(), key.version())
            .await
            .map_err(context(op, key.name()))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let op = Operation::ListKeys;
        self.guard.check(BACKEND, op)?;
        self.list()
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }

    /// ScheduleKeyDeletion of every version's KMS key with the configured waiting period,
    /// then DeleteAlias of the version aliases and the key's alias. The name is free at once;
    /// the KMS keys are destroyed by AWS when the period ends and can be restored until then
    /// (CancelKeyDeletion + CreateAlias), which keychain does not do.
    async fn delete_key(&self, name: &KeyName) -> Result<()> {
        let op = Operation::DeleteKey;
        self.guard.check(BACKEND, op)?;
        self.delete(name).await.map_err(context(op, name))
    }

    async fn sign(
        &self,
        key: &KeyRef,
        input: SignInput<'_>,
        scheme: SignatureScheme,
    ) -> Result<Signature> {
        let op = Operation::Sign;
        self.guard.check(BACKEND, op)?;
        self.with_fresh(key.name(), || self.sign_once(key, input, scheme))
            .await
            .map_err(context(op, key.name()))
    }

    async fn close(&self) -> Result<()> {
        self.guard.close();
        self.cache.clear();
        Ok(())
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<SecretBytes> {
        let op = Operation::Decrypt;
        self.guard.check(BACKEND, op)?;
        self.with_fresh(key.name(), || self.decrypt_inner(key, ciphertext, padding))
            .await
            .map_err(context(op, key.name()))
    }

    async fn encrypt(&self, key: &KeyRef, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let op = Operation::Encrypt;
        self.guard.check(BACKEND, op)?;
        self.with_fresh(key.name(), || self.encrypt_inner(key, plaintext, aad))
            .await
            .map_err(context(op, key.name()))
    }

    async fn decrypt_aead(
        &self,
        name: &KeyName,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes> {
        let op = Operation::DecryptAead;
        self.guard.check(BACKEND, op)?;
        self.with_fresh(name, || self.decrypt_aead_inner(name, ciphertext, aad))
            .await
            .map_err(context(op, name))
    }

    /// Symmetric keys: RotateKeyOnDemand (new key material in the same KMS key; KMS decrypts
    /// every earlier version's ciphertexts). Asymmetric keys: a new KMS key of the same spec
    /// and usage becomes the alias's target, and every version keeps an alias
    /// `alias/<prefix><name>/v<n>`.
    async fn rotate_key(&self, name: &KeyName) -> Result<KeyInfo> {
        let op = Operation::RotateKey;
        self.guard.check(BACKEND, op)?;
        let result = async {
            self.rotate(name).await?;
            self.info(name, None).await
        }
        .await;
        result.map_err(context(op, name))
    }

    async fn random(&self, len: usize) -> Result<Vec<u8>> {
        let op = Operation::Random;
        self.guard.check(BACKEND, op)?;
        self.random_inner(len)
            .await
            .map_err(|e| e.with_backend(BACKEND).with_operation(op))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::BackendConfig as _;

    use super::*;

    #[test]
    fn capabilities_name_the_config_type_and_the_limits() {
        let caps = capabilities();
        assert_eq!(caps.backend, Config::TYPE);
        assert_eq!(caps.max_random, Some(1024));
        assert_eq!(caps.max_plaintext, Some(4096));
        assert!(caps.check_random(1024).is_ok());
        let e = caps.check_random(1025).unwrap_err();
        assert_eq!(e.kind(), keychain_core::ErrorKind::InvalidInput);
        assert_eq!(e.backend(), Some("aws"));
        assert!(caps.check_plaintext(4096).is_ok());
        assert!(caps.check_plaintext(4097).is_err());
    }
}
