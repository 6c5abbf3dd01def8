//! Configuration of the PKCS#11 backend, from TOML/serde or from an RFC 7512 `pkcs11:` URI.

use std::path::PathBuf;
use std::time::Duration;

use keychain_core::{Error, KeyUri, Result, SecretSource};
use keychain_crypto::pkcs8::Kdf;
use serde::{Deserialize, Serialize};

/// The default upper bound on open sessions per backend.
pub const DEFAULT_MAX_SESSIONS: usize = 16;

/// Under [`Dispatch::Adaptive`], a kind of call whose typical (median) duration is less than
/// this runs on the calling task's thread. 100 µs is the upper end of how long tokio's
/// guidance lets a task run between two `.await`s.
pub const INLINE_BELOW: Duration = Duration::from_micros(100);

/// Where the backend runs the module's calls. PKCS#11 calls block: a software token answers in
/// microseconds, a USB or network HSM can take seconds.
///
/// Handing a call to another thread costs a thread wake-up or two. On a small or virtual
/// machine that costs as much as a software token's signature: on the 2-core build machine,
/// two tasks signing P-256 on SoftHSM reached about 0.8 of a bare `cryptoki` loop off-thread and
/// about 0.95 adaptive (`BENCHMARKS.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Dispatch {
    /// Each kind of call (signing or decrypting with one key algorithm, reading objects,
    /// random bytes) is timed. A kind whose typical recent call (a running median, so a few
    /// outliers do not count) is under [`INLINE_BELOW`] runs on the calling task's thread, one
    /// over twice that off it, as under [`Dispatch::OffThread`]; in between it stays where it
    /// was. Always off-thread: the first call of each kind, calls that create or destroy
    /// objects (generate, rotate, delete, import), listings, exports, key operations on more
    /// than 64 KiB, and any call that would have to wait for the token to be free. A kind that
    /// gets slow moves off the async threads within a few calls and comes back once its calls
    /// are fast again. The default.
    #[default]
    Adaptive,
    /// Every call off the async worker threads. On a multi-threaded tokio runtime it runs
    /// through `block_in_place`, which first moves the worker's other tasks to another
    /// thread; on a current-thread runtime it runs on the blocking pool (`spawn_blocking`).
    OffThread,
    /// Every call on the calling task's thread, blocking it for the call. Only for a local
    /// software token, and even there `Adaptive` does the same for its fast calls.
    Inline,
}

/// Configuration for [`crate::Pkcs11Backend::open`].
///
/// ```toml
/// module-path = "/usr/lib/softhsm/libsofthsm2.so"
/// token = "prod"                        # the token label; or slot-id = 1234 (exactly one)
/// pin = { env = "HSM_PIN" }             # or { file = "/run/secrets/hsm-pin" }, or "prompt"
/// max-sessions = 16                     # also bounded by the token's own limit
/// shared-context = true                 # share one initialized module per process
/// max-certificates = 32                 # certificates keychain may store on the token
/// so-pin = { env = "HSM_SO_PIN" }       # only for TokenAdmin (optional)
/// dispatch = "adaptive"                 # or "off-thread", "inline" (see `Dispatch`)
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Config {
    /// The PKCS#11 module (shared library). Required.
    pub module_path: Option<PathBuf>,
    /// The token, by its label (`CKA_LABEL` of the token, RFC 7512 `token`). Set this or
    /// [`Config::slot_id`], not both.
    pub token: Option<String>,
    /// The token, by the id of the slot it is in (RFC 7512 `slot-id`).
    pub slot_id: Option<u64>,
    /// The user PIN. Default: the `KEYCHAIN_PKCS11_PIN` environment variable.
    pub pin: SecretSource,
    /// The most sessions this backend keeps open at once (at least 1). The token's own limit
    /// (`ulMaxRwSessionCount`), where it reports one, lowers it further.
    pub max_sessions: usize,
    /// Whether backends opened on the same module in this process share one initialized module
    /// (reference-counted; `C_Finalize` when the last one closes). PKCS#11 allows one
    /// `C_Initialize` per process, so leave this on unless the module is used by nothing else.
    pub shared_context: bool,
    /// The most certificates keychain stores on the token (every certificate of every chain);
    /// a chain that would exceed it is `CapacityExceeded`. Default: no limit but the token's.
    pub max_certificates: Option<usize>,
    /// The password KDF of `export_wrapped` with a password (PBES2). Default: PBKDF2-SHA256,
    /// 600 000 iterations.
    pub export_kdf: Kdf,
    /// The Security Officer PIN, for [`crate::TokenAdmin`] only; the backend itself never logs
    /// in as SO. Default: none.
    pub so_pin: Option<SecretSource>,
    /// Where the module's calls run. Default: [`Dispatch::Adaptive`].
    pub dispatch: Dispatch,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            module_path: None,
            token: None,
            slot_id: None,
            pin: SecretSource::env("KEYCHAIN_PKCS11_PIN"),
            max_sessions: DEFAULT_MAX_SESSIONS,
            shared_context: true,
            max_certificates: None,
            export_kdf: Kdf::default(),
            so_pin: None,
            dispatch: Dispatch::Adaptive,
        }
    }
}

