//! Key names in `transit:` URIs.

use keychain_core::{Error, KeyRef, KeyUri, KeyVersion, Result};

/// The key a `transit:` URI names: path attribute `name`, with the optional `version`.
/// `None` when there is no `name`.
///
/// ```
/// use keychain_core::KeyUri;
/// let uri: KeyUri = "transit:mount=transit;name=signer;version=3".parse()?;
/// let key = keychain_vault::key_ref_from_uri(&uri).transpose()?.unwrap();
/// assert_eq!(key.to_string(), "signer@3");
/// # Ok::<(), keychain_core::Error>(())
/// ```
///
/// # Errors
/// `Some(Err)` with [`keychain_core::ErrorKind::InvalidInput`] when `name` is not a valid key
/// name or `version` is not a positive decimal number.
pub fn key_ref_from_uri(uri: &KeyUri) -> Option<Result<KeyRef>> {
    let name = match uri.key_name()? {
        Ok(name) => name,
        Err(e) => return Some(Err(e)),
    };
    let version = match uri.text_attr("version").transpose() {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    Some(match version {
        None => Ok(KeyRef::latest(name)),
        Some(v) => match v.parse::<KeyVersion>() {
            Ok(n) if n > 0 && !v.starts_with('0') => Ok(KeyRef::versioned(name, n)),
            _ => Err(Error::invalid_input(format!(
                "`version` must be a positive decimal number, got {v:?}"
            ))),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn names_and_versions() {
        let r = |s: &str| key_ref_from_uri(&s.parse::<KeyUri>().unwrap());
        assert_eq!(r("transit:name=a").unwrap().unwrap().to_string(), "a");
        assert_eq!(
            r("transit:name=a;version=12").unwrap().unwrap().version(),
            Some(12)
        );
        assert!(r("transit:mount=transit").is_none());
        for bad in [
            "transit:name=a;version=0",
            "transit:name=a;version=01",
            "transit:name=a;version=x",
            "transit:name=a.b",
        ] {
            assert!(r(bad).unwrap().is_err(), "{bad}");
        }
    }
}
