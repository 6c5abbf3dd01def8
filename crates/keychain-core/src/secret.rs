//! Secret values: zeroized on drop, `[redacted]` when printed, never `Clone` by accident.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use secrecy::{ExposeSecret, SecretBox, SecretString as Inner};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// Secret bytes (key material, plaintext returned by decrypt): zeroized on drop, `[redacted]`
/// in `Debug`. Not `Clone`; use [`SecretBytes::duplicate`] where a copy is really meant.
pub struct SecretBytes(SecretBox<[u8]>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretBox::new(bytes.into_boxed_slice()))
    }

    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The secret bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An explicit copy.
    pub fn duplicate(&self) -> Self {
        Self::from_slice(self.expose())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret string (password, PIN, token): zeroized on drop, `[redacted]` in `Debug`.
pub struct SecretString(Inner);

impl SecretString {
    /// Takes ownership of `s`.
    pub fn new(s: String) -> Self {
        Self(Inner::from(s))
    }

    /// The secret text. Keep the borrow short.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// An explicit copy.
    pub fn duplicate(&self) -> Self {
        Self::new(self.expose().to_owned())
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret (password, PIN, token) comes from. Resolved when a backend opens.
///
/// In configuration files (serde):
///
/// ```toml
/// password = { env = "KEYCHAIN_PASSWORD" }   # an environment variable
/// pin = { file = "/run/secrets/hsm-pin" }     # a file (one trailing newline is dropped)
/// token = "prompt"                            # ask through the installed prompt hook
/// # value = { value = "..." } exists for tests; never put a real secret in a config file.
/// ```
///
/// `Debug` never shows a value; `env` and `file` show where the secret lives, which is not secret.
///
/// ```
/// use keychain_core::SecretSource;
/// let s = SecretSource::value("hunter2");
/// assert_eq!(format!("{s:?}"), "Value([redacted])");
/// assert_eq!(s.resolve("password").unwrap().expose(), "hunter2");
/// ```
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SecretSource {
    /// The secret itself (tests, or a value the application already holds).
    #[serde(serialize_with = "serialize_redacted")]
    Value(#[serde(deserialize_with = "deserialize_secret")] SecretString),
    /// The named environment variable.
    Env(String),
    /// The contents of a file, without one trailing newline.
    File(PathBuf),
    /// Ask the prompt hook installed with [`set_prompt_hook`].
    Prompt,
}

fn serialize_redacted<S: serde::Serializer>(
    _: &SecretString,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::new)
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value([redacted])"),
            Self::Env(var) => f.debug_tuple("Env").field(var).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Prompt => f.write_str("Prompt"),
        }
    }
}

/// The function the application installs to ask a person for a secret; it receives a
/// description such as "password for keychain-pkcs8 at ./.keychain".
pub type PromptHook = Arc<dyn Fn(&str) -> Result<SecretString> + Send + Sync>;

static PROMPT_HOOK: OnceLock<PromptHook> = OnceLock::new();

/// Installs the process-wide prompt hook (the CLI installs a terminal prompt). Core needs no
/// terminal crate this way. Returns `false` if a hook was already installed (the first one stays).
pub fn set_prompt_hook(hook: PromptHook) -> bool {
    PROMPT_HOOK.set(hook).is_ok()
}

impl SecretSource {
    /// A literal secret.
    pub fn value(s: impl Into<String>) -> Self {
        Self::Value(SecretString::new(s.into()))
    }

    /// An environment variable.
    pub fn env(var: impl Into<String>) -> Self {
        Self::Env(var.into())
    }

    /// A file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// An explicit copy (the value stays secret).
    pub fn duplicate(&self) -> Self {
        match self {
            Self::Value(v) => Self::Value(v.duplicate()),
            Self::Env(v) => Self::Env(v.clone()),
            Self::File(p) => Self::File(p.clone()),
            Self::Prompt => Self::Prompt,
        }
    }

    /// Reads the secret. `what` describes it for error messages and the prompt
    /// ("PIN for token prod"); it must not contain the secret.
    ///
    /// # Errors
    /// - [`ErrorKind::NotFound`]: the variable is unset or the file is missing;
    /// - [`ErrorKind::InvalidInput`]: the variable or file is not UTF-8;
    /// - [`ErrorKind::Unsupported`]: `Prompt` with no hook installed;
    /// - I/O errors by their kind.
    pub fn resolve(&self, what: &str) -> Result<SecretString> {
        match self {
            Self::Value(v) => Ok(v.duplicate()),
            Self::Env(var) => match std::env::var(var) {
                Ok(v) => Ok(SecretString::new(v)),
                Err(std::env::VarError::NotPresent) => Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{what}: environment variable {var} is not set"),
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid_input(format!(
                    "{what}: environment variable {var} is not UTF-8"
                ))),
            },
            Self::File(path) => {
                let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
                    let kind = Error::from(e);
                    Error::new(
                        kind.kind(),
                        format!("{what}: cannot read {}: {}", path.display(), kind.message()),
                    )
                })?);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    Error::invalid_input(format!("{what}: {} is not UTF-8", path.display()))
                })?;
                let text = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(text);
                Ok(SecretString::new(text.to_owned()))
            }
            Self::Prompt => match PROMPT_HOOK.get() {
                Some(hook) => hook(what),
                None => Err(Error::unsupported(format!(
                    "{what}: no prompt is available in this program; use an env or file source"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let b = SecretBytes::from_slice(b"key material");
        assert_eq!(format!("{b:?}"), "[redacted]");
        let s = SecretString::from("pin-1234");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let src = SecretSource::value("pin-1234");
        assert!(!format!("{src:?}").contains("1234"));
    }

    #[test]
    fn serialized_value_is_redacted() {
        let src = SecretSource::value("hunter2");
        let json = serde_json::to_string(&src).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
    }

    #[test]
    fn resolves_file_and_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "s3cret\n\n").unwrap();
        let s = SecretSource::file(&p).resolve("pin").unwrap();
        assert_eq!(s.expose(), "s3cret\n");
    }

    #[test]
    fn missing_sources_are_typed() {
        let e = SecretSource::env("KEYCHAIN_TEST_SURELY_UNSET_VAR")
            .resolve("password")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = SecretSource::file("/nonexistent/keychain/pin")
            .resolve("pin")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn config_forms_deserialize() {
        let s: SecretSource = serde_json::from_str(r#"{"env":"X"}"#).unwrap();
        assert!(matches!(s, SecretSource::Env(v) if v == "X"));
        let s: SecretSource = serde_json::from_str(r#""prompt""#).unwrap();
        assert!(matches!(s, SecretSource::Prompt));
        let s: SecretSource = serde_json::from_str(r#"{"file":"/p"}"#).unwrap();
        assert!(matches!(s, SecretSource::File(_)));
    }
}