/// RFC 7512 path attributes that select a token or a key, which `from_uri` understands.
const KNOWN_PATH: &[&str] = &["token", "slot-id", "object", "id", "type"];
/// Query attributes `from_uri` understands.
const KNOWN_QUERY: &[&str] = &["module-path", "pin-source", "pin-value", "max-sessions"];

impl Config {
    /// The token labelled `token` in the module at `module_path`, logged in with `pin`.
    pub fn new(
        module_path: impl Into<PathBuf>,
        token: impl Into<String>,
        pin: SecretSource,
    ) -> Self {
        Self {
            module_path: Some(module_path.into()),
            token: Some(token.into()),
            pin,
            ..Self::default()
        }
    }

    /// The token in slot `slot_id` of the module at `module_path`, logged in with `pin`.
    pub fn with_slot(module_path: impl Into<PathBuf>, slot_id: u64, pin: SecretSource) -> Self {
        Self {
            module_path: Some(module_path.into()),
            slot_id: Some(slot_id),
            pin,
            ..Self::default()
        }
    }

    /// Sets the KDF of password exports.
    #[must_use]
    pub fn with_export_kdf(mut self, kdf: Kdf) -> Self {
        self.export_kdf = kdf;
        self
    }

    /// Sets the certificate limit.
    #[must_use]
    pub fn with_max_certificates(mut self, max: usize) -> Self {
        self.max_certificates = Some(max);
        self
    }

