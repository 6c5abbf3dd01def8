//! Configuration of the software backend.

use std::path::PathBuf;

use keychain_core::SecretSource;
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
