//! The registration contract: how a backend is named, configured, addressed by URI and opened.
//!
//! Every backend crate implements [`BackendConfig`] on its `Config`, next to it. The umbrella
//! crate (`keychain`) turns any implementation into an entry of its registry, so a downstream
//! backend registers at run time exactly as the built-in ones do — the same split as OpenDAL's
//! per-service `Configurator` and its registry.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::name::{KeyRef, KeyVersion};
use crate::uri::KeyUri;

/// A backend's typed configuration, and everything a registry needs to know about the backend:
/// its `type` name, its URI schemes, how a URI becomes a configuration and a key reference, and
/// how to open it.
///
/// The configuration deserializes from the backend's table of a configuration file (with serde,
/// in any format; the table never holds a secret's value, only where to find it) or is built
/// from a key URI with [`BackendConfig::from_uri`].
///
/// Naming: the crate suffix, [`BackendConfig::TYPE`], the first of
/// [`BackendConfig::URI_SCHEMES`] and the type names agree (`keychain-aws`, `type = "aws"`,
/// `aws:` URIs, `AwsBackend`); earlier spellings stay accepted as aliases.
#[async_trait]
pub trait BackendConfig: DeserializeOwned + Send + Sync + 'static {
    /// The configuration `type` (`"pkcs8"`), the crate's suffix.
    const TYPE: &'static str;

    /// Other `type` names accepted for this backend (names documented before).
    const TYPE_ALIASES: &'static [&'static str] = &[];

    /// The [`KeyUri`] schemes of this backend's keys; the first is the canonical one, the
    /// others are accepted aliases.
    const URI_SCHEMES: &'static [&'static str];

    /// A configuration from a key URI alone (its attributes name the module, region, server,
    /// directory...), for opening a backend from a URI without a configuration file.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a URI of another scheme,
    /// an unknown attribute, or one this backend cannot open from.
    fn from_uri(uri: &KeyUri) -> Result<Self>;

    /// Whether a backend opened from this configuration holds the key `uri` points at: the URI
    /// names this backend's token, directory, mount, region... or leaves them out. Only asked
    /// of backends whose scheme is the URI's. The default says yes.
    fn matches(&self, uri: &KeyUri) -> bool {
        let _ = uri;
        true
    }

    /// The key (and version, if any) `uri` names in a backend opened from this configuration.
    /// The default reads the key name with [`KeyUri::key_name`] and a `version` path or query
    /// attribute.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the URI names no key, or
    /// names it in a form this backend does not recognise, or the version is not a positive
    /// number.
    fn key_ref(&self, uri: &KeyUri) -> Result<KeyRef> {
        default_key_ref(uri)
    }

    /// Opens the backend this configuration describes. `name` is the name it is registered
    /// under (for messages and audit fields).
    ///
    /// # Errors
    /// Whatever opening the backend fails with (a missing password variable, an unreachable
    /// service, ...).
    async fn open(self, name: &str) -> Result<Arc<dyn Backend>>;
}

/// The key a URI names by the common attributes: the key name ([`KeyUri::key_name`]) and an
/// optional `version` (path or query attribute, a positive decimal number).
///
/// ```
/// use keychain_core::{KeyUri, registration::default_key_ref};
/// let key = default_key_ref(&"pkcs8:name=signer;version=3".parse::<KeyUri>()?)?;
/// assert_eq!(key.to_string(), "signer@3");
/// # Ok::<(), keychain_core::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the URI names no key, the
/// name is invalid, or the version is not a positive decimal number.
pub fn default_key_ref(uri: &KeyUri) -> Result<KeyRef> {
    let name = uri
        .key_name()
        .ok_or_else(|| Error::invalid_input(format!("key URI `{uri}` names no key")))??;
    Ok(match uri_version(uri)? {
        None => KeyRef::latest(name),
        Some(v) => KeyRef::versioned(name, v),
    })
}

/// The `version` attribute of a key URI (path or query): `None` when absent.
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when it is not a positive
/// decimal number without leading zeros.
pub fn uri_version(uri: &KeyUri) -> Result<Option<KeyVersion>> {
    match uri.text_attr("version").transpose()? {
        None => Ok(None),
        Some(v) => match v.parse::<KeyVersion>() {
            Ok(n) if n > 0 && !v.starts_with('0') => Ok(Some(n)),
            _ => Err(Error::invalid_input(format!(
                "key URI version must be a positive decimal number, got {v:?}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn default_key_ref_reads_name_and_version() {
        let parse = |s: &str| default_key_ref(&s.parse::<KeyUri>().unwrap());
        assert_eq!(parse("pkcs8:name=k").unwrap().to_string(), "k");
        assert_eq!(parse("pkcs8:name=k;version=2").unwrap().to_string(), "k@2");
        assert_eq!(parse("pkcs8:name=k?version=7").unwrap().to_string(), "k@7");
        assert_eq!(
            parse("pkcs11:token=t;object=k").unwrap().to_string(),
            "k",
            "PKCS#11 names keys by object label"
        );
        for bad in [
            "pkcs8:dir=x",
            "pkcs8:name=k;version=0",
            "pkcs8:name=k;version=02",
            "pkcs8:name=k;version=x",
            "pkcs8:name=a%2Fb",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