    /// Sets the session limit.
    #[must_use]
    pub fn with_max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = max_sessions;
        self
    }

    /// Sets where the module's calls run.
    #[must_use]
    pub fn with_dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Sets whether the module context is shared with other backends of this process.
    #[must_use]
    pub fn with_shared_context(mut self, shared: bool) -> Self {
        self.shared_context = shared;
        self
    }

    /// A configuration from an RFC 7512 `pkcs11:` URI:
    ///
    /// - path attributes `token` (label) or `slot-id` (decimal), exactly one;
    /// - query attributes `module-path` (required), `pin-source` (`env:VAR`, `file:/path`,
    ///   `prompt`) or `pin-value` (the PIN itself, for tests), and `max-sessions`.
    ///
    /// `object`, `id` and `type` name a key, not the backend: read the key name with
    /// [`KeyUri::key_name`]. Attributes starting with `x-` are ignored (vendor extensions).
    ///
    /// ```
    /// use keychain_core::KeyUri;
    /// use keychain_pkcs11::Config;
    /// let uri: KeyUri = "pkcs11:token=prod;object=signer\
    ///     ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN".parse()?;
    /// let config = Config::from_uri(&uri)?;
    /// assert_eq!(config.token.as_deref(), Some("prod"));
    /// assert_eq!(uri.key_name().transpose()?.map(|n| n.to_string()), Some("signer".into()));
    /// # Ok::<(), keychain_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] for another scheme, a malformed value, both
    /// `pin-source` and `pin-value`, or an attribute this backend does not know (another RFC 7512
    /// token selector such as `serial` is [`keychain_core::ErrorKind::Unsupported`]).
    pub fn from_uri(uri: &KeyUri) -> Result<Self> {
        if !<Self as keychain_core::BackendConfig>::URI_SCHEMES.contains(&uri.scheme()) {
            return Err(Error::invalid_input(format!(
                "expected a pkcs11: URI, got scheme `{}`",
                uri.scheme()
            )));
        }
        for (name, _) in uri.path_attrs() {
            if name.starts_with("x-") || KNOWN_PATH.contains(&name) {
                continue;
            }
            return Err(Error::unsupported(format!(
                "pkcs11: URI path attribute `{name}` is not supported; select the token with \
                 `token` (label) or `slot-id`"
            )));
        }
        for (name, _) in uri.query_attrs() {
            if name.starts_with("x-") || KNOWN_QUERY.contains(&name) {
                continue;
            }
            return Err(Error::invalid_input(format!(
                "pkcs11: URI query attribute `{name}` is unknown; supported are {}",
                KNOWN_QUERY.join(", ")
            )));
        }
        let text = |value: Option<&[u8]>, what: &str| -> Result<Option<String>> {
            value
                .map(|v| {
                    String::from_utf8(v.to_vec())
                        .map_err(|_| Error::invalid_input(format!("`{what}` is not UTF-8")))
                })
                .transpose()
        };
        let number = |value: Option<String>, what: &str| -> Result<Option<u64>> {
            value
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        Error::invalid_input(format!(
                            "`{what}` must be a decimal number, got {v:?}"
                        ))
                    })
                })
                .transpose()
        };
        let mut config = Self {
            module_path: text(uri.query_attr_bytes("module-path"), "module-path")?
                .map(PathBuf::from),
            token: text(uri.path_attr_bytes("token"), "token")?,
            slot_id: number(text(uri.path_attr_bytes("slot-id"), "slot-id")?, "slot-id")?,
            ..Self::default()
        };
        let source = uri.secret_source("pin-source").transpose()?;
        let value = uri.secret_source("pin-value").transpose()?;
        match (source, value) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_input(
                    "a pkcs11: URI may give pin-source or pin-value, not both",
                ));
            }
            (Some(pin), None) | (None, Some(pin)) => config.pin = pin,
            (None, None) => {}
        }
        if let Some(n) = number(
            text(uri.query_attr_bytes("max-sessions"), "max-sessions")?,
            "max-sessions",
        )? {
            config.max_sessions = usize::try_from(n)
                .map_err(|_| Error::invalid_input("`max-sessions` is too large"))?;
        }
        Ok(config)
    }

    /// Checks the fields that need no I/O.
    pub(crate) fn validate(&self) -> Result<()> {
        match &self.module_path {
            None => {
                return Err(Error::invalid_input(
                    "module-path is required: the PKCS#11 module (shared library) to load, \
                     e.g. /usr/lib/softhsm/libsofthsm2.so",
                ));
            }
            Some(p) if p.as_os_str().is_empty() => {
                return Err(Error::invalid_input("module-path is empty"));
            }
            Some(_) => {}
        }
        match (&self.token, self.slot_id) {
            (Some(_), Some(_)) => Err(Error::invalid_input(
                "set exactly one of token (label) and slot-id, not both",
            )),
            (None, None) => Err(Error::invalid_input(
                "set exactly one of token (label) and slot-id to select the token",
            )),
            (Some(label), None) if label.is_empty() => {
                Err(Error::invalid_input("token label is empty"))
            }
            _ if self.max_sessions == 0 => {
                Err(Error::invalid_input("max-sessions must be at least 1"))
            }
            _ => Ok(()),
        }
    }
}

