//! Configuration of the TPM 2.0 backend.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keychain_core::{Error, KeyUri, Result, SecretSource};
use serde::{Deserialize, Serialize};

/// The TCTI used when none is configured: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// The persistent handle of the storage root key when none is configured (the TCG's
/// conventional SRK handle).
pub const DEFAULT_SRK_HANDLE: u32 = 0x8100_0001;

/// Configuration of [`crate::TpmBackend`].
///
/// In TOML (kebab-case, unknown fields refused):
///
/// ```toml
/// tcti = "swtpm:host=127.0.0.1,port=2321"   # or "device:/dev/tpmrm0" (default), "tabrmd:"
/// key-dir = "/var/lib/myapp/tpm-keys"       # where key blobs live (a keychain FileStore)
/// srk-handle = 0x81000001                    # persistent SRK; created when absent
/// key-auth = { env = "TPM_KEY_AUTH" }        # auth value of every key (default: empty)
/// [key-auths]
/// payments = { file = "/run/secrets/payments-auth" }
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct Config {
    /// The TPM Command Transmission Interface, in the TSS's `name:conf` form (as
    /// `TPM2TOOLS_TCTI`): `device:/dev/tpmrm0` (default), `device:/dev/tpm0`,
    /// `swtpm:host=127.0.0.1,port=2321`, `mssim:host=...,port=...`, `tabrmd:bus_name=...`.
    pub tcti: String,
    /// Directory of the key blobs (a `keychain-storage` `FileStore`: 0700 directory, 0600 files,
    /// atomic writes). Required unless the backend is opened with
    /// [`crate::TpmBackend::open_with_store`].
    pub key_dir: Option<PathBuf>,
    /// Open `key-dir` even when it is group- or world-accessible.
    pub allow_insecure_permissions: bool,
    /// Persistent handle of the storage root key (`0x81000000..=0x81FFFFFF`).
    pub srk_handle: u32,
    /// Create and persist the SRK at `srk-handle` when no object is there (needs owner auth).
    pub create_srk: bool,
    /// Use a transient SRK created at every open instead of a persistent one. The SRK template is
    /// fixed, so the TPM derives the same key each time and key blobs stay loadable. Costs one of
    /// the TPM's few object slots and the key derivation at every open.
    pub transient_srk: bool,
    /// Authorization of the owner hierarchy (persisting or creating the SRK). Default: empty.
    pub owner_auth: Option<SecretSource>,
    /// Authorization of the endorsement hierarchy (the attestation key). Default: empty.
    pub endorsement_auth: Option<SecretSource>,
    /// Authorization value of keys without an entry in `key-auths`. Default: empty. At most 32
    /// bytes (the SHA-256 name algorithm's digest size).
    pub key_auth: Option<SecretSource>,
    /// Authorization values of single keys, by key name.
    pub key_auths: BTreeMap<String, SecretSource>,
    /// Encrypt command and response parameters (digests, plaintexts, sealed AES keys) between
    /// host and TPM with a session salted by the SRK. Default: on.
    pub parameter_encryption: bool,
    /// How many keys stay loaded between calls. Default: the TPM's guaranteed transient object
    /// slots minus one (kept for temporary objects), minus the transient SRK if any.
    pub loaded_keys: Option<usize>,
    /// Flush transient objects that a crashed process left in the TPM, at open and when the TPM
    /// reports its object memory full. Only ever finds objects when keychain talks to the TPM
    /// without a resource manager (`/dev/tpm0`, swtpm, mssim) — which then serves nobody else.
    /// Default: on.
    pub flush_stale_objects: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tcti: DEFAULT_TCTI.to_owned(),
            key_dir: None,
            allow_insecure_permissions: false,
            srk_handle: DEFAULT_SRK_HANDLE,
            create_srk: true,
            transient_srk: false,
            owner_auth: None,
            endorsement_auth: None,
            key_auth: None,
            key_auths: BTreeMap::new(),
            parameter_encryption: true,
            loaded_keys: None,
            flush_stale_objects: true,
        }
    }
}

