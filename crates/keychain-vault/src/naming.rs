//! Key names ↔ Transit key names, and key names in `transit:` URIs.
//!
//! A Transit key of keychain's key `name` is `<key-prefix><name>`. Transit's routes want a key
//! name that starts and ends with a letter, digit or `_` (`\w(([\w-.]+)?\w)?`); a `KeyName`
//! starts with a letter or digit but may end with `-`, so such an end is escaped with `._` — a
//! `.` is a character no `KeyName` has. Prefixes are dot-terminated segments
//! (`billing.`, `team.app.`), so one prefix's keys never read as another's: what follows a
//! shorter prefix contains a `.` and is no key name. The mapping is reversible.

use keychain_core::{Error, KeyName, KeyRef, KeyUri, KeyVersion, Result};

const TRAIL: &str = "._";

/// The Transit key name of `name` under `prefix` (a valid prefix: see [`validate_prefix`]).
pub(crate) fn transit_name(prefix: &str, name: &KeyName) -> String {
    let trail = if name.as_str().ends_with('-') {
        TRAIL
    } else {
        ""
    };
    format!("{prefix}{name}{trail}")
}

/// The key name a Transit key name stands for under `prefix`; `None` for Transit keys that are
/// not this keychain's.
pub(crate) fn key_name(prefix: &str, transit: &str) -> Option<KeyName> {
    let mut s = transit;
    if let Some(x) = s.strip_suffix(TRAIL)
        && x.ends_with('-')
    {
        s = x;
    }
    KeyName::new(s.strip_prefix(prefix)?).ok()
}

/// A key prefix: empty, or segments of `A-Z a-z 0-9 _ -`, each ending in `.`, the first starting
/// with a letter, digit or `_` (`billing.`, `team.app.`).
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let bad = || {
        Error::invalid_input(format!(
            "key-prefix {prefix:?} must be segments of A-Z a-z 0-9 _ -, each ending in `.` \
             (e.g. `billing.`), starting with a letter, digit or `_`"
        ))
    };
    let Some(body) = prefix.strip_suffix('.') else {
        return Err(bad());
    };
    if body.starts_with('-')
        || body.split('.').any(|seg| {
            seg.is_empty()
                || !seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
    {
        return Err(bad());
    }
    if prefix.len() > 64 {
        return Err(Error::invalid_input(
            "key-prefix is longer than 64 characters",
        ));
    }
    Ok(())
}

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

    /// Transit's name pattern for keys: `\w(([\w-.]+)?\w)?`.
    fn transit_accepts(s: &str) -> bool {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let b = s.as_bytes();
        !b.is_empty()
            && word(b[0])
            && word(b[b.len() - 1])
            && b.iter().all(|&c| word(c) || c == b'-' || c == b'.')
    }

    #[test]
    fn names_round_trip_and_fit_transit() {
        for prefix in ["", "billing.", "team.app.", "_x.", "a-b."] {
            validate_prefix(prefix).unwrap();
            for n in ["signer", "a-", "a--", "a_b-c", "a_", "0", "0-"] {
                let name = KeyName::new(n).unwrap();
                let t = transit_name(prefix, &name);
                assert!(transit_accepts(&t), "{prefix:?} {n:?} -> {t:?}");
                assert_eq!(key_name(prefix, &t), Some(name), "{prefix:?} {t:?}");
            }
        }
        // Plain Transit names are keychain names as they are.
        assert_eq!(transit_name("", &KeyName::new("signer").unwrap()), "signer");
        assert_eq!(transit_name("", &KeyName::new("a-").unwrap()), "a-._");
    }

    #[test]
    fn prefixes_do_not_nest_and_foreign_keys_are_skipped() {
        let k = KeyName::new("k").unwrap();
        let inner = transit_name("a.b.", &k);
        assert_eq!(key_name("a.", &inner), None, "a.b.k read under a.");
        assert_eq!(key_name("", &inner), None);
        assert_eq!(key_name("a.b.", &inner), Some(k.clone()));
        for foreign in ["other.k", "x.y", "a.b._", "a.k._", "hmac.key"] {
            assert_eq!(key_name("a.", foreign), None, "{foreign}");
        }
        assert_eq!(
            key_name("", "k._"),
            None,
            "an escape without a dash is not ours"
        );
        for bad in ["app", "app-", "-a.", ".", "a..", "a.b", "a b.", "é."] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uri_names_and_versions() {
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
