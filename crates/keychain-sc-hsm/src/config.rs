//! Configuration of [`ScHsmBackend`](crate::ScHsmBackend): the PKCS#11 settings of the card's
//! token, under its own `type` and URI scheme.

use std::sync::Arc;

use keychain_core::{Backend, BackendConfig, Error, KeyRef, KeyUri, Result, async_trait};
use serde::{Deserialize, Serialize};

/// A SmartCard-HSM / Nitrokey HSM reached through its PKCS#11 module (OpenSC's
/// `opensc-pkcs11.so`): the same settings as `keychain-pkcs11`'s configuration.
///
/// ```toml
/// [backends.card]
/// type = "sc-hsm"
/// module-path = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
/// token = "SmartCard-HSM (UserPIN)"
/// pin = { env = "CARD_PIN" }
/// ```
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Config(pub keychain_pkcs11::Config);

impl Config {
    /// The `sc-hsm:` URI's attributes as a `pkcs11:` URI (RFC 7512: `token`, `slot-id`,
    /// `object`, `module-path`, `pin-source`...).
    fn as_pkcs11_uri(uri: &KeyUri) -> Result<KeyUri> {
        if uri.scheme() != "sc-hsm" {
            return Err(Error::invalid_input(format!(
                "expected an sc-hsm: URI, got scheme `{}`",
                uri.scheme()
            )));
        }
        let mut pkcs11 = KeyUri::new("pkcs11")?;
        for (name, value) in uri.path_attrs() {
            pkcs11 = pkcs11.with_path_attr(name, value)?;
        }
        for (name, value) in uri.query_attrs() {
            pkcs11 = pkcs11.with_query_attr(name, value)?;
        }
        Ok(pkcs11)
    }
}

#[async_trait]
impl BackendConfig for Config {
    const TYPE: &'static str = "sc-hsm";
    /// `sc-hsm:` URIs carry the attributes of RFC 7512 `pkcs11:` URIs.
    const URI_SCHEMES: &'static [&'static str] = &["sc-hsm"];

    /// `sc-hsm:token=LABEL;object=KEY?module-path=...&pin-source=env:PIN`, read as the same
    /// `pkcs11:` URI would be.
    fn from_uri(uri: &KeyUri) -> Result<Self> {
        keychain_pkcs11::Config::from_uri(&Self::as_pkcs11_uri(uri)?).map(Self)
    }

    fn matches(&self, uri: &KeyUri) -> bool {
        Self::as_pkcs11_uri(uri).is_ok_and(|p| self.0.matches(&p))
    }

    /// The key is the `object` label, as in a `pkcs11:` URI.
    fn key_ref(&self, uri: &KeyUri) -> Result<KeyRef> {
        keychain_core::registration::default_key_ref(&Self::as_pkcs11_uri(uri)?)
    }

    async fn open(self, _name: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(crate::ScHsmBackend::open(self.0).await?))
    }
}