impl Clone for Config {
    fn clone(&self) -> Self {
        let dup = |s: &Option<SecretSource>| s.as_ref().map(SecretSource::duplicate);
        Self {
            tcti: self.tcti.clone(),
            key_dir: self.key_dir.clone(),
            allow_insecure_permissions: self.allow_insecure_permissions,
            srk_handle: self.srk_handle,
            create_srk: self.create_srk,
            transient_srk: self.transient_srk,
            owner_auth: dup(&self.owner_auth),
            endorsement_auth: dup(&self.endorsement_auth),
            key_auth: dup(&self.key_auth),
            key_auths: self
                .key_auths
                .iter()
                .map(|(k, v)| (k.clone(), v.duplicate()))
                .collect(),
            parameter_encryption: self.parameter_encryption,
            loaded_keys: self.loaded_keys,
            flush_stale_objects: self.flush_stale_objects,
        }
    }
}

impl Config {
    /// A configuration for the TPM behind `tcti`, keeping key blobs in `key_dir`.
    pub fn new(tcti: impl Into<String>, key_dir: impl Into<PathBuf>) -> Self {
        Self {
            tcti: tcti.into(),
            key_dir: Some(key_dir.into()),
            ..Self::default()
        }
    }

    /// Sets the auth value of every key without its own entry.
    pub fn with_key_auth(mut self, auth: SecretSource) -> Self {
        self.key_auth = Some(auth);
        self
    }

    /// Sets the auth value of the key `name`.
    pub fn with_key_auth_for(mut self, name: impl Into<String>, auth: SecretSource) -> Self {
        self.key_auths.insert(name.into(), auth);
        self
    }

    /// Uses a transient SRK instead of the persistent one.
    pub fn with_transient_srk(mut self, transient: bool) -> Self {
        self.transient_srk = transient;
        self
    }

    /// Turns parameter encryption on or off.
    pub fn with_parameter_encryption(mut self, on: bool) -> Self {
        self.parameter_encryption = on;
        self
    }

    /// Sets how many keys stay loaded.
    pub fn with_loaded_keys(mut self, n: usize) -> Self {
        self.loaded_keys = Some(n);
        self
    }

    /// The configuration a `tpm2:` URI describes.
    ///
    /// Attributes (path or query): `tcti`, `key-dir`, `srk-handle` (decimal or `0x` hex),
    /// `transient-srk` (`true`/`false`), `key-auth-source` (a secret source such as
    /// `env:TPM_KEY_AUTH`), `parameter-encryption` (`true`/`false`). `name` and `version` (the key,
    /// see [`keychain_core::KeyUri::key_name`]) are allowed and ignored here. Example:
    /// `tpm2:name=signer?tcti=swtpm:host%3D127.0.0.1,port%3D2321&key-dir=/var/lib/keys`.
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] for another scheme, an unknown attribute or an
    /// unparsable value.
    pub fn from_uri(uri: &KeyUri) -> Result<Self> {
        if !<Self as keychain_core::BackendConfig>::URI_SCHEMES.contains(&uri.scheme()) {
            return Err(Error::invalid_input(format!(
                "a tpm2 backend cannot open a {}: URI",
                uri.scheme()
            )));
        }
        const KNOWN: &[&str] = &[
            "name",
            "version",
            "tcti",
            "key-dir",
            "srk-handle",
            "transient-srk",
            "key-auth-source",
            "parameter-encryption",
        ];
        uri.check_attrs(KNOWN, KNOWN)?;
        let mut config = Self::default();
        if let Some(tcti) = uri.text_attr("tcti").transpose()? {
            config.tcti = tcti;
        }
        if let Some(dir) = uri.text_attr("key-dir").transpose()? {
            config.key_dir = Some(dir.into());
        }
        if let Some(h) = uri.text_attr("srk-handle").transpose()? {
            config.srk_handle = parse_handle(&h)?;
        }
        if let Some(b) = uri.text_attr("transient-srk").transpose()? {
            config.transient_srk = parse_bool("transient-srk", &b)?;
        }
        if let Some(b) = uri.text_attr("parameter-encryption").transpose()? {
            config.parameter_encryption = parse_bool("parameter-encryption", &b)?;
        }
        config.key_auth = uri.secret_source("key-auth-source").transpose()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(0x8100_0000..=0x81FF_FFFF).contains(&self.srk_handle) {
            return Err(Error::invalid_input(format!(
                "srk-handle 0x{:08x} is not a persistent handle (0x81000000..=0x81FFFFFF)",
                self.srk_handle
            )));
        }
        if self.loaded_keys == Some(0) {
            return Err(Error::invalid_input("loaded-keys must be at least 1"));
        }
        for name in self.key_auths.keys() {
            keychain_core::KeyName::new(name)
                .map_err(|e| e.with_context(format_args!("key-auths entry {name:?}")))?;
        }
        Ok(())
    }
}