#[keychain_core::async_trait]
impl keychain_core::BackendConfig for Config {
    const TYPE: &'static str = "pkcs11";
    const URI_SCHEMES: &'static [&'static str] = &["pkcs11"];

    fn from_uri(uri: &KeyUri) -> Result<Self> {
        Self::from_uri(uri)
    }

    /// A URI matches the backend on the token it names (`token=` label or `slot-id=`); a URI
    /// naming neither matches every PKCS#11 backend.
    fn matches(&self, uri: &KeyUri) -> bool {
        let token_ok = uri
            .path_attr("token")
            .is_none_or(|t| self.token.as_deref() == Some(t));
        let slot_ok = uri
            .path_attr("slot-id")
            .is_none_or(|s| self.slot_id.is_some_and(|have| have.to_string() == s));
        token_ok && slot_ok
    }

    async fn open(self, _name: &str) -> Result<std::sync::Arc<dyn keychain_core::Backend>> {
        Ok(std::sync::Arc::new(crate::Pkcs11Backend::open(self).await?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use keychain_core::ErrorKind;

    use super::*;

    #[test]
    fn toml_is_kebab_case_and_strict() {
        let c: Config = toml::from_str(
            r#"
            module-path = "/usr/lib/softhsm/libsofthsm2.so"
            token = "prod"
            pin = { env = "HSM_PIN" }
            max-sessions = 4
            shared-context = false
            "#,
        )
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("prod"));
        assert_eq!(c.max_sessions, 4);
        assert!(!c.shared_context);
        assert!(matches!(c.pin, SecretSource::Env(ref v) if v == "HSM_PIN"));
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("modul-path = \"/x\"").is_err());
        let d: Config = toml::from_str("module-path = \"/m.so\"\nslot-id = 7").unwrap();
        assert_eq!(d.slot_id, Some(7));
        assert!(d.shared_context);
        assert_eq!(d.max_sessions, DEFAULT_MAX_SESSIONS);
        assert_eq!(d.dispatch, Dispatch::Adaptive);
        for (text, dispatch) in [
            ("adaptive", Dispatch::Adaptive),
            ("off-thread", Dispatch::OffThread),
            ("inline", Dispatch::Inline),
        ] {
            let c: Config = toml::from_str(&format!("dispatch = \"{text}\"")).unwrap();
            assert_eq!(c.dispatch, dispatch);
        }
        assert!(toml::from_str::<Config>("dispatch = \"spawn-blocking\"").is_err());
        assert!(toml::from_str::<Config>("inline-calls = true").is_err());
    }

    #[test]
    fn exactly_one_token_selector() {
        let pin = || SecretSource::value("1234");
        let both = Config {
            slot_id: Some(1),
            ..Config::new("/m.so", "t", pin())
        };
        let none = Config {
            module_path: Some("/m.so".into()),
            ..Config::default()
        };
        let no_module = Config {
            module_path: None,
            ..Config::new("/m.so", "t", pin())
        };
        for c in [both, none, no_module] {
            assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        }
        let zero = Config::with_slot("/m.so", 3, pin()).with_max_sessions(0);
        assert_eq!(zero.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn from_uri() {
        let uri: KeyUri =
            "pkcs11:token=prod;object=signer?module-path=/m.so&pin-value=1234&max-sessions=3"
                .parse()
                .unwrap();
        let c = Config::from_uri(&uri).unwrap();
        assert_eq!(
            c.module_path.as_deref(),
            Some(std::path::Path::new("/m.so"))
        );
        assert_eq!(c.token.as_deref(), Some("prod"));
        assert_eq!(c.max_sessions, 3);
        assert_eq!(c.pin.resolve("pin").unwrap().expose(), "1234");
        assert!(!format!("{c:?}").contains("1234"));

        let uri: KeyUri = "pkcs11:slot-id=42?module-path=/m.so&pin-source=env:P"
            .parse()
            .unwrap();
        let c = Config::from_uri(&uri).unwrap();
        assert_eq!(c.slot_id, Some(42));
        assert!(matches!(c.pin, SecretSource::Env(ref v) if v == "P"));

        for (bad, kind) in [
            ("awskms:key-id=x", ErrorKind::InvalidInput),
            (
                "pkcs11:slot-id=x?module-path=/m.so",
                ErrorKind::InvalidInput,
            ),
            (
                "pkcs11:token=a?module-path=/m.so&pin-source=env:P&pin-value=1",
                ErrorKind::InvalidInput,
            ),
            ("pkcs11:token=a?modul-path=/m.so", ErrorKind::InvalidInput),
            (
                "pkcs11:serial=123?module-path=/m.so",
                ErrorKind::Unsupported,
            ),
        ] {
            let uri: KeyUri = bad.parse().unwrap();
            assert_eq!(Config::from_uri(&uri).unwrap_err().kind(), kind, "{bad}");
        }
        let uri: KeyUri = "pkcs11:token=a;x-vendor=1?x-opt=2&module-path=/m.so"
            .parse()
            .unwrap();
        assert!(Config::from_uri(&uri).is_ok());
    }
}
