//! Configuration of the Transit backend, from TOML/serde or from a `transit:` URI.

use std::path::PathBuf;

use keychain_core::{Error, KeyUri, Result, SecretSource};
pub use keychain_crypto::pkcs8::Kdf;
use serde::{Deserialize, Serialize};

/// The Transit mount used when none is configured.
pub const DEFAULT_MOUNT: &str = "transit";

/// The per-request timeout used when none is configured, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Where a Kubernetes pod finds its service-account token.
pub const DEFAULT_KUBERNETES_JWT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Configuration for [`crate::VaultBackend::open`].
///
/// ```toml
/// address = "https://vault.internal:8200"
/// mount = "transit"                      # the Transit secrets engine's mount path
/// namespace = "team-a"                   # Vault Enterprise / OpenBao namespace (optional)
/// key-prefix = "billing."                # keys are <key-prefix><name> in the mount
/// ca-bundle = "/etc/ssl/vault-ca.pem"    # PEM CA certificates to trust (optional)
/// client-cert = "/etc/vault/client.pem"  # mutual TLS (optional, with client-key)
/// client-key = "/etc/vault/client.key"
/// timeout-ms = 30000
/// export-kdf = { pbkdf2 = { iterations = 600000 } }  # PBES2 of password exports
///
/// [auth]                                 # one of:
/// method = "token"
/// token = { env = "VAULT_TOKEN" }
/// # method = "approle", role-id = { file = "..." }, secret-id = { env = "..." }, mount = "approle"
/// # method = "kubernetes", role = "my-service", jwt = { file = "..." }, mount = "kubernetes"
/// ```
///
/// Nothing is read from `VAULT_*` environment variables unless the configuration says so
/// (`token = { env = "VAULT_TOKEN" }`): what a backend talks to is in its configuration.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Config {
    /// The server's address, `http://` or `https://` (`https://vault.internal:8200`).
    pub address: String,
    /// How the backend logs in.
    pub auth: Auth,
    /// The mount path of the Transit secrets engine.
    pub mount: String,
    /// The Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`); `None`: the root.
    pub namespace: Option<String>,
    /// Keys are `<key-prefix><name>` in the mount, so several keychains (or tests) can share
    /// one; `list_keys` shows only the keys under it. Empty, or dot-terminated segments of
    /// key-name characters (`billing.`, `team.app.`); see the crate docs for the mapping.
    pub key_prefix: String,
    /// PEM file of CA certificates to trust besides the system's, for `https://` addresses.
    pub ca_bundle: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs [`Config::client_key`].
    pub client_cert: Option<PathBuf>,
    /// PEM private key of [`Config::client_cert`].
    pub client_key: Option<PathBuf>,
    /// **Development only**: accept any server certificate. Anyone on the path can then read
    /// tokens and plaintexts; the backend logs a warning when it opens like this.
    pub danger_accept_invalid_certs: bool,
    /// Timeout of one HTTP request, in milliseconds.
    pub timeout_ms: u64,
    /// The password KDF of `export_wrapped` with a password (PBES2). Default: PBKDF2-SHA256,
    /// 600 000 iterations.
    pub export_kdf: Kdf,
}

/// How the backend authenticates to Vault / OpenBao. Every credential is a [`SecretSource`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(
    tag = "method",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