fn parse_handle(s: &str) -> Result<u32> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| Error::invalid_input(format!("srk-handle {s:?} is not a number")))
}

fn parse_bool(what: &str, s: &str) -> Result<bool> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid_input(format!(
            "{what} must be true or false, not {s:?}"
        ))),
    }
}

#[keychain_core::async_trait]
impl keychain_core::BackendConfig for Config {
    const TYPE: &'static str = "tpm2";
    const URI_SCHEMES: &'static [&'static str] = &["tpm2"];

    fn from_uri(uri: &KeyUri) -> Result<Self> {
        Self::from_uri(uri)
    }

    /// A URI matches the backend on the TPM (`tcti=`) it names; a URI naming none matches
    /// every TPM backend.
    fn matches(&self, uri: &KeyUri) -> bool {
        let tcti = uri.path_attr("tcti").or_else(|| uri.query_attr("tcti"));
        tcti.is_none_or(|t| t == self.tcti)
    }

    async fn open(self, _name: &str) -> Result<std::sync::Arc<dyn keychain_core::Backend>> {
        Ok(std::sync::Arc::new(crate::TpmBackend::open(self).await?))
    }
}

#[cfg(test)]
mod tests {
    use keychain_core::ErrorKind;

    use super::*;

    #[test]
    fn toml_with_defaults() {
        let config: Config = toml::from_str(
            r#"
            tcti = "swtpm:host=127.0.0.1,port=2321"
            key-dir = "/tmp/k"
            srk-handle = 0x81000002
            key-auth = { env = "X" }
            [key-auths]
            payments = { value = "p" }
            "#,
        )
        .unwrap();
        assert_eq!(config.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_eq!(config.srk_handle, 0x8100_0002);
        assert!(config.parameter_encryption && config.create_srk && !config.transient_srk);
        assert!(config.key_auths.contains_key("payments"));
        config.validate().unwrap();
        assert!(toml::from_str::<Config>("tcti = 1").is_err());
        assert!(toml::from_str::<Config>("srk = 1").is_err());
        let debug = format!("{:?}", config.clone());
        assert!(!debug.contains("\"p\""), "{debug}");
    }

    #[test]
    fn validate_refuses_bad_values() {
        let mut c = Config::new("swtpm:", "/tmp/k");
        c.srk_handle = 0x8000_0001;
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        let c = Config::new("swtpm:", "/tmp/k").with_loaded_keys(0);
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        let c = Config::new("swtpm:", "/tmp/k").with_key_auth_for("../x", SecretSource::value("a"));
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn from_uri() {
        let uri: KeyUri = "tpm2:name=signer?tcti=swtpm:host%3D127.0.0.1,port%3D2321&key-dir=/k&srk-handle=0x81000005&transient-srk=true&key-auth-source=env:TPM_AUTH"
            .parse()
            .unwrap();
        let c = Config::from_uri(&uri).unwrap();
        assert_eq!(c.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_eq!(c.key_dir.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(c.srk_handle, 0x8100_0005);
        assert!(c.transient_srk);
        assert!(c.key_auth.is_some());
        for bad in [
            "tpm2:tcti=x?frobnicate=1",
            "tpm2:transient-srk=yes",
            "tpm2:srk-handle=zz",
            "pkcs11:token=x",
        ] {
            let uri: KeyUri = bad.parse().unwrap();
            assert_eq!(
                Config::from_uri(&uri).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
