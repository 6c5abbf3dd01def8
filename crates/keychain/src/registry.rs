//! Named backends opened from a [`Config`], and the factories that open them.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::marker::PhantomData;

use async_trait::async_trait;
use keychain_core::{Backend, BackendConfig, Error, ErrorKind, KeyRef, KeyUri, Result};

use crate::config::{Config, check_backend_name};

/// Opens backends of one type from their configuration settings.
///
/// Every backend crate describes itself with [`BackendConfig`]; [`Registration`] turns that
/// into a factory, and [`Openers::register_config`] adds it. The built-in backends are
/// registered behind their cargo features ([`Openers::builtin`]); an application registers its
/// own the same way. Nothing registers itself at start-up: the set of openers is whatever the
/// program built. Implement this trait directly only for a backend without a typed
/// configuration.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The `type` this factory opens (`pkcs8`).
    fn backend_type(&self) -> &str;

    /// Other `type` names it also opens (names documented before).
    fn type_aliases(&self) -> &[&str] {
        &[]
    }

    /// The [`KeyUri`] schemes of this backend's keys, the canonical one first (`pkcs8`,
    /// `pkcs11`, `aws` and `awskms`, ...).
    fn uri_schemes(&self) -> &[&str];

    /// Opens a backend named `name` from its settings (the backend's table in the configuration
    /// without `type`, `layers` and `fallback`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for settings the backend does not accept, and whatever opening
    /// the backend fails with.
    async fn open(&self, name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>>;

    /// Whether a backend opened from `settings` holds the key `uri` points at, when several
    /// backends share the URI's scheme. The default says yes; a factory compares what the URI
    /// names (a token label, a directory, a region) with its settings.
    fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
        let _ = (settings, uri);
        true
    }

    /// The key `uri` names in a backend opened from `settings`. The default reads the common
    /// attributes ([`keychain_core::registration::default_key_ref`]).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the URI names no key or names it in a form the backend
    /// does not recognise.
    fn key_ref(&self, settings: &toml::Table, uri: &KeyUri) -> Result<KeyRef> {
        let _ = settings;
        keychain_core::registration::default_key_ref(uri)
    }
}

/// The [`BackendFactory`] of a backend crate's [`BackendConfig`]: settings tables deserialize
/// into the typed configuration, which opens the backend, matches URIs and reads their keys.
pub struct Registration<C>(PhantomData<fn() -> C>);

impl<C> Registration<C> {
    /// The factory of `C`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<C> Default for Registration<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: BackendConfig> std::fmt::Debug for Registration<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registration").field(&C::TYPE).finish()
    }
}

#[async_trait]
impl<C: BackendConfig> BackendFactory for Registration<C> {
    fn backend_type(&self) -> &str {
        C::TYPE
    }

    fn type_aliases(&self) -> &[&str] {
        C::TYPE_ALIASES
    }

    fn uri_schemes(&self) -> &[&str] {
        C::URI_SCHEMES
    }

    async fn open(&self, name: &str, settings: &toml::Table) -> Result<Arc<dyn Backend>> {
        settings_into::<C>(settings)?.open(name).await
    }

    fn matches(&self, settings: &toml::Table, uri: &KeyUri) -> bool {
        settings_into::<C>(settings).is_ok_and(|c| c.matches(uri))
    }

    fn key_ref(&self, settings: &toml::Table, uri: &KeyUri) -> Result<KeyRef> {
        settings_into::<C>(settings)?.key_ref(uri)
    }
}

/// A backend's settings table as its typed configuration.
fn settings_into<C: BackendConfig>(table: &toml::Table) -> Result<C> {
    table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| Error::invalid_input(e.message().to_owned()))
}

/// Backend types and the cargo feature of the `keychain` crate that brings each in: only
/// features that exist.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("pkcs8", "pkcs8"),
    ("pkcs11", "pkcs11"),
    ("sc-hsm", "sc-hsm"),
    ("tpm2", "tpm2"),
    ("aws", "aws"),
    ("vault", "vault"),
];

/// The set of [`BackendFactory`]s a [`Registry`] can open backends with.
#[derive(Clone, Default)]
pub struct Openers {
    factories: BTreeMap<String, Arc<dyn BackendFactory>>,
}

impl std::fmt::Debug for Openers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl Openers {
    /// No openers at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The openers of every backend compiled into this build (one per enabled cargo feature).
    pub fn builtin() -> Self {
        let mut openers = Self::new();
        crate::backends::register_builtin(&mut openers);
        openers
    }

    /// Adds (or replaces) the factory for its backend type and each of its aliases.
    pub fn register(&mut self, factory: Arc<dyn BackendFactory>) -> &mut Self {
        for alias in factory.type_aliases() {
            self.factories
                .insert((*alias).to_owned(), Arc::clone(&factory));
        }
        self.factories
            .insert(factory.backend_type().to_owned(), factory);
        self
    }

