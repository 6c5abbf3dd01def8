//! Key names ↔ KMS aliases: `alias/<prefix><name>` for a key, `alias/<prefix><name>/v<n>` for
//! version `n` of a rotated asymmetric key. Reversible: a `KeyName` has no `/`.

use keychain_core::{Error, KeyName, KeyUri, KeyVersion, Result};

/// The alias of key `name`: it points at the newest version's KMS key.
pub(crate) fn key_alias(prefix: &str, name: &KeyName) -> String {
    format!("alias/{prefix}{name}")
}

/// The alias of version `version` of a rotated asymmetric key.
pub(crate) fn version_alias(prefix: &str, name: &KeyName, version: KeyVersion) -> String {
    format!("alias/{prefix}{name}/v{version}")
}

/// What an alias in the account is to the keychain with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The alias of a key.
    Key(KeyName),
    /// The alias of one version of a key.
    Version(KeyName, KeyVersion),
}

/// Reads an alias name (`alias/...`) back; `None` for aliases that are not this keychain's.
pub(crate) fn parse_alias(prefix: &str, alias: &str) -> Option<Parsed> {
    let rest = alias.strip_prefix("alias/")?.strip_prefix(prefix)?;
    match rest.split_once('/') {
        None => KeyName::new(rest).ok().map(Parsed::Key),
        Some((name, version)) => {
            let name = KeyName::new(name).ok()?;
            let version = version.strip_prefix('v')?;
            // Canonical decimal only, so that one version has one alias.
            if version.starts_with('0') {
                return None;
            }
            let version: KeyVersion = version.parse().ok().filter(|v| *v > 0)?;
            Some(Parsed::Version(name, version))
        }
    }
}

/// The key an `awskms:` URI names: path attribute `name`, or `key-id` holding this keychain's
/// alias (`alias/<prefix><name>`, also as an alias ARN). `None` when neither is present.
///
/// ```
/// use keychain_core::KeyUri;
/// let uri: KeyUri = "awskms:key-id=alias/keychain/signer;region=eu-west-1".parse()?;
/// let name = keychain_aws::key_name_from_uri(&uri, "keychain/").transpose()?;
/// assert_eq!(name.map(|n| n.to_string()).as_deref(), Some("signer"));
/// # Ok::<(), keychain_core::Error>(())
/// ```
///
/// # Errors
/// `Some(Err)` with [`keychain_core::ErrorKind::InvalidInput`] when the attribute is not UTF-8,
/// or `key-id` is not an alias of a key under `prefix` (a key id, a version alias or another
/// namespace's alias).
pub fn key_name_from_uri(uri: &KeyUri, prefix: &str) -> Option<Result<KeyName>> {
    if let Some(name) = uri.key_name() {
        return Some(name);
    }
    let value = uri.path_attr_bytes("key-id")?;
    let Ok(text) = std::str::from_utf8(value) else {
        return Some(Err(Error::invalid_input("`key-id` is not UTF-8")));
    };
    // An alias ARN: arn:aws:kms:<region>:<account>:alias/<name>.
    let alias = match text.find(":alias/") {
        Some(at) if text.starts_with("arn:") => &text[at + 1..],
        _ => text,
    };
    Some(match parse_alias(prefix, alias) {
        Some(Parsed::Key(name)) => Ok(name),
        _ => Err(Error::invalid_input(format!(
            "key-id {text:?} is not the alias of a key under alias/{prefix}"
        ))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test assertions")]

    use super::*;

    #[test]
    fn aliases_round_trip() {
        let name = KeyName::new("tls-server_2026").unwrap();
        for prefix in ["", "keychain/", "a/b-", "x_"] {
            let alias = key_alias(prefix, &name);
            assert_eq!(parse_alias(prefix, &alias), Some(Parsed::Key(name.clone())));
            let v = version_alias(prefix, &name, 12);
            assert_eq!(
                parse_alias(prefix, &v),
                Some(Parsed::Version(name.clone(), 12))
            );
        }
        let p = "keychain/";
        for foreign in [
            "alias/aws/s3",
            "alias/other/x",
            "alias/keychain/-bad",
            "alias/keychain/x/v0",
            "alias/keychain/x/v01",
            "alias/keychain/x/y",
            "alias/keychain/x/v1/z",
            "keychain/x",
        ] {
            assert_eq!(parse_alias(p, foreign), None, "{foreign}");
        }
    }

    #[test]
    fn uri_names() {
        let uri: KeyUri = "awskms:name=signer".parse().unwrap();
        assert_eq!(
            key_name_from_uri(&uri, "keychain/")
                .unwrap()
                .unwrap()
                .as_str(),
            "signer"
        );
        let uri: KeyUri = "awskms:key-id=arn:aws:kms:eu-west-1:111122223333:alias/kc/signer"
            .parse()
            .unwrap();
        assert_eq!(
            key_name_from_uri(&uri, "kc/").unwrap().unwrap().as_str(),
            "signer"
        );
        let uri: KeyUri = "awskms:key-id=1234abcd-12ab-34cd-56ef-1234567890ab"
            .parse()
            .unwrap();
        assert!(key_name_from_uri(&uri, "kc/").unwrap().is_err());
        let uri: KeyUri = "awskms:region=eu-west-1".parse().unwrap();
        assert!(key_name_from_uri(&uri, "kc/").is_none());
    }
}
