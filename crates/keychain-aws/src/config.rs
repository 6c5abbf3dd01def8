//! Configuration of the AWS KMS backend, from TOML/serde or from an `awskms:` URI.

use keychain_core::{Error, KeyUri, Result, SecretSource};
use serde::{Deserialize, Serialize};

/// The alias namespace keys go under when none is configured: `alias/keychain/<name>`.
pub const DEFAULT_ALIAS_PREFIX: &str = "keychain/";

/// The default waiting period of `delete_key` (AWS's minimum).
pub const DEFAULT_DELETION_WINDOW_DAYS: u8 = 7;

/// The default number of attempts the SDK makes per call (its standard retry mode).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Configuration for [`crate::AwsBackend::open`].
///
/// ```toml
/// region = "eu-west-1"                  # else the SDK's chain (AWS_REGION, profile, IMDS)
/// alias-prefix = "keychain/prod/"       # keys are alias/keychain/prod/<name>
/// endpoint = "http://127.0.0.1:4566"    # LocalStack, moto, a VPC endpoint; default: AWS
/// # credentials: the SDK's default chain (env, profile, web identity, ECS, IMDS) unless
/// # access-key-id and secret-access-key are both given:
/// access-key-id = { env = "MY_KMS_KEY_ID" }
/// secret-access-key = { file = "/run/secrets/kms-secret" }
/// session-token = { env = "MY_KMS_SESSION_TOKEN" }   # optional
/// deletion-window-days = 7              # 7..=30, ScheduleKeyDeletion's waiting period
/// max-attempts = 3                      # SDK attempts per call (1 = no SDK retries)
/// connect-timeout-ms = 3100             # SDK connect timeout
/// operation-timeout-ms = 30000          # SDK timeout for a call, retries included
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Config {
    /// The AWS region (`eu-west-1`). `None`: the SDK's region chain (`AWS_REGION`, the profile,
    /// IMDS).
    pub region: Option<String>,
    /// The KMS endpoint URL, for LocalStack, moto or a VPC endpoint. `None`: AWS's endpoint
    /// for the region.
    pub endpoint: Option<String>,
    /// The namespace under `alias/`: key `name` is `alias/<alias-prefix><name>`. Letters,
    /// digits, `/`, `_`, `-`; empty or ending in `/`, `-` or `_`; not starting with `aws/`.
    pub alias_prefix: String,
    /// Static credentials: the access key id. With [`Config::secret_access_key`] it replaces
    /// the SDK's default credential chain.
    pub access_key_id: Option<SecretSource>,
    /// Static credentials: the secret access key.
    pub secret_access_key: Option<SecretSource>,
    /// Static credentials: the session token of temporary credentials (optional).
    pub session_token: Option<SecretSource>,
    /// The waiting period `delete_key` schedules (7 to 30 days).
    pub deletion_window_days: u8,
    /// Attempts per call by the SDK's standard retry mode (throttling, 5xx, network), at least
    /// 1; 1 leaves retrying to the caller (e.g. `keychain-layers`' retry layer).
    pub max_attempts: u32,
    /// The SDK's connect timeout in milliseconds; `None` keeps the SDK's default.
    pub connect_timeout_ms: Option<u64>,
    /// The SDK's timeout for one call including its retries, in milliseconds; `None`: no limit.
    pub operation_timeout_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            alias_prefix: DEFAULT_ALIAS_PREFIX.to_owned(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            deletion_window_days: DEFAULT_DELETION_WINDOW_DAYS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            connect_timeout_ms: None,
            operation_timeout_ms: None,
        }
    }
}

/// Path attributes `from_uri` understands (`key-id` names a key, not the backend).
const KNOWN_PATH: &[&str] = &[
    "key-id",
    "region",
    "endpoint",
    "alias-prefix",
    "name",
    "version",
];
/// Query attributes `from_uri` understands.
const KNOWN_QUERY: &[&str] = &[
    "region",
    "endpoint",
    "alias-prefix",
    "access-key-id-source",
    "secret-access-key-source",
    "session-token-source",
    "deletion-window-days",
    "max-attempts",
];

