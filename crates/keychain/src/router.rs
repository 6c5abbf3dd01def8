//! [`Keychain`]: resolves `backend:key` or a [`KeyUri`] to the backend that holds the key.

use std::sync::Arc;

use keychain_core::{Backend, Error, KeyRef, KeyUri, Result};

use crate::config::Config;
use crate::registry::{Openers, Registry};
use crate::signer::{KeySigner, SignatureType};

/// A key found by [`Keychain::resolve`]: the backend's name, the backend, and the key.
#[derive(Clone)]
pub struct Resolved {
    /// The name the backend has in the registry.
    pub backend_name: String,
    /// The backend (with its layers).
    pub backend: Arc<dyn Backend>,
    /// The key, with the version the target named, if any.
    pub key: KeyRef,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("backend_name", &self.backend_name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The front door: a [`Registry`] of backends and a router from key targets to them.
///
/// A target is one of:
///
/// - `backend:key` or `backend:key@3` — a key (optionally one version) in a named backend;
/// - `key` or `key@3` — a key in the default backend;
/// - a [`KeyUri`] such as `pkcs8:name=signer` or `pkcs11:token=prod;object=signer` — any text
///   with `=` is read as a URI (key names cannot contain `=`); it goes to the one configured
///   backend with that URI scheme that matches it, or to the one named by `?backend=NAME`. A
///   `version` attribute picks a version.
///
/// ```
/// # async fn demo() -> keychain::Result<()> {
/// use keychain::{Config, Keychain, KeyAlgorithm, KeySpec, BackendExt};
///
/// # unsafe { std::env::set_var("DEMO_PASSWORD", "correct horse battery staple") };
/// let keychain = Keychain::open(&Config::from_toml(r#"
///     [backends.local]
///     type = "pkcs8"
///     password = { env = "DEMO_PASSWORD" }
/// "#)?).await?;
///
/// let target = keychain.resolve("local:signer")?;
/// target.backend.generate_key(target.key.name(), &KeySpec::new(KeyAlgorithm::EcP256)).await?;
/// let signature = target.backend.sign_message(&target.key, b"hello").await?;
///
/// // The same key by URI, and through the default (only) backend.
/// let again = keychain.resolve("pkcs8:name=signer")?;
/// again.backend.verify(again.key.name(), keychain::SignInput::message(b"hello"), &signature).await?;
/// assert_eq!(keychain.resolve("signer")?.backend_name, "local");
/// # Ok(())
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct Keychain {
    registry: Registry,
}

impl Keychain {
    /// Wraps a registry.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    /// Opens the backends of `config` with the builtin openers.
    ///
    /// # Errors
    /// As [`Registry::open`].
    pub async fn open(config: &Config) -> Result<Self> {
        Registry::open(config).await.map(Self::new)
    }

    /// Opens the backends of `config` with `openers`.
    ///
    /// # Errors
    /// As [`Registry::open_with`].
    pub async fn open_with(config: &Config, openers: &Openers) -> Result<Self> {
        Registry::open_with(config, openers).await.map(Self::new)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The backend named `name`.
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::NotFound`] listing the configured names.
    pub fn backend(&self, name: &str) -> Result<&Arc<dyn Backend>> {
        self.registry.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.registry.names().collect();
            Error::not_found(format!(
                "no backend named `{name}` (configured: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Finds the backend and key a target names (see [`Keychain`] for the forms).
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] for a malformed target or key name, a URI
    /// without a key name, a URI several backends could serve, or no default backend;
    /// [`keychain_core::ErrorKind::NotFound`] when no backend has that name or URI scheme.
    pub fn resolve(&self, target: &str) -> Result<Resolved> {
        if target.contains('=') {
            return self.resolve_uri(&KeyUri::parse(target)?);
        }
        let (backend_name, key) = match target.split_once(':') {
            Some((b, k)) => (b, k),
            None => (
                self.registry.default_name().ok_or_else(|| {
                    Error::invalid_input(format!(
                        "`{target}` names no backend and no default backend is configured; \
                         write BACKEND:{target}"
                    ))
                })?,
                target,
            ),
        };
        let backend = Arc::clone(self.backend(backend_name)?);
        Ok(Resolved {
            backend_name: backend_name.to_owned(),
            backend,
            key: key.parse()?,
        })
    }

    /// Finds the backend and key a [`KeyUri`] names.
    ///
    /// # Errors
    /// As [`Keychain::resolve`].
    pub fn resolve_uri(&self, uri: &KeyUri) -> Result<Resolved> {
        let candidates = self.registry.candidates(uri);
        let backend_name = match candidates.as_slice() {
            [one] => (*one).to_owned(),
            [] => {
                return Err(Error::not_found(format!(
                    "no configured backend serves `{}:` URIs{}",
                    uri.scheme(),
                    uri.query_attr("backend")
                        .map(|b| format!(" under the name `{b}`"))
                        .unwrap_or_default()
                )));
            }
            many => {
                return Err(Error::invalid_input(format!(
                    "key URI `{uri}` could be in any of the backends {}; add ?backend=NAME",
                    many.join(", ")
                )));
            }
        };
        let backend = Arc::clone(self.backend(&backend_name)?);
        // How the URI names its key is the backend's own rule (an AWS alias, a PKCS#11 label).
        let key = self
            .registry
            .entry(&backend_name)
            .ok_or_else(|| Error::not_found(format!("no backend named `{backend_name}`")))?
            .key_ref(uri)?;
        Ok(Resolved {
            backend_name,
            backend,
            key,
        })
    }

    /// A RustCrypto signer for the key a target names (see [`KeySigner`]).
    ///
    /// # Errors
    /// As [`Keychain::resolve`] and [`KeySigner::new`].
    pub async fn signer<S: SignatureType>(&self, target: &str) -> Result<KeySigner<S>> {
        let resolved = self.resolve(target)?;
        KeySigner::new(resolved.backend, resolved.key).await
    }

    /// Closes every backend.
    ///
    /// # Errors
    /// As [`Registry::close`].
    pub async fn close(&self) -> Result<()> {
        self.registry.close().await
    }
}
