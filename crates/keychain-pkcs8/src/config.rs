//! Configuration of the software backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keychain_core::{Backend, BackendConfig, Error, KeyUri, Result, SecretSource, async_trait};
use keychain_crypto::pkcs8::{Kdf, KdfLimits};
use serde::{Deserialize, Serialize};

/// Configuration for [`crate::Pkcs8Backend::open`].
///
/// ```toml
/// dir = "./.keychain"                          # omit for an in-memory (ephemeral) store
/// password = { env = "KEYCHAIN_PASSWORD" }
/// kdf = { pbkdf2 = { iterations = 600000 } }   # or { scrypt = { log-n = 14, r = 8, p = 5 } }
/// kdf-limits = { max-pbkdf2-iterations = 10000000, max-scrypt-memory = 268435456 }
/// provider = "aws-lc-rs"                       # or "rustcrypto"
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Config {
    /// Directory of key files; `None` keeps keys in memory only (tests, ephemeral use).
    pub dir: Option<PathBuf>,
    /// The password that encrypts every key file. Default: the `KEYCHAIN_PASSWORD` variable.
    pub password: SecretSource,
    /// How the password becomes an encryption key for newly written files. Checked when the
    /// backend opens ([`Kdf::check`]): at least 1 000 PBKDF2 iterations or scrypt N = 2^10, and
    /// within `kdf-limits`.
    pub kdf: Kdf,
    /// The most work and memory a key derivation may take, for the configured KDF and for every
    /// key file read or imported (a hostile file cannot make the process allocate or spin
    /// without bound).
    pub kdf_limits: KdfLimits,
    /// Which software crypto implementation does the work.
    pub provider: ProviderKind,
    /// Open a key directory even if group or others can access it (not recommended).
    pub allow_insecure_permissions: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dir: None,
            password: SecretSource::env("KEYCHAIN_PASSWORD"),
            kdf: Kdf::default(),
            kdf_limits: KdfLimits::default(),
            provider: ProviderKind::default(),
            allow_insecure_permissions: false,
        }
    }
}

impl Config {
    /// Keys in `dir`, encrypted with `password`.
    pub fn new(dir: impl Into<PathBuf>, password: SecretSource) -> Self {
        Self {
            dir: Some(dir.into()),
            password,
            ..Self::default()
        }
    }

    /// Keys in memory, encrypted with `password` (useful to exercise the full path in tests).
    pub fn in_memory(password: SecretSource) -> Self {
        Self {
            password,
            ..Self::default()
        }
    }

    /// Chooses the crypto provider.
    #[must_use]
    pub fn with_provider(mut self, provider: ProviderKind) -> Self {
        self.provider = provider;
        self
    }

    /// Sets the KDF for newly written files.
    #[must_use]
    pub fn with_kdf(mut self, kdf: Kdf) -> Self {
        self.kdf = kdf;
        self
    }
}

/// The software crypto provider (see `keychain-crypto`). Each needs its crate feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProviderKind {
    /// AWS-LC through aws-lc-rs (feature `aws-lc-rs`, default). Constant-time RSA.
    #[default]
    #[serde(rename = "aws-lc-rs")]
    AwsLcRs,
    /// Pure-Rust RustCrypto (feature `rustcrypto`); RSA keys only with the feature
    /// `rustcrypto-rsa-insecure` (RUSTSEC-2023-0071).
    #[serde(rename = "rustcrypto")]
    RustCrypto,
}

/// Path attributes a `pkcs8:` URI may carry (besides `x-` extensions).
const KNOWN_PATH: &[&str] = &["name", "version", "dir"];
/// Query attributes a `pkcs8:` URI may carry.
const KNOWN_QUERY: &[&str] = &["password-source", "provider", "version"];

#[async_trait]
impl BackendConfig for Config {
    const TYPE: &'static str = "pkcs8";
    const URI_SCHEMES: &'static [&'static str] = &["pkcs8"];

    /// `pkcs8:name=KEY;dir=DIR?password-source=env:VAR&provider=rustcrypto`: the key directory
    /// (omitted: in memory), where the password comes from (`env:VAR`, `file:PATH` or `prompt`;
    /// default the `KEYCHAIN_PASSWORD` variable) and the crypto provider. `name` and `version`
    /// name a key, not the backend.
    ///
    /// ```
    /// use keychain_core::{BackendConfig, KeyUri};
    /// use keychain_pkcs8::Config;
    /// let uri: KeyUri = "pkcs8:name=signer;dir=/var/lib/keys?password-source=env:PW".parse()?;
    /// let config = Config::from_uri(&uri)?;
    /// assert_eq!(config.dir.as_deref(), Some(std::path::Path::new("/var/lib/keys")));
    /// # Ok::<(), keychain_core::Error>(())
    /// ```
    fn from_uri(uri: &KeyUri) -> Result<Self> {
        if !Self::URI_SCHEMES.contains(&uri.scheme()) {
            return Err(Error::invalid_input(format!(
                "expected a pkcs8: URI, got scheme `{}`",
                uri.scheme()
            )));
        }
        uri.check_attrs(KNOWN_PATH, KNOWN_QUERY)?;
        let mut config = Self::default();
        if let Some(dir) = uri.text_attr("dir").transpose()? {
            config.dir = Some(PathBuf::from(dir));
        }
        if let Some(source) = uri.secret_source("password-source").transpose()? {
            config.password = source;
        }
        if let Some(provider) = uri.query_attr("provider") {
            config.provider = match provider {
                "aws-lc-rs" => ProviderKind::AwsLcRs,
                "rustcrypto" => ProviderKind::RustCrypto,
                other => {
                    return Err(Error::invalid_input(format!(
                        "unknown provider {other:?}; expected aws-lc-rs or rustcrypto"
                    )));
                }
            };
        }
        Ok(config)
    }

    /// A URI with `dir=` matches the backend keeping its keys in that directory (compared
    /// after resolving links); a URI without one matches any.
    fn matches(&self, uri: &KeyUri) -> bool {
        match (uri.path_attr("dir"), &self.dir) {
            (None, _) => true,
            (Some(want), Some(have)) => same_dir(Path::new(want), have),
            (Some(_), None) => false,
        }
    }

    async fn open(self, _name: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(crate::Pkcs8Backend::open(self).await?))
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