impl Config {
    /// The default configuration in `region`.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: Some(region.into()),
            ..Self::default()
        }
    }

    /// Sets the endpoint URL.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the alias namespace.
    #[must_use]
    pub fn with_alias_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.alias_prefix = prefix.into();
        self
    }

    /// Uses static credentials instead of the SDK's default chain.
    #[must_use]
    pub fn with_static_credentials(
        mut self,
        access_key_id: SecretSource,
        secret_access_key: SecretSource,
        session_token: Option<SecretSource>,
    ) -> Self {
        self.access_key_id = Some(access_key_id);
        self.secret_access_key = Some(secret_access_key);
        self.session_token = session_token;
        self
    }

    /// Sets the SDK's attempts per call (1 = no SDK retries).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the SDK's connect and per-call timeouts, in milliseconds.
    #[must_use]
    pub fn with_timeouts(mut self, connect_ms: Option<u64>, operation_ms: Option<u64>) -> Self {
        self.connect_timeout_ms = connect_ms;
        self.operation_timeout_ms = operation_ms;
        self
    }

    /// Sets `delete_key`'s waiting period (7 to 30 days).
    #[must_use]
    pub fn with_deletion_window_days(mut self, days: u8) -> Self {
        self.deletion_window_days = days;
        self
    }

    /// A configuration from an `awskms:` URI:
    ///
    /// - attributes `region`, `endpoint` and `alias-prefix` (in the path or the query);
    /// - query attributes `access-key-id-source`, `secret-access-key-source` and
    ///   `session-token-source` (`env:VAR`, `file:/path`, `prompt`) for static credentials,
    ///   `deletion-window-days` and `max-attempts`.
    ///
    /// `key-id` (an alias such as `alias/keychain/signer`) and `name` name a key, not the
    /// backend: read the key with [`crate::key_name_from_uri`]. Attributes starting with `x-`
    /// are ignored.
    ///
    /// ```
    /// use keychain_core::KeyUri;
    /// use keychain_aws::Config;
    /// let uri: KeyUri = "awskms:key-id=alias/keychain/signer;region=eu-west-1\
    ///     ?endpoint=http://127.0.0.1:4566".parse()?;
    /// let config = Config::from_uri(&uri)?;
    /// assert_eq!(config.region.as_deref(), Some("eu-west-1"));
    /// assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
    /// # Ok::<(), keychain_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] for another scheme, an unknown attribute, a
    /// value that is not UTF-8 or not a number where one is expected, or static credentials
    /// with only one of the key id and the secret.
    pub fn from_uri(uri: &KeyUri) -> Result<Self> {
        if !<Self as keychain_core::BackendConfig>::URI_SCHEMES.contains(&uri.scheme()) {
            return Err(Error::invalid_input(format!(
                "expected an awskms: URI, got scheme `{}`",
                uri.scheme()
            )));
        }
        uri.check_attrs(KNOWN_PATH, KNOWN_QUERY)?;
        let text = |name: &str| uri.text_attr(name).transpose();
        let number = |name: &str| -> Result<Option<u64>> {
            text(name)?
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        Error::invalid_input(format!(
                            "`{name}` must be a decimal number, got {v:?}"
                        ))
                    })
                })
                .transpose()
        };
        let mut config = Self {
            region: text("region")?,
            endpoint: text("endpoint")?,
            ..Self::default()
        };
        if let Some(prefix) = text("alias-prefix")? {
            config.alias_prefix = prefix;
        }
        config.access_key_id = uri.secret_source("access-key-id-source").transpose()?;
        config.secret_access_key = uri.secret_source("secret-access-key-source").transpose()?;
        config.session_token = uri.secret_source("session-token-source").transpose()?;
        if let Some(days) = number("deletion-window-days")? {
            config.deletion_window_days = u8::try_from(days)
                .map_err(|_| Error::invalid_input("`deletion-window-days` must be 7 to 30"))?;
        }
        if let Some(n) = number("max-attempts")? {
            config.max_attempts = u32::try_from(n)
                .map_err(|_| Error::invalid_input("`max-attempts` is too large"))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields that need no I/O.
    pub(crate) fn validate(&self) -> Result<()> {
        validate_prefix(&self.alias_prefix)?;
        if !(7..=30).contains(&self.deletion_window_days) {
            return Err(Error::invalid_input(format!(
                "deletion-window-days must be 7 to 30 (AWS's limits), got {}",
                self.deletion_window_days
            )));
        }
        if self.max_attempts == 0 {
            return Err(Error::invalid_input("max-attempts must be at least 1"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Error::invalid_input(
                "static credentials need both access-key-id and secret-access-key",
            ));
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            return Err(Error::invalid_input(
                "session-token is only used with access-key-id and secret-access-key",
            ));
        }
        if let Some(region) = &self.region
            && (region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(Error::invalid_input(format!(
                "region {region:?} is not a region name such as eu-west-1"
            )));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(Error::invalid_input(format!(
                "endpoint {endpoint:?} must be an http:// or https:// URL"
            )));
        }
        Ok(())
    }
}

/// Checks an alias prefix: alias characters only, a separator at its end so that one
/// keychain's names never run into another's, and not AWS's reserved `aws/` namespace.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-')))
    {
        return Err(Error::invalid_input(format!(
            "alias-prefix contains {c:?}; allowed are A-Z a-z 0-9 / _ -"
        )));
    }
    if prefix.starts_with("aws/") || prefix.starts_with('/') {
        return Err(Error::invalid_input(
            "alias-prefix must not start with `/` or `aws/` (AWS reserves alias/aws/)",
        ));
    }
    if !(prefix.is_empty() || prefix.ends_with(['/', '-', '_'])) {
        return Err(Error::invalid_input(format!(
            "alias-prefix {prefix:?} must end with `/`, `-` or `_`, so that its keys' aliases \
             cannot be read as another prefix's"
        )));
    }
    // Aliases are at most 256 characters: `alias/` + prefix + a 63-character name + `/v<n>`.
    if prefix.len() > 256 - 6 - 63 - 11 {
        return Err(Error::invalid_input("alias-prefix is too long"));
    }
    Ok(())
}