    /// Adds the backend a [`BackendConfig`] describes: how every backend crate, and a
    /// downstream one, is registered.
    ///
    /// ```
    /// let mut openers = keychain::Openers::new();
    /// openers.register_config::<keychain::pkcs8::Config>();
    /// assert!(openers.get("pkcs8").is_ok());
    /// ```
    pub fn register_config<C: BackendConfig>(&mut self) -> &mut Self {
        self.register(Arc::new(Registration::<C>::new()))
    }

    /// The factory for `backend_type`.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] naming the cargo feature to enable when the type is one of
    /// keychain's backends not compiled in; [`ErrorKind::InvalidInput`] for a type nobody knows.
    pub fn get(&self, backend_type: &str) -> Result<&Arc<dyn BackendFactory>> {
        if let Some(factory) = self.factories.get(backend_type) {
            return Ok(factory);
        }
        if let Some((_, feature)) = KNOWN_TYPES.iter().find(|(t, _)| *t == backend_type) {
            return Err(Error::unsupported(format!(
                "backend type `{backend_type}` is not compiled into this build; rebuild with the \
                 cargo feature `{feature}` (of the `keychain` crate, or of `keychain-cli` for the \
                 command line)"
            )));
        }
        let known: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        Err(Error::invalid_input(format!(
            "unknown backend type `{backend_type}`; this build knows: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )))
    }
}

/// An open backend in a [`Registry`].
#[derive(Clone)]
pub struct Entry {
    backend: Arc<dyn Backend>,
    backend_type: String,
    uri_schemes: Vec<String>,
    factory: Option<Arc<dyn BackendFactory>>,
    settings: toml::Table,
    metrics: Option<keychain_layers::Metrics>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("backend_type", &self.backend_type)
            .field("uri_schemes", &self.uri_schemes)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The backend, with its layers and fallback applied.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Its configured type (`pkcs8`).
    pub fn backend_type(&self) -> &str {
        &self.backend_type
    }

    /// The canonical [`KeyUri`] scheme of its keys.
    pub fn uri_scheme(&self) -> &str {
        self.uri_schemes.first().map_or("", String::as_str)
    }

    /// Every [`KeyUri`] scheme its keys answer to, the canonical one first.
    pub fn uri_schemes(&self) -> &[String] {
        &self.uri_schemes
    }

    fn serves(&self, scheme: &str) -> bool {
        self.uri_schemes.iter().any(|s| s == scheme)
    }

    /// The key `uri` names in this backend.
    pub(crate) fn key_ref(&self, uri: &KeyUri) -> Result<KeyRef> {
        match &self.factory {
            Some(factory) => factory.key_ref(&self.settings, uri),
            None => keychain_core::registration::default_key_ref(uri),
        }
    }

    /// The metrics of its `metrics` layer, if it has one.
    pub fn metrics(&self) -> Option<&keychain_layers::Metrics> {
        self.metrics.as_ref()
    }
}

/// Named, open backends.
///
/// ```
/// # async fn demo() -> keychain::Result<()> {
/// use keychain::{Config, Registry};
///
/// let config = Config::from_toml(r#"
///     [backends.scratch]
///     type = "pkcs8"                       # no dir: in memory
///     password = { env = "SCRATCH_PASSWORD" }
///     layers = [{ type = "audit" }]
/// "#)?;
/// # unsafe { std::env::set_var("SCRATCH_PASSWORD", "correct horse battery staple") };
/// let registry = Registry::open(&config).await?;
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["scratch"]);
/// registry.close().await?;
/// # Ok(())
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    default: Option<String>,
}

impl Registry {
    /// An empty registry, to fill with [`Registry::insert`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens every backend of `config` with the [builtin](Openers::builtin) openers.
    ///
    /// # Errors
    /// As [`Registry::open_with`].
    pub async fn open(config: &Config) -> Result<Self> {
        Self::open_with(config, &Openers::builtin()).await
    }

