//! Which configuration a run uses: `--config FILE`, `$KEYCHAIN_CONFIG`, or the embedded default.

use std::path::{Path, PathBuf};

use keychain::{BackendSection, Config, Error, Keychain, Result};

/// The embedded default's key directory, relative to the working directory.
pub(crate) const DEFAULT_DIR: &str = "./.keychain";
/// The embedded default's password variable.
pub(crate) const PASSWORD_ENV: &str = "KEYCHAIN_PASSWORD";

/// Where the configuration came from, for reports.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A file (from `--config` or `$KEYCHAIN_CONFIG`).
    File(PathBuf),
    /// The embedded default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Default => write!(
                f,
                "embedded default (software backend `local` in {DEFAULT_DIR})"
            ),
        }
    }
}

/// Loads the configuration (clap has already merged `--config` and `$KEYCHAIN_CONFIG`).
///
/// # Errors
/// As [`Config::from_file`].
pub(crate) fn load(path: Option<&Path>) -> Result<(Config, Origin)> {
    let (config, origin) = match path {
        // Reading a directory fails as an unexpected I/O error; this is the user's to fix.
        Some(p) if p.is_dir() => {
            return Err(Error::invalid_input(format!(
                "--config {} is a directory, not a configuration file",
                p.display()
            )));
        }
        Some(p) => (Config::from_file(p)?, Origin::File(p.to_owned())),
        None => (embedded_default(), Origin::Default),
    };
    if new_prompted_store(&config) {
        crate::prompt::confirm_new_passwords();
    }
    Ok((config, origin))
}

/// One software backend `local` in `./.keychain`: the password from `$KEYCHAIN_PASSWORD`, or
/// from the terminal when that variable is unset.
pub(crate) fn embedded_default() -> Config {
    if std::env::var_os(PASSWORD_ENV).is_some() {
        return Config::software(Path::new(DEFAULT_DIR));
    }
    let mut settings = toml::Table::new();
    settings.insert("dir".into(), toml::Value::String(DEFAULT_DIR.into()));
    settings.insert("password".into(), toml::Value::String("prompt".into()));
    Config::default()
        .with_backend("local", BackendSection::new("pkcs8", settings))
        .with_default("local")
}

/// Whether some software backend prompts for its password and its directory does not exist yet.
fn new_prompted_store(config: &Config) -> bool {
    config.backends.values().any(|b| {
        b.backend_type == "pkcs8"
            && b.settings.get("password").and_then(toml::Value::as_str) == Some("prompt")
            && b.settings
                .get("dir")
                .and_then(toml::Value::as_str)
                .is_some_and(|d| !Path::new(d).exists())
    })
}

/// Loads the configuration and opens every backend in it.
///
/// # Errors
/// As [`load`] and [`Keychain::open`].
pub(crate) async fn open(path: Option<&Path>) -> Result<(Keychain, Origin)> {
    let (config, origin) = load(path)?;
    let keychain = Keychain::open(&config).await?;
    Ok((keychain, origin))
}