#[non_exhaustive]
pub enum Auth {
    /// A token (`hvs.…` / `s.…`). Renewed before it expires when it is renewable.
    Token {
        /// The token.
        token: SecretSource,
    },
    /// AppRole login: role id + secret id. Logs in again when the token cannot be renewed.
    #[serde(rename = "approle")]
    AppRole {
        /// The role id.
        role_id: SecretSource,
        /// The secret id.
        secret_id: SecretSource,
        /// The auth method's mount path.
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
    /// Kubernetes login with the pod's service-account JWT.
    Kubernetes {
        /// The Vault role bound to the service account.
        role: String,
        /// The service-account token; default: the file Kubernetes mounts into pods.
        #[serde(default = "default_kubernetes_jwt")]
        jwt: SecretSource,
        /// The auth method's mount path.
        #[serde(default = "default_kubernetes_mount")]
        mount: String,
    },
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

fn default_kubernetes_mount() -> String {
    "kubernetes".to_owned()
}

fn default_kubernetes_jwt() -> SecretSource {
    SecretSource::File(PathBuf::from(DEFAULT_KUBERNETES_JWT))
}

impl Default for Auth {
    /// A token from the environment variable `VAULT_TOKEN`.
    fn default() -> Self {
        Self::Token {
            token: SecretSource::Env("VAULT_TOKEN".to_owned()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            address: String::new(),
            auth: Auth::default(),
            mount: DEFAULT_MOUNT.to_owned(),
            namespace: None,
            key_prefix: String::new(),
            ca_bundle: None,
            client_cert: None,
            client_key: None,
            danger_accept_invalid_certs: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            export_kdf: Kdf::default(),
        }
    }
}

/// Path attributes `from_uri` understands (`name` and `version` name a key, not the backend).
const KNOWN_PATH: &[&str] = &["mount", "name", "version", "namespace", "key-prefix"];
/// Query attributes `from_uri` understands.
const KNOWN_QUERY: &[&str] = &[
    "address",
    "mount",
    "namespace",
    "key-prefix",
    "token-source",
    "role-id-source",
    "secret-id-source",
    "approle-mount",
    "ca-bundle",
    "timeout-ms",
];

impl Config {
    /// The default configuration for the server at `address`, logging in with `token`.
    pub fn new(address: impl Into<String>, token: SecretSource) -> Self {
        Self {
            address: address.into(),
            auth: Auth::Token { token },
            ..Self::default()
        }
    }

    /// Sets how the backend logs in.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the Transit mount path.
    #[must_use]
    pub fn with_mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the per-request timeout in milliseconds.
    #[must_use]
    pub fn with_timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// Sets the KDF of password exports.
    #[must_use]
    pub fn with_export_kdf(mut self, kdf: Kdf) -> Self {
        self.export_kdf = kdf;
        self
    }

    /// A configuration from a `transit:` URI:
    ///
    /// - `mount`, `namespace`, `key-prefix` in the path or the query;
    /// - query `address` (required), `ca-bundle`, `timeout-ms`;
    /// - credentials: `token-source`, or `role-id-source` + `secret-id-source` (+
    ///   `approle-mount`) for AppRole, each `env:VAR`, `file:/path` or `prompt`.
    ///
    /// `name` and `version` name a key, not the backend: read them with
    /// [`crate::key_ref_from_uri`]. Attributes starting with `x-` are ignored.
    ///
    /// ```
    /// use keychain_core::KeyUri;
    /// use keychain_vault::Config;
    /// let uri: KeyUri = "transit:mount=transit;name=signer;version=3\
    ///     ?address=http://127.0.0.1:8200&token-source=env:VAULT_TOKEN".parse()?;
    /// let config = Config::from_uri(&uri)?;
    /// assert_eq!(config.address, "http://127.0.0.1:8200");
    /// assert_eq!(config.mount, "transit");
    /// # Ok::<(), keychain_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] for another scheme, an unknown attribute, a
    /// value that is not UTF-8 or not a number where one is expected, no address, or only one
    /// of the AppRole credentials.
    pub fn from_uri(uri: &KeyUri) -> Result<Self> {
        if !<Self as keychain_core::BackendConfig>::URI_SCHEMES.contains(&uri.scheme()) {
            return Err(Error::invalid_input(format!(
                "expected a transit: URI, got scheme `{}`",
                uri.scheme()
            )));
        }
        uri.check_attrs(KNOWN_PATH, KNOWN_QUERY)?;
        let text = |name: &str| uri.text_attr(name).transpose();
        let mut config = Self {
            address: text("address")?.unwrap_or_default(),
            namespace: text("namespace")?,
            ca_bundle: text("ca-bundle")?.map(PathBuf::from),
            ..Self::default()
        };
        if let Some(mount) = text("mount")? {
            config.mount = mount;
        }
        if let Some(prefix) = text("key-prefix")? {
            config.key_prefix = prefix;
        }
        if let Some(ms) = text("timeout-ms")? {
            config.timeout_ms = ms.parse().map_err(|_| {
                Error::invalid_input(format!("`timeout-ms` must be a decimal number, got {ms:?}"))
            })?;
        }
        let role_id = uri.secret_source("role-id-source").transpose()?;
        let secret_id = uri.secret_source("secret-id-source").transpose()?;
        config.auth = match (role_id, secret_id) {
            (Some(role_id), Some(secret_id)) => Auth::AppRole {
                role_id,
                secret_id,
                mount: text("approle-mount")?.unwrap_or_else(default_approle_mount),
            },
            (None, None) => match uri.secret_source("token-source").transpose()? {
                Some(token) => Auth::Token { token },
                None => Auth::default(),
            },
            _ => {
                return Err(Error::invalid_input(
                    "AppRole login needs both role-id-source and secret-id-source",
                ));
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields that need no I/O.
    pub(crate) fn validate(&self) -> Result<()> {
        let url = url::Url::parse(&self.address).map_err(|e| {
            Error::invalid_input(format!(
                "address {:?} is not a URL ({e}); expected e.g. https://vault.internal:8200",
                self.address
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Error::invalid_input(format!(
                "address {:?} must be an http:// or https:// URL with a host",
                self.address
            )));
        }
        validate_path("mount", &self.mount)?;
        if let Auth::AppRole { mount, .. } | Auth::Kubernetes { mount, .. } = &self.auth {
            validate_path("auth mount", mount)?;
        }
        if let Some(ns) = &self.namespace {
            validate_path("namespace", ns)?;
        }
        crate::naming::validate_prefix(&self.key_prefix)?;
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(Error::invalid_input(
                "mutual TLS needs both client-cert and client-key",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(Error::invalid_input("timeout-ms must be at least 1"));
        }
        Ok(())
    }
}

/// A mount or namespace path: segments of URL-safe characters separated by `/`.
fn validate_path(what: &str, path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{what} {path:?} must be non-empty segments of A-Z a-z 0-9 - _ . separated by /"
        )))
    }
}

#[keychain_core::async_trait]
impl keychain_core::BackendConfig for Config {
    const TYPE: &'static str = "vault";
    /// `vault:`, and `transit:` as documented before.
    const URI_SCHEMES: &'static [&'static str] = &["vault", "transit"];

    fn from_uri(uri: &KeyUri) -> Result<Self> {
        Self::from_uri(uri)
    }

    /// A URI matches the backend on the mount (`mount=`, default `transit`) and server
    /// (`address=`) it names; attributes it leaves out match any.
    fn matches(&self, uri: &KeyUri) -> bool {
        let mount = uri.path_attr("mount").or_else(|| uri.query_attr("mount"));
        let mount_ok = mount.is_none_or(|m| m.trim_matches('/') == self.mount.trim_matches('/'));
        let address_ok = uri
            .query_attr("address")
            .is_none_or(|a| self.address.trim_end_matches('/') == a.trim_end_matches('/'));
        mount_ok && address_ok
    }

    async fn open(self, _name: &str) -> Result<std::sync::Arc<dyn keychain_core::Backend>> {
        Ok(std::sync::Arc::new(crate::VaultBackend::open(self).await?))
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
            address = "https://vault.internal:8200"
            mount = "kv/transit"
            namespace = "team-a"
            key-prefix = "app."
            ca-bundle = "/etc/ca.pem"
            timeout-ms = 500
            [auth]
            method = "approle"
            role-id = { env = "ROLE" }
            secret-id = { value = "s3cr3t" }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.mount, "kv/transit");
        assert_eq!(c.key_prefix, "app.");
        assert_eq!(c.timeout_ms, 500);
        assert!(matches!(&c.auth, Auth::AppRole { mount, .. } if mount == "approle"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(toml::from_str::<Config>("adress = \"x\"").is_err());
        let k: Config = toml::from_str(
            "address = \"http://127.0.0.1:8200\"\n[auth]\nmethod = \"kubernetes\"\nrole = \"svc\"",
        )
        .unwrap();
        assert!(
            matches!(&k.auth, Auth::Kubernetes { jwt: SecretSource::File(p), mount, .. }
                if p.to_str() == Some(DEFAULT_KUBERNETES_JWT) && mount == "kubernetes")
        );
        let d: Config = toml::from_str("address = \"http://127.0.0.1:8200\"").unwrap();
        assert_eq!(d.mount, DEFAULT_MOUNT);
        assert!(
            matches!(&d.auth, Auth::Token { token: SecretSource::Env(v) } if v == "VAULT_TOKEN")
        );
        d.validate().unwrap();
    }

    #[test]
    fn validation() {
        let token = || SecretSource::value("t");
        let ok = || Config::new("http://127.0.0.1:8200", token());
        for bad in [
            Config::new("", token()),
            Config::new("127.0.0.1:8200", token()),
            Config::new("ftp://vault", token()),
            ok().with_mount(""),
            ok().with_mount("../sys"),
            ok().with_mount("a//b"),
            ok().with_namespace("a b"),
            ok().with_key_prefix("app"),
            ok().with_key_prefix("app-"),
            ok().with_timeout_ms(0),
            Config {
                client_cert: Some("/c.pem".into()),
                ..ok()
            },
        ] {
            assert_eq!(
                bad.validate().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        ok().with_mount("team/transit").validate().unwrap();
    }

    #[test]
    fn from_uri() {
        let uri: KeyUri = "transit:mount=tr;name=signer;version=2\
            ?address=https://vault:8200&namespace=ns1&key-prefix=kc.&timeout-ms=900\
            &role-id-source=env:R&secret-id-source=file:/run/s"
            .parse()
            .unwrap();
        let c = Config::from_uri(&uri).unwrap();
        assert_eq!(c.address, "https://vault:8200");
        assert_eq!(c.mount, "tr");
        assert_eq!(c.namespace.as_deref(), Some("ns1"));
        assert_eq!(c.key_prefix, "kc.");
        assert_eq!(c.timeout_ms, 900);
        assert!(matches!(c.auth, Auth::AppRole { .. }));
        let t: KeyUri = "transit:name=x?address=http://127.0.0.1:1&token-source=env:TOK"
            .parse()
            .unwrap();
        assert!(matches!(
            Config::from_uri(&t).unwrap().auth,
            Auth::Token { token: SecretSource::Env(ref v) } if v == "TOK"
        ));
        for bad in [
            "pkcs11:token=x",
            "transit:name=x",
            "transit:name=x?address=http://h:1&colour=red",
            "transit:name=x?address=http://h:1&timeout-ms=soon",
            "transit:name=x?address=http://h:1&role-id-source=env:R",
            "transit:bogus=1?address=http://h:1",
        ] {
            let uri: KeyUri = bad.parse().unwrap();
            assert_eq!(
                Config::from_uri(&uri).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        let uri: KeyUri = "transit:name=x;x-vendor=1?address=http://h:1&x-opt=2"
            .parse()
            .unwrap();
        assert!(Config::from_uri(&uri).is_ok());
    }
}