    /// Opens every backend of `config` with `openers`, applies each backend's layers (the first
    /// listed outermost, see [`keychain_layers::apply_all`]), then wires fallbacks (a fallback target is used with its own layers but without
    /// its own fallback, so chains cannot loop). If any backend fails to open, those already
    /// open are closed and the error names the backend.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`]: an invalid backend name, an unknown type, a `default` or
    ///   `fallback` naming no configured backend, a backend that falls back to itself;
    /// - [`ErrorKind::Unsupported`]: a type whose cargo feature is not enabled (the message names
    ///   the feature);
    /// - whatever opening a backend fails with.
    pub async fn open_with(config: &Config, openers: &Openers) -> Result<Self> {
        // Check everything that needs no I/O before opening anything.
        for (name, backend) in &config.backends {
            check_backend_name(name)?;
            openers
                .get(&backend.backend_type)
                .map_err(|e| in_backend(name, e))?;
            for layer in &backend.layers {
                layer.validate().map_err(|e| in_backend(name, e))?;
            }
            if let Some(target) = &backend.fallback {
                if target == name {
                    return Err(in_backend(
                        name,
                        Error::invalid_input("a backend cannot fall back to itself"),
                    ));
                }
                if !config.backends.contains_key(target) {
                    return Err(in_backend(
                        name,
                        Error::invalid_input(format!(
                            "fallback `{target}` is not a configured backend"
                        )),
                    ));
                }
            }
        }
        if let Some(default) = &config.default
            && !config.backends.contains_key(default)
        {
            return Err(Error::invalid_input(format!(
                "default backend `{default}` is not configured"
            )));
        }

        let mut registry = Self {
            entries: BTreeMap::new(),
            default: config.default.clone(),
        };
        for (name, backend_config) in &config.backends {
            let factory = openers.get(&backend_config.backend_type)?;
            let opened = match factory.open(name, &backend_config.settings).await {
                Ok(b) => b,
                Err(e) => {
                    // Best effort: the open error is the one to report.
                    let _ = registry.close().await;
                    return Err(in_backend(name, e));
                }
            };
            let stack = match keychain_layers::apply_all(&backend_config.layers, opened) {
                Ok(stack) => stack,
                Err(e) => {
                    let _ = registry.close().await;
                    return Err(in_backend(name, e));
                }
            };
            registry.entries.insert(
                name.clone(),
                Entry {
                    backend: stack.backend,
                    backend_type: backend_config.backend_type.clone(),
                    uri_schemes: factory
                        .uri_schemes()
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                    factory: Some(Arc::clone(factory)),
                    settings: backend_config.settings.clone(),
                    metrics: stack.metrics,
                },
            );
        }
        let mut fallbacks = Vec::new();
        for (name, backend_config) in &config.backends {
            if let Some(target) = &backend_config.fallback {
                let primary = Arc::clone(&registry.entries[name].backend);
                let secondary = Arc::clone(&registry.entries[target].backend);
                fallbacks.push((name.clone(), keychain_layers::fallback(primary, secondary)));
            }
        }
        for (name, backend) in fallbacks {
            if let Some(entry) = registry.entries.get_mut(&name) {
                entry.backend = backend;
            }
        }
        Ok(registry)
    }

    /// Adds an already open backend under `name` (explicit registration in code).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid name; [`ErrorKind::AlreadyExists`] when the
    /// name is taken.
    pub fn insert(&mut self, name: &str, backend: Arc<dyn Backend>) -> Result<()> {
        check_backend_name(name)?;
        if self.entries.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("backend `{name}` is already registered"),
            ));
        }
        let backend_type = backend.capabilities().backend.to_string();
        self.entries.insert(
            name.to_owned(),
            Entry {
                uri_schemes: vec![backend_type.clone()],
                backend_type,
                backend,
                factory: None,
                settings: toml::Table::new(),
                metrics: None,
            },
        );
        Ok(())
    }

    /// Sets the default backend.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no backend has that name.
    pub fn set_default(&mut self, name: &str) -> Result<()> {
        if !self.entries.contains_key(name) {
            return Err(Error::not_found(format!("no backend named `{name}`")));
        }
        self.default = Some(name.to_owned());
        Ok(())
    }

    /// The backend named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.entries.get(name).map(Entry::backend)
    }

    /// The entry (backend, type, metrics) named `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Backend names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    /// Every entry, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> + '_ {
        self.entries.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// The name of the default backend: the configured one, else the only one.
    pub fn default_name(&self) -> Option<&str> {
        match &self.default {
            Some(d) => Some(d.as_str()),
            None if self.entries.len() == 1 => self.entries.keys().next().map(String::as_str),
            None => None,
        }
    }

    /// The backends that may hold the key `uri` points at: those whose scheme is the URI's and
    /// whose factory [matches](BackendFactory::matches) it. A `backend=NAME` query attribute
    /// picks one by name.
    pub(crate) fn candidates(&self, uri: &KeyUri) -> Vec<&str> {
        if let Some(name) = uri.query_attr("backend") {
            return self
                .entries
                .get_key_value(name)
                .filter(|(_, e)| e.serves(uri.scheme()))
                .map(|(n, _)| vec![n.as_str()])
                .unwrap_or_default();
        }
        self.entries
            .iter()
            .filter(|(_, e)| e.serves(uri.scheme()))
            .filter(|(_, e)| {
                e.factory
                    .as_ref()
                    .is_none_or(|f| f.matches(&e.settings, uri))
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Closes every backend (each once, even if it is also another's fallback).
    ///
    /// # Errors
    /// The first error a backend's `close` returned; every backend is closed regardless.
    pub async fn close(&self) -> Result<()> {
        let mut first = None;
        for (name, entry) in &self.entries {
            if let Err(e) = entry.backend.close().await {
                first.get_or_insert(in_backend(name, e));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Prefixes an error's message with the backend's name.
pub(crate) fn in_backend(name: &str, e: Error) -> Error {
    e.with_context(format_args!("backend `{name}`"))
}
