//! The TOML configuration of a [`crate::Registry`].

use std::collections::BTreeMap;
use std::path::Path;

use keychain_core::{Error, ErrorKind, Result};
use keychain_layers::LayerSpec;
use serde::Deserialize;

/// A set of named backends.
///
/// ```toml
/// default = "local"                      # the backend for keys named without one
///
/// [backends.local]
/// type = "pkcs8"                         # needs the `pkcs8` feature (on by default)
/// dir = "./.keychain"
/// password = { env = "KEYCHAIN_PASSWORD" }
/// layers = [{ type = "audit" }, { type = "retry", max-attempts = 3 }]
///
/// [backends.scratch]
/// type = "pkcs8"                         # no `dir`: keys in memory only
/// password = { file = "/run/secrets/scratch-password" }
/// fallback = "local"                     # used when `scratch` is unavailable or times out
/// ```
///
/// Every key other than `type`, `layers` and `fallback` belongs to the backend and is checked by
/// it when the registry opens it (see each backend crate's configuration). Secrets are
/// [`keychain_core::SecretSource`]s: `{ env = "VAR" }`, `{ file = "path" }` or `"prompt"`.
/// Relative paths are relative to the process's working directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Config {
    /// The backend for targets that name no backend (`my-key` rather than `local:my-key`); when
    /// unset and exactly one backend is configured, that one.
    pub default: Option<String>,
    /// The backends, by name. A name is 1-63 characters of `[A-Za-z0-9_-]` starting with a letter
    /// or digit (like a key name), so `name:key` is never ambiguous.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendSection>,
}

/// One backend in a [`Config`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct BackendSection {
    /// The backend type: `pkcs8`, `pkcs11`, `sc-hsm`, `tpm2`, `aws`, `vault`, or a type an
    /// application registered with [`crate::Openers::register_config`].
    #[serde(rename = "type")]
    pub backend_type: String,
    /// Layers around the backend, the first listed outermost (see [`keychain_layers::apply_all`]).
    #[serde(default)]
    pub layers: Vec<LayerSpec>,
    /// Another configured backend to use when this one is unavailable or times out.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Everything else: the backend's own settings.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl BackendSection {
    /// A backend of `backend_type` with the given settings, no layers and no fallback.
    pub fn new(backend_type: impl Into<String>, settings: toml::Table) -> Self {
        Self {
            backend_type: backend_type.into(),
            layers: Vec::new(),
            fallback: None,
            settings,
        }
    }

    /// Adds a layer (inside those already added: calls pass through layers in list order).
    #[must_use]
    pub fn with_layer(mut self, layer: LayerSpec) -> Self {
        self.layers.push(layer);
        self
    }
}

impl Config {
    /// Parses a configuration.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] with TOML's description (line and column) of what is wrong.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::invalid_input(format!("configuration: {}", e.to_string().trim_end()))
        })
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the file is missing, other I/O errors by kind, and
    /// [`ErrorKind::InvalidInput`] as [`Config::from_toml`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let kind = Error::from(e).kind();
            Error::new(
                kind,
                format!("cannot read configuration {}: {kind}", path.display()),
            )
        })?;
        Self::from_toml(&text).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "{}: {}",
                    path.display(),
                    e.message().trim_start_matches("configuration: ")
                ),
            )
        })
    }

    /// The embedded default: one software backend `local` keeping keys in `dir`, encrypted with
    /// the password in `KEYCHAIN_PASSWORD`.
    pub fn software(dir: &Path) -> Self {
        let mut settings = toml::Table::new();
        settings.insert(
            "dir".into(),
            toml::Value::String(dir.to_string_lossy().into_owned()),
        );
        let mut password = toml::Table::new();
        password.insert(
            "env".into(),
            toml::Value::String("KEYCHAIN_PASSWORD".into()),
        );
        settings.insert("password".into(), toml::Value::Table(password));
        let mut backends = BTreeMap::new();
        backends.insert("local".to_owned(), BackendSection::new("pkcs8", settings));
        Self {
            default: Some("local".into()),
            backends,
        }
    }

    /// Adds a backend.
    #[must_use]
    pub fn with_backend(mut self, name: impl Into<String>, backend: BackendSection) -> Self {
        self.backends.insert(name.into(), backend);
        self
    }

    /// Sets the default backend.
    #[must_use]
    pub fn with_default(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }
}

/// Checks a backend name: the [`keychain_core::KeyName`] rules, so it never contains `:`.
pub(crate) fn check_backend_name(name: &str) -> Result<()> {
    keychain_core::KeyName::new(name).map(drop).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "backend name {name:?} is invalid: {}",
                e.message().trim_start_matches("key name ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backends_layers_and_settings() {
        let config = Config::from_toml(
            r#"
            default = "local"
            [backends.local]
            type = "pkcs8"
            dir = "./keys"
            password = { env = "PW" }
            layers = [{ type = "audit" }]
            fallback = "other"
            "#,
        )
        .unwrap();
        assert_eq!(config.default.as_deref(), Some("local"));
        let local = &config.backends["local"];
        assert_eq!(local.backend_type, "pkcs8");
        assert_eq!(local.layers.len(), 1);
        assert_eq!(local.fallback.as_deref(), Some("other"));
        assert_eq!(local.settings["dir"].as_str(), Some("./keys"));
        assert!(!local.settings.contains_key("type"));
    }

    #[test]
    fn bad_toml_and_unknown_top_level_keys_are_invalid_input() {
        let e = Config::from_toml("backends = 3").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = Config::from_toml("defualt = \"x\"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("defualt"), "{}", e.message());
        let e = Config::from_toml("[backends.x]\ndir = 1").unwrap_err();
        assert!(e.message().contains("type"), "{}", e.message());
    }

    #[test]
    fn missing_file_is_not_found() {
        let e = Config::from_file(Path::new("/nonexistent/keychain.toml")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn backend_names_are_checked() {
        assert!(check_backend_name("hsm-1").is_ok());
        for bad in ["", "a:b", "-x", "has space"] {
            assert_eq!(
                check_backend_name(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }
}