#[keychain_core::async_trait]
impl keychain_core::BackendConfig for Config {
    const TYPE: &'static str = "aws";
    /// `aws:`, and `awskms:` as documented before.
    const URI_SCHEMES: &'static [&'static str] = &["aws", "awskms"];

    fn from_uri(uri: &KeyUri) -> Result<Self> {
        Self::from_uri(uri)
    }

    /// A URI naming a `region` matches the backend in that region (a backend whose region comes
    /// from the environment matches any).
    fn matches(&self, uri: &KeyUri) -> bool {
        match (uri.path_attr("region"), &self.region) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
    }

    /// `name=KEY`, or `key-id=alias/<alias-prefix>KEY` (also as an alias ARN); `version=N`.
    fn key_ref(&self, uri: &KeyUri) -> Result<keychain_core::KeyRef> {
        let name = crate::naming::key_name_from_uri(uri, &self.alias_prefix)
            .ok_or_else(|| Error::invalid_input(format!("key URI `{uri}` names no key")))??;
        Ok(match keychain_core::registration::uri_version(uri)? {
            None => keychain_core::KeyRef::latest(name),
            Some(v) => keychain_core::KeyRef::versioned(name, v),
        })
    }

    async fn open(self, _name: &str) -> Result<std::sync::Arc<dyn keychain_core::Backend>> {
        Ok(std::sync::Arc::new(crate::AwsBackend::open(self).await?))
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
            region = "eu-west-1"
            endpoint = "http://127.0.0.1:4566"
            alias-prefix = "app/prod/"
            access-key-id = { env = "KID" }
            secret-access-key = { value = "s3cr3t" }
            deletion-window-days = 30
            max-attempts = 1
            connect-timeout-ms = 500
            operation-timeout-ms = 10000
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.alias_prefix, "app/prod/");
        assert_eq!(c.deletion_window_days, 30);
        assert_eq!(c.max_attempts, 1);
        assert_eq!(c.connect_timeout_ms, Some(500));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(toml::from_str::<Config>("regio = \"x\"").is_err());
        let d: Config = toml::from_str("").unwrap();
        assert_eq!(d.alias_prefix, DEFAULT_ALIAS_PREFIX);
        assert_eq!(d.deletion_window_days, DEFAULT_DELETION_WINDOW_DAYS);
        assert_eq!(d.max_attempts, DEFAULT_MAX_ATTEMPTS);
        d.validate().unwrap();
    }

    #[test]
    fn validation() {
        for bad in [
            Config::new("eu-west-1").with_deletion_window_days(6),
            Config::new("eu-west-1").with_deletion_window_days(31),
            Config::new("eu-west-1").with_max_attempts(0),
            Config::new("eu west"),
            Config::new("eu-west-1").with_endpoint("127.0.0.1:4566"),
            Config::new("eu-west-1").with_alias_prefix("aws/x/"),
            Config::new("eu-west-1").with_alias_prefix("a.b/"),
            Config::new("eu-west-1").with_alias_prefix("app"),
            Config {
                access_key_id: Some(SecretSource::value("AKIA")),
                ..Config::new("eu-west-1")
            },
        ] {
            assert_eq!(
                bad.validate().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        for good in ["", "app/", "app-", "app_", "a/b/c/"] {
            validate_prefix(good).unwrap();
        }
    }

    #[test]
    fn from_uri() {
        let uri: KeyUri = "awskms:key-id=alias/keychain/signer;region=eu-west-1\
            ?endpoint=http://127.0.0.1:9&alias-prefix=kc/&deletion-window-days=9\
            &access-key-id-source=env:K&secret-access-key-source=file:/run/s&max-attempts=1"
            .parse()
            .unwrap();
        let c = Config::from_uri(&uri).unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.alias_prefix, "kc/");
        assert_eq!(c.deletion_window_days, 9);
        assert_eq!(c.max_attempts, 1);
        assert!(matches!(c.access_key_id, Some(SecretSource::Env(ref v)) if v == "K"));
        assert!(matches!(c.secret_access_key, Some(SecretSource::File(_))));
        for bad in [
            "pkcs11:token=x",
            "awskms:key-id=x?colour=red",
            "awskms:region=eu?deletion-window-days=x",
            "awskms:region=eu?deletion-window-days=3",
            "awskms:region=eu?access-key-id-source=env:K",
            "awskms:bogus=1",
        ] {
            let uri: KeyUri = bad.parse().unwrap();
            assert_eq!(
                Config::from_uri(&uri).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        let uri: KeyUri = "awskms:key-id=alias/x;x-vendor=1?x-opt=2".parse().unwrap();
        assert!(Config::from_uri(&uri).is_ok());
    }
}
